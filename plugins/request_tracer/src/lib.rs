//! # request_tracer: JSON and raw HTTP traces of every exchange
//!
//! For each request id, writes what the client sent and was answered, and
//! what went to the upstream and came back, to a private folder
//! (`$XDG_STATE_HOME/ccproxy/traces` by default, mode 0700, files 0600,
//! never through a symlink; see `ccproxy_plugin_kit::private_files`):
//!
//! | file | when | from |
//! |---|---|---|
//! | `{id}_client_request.json` / `.http` | `log_client_request` | `request.completed` / `request.failed` with the client's body |
//! | `{id}_client_response.json` | `log_client_response` | the same events: status, duration, bytes, usage, error |
//! | `{id}_provider_request.json` / `.http` | `log_provider_request` | `provider.request.sent` with the body sent upstream |
//! | `{id}_provider_response.json` / `.http` | `log_provider_response` | `provider.response.received` with the upstream's complete answer |
//! | `{id}_provider_error.json` | `log_provider_response` | `provider.error` |
//! | `{id}_stream.jsonl` | `log_streaming_chunks` | `provider.stream.chunk`, one line per chunk, `side` upstream or client |
//!
//! `.json` files need `json_logs_enabled`, `.http` files (request or status
//! line, headers, blank line, body) `raw_http_enabled`. Headers named in
//! `exclude_headers`, and with `redact_sensitive` any named like a credential,
//! keep only their scheme (`Bearer ***`); with `redact_sensitive`, secret keys
//! of JSON bodies (`api_key`, `access_token`, `refresh_token`, `id_token`,
//! `client_secret`, `password` …) become `"***"`. Bodies are cut at
//! `max_body_size`; the folder is kept under `max_total_bytes` by deleting the
//! oldest files. See README.md for every key and where it differs from the
//! original.
//!
//! The hook only observes, off the request path; the bodies reach it because
//! its subscription asks for them (plugin API 1.2, capability `hook_bodies`).
#![forbid(unsafe_code)]

mod trace;

use std::{path::PathBuf, sync::Arc};

use ccproxy_plugin_abi::{Value, prelude::*, protocol::capability, serde_json::Map};
use ccproxy_plugin_kit::{
    private_files::{CappedDir, file_name_part, state_folder},
    redact::EventHeaders,
};
use serde::{Deserialize, Serialize};

use crate::trace::{Body, Redactor, headers_json, raw_request, raw_response};

/// The default folder under `$XDG_STATE_HOME/ccproxy`.
const FOLDER: &str = "traces";

/// `[plugins.request_tracer]`, with the original's defaults except the
/// folder (see README.md). `enabled` is the host's own key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Off by default: the host loads an opt-in plugin only once the user
    /// sets it true (see README.md). Read by the host, not the plugin.
    #[allow(dead_code)]
    enabled: bool,
    verbose_api: bool,
    json_logs_enabled: bool,
    raw_http_enabled: bool,
    trace_oauth: bool,
    log_dir: Option<String>,
    request_log_dir: Option<String>,
    raw_log_dir: Option<String>,
    exclude_paths: Vec<String>,
    include_paths: Vec<String>,
    exclude_headers: Vec<String>,
    redact_sensitive: bool,
    max_body_size: usize,
    truncate_body_preview: usize,
    log_client_request: bool,
    log_client_response: bool,
    log_provider_request: bool,
    log_provider_response: bool,
    log_streaming_chunks: bool,
    max_total_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: false,
            verbose_api: true,
            json_logs_enabled: true,
            raw_http_enabled: true,
            trace_oauth: true,
            log_dir: None,
            request_log_dir: None,
            raw_log_dir: None,
            exclude_paths: ["/health", "/metrics", "/readyz", "/livez"]
                .map(str::to_owned)
                .to_vec(),
            include_paths: Vec::new(),
            exclude_headers: ["authorization", "x-api-key", "cookie", "x-auth-token"]
                .map(str::to_owned)
                .to_vec(),
            redact_sensitive: true,
            max_body_size: 10 * 1024 * 1024,
            truncate_body_preview: 1024,
            log_client_request: true,
            log_client_response: true,
            log_provider_request: true,
            log_provider_response: true,
            log_streaming_chunks: false,
            max_total_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `request.completed` / `request.failed`, the keys a trace writes.
