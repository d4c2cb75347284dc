//! The typed configuration: every core key with its default and meaning.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::secret::Secret;

/// A plugin's raw config section, as written under `[plugins.<name>]` (and
/// `PLUGINS__<NAME>__…`), before it is checked against what the plugin declares.
pub type PluginSection = Map<String, Value>;

/// The effective configuration of the host.
///
/// Built by [`load`](super::load) from, key by key, built-in defaults < TOML file <
/// environment < CLI flags. `Debug` never prints a secret: `security.auth_token` prints `***`
/// and plugin sections print only their key names, since a plugin's settings may hold API keys.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The HTTP listener (`[server]`).
    pub server: ServerConfig,
    /// Log filter, format and destination (`[logging]`).
    pub logging: LoggingConfig,
    /// Client authentication (`[security]`).
    pub security: SecurityConfig,
    /// The one upstream HTTP client all plugins share (`[http]`).
    pub http: HttpConfig,
    /// Where plugin libraries are looked for (`[plugin_discovery]`).
    pub plugin_discovery: PluginDiscoveryConfig,
    /// The hook pipeline (`[hooks]`).
    pub hooks: HooksConfig,
    /// Where a provider's failed requests go next (`[routing]`).
    pub routing: RoutingConfig,
    /// Master switch: when false no plugin is loaded at all. Env `ENABLE_PLUGINS`.
    pub enable_plugins: bool,
    /// When set, only these plugins load (an allow list); `None` allows every plugin that is not
    /// disabled. An explicit disable still wins over this list. Env `ENABLED_PLUGINS`
    /// (comma-separated); `--enable-plugin NAME` adds to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_plugins: Option<Vec<String>>,
    /// Plugins that never load (a deny list), together with every `plugins.<name>.enabled =
    /// false`. Env `DISABLED_PLUGINS` (comma-separated); `--disable-plugin NAME` adds to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_plugins: Option<Vec<String>>,
    /// Raw per-plugin sections, `[plugins.<name>]`, keyed by plugin name. Each is checked
    /// against the defaults its plugin declares by
    /// [`validate_plugin_section`](super::validate_plugin_section) when the plugin loads; the
    /// reserved key `enabled = false` disables the plugin.
    pub plugins: BTreeMap<String, PluginSection>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            logging: LoggingConfig::default(),
            security: SecurityConfig::default(),
            http: HttpConfig::default(),
            plugin_discovery: PluginDiscoveryConfig::default(),
            hooks: HooksConfig::default(),
            routing: RoutingConfig::default(),
            enable_plugins: true,
            enabled_plugins: None,
            disabled_plugins: None,
            plugins: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Internal: plugin sections may hold credentials the host cannot recognise as such, so
        // only their key names are printed.
        let plugin_keys: BTreeMap<&str, Vec<&str>> = self
            .plugins
            .iter()
            .map(|(name, section)| (name.as_str(), section.keys().map(String::as_str).collect()))
            .collect();
        formatter
            .debug_struct("Config")
            .field("server", &self.server)
            .field("logging", &self.logging)
            .field("security", &self.security)
            .field("http", &self.http)
            .field("plugin_discovery", &self.plugin_discovery)
            .field("hooks", &self.hooks)
            .field("routing", &self.routing)
            .field("enable_plugins", &self.enable_plugins)
            .field("enabled_plugins", &self.enabled_plugins)
            .field("disabled_plugins", &self.disabled_plugins)
            .field("plugins", &plugin_keys)
            .finish()
    }
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address to bind. Default `127.0.0.1`. Env `SERVER__HOST`, flag `--host`.
    pub host: String,
    /// Port to bind; 0 picks a free port. Default 8000. Env `SERVER__PORT`, flag `--port`.
    pub port: u16,
    /// Forward requests without the provider plugins' rewriting (the original's bypass mode).
    /// Default false. Env `SERVER__BYPASS_MODE`, flag `--bypass`.
    pub bypass_mode: bool,
    /// Largest request body accepted; larger bodies get 413. Default 32 MiB.
    pub max_request_body_bytes: u64,
    /// Bytes of request bodies held at once, from the moment a body is read until its route is
    /// done with it (the upstream answered, the plugin route returned); a request whose body
    /// does not fit gets 503 with `Retry-After` (unread when it says its length). A body larger
    /// than the budget is accepted only when no other is in flight. Default 128 MiB: four bodies
    /// of the largest size (or dozens of usual ones); a large body's peak is 3–4 times its size
    /// (docs/PERFORMANCE.md), so about 0.5 GB at most, and clients retry a 503.
    pub body_budget_bytes: u64,
    /// After a shutdown signal, how long in-flight requests may finish before they are cut.
    /// Default 30.
    pub shutdown_grace_seconds: u64,
    /// A connection must send a complete request head within this many seconds of being
    /// opened (or of starting its next request), else it is closed. Default 10: a head is a
    /// few hundred bytes, so this only ever stops clients that trickle or say nothing.
    pub header_read_timeout_seconds: u64,
    /// A kept-alive connection with no request in flight for this long is closed; requests
    /// and streams in flight are never cut by it. Default 60: longer than the idle expiry of
    /// the usual clients (Node's 4–5 s, httpx's 5 s), so they close first and never race a
    /// request against our close; a reopened loopback connection costs one handshake.
    pub idle_timeout_seconds: u64,
    /// Client connections served at once; past it, a connection only gets `/health*`
    /// answered and anything else a 503 with `Retry-After`. Default 0: derived from the
    /// open-file limit (see [`ServerConfig::connection_cap`]).
    pub max_connections: usize,
    /// Longest time one client request may take end to end, streaming included. Default 600.
    pub request_timeout_seconds: u64,
    /// Host names clients may use besides `localhost`, IP addresses and `host`; any other
    /// `Host` is refused (403), so a web page cannot reach the proxy through a name it controls
    /// (DNS rebinding). `"*"` allows every name. Default empty. Env `SERVER__ALLOWED_HOSTS`.
    pub allowed_hosts: Vec<String>,
    /// Web origins (`scheme://host[:port]`: `http://localhost:3000`, `vscode-file://vscode-app`)
    /// whose pages may call the proxy (CORS, preflight included); a request from any other
    /// origin is refused (403). Default empty. Env `SERVER__CORS_ORIGINS`.
    pub cors_origins: Vec<String>,
    /// Longest wait for a plugin's middleware (either side) or a provider's
    /// `provider.prepare`; past it the request gets 504 naming the plugin and the operation.
    /// Default 30: these calls shape a request, they do not wait for an answer. A plugin
    /// route's `route.handle` may take up to `request_timeout_seconds` for its head (a
    /// streamed route's pieces have no limit of their own).
    pub plugin_call_timeout_seconds: u64,
    /// Worker threads of the plugin runtime, where plugin code runs apart from the server's
    /// workers (a plugin that blocks its thread never holds up `/health*` or the accept loop).
    /// Default 0: the number of cores, at least 2.
    pub plugin_worker_threads: usize,
    /// `serve` prints one line per request on stdout: method, path (without the query),
    /// status and duration, 401s included. Default true. Env `SERVER__REQUEST_LINES`; flag
    /// `--quiet` turns it off.
    pub request_lines: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8000,
            bypass_mode: false,
            max_request_body_bytes: 32 * 1024 * 1024,
            body_budget_bytes: 128 * 1024 * 1024,
            shutdown_grace_seconds: 30,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 60,
            max_connections: 0,
            request_timeout_seconds: 600,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            plugin_call_timeout_seconds: 30,
            plugin_worker_threads: 0,
            request_lines: true,
        }
    }
}

