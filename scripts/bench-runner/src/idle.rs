//! `ccproxy-bench idle-streams` (`scripts/idle-streams`, issue 15): many
//! streams held open through the proxy at once, each idle after its first
//! event, and what that costs the proxy: its RSS per stream, whether `/health`
//! still answers quickly, and whether the memory comes back once they close.
//!
//! 1. raises this process's open-file limit (children inherit it: the proxy
//!    holds two sockets per stream, the upstream and this runner one each);
//! 2. starts the idle upstream (`ccproxy-bench idle-upstream`): `POST
//!    /v1/messages` answers a stream's head and first event at once, and, for a
//!    request carrying [`HOLD_MARKER`], the rest only after `--hold-seconds`,
//!    so every stream ends by itself even if this runner does not close it;
//! 3. starts the proxy with every bundled plugin (as `scripts/bench` does, the
//!    access log on) and `server.max_connections` above the stream count;
//! 4. warms it up with complete streams, then measures it idle (RSS, VmHWM,
//!    threads, open files, `/health` latency);
//! 5. opens the streams (raw HTTP/1.1 on one connection each, a bounded number
//!    opening at a time), waits until every one has had its first event, and
//!    measures again, CPU time over a quiet window included;
//! 6. closes every stream from the client side, waits for the proxy's open
//!    files to come back down, and measures RSS once more;
//! 7. prints a Markdown report (also `OUT/idle-streams.md`); exit status 2
//!    when a target is missed.

use std::{
    convert::Infallible,
    fmt::Write as _,
    net::SocketAddr,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use ccproxy_mock_upstream::{Format, Reply, Samples, default_samples_dir};
use clap::Args;
use futures_util::{StreamExt as _, stream};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::{Semaphore, watch},
};

use crate::{
    Layout, READY_TIMEOUT, Scratch, active_plugins, machine_info, percentile, probe,
    procs::{Server, cpu_time, rollup_kib, status_kib},
    proxy_command,
};

/// Text in a request body that asks the idle upstream to hold the stream
/// after its first event; requests without it (the warm-up) get the whole
/// stream at once. The proxy passes the body through, so the text arrives.
const HOLD_MARKER: &str = "hold this stream open";

/// The proxy's own open files beside its sockets (plugins' logs and
/// databases, the listener, pipes, the health checks), with room to spare.
const FILES_BESIDE_STREAMS: u64 = 400;

/// The targets of issue 15.
const RSS_TARGET_BYTES: f64 = 200e6;
const HEALTH_TARGET_MS: f64 = 10.0;

#[derive(Args, Clone)]
pub(crate) struct IdleArgs {
    /// Streams held open at once.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// How long the upstream holds a stream after its first event before it
    /// sends the rest: the bound on how long anything can stay open, whatever
    /// happens to this runner.
    #[arg(long, default_value_t = 150)]
    hold_seconds: u64,
    /// How the proxy reaches the upstream: `h2` (HTTPS, HTTP/2 by ALPN, as
    /// the providers' APIs: one multiplexed connection, so a stream costs the
    /// proxy one socket) or `h1` (plain HTTP/1.1: a connection per stream,
    /// two sockets per stream in the proxy, the harsher case; needs an
    /// open-file limit above twice the streams).
    #[arg(long, default_value = "h2", value_parser = ["h2", "h1"])]
    upstream: String,
    /// How the streams reach the proxy: `h1` (HTTP/1.1, one connection per
    /// stream, as Claude Code and the Codex CLI connect) or `h2` (h2c with
    /// prior knowledge, `--streams-per-connection` streams multiplexed on each
    /// connection).
    #[arg(long, default_value = "h1", value_parser = ["h1", "h2"])]
    client: String,
    /// With `--client h2`: streams per client connection (the proxy allows
    /// 200, hyper's default).
    #[arg(long, default_value_t = 100)]
    streams_per_connection: usize,
    /// Streams being opened at once (connect, request, wait for the first event).
    #[arg(long, default_value_t = 64)]
    open_concurrency: usize,
    /// Sequential `GET /health` requests on one kept-alive connection, idle and
    /// while the streams are held.
    #[arg(long, default_value_t = 200)]
    health_requests: usize,
    /// A bundled plugin to leave out (`ccproxy serve --disable-plugin`); repeatable.
    #[arg(long, value_name = "NAME")]
    disable_plugin: Vec<String>,
    /// An environment variable for the proxy (any config key); repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::key_value)]
    env: Vec<(String, String)>,
    /// A shared library the proxy runs with (`LD_PRELOAD`), e.g. another malloc.
    #[arg(long, value_name = "LIB")]
    preload: Option<PathBuf>,
    /// Where the report goes (default TARGET/bench).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Hold the streams through the bare forwarder (`ccproxy-bench forwarder`,
    /// glibc malloc, no plugins) instead of ccproxy: the floor any hyper-based
    /// proxy pays per held stream.
    #[arg(long)]
    forwarder: bool,
    /// Write the last lines the proxy printed, after it stopped, to FILE (e.g.
    /// with `--env MIMALLOC_SHOW_STATS=1`, mimalloc's statistics at exit).
    #[arg(long, value_name = "FILE")]
    proxy_log: Option<PathBuf>,
    /// The command line to print in the report (set by scripts/idle-streams).
    #[arg(long, hide = true)]
    invoked_as: Option<String>,
}

