//! The configuration described for people and tools: the commented file `config init` writes,
//! the effective values with their origins that `config show` prints, the problems `config
//! validate` lists and the JSON Schema `config schema` prints.
//!
//! Core keys come from the key table in `schema.rs` (name, kind, one-line meaning) with their
//! defaults from `Config::default()`; plugin sections from what each plugin declares
//! ([`PluginDoc`]), so nothing here is written twice.

use serde_json::{Map, Value, json};

use super::error::{ConfigError, Origin};
use super::model::Config;
use super::plugin_section::{PluginConfigError, looks_secret, unknown_plugin_names};
use super::schema::{self, Field, Kind, PLUGIN_ENABLED_KEY, PLUGINS, SECTIONS, TOP_LEVEL_FIELDS};
use super::secret::{MASK, looks_like_secret_value};
use super::sources::Loaded;

/// What a plugin declares about its config section (from its manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginDoc {
    /// The plugin's name, also its section: `[plugins.<name>]`.
    pub name: String,
    /// Its defaults: an object of every key it takes (`null`: no settings).
    pub defaults: Value,
    /// One line per top-level key, `(key, meaning)`.
    pub descriptions: Vec<(String, String)>,
    /// A JSON Schema of its section, when it declares one.
    pub schema: Option<Value>,
}

impl PluginDoc {
    fn description(&self, key: &str) -> Option<&str> {
        self.descriptions
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, meaning)| meaning.as_str())
    }

    fn defaults(&self) -> Map<String, Value> {
        match &self.defaults {
            Value::Object(defaults) => defaults.clone(),
            _ => Map::new(),
        }
    }

    /// Off until enabled: its defaults say `enabled = false`.
    fn opt_in(&self) -> bool {
        self.defaults.get(PLUGIN_ENABLED_KEY) == Some(&Value::Bool(false))
    }
}

/// The environment variable of a core key (`server.port` → `SERVER__PORT`).
pub(crate) fn env_var_of(dotted: &str) -> String {
    dotted.replace('.', "__").to_ascii_uppercase()
}

/// The default of every core key as JSON, `null` for keys unset by default.
fn core_default(section: Option<&str>, field: &Field) -> Value {
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let value = match section {
        Some(section) => defaults.get(section).and_then(|s| s.get(field.name)),
        None => defaults.get(field.name),
    };
    value.cloned().unwrap_or(Value::Null)
}

/// Every core key: `(section, field)`, in the order of the file.
fn core_fields() -> impl Iterator<Item = (Option<&'static str>, &'static Field)> {
    TOP_LEVEL_FIELDS
        .iter()
        .map(|field| (None, field))
        .chain(SECTIONS.iter().flat_map(|section| {
            section
                .fields
                .iter()
                .map(|field| (Some(section.name), field))
        }))
}

fn dotted(section: Option<&str>, name: &str) -> String {
    match section {
        Some(section) => format!("{section}.{name}"),
        None => name.to_owned(),
    }
}

/// A JSON value as an inline TOML value (`null`s inside lists and tables are left out, as TOML
/// has none); `None` for `null` itself.
fn inline_toml(value: &Value) -> Option<String> {
    let value = without_nulls(value)?;
    toml::Value::try_from(value)
        .ok()
        .map(|value| value.to_string())
}

