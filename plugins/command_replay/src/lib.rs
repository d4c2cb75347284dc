//! # command_replay: curl and xh commands that replay each request
//!
//! For every request the proxy sends upstream, after every mutating hook
//! (`provider.request.sent` with the body sent, plugin API 1.2), writes a
//! shell script that sends it again: `{id}_curl.sh` and `{id}_xh.sh`; for
//! every client request (`request.completed` / `request.failed` with the
//! client's body), `{id}_client_curl.sh` and `{id}_client_xh.sh` against the
//! proxy itself. Run one with `sh FILE`. The body reaches curl or xh on
//! standard input from the shell's `printf`, byte for byte (see `command`).
//!
//! Secrets are masked (`Authorization: Bearer ***`, `x-api-key: ***`, secret
//! JSON keys in the body): paste the real token before running. The host
//! never hands a plugin credentials, so `mask_secrets = false` leaves only
//! the body alone; headers stay as the host masks them.
//!
//! Files go to a private folder (`$XDG_STATE_HOME/ccproxy/command_replay` by
//! default, mode 0700, files 0600, never through a symlink; see
//! `ccproxy_plugin_kit::private_files`), kept under `max_total_bytes`. See
//! README.md for every key and where it differs from the original.
#![forbid(unsafe_code)]

mod command;

use std::{path::PathBuf, sync::Arc};

use ccproxy_plugin_abi::{Value, prelude::*, protocol::capability};
use ccproxy_plugin_kit::{
    private_files::{CappedDir, file_name_part, state_folder},
    redact::{self, EventHeaders},
};
use serde::{Deserialize, Serialize};

use crate::command::{Replay, curl, is_left_out, xh};

/// The default folder under `$XDG_STATE_HOME/ccproxy`.
const FOLDER: &str = "command_replay";

/// `[plugins.command_replay]`, with the original's defaults except the
/// folder, plus `mask_secrets` and `max_total_bytes` (see README.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Off by default: the host loads an opt-in plugin only once the user
    /// sets it true (see README.md). Read by the host, not the plugin.
    #[allow(dead_code)]
    enabled: bool,
    generate_curl: bool,
    generate_xh: bool,
    pretty_format: bool,
    include_url_patterns: Vec<String>,
    exclude_url_patterns: Vec<String>,
    log_dir: Option<String>,
    write_to_files: bool,
    separate_files_per_command: bool,
    log_to_console: bool,
    log_level: String,
    only_provider_requests: bool,
    include_client_requests: bool,
    mask_secrets: bool,
    max_total_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: false,
            generate_curl: true,
            generate_xh: true,
            pretty_format: true,
            include_url_patterns: [
                "api.anthropic.com",
                "api.openai.com",
                "claude.ai",
                "chatgpt.com",
            ]
            .map(str::to_owned)
            .to_vec(),
            exclude_url_patterns: Vec::new(),
            log_dir: None,
            write_to_files: true,
            separate_files_per_command: true,
            log_to_console: false,
            log_level: "TRACE".to_owned(),
            only_provider_requests: false,
            include_client_requests: true,
            mask_secrets: true,
            max_total_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The keys read from `provider.request.sent` and `request.completed`.
#[derive(Deserialize)]
struct RequestData {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: Option<EventHeaders>,
}

struct CommandReplay {
    ctx: Context,
    config: Config,
    level: Level,
    dir: Option<Arc<CappedDir>>,
}

/// The level `log_to_console` logs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// `TRACE`, `DEBUG`, `INFO`, `WARNING`/`WARN` or `ERROR`, any case.
fn parse_level(level: &str) -> Result<Level, PluginError> {
    match level.to_ascii_uppercase().as_str() {
        "TRACE" => Ok(Level::Trace),
        "DEBUG" => Ok(Level::Debug),
        "INFO" => Ok(Level::Info),
        "WARNING" | "WARN" => Ok(Level::Warn),
        "ERROR" => Ok(Level::Error),
        _ => Err(PluginError::invalid(format!(
            "log_level {level:?} is not one of TRACE, DEBUG, INFO, WARNING, ERROR"
        ))),
    }
}

impl CommandReplay {
    fn url_is_replayed(&self, url: &str) -> bool {
        let included = self.config.include_url_patterns.is_empty()
            || self
                .config
                .include_url_patterns
                .iter()
                .any(|pattern| url.contains(pattern.as_str()));
        let excluded = self
            .config
            .exclude_url_patterns
            .iter()
            .any(|pattern| url.contains(pattern.as_str()));
        included && !excluded
    }

