//! The HTTP side: accept loop, upstream endpoints, checks, faults, the OAuth
//! token endpoint and the control API (see the crate docs for the contract).

use std::{
    collections::VecDeque,
    convert::Infallible,
    io::Write as _,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Response, StatusCode, request::Parts};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::{
    Options, agent, codex, github, quirks,
    samples::{Event, Format, Reply, Samples, Selected},
    tls::{ConnectionTls, Tls},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// How long in-flight answers may take to finish after a shutdown.
const GRACE: Duration = Duration::from_secs(5);

/// Binds `127.0.0.1:PORT`, prints the listening line, and serves until told to
/// stop (see the crate docs).
pub async fn serve(options: Options) -> Result<(), String> {
    let samples = Samples::load(&options.samples)?;
    // Made before the listening line, so the CA file exists once a test sees it.
    let tls = options
        .tls
        .as_ref()
        .map(Tls::new)
        .transpose()?
        .map(Arc::new);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
        .await
        .map_err(|error| format!("cannot bind 127.0.0.1:{}: {error}", options.port))?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("the listener has no address: {error}"))?;
    let (shutdown, mut stopping) = watch::channel(false);
    let state = Arc::new(State {
        samples,
        options,
        started: Instant::now(),
        last_activity_ms: AtomicU64::new(0),
        upstream_requests: AtomicU64::new(0),
        shutdown,
        inner: Mutex::new(Inner::default()),
        github: github::GitHub::default(),
    });
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "mock upstream listening on http://{address}");
        if let Some(options) = &state.options.tls {
            let _ = writeln!(
                stdout,
                "mock upstream also serves https://{address} (ALPN {})",
                options.alpn.join(", ")
            );
        }
        let _ = stdout.flush();
    }
    if let Some(idle) = state.options.idle_exit {
        tokio::spawn(idle_watch(state.clone(), idle));
    }

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                if let Some(tls) = &tls {
                    tokio::spawn(serve_tls(state.clone(), tls.clone(), stream, graceful.watcher()));
                    continue;
                }
                let state = state.clone();
                let service = hyper::service::service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(state, request).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = stopping.wait_for(|stop| *stop) => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, graceful.shutdown()).await;
    Ok(())
}

/// One connection in TLS mode: a TLS handshake when it opens with one (then HTTP/2 or
/// HTTP/1.1 as ALPN settled), plain HTTP otherwise.
async fn serve_tls(
    state: Arc<State>,
    tls: Arc<Tls>,
    stream: tokio::net::TcpStream,
    watcher: hyper_util::server::graceful::Watcher,
) {
    if !Tls::is_handshake(&stream).await {
        serve_io(state, stream, None, watcher).await;
        return;
    }
    match tls.accept(stream).await {
        Ok((stream, facts)) => serve_io(state, stream, Some(facts), watcher).await,
        Err(error) => {
            if !state.options.quiet {
                eprintln!("mock upstream: TLS handshake failed: {error}");
            }
        }
    }
}

/// Serves one connection of the TLS mode; its TLS facts go into each request's extensions
/// for [`State::record`]. HTTP/2 only after ALPN chose `h2`, HTTP/1.1 only after it chose
/// `http/1.1`, either (by the preface) when nothing was negotiated.
async fn serve_io<I>(
    state: Arc<State>,
    io: I,
    facts: Option<ConnectionTls>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let builder = match facts.as_ref().and_then(|facts| facts.alpn.as_deref()) {
        Some("h2") => builder.http2_only(),
        Some(_) => builder.http1_only(),
        None => builder,
    };
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        let state = state.clone();
        if let Some(facts) = &facts {
            request.extensions_mut().insert(facts.clone());
        }
        async move { Ok::<_, Infallible>(handle(state, request).await) }
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    let _ = watcher.watch(connection).await;
}

async fn idle_watch(state: Arc<State>, idle: Duration) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let last = Duration::from_millis(state.last_activity_ms.load(Ordering::Relaxed));
        if state.started.elapsed().saturating_sub(last) >= idle {
            if !state.options.quiet {
                eprintln!(
                    "mock upstream: no request for {} s; stopping",
                    idle.as_secs()
                );
            }
            state.stop();
            return;
        }
    }
}

struct State {
    samples: Samples,
    options: Options,
    started: Instant,
    last_activity_ms: AtomicU64,
    upstream_requests: AtomicU64,
    shutdown: watch::Sender<bool>,
    inner: Mutex<Inner>,
    github: github::GitHub,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Value>,
    faults: VecDeque<Fault>,
    cancelled: u64,
    completed: u64,
    reset: u64,
    authorization_code: u64,
    refresh_token: u64,
    issued: Vec<String>,
    agent: Option<agent::Script>,
    /// Set by `POST /_mock/quirks`, in force with `--quirk`'s.
    quirks: quirks::Quirks,
}