fn without_nulls(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Array(items) => Some(Value::Array(
            items.iter().filter_map(without_nulls).collect(),
        )),
        Value::Object(object) => Some(Value::Object(
            object
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), without_nulls(value)?)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// The value a key shows, secrets masked: strings under a secret-looking name (and everything
/// below one), and strings that look like a key whatever their name. Numbers and booleans are
/// never secrets (`default_max_tokens = 4096` stays).
pub fn masked(dotted: &str, value: &Value) -> Value {
    masked_below(dotted, value, false)
}

fn masked_below(dotted: &str, value: &Value, under_secret: bool) -> Value {
    let secret_name = under_secret || schema::is_secret_key(dotted) || looks_secret(dotted);
    match value {
        Value::String(text)
            if !text.is_empty() && (secret_name || looks_like_secret_value(text)) =>
        {
            Value::String(MASK.to_owned())
        }
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, inner)| {
                    (
                        key.clone(),
                        masked_below(&format!("{dotted}.{key}"), inner, secret_name),
                    )
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| masked_below(dotted, item, secret_name))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// The commented config file `ccproxy config init` writes: every core key and every key of the
/// plugins in `plugins`, each with its meaning, its environment variable and its default,
/// commented out (`#port = 8000`, sshd_config's convention), under active section headers.
/// Uncommenting any line gives a valid file.
pub fn init_template(plugins: &[PluginDoc]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# ccproxy configuration, written by `ccproxy config init` (ccproxy {}).\n\
         #\n\
         # Every key is here with its meaning, its environment variable and its default,\n\
         # commented out (`#port = 8000`): uncomment a line to change it. Precedence, key by key:\n\
         # defaults < this file < environment < command-line flags.\n\
         # `ccproxy config validate` checks this file; `ccproxy config show` shows the values in\n\
         # effect and where each came from; docs/CONFIGURATION.md has the details.\n",
        env!("CARGO_PKG_VERSION")
    ));
    let plugin_names: Vec<&str> = plugins
        .iter()
        .filter(|plugin| !plugin.opt_in())
        .map(|plugin| plugin.name.as_str())
        .collect();
    let mut current_section = None;
    for (section, field) in core_fields() {
        if section != current_section {
            if let Some(section) = section {
                out.push_str(&format!("\n[{section}]\n"));
            }
            current_section = section;
        }
        let key = dotted(section, field.name);
        let env = match key.as_str() {
            "enable_plugins" | "enabled_plugins" | "disabled_plugins" => key.to_ascii_uppercase(),
            _ => env_var_of(&key),
        };
        out.push_str(&format!("\n# {} (env {env})\n", field.doc));
        let default = core_default(section, field);
        match inline_toml(&default) {
            Some(value) => out.push_str(&format!("#{} = {value}\n", field.name)),
            None => {
                // Unset by default: an example that means the same when uncommented.
                let example = match field.kind {
                    Kind::NameList if field.name == "enabled_plugins" => {
                        inline_toml(&json!(plugin_names)).unwrap_or_else(|| "[]".to_owned())
                    }
                    Kind::NameList
                    | Kind::PathList
                    | Kind::HostList
                    | Kind::OriginList
                    | Kind::PairList => "[]".to_owned(),
                    _ => "\"\"".to_owned(),
                };
                out.push_str(&format!(
                    "# unset by default; this value means the same:\n#{} = {example}\n",
                    field.name
                ));
            }
        }
    }
    for plugin in plugins {
        out.push_str(&format!(
            "\n# Plugin {}: `ccproxy plugins info {}` lists its keys too.\n[{PLUGINS}.{}]\n",
            plugin.name, plugin.name, plugin.name
        ));
        let defaults = plugin.defaults();
        if !defaults.contains_key(PLUGIN_ENABLED_KEY) {
            out.push_str(&format!(
                "\n# load this plugin (env PLUGINS__{}__ENABLED)\n#{PLUGIN_ENABLED_KEY} = true\n",
                plugin.name.to_ascii_uppercase()
            ));
        }
        for (key, default) in &defaults {
            let env = format!(
                "PLUGINS__{}__{}",
                plugin.name.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            );
            let meaning = plugin
                .description(key)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("setting `{key}` of {}", plugin.name));
            out.push_str(&format!("\n# {} (env {env})\n", one_line(&meaning)));
            let shown = masked(&format!("{PLUGINS}.{}.{key}", plugin.name), default);
            match inline_toml(&shown) {
                Some(value) => out.push_str(&format!("#{key} = {value}\n")),
                None => out.push_str("# no default: unset\n"),
            }
        }
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One key as `config show` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownKey {
    /// Dotted name, `server.port`.
    pub key: String,
    /// The effective value, secrets masked; `null` when unset.
    pub value: Value,
    /// Where it came from.
    pub origin: Origin,
}

/// Every effective key, in file order, with where it came from and secrets masked: the core
/// keys, then each plugin section (`plugin_configs`: the plugin's name and its effective
/// section, defaults merged; sections of plugins that were not found are taken as written).
pub fn effective_keys(loaded: &Loaded, plugin_configs: &[(String, Value)]) -> Vec<ShownKey> {
    let effective = serde_json::to_value(&loaded.config).unwrap_or(Value::Null);
    let mut shown = Vec::new();
    for (section, field) in core_fields() {
        let key = dotted(section, field.name);
        let value = match section {
            Some(section) => effective.get(section).and_then(|s| s.get(field.name)),
            None => effective.get(field.name),
        };
        shown.push(ShownKey {
            value: masked(&key, value.unwrap_or(&Value::Null)),
            origin: loaded.origin(&key),
            key,
        });
    }
    let mut sections: Vec<(String, Value)> = plugin_configs.to_vec();
    for (name, section) in &loaded.config.plugins {
        if !sections.iter().any(|(known, _)| known == name) {
            sections.push((name.clone(), Value::Object(section.clone())));
        }
    }
    sections.sort_by(|left, right| left.0.cmp(&right.0));
    for (name, section) in sections {
        let Value::Object(section) = section else {
            continue;
        };
        for (key, value) in section {
            let key = format!("{PLUGINS}.{name}.{key}");
            shown.push(ShownKey {
                value: masked(&key, &value),
                origin: loaded.origin(&key),
                key,
            });
        }
    }
    shown
}

/// `default`, `file PATH`, `env NAME`, `flag --NAME`.
pub fn origin_label(origin: &Origin) -> String {
    match origin {
        Origin::Default => "default".to_owned(),
        Origin::File(path) => format!("file {}", path.display()),
        Origin::Env(name) => format!("env {name}"),
        Origin::Cli(flag) => format!("flag {flag}"),
    }
}

/// The origin as JSON: `{"source": "env", "name": "SERVER__PORT"}`.
pub fn origin_json(origin: &Origin) -> Value {
    match origin {
        Origin::Default => json!({"source": "default"}),
        Origin::File(path) => json!({"source": "file", "path": path.display().to_string()}),
        Origin::Env(name) => json!({"source": "env", "name": name}),
        Origin::Cli(flag) => json!({"source": "flag", "name": flag}),
    }
}

/// The effective keys as lines of TOML (`server.port = 9000  # env SERVER__PORT`), which read
/// back as a config file; unset keys are comments.
pub fn render_shown(keys: &[ShownKey]) -> String {
    let lines: Vec<(String, String)> = keys
        .iter()
        .map(|shown| {
            let assignment = match inline_toml(&shown.value) {
                Some(value) => format!("{} = {value}", toml_key(&shown.key)),
                None => format!("# {} unset", shown.key),
            };
            (assignment, origin_label(&shown.origin))
        })
        .collect();
    let width = lines
        .iter()
        .map(|(assignment, _)| assignment.chars().count())
        .filter(|width| *width <= 60)
        .max()
        .unwrap_or(0);
    lines
        .into_iter()
        .map(|(assignment, origin)| format!("{assignment:<width$}  # {origin}\n"))
        .collect()
}

/// A dotted key with each part quoted when TOML needs it.
fn toml_key(dotted: &str) -> String {
    dotted
        .split('.')
        .map(|part| {
            if !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                part.to_owned()
            } else {
                format!("{part:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// One line per problem loading failed with (each unknown key on its own line).
pub fn problem_lines(problems: &[ConfigError]) -> Vec<String> {
    let mut lines = Vec::new();
    for problem in problems {
        match problem {
            ConfigError::UnknownKeys { keys } => {
                lines.extend(keys.iter().map(ToString::to_string));
            }
            other => lines.push(other.to_string()),
        }
    }
    lines
}

/// The problems of the plugin sections of `loaded` against what the plugins declare, one line
/// each, and warnings for sections no plugin found has.
pub fn plugin_problems(loaded: &Loaded, plugins: &[PluginDoc]) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    for plugin in plugins {
        if let Err(error) = loaded.plugin_config(&plugin.name, &plugin.defaults) {
            match error {
                PluginConfigError::UnknownKeys { keys, .. } => {
                    problems.extend(keys.iter().map(ToString::to_string));
                }
                other => problems.push(other.to_string()),
            }
        }
    }
    let found: Vec<&str> = plugins.iter().map(|plugin| plugin.name.as_str()).collect();
    (problems, unknown_plugin_names(&loaded.config, &found))
}

/// The JSON Schema (draft 2020-12) of a config file: every core key with its type, default
/// and meaning, and the section of each plugin in `plugins` (the schema it declares, else one
/// inferred from its defaults). Unknown keys are refused (`additionalProperties: false`), as
/// the loader refuses them.
pub fn json_schema(plugins: &[PluginDoc]) -> Value {
    let mut properties = Map::new();
    for field in TOP_LEVEL_FIELDS {
        properties.insert(field.name.to_owned(), field_schema(None, field));
    }
    for section in SECTIONS {
        let fields: Map<String, Value> = section
            .fields
            .iter()
            .map(|field| {
                (
                    field.name.to_owned(),
                    field_schema(Some(section.name), field),
                )
            })
            .collect();
        properties.insert(
            section.name.to_owned(),
            json!({"type": "object", "additionalProperties": false, "properties": fields}),
        );
    }
    let plugin_sections: Map<String, Value> = plugins
        .iter()
        .map(|plugin| (plugin.name.clone(), plugin_schema(plugin)))
        .collect();
    properties.insert(
        PLUGINS.to_owned(),
        json!({
            "type": "object",
            "description": "per-plugin sections, [plugins.<name>]; the plugins found when the schema was written are described",
            "properties": plugin_sections,
            "additionalProperties": {"type": "object"},
        }),
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ccproxy configuration",
        "description": format!("the config file of ccproxy {}", env!("CARGO_PKG_VERSION")),
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    })
}

fn field_schema(section: Option<&str>, field: &Field) -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let mut schema = match field.kind {
        Kind::Host => json!({"type": "string", "minLength": 1}),
        Kind::Port => json!({"type": "integer", "minimum": 0, "maximum": 65535}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Count { min } => json!({"type": "integer", "minimum": min}),
        Kind::LogLevel => json!({"type": "string", "minLength": 1}),
        Kind::LogFormat => json!({"type": "string", "enum": ["auto", "text", "json"]}),
        Kind::Path | Kind::CaFile => json!({"type": "string"}),
        Kind::Secret => json!({"type": "string", "writeOnly": true}),
        Kind::PathList | Kind::NameList | Kind::HostList | Kind::OriginList | Kind::PairList => {
            strings
        }
    };
    if let Value::Object(object) = &mut schema {
        object.insert(
            "description".to_owned(),
            Value::String(field.doc.to_owned()),
        );
        let default = core_default(section, field);
        if !default.is_null() {
            object.insert("default".to_owned(), default);
        }
    }
    schema
}

fn plugin_schema(plugin: &PluginDoc) -> Value {
    if let Some(declared) = &plugin.schema {
        return declared.clone();
    }
    let mut schema = inferred_schema(&plugin.defaults);
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        for (key, property) in properties.iter_mut() {
            if let (Some(meaning), Value::Object(property)) = (plugin.description(key), property) {
                property.insert("description".to_owned(), Value::String(one_line(meaning)));
            }
        }
        properties
            .entry(PLUGIN_ENABLED_KEY)
            .or_insert_with(|| json!({"type": "boolean", "description": "load this plugin"}));
    }
    schema
}

/// A schema from a default value: its JSON type, and for a table its keys (an empty table is a
/// free-form map).
fn inferred_schema(default: &Value) -> Value {
    match default {
        Value::Null => json!({}),
        Value::Bool(_) => json!({"type": "boolean", "default": default}),
        Value::Number(number) if number.is_f64() => json!({"type": "number", "default": default}),
        Value::Number(_) => json!({"type": "integer", "default": default}),
        Value::String(_) => json!({"type": "string", "default": default}),
        Value::Array(_) => json!({"type": "array", "default": default}),
        Value::Object(object) if object.is_empty() => json!({"type": "object"}),
        Value::Object(object) => {
            let properties: Map<String, Value> = object
                .iter()
                .map(|(key, value)| (key.clone(), inferred_schema(value)))
                .collect();
            json!({"type": "object", "additionalProperties": false, "properties": properties})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_plugin() -> PluginDoc {
        PluginDoc {
            name: "demo".to_owned(),
            defaults: json!({
                "api_key": "",
                "base_url": "https://example.invalid",
                "retries": 3,
                "ratio": 0.5,
                "mappings": [{"pattern": "a", "target": "b"}],
                "nothing": null,
                "nested": {"inner": true},
            }),
            descriptions: vec![("retries".to_owned(), "how often to retry".to_owned())],
            schema: None,
        }
    }

    /// The template with every `#key = value` line uncommented.
    fn uncommented(template: &str) -> String {
        template
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if !rest.starts_with([' ', '#']) && !rest.is_empty() => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_template_names_every_key_and_parses_both_ways() {
        let template = init_template(&[demo_plugin()]);
        for (section, field) in core_fields() {
            assert!(
                template.contains(&format!("#{} = ", field.name)),
                "{section:?}.{} missing:\n{template}",
                field.name
            );
        }
        assert!(template.contains("# how often to retry (env PLUGINS__DEMO__RETRIES)"));
        assert!(template.contains("#port = 8000"), "{template}");
        assert!(template.contains("(env SERVER__PORT)"), "{template}");
        let as_written: toml::Table = toml::from_str(&template).expect("the template parses");
        assert!(as_written.contains_key("server"));
        let all: toml::Table =
            toml::from_str(&uncommented(&template)).expect("the uncommented template parses");
        let config: Config = all.clone().try_into().expect("it is a config");
        assert_eq!(config.server, Config::default().server);
        assert_eq!(config.enabled_plugins, Some(vec!["demo".to_owned()]));
        assert_eq!(all["plugins"]["demo"]["retries"].as_integer(), Some(3));
    }

    #[test]
    fn masking_goes_by_name_and_by_look() {
        assert_eq!(masked("plugins.x.api_key", &json!("abc")), json!(MASK));
        assert_eq!(masked("security.auth_token", &json!("abc")), json!(MASK));
        assert_eq!(masked("plugins.x.api_key", &json!("")), json!(""));
        assert_eq!(
            masked(
                "plugins.x.headers",
                &json!({"authorization": "x", "accept": "y"})
            ),
            json!({"authorization": MASK, "accept": "y"})
        );
        assert_eq!(
            masked(
                "plugins.x.note",
                &json!(["sk-ant-api03-0123456789", "plain"])
            ),
            json!([MASK, "plain"])
        );
        assert_eq!(masked("server.port", &json!(8000)), json!(8000));
        assert_eq!(masked("plugins.x.max_tokens", &json!(4096)), json!(4096));
        assert_eq!(
            masked("plugins.x.api_keys", &json!({"a": "k1", "b": ["k2"]})),
            json!({"a": MASK, "b": [MASK]})
        );
    }

    #[test]
    fn the_schema_describes_core_keys_and_plugin_sections() {
        let schema = json_schema(&[demo_plugin()]);
        let port = &schema["properties"]["server"]["properties"]["port"];
        assert_eq!(port["type"], "integer");
        assert_eq!(port["default"], 8000);
        assert_eq!(port["maximum"], 65535);
        let demo = &schema["properties"]["plugins"]["properties"]["demo"];
        assert_eq!(demo["properties"]["retries"]["type"], "integer");
        assert_eq!(demo["properties"]["ratio"]["type"], "number");
        assert_eq!(
            demo["properties"]["retries"]["description"],
            "how often to retry"
        );
        assert_eq!(demo["properties"]["enabled"]["type"], "boolean");
        assert_eq!(demo["additionalProperties"], false);
    }

    #[test]
    fn shown_keys_read_back_as_toml() {
        let keys = vec![
            ShownKey {
                key: "server.port".to_owned(),
                value: json!(9000),
                origin: Origin::Env("SERVER__PORT".to_owned()),
            },
            ShownKey {
                key: "logging.file".to_owned(),
                value: Value::Null,
                origin: Origin::Default,
            },
            ShownKey {
                key: "plugins.a b.x".to_owned(),
                value: json!("y"),
                origin: Origin::Cli("--flag"),
            },
        ];
        let text = render_shown(&keys);
        assert!(
            text.lines()
                .any(|line| line.starts_with("server.port = 9000 ")
                    && line.ends_with("  # env SERVER__PORT")),
            "{text}"
        );
        let parsed: toml::Table = toml::from_str(&text).expect("the output parses");
        assert_eq!(parsed["server"]["port"].as_integer(), Some(9000));
        assert_eq!(parsed["plugins"]["a b"]["x"].as_str(), Some("y"));
    }
}
