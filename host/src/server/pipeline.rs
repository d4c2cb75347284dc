//! The life of one client request, as a fixed sequence of small steps.
//!
//! 1. request id: taken from `x-request-id` when sane, else generated;
//! 2. `request.started` observed (only built when someone listens);
//! 3. route lookup, then the browser guard (a `Host` that is not ours, a
//!    foreign `Origin`: 403; a configured origin's CORS preflight: 204) and
//!    the client's token when `security.auth_token` is set (401, for unknown
//!    paths too): all before any plugin code runs;
//! 4. plugin middleware, request side, by layer (may answer early);
//! 5. 404 / 405 with a JSON body when nothing matched;
//! 6. on provider endpoints, a JSON content type (415 otherwise); the body
//!    read under `server.max_request_body_bytes` (413 beyond it) with its
//!    share of `server.body_budget_bytes` (503 when the budget is full), held
//!    until the route is done with the body;
//! 7. the route: a core endpoint, the provider path or the plugin's `route.handle`;
//! 8. plugin middleware, response side, in reverse order, for the layers entered;
//! 9. CORS headers for a configured origin; `x-request-id`, `server` and
//!    `server-timing` headers;
//! 10. `request.completed` or `request.failed` observed.
//!
//! Everything a request does is inside its `request` span (by
//! [`Instrument`], never a guard held across an `.await`, which would lend
//! the span to whatever else the worker thread runs meanwhile).

use std::{net::SocketAddr, sync::Arc, time::Instant};

use bytes::Bytes;
use ccproxy_plugin_abi::HookBody;
use ccproxy_plugin_abi::HookEvent;
use ccproxy_plugin_abi::protocol::{
    MiddlewareRequestInput, MiddlewareResponseInput, RequestHead, ResponseHead, RouteInput, ops,
};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tracing::Instrument;

use super::{
    App,
    body_budget::BodyPermit,
    endpoints, plugin_stream,
    provider::{self, Origin, ProviderAnswer, ProviderOutcome, ProxyError},
    response::{Body, error_response, full, on_end},
    router::{Lookup, Target},
};
use crate::{plugins::handle::CallErrorKind, telemetry::redact_header};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Handles one request; never fails (every error is a response).
pub async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let method = request.method().as_str().to_owned();
    let http_version = http_version_name(request.version());
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    // A root span: it never nests in whatever happens to be current.
    let span = tracing::debug_span!(parent: None, "request", request_id = %request_id, method = %method, path = %path);
    let work = handle_in_span(
        app,
        request,
        remote,
        Facts {
            started,
            request_id,
            method,
            http_version,
            path,
            query,
            span: span.clone(),
        },
    );
    work.instrument(span).await
}

/// What [`handle`] learnt of the request before its span was entered.
struct Facts {
    started: Instant,
    request_id: String,
    method: String,
    http_version: &'static str,
    path: String,
    query: String,
    span: tracing::Span,
}

async fn handle_in_span(
    app: Arc<App>,
    request: Request<Incoming>,
    remote: SocketAddr,
    facts: Facts,
) -> Response<Body> {
    let Facts {
        started,
        request_id,
        method,
        http_version,
        path,
        query,
        span,
    } = facts;
    let hooks = &app.shared.hooks;
    hooks.observe(HookEvent::RequestStarted, Some(&request_id), || {
        json!({
            "request_id": request_id, "method": method, "path": path, "query": query,
            "http_version": http_version,
            "url": request.uri().to_string(), "client_ip": remote.ip().to_string(),
            "headers": masked_headers(request.headers()),
        })
    });
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Copied for the end-of-request events only when a hook there reads them.
    let completed_headers = (hooks.reads_key(&HookEvent::RequestCompleted, "headers")
        || hooks.reads_key(&HookEvent::RequestFailed, "headers"))
    .then(|| MaskedHeaders::capture(request.headers()));

    // The client's body for the hooks that asked for it (plugin API 1.2).
    let mut request_body = (hooks.wants_body(&HookEvent::RequestCompleted, HookBody::RequestBody)
        || hooks.wants_body(&HookEvent::RequestFailed, HookBody::RequestBody))
    .then(Bytes::new);
    // Until the route answers, a client that leaves (hyper then drops this
    // future) still ends its request with `request.failed`.
    let mut pending = Pending(Some(Completion {
        span,
        hooks: app.shared.hooks.clone(),
        request_id,
        method,
        http_version,
        path,
        query,
        client_ip: remote.ip().to_string(),
        user_agent,
        headers: completed_headers,
        status: CLIENT_CLOSED_REQUEST,
        started,
        ttfb_ms: 0.0,
        streamed: false,
        error: Some("the client went away before the answer began".to_owned()),
        answer: None,
        request_body: None,
    }));
    let facts = pending.0.as_ref().expect("set just above");
    let mut response = route(
        &app,
        request,
        &facts.request_id,
        &facts.method,
        &facts.path,
        &facts.query,
        &mut request_body,
    )
    .await;
    let mut completion = pending.0.take().expect("taken only here");

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&completion.request_id) {
        headers.insert(REQUEST_ID, value);
    }
    headers.insert(header::SERVER, HeaderValue::from_static("ccproxy"));
    // The proxy's own cost, visible in any client (for streams: to the first byte).
    let total = started.elapsed();
    let timing = match ProviderOutcome::of(&response).and_then(|o| o.upstream_time) {
        Some(upstream) => format!(
            "proxy;dur={:.3}, upstream;dur={:.3}",
            total.saturating_sub(upstream).as_secs_f64() * 1e3,
            upstream.as_secs_f64() * 1e3
        ),
        None => format!("proxy;dur={:.3}", total.as_secs_f64() * 1e3),
    };
    if let Ok(value) = HeaderValue::from_str(&timing) {
        response.headers_mut().insert("server-timing", value);
    }
    let status = response.status().as_u16();
    let outcome = ProviderOutcome::of(&response);
    let answer = outcome.and_then(|o| o.answer.clone());
    let error = response
        .extensions()
        .get::<FailureNote>()
        .map(|n| n.0.clone())
        .or_else(|| outcome.and_then(|o| o.failure.clone()));
    // A body of unknown length (a provider's or a plugin's stream) is
    // complete only when its last byte has gone.
    let exact_length = http_body::Body::size_hint(response.body()).exact();
    completion.status = status;
    completion.ttfb_ms = total.as_secs_f64() * 1e3;
    completion.streamed = exact_length.is_none();
    completion.error = error;
    completion.answer = answer;
    completion.request_body = request_body;
    if exact_length.is_none() {
        let body = std::mem::replace(response.body_mut(), full(Bytes::new()));
        *response.body_mut() = on_end(body, move |bytes_sent, finished| {
            completion.emit(bytes_sent, finished)
        });
    } else {
        completion.emit(exact_length.unwrap_or(0), true);
    }
    response
}