impl ServerConfig {
    /// `shutdown_grace_seconds` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// `header_read_timeout_seconds` as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds)
    }

    /// `idle_timeout_seconds` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    /// The connection cap for a process that may open `open_file_limit` files:
    /// `max_connections` when set, else [`ServerConfig::connections_supported_by`] the limit.
    pub fn connection_cap(&self, open_file_limit: u64) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        Self::connections_supported_by(open_file_limit)
    }

    /// The connections `open_file_limit` files support: half of what the limit leaves after
    /// `RESERVED_FILES` (96), at most `AUTO_MAX_CONNECTIONS` (4096) and at least 1.
    ///
    /// Half, because every proxied request holds a second socket to its upstream. With the
    /// common soft limit of 1024 that is 464; a limit high enough for more gets 4096, far
    /// beyond what one user's tools open, while each connection's buffers stay bounded.
    pub fn connections_supported_by(open_file_limit: u64) -> usize {
        let usable = open_file_limit.saturating_sub(RESERVED_FILES) / 2;
        usize::try_from(usable)
            .unwrap_or(usize::MAX)
            .clamp(1, AUTO_MAX_CONNECTIONS)
    }

    /// `request_timeout_seconds` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    /// `plugin_call_timeout_seconds` as a duration.
    pub fn plugin_call_timeout(&self) -> Duration {
        Duration::from_secs(self.plugin_call_timeout_seconds)
    }
}