impl State {
    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(now, Ordering::Relaxed);
    }

    fn stop(&self) {
        let _ = self.shutdown.send(true);
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the data half-written
        // in a way that matters to a test mock: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn record(&self, parts: &Parts, body: &Bytes) -> usize {
        let mut headers = serde_json::Map::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match headers.get_mut(name.as_str()) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    headers.insert(name.as_str().to_owned(), Value::String(value));
                }
            }
        }
        let is_form = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let form = if is_form {
            Value::Object(codex::parse_form(body))
        } else {
            Value::Null
        };
        let tls = parts
            .extensions
            .get::<ConnectionTls>()
            .map_or(Value::Null, |facts| json!({"alpn": facts.alpn}));
        let entry = json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query().unwrap_or_default(),
            "version": format!("{:?}", parts.version),
            "tls": tls,
            "headers": headers,
            "body": serde_json::from_slice::<Value>(body).unwrap_or(Value::Null),
            "body_text": String::from_utf8_lossy(body),
            "form": form,
            "response": null,
        });
        let mut inner = self.inner();
        inner.requests.push(entry);
        inner.requests.len() - 1
    }

    fn set_response(&self, index: usize, status: u16, sample: &str, body: &[u8], outcome: &str) {
        let mut inner = self.inner();
        match outcome {
            "cancelled" => inner.cancelled += 1,
            "completed" => inner.completed += 1,
            "reset" => inner.reset += 1,
            _ => {}
        }
        if let Some(entry) = inner.requests.get_mut(index) {
            entry["response"] = json!({
                "status": status,
                "sample": sample,
                "body": String::from_utf8_lossy(body),
                "outcome": outcome,
            });
        }
    }

    /// The first armed fault that applies to `path` (and to the request's
    /// credential, for a fault armed for one), used once.
    fn take_fault(&self, path: &str, credential: Option<&str>) -> Option<Fault> {
        let mut inner = self.inner();
        let position = inner.faults.iter().position(|fault| {
            let path_applies = match &fault.path {
                Some(only) => only == path,
                None => path != TOKEN_PATH && path != codex::TOKEN_PATH,
            };
            path_applies
                && fault
                    .credential
                    .as_deref()
                    .is_none_or(|only| Some(only) == credential)
        })?;
        let fault = inner.faults.get_mut(position)?;
        fault.count -= 1;
        let taken = fault.clone();
        if fault.count == 0 {
            inner.faults.remove(position);
        }
        Some(taken)
    }
}

const TOKEN_PATH: &str = "/v1/oauth/token";

async fn handle(state: Arc<State>, request: http::Request<Incoming>) -> Response<Body> {
    state.touch();
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return plain_json(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("mock upstream: could not read the request body: {error}")}),
            );
        }
    };
    let path = parts.uri.path().to_owned();
    if let Some(command) = path.strip_prefix("/_mock/") {
        return control(&state, &parts.method, command, &body);
    }
    let served = state.upstream_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let index = state.record(&parts, &body);
    let response = upstream(&state, index, &parts, &path, &body).await;
    if !state.options.quiet {
        eprintln!(
            "mock upstream: {} {path} -> {}",
            parts.method,
            response.status().as_u16()
        );
    }
    if state.options.max_requests.is_some_and(|max| served >= max) {
        // In-flight answers, this one included, finish first (graceful shutdown).
        state.stop();
    }
    state.touch();
    response
}

