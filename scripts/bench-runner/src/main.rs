//! `ccproxy-bench`: the proxy's overhead benchmark, run by `scripts/bench`
//! (see `docs/PERFORMANCE.md`).
//!
//! `ccproxy-bench run` expects the release build of the proxy, its bundled
//! plugins, `test-plugin-noop-hook`, this crate, and `oha` under
//! `TARGET/tools/bin` (the script builds and installs them), then:
//!
//! 1. starts the lean upstream (`ccproxy-bench upstream`, see `upstream.rs`) on
//!    127.0.0.1;
//! 2. times the proxy's start-up with the bundled plugins, several times;
//! 3. starts the proxy with the bundled plugins and the access log writing to
//!    a temporary file, and reads its idle RSS;
//! 4. for each scenario, body size and concurrency, runs `oha` rounds for a
//!    fixed time straight at the upstream and through the proxy, alternating
//!    which goes first, and samples the proxy's RSS at concurrency 64;
//! 5. probes the time to the first body byte and `Server-Timing` with a raw
//!    client, direct and proxied requests interleaved;
//! 6. starts three more proxies with 0, 1 and 10 copies of the no-op hook
//!    plugin and compares their CPU time per request;
//! 7. prints a Markdown report and writes it to `OUT/report.md`.
//!
//! Everything listens on 127.0.0.1 free ports, every loop is bounded, and every
//! process it started is stopped when it ends (or fails).

mod bodies;
mod forwarder;
mod idle;
mod instructions;
mod load;
mod probe;
mod procs;
mod soak;
mod upstream;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::{
    load::{Load, Round},
    procs::{RssSampler, Server, status_kib},
};

