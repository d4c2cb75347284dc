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
//! so it is off when `storage` is). The stream has no hook of its own (each
//! observing subscriber costs the host a dispatch per request): while a
//! stream is open, the `poll` task asks `log_storage.recent` every
//! `poll_interval` for the rows `storage`'s hook read since (it keeps them
//! only while someone asks) and hands each to every open stream whose
//! filters it passes, with `try_send`: a stream whose reader is behind by
//! `stream_queue` rows misses rows (counted) rather than slowing the others,
//! and a stream whose client left is dropped at the next row or keep-alive
//! (its send fails).
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
    /// Off by default (opt-in, as the original's): the host loads it only
    /// once the user sets it true. Read by the host, not the plugin.
    #[allow(dead_code)]
    enabled: bool,
    /// Seconds between `: keep-alive` comments on open streams.
    keepalive_seconds: f64,
    /// Rows a stream's reader may be behind before it misses some.
    stream_queue: usize,
    /// Open streams at most; more are refused with 503.
    max_streams: usize,
    /// Seconds between reads of the latest rows while a stream is open.
    poll_interval: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: false,
            keepalive_seconds: 15.0,
            stream_queue: 256,
            max_streams: 64,
            poll_interval: 0.25,
        }
    }
}

/// An open `/logs/stream`.
struct Subscriber {
    filter: RowFilter,
    sender: BodySender,
}

/// The open streams and what they were sent.
#[derive(Default)]
struct Streams {
    open: Mutex<Vec<Subscriber>>,
    streamed: AtomicU64,
    missed: AtomicU64,
    opened: AtomicU64,
}

impl Streams {
    /// A new stream of the rows `filter` passes, or why not (too many open).
    fn open(&self, filter: RowFilter, capacity: usize, max: usize) -> Result<BodyStream, String> {
        let mut open = lock(&self.open);
        open.retain(|stream| !stream.sender.is_closed());
        if open.len() >= max {
            return Err(format!(
                "{} log streams are open already (max_streams); close one",
                open.len()
            ));
        }
        let (mut sender, body) = BodyStream::channel(capacity.max(2));
        // The first piece: the client knows the stream is open.
        let _ = sender.try_send(": stream open\n\n");
        open.push(Subscriber { filter, sender });
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(body)
    }

    fn is_empty(&self) -> bool {
        lock(&self.open).is_empty()
    }