async fn upstream(
    state: &Arc<State>,
    index: usize,
    parts: &Parts,
    path: &str,
    body: &Bytes,
) -> Response<Body> {
    if let Some((status, answer)) = github::upstream(&state.github, parts, path, body).await {
        state.set_response(index, status, "github", b"", "answered");
        return plain_json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            &answer,
        );
    }
    let method = &parts.method;
    let endpoint = match (method, path) {
        (&Method::POST, "/v1/messages") => Endpoint::Api(Format::Anthropic),
        (&Method::POST, "/v1/messages/count_tokens") => Endpoint::CountTokens,
        (&Method::POST, "/responses" | "/v1/responses" | "/backend-api/codex/responses") => {
            Endpoint::Api(Format::Responses)
        }
        (&Method::POST, "/chat/completions" | "/v1/chat/completions") => {
            Endpoint::Api(Format::Chat)
        }
        (&Method::POST, TOKEN_PATH) => {
            // Counted and delayed before any fault, so a failing refresh is
            // as observable as a good one.
            let grant = count_grant(state, body);
            if grant
                .as_ref()
                .is_some_and(|(kind, _)| kind == "refresh_token")
            {
                tokio::time::sleep(state.options.oauth_delay).await;
            }
            let fault = state.take_fault(path, None);
            if let Some(response) = early_fault(fault.as_ref(), Format::Chat).await {
                state.set_response(index, response.status().as_u16(), "fault", b"", "fault");
                return response;
            }
            let response = oauth_token(state, body, grant.map_or(0, |(_, n)| n));
            let status = response.status().as_u16();
            state.set_response(index, status, "oauth", b"", "answered");
            return response;
        }
        (&Method::POST, codex::TOKEN_PATH) => {
            // OpenAI's: form-encoded, counted and delayed like the Claude one.
            let grant = count_grant(state, body);
            if grant
                .as_ref()
                .is_some_and(|(kind, _)| kind == "refresh_token")
            {
                tokio::time::sleep(state.options.oauth_delay).await;
            }
            let fault = state.take_fault(path, None);
            if let Some(response) = early_fault(fault.as_ref(), Format::Chat).await {
                state.set_response(index, response.status().as_u16(), "fault", b"", "fault");
                return response;
            }
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let (status, answer, issued) = codex::token_grant(
                content_type,
                &codex::parse_form(body),
                grant.map_or(0, |(_, n)| n),
            );
            if let Some(access) = issued {
                state.inner().issued.push(access);
            }
            state.set_response(index, status, "oauth", b"", "answered");
            return plain_json(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                &answer,
            );
        }
        (&Method::GET, "/v1/models") => return plain_json(StatusCode::OK, &models()),
        (&Method::GET, "/api/oauth/profile") => return profile(parts),
        _ => {
            return plain_json(
                StatusCode::NOT_FOUND,
                &json!({"type": "error", "error": {"type": "not_found_error", "message": format!("mock upstream: no endpoint {method} {path}")}}),
            );
        }
    };
    let format = match endpoint {
        Endpoint::Api(format) => format,
        Endpoint::CountTokens => Format::Anthropic,
    };
    if let Err(message) = check(state, parts, format, body) {
        let response = error_response(format, 400, &format!("mock upstream: {message}"));
        state.set_response(index, 400, "check", message.as_bytes(), "rejected");
        return response;
    }
    if path == codex::BACKEND_PATH {
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if let Err((status, message)) = codex::check_backend(parts, &request) {
            let answer = codex::error_body(&message);
            state.set_response(index, status, "check", message.as_bytes(), "rejected");
            return plain_json(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                &answer,
            );
        }
    }
    let fault = state.take_fault(path, credential_of(parts));
    let quirks = state.options.quirks.union(&state.inner().quirks);
    if let Some(response) = early_fault(fault.as_ref(), format).await {
        let status = response.status().as_u16();
        state.set_response(index, status, "fault", b"", "fault");
        return match quirks.error_page(status) {
            Some(page) => raw_response(page),
            None => response,
        };
    }
    if let Some(page) = quirks.html_answer() {
        return raw_response(page);
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let script = state.inner().agent.clone();
    if let (Some(script), Endpoint::Api(format)) = (script, endpoint) {
        let selected = quirks.apply(format, &request, script.reply(format, &request, index));
        return answer(state.clone(), index, selected, fault);
    }
    let selected = match endpoint {
        Endpoint::CountTokens => Selected {
            source: "count_tokens".to_owned(),
            status: 200,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            reply: Reply::Json(json!({"input_tokens": count_tokens(&request)})),
        },
        Endpoint::Api(format) => match state.samples.select(format, &request) {
            Ok(selected) => quirks.apply(format, &request, selected),
            Err(message) => {
                return error_response(format, 500, &format!("mock upstream: {message}"));
            }
        },
    };
    answer(state.clone(), index, selected, fault)
}

/// The request's credential: `x-api-key`, else the token of
/// `authorization: Bearer`.
fn credential_of(parts: &Parts) -> Option<&str> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    header("x-api-key").or_else(|| header("authorization")?.strip_prefix("Bearer "))
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Api(Format),
    CountTokens,
}

/// The parts of a fault that act before the head: a delay, or an error status.
async fn early_fault(fault: Option<&Fault>, format: Format) -> Option<Response<Body>> {
    let fault = fault?;
    match fault.kind {
        FaultKind::Delay => {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
            None
        }
        FaultKind::Status => {
            let mut response = match &fault.body {
                Some(body) => plain_json(
                    StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    body,
                ),
                None => error_response(format, fault.status, ""),
            };
            let default_retry_after = (fault.status == 429).then(|| "1".to_owned());
            if let Some(retry_after) = fault.retry_after.clone().or(default_retry_after)
                && let Ok(value) = http::HeaderValue::from_str(&retry_after)
            {
                response.headers_mut().insert("retry-after", value);
            }
            Some(response)
        }
        FaultKind::ResetMidStream | FaultKind::Trickle | FaultKind::Edit => None,
    }
}

