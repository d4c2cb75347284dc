//! # access_log: client and provider access logs
//!
//! Writes one line per client request to `client_log_file`, in the original
//! ccproxy's formats: `common` (NCSA Common Log Format), `combined` (plus
//! referer and user agent) or `structured` (JSON lines: timestamp, request_id,
//! method, path, query, status_code, duration_ms, client_ip, user_agent,
//! bytes_sent, streaming, provider, model, token counts and `cost_usd` when
//! known; the cost comes from a hook that runs before this one, such as the
//! pricing plugin's). With
//! `provider_enabled`, also writes one JSON line per upstream response, error
//! and finished stream to `provider_log_file`.
//!
//! Both files default to `$XDG_STATE_HOME/ccproxy` (`~/.local/state/ccproxy`):
//! `access.log` and `provider_access.log`, not the original's
//! `/tmp/ccproxy/...`, where another local user could create the folder or
//! plant a symlink and make the proxy append text of the client's choosing to
//! any file its user can write (issue 13). A file's folder, configured or
//! not, must be private to this user (see `writer`); one that is not, or a
//! symlink at the file's name, is refused with a warning and degraded health
//! saying what to do, and the proxy keeps serving. Fields from the client are
//! escaped so one request stays one line without terminal escapes (see
//! `format`). The README says more.
//!
//! The hook only observes (it never subscribes to the inline
//! `provider.request.prepared`), so it runs off the request path; it appends
//! the formatted line to a buffer in memory, written in batches of
//! `buffer_size` lines, by the `flush` task and at shutdown (see `writer`).
//!
//! Build it with `cargo build -p ccproxy-plugin-access-log`: the host finds
//! bundled plugins next to its binary (or copy `libccproxy_plugin_access_log.so`
//! to `~/.config/ccproxy/plugins/`). Configure it, for example:
//!
//! ```toml
//! [plugins.access_log]
//! client_format = "combined"
//! client_log_file = "/var/log/ccproxy/access.log"
//! ```
//!
//! Then `curl http://127.0.0.1:8000/plugins/access_log/health` shows the files
//! and their line counts; at startup the proxy logs:
//!
//! ```text
//! INFO plugin: access_log writing client log to /var/log/ccproxy/access.log (combined), provider log to off plugin="access_log"
//! ```
//!
//! Event data read (as the host emits it): `request.completed` and
//! `request.failed`: `request_id`, `method`, `http_version`, `path`, `query`, `url`,
//! `status_code`, `duration_ms`, `client_ip`, `user_agent`, `bytes_sent`,
//! `streaming`, `provider`, `model`, `usage`, `cost_usd` when present (and
//! `error` when failed);
//! `provider.response.received`: `request_id`, `provider`, `url`, `method`,
//! `status_code`, `duration_ms`; `provider.error`: `request_id`, `provider`,
//! `url`, `error`; `provider.stream.end`: `request_id`, `provider`,
//! `total_chunks`, `total_bytes`, `usage`.
#![forbid(unsafe_code)]

mod format;
mod writer;

use std::{
    ffi::OsStr,
    path::PathBuf,
    sync::{Mutex, MutexGuard},
    time::Instant,
};

use ccproxy_plugin_abi::{Value, prelude::*};
use ccproxy_plugin_kit::{private_files::state_folder_from, secret_file::expand_home};
use serde::{Deserialize, Serialize};

use crate::{
    format::{ClientFormat, ClientRecord, ProviderLine},
    writer::LogFile,
};

/// Seconds between runs of the `flush` task, and the default `flush_interval`.
const FLUSH_TICK_SECONDS: f64 = 1.0;

