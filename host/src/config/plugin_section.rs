//! Per-plugin config sections: checking `[plugins.<name>]` against what the plugin declares,
//! and the enabled/disabled filter that decides which plugins load.

use std::fmt;

use serde_json::{Map, Number, Value};

use super::error::Origin;
use super::model::Config;
use super::schema::{self, PLUGIN_ENABLED_KEY, PLUGINS};
use super::secret::{MASK, looks_like_secret_value};

/// One key of a plugin section that the plugin does not declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPluginKey {
    /// Dotted name, e.g. `plugins.access_log.client_log_fil`.
    pub key: String,
    /// The table it sits in, e.g. `[plugins.access_log]`.
    pub table: String,
    /// The keys that table does accept.
    pub known: Vec<String>,
    /// A known key it is probably a typo of.
    pub suggestion: Option<String>,
    /// Where it was set, when known (see [`Loaded::plugin_config`](super::Loaded::plugin_config)).
    pub origin: Option<Origin>,
}

impl fmt::Display for UnknownPluginKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "unknown config key `{}`", self.key)?;
        if let Some(origin) = &self.origin {
            write!(formatter, " {origin}")?;
        }
        if self.known.is_empty() {
            write!(formatter, "; {} takes no settings, remove it", self.table)?;
        } else {
            write!(
                formatter,
                "; known keys in {}: {}",
                self.table,
                self.known.join(", ")
            )?;
        }
        if let Some(suggestion) = &self.suggestion {
            write!(formatter, "; did you mean `{suggestion}`?")?;
        }
        Ok(())
    }
}

/// A plugin's config section does not fit what the plugin declares.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginConfigError {
    /// The plugin's declared defaults are not a JSON object.
    #[error(
        "plugin {plugin} declares config defaults that are not a table; this is a bug in the plugin, report it to its author"
    )]
    DefaultsNotObject {
        /// The plugin.
        plugin: String,
    },
    /// Keys the plugin does not declare, all of them.
    #[error("{}", keys.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    UnknownKeys {
        /// The plugin.
        plugin: String,
        /// Every unknown key.
        keys: Vec<UnknownPluginKey>,
    },
    /// A value whose type does not match the plugin's default.
    #[error("{key} = {value}{}: expected {expected}", origin.as_ref().map(|origin| format!(" {origin}")).unwrap_or_default())]
    BadValue {
        /// The plugin.
        plugin: String,
        /// Dotted name, e.g. `plugins.codex.timeout`.
        key: String,
        /// The value as JSON; `***` when the key looks like it holds a secret.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
        /// Where it was set, when known.
        origin: Option<Origin>,
    },
}

impl PluginConfigError {
    /// Fills in where each key was set, from a lookup such as
    /// [`Loaded::origin`](super::Loaded::origin).
    pub fn with_origins(mut self, origin_of: impl Fn(&str) -> Origin) -> Self {
        let known = |key: &str| Some(origin_of(key)).filter(|origin| *origin != Origin::Default);
        match &mut self {
            PluginConfigError::DefaultsNotObject { .. } => {}
            PluginConfigError::UnknownKeys { keys, .. } => {
                for key in keys {
                    key.origin = known(&key.key);
                }
            }
            PluginConfigError::BadValue { key, origin, .. } => *origin = known(key),
        }
        self
    }
}

