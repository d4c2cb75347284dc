//! `ccproxy-bench soak` (`scripts/soak`): a bounded soak of the release proxy.
//!
//! It starts the mock upstream of the end-to-end tests (`ccproxy-mock-upstream`,
//! which replays the recorded Anthropic, Responses and Chat answers and
//! misbehaves on demand) and the proxy with the bundled plugins on by default
//! and the access log on, in a sandbox of its own (HOME, the XDG folders, a
//! Codex CLI login), `claude_api` and `codex` pointed at the mock. Then, for
//! `--minutes`:
//!
//! - `--concurrency` client tasks send a mix of Anthropic Messages and Chat
//!   Completions to `/claude` (the latter converted), and Responses and Chat
//!   Completions to `/codex` (always converted: the backend only streams),
//!   streamed and not, on kept-alive connections they reopen now and then;
//!   about one request in ten hangs up on purpose (before the head, after it,
//!   or after a few body frames). Every request has a client-side timeout:
//!   one that reaches it is a hang.
//! - a fault injector arms faults on the mock at a steady rate: connection
//!   resets mid-stream, trickled streams, 429, 529 and delayed heads; it reads
//!   and resets the mock's records every few seconds (the mock keeps every
//!   request it received).
//! - a prober asks `/health/live` on a new connection four times a second.
//! - a sampler reads the proxy's `VmRSS`, open file descriptors and threads
//!   from `/proc`.
//!
//! At the end it checks the proxy is alive and answers, prints a Markdown
//! report (also written to `OUT/soak.md`) with a verdict per target, and
//! returns whether every target was met.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::{
    Layout, READY_TIMEOUT, Scratch, bodies, machine_info, mib, percentile,
    procs::{Server, status_kib},
    proxy_command, verdict,
};

#[derive(Args, Clone)]
pub(crate) struct SoakArgs {
    /// How long the traffic runs.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Client tasks sending at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// A request not finished after this many seconds is a hang.
    #[arg(long, default_value_t = 30)]
    timeout_seconds: u64,
    /// Faults armed on the mock upstream per second.
    #[arg(long, default_value_t = 20.0)]
    faults_per_second: f64,
    /// Where the report goes (default TARGET/bench).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The command line to print in the report (set by scripts/soak).
    #[arg(long, hide = true)]
    invoked_as: Option<String>,
}

/// What clients send where; `weight` out of the sum of all weights.
struct Route {
    name: &'static str,
    path: &'static str,
    stream: bool,
    body: Bytes,
    weight: u32,
}

fn routes() -> Vec<Route> {
    let small = bodies::small();
    let mut chat: Value = serde_json::from_slice(&small.chat_stream).unwrap_or(Value::Null);
    let chat_stream = Bytes::from(small.chat_stream);
    if let Some(object) = chat.as_object_mut() {
        object.remove("stream");
    }
    let hello = json!([{"role": "user", "content": "Hello"}]);
    let encode = |value: Value| Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
    let codex_model = "gpt-5.3-codex";
    vec![
        Route {
            name: "claude messages",
            path: "/claude/v1/messages",
            stream: false,
            body: Bytes::from(small.messages),
            weight: 15,
        },
        Route {
            name: "claude messages stream",
            path: "/claude/v1/messages",
            stream: true,
            body: Bytes::from(small.messages_stream),
            weight: 20,
        },
        Route {
            name: "claude chat→messages",
            path: "/claude/v1/chat/completions",
            stream: false,
            body: encode(chat),
            weight: 10,
        },
        Route {
            name: "claude chat→messages stream",
            path: "/claude/v1/chat/completions",
            stream: true,
            body: chat_stream,
            weight: 15,
        },
        Route {
            name: "codex responses",
            path: "/codex/v1/responses",
            stream: false,
            body: encode(json!({"model": codex_model, "stream": false, "input": "Hello"})),
            weight: 5,
        },
        Route {
            name: "codex responses stream",
            path: "/codex/v1/responses",
            stream: true,
            body: encode(json!({"model": codex_model, "stream": true, "input": "Hello"})),
            weight: 15,
        },
        Route {
            name: "codex chat→responses",
            path: "/codex/v1/chat/completions",
            stream: false,
            body: encode(json!({"model": codex_model, "stream": false, "messages": hello})),
            weight: 5,
        },
        Route {
            name: "codex chat→responses stream",
            path: "/codex/v1/chat/completions",
            stream: true,
            body: encode(json!({"model": codex_model, "stream": true, "messages": hello})),
            weight: 15,
        },
    ]
}

/// xorshift64*: enough randomness for a traffic mix, and no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A deliberate client hang-up.
#[derive(Debug, Clone, Copy)]
enum HangUp {
    /// Sends the request, waits this long (ms), closes whether answered or not.
    BeforeHead(u64),
    /// Closes once the response head is in.
    AfterHead,
    /// Closes after this many body frames.
    AfterFrames(u32),
}