// ---------------------------------------------------------------- upstream

/// The stream the idle upstream answers with: the first event, and the rest.
struct Answer {
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    first: Bytes,
    rest: Bytes,
}

fn answer_from_samples() -> Result<Answer, String> {
    let samples = Samples::load(&default_samples_dir())?;
    let request = json!({"model": "claude-sonnet-4-5-20250929", "messages": [], "stream": true});
    let selected = samples.select(Format::Anthropic, &request)?;
    let Reply::Events(events) = selected.reply else {
        return Err("the samples have no Anthropic stream".to_owned());
    };
    let mut events = events.iter().map(|event| event.encode());
    let first = events
        .next()
        .ok_or("the Anthropic stream sample has no events")?;
    let rest: Vec<u8> = events.flatten().collect();
    let mut headers: Vec<(http::HeaderName, http::HeaderValue)> = selected
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                http::HeaderName::from_bytes(name.as_bytes()).ok()?,
                http::HeaderValue::from_str(value).ok()?,
            ))
        })
        .filter(|(name, _)| name != http::header::CONTENT_LENGTH)
        .collect();
    if !headers
        .iter()
        .any(|(name, _)| name == http::header::CONTENT_TYPE)
    {
        headers.push((
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream; charset=utf-8"),
        ));
    }
    Ok(Answer {
        headers,
        first: Bytes::from(first),
        rest: Bytes::from(rest),
    })
}

/// Serves the idle upstream on 127.0.0.1:`port` until the parent goes away:
/// plain HTTP/1.1, or with `tls_ca_out` HTTPS with HTTP/2 offered by ALPN
/// (a throwaway CA's certificate written there for the proxy to trust).
pub(crate) fn serve_upstream(
    port: u16,
    hold: Duration,
    tls_ca_out: Option<&std::path::Path>,
) -> Result<(), String> {
    let answer: &'static Answer = Box::leak(Box::new(answer_from_samples()?));
    let acceptor = tls_ca_out.map(tls_acceptor).transpose()?;
    // One thread: its work is 10,000 requests and then waiting.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(async move {
        let listener = crate::upstream::listen("idle upstream", port).await?;
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // hyper's default of 200 streams per connection would queue the
        // proxy's streams past it: all of them share one connection.
        builder.http2().max_concurrent_streams(1_000_000);
        let builder: &'static _ = Box::leak(Box::new(builder));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of files and the like: the runner sees the failed streams.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(move |request| async move {
                Ok::<_, Infallible>(upstream_answer(answer, hold, request).await)
            });
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    })
}