/// The status `request.failed` reports for a request whose client left before
/// the answer began (nginx's 499, "client closed request").
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A request's [`Completion`] while its route has not answered; emitted as
/// failed if the request is dropped then (the client went away).
struct Pending(Option<Completion>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(completion) = self.0.take() {
            completion.emit(0, false);
        }
    }
}

/// What `request.completed` needs, kept until the response body has been sent.
struct Completion {
    /// The request's span: a stream ends outside the request's future.
    span: tracing::Span,
    hooks: Arc<crate::hooks::HookBus>,
    request_id: String,
    method: String,
    http_version: &'static str,
    path: String,
    query: String,
    client_ip: String,
    user_agent: String,
    headers: Option<MaskedHeaders>,
    status: u16,
    started: Instant,
    /// When the response head was ready (the first byte, for a stream).
    ttfb_ms: f64,
    /// The body was sent as it was produced (a stream), not at once.
    streamed: bool,
    error: Option<String>,
    /// Set on a provider endpoint's answer.
    answer: Option<ProviderAnswer>,
    /// The client's body, when a hook asked for it.
    request_body: Option<Bytes>,
}

impl Completion {
    fn emit(self, bytes_sent: u64, finished: bool) {
        let duration_ms = self.started.elapsed().as_secs_f64() * 1e3;
        let error = self.error.or_else(|| {
            (!finished).then(|| "the client went away before the response ended".to_owned())
        });
        let event = if error.is_some() {
            HookEvent::RequestFailed
        } else {
            HookEvent::RequestCompleted
        };
        self.span.in_scope(|| {
            tracing::debug!(
                status = self.status,
                duration_ms,
                bytes_sent,
                "request done"
            );
        });
        super::request_line::print(&self.method, &self.path, self.status, duration_ms);
        let Completion {
            hooks,
            request_id,
            method,
            http_version,
            path,
            query,
            client_ip,
            user_agent,
            headers,
            status,
            answer,
            ttfb_ms,
            streamed,
            request_body,
            ..
        } = self;
        let data = || CompletedData {
            bytes_sent,
            client_ip: &client_ip,
            duration_ms,
            error: error.as_deref(),
            headers: headers.as_ref(),
            http_version,
            method: &method,
            model: answer.as_ref().and_then(|a| {
                a.model_at_end
                    .get()
                    .map(String::as_str)
                    .or(a.model.as_deref())
            }),
            path: &path,
            provider: answer.as_ref().map(|a| a.provider.as_str()),
            query: &query,
            request_id: &request_id,
            response_status: status,
            status_code: status,
            streaming: streamed,
            url: if query.is_empty() {
                std::borrow::Cow::Borrowed(path.as_str())
            } else {
                std::borrow::Cow::Owned(format!("{path}?{query}"))
            },
            ttfb_ms,
            usage: answer.as_ref().and_then(|a| a.usage.get().copied()),
            user_agent: &user_agent,
        };
        hooks.observe_with_body(
            event,
            Some(&request_id),
            data,
            HookBody::RequestBody,
            || request_body.unwrap_or_default(),
        );
    }
}

/// The data of `request.completed` and `request.failed`, serialised straight
/// from borrowed fields instead of through a `Value` (keys in the alphabetical
/// order `json!` writes them in).
#[derive(serde::Serialize)]
struct CompletedData<'a> {
    bytes_sent: u64,
    client_ip: &'a str,
    duration_ms: f64,
    error: Option<&'a str>,
    /// The client's headers, when a hook reads them (`HookBus::reads_key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<&'a MaskedHeaders>,
    http_version: &'a str,
    method: &'a str,
    model: Option<&'a str>,
    path: &'a str,
    provider: Option<&'a str>,
    query: &'a str,
    request_id: &'a str,
    response_status: u16,
    status_code: u16,
    streaming: bool,
    /// Milliseconds until the response head was ready: the time to the first
    /// byte of a stream.
    ttfb_ms: f64,
    url: std::borrow::Cow<'a, str>,
    /// The answer's token usage, `null` when unknown.
    usage: Option<ccproxy_formats::convert::TokenUsage>,
    user_agent: &'a str,
}