#[derive(Deserialize)]
struct ClientData {
    #[serde(default)]
    method: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    http_version: Option<String>,
    #[serde(default)]
    headers: Option<EventHeaders>,
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    duration_ms: Option<f64>,
    #[serde(default)]
    bytes_sent: Option<u64>,
    #[serde(default)]
    streaming: Option<bool>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<String>,
}

/// `provider.request.sent`, `provider.response.received`, `provider.error`.
#[derive(Deserialize)]
struct ProviderData {
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: Option<EventHeaders>,
    #[serde(default)]
    is_streaming: Option<bool>,
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    duration_ms: Option<f64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    phase: Option<String>,
}

/// Which provider message a trace is of.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// What went upstream.
    Request,
    /// What the upstream answered.
    Response,
}

/// `provider.stream.chunk`.
#[derive(Deserialize)]
struct ChunkData {
    #[serde(default)]
    chunk_number: Option<u64>,
    #[serde(default)]
    side: Option<String>,
}

/// Which folder a file goes to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Json,
    Raw,
}

/// One file to write.
struct Write {
    kind: Kind,
    name: String,
    bytes: Vec<u8>,
    append: bool,
}

/// The plugin: its config and its folders (the same one for both kinds
/// unless `request_log_dir` and `raw_log_dir` differ).
struct RequestTracer {
    ctx: Context,
    config: Config,
    redactor: Redactor,
    json_dir: Arc<CappedDir>,
    raw_dir: Arc<CappedDir>,
}

/// `configured` with `~/` expanded; `None` when unset or blank.
fn folder(configured: Option<&str>) -> Result<Option<PathBuf>, PluginError> {
    let home = std::env::var_os("HOME");
    ccproxy_plugin_kit::secret_file::expand_home(
        configured.unwrap_or_default(),
        home.as_deref(),
        "request_tracer",
    )
}

impl RequestTracer {
    fn path_is_traced(&self, path: &str) -> bool {
        let excluded = self
            .config
            .exclude_paths
            .iter()
            .any(|excluded| path.starts_with(excluded.as_str()));
        let included = self.config.include_paths.is_empty()
            || self
                .config
                .include_paths
                .iter()
                .any(|included| path.starts_with(included.as_str()));
        included && !excluded
    }

    /// Without `trace_oauth`, token endpoints are left out.
    fn url_is_traced(&self, url: &str) -> bool {
        self.config.trace_oauth || !url.to_ascii_lowercase().contains("oauth")
    }

    fn stem(call: &HookCall) -> String {
        file_name_part(call.request_id.as_deref().unwrap_or("no-request-id"))
    }

    fn json_file(&self, stem: &str, kind: &str, trace: Map<String, Value>) -> Option<Write> {
        self.config.json_logs_enabled.then(|| {
            let mut bytes = ccproxy_plugin_abi::serde_json::to_vec_pretty(&Value::Object(trace))
                .unwrap_or_default();
            bytes.push(b'\n');
            Write {
                kind: Kind::Json,
                name: format!("{stem}_{kind}.json"),
                bytes,
                append: false,
            }
        })
    }

    fn raw_file(&self, stem: &str, kind: &str, bytes: impl FnOnce() -> Vec<u8>) -> Option<Write> {
        self.config.raw_http_enabled.then(|| Write {
            kind: Kind::Raw,
            name: format!("{stem}_{kind}.http"),
            bytes: bytes(),
            append: false,
        })
    }

    /// The `.json` trace and the raw `.http` file of one message, those enabled.
    fn message_files(
        &self,
        stem: &str,
        kind: &str,
        trace: Map<String, Value>,
        raw: impl FnOnce() -> Vec<u8>,
    ) -> Vec<Write> {
        self.json_file(stem, kind, trace)
            .into_iter()
            .chain(self.raw_file(stem, kind, raw))
            .collect()
    }

