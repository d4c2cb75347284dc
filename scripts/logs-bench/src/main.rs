//! `ccproxy-logs-bench`: the benchmarks of the `storage` and `analytics`
//! plugins (issue 11), through the real release binary and plugin libraries.
//!
//! 1. **`/logs/analytics` over a million rows**: fills a SQLite database with
//!    `--rows` rows (default 1,000,000) spread over the last 23.5 hours, with
//!    the plugin's own insert (rows and per-minute rollup; four models, two
//!    providers, a few statuses, log-normal durations), starts the proxy on
//!    it and times `--calls` sequential `GET /logs/analytics` (the default
//!    24 hours, every row in the window), and a few other reads.
//! 2. **Throughput, storage on vs off**: the proxy in front of the lean
//!    upstream of `ccproxy-bench upstream`, `claude_api` and `pricing`
//!    loaded, with and without `storage` + `analytics`, `--concurrency`
//!    clients (default 16) sending `POST /claude/v1/messages` on keep-alive
//!    connections for `--seconds` per round, the two settings alternating
//!    for `--rounds` rounds in the same run; requests per second and the ratio.
//!
//! Everything listens on 127.0.0.1 and stops by itself; files live in
//! `target/logs-bench` (0700). Build first, then run:
//!
//! ```text
//! cargo build --release -p ccproxy -p ccproxy-plugin-storage -p ccproxy-plugin-analytics \
//!     -p ccproxy-plugin-claude-api -p ccproxy-plugin-pricing -p ccproxy-bench -p ccproxy-logs-bench
//! target/release/ccproxy-logs-bench [--rows N] [--calls N] [--seconds S] [--rounds R]
//!     [--concurrency C] [--skip-fill] [--only analytics|throughput]
//! ```

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ccproxy_plugin_kit::logs::LogRow;
use ccproxy_plugin_storage::bench::SqliteWriter;

/// The command line.
struct Args {
    rows: u64,
    calls: usize,
    seconds: f64,
    rounds: usize,
    concurrency: usize,
    skip_fill: bool,
    only: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rows: 1_000_000,
        calls: 200,
        seconds: 10.0,
        rounds: 3,
        concurrency: 16,
        skip_fill: false,
        only: None,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<f64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--rows" => args.rows = number(value()?)? as u64,
            "--calls" => args.calls = number(value()?)? as usize,
            "--seconds" => args.seconds = number(value()?)?,
            "--rounds" => args.rounds = number(value()?)? as usize,
            "--concurrency" => args.concurrency = number(value()?)? as usize,
            "--skip-fill" => args.skip_fill = true,
            "--only" => args.only = Some(value()?),
            other => return Err(format!("unknown flag {other}; see the crate docs")),
        }
    }
    Ok(args)
}

/// Where the build put things.
struct Layout {
    workspace: PathBuf,
    release: PathBuf,
    scratch: PathBuf,
}

