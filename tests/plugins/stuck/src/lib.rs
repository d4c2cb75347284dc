//! Test plugin `stuck`: plugin code that misbehaves the ways a stuck plugin
//! can, to prove it cannot stall the server (issue 13 item 5).
//!
//! - `GET /stuck/block?ms=N` blocks its thread with `std::thread::sleep` for
//!   N ms (default 3000) before answering: what a plugin doing blocking I/O in
//!   an `async fn` does to the thread that polls it;
//! - `GET /stuck/hang` never answers;
//! - with `hang_middleware = true` its middleware never answers, for every
//!   request it sees;
//! - `POST /stuck/v1/messages` (a provider endpoint, `anthropic.messages`):
//!   `provider.prepare` never answers;
//! - with `block_prepared_hook_ms = N` its inline hook on
//!   `provider.request.prepared` (any provider's) blocks its thread N ms.
#![forbid(unsafe_code)]

use ccproxy_plugin_abi::prelude::*;
use serde::{Deserialize, Serialize};

/// `[plugins.stuck]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// The middleware never answers.
    hang_middleware: bool,
    /// Its `provider.request.prepared` hook blocks its thread this long (0: no).
    block_prepared_hook_ms: u64,
}

/// The plugin: only its config.
struct Stuck {
    config: Config,
}

impl Plugin for Stuck {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("stuck", "0.1.0")
            .description("blocks its thread or never answers, on purpose")
            .middleware("stuck_guard", layer::SECURITY, false)
            .route("/stuck", [Route::get("/block"), Route::get("/hang")])
            .provider("anthropic.messages")
            .provider_endpoint("/stuck/v1/messages", "anthropic.messages")
            .hook("stuck_prepared", ["provider.request.prepared"], 100)
            .config_key("hang_middleware", "the middleware never answers")
            .config_key(
                "block_prepared_hook_ms",
                "the provider.request.prepared hook blocks its thread this long",
            )
    }

    async fn init(_ctx: Context, config: Config) -> Result<Self, PluginError> {
        Ok(Stuck { config })
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        if req.route == "/stuck/hang" {
            std::future::pending::<()>().await;
        }
        let millis = req
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("ms="))
            .and_then(|ms| ms.parse::<u64>().ok())
            .unwrap_or(3000);
        // On purpose: blocks the thread polling this future.
        std::thread::sleep(std::time::Duration::from_millis(millis));
        Ok(Response::json(200, &json!({ "blocked_ms": millis })))
    }

    async fn on_middleware_request(
        &self,
        _request: MiddlewareRequest,
    ) -> Result<MiddlewareAction, PluginError> {
        if self.config.hang_middleware {
            std::future::pending::<()>().await;
        }
        Ok(MiddlewareAction::Continue {
            set_headers: Vec::new(),
        })
    }

    async fn on_hook_call(&self, _call: HookCall) -> Result<HookOutcome, PluginError> {
        if self.config.block_prepared_hook_ms > 0 {
            // On purpose: blocks the thread polling this future.
            std::thread::sleep(std::time::Duration::from_millis(
                self.config.block_prepared_hook_ms,
            ));
        }
        Ok(HookOutcome::Continue)
    }

    async fn on_prepare_upstream(
        &self,
        _req: ProviderRequest,
    ) -> Result<UpstreamRequest, PluginError> {
        std::future::pending().await
    }
}

export_plugin!(Stuck);
