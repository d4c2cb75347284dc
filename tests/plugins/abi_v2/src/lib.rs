//! Test plugin `abi_v2`: a library "built for another ABI major". It exports
//! only the version symbol, answering `2.0.0`, so the host must refuse it
//! before looking at anything else, with "built for plugin API 2.0.0, this host
//! speaks 1.0.0".
//!
//! It cannot use the SDK's `export_plugin!` (that would export the SDK's own
//! version), so it writes the exported symbol by hand. An exported
//! `#[unsafe(no_mangle)]` item is unsafe code to the compiler, which is why this
//! crate allows `unsafe_code` instead of forbidding it; it contains nothing else.
#![allow(unsafe_code)]

use std::ffi::c_char;

/// The plugin API version this library claims, with its NUL.
const VERSION: &[u8] = b"2.0.0\0";

/// The symbol the host reads first: the plugin API version as a C string.
#[unsafe(no_mangle)]
pub extern "C" fn ccproxy_plugin_api_version() -> *const c_char {
    VERSION.as_ptr().cast()
}