/// `[plugins.access_log]`, with the original's defaults. `enabled` is the
/// host's own key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    client_enabled: bool,
    client_format: ClientFormat,
    /// `None` (or empty): `$XDG_STATE_HOME/ccproxy/access.log`.
    client_log_file: Option<String>,
    provider_enabled: bool,
    /// `None` (or empty): `$XDG_STATE_HOME/ccproxy/provider_access.log`.
    provider_log_file: Option<String>,
    exclude_paths: Vec<String>,
    buffer_size: usize,
    flush_interval: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            client_enabled: true,
            client_format: ClientFormat::Structured,
            // The original's `/tmp/ccproxy/...` let another local user
            // plant the folder or a symlink in it (issue 13): the defaults
            // are in the user's private state folder instead.
            client_log_file: None,
            provider_enabled: false,
            provider_log_file: None,
            exclude_paths: ["/health", "/metrics", "/readyz", "/livez"]
                .map(str::to_owned)
                .to_vec(),
            buffer_size: 100,
            flush_interval: FLUSH_TICK_SECONDS,
        }
    }
}

/// The plugin: its config and the two log files (each present when enabled).
struct AccessLog {
    config: Config,
    client: Option<LogFile>,
    provider: Option<LogFile>,
    last_flush: Mutex<Instant>,
}

impl AccessLog {
    fn is_excluded(&self, path: &str) -> bool {
        self.config
            .exclude_paths
            .iter()
            .any(|excluded| path.starts_with(excluded.as_str()))
    }

    fn files(&self) -> impl Iterator<Item = &LogFile> {
        self.client.iter().chain(self.provider.iter())
    }

    fn flush_all(&self) {
        *lock(&self.last_flush) = Instant::now();
        self.files().for_each(LogFile::flush);
    }
}

/// The configured path (`~/` expanded), or `default_name` in
/// `$XDG_STATE_HOME/ccproxy` (`~/.local/state/ccproxy`) when none (or an
/// empty one) is configured.
fn log_file_path(
    configured: Option<&str>,
    xdg_state_home: Option<&OsStr>,
    home: Option<&OsStr>,
    key: &str,
    default_name: &str,
) -> Result<PathBuf, PluginError> {
    match expand_home(configured.unwrap_or_default(), home, "access_log")? {
        Some(path) => Ok(path),
        None => state_folder_from(xdg_state_home, home, default_name).map_err(|_| {
            PluginError::invalid(format!(
                "neither XDG_STATE_HOME nor HOME is set: set {key} to the log file's path"
            ))
        }),
    }
}

