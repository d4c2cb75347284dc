//! The environment layer: `SECTION__FIELD`, `PLUGINS__NAME__FIELD` and a few top-level names,
//! turned into a TOML table that overlays the file.
//!
//! Only variables whose first `__` segment is a core section or `PLUGINS`, and the listed
//! top-level names, are read; everything else in the environment is left alone. Names are
//! case-insensitive; an empty value counts as unset.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::error::{ConfigError, Origin, UnknownKey};
use super::schema::{self, Kind, PLUGIN_ENABLED_KEY, PLUGINS};

/// The variable naming the config file (read by the file search, not here).
pub(crate) const CONFIG_FILE_VAR: &str = "CONFIG_FILE";

/// The conventional CA file variable, a fallback for `http.extra_ca_file` below the config
/// file (read by the loader after the file and this layer, not here).
pub(crate) const SSL_CERT_FILE_VAR: &str = "SSL_CERT_FILE";

/// What the environment contributes.
#[derive(Debug, Default)]
pub(crate) struct EnvLayer {
    /// The values, shaped like a config file.
    pub(crate) table: Table,
    /// Which variable set each dotted key.
    pub(crate) origins: BTreeMap<String, Origin>,
    /// Variables naming a field that does not exist.
    pub(crate) unknown: Vec<UnknownKey>,
    /// Variables with a bad name or value.
    pub(crate) errors: Vec<ConfigError>,
    /// Things worth telling the operator that do not stop loading.
    pub(crate) warnings: Vec<String>,
}

/// One variable the layer will apply.
struct Entry {
    /// Aliases (`CCPROXY_LOG_LEVEL`) rank below the canonical name (`LOGGING__LEVEL`).
    rank: u8,
    var: String,
    path: Vec<String>,
    value: Value,
}

/// Reads the environment snapshot into a layer.
pub(crate) fn env_layer(env: &[(String, String)]) -> EnvLayer {
    let mut layer = EnvLayer::default();
    let mut entries = Vec::new();
    let mut sorted: Vec<&(String, String)> = env.iter().collect();
    sorted.sort();
    for (var, raw) in sorted {
        if raw.is_empty() {
            continue;
        }
        match classify(var, raw, &mut layer) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(error) => layer.errors.push(error),
        }
    }
    entries.sort_by(|left, right| (left.rank, &left.var).cmp(&(right.rank, &right.var)));
    let mut set_by: BTreeMap<String, (u8, String, Value)> = BTreeMap::new();
    for entry in entries {
        let dotted = entry.path.join(".");
        if let Some((rank, other, previous)) = set_by.get(&dotted)
            && *rank == entry.rank
            && *previous != entry.value
        {
            layer.warnings.push(format!(
                "env {} and env {other} both set `{dotted}`; using {}",
                entry.var, entry.var
            ));
        }
        if let Err(other_key) = insert_path(&mut layer.table, &entry.path, entry.value.clone()) {
            let other = layer
                .origins
                .iter()
                .find(|(key, _)| key.starts_with(&format!("{other_key}.")) || **key == other_key)
                .map(|(_, origin)| match origin {
                    Origin::Env(var) => var.clone(),
                    other_origin => other_origin.to_string(),
                })
                .unwrap_or_default();
            layer.errors.push(ConfigError::EnvConflict {
                var: entry.var,
                other,
                key: other_key,
            });
            continue;
        }
        layer
            .origins
            .insert(dotted.clone(), Origin::Env(entry.var.clone()));
        set_by.insert(dotted, (entry.rank, entry.var, entry.value));
    }
    layer
}