/// The protocol as access logs write it.
fn http_version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Marks a response as a failed request (for `request.failed`).
#[derive(Clone)]
struct FailureNote(String);

fn fail(mut response: Response<Body>, note: String) -> Response<Body> {
    response.extensions_mut().insert(FailureNote(note));
    response
}

async fn route(
    app: &Arc<App>,
    request: Request<Incoming>,
    request_id: &str,
    method: &str,
    path: &str,
    query: &str,
    request_body: &mut Option<Bytes>,
) -> Response<Body> {
    let lookup = app.routes.lookup(method, path);
    let target = match &lookup {
        Lookup::Found(target, _) => Some(*target),
        _ => None,
    };
    // A web page that is not ours, and unauthenticated requests, never reach
    // plugin code, middleware included, whatever the path.
    let cors_origin = match browser_guard(app, target, &request, method, path) {
        Guard::Pass { cors_origin } => cors_origin,
        Guard::Answer(answer) => return answer,
    };
    let mut response = match check_client_auth(app, target, request.headers(), path) {
        Some(denied) => denied,
        None => {
            route_authenticated(
                app,
                lookup,
                request,
                request_id,
                method,
                path,
                query,
                request_body,
            )
            .await
        }
    };
    if let Some(origin) = cors_origin {
        add_cors_headers(response.headers_mut(), origin);
    }
    response
}

#[allow(clippy::too_many_arguments)]
async fn route_authenticated(
    app: &Arc<App>,
    lookup: Lookup<'_>,
    request: Request<Incoming>,
    request_id: &str,
    method: &str,
    path: &str,
    query: &str,
    request_body: &mut Option<Bytes>,
) -> Response<Body> {
    // The protocol's owned copy of the request head (every header as two
    // strings) is made only for plugin middleware and plain plugin routes; the
    // provider path otherwise reads the request's own header map.
    let (parts, body) = request.into_parts();
    let owned_head = || RequestHead {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        request_id: request_id.to_owned(),
    };
    // `/health*` never reaches plugin code, middleware included: a stuck
    // plugin must not make the server look dead to its supervisor.
    let mut head = (!app.middleware.is_empty() && !is_health(path)).then(owned_head);

    // Middleware, request side, outermost (lowest layer) first. Every request
    // but `/health*` passes through them, unknown routes too (a security layer
    // sees scanners); one that answers early sends its answer back out through
    // the layers before it only.
    let (entered, early) = match head.as_mut() {
        Some(head) => request_middleware(app, head).await,
        None => (0, None),
    };
    // The provider path's view of the request: the owned head when middleware
    // made one, else the request's own header map.
    let client_request = || match &head {
        Some(head) => provider::ClientRequest::of_head(head),
        None => provider::ClientRequest {
            method,
            path,
            query,
            headers: provider::ClientHeaders::Map(&parts.headers),
            request_id,
        },
    };

    // The targets' futures are boxed: each is several KiB (a provider
    // request's 7.8), and held inline they made every request's future
    // 13 KiB, copied at each move (9 k instructions of `memcpy` a request).
    let response = match early {
        Some(response) => response,
        None => match lookup {
            Lookup::MethodNotAllowed(allowed) => method_not_allowed(method, path, &allowed),
            Lookup::NotFound => super::not_found::response(app, method, path),
            Lookup::Found(target, params) => match target.clone() {
                Target::Core(core) => endpoints::handle(app, core, &params).await,
                Target::Plugin {
                    plugin, pattern, ..
                } => match read_body(app, body).await {
                    // The body's share of `server.body_budget_bytes` is held
                    // until the plugin has answered.
                    Ok((body, _budget)) => {
                        keep_for_hooks(request_body, &body);
                        let head = head.get_or_insert_with(owned_head);
                        Box::pin(call_route(app, &plugin, &pattern, head, params, body)).await
                    }
                    Err(refused) => refused.response(None),
                },
                Target::Provider { plugin, route } => {
                    // Provider endpoints speak JSON: a form or text/plain post
                    // (what a page can send without a preflight) is refused.
                    let body = match require_json(method, &parts.headers) {
                        Ok(()) => read_body(app, body).await,
                        Err(message) => Err(BodyRefused {
                            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            message,
                        }),
                    };
                    match body {
                        // The body's share of the budget is held until the
                        // upstream has answered (its head, for a stream).
                        Ok((body, _budget)) => {
                            keep_for_hooks(request_body, &body);
                            let client = client_request();
                            Box::pin(provider::handle(app, &plugin, &route, &client, body)).await
                        }
                        Err(refused) => refused.response(Some(route.client)),
                    }
                }
                // A plugin's wire format in front of a provider endpoint (plugin API 1.2).
                Target::Adapted {
                    adapter,
                    provider,
                    route,
                } => match read_body(app, body).await {
                    Ok((body, _budget)) => {
                        keep_for_hooks(request_body, &body);
                        let client = client_request();
                        Box::pin(super::adapted::handle(
                            app, &adapter, &provider, &route, &client, body,
                        ))
                        .await
                    }
                    Err(refused) => refused.response(None),
                },
            },
        },
    };

    match head.as_ref() {
        Some(head) => response_middleware(app, head, entered, response).await,
        None => response,
    }
}