    fn verbose(&self, stem: &str, kind: &str, what: &str, body: Option<&Body<'_>>) {
        if self.config.verbose_api {
            // The preview is made only when the debug line is recorded.
            debug!(
                "trace {stem} {kind}: {what} {}",
                body.map(|body| body.preview(self.config.truncate_body_preview))
                    .unwrap_or_default()
            );
        }
    }

    fn client(&self, call: &HookCall) -> Result<Vec<Write>, PluginError> {
        let data: ClientData = call.data()?;
        if !self.path_is_traced(&data.path) {
            return Ok(Vec::new());
        }
        let stem = Self::stem(call);
        let mut writes = Vec::new();
        if self.config.log_client_request {
            let headers = self
                .redactor
                .headers(&data.headers.unwrap_or_default().pairs());
            let body = self.redactor.body(&call.body);
            let mut trace = header_fields(call, "client_request");
            trace.insert("method".to_owned(), Value::from(data.method.as_str()));
            trace.insert("url".to_owned(), Value::from(data.url.as_str()));
            trace.insert("headers".to_owned(), headers_json(&headers));
            body.insert_into(&mut trace);
            self.verbose(
                &stem,
                "client_request",
                &format!("{} {}", data.method, data.url),
                Some(&body),
            );
            let version = data.http_version.as_deref().unwrap_or("HTTP/1.1");
            writes.extend(self.message_files(&stem, "client_request", trace, || {
                raw_request(&data.method, &data.url, version, &headers, &body)
            }));
        }
        if self.config.log_client_response {
            let mut trace = header_fields(call, "client_response");
            for (key, value) in [
                ("status_code", json!(data.status_code)),
                ("duration_ms", json!(data.duration_ms)),
                ("bytes_sent", json!(data.bytes_sent)),
                ("streaming", json!(data.streaming)),
                ("provider", json!(data.provider)),
                ("model", json!(data.model)),
                ("usage", data.usage.unwrap_or(Value::Null)),
                ("error", json!(data.error)),
            ] {
                trace.insert(key.to_owned(), value);
            }
            self.verbose(
                &stem,
                "client_response",
                &format!("{:?}", data.status_code),
                None,
            );
            writes.extend(self.json_file(&stem, "client_response", trace));
        }
        Ok(writes)
    }

    /// `provider.request.sent` or `provider.response.received`: the trace
    /// of what went upstream or came back.
    fn provider_message(&self, call: &HookCall, side: Side) -> Result<Vec<Write>, PluginError> {
        let (kind, enabled) = match side {
            Side::Request => ("provider_request", self.config.log_provider_request),
            Side::Response => ("provider_response", self.config.log_provider_response),
        };
        if !enabled {
            return Ok(Vec::new());
        }
        let data: ProviderData = call.data()?;
        let url = data.url.unwrap_or_default();
        if !self.url_is_traced(&url) {
            return Ok(Vec::new());
        }
        let stem = Self::stem(call);
        let headers = self
            .redactor
            .headers(&data.headers.unwrap_or_default().pairs());
        let body = self.redactor.body(&call.body);
        let mut trace = header_fields(call, kind);
        trace.insert("provider".to_owned(), json!(data.provider));
        trace.insert("url".to_owned(), Value::from(url.as_str()));
        trace.insert("headers".to_owned(), headers_json(&headers));
        body.insert_into(&mut trace);
        let method = data.method.unwrap_or_default();
        let status = data.status_code.unwrap_or_default();
        let what = match side {
            Side::Request => {
                trace.insert("method".to_owned(), Value::from(method.as_str()));
                trace.insert("streaming".to_owned(), json!(data.is_streaming));
                format!("{method} {url}")
            }
            Side::Response => {
                trace.insert("status_code".to_owned(), json!(data.status_code));
                trace.insert("duration_ms".to_owned(), json!(data.duration_ms));
                format!("{status} {url}")
            }
        };
        self.verbose(&stem, kind, &what, Some(&body));
        Ok(self.message_files(&stem, kind, trace, || match side {
            Side::Request => raw_request(&method, &url, "HTTP/1.1", &headers, &body),
            Side::Response => raw_response(status, &headers, &body),
        }))
    }