fn append(file: &LogFile, write: impl FnOnce(&mut Vec<u8>)) {
    if file.append_with(write) {
        file.flush();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Plugin for AccessLog {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("access_log", env!("CARGO_PKG_VERSION"))
            .description("Client and provider access logs in common, combined or structured (JSON lines) format")
            .hook(
                "access_log",
                [
                    "request.completed",
                    "request.failed",
                    "provider.response.received",
                    "provider.error",
                    "provider.stream.end",
                ],
                750,
            )
            // Every event is read as this one struct: the host may leave out
            // the rest (the request's headers).
            .reads_fields_of::<format::EventData<'static>>()
            // The host runs the task every `flush_interval` seconds.
            .task_from_config("flush", "flush_interval", FLUSH_TICK_SECONDS, false)
            .config_key("client_enabled", "write the client access log")
            .config_key("client_format", "common, combined or structured (JSON lines)")
            .config_key(
                "client_log_file",
                "path of the client access log, in a folder only you can write; null: $XDG_STATE_HOME/ccproxy/access.log",
            )
            .config_key("provider_enabled", "write the provider access log (JSON lines)")
            .config_key(
                "provider_log_file",
                "path of the provider access log, in a folder only you can write; null: $XDG_STATE_HOME/ccproxy/provider_access.log",
            )
            .config_key("exclude_paths", "client paths starting with one of these are not logged")
            .config_key("buffer_size", "lines kept in memory before they are written")
            .config_key("flush_interval", "seconds between writes of buffered lines")
    }

    async fn init(_ctx: Context, config: Config) -> Result<Self, PluginError> {
        if !config.flush_interval.is_finite() || config.flush_interval <= 0.0 {
            return Err(PluginError::invalid(
                "flush_interval must be a positive number of seconds",
            ));
        }
        let open = |enabled: bool, configured: &Option<String>, key: &str, default_name: &str| {
            enabled
                .then(|| {
                    let path = log_file_path(
                        configured.as_deref(),
                        std::env::var_os("XDG_STATE_HOME").as_deref(),
                        std::env::var_os("HOME").as_deref(),
                        key,
                        default_name,
                    )?;
                    LogFile::open(path, config.buffer_size, key)
                })
                .transpose()
        };
        let client = open(
            config.client_enabled,
            &config.client_log_file,
            "client_log_file",
            "access.log",
        )?;
        let provider = open(
            config.provider_enabled,
            &config.provider_log_file,
            "provider_log_file",
            "provider_access.log",
        )?;
        let describe = |file: &Option<LogFile>| {
            file.as_ref()
                .map_or("off".to_owned(), |file| file.path().display().to_string())
        };
        info!(
            "access_log writing client log to {} ({}), provider log to {}",
            describe(&client),
            config.client_format.as_str(),
            describe(&provider)
        );
        Ok(Self {
            config,
            client,
            provider,
            last_flush: Mutex::new(Instant::now()),
        })
    }

    // The data is read into structs of the keys the log writes, never built
    // as a whole `Value` (the request headers in it are skipped unread).
    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        match call.event {
            HookEvent::RequestCompleted | HookEvent::RequestFailed => {
                if let Some(client) = &self.client {
                    let record = ClientRecord::from_hook(&call)?;
                    if !self.is_excluded(&record.path) {
                        let format = self.config.client_format;
                        append(client, |out| record.write_line(format, out));
                    }
                }
            }
            HookEvent::ProviderResponseReceived
            | HookEvent::ProviderError
            | HookEvent::ProviderStreamEnd => {
                if let Some(provider) = &self.provider {
                    let line = ProviderLine::from_hook(&call)?;
                    append(provider, |out| line.write(out));
                }
            }
            _ => {}
        }
        Ok(HookOutcome::Continue)
    }

    async fn on_task(&self, _task: String) -> Result<(), PluginError> {
        // The host runs this every `flush_interval` seconds.
        self.flush_all();
        Ok(())
    }

    async fn on_health(&self) -> Health {
        let errors: Vec<String> = self.files().filter_map(LogFile::error).collect();
        let mut details = json!({
            "client": self.client.as_ref().map(LogFile::status),
            "provider": self.provider.as_ref().map(LogFile::status),
        });
        if errors.is_empty() {
            Health::with(HealthStatus::Healthy, details)
        } else {
            details["reason"] = Value::from(errors.join("; "));
            Health::with(HealthStatus::Degraded, details)
        }
    }

    async fn on_shutdown(&self) {
        self.flush_all();
    }
}

export_plugin!(AccessLog);

#[cfg(test)]
mod tests {
    use std::{
        fs,
        os::unix::fs::{PermissionsExt, symlink},
        path::{Path, PathBuf},
    };

    use ccproxy_plugin_abi::testing::{MockHost, TestPlugin};

    use super::*;

