//! The raw, layout-checked interface between the host and a plugin library.
//!
//! Plugin authors never use this module: the SDK above it (`Plugin`, `Context`,
//! `export_plugin!`) does. It is public only because the host's loader and the
//! export macro's expansion need it.
//!
//! # Why it is so small
//!
//! abi_stable accepts a library only when every type reachable from its root
//! module has the same layout as the host's copy, or a longer prefix; a host whose
//! vtables grew refuses every older plugin (see `docs/ARCHITECTURE.md`,
//! "Compatibility promise"). So the layout-checked surface below is **frozen for
//! all of plugin API 1.x**: a root module with three functions, one plugin vtable
//! with one method, one host vtable with five methods, and one message type.
//! Everything that evolves (operations, their payloads, the manifest) travels as a
//! named operation carrying versioned JSON metadata and raw bytes, which a newer
//! party extends with optional fields and new names, and an older party ignores
//! or answers with [`ErrorCode::Unsupported`].
//!
//! Never change a type in this module within major version 1. The test
//! `tests/frozen` builds a plugin against a byte-for-byte copy of this module as
//! released in 1.0 and loads it into today's host.
// The `#[sabi_trait]` expansion defines impls inside a const item.
#![allow(non_local_definitions)]
// This is the one module of the crate that is allowed to be unsafe: it exports
// the library header and the version symbol.
#![allow(unsafe_code)]

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RBox, RResult, RStr, RString, RVec},
};
use async_ffi::FfiFuture;

mod export;
mod panic;

pub use export::{Exported, module_for, version_cstr};
pub use panic::{catch_panic, catch_panic_future, panic_message};

/// The C symbol, present in every plugin, that returns the plugin API version
/// the plugin was built against as a NUL-terminated UTF-8 semver string.
///
/// The host reads it with `dlsym` before abi_stable looks at anything else, so a
/// plugin from another major version is refused with a readable reason.
pub const VERSION_SYMBOL: &str = "ccproxy_plugin_api_version";

/// The C symbol, present in plugins built with SDK 1.0 and later, that returns 1
/// when the library unwinds on panic and 0 when it was built with
/// `panic = "abort"` (which the host refuses).
pub const PANIC_SYMBOL: &str = "ccproxy_plugin_panic_unwind";

/// The layout generation abi_stable checks in the library header. It is not the
/// plugin API version: it stays `1.0.0` for all of 1.x because the layout of
/// this module never changes within a major version.
pub const LAYOUT_VERSION: &str = "1.0.0";

/// The plugin library's root module.
///
/// OWNERSHIP: created once by the plugin when the host first loads the library,
/// leaked (`'static`), never freed: libraries are never unloaded.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Returns the plugin API version the plugin was built against (the same
    /// string as [`VERSION_SYMBOL`]).
    pub api_version: extern "C" fn() -> RStr<'static>,
    /// Returns the plugin's manifest as JSON (see `Manifest`), or a message
    /// saying why it could not be produced.
    pub manifest: extern "C" fn() -> RResult<RString, RString>,
    /// Creates the plugin instance. The host passes its own handle; the plugin
    /// keeps it for as long as it lives. Cheap and synchronous: the real set-up
    /// happens in the `plugin.initialize` operation.
    ///
    /// OWNERSHIP: the returned box belongs to the host, which drops it after
    /// shutdown (never, in practice: the process exits first).
    #[sabi(last_prefix_field)]
    pub instantiate: extern "C" fn(host: HostBox) -> RResult<PluginBox, RString>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "ccproxy_plugin";
    const NAME: &'static str = "ccproxy_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(LAYOUT_VERSION);
}

/// One message across the boundary, in either direction.
///
/// OWNERSHIP: moved to the receiver; the sender keeps nothing.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct Message {
    /// JSON metadata of the operation (the payload types in `protocol`); empty
    /// means `null`.
    pub meta: RString,
    /// Raw bytes that travel without re-encoding: an HTTP body, a stream chunk.
    pub body: RVec<u8>,
}

/// Why an operation failed.
///
/// OWNERSHIP: moved to the receiver.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct AbiError {
    /// One of the [`ErrorCode`] values; unknown codes mean [`ErrorCode::Internal`].
    pub code: u32,
    /// A one-line, human-readable message.
    pub message: RString,
}

/// Stable error codes carried by [`AbiError::code`]. Values are never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Anything not covered below.
    Internal = 1,
    /// The receiver does not know this operation (an older or simpler party):
    /// the caller falls back to the default behaviour.
    Unsupported = 2,
    /// The plugin panicked; the panic was caught.
    Panicked = 3,
    /// The input was invalid (bad request, bad config).
    Invalid = 4,
    /// Something named was not found.
    NotFound = 5,
    /// Credentials are missing or were refused.
    Unauthorized = 6,
    /// Not allowed.
    Forbidden = 7,
    /// A dependency (service, upstream) is unavailable.
    Unavailable = 8,
    /// Timed out.
    Timeout = 9,
    /// An upstream answered with an error or broke the connection.
    Upstream = 10,
    /// The plugin was called before `plugin.initialize` succeeded.
    NotInitialized = 11,
    /// Too many requests.
    RateLimited = 12,
}

impl ErrorCode {
    /// Maps a raw code back to the enum; unknown codes become `Internal`.
    pub fn from_u32(code: u32) -> Self {
        use ErrorCode::*;
        match code {
            2 => Unsupported,
            3 => Panicked,
            4 => Invalid,
            5 => NotFound,
            6 => Unauthorized,
            7 => Forbidden,
            8 => Unavailable,
            9 => Timeout,
            10 => Upstream,
            11 => NotInitialized,
            12 => RateLimited,
            _ => Internal,
        }
    }
}

impl AbiError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code as u32,
            message: RString::from(message.into()),
        }
    }
}

/// The result of every operation.
pub type CallResult = RResult<Message, AbiError>;

/// What the plugin implements: one method that dispatches named operations.
///
/// Called on host runtime threads, concurrently. The returned future is polled
/// by the host's runtime; it must never block.
#[sabi_trait]
pub trait PluginObject: Send + Sync {
    /// Runs operation `op` (see `protocol::op`) with `input`.
    #[sabi(last_prefix_field)]
    fn call(&self, op: RString, input: Message) -> FfiFuture<CallResult>;
}

/// The plugin instance, owned by the host.
pub type PluginBox = PluginObject_TO<'static, RBox<()>>;

/// What the host implements and hands to each plugin.
///
/// Every method may be called from any thread, including from inside a future
/// the host is polling.
#[sabi_trait]
pub trait HostObject: Send + Sync + Clone {
    /// The plugin API version the host speaks (semver).
    fn api_version(&self) -> RString;
    /// Whether a log record at `level` (1 error … 5 trace) for `target` would be
    /// recorded; lets plugins skip formatting.
    fn log_enabled(&self, level: u8, target: RStr<'_>) -> bool;
    /// Records a log record through the host's `tracing`.
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>);
    /// Runs `future` on the host runtime, detached.
    fn spawn(&self, future: FfiFuture<()>);
    /// Runs host operation `op` (see `protocol::host_op`) with `input`.
    #[sabi(last_prefix_field)]
    fn call(&self, op: RString, input: Message) -> FfiFuture<CallResult>;
}

/// The host handle a plugin keeps: cheap to clone, shared.
pub type HostBox = HostObject_TO<'static, RArc<()>>;
