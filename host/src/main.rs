//! The `ccproxy` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ccproxy::cli::Cli::parse();
    match ccproxy::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(exit) => {
            eprintln!("ccproxy: {}", exit.message);
            ExitCode::from(exit.code)
        }
    }
}