    /// The request's headers for a replay: secrets masked, hop-by-hop left out.
    fn headers(&self, headers: EventHeaders) -> Vec<(String, String)> {
        headers
            .pairs()
            .into_iter()
            .filter(|(name, _)| !is_left_out(name))
            .map(|(name, value)| {
                // Without mask_secrets, values stay as the host masked them.
                // By name covers every header the host masks
                // (`authorization`, `x-api-key`, `cookie`, `x-auth-token` …).
                let secret = self.config.mask_secrets && redact::is_secret_header(&name, &[], true);
                let value = if secret {
                    redact::header_value(&value)
                } else {
                    value
                };
                (name, value)
            })
            .collect()
    }

    /// The scripts for one request: `(file name, text)`.
    fn scripts(
        &self,
        call: &HookCall,
        url: &str,
        data: RequestData,
        prefix: &str,
    ) -> Vec<(String, String)> {
        let method = data.method.unwrap_or_else(|| "POST".to_owned());
        let masked = self
            .config
            .mask_secrets
            .then(|| redact::json_body(&call.body))
            .flatten();
        let replay = Replay {
            method: &method,
            url,
            headers: self.headers(data.headers.unwrap_or_default()),
            body: masked.as_deref().unwrap_or(&call.body),
        };
        let id = call.request_id.as_deref().unwrap_or("no-request-id");
        let stem = file_name_part(id);
        let header = format!(
            "#!/bin/sh\n# ccproxy command_replay: {what} of request {id}\n{note}",
            what = if prefix.is_empty() {
                "upstream request"
            } else {
                "client request"
            },
            id = id.replace('\n', " "),
            note = if self.config.mask_secrets {
                "# Secrets are masked (***): put the real values in before running.\n"
            } else {
                "# Credential headers are masked by the proxy (***): put the real values in before running.\n"
            },
        );
        let mut scripts = Vec::new();
        if self.config.generate_curl {
            scripts.push((
                format!("{stem}_{prefix}curl.sh"),
                format!("{header}{}\n", curl(&replay, self.config.pretty_format)),
            ));
        }
        if self.config.generate_xh {
            scripts.push((
                format!("{stem}_{prefix}xh.sh"),
                format!("{header}{}\n", xh(&replay, self.config.pretty_format)),
            ));
        }
        scripts
    }

    fn upstream(&self, call: &HookCall) -> Result<Vec<(String, String)>, PluginError> {
        let data: RequestData = call.data()?;
        let url = data.url.clone().unwrap_or_default();
        if !self.url_is_replayed(&url) {
            return Ok(Vec::new());
        }
        Ok(self.scripts(call, &url, data, ""))
    }

    fn client(&self, call: &HookCall) -> Result<Vec<(String, String)>, PluginError> {
        if !self.config.include_client_requests || self.config.only_provider_requests {
            return Ok(Vec::new());
        }
        let mut data: RequestData = call.data()?;
        // A replay is a new request: with the original's id, the proxy would
        // overwrite the original's scripts (and traces) with its own.
        data.headers = data.headers.map(|headers| {
            EventHeaders::Pairs(
                headers
                    .pairs()
                    .into_iter()
                    .filter(|(name, _)| !name.eq_ignore_ascii_case("x-request-id"))
                    .collect(),
            )
        });
        // The proxy as the client reached it.
        let host = data
            .headers
            .as_ref()
            .and_then(|headers| headers.get("host"))
            .map(str::to_owned)
            .unwrap_or_else(|| "127.0.0.1:8000".to_owned());
        let url = format!("http://{host}{}", data.url.as_deref().unwrap_or("/"));
        Ok(self.scripts(call, &url, data, "client_"))
    }

    fn emit(&self, scripts: Vec<(String, String)>) -> Vec<(String, String)> {
        if self.config.log_to_console {
            for (name, text) in &scripts {
                match self.level {
                    Level::Trace => trace!("command_replay {name}:\n{text}"),
                    Level::Debug => debug!("command_replay {name}:\n{text}"),
                    Level::Info => info!("command_replay {name}:\n{text}"),
                    Level::Warn => warn!("command_replay {name}:\n{text}"),
                    Level::Error => error!("command_replay {name}:\n{text}"),
                }
            }
        }
        scripts
    }