/// How one request ended.
enum Outcome {
    /// 2xx and the whole answer (a stream ending as it should).
    Complete,
    /// 2xx, but the stream ended with an error event in the client's format
    /// (what the proxy sends when the upstream breaks mid-stream).
    ErrorEvent,
    /// 2xx, but the body broke off (connection cut).
    BodyCut(String),
    /// An error status, with the start of its body.
    Status(u16, String),
    /// Hung up on purpose.
    HungUp,
    /// No answer: connect, send or head failed.
    ConnectionError(String),
}

/// Counts of every outcome, plus a few examples.
#[derive(Default)]
struct Tally {
    complete: u64,
    error_events: u64,
    body_cuts: u64,
    statuses: BTreeMap<u16, u64>,
    hangups: u64,
    hangs: u64,
    connection_errors: u64,
    by_route: BTreeMap<&'static str, u64>,
    /// The first body of each error status.
    status_examples: BTreeMap<u16, String>,
    /// The first few hangs, cuts and connection errors, described.
    hang_examples: Vec<String>,
    cut_examples: Vec<String>,
    connection_examples: Vec<String>,
}

impl Tally {
    fn total(&self) -> u64 {
        self.complete
            + self.error_events
            + self.body_cuts
            + self.statuses.values().sum::<u64>()
            + self.hangups
            + self.hangs
            + self.connection_errors
    }
}

const EXAMPLES_KEPT: usize = 8;

fn keep_example(list: &mut Vec<String>, example: impl FnOnce() -> String) {
    if list.len() < EXAMPLES_KEPT {
        list.push(example());
    }
}

/// A kept-alive client connection; closed (its task aborted) when dropped.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(address: SocketAddr) -> Result<Connection, String> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Connection { sender, task })
}

/// The last bytes of a stream, enough to see how it ended.
const TAIL: usize = 600;

async fn exchange(
    connection: &mut Connection,
    address: SocketAddr,
    route: &Route,
    hang_up: Option<HangUp>,
) -> Outcome {
    let request = match http::Request::post(route.path)
        .header(http::header::HOST, address.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(route.body.clone()))
    {
        Ok(request) => request,
        Err(error) => return Outcome::ConnectionError(error.to_string()),
    };
    let pending = connection.sender.send_request(request);
    let response = match hang_up {
        Some(HangUp::BeforeHead(ms)) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => return Outcome::HungUp,
                _ = pending => return Outcome::HungUp,
            }
        }
        _ => match pending.await {
            Ok(response) => response,
            Err(error) => return Outcome::ConnectionError(format!("send: {error}")),
        },
    };
    if matches!(hang_up, Some(HangUp::AfterHead)) {
        return Outcome::HungUp;
    }
    let status = response.status();
    let mut body = response.into_body();
    let mut frames = 0u32;
    let mut head = Vec::new();
    let mut tail = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                let after = String::from_utf8_lossy(&tail).into_owned();
                return if status.is_success() {
                    Outcome::BodyCut(format!("{error} after {frames} frames, ending {after:?}"))
                } else {
                    Outcome::ConnectionError(format!("{status} body: {error}"))
                };
            }
        };
        if let Some(data) = frame.data_ref() {
            frames += 1;
            if head.len() < 300 {
                head.extend_from_slice(&data[..data.len().min(300 - head.len())]);
            }
            tail.extend_from_slice(data);
            if tail.len() > TAIL {
                tail.drain(..tail.len() - TAIL);
            }
            if let Some(HangUp::AfterFrames(n)) = hang_up
                && frames >= n
            {
                return Outcome::HungUp;
            }
        }
    }
    if !status.is_success() {
        return Outcome::Status(status.as_u16(), String::from_utf8_lossy(&head).into_owned());
    }
    if route.stream && ends_with_error(&tail) {
        Outcome::ErrorEvent
    } else {
        Outcome::Complete
    }
}

/// Whether a stream's last bytes carry an error event (Anthropic and
/// Responses `event: error`; Chat an `"error"` chunk before `[DONE]`).
fn ends_with_error(tail: &[u8]) -> bool {
    memchr::memmem::find(tail, b"event: error").is_some()
        || memchr::memmem::find(tail, b"{\"error\"").is_some()
}