impl Layout {
    fn find() -> Result<Self, String> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .ok_or("no workspace above the crate")?
            .to_path_buf();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(|dir| workspace.join(dir))
            .unwrap_or_else(|| workspace.join("target"));
        let release = target.join("release");
        for file in [
            "ccproxy",
            "ccproxy-bench",
            "libccproxy_plugin_storage.so",
            "libccproxy_plugin_analytics.so",
            "libccproxy_plugin_claude_api.so",
            "libccproxy_plugin_pricing.so",
        ] {
            if !release.join(file).is_file() {
                return Err(format!(
                    "{} is missing; build first (see the crate docs)",
                    release.join(file).display()
                ));
            }
        }
        let scratch = target.join("logs-bench");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&scratch)
            .map_err(|error| format!("cannot create {}: {error}", scratch.display()))?;
        Ok(Self {
            workspace,
            release,
            scratch,
        })
    }

    /// The bundled plugins next to the binary, by name.
    fn bundled(&self) -> Vec<String> {
        std::fs::read_dir(&self.release)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| {
                        let name = entry.file_name().into_string().ok()?;
                        Some(
                            name.strip_prefix("libccproxy_plugin_")?
                                .strip_suffix(".so")?
                                .to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A child process that printed `listening on http://ADDRESS`; stopped on drop.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    fn start(name: &str, mut command: Command) -> Result<Self, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot start {name}: {error}"))?;
        let (lines, found) = mpsc::channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = lines.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = found
                .recv_timeout(left)
                .map_err(|_| format!("{name} printed no listening line:\n{seen}"))?;
            if let Some(address) = line
                .split("listening on http://")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|address| address.parse().ok())
            {
                return Ok(Self { child, address });
            }
            seen.push_str(&line);
            seen.push('\n');
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // Safety: kill(2) on our own child, not yet reaped.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The proxy from the release folder with only `plugins` enabled.
fn proxy(
    layout: &Layout,
    home: &Path,
    plugins: &[&str],
    env: &[(&str, String)],
) -> Result<Server, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)
        .map_err(|error| format!("cannot create {}: {error}", home.display()))?;
    let mut command = Command::new(layout.release.join("ccproxy"));
    // The listening line is at info; warn keeps the rest quiet.
    command.args([
        "serve",
        "--port",
        "0",
        "--log-level",
        "warn,ccproxy::cli::serve=info",
    ]);
    for bundled in layout.bundled() {
        if !plugins.contains(&bundled.as_str()) {
            command.args(["--disable-plugin", &bundled]);
        }
    }
    // `storage`, `analytics` and `dashboard` are opt-in: the ones named are
    // switched on (without an allow list the flag only sets `enabled`).
    for opt_in in ["storage", "analytics", "dashboard"] {
        if plugins.contains(&opt_in) {
            command.args(["--enable-plugin", opt_in]);
        }
    }
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("cfg"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_STATE_HOME", home.join("state"));
    for (key, value) in env {
        command.env(key, value);
    }
    Server::start("ccproxy", command)
}

/// One HTTP/1.1 exchange on a keep-alive connection; answers the status and body.
fn exchange(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n{headers}\r\n",
        body.len()
    );
    let writer = stream.get_mut();
    writer
        .write_all(head.as_bytes())
        .and_then(|()| writer.write_all(body))
        .map_err(|error| error.to_string())?;
    let mut status_line = String::new();
    stream
        .read_line(&mut status_line)
        .map_err(|error| error.to_string())?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| format!("no status in {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        stream
            .read_line(&mut line)
            .map_err(|error| error.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            stream
                .read_line(&mut size)
                .map_err(|error| error.to_string())?;
            let size = usize::from_str_radix(size.trim(), 16).map_err(|error| error.to_string())?;
            let mut chunk = vec![0; size + 2];
            stream
                .read_exact(&mut chunk)
                .map_err(|error| error.to_string())?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        stream
            .read_exact(&mut body)
            .map_err(|error| error.to_string())?;
    }
    Ok((status, body))
}

fn connect(address: SocketAddr) -> Result<BufReader<TcpStream>, String> {
    let stream = TcpStream::connect(address).map_err(|error| error.to_string())?;
    stream
        .set_nodelay(true)
        .map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|error| error.to_string())?;
    Ok(BufReader::new(stream))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// A small deterministic generator (xorshift), so every run stores the same rows.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fill(path: &Path, rows: u64) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut writer = SqliteWriter::open(path)?;
    let models = [
        ("claude-sonnet-4-20250514", "claude_api", 3e-6, 15e-6),
        ("claude-opus-4-1-20250805", "claude_api", 15e-6, 75e-6),
        ("gpt-5", "codex", 1.25e-6, 10e-6),
        ("gpt-5-mini", "codex", 0.25e-6, 2e-6),
    ];
    let end = now_ms() - 60_000;
    let span = 23 * 3_600_000 + 1_800_000;
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let batch = 5_000;
    let mut written = 0;
    while written < rows {
        let count = batch.min(rows - written);
        let mut chunk = Vec::with_capacity(count as usize);
        for index in written..written + count {
            let (model, provider, input_price, output_price) =
                models[random.below(models.len() as u64) as usize];
            let status = match random.below(100) {
                0..=93 => 200,
                94..=96 => 429,
                97..=98 => 529,
                _ => 500,
            };
            let streaming = random.below(2) == 0;
            // Log-normal around 2 s: exp(N(ln 2000, 1)).
            let normal = (-2.0 * random.unit().max(1e-12).ln()).sqrt()
                * (2.0 * std::f64::consts::PI * random.unit()).cos();
            let duration_ms = (2000f64.ln() + normal).exp();
            let tokens_input = random.below(5_000) as i64;
            let tokens_output = random.below(2_000) as i64;
            let cache_read_tokens = random.below(20_000) as i64;
            let path = if provider == "codex" {
                "/codex/v1/responses"
            } else {
                "/claude/v1/messages"
            };
            chunk.push(LogRow {
                request_id: format!("bench-{index:08}"),
                timestamp_ms: end - span + (index as i64 * span) / rows as i64,
                method: "POST".into(),
                endpoint: path
                    .split_once("/v1")
                    .map(|(_, rest)| format!("/v1{rest}"))
                    .unwrap_or_default(),
                path: path.into(),
                query: String::new(),
                client_ip: Some("127.0.0.1".into()),
                user_agent: Some("logs-bench".into()),
                service_type: Some(provider.into()),
                provider: Some(provider.into()),
                model: Some(model.into()),
                streaming,
                status_code: status,
                duration_ms,
                tokens_input,
                tokens_output,
                cache_read_tokens,
                cache_write_tokens: 0,
                cost_usd: Some(
                    tokens_input as f64 * input_price
                        + tokens_output as f64 * output_price
                        + cache_read_tokens as f64 * input_price * 0.1,
                ),
                session_id: None,
            });
        }
        writer.write(&chunk)?;
        written += count;
        if written % 100_000 == 0 {
            eprintln!(
                "    {written} rows, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "==> filled {rows} rows in {:.1} s ({:.0} rows/s), {} MB",
        started.elapsed().as_secs_f64(),
        rows as f64 / started.elapsed().as_secs_f64(),
        std::fs::metadata(path)
            .map(|m| m.len() / 1_000_000)
            .unwrap_or(0)
    );
    Ok(())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Times `calls` sequential `GET path`; prints and returns (p50, p95, p99, max) in ms.
fn time_calls(address: SocketAddr, path: &str, calls: usize) -> Result<[f64; 4], String> {
    let mut stream = connect(address)?;
    let mut times = Vec::with_capacity(calls);
    let mut answer = Vec::new();
    for call in 0..calls + 5 {
        let started = Instant::now();
        let (status, body) = exchange(&mut stream, "GET", path, "", b"")?;
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        if status != 200 {
            return Err(format!(
                "{path}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        // The first five warm the caches.
        if call >= 5 {
            times.push(elapsed);
        }
        answer = body;
    }
    times.sort_by(f64::total_cmp);
    let stats = [
        percentile(&times, 0.50),
        percentile(&times, 0.95),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(0.0),
    ];
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    let summary = if answer["summary"].is_object() {
        format!(
            "{} requests in the window",
            answer["summary"]["total_requests"]
        )
    } else {
        format!("{} rows", answer["count"])
    };
    println!(
        "| `{path}` | {calls} | {:.1} | {:.1} | {:.1} | {:.1} | {summary} |",
        stats[0], stats[1], stats[2], stats[3]
    );
    Ok(stats)
}

fn analytics_benchmark(layout: &Layout, args: &Args) -> Result<(), String> {
    let home = layout.scratch.join("analytics");
    let database = layout.scratch.join("logs-1m.db");
    if !args.skip_fill || !database.is_file() {
        eprintln!("==> filling {} with {} rows", database.display(), args.rows);
        fill(&database, args.rows)?;
    }
    let server = proxy(
        layout,
        &home,
        &["storage", "analytics"],
        &[
            (
                "PLUGINS__STORAGE__DATABASE_PATH",
                database.display().to_string(),
            ),
            // The bench measures reads: retention must not delete the rows.
            ("PLUGINS__STORAGE__MAX_ROWS", "0".to_owned()),
        ],
    )?;
    eprintln!("==> proxy {} on {}", server.url(), database.display());
    println!(
        "\n### `/logs/analytics` over {} stored rows (SQLite)\n",
        args.rows
    );
    println!("| call | calls | p50 ms | p95 ms | p99 ms | max ms | answer |");
    println!("|---|---|---|---|---|---|---|");
    let [_, p95, ..] = time_calls(server.address, "/logs/analytics", args.calls)?;
    time_calls(
        server.address,
        "/logs/analytics?hours=168&bucket=day",
        args.calls / 2,
    )?;
    time_calls(
        server.address,
        "/logs/analytics?hours=1&bucket=minute",
        args.calls / 2,
    )?;
    time_calls(
        server.address,
        "/logs/analytics?model=gpt-5&min_status=400",
        args.calls / 2,
    )?;
    time_calls(server.address, "/logs/query?limit=100", args.calls / 2)?;
    time_calls(
        server.address,
        "/logs/query?limit=100&model=gpt-5-mini&status_code=500",
        args.calls / 2,
    )?;
    println!(
        "\n`/logs/analytics` (24 hours) p95: {p95:.1} ms, target under 100 ms: {}",
        if p95 < 100.0 { "met" } else { "MISSED" }
    );
    Ok(())
}

/// Requests per second of `concurrency` clients for `seconds`.
fn load(address: SocketAddr, concurrency: usize, seconds: f64) -> Result<(f64, u64), String> {
    let body = br#"{"model":"claude-sonnet-4-20250514","max_tokens":100,"messages":[{"role":"user","content":"Hello"}]}"#;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut stream = None;
                while !stop.load(Ordering::Relaxed) {
                    if stream.is_none() {
                        stream = connect(address).ok();
                    }
                    let Some(connection) = stream.as_mut() else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    match exchange(
                        connection,
                        "POST",
                        "/claude/v1/messages",
                        "content-type: application/json\r\n",
                        body,
                    ) {
                        Ok((200, _)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            stream = None;
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((
        done.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    ))
}

fn throughput_benchmark(layout: &Layout, args: &Args) -> Result<(), String> {
    let mut upstream = Command::new(layout.release.join("ccproxy-bench"));
    upstream.arg("upstream");
    let upstream = Server::start("bench upstream", upstream)?;
    eprintln!("==> lean upstream {}", upstream.url());
    let settings: [(&str, &[&str]); 3] = [
        ("storage off", &["claude_api", "pricing"]),
        (
            "storage on",
            &["claude_api", "pricing", "storage", "analytics"],
        ),
        (
            "storage on, analytics off",
            &["claude_api", "pricing", "storage"],
        ),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    let mut stored = 0;
    for round in 0..args.rounds {
        for (index, (name, plugins)) in settings.iter().enumerate() {
            let home = layout.scratch.join(format!("throughput-{index}"));
            let _ = std::fs::remove_dir_all(&home);
            let database = home.join("logs.db");
            let server = proxy(
                layout,
                &home,
                plugins,
                &[
                    ("ANTHROPIC_API_KEY", "bench-key".to_owned()),
                    ("PLUGINS__CLAUDE_API__BASE_URL", upstream.url()),
                    (
                        "PLUGINS__STORAGE__DATABASE_PATH",
                        database.display().to_string(),
                    ),
                ],
            )?;
            // Warm-up: connections, caches, the database's first pages.
            load(server.address, args.concurrency, 1.0)?;
            let (rps, failed) = load(server.address, args.concurrency, args.seconds)?;
            eprintln!(
                "    round {}: {name}: {rps:.0} requests/s ({failed} failed)",
                round + 1
            );
            results[index].push(rps);
            if index > 0 {
                let mut stream = connect(server.address)?;
                let (_, body) = exchange(&mut stream, "GET", "/plugins/storage/health", "", b"")?;
                let health: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                stored = health["details"]["written"].as_u64().unwrap_or(0);
                let dropped = health["details"]["dropped"].as_u64().unwrap_or(0);
                eprintln!(
                    "      stored {stored} rows, dropped {dropped}, queued {}",
                    health["details"]["queued"]
                );
            }
        }
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let (off, on, storage_only) = (mean(&results[0]), mean(&results[1]), mean(&results[2]));
    println!(
        "\n### Throughput, storage on vs off (concurrency {}, {} rounds of {} s each, alternating)\n",
        args.concurrency, args.rounds, args.seconds
    );
    println!("| setting | requests/s per round | mean |");
    println!("|---|---|---|");
    for (index, (name, _)) in settings.iter().enumerate() {
        let rounds: Vec<String> = results[index]
            .iter()
            .map(|rps| format!("{rps:.0}"))
            .collect();
        println!(
            "| {name} | {} | {:.0} |",
            rounds.join(", "),
            mean(&results[index])
        );
    }
    println!(
        "\nstorage on / off: {:.3} ({:+.1} %); storage alone / off: {:.3} ({:+.1} %); the last round stored {stored} rows",
        on / off,
        (on / off - 1.0) * 100.0,
        storage_only / off,
        (storage_only / off - 1.0) * 100.0
    );
    Ok(())
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let layout = Layout::find()?;
    let _ = &layout.workspace;
    if args.only.as_deref() != Some("throughput") {
        analytics_benchmark(&layout, &args)?;
    }
    if args.only.as_deref() != Some("analytics") {
        throughput_benchmark(&layout, &args)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ccproxy-logs-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