    async fn write(&self, scripts: Vec<(String, String)>) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        if scripts.is_empty() {
            return;
        }
        let separate = self.config.separate_files_per_command;
        let job = move || write_all(&dir, separate, scripts);
        if let Err(error) = self.ctx.blocking(job).await {
            warn!("command_replay could not write its commands: {error}");
        }
    }
}

/// Writes each script to its own file, or appends them all to
/// `commands.sh`.
fn write_all(dir: &CappedDir, separate: bool, scripts: Vec<(String, String)>) {
    for (name, text) in scripts {
        let (file, written) = if separate {
            let written = dir.write(&name, text.as_bytes());
            (name, written)
        } else {
            let entry = format!("\n# --- {name}\n{text}");
            (
                "commands.sh".to_owned(),
                dir.append("commands.sh", entry.as_bytes()),
            )
        };
        if let Err(error) = written {
            warn!(
                "command_replay cannot write {}: {error}",
                dir.path().join(file).display()
            );
        }
    }
}

impl Plugin for CommandReplay {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("command_replay", env!("CARGO_PKG_VERSION"))
            .description("curl and xh commands that replay each upstream (and client) request, secrets masked")
            .hook_with_bodies(
                "command_replay",
                ["provider.request.sent", "request.completed", "request.failed"],
                200,
                [HookBody::UpstreamRequestBody, HookBody::RequestBody],
            )
            .config_key("generate_curl", "write a curl command")
            .config_key("generate_xh", "write an xh command")
            .config_key("pretty_format", "one option per line")
            .config_key("include_url_patterns", "upstream URLs containing one of these are replayed (empty: all)")
            .config_key("exclude_url_patterns", "upstream URLs containing one of these are not")
            .config_key("log_dir", "the folder; null: $XDG_STATE_HOME/ccproxy/command_replay")
            .config_key("write_to_files", "write the commands to files")
            .config_key("separate_files_per_command", "one file per command; false: all appended to commands.sh")
            .config_key("log_to_console", "also log each command")
            .config_key("log_level", "the level of those log lines: TRACE, DEBUG, INFO, WARNING or ERROR")
            .config_key("only_provider_requests", "replay upstream requests only")
            .config_key("include_client_requests", "replay client requests against the proxy too")
            .config_key("mask_secrets", "mask credential headers and secret JSON keys (false: the body as sent)")
            .config_key("max_total_bytes", "bytes the folder may hold; the oldest files are deleted first (0: no limit)")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        let level = parse_level(&config.log_level)?;
        let dir = if config.write_to_files {
            let home = std::env::var_os("HOME");
            let path = match ccproxy_plugin_kit::secret_file::expand_home(
                config.log_dir.as_deref().unwrap_or_default(),
                home.as_deref(),
                "command_replay",
            )? {
                Some(path) => path,
                None => state_folder(FOLDER)?,
            };
            let dir: PathBuf = path;
            Some(Arc::new(CappedDir::open(dir, config.max_total_bytes)?))
        } else {
            None
        };
        if !ctx.has_capability(capability::HOOK_BODIES) {
            warn!(
                "command_replay: this host (plugin API {}) sends no bodies to hooks; commands are written without bodies",
                ctx.host_api_version()
            );
        }
        info!(
            "command_replay writing commands to {}",
            dir.as_ref().map_or("the log only".to_owned(), |dir| dir
                .path()
                .display()
                .to_string())
        );
        Ok(Self {
            ctx,
            config,
            level,
            dir,
        })
    }

    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        let scripts = match call.event {
            HookEvent::ProviderRequestSent => self.upstream(&call)?,
            HookEvent::RequestCompleted | HookEvent::RequestFailed => self.client(&call)?,
            _ => Vec::new(),
        };
        let scripts = self.emit(scripts);
        self.write(scripts).await;
        Ok(HookOutcome::Continue)
    }

    async fn on_health(&self) -> Health {
        let Some(dir) = &self.dir else {
            return Health::with(HealthStatus::Healthy, json!({"folder": null}));
        };
        let mut details = dir.status();
        match dir.failing() {
            None => Health::with(HealthStatus::Healthy, details),
            Some(error) => {
                details["reason"] = Value::from(error);
                Health::with(HealthStatus::Degraded, details)
            }
        }
    }
}

export_plugin!(CommandReplay);

#[cfg(test)]
mod tests;
