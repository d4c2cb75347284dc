//! The library's exported symbols: the version symbol and the root module.

use std::ffi::c_char;

use abi_stable::{prefix_type::PrefixTypeTrait, std_types::RResult};

use super::{HostBox, PluginBox, PluginModule, PluginModuleRef, catch_panic};

/// The version string exported under [`super::VERSION_SYMBOL`], with its NUL.
const VERSION_CSTR: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The plugin API version this copy of the SDK implements, as a C string.
///
/// Called by the `ccproxy_plugin_api_version` symbol that `export_plugin!`
/// expands to. OWNERSHIP: points into static memory of the plugin library.
pub fn version_cstr() -> *const c_char {
    VERSION_CSTR.as_ptr().cast()
}

/// What a type needs to be exported as a plugin library. The SDK implements it;
/// plugin authors implement `Plugin` instead.
pub trait Exported: 'static {
    /// The manifest as JSON.
    fn manifest_json() -> Result<String, String>;
    /// Creates the instance that receives the host's operations.
    fn instantiate(host: HostBox) -> Result<PluginBox, String>;
}

extern "C" fn api_version() -> abi_stable::std_types::RStr<'static> {
    abi_stable::std_types::RStr::from_str(env!("CARGO_PKG_VERSION"))
}

extern "C" fn manifest<E: Exported>()
-> RResult<abi_stable::std_types::RString, abi_stable::std_types::RString> {
    match catch_panic(|| {
        E::manifest_json().map_err(|e| super::AbiError::new(super::ErrorCode::Invalid, e))
    }) {
        Ok(json) => RResult::ROk(json.into()),
        Err(error) => RResult::RErr(error.message),
    }
}

extern "C" fn instantiate<E: Exported>(
    host: HostBox,
) -> RResult<PluginBox, abi_stable::std_types::RString> {
    match catch_panic(|| {
        E::instantiate(host).map_err(|e| super::AbiError::new(super::ErrorCode::Internal, e))
    }) {
        Ok(plugin) => RResult::ROk(plugin),
        Err(error) => RResult::RErr(error.message),
    }
}

/// Builds the root module for `E`; called once by the library header when the
/// host loads the library.
pub fn module_for<E: Exported>() -> PluginModuleRef {
    PluginModule {
        api_version,
        manifest: manifest::<E>,
        instantiate: instantiate::<E>,
    }
    .leak_into_prefix()
}
