//! Where configuration comes from (file search, environment, CLI) and [`load`], which layers
//! them key by key: defaults < TOML file < environment < CLI flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as JsonValue;
use toml::{Table, Value};

use super::env::{self, CONFIG_FILE_VAR, SSL_CERT_FILE_VAR};
use super::error::{ConfigError, Origin, UnknownKey};
use super::model::Config;
use super::plugin_section::{PluginConfigError, plugin_allowed, validate_plugin_section};
use super::schema::{self, Kind, LEGACY_DISABLE_LOCAL_DISCOVERY, PLUGIN_ENABLED_KEY, PLUGINS};
use super::secret::{MASK, Secret, looks_like_secret_value};

/// Values given on the command line (`ccproxy serve …`); each one that is set beats the file
/// and the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliOverrides {
    /// `--host`: sets `server.host`.
    pub host: Option<String>,
    /// `--port`: sets `server.port`.
    pub port: Option<u16>,
    /// `--log-level`: sets `logging.level` (a level or filter directives).
    pub log_level: Option<String>,
    /// `--log-file`: sets `logging.file` (relative to the working directory).
    pub log_file: Option<PathBuf>,
    /// `--enable-plugin NAME` (repeatable): adds NAME to `enabled_plugins` when an allow list
    /// is set. Unlike the original, which replaced the list with only the named plugins, this
    /// adds; without an allow list every plugin that is not disabled loads already, so the flag
    /// sets `plugins.NAME.enabled = true`, which switches on a plugin that is off by default
    /// (opt-in). It never overrides a disable.
    pub enable_plugins: Vec<String>,
    /// `--disable-plugin NAME` (repeatable): adds NAME to `disabled_plugins`.
    pub disable_plugins: Vec<String>,
    /// `--plugin-dir DIR` (repeatable): appends to `plugin_discovery.directories`.
    pub plugin_dirs: Vec<PathBuf>,
    /// `--auth-token`: sets `security.auth_token`.
    pub auth_token: Option<Secret>,
    /// `--bypass`: sets `server.bypass_mode = true` (false means "not given").
    pub bypass: bool,
    /// `--quiet`: sets `server.request_lines = false` (false means "not given").
    pub quiet: bool,
}

/// Everything configuration is read from, as plain data so loading is a pure function.
///
/// `Debug` prints the names of the environment variables but not their values, which may hold
/// tokens.
#[derive(Clone, Default)]
pub struct Sources {
    /// `--config PATH`; when set, no search happens and a missing file is an error.
    pub config_file: Option<PathBuf>,
    /// A snapshot of the environment; production passes `std::env::vars()`.
    pub env: Vec<(String, String)>,
    /// The command-line overrides.
    pub cli: CliOverrides,
    /// The working directory: relative paths from the environment and the CLI, and the
    /// `./.ccproxy.toml` search, are relative to it.
    pub cwd: PathBuf,
    /// `$XDG_CONFIG_HOME`; when `None`, the platform's config folder from the `directories`
    /// crate is used.
    pub xdg_config_home: Option<PathBuf>,
}

impl Sources {
    /// The sources of this process: its environment (variables that are not UTF-8 are
    /// skipped), working directory and `$XDG_CONFIG_HOME`.
    pub fn from_process(config_file: Option<PathBuf>, cli: CliOverrides) -> std::io::Result<Self> {
        let env = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        let xdg_config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|path| path.is_absolute());
        Ok(Self {
            config_file,
            env,
            cli,
            cwd: std::env::current_dir()?,
            xdg_config_home,
        })
    }

    /// The per-user ccproxy folder, `$XDG_CONFIG_HOME/ccproxy` (or the platform's config folder
    /// plus `ccproxy`): home of `config.toml` and of the `plugins/` folder discovery searches.
    pub fn user_config_dir(&self) -> Option<PathBuf> {
        user_config_dir(self.xdg_config_home.as_deref())
    }

    /// The value of an environment variable in the snapshot (exact name).
    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        formatter
            .debug_struct("Sources")
            .field("config_file", &self.config_file)
            .field("env", &env_names)
            .field("cli", &self.cli)
            .field("cwd", &self.cwd)
            .field("xdg_config_home", &self.xdg_config_home)
            .finish()
    }
}

/// `<xdg_config_home>/ccproxy`, falling back to the platform's config folder (the
/// `directories` crate) when `xdg_config_home` is `None`.
pub fn user_config_dir(xdg_config_home: Option<&Path>) -> Option<PathBuf> {
    let base = match xdg_config_home {
        Some(path) => path.to_path_buf(),
        None => directories::BaseDirs::new()?.config_dir().to_path_buf(),
    };
    Some(base.join("ccproxy"))
}

/// The result of [`load`]: the effective config and how it came about.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Problems that did not stop loading (ignored legacy env vars, flags without effect, a
    /// config file others can write to); log each at `warn`.
    pub warnings: Vec<String>,
    /// Which source set each dotted key that is not at its default (`server.port` →
    /// `env SERVER__PORT`); see [`Loaded::origin`].
    pub origins: BTreeMap<String, Origin>,
}

impl Loaded {
    /// Where the value of a dotted key came from: the key itself or the nearest table above it
    /// that a source set, else [`Origin::Default`].
    pub fn origin(&self, dotted: &str) -> Origin {
        let mut key = dotted;
        loop {
            if let Some(origin) = self.origins.get(key) {
                return origin.clone();
            }
            match key.rsplit_once('.') {
                Some((parent, _)) => key = parent,
                None => return Origin::Default,
            }
        }
    }

    /// Checks `[plugins.<plugin>]` against the defaults the plugin declares and returns the
    /// merged object it receives (see [`validate_plugin_section`]); errors name where each bad
    /// key was set.
    pub fn plugin_config(
        &self,
        plugin: &str,
        defaults: &JsonValue,
    ) -> Result<JsonValue, PluginConfigError> {
        validate_plugin_section(plugin, defaults, self.config.plugins.get(plugin))
            .map_err(|error| error.with_origins(|key| self.origin(key)))
    }
}

