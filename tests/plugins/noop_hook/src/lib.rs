//! Test plugin `noop_hook`: one hook, `noop`, subscribed to `request.completed`
//! (observed, off the request path) and `provider.request.prepared` (inline,
//! on the request path), that does nothing. `scripts/bench` loads N copies of
//! it to measure what a hook costs per request.
//!
//! The host refuses two plugins with the same name, and the name comes from
//! the manifest, which is fixed when the library is built. So the plugin takes
//! its name from the file it was loaded from: a copy saved as
//! `libnoop_hook_3.so` is the plugin `noop_hook_3`. It finds that file in
//! `/proc/self/maps` (the mapping holding its own code), which needs no
//! `unsafe`; where that fails (not Linux) it is plain `noop_hook`.
#![forbid(unsafe_code)]

use ccproxy_plugin_abi::prelude::*;

/// The plugin: nothing to keep.
struct NoopHook;

/// The name of the library file holding this function's code, without `lib`
/// and the extension; `None` when it cannot be told.
fn own_file_stem() -> Option<String> {
    let here = own_file_stem as fn() -> Option<String> as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        // start-end perms offset dev inode path
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        if !(start..end).contains(&here) {
            return None;
        }
        let path = std::path::Path::new(fields.nth(4)?);
        let stem = path.file_stem()?.to_str()?;
        Some(stem.strip_prefix("lib").unwrap_or(stem).to_owned())
    })
}

/// `noop_hook_K` for a copy named so, else `noop_hook`.
fn plugin_name() -> String {
    own_file_stem()
        .filter(|stem| {
            stem.starts_with("noop_hook")
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .unwrap_or_else(|| "noop_hook".to_owned())
}

impl Plugin for NoopHook {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new(&plugin_name(), "0.1.0")
            .description("a hook that does nothing, for measuring what a hook costs")
            .hook(
                "noop",
                ["request.completed", "provider.request.prepared"],
                100,
            )
            // It reads no data: the host writes no member for it.
            .reads_nothing()
    }

    async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
        Ok(NoopHook)
    }

    // `on_hook_call`, not `on_hook`: a hook that reads no data has no reason
    // to have it parsed (what a hook that reads some pays is measured by the
    // access log's share in docs/PERFORMANCE.md).
    async fn on_hook_call(&self, _call: HookCall) -> Result<HookOutcome, PluginError> {
        Ok(HookOutcome::Continue)
    }
}

export_plugin!(NoopHook);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_after_a_noop_hook_file_only() {
        // Loaded as a test executable, the code is not in a `noop_hook*` file.
        assert_eq!(plugin_name(), "noop_hook");
        let manifest = NoopHook::manifest();
        assert_eq!(manifest.hooks.len(), 1);
        assert_eq!(
            manifest.hooks[0].events,
            ["request.completed", "provider.request.prepared"]
        );
    }
}