    /// Sends `piece` to the streams `wants` picks, without waiting: a
    /// stream whose reader is behind misses it (counted); streams whose
    /// client left are forgotten.
    fn broadcast(&self, piece: &str, wants: impl Fn(&RowFilter) -> bool) {
        lock(&self.open).retain_mut(|stream| {
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

    /// `row` as an SSE event to every stream whose filter it passes.
    fn publish(&self, row: &LogRow) {
        let piece = format!("data: {}\n\n", row.to_json());
        self.broadcast(&piece, |filter| filter.matches(row));
    }

    fn keep_alive(&self) {
        self.broadcast(": keep-alive\n\n", |_| true);
    }

    fn status(&self) -> Value {
        let open = {
            let mut open = lock(&self.open);
            open.retain(|stream| !stream.sender.is_closed());
            open.len()
        };
        json!({
            "open_streams": open,
            "streams_opened": self.opened.load(Ordering::Relaxed),
            "rows_streamed": self.streamed.load(Ordering::Relaxed),
            "rows_missed_by_slow_readers": self.missed.load(Ordering::Relaxed),
        })
    }
}

/// The plugin.
struct Analytics {
    ctx: Context,
    config: Config,
    streams: Streams,
    /// The `next` of the last `log_storage.recent` answer, while streams are open.
    cursor: Mutex<Option<u64>>,
}

/// `log_storage.recent`'s answer.
#[derive(Debug, Deserialize)]
struct RecentRows {
    next: u64,
    rows: Vec<LogRow>,
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

    async fn stream(&self, query: &str) -> RouteResponse {
        let filter = match parse_stream_filter(query) {
            Ok(filter) => filter,
            Err(error) => return bad_request(&error).into(),
        };
        // The first stream starts the store's record of recent rows.
        if lock(&self.cursor).is_none() {
            match self.recent(None).await {
                Ok(recent) => *lock(&self.cursor) = Some(recent.next),
                Err(error) => {
                    return error_response(503, "service_unavailable", error.message()).into();
                }
            }
        }
        match self
            .streams
            .open(filter, self.config.stream_queue, self.config.max_streams)
        {
            Ok(body) => StreamResponse::sse(body).into(),
            Err(message) => error_response(503, "service_unavailable", &message).into(),
        }
    }

    async fn recent(&self, after: Option<u64>) -> Result<RecentRows, PluginError> {
        self.ctx
            .call_service_as(LOG_STORAGE, "recent", &json!({"after": after}))
            .await
    }

    /// Hands the rows finished since the last poll to the open streams.
    async fn poll(&self) -> Result<(), PluginError> {
        if self.streams.is_empty() {
            // Nobody reads: the store stops keeping rows for us.
            *lock(&self.cursor) = None;
            return Ok(());
        }
        let Some(after) = *lock(&self.cursor) else {
            return Ok(());
        };
        let recent = self.recent(Some(after)).await?;
        // Rows the store no longer held (more than it keeps between polls).
        let lost = recent
            .next
            .saturating_sub(after)
            .saturating_sub(recent.rows.len() as u64);
        if lost > 0 {
            self.streams.missed.fetch_add(lost, Ordering::Relaxed);
        }
        for row in &recent.rows {
            self.streams.publish(row);
        }
        *lock(&self.cursor) = Some(recent.next);
        Ok(())
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
            // The store keeps the latest rows while we read them: no hook of
            // our own, so a proxy without open streams pays nothing per request.
            .task_from_config("poll", "poll_interval", 0.25, false)
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
                "poll_interval",
                "seconds between reads of the latest rows while a stream is open",
            )
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        if !ctx.has_capability("stream_routes") {
            return Err(PluginError::unsupported(
                "this host cannot stream route answers (plugin API 1.2 needed for /logs/stream)",
            ));
        }
        for (key, value) in [
            ("keepalive_seconds", config.keepalive_seconds),
            ("poll_interval", config.poll_interval),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(PluginError::invalid(format!(
                    "{key} must be a positive number of seconds"
                )));
            }
        }
        Ok(Self {
            ctx,
            config,
            streams: Streams::default(),
            cursor: Mutex::new(None),
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
            ("GET", "/logs/stream") => self.stream(&req.query).await,
            ("POST", "/logs/reset") => self.ask_store("reset", Ok(json!({}))).await.into(),
            (method, path) => {
                return Err(PluginError::not_found(format!("no route {method} {path}")));
            }
        })
    }

    async fn on_task(&self, task: String) -> Result<(), PluginError> {
        match task.as_str() {
            "poll" => self.poll().await,
            "keepalive" => {
                self.streams.keep_alive();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn on_health(&self) -> Health {
        Health::with(HealthStatus::Healthy, self.streams.status())
    }
}

export_plugin!(Analytics);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ccproxy_plugin_abi::testing::{MockHost, request};
    use futures_util::FutureExt as _;

    use super::*;

    fn row(model: &str, status: i64) -> LogRow {
        LogRow {
            request_id: format!("{model}-{status}"),
            model: Some(model.to_owned()),
            status_code: status,
            duration_ms: 50.0,
            ..LogRow::default()
        }
    }

    /// The next piece the stream has ready, without waiting.
    fn ready(body: &mut BodyStream) -> Option<String> {
        body.next()
            .now_or_never()
            .flatten()
            .map(|piece| String::from_utf8(piece.unwrap()).unwrap())
    }

    #[test]
    fn rows_reach_the_streams_whose_filters_they_pass() {
        let streams = Streams::default();
        let mut all = streams.open(RowFilter::default(), 8, 4).unwrap();
        let failures = parse_stream_filter("min_status=400&model=gpt-5").unwrap();
        let mut failed = streams.open(failures, 8, 4).unwrap();
        assert_eq!(ready(&mut all).as_deref(), Some(": stream open\n\n"));
        assert_eq!(ready(&mut failed).as_deref(), Some(": stream open\n\n"));
        streams.publish(&row("gpt-5", 200));
        streams.publish(&row("gpt-5", 529));
        let first = ready(&mut all).unwrap();
        assert!(
            first.starts_with("data: {") && first.ends_with("}\n\n"),
            "{first}"
        );
        let first: Value =
            ccproxy_plugin_abi::serde_json::from_str(first.trim_start_matches("data: ").trim())
                .unwrap();
        assert_eq!(first["request_id"], "gpt-5-200");
        assert!(ready(&mut all).unwrap().contains("gpt-5-529"));
        assert!(ready(&mut failed).unwrap().contains("gpt-5-529"));
        assert_eq!(ready(&mut failed), None, "the 200 was filtered out");
        streams.keep_alive();
        assert_eq!(ready(&mut all).as_deref(), Some(": keep-alive\n\n"));
    }

    #[test]
    fn a_slow_reader_misses_rows_and_a_gone_one_is_forgotten() {
        let streams = Streams::default();
        let slow = streams.open(RowFilter::default(), 2, 4).unwrap();
        for _ in 0..5 {
            streams.publish(&row("m", 200));
        }
        let status = streams.status();
        assert!(
            status["rows_missed_by_slow_readers"].as_u64().unwrap() >= 3,
            "{status}"
        );
        assert_eq!(status["open_streams"], 1);
        drop(slow);
        streams.publish(&row("m", 200));
        assert_eq!(streams.status()["open_streams"], 0);
        assert!(streams.is_empty());
        // At most `max` at once.
        let _one = streams.open(RowFilter::default(), 2, 1).unwrap();
        assert!(
            streams
                .open(RowFilter::default(), 2, 1)
                .unwrap_err()
                .contains("max_streams")
        );
    }

    fn with_store(answer: Value) -> (MockHost, ccproxy_plugin_abi::testing::TestPlugin) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let host = MockHost::new().service(LOG_STORAGE, move |method, args| {
            lock(&record).push((method.to_owned(), args));
            match method {
                "fail" => Err(PluginError::unavailable("down")),
                _ => Ok(answer.clone()),
            }
        });
        let plugin = host.start::<Analytics>().unwrap();
        (host, plugin)
    }

    #[test]
    fn routes_ask_the_store_with_parsed_parameters() {
        let (host, plugin) = with_store(json!({"results": [], "count": 0}));
        let reply = plugin
            .route(request("GET", "/logs/query?limit=5&model=m%201&order=asc"))
            .unwrap();
        assert_eq!(reply.status, 200);
        let calls = host.service_calls();
        assert_eq!(calls[0].method, "query");
        assert_eq!(calls[0].args["limit"], 5);
        assert_eq!(calls[0].args["order"], "asc");
        assert_eq!(calls[0].args["filter"]["model"], "m 1");
        plugin
            .route(request("GET", "/logs/analytics?hours=2"))
            .unwrap();
        let analytics = &host.service_calls()[1];
        assert_eq!(analytics.method, "analytics");
        assert_eq!(analytics.args["bucket_seconds"], 60);
        assert_eq!(
            analytics.args["to_ms"].as_i64().unwrap() - analytics.args["from_ms"].as_i64().unwrap(),
            7_200_000
        );
        assert_eq!(
            plugin.route(request("POST", "/logs/reset")).unwrap().status,
            200
        );
        assert_eq!(host.service_calls()[2].method, "reset");
    }

    #[test]
    fn malformed_parameters_are_a_400_naming_them_and_never_reach_the_store() {
        let (host, plugin) = with_store(json!({}));
        for (path, param) in [
            ("/logs/query?limit=0", "limit"),
            ("/logs/analytics?hours=500", "hours"),
            ("/logs/stream?max_status=99", "max_status"),
        ] {
            let reply = plugin.route(request("GET", path)).unwrap();
            assert_eq!(reply.status, 400, "{path}");
            let body: Value = ccproxy_plugin_abi::serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(body["error"]["type"], "invalid_request_error");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("parameter '{param}': ")),
                "{message}"
            );
        }
        assert!(host.service_calls().is_empty());
    }