/// One client task: requests until `deadline`.
async fn client(
    index: usize,
    address: SocketAddr,
    routes: Arc<Vec<Route>>,
    deadline: Instant,
    timeout: Duration,
    tally: Arc<Mutex<Tally>>,
    started: Instant,
) {
    let mut rng = Rng::new(index as u64 + 1 + started.elapsed().as_nanos() as u64);
    let total_weight: u64 = routes.iter().map(|r| u64::from(r.weight)).sum();
    let mut connection: Option<Connection> = None;
    // Requests left on this connection before the client opens a new one.
    let mut uses_left = 0u64;
    while Instant::now() < deadline {
        if uses_left == 0 {
            connection = None;
            uses_left = 1 + rng.below(30);
        }
        // A kept-alive connection the proxy closed is reopened, not counted.
        if let Some(open) = &mut connection
            && !matches!(
                tokio::time::timeout(timeout, open.sender.ready()).await,
                Ok(Ok(()))
            )
        {
            connection = None;
        }
        if connection.is_none() {
            match tokio::time::timeout(timeout, connect(address)).await {
                Ok(Ok(open)) => connection = Some(open),
                failed => {
                    let what = match failed {
                        Ok(Err(error)) => error,
                        _ => format!("no connection within {} s", timeout.as_secs()),
                    };
                    {
                        let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                        tally.connection_errors += 1;
                        keep_example(&mut tally.connection_examples, || {
                            format!("{:.0} s: {what}", started.elapsed().as_secs_f64())
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        let mut pick = rng.below(total_weight);
        let route = routes
            .iter()
            .find(|route| {
                let weight = u64::from(route.weight);
                if pick < weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            })
            .unwrap_or(&routes[0]);
        let hang_up = match rng.below(30) {
            0 => Some(HangUp::BeforeHead(rng.below(30))),
            1 => Some(HangUp::AfterHead),
            2 => Some(HangUp::AfterFrames(1 + rng.below(4) as u32)),
            _ => None,
        };
        let began = Instant::now();
        let outcome = tokio::time::timeout(timeout, exchange(open, address, route, hang_up)).await;
        uses_left -= 1;
        let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
        *tally.by_route.entry(route.name).or_default() += 1;
        let close = match outcome {
            Err(_) => {
                tally.hangs += 1;
                keep_example(&mut tally.hang_examples, || {
                    format!(
                        "{:.0} s into the run: {} ({}), hang-up plan {hang_up:?}, no end after {:.1} s",
                        began.duration_since(started).as_secs_f64(),
                        route.name,
                        route.path,
                        began.elapsed().as_secs_f64()
                    )
                });
                true
            }
            Ok(Outcome::Complete) => {
                tally.complete += 1;
                false
            }
            Ok(Outcome::ErrorEvent) => {
                tally.error_events += 1;
                false
            }
            Ok(Outcome::BodyCut(what)) => {
                tally.body_cuts += 1;
                keep_example(&mut tally.cut_examples, || {
                    format!("{} ({}): {what}", route.name, route.path)
                });
                true
            }
            Ok(Outcome::Status(status, body)) => {
                *tally.statuses.entry(status).or_default() += 1;
                tally
                    .status_examples
                    .entry(status)
                    .or_insert_with(|| format!("{} ({}): {body}", route.name, route.path));
                false
            }
            Ok(Outcome::HungUp) => {
                tally.hangups += 1;
                true
            }
            Ok(Outcome::ConnectionError(what)) => {
                tally.connection_errors += 1;
                keep_example(&mut tally.connection_examples, || {
                    format!(
                        "{:.0} s: {} ({}): {what}",
                        began.duration_since(started).as_secs_f64(),
                        route.name,
                        route.path
                    )
                });
                true
            }
        };
        drop(tally);
        if close {
            connection = None;
        }
    }
}

/// `METHOD path` on a new connection to `address`; the status and body
/// (at most 10 s).
async fn one_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    tokio::time::timeout(
        Duration::from_secs(10),
        one_request_unbounded(address, method, path, body),
    )
    .await
    .map_err(|_| format!("{method} {path}: no answer within 10 s"))?
}

async fn one_request_unbounded(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let mut connection = connect(address).await?;
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, address.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|error| error.to_string())?;
    let response = connection
        .sender
        .send_request(request)
        .await
        .map_err(|error| format!("{method} {path}: {error}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("{method} {path}: body: {error}"))?
        .to_bytes();
    Ok((status, body))
}

/// The faults the injector arms, in turn.
fn fault(rng: &mut Rng, turn: u64) -> (&'static str, Value) {
    match turn % 5 {
        0 => (
            "reset mid-stream",
            json!({"kind": "reset_mid_stream", "after_events": 1 + rng.below(6)}),
        ),
        1 => (
            "trickle",
            json!({"kind": "trickle", "delay_ms": 50 + rng.below(350)}),
        ),
        2 => (
            "429",
            json!({"kind": "status", "status": 429, "retry_after": "1"}),
        ),
        3 => ("529", json!({"kind": "status", "status": 529})),
        _ => (
            "delay",
            json!({"kind": "delay", "delay_ms": 500 + rng.below(2000)}),
        ),
    }
}

/// What the mock saw, summed over its resets.
#[derive(Default)]
struct Upstream {
    armed: BTreeMap<&'static str, u64>,
    arm_failures: u64,
    completed: u64,
    cancelled: u64,
    reset: u64,
}

/// Arms faults at `per_second` until `deadline`; every 5 s adds up the mock's
/// stream counters and resets it (it keeps every request it received).
async fn injector(
    mock: SocketAddr,
    per_second: f64,
    deadline: Instant,
    upstream: Arc<Mutex<Upstream>>,
) {
    let mut rng = Rng::new(0xFA17);
    let gap = Duration::from_secs_f64(1.0 / per_second.clamp(0.1, 1000.0));
    let mut ticker = tokio::time::interval(gap);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0u64;
    let mut last_reset = Instant::now();
    while Instant::now() < deadline {
        ticker.tick().await;
        if last_reset.elapsed() >= Duration::from_secs(5) {
            last_reset = Instant::now();
            collect_and_reset(mock, &upstream).await;
        }
        let (name, fault) = fault(&mut rng, turn);
        turn += 1;
        let armed = one_request(mock, "POST", "/_mock/fault", Bytes::from(fault.to_string())).await;
        let mut upstream = upstream.lock().unwrap_or_else(|p| p.into_inner());
        match armed {
            Ok((200, _)) => *upstream.armed.entry(name).or_default() += 1,
            _ => upstream.arm_failures += 1,
        }
    }
    collect_and_reset(mock, &upstream).await;
}

async fn collect_and_reset(mock: SocketAddr, upstream: &Mutex<Upstream>) {
    if let Ok((200, body)) = one_request(mock, "GET", "/_mock/cancelled", Bytes::new()).await {
        let counts: Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut upstream = upstream.lock().unwrap_or_else(|p| p.into_inner());
        upstream.completed += counts["completed"].as_u64().unwrap_or(0);
        upstream.cancelled += counts["cancelled"].as_u64().unwrap_or(0);
        upstream.reset += counts["reset"].as_u64().unwrap_or(0);
    }
    let _ = one_request(mock, "POST", "/_mock/reset", Bytes::from_static(b"{}")).await;
}

/// `/health/live` on a new connection every 250 ms until `deadline`.
#[derive(Default)]
struct Health {
    latencies_ms: Vec<f64>,
    failures: u64,
    failure_examples: Vec<String>,
}

async fn prober(proxy: SocketAddr, deadline: Instant, health: Arc<Mutex<Health>>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        ticker.tick().await;
        let began = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            one_request(proxy, "GET", "/health/live", Bytes::new()),
        )
        .await;
        let elapsed = began.elapsed().as_secs_f64() * 1e3;
        let mut health = health.lock().unwrap_or_else(|p| p.into_inner());
        match answer {
            Ok(Ok((200, _))) => health.latencies_ms.push(elapsed),
            other => {
                health.failures += 1;
                let what = match other {
                    Ok(Ok((status, _))) => format!("status {status}"),
                    Ok(Err(error)) => error,
                    Err(_) => "no answer within 5 s".to_owned(),
                };
                keep_example(&mut health.failure_examples, || what);
            }
        }
    }
}

/// One reading of the proxy's process.
#[derive(Clone, Copy)]
struct Sample {
    /// Seconds since the traffic started.
    at: f64,
    rss_kib: u64,
    fds: u64,
    threads: u64,
}

fn sample(pid: u32, at: f64) -> Option<Sample> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        at,
        rss_kib: status_kib(pid, "VmRSS")?,
        fds,
        threads: status_kib(pid, "Threads").unwrap_or(0),
    })
}

/// What the proxy's open file descriptors are: TCP connections to the
/// upstream (`upstream_port`), client connections and the listener (on
/// `proxy_port`), other sockets, and everything else (log files, epoll,
/// eventfds, pipes). Sockets are matched by inode in `/proc/PID/net/tcp*`.
fn fd_breakdown(pid: u32, proxy_port: u16, upstream_port: u16) -> Option<String> {
    let mut inodes = Vec::new();
    let mut others = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()? {
        let target = entry.ok().and_then(|e| std::fs::read_link(e.path()).ok());
        match target
            .as_ref()
            .and_then(|t| t.to_str()?.strip_prefix("socket:[")?.strip_suffix(']'))
        {
            Some(inode) => inodes.push(inode.to_owned()),
            None => others += 1,
        }
    }
    let (mut upstream, mut clients, mut listening, mut other_sockets) = (0u64, 0u64, 0u64, 0u64);
    let mut table = String::new();
    for file in ["tcp", "tcp6"] {
        table.push_str(
            &std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default(),
        );
    }
    let port = |address: &str| {
        address
            .rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
    };
    for inode in &inodes {
        let row = table.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(9) == Some(&inode.as_str())).then(|| {
                (
                    fields.get(1).and_then(|a| port(a)),
                    fields.get(2).and_then(|a| port(a)),
                    fields.get(3).copied() == Some("0A"),
                )
            })
        });
        match row {
            Some((_, _, true)) => listening += 1,
            Some((Some(local), _, _)) if local == proxy_port => clients += 1,
            Some((_, Some(remote), _)) if remote == upstream_port => upstream += 1,
            _ => other_sockets += 1,
        }
    }
    Some(format!(
        "{upstream} upstream connections, {clients} client connections, {listening} listening, \
         {other_sockets} other sockets, {others} non-sockets"
    ))
}