/// Decides what one variable means: `Ok(None)` for variables that are not ours.
fn classify(var: &str, raw: &str, layer: &mut EnvLayer) -> Result<Option<Entry>, ConfigError> {
    let lower = var.to_ascii_lowercase();
    let top_level = |rank: u8, dotted: &'static str| -> Result<Option<Entry>, ConfigError> {
        let kind = schema::field_at(dotted).map_or(Kind::Bool, |field| field.kind);
        let value = core_value(var, raw, kind)?;
        let path = dotted.split('.').map(str::to_owned).collect();
        Ok(Some(Entry {
            rank,
            var: var.to_owned(),
            path,
            value,
        }))
    };
    match lower.as_str() {
        "enable_plugins" => return top_level(1, "enable_plugins"),
        "enabled_plugins" => return top_level(1, "enabled_plugins"),
        "disabled_plugins" => return top_level(1, "disabled_plugins"),
        "ccproxy_log_level" => return top_level(0, "logging.level"),
        "plugins_disable_local_discovery" => {
            return top_level(0, "plugin_discovery.disable_local_discovery");
        }
        _ => {}
    }
    let segments: Vec<&str> = lower.split("__").collect();
    let [first, rest @ ..] = segments.as_slice() else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(None);
    }
    if *first == PLUGINS {
        return plugin_entry(var, raw, rest).map(Some);
    }
    let original = format!("{first}.{}", rest.join("."));
    if let Some((old, new)) = schema::MIGRATED_KEYS
        .iter()
        .find(|(old, _)| *old == original)
    {
        layer.warnings.push(format!(
            "env {var}: `{old}` is now `{new}`; the value was taken, set {} instead",
            new.replace('.', "__").to_ascii_uppercase()
        ));
        // Below the new name's own variable, as the other aliases.
        return top_level(0, new);
    }
    let Some(section) = schema::section(first) else {
        if schema::legacy_section(first) {
            layer.warnings.push(format!(
                "env {var} ignored: [{first}] is a setting of the Python ccproxy that this version does not have; unset it"
            ));
        }
        return Ok(None);
    };
    let field_name = rest.join(".");
    if field_name.is_empty() || rest.iter().any(|segment| segment.is_empty()) {
        return Err(ConfigError::BadEnvVar {
            var: var.to_owned(),
            value: masked(raw, false),
            expected: format!("a name of the form {}__FIELD", first.to_ascii_uppercase()),
        });
    }
    let dotted = format!("{first}.{field_name}");
    let Some(field) = section.fields.iter().find(|field| field.name == field_name) else {
        let known: Vec<&str> = section.fields.iter().map(|field| field.name).collect();
        layer.unknown.push(UnknownKey {
            suggestion: schema::suggest(&field_name, &known)
                .map(|name| format!("{}__{}", first, name).to_ascii_uppercase()),
            hint: schema::legacy_hint(&dotted).map(str::to_owned),
            key: dotted,
            origin: Origin::Env(var.to_owned()),
            table: format!("[{first}]"),
            known: known.into_iter().map(str::to_owned).collect(),
        });
        return Ok(None);
    };
    let value = core_value(var, raw, field.kind)?;
    Ok(Some(Entry {
        rank: 1,
        var: var.to_owned(),
        path: vec![(*first).to_owned(), field_name],
        value,
    }))
}

/// Parses and checks a core key's value by its kind.
fn core_value(var: &str, raw: &str, kind: Kind) -> Result<Value, ConfigError> {
    kind.parse_env(raw)
        .and_then(|value| kind.check(&value))
        .ok_or_else(|| ConfigError::BadEnvVar {
            var: var.to_owned(),
            value: masked(raw, kind == Kind::Secret),
            expected: kind.expected(),
        })
}

/// `PLUGINS__NAME__FIELD[__SUB…]`: names and fields are lower-cased.
fn plugin_entry(var: &str, raw: &str, rest: &[&str]) -> Result<Entry, ConfigError> {
    if rest.len() < 2 || rest.iter().any(|segment| segment.is_empty()) {
        return Err(ConfigError::BadEnvVar {
            var: var.to_owned(),
            value: masked(raw, true),
            expected: "a name of the form PLUGINS__<NAME>__<FIELD>[__<SUBFIELD>…]".to_owned(),
        });
    }
    let value = if rest.len() == 2 && rest[1] == PLUGIN_ENABLED_KEY {
        let enabled = schema::parse_bool(raw).ok_or_else(|| ConfigError::BadEnvVar {
            var: var.to_owned(),
            value: raw.to_owned(),
            expected: Kind::Bool.expected(),
        })?;
        Value::Boolean(enabled)
    } else {
        plugin_value(raw)
    };
    let mut path = vec![PLUGINS.to_owned()];
    path.extend(rest.iter().map(|segment| (*segment).to_owned()));
    Ok(Entry {
        rank: 1,
        var: var.to_owned(),
        path,
        value,
    })
}

/// A plugin value from the environment: a TOML value when it parses, else the text.
///
/// Internal: numbers and booleans are taken only when their canonical spelling is exactly the
/// text (`60`, `0.5`, `true`), so `1.10`, `007` or `1_000` stay strings and a plugin whose
/// default is a string gets the text back unchanged (see `plugin_section::coerce`).
pub(crate) fn plugin_value(raw: &str) -> Value {
    let trimmed = raw.trim();
    match schema::parse_toml_value(trimmed) {
        Some(value @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_)))
            if value.to_string() == trimmed =>
        {
            value
        }
        Some(value @ (Value::Array(_) | Value::Table(_))) => super::sources::stringify_dates(value),
        Some(Value::String(text)) if trimmed.starts_with(['"', '\'']) => Value::String(text),
        _ => Value::String(raw.to_owned()),
    }
}

fn masked(raw: &str, secret: bool) -> String {
    if secret || super::secret::looks_like_secret_value(raw) {
        super::secret::MASK.to_owned()
    } else {
        raw.to_owned()
    }
}