/// A TLS acceptor offering `h2` and `http/1.1`, with a certificate for
/// 127.0.0.1 signed by a CA made here, whose PEM goes to `ca_out`.
fn tls_acceptor(ca_out: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let made = (|| {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ccproxy idle-streams bench CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;
        Ok::<_, rcgen::Error>((ca_cert, leaf_cert, leaf_key))
    })();
    let (ca_cert, leaf_cert, leaf_key) =
        made.map_err(|error| format!("cannot make the TLS certificates: {error}"))?;
    std::fs::write(ca_out, ca_cert.pem())
        .map_err(|error| format!("cannot write {}: {error}", ca_out.display()))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        leaf_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS versions: {error}"))?
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .map_err(|error| format!("TLS certificate: {error}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

type UpstreamBody = UnsyncBoxBody<Bytes, Infallible>;

async fn upstream_answer(
    answer: &'static Answer,
    hold: Duration,
    request: http::Request<Incoming>,
) -> Response<UpstreamBody> {
    // The bare forwarder passes the proxy's path through (`/claude/v1/messages`)
    // and `/health` too.
    let is_messages =
        request.method() == Method::POST && request.uri().path().ends_with("/v1/messages");
    if request.method() == Method::GET && request.uri().path() == "/health" {
        return upstream_status(StatusCode::OK);
    }
    let Ok(body) = request.into_body().collect().await else {
        return upstream_status(StatusCode::BAD_REQUEST);
    };
    if !is_messages {
        return upstream_status(StatusCode::NOT_FOUND);
    }
    let held = memchr::memmem::find(&body.to_bytes(), HOLD_MARKER.as_bytes()).is_some();
    let first = stream::iter([Ok(Frame::data(answer.first.clone()))]);
    let rest = stream::once(async move {
        if held {
            tokio::time::sleep(hold).await;
        }
        Ok(Frame::data(answer.rest.clone()))
    });
    let mut response = Response::new(StreamBody::new(first.chain(rest)).boxed_unsync());
    for (name, value) in &answer.headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}

fn upstream_status(code: StatusCode) -> Response<UpstreamBody> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *response.status_mut() = code;
    response
}

// ---------------------------------------------------------------- runner

/// The request of one stream: raw HTTP/1.1, so a held stream costs this
/// runner a socket and a small buffer, nothing more.
fn stream_request(proxy: SocketAddr, held: bool) -> Vec<u8> {
    let text = if held {
        format!("Please {HOLD_MARKER} until the benchmark closes it.")
    } else {
        "Warm-up: answer at once.".to_owned()
    };
    let body = json!({
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 64,
        "stream": true,
        "messages": [{"role": "user", "content": text}],
    })
    .to_string();
    let connection = if held { "keep-alive" } else { "close" };
    format!(
        "POST /claude/v1/messages HTTP/1.1\r\nhost: {proxy}\r\ncontent-type: application/json\r\n\
         anthropic-version: 2023-06-01\r\nconnection: {connection}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What the first bytes of a proxied stream must hold: a 200 head and the first event.
fn first_event_arrived(received: &[u8]) -> Result<bool, String> {
    let Some(head_end) = memchr::memmem::find(received, b"\r\n\r\n") else {
        return Ok(false);
    };
    if !received.starts_with(b"HTTP/1.1 200") {
        let head = String::from_utf8_lossy(&received[..head_end.min(200)]).into_owned();
        return Err(format!("the proxy answered {head:?}"));
    }
    Ok(memchr::memmem::find(&received[head_end..], b"message_start").is_some())
}

/// How one held stream went.
#[derive(Debug)]
enum Held {
    /// Open until the runner closed it.
    Closed,
    /// Ended (or failed) before the runner closed it.
    EndedEarly(String),
    /// Never got its first event.
    NotOpened(String),
}

/// Opens one stream and holds it until `close` changes; `opening` is the
/// permit of the bounded opening phase, released at the first event.
async fn hold_stream(
    proxy: SocketAddr,
    request: Arc<Vec<u8>>,
    opening: tokio::sync::OwnedSemaphorePermit,
    opened: Arc<AtomicUsize>,
    mut close: watch::Receiver<bool>,
) -> Held {
    let open = async {
        let mut socket = TcpStream::connect(proxy)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        let _ = socket.set_nodelay(true);
        socket
            .write_all(&request)
            .await
            .map_err(|error| format!("write: {error}"))?;
        let mut received = Vec::with_capacity(1024);
        loop {
            if socket
                .read_buf(&mut received)
                .await
                .map_err(|error| format!("read: {error}"))?
                == 0
            {
                return Err("the proxy closed the connection before the first event".to_owned());
            }
            if first_event_arrived(&received)? {
                return Ok(socket);
            }
            if received.len() > 64 * 1024 {
                return Err("no first event in the first 64 KiB".to_owned());
            }
        }
    };
    let mut socket = match tokio::time::timeout(Duration::from_secs(30), open).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(error)) => return Held::NotOpened(error),
        Err(_) => return Held::NotOpened("no first event within 30 s".to_owned()),
    };
    opened.fetch_add(1, Ordering::AcqRel);
    drop(opening);
    let mut scratch = [0u8; 256];
    loop {
        tokio::select! {
            _ = close.changed() => return Held::Closed,
            read = socket.read(&mut scratch) => match read {
                Ok(0) => return Held::EndedEarly("the proxy ended the stream".to_owned()),
                Ok(_) => {}
                Err(error) => return Held::EndedEarly(format!("read: {error}")),
            },
        }
    }
}

/// As [`hold_stream`], on a shared HTTP/2 connection to the proxy.
async fn hold_h2_stream(
    mut sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    proxy: SocketAddr,
    opening: tokio::sync::OwnedSemaphorePermit,
    opened: Arc<AtomicUsize>,
    mut close: watch::Receiver<bool>,
) -> Held {
    let open = async {
        let request = stream_request(proxy, true);
        let body_at = memchr::memmem::find(&request, b"\r\n\r\n").map_or(0, |at| at + 4);
        let request = http::Request::post(format!("http://{proxy}/claude/v1/messages"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("anthropic-version", "2023-06-01")
            .body(Full::new(Bytes::copy_from_slice(&request[body_at..])))
            .map_err(|error| error.to_string())?;
        sender
            .ready()
            .await
            .map_err(|error| format!("h2 connection: {error}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("h2 request: {error}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("the proxy answered {}", response.status()));
        }
        let mut body = response.into_body();
        let mut received = Vec::new();
        while memchr::memmem::find(&received, b"message_start").is_none() {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        received.extend_from_slice(data);
                    }
                }
                Some(Err(error)) => return Err(format!("body: {error}")),
                None => return Err("the stream ended before the first event".to_owned()),
            }
        }
        Ok(body)
    };
    let mut body = match tokio::time::timeout(Duration::from_secs(30), open).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => return Held::NotOpened(error),
        Err(_) => return Held::NotOpened("no first event within 30 s".to_owned()),
    };
    opened.fetch_add(1, Ordering::AcqRel);
    drop(opening);
    loop {
        tokio::select! {
            _ = close.changed() => return Held::Closed,
            frame = body.frame() => match frame {
                None => return Held::EndedEarly("the proxy ended the stream".to_owned()),
                Some(Err(error)) => return Held::EndedEarly(format!("body: {error}")),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// An h2c connection (prior knowledge) to the proxy.
async fn h2_connection(
    proxy: SocketAddr,
) -> Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(proxy)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|error| format!("h2 handshake: {error}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One complete stream on its own connection (warm-up); fails unless it is a
/// 200 that ends with `message_stop`.
async fn complete_stream(proxy: SocketAddr, request: &[u8]) -> Result<(), String> {
    let mut socket = TcpStream::connect(proxy)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    socket
        .write_all(request)
        .await
        .map_err(|error| format!("write: {error}"))?;
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut received))
        .await
        .map_err(|_| "no end within 10 s".to_owned())?
        .map_err(|error| format!("read: {error}"))?;
    if !received.starts_with(b"HTTP/1.1 200")
        || memchr::memmem::find(&received, b"message_stop").is_none()
    {
        let shown = String::from_utf8_lossy(&received[..received.len().min(300)]).into_owned();
        return Err(format!("not a complete stream: {shown:?}"));
    }
    Ok(())
}

/// `GET /health` on a kept-alive hyper connection.
struct HealthClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl HealthClient {
    async fn open(address: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| format!("cannot connect to {address}: {error}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("handshake with {address}: {error}"))?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            host: address.to_string(),
        })
    }

    /// Whether the answer, read to its end, was a 200.
    async fn get(&mut self) -> Result<bool, String> {
        let request = http::Request::get("/health")
            .header(http::header::HOST, &self.host)
            .body(Full::new(Bytes::new()))
            .map_err(|error| error.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|error| format!("/health connection: {error}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|error| format!("GET /health: {error}"))?;
        let ok = response.status() == StatusCode::OK;
        response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("GET /health body: {error}"))?;
        Ok(ok)
    }
}

/// `/health` latency: `count` sequential GETs on one kept-alive connection,
/// then `count / 10` each on a new connection (connect included). Milliseconds.
struct HealthTimes {
    kept_alive: Vec<f64>,
    fresh: Vec<f64>,
    not_ok: usize,
}

async fn time_health(proxy: SocketAddr, count: usize) -> Result<HealthTimes, String> {
    let mut times = HealthTimes {
        kept_alive: Vec::with_capacity(count),
        fresh: Vec::new(),
        not_ok: 0,
    };
    let mut connection = HealthClient::open(proxy).await?;
    for _ in 0..count {
        let started = Instant::now();
        let ok = connection.get().await?;
        times.kept_alive.push(started.elapsed().as_secs_f64() * 1e3);
        times.not_ok += usize::from(!ok);
    }
    for _ in 0..(count / 10).max(1) {
        let started = Instant::now();
        let mut connection = HealthClient::open(proxy).await?;
        let ok = connection.get().await?;
        times.fresh.push(started.elapsed().as_secs_f64() * 1e3);
        times.not_ok += usize::from(!ok);
    }
    Ok(times)
}

/// The proxy as `/proc` sees it at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    rss_kib: u64,
    hwm_kib: u64,
    /// Of the RSS, pages the allocator gave back with `MADV_FREE`: still
    /// counted until the kernel needs them (`/proc/PID/smaps_rollup`).
    lazy_free_kib: u64,
    threads: u64,
    open_files: usize,
}

fn snapshot(pid: u32) -> Snapshot {
    Snapshot {
        rss_kib: status_kib(pid, "VmRSS").unwrap_or(0),
        hwm_kib: status_kib(pid, "VmHWM").unwrap_or(0),
        lazy_free_kib: rollup_kib(pid, "LazyFree").unwrap_or(0),
        threads: status_kib(pid, "Threads").unwrap_or(0),
        open_files: open_files(pid),
    }
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Raises this process's open-file limit (soft and hard) to `wanted`, which
/// children inherit; raising the hard limit needs CAP_SYS_RESOURCE (not every
/// root in a container has it), so failing that the soft limit goes up to the
/// hard one. Returns the soft limit now in force.
#[allow(unsafe_code)]
fn raise_file_limit(wanted: u64) -> Result<u64, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write only the struct given,
    // which lives across the calls.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err("cannot read the open-file limit".to_owned());
    }
    if limit.rlim_cur >= wanted {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: wanted.max(limit.rlim_max),
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(wanted);
    }
    let soft = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } == 0 {
        return Ok(limit.rlim_max);
    }
    Ok(limit.rlim_cur)
}

