//! Test plugin `hello_v1_1`: written against the plugin API as it shipped in
//! 1.1 (`../plugin-abi-1.1`, a frozen copy), built on its own, and loaded by the
//! end-to-end tests into today's host next to `hello_v1_0`. It uses what 1.1
//! added, so the compatibility promise is proved for those too:
//!
//! - a hook on `request.completed` through `Plugin::on_hook_call`, reading only
//!   `path` with `HookCall::data` into a borrowed struct: it counts completed
//!   requests and remembers the last path (except its own `/v1_1/count`, so
//!   reading the count does not overwrite what it reports);
//! - `GET /v1_1/hello`: waits on the host's timer (`ctx.sleep`), reports
//!   `Context::bypass_mode`, and when the request names a URL in
//!   `x-hello-fetch` (and the host is not in bypass mode) fetches it with the
//!   host's HTTP client (`ctx.http`) and answers its status and body;
//! - `GET /v1_1/count`: the hook's count and last path.
#![forbid(unsafe_code)]

use std::{
    borrow::Cow,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ccproxy_plugin_abi::{prelude::*, serde::Deserialize};

/// How long `/v1_1/hello` waits on the host's timer.
const SLEEP: Duration = Duration::from_millis(20);
/// The request header naming a URL for `/v1_1/hello` to fetch through the host.
const FETCH_HEADER: &str = "x-hello-fetch";
/// The route reporting the count, whose own completions leave the last path be.
const COUNT_ROUTE: &str = "/v1_1/count";

/// The one key of `request.completed` the hook reads; the rest of the event's
/// data is skipped without being built.
#[derive(Deserialize)]
#[serde(crate = "ccproxy_plugin_abi::serde")]
struct Completed<'a> {
    /// Borrowed from the call unless the JSON string has escapes.
    #[serde(borrow)]
    path: Cow<'a, str>,
}

/// The plugin: its host handle and what the hook saw.
struct HelloV11 {
    ctx: Context,
    completed: AtomicU64,
    last_path: Mutex<String>,
}

impl Plugin for HelloV11 {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new("hello_v1_1", "1.1.0")
            .description("built against the frozen plugin API 1.1")
            .route("/v1_1", [Route::get("/hello"), Route::get("/count")])
            .hook(
                "count_completed",
                [HookEvent::RequestCompleted.as_str()],
                500,
            )
    }

    async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
        info!(
            "hello_v1_1 ready: built for plugin API {}, host speaks {}, bypass {}",
            ccproxy_plugin_abi::API_VERSION,
            ctx.host_api_version(),
            ctx.bypass_mode()
        );
        Ok(HelloV11 {
            ctx,
            completed: AtomicU64::new(0),
            last_path: Mutex::new(String::new()),
        })
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        match req.route.as_str() {
            "/v1_1/hello" => self.hello(&req).await,
            COUNT_ROUTE => {
                let last_path = self
                    .last_path
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                Ok(Response::json(
                    200,
                    &json!({
                        "completed": self.completed.load(Ordering::Relaxed),
                        "last_path": last_path,
                    }),
                ))
            }
            other => Err(PluginError::not_found(format!("no handler for {other}"))),
        }
    }

    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        if call.event == HookEvent::RequestCompleted {
            let completed: Completed = call.data()?;
            self.completed.fetch_add(1, Ordering::Relaxed);
            if completed.path != COUNT_ROUTE {
                *self
                    .last_path
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = completed.path.into_owned();
            }
        }
        Ok(HookOutcome::Continue)
    }
}

impl HelloV11 {
    async fn hello(&self, req: &Request) -> Result<Response, PluginError> {
        let started = Instant::now();
        self.ctx.sleep(SLEEP).await;
        let slept_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let bypass = self.ctx.bypass_mode();
        // In bypass mode a plugin calls no upstream: it answers without fetching.
        let fetched = match req.headers.get(FETCH_HEADER) {
            Some(url) if !bypass => {
                let response = self.ctx.http(HttpRequest::get(url)).await?;
                let body = response
                    .json::<Value>()
                    .unwrap_or_else(|_| json!(String::from_utf8_lossy(&response.body)));
                json!({ "status": response.status, "body": body })
            }
            _ => Value::Null,
        };
        Ok(Response::json(
            200,
            &json!({
                "message": "hello from a plugin built against plugin API 1.1",
                "plugin_api": ccproxy_plugin_abi::API_VERSION,
                "host_api": self.ctx.host_api_version(),
                "slept_ms": slept_ms,
                "bypass": bypass,
                "fetched": fetched,
            }),
        ))
    }
}

export_plugin!(HelloV11);