/// Least-squares slope of `value` over `at`, per minute.
fn slope_per_minute(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let variance: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance * 60.0
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// A ChatGPT access token shaped as OpenAI issues them (a JWT whose claims the
/// codex plugin reads; nobody checks the signature), valid until 2100.
fn codex_access_token() -> String {
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let claims = json!({
        "iss": "https://auth.openai.com",
        "exp": 4_102_444_800u64,
        "https://api.openai.com/auth": {"chatgpt_account_id": "acct_soak", "chatgpt_plan_type": "plus"},
    });
    let base64url = ccproxy_mock_upstream::base64url;
    format!(
        "{}.{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes()),
        base64url(b"soak-signature")
    )
}

/// The Codex CLI's `auth.json` in `codex_home` (0700 folder, 0600 file).
fn write_codex_login(codex_home: &Path) -> Result<(), String> {
    std::fs::create_dir_all(codex_home).map_err(|e| e.to_string())?;
    std::fs::set_permissions(codex_home, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let path = codex_home.join("auth.json");
    let document = json!({
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": "",
            "access_token": codex_access_token(),
            "refresh_token": "rt_soak-refresh",
            "account_id": null,
        },
        "last_refresh": "2026-01-01T00:00:00.000000Z",
    });
    std::fs::write(&path, document.to_string()).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())
}

