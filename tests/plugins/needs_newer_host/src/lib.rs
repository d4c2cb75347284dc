//! Test plugin `needs_newer_host`: a library built for plugin API 1.99.0, a
//! minor version this host does not speak yet. It exports only the version
//! symbol; the host must refuse it with "needs a newer host".
//!
//! It cannot use the SDK's `export_plugin!` (that would export the SDK's own
//! version), so it writes the exported symbol by hand. An exported
//! `#[unsafe(no_mangle)]` item is unsafe code to the compiler, which is why this
//! crate allows `unsafe_code` instead of forbidding it; it contains nothing else.
#![allow(unsafe_code)]

use std::ffi::c_char;

/// The plugin API version this library claims, with its NUL.
const VERSION: &[u8] = b"1.99.0\0";

/// The symbol the host reads first: the plugin API version as a C string.
#[unsafe(no_mangle)]
pub extern "C" fn ccproxy_plugin_api_version() -> *const c_char {
    VERSION.as_ptr().cast()
}