fn check(state: &State, parts: &Parts, format: Format, body: &Bytes) -> Result<(), String> {
    for expected in &state.options.expect_headers {
        let got = parts
            .headers
            .get(expected.name.as_str())
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match (&expected.value, got) {
            (_, None) => return Err(format!("header {} is missing", expected.name)),
            (Some(value), Some(got)) if &got != value => {
                return Err(format!(
                    "header {} is {got:?}, expected {value:?}",
                    expected.name
                ));
            }
            _ => {}
        }
    }
    for forbidden in &state.options.forbid_headers {
        if parts.headers.contains_key(forbidden.as_str()) {
            return Err(format!("header {forbidden} must not reach the upstream"));
        }
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|error| format!("the request body is not JSON: {error}"))?;
    let object = request
        .as_object()
        .ok_or("the request body is not a JSON object")?;
    if !object.get("model").is_some_and(Value::is_string) {
        return Err("the request body has no `model` string".to_owned());
    }
    let field = format.conversation_field();
    if !object
        .get(field)
        .is_some_and(|v| v.is_array() || v.is_string())
    {
        return Err(format!("the request body has no `{field}`"));
    }
    Ok(())
}

/// A deterministic token estimate: characters of every string in the
/// conversation, system prompt and tools, over four.
fn count_tokens(request: &Value) -> u64 {
    fn characters(value: &Value) -> u64 {
        match value {
            Value::String(text) => text.chars().count() as u64,
            Value::Array(items) => items.iter().map(characters).sum(),
            Value::Object(map) => map.values().map(characters).sum(),
            _ => 0,
        }
    }
    let total: u64 = ["messages", "system", "tools"]
        .iter()
        .filter_map(|key| request.get(key))
        .map(characters)
        .sum();
    (total / 4).max(1)
}

fn models() -> Value {
    let ids = [
        "claude-opus-4-20250514",
        "claude-sonnet-4-20250514",
        "claude-3-5-haiku-20241022",
    ];
    let data: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-05-14T00:00:00Z"}))
        .collect();
    json!({"data": data, "has_more": false, "first_id": ids[0], "last_id": ids[ids.len() - 1]})
}

/// Sends `selected`, applying a stream fault; records what went out.
fn answer(
    state: Arc<State>,
    index: usize,
    selected: Selected,
    fault: Option<Fault>,
) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(selected.status).unwrap_or(StatusCode::OK))
        .header("x-mock-sample", selected.source.as_str())
        .header("request-id", format!("req_mock_{index}"));
    let is_stream = matches!(selected.reply, Reply::Events(_));
    let has_type = selected.headers.iter().any(|(k, _)| k == "content-type");
    for (name, value) in &selected.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if !has_type {
        builder = builder.header(
            "content-type",
            if is_stream {
                "text/event-stream; charset=utf-8"
            } else {
                "application/json"
            },
        );
    }
    let kind = fault.as_ref().map(|f| f.kind);
    let status = selected.status;
    let source = selected.source.clone();
    let (frames, reset_after, gap) = match selected.reply {
        Reply::Json(body) => {
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            if kind != Some(FaultKind::ResetMidStream) {
                state.set_response(index, status, &source, &bytes, "completed");
                return builder
                    .body(
                        Full::new(Bytes::from(bytes))
                            .map_err(|e| match e {})
                            .boxed(),
                    )
                    .unwrap_or_else(|_| internal_error());
            }
            let half = bytes.len() / 2;
            (
                vec![bytes[..half].to_vec(), bytes[half..].to_vec()],
                Some(1),
                None,
            )
        }
        Reply::Events(mut events) => {
            if let Some(edit) = fault.as_ref().filter(|f| f.kind == FaultKind::Edit) {
                edit.edit(&mut events);
            }
            let frames: Vec<Vec<u8>> = events.iter().map(Event::encode).collect();
            let fault = fault.as_ref();
            let reset_after = fault
                .filter(|f| f.kind == FaultKind::ResetMidStream)
                .map(|f| f.after_events);
            let gap = fault
                .filter(|f| f.kind == FaultKind::Trickle)
                .map(|f| Duration::from_millis(f.delay_ms));
            (frames, reset_after, gap)
        }
    };
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(produce(
        state,
        index,
        status,
        source,
        frames,
        reset_after,
        gap,
        sender,
    ));
    builder
        .body(ChannelBody(receiver).boxed())
        .unwrap_or_else(|_| internal_error())
}