    fn provider_error(&self, call: &HookCall) -> Result<Vec<Write>, PluginError> {
        if !self.config.log_provider_response {
            return Ok(Vec::new());
        }
        let data: ProviderData = call.data()?;
        let stem = Self::stem(call);
        let mut trace = header_fields(call, "provider_error");
        for (key, value) in [
            ("provider", json!(data.provider)),
            ("url", json!(data.url)),
            ("status_code", json!(data.status_code)),
            ("phase", json!(data.phase)),
            ("error", json!(data.error)),
        ] {
            trace.insert(key.to_owned(), value);
        }
        self.verbose(
            &stem,
            "provider_error",
            data.error.as_deref().unwrap_or_default(),
            None,
        );
        Ok(self
            .json_file(&stem, "provider_error", trace)
            .into_iter()
            .collect())
    }

    fn stream_chunk(&self, call: &HookCall) -> Result<Vec<Write>, PluginError> {
        if !self.config.log_streaming_chunks || call.body.is_empty() {
            return Ok(Vec::new());
        }
        let data: ChunkData = call.data()?;
        let body = self.redactor.body(&call.body);
        let line = json!({
            "timestamp_ms": call.timestamp_ms,
            "side": data.side.as_deref().unwrap_or("upstream"),
            "chunk_number": data.chunk_number,
            "size": body.size,
            "truncated": body.truncated,
            "data": String::from_utf8_lossy(&body.bytes),
        });
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        Ok(vec![Write {
            kind: Kind::Json,
            name: format!("{}_stream.jsonl", Self::stem(call)),
            bytes,
            append: true,
        }])
    }

    /// Writes `writes` on the host's blocking pool (plugin API 1.2), so file
    /// I/O never stalls the host's async workers.
    async fn write(&self, writes: Vec<Write>) {
        if writes.is_empty() {
            return;
        }
        let (json_dir, raw_dir) = (self.json_dir.clone(), self.raw_dir.clone());
        let job = self
            .ctx
            .blocking(move || write_all(&json_dir, &raw_dir, writes));
        if let Err(error) = job.await {
            warn!("request_tracer could not write its traces: {error}");
        }
    }

    fn folders(&self) -> Vec<&CappedDir> {
        if Arc::ptr_eq(&self.json_dir, &self.raw_dir) {
            vec![&self.json_dir]
        } else {
            vec![&self.json_dir, &self.raw_dir]
        }
    }
}

fn write_all(json_dir: &CappedDir, raw_dir: &CappedDir, writes: Vec<Write>) {
    for write in writes {
        let dir = match write.kind {
            Kind::Json => json_dir,
            Kind::Raw => raw_dir,
        };
        let written = if write.append {
            dir.append(&write.name, &write.bytes)
        } else {
            dir.write(&write.name, &write.bytes)
        };
        if let Err(error) = written {
            warn!(
                "request_tracer cannot write {}: {error}",
                dir.path().join(&write.name).display()
            );
        }
    }
}

/// The keys every JSON trace starts with.
fn header_fields(call: &HookCall, kind: &str) -> Map<String, Value> {
    let mut trace = Map::new();
    trace.insert("request_id".to_owned(), json!(call.request_id));
    trace.insert("kind".to_owned(), Value::from(kind));
    trace.insert("event".to_owned(), Value::from(call.event.as_str()));
    trace.insert("timestamp_ms".to_owned(), Value::from(call.timestamp_ms));
    trace
}