/// Loads the configuration: finds and reads the file, overlays the environment, then the CLI.
///
/// Every unknown key from the file and the environment is reported in one
/// [`ConfigError::UnknownKeys`]; otherwise the first bad value is reported.
pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
    load_checked(sources).map_err(|mut problems| problems.swap_remove(0))
}

/// Loads the configuration as [`load`] does, but reports every problem found: one
/// [`ConfigError::UnknownKeys`] first when there are unknown keys, then each bad value
/// (`ccproxy config validate`). The list is never empty.
pub fn load_checked(sources: &Sources) -> Result<Loaded, Vec<ConfigError>> {
    load_layers(sources).map_err(|problem| vec![problem])?
}

/// The `[plugins.NAME]` sections of the config file as written, and the file, for checking them
/// when the rest of the configuration has problems (`ccproxy config validate`); no sections when
/// no file is found or it is not TOML.
pub fn file_plugin_sections(
    sources: &Sources,
) -> (
    Option<PathBuf>,
    BTreeMap<String, super::model::PluginSection>,
) {
    let expander = Expander { sources };
    let Ok(Some(path)) = locate_file(sources, &expander) else {
        return (None, BTreeMap::new());
    };
    let sections = read_file(&path)
        .ok()
        .and_then(|mut table| table.remove(PLUGINS))
        .and_then(|plugins| match plugins {
            Value::Table(plugins) => Some(plugins),
            _ => None,
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, section)| match serde_json::to_value(section) {
            Ok(JsonValue::Object(section)) => Some((name, section)),
            _ => None,
        })
        .collect();
    (Some(path), sections)
}