/// Checks a plugin's section against the defaults it declares and returns the merged object the
/// plugin receives.
///
/// - `defaults` is the object of default values the plugin declares (`null` means "no
///   settings"); `section` is `[plugins.<plugin>]` as loaded.
/// - Objects merge deeply: a nested table sets only the keys it names.
/// - The reserved key `enabled` is never unknown; it is passed on only when the plugin declares
///   it.
/// - Every key the defaults do not have is reported by dotted name with the known keys listed.
///   A default that is an empty object is a free-form map and accepts any keys.
/// - When the default is not null, the value's JSON type must match it: integers are accepted
///   for float defaults; strings (as the environment supplies them) are converted to a bool or
///   number when the default is one, and comma-split into a list when it is a list; numbers and
///   bools are written as text when the default is a string.
pub fn validate_plugin_section(
    plugin: &str,
    defaults: &Value,
    section: Option<&Map<String, Value>>,
) -> Result<Value, PluginConfigError> {
    let empty = Map::new();
    let defaults = match defaults {
        Value::Object(defaults) => defaults,
        Value::Null => &empty,
        _ => {
            return Err(PluginConfigError::DefaultsNotObject {
                plugin: plugin.to_owned(),
            });
        }
    };
    let mut merged = defaults.clone();
    let mut check = Check {
        plugin,
        unknown: Vec::new(),
        bad: None,
    };
    if let Some(section) = section {
        check.merge(
            &format!("{PLUGINS}.{plugin}"),
            &mut merged,
            defaults,
            section,
            true,
        );
    }
    if !check.unknown.is_empty() {
        return Err(PluginConfigError::UnknownKeys {
            plugin: plugin.to_owned(),
            keys: check.unknown,
        });
    }
    match check.bad {
        Some(error) => Err(error),
        None => Ok(Value::Object(merged)),
    }
}

struct Check<'a> {
    plugin: &'a str,
    unknown: Vec<UnknownPluginKey>,
    bad: Option<PluginConfigError>,
}

impl Check<'_> {
    fn merge(
        &mut self,
        prefix: &str,
        merged: &mut Map<String, Value>,
        defaults: &Map<String, Value>,
        given: &Map<String, Value>,
        top: bool,
    ) {
        for (key, value) in given {
            let dotted = format!("{prefix}.{key}");
            match defaults.get(key) {
                None if top && key == PLUGIN_ENABLED_KEY => {}
                None => {
                    let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
                    self.unknown.push(UnknownPluginKey {
                        suggestion: schema::suggest(key, &known)
                            .map(|name| format!("{prefix}.{name}")),
                        key: dotted,
                        table: format!("[{prefix}]"),
                        known: known.into_iter().map(str::to_owned).collect(),
                        origin: None,
                    });
                }
                Some(Value::Object(inner_defaults)) if !inner_defaults.is_empty() => {
                    let Value::Object(inner_given) = value else {
                        self.bad(&dotted, value, "a table");
                        continue;
                    };
                    let target = merged
                        .entry(key.clone())
                        .or_insert_with(|| Value::Object(inner_defaults.clone()));
                    if let Value::Object(target) = target {
                        self.merge(&dotted, target, inner_defaults, inner_given, false);
                    }
                }
                Some(default) => match coerce(default, value) {
                    Ok(value) => {
                        merged.insert(key.clone(), value);
                    }
                    Err(expected) => self.bad(&dotted, value, expected),
                },
            }
        }
    }

    fn bad(&mut self, key: &str, value: &Value, expected: &'static str) {
        if self.bad.is_some() {
            return;
        }
        self.bad = Some(PluginConfigError::BadValue {
            plugin: self.plugin.to_owned(),
            key: key.to_owned(),
            value: if looks_secret(key) || value.as_str().is_some_and(looks_like_secret_value) {
                MASK.to_owned()
            } else {
                value.to_string()
            },
            expected,
            origin: None,
        });
    }
}

/// Fits `value` to the type of `default`, or says what was expected.
fn coerce(default: &Value, value: &Value) -> Result<Value, &'static str> {
    const BOOL: &str = "true or false";
    const INTEGER: &str = "an integer";
    const NUMBER: &str = "a number";
    match (default, value) {
        (Value::Null, value) => Ok(value.clone()),
        (Value::Bool(_), Value::Bool(_)) => Ok(value.clone()),
        (Value::Bool(_), Value::String(text)) => {
            schema::parse_bool(text).map(Value::Bool).ok_or(BOOL)
        }
        (Value::Bool(_), _) => Err(BOOL),
        (Value::Number(default), Value::Number(number)) => {
            if default.is_f64() || !number.is_f64() {
                Ok(value.clone())
            } else {
                Err(INTEGER)
            }
        }
        (Value::Number(default), Value::String(text)) => {
            let text = text.trim();
            if default.is_f64() {
                text.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or(NUMBER)
            } else if let Ok(integer) = text.parse::<i64>() {
                Ok(Value::from(integer))
            } else {
                text.parse::<u64>().map(Value::from).map_err(|_| INTEGER)
            }
        }
        (Value::Number(default), _) => Err(if default.is_f64() { NUMBER } else { INTEGER }),
        (Value::String(_), Value::String(_)) => Ok(value.clone()),
        (Value::String(_), Value::Number(number)) => Ok(Value::String(number.to_string())),
        (Value::String(_), Value::Bool(flag)) => Ok(Value::String(flag.to_string())),
        (Value::String(_), _) => Err("a string"),
        (Value::Array(_), Value::Array(_)) => Ok(value.clone()),
        (Value::Array(_), Value::String(text)) => Ok(Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(Value::from)
                .collect(),
        )),
        (Value::Array(_), _) => Err("a list"),
        (Value::Object(_), Value::Object(_)) => Ok(value.clone()),
        (Value::Object(_), _) => Err("a table"),
    }
}