/// Open files kept out of the automatic connection cap: plugin libraries and their files,
/// logs, the listener, pooled upstream connections, and the connections past the cap that
/// are still read for a health check.
const RESERVED_FILES: u64 = 96;

/// The automatic connection cap when the open-file limit allows more.
const AUTO_MAX_CONNECTIONS: usize = 4096;

/// Output format of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    #[default]
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[logging]`: log filter, format and destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggingConfig {
    /// A level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or full `tracing` filter
    /// directives such as `info,ccproxy=debug`. Default `info`. Env `LOGGING__LEVEL` (or
    /// `CCPROXY_LOG_LEVEL`, which `LOGGING__LEVEL` overrides), flag `--log-level`. A lone level
    /// is stored lower-case, with the original's `warning`/`critical` mapped to `warn`/`error`.
    pub level: String,
    /// `auto`, `text` or `json`. Default `auto`.
    pub format: LogFormat,
    /// Also write the log to this file. Default none. A relative path in the config file is
    /// relative to that file's folder. Flag `--log-file`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_path_as_none"
    )]
    pub file: Option<PathBuf>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Auto,
            file: None,
        }
    }
}

/// `[security]`: client authentication.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    /// When set, protected routes require `Authorization: Bearer <token>`. Default none (no
    /// client auth); an empty string also means none. Env `SECURITY__AUTH_TOKEN`, flag
    /// `--auth-token`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_secret_as_none"
    )]
    pub auth_token: Option<Secret>,
}

/// `[http]`: the one upstream HTTP client every provider plugin's requests go through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Time allowed to open a connection to an upstream. Default 5.
    pub connect_timeout_seconds: u64,
    /// Longest silence allowed while reading an upstream response (between stream chunks).
    /// Default 240.
    pub read_timeout_seconds: u64,
    /// How long an idle pooled connection is kept. Default 90.
    pub pool_idle_timeout_seconds: u64,
    /// Idle connections kept per upstream host; 0 disables pooling. Default 64.
    pub pool_max_idle_per_host: usize,
    /// Offer HTTP/2 to upstreams (via ALPN). Default true.
    pub http2: bool,
    /// A PEM file of CA certificates trusted in addition to the built-in webpki roots: a
    /// private CA, or the one a TLS-inspecting proxy signs with. Default none. Checked when
    /// the config loads (it must hold at least one certificate, each usable as a CA); a
    /// relative path in the config file is relative to that file's folder. Env
    /// `HTTP__EXTRA_CA_FILE`; `SSL_CERT_FILE` sets it when neither the file nor
    /// `HTTP__EXTRA_CA_FILE` does.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_path_as_none"
    )]
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout_seconds: 5,
            read_timeout_seconds: 240,
            pool_idle_timeout_seconds: 90,
            pool_max_idle_per_host: 64,
            http2: true,
            extra_ca_file: None,
        }
    }
}

impl HttpConfig {
    /// `connect_timeout_seconds` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds)
    }

    /// `read_timeout_seconds` as a duration.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.read_timeout_seconds)
    }

    /// `pool_idle_timeout_seconds` as a duration.
    pub fn pool_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.pool_idle_timeout_seconds)
    }
}

/// `[plugin_discovery]`: where plugin libraries are looked for.
///
/// Discovery always looks next to the executable (bundled plugins) and in
/// `$XDG_CONFIG_HOME/ccproxy/plugins` first; these settings add to that.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginDiscoveryConfig {
    /// Extra folders to search, after the built-in ones. `~`, `${HOME}` and
    /// `${XDG_CONFIG_HOME}` (any `${VAR}`) are expanded; a relative path in the config file is
    /// relative to that file's folder. Env `PLUGIN_DISCOVERY__DIRECTORIES` (a TOML array or an
    /// OS path list such as `/a:/b`); `--plugin-dir DIR` appends.
    pub directories: Vec<PathBuf>,
    /// Skip the per-user folder (`$XDG_CONFIG_HOME/ccproxy/plugins`); the bundled plugins next
    /// to the executable and the folders named in `directories` are still searched. Default
    /// false. The original's top-level `plugins_disable_local_discovery` (env
    /// `PLUGINS_DISABLE_LOCAL_DISCOVERY`) sets this too.
    pub disable_local_discovery: bool,
}

/// `[hooks]`: the hook pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HooksConfig {
    /// Capacity of the queue feeding observing hooks (access log, metrics); events beyond it are
    /// dropped and counted rather than slowing requests. Default 16384: a burst of a few
    /// thousand requests (each queues several events) fits; an event is a few hundred bytes.
    pub observer_queue_capacity: usize,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            observer_queue_capacity: 16384,
        }
    }
}

/// `[routing]`: where a provider's requests go when it cannot answer them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutingConfig {
    /// `PROVIDER=FALLBACK` pairs of provider plugin names: a request on one of PROVIDER's
    /// endpoints whose every attempt failed retryably (429, 401, 403, 408, 5xx, 529, no answer)
    /// before the client saw anything is sent once more to FALLBACK's endpoint for the same
    /// client format. Empty by default: nothing falls back.
    pub fallback: Vec<String>,
}

impl RoutingConfig {
    /// The provider `provider`'s requests fall back to, if any.
    pub fn fallback_for(&self, provider: &str) -> Option<&str> {
        self.fallback.iter().find_map(|pair| {
            let (from, to) = pair.split_once('=')?;
            (from.trim() == provider).then(|| to.trim())
        })
    }
}

fn empty_secret_as_none<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Secret>, D::Error> {
    let secret = Option::<Secret>::deserialize(deserializer)?;
    Ok(secret.filter(|secret| !secret.is_empty()))
}

fn empty_path_as_none<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PathBuf>, D::Error> {
    let path = Option::<PathBuf>::deserialize(deserializer)?;
    Ok(path.filter(|path| !path.as_os_str().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_gives_the_defaults() {
        let config: Config = toml::from_str("").expect("an empty file is a valid config");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = Config::default();
        assert_eq!(config.server.host, "127.0.0.1");
        assert_eq!(config.server.port, 8000);
        assert_eq!(config.server.max_request_body_bytes, 33_554_432);
        assert_eq!(config.server.header_read_timeout(), Duration::from_secs(10));
        assert_eq!(config.server.idle_timeout(), Duration::from_secs(60));
        assert_eq!(config.server.max_connections, 0);
        assert_eq!(config.server.body_budget_bytes, 128 * 1024 * 1024);
        assert_eq!(config.server.plugin_call_timeout(), Duration::from_secs(30));
        assert_eq!(config.server.plugin_worker_threads, 0);
        assert_eq!(config.http.connect_timeout(), Duration::from_secs(5));
        assert_eq!(config.hooks.observer_queue_capacity, 16384);
        assert!(config.enable_plugins);
    }

    #[test]
    fn empty_auth_token_means_no_auth() {
        let config: Config =
            toml::from_str("[security]\nauth_token = \"\"").expect("an empty token parses");
        assert_eq!(config.security.auth_token, None);
    }

    #[test]
    fn debug_prints_neither_the_token_nor_plugin_values() {
        let mut config = Config::default();
        config.security.auth_token = Some(Secret::new("sk-very-secret"));
        let mut section = PluginSection::new();
        section.insert("api_key".into(), Value::String("plugin-secret".into()));
        config.plugins.insert("claude_api".into(), section);
        let printed = format!("{config:?}");
        assert!(!printed.contains("sk-very-secret"), "{printed}");
        assert!(!printed.contains("plugin-secret"), "{printed}");
        assert!(printed.contains("api_key"), "{printed}");
        assert!(printed.contains("***"), "{printed}");
        let pretty = format!("{config:#?}");
        assert!(!pretty.contains("sk-very-secret"), "{pretty}");
    }

    #[test]
    fn the_connection_cap_follows_the_open_file_limit_unless_set() {
        let mut server = ServerConfig::default();
        assert_eq!(server.connection_cap(1024), 464);
        assert_eq!(server.connection_cap(1_048_576), AUTO_MAX_CONNECTIONS);
        assert_eq!(server.connection_cap(u64::MAX), AUTO_MAX_CONNECTIONS);
        assert_eq!(server.connection_cap(50), 1, "a tiny limit still serves");
        server.max_connections = 20;
        assert_eq!(server.connection_cap(1024), 20);
        assert_eq!(
            server.connection_cap(50),
            20,
            "an explicit cap is kept as set"
        );
    }
}