/// Children get SIGTERM if this runner dies (even by SIGKILL), so nothing it
/// started outlives it; the normal path stops them itself.
#[allow(unsafe_code)]
fn die_with_runner(command: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent; it runs in the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The measurements of a run, for the report.
struct Findings {
    machine: String,
    invoked_as: String,
    transport: String,
    streams: usize,
    active: Vec<String>,
    file_limit: u64,
    opening_secs: f64,
    opened: usize,
    not_opened: Vec<String>,
    ended_early: Vec<String>,
    idle: Snapshot,
    held: Snapshot,
    held_cpu_secs: f64,
    quiet_window_secs: f64,
    after: Snapshot,
    drain_secs: f64,
    health_idle: HealthTimes,
    health_held: HealthTimes,
    load_held: String,
    upstream_rss_kib: u64,
    total_secs: f64,
}

pub(crate) fn run(args: &IdleArgs) -> Result<bool, String> {
    let started = Instant::now();
    let mut layout = Layout::locate();
    if !layout.ccproxy().exists() {
        return Err(format!(
            "{} is missing; run scripts/idle-streams, which builds everything",
            layout.ccproxy().display()
        ));
    }
    if let Some(library) = &args.preload {
        if !library.exists() {
            return Err(format!("--preload {} does not exist", library.display()));
        }
        layout.preload = Some(library.clone());
    }
    layout.disabled.clone_from(&args.disable_plugin);
    let streams = args.streams.max(1);
    // The proxy: two sockets a stream and its own files (plugins' logs and
    // databases, the listener, pipes); this runner and the upstream need one
    // a stream each.
    let multiplexed = args.upstream == "h2";
    let client_sockets = if args.client == "h2" {
        streams.div_ceil(args.streams_per_connection.max(1))
    } else {
        streams
    };
    let upstream_sockets = if multiplexed { 1 } else { streams };
    let file_limit = raise_file_limit((2 * streams as u64 + 4096).max(65_536))?;
    let needed = (client_sockets + upstream_sockets) as u64 + FILES_BESIDE_STREAMS;
    if file_limit < needed {
        return Err(format!(
            "{streams} streams need about {needed} open files in the proxy ({client_sockets} \
             client and {upstream_sockets} upstream sockets and {FILES_BESIDE_STREAMS} of its \
             own); the limit is {file_limit} and this process cannot raise its hard limit (no \
             CAP_SYS_RESOURCE). Pass fewer --streams{}",
            if multiplexed { "" } else { " or --upstream h2" }
        ));
    }
    let transport = format!(
        "clients {}; upstream {}",
        if args.client == "h2" {
            format!(
                "over h2c, {} streams per connection ({client_sockets} connections)",
                args.streams_per_connection.max(1)
            )
        } else {
            "over HTTP/1.1, one connection per stream".to_owned()
        },
        if multiplexed {
            "over HTTPS with HTTP/2 (ALPN), all streams on one connection"
        } else {
            "over plain HTTP/1.1, one connection per stream"
        }
    );
    let machine = machine_info(&layout);
    eprintln!("==> machine: {}", machine.replace('\n', "; "));
    let scratch = Scratch::new()?;
    let sandbox = scratch.path().join("sandbox");
    std::fs::create_dir_all(sandbox.join("logs")).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(&exe);
    command
        .arg("idle-upstream")
        .arg("--hold-seconds")
        .arg(args.hold_seconds.to_string());
    let ca_file = scratch.path().join("upstream-ca.pem");
    if multiplexed {
        command.arg("--tls-ca-out").arg(&ca_file);
    }
    die_with_runner(&mut command);
    let upstream = Server::start("idle upstream", command, READY_TIMEOUT)?;
    let upstream_url = if multiplexed {
        format!("https://{}", upstream.address)
    } else {
        upstream.url()
    };
    eprintln!("==> idle upstream {upstream_url}");

    let mut command = if args.forwarder {
        let mut command = Command::new(&exe);
        command.args(["forwarder", "--upstream", &upstream.url()]);
        if multiplexed {
            return Err("--forwarder speaks plain HTTP/1.1 upstream: pass --upstream h1".into());
        }
        command
    } else {
        let mut command = proxy_command(&layout, &sandbox, &upstream_url, None);
        if multiplexed {
            command.env("HTTP__EXTRA_CA_FILE", &ca_file);
        }
        // The automatic cap is at most 4096 connections; room for the health
        // checks beside the streams.
        command.env("SERVER__MAX_CONNECTIONS", (streams + 256).to_string());
        for (key, value) in &args.env {
            command.env(key, value);
        }
        command
    };
    die_with_runner(&mut command);
    let proxy = Server::start("ccproxy", command, READY_TIMEOUT)?;
    let pid = proxy.pid();
    let address = proxy.address;
    let active = if args.forwarder {
        vec!["(the bare forwarder: none)".to_owned()]
    } else {
        plugins_active(&runtime, &layout, &proxy, &args.disable_plugin)?
    };
    eprintln!(
        "==> proxy {} (pid {pid}), {} active plugins: {}",
        proxy.url(),
        active.len(),
        active.join(", ")
    );

    // Warm-up: complete streams, so the idle figures are those of a proxy
    // that has served (pools, plugin state, the log files open).
    eprintln!("==> warm-up: 200 complete streams");
    runtime
        .block_on(async {
            let request = Arc::new(stream_request(address, false));
            let mut tasks = tokio::task::JoinSet::new();
            for worker in 0..8 {
                let request = request.clone();
                tasks.spawn(async move {
                    for _ in 0..25 {
                        complete_stream(address, &request).await.map_err(|error| {
                            format!("warm-up stream (worker {worker}): {error}")
                        })?;
                    }
                    Ok::<(), String>(())
                });
            }
            while let Some(result) = tasks.join_next().await {
                result.map_err(|e| e.to_string())??;
            }
            Ok::<(), String>(())
        })
        .map_err(|error| format!("{error}; the proxy's log:\n{}", proxy.log_tail()))?;
    std::thread::sleep(Duration::from_secs(2));
    let health_idle = runtime.block_on(time_health(address, args.health_requests))?;
    let idle = snapshot(pid);
    eprintln!(
        "==> idle: RSS {:.1} MiB, {} threads, {} open files",
        mib(idle.rss_kib),
        idle.threads,
        idle.open_files
    );

    // The streams.
    eprintln!(
        "==> opening {streams} streams, {} at a time",
        args.open_concurrency
    );
    let (close, closed) = watch::channel(false);
    let opened = Arc::new(AtomicUsize::new(0));
    let opening = Arc::new(Semaphore::new(args.open_concurrency.max(1)));
    let request = Arc::new(stream_request(address, true));
    let opening_started = Instant::now();
    let h2_client = args.client == "h2";
    let mut tasks = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let mut reported = 0;
        let mut h2_sender = None;
        for index in 0..streams {
            let permit = opening
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| e.to_string())?;
            if h2_client {
                if index % args.streams_per_connection.max(1) == 0 {
                    h2_sender = Some(h2_connection(address).await?);
                }
                let sender = h2_sender.clone().ok_or("no h2 connection")?;
                tasks.spawn(hold_h2_stream(
                    sender,
                    address,
                    permit,
                    opened.clone(),
                    closed.clone(),
                ));
            } else {
                tasks.spawn(hold_stream(
                    address,
                    request.clone(),
                    permit,
                    opened.clone(),
                    closed.clone(),
                ));
            }
            let now = opened.load(Ordering::Acquire);
            if now >= reported + 1000 {
                reported = now - now % 1000;
                eprintln!(
                    "    {now} open after {:.1} s",
                    opening_started.elapsed().as_secs_f64()
                );
            }
        }
        // The last ones to open: the permits all come back once each has
        // its first event or has failed.
        let _all = opening
            .acquire_many(args.open_concurrency.max(1) as u32)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(tasks)
    })?;
    let opening_secs = opening_started.elapsed().as_secs_f64();
    let open_now = opened.load(Ordering::Acquire);
    eprintln!(
        "==> {open_now} of {streams} streams open after {opening_secs:.1} s ({} failed to open)",
        streams - open_now
    );

    // Held: settle, then a quiet window for CPU, then /health, then the
    // snapshot. Sleeping inside the runtime keeps the held streams polled.
    let pause = |duration| runtime.block_on(async { tokio::time::sleep(duration).await });
    pause(Duration::from_secs(2));
    let quiet = Duration::from_secs(3);
    let cpu_before = cpu_time(pid).unwrap_or_default();
    pause(quiet);
    let held_cpu_secs = cpu_time(pid)
        .unwrap_or_default()
        .saturating_sub(cpu_before)
        .as_secs_f64();
    let load_held = load_average();
    let health_held = runtime.block_on(time_health(address, args.health_requests))?;
    let held = snapshot(pid);
    let upstream_rss_kib = status_kib(upstream.pid(), "VmRSS").unwrap_or(0);
    eprintln!(
        "==> held: RSS {:.1} MiB (VmHWM {:.1}), {} threads, {} open files, /health p99 {:.2} ms, load {load_held}",
        mib(held.rss_kib),
        mib(held.hwm_kib),
        held.threads,
        held.open_files,
        percentile(&mut health_held.kept_alive.clone(), 99.0)
    );

    // Close every stream from the client side.
    eprintln!("==> closing");
    let _ = close.send(true);
    let mut not_opened = Vec::new();
    let mut ended_early = Vec::new();
    runtime.block_on(async {
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(Held::NotOpened(error)) => not_opened.push(error),
                Ok(Held::EndedEarly(error)) => ended_early.push(error),
                Ok(Held::Closed) => {}
                Err(error) => ended_early.push(format!("task: {error}")),
            }
        }
    });
    let closing = Instant::now();
    let settled_files = idle.open_files + 16;
    while open_files(pid) > settled_files && closing.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let drain_secs = closing.elapsed().as_secs_f64();
    // mimalloc gives freed pages back after its purge delay (about 1 s).
    std::thread::sleep(Duration::from_secs(3));
    let after = snapshot(pid);
    eprintln!(
        "==> after closing: RSS {:.1} MiB, {} open files after {drain_secs:.1} s",
        mib(after.rss_kib),
        after.open_files
    );
    let mut proxy = proxy;
    proxy.stop();
    if let Some(path) = &args.proxy_log {
        // The pipe readers may still be draining the last lines.
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(path, proxy.log_tail())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    drop(proxy);
    drop(upstream);

    let findings = Findings {
        machine,
        invoked_as: args
            .invoked_as
            .clone()
            .unwrap_or_else(|| "ccproxy-bench idle-streams".to_owned()),
        transport,
        streams,
        active,
        file_limit,
        opening_secs,
        opened: open_now,
        not_opened,
        ended_early,
        idle,
        held,
        held_cpu_secs,
        quiet_window_secs: quiet.as_secs_f64(),
        after,
        drain_secs,
        health_idle,
        health_held,
        load_held,
        upstream_rss_kib,
        total_secs: started.elapsed().as_secs_f64(),
    };
    let (text, met) = report(&findings);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| layout.target.join("bench"));
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let path = out.join("idle-streams.md");
    std::fs::write(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("{text}");
    eprintln!("==> report written to {}", path.display());
    Ok(met)
}

