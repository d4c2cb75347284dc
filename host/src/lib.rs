//! The ccproxy host: CLI, config, plugin loader, registry, hook pipeline, server.
//!
//! The binary (`main.rs`) only parses arguments and maps errors to exit codes;
//! everything else lives here. See `docs/ARCHITECTURE.md` for the map.

pub mod allocator;
pub mod cli;
pub mod config;
pub mod hooks;
pub mod memory;
pub mod paths;
pub mod plugins;
pub mod server;
pub mod service;
pub mod services;
pub mod telemetry;
pub mod unix;
pub mod upstream;

/// The formats core (`ccproxy-formats`), re-exported.
pub use ccproxy_formats as formats;
