//! Test plugin `cycle_b`: depends on `cycle_a`, which depends on it. The host
//! must disable both with the reason "dependency cycle: …" naming the cycle.
#![forbid(unsafe_code)]

use ccproxy_plugin_abi::prelude::*;

/// The plugin; it never gets to run.
struct Cycle;

impl Plugin for Cycle {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new("cycle_b", "0.1.0")
            .description("half of a dependency cycle")
            .depends_on("cycle_a")
    }

    async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
        Ok(Cycle)
    }
}

export_plugin!(Cycle);
