//! Test plugin `missing_dep`: depends on plugin `no_such_plugin`, which no test
//! ever installs. The host must disable it with the reason "missing dependency
//! no_such_plugin" and keep serving every other plugin.
#![forbid(unsafe_code)]

use ccproxy_plugin_abi::prelude::*;

/// The plugin; it never gets to run.
struct MissingDep;

impl Plugin for MissingDep {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new("missing_dep", "0.1.0")
            .description("depends on a plugin that does not exist")
            .depends_on("no_such_plugin")
            .route("/missing_dep", [Route::get("/")])
    }

    async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
        Ok(MissingDep)
    }
}

export_plugin!(MissingDep);
