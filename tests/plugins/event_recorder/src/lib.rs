//! Test plugin `event_recorder`: proves that every hook event the host
//! declares is emitted, and that mutating hooks run inline, in priority order,
//! and change what reaches the upstream.
//!
//! - hook `record` subscribes to every event of [`HookEvent::ALL`] and to
//!   `custom.recorder`; each delivery is kept (event, request id, data) and
//!   logged as `event_recorder heard EVENT`, so events after the last request
//!   (`app.shutdown`, `plugin.unloaded`) show in the log;
//! - hooks `prepare_first` (priority 100) and `prepare_second` (priority 200)
//!   on `provider.request.prepared`: the first sets the upstream header
//!   `x-hook-order: first`, the second appends `,second`, and the second also
//!   records the credential headers it was shown (they must be masked);
//! - `GET /recorder/events` answers what was recorded;
//! - `POST /recorder/emit` emits `custom.recorder` with `{"n": 1}`;
//! - `POST /recorder/http-closed?port=N` calls `http://127.0.0.1:N/` through
//!   the host's client (nothing listens there: an `http.error`);
//! - with `CCPROXY_TEST_RECORDER_READS` set (comma-separated keys) in the
//!   host's environment, `record` names those as the data keys it reads
//!   (plugin API 1.3, `Manifest::reads`); set to `none`, it reads nothing
//!   (`Manifest::reads_nothing`).
#![forbid(unsafe_code)]

use std::sync::Mutex;

use ccproxy_plugin_abi::{Value, prelude::*};

/// The plugin: its host handle and what it heard.
struct EventRecorder {
    ctx: Context,
    heard: Mutex<Vec<Value>>,
    shown_credentials: Mutex<Vec<(String, String)>>,
}

/// Every event the SDK knows, and the custom one this plugin emits.
fn event_names() -> Vec<String> {
    HookEvent::ALL
        .iter()
        .map(|event| event.as_str().to_owned())
        .chain(["custom.recorder".to_owned()])
        .collect()
}

/// The `(name, value)` pairs of the prepared request's `headers`.
fn headers_of(data: &Value) -> Vec<(String, String)> {
    data.get("headers")
        .and_then(Value::as_array)
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|pair| {
                    Some((
                        pair.get(0)?.as_str()?.to_owned(),
                        pair.get(1)?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn with_headers(mut data: Value, headers: Vec<(String, String)>) -> Value {
    data["headers"] = json!(headers);
    data
}

impl Plugin for EventRecorder {
    type Config = ();

    fn manifest() -> Manifest {
        // The data keys `record` names: a list, `none`, or (unset) every key.
        let reads = std::env::var("CCPROXY_TEST_RECORDER_READS").unwrap_or_default();
        let manifest = Manifest::new("event_recorder", "0.1.0")
            .description("records every hook event; two ordered mutating hooks")
            .hook("record", event_names().iter().map(String::as_str), 500);
        let manifest = match reads.as_str() {
            "none" => manifest.reads_nothing(),
            keys => manifest.reads(keys.split(',').filter(|key| !key.is_empty())),
        };
        manifest
            .hook("prepare_second", ["provider.request.prepared"], 200)
            .hook("prepare_first", ["provider.request.prepared"], 100)
            .route(
                "/recorder",
                [
                    Route::get("/events"),
                    Route::post("/emit"),
                    Route::post("/http-closed"),
                ],
            )
    }

    async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
        Ok(Self {
            ctx,
            heard: Mutex::new(Vec::new()),
            shown_credentials: Mutex::new(Vec::new()),
        })
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        match req.route.as_str() {
            "/recorder/events" => {
                let heard = self.heard.lock().map(|h| h.clone()).unwrap_or_default();
                let shown = self
                    .shown_credentials
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_default();
                Ok(Response::json(
                    200,
                    &json!({ "events": heard, "credentials_shown_to_hooks": shown }),
                ))
            }
            "/recorder/emit" => {
                self.ctx.emit("custom.recorder", json!({ "n": 1 }));
                Ok(Response::json(
                    200,
                    &json!({ "emitted": "custom.recorder" }),
                ))
            }
            _ => {
                let port = req
                    .query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("port="))
                    .unwrap_or("9");
                let result = self
                    .ctx
                    .http(HttpRequest::get(format!("http://127.0.0.1:{port}/")))
                    .await;
                Ok(Response::json(200, &json!({ "failed": result.is_err() })))
            }
        }
    }

    async fn on_hook(&self, hook: HookContext) -> Result<HookOutcome, PluginError> {
        match hook.hook.as_str() {
            "prepare_first" => {
                let mut headers = headers_of(&hook.data);
                headers.retain(|(name, _)| name != "x-hook-order");
                headers.push(("x-hook-order".to_owned(), "first".to_owned()));
                Ok(HookOutcome::Modify {
                    data: with_headers(hook.data, headers),
                    body: None,
                })
            }
            "prepare_second" => {
                let mut headers = headers_of(&hook.data);
                if let Ok(mut shown) = self.shown_credentials.lock() {
                    shown.extend(
                        headers
                            .iter()
                            .filter(|(name, _)| name == "authorization" || name == "x-api-key")
                            .cloned(),
                    );
                }
                for (name, value) in &mut headers {
                    if name == "x-hook-order" {
                        value.push_str(",second");
                    }
                }
                Ok(HookOutcome::Modify {
                    data: with_headers(hook.data, headers),
                    body: None,
                })
            }
            _ => {
                let event = hook.event.as_str().to_owned();
                info!("event_recorder heard {event}");
                if let Ok(mut heard) = self.heard.lock() {
                    heard.push(json!({
                        "event": event,
                        "request_id": hook.request_id,
                        "data": hook.data,
                    }));
                }
                Ok(HookOutcome::Continue)
            }
        }
    }
}

export_plugin!(EventRecorder);