/// The active plugins, checked: every bundled one but those left out and the opt-in ones.
fn plugins_active(
    runtime: &tokio::runtime::Runtime,
    layout: &Layout,
    proxy: &Server,
    disabled: &[String],
) -> Result<Vec<String>, String> {
    let status = runtime.block_on(async {
        let mut connection = probe::Connection::open(proxy.address).await?;
        connection
            .send("GET", "/plugins/status", Bytes::new())
            .await
    })?;
    let status: Value = serde_json::from_slice(&status).unwrap_or(Value::Null);
    active_plugins(layout, &status, disabled)
        .map_err(|error| format!("{error}; the proxy's log:\n{}", proxy.log_tail()))
}

/// p50 / p99 / max of `values`, ms.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    (
        percentile(&mut sorted, 50.0),
        percentile(&mut sorted, 99.0),
        sorted.last().copied().unwrap_or(f64::NAN),
    )
}

fn report(f: &Findings) -> (String, bool) {
    let mut out = String::new();
    let per_stream_kib =
        (f.held.rss_kib.saturating_sub(f.idle.rss_kib)) as f64 / f.opened.max(1) as f64;
    let _ = writeln!(
        out,
        "### {} idle streams held open through the proxy\n",
        f.streams
    );
    let _ = writeln!(out, "Machine: {}.", f.machine.replace('\n', "; "));
    let _ = writeln!(
        out,
        "Command: `{}`; every stream `POST /claude/v1/messages` with `\"stream\": true` \
         (passthrough to the idle upstream, which sends the head and `message_start` and then \
         nothing); {}; open-file limit {}; {} active plugins ({}), access log on. Whole run \
         {:.0} s.\n",
        f.invoked_as,
        f.transport,
        f.file_limit,
        f.active.len(),
        f.active.join(", "),
        f.total_secs
    );
    let _ = writeln!(
        out,
        "| | idle (after warm-up) | {} streams held | after closing them |",
        f.opened
    );
    let _ = writeln!(out, "|---|---|---|---|");
    let _ = writeln!(
        out,
        "| VmRSS | {:.1} MiB | **{:.1} MiB** | {:.1} MiB |",
        mib(f.idle.rss_kib),
        mib(f.held.rss_kib),
        mib(f.after.rss_kib)
    );
    let _ = writeln!(
        out,
        "| VmHWM (peak so far) | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        mib(f.idle.hwm_kib),
        mib(f.held.hwm_kib),
        mib(f.after.hwm_kib)
    );
    let _ = writeln!(
        out,
        "| of which `LazyFree` (freed with `MADV_FREE`, reclaimable) | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        mib(f.idle.lazy_free_kib),
        mib(f.held.lazy_free_kib),
        mib(f.after.lazy_free_kib)
    );
    let _ = writeln!(
        out,
        "| threads | {} | {} | {} |",
        f.idle.threads, f.held.threads, f.after.threads
    );
    let _ = writeln!(
        out,
        "| open files | {} | {} | {} (after {:.1} s) |",
        f.idle.open_files, f.held.open_files, f.after.open_files, f.drain_secs
    );
    for (name, idle, held) in [
        (
            "kept-alive",
            &f.health_idle.kept_alive,
            &f.health_held.kept_alive,
        ),
        (
            "new connection each",
            &f.health_idle.fresh,
            &f.health_held.fresh,
        ),
    ] {
        let (i50, i99, imax) = spread(idle);
        let (h50, h99, hmax) = spread(held);
        let _ = writeln!(
            out,
            "| `/health` ms, {} GETs {name}: p50 / p99 / max | {i50:.3} / {i99:.3} / {imax:.2} | **{h50:.3} / {h99:.3} / {hmax:.2}** | – |",
            held.len()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "RSS per held stream: **{per_stream_kib:.1} KiB** ((held − idle) / {}). Opening took \
         {:.1} s; while held the proxy used {:.2} s of CPU in a {:.0} s quiet window; load \
         average while held {}. The idle upstream's own RSS: {:.1} MiB. Streams that failed to \
         open: {}{}; ended before the runner closed them: {}{}; `/health` answers other than 200: {}.\n",
        f.opened,
        f.opening_secs,
        f.held_cpu_secs,
        f.quiet_window_secs,
        f.load_held,
        mib(f.upstream_rss_kib),
        f.not_opened.len(),
        f.not_opened
            .first()
            .map_or(String::new(), |e| format!(" (first: {e})")),
        f.ended_early.len(),
        f.ended_early
            .first()
            .map_or(String::new(), |e| format!(" (first: {e})")),
        f.health_idle.not_ok + f.health_held.not_ok,
    );
    let (_, health_p99, _) = spread(&f.health_held.kept_alive);
    let held_bytes = f.held.rss_kib as f64 * 1024.0;
    let all_open = f.opened == f.streams && f.ended_early.is_empty();
    let targets = [
        (
            format!("{} streams open at once, none ended early", f.streams),
            format!("{} open, {} ended early", f.opened, f.ended_early.len()),
            all_open,
        ),
        (
            "RSS with the streams held < 200 MB".to_owned(),
            format!(
                "{:.1} MB ({:.1} MiB)",
                held_bytes / 1e6,
                mib(f.held.rss_kib)
            ),
            held_bytes < RSS_TARGET_BYTES,
        ),
        (
            "`/health` while held < 10 ms (p99, kept-alive)".to_owned(),
            format!("{health_p99:.3} ms"),
            health_p99 < HEALTH_TARGET_MS && f.health_held.not_ok == 0,
        ),
    ];
    let _ = writeln!(out, "| target (issue 15) | measured | verdict |");
    let _ = writeln!(out, "|---|---|---|");
    let mut met = true;
    for (target, measured, ok) in &targets {
        met &= ok;
        let _ = writeln!(
            out,
            "| {target} | {measured} | {} |",
            if *ok { "met" } else { "**missed**" }
        );
    }
    (out, met)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_counts_as_open_at_its_first_event_after_a_200_head() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
        assert_eq!(first_event_arrived(&head[..20]), Ok(false));
        assert_eq!(first_event_arrived(head), Ok(false));
        let mut with_event = head.to_vec();
        with_event.extend_from_slice(b"9f\r\nevent: message_start\ndata: {}\n\n");
        assert_eq!(first_event_arrived(&with_event), Ok(true));
        let refused = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert!(first_event_arrived(refused).is_err());
    }

    #[test]
    fn only_held_requests_carry_the_marker() {
        let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let held = stream_request(address, true);
        let warm = stream_request(address, false);
        assert!(memchr::memmem::find(&held, HOLD_MARKER.as_bytes()).is_some());
        assert!(memchr::memmem::find(&warm, HOLD_MARKER.as_bytes()).is_none());
        let text = String::from_utf8(held).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