/// Keeps a reference to the request body when a hook asked for it (`slot` is
/// `Some`); `Bytes` are shared, not copied.
fn keep_for_hooks(slot: &mut Option<Bytes>, body: &Bytes) {
    if let Some(slot) = slot {
        *slot = body.clone();
    }
}

fn method_not_allowed(method: &str, path: &str, allowed: &[String]) -> Response<Body> {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!(
            "{method} is not allowed on {path}; use {}",
            allowed.join(", ")
        ),
    );
    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Runs the request side of every middleware in layer order. Returns how many
/// were entered (their response side runs) and the early answer, if one gave
/// it or failed.
async fn request_middleware(app: &App, head: &mut RequestHead) -> (usize, Option<Response<Body>>) {
    for (index, middleware) in app.middleware.iter().enumerate() {
        let input = MiddlewareRequestInput {
            middleware: middleware.name.clone(),
            request: head.clone(),
        };
        match middleware
            .plugin
            .handle
            .call_with_timeout::<ops::MiddlewareRequest>(
                &input,
                Vec::new(),
                app.shared.config.server.plugin_call_timeout(),
            )
            .await
        {
            Ok(reply) => {
                if let Some(respond) = reply.meta.respond {
                    return (index, Some(plugin_response(respond, reply.body)));
                }
                for (name, value) in reply.meta.set_headers {
                    head.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
                    head.headers.push((name.to_ascii_lowercase(), value));
                }
            }
            Err(error) => {
                let name = &middleware.plugin.manifest.name;
                let (error_type, message) = match error.kind {
                    // Its message names the plugin and the operation already.
                    CallErrorKind::TimedOut => ("timeout_error", error.message.clone()),
                    _ => (
                        "middleware_error",
                        format!(
                            "middleware {} of plugin {name} failed: {}",
                            middleware.name, error.message
                        ),
                    ),
                };
                let response = fail(
                    error_response(
                        StatusCode::from_u16(error.http_status())
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        error_type,
                        &message,
                    ),
                    error.message,
                );
                return (index, Some(response));
            }
        }
    }
    (app.middleware.len(), None)
}

/// Runs the response side of the first `entered` middleware, innermost first.
async fn response_middleware(
    app: &App,
    head: &RequestHead,
    entered: usize,
    mut response: Response<Body>,
) -> Response<Body> {
    for middleware in app.middleware[..entered]
        .iter()
        .rev()
        .filter(|m| m.on_response)
    {
        let input = MiddlewareResponseInput {
            middleware: middleware.name.clone(),
            request: head.clone(),
            response: ResponseHead {
                status: response.status().as_u16(),
                headers: response
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                stream: None,
                answered_by: None,
                usage: None,
            },
        };
        match middleware
            .plugin
            .handle
            .call_with_timeout::<ops::MiddlewareResponse>(
                &input,
                Vec::new(),
                app.shared.config.server.plugin_call_timeout(),
            )
            .await
        {
            Ok(reply) => {
                if let Ok(status) = StatusCode::from_u16(reply.meta.status) {
                    *response.status_mut() = status;
                }
                let headers = response.headers_mut();
                headers.clear();
                append_headers(headers, reply.meta.headers);
            }
            Err(error) => {
                tracing::warn!(plugin = %middleware.plugin.manifest.name, middleware = %middleware.name, %error, "response middleware failed; response sent unchanged")
            }
        }
    }
    response
}

/// Reads the whole request body under `server.max_request_body_bytes`, with
/// its share of `server.body_budget_bytes` (see [`super::body_budget`]): reserved
/// before the first byte is read when the client announced the length (a body
/// that does not fit is refused unread), else grown as the body arrives.
///
/// The body lands in one buffer sized from `Content-Length`, each piece
/// copied in as it arrives and dropped: a body costs its size once while
/// read, not its pieces plus a contiguous copy at the end.
async fn read_body(app: &App, mut body: Incoming) -> Result<(Bytes, BodyPermit), BodyRefused> {
    let limit = app.shared.config.server.max_request_body_bytes;
    let too_large = || BodyRefused {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "request body exceeds {limit} bytes; raise server.max_request_body_bytes if this is intended"
        ),
    };
    let announced = http_body::Body::size_hint(&body).exact();
    if announced.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let budget = &app.body_budget;
    let budget_full = || {
        let budget_bytes = app.shared.config.server.body_budget_bytes;
        let in_flight = budget.in_flight_bytes();
        tracing::warn!(
            in_flight_bytes = in_flight,
            body_budget_bytes = budget_bytes,
            "request refused: the budget of request bodies in flight is full"
        );
        BodyRefused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "the proxy holds {in_flight} bytes of request bodies in flight, and this body does not fit in server.body_budget_bytes ({budget_bytes}); retry shortly, or raise server.body_budget_bytes (env SERVER__BODY_BUDGET_BYTES)"
            ),
        }
    };
    let mut permit = budget
        .try_reserve(announced.unwrap_or(0))
        .map_err(|_| budget_full())?;
    // Bounded by the limit checked above.
    let mut buffer: Vec<u8> = Vec::new();
    let mut single: Option<Bytes> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| BodyRefused {
            status: StatusCode::BAD_REQUEST,
            message: format!("could not read the request body: {error}"),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let read = (buffer.len() + single.as_ref().map_or(0, Bytes::len)) as u64;
        let total = read + data.len() as u64;
        if total > limit {
            return Err(too_large());
        }
        if announced.is_none() {
            permit.grow_to(total).map_err(|_| budget_full())?;
        }
        // A body in one piece (most are small) is kept as it came, uncopied.
        if read == 0 && announced.is_some_and(|length| length == total) {
            single = Some(data);
            continue;
        }
        if let Some(first) = single.take() {
            buffer.extend_from_slice(&first);
        }
        if buffer.capacity() == 0 {
            let expected = announced.unwrap_or(total).max(total);
            buffer.reserve_exact(usize::try_from(expected).unwrap_or(usize::MAX));
        }
        buffer.extend_from_slice(&data);
    }
    let body = match single {
        Some(single) => single,
        None => Bytes::from(buffer),
    };
    Ok((body, permit))
}

