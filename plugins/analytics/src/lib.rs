//! # analytics: the `/logs` API and its live stream
//!
//! The original's routes over the stored request logs (see
//! `docs` in this folder's README for the exact JSON):
//!
//! - `GET /logs/query`: rows, newest first (or `order=asc`), filtered, paged
//!   with an opaque `cursor`;
//! - `GET /logs/analytics`: totals and breakdowns by model, provider,
//!   status and time bucket, latency percentiles, cost, over the last
//!   `hours` (1..=168);
//! - `GET /logs/stream`: Server-Sent Events, one `data: {row}` per finished
//!   request that passes the filters, as it finishes, and a `: keep-alive`
//!   comment every `keepalive_seconds`;
//! - `POST /logs/reset`: deletes every stored row.
//!
//! The store belongs to the `storage` plugin: `query`, `analytics` and
//! `reset` are calls to its service `log_storage` (this plugin requires it,
//! so it is off when `storage` is). The stream does not wait for the store:
//! this plugin's own hook on `request.completed`/`request.failed` (priority
//! 810, after `pricing` and `storage`) reads the same row
//! (`ccproxy_plugin_kit::logs::LogRow`) and hands it to every open stream
//! whose filters it passes, with `try_send`: a stream whose reader is
//! behind by `stream_queue` rows misses rows (counted) rather than slowing
//! the others, and a stream whose client left is dropped at the next row or
//! keep-alive (its send fails).
//!
//! Routes need the client token when `security.auth_token` is set (none is
//! public). A malformed parameter is a 400 naming it:
//! `{"error":{"type":"invalid_request_error","message":"parameter 'limit': must be an integer from 1 to 10000"}}`.
#![forbid(unsafe_code)]

use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};

use ccproxy_plugin_abi::{Value, prelude::*};
use ccproxy_plugin_kit::{
    logs::{
        LogRow, ParamError, RowFilter, parse_analytics_request, parse_query_request,
        parse_stream_filter,
    },
    now_ms,
};
use serde::{Deserialize, Serialize};

/// The storage plugin's service.
const LOG_STORAGE: &str = "log_storage";

