//! Test library `data_version_symbol`: exports `ccproxy_plugin_api_version` as
//! a static string instead of the function the plugin API defines. A host that
//! called it would jump into data and crash; the host must refuse the file
//! before that, reading its dynamic symbol table.
//!
//! It is deliberately not built with the SDK's `export_plugin!`, which would
//! export the symbol correctly. An exported `#[unsafe(no_mangle)]` item is
//! unsafe code to the compiler, which is why this crate allows `unsafe_code`.
#![allow(unsafe_code)]

/// A version string where the host expects `extern "C" fn() -> *const c_char`.
#[unsafe(no_mangle)]
pub static ccproxy_plugin_api_version: [u8; 6] = *b"1.0.0\0";