/// Runs the soak; `Ok(true)` when every target was met.
pub(crate) fn run(args: &SoakArgs) -> Result<bool, String> {
    if !(args.minutes > 0.0 && args.minutes <= 24.0 * 60.0) {
        return Err(format!("--minutes {}: give 0 < N <= 1440", args.minutes));
    }
    if args.concurrency == 0 || args.concurrency > 4096 {
        return Err(format!("--concurrency {}: give 1..=4096", args.concurrency));
    }
    let run_started = Instant::now();
    let layout = Layout::locate();
    let mock_binary = layout.release.join("ccproxy-mock-upstream");
    for needed in [layout.ccproxy(), mock_binary.clone()] {
        if !needed.exists() {
            return Err(format!(
                "{} is missing; run scripts/soak, which builds everything",
                needed.display()
            ));
        }
    }
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let timeout = Duration::from_secs(args.timeout_seconds.max(1));
    // Warm-up: the first minute, or a quarter of a short run.
    let warmup = duration.min(Duration::from_secs(240)) / 4;
    // Samples every 10 s, or 30 of them in a short run.
    let interval = (duration / 30).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let machine = machine_info(&layout);
    eprintln!("==> machine: {}", machine.replace('\n', "; "));

    let scratch = Scratch::new()?;
    let sandbox = scratch.path().join("sandbox");
    std::fs::create_dir_all(sandbox.join("logs")).map_err(|e| e.to_string())?;
    write_codex_login(&sandbox.join("codex"))?;

    let mut mock_command = Command::new(&mock_binary);
    mock_command.args(["--quiet", "--idle-exit-seconds", "120"]);
    let mock = Server::start("mock upstream", mock_command, READY_TIMEOUT)?;
    eprintln!("==> mock upstream {}", mock.url());
    let mut command = proxy_command(&layout, &sandbox, &mock.url(), None);
    command.env(
        "PLUGINS__CODEX__BASE_URL",
        format!("{}/backend-api/codex", mock.url()),
    );
    let mut proxy = Server::start("ccproxy", command, READY_TIMEOUT)?;
    let pid = proxy.pid();
    eprintln!("==> proxy {} (pid {pid})", proxy.url());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let routes = Arc::new(routes());
    // Every route answers before the load starts: a wrong setup fails here,
    // not as ten minutes of errors.
    runtime
        .block_on(async {
            for route in routes.iter() {
                let mut connection = connect(proxy.address).await?;
                match exchange(&mut connection, proxy.address, route, None).await {
                    Outcome::Complete => {}
                    Outcome::Status(status, body) => {
                        return Err(format!(
                            "{} ({}) answered {status} before any fault: {body}",
                            route.name, route.path
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{} ({}) did not answer before any fault",
                            route.name, route.path
                        ));
                    }
                }
            }
            Ok::<_, String>(())
        })
        .map_err(|error| format!("{error}; the proxy's log:\n{}", proxy.log_tail()))?;
    let idle_before = sample(pid, 0.0).ok_or("cannot read the proxy's /proc entry")?;
    let fds_before = fd_breakdown(pid, proxy.address.port(), mock.address.port());

    eprintln!(
        "==> soak: {:.1} min, concurrency {}, {} faults/s, client timeout {} s, samples every {} s",
        args.minutes,
        args.concurrency,
        args.faults_per_second,
        timeout.as_secs(),
        interval.as_secs()
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let upstream = Arc::new(Mutex::new(Upstream::default()));
    let health = Arc::new(Mutex::new(Health::default()));
    let died = Arc::new(AtomicBool::new(false));
    let died_at = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let samples = runtime.block_on(async {
        let mut tasks = Vec::new();
        for index in 0..args.concurrency {
            tasks.push(tokio::spawn(client(
                index,
                proxy.address,
                routes.clone(),
                deadline,
                timeout,
                tally.clone(),
                started,
            )));
        }
        tasks.push(tokio::spawn(injector(
            mock.address,
            args.faults_per_second,
            deadline,
            upstream.clone(),
        )));
        tasks.push(tokio::spawn(prober(proxy.address, deadline, health.clone())));
        let mut samples = Vec::new();
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        while Instant::now() < deadline {
            ticker.tick().await;
            let at = started.elapsed().as_secs_f64();
            match sample(pid, at) {
                Some(reading) => {
                    let requests = tally.lock().map(|t| t.total()).unwrap_or(0);
                    let hangs = tally.lock().map(|t| t.hangs).unwrap_or(0);
                    eprintln!(
                        "    {at:>5.0} s  requests {requests:>8}  hangs {hangs}  RSS {:.1} MiB  fds {}  threads {}",
                        mib(reading.rss_kib),
                        reading.fds,
                        reading.threads
                    );
                    samples.push(reading);
                }
                None => {
                    died.store(true, Ordering::Release);
                    died_at.store(at as u64, Ordering::Release);
                    eprintln!("    {at:>5.0} s  the proxy is gone");
                    break;
                }
            }
        }
        if died.load(Ordering::Acquire) {
            for task in &tasks {
                task.abort();
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        samples
    });
    let traffic = started.elapsed();

    // After the load: let the last answers and observers settle, then look.
    std::thread::sleep(Duration::from_secs(3));
    let alive = proxy.alive() && !died.load(Ordering::Acquire);
    let idle_after = sample(pid, traffic.as_secs_f64());
    let fds_after = fd_breakdown(pid, proxy.address.port(), mock.address.port());
    let (health_after, status_after) = runtime.block_on(async {
        let live = tokio::time::timeout(
            Duration::from_secs(5),
            one_request(proxy.address, "GET", "/health/live", Bytes::new()),
        )
        .await;
        let status = tokio::time::timeout(
            Duration::from_secs(5),
            one_request(proxy.address, "GET", "/plugins/status", Bytes::new()),
        )
        .await;
        (
            matches!(live, Ok(Ok((200, _)))),
            match status {
                Ok(Ok((200, body))) => serde_json::from_slice::<Value>(&body).ok(),
                _ => None,
            },
        )
    });
    let access_log_lines = std::fs::read(sandbox.join("logs").join("access.log"))
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0);
    let log_tail = proxy.log_tail();
    proxy.stop();
    drop(mock);

    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    let upstream = std::mem::take(&mut *upstream.lock().unwrap_or_else(|p| p.into_inner()));
    let mut health = std::mem::take(&mut *health.lock().unwrap_or_else(|p| p.into_inner()));
    let mut findings = Findings {
        args,
        machine: &machine,
        traffic,
        warmup,
        interval,
        tally: &tally,
        upstream: &upstream,
        health: &mut health,
        samples: &samples,
        idle_before,
        idle_after,
        fds_before,
        fds_after,
        alive,
        died_at: died
            .load(Ordering::Acquire)
            .then(|| died_at.load(Ordering::Acquire)),
        health_after,
        hooks_dropped: status_after
            .as_ref()
            .and_then(|s| s["hooks"]["dropped"].as_u64()),
        access_log_lines,
        load_after: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        elapsed: run_started.elapsed(),
    };
    let (report, met) = report(&mut findings);
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| layout.target.join("bench"));
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let out = out_dir.join("soak.md");
    std::fs::write(&out, &report)
        .map_err(|error| format!("cannot write {}: {error}", out.display()))?;
    println!("{report}");
    eprintln!("==> report written to {}", out.display());
    if !alive || !met {
        eprintln!("==> the proxy's last log lines:\n{log_tail}");
    }
    Ok(met)
}

struct Findings<'a> {
    args: &'a SoakArgs,
    machine: &'a str,
    traffic: Duration,
    warmup: Duration,
    interval: Duration,
    tally: &'a Tally,
    upstream: &'a Upstream,
    health: &'a mut Health,
    samples: &'a [Sample],
    idle_before: Sample,
    idle_after: Option<Sample>,
    fds_before: Option<String>,
    fds_after: Option<String>,
    alive: bool,
    died_at: Option<u64>,
    health_after: bool,
    hooks_dropped: Option<u64>,
    access_log_lines: usize,
    load_after: String,
    elapsed: Duration,
}

