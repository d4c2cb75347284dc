//! Test plugin `panicky`: `GET /panicky/boom` panics, `GET /panicky/ok` answers,
//! and its hook panics on every `request.completed`. The host must answer the
//! panicking route with a 500, keep serving everything else, and report the
//! plugin unhealthy.
#![forbid(unsafe_code)]

use ccproxy_plugin_abi::prelude::*;

struct Panicky;

impl Plugin for Panicky {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new("panicky", "0.1.0")
            .description("panics on purpose")
            .route("/panicky", [Route::get("/boom"), Route::get("/ok")])
            .hook("panicky_hook", ["request.completed"], 500)
    }

    async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
        Ok(Panicky)
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        if req.path.ends_with("/boom") {
            panic!("boom at {}", req.path);
        }
        Ok(Response::text(200, "still fine"))
    }

    async fn on_hook(&self, hook: HookContext) -> Result<HookOutcome, PluginError> {
        panic!("hook panicked on {}", hook.event.as_str());
    }
}

export_plugin!(Panicky);
