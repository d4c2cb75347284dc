//! Child processes: started, read until their `listening on` line, measured
//! through `/proc`, and stopped (SIGTERM, then SIGKILL) when dropped.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// A running server.
pub(crate) struct Server {
    child: Child,
    /// Where it listens.
    pub(crate) address: SocketAddr,
    /// From spawn to the `listening on` line.
    pub(crate) ready_after: Duration,
    /// The `listening on` line.
    pub(crate) ready_line: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

const LOG_LINES_KEPT: usize = 200;

fn read_lines(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<VecDeque<String>>>,
    lines: mpsc::Sender<String>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line.clone());
            if let Ok(mut log) = log.lock() {
                if log.len() == LOG_LINES_KEPT {
                    log.pop_front();
                }
                log.push_back(line);
            }
        }
    })
}

/// The address in a `... listening on http://ADDRESS ...` line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    line.split("listening on http://")
        .nth(1)?
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()?
        .parse()
        .ok()
}

impl Server {
    /// Spawns `command` and waits (at most `timeout`) for its listening line.
    pub(crate) fn start(
        name: &str,
        mut command: Command,
        timeout: Duration,
    ) -> Result<Server, String> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start {name}: {error}"))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (sender, receiver) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            read_lines(stdout, log.clone(), sender.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            read_lines(stderr, log.clone(), sender);
        }
        let deadline = spawned + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) => {
                    if let Some(address) = listening_address(&line) {
                        let ready_after = spawned.elapsed();
                        // The readers keep draining the pipes; lines go nowhere.
                        drop(receiver);
                        return Ok(Server {
                            child,
                            address,
                            ready_after,
                            ready_line: line,
                            log,
                        });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                    return Err(format!(
                        "{name} printed no listening line within {} s; its output:\n{}",
                        timeout.as_secs(),
                        Vec::from(log).join("\n")
                    ));
                }
            }
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://ADDRESS`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The last lines it printed.
    pub(crate) fn log_tail(&self) -> String {
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        Vec::from(log).join("\n")
    }

    /// Whether it is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL.
    pub(crate) fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        signal(&self.child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` to `child`, one of ours.
pub(crate) fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap_or(0);
    if pid > 0 {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`), or a count
/// (`Threads`).
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    proc_number(pid, "status", field)
}

/// A field of `/proc/PID/smaps_rollup` in KiB (`LazyFree`).
pub(crate) fn rollup_kib(pid: u32, field: &str) -> Option<u64> {
    proc_number(pid, "smaps_rollup", field)
}

/// Context switches of all of a process's threads so far, voluntary (a
/// thread parked or waited) and not (it was preempted).
pub(crate) fn context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let tid = task.file_name();
        let file = format!("task/{}/status", tid.to_string_lossy());
        for field in ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"] {
            total += proc_number(pid, &file, field).unwrap_or(0);
        }
    }
    Some(total)
}

/// The number of field `field` (`Name:   123 kB`, `Name:  7`) of
/// `/proc/PID/FILE`.
fn proc_number(pid: u32, file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User plus system CPU time of a process so far (clock ticks of 10 ms).
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after its closing ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Samples `VmRSS` of `pid` every 50 ms until dropped; keeps the maximum.
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl RssSampler {
    /// Starts sampling.
    pub(crate) fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::Acquire) {
                max = max.max(status_kib(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(50));
            }
            max.max(status_kib(pid, "VmRSS").unwrap_or(0))
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; the largest `VmRSS` seen, KiB.
    pub(crate) fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or(0)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
