//! Test plugin `hello_v1_0`: written against the plugin API as it shipped in
//! 1.0 (`../plugin-abi-1.0`, a frozen copy), built on its own, and loaded by the
//! end-to-end tests into today's host. It proves the compatibility promise: a
//! host of plugin API `1.y` loads and runs plugins built for `1.x`, `x <= y`.
//!
//! - `GET /v1_0/hello`: waits on the host's timer (`ctx.sleep`, a host
//!   capability) and answers what it measured and both API versions;
//! - a hook on `request.completed` counts completed requests;
//! - `GET /v1_0/count`: that count.
#![forbid(unsafe_code)]

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use ccproxy_plugin_abi::prelude::*;

/// How long `/v1_0/hello` waits on the host's timer.
const SLEEP: Duration = Duration::from_millis(20);

/// The plugin: its host handle and the hook's counter.
struct HelloV10 {
    ctx: Context,
    completed: AtomicU64,
}

impl Plugin for HelloV10 {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new("hello_v1_0", "1.0.0")
            .description("built against the frozen plugin API 1.0")
            .route("/v1_0", [Route::get("/hello"), Route::get("/count")])
            .hook("count_completed", ["request.completed"], 500)
    }

    async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
        info!(
            "hello_v1_0 ready: built for plugin API {}, host speaks {}",
            ccproxy_plugin_abi::API_VERSION,
            ctx.host_api_version()
        );
        Ok(HelloV10 {
            ctx,
            completed: AtomicU64::new(0),
        })
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        match req.route.as_str() {
            "/v1_0/hello" => {
                let started = Instant::now();
                self.ctx.sleep(SLEEP).await;
                let slept_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                Ok(Response::json(
                    200,
                    &json!({
                        "message": "hello from a plugin built against plugin API 1.0",
                        "plugin_api": ccproxy_plugin_abi::API_VERSION,
                        "host_api": self.ctx.host_api_version(),
                        "slept_ms": slept_ms,
                    }),
                ))
            }
            "/v1_0/count" => Ok(Response::json(
                200,
                &json!({ "completed": self.completed.load(Ordering::Relaxed) }),
            )),
            other => Err(PluginError::not_found(format!("no handler for {other}"))),
        }
    }

    async fn on_hook(&self, _hook: HookContext) -> Result<HookOutcome, PluginError> {
        self.completed.fetch_add(1, Ordering::Relaxed);
        Ok(HookOutcome::Continue)
    }
}

export_plugin!(HelloV10);
