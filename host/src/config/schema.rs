//! The list of core keys and their kinds: what env values are parsed as, what a value is
//! checked against, and what "known keys" an error lists.
//!
//! Internal: this table must agree with the serde structs in `model.rs`; the tests at the
//! bottom of this file prove it does in both directions.

use toml::Value;

/// What a core key holds; decides how an env value is parsed and how a value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A non-empty host name or address.
    Host,
    /// An integer 0-65535.
    Port,
    /// `true` or `false`.
    Bool,
    /// A non-negative integer of at least `min`.
    Count { min: i64 },
    /// A level or `tracing` filter directives.
    LogLevel,
    /// `auto`, `text` or `json`.
    LogFormat,
    /// A path (relative ones are resolved against the layer's base folder).
    Path,
    /// A path, as [`Kind::Path`], to a PEM file of CA certificates; the loader reads it and
    /// refuses a file that cannot serve as trusted roots.
    CaFile,
    /// A secret string.
    Secret,
    /// A list of paths.
    PathList,
    /// A list of plugin names.
    NameList,
    /// A list of host names (no port), or `*`; stored lower-case.
    HostList,
    /// A list of web origins, `scheme://host[:port]`; stored lower-case, without a trailing `/`.
    OriginList,
    /// A list of `PROVIDER=FALLBACK` pairs of plugin names; stored trimmed, `name=name`.
    PairList,
}

/// One core key.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// What it means, one sentence: the comment `config init` writes and the
    /// description `config schema` gives (docs/CONFIGURATION.md has the long form).
    pub(crate) doc: &'static str,
}

/// One `[section]` of core keys.
#[derive(Debug)]
pub(crate) struct Section {
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [Field],
}

const fn field(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field { name, kind, doc }
}

const SECONDS: Kind = Kind::Count { min: 0 };
const POSITIVE: Kind = Kind::Count { min: 1 };

/// Every `[section]` of the core config, in the order of `Config`.
pub(crate) const SECTIONS: &[Section] = &[
    Section {
        name: "server",
        fields: &[
            field(
                "host",
                Kind::Host,
                "address to bind; 0.0.0.0 listens on every interface (then set security.auth_token)",
            ),
            field("port", Kind::Port, "port to bind; 0 picks a free port"),
            field(
                "bypass_mode",
                Kind::Bool,
                "provider endpoints answer with canned responses without calling upstreams",
            ),
            field(
                "max_request_body_bytes",
                POSITIVE,
                "largest request body accepted; larger ones get 413",
            ),
            field(
                "body_budget_bytes",
                POSITIVE,
                "bytes of request bodies held at once; past it 503 with Retry-After",
            ),
            field(
                "shutdown_grace_seconds",
                SECONDS,
                "after SIGINT/SIGTERM, how long in-flight requests may finish",
            ),
            field(
                "header_read_timeout_seconds",
                POSITIVE,
                "a connection must send a complete request head within this long",
            ),
            field(
                "idle_timeout_seconds",
                POSITIVE,
                "a kept-alive connection idle this long is closed",
            ),
            // 0: derived from the open-file limit.
            field(
                "max_connections",
                SECONDS,
                "client connections served at once; 0 derives it from the open-file limit",
            ),
            field(
                "request_timeout_seconds",
                POSITIVE,
                "longest time a plugin route may take to answer",
            ),
            field(
                "allowed_hosts",
                Kind::HostList,
                "Host names clients may use besides localhost, IP addresses and server.host; \"*\" allows any",
            ),
            field(
                "cors_origins",
                Kind::OriginList,
                "web origins (scheme://host[:port]) whose pages may call the proxy",
            ),
            field(
                "plugin_call_timeout_seconds",
                POSITIVE,
                "longest wait for a plugin's middleware or provider.prepare; past it 504",
            ),
            // 0: the number of cores, at least 2.
            field(
                "plugin_worker_threads",
                SECONDS,
                "threads running plugin code; 0: the number of cores, at least 2",
            ),
            field(
                "request_lines",
                Kind::Bool,
                "print one line per request (method, path, status, duration) on stdout; --quiet turns it off",
            ),
        ],
    },
    Section {
        name: "logging",
        fields: &[
            field(
                "level",
                Kind::LogLevel,
                "log level (trace, debug, info, warn, error, off) or filter directives such as info,ccproxy=debug",
            ),
            field("format", Kind::LogFormat, "log format: auto, text or json"),
            field(
                "file",
                Kind::Path,
                "write the log to this file instead of stderr; unset: stderr",
            ),
        ],
    },
    Section {
        name: "security",
        fields: &[field(
            "auth_token",
            Kind::Secret,
            "token clients must send (Authorization: Bearer or x-api-key); unset: no client auth",
        )],
    },
    Section {
        name: "http",
        fields: &[
            field(
                "connect_timeout_seconds",
                POSITIVE,
                "time allowed to open a connection to an upstream",
            ),
            field(
                "read_timeout_seconds",
                POSITIVE,
                "longest silence while reading an upstream response",
            ),
            field(
                "pool_idle_timeout_seconds",
                SECONDS,
                "how long an idle pooled upstream connection is kept",
            ),
            field(
                "pool_max_idle_per_host",
                SECONDS,
                "idle connections kept per upstream host; 0 disables pooling",
            ),
            field("http2", Kind::Bool, "offer HTTP/2 to upstreams"),
            field(
                "extra_ca_file",
                Kind::CaFile,
                "PEM file of CA certificates trusted besides the built-in roots; unset: none (SSL_CERT_FILE sets it)",
            ),
        ],
    },
    Section {
        name: "plugin_discovery",
        fields: &[
            field(
                "directories",
                Kind::PathList,
                "extra folders searched for plugin libraries",
            ),
            field(
                "disable_local_discovery",
                Kind::Bool,
                "skip the per-user plugin folder $XDG_CONFIG_HOME/ccproxy/plugins",
            ),
        ],
    },
    Section {
        name: "hooks",
        fields: &[field(
            "observer_queue_capacity",
            POSITIVE,
            "capacity of the queue feeding observing hooks; events beyond it are dropped and counted",
        )],
    },
    Section {
        name: "routing",
        fields: &[field(
            "fallback",
            Kind::PairList,
            "PROVIDER=FALLBACK pairs: a provider's request that failed retryably before the client saw anything is sent to FALLBACK's endpoint of the same client format",
        )],
    },
];