/// Why a request body was not read: an answer in the route's format.
struct BodyRefused {
    status: StatusCode,
    message: String,
}

impl BodyRefused {
    /// The answer: in the client's API format on a provider endpoint, else
    /// the host's; a full budget says when to retry.
    fn response(self, client: Option<ccproxy_formats::Format>) -> Response<Body> {
        let mut response = match client {
            Some(format) => {
                // A full budget is the proxy's own limit, the rest the client's.
                let origin = if self.status == StatusCode::SERVICE_UNAVAILABLE {
                    Origin::Internal
                } else {
                    Origin::Client
                };
                ProxyError::new(origin, self.status, self.message).into_response(format)
            }
            None => {
                let error_type = if self.status == StatusCode::SERVICE_UNAVAILABLE {
                    "overloaded_error"
                } else {
                    "invalid_request_error"
                };
                error_response(self.status, error_type, &self.message)
            }
        };
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

async fn call_route(
    app: &App,
    plugin: &Arc<crate::plugins::registry::ActivePlugin>,
    pattern: &str,
    head: &RequestHead,
    params: Vec<(String, String)>,
    body: Bytes,
) -> Response<Body> {
    let input = RouteInput {
        head: head.clone(),
        route: pattern.to_owned(),
        params,
    };
    match plugin
        .handle
        // The plugin takes an owned buffer: moved when nothing else holds it.
        // The head may take as long as a whole request (a plugin may answer
        // slowly); a streamed answer's pieces have no limit of their own.
        .call_with_timeout::<ops::Route>(
            &input,
            Vec::from(body),
            app.shared.config.server.request_timeout(),
        )
        .await
    {
        Ok(mut reply) => {
            // A provider-like route's answer (plugin API 1.3): counted in
            // `request.completed` as a provider endpoint's is.
            let answered_by = reply.meta.answered_by.take();
            let head_usage = reply.meta.usage.take();
            let answer = (answered_by.is_some() || head_usage.is_some()).then(|| {
                let usage = provider::UsageSlot::default();
                if let Some(head_usage) = head_usage {
                    let _ = usage.set(token_usage(head_usage));
                }
                let (provider, model) = match answered_by {
                    Some(by) => (by.provider, by.model),
                    None => (plugin.manifest.name.clone(), None),
                };
                ProviderAnswer {
                    provider,
                    model,
                    streaming: reply.meta.stream.is_some(),
                    usage,
                    model_at_end: Arc::default(),
                }
            });
            let mut response = match reply.meta.stream {
                Some(stream) => {
                    let mut response = plugin_response(reply.meta, Vec::new());
                    *response.body_mut() =
                        plugin_stream::body(plugin.clone(), stream, reply.body, answer.clone());
                    response
                }
                None => plugin_response(reply.meta, reply.body),
            };
            if answer.is_some() {
                ProviderOutcome::of_mut(&mut response).answer = answer;
            }
            response
        }
        Err(error) => {
            let name = &plugin.manifest.name;
            let (error_type, message) = match error.kind {
                CallErrorKind::Panicked => {
                    app.shared.hooks.observe(
                        HookEvent::PluginError,
                        Some(&head.request_id),
                        || json!({"plugin": name, "error": error.message, "route": pattern}),
                    );
                    (
                        "plugin_panicked",
                        format!(
                            "plugin {name} panicked while handling {} {}: {}; this request failed, the server keeps serving",
                            head.method, head.path, error.message
                        ),
                    )
                }
                CallErrorKind::Plugin(kind) => (error_type_of(kind), error.message.clone()),
                CallErrorKind::TimedOut => ("timeout_error", error.message.clone()),
                _ => ("plugin_error", format!("plugin {name}: {}", error.message)),
            };
            let status = StatusCode::from_u16(error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            fail(error_response(status, error_type, &message), message)
        }
    }
}

/// A route's reported usage as the host's hooks write it.
pub(crate) fn token_usage(
    usage: ccproxy_plugin_abi::protocol::TokenUsage,
) -> ccproxy_formats::convert::TokenUsage {
    ccproxy_formats::convert::TokenUsage {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cache_read_input_tokens: usage.cache_read_input_tokens,
        cache_creation_input_tokens: usage.cache_creation_input_tokens,
        reasoning_tokens: usage.reasoning_tokens,
    }
}

fn error_type_of(kind: ccproxy_plugin_abi::ErrorKind) -> &'static str {
    use ccproxy_plugin_abi::ErrorKind::*;
    match kind {
        Invalid => "invalid_request_error",
        Unauthorized => "authentication_error",
        Forbidden => "permission_error",
        NotFound => "not_found_error",
        RateLimited => "rate_limit_error",
        Upstream => "upstream_error",
        Timeout => "timeout_error",
        Unavailable | NotInitialized => "service_unavailable",
        _ => "api_error",
    }
}

fn plugin_response(head: ResponseHead, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() =
        StatusCode::from_u16(head.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    append_headers(response.headers_mut(), head.headers);
    response
}

fn append_headers(headers: &mut http::HeaderMap, pairs: Vec<(String, String)>) {
    for (name, value) in pairs {
        // Framing headers are the server's business, not the plugin's.
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(header = %name, "plugin returned an invalid header; dropped"),
        }
    }
}

/// Request headers kept for `request.completed`: captured without copying
/// (header values share the request's buffer) and written when the event is,
/// exactly as [`masked_headers`] builds them: one key per name, the last
/// value of a repeated name, names in order, secrets masked.
struct MaskedHeaders(Vec<(HeaderName, HeaderValue)>);

impl MaskedHeaders {
    fn capture(headers: &http::HeaderMap) -> Self {
        Self(
            headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        )
    }
}

impl serde::Serialize for MaskedHeaders {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut last = std::collections::BTreeMap::new();
        for (name, value) in &self.0 {
            last.insert(name.as_str(), value);
        }
        let mut map = serializer.serialize_map(Some(last.len()))?;
        for (name, value) in last {
            map.serialize_entry(
                name,
                &redact_header(name, &String::from_utf8_lossy(value.as_bytes())),
            )?;
        }
        map.end()
    }
}

fn masked_headers(headers: &http::HeaderMap) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                serde_json::Value::String(redact_header(
                    name.as_str(),
                    &String::from_utf8_lossy(value.as_bytes()),
                )),
            )
        })
        .collect();
    serde_json::Value::Object(map)
}