    /// A fresh directory for one test's log files, removed on drop.
    struct Scratch(tempfile::TempDir);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = tempfile::Builder::new()
                .prefix(&format!("ccproxy-access-log-{name}-"))
                .tempdir()
                .unwrap();
            // Private whatever the umask, as the log's folder must be.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
            Self(dir)
        }

        fn path(&self) -> &Path {
            self.0.path()
        }

        fn file(&self, name: &str) -> String {
            self.path().join(name).display().to_string()
        }

        fn read(&self, name: &str) -> String {
            fs::read_to_string(self.path().join(name)).unwrap_or_default()
        }
    }

    fn start(config: Value) -> (MockHost, TestPlugin) {
        let host = MockHost::new().config(config);
        let plugin = host.start::<AccessLog>().expect("access_log starts");
        (host, plugin)
    }

    fn completed(request_id: &str, path: &str) -> HookContext {
        HookContext {
            hook: "access_log".into(),
            event: HookEvent::RequestCompleted,
            timestamp_ms: 1_700_000_000_123,
            request_id: Some(request_id.into()),
            data: json!({
                "request_id": request_id, "method": "GET", "path": path, "query": "",
                "url": format!("http://127.0.0.1:8000{path}"), "status_code": 200, "duration_ms": 3.0,
                "client_ip": "10.0.0.7", "user_agent": "claude-cli/1.0", "bytes_sent": 42,
                "streaming": false, "provider": null, "model": null, "usage": null, "headers": {},
            }),
            body: Vec::new(),
        }
    }

    #[test]
    fn common_lines_reach_the_file_on_flush() {
        let scratch = Scratch::new("common");
        let (_host, plugin) = start(
            json!({"client_format": "common", "client_log_file": scratch.file("access.log")}),
        );
        plugin.hook_with(completed("r1", "/v1/models")).unwrap();
        plugin.task("flush").unwrap();
        assert_eq!(
            scratch.read("access.log"),
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /v1/models HTTP/1.1\" 200 42\n"
        );
    }

    #[test]
    fn combined_lines_reach_the_file_on_flush() {
        let scratch = Scratch::new("combined");
        let (_host, plugin) = start(
            json!({"client_format": "combined", "client_log_file": scratch.file("access.log")}),
        );
        plugin.hook_with(completed("r1", "/v1/models")).unwrap();
        plugin.task("flush").unwrap();
        assert_eq!(
            scratch.read("access.log"),
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /v1/models HTTP/1.1\" 200 42 \"-\" \"claude-cli/1.0\"\n"
        );
    }

    #[test]
    fn structured_is_the_default_format() {
        let scratch = Scratch::new("structured");
        let (_host, plugin) = start(json!({"client_log_file": scratch.file("access.log")}));
        plugin
            .hook(
                HookEvent::RequestFailed,
                json!({"request_id": "r9", "method": "POST", "path": "/v1/messages", "status_code": 502,
                       "error": "upstream refused", "provider": "claude_api", "model": "claude-sonnet-4",
                       "usage": {"input_tokens": 3, "output_tokens": 0}}),
            )
            .unwrap();
        plugin.task("flush").unwrap();
        let line: Value =
            ccproxy_plugin_abi::serde_json::from_str(scratch.read("access.log").trim_end())
                .unwrap();
        assert_eq!(line["request_id"], "r9");
        assert_eq!(line["status_code"], 502);
        assert_eq!(line["error"], "upstream refused");
        assert_eq!(line["provider"], "claude_api");
        assert_eq!(
            (
                line["tokens_input"].as_u64(),
                line["tokens_output"].as_u64()
            ),
            (Some(3), Some(0))
        );
        assert!(line["timestamp"].as_f64().is_some());
    }

    #[test]
    fn a_cost_in_the_data_reaches_the_structured_line_only() {
        let scratch = Scratch::new("cost");
        let (_host, plugin) = start(json!({"client_log_file": scratch.file("access.log")}));
        let mut priced = completed("priced", "/claude/v1/messages");
        priced.data["cost_usd"] = json!(0.0125);
        plugin.hook_with(priced.clone()).unwrap();
        plugin
            .hook_with(completed("unpriced", "/claude/v1/messages"))
            .unwrap();
        plugin.task("flush").unwrap();
        let lines: Vec<Value> = scratch
            .read("access.log")
            .lines()
            .map(|line| ccproxy_plugin_abi::serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines[0]["cost_usd"], 0.0125);
        assert!(lines[1].get("cost_usd").is_none(), "{}", lines[1]);

        let common = Scratch::new("cost-common");
        let (_host, plugin) =
            start(json!({"client_format": "common", "client_log_file": common.file("access.log")}));
        plugin.hook_with(priced).unwrap();
        plugin.task("flush").unwrap();
        assert!(!common.read("access.log").contains("0.0125"));
    }

    #[test]
    fn excluded_paths_are_not_logged() {
        let scratch = Scratch::new("exclude");
        let (_host, plugin) = start(
            json!({"client_format": "common", "client_log_file": scratch.file("access.log")}),
        );
        for path in [
            "/health",
            "/health/live",
            "/metrics",
            "/readyz",
            "/livez",
            "/v1/messages",
        ] {
            plugin.hook_with(completed(path, path)).unwrap();
        }
        plugin.task("flush").unwrap();
        let written = scratch.read("access.log");
        assert_eq!(written.lines().count(), 1, "{written}");
        assert!(written.contains("GET /v1/messages"));
    }

    #[test]
    fn configured_exclude_paths_replace_the_defaults() {
        let scratch = Scratch::new("exclude-config");
        let (_host, plugin) = start(json!({
            "client_format": "common", "client_log_file": scratch.file("access.log"), "exclude_paths": ["/v1"],
        }));
        plugin.hook_with(completed("a", "/health")).unwrap();
        plugin.hook_with(completed("b", "/v1/messages")).unwrap();
        plugin.task("flush").unwrap();
        let written = scratch.read("access.log");
        assert_eq!(written.lines().count(), 1);
        assert!(written.contains("GET /health"));
    }

    #[test]
    fn lines_are_buffered_until_the_batch_is_full() {
        let scratch = Scratch::new("buffer");
        let (_host, plugin) = start(json!({
            "client_format": "common", "client_log_file": scratch.file("access.log"), "buffer_size": 3,
        }));
        plugin.hook_with(completed("a", "/a")).unwrap();
        plugin.hook_with(completed("b", "/b")).unwrap();
        assert_eq!(scratch.read("access.log"), "");
        assert_eq!(
            plugin.health().unwrap().details["client"]["pending_lines"],
            2
        );
        plugin.hook_with(completed("c", "/c")).unwrap();
        assert_eq!(scratch.read("access.log").lines().count(), 3);
        plugin.hook_with(completed("d", "/d")).unwrap();
        assert_eq!(scratch.read("access.log").lines().count(), 3);
        plugin.shutdown().unwrap();
        assert_eq!(scratch.read("access.log").lines().count(), 4);
    }

    #[test]
    fn buffered_lines_wait_for_the_flush_task_or_shutdown() {
        let scratch = Scratch::new("interval");
        let (_host, plugin) = start(json!({
            "client_format": "common", "client_log_file": scratch.file("access.log"), "flush_interval": 60.0,
        }));
        plugin.hook_with(completed("a", "/a")).unwrap();
        assert_eq!(scratch.read("access.log"), "");
        plugin.shutdown().unwrap();
        assert_eq!(scratch.read("access.log").lines().count(), 1);
    }

    #[test]
    fn the_flush_interval_comes_from_the_config() {
        let scratch = Scratch::new("short-interval");
        let (_host, plugin) = start(json!({
            "client_log_file": scratch.file("access.log"), "flush_interval": 0.2,
        }));
        let task = &plugin.manifest().tasks[0];
        assert_eq!(task.interval_key.as_deref(), Some("flush_interval"));
    }

    #[test]
    fn an_unwritable_file_degrades_health_and_is_retried() {
        let scratch = Scratch::new("unwritable");
        let blocker = scratch.path().join("blocker");
        fs::write(&blocker, "").unwrap();
        let log_file = blocker.join("access.log");
        let (host, plugin) = start(json!({
            "client_format": "common", "client_log_file": log_file.display().to_string(),
        }));
        assert!(host.logged("access log lines are kept in memory and retried"));
        plugin.hook_with(completed("a", "/a")).unwrap();
        plugin.task("flush").unwrap();
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        let reason = health.details["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("refusing to write") && reason.ends_with("blocker is not a folder"),
            "{reason}"
        );
        assert_eq!(health.details["client"]["pending_lines"], 1);

        fs::remove_file(&blocker).unwrap();
        plugin.task("flush").unwrap();
        assert_eq!(plugin.health().unwrap().status, HealthStatus::Healthy);
        assert_eq!(fs::read_to_string(&log_file).unwrap().lines().count(), 1);
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_logs_are_0600_files_in_a_0700_folder() {
        let scratch = Scratch::new("modes");
        let folder = scratch.path().join("state/ccproxy");
        let (_host, plugin) = start(json!({
            "client_log_file": folder.join("access.log").display().to_string(),
            "provider_enabled": true,
            "provider_log_file": folder.join("provider_access.log").display().to_string(),
        }));
        plugin.hook_with(completed("a", "/a")).unwrap();
        plugin.task("flush").unwrap();
        assert_eq!(plugin.health().unwrap().status, HealthStatus::Healthy);
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&scratch.path().join("state")), 0o700);
        assert_eq!(mode(&folder.join("access.log")), 0o600);
        assert_eq!(mode(&folder.join("provider_access.log")), 0o600);
    }

    #[test]
    fn a_symlink_at_the_log_is_refused_and_its_target_left_alone() {
        let scratch = Scratch::new("symlink");
        let victim = scratch.path().join("victim");
        fs::write(&victim, "keep me\n").unwrap();
        symlink(&victim, scratch.path().join("access.log")).unwrap();
        // Even a link to nowhere: following it would create the target.
        let nowhere = scratch.path().join("created-through-the-link");
        symlink(&nowhere, scratch.path().join("provider.log")).unwrap();
        let (host, plugin) = start(json!({
            "client_format": "common", "client_log_file": scratch.file("access.log"),
            "provider_enabled": true, "provider_log_file": scratch.file("provider.log"),
        }));
        plugin.hook_with(completed("a", "/a")).unwrap();
        plugin
            .hook(
                HookEvent::ProviderError,
                json!({"request_id": "a", "error": "x"}),
            )
            .unwrap();
        plugin.task("flush").unwrap();
        plugin.shutdown().unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me\n");
        assert!(fs::symlink_metadata(&nowhere).is_err());
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        let reason = health.details["reason"].as_str().unwrap();
        assert!(reason.contains("is a symbolic link"), "{reason}");
        assert!(reason.contains("remove it"), "{reason}");
        assert_eq!(health.details["client"]["written_lines"], 0);
        assert!(host.logged("is a symbolic link"));
    }

    #[test]
    fn a_folder_others_can_write_is_refused_until_it_is_private() {
        let scratch = Scratch::new("shared-folder");
        let shared = scratch.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let log_file = shared.join("access.log");
        let (host, plugin) = start(json!({
            "client_format": "common", "client_log_file": log_file.display().to_string(),
        }));
        plugin.hook_with(completed("a", "/a")).unwrap();
        plugin.task("flush").unwrap();
        assert!(!log_file.exists());
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        let reason = health.details["reason"].as_str().unwrap();
        assert!(reason.contains("writable by group or others"), "{reason}");
        assert!(reason.contains("chmod 700"), "{reason}");
        assert!(host.logged("writable by group or others"));

        fs::set_permissions(&shared, fs::Permissions::from_mode(0o700)).unwrap();
        plugin.task("flush").unwrap();
        assert_eq!(plugin.health().unwrap().status, HealthStatus::Healthy);
        assert_eq!(fs::read_to_string(&log_file).unwrap().lines().count(), 1);
        assert_eq!(mode(&log_file), 0o600);
    }

    #[test]
    fn provider_events_go_to_the_provider_log_when_enabled() {
        let scratch = Scratch::new("provider");
        let (_host, plugin) = start(json!({
            "client_log_file": scratch.file("access.log"),
            "provider_enabled": true, "provider_log_file": scratch.file("provider.log"),
        }));
        plugin
            .hook(
                HookEvent::ProviderResponseReceived,
                json!({"request_id": "r1", "provider": "claude_api", "url": "https://api.anthropic.com/v1/messages",
                       "method": "POST", "status_code": 200, "duration_ms": 80.0}),
            )
            .unwrap();
        plugin
            .hook(
                HookEvent::ProviderError,
                json!({"request_id": "r2", "provider": "codex", "url": "https://x.test/", "error": "reset"}),
            )
            .unwrap();
        plugin
            .hook(
                HookEvent::ProviderStreamEnd,
                json!({"request_id": "r3", "provider": "codex", "total_chunks": 4, "total_bytes": 100, "usage": null}),
            )
            .unwrap();
        plugin.task("flush").unwrap();
        let lines: Vec<Value> = scratch
            .read("provider.log")
            .lines()
            .map(|line| ccproxy_plugin_abi::serde_json::from_str(line).unwrap())
            .collect();
        let events: Vec<&str> = lines
            .iter()
            .map(|line| line["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            [
                "provider.response.received",
                "provider.error",
                "provider.stream.end"
            ]
        );
        assert_eq!(lines[1]["error"], "reset");
        assert_eq!(lines[2]["total_chunks"], 4);
        assert_eq!(scratch.read("access.log"), "");
    }

    #[test]
    fn disabled_logs_write_nothing() {
        let scratch = Scratch::new("disabled");
        let (_host, plugin) = start(json!({
            "client_enabled": false, "client_log_file": scratch.file("access.log"),
            "provider_log_file": scratch.file("provider.log"),
        }));
        plugin.hook_with(completed("a", "/a")).unwrap();
        plugin
            .hook(
                HookEvent::ProviderError,
                json!({"request_id": "a", "error": "x"}),
            )
            .unwrap();
        plugin.shutdown().unwrap();
        assert!(!scratch.path().join("access.log").exists());
        assert!(!scratch.path().join("provider.log").exists());
        assert_eq!(plugin.health().unwrap().status, HealthStatus::Healthy);
    }

    #[test]
    fn manifest_and_defaults_match_the_original() {
        let plugin = MockHost::new()
            .config(json!({"client_enabled": false}))
            .start::<AccessLog>()
            .unwrap();
        let manifest = plugin.manifest();
        assert_eq!(manifest.hooks[0].name, "access_log");
        assert_eq!(manifest.hooks[0].priority, 750);
        assert!(
            !manifest.hooks[0]
                .events
                .iter()
                .any(|event| event == "provider.request.prepared")
        );
        assert_eq!(
            manifest.config.defaults,
            json!({
                "client_enabled": true, "client_format": "structured",
                "client_log_file": null, "provider_enabled": false,
                "provider_log_file": null,
                "exclude_paths": ["/health", "/metrics", "/readyz", "/livez"],
                "buffer_size": 100, "flush_interval": 1.0,
            })
        );
    }

    #[test]
    fn the_default_files_are_in_the_xdg_state_folder() {
        let path = |configured, xdg: Option<&str>, home: Option<&str>| {
            log_file_path(
                configured,
                xdg.map(OsStr::new),
                home.map(OsStr::new),
                "client_log_file",
                "access.log",
            )
        };
        assert_eq!(
            path(None, Some("/state"), Some("/home/ada")).unwrap(),
            PathBuf::from("/state/ccproxy/access.log")
        );
        for unset in [None, Some(""), Some("relative")] {
            assert_eq!(
                path(None, unset, Some("/home/ada")).unwrap(),
                PathBuf::from("/home/ada/.local/state/ccproxy/access.log")
            );
        }
        assert_eq!(
            path(Some(""), Some("/state"), None).unwrap(),
            PathBuf::from("/state/ccproxy/access.log")
        );
        assert_eq!(
            path(Some("/var/log/ccproxy/a.log"), None, None).unwrap(),
            PathBuf::from("/var/log/ccproxy/a.log")
        );
        assert_eq!(
            path(Some("~/logs/a.log"), None, Some("/home/ada")).unwrap(),
            PathBuf::from("/home/ada/logs/a.log")
        );
        let error = path(None, None, None).unwrap_err();
        assert!(error.message().contains("set client_log_file"), "{error}");
    }

    #[test]
    fn bad_config_is_refused() {
        for config in [
            json!({"client_format": "xml"}),
            json!({"flush_interval": 0.0}),
            json!({"client_formats": "common"}),
            json!({"client_log_file": "/var/log/"}),
            json!({"client_log_file": 7}),
        ] {
            let error = MockHost::new()
                .config(config.clone())
                .start::<AccessLog>()
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{config}: {error}");
        }
    }
}
