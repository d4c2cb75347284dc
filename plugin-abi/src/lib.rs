//! # ccproxy plugin SDK
//!
//! Write a ccproxy plugin in ordinary safe Rust: implement [`Plugin`], call
//! [`export_plugin!`], build the crate as a `cdylib`, and drop the library into
//! `$XDG_CONFIG_HOME/ccproxy/plugins`. No `unsafe`, no FFI types, no async
//! runtime of your own: the host gives you everything through [`Context`].
//!
//! ```
//! #![forbid(unsafe_code)]
//! use ccproxy_plugin_abi::prelude::*;
//!
//! struct Noop;
//!
//! impl Plugin for Noop {
//!     type Config = ();
//!     fn manifest() -> Manifest {
//!         Manifest::new("noop", env!("CARGO_PKG_VERSION"))
//!     }
//!     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
//!         Ok(Noop)
//!     }
//! }
//!
//! export_plugin!(Noop);
//! ```
//!
//! ## Layers
//!
//! - the SDK (this page): [`Plugin`], [`Context`], [`Manifest`], [`HookEvent`],
//!   [`Request`]/[`Response`], [`PluginError`], the log macros and
//!   [`export_plugin!`];
//! - [`protocol`]: the named operations and JSON payloads the SDK and the host
//!   exchange, where the interface grows within 1.x;
//! - `raw`: the layout-checked abi_stable types, frozen for all of 1.x. Hidden:
//!   plugin authors never need it.
//!
//! ## Compatibility promise
//!
//! A host speaking plugin API `1.y` loads every plugin built against `1.x` with
//! `x <= y`. A plugin checks [`Context::has_capability`] before it uses something
//! newer than 1.0. Depend on `ccproxy-plugin-abi = "~1.0"` (not `"1"`) so the
//! plugin is built against the oldest 1.x it needs and loads into every newer
//! host. Build plugins with `panic = "unwind"` (the default): the SDK catches
//! panics at every entry point; a library built with `panic = "abort"` is
//! refused by the host, because a panic in it would end the whole proxy.
#![deny(missing_docs)]

#[cfg(feature = "host-allocator")]
pub mod allocator;
mod blocking;
mod context;
mod error;
pub mod fields;
mod format;
#[doc(hidden)]
pub mod hook_wire;
pub mod hooks;
pub mod http;
#[doc(hidden)]
pub mod log;
pub mod manifest;
mod plugin;
pub mod process;
pub mod protocol;
#[doc(hidden)]
pub mod raw;
#[doc(hidden)]
pub mod shim;
pub mod stream;
mod streams;
#[cfg(feature = "testing")]
pub mod testing;

pub use context::Context;
pub use error::{ErrorKind, PluginError};
pub use format::{ConversionKind, FormatConversion};
pub use hooks::{HookCall, HookContext, HookEvent, HookOutcome};
pub use http::{Headers, HttpRequest, HttpResponse, HttpStream, Request, Response};
pub use manifest::{ConfiguredEndpoints, HookBody, Manifest, PluginKind, Route, layer};
pub use plugin::{
    Health, HealthStatus, MiddlewareAction, MiddlewareRequest, MiddlewareResponse, Plugin,
    ProviderRequest, ServiceCall, UpstreamRequest,
};
pub use process::{ChildProcess, Command, ExitStatus};
pub use protocol::{AnsweredBy, ProviderAttempt, ProviderExhausted, RetryPolicy, TokenUsage};
pub use stream::{BodySender, BodyStream, RouteResponse, StreamResponse};

/// The plugin API version this SDK implements (semver).
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Re-exported for plugins that prefer `#[serde(crate = "ccproxy_plugin_abi::serde")]`
/// over their own `serde` dependency.
pub use serde;
/// Re-exported so plugins need no direct `serde_json` dependency for simple JSON.
pub use serde_json::{self, Value, json};

/// Everything a plugin usually needs: `use ccproxy_plugin_abi::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AnsweredBy, BodySender, BodyStream, ChildProcess, Command, ConfiguredEndpoints, Context,
        ConversionKind, ErrorKind, ExitStatus, FormatConversion, Headers, Health, HealthStatus,
        HookBody, HookCall, HookContext, HookEvent, HookOutcome, HttpRequest, HttpResponse,
        HttpStream, Manifest, MiddlewareAction, MiddlewareRequest, MiddlewareResponse, Plugin,
        PluginError, PluginKind, ProviderAttempt, ProviderRequest, Request, Response, Route,
        RouteResponse, ServiceCall, StreamResponse, TokenUsage, UpstreamRequest, export_plugin,
        json, layer,
    };
    pub use crate::{debug, error, info, trace, warn};
    pub use serde_json::Value;
}

#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}

/// Declares the library's global allocator when the SDK's `host-allocator`
/// feature is on (a `cfg` inside `export_plugin!` would test the plugin's
/// features, not the SDK's).
#[cfg(feature = "host-allocator")]
#[doc(hidden)]
#[macro_export]
macro_rules! __global_allocator {
    () => {
        #[global_allocator]
        static __CCPROXY_PLUGIN_ALLOCATOR: $crate::allocator::PluginAllocator =
            $crate::allocator::PluginAllocator;
    };
}

#[cfg(not(feature = "host-allocator"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __global_allocator {
    () => {};
}

/// Exports `$plugin` (a type implementing [`Plugin`]) as this library's plugin.
/// Call it once, at the crate root.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::__global_allocator!();

        /// The plugin API version this library was built against (C string).
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn ccproxy_plugin_api_version() -> *const ::core::ffi::c_char {
            $crate::raw::version_cstr()
        }

        /// Whether this library unwinds on panic (1) or aborts (0); the host
        /// refuses aborting libraries.
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub extern "C" fn ccproxy_plugin_panic_unwind() -> u8 {
            if cfg!(panic = "unwind") { 1 } else { 0 }
        }

        /// The library header abi_stable's loader looks for.
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn __ccproxy_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(
                    $crate::raw::module_for::<$crate::shim::Shim<$plugin>>,
                )
            }
            // Safety: `__ccproxy_root_module` returns the root module type named
            // here, which is what `from_constructor` requires.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::raw::PluginModuleRef>(
                    __ccproxy_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
