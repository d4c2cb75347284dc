//! Test plugin `layout_mismatch`: a library that passes the version check and
//! then fails abi_stable's layout check.
//!
//! It exports the version symbol with `1.0.0`, and an abi_stable root module
//! under the host's root module name (`ccproxy_plugin`) and layout version
//! (`1.0.0`), but with a different layout: other fields than the SDK's
//! `raw::PluginModule`. The host must refuse it with "layout mismatch" and a
//! one-line summary, never with abi_stable's hundreds of lines of layout dump.
//!
//! It cannot use the SDK (that would give it the right layout), so it writes the
//! exported version symbol by hand; an exported `#[unsafe(no_mangle)]` item is
//! unsafe code to the compiler, which is why this crate allows `unsafe_code`.
#![allow(unsafe_code)]
// The `#[export_root_module]` expansion defines items inside a const, and an
// undocumented static (the library header).
#![allow(non_local_definitions, missing_docs)]

use std::ffi::c_char;

use abi_stable::export_root_module;

/// The plugin API version this library claims, with its NUL: the host's own.
const VERSION: &[u8] = b"1.0.0\0";

/// The symbol the host reads first: the plugin API version as a C string.
#[unsafe(no_mangle)]
pub extern "C" fn ccproxy_plugin_api_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// Mirrors the SDK's `raw` module, so the root module type has the same name
/// and module path tail as the host's.
pub mod raw {
    use abi_stable::{
        StableAbi, declare_root_module_statics,
        library::RootModule,
        sabi_types::VersionStrings,
        std_types::{RStr, RString},
    };

    /// Same name as the SDK's root module, other fields.
    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
    #[sabi(missing_field(panic))]
    pub struct PluginModule {
        /// Same as the SDK's first field.
        pub api_version: extern "C" fn() -> RStr<'static>,
        /// Where the SDK has the manifest: a function of another type.
        pub manifest: extern "C" fn(u32) -> u64,
        /// A field the SDK does not have.
        #[sabi(last_prefix_field)]
        pub describe: extern "C" fn() -> RString,
    }

    impl RootModule for PluginModuleRef {
        declare_root_module_statics! {PluginModuleRef}
        const BASE_NAME: &'static str = "ccproxy_plugin";
        const NAME: &'static str = "ccproxy_plugin";
        const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.0.0");
    }
}

extern "C" fn api_version() -> abi_stable::std_types::RStr<'static> {
    abi_stable::std_types::RStr::from_str("1.0.0")
}

extern "C" fn manifest(value: u32) -> u64 {
    u64::from(value)
}

extern "C" fn describe() -> abi_stable::std_types::RString {
    "not the layout the host expects".into()
}

/// The root module abi_stable's loader asks for.
#[export_root_module]
pub fn root_module() -> raw::PluginModuleRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    raw::PluginModule {
        api_version,
        manifest,
        describe,
    }
    .leak_into_prefix()
}