/// Sets `path` in `table`, creating tables on the way. On a clash between a table and a value,
/// returns the dotted key where they clash.
fn insert_path(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(inner) => inner,
            _ => return Err(path[..=depth].join(".")),
        };
    }
    if matches!(current.get(last), Some(Value::Table(_))) && !value.is_table() {
        return Err(path.join("."));
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(vars: &[(&str, &str)]) -> EnvLayer {
        let env: Vec<(String, String)> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        env_layer(&env)
    }

    fn get<'a>(table: &'a Table, dotted: &str) -> Option<&'a Value> {
        let mut segments = dotted.split('.');
        let mut value = table.get(segments.next()?)?;
        for segment in segments {
            value = value.get(segment)?;
        }
        Some(value)
    }

    #[test]
    fn unrelated_variables_are_ignored() {
        let env = layer(&[
            ("PATH", "/bin"),
            ("HTTP_PROXY", "http://proxy"),
            ("SERVER", "x"),
            ("SOME__THING", "1"),
            ("CONFIG_FILE", "/x.toml"),
        ]);
        assert!(env.table.is_empty(), "{:?}", env.table);
        assert!(env.unknown.is_empty() && env.errors.is_empty());
    }

    #[test]
    fn names_are_case_insensitive_and_values_typed_by_field() {
        let env = layer(&[
            ("server__port", "9000"),
            ("SECURITY__AUTH_TOKEN", "12345"),
            ("HTTP__HTTP2", "false"),
        ]);
        assert_eq!(get(&env.table, "server.port"), Some(&Value::Integer(9000)));
        assert_eq!(
            get(&env.table, "security.auth_token"),
            Some(&Value::String("12345".into()))
        );
        assert_eq!(get(&env.table, "http.http2"), Some(&Value::Boolean(false)));
    }

    #[test]
    fn plugin_values_parse_as_toml_only_when_exact() {
        let env = layer(&[
            ("PLUGINS__Access_Log__CLIENT_LOG_FILE", "/x"),
            ("PLUGINS__CODEX__TIMEOUT", "60"),
            ("PLUGINS__CODEX__VERSION", "1.10"),
            ("PLUGINS__CODEX__MODELS", "[\"a\", \"b\"]"),
            ("PLUGINS__CODEX__OAUTH__CLIENT_ID", "abc"),
            ("PLUGINS__CODEX__ENABLED", "No"),
        ]);
        let expect = [
            (
                "plugins.access_log.client_log_file",
                Value::String("/x".into()),
            ),
            ("plugins.codex.timeout", Value::Integer(60)),
            ("plugins.codex.version", Value::String("1.10".into())),
            ("plugins.codex.oauth.client_id", Value::String("abc".into())),
            ("plugins.codex.enabled", Value::Boolean(false)),
        ];
        for (key, value) in expect {
            assert_eq!(get(&env.table, key), Some(&value), "{key}");
        }
        assert!(get(&env.table, "plugins.codex.models").is_some_and(Value::is_array));
    }

    #[test]
    fn unknown_field_of_a_known_section_names_the_variable() {
        let env = layer(&[("SERVER__PROT", "1")]);
        let [unknown] = env.unknown.as_slice() else {
            panic!("expected one unknown key: {:?}", env.unknown);
        };
        assert_eq!(unknown.key, "server.prot");
        assert_eq!(unknown.origin, Origin::Env("SERVER__PROT".into()));
        assert_eq!(unknown.suggestion.as_deref(), Some("SERVER__PORT"));
    }

    #[test]
    fn bad_values_and_names_are_errors() {
        let env = layer(&[("SERVER__PORT", "abc"), ("PLUGINS__X", "1")]);
        let messages: Vec<String> = env.errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages.iter().any(|m| m.contains("PLUGINS__X")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("SERVER__PORT=abc") && m.contains("0-65535")),
            "{messages:?}"
        );
    }

    #[test]
    fn secrets_are_masked_in_errors() {
        let env = layer(&[("PLUGINS__X", "sk-secret")]);
        assert!(!env.errors[0].to_string().contains("sk-secret"));
    }

    #[test]
    fn canonical_names_override_aliases() {
        let env = layer(&[("CCPROXY_LOG_LEVEL", "debug"), ("LOGGING__LEVEL", "warn")]);
        assert_eq!(
            get(&env.table, "logging.level"),
            Some(&Value::String("warn".into()))
        );
        let env = layer(&[("CCPROXY_LOG_LEVEL", "DEBUG")]);
        assert_eq!(
            get(&env.table, "logging.level"),
            Some(&Value::String("debug".into()))
        );
    }

    #[test]
    fn a_table_and_a_value_for_one_key_conflict() {
        let env = layer(&[("PLUGINS__X__A", "1"), ("PLUGINS__X__A__B", "2")]);
        let message = env.errors[0].to_string();
        assert!(
            message.contains("env PLUGINS__X__A__B conflicts with env PLUGINS__X__A:"),
            "{message}"
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let env = layer(&[("SECURITY__AUTH_TOKEN", ""), ("ENABLED_PLUGINS", "")]);
        assert!(env.table.is_empty());
    }
}