/// Writes `frames` one by one into the response body, noticing when the client
/// went away before the end.
#[allow(clippy::too_many_arguments)]
async fn produce(
    state: Arc<State>,
    index: usize,
    status: u16,
    source: String,
    frames: Vec<Vec<u8>>,
    reset_after: Option<usize>,
    gap: Option<Duration>,
    sender: mpsc::Sender<Result<Bytes, BoxError>>,
) {
    let mut sent = Vec::new();
    for (number, frame) in frames.into_iter().enumerate() {
        if reset_after == Some(number) {
            // An error ends hyper's connection without the terminating chunk.
            let _ = sender
                .send(Err("mock upstream: connection reset on purpose".into()))
                .await;
            state.set_response(index, status, &source, &sent, "reset");
            return;
        }
        if let (Some(gap), true) = (gap, number > 0) {
            tokio::select! {
                _ = tokio::time::sleep(gap) => {}
                _ = sender.closed() => {
                    state.set_response(index, status, &source, &sent, "cancelled");
                    return;
                }
            }
        }
        sent.extend_from_slice(&frame);
        if sender.send(Ok(Bytes::from(frame))).await.is_err() {
            state.set_response(index, status, &source, &sent, "cancelled");
            return;
        }
        state.touch();
    }
    state.set_response(index, status, &source, &sent, "completed");
}

/// A response body fed by a channel; dropped by hyper when the connection ends.
struct ChannelBody(mpsc::Receiver<Result<Bytes, BoxError>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|next| next.map(|result| result.map(Frame::data)))
    }
}

fn internal_error() -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(b"mock upstream: bad response"))
            .map_err(|e| match e {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// A body sent as it is (a quirk's HTML or text).
fn raw_response((status, content_type, body): quirks::RawAnswer) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .unwrap_or_else(|_| internal_error())
}

fn plain_json(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap_or_else(|_| internal_error())
}

/// The provider's own error body for `status`; `message` empty picks the
/// provider's usual wording.
fn error_response(format: Format, status: u16, message: &str) -> Response<Body> {
    let body = error_body(format, status, message);
    plain_json(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}

/// The error body each provider sends for `status`.
fn error_body(format: Format, status: u16, message: &str) -> Value {
    match format {
        Format::Anthropic => {
            let (kind, usual) = match status {
                400 => ("invalid_request_error", "Invalid request"),
                401 => ("authentication_error", "invalid x-api-key"),
                403 => (
                    "permission_error",
                    "Your API key does not have permission to use the specified resource.",
                ),
                404 => ("not_found_error", "Not found"),
                413 => (
                    "request_too_large",
                    "Request exceeds the maximum allowed number of bytes.",
                ),
                429 => (
                    "rate_limit_error",
                    "Number of request tokens has exceeded your per-minute rate limit",
                ),
                529 => ("overloaded_error", "Overloaded"),
                _ => ("api_error", "Internal server error"),
            };
            let message = if message.is_empty() { usual } else { message };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Format::Responses | Format::Chat => {
            let (kind, code, usual) = match status {
                400 => ("invalid_request_error", Value::Null, "Invalid request"),
                401 => (
                    "invalid_request_error",
                    json!("invalid_api_key"),
                    "Incorrect API key provided",
                ),
                403 => ("invalid_request_error", Value::Null, "Forbidden"),
                404 => ("invalid_request_error", Value::Null, "Not found"),
                429 => (
                    "requests",
                    json!("rate_limit_exceeded"),
                    "Rate limit reached for requests",
                ),
                _ => (
                    "server_error",
                    Value::Null,
                    "The server had an error while processing your request",
                ),
            };
            let message = if message.is_empty() { usual } else { message };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
    }
}

/// Counts a token request by its `grant_type`; returns the kind and its number.
fn count_grant(state: &State, body: &Bytes) -> Option<(String, u64)> {
    let request: Value =
        serde_json::from_slice(body).unwrap_or_else(|_| Value::Object(codex::parse_form(body)));
    let kind = request.get("grant_type")?.as_str()?.to_owned();
    let mut inner = state.inner();
    let counter = match kind.as_str() {
        "authorization_code" => &mut inner.authorization_code,
        "refresh_token" => &mut inner.refresh_token,
        _ => return None,
    };
    *counter += 1;
    Some((kind, *counter))
}

fn oauth_token(state: &State, body: &Bytes, n: u64) -> Response<Body> {
    let fail = |error: &str, description: String| {
        plain_json(
            StatusCode::BAD_REQUEST,
            &json!({"error": error, "error_description": format!("mock upstream: {description}")}),
        )
    };
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return fail(
            "invalid_request",
            "the token request body must be a JSON object".to_owned(),
        );
    };
    let field = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let grant = field("grant_type").unwrap_or_default().to_owned();
    let label = match grant.as_str() {
        "authorization_code" => {
            for required in [
                "code",
                "code_verifier",
                "state",
                "redirect_uri",
                "client_id",
            ] {
                if field(required).is_none() {
                    return fail("invalid_request", format!("`{required}` is missing"));
                }
            }
            if field("code") != Some("good-code") {
                return fail(
                    "invalid_grant",
                    "unknown authorization code (only good-code is accepted)".to_owned(),
                );
            }
            format!("login-{n}")
        }
        "refresh_token" => {
            for required in ["refresh_token", "client_id"] {
                if field(required).is_none() {
                    return fail("invalid_request", format!("`{required}` is missing"));
                }
            }
            format!("refreshed-{n}")
        }
        other => {
            return fail(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not authorization_code or refresh_token"),
            );
        }
    };
    let access = format!("sk-ant-oat01-mock-{label}");
    state.inner().issued.push(access.clone());
    plain_json(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "access_token": access,
            "refresh_token": format!("sk-ant-ort01-mock-{label}"),
            "expires_in": 28800,
            "scope": "user:inference user:profile",
            "account": {"uuid": "00000000-0000-4000-8000-00000000acc7", "email_address": "mock@example.invalid"},
            "organization": {"uuid": "00000000-0000-4000-8000-000000000026", "name": "Mock Organization"},
        }),
    )
}

/// The OAuth profile of a Claude Max account, for a bearer token.
fn profile(parts: &Parts) -> Response<Body> {
    let bearer = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|token| !token.trim().is_empty());
    if bearer.is_none() {
        return error_response(
            Format::Anthropic,
            401,
            "mock upstream: the profile needs `authorization: Bearer <access token>`",
        );
    }
    plain_json(
        StatusCode::OK,
        &json!({
            "account": {
                "uuid": "00000000-0000-4000-8000-00000000acc7", "email": "mock@example.invalid",
                "display_name": "Mock", "has_claude_max": true, "has_claude_pro": false,
            },
            "organization": {
                "uuid": "00000000-0000-4000-8000-000000000026", "name": "Mock Organization",
                "organization_type": "claude_max",
            },
        }),
    )
}