/// The Markdown report and whether every target was met.
fn report(f: &mut Findings<'_>) -> (String, bool) {
    let mut out = String::new();
    let t = f.tally;
    let command = f.args.invoked_as.clone().unwrap_or_else(|| {
        let args: Vec<String> = std::env::args().collect();
        args.join(" ")
    });
    let _ = writeln!(out, "Command: `{command}`\n");
    let _ = writeln!(
        out,
        "Machine: {}; load average at the end {}\n",
        f.machine.replace('\n', "; "),
        f.load_after
    );
    let _ = writeln!(
        out,
        "Traffic for {:.1} min at concurrency {} (client timeout {} s), {} faults/s armed on the mock upstream; \
         proxy with the bundled plugins on by default, access log on, log level info; samples every {} s, \
         warm-up {} s. Whole run {:.0} s.\n",
        f.traffic.as_secs_f64() / 60.0,
        f.args.concurrency,
        f.args.timeout_seconds,
        f.args.faults_per_second,
        f.interval.as_secs(),
        f.warmup.as_secs(),
        f.elapsed.as_secs_f64()
    );

    let total = t.total();
    let _ = writeln!(out, "**Requests by outcome**\n");
    let _ = writeln!(out, "| outcome | count | share |\n|---|---|---|");
    let share = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
    let mut row = |what: &str, n: u64| {
        let _ = writeln!(out, "| {what} | {n} | {:.2} % |", share(n));
    };
    row("2xx, whole answer", t.complete);
    row(
        "2xx stream ended by an error event (upstream reset, told in the client's format)",
        t.error_events,
    );
    row("2xx body cut off (connection closed mid-body)", t.body_cuts);
    for (status, n) in &t.statuses {
        row(&format!("{status}"), *n);
    }
    row("client hung up on purpose", t.hangups);
    row("**hang** (no end within the client timeout)", t.hangs);
    row(
        "connection error (connect, send or head failed)",
        t.connection_errors,
    );
    let _ = writeln!(
        out,
        "| **total** | {total} | {:.0} requests/s |\n",
        total as f64 / f.traffic.as_secs_f64().max(1e-9)
    );
    let routes: Vec<String> = t
        .by_route
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    let _ = writeln!(out, "By route: {}.\n", routes.join(", "));
    let armed: Vec<String> = f
        .upstream
        .armed
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "Faults armed: {} ({} failed to arm). Upstream streams (the mock's count): {} sent to the end, {} cut short because the proxy went away (client hang-ups passed on), {} reset on purpose.\n",
        armed.join(", "),
        f.upstream.arm_failures,
        f.upstream.completed,
        f.upstream.cancelled,
        f.upstream.reset
    );
    for (status, example) in &t.status_examples {
        let _ = writeln!(out, "- first {status}: `{}`", one_line(example, 240));
    }
    for example in &t.cut_examples {
        let _ = writeln!(out, "- body cut: `{}`", one_line(example, 240));
    }
    for example in &t.connection_examples {
        let _ = writeln!(out, "- connection error: `{}`", one_line(example, 240));
    }
    for example in &t.hang_examples {
        let _ = writeln!(out, "- **hang**: {example}");
    }

    // The process over time.
    let warm = f.warmup.as_secs_f64();
    let end = f.samples.last().map_or(0.0, |s| s.at);
    let post: Vec<&Sample> = f.samples.iter().filter(|s| s.at >= warm).collect();
    let last_window = 60f64.min((end - warm) / 3.0).max(f.interval.as_secs_f64());
    let last: Vec<&Sample> = post
        .iter()
        .copied()
        .filter(|s| s.at > end - last_window)
        .collect();
    let rss_post = mean(post.iter().map(|s| s.rss_kib as f64));
    let rss_last = mean(last.iter().map(|s| s.rss_kib as f64));
    let fds_post = mean(post.iter().map(|s| s.fds as f64));
    let fds_last = mean(last.iter().map(|s| s.fds as f64));
    let rss_slope = slope_per_minute(
        &post
            .iter()
            .map(|s| (s.at, s.rss_kib as f64 / 1024.0))
            .collect::<Vec<_>>(),
    );
    let fds_slope = slope_per_minute(
        &post
            .iter()
            .map(|s| (s.at, s.fds as f64))
            .collect::<Vec<_>>(),
    );
    let range = |values: Vec<u64>| {
        (
            values.iter().copied().min().unwrap_or(0),
            values.iter().copied().max().unwrap_or(0),
        )
    };
    let (rss_min, rss_max) = range(post.iter().map(|s| s.rss_kib).collect());
    let (fds_min, fds_max) = range(post.iter().map(|s| s.fds).collect());
    let (threads_min, threads_max) = range(post.iter().map(|s| s.threads).collect());
    let _ = writeln!(
        out,
        "\n**The proxy's process** (after the {warm:.0} s warm-up: {} samples; last window {last_window:.0} s)\n",
        post.len()
    );
    let _ = writeln!(
        out,
        "| what | idle before | min / max after warm-up | mean after warm-up | mean of the last window | slope after warm-up | idle 3 s after |\n|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| RSS | {:.1} MiB | {:.1} / {:.1} MiB | {:.1} MiB | {:.1} MiB | {:+.2} MiB/min | {} |",
        mib(f.idle_before.rss_kib),
        mib(rss_min),
        mib(rss_max),
        rss_post / 1024.0,
        rss_last / 1024.0,
        rss_slope,
        f.idle_after
            .map_or("–".to_owned(), |s| format!("{:.1} MiB", mib(s.rss_kib)))
    );
    let _ = writeln!(
        out,
        "| open file descriptors | {} | {fds_min} / {fds_max} | {fds_post:.1} | {fds_last:.1} | {fds_slope:+.2} /min | {} |",
        f.idle_before.fds,
        f.idle_after.map_or("–".to_owned(), |s| s.fds.to_string())
    );
    let _ = writeln!(
        out,
        "| threads | {} | {threads_min} / {threads_max} | | | | {} |",
        f.idle_before.threads,
        f.idle_after
            .map_or("–".to_owned(), |s| s.threads.to_string())
    );
    let _ = writeln!(
        out,
        "\nOpen file descriptors idle before: {}; 3 s after the traffic: {}.",
        f.fds_before.as_deref().unwrap_or("unknown"),
        f.fds_after.as_deref().unwrap_or("unknown")
    );
    let series =
        |value: fn(&Sample) -> String| f.samples.iter().map(value).collect::<Vec<_>>().join(" ");
    let _ = writeln!(
        out,
        "\nRSS series (MiB, every {} s): {}\n",
        f.interval.as_secs(),
        series(|s| format!("{:.1}", mib(s.rss_kib)))
    );
    let _ = writeln!(out, "fd series: {}\n", series(|s| s.fds.to_string()));

    let probes = f.health.latencies_ms.len();
    let p50 = percentile(&mut f.health.latencies_ms, 50.0);
    let p99 = percentile(&mut f.health.latencies_ms, 99.0);
    let max = f.health.latencies_ms.iter().copied().fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "`/health/live` under load (a new connection every 250 ms): {probes} answered, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.1} ms, {} failed{}.\n",
        f.health.failures,
        if f.health.failure_examples.is_empty() {
            String::new()
        } else {
            format!(" ({})", f.health.failure_examples.join("; "))
        }
    );
    let _ = writeln!(
        out,
        "Access log lines written: {}; hook events dropped: {}.\n",
        f.access_log_lines,
        f.hooks_dropped
            .map_or("unknown".to_owned(), |n| n.to_string())
    );

    // Targets.
    let crashed = !f.alive || !f.health_after;
    let rss_drift = 100.0 * (rss_last - rss_post) / rss_post.max(1.0);
    let fds_drift = fds_last - fds_post;
    let rss_flat = rss_drift.abs() <= 10.0;
    let fds_flat = fds_drift.abs() <= 5.0;
    let _ = writeln!(out, "**Targets**\n");
    let _ = writeln!(out, "| target | measured | verdict |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| 0 crashes (alive and answering `/health/live` at the end) | {} | {} |",
        match (f.died_at, f.alive, f.health_after) {
            (Some(at), _, _) => format!("gone at {at} s"),
            (None, false, _) => "exited".to_owned(),
            (None, true, false) => "alive, `/health/live` unanswered".to_owned(),
            (None, true, true) => "0".to_owned(),
        },
        verdict(!crashed, || "1 crash".to_owned())
    );
    let _ = writeln!(
        out,
        "| 0 hangs (client timeout {} s) | {} | {} |",
        f.args.timeout_seconds,
        t.hangs,
        verdict(t.hangs == 0, || format!("{} hangs", t.hangs))
    );
    let _ = writeln!(
        out,
        "| RSS flat: last-window mean within 10 % of the post-warm-up mean | {rss_drift:+.1} % ({:.1} vs {:.1} MiB) | {} |",
        rss_last / 1024.0,
        rss_post / 1024.0,
        verdict(rss_flat, || format!("{:.1} points", rss_drift.abs() - 10.0))
    );
    let _ = writeln!(
        out,
        "| fds flat: last-window mean within ±5 of the post-warm-up mean | {fds_drift:+.1} ({fds_last:.1} vs {fds_post:.1}) | {} |",
        verdict(fds_flat, || format!("{:.1}", fds_drift.abs() - 5.0))
    );
    let met = !crashed && t.hangs == 0 && rss_flat && fds_flat && !post.is_empty();
    let _ = writeln!(
        out,
        "\nVerdict: {}",
        if met {
            "every target met"
        } else {
            "**a target was missed**"
        }
    );
    (out, met)
}