impl Plugin for RequestTracer {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("request_tracer", env!("CARGO_PKG_VERSION"))
            .description("JSON and raw HTTP traces of client and provider requests and responses, redacted, in a private folder")
            .hook_with_bodies(
                "request_tracer",
                [
                    "request.completed",
                    "request.failed",
                    "provider.request.sent",
                    "provider.response.received",
                    "provider.error",
                    "provider.stream.chunk",
                ],
                300,
                [
                    HookBody::RequestBody,
                    HookBody::UpstreamRequestBody,
                    HookBody::UpstreamResponseBody,
                    HookBody::UpstreamChunks,
                    HookBody::ClientChunks,
                ],
            )
            .config_key("verbose_api", "log each trace at debug level, with a body preview")
            .config_key("json_logs_enabled", "write the .json traces")
            .config_key("raw_http_enabled", "write the raw .http traces")
            .config_key("trace_oauth", "trace exchanges with OAuth endpoints too (URLs containing \"oauth\")")
            .config_key("log_dir", "the trace folder; null: $XDG_STATE_HOME/ccproxy/traces")
            .config_key("request_log_dir", "folder of the .json traces; null: log_dir")
            .config_key("raw_log_dir", "folder of the .http traces; null: log_dir")
            .config_key("exclude_paths", "client paths starting with one of these are not traced")
            .config_key("include_paths", "when not empty, only client paths starting with one of these are traced")
            .config_key("exclude_headers", "headers whose values are always masked")
            .config_key("redact_sensitive", "also mask credential-like headers and secret JSON keys in bodies")
            .config_key("max_body_size", "bytes of a body kept in a trace")
            .config_key("truncate_body_preview", "characters of a body shown by verbose_api")
            .config_key("log_client_request", "trace what the client sent")
            .config_key("log_client_response", "trace how the client was answered")
            .config_key("log_provider_request", "trace what was sent upstream")
            .config_key("log_provider_response", "trace what the upstream answered")
            .config_key("log_streaming_chunks", "append each stream chunk to {id}_stream.jsonl")
            .config_key("max_total_bytes", "bytes the trace folder may hold; the oldest files are deleted first (0: no limit)")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        let log_dir = match folder(config.log_dir.as_deref())? {
            Some(dir) => dir,
            None => state_folder(FOLDER)?,
        };
        let json_path =
            folder(config.request_log_dir.as_deref())?.unwrap_or_else(|| log_dir.clone());
        let raw_path = folder(config.raw_log_dir.as_deref())?.unwrap_or_else(|| log_dir.clone());
        let json_dir = Arc::new(CappedDir::open(json_path.clone(), config.max_total_bytes)?);
        let raw_dir = if raw_path == json_path {
            json_dir.clone()
        } else {
            Arc::new(CappedDir::open(raw_path, config.max_total_bytes)?)
        };
        if !ctx.has_capability(capability::HOOK_BODIES) {
            warn!(
                "request_tracer: this host (plugin API {}) sends no bodies to hooks; traces hold headers and status only",
                ctx.host_api_version()
            );
        }
        info!(
            "request_tracer writing traces to {}",
            json_dir.path().display()
        );
        let redactor = Redactor {
            exclude_headers: config.exclude_headers.clone(),
            redact_sensitive: config.redact_sensitive,
            max_body_size: config.max_body_size,
        };
        Ok(Self {
            ctx,
            config,
            redactor,
            json_dir,
            raw_dir,
        })
    }

    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        let writes = match call.event {
            HookEvent::RequestCompleted | HookEvent::RequestFailed => self.client(&call)?,
            HookEvent::ProviderRequestSent => self.provider_message(&call, Side::Request)?,
            HookEvent::ProviderResponseReceived => self.provider_message(&call, Side::Response)?,
            HookEvent::ProviderError => self.provider_error(&call)?,
            HookEvent::ProviderStreamChunk => self.stream_chunk(&call)?,
            _ => Vec::new(),
        };
        self.write(writes).await;
        Ok(HookOutcome::Continue)
    }

    async fn on_health(&self) -> Health {
        let folders = self.folders();
        let errors: Vec<String> = folders.iter().filter_map(|dir| dir.failing()).collect();
        let mut details = json!({
            "folders": folders.iter().map(|dir| dir.status()).collect::<Vec<_>>(),
            "hook_bodies": self.ctx.has_capability(capability::HOOK_BODIES),
        });
        if errors.is_empty() {
            Health::with(HealthStatus::Healthy, details)
        } else {
            details["reason"] = Value::from(errors.join("; "));
            Health::with(HealthStatus::Degraded, details)
        }
    }
}

export_plugin!(RequestTracer);

#[cfg(test)]
mod tests;