    #[test]
    fn a_store_that_fails_is_a_503() {
        let host = MockHost::new().service(LOG_STORAGE, |_, _| {
            Err(PluginError::unavailable(
                "the log store cannot answer: down",
            ))
        });
        let plugin = host.start::<Analytics>().unwrap();
        let reply = plugin.route(request("GET", "/logs/query")).unwrap();
        assert_eq!(reply.status, 503);
        let body: Value = ccproxy_plugin_abi::serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["error"]["type"], "service_unavailable");
        assert!(body["error"]["message"].as_str().unwrap().contains("down"));
    }

    #[test]
    fn the_stream_route_answers_sse_and_the_manifest_keeps_routes_private() {
        let (host, plugin) = with_store(json!({"next": 7, "rows": []}));
        let (response, pieces) = plugin
            .route_stream(request("GET", "/logs/stream?model=x"), 1)
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(
            response.headers.get("content-type"),
            Some("text/event-stream")
        );
        assert_eq!(pieces, [b": stream open\n\n".to_vec()]);
        // The first stream asked the store to keep recent rows, from now on.
        let calls = host.service_calls();
        assert_eq!(calls[0].method, "recent");
        assert_eq!(calls[0].args, json!({"after": null}));
        let manifest = plugin.manifest();
        assert!(
            manifest
                .routes
                .iter()
                .flat_map(|group| &group.routes)
                .all(|route| !route.public)
        );
        assert_eq!(manifest.requires, [LOG_STORAGE]);
        // Opt-in, as `storage` (docs/PERFORMANCE.md, "Round 2 changes: the plugins").
        assert_eq!(manifest.config.defaults["enabled"], false);
        assert!(
            manifest.hooks.is_empty(),
            "no per-request cost without streams"
        );
    }
}