/// `text` on one line, at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_is_its_rate_per_minute() {
        let points: Vec<(f64, f64)> = (0..10).map(|i| (i as f64 * 10.0, 5.0 + i as f64)).collect();
        assert!((slope_per_minute(&points) - 6.0).abs() < 1e-9);
        assert_eq!(slope_per_minute(&[(1.0, 3.0)]), 0.0);
    }

    #[test]
    fn error_events_are_told_from_normal_ends() {
        assert!(ends_with_error(
            b"event: error\ndata: {\"type\":\"error\"}\n\n"
        ));
        assert!(ends_with_error(
            b"data: {\"error\":{\"message\":\"x\"}}\n\ndata: [DONE]\n\n"
        ));
        assert!(!ends_with_error(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        ));
        assert!(!ends_with_error(
            b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n"
        ));
    }

    #[test]
    fn routes_cover_both_providers_streamed_and_not() {
        let routes = routes();
        for path in [
            "/claude/v1/messages",
            "/claude/v1/chat/completions",
            "/codex/v1/responses",
            "/codex/v1/chat/completions",
        ] {
            for stream in [false, true] {
                let route = routes
                    .iter()
                    .find(|r| r.path == path && r.stream == stream)
                    .unwrap_or_else(|| panic!("no {path} stream={stream}"));
                let body: Value = serde_json::from_slice(&route.body).unwrap();
                assert_eq!(body["stream"].as_bool().unwrap_or(false), stream, "{path}");
            }
        }
    }
}
