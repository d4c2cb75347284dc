//! The `ccproxy` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

// mimalloc instead of the system allocator: per-thread free lists make the
// proxy's cross-thread frees (a body read on one worker, freed on another)
// cheap, where glibc's malloc takes arena locks (docs/PERFORMANCE.md). Plugins
// keep their own allocator; memory never changes hands across the boundary
// without its allocator (abi_stable's vectors carry their own).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = ccproxy::cli::Cli::parse_args();
    match ccproxy::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(exit) => {
            eprintln!("ccproxy: {}", exit.message);
            ExitCode::from(exit.code)
        }
    }
}
