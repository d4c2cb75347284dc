//! `ccproxy-bench instructions`: the proxy's instructions per request, counted
//! by callgrind. Unlike wall-clock rounds this is the same number for the same
//! binaries and inputs whatever else the machine is doing, so it is what the
//! "What changed in the hot path" tables of `docs/PERFORMANCE.md` compare.
//!
//! It starts the lean upstream, then the release proxy (the bundled plugins on
//! by default, the access log on, as in the load rounds; `--disable-plugin`
//! leaves one out, `--env` passes e.g. an opt-in plugin's `ENABLED=true`) under
//! `valgrind --tool=callgrind` in a sandbox of its own (HOME and the XDG
//! folders, where plugins write), checks which plugins are active, sends
//! warm-up requests, waits for the proxy to be idle, zeroes the counters, sends
//! the measured requests one at a time on one kept-alive connection, waits for
//! the proxy to be idle again (observing hooks run after the answers), dumps
//! the counters, checks no hook event was dropped, and divides.
//!
//! With `--perf-out FILE` it runs the proxy as it is and samples it with
//! `perf record -e cpu-clock` over the same measured requests instead: real
//! CPU time, the kernel's share included, and each copy weighed by its time
//! (callgrind counts every byte `rep movsb` moves as an instruction, so a
//! 64 KB `memcpy` reads as 65 k instructions but takes about 2 µs here).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use bytes::Bytes;

use crate::{
    Layout, READY_TIMEOUT, Scratch, active_plugins, bodies, probe,
    procs::{Server, context_switches, cpu_time},
    proxy_command,
};

/// What to measure.
pub(crate) struct Setting {
    /// `messages`, `stream` or `chat` (Chat Completions converted to a stream).
    pub(crate) scenario: String,
    /// The 64 KB Claude Code request instead of the 1 KB conversation.
    pub(crate) large: bool,
    /// Copies of the no-op hook plugin to load.
    pub(crate) noop_plugins: usize,
    /// Disable the access log.
    pub(crate) no_access_log: bool,
    /// Measured requests.
    pub(crate) requests: usize,
    /// Requests before the counters are zeroed.
    pub(crate) warmup: usize,
    /// Bundled plugins left out (`ccproxy serve --disable-plugin`).
    pub(crate) disabled: Vec<String>,
    /// Environment variables for the proxy, after the sandbox's own.
    pub(crate) env: Vec<(String, String)>,
    /// Where to copy callgrind's dump of the measured requests.
    pub(crate) callgrind_out: Option<PathBuf>,
    /// Sample with perf into this file instead of counting with callgrind.
    pub(crate) perf_out: Option<PathBuf>,
    /// Count the bare forwarder instead of the proxy.
    pub(crate) forwarder: bool,
}