/// Whether a plugin setting's name suggests it holds a credential, so its value is masked in
/// errors and in the rendered config.
pub(crate) fn looks_secret(dotted: &str) -> bool {
    let name = dotted
        .rsplit('.')
        .next()
        .unwrap_or(dotted)
        .to_ascii_lowercase();
    // Any name with `key` in it (`api_key`, `apikey`, `x_api_key`, `key_file`…): masking a
    // setting that was not secret costs a look at the file, printing one that was costs a key.
    const MARKERS: &[&str] = &[
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
        "cookie",
        "authorization",
        "auth_header",
    ];
    // A variable's name, a path or a folder is not the secret itself (`api_key_env`,
    // `token_file`).
    const NOT_SECRET_SUFFIXES: &[&str] = &["_env", "_file", "_path", "_dir"];
    // A count of tokens (`max_tokens`) is not a token.
    let name = name.replace("tokens", "");
    MARKERS.iter().any(|marker| name.contains(marker))
        && !NOT_SECRET_SUFFIXES
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

/// One warning for each plugin name that `config` mentions (a `[plugins.<name>]`
/// section or `PLUGINS__<NAME>__…`, `enabled_plugins`, `disabled_plugins`,
/// `--enable-plugin`, `--disable-plugin`) that no plugin file found is called,
/// with the closest found name: a typo would otherwise pass in silence.
pub fn unknown_plugin_names(config: &Config, found: &[&str]) -> Vec<String> {
    let mentioned = config
        .plugins
        .keys()
        .map(|name| {
            (
                name.as_str(),
                "a [plugins.NAME] section or PLUGINS__NAME__* variable",
            )
        })
        .chain(
            config
                .enabled_plugins
                .iter()
                .flatten()
                .map(|name| (name.as_str(), "enabled_plugins or --enable-plugin")),
        )
        .chain(
            config
                .disabled_plugins
                .iter()
                .flatten()
                .map(|name| (name.as_str(), "disabled_plugins or --disable-plugin")),
        );
    let mut warnings = Vec::new();
    for (name, place) in mentioned {
        if found.contains(&name) {
            continue;
        }
        let hint = match schema::suggest(name, found) {
            Some(close) => format!("did you mean {close}?"),
            None => "`ccproxy plugins list` shows the plugins found".to_owned(),
        };
        let warning = format!("no plugin named {name} was found, but {place} names it; {hint}");
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    warnings
}

/// Whether the plugin `name` may load under `config`'s filter, or the reason it may not.
///
/// The deny list is `disabled_plugins` (which `--disable-plugin` adds to) plus every plugin whose
/// section says `enabled = false`; when `enabled_plugins` is set only those load. An explicit
/// disable always wins over `enabled_plugins` (the original let the allow list win), and
/// `enable_plugins = false` switches every plugin off.
pub fn plugin_allowed(config: &Config, name: &str) -> Result<(), String> {
    if !config.enable_plugins {
        return Err("plugins are switched off (enable_plugins = false)".to_owned());
    }
    let allowed_explicitly = config
        .enabled_plugins
        .as_ref()
        .map(|enabled| enabled.iter().any(|entry| entry == name));
    let wins = if allowed_explicitly == Some(true) {
        ", which wins over enabled_plugins"
    } else {
        ""
    };
    let denied = config
        .disabled_plugins
        .as_ref()
        .is_some_and(|disabled| disabled.iter().any(|entry| entry == name));
    if denied {
        return Err(format!(
            "disabled by --disable-plugin or disabled_plugins{wins}"
        ));
    }
    let section_disabled = config
        .plugins
        .get(name)
        .and_then(|section| section.get(PLUGIN_ENABLED_KEY))
        == Some(&Value::Bool(false));
    if section_disabled {
        return Err(format!(
            "disabled by {PLUGINS}.{name}.enabled = false{wins}"
        ));
    }
    if allowed_explicitly == Some(false) {
        return Err("not in enabled_plugins".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn section(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn check(defaults: Value, given: Value, expected: Result<Value, &str>) {
        let result = validate_plugin_section("demo", &defaults, Some(&section(given)))
            .map_err(|error| error.to_string());
        match expected {
            Ok(value) => assert_eq!(result, Ok(value)),
            Err(fragment) => {
                let message = result.expect_err("expected an error");
                assert!(message.contains(fragment), "{message}");
            }
        }
    }

    #[test]
    fn merges_defaults_with_the_section() {
        check(
            json!({"a": 1, "b": "x", "nested": {"c": true, "d": 2}}),
            json!({"b": "y", "nested": {"d": 3}}),
            Ok(json!({"a": 1, "b": "y", "nested": {"c": true, "d": 3}})),
        );
    }

    #[test]
    fn no_section_gives_the_defaults() {
        let defaults = json!({"a": 1});
        assert_eq!(
            validate_plugin_section("demo", &defaults, None),
            Ok(defaults.clone())
        );
        assert_eq!(
            validate_plugin_section("demo", &Value::Null, None),
            Ok(json!({}))
        );
    }

    #[test]
    fn enabled_is_reserved() {
        check(
            json!({"a": 1}),
            json!({"enabled": false}),
            Ok(json!({"a": 1})),
        );
        check(
            json!({"enabled": true}),
            json!({"enabled": false}),
            Ok(json!({"enabled": false})),
        );
    }

    #[test]
    fn unknown_keys_are_named_with_the_known_ones() {
        let result = validate_plugin_section(
            "access_log",
            &json!({"client_log_file": "/tmp/x", "nested": {"depth": 1}}),
            Some(&section(
                json!({"client_log_fil": "/y", "nested": {"deep": 2}, "zzz": 0}),
            )),
        );
        let Err(PluginConfigError::UnknownKeys { keys, .. }) = &result else {
            panic!("expected unknown keys, got {result:?}");
        };
        let names: Vec<&str> = keys.iter().map(|key| key.key.as_str()).collect();
        assert_eq!(
            names,
            [
                "plugins.access_log.client_log_fil",
                "plugins.access_log.nested.deep",
                "plugins.access_log.zzz"
            ]
        );
        let message = result.expect_err("unknown keys").to_string();
        assert!(
            message.starts_with(
                "unknown config key `plugins.access_log.client_log_fil`; known keys in \
                 [plugins.access_log]: client_log_file, nested; did you mean \
                 `plugins.access_log.client_log_file`?"
            ),
            "{message}"
        );
        assert!(
            message.contains("known keys in [plugins.access_log.nested]: depth"),
            "{message}"
        );
    }

    #[test]
    fn types_are_checked_against_non_null_defaults() {
        check(
            json!({"n": 1}),
            json!({"n": "abc"}),
            Err("plugins.demo.n = \"abc\": expected an integer"),
        );
        check(
            json!({"n": 1}),
            json!({"n": 1.5}),
            Err("expected an integer"),
        );
        check(json!({"f": 1.5}), json!({"f": 2}), Ok(json!({"f": 2})));
        check(
            json!({"b": true}),
            json!({"b": 1}),
            Err("expected true or false"),
        );
        check(
            json!({"s": "x"}),
            json!({"s": [1]}),
            Err("expected a string"),
        );
        check(
            json!({"t": {"a": 1}}),
            json!({"t": 5}),
            Err("expected a table"),
        );
        check(
            json!({"o": null}),
            json!({"o": {"any": [1]}}),
            Ok(json!({"o": {"any": [1]}})),
        );
        check(
            json!({"m": {}}),
            json!({"m": {"free": "form"}}),
            Ok(json!({"m": {"free": "form"}})),
        );
    }

    #[test]
    fn env_strings_are_coerced_to_the_default_type() {
        check(
            json!({"b": false}),
            json!({"b": "True"}),
            Ok(json!({"b": true})),
        );
        check(json!({"n": 1}), json!({"n": " 60 "}), Ok(json!({"n": 60})));
        check(
            json!({"f": 1.0}),
            json!({"f": "0.25"}),
            Ok(json!({"f": 0.25})),
        );
        check(
            json!({"s": "x"}),
            json!({"s": 2023}),
            Ok(json!({"s": "2023"})),
        );
        check(
            json!({"l": []}),
            json!({"l": "a, b"}),
            Ok(json!({"l": ["a", "b"]})),
        );
    }

    #[test]
    fn secret_looking_values_are_masked_in_errors() {
        check(
            json!({"api_key": "x"}),
            json!({"api_key": ["sk-1"]}),
            Err("plugins.demo.api_key = ***"),
        );
    }

    #[test]
    fn origins_are_added_when_known() {
        let error = validate_plugin_section("demo", &json!({}), Some(&section(json!({"x": 1}))))
            .expect_err("x is unknown")
            .with_origins(|_| Origin::Env("PLUGINS__DEMO__X".into()));
        assert!(
            error
                .to_string()
                .contains("`plugins.demo.x` from env PLUGINS__DEMO__X"),
            "{error}"
        );
    }

    #[test]
    fn defaults_must_be_an_object() {
        let error = validate_plugin_section("demo", &json!(5), None).expect_err("5 is not a table");
        assert!(matches!(error, PluginConfigError::DefaultsNotObject { .. }));
    }

    fn config(toml: &str) -> Config {
        toml::from_str(toml).expect("test config parses")
    }

    #[test]
    fn names_of_plugins_not_found_are_warned_about_with_the_closest_one() {
        let typos = config(
            "disabled_plugins = [\"acess_log\", \"codex\"]\n[plugins.claude_apii]\nx = 1\n[plugins.zzz]\ny = 2",
        );
        let warnings = unknown_plugin_names(&typos, &["access_log", "claude_api", "codex"]);
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(
            warnings[0]
                .starts_with("no plugin named claude_apii was found, but a [plugins.NAME] section"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[0].ends_with("did you mean claude_api?"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].contains("zzz") && warnings[1].contains("`ccproxy plugins list`"),
            "{}",
            warnings[1]
        );
        assert!(
            warnings[2].contains("acess_log")
                && warnings[2].contains("disabled_plugins")
                && warnings[2].ends_with("did you mean access_log?"),
            "{}",
            warnings[2]
        );
        assert!(unknown_plugin_names(&Config::default(), &[]).is_empty());
    }

    #[test]
    fn filter_rules() {
        let open = Config::default();
        assert_eq!(plugin_allowed(&open, "anything"), Ok(()));

        let listed = config("enabled_plugins = [\"a\", \"b\"]\ndisabled_plugins = [\"b\"]");
        assert_eq!(plugin_allowed(&listed, "a"), Ok(()));
        assert_eq!(
            plugin_allowed(&listed, "b"),
            Err(
                "disabled by --disable-plugin or disabled_plugins, which wins over enabled_plugins"
                    .into()
            )
        );
        assert_eq!(
            plugin_allowed(&listed, "c"),
            Err("not in enabled_plugins".into())
        );

        let section = config("[plugins.x]\nenabled = false\n[plugins.y]\nenabled = true");
        assert_eq!(
            plugin_allowed(&section, "x"),
            Err("disabled by plugins.x.enabled = false".into())
        );
        assert_eq!(plugin_allowed(&section, "y"), Ok(()));

        let off = config("enable_plugins = false");
        assert!(plugin_allowed(&off, "a").is_err_and(|reason| reason.contains("enable_plugins")));
    }

    #[test]
    fn secret_names() {
        for name in [
            "auth_token",
            "api_key",
            "client_secret",
            "key",
            "password",
            "signing_key",
            "x_api_key",
            "authorization",
            "keyring",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in [
            "client_log_file",
            "base_url",
            "keys_dir",
            "timeout",
            "model_mappings",
            "api_key_env",
            "token_file",
            "default_max_tokens",
        ] {
            assert!(!looks_secret(name), "{name}");
        }
    }
}