fn control(state: &State, method: &Method, command: &str, body: &Bytes) -> Response<Body> {
    match (method, command) {
        (_, "github") => {
            let (status, answer) = github::control(&state.github, method, body);
            plain_json(
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                &answer,
            )
        }
        (&Method::GET, "requests") => plain_json(
            StatusCode::OK,
            &Value::Array(state.inner().requests.clone()),
        ),
        (&Method::GET, "credentials") => {
            // Requests per credential (`x-api-key`, else the bearer token),
            // so a test sees which account answered.
            let mut counts = serde_json::Map::new();
            for request in &state.inner().requests {
                let headers = &request["headers"];
                let credential = headers["x-api-key"].as_str().or_else(|| {
                    headers["authorization"]
                        .as_str()
                        .and_then(|value| value.strip_prefix("Bearer "))
                });
                if let Some(credential) = credential {
                    let entry = counts.entry(credential.to_owned()).or_insert(json!(0));
                    *entry = json!(entry.as_u64().unwrap_or(0) + 1);
                }
            }
            plain_json(StatusCode::OK, &Value::Object(counts))
        }
        (&Method::POST, "reset") => {
            *state.inner() = Inner::default();
            plain_json(StatusCode::OK, &json!({"reset": true}))
        }
        (&Method::POST, "fault") => match Fault::parse(body) {
            Ok(fault) => {
                let armed = fault.describe();
                let mut inner = state.inner();
                inner.faults.push_back(fault);
                plain_json(
                    StatusCode::OK,
                    &json!({"armed": armed, "queued": inner.faults.len()}),
                )
            }
            Err(message) => plain_json(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("mock upstream: {message}")}),
            ),
        },
        (&Method::POST, "agent") => match agent::Script::parse(body) {
            Ok(script) => {
                let armed = script.describe();
                state.inner().agent = Some(script);
                plain_json(StatusCode::OK, &json!({"agent": armed}))
            }
            Err(message) => plain_json(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("mock upstream: {message}")}),
            ),
        },
        (&Method::POST, "quirks") => match quirks::Quirks::parse(body) {
            Ok(set) => {
                let described = set.describe();
                state.inner().quirks = set;
                plain_json(StatusCode::OK, &json!({"quirks": described}))
            }
            Err(message) => plain_json(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("mock upstream: {message}")}),
            ),
        },
        (&Method::GET, "quirks") => {
            let set = state.options.quirks.union(&state.inner().quirks);
            plain_json(StatusCode::OK, &json!({"quirks": set.describe()}))
        }
        (&Method::DELETE, "quirks") => {
            state.inner().quirks = quirks::Quirks::default();
            plain_json(
                StatusCode::OK,
                &json!({"quirks": state.options.quirks.describe()}),
            )
        }
        (&Method::DELETE, "agent") => {
            state.inner().agent = None;
            plain_json(StatusCode::OK, &json!({"agent": null}))
        }
        (&Method::DELETE, "fault") => {
            state.inner().faults.clear();
            plain_json(StatusCode::OK, &json!({"queued": 0}))
        }
        (&Method::GET, "cancelled") => {
            let inner = state.inner();
            plain_json(
                StatusCode::OK,
                &json!({"cancelled": inner.cancelled, "completed": inner.completed, "reset": inner.reset}),
            )
        }
        (&Method::GET, "oauth") => {
            let inner = state.inner();
            plain_json(
                StatusCode::OK,
                &json!({"authorization_code": inner.authorization_code, "refresh_token": inner.refresh_token, "issued": inner.issued}),
            )
        }
        (&Method::POST, "shutdown") => {
            state.stop();
            plain_json(StatusCode::OK, &json!({"shutting_down": true}))
        }
        _ => plain_json(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("mock upstream: no control endpoint {method} /_mock/{command}; see the crate docs of ccproxy-mock-upstream")}),
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    Delay,
    Status,
    ResetMidStream,
    Trickle,
    Edit,
}