/// Top-level keys that are plain values, not sections.
pub(crate) const TOP_LEVEL_FIELDS: &[Field] = &[
    field(
        "enable_plugins",
        Kind::Bool,
        "master switch: false loads no plugin at all",
    ),
    field(
        "enabled_plugins",
        Kind::NameList,
        "when set, an allow list: only these plugins load; unset: every plugin not disabled",
    ),
    field(
        "disabled_plugins",
        Kind::NameList,
        "a deny list: these plugins never load",
    ),
];

/// The table of per-plugin sections.
pub(crate) const PLUGINS: &str = "plugins";

/// The original's top-level spelling of `plugin_discovery.disable_local_discovery`.
pub(crate) const LEGACY_DISABLE_LOCAL_DISCOVERY: &str = "plugins_disable_local_discovery";

/// Keys of the Python original that mean the same here under another name: `(old, new)`.
/// The loader takes the value with a warning instead of refusing the key.
pub(crate) const MIGRATED_KEYS: &[(&str, &str)] = &[
    ("server.log_level", "logging.level"),
    ("cors.origins", "server.cors_origins"),
    // The original's stale example file spelt it so.
    ("cors.allow_origins", "server.cors_origins"),
];

/// The original's `[cors]` settings that this version decides per request (a listed origin's
/// preflight gets the method and headers it asks for): accepted with a warning.
pub(crate) const IGNORED_CORS_KEYS: &[&str] = &["credentials", "methods", "headers", "max_age"];

/// The reserved per-plugin key that disables a plugin.
pub(crate) const PLUGIN_ENABLED_KEY: &str = "enabled";

/// Finds a section by name.
pub(crate) fn section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|section| section.name == name)
}

/// Finds a core key by its dotted name (`server.port`, `enable_plugins`).
pub(crate) fn field_at(dotted: &str) -> Option<&'static Field> {
    match dotted.split_once('.') {
        Some((section_name, field_name)) => section(section_name)?
            .fields
            .iter()
            .find(|field| field.name == field_name),
        None => TOP_LEVEL_FIELDS.iter().find(|field| field.name == dotted),
    }
}

/// Every key allowed at the top of a config file.
pub(crate) fn top_level_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = SECTIONS.iter().map(|section| section.name).collect();
    keys.extend(TOP_LEVEL_FIELDS.iter().map(|field| field.name));
    keys.push(PLUGINS);
    keys
}