fn load_layers(sources: &Sources) -> Result<Result<Loaded, Vec<ConfigError>>, ConfigError> {
    let expander = Expander { sources };
    let mut warnings = Vec::new();
    let mut unknown = Vec::new();
    let mut errors = Vec::new();
    let mut merged = Table::new();
    let mut origins = BTreeMap::new();

    let file = locate_file(sources, &expander)?;
    if let Some(path) = &file {
        let mut table = read_file(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let origin = Origin::File(path.clone());
        apply_legacy_alias(&mut table, &origin, &mut warnings);
        migrate_original_keys(&mut table, &origin, &mut warnings);
        let mut file_origins = BTreeMap::new();
        leaf_origins(&table, "", &origin, &mut file_origins);
        let origin_of = |_: &str| origin.clone();
        check_layer(&mut table, &origin_of, base, &expander, &mut errors);
        unknown.extend(unknown_keys(&table, &origin_of, &mut errors));
        merge_layer(&mut merged, &mut origins, table, file_origins);
        warnings.extend(permission_warning(path));
    }

    let mut env_layer = env::env_layer(&sources.env);
    warnings.append(&mut env_layer.warnings);
    unknown.append(&mut env_layer.unknown);
    errors.append(&mut env_layer.errors);
    let env_origins = env_layer.origins;
    let origin_of = |key: &str| {
        env_origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| Origin::Env("the environment".to_owned()))
    };
    let mut env_table = env_layer.table;
    check_layer(
        &mut env_table,
        &origin_of,
        &sources.cwd,
        &expander,
        &mut errors,
    );
    merge_layer(&mut merged, &mut origins, env_table, env_origins.clone());
    apply_ssl_cert_file(sources, &expander, &mut merged, &mut origins, &mut warnings);

    if !unknown.is_empty() {
        errors.insert(0, ConfigError::UnknownKeys { keys: unknown });
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let mut config =
        Config::deserialize(Value::Table(merged)).map_err(|error| ConfigError::Invalid {
            message: error.message().to_owned(),
        })?;
    apply_cli(&mut config, sources, &expander, &mut origins, &mut warnings)?;
    Ok(Ok(Loaded {
        config,
        file,
        warnings,
        origins,
    }))
}

/// `SSL_CERT_FILE`, the CA file OpenSSL-based tools read, sets `http.extra_ca_file` when
/// neither the file nor `HTTP__EXTRA_CA_FILE` does (an empty `extra_ca_file = ""` in the file
/// counts as set, and turns it off).
///
/// Internal: it ranks below the file, unlike the other variables, because it is a machine-wide
/// convention rather than a ccproxy setting: a file naming a CA for ccproxy must not be
/// replaced by whatever bundle the machine points every program at. For the same reason a
/// file it names that cannot be used is skipped with a warning instead of stopping ccproxy.
fn apply_ssl_cert_file(
    sources: &Sources,
    expander: &Expander<'_>,
    merged: &mut Table,
    origins: &mut BTreeMap<String, Origin>,
    warnings: &mut Vec<String>,
) {
    const KEY: &str = "http.extra_ca_file";
    let Some(raw) = sources.var(SSL_CERT_FILE_VAR).filter(|raw| !raw.is_empty()) else {
        return;
    };
    let set_above = merged
        .get("http")
        .and_then(Value::as_table)
        .is_some_and(|http| http.contains_key("extra_ca_file"));
    if set_above {
        return;
    }
    let origin = Origin::Env(SSL_CERT_FILE_VAR.to_owned());
    let origin_of = |_: &str| origin.clone();
    let checked = check_value(
        KEY,
        Kind::CaFile,
        &Value::String(raw.to_owned()),
        &sources.cwd,
        expander,
        &origin_of,
    );
    match checked {
        Ok(path) => {
            let mut http = Table::new();
            http.insert("extra_ca_file".to_owned(), path);
            let mut layer = Table::new();
            layer.insert("http".to_owned(), Value::Table(http));
            merge_layer(
                merged,
                origins,
                layer,
                BTreeMap::from([(KEY.to_owned(), origin)]),
            );
        }
        Err(ConfigError::CaFile { path, problem, .. }) => warnings.push(format!(
            "env {SSL_CERT_FILE_VAR}={} ignored: {problem}; only the built-in CA roots are \
             trusted; fix or unset it, or set http.extra_ca_file",
            path.display()
        )),
        Err(error) => warnings.push(format!(
            "env {SSL_CERT_FILE_VAR} ignored: {error}; only the built-in CA roots are trusted"
        )),
    }
}

/// `--config`, then `CONFIG_FILE`, then `./.ccproxy.toml`, `./ccproxy.toml`,
/// `$XDG_CONFIG_HOME/ccproxy/config.toml`; the first match wins.
fn locate_file(sources: &Sources, expander: &Expander<'_>) -> Result<Option<PathBuf>, ConfigError> {
    let explicit = match (&sources.config_file, sources.var(CONFIG_FILE_VAR)) {
        (Some(path), _) => Some((sources.cwd.join(path), "--config".to_owned())),
        (None, Some(raw)) if !raw.is_empty() => {
            let expanded = expander.expand(raw).unwrap_or_else(|_| raw.to_owned());
            Some((sources.cwd.join(expanded), format!("env {CONFIG_FILE_VAR}")))
        }
        _ => None,
    };
    if let Some((path, given_by)) = explicit {
        return if path.exists() {
            Ok(Some(path))
        } else {
            Err(ConfigError::FileNotFound { path, given_by })
        };
    }
    let mut candidates = vec![
        sources.cwd.join(".ccproxy.toml"),
        sources.cwd.join("ccproxy.toml"),
    ];
    candidates.extend(
        sources
            .user_config_dir()
            .map(|folder| folder.join("config.toml")),
    );
    Ok(candidates.into_iter().find(|candidate| candidate.is_file()))
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: Table = toml::from_str(&text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        let (line, column) = line_column(&text, offset);
        let message = error
            .message()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    })?;
    match stringify_dates(Value::Table(table)) {
        Value::Table(table) => Ok(table),
        _ => Ok(Table::new()),
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

/// Replaces TOML dates and times by their text, since plugin sections travel as JSON.
pub(crate) fn stringify_dates(value: Value) -> Value {
    match value {
        Value::Datetime(datetime) => Value::String(datetime.to_string()),
        Value::Array(items) => Value::Array(items.into_iter().map(stringify_dates).collect()),
        Value::Table(table) => Value::Table(
            table
                .into_iter()
                .map(|(key, value)| (key, stringify_dates(value)))
                .collect(),
        ),
        other => other,
    }
}

/// Moves the original's top-level `plugins_disable_local_discovery` to
/// `plugin_discovery.disable_local_discovery`, unless that is set too.
fn apply_legacy_alias(table: &mut Table, origin: &Origin, warnings: &mut Vec<String>) {
    let Some(value) = table.remove(LEGACY_DISABLE_LOCAL_DISCOVERY) else {
        return;
    };
    let section = table
        .entry("plugin_discovery")
        .or_insert_with(|| Value::Table(Table::new()));
    let Value::Table(section) = section else {
        // A non-table `plugin_discovery` is reported by the layer check.
        return;
    };
    if section.contains_key("disable_local_discovery") {
        warnings.push(format!(
            "`{LEGACY_DISABLE_LOCAL_DISCOVERY}` {origin} is ignored because \
             plugin_discovery.disable_local_discovery is set too; remove the old spelling"
        ));
    } else {
        section.insert("disable_local_discovery".to_owned(), value);
        warnings.push(format!(
            "`{LEGACY_DISABLE_LOCAL_DISCOVERY}` {origin} is the original's spelling; \
             write plugin_discovery.disable_local_discovery instead"
        ));
    }
}

/// Moves keys of the Python original that mean something here to their key in this version,
/// with a warning each (`` `server.log_level` is now `logging.level` ``), unless the new key is
/// set too; and drops the original's CORS details, which this version decides per request.
fn migrate_original_keys(table: &mut Table, origin: &Origin, warnings: &mut Vec<String>) {
    for (old, new) in schema::MIGRATED_KEYS {
        let Some((old_section, old_name)) = old.split_once('.') else {
            continue;
        };
        let Some(Value::Table(section)) = table.get_mut(old_section) else {
            continue;
        };
        let Some(mut value) = section.remove(old_name) else {
            continue;
        };
        if section.is_empty() && schema::section(old_section).is_none() {
            table.remove(old_section);
        }
        if *new == "server.cors_origins"
            && let Value::Array(items) = &mut value
        {
            // The original's patterns (`http://localhost:*/*`) are not origins.
            let (kept, dropped): (Vec<Value>, Vec<Value>) = items
                .drain(..)
                .partition(|item| item.as_str().and_then(schema::normalize_origin).is_some());
            if !dropped.is_empty() {
                let dropped: Vec<String> = dropped.iter().map(ToString::to_string).collect();
                warnings.push(format!(
                    "`{old}` {origin}: {} dropped: server.cors_origins takes exact origins \
                     (scheme://host[:port]), not patterns",
                    dropped.join(", ")
                ));
            }
            *items = kept;
        }
        let Some((new_section, new_name)) = new.split_once('.') else {
            continue;
        };
        let target = table
            .entry(new_section)
            .or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(target) = target else {
            continue;
        };
        if target.contains_key(new_name) {
            warnings.push(format!(
                "`{old}` {origin} is ignored because `{new}` is set too; remove the old key"
            ));
        } else {
            target.insert(new_name.to_owned(), value);
            warnings.push(format!(
                "`{old}` is now `{new}` ({origin}); the value was taken, rename the key"
            ));
        }
    }
    if let Some(Value::Table(cors)) = table.get_mut("cors") {
        for key in schema::IGNORED_CORS_KEYS {
            if cors.remove(*key).is_some() {
                warnings.push(format!(
                    "`cors.{key}` {origin} is ignored: a listed origin's preflight is answered \
                     with the methods and headers it asks for; remove it"
                ));
            }
        }
        if cors.is_empty() {
            table.remove("cors");
        }
    }
}

/// Records `origin` for every leaf (value or array) of `table`.
fn leaf_origins(table: &Table, prefix: &str, origin: &Origin, out: &mut BTreeMap<String, Origin>) {
    for (key, value) in table {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(inner) if !inner.is_empty() => leaf_origins(inner, &dotted, origin, out),
            _ => {
                out.insert(dotted, origin.clone());
            }
        }
    }
}

/// Checks every known key of one layer against its kind, normalising values and resolving
/// paths. Bad values are removed from the table and reported in `errors`; unknown keys are
/// left for [`unknown_keys`].
fn check_layer(
    table: &mut Table,
    origin_of: &dyn Fn(&str) -> Origin,
    base: &Path,
    expander: &Expander<'_>,
    errors: &mut Vec<ConfigError>,
) {
    let bad = |key: &str, value: &Value, expected: String| ConfigError::BadValue {
        key: key.to_owned(),
        value: shown(key, value),
        origin: origin_of(key),
        expected,
    };
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        if let Some(section) = schema::section(&key) {
            let Some(Value::Table(inner)) = table.get_mut(&key) else {
                if let Some(value) = table.remove(&key) {
                    errors.push(bad(&key, &value, format!("a table ([{key}])")));
                }
                continue;
            };
            for field in section.fields {
                let dotted = format!("{key}.{}", field.name);
                if let Some(value) = inner.remove(field.name) {
                    match check_value(&dotted, field.kind, &value, base, expander, origin_of) {
                        Ok(value) => {
                            inner.insert(field.name.to_owned(), value);
                        }
                        Err(error) => errors.push(error),
                    }
                }
            }
        } else if let Some(field) = schema::field_at(&key) {
            if let Some(value) = table.remove(&key) {
                match check_value(&key, field.kind, &value, base, expander, origin_of) {
                    Ok(value) => {
                        table.insert(key, value);
                    }
                    Err(error) => errors.push(error),
                }
            }
        } else if key == PLUGINS {
            let Some(Value::Table(plugins)) = table.get_mut(&key) else {
                if let Some(value) = table.remove(&key) {
                    errors.push(bad(&key, &value, "a table of plugin sections".to_owned()));
                }
                continue;
            };
            let names: Vec<String> = plugins.keys().cloned().collect();
            for name in names {
                let dotted = format!("{PLUGINS}.{name}");
                let Some(Value::Table(section)) = plugins.get_mut(&name) else {
                    if let Some(value) = plugins.remove(&name) {
                        errors.push(bad(&dotted, &value, format!("a table ([{dotted}])")));
                    }
                    continue;
                };
                let enabled_key = format!("{dotted}.{PLUGIN_ENABLED_KEY}");
                if let Some(value) = section.get(PLUGIN_ENABLED_KEY)
                    && !value.is_bool()
                {
                    errors.push(bad(&enabled_key, value, Kind::Bool.expected()));
                    section.remove(PLUGIN_ENABLED_KEY);
                }
            }
        }
    }
}

