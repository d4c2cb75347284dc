//! The `ccproxy` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

// mimalloc, for the host and (through the exported table) every plugin built
// with the SDK's `host-allocator` feature: see `ccproxy::allocator`.
#[global_allocator]
static ALLOCATOR: ccproxy::allocator::MiMalloc = ccproxy::allocator::MiMalloc;

/// The plugins' allocator, under the name the SDK looks up
/// (`ccproxy_plugin_abi::allocator::HOST_ALLOCATOR_SYMBOL`); `build.rs` puts
/// it in the executable's dynamic symbol table.
#[allow(unsafe_code)]
#[unsafe(export_name = "ccproxy_host_allocator_v1")]
pub static HOST_ALLOCATOR: ccproxy_plugin_abi::allocator::HostAllocator =
    ccproxy::allocator::HOST_ALLOCATOR;

fn main() -> ExitCode {
    ccproxy::allocator::MiMalloc::share_with_plugins();
    let cli = ccproxy::cli::Cli::parse_args();
    match ccproxy::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(exit) => {
            eprintln!("ccproxy: {}", exit.message);
            ExitCode::from(exit.code)
        }
    }
}