/// Whether the dotted key holds a secret whose value must never be printed.
pub(crate) fn is_secret_key(dotted: &str) -> bool {
    field_at(dotted).is_some_and(|field| field.kind == Kind::Secret)
}

/// Advice for keys of the Python original that this version does not have, so a migrated
/// config file gets a useful error instead of a bare "unknown".
pub(crate) fn legacy_hint(dotted: &str) -> Option<&'static str> {
    const RENAMED: &[(&str, &str)] = &[(
        "security.enable_auth",
        "set security.auth_token to turn client auth on",
    )];
    const DROPPED_KEYS: &[&str] = &[
        "server.workers",
        "server.reload",
        "logging.verbose_api",
        "logging.request_log_dir",
        "logging.plugin_log_base_dir",
        "security.confirmation_timeout_seconds",
        "http.compression_enabled",
        "http.accept_encoding",
    ];
    if let Some((_, hint)) = RENAMED.iter().find(|(key, _)| *key == dotted) {
        return Some(hint);
    }
    let top = dotted.split('.').next().unwrap_or(dotted);
    if DROPPED_KEYS.contains(&dotted) || legacy_section(top) {
        return Some("a setting of the Python ccproxy that this version does not have; remove it");
    }
    None
}

/// Sections of the Python original that this version does not have.
pub(crate) fn legacy_section(name: &str) -> bool {
    matches!(
        name,
        "cors" | "auth" | "binary" | "scheduler" | "llm" | "observability" | "claude"
    )
}