/// `[plugins.analytics]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Seconds between `: keep-alive` comments on open streams.
    keepalive_seconds: f64,
    /// Rows a stream's reader may be behind before it misses some.
    stream_queue: usize,
    /// Open streams at most; more are refused with 503.
    max_streams: usize,
    /// Requests whose path starts with one of these are not streamed.
    exclude_paths: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            keepalive_seconds: 15.0,
            stream_queue: 256,
            max_streams: 64,
            // As the storage plugin's: a dashboard's own reads are not news.
            exclude_paths: [
                "/health",
                "/metrics",
                "/readyz",
                "/livez",
                "/logs",
                "/dashboard",
                "/plugins",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

/// An open `/logs/stream`.
struct Subscriber {
    filter: RowFilter,
    sender: BodySender,
}

/// The plugin.
struct Analytics {
    ctx: Context,
    config: Config,
    streams: Mutex<Vec<Subscriber>>,
    streamed: AtomicU64,
    missed: AtomicU64,
    opened: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bad_request(error: &ParamError) -> Response {
    Response::json(400, &error.body())
}

fn error_response(status: u16, kind: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({"error": {"type": kind, "message": message}}),
    )
}

impl Analytics {
    async fn ask_store(&self, method: &str, args: Result<Value, ParamError>) -> Response {
        let args = match args {
            Ok(args) => args,
            Err(error) => return bad_request(&error),
        };
        match self.ctx.call_service(LOG_STORAGE, method, args).await {
            Ok(answer) => Response::json(200, &answer),
            Err(error) => {
                warn!(
                    "analytics: {LOG_STORAGE}.{method} failed: {}",
                    error.message()
                );
                error_response(503, "service_unavailable", error.message())
            }
        }
    }

    fn stream(&self, query: &str) -> RouteResponse {
        let filter = match parse_stream_filter(query) {
            Ok(filter) => filter,
            Err(error) => return bad_request(&error).into(),
        };
        let mut streams = lock(&self.streams);
        streams.retain(|stream| !stream.sender.is_closed());
        if streams.len() >= self.config.max_streams {
            return error_response(
                503,
                "service_unavailable",
                &format!(
                    "{} log streams are open already (max_streams); close one",
                    streams.len()
                ),
            )
            .into();
        }
        let (mut sender, body) = BodyStream::channel(self.config.stream_queue.max(2));
        // The first piece: the client knows the stream is open.
        let _ = sender.try_send(": stream open\n\n");
        streams.push(Subscriber { filter, sender });
        self.opened.fetch_add(1, Ordering::Relaxed);
        StreamResponse::sse(body).into()
    }

    /// Sends `piece` to the streams `wants` picks; forgets closed ones.
    fn broadcast(&self, piece: &str, wants: impl Fn(&RowFilter) -> bool) {
        let mut streams = lock(&self.streams);
        streams.retain_mut(|stream| {
            if !wants(&stream.filter) {
                return !stream.sender.is_closed();
            }
            match stream.sender.try_send(piece) {
                Ok(true) => {
                    self.streamed.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Ok(false) => {
                    self.missed.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(_) => false,
            }
        });
    }

    fn is_excluded(&self, path: &str) -> bool {
        self.config
            .exclude_paths
            .iter()
            .any(|excluded| path.starts_with(excluded.as_str()))
    }
}

/// A parsed request as service arguments.
fn to_value<T: Serialize>(value: Result<T, ParamError>) -> Result<Value, ParamError> {
    value.and_then(|request| {
        ccproxy_plugin_abi::serde_json::to_value(request).map_err(|error| ParamError {
            param: "query".to_owned(),
            reason: error.to_string(),
        })
    })
}

impl Plugin for Analytics {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("analytics", env!("CARGO_PKG_VERSION"))
            .description("The /logs API over stored request logs, with a live SSE stream")
            .requires(LOG_STORAGE)
            .route(
                "/logs",
                [
                    Route::get("/query"),
                    Route::get("/analytics"),
                    Route::get("/stream"),
                    Route::post("/reset"),
                ],
            )
            .hook("analytics", ["request.completed", "request.failed"], 810)
            .task_from_config("keepalive", "keepalive_seconds", 15.0, false)
            .config_key(
                "keepalive_seconds",
                "seconds between keep-alive comments on open streams",
            )
            .config_key(
                "stream_queue",
                "rows a stream's reader may be behind before it misses some",
            )
            .config_key("max_streams", "open /logs/stream connections at most")
            .config_key(
                "exclude_paths",
                "requests whose path starts with one of these are not streamed",
            )
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        if !ctx.has_capability("stream_routes") {
            return Err(PluginError::unsupported(
                "this host cannot stream route answers (plugin API 1.2 needed for /logs/stream)",
            ));
        }
        if !(config.keepalive_seconds.is_finite() && config.keepalive_seconds > 0.0) {
            return Err(PluginError::invalid(
                "keepalive_seconds must be a positive number of seconds",
            ));
        }
        Ok(Self {
            ctx,
            config,
            streams: Mutex::default(),
            streamed: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        })
    }

    async fn on_route_response(&self, req: Request) -> Result<RouteResponse, PluginError> {
        Ok(match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/logs/query") => self
                .ask_store("query", to_value(parse_query_request(&req.query)))
                .await
                .into(),
            ("GET", "/logs/analytics") => {
                let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
                self.ask_store(
                    "analytics",
                    to_value(parse_analytics_request(&req.query, now)),
                )
                .await
                .into()
            }
            ("GET", "/logs/stream") => self.stream(&req.query),
            ("POST", "/logs/reset") => self.ask_store("reset", Ok(json!({}))).await.into(),
            (method, path) => {
                return Err(PluginError::not_found(format!("no route {method} {path}")));
            }
        })
    }

    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        if !matches!(
            call.event,
            HookEvent::RequestCompleted | HookEvent::RequestFailed
        ) || lock(&self.streams).is_empty()
        {
            return Ok(HookOutcome::Continue);
        }
        let row = LogRow::from_hook(&call)?;
        if !self.is_excluded(&row.path) {
            let piece = format!("data: {}\n\n", row.to_json());
            self.broadcast(&piece, |filter| filter.matches(&row));
        }
        Ok(HookOutcome::Continue)
    }

    async fn on_task(&self, task: String) -> Result<(), PluginError> {
        if task == "keepalive" {
            self.broadcast(": keep-alive\n\n", |_| true);
        }
        Ok(())
    }

    async fn on_health(&self) -> Health {
        let open = {
            let mut streams = lock(&self.streams);
            streams.retain(|stream| !stream.sender.is_closed());
            streams.len()
        };
        Health::with(
            HealthStatus::Healthy,
            json!({
                "open_streams": open,
                "streams_opened": self.opened.load(Ordering::Relaxed),
                "rows_streamed": self.streamed.load(Ordering::Relaxed),
                "rows_missed_by_slow_readers": self.missed.load(Ordering::Relaxed),
            }),
        )
    }
}

export_plugin!(Analytics);