#[derive(Debug, Clone)]
struct Fault {
    kind: FaultKind,
    status: u16,
    body: Option<Value>,
    delay_ms: u64,
    after_events: usize,
    count: u64,
    path: Option<String>,
    retry_after: Option<String>,
    /// Only requests with this credential (`x-api-key`, or the token of
    /// `authorization: Bearer`); every request when `None`.
    credential: Option<String>,
    /// `edit`: the events it changes (by `event:` name; all when `None`).
    event: Option<String>,
    /// `edit`: the JSON pointer into each event's data it sets or removes.
    pointer: Option<String>,
    /// `edit`: the value set at `pointer`; `None` removes it.
    value: Option<Value>,
    /// `edit`: send the changed events without their `event:` line.
    anonymous: bool,
}

impl Fault {
    fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|error| format!("the fault is not JSON: {error}"))?;
        let kind = match value.get("kind").and_then(Value::as_str) {
            Some("delay") => FaultKind::Delay,
            Some("status") => FaultKind::Status,
            Some("reset_mid_stream") => FaultKind::ResetMidStream,
            Some("trickle") => FaultKind::Trickle,
            Some("edit") => FaultKind::Edit,
            other => {
                return Err(format!(
                    "fault kind {other:?} is not one of delay, status, reset_mid_stream, trickle, edit"
                ));
            }
        };
        let number = |key: &str, default: u64| -> Result<u64, String> {
            match value.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| format!("`{key}` must be a non-negative integer, got {v}")),
            }
        };
        let status = u16::try_from(number("status", 500)?)
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or("`status` must be an HTTP status code")?;
        let count = number("count", 1)?;
        if count == 0 {
            return Err("`count` must be at least 1".to_owned());
        }
        let default_delay = if kind == FaultKind::Trickle {
            100
        } else {
            1000
        };
        Ok(Self {
            kind,
            status,
            body: value.get("body").filter(|b| !b.is_null()).cloned(),
            delay_ms: number("delay_ms", default_delay)?,
            after_events: usize::try_from(number("after_events", 1)?).unwrap_or(usize::MAX),
            count,
            path: value.get("path").and_then(Value::as_str).map(str::to_owned),
            credential: value
                .get("credential")
                .and_then(Value::as_str)
                .map(str::to_owned),
            retry_after: match value.get("retry_after") {
                Some(Value::String(text)) => Some(text.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            },
            event: value
                .get("event")
                .and_then(Value::as_str)
                .map(str::to_owned),
            pointer: match value.get("pointer") {
                None | Some(Value::Null) => None,
                Some(Value::String(pointer)) if pointer.starts_with('/') => Some(pointer.clone()),
                Some(other) => {
                    return Err(format!(
                        "`pointer` must be a JSON pointer such as \"/response/output\", got {other}"
                    ));
                }
            },
            value: value.get("value").cloned(),
            anonymous: value.get("anonymous").and_then(Value::as_bool) == Some(true),
        })
    }

    /// Applies an `edit` fault to a stream: sets or removes `pointer` in the
    /// data of each matching event, and drops their names when `anonymous`.
    fn edit(&self, events: &mut [Event]) {
        for event in events.iter_mut() {
            if self
                .event
                .as_ref()
                .is_some_and(|only| event.name.as_ref() != Some(only))
            {
                continue;
            }
            if let Some(pointer) = &self.pointer
                && let Ok(mut data) = serde_json::from_str::<Value>(&event.data)
            {
                edit_at(&mut data, pointer, self.value.clone());
                event.data = data.to_string();
            }
            if self.anonymous {
                event.name = None;
            }
        }
    }

    fn describe(&self) -> Value {
        json!({
            "kind": match self.kind {
                FaultKind::Delay => "delay",
                FaultKind::Status => "status",
                FaultKind::ResetMidStream => "reset_mid_stream",
                FaultKind::Trickle => "trickle",
                FaultKind::Edit => "edit",
            },
            "status": self.status, "body": self.body, "delay_ms": self.delay_ms,
            "after_events": self.after_events, "count": self.count, "path": self.path,
            "retry_after": self.retry_after, "credential": self.credential.as_deref().map(|_| "***"), "event": self.event, "pointer": self.pointer,
            "value": self.value, "anonymous": self.anonymous,
        })
    }
}

