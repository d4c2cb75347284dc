//! Test plugin whose manifest name is `panicky`, the name of
//! `tests/plugins/panicky` too. Whichever file the host finds second is refused
//! with "duplicate plugin name panicky"; the first keeps working.
#![forbid(unsafe_code)]

use ccproxy_plugin_abi::prelude::*;

/// A valid plugin with a taken name.
struct Duplicate;

impl Plugin for Duplicate {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new("panicky", "9.9.9")
            .description("an impostor: same name as the panicky test plugin")
            .route("/impostor", [Route::get("/")])
    }

    async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
        Ok(Duplicate)
    }

    async fn on_route(&self, _req: Request) -> Result<Response, PluginError> {
        Ok(Response::text(200, "the impostor answered"))
    }
}

export_plugin!(Duplicate);
