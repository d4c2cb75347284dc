//! `ccproxy-mock-upstream`: the mock upstream as a process (see the library
//! docs for the endpoints and the control API).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use ccproxy_mock_upstream::{
    ExpectedHeader, Identity, Options, TlsOptions, default_samples_dir, serve,
};
use clap::Parser;

/// A mock of the Anthropic, OpenAI Responses and Chat Completions APIs and of
/// the Claude and OpenAI OAuth servers (and the Codex backend), replaying recorded traffic on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "ccproxy-mock-upstream")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The folder of recorded samples (default: tests/data/samples of the source tree).
    #[arg(long, value_name = "DIR")]
    samples: Option<PathBuf>,
    /// A header every upstream request must carry, with that value when given.
    /// Repeatable.
    #[arg(long = "expect-header", value_name = "NAME[=VALUE]")]
    expect_header: Vec<ExpectedHeader>,
    /// A header no upstream request may carry. Repeatable.
    #[arg(long = "forbid-header", value_name = "NAME")]
    forbid_header: Vec<String>,
    /// Stop after this many upstream requests.
    #[arg(long, value_name = "N")]
    max_requests: Option<u64>,
    /// Stop after this many seconds without a request.
    #[arg(long, value_name = "S")]
    idle_exit_seconds: Option<u64>,
    /// Wait this long before answering a refresh_token grant.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    oauth_delay_ms: u64,
    /// Log nothing per request on stderr.
    #[arg(long)]
    quiet: bool,
    /// Serve HTTPS too, with a certificate for 127.0.0.1 and localhost signed by a CA made
    /// at start-up; the CA's certificate (PEM) is written to FILE before the listening line.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_ca_out: Option<PathBuf>,
    /// Serve HTTPS too, with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// ALPN protocols offered over TLS, in preference order (h2, http/1.1).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "h2,http/1.1"
    )]
    alpn: Vec<String>,
    /// A quirk mode of real OpenAI-compatible servers, for the whole run
    /// (no_usage_unless_asked, no_tool_index, reasoning_content, reasoning,
    /// empty_choices, no_done, html_errors, text_errors, html_answer). Repeatable.
    #[arg(long = "quirk", value_name = "NAME")]
    quirk: Vec<ccproxy_mock_upstream::quirks::Quirk>,
}

/// The TLS mode the flags ask for, if any (clap has checked that they fit together).
fn tls_options(
    ca_out: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    alpn: Vec<String>,
) -> Option<TlsOptions> {
    let identity = match (ca_out, cert, key) {
        (Some(ca_out), _, _) => Identity::Generate { ca_out },
        (None, Some(cert), Some(key)) => Identity::Files { cert, key },
        _ => return None,
    };
    Some(TlsOptions { identity, alpn })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        port: args.port,
        samples: args.samples.unwrap_or_else(default_samples_dir),
        expect_headers: args.expect_header,
        forbid_headers: args
            .forbid_header
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect(),
        max_requests: args.max_requests,
        idle_exit: args.idle_exit_seconds.map(Duration::from_secs),
        oauth_delay: Duration::from_millis(args.oauth_delay_ms),
        quiet: args.quiet,
        tls: tls_options(args.tls_ca_out, args.tls_cert, args.tls_key, args.alpn),
        quirks: ccproxy_mock_upstream::quirks::Quirks::new(args.quirk),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ccproxy-mock-upstream: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ccproxy-mock-upstream: {message}");
            ExitCode::from(2)
        }
    }
}