#[derive(Parser)]
#[command(
    name = "ccproxy-bench",
    about = "The proxy's overhead benchmark (scripts/bench)"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Runs the benchmark and prints the report.
    Run(RunArgs),
    /// Serves the lean mock upstream (used by `run`).
    Upstream {
        /// Port on 127.0.0.1; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Counts the proxy's instructions per request with callgrind, or samples
    /// its CPU with perf (`scripts/profile`).
    Instructions {
        /// `messages`, `stream` (passed through) or `chat` (converted to a stream).
        #[arg(long, default_value = "messages")]
        scenario: String,
        /// The 64 KB Claude Code request instead of the 1 KB conversation.
        #[arg(long)]
        large: bool,
        /// Copies of the no-op hook plugin to load.
        #[arg(long, default_value_t = 0)]
        noop_plugins: usize,
        /// Disable the access log.
        #[arg(long)]
        no_access_log: bool,
        /// Measured requests.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        /// Requests before the counters are zeroed.
        #[arg(long, default_value_t = 100)]
        warmup: usize,
        /// A bundled plugin to leave out (`ccproxy serve --disable-plugin`); repeatable.
        #[arg(long, value_name = "NAME")]
        disable_plugin: Vec<String>,
        /// An environment variable for the proxy, e.g.
        /// `PLUGINS__REQUEST_TRACER__ENABLED=true` for an opt-in plugin; repeatable.
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
        env: Vec<(String, String)>,
        /// Where to copy callgrind's dump of the measured requests, for
        /// `callgrind_annotate` (the scratch folder is removed at the end).
        #[arg(long, value_name = "FILE", conflicts_with = "perf_out")]
        callgrind_out: Option<PathBuf>,
        /// Sample the proxy's real CPU time with `perf record -e cpu-clock`
        /// instead of counting instructions (the kernel's share included,
        /// and a copy weighed by its time, where callgrind counts a byte of
        /// `rep movsb` as an instruction); perf's data goes to FILE, for
        /// `perf report -i FILE`.
        #[arg(long, value_name = "FILE")]
        perf_out: Option<PathBuf>,
        /// Count the bare forwarder instead of the proxy (`messages` or
        /// `stream`, passed through), the floor the proxy is compared with.
        #[arg(long)]
        forwarder: bool,
    },
    /// Mixed traffic with upstream faults and client hang-ups for a bounded
    /// time; checks the proxy neither crashes, hangs nor grows (`scripts/soak`).
    Soak(soak::SoakArgs),
    /// Holds many idle streams open through the proxy and measures its RSS
    /// and `/health` latency meanwhile (`scripts/idle-streams`, issue 15).
    IdleStreams(idle::IdleArgs),
    /// Serves the idle upstream: a stream's head and first event, the rest
    /// after the hold (used by `idle-streams`).
    IdleUpstream {
        /// Port on 127.0.0.1; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Seconds a held stream waits after its first event.
        #[arg(long, default_value_t = 150)]
        hold_seconds: u64,
        /// Serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN) with a certificate signed
        /// by a CA made at start, whose PEM goes to FILE.
        #[arg(long, value_name = "FILE")]
        tls_ca_out: Option<PathBuf>,
    },
    /// Serves the bare forwarder, the floor of a hyper proxy (used by `run`).
    Forwarder {
        /// Port on 127.0.0.1; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Where to forward, `http://127.0.0.1:PORT`.
        #[arg(long)]
        upstream: String,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// About one minute instead of about five: one short round per setting.
    #[arg(long)]
    quick: bool,
    /// Rounds per setting and target (default 2, quick 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per round (default 3, quick 1).
    #[arg(long)]
    seconds: Option<f64>,
    /// Direct/proxied request pairs per first-byte probe (default 300, quick 100).
    #[arg(long)]
    probes: Option<usize>,
    /// Start-up time measurements (default 9, quick 5).
    #[arg(long)]
    startups: Option<usize>,
    /// Use the mock upstream of the end-to-end tests (`ccproxy-mock-upstream`,
    /// reset after every round) instead of the lean one.
    #[arg(long)]
    shared_mock: bool,
    /// A shared library the proxy processes run with (`LD_PRELOAD`), e.g. another
    /// malloc such as `/usr/lib/x86_64-linux-gnu/libjemalloc.so.2`.
    #[arg(long, value_name = "LIB")]
    preload: Option<PathBuf>,
    /// A bundled plugin every ccproxy under test leaves out (`ccproxy serve
    /// --disable-plugin`), e.g. all but `claude_api` for the host's own floor;
    /// repeatable.
    #[arg(long, value_name = "NAME")]
    disable_plugin: Vec<String>,
    /// Where the report goes (default TARGET/bench).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The proxies under test (ccproxy and the bare forwarder) each pinned to
    /// core 0, the load generator, the upstream and this runner to core 1
    /// (`taskset`), so a proxy's throughput is what one core gives (issue 15).
    #[arg(long)]
    pinned: bool,
    /// The command line to print in the report (set by scripts/bench).
    #[arg(long, hide = true)]
    invoked_as: Option<String>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Commands::Upstream { port } => match upstream::run(port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("ccproxy-bench upstream: {message}");
                ExitCode::FAILURE
            }
        },
        Commands::Forwarder { port, upstream } => match forwarder::run(port, &upstream) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("ccproxy-bench forwarder: {message}");
                ExitCode::FAILURE
            }
        },
        Commands::Instructions {
            scenario,
            large,
            noop_plugins,
            no_access_log,
            requests,
            warmup,
            disable_plugin,
            env,
            callgrind_out,
            perf_out,
            forwarder,
        } => match instructions::run(&instructions::Setting {
            scenario,
            large,
            noop_plugins,
            no_access_log,
            requests: requests.max(1),
            warmup,
            disabled: disable_plugin,
            env,
            callgrind_out,
            perf_out,
            forwarder,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("ccproxy-bench instructions: {message}");
                ExitCode::FAILURE
            }
        },
        Commands::IdleStreams(args) => match idle::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(2),
            Err(message) => {
                eprintln!("ccproxy-bench idle-streams: {message}");
                ExitCode::FAILURE
            }
        },
        Commands::IdleUpstream {
            port,
            hold_seconds,
            tls_ca_out,
        } => {
            match idle::serve_upstream(
                port,
                Duration::from_secs(hold_seconds),
                tls_ca_out.as_deref(),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("ccproxy-bench idle-upstream: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        Commands::Soak(args) => match soak::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(2),
            Err(message) => {
                eprintln!("ccproxy-bench soak: {message}");
                ExitCode::FAILURE
            }
        },
        Commands::Run(args) => match run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("ccproxy-bench: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `KEY=VALUE` of `--env`.
fn key_value(argument: &str) -> Result<(String, String), String> {
    match argument.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{argument:?} is not KEY=VALUE")),
    }
}

/// The median of `values` (sorted in place); NaN when empty.
pub fn median(values: &mut [f64]) -> f64 {
    percentile(values, 50.0)
}

/// The nearest-rank percentile of `values` (sorted in place); NaN when empty.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Paths of the built artifacts.
struct Layout {
    workspace: PathBuf,
    target: PathBuf,
    release: PathBuf,
    /// `LD_PRELOAD` for the proxy (`--preload`).
    preload: Option<PathBuf>,
    /// Bundled plugins the proxy leaves out (`--disable-plugin`).
    disabled: Vec<String>,
    /// The core the proxies under test are pinned to (`--pinned`).
    proxy_core: Option<usize>,
}

impl Layout {
    /// The artifacts `scripts/bench` builds; `oha` only when `with_oha`.
    fn find(with_oha: bool) -> Result<Self, String> {
        let layout = Self::locate();
        let mut needed = vec![
            layout.ccproxy(),
            layout.release.join("libtest_plugin_noop_hook.so"),
        ];
        if with_oha {
            needed.push(load::oha_path(&layout.target));
        }
        for needed in needed {
            if !needed.exists() {
                return Err(format!(
                    "{} is missing; run scripts/bench, which builds and installs everything",
                    needed.display()
                ));
            }
        }
        Ok(layout)
    }

    /// Where the artifacts are, whether built or not.
    fn locate() -> Self {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let workspace = workspace.canonicalize().unwrap_or(workspace);
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        let release = target.join("release");
        Self {
            workspace,
            target,
            release,
            preload: None,
            disabled: Vec::new(),
            proxy_core: None,
        }
    }

    /// A command for a proxy under test (ccproxy or the bare forwarder):
    /// `program` itself, or under `taskset -c CORE` when pinned (taskset sets
    /// the affinity and execs, so the process id stays the program's and every
    /// thread it starts inherits the core).
    fn server_command(&self, program: &Path) -> Command {
        match self.proxy_core {
            Some(core) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(core.to_string()).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn ccproxy(&self) -> PathBuf {
        self.release.join("ccproxy")
    }

    fn bundled(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.release)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                Some(
                    name.strip_prefix("libccproxy_plugin_")?
                        .strip_suffix(".so")?
                        .to_owned(),
                )
            })
            .collect();
        names.sort();
        names
    }
}

/// The plugins `/plugins/status` (`status`) lists as active. Every bundled
/// plugin must be among them but those in `disabled` (left out on the command
/// line) and the opt-in ones nobody enabled (disabled "off by default").
fn active_plugins(
    layout: &Layout,
    status: &Value,
    disabled: &[String],
) -> Result<Vec<String>, String> {
    let plugins = status["plugins"].as_array().map_or(&[][..], Vec::as_slice);
    let active: Vec<String> = plugins
        .iter()
        .filter(|p| p["status"] == "active")
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let opt_in_off = |name: &str| {
        plugins.iter().any(|p| {
            p["name"] == name
                && p["status"] == "disabled"
                && p["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("off by default"))
        })
    };
    match layout
        .bundled()
        .into_iter()
        .find(|name| !active.contains(name) && !disabled.contains(name) && !opt_in_off(name))
    {
        Some(missing) => Err(format!("bundled plugin {missing} is not active")),
        None => Ok(active),
    }
}

/// A scratch folder removed at the end.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Result<Self, String> {
        tempfile::Builder::new()
            .prefix("ccproxy-bench-")
            .tempdir()
            .map(Self)
            .map_err(|error| format!("cannot create a scratch folder: {error}"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// The core of the proxies under test in pinned mode; the runner, the load
/// generator and the upstream share the other one.
const PROXY_CORE: usize = 0;
const LOAD_CORE: usize = 1;

/// Pinned mode: checks `taskset` and the cores, moves every thread of this
/// runner to `LOAD_CORE` (the upstream and `oha`, its children, inherit it)
/// and has the proxies under test started on `PROXY_CORE`.
fn pin_runner(layout: &mut Layout) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 {
        return Err(format!(
            "--pinned needs two cores ({PROXY_CORE} and {LOAD_CORE}); this process may use {cores}"
        ));
    }
    let output = Command::new("taskset")
        .args(["-a", "-p", "-c", &LOAD_CORE.to_string()])
        .arg(std::process::id().to_string())
        .output()
        .map_err(|error| {
            format!("--pinned needs taskset (util-linux: apt-get install util-linux): {error}")
        })?;
    if !output.status.success() {
        return Err(format!(
            "taskset could not pin the runner to core {LOAD_CORE}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    layout.proxy_core = Some(PROXY_CORE);
    Ok(())
}

/// The proxy command: the bundled plugins (found next to the binary; opt-in ones stay off), the
/// claude_api plugin in API-key mode in front of `upstream`, the access log
/// (client and provider) writing into the sandbox, `extra_plugins` as an
/// extra plugin folder.
fn proxy_command(
    layout: &Layout,
    sandbox: &Path,
    upstream: &str,
    extra_plugins: Option<&Path>,
) -> Command {
    let mut command = layout.server_command(&layout.ccproxy());
    // No line per request on the terminal: the access log is what is measured.
    command.args(["serve", "--port", "0", "--log-level", "info", "--quiet"]);
    if let Some(dir) = extra_plugins {
        command.arg("--plugin-dir").arg(dir);
    }
    for name in &layout.disabled {
        command.arg("--disable-plugin").arg(name);
    }
    command.current_dir(sandbox).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    if let Some(library) = &layout.preload {
        command.env("LD_PRELOAD", library);
    }
    let logs = sandbox.join("logs");
    command
        .env("HOME", sandbox)
        .env("XDG_CONFIG_HOME", sandbox.join("cfg"))
        .env("XDG_DATA_HOME", sandbox.join("data"))
        .env("XDG_CACHE_HOME", sandbox.join("cache"))
        .env("XDG_STATE_HOME", sandbox.join("state"))
        .env("CODEX_HOME", sandbox.join("codex"))
        .env("ANTHROPIC_API_KEY", "bench-key")
        .env("PLUGINS__CLAUDE_API__BASE_URL", upstream)
        .env("PLUGINS__ACCESS_LOG__CLIENT_ENABLED", "true")
        .env(
            "PLUGINS__ACCESS_LOG__CLIENT_LOG_FILE",
            logs.join("access.log"),
        )
        .env("PLUGINS__ACCESS_LOG__PROVIDER_ENABLED", "true")
        .env(
            "PLUGINS__ACCESS_LOG__PROVIDER_LOG_FILE",
            logs.join("provider.log"),
        );
    command
}

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// `ready_ms=X` of the proxy's listening line.
fn field_of(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('"').to_owned())
}

/// One measured setting: a scenario, a body size and a concurrency.
struct Row {
    scenario: &'static str,
    size: &'static str,
    concurrency: usize,
    direct: Round,
    proxy: Round,
    /// The bare forwarder, for scenarios it can serve (passthrough).
    forwarder: Option<Round>,
}

/// A first-byte probe of one scenario and size.
struct ProbeRow {
    scenario: &'static str,
    size: &'static str,
    direct_first_byte: Vec<f64>,
    proxy_first_byte: Vec<f64>,
    added_first_byte: Vec<f64>,
    proxy_dur: Vec<f64>,
    upstream_dur: Vec<f64>,
}

/// What a client sends where.
struct Scenario {
    name: &'static str,
    /// The bare forwarder can stand in for a proxy (no conversion needed).
    passthrough: bool,
    proxy_path: &'static str,
    proxy_body: fn(&bodies::Bodies) -> &Vec<u8>,
    direct_body: fn(&bodies::Bodies) -> &Vec<u8>,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "messages",
        passthrough: true,
        proxy_path: "/claude/v1/messages",
        proxy_body: |b| &b.messages,
        direct_body: |b| &b.messages,
    },
    Scenario {
        name: "messages stream",
        passthrough: true,
        proxy_path: "/claude/v1/messages",
        proxy_body: |b| &b.messages_stream,
        direct_body: |b| &b.messages_stream,
    },
    Scenario {
        name: "chat→messages stream",
        passthrough: false,
        proxy_path: "/claude/v1/chat/completions",
        proxy_body: |b| &b.chat_stream,
        direct_body: |b| &b.messages_stream,
    },
];

const CONCURRENCY: [usize; 3] = [1, 16, 64];
const HEADERS: [&str; 1] = ["anthropic-version: 2023-06-01"];

struct Settings {
    rounds: usize,
    round: Duration,
    probes: usize,
    startups: usize,
    hook_rounds: usize,
    hook_round: Duration,
}

fn run(args: &RunArgs) -> Result<(), String> {
    let started = Instant::now();
    let mut layout = Layout::find(true)?;
    if let Some(library) = &args.preload {
        if !library.exists() {
            return Err(format!("--preload {} does not exist", library.display()));
        }
        layout.preload = Some(library.clone());
    }
    layout.disabled.clone_from(&args.disable_plugin);
    // Before pinning, which leaves this process one core to count.
    let machine = machine_info(&layout);
    if args.pinned {
        pin_runner(&mut layout)?;
    }
    let settings = Settings {
        rounds: args.rounds.unwrap_or(if args.quick { 1 } else { 2 }).max(1),
        round: Duration::from_secs_f64(
            args.seconds
                .unwrap_or(if args.quick { 1.0 } else { 3.0 })
                .clamp(0.2, 60.0),
        ),
        probes: args
            .probes
            .unwrap_or(if args.quick { 100 } else { 300 })
            .clamp(10, 10_000),
        startups: args
            .startups
            .unwrap_or(if args.quick { 5 } else { 9 })
            .clamp(1, 50),
        hook_rounds: if args.quick { 1 } else { 3 },
        hook_round: Duration::from_secs_f64(if args.quick { 1.0 } else { 2.0 }),
    };
    let oha = load::oha_path(&layout.target);
    let scratch = Scratch::new()?;
    let sandbox = scratch.path().join("sandbox");
    std::fs::create_dir_all(sandbox.join("logs")).map_err(|e| e.to_string())?;
    eprintln!("==> machine: {}", machine.replace('\n', "; "));

    // Bodies, as files for oha.
    let sizes = [
        ("small", bodies::small()),
        ("large", bodies::large(&layout.workspace)?),
    ];
    let mut files = std::collections::HashMap::new();
    for (size, bodies) in &sizes {
        for (key, bytes) in [
            ("messages", &bodies.messages),
            ("messages_stream", &bodies.messages_stream),
            ("chat_stream", &bodies.chat_stream),
        ] {
            let path = scratch.path().join(format!("{size}_{key}.json"));
            std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
            files.insert(bytes.as_ptr() as usize, path);
        }
    }
    let file_of = |bytes: &Vec<u8>| files[&(bytes.as_ptr() as usize)].clone();

    // The upstream.
    let upstream = if args.shared_mock {
        let mut command = Command::new(layout.release.join("ccproxy-mock-upstream"));
        command.args(["--quiet", "--idle-exit-seconds", "60"]);
        Server::start("mock upstream", command, READY_TIMEOUT)?
    } else {
        let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        command.arg("upstream");
        Server::start("bench upstream", command, READY_TIMEOUT)?
    };
    let upstream_url = upstream.url();
    eprintln!("==> upstream {upstream_url}");
    let forwarder = {
        let mut command =
            layout.server_command(&std::env::current_exe().map_err(|e| e.to_string())?);
        command.args(["forwarder", "--upstream", &upstream_url]);
        Server::start("bench forwarder", command, READY_TIMEOUT)?
    };
    eprintln!("==> bare forwarder {}", forwarder.url());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let reset_mock = || {
        if args.shared_mock {
            let _ = runtime.block_on(async {
                let mut connection = probe::Connection::open(upstream.address).await?;
                connection
                    .send("POST", "/_mock/reset", Bytes::new())
                    .await
                    .map(|_| ())
            });
        }
    };

    // Start-up time.
    eprintln!("==> start-up time, {} runs", settings.startups);
    let mut startup_ms = Vec::new();
    let mut startup_self_ms = Vec::new();
    let mut ready_line = String::new();
    for _ in 0..settings.startups {
        let mut proxy = Server::start(
            "ccproxy",
            proxy_command(&layout, &sandbox, &upstream_url, None),
            READY_TIMEOUT,
        )?;
        startup_ms.push(proxy.ready_after.as_secs_f64() * 1e3);
        if let Some(ms) = field_of(&proxy.ready_line, "ready_ms").and_then(|v| v.parse().ok()) {
            startup_self_ms.push(ms);
        }
        ready_line = proxy.ready_line.clone();
        proxy.stop();
    }

    // The proxy under test.
    let proxy = Server::start(
        "ccproxy",
        proxy_command(&layout, &sandbox, &upstream_url, None),
        READY_TIMEOUT,
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let rss_idle = status_kib(proxy.pid(), "VmRSS").unwrap_or(0);
    let plugin_status = runtime.block_on(async {
        let mut connection = probe::Connection::open(proxy.address).await?;
        connection
            .send("GET", "/plugins/status", Bytes::new())
            .await
    })?;
    let plugin_status: Value = serde_json::from_slice(&plugin_status).unwrap_or(Value::Null);
    let active = active_plugins(&layout, &plugin_status, &layout.disabled)
        .map_err(|error| format!("{error}; the proxy's log:\n{}", proxy.log_tail()))?;
    eprintln!(
        "==> proxy {} (pid {}), active plugins: {}; idle RSS {:.1} MiB",
        proxy.url(),
        proxy.pid(),
        active.join(", "),
        rss_idle as f64 / 1024.0
    );

    // Warm-up, not measured.
    eprintln!("==> warm-up");
    for (_, bodies) in &sizes {
        for scenario in &SCENARIOS {
            for (url, body) in [
                (
                    format!("{}{}", proxy.url(), scenario.proxy_path),
                    (scenario.proxy_body)(bodies),
                ),
                (
                    format!("{upstream_url}/v1/messages"),
                    (scenario.direct_body)(bodies),
                ),
            ] {
                let body = file_of(body);
                let warm = Load {
                    url: &url,
                    body: &body,
                    concurrency: 4,
                    duration: Duration::from_millis(300),
                    headers: &HEADERS,
                };
                let round = load::run(&oha, scratch.path(), &warm, None)?;
                if round.ok == 0 {
                    return Err(format!(
                        "warm-up of {url} had no successful request; the proxy's log:\n{}",
                        proxy.log_tail()
                    ));
                }
            }
            reset_mock();
        }
    }

    // Load rounds.
    let total_rounds = sizes.len() * SCENARIOS.len() * CONCURRENCY.len() * settings.rounds * 2;
    eprintln!(
        "==> load: {total_rounds} oha rounds of {:.1} s",
        settings.round.as_secs_f64()
    );
    let mut rows = Vec::new();
    let mut rss_load_max = 0;
    for (size, bodies) in &sizes {
        for scenario in &SCENARIOS {
            let proxy_url = format!("{}{}", proxy.url(), scenario.proxy_path);
            let direct_url = format!("{upstream_url}/v1/messages");
            let proxy_file = file_of((scenario.proxy_body)(bodies));
            let direct_file = file_of((scenario.direct_body)(bodies));
            for concurrency in CONCURRENCY {
                let forwarder_url = format!("{}/v1/messages", forwarder.url());
                // (url, body, measured pid) of each target, rotated per round.
                let mut targets = vec![
                    (&direct_url, &direct_file, upstream.pid()),
                    (&proxy_url, &proxy_file, proxy.pid()),
                ];
                if scenario.passthrough {
                    targets.push((&forwarder_url, &direct_file, forwarder.pid()));
                }
                let mut results: Vec<Vec<Round>> = vec![Vec::new(); targets.len()];
                for round in 0..settings.rounds {
                    for turn in 0..targets.len() {
                        let index = (turn + round) % targets.len();
                        let (url, body, measured) = targets[index];
                        let through_proxy = index == 1;
                        let spec = Load {
                            url,
                            body,
                            concurrency,
                            duration: settings.round,
                            headers: &HEADERS,
                        };
                        let sampler = (through_proxy && concurrency == 64)
                            .then(|| RssSampler::start(proxy.pid()));
                        let result = load::run(&oha, scratch.path(), &spec, Some(measured))?;
                        if let Some(sampler) = sampler {
                            rss_load_max = rss_load_max.max(sampler.finish());
                        }
                        results[index].push(result);
                        reset_mock();
                    }
                }
                let row = Row {
                    scenario: scenario.name,
                    size,
                    concurrency,
                    direct: load::combine(&results[0]),
                    proxy: load::combine(&results[1]),
                    forwarder: results.get(2).map(|rounds| load::combine(rounds)),
                };
                eprintln!(
                    "    {:<22} {size:<5} c={concurrency:<3} direct {:>8.0} rps p50 {:.3} ms | proxy {:>8.0} rps p50 {:.3} ms p99 {:.3} ms | forwarder {} rps, errors {}/{}",
                    scenario.name,
                    row.direct.rps,
                    row.direct.p50,
                    row.proxy.rps,
                    row.proxy.p50,
                    row.proxy.p99,
                    row.forwarder
                        .as_ref()
                        .map_or("-".to_owned(), |f| format!("{:.0}", f.rps)),
                    row.direct.errors,
                    row.proxy.errors
                );
                rows.push(row);
            }
        }
    }

    // First byte and Server-Timing.
    eprintln!(
        "==> first-byte probes: {} direct/proxied pairs per scenario",
        settings.probes
    );
    let mut probes = Vec::new();
    for (size, bodies) in &sizes {
        for scenario in &SCENARIOS {
            let direct_body = Bytes::from((scenario.direct_body)(bodies).clone());
            let proxy_body = Bytes::from((scenario.proxy_body)(bodies).clone());
            let row = runtime.block_on(async {
                let mut direct = probe::Connection::open(upstream.address).await?;
                let mut proxied = probe::Connection::open(proxy.address).await?;
                let mut row = ProbeRow {
                    scenario: scenario.name,
                    size,
                    direct_first_byte: Vec::new(),
                    proxy_first_byte: Vec::new(),
                    added_first_byte: Vec::new(),
                    proxy_dur: Vec::new(),
                    upstream_dur: Vec::new(),
                };
                for i in 0..settings.probes {
                    let (d, p) = if i % 2 == 0 {
                        let d = direct.post("/v1/messages", direct_body.clone()).await?;
                        let p = proxied
                            .post(scenario.proxy_path, proxy_body.clone())
                            .await?;
                        (d, p)
                    } else {
                        let p = proxied
                            .post(scenario.proxy_path, proxy_body.clone())
                            .await?;
                        let d = direct.post("/v1/messages", direct_body.clone()).await?;
                        (d, p)
                    };
                    row.direct_first_byte.push(d.first_byte);
                    row.proxy_first_byte.push(p.first_byte);
                    row.added_first_byte.push(p.first_byte - d.first_byte);
                    row.proxy_dur.extend(p.proxy_dur);
                    row.upstream_dur.extend(p.upstream_dur);
                }
                Ok::<_, String>(row)
            })?;
            reset_mock();
            probes.push(row);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = status_kib(proxy.pid(), "VmRSS").unwrap_or(0);
    let rss_peak = status_kib(proxy.pid(), "VmHWM").unwrap_or(0);
    let access_log_lines = std::fs::read_to_string(sandbox.join("logs/access.log"))
        .map(|text| text.lines().count())
        .unwrap_or(0);
    drop(proxy);
    drop(forwarder);

    // Hook cost.
    eprintln!("==> hook cost: proxies with 0, 1 and 10 no-op hook plugins");
    let hooks = hook_cost(
        &layout,
        scratch.path(),
        &upstream_url,
        &oha,
        &file_of(&sizes[0].1.messages),
        &settings,
        &runtime,
    )?;
    drop(upstream);

    let report = report(&mut Report {
        args,
        settings: &settings,
        machine: &machine,
        active: &active,
        rows: &rows,
        probes: &mut probes,
        startup_ms: &mut startup_ms,
        startup_self_ms: &mut startup_self_ms,
        ready_line: &ready_line,
        rss_idle,
        rss_load_max,
        rss_after,
        rss_peak,
        access_log_lines,
        hooks: &hooks,
        elapsed: started.elapsed(),
    });
    println!("{report}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| layout.target.join("bench"));
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("report.md"), &report).map_err(|e| e.to_string())?;
    eprintln!(
        "==> report written to {} ({:.0} s in all)",
        out.join("report.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The hook-cost measurement of one proxy.
struct HookRow {
    plugins: usize,
    c1: Round,
    c16: Round,
    hook_mean_us: Option<f64>,
}

fn hook_cost(
    layout: &Layout,
    scratch: &Path,
    upstream_url: &str,
    oha: &Path,
    body: &Path,
    settings: &Settings,
    runtime: &tokio::runtime::Runtime,
) -> Result<Vec<HookRow>, String> {
    let library = layout.release.join("libtest_plugin_noop_hook.so");
    let mut proxies = Vec::new();
    let mut base_plugins = None;
    for n in [0usize, 1, 10] {
        let dir = scratch.join(format!("noop_{n}"));
        let sandbox = scratch.join(format!("hook_sandbox_{n}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(sandbox.join("logs")).map_err(|e| e.to_string())?;
        for k in 0..n {
            // Copies, not links: each is its own library, named after its file.
            std::fs::copy(&library, dir.join(format!("libnoop_hook_{k}.so")))
                .map_err(|error| format!("cannot copy {}: {error}", library.display()))?;
        }
        let proxy = Server::start(
            "ccproxy",
            proxy_command(layout, &sandbox, upstream_url, Some(&dir)),
            READY_TIMEOUT,
        )?;
        // The first proxy (no no-op plugin) has the bundled ones on by default,
        // as checked on the main proxy.
        let active = field_of(&proxy.ready_line, "plugins").and_then(|v| v.parse::<usize>().ok());
        let wanted = *base_plugins.get_or_insert(active.unwrap_or(0)) + n;
        if active != Some(wanted) {
            return Err(format!(
                "the proxy with {n} no-op hook plugins has {active:?} active plugins, not {wanted}; its log:\n{}",
                proxy.log_tail()
            ));
        }
        proxies.push((n, proxy));
    }
    let mut rows = Vec::new();
    let mut c1: Vec<Vec<Round>> = vec![Vec::new(); proxies.len()];
    let mut c16: Vec<Vec<Round>> = vec![Vec::new(); proxies.len()];
    for (concurrency, results) in [(1, &mut c1), (16, &mut c16)] {
        // Warm-up, then rounds rotating which proxy goes first.
        for round in 0..=settings.hook_rounds {
            for i in 0..proxies.len() {
                let index = (i + round) % proxies.len();
                let (_, proxy) = &proxies[index];
                let url = format!("{}/claude/v1/messages", proxy.url());
                let spec = Load {
                    url: &url,
                    body,
                    concurrency,
                    duration: if round == 0 {
                        Duration::from_millis(300)
                    } else {
                        settings.hook_round
                    },
                    headers: &HEADERS,
                };
                let result = load::run(oha, scratch, &spec, Some(proxy.pid()))?;
                if round > 0 {
                    results[index].push(result);
                }
            }
        }
    }
    for (index, (n, proxy)) in proxies.iter().enumerate() {
        let status = runtime.block_on(async {
            let mut connection = probe::Connection::open(proxy.address).await?;
            connection
                .send("GET", "/plugins/status", Bytes::new())
                .await
        })?;
        let status: Value = serde_json::from_slice(&status).unwrap_or(Value::Null);
        let means: Vec<f64> = status["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("noop_hook"))
            })
            .filter_map(|p| p["hook_mean_us"].as_f64())
            .collect();
        rows.push(HookRow {
            plugins: *n,
            c1: load::combine(&c1[index]),
            c16: load::combine(&c16[index]),
            hook_mean_us: (!means.is_empty())
                .then(|| means.iter().sum::<f64>() / means.len() as f64),
        });
    }
    Ok(rows)
}

fn first_line(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}

fn machine_info(layout: &Layout) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown".to_owned(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let rustc = first_line(Command::new("rustc").arg("--version")).unwrap_or_default();
    let commit = first_line(
        Command::new("git")
            .arg("-C")
            .arg(&layout.workspace)
            .args(["describe", "--always", "--dirty"]),
    )
    .unwrap_or_default();
    let oha = first_line(Command::new(load::oha_path(&layout.target)).arg("--version"))
        .map_or(String::new(), |version| format!(", {version}"));
    format!(
        "{cores} cores ({model}), {memory}, load average before the run {load}\n{rustc}, release profile, commit {commit}{oha}"
    )
}

struct Report<'a> {
    args: &'a RunArgs,
    settings: &'a Settings,
    machine: &'a str,
    active: &'a [String],
    rows: &'a [Row],
    probes: &'a mut [ProbeRow],
    startup_ms: &'a mut [f64],
    startup_self_ms: &'a mut [f64],
    ready_line: &'a str,
    rss_idle: u64,
    rss_load_max: u64,
    rss_after: u64,
    rss_peak: u64,
    access_log_lines: usize,
    hooks: &'a [HookRow],
    elapsed: Duration,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// "met" or "missed by X".
fn verdict(ok: bool, miss: impl FnOnce() -> String) -> String {
    if ok {
        "met".to_owned()
    } else {
        format!("**missed** by {}", miss())
    }
}

/// The targets of issue 15 (performance round 2), against the bare forwarder
/// measured in the same rounds; meant for `--pinned`.
fn issue_15_targets(out: &mut String, r: &Report<'_>, noop_cpu_us: Option<f64>) {
    let row = |scenario: &str, size: &str, c: usize| {
        r.rows
            .iter()
            .find(|row| row.scenario == scenario && row.size == size && row.concurrency == c)
    };
    let pinned = if r.args.pinned { "" } else { " (not pinned)" };
    for scenario in ["messages", "messages stream"] {
        for size in ["small", "large"] {
            for c in [16, 64] {
                let Some(row) = row(scenario, size, c) else {
                    continue;
                };
                let Some(forwarder) = &row.forwarder else {
                    continue;
                };
                let ratio = row.proxy.rps / forwarder.rps.max(1e-9);
                let _ = writeln!(
                    out,
                    "| issue 15: proxy / forwarder ≥ 0.90 ({scenario}, {size}, c={c}){pinned} | {ratio:.2} | {} |",
                    verdict(ratio >= 0.90, || format!("{:.2}", 0.90 - ratio))
                );
            }
        }
    }
    for size in ["small", "large"] {
        for c in [16, 64] {
            let converted = row("chat→messages stream", size, c);
            let passthrough =
                row("messages stream", size, c).and_then(|row| row.forwarder.as_ref());
            if let (Some(converted), Some(forwarder)) = (converted, passthrough) {
                let ratio = converted.proxy.rps / forwarder.rps.max(1e-9);
                let _ = writeln!(
                    out,
                    "| issue 15: chat→messages stream ≥ 0.60 of the forwarder's stream passthrough ({size}, c={c}){pinned} | {ratio:.2} | {} |",
                    verdict(ratio >= 0.60, || format!("{:.2}", 0.60 - ratio))
                );
            }
        }
    }
    if let Some(cpu) = noop_cpu_us {
        let _ = writeln!(
            out,
            "| issue 15: a no-op hook plugin ≤ 2 µs of CPU per request{pinned} | {cpu:.2} µs | {} |",
            verdict(cpu <= 2.0, || format!("{:.2} µs", cpu - 2.0))
        );
    }
    for scenario in ["messages", "messages stream"] {
        for size in ["small", "large"] {
            let Some(row) = row(scenario, size, 1) else {
                continue;
            };
            let Some(forwarder) = &row.forwarder else {
                continue;
            };
            let added = row.proxy.p50 - forwarder.p50;
            let _ = writeln!(
                out,
                "| issue 15: p50 at c=1 within 0.03 ms of the forwarder's ({scenario}, {size}){pinned} | {:.3} vs {:.3} ms ({added:+.3}) | {} |",
                row.proxy.p50,
                forwarder.p50,
                verdict(added <= 0.03, || format!("{:.3} ms", added - 0.03))
            );
        }
    }
}

fn report(r: &mut Report<'_>) -> String {
    let mut out = String::new();
    let s = r.settings;
    let command = r.args.invoked_as.clone().unwrap_or_else(|| {
        let args: Vec<String> = std::env::args().collect();
        args.join(" ")
    });
    let _ = writeln!(out, "Command: `{command}`\n");
    let _ = writeln!(out, "Machine: {}\n", r.machine.replace('\n', "; "));
    if r.args.pinned {
        let _ = writeln!(
            out,
            "Pinned: the proxy and the bare forwarder each on core {PROXY_CORE} (`taskset -c {PROXY_CORE}`, so \
             their runtimes start one worker), the load generator `oha`, the upstream and the probes on \
             core {LOAD_CORE}. Direct rounds run on core {LOAD_CORE} alone.\n"
        );
    }
    let _ = writeln!(
        out,
        "Upstream: {}. {} round(s) of {:.1} s per setting and target, direct and proxied alternating; \
         RPS counts 2xx answers over the rounds' total time; p50/p99 are the median of the rounds' \
         percentiles, max the largest. Proxy: the bundled plugins on by default active ({}){}, {}, log level info{}. \
         Whole run: {:.0} s.\n",
        if r.args.shared_mock {
            "the end-to-end mock (`ccproxy-mock-upstream`), reset after every round"
        } else {
            "the lean replay of `tests/data/samples` (`ccproxy-bench upstream`)"
        },
        s.rounds,
        s.round.as_secs_f64(),
        r.active.join(", "),
        if r.args.disable_plugin.is_empty() {
            String::new()
        } else {
            format!(" but those left out ({})", r.args.disable_plugin.join(", "))
        },
        if r.active.iter().any(|name| name == "access_log") {
            "access log on (client and provider, to a temporary file)"
        } else {
            "no access log"
        },
        r.args
            .preload
            .as_ref()
            .map_or(String::new(), |l| format!(", `LD_PRELOAD={}`", l.display())),
        r.elapsed.as_secs_f64()
    );

    let _ = writeln!(
        out,
        "**Load: direct vs through the proxy** (latency in ms)\n"
    );
    let _ = writeln!(
        out,
        "| scenario | body | c | RPS direct | RPS proxy | ratio | p50 direct / proxy | p99 direct / proxy | max direct / proxy | added p50 | added p99 | proxy CPU µs/req | errors | RPS bare forwarder (ratio) | proxy / forwarder | forwarder p50 | forwarder CPU µs/req |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for row in r.rows {
        let (d, p) = (&row.direct, &row.proxy);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} % | {:.3} / {:.3} | {:.3} / {:.3} | {:.1} / {:.1} | {:+.3} | {:+.3} | {} | {} / {} | {} | {} | {} | {} |",
            row.scenario,
            row.size,
            row.concurrency,
            d.rps,
            p.rps,
            100.0 * p.rps / d.rps.max(1e-9),
            d.p50,
            p.p50,
            d.p99,
            p.p99,
            d.max,
            p.max,
            p.p50 - d.p50,
            p.p99 - d.p99,
            p.cpu_us_per_request()
                .map_or("?".to_owned(), |us| format!("{us:.0}")),
            d.errors,
            p.errors,
            row.forwarder.as_ref().map_or("–".to_owned(), |f| format!(
                "{:.0} ({:.0} %)",
                f.rps,
                100.0 * f.rps / d.rps.max(1e-9)
            )),
            row.forwarder.as_ref().map_or("–".to_owned(), |f| format!(
                "{:.0} %",
                100.0 * p.rps / f.rps.max(1e-9)
            )),
            row.forwarder
                .as_ref()
                .map_or("–".to_owned(), |f| format!("{:.3}", f.p50)),
            row.forwarder
                .as_ref()
                .and_then(Round::cpu_us_per_request)
                .map_or("–".to_owned(), |us| format!("{us:.0}")),
        );
    }

    let _ = writeln!(
        out,
        "\n**Time to first body byte and Server-Timing** (concurrency 1, {} direct/proxied pairs each, interleaved, ms)\n",
        s.probes
    );
    let _ = writeln!(
        out,
        "| scenario | body | first byte direct p50 | first byte proxy p50 | added p50 | added p99 | Server-Timing proxy p50 / p99 | upstream p50 |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for probe in r.probes.iter_mut() {
        let added_p99 = percentile(&mut probe.added_first_byte, 99.0);
        let proxy_dur_p99 = percentile(&mut probe.proxy_dur, 99.0);
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:+.3} | {:+.3} | {:.3} / {:.3} | {:.3} |",
            probe.scenario,
            probe.size,
            median(&mut probe.direct_first_byte),
            median(&mut probe.proxy_first_byte),
            median(&mut probe.added_first_byte),
            added_p99,
            median(&mut probe.proxy_dur),
            proxy_dur_p99,
            median(&mut probe.upstream_dur),
        );
    }

    let startup = median(r.startup_ms);
    let startup_max = r.startup_ms.iter().copied().fold(0.0, f64::max);
    let startup_self = median(r.startup_self_ms);
    let _ = writeln!(
        out,
        "\n**Memory and start-up**\n\n\
         | what | value |\n|---|---|\n\
         | RSS idle, the bundled plugins on by default loaded | {:.1} MiB |\n\
         | RSS under load, largest sample at concurrency 64 | {:.1} MiB |\n\
         | RSS idle after the run / VmHWM (peak) | {:.1} / {:.1} MiB |\n\
         | ready (spawn → `listening on` line), median of {} / max | {:.1} / {:.1} ms |\n\
         | ready as the proxy measures it (`ready_ms`), median | {:.1} ms |\n\
         | access log lines written | {} |\n",
        mib(r.rss_idle),
        mib(r.rss_load_max),
        mib(r.rss_after),
        mib(r.rss_peak),
        r.startup_ms.len(),
        startup,
        startup_max,
        startup_self,
        r.access_log_lines,
    );
    let _ = writeln!(out, "Listening line: `{}`\n", r.ready_line.trim());

    let _ = writeln!(
        out,
        "**No-op hook plugins** (each: one hook on `request.completed`, observed, and on \
         `provider.request.prepared`, inline; `messages`, small body; {} round(s) of {:.1} s, proxies rotating)\n",
        s.hook_rounds,
        s.hook_round.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| plugins | p50 c=1 ms | RPS c=16 | proxy CPU µs/req (c=16) | host-timed µs per hook call |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for row in r.hooks {
        let _ = writeln!(
            out,
            "| {} | {:.3} | {:.0} | {} | {} |",
            row.plugins,
            row.c1.p50,
            row.c16.rps,
            row.c16
                .cpu_us_per_request()
                .map_or("?".to_owned(), |us| format!("{us:.1}")),
            row.hook_mean_us
                .map_or("–".to_owned(), |us| format!("{us:.2}"))
        );
    }
    let base = r.hooks.first();
    let per_plugin = |row: &HookRow| -> Option<(f64, f64)> {
        let base = base?;
        let cpu =
            (row.c16.cpu_us_per_request()? - base.c16.cpu_us_per_request()?) / row.plugins as f64;
        let latency = (row.c1.p50 - base.c1.p50) * 1e3 / row.plugins as f64;
        Some((cpu, latency))
    };
    let ten = r
        .hooks
        .iter()
        .find(|h| h.plugins == 10)
        .and_then(per_plugin);
    if let Some((cpu, latency)) = ten {
        let _ = writeln!(
            out,
            "\nPer no-op hook plugin (from 0 → 10): {cpu:.2} µs of proxy CPU per request, {latency:+.2} µs of c=1 median latency."
        );
    }

    // Targets.
    let row = |scenario: &str, size: &str, c: usize| {
        r.rows
            .iter()
            .find(|row| row.scenario == scenario && row.size == size && row.concurrency == c)
    };
    let _ = writeln!(out, "\n**Targets**\n");
    let _ = writeln!(out, "| target | measured | verdict |\n|---|---|---|");
    for size in ["small", "large"] {
        for c in [16, 64] {
            if let Some(row) = row("messages", size, c) {
                let ratio = 100.0 * row.proxy.rps / row.direct.rps.max(1e-9);
                let _ = writeln!(
                    out,
                    "| non-streaming passthrough keeps ≥ 50 % of direct RPS ({size}, c={c}) | {ratio:.0} % | {} |",
                    verdict(ratio >= 50.0, || format!("{:.0} points", 50.0 - ratio))
                );
            }
        }
    }
    for scenario in ["messages", "messages stream", "chat→messages stream"] {
        for size in ["small", "large"] {
            if let Some(row) = row(scenario, size, 1) {
                let added = row.proxy.p99 - row.direct.p99;
                let _ = writeln!(
                    out,
                    "| p99 added latency at c=1 < 0.3 ms ({scenario}, {size}) | {added:.3} ms | {} |",
                    verdict(added < 0.3, || format!("{:.3} ms", added - 0.3))
                );
            }
        }
    }
    for probe in r.probes.iter_mut() {
        if probe.scenario == "chat→messages stream" {
            let added = median(&mut probe.added_first_byte);
            let _ = writeln!(
                out,
                "| streaming conversion adds < 0.5 ms to the first byte ({}, median) | {added:.3} ms | {} |",
                probe.size,
                verdict(added < 0.5, || format!("{:.3} ms", added - 0.5))
            );
        }
    }
    issue_15_targets(&mut out, r, ten.map(|(cpu, _)| cpu));
    let idle = mib(r.rss_idle);
    let _ = writeln!(
        out,
        "| RSS idle < 30 MB, the bundled plugins on by default loaded | {idle:.1} MiB | {} |",
        verdict(idle < 30.0, || format!("{:.1} MiB", idle - 30.0))
    );
    let loaded = mib(r.rss_load_max.max(r.rss_peak));
    let _ = writeln!(
        out,
        "| RSS < 80 MB at concurrency 64 (peak) | {loaded:.1} MiB | {} |",
        verdict(loaded < 80.0, || format!("{:.1} MiB", loaded - 80.0))
    );
    let _ = writeln!(
        out,
        "| ready < 150 ms with the bundled plugins on by default (median) | {startup:.1} ms | {} |",
        verdict(startup < 150.0, || format!("{:.1} ms", startup - 150.0))
    );
    if let Some((cpu, _)) = ten {
        let _ = writeln!(
            out,
            "| a no-op hook costs < 2 µs per request (proxy CPU, per plugin) | {cpu:.2} µs | {} |",
            verdict(cpu < 2.0, || format!("{:.2} µs", cpu - 2.0))
        );
    }
    out
}