/// The closest known key to `unknown`, if one is close enough to be a likely typo.
pub(crate) fn suggest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(unknown, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.min(candidate.len() / 2).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

impl Kind {
    /// What a valid value looks like, for error messages ("expected …").
    pub(crate) fn expected(self) -> String {
        match self {
            Kind::Host => "a non-empty host name or IP address".to_owned(),
            Kind::Port => "an integer 0-65535".to_owned(),
            Kind::Bool => "true or false".to_owned(),
            Kind::Count { min: 0 } => "a non-negative integer".to_owned(),
            Kind::Count { min } => format!("an integer >= {min}"),
            Kind::LogLevel => "a level (trace, debug, info, warn, error, off) or tracing filter \
                               directives such as `info,ccproxy=debug`"
                .to_owned(),
            Kind::LogFormat => "one of auto, text, json".to_owned(),
            Kind::Path => "a path string".to_owned(),
            Kind::CaFile => "a path string naming a PEM file of CA certificates".to_owned(),
            Kind::Secret => "a string".to_owned(),
            Kind::PathList => "a list of path strings".to_owned(),
            Kind::NameList => "a list of plugin names".to_owned(),
            Kind::HostList => {
                "a list of host names without port (`ccproxy.internal`), or `*`".to_owned()
            }
            Kind::OriginList => {
                "a list of web origins `scheme://host[:port]` (`http://localhost:3000`)".to_owned()
            }
            Kind::PairList => {
                "a list of `PROVIDER=FALLBACK` pairs of plugin names (`claude_api=codex`)"
                    .to_owned()
            }
        }
    }

    /// Checks a value and returns it normalised (levels lower-cased, names trimmed), or `None`
    /// when it does not fit.
    pub(crate) fn check(self, value: &Value) -> Option<Value> {
        match (self, value) {
            (Kind::Host, Value::String(host)) if !host.trim().is_empty() => {
                Some(Value::String(host.trim().to_owned()))
            }
            (Kind::Port, Value::Integer(port)) if u16::try_from(*port).is_ok() => {
                Some(value.clone())
            }
            (Kind::Bool, Value::Boolean(_)) => Some(value.clone()),
            (Kind::Count { min }, Value::Integer(count)) if *count >= min => Some(value.clone()),
            (Kind::LogLevel, Value::String(level)) => normalize_level(level).map(Value::String),
            (Kind::LogFormat, Value::String(format)) => {
                let format = format.trim().to_ascii_lowercase();
                matches!(format.as_str(), "auto" | "text" | "json").then_some(Value::String(format))
            }
            (Kind::Path | Kind::CaFile | Kind::Secret, Value::String(_)) => Some(value.clone()),
            (Kind::PathList, Value::Array(items)) => {
                items.iter().all(Value::is_str).then(|| value.clone())
            }
            (Kind::NameList, Value::Array(items)) => {
                let names: Option<Vec<Value>> = items
                    .iter()
                    .map(|item| {
                        let name = item.as_str()?.trim();
                        (!name.is_empty()).then(|| Value::String(name.to_owned()))
                    })
                    .collect();
                names.map(Value::Array)
            }
            (Kind::HostList, Value::Array(items)) => items
                .iter()
                .map(|item| normalize_host_name(item.as_str()?).map(Value::String))
                .collect::<Option<Vec<Value>>>()
                .map(Value::Array),
            (Kind::OriginList, Value::Array(items)) => items
                .iter()
                .map(|item| normalize_origin(item.as_str()?).map(Value::String))
                .collect::<Option<Vec<Value>>>()
                .map(Value::Array),
            (Kind::PairList, Value::Array(items)) => items
                .iter()
                .map(|item| normalize_pair(item.as_str()?).map(Value::String))
                .collect::<Option<Vec<Value>>>()
                .map(Value::Array),
            _ => None,
        }
    }

    /// Parses an environment variable's value for this kind. String-typed keys keep the text
    /// as it is (a token of digits stays a string); the result still goes through
    /// [`Kind::check`].
    pub(crate) fn parse_env(self, raw: &str) -> Option<Value> {
        match self {
            Kind::Host
            | Kind::LogLevel
            | Kind::LogFormat
            | Kind::Path
            | Kind::CaFile
            | Kind::Secret => Some(Value::String(raw.to_owned())),
            Kind::Port | Kind::Count { .. } => raw.trim().parse::<i64>().ok().map(Value::Integer),
            Kind::Bool => parse_bool(raw).map(Value::Boolean),
            Kind::PathList => parse_toml_array(raw).or_else(|| {
                let paths = std::env::split_paths(raw)
                    .filter(|path| !path.as_os_str().is_empty())
                    .map(|path| Value::String(path.to_string_lossy().into_owned()))
                    .collect();
                Some(Value::Array(paths))
            }),
            Kind::NameList | Kind::HostList | Kind::OriginList | Kind::PairList => {
                parse_toml_array(raw).or_else(|| {
                    let names = raw
                        .split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(|name| Value::String(name.to_owned()))
                        .collect();
                    Some(Value::Array(names))
                })
            }
        }
    }
}

/// A `PROVIDER=FALLBACK` pair as `routing.fallback` holds it: two different plugin names
/// (letters, digits, `_`, `-`), trimmed; `None` otherwise.
pub(crate) fn normalize_pair(raw: &str) -> Option<String> {
    let (from, to) = raw.split_once('=')?;
    let name = |name: &str| {
        let name = name.trim();
        (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        .then(|| name.to_owned())
    };
    let (from, to) = (name(from)?, name(to)?);
    (from != to).then(|| format!("{from}={to}"))
}

/// A host name as `server.allowed_hosts` holds it: trimmed, lower-case, without a trailing dot;
/// `None` for an empty one or one with a port, path or space.
pub(crate) fn normalize_host_name(raw: &str) -> Option<String> {
    let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = name == "*"
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    valid.then_some(name)
}

/// A web origin as `server.cors_origins` holds it (and as browsers send it): a scheme (`http`,
/// `https`, or an extension's such as `chrome-extension`), a host, an optional port, lower-case,
/// nothing after; `None` for anything else.
pub(crate) fn normalize_origin(raw: &str) -> Option<String> {
    let origin = raw.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let host_ok = if let Some(ip6) = host.strip_prefix('[') {
        ip6.strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        normalize_host_name(host).is_some_and(|name| name != "*")
    };
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok());
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    (scheme_ok && host_ok && port_ok).then_some(origin)
}

/// Reads `true`/`false` the way the original's pydantic did for env values: also `1`/`0`,
/// `yes`/`no`, `on`/`off`, any case.
pub(crate) fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_toml_array(raw: &str) -> Option<Value> {
    if !raw.trim_start().starts_with('[') {
        return None;
    }
    parse_toml_value(raw).filter(Value::is_array)
}

/// Parses `raw` as one TOML value (`60`, `true`, `["a", "b"]`, `{ a = 1 }`, `"text"`), or
/// `None` when it is not one.
pub(crate) fn parse_toml_value(raw: &str) -> Option<Value> {
    let mut table: toml::Table = toml::from_str(&format!("value = {raw}")).ok()?;
    // A value with a newline could smuggle in more keys; accept exactly one.
    if table.len() != 1 {
        return None;
    }
    table.remove("value")
}

/// Lower-cases a lone level (mapping the original's `warning`/`critical`) and checks
/// comma-separated `target=level` directives.
fn normalize_level(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let lower = trimmed.to_ascii_lowercase();
    let lone = match lower.as_str() {
        "warning" => Some("warn"),
        "critical" | "fatal" => Some("error"),
        level if LEVELS.contains(&level) => Some(level),
        _ => None,
    };
    if let Some(level) = lone {
        return Some(level.to_owned());
    }
    let lone = !trimmed.contains(',');
    let directives_ok = !trimmed.is_empty()
        && trimmed.split(',').all(|directive| {
            let directive = directive.trim();
            if directive.contains('[') {
                // Span filters (`target[span{field=value}]=level`) are left to tracing's parser.
                return true;
            }
            match directive.rsplit_once('=') {
                Some((target, level)) => {
                    !target.trim().is_empty()
                        && LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
                }
                None => {
                    LEVELS.contains(&directive.to_ascii_lowercase().as_str())
                        || is_target(directive, lone)
                }
            }
        });
    directives_ok.then(|| trimmed.to_owned())
}

/// A bare target (`ccproxy::server`) is a valid directive meaning "everything from it".
///
/// Internal: `tracing` would take any word as a target, so `verbose` would silently log
/// nothing; a lone word is therefore accepted only when it looks like one of our targets
/// (`ccproxy…`, `plugin::…`, `access_log`, or any path with `::`).
fn is_target(directive: &str, lone: bool) -> bool {
    let identifier = !directive.is_empty()
        && directive
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-');
    identifier
        && (!lone
            || directive.contains("::")
            || directive.starts_with("ccproxy")
            || directive == "access_log")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::model::Config;

    /// A valid sample value for each kind.
    fn sample(kind: Kind) -> Value {
        match kind {
            Kind::Host => Value::String("0.0.0.0".into()),
            Kind::Port | Kind::Count { .. } => Value::Integer(7),
            Kind::Bool => Value::Boolean(true),
            Kind::LogLevel => Value::String("debug".into()),
            Kind::LogFormat => Value::String("json".into()),
            Kind::Path | Kind::CaFile | Kind::Secret => Value::String("x".into()),
            Kind::PathList | Kind::NameList | Kind::HostList => {
                Value::Array(vec![Value::String("x".into())])
            }
            Kind::OriginList => Value::Array(vec![Value::String("http://x:1".into())]),
            Kind::PairList => Value::Array(vec![Value::String("x=y".into())]),
        }
    }

    #[test]
    fn every_schema_key_is_a_config_field() {
        let mut table = toml::Table::new();
        for section in SECTIONS {
            let mut inner = toml::Table::new();
            for field in section.fields {
                assert!(
                    field.kind.check(&sample(field.kind)).is_some(),
                    "{}",
                    field.name
                );
                inner.insert(field.name.into(), sample(field.kind));
            }
            table.insert(section.name.into(), Value::Table(inner));
        }
        for field in TOP_LEVEL_FIELDS {
            table.insert(field.name.into(), sample(field.kind));
        }
        table.insert(PLUGINS.into(), Value::Table(toml::Table::new()));
        let mut ignored = Vec::new();
        let parsed: Result<Config, _> =
            serde_ignored::deserialize(Value::Table(table), |path| ignored.push(path.to_string()));
        assert!(parsed.is_ok(), "{parsed:?}");
        assert!(
            ignored.is_empty(),
            "schema keys the struct does not have: {ignored:?}"
        );
    }

    #[test]
    fn every_config_field_is_in_the_schema() {
        let mut config = Config {
            enabled_plugins: Some(Vec::new()),
            disabled_plugins: Some(Vec::new()),
            ..Config::default()
        };
        config.logging.file = Some("x".into());
        config.security.auth_token = Some("x".into());
        config.http.extra_ca_file = Some("x".into());
        let json = serde_json::to_value(&config).expect("a config serialises");
        let object = json.as_object().expect("a config is an object");
        let top: BTreeSet<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(top, top_level_keys().into_iter().collect::<BTreeSet<_>>());
        for section in SECTIONS {
            let fields: BTreeSet<&str> = object[section.name]
                .as_object()
                .expect("a section is an object")
                .keys()
                .map(String::as_str)
                .collect();
            let schema: BTreeSet<&str> = section.fields.iter().map(|field| field.name).collect();
            assert_eq!(fields, schema, "[{}]", section.name);
        }
    }

    #[test]
    fn every_key_has_a_meaning_and_a_row_in_the_configuration_doc() {
        let doc = include_str!("../../../docs/CONFIGURATION.md");
        let fields = SECTIONS
            .iter()
            .flat_map(|section| section.fields.iter())
            .chain(TOP_LEVEL_FIELDS);
        for field in fields {
            assert!(!field.doc.is_empty(), "{} has no meaning", field.name);
            assert!(
                doc.contains(&format!("| `{}` |", field.name)),
                "docs/CONFIGURATION.md has no row for `{}`",
                field.name
            );
        }
    }

    #[test]
    fn fallback_pairs_are_two_different_plugin_names() {
        assert_eq!(
            normalize_pair(" claude_api = codex ").as_deref(),
            Some("claude_api=codex")
        );
        for bad in [
            "claude_api",
            "=codex",
            "claude_api=",
            "a=a",
            "a=b=c",
            "a b=c",
        ] {
            assert_eq!(normalize_pair(bad), None, "{bad}");
        }
        let routing = crate::config::model::RoutingConfig {
            fallback: vec!["claude_api=codex".to_owned(), "codex=compat".to_owned()],
        };
        assert_eq!(routing.fallback_for("codex"), Some("compat"));
        assert_eq!(routing.fallback_for("copilot"), None);
    }

    fn check_level(raw: &str, expected: Option<&str>) {
        assert_eq!(normalize_level(raw).as_deref(), expected, "{raw}");
    }

    #[test]
    fn log_levels() {
        check_level("INFO", Some("info"));
        check_level("Warning", Some("warn"));
        check_level("critical", Some("error"));
        check_level("info,ccproxy=debug", Some("info,ccproxy=debug"));
        check_level("ccproxy::server=trace", Some("ccproxy::server=trace"));
        check_level("ccproxy", Some("ccproxy"));
        check_level("info,hyper", Some("info,hyper"));
        check_level("verbose", None);
        check_level("info,ccproxy=loud", None);
        check_level("", None);
    }

    #[test]
    fn env_values_by_kind() {
        assert_eq!(
            Kind::Secret.parse_env("12345"),
            Some(Value::String("12345".into()))
        );
        assert_eq!(Kind::Port.parse_env(" 9000 "), Some(Value::Integer(9000)));
        assert_eq!(Kind::Port.parse_env("abc"), None);
        assert_eq!(Kind::Bool.parse_env("Yes"), Some(Value::Boolean(true)));
        let names = Kind::NameList
            .parse_env("a, b,,c")
            .expect("a comma list parses");
        assert_eq!(names.as_array().map(Vec::len), Some(3));
        let names = Kind::NameList
            .parse_env("[\"a\",\"b\"]")
            .expect("a TOML array parses");
        assert_eq!(names.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn hosts_and_origins_are_checked_and_normalised() {
        let check = |kind: Kind, raw: &str| {
            kind.parse_env(raw)
                .and_then(|value| kind.check(&value))
                .map(|value| value.to_string())
        };
        assert_eq!(
            check(Kind::HostList, "CCProxy.Internal., my_box").as_deref(),
            Some(r#"["ccproxy.internal", "my_box"]"#)
        );
        assert_eq!(check(Kind::HostList, "*").as_deref(), Some(r#"["*"]"#));
        for bad in ["host:8000", "http://host", "a b"] {
            assert_eq!(check(Kind::HostList, bad), None, "{bad}");
        }
        assert_eq!(
            check(Kind::OriginList, "HTTP://App.example:3000/, https://[::1]").as_deref(),
            Some(r#"["http://app.example:3000", "https://[::1]"]"#)
        );
        for bad in [
            "app.example",
            "://app.example",
            "1http://app.example",
            "http://app.example/path",
            "http://app.example:99999",
            "http://*",
            "null",
        ] {
            assert_eq!(check(Kind::OriginList, bad), None, "{bad}");
        }
    }

    #[test]
    fn toml_value_parsing_refuses_smuggled_keys() {
        assert_eq!(parse_toml_value("60"), Some(Value::Integer(60)));
        assert_eq!(parse_toml_value("1\nother = 2"), None);
        assert_eq!(parse_toml_value("not toml"), None);
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let known = ["host", "port", "bypass_mode"];
        assert_eq!(suggest("prot", &known), Some("port"));
        assert_eq!(suggest("bypass", &known), None);
        assert_eq!(suggest("zzzzzz", &known), None);
    }
}
