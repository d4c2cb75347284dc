//! # sse_ticker: a streamed route (plugin API 1.2)
//!
//! `GET /ticker/events?count=N&interval_ms=M&pad=B` answers with Server-Sent
//! Events, one `tick` every `interval_ms` (default 100), `count` of them (0:
//! until the client leaves), each padded with `pad` bytes (default 0). Each
//! event is produced only once the previous one was taken by the client (a
//! channel of one piece: backpressure), and the producing task
//! ends as soon as the client has gone (its `send` fails). `GET /ticker/stats`
//! shows how many streams are open, finished and cancelled, and how many
//! events were produced.
//!
//! Build and try it:
//!
//! ```text
//! cargo build -p example-sse-ticker
//! cp target/debug/libexample_sse_ticker.so ~/.config/ccproxy/plugins/
//! ccproxy serve
//! curl -N 'http://127.0.0.1:8000/ticker/events?count=3&interval_ms=500'
//! ```
//!
//! Each `data:` line arrives on its own, half a second apart.
#![forbid(unsafe_code)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ccproxy_plugin_abi::prelude::*;

/// Counters shown by `/ticker/stats`.
#[derive(Default)]
struct Stats {
    open: AtomicU64,
    finished: AtomicU64,
    cancelled: AtomicU64,
    produced: AtomicU64,
}

/// The plugin.
pub struct SseTicker {
    ctx: Context,
    stats: Arc<Stats>,
}

fn query_number(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value.parse().ok())
}

impl SseTicker {
    fn events(&self, query: &str) -> StreamResponse {
        let count = query_number(query, "count").unwrap_or(10);
        let interval = Duration::from_millis(query_number(query, "interval_ms").unwrap_or(100));
        let pad = "x".repeat(query_number(query, "pad").unwrap_or(0).min(1 << 20) as usize);
        // One piece in flight: the next tick is made only once the client took the last.
        let (mut sender, body) = BodyStream::channel(1);
        let stats = self.stats.clone();
        let sleeper = self.ctx.clone();
        stats.open.fetch_add(1, Ordering::Relaxed);
        self.ctx.spawn(async move {
            let mut n = 0;
            let finished = loop {
                if count != 0 && n == count {
                    break true;
                }
                n += 1;
                let event =
                    format!("event: tick\nid: {n}\ndata: {{\"n\":{n},\"pad\":\"{pad}\"}}\n\n");
                if sender.send(event).await.is_err() {
                    break false;
                }
                stats.produced.fetch_add(1, Ordering::Relaxed);
                sleeper.sleep(interval).await;
            };
            let ended = if finished {
                &stats.finished
            } else {
                &stats.cancelled
            };
            ended.fetch_add(1, Ordering::Relaxed);
            stats.open.fetch_sub(1, Ordering::Relaxed);
            if !finished {
                info!(
                    "ticker stream cancelled after {} events: the client left",
                    n - 1
                );
            }
        });
        StreamResponse::sse(body)
    }
}

impl Plugin for SseTicker {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new("sse_ticker", env!("CARGO_PKG_VERSION"))
            .description("Streams Server-Sent Events from a plugin route")
            .route(
                "/ticker",
                [Route::get("/events"), Route::get("/stats").public()],
            )
    }

    async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
        if !ctx.has_capability("stream_routes") {
            return Err(PluginError::unsupported(
                "this host cannot stream route answers (plugin API 1.2 needed)",
            ));
        }
        Ok(Self {
            ctx,
            stats: Arc::default(),
        })
    }

    async fn on_route_response(&self, req: Request) -> Result<RouteResponse, PluginError> {
        match req.path.as_str() {
            "/ticker/events" => Ok(self.events(&req.query).into()),
            "/ticker/stats" => Ok(Response::json(
                200,
                &json!({
                    "open": self.stats.open.load(Ordering::Relaxed),
                    "finished": self.stats.finished.load(Ordering::Relaxed),
                    "cancelled": self.stats.cancelled.load(Ordering::Relaxed),
                    "produced": self.stats.produced.load(Ordering::Relaxed),
                }),
            )
            .into()),
            other => Err(PluginError::not_found(format!("no route {other}"))),
        }
    }
}

export_plugin!(SseTicker);

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::testing::{MockHost, request};

    use super::*;

    #[test]
    fn a_finite_stream_sends_each_tick_as_one_piece() {
        let plugin = MockHost::new().start::<SseTicker>().unwrap();
        let (response, pieces) = plugin
            .route_stream(request("GET", "/ticker/events?count=3&interval_ms=0"), 10)
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(
            response.headers.get("content-type"),
            Some("text/event-stream")
        );
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        assert!(String::from_utf8_lossy(&pieces[2]).contains("\"n\":3"));
        let stats = plugin.route(request("GET", "/ticker/stats")).unwrap();
        let stats: Value = ccproxy_plugin_abi::serde_json::from_slice(&stats.body).unwrap();
        assert_eq!(stats["finished"], 1, "{stats}");
    }

    #[test]
    fn an_endless_stream_ends_when_its_reader_leaves() {
        let plugin = MockHost::new().start::<SseTicker>().unwrap();
        let (_, pieces) = plugin
            .route_stream(request("GET", "/ticker/events?count=0&interval_ms=0"), 2)
            .unwrap();
        assert_eq!(pieces.len(), 2);
        let stats = plugin.route(request("GET", "/ticker/stats")).unwrap();
        let stats: Value = ccproxy_plugin_abi::serde_json::from_slice(&stats.body).unwrap();
        assert_eq!(
            (stats["cancelled"].as_u64(), stats["open"].as_u64()),
            (Some(1), Some(0)),
            "{stats}"
        );
    }

    #[test]
    fn query_numbers_are_read_by_name() {
        assert_eq!(query_number("count=3&interval_ms=50", "count"), Some(3));
        assert_eq!(
            query_number("count=3&interval_ms=50", "interval_ms"),
            Some(50)
        );
        assert_eq!(query_number("count=x", "count"), None);
        assert_eq!(query_number("", "count"), None);
    }
}