/// `/health`, `/health/live`, `/health/ready`: answered to anyone (no token,
/// no `Host` or `Origin` check), since they reveal nothing worth protecting
/// and monitors reach them by every sort of name.
fn is_health(path: &str) -> bool {
    path == "/health" || path.starts_with("/health/")
}

/// With `security.auth_token` set, every route but `/health*` and the routes
/// plugins declare public needs the token, unknown paths included (an
/// unauthenticated client learns nothing about which paths exist, and plugin
/// middleware never sees it), as `Authorization: Bearer` (the scheme in any
/// case) or `x-api-key` (what the Anthropic SDK and Claude Code send),
/// compared in constant time.
fn check_client_auth(
    app: &App,
    target: Option<&Target>,
    headers: &http::HeaderMap,
    path: &str,
) -> Option<Response<Body>> {
    let token = app
        .shared
        .config
        .security
        .auth_token
        .as_ref()
        .filter(|t| !t.is_empty())?;
    if is_health(path) || matches!(target, Some(Target::Plugin { public: true, .. })) {
        return None;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if bearer.is_some_and(|t| token.matches(t)) || api_key.is_some_and(|t| token.matches(t.trim()))
    {
        return None;
    }
    let message = if bearer.is_none() && api_key.is_none() {
        "missing credentials: send the proxy's auth token as `Authorization: Bearer <token>` or `x-api-key: <token>`"
    } else {
        "invalid credentials: the token does not match security.auth_token"
    };
    let mut response = refusal(
        target,
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        message,
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(response)
}

/// The token of `Authorization: Bearer <token>`; the scheme is
/// case-insensitive (RFC 9110, 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// An error answer before the route runs: in the client's API format on a
/// provider endpoint, else the host's `{"error": {type, message}}`.
fn refusal(
    target: Option<&Target>,
    status: StatusCode,
    error_type: &str,
    message: &str,
) -> Response<Body> {
    match target {
        Some(Target::Provider { route, .. }) => {
            ProxyError::client(status, message).into_response(route.client)
        }
        _ => error_response(status, error_type, message),
    }
}

/// The browser guard (with no token set, the proxy's only defence against
/// web pages spending the user's plan):
///
/// - DNS rebinding: a page on a name its owner controls, re-pointed at
///   127.0.0.1, reaches us as a same-origin request with that name in
///   `Host`. Only our own names pass: `localhost` (and `*.localhost`), any IP
///   address (a rebinding page cannot have one for a host name), `server.host`
///   and `server.allowed_hosts`. The port is not checked: a browser always
///   sends the one it connected to.
/// - Cross-origin requests: a page's `fetch` names its origin in `Origin`;
///   only the same origin and `server.cors_origins` pass. A configured
///   origin's CORS preflight (`OPTIONS` with `Access-Control-Request-Method`)
///   is answered here, 204, before the token check (browsers send none with
///   a preflight).
///
/// Refusals are 403 (not 421: SDKs report a 403 as "permission denied" with
/// our message and do not retry it).
fn browser_guard(
    app: &App,
    target: Option<&Target>,
    request: &Request<Incoming>,
    method: &str,
    path: &str,
) -> Guard {
    if is_health(path) {
        return Guard::Pass { cors_origin: None };
    }
    let server = &app.shared.config.server;
    // HTTP/2 names the host in `:authority` (the URI), HTTP/1.1 in `Host`.
    let authority = request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    });
    if let Some(authority) = authority
        && !host_allowed(server, authority)
    {
        let message = format!(
            "host {authority:?} is not a name of this proxy: requests must use localhost, an IP address, server.host or a name listed in server.allowed_hosts (env SERVER__ALLOWED_HOSTS); this stops web pages reaching the proxy through a DNS name they control"
        );
        tracing::debug!(host = %authority, "refused: host not allowed");
        return Guard::Answer(refusal(
            target,
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            &message,
        ));
    }
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return Guard::Pass { cors_origin: None };
    };
    let origin_text = origin.to_str().unwrap_or_default().trim();
    let normalized = origin_text.trim_end_matches('/').to_ascii_lowercase();
    let configured = server.cors_origins.contains(&normalized);
    let preflight = method == "OPTIONS"
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if configured {
        if preflight {
            return Guard::Answer(preflight_answer(origin, request.headers()));
        }
        return Guard::Pass {
            cors_origin: Some(origin.clone()),
        };
    }
    if !preflight && authority.is_some_and(|authority| same_origin(&normalized, authority)) {
        return Guard::Pass { cors_origin: None };
    }
    let message = format!(
        "cross-origin request from {origin_text:?} refused: a web page may call this proxy only when its origin is listed in server.cors_origins (env SERVER__CORS_ORIGINS)"
    );
    tracing::debug!(origin = %origin_text, "refused: origin not allowed");
    Guard::Answer(refusal(
        target,
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        &message,
    ))
}