pub(crate) fn run(setting: &Setting) -> Result<(), String> {
    let layout = Layout::find(false)?;
    let (tools, package): (&[&str], &str) = match setting.perf_out {
        Some(_) => (&["perf"], "linux-perf"),
        None => (&["valgrind", "callgrind_control"], "valgrind"),
    };
    for tool in tools {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            return Err(format!(
                "{tool} is missing: install {package} (apt-get install {package})"
            ));
        }
    }
    let scratch = Scratch::new()?;
    let sandbox = scratch.path().join("sandbox");
    std::fs::create_dir_all(sandbox.join("logs")).map_err(|e| e.to_string())?;
    let plugins = scratch.path().join("plugins");
    std::fs::create_dir_all(&plugins).map_err(|e| e.to_string())?;
    let library = layout.release.join("libtest_plugin_noop_hook.so");
    for k in 0..setting.noop_plugins {
        std::fs::copy(&library, plugins.join(format!("libnoop_hook_{k}.so")))
            .map_err(|error| format!("cannot copy {}: {error}", library.display()))?;
    }

    let mut upstream_command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    upstream_command.arg("upstream");
    let upstream = Server::start("bench upstream", upstream_command, READY_TIMEOUT)?;

    let out_file = scratch.path().join("callgrind.out");
    let plain = if setting.forwarder {
        let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        command
            .args(["forwarder", "--upstream", &upstream.url()])
            .current_dir(&sandbox);
        command
    } else {
        proxy_command(&layout, &sandbox, &upstream.url(), Some(&plugins))
    };
    let mut command = match setting.perf_out {
        Some(_) => Command::new(plain.get_program()),
        None => {
            let mut command = Command::new("valgrind");
            command
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out_file.display()))
                .arg(plain.get_program());
            command
        }
    };
    command.args(plain.get_args());
    let mut disabled = setting.disabled.clone();
    if setting.no_access_log {
        disabled.push("access_log".to_owned());
    }
    if !setting.forwarder {
        for name in &disabled {
            command.args(["--disable-plugin", name]);
        }
    }
    command.env_clear();
    for (key, value) in plain.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    command.envs(setting.env.iter().map(|(key, value)| (key, value)));
    if let Some(dir) = plain.get_current_dir() {
        command.current_dir(dir);
    }
    // Under valgrind the proxy starts about fifty times slower.
    let what = if setting.forwarder {
        "bare forwarder"
    } else {
        "ccproxy"
    };
    let under = match setting.perf_out {
        Some(_) => "",
        None => " under callgrind",
    };
    let proxy = Server::start(&format!("{what}{under}"), command, READY_TIMEOUT * 6)?;

    let sizes = if setting.large {
        bodies::large(&layout.workspace)?
    } else {
        bodies::small()
    };
    let (path, body) = match (setting.scenario.as_str(), setting.forwarder) {
        ("messages", true) => ("/v1/messages", sizes.messages),
        ("stream", true) => ("/v1/messages", sizes.messages_stream),
        ("messages", false) => ("/claude/v1/messages", sizes.messages),
        ("stream", false) => ("/claude/v1/messages", sizes.messages_stream),
        ("chat", false) => ("/claude/v1/chat/completions", sizes.chat_stream),
        ("chat", true) => {
            return Err(
                "--forwarder converts nothing: use --scenario messages or stream".to_owned(),
            );
        }
        (other, _) => {
            return Err(format!("--scenario {other}: use messages, stream or chat"));
        }
    };
    let body = Bytes::from(body);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let pid = proxy.pid().to_string();
    let active = if setting.forwarder {
        Vec::new()
    } else {
        bundled_active(&layout, &runtime, &proxy, &disabled)?
    };
    let cpu = runtime.block_on(async {
        let mut connection = probe::Connection::open(proxy.address).await?;
        for _ in 0..setting.warmup {
            connection.post(path, body.clone()).await?;
        }
        // Observing hooks run after the answers, on the observer task and the
        // blocking pool: under callgrind a plugin that writes files (the
        // tracer) lags the requests by seconds. Counting starts and ends with
        // the proxy idle, so every request's hooks are counted, and only once.
        wait_idle(proxy.pid()).await;
        let sampling = match &setting.perf_out {
            Some(file) => Some(PerfRecord::start(&pid, file)?),
            None => {
                callgrind_control("-z", &pid)?;
                None
            }
        };
        let cpu_before = cpu_time(proxy.pid());
        let switches_before = context_switches(proxy.pid());
        for _ in 0..setting.requests {
            connection.post(path, body.clone()).await?;
        }
        wait_idle(proxy.pid()).await;
        let cpu = Spent {
            cpu: cpu_time(proxy.pid())
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before)),
            switches: context_switches(proxy.pid())
                .zip(switches_before)
                .map(|(after, before)| after.saturating_sub(before)),
        };
        match sampling {
            Some(recording) => recording.stop().map(|()| cpu),
            None => callgrind_control("-d", &pid).map(|()| cpu),
        }
    })?;
    // Events dropped on a full hook queue were not counted.
    let dropped = if setting.forwarder {
        0
    } else {
        hook_events_dropped(&runtime, &proxy)?
    };
    if dropped > 0 {
        return Err(format!(
            "the proxy dropped {dropped} hook events (queue full): the count would leave out their hooks"
        ));
    }
    if let Some(file) = &setting.perf_out {
        drop(proxy);
        return report_samples(setting, &active, cpu, file);
    }
    let (dump, total) = dumped_total(scratch.path(), &out_file)?;
    drop(proxy);
    if let Some(keep) = &setting.callgrind_out {
        std::fs::copy(&dump, keep).map_err(|error| {
            format!(
                "cannot copy {} to {}: {error}",
                dump.display(),
                keep.display()
            )
        })?;
    }
    if setting.forwarder {
        println!(
            "{} {} through the bare forwarder: {:.1} k instructions per request ({} requests after {} warm-up, callgrind)",
            if setting.large { "large" } else { "small" },
            setting.scenario,
            total as f64 / setting.requests.max(1) as f64 / 1000.0,
            setting.requests,
            setting.warmup
        );
        return Ok(());
    }
    println!(
        "{}: {:.1} k instructions per request ({} requests after {} warm-up, callgrind)",
        measured(setting, &active),
        total as f64 / setting.requests.max(1) as f64 / 1000.0,
        setting.requests,
        setting.warmup
    );
    Ok(())
}

/// The bundled plugins the proxy lists as active; an error when one that
/// should be is not.
fn bundled_active(
    layout: &Layout,
    runtime: &tokio::runtime::Runtime,
    proxy: &Server,
    disabled: &[String],
) -> Result<Vec<String>, String> {
    let status = runtime.block_on(async {
        let mut connection = probe::Connection::open(proxy.address).await?;
        connection
            .send("GET", "/plugins/status", Bytes::new())
            .await
    })?;
    let status = serde_json::from_slice(&status).unwrap_or(serde_json::Value::Null);
    let bundled = layout.bundled();
    Ok(active_plugins(layout, &status, disabled)
        .map_err(|error| format!("{error}; the proxy's log:\n{}", proxy.log_tail()))?
        .into_iter()
        .filter(|name| bundled.contains(name))
        .collect())
}