/// Sets `value` at JSON `pointer` in `data` (its parent must exist), or
/// removes what is there when `value` is `None`.
fn edit_at(data: &mut Value, pointer: &str, value: Option<Value>) {
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let key = last.replace("~1", "/").replace("~0", "~");
    let Some(parent) = data.pointer_mut(parent) else {
        return;
    };
    match (parent, value) {
        (Value::Object(object), Some(value)) => {
            object.insert(key, value);
        }
        (Value::Object(object), None) => {
            object.remove(&key);
        }
        (Value::Array(items), value) => {
            if let Ok(index) = key.parse::<usize>()
                && index < items.len()
            {
                match value {
                    Some(value) => items[index] = value,
                    None => {
                        items.remove(index);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The address in a `mock upstream listening on http://ADDRESS` line.
pub fn listening_address(line: &str) -> Option<SocketAddr> {
    line.split("listening on http://")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_with_defaults_and_clear_errors() {
        let fault = Fault::parse(br#"{"kind": "trickle"}"#).unwrap();
        assert_eq!(
            (fault.kind, fault.delay_ms, fault.count),
            (FaultKind::Trickle, 100, 1)
        );
        let fault =
            Fault::parse(br#"{"kind": "status", "status": 429, "count": 2, "retry_after": 7}"#)
                .unwrap();
        assert_eq!(
            (fault.status, fault.count, fault.retry_after.as_deref()),
            (429, 2, Some("7"))
        );
        let error = Fault::parse(br#"{"kind": "explode"}"#).unwrap_err();
        assert!(error.contains("reset_mid_stream"), "{error}");
        assert!(Fault::parse(br#"{"kind": "delay", "count": 0}"#).is_err());
        assert!(Fault::parse(br#"{"kind": "status", "status": 7}"#).is_err());
    }

    #[test]
    fn error_bodies_are_the_providers_own() {
        let body = error_body(Format::Anthropic, 529, "");
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "overloaded_error");
        let body = error_body(Format::Chat, 429, "slow down");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["message"], "slow down");
    }

    #[test]
    fn token_estimates_are_deterministic() {
        let request = json!({"messages": [{"role": "user", "content": "12345678"}]});
        // "user" + "12345678" = 12 characters.
        assert_eq!(count_tokens(&request), 3);
        assert_eq!(count_tokens(&json!({})), 1);
    }

    #[test]
    fn edit_faults_set_or_remove_a_field_and_can_drop_names() {
        let fault = Fault::parse(
            br#"{"kind": "edit", "event": "response.completed", "pointer": "/response/output", "anonymous": true}"#,
        )
        .unwrap();
        let mut events = vec![
            Event {
                name: Some("response.created".to_owned()),
                data: r#"{"response":{"output":[]}}"#.to_owned(),
            },
            Event {
                name: Some("response.completed".to_owned()),
                data: r#"{"response":{"id":"r","output":[1]}}"#.to_owned(),
            },
        ];
        fault.edit(&mut events);
        assert_eq!(events[0].name.as_deref(), Some("response.created"));
        assert_eq!(events[0].data, r#"{"response":{"output":[]}}"#);
        assert_eq!(events[1].name, None);
        assert_eq!(events[1].data, r#"{"response":{"id":"r"}}"#);
        let fault =
            Fault::parse(br#"{"kind": "edit", "pointer": "/response/output", "value": []}"#)
                .unwrap();
        fault.edit(&mut events);
        assert_eq!(events[1].data, r#"{"response":{"id":"r","output":[]}}"#);
        assert!(Fault::parse(br#"{"kind": "edit", "pointer": "response"}"#).is_err());
    }

    #[test]
    fn reads_the_listening_line() {
        assert_eq!(
            listening_address("mock upstream listening on http://127.0.0.1:9"),
            Some("127.0.0.1:9".parse().unwrap())
        );
    }
}