/// Checks one core value and, for paths, expands variables and resolves it against `base`.
fn check_value(
    dotted: &str,
    kind: Kind,
    value: &Value,
    base: &Path,
    expander: &Expander<'_>,
    origin_of: &dyn Fn(&str) -> Origin,
) -> Result<Value, ConfigError> {
    let checked = kind.check(value).ok_or_else(|| ConfigError::BadValue {
        key: dotted.to_owned(),
        value: shown(dotted, value),
        origin: origin_of(dotted),
        expected: kind.expected(),
    })?;
    let resolve = |raw: &str| -> Result<Value, ConfigError> {
        let path = expander
            .resolve(raw, base)
            .map_err(|variable| ConfigError::UnsetVariable {
                key: dotted.to_owned(),
                value: raw.to_owned(),
                origin: origin_of(dotted),
                variable,
            })?;
        Ok(Value::String(path.to_string_lossy().into_owned()))
    };
    match (kind, checked) {
        (Kind::Path, Value::String(raw)) if !raw.is_empty() => resolve(&raw),
        (Kind::CaFile, Value::String(raw)) if !raw.is_empty() => {
            let resolved = resolve(&raw)?;
            let path = PathBuf::from(resolved.as_str().unwrap_or_default());
            crate::upstream::check_ca_file(&path).map_err(|problem| ConfigError::CaFile {
                key: dotted.to_owned(),
                path,
                origin: origin_of(dotted),
                problem,
            })?;
            Ok(resolved)
        }
        (Kind::PathList, Value::Array(items)) => items
            .iter()
            .map(|item| resolve(item.as_str().unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (_, checked) => Ok(checked),
    }
}

/// A value as TOML text for an error message, masked for secret keys.
fn shown(dotted: &str, value: &Value) -> String {
    if schema::is_secret_key(dotted) || value.as_str().is_some_and(looks_like_secret_value) {
        MASK.to_owned()
    } else {
        value.to_string()
    }
}

/// Every key of the layer that `Config` does not have, found by deserialising it through
/// `serde_ignored`.
fn unknown_keys(
    table: &Table,
    origin_of: &dyn Fn(&str) -> Origin,
    errors: &mut Vec<ConfigError>,
) -> Vec<UnknownKey> {
    let mut paths: Vec<Vec<String>> = Vec::new();
    let result: Result<Config, _> =
        serde_ignored::deserialize(Value::Table(table.clone()), |path| {
            paths.push(path_segments(&path));
        });
    if let Err(error) = result {
        errors.push(ConfigError::Invalid {
            message: error.message().to_owned(),
        });
    }
    paths
        .into_iter()
        .map(|segments| {
            let key = segments.join(".");
            let (table_name, known) = match segments.as_slice() {
                [_] => ("top level".to_owned(), schema::top_level_keys()),
                [section, ..] => match schema::section(section) {
                    Some(section) => (
                        format!("[{}]", section.name),
                        section.fields.iter().map(|field| field.name).collect(),
                    ),
                    None => (
                        format!("[{}]", segments[..segments.len() - 1].join(".")),
                        Vec::new(),
                    ),
                },
                [] => ("top level".to_owned(), schema::top_level_keys()),
            };
            let last = segments.last().map(String::as_str).unwrap_or_default();
            let suggestion = schema::suggest(last, &known).map(|name| match segments.as_slice() {
                [_] => name.to_owned(),
                [section, ..] => format!("{section}.{name}"),
                [] => name.to_owned(),
            });
            UnknownKey {
                hint: schema::legacy_hint(&key).map(str::to_owned),
                origin: origin_of(&key),
                key,
                table: table_name,
                known: known.into_iter().map(str::to_owned).collect(),
                suggestion,
            }
        })
        .collect()
}

fn path_segments(path: &serde_ignored::Path<'_>) -> Vec<String> {
    let mut segments = match path {
        serde_ignored::Path::Root => return Vec::new(),
        serde_ignored::Path::Seq { parent, .. }
        | serde_ignored::Path::Map { parent, .. }
        | serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => path_segments(parent),
    };
    match path {
        serde_ignored::Path::Seq { index, .. } => segments.push(index.to_string()),
        serde_ignored::Path::Map { key, .. } => segments.push(key.clone()),
        _ => {}
    }
    segments
}

/// Overlays one layer on the merged table: tables merge key by key, anything else replaces.
fn merge_layer(
    merged: &mut Table,
    origins: &mut BTreeMap<String, Origin>,
    layer: Table,
    layer_origins: BTreeMap<String, Origin>,
) {
    deep_merge(merged, layer);
    for (key, origin) in layer_origins {
        // A value replacing a table hides everything the lower layer set below it.
        let below = format!("{key}.");
        origins.retain(|existing, _| !existing.starts_with(&below));
        origins.insert(key, origin);
    }
}

pub(crate) fn deep_merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base_table)), Value::Table(overlay_table)) => {
                deep_merge(base_table, overlay_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Applies the CLI flags, which beat every other source.
fn apply_cli(
    config: &mut Config,
    sources: &Sources,
    expander: &Expander<'_>,
    origins: &mut BTreeMap<String, Origin>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let cli = &sources.cli;
    let cli_origin = |flag: &'static str| move |_: &str| Origin::Cli(flag);
    let mut set = |key: &str, flag: &'static str| {
        origins.insert(key.to_owned(), Origin::Cli(flag));
    };
    if let Some(host) = &cli.host {
        let checked = check_value(
            "server.host",
            Kind::Host,
            &Value::String(host.clone()),
            &sources.cwd,
            expander,
            &cli_origin("--host"),
        )?;
        config.server.host = checked.as_str().unwrap_or(host).to_owned();
        set("server.host", "--host");
    }
    if let Some(port) = cli.port {
        config.server.port = port;
        set("server.port", "--port");
    }
    if let Some(level) = &cli.log_level {
        let checked = check_value(
            "logging.level",
            Kind::LogLevel,
            &Value::String(level.clone()),
            &sources.cwd,
            expander,
            &cli_origin("--log-level"),
        )?;
        config.logging.level = checked.as_str().unwrap_or(level).to_owned();
        set("logging.level", "--log-level");
    }
    if let Some(file) = &cli.log_file {
        config.logging.file = Some(sources.cwd.join(file));
        set("logging.file", "--log-file");
    }
    if let Some(token) = &cli.auth_token {
        if token.is_empty() {
            warnings.push("--auth-token is empty and was ignored; pass a token".to_owned());
        } else {
            config.security.auth_token = Some(token.clone());
            set("security.auth_token", "--auth-token");
        }
    }
    if cli.bypass {
        config.server.bypass_mode = true;
        set("server.bypass_mode", "--bypass");
    }
    if cli.quiet {
        config.server.request_lines = false;
        set("server.request_lines", "--quiet");
    }
    for directory in &cli.plugin_dirs {
        let raw = directory.to_string_lossy();
        let resolved = expander.resolve(&raw, &sources.cwd).map_err(|variable| {
            ConfigError::UnsetVariable {
                key: "plugin_discovery.directories".to_owned(),
                value: raw.clone().into_owned(),
                origin: Origin::Cli("--plugin-dir"),
                variable,
            }
        })?;
        if !config.plugin_discovery.directories.contains(&resolved) {
            config.plugin_discovery.directories.push(resolved);
        }
        set("plugin_discovery.directories", "--plugin-dir");
    }
    for name in cli.disable_plugins.iter().map(|name| name.trim()) {
        let disabled = config.disabled_plugins.get_or_insert_with(Vec::new);
        if !name.is_empty() && !disabled.iter().any(|existing| existing == name) {
            disabled.push(name.to_owned());
        }
        set("disabled_plugins", "--disable-plugin");
    }
    for name in cli.enable_plugins.iter().map(|name| name.trim()) {
        match &mut config.enabled_plugins {
            Some(enabled) => {
                if !name.is_empty() && !enabled.iter().any(|existing| existing == name) {
                    enabled.push(name.to_owned());
                }
                set("enabled_plugins", "--enable-plugin");
            }
            // Without an allow list every plugin that is not disabled loads
            // already; the flag switches on one that is off by default.
            None if !name.is_empty() => {
                let section = config.plugins.entry(name.to_owned()).or_default();
                if section.get(PLUGIN_ENABLED_KEY) != Some(&JsonValue::Bool(false)) {
                    section.insert(PLUGIN_ENABLED_KEY.to_owned(), JsonValue::Bool(true));
                }
            }
            None => {}
        }
    }
    for name in &cli.enable_plugins {
        if config.enabled_plugins.is_some()
            && let Err(reason) = plugin_allowed(config, name.trim())
        {
            warnings.push(format!("--enable-plugin {name} has no effect: {reason}"));
        }
    }
    Ok(())
}

/// Warns about a config file that users other than its owner can change.
fn permission_warning(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o022 != 0).then(|| {
            format!(
                "config file {} can be changed by other users, who could then point this proxy \
                 at their own plugins; run chmod go-w on it",
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Expands `~`, `${HOME}`, `${XDG_CONFIG_HOME}` and any other `${VAR}` from the snapshot.
struct Expander<'a> {
    sources: &'a Sources,
}

impl Expander<'_> {
    fn home(&self) -> Option<String> {
        self.sources
            .var("HOME")
            .filter(|home| !home.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                directories::BaseDirs::new()
                    .map(|dirs| dirs.home_dir().to_string_lossy().into_owned())
            })
    }

    fn lookup(&self, name: &str) -> Option<String> {
        match name {
            "HOME" => self.home(),
            "XDG_CONFIG_HOME" => self
                .sources
                .xdg_config_home
                .as_ref()
                .map(|path| path.to_string_lossy().into_owned())
                .or_else(|| {
                    self.sources
                        .var(name)
                        .filter(|value| !value.is_empty())
                        .map(str::to_owned)
                })
                .or_else(|| self.home().map(|home| format!("{home}/.config"))),
            _ => self
                .sources
                .var(name)
                .filter(|value| !value.is_empty())
                .map(str::to_owned),
        }
    }

    /// Expands variables; `Err` names a variable that is not set.
    fn expand(&self, raw: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = raw;
        if rest == "~" || rest.starts_with("~/") {
            out.push_str(&self.home().ok_or_else(|| "HOME".to_owned())?);
            rest = &rest[1..];
        }
        while let Some(start) = rest.find("${") {
            let Some(length) = rest[start + 2..].find('}') else {
                break;
            };
            let name = &rest[start + 2..start + 2 + length];
            out.push_str(&rest[..start]);
            out.push_str(&self.lookup(name).ok_or_else(|| name.to_owned())?);
            rest = &rest[start + 3 + length..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Expands and makes the path absolute against `base`.
    fn resolve(&self, raw: &str, base: &Path) -> Result<PathBuf, String> {
        Ok(base.join(self.expand(raw)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::Scratch;

    fn sources(scratch: &Scratch) -> Sources {
        Sources {
            env: vec![("HOME".into(), scratch.path("home").to_string_lossy().into())],
            cwd: scratch.path("work"),
            xdg_config_home: Some(scratch.path("xdg")),
            ..Sources::default()
        }
    }

    fn load_err(sources: &Sources) -> ConfigError {
        match load(sources) {
            Ok(loaded) => panic!("expected an error, loaded {:?}", loaded.config),
            Err(error) => error,
        }
    }

    #[test]
    fn no_file_anywhere_gives_the_defaults() {
        let scratch = Scratch::new();
        let loaded = load(&sources(&scratch)).expect("defaults load");
        assert_eq!(loaded.file, None);
        assert_eq!(loaded.config, Config::default());
        assert_eq!(loaded.origin("server.port"), Origin::Default);
    }

    #[test]
    fn file_search_order() {
        let scratch = Scratch::new();
        let mut sources = sources(&scratch);
        let xdg = scratch.write("xdg/ccproxy/config.toml", "[server]\nport = 1");
        assert_eq!(load(&sources).expect("loads").file, Some(xdg));
        let plain = scratch.write("work/ccproxy.toml", "[server]\nport = 2");
        assert_eq!(load(&sources).expect("loads").file, Some(plain));
        let dotted = scratch.write("work/.ccproxy.toml", "[server]\nport = 3");
        let loaded = load(&sources).expect("loads");
        assert_eq!(loaded.file, Some(dotted));
        assert_eq!(loaded.config.server.port, 3);
        let named = scratch.write("elsewhere/named.toml", "[server]\nport = 4");
        sources
            .env
            .push(("CONFIG_FILE".into(), named.to_string_lossy().into()));
        assert_eq!(load(&sources).expect("loads").config.server.port, 4);
        let explicit = scratch.write("elsewhere/explicit.toml", "[server]\nport = 5");
        sources.config_file = Some(explicit.clone());
        let loaded = load(&sources).expect("loads");
        assert_eq!(loaded.file, Some(explicit));
        assert_eq!(loaded.config.server.port, 5);
    }

    #[test]
    fn explicit_missing_config_file_is_an_error_naming_it() {
        let scratch = Scratch::new();
        let mut sources = sources(&scratch);
        scratch.write("work/ccproxy.toml", "");
        sources.config_file = Some("missing.toml".into());
        let error = load_err(&sources);
        let message = error.to_string();
        assert!(
            matches!(error, ConfigError::FileNotFound { .. }),
            "{message}"
        );
        assert!(
            message.contains("missing.toml") && message.contains("--config"),
            "{message}"
        );
        sources.config_file = None;
        sources
            .env
            .push(("CONFIG_FILE".into(), "/nowhere/x.toml".into()));
        let message = load_err(&sources).to_string();
        assert!(
            message.contains("/nowhere/x.toml") && message.contains("CONFIG_FILE"),
            "{message}"
        );
    }

    #[test]
    fn toml_syntax_error_has_the_line() {
        let scratch = Scratch::new();
        let path = scratch.write("work/ccproxy.toml", "[server]\nport = 8000\nhost = \n");
        let error = load_err(&sources(&scratch));
        let ConfigError::Syntax { line, column, .. } = &error else {
            panic!("expected a syntax error, got {error}");
        };
        assert_eq!((*line, *column), (3, 8), "{error}");
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_all_named_with_the_known_ones() {
        let scratch = Scratch::new();
        let path = scratch.write(
            "work/ccproxy.toml",
            // `cors.origins` would be taken (it is now `server.cors_origins`); `expose` is not.
            "colour = 1\n[server]\nprot = 9000\n[cors]\nexpose = []\n[logging]\nlevel = \"info\"\nformatt = \"json\"\n",
        );
        let error = load_err(&sources(&scratch));
        let ConfigError::UnknownKeys { keys } = &error else {
            panic!("expected unknown keys, got {error}");
        };
        let names: Vec<&str> = keys.iter().map(|key| key.key.as_str()).collect();
        assert_eq!(names, ["colour", "cors", "logging.formatt", "server.prot"]);
        let message = error.to_string();
        let expected = format!(
            "unknown config key `server.prot` in {}; known keys in [server]: host, port, bypass_mode",
            path.display()
        );
        assert!(message.contains(&expected), "{message}");
        assert!(message.contains("did you mean `server.port`?"), "{message}");
        assert!(message.contains("Python ccproxy"), "{message}");
        assert!(
            !message.contains('\n') && !message.ends_with('.'),
            "{message}"
        );
    }

    #[test]
    fn unknown_env_field_is_named_alongside_file_keys() {
        let scratch = Scratch::new();
        scratch.write("work/ccproxy.toml", "[server]\nprot = 1\n");
        let mut sources = sources(&scratch);
        sources
            .env
            .push(("HTTP__CONECT_TIMEOUT_SECONDS".into(), "3".into()));
        let message = load_err(&sources).to_string();
        assert!(message.contains("`server.prot` in"), "{message}");
        assert!(
            message.contains(
                "unknown config key `http.conect_timeout_seconds` from env HTTP__CONECT_TIMEOUT_SECONDS; known keys in [http]"
            ),
            "{message}"
        );
    }

    fn check_bad_value(file: &str, expected: &str) {
        let scratch = Scratch::new();
        let path = scratch.write("work/ccproxy.toml", file);
        let message = load_err(&sources(&scratch)).to_string();
        let expected = expected.replace("FILE", &path.display().to_string());
        assert_eq!(message, expected);
    }

    #[test]
    fn bad_values_name_key_value_file_and_expectation() {
        check_bad_value(
            "[server]\nport = \"abc\"",
            "server.port = \"abc\" in FILE: expected an integer 0-65535",
        );
        check_bad_value(
            "[server]\nport = 70000",
            "server.port = 70000 in FILE: expected an integer 0-65535",
        );
        check_bad_value(
            "[logging]\nformat = \"yaml\"",
            "logging.format = \"yaml\" in FILE: expected one of auto, text, json",
        );
        check_bad_value(
            "server = 1",
            "server = 1 in FILE: expected a table ([server])",
        );
        check_bad_value(
            "[security]\nauth_token = 12345",
            "security.auth_token = *** in FILE: expected a string",
        );
        check_bad_value(
            "[plugins.access_log]\nenabled = \"nope\"",
            "plugins.access_log.enabled = \"nope\" in FILE: expected true or false",
        );
        check_bad_value(
            "enabled_plugins = \"a,b\"",
            "enabled_plugins = \"a,b\" in FILE: expected a list of plugin names",
        );
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let scratch = Scratch::new();
        let mut sources = sources(&scratch);
        sources.env.push(("SERVER__PORT".into(), "eighty".into()));
        let message = load_err(&sources).to_string();
        assert_eq!(
            message,
            "env SERVER__PORT=eighty: expected an integer 0-65535; fix or unset it"
        );
    }

    #[test]
    fn paths_expand_and_resolve_against_their_source() {
        let scratch = Scratch::new();
        let file = scratch.write(
            "work/conf/ccproxy.toml",
            "[plugin_discovery]\ndirectories = [\"~/p\", \"${XDG_CONFIG_HOME}/extra\", \"rel\"]\n[logging]\nfile = \"logs/ccproxy.log\"",
        );
        let mut sources = sources(&scratch);
        sources.config_file = Some(file);
        sources.cli.plugin_dirs = vec!["cli-rel".into()];
        let loaded = load(&sources).expect("loads");
        assert_eq!(
            loaded.config.plugin_discovery.directories,
            [
                scratch.path("home/p"),
                scratch.path("xdg/extra"),
                scratch.path("work/conf/rel"),
                scratch.path("work/cli-rel"),
            ]
        );
        assert_eq!(
            loaded.config.logging.file,
            Some(scratch.path("work/conf/logs/ccproxy.log"))
        );
    }

    #[test]
    fn unset_variable_in_a_path_is_an_error() {
        let scratch = Scratch::new();
        scratch.write(
            "work/ccproxy.toml",
            "[plugin_discovery]\ndirectories = [\"${NOPE}/x\"]",
        );
        let message = load_err(&sources(&scratch)).to_string();
        assert!(message.contains("${NOPE} is not set"), "{message}");
    }

    #[test]
    fn legacy_top_level_disable_local_discovery_is_accepted() {
        let scratch = Scratch::new();
        scratch.write(
            "work/ccproxy.toml",
            "plugins_disable_local_discovery = true",
        );
        let loaded = load(&sources(&scratch)).expect("loads");
        assert!(loaded.config.plugin_discovery.disable_local_discovery);
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("original's spelling"))
        );
        let mut sources = sources(&scratch);
        scratch.write("work/ccproxy.toml", "");
        sources
            .env
            .push(("PLUGINS_DISABLE_LOCAL_DISCOVERY".into(), "1".into()));
        assert!(
            load(&sources)
                .expect("loads")
                .config
                .plugin_discovery
                .disable_local_discovery
        );
    }

    #[test]
    fn a_table_sets_only_the_keys_it_names() {
        let scratch = Scratch::new();
        scratch.write(
            "work/ccproxy.toml",
            "[server]\nport = 9000\n[plugins.x]\na = 1\nb = 2",
        );
        let mut sources = sources(&scratch);
        sources.env.push(("PLUGINS__X__B".into(), "3".into()));
        let loaded = load(&sources).expect("loads");
        let defaults = crate::config::ServerConfig::default();
        assert_eq!(loaded.config.server.host, defaults.host);
        assert_eq!(loaded.config.server.shutdown_grace_seconds, 30);
        let section = &loaded.config.plugins["x"];
        assert_eq!(section["a"], JsonValue::from(1));
        assert_eq!(section["b"], JsonValue::from(3));
        assert_eq!(
            loaded.origin("plugins.x.b"),
            Origin::Env("PLUGINS__X__B".into())
        );
        assert!(matches!(loaded.origin("plugins.x.a"), Origin::File(_)));
    }

    #[test]
    fn toml_dates_reach_plugins_as_text() {
        let scratch = Scratch::new();
        scratch.write("work/ccproxy.toml", "[plugins.x]\nsince = 2024-01-02");
        let loaded = load(&sources(&scratch)).expect("loads");
        assert_eq!(
            loaded.config.plugins["x"]["since"],
            JsonValue::from("2024-01-02")
        );
    }

    #[test]
    fn enable_plugin_without_an_allow_list_switches_the_plugin_on() {
        let scratch = Scratch::new();
        let mut sources = sources(&scratch);
        sources.cli.enable_plugins = vec!["request_tracer".into()];
        let loaded = load(&sources).expect("loads");
        assert_eq!(loaded.config.enabled_plugins, None);
        assert_eq!(
            loaded.config.plugins["request_tracer"]["enabled"],
            JsonValue::Bool(true)
        );
        assert!(plugin_allowed(&loaded.config, "request_tracer").is_ok());
    }

    #[test]
    fn enable_plugin_does_not_beat_a_disable() {
        let scratch = Scratch::new();
        scratch.write(
            "work/ccproxy.toml",
            "enabled_plugins = [\"a\"]\ndisabled_plugins = [\"b\"]",
        );
        let mut sources = sources(&scratch);
        sources.cli.enable_plugins = vec!["b".into()];
        let loaded = load(&sources).expect("loads");
        assert_eq!(
            loaded.config.enabled_plugins,
            Some(vec!["a".into(), "b".into()])
        );
        assert!(plugin_allowed(&loaded.config, "b").is_err());
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.starts_with("--enable-plugin b has no effect: disabled by")),
            "{:?}",
            loaded.warnings
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_config_file_others_can_write_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = Scratch::new();
        let path = scratch.write("work/ccproxy.toml", "");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .expect("chmod works in the scratch folder");
        let loaded = load(&sources(&scratch)).expect("loads");
        assert!(
            loaded.warnings.iter().any(|w| w.contains("chmod go-w")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn a_ca_file_resolves_against_the_config_file_and_is_checked() {
        let scratch = Scratch::new();
        let ca = scratch.write("work/conf/corp-ca.pem", crate::upstream::TEST_CA);
        let file = scratch.write(
            "work/conf/ccproxy.toml",
            "[http]\nextra_ca_file = \"corp-ca.pem\"",
        );
        let mut sources = sources(&scratch);
        sources.config_file = Some(file.clone());
        let loaded = load(&sources).expect("a usable CA file loads");
        assert_eq!(loaded.config.http.extra_ca_file, Some(ca));

        scratch.write(
            "work/conf/ccproxy.toml",
            "[http]\nextra_ca_file = \"nope.pem\"",
        );
        let message = load_err(&sources).to_string();
        let missing = scratch.path("work/conf/nope.pem");
        assert!(
            message.starts_with(&format!(
                "http.extra_ca_file = \"{}\" in {}: cannot read it: ",
                missing.display(),
                file.display()
            )),
            "{message}"
        );
        assert!(
            message.ends_with("; point it at a PEM file of CA certificates or remove the setting"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");

        scratch.write("work/conf/not-a-ca.pem", "hello");
        sources.config_file = None;
        scratch.write("work/ccproxy.toml", "");
        sources
            .env
            .push(("HTTP__EXTRA_CA_FILE".into(), "conf/not-a-ca.pem".into()));
        let message = load_err(&sources).to_string();
        assert_eq!(
            message,
            format!(
                "http.extra_ca_file = \"{}\" from env HTTP__EXTRA_CA_FILE: it holds no PEM \
                 certificate (a -----BEGIN CERTIFICATE----- block); point it at a PEM file of \
                 CA certificates or remove the setting",
                scratch.path("work/conf/not-a-ca.pem").display()
            )
        );
    }

    #[test]
    fn ssl_cert_file_is_a_fallback_below_the_file() {
        let scratch = Scratch::new();
        let machine_ca = scratch.write("work/machine-ca.pem", crate::upstream::TEST_CA);
        let own_ca = scratch.write("work/own-ca.pem", crate::upstream::TEST_CA);
        let mut sources = sources(&scratch);
        sources
            .env
            .push(("SSL_CERT_FILE".into(), "machine-ca.pem".into()));
        let loaded = load(&sources).expect("loads");
        assert_eq!(loaded.config.http.extra_ca_file, Some(machine_ca));
        assert_eq!(
            loaded.origin("http.extra_ca_file"),
            Origin::Env("SSL_CERT_FILE".into())
        );

        scratch.write(
            "work/ccproxy.toml",
            "[http]\nextra_ca_file = \"own-ca.pem\"",
        );
        let loaded = load(&sources).expect("loads");
        assert_eq!(loaded.config.http.extra_ca_file, Some(own_ca));
        assert!(matches!(
            loaded.origin("http.extra_ca_file"),
            Origin::File(_)
        ));

        scratch.write("work/ccproxy.toml", "[http]\nextra_ca_file = \"\"");
        let loaded = load(&sources).expect("loads");
        assert_eq!(
            loaded.config.http.extra_ca_file, None,
            "an empty key turns it off"
        );
    }

    #[test]
    fn an_unusable_ssl_cert_file_is_skipped_with_a_warning() {
        let scratch = Scratch::new();
        let mut sources = sources(&scratch);
        sources
            .env
            .push(("SSL_CERT_FILE".into(), "/nonexistent/bundle.pem".into()));
        let loaded = load(&sources).expect("a foreign variable does not stop loading");
        assert_eq!(loaded.config.http.extra_ca_file, None);
        let [warning] = loaded.warnings.as_slice() else {
            panic!("expected one warning: {:?}", loaded.warnings);
        };
        assert!(
            warning
                .starts_with("env SSL_CERT_FILE=/nonexistent/bundle.pem ignored: cannot read it: "),
            "{warning}"
        );
        assert!(
            warning.ends_with("fix or unset it, or set http.extra_ca_file"),
            "{warning}"
        );
    }

    #[test]
    fn line_and_column_count_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