/// Hook events the proxy dropped on a full queue (`/plugins/status`).
fn hook_events_dropped(runtime: &tokio::runtime::Runtime, proxy: &Server) -> Result<u64, String> {
    runtime.block_on(async {
        let mut connection = probe::Connection::open(proxy.address).await?;
        let status = connection
            .send("GET", "/plugins/status", Bytes::new())
            .await?;
        let status: serde_json::Value = serde_json::from_slice(&status).unwrap_or_default();
        Ok(status["hooks"]["dropped"].as_u64().unwrap_or(0))
    })
}

/// Waits until the proxy uses less than 5 % of a core over two 200 ms
/// samples in a row (at most a minute).
async fn wait_idle(pid: u32) {
    const SAMPLE: Duration = Duration::from_millis(200);
    let mut quiet = 0;
    let mut last = cpu_time(pid);
    for _ in 0..300 {
        tokio::time::sleep(SAMPLE).await;
        let now = cpu_time(pid);
        let busy = match (last, now) {
            (Some(last), Some(now)) => now.saturating_sub(last),
            _ => return,
        };
        last = now;
        quiet = if busy * 20 <= SAMPLE { quiet + 1 } else { 0 };
        if quiet == 2 {
            return;
        }
    }
    eprintln!(
        "ccproxy-bench instructions: the proxy is still busy after a minute; counting anyway"
    );
}

fn callgrind_control(flag: &str, pid: &str) -> Result<(), String> {
    let status = Command::new("callgrind_control")
        .args([flag, pid])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|error| format!("callgrind_control {flag}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("callgrind_control {flag} {pid} failed: {status}"))
    }
}

/// The dump `callgrind_control -d` wrote next to `out_file` (`callgrind.out.1`,
/// counted from the zeroing) and its instruction total.
fn dumped_total(dir: &Path, out_file: &Path) -> Result<(PathBuf, u64), String> {
    let stem = out_file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut dumps: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy())
                .is_some_and(|name| name.starts_with(&format!("{stem}.")))
        })
        .collect();
    dumps.sort();
    let dump = dumps
        .first()
        .ok_or_else(|| format!("callgrind wrote no dump next to {}", out_file.display()))?;
    let text = std::fs::read_to_string(dump).map_err(|e| e.to_string())?;
    let total = text
        .lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{} has no totals line", dump.display()))?;
    Ok((dump.clone(), total))
}

/// What was measured, for the result line: the body, the scenario and the
/// proxy's plugins.
fn measured(setting: &Setting, active: &[String]) -> String {
    format!(
        "{} {} ({} no-op hook plugins, access log {}; bundled plugins active: {})",
        if setting.large { "large" } else { "small" },
        setting.scenario,
        setting.noop_plugins,
        if setting.no_access_log { "off" } else { "on" },
        active.join(", "),
    )
}

/// `perf record -e cpu-clock` attached to the proxy.
struct PerfRecord {
    child: std::process::Child,
}

impl PerfRecord {
    /// Starts sampling process `pid` into `file`, 10,000 times a CPU-second.
    fn start(pid: &str, file: &Path) -> Result<Self, String> {
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "10000", "-p", pid, "-o"])
            .arg(file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start perf record: {error}"))?;
        // perf prints nothing once attached; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self { child })
    }

    /// Stops sampling (perf writes its file on SIGINT, then ends by the
    /// signal it got) and waits for it.
    fn stop(mut self) -> Result<(), String> {
        use std::os::unix::process::ExitStatusExt as _;
        crate::procs::signal(&self.child, libc::SIGINT);
        let status = self.child.wait().map_err(|error| error.to_string())?;
        if status.success() || status.signal() == Some(libc::SIGINT) {
            Ok(())
        } else {
            Err(format!(
                "perf record failed: {status} (is perf_event_paranoid above 2?)"
            ))
        }
    }
}

/// What the proxy spent over the measured requests (and the wait for it to
/// be idle after them).
struct Spent {
    /// User and system CPU time.
    cpu: Option<Duration>,
    /// Context switches of all its threads.
    switches: Option<u64>,
}

/// Prints the proxy's CPU and context switches per request and the objects
/// its samples fell in.
fn report_samples(
    setting: &Setting,
    active: &[String],
    spent: Spent,
    file: &Path,
) -> Result<(), String> {
    let output = Command::new("perf")
        .args(["report", "--stdio", "-q", "--sort", "dso", "-i"])
        .arg(file)
        .output()
        .map_err(|error| format!("cannot run perf report: {error}"))?;
    let shares = String::from_utf8_lossy(&output.stdout);
    let requests = setting.requests.max(1) as f64;
    println!(
        "{}: {} of CPU and {} context switches per request ({} requests after {} warm-up, one at a time; /proc, 10 ms ticks)",
        measured(setting, active),
        spent.cpu.map_or("?".to_owned(), |cpu| format!(
            "{:.1} µs",
            cpu.as_secs_f64() * 1e6 / requests
        )),
        spent.switches.map_or("?".to_owned(), |switches| format!(
            "{:.1}",
            switches as f64 / requests
        )),
        setting.requests,
        setting.warmup
    );
    println!(
        "samples by object (perf report -i {} --sort sym for functions):",
        file.display()
    );
    for line in shares
        .lines()
        .filter(|line| !line.trim().is_empty())
        .take(20)
    {
        println!("  {}", line.trim());
    }
    Ok(())
}