/// What [`browser_guard`] decided.
enum Guard {
    /// Go on; a configured origin is named in the answer's CORS headers.
    Pass { cors_origin: Option<HeaderValue> },
    /// Answer now: a refusal, or a preflight's 204.
    Answer(Response<Body>),
}

/// Whether `authority` (`name[:port]`) names this proxy; see [`browser_guard`].
fn host_allowed(server: &crate::config::ServerConfig, authority: &str) -> bool {
    let host = host_of(authority);
    if host.is_empty() {
        // No name at all: not something a browser sends.
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok()
        || host == "localhost"
        || host.ends_with(".localhost")
        || host == host_of(&server.host)
        || server
            .allowed_hosts
            .iter()
            .any(|allowed| allowed == "*" || *allowed == host)
}

/// The host of `name[:port]` (IPv6 in brackets), lower-case, without a
/// trailing dot.
fn host_of(authority: &str) -> String {
    split_authority(authority).0
}

/// `name[:port]` as (host, as [`host_of`] gives it; port, when given).
fn split_authority(authority: &str) -> (String, Option<&str>) {
    let authority = authority.trim();
    let (host, port) = match authority.rsplit_once(':') {
        // `[::1]:8000`, `name:8000`; not the colons inside `[::1]` or a bare `::1`.
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (host.ends_with(']') || !host.contains(':')) =>
        {
            (host, Some(port).filter(|port| !port.is_empty()))
        }
        _ => (authority, None),
    };
    (host.trim_end_matches('.').to_ascii_lowercase(), port)
}

/// Whether `origin` (`scheme://host[:port]`, lower-case) is the origin of a
/// request to `authority`: same host, and same port (the scheme's default
/// when either leaves it out).
fn same_origin(origin: &str, authority: &str) -> bool {
    let Some((scheme, origin_authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let (origin_host, origin_port) = split_authority(origin_authority);
    let (host, port) = split_authority(authority);
    origin_host == host && origin_port.unwrap_or(default_port) == port.unwrap_or(default_port)
}

/// A configured origin's CORS preflight: 204, allowing the method and
/// headers the page asked for.
fn preflight_answer(origin: &HeaderValue, headers: &http::HeaderMap) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let answer = response.headers_mut();
    answer.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if let Some(method) = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
        answer.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
    }
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        answer.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    // The original's `cors.max_age`.
    answer.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    answer.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    response
}

/// CORS headers on the answer to a configured origin's request, so its page
/// can read the answer (errors included) and our own headers.
fn add_cors_headers(headers: &mut http::HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("*"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// A request with a body to a provider endpoint must say it is JSON:
/// `application/json` (with parameters or not) or a `+json` type. A page can
/// post `text/plain` or a form anywhere without a CORS preflight.
fn require_json(method: &str, headers: &http::HeaderMap) -> Result<(), String> {
    if method == "GET" || method == "HEAD" {
        return Ok(());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = content_type
        .as_deref()
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        return Ok(());
    }
    Err(match content_type {
        Some(sent) => format!(
            "unsupported content type {sent:?}: provider endpoints take JSON bodies; send `content-type: application/json`"
        ),
        None => "missing content type: provider endpoints take JSON bodies; send `content-type: application/json`".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_names_are_allowed_hosts() {
        let mut server = crate::config::ServerConfig {
            host: "0.0.0.0".to_owned(),
            ..Default::default()
        };
        for host in [
            "localhost",
            "localhost:8000",
            "LOCALHOST.:8000",
            "app.localhost:3000",
            "127.0.0.1:8000",
            "[::1]:8000",
            "[::1]",
            "::1",
            "192.168.1.20:8000",
            "0.0.0.0",
            "",
        ] {
            assert!(host_allowed(&server, host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "ccproxy",
        ] {
            assert!(!host_allowed(&server, host), "{host}");
        }
        server.host = "ccproxy".to_owned();
        assert!(host_allowed(&server, "CCProxy:8000"));
        server.allowed_hosts = vec!["proxy.lan".to_owned()];
        assert!(host_allowed(&server, "proxy.lan:80"));
        assert!(!host_allowed(&server, "evil.example"));
        server.allowed_hosts.push("*".to_owned());
        assert!(host_allowed(&server, "evil.example"));
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        for (origin, authority) in [
            ("http://127.0.0.1:8000", "127.0.0.1:8000"),
            ("http://localhost:8000", "LocalHost:8000"),
            ("http://proxy.lan", "proxy.lan"),
            ("http://proxy.lan", "proxy.lan:80"),
            ("http://proxy.lan:80", "proxy.lan"),
            ("https://proxy.lan", "proxy.lan"),
            ("http://[::1]:8000", "[::1]:8000"),
        ] {
            assert!(same_origin(origin, authority), "{origin} {authority}");
        }
        for (origin, authority) in [
            ("http://localhost:3000", "localhost:8000"),
            ("http://evil.example:8000", "127.0.0.1:8000"),
            ("https://proxy.lan", "proxy.lan:80"),
            ("null", "127.0.0.1:8000"),
            ("chrome-extension://abc", "abc"),
        ] {
            assert!(!same_origin(origin, authority), "{origin} {authority}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer t",
            "BEARER t",
            "bearer  t ",
            "bEaReR\tt",
            " Bearer t",
        ] {
            assert_eq!(bearer_token(value), Some("t"), "{value:?}");
        }
        for value in ["Basic t", "Bearert", "Bearer ", "Bearer", "Token t"] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn provider_bodies_must_be_json() {
        let with = |value: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            }
            headers
        };
        for value in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.api+json",
        ] {
            assert_eq!(require_json("POST", &with(Some(value))), Ok(()), "{value}");
        }
        for value in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("text/json+plain"),
            None,
        ] {
            let refused = require_json("POST", &with(value));
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|message| message.contains("application/json")),
                "{value:?}: {refused:?}"
            );
        }
        assert_eq!(require_json("GET", &with(None)), Ok(()));
    }

    #[test]
    fn captured_headers_are_written_as_masked_headers_builds_them() {
        let mut headers = http::HeaderMap::new();
        headers.append("x-b", HeaderValue::from_static("first"));
        headers.append("x-b", HeaderValue::from_static("second"));
        headers.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-ant-abcdefghijkl"),
        );
        headers.append("x-a", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        headers.append(
            header::USER_AGENT,
            HeaderValue::from_static("claude-cli/1.0"),
        );
        assert_eq!(
            serde_json::to_string(&MaskedHeaders::capture(&headers)).unwrap(),
            serde_json::to_string(&masked_headers(&headers)).unwrap()
        );
        let empty = http::HeaderMap::new();
        assert_eq!(
            serde_json::to_string(&MaskedHeaders::capture(&empty)).unwrap(),
            "{}"
        );
    }

    #[test]
    fn completed_data_is_what_json_wrote() {
        let mut request_headers = http::HeaderMap::new();
        request_headers.insert(header::USER_AGENT, HeaderValue::from_static("t"));
        request_headers.insert("x-api-key", HeaderValue::from_static("sk-ant-secret-1234"));
        let headers = masked_headers(&request_headers);
        let usage = ccproxy_formats::convert::TokenUsage {
            input_tokens: 3,
            output_tokens: 4,
            cache_read_input_tokens: 5,
            cache_creation_input_tokens: 6,
            reasoning_tokens: 0,
        };
        for (query, streaming, error, usage) in [
            ("", None::<(&str, &str)>, None, None),
            (
                "beta=true",
                Some(("claude_api", "sonnet")),
                Some("the client went away before the response ended".to_owned()),
                Some(usage),
            ),
        ] {
            let (request_id, method, path, client_ip, user_agent) =
                ("r1", "POST", "/claude/v1/messages", "127.0.0.1", "t");
            let (status, duration_ms, bytes_sent) = (200u16, 1.5f64, 547u64);
            let captured = Some(MaskedHeaders::capture(&request_headers));
            let headers = Some(headers.clone());
            let expected = json!({
                "request_id": request_id, "method": method,
                "url": if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") },
                "path": path, "query": query,
                "status_code": status, "response_status": status,
                "duration_ms": duration_ms, "client_ip": client_ip,
                "user_agent": user_agent, "bytes_sent": bytes_sent, "streaming": streaming.is_some(),
                "http_version": "HTTP/2.0",
                "provider": streaming.map(|s| s.0),
                "model": streaming.map(|s| s.1),
                "usage": usage.map(|_| json!({"input_tokens": 3, "output_tokens": 4,
                    "cache_read_input_tokens": 5, "cache_creation_input_tokens": 6, "reasoning_tokens": 0})),
                "headers": headers, "error": error, "ttfb_ms": 1.5,
            });
            let data = CompletedData {
                bytes_sent,
                client_ip,
                duration_ms,
                error: error.as_deref(),
                headers: captured.as_ref(),
                http_version: "HTTP/2.0",
                method,
                model: streaming.map(|s| s.1),
                path,
                provider: streaming.map(|s| s.0),
                query,
                request_id,
                response_status: status,
                status_code: status,
                streaming: streaming.is_some(),
                ttfb_ms: 1.5,
                url: if query.is_empty() {
                    std::borrow::Cow::Borrowed(path)
                } else {
                    std::borrow::Cow::Owned(format!("{path}?{query}"))
                },
                usage,
                user_agent,
            };
            assert_eq!(
                serde_json::to_string(&data).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }
}
