//! The provider path: a client request on a provider endpoint becomes an
//! upstream request and the answer comes back in the client's format.
//!
//! 1. peek at the body for `stream` and `model` (malformed JSON: 400 in the client's format);
//! 2. convert the request into the provider's native format (`ccproxy-formats`);
//! 3. the plugin's `provider.prepare`: URL, credentials, headers, body shaping;
//! 4. `provider.request.prepared` hooks, inline and mutating, in priority order;
//! 5. send with the shared client (`provider.request.sent`), head arrives
//!    (`provider.response.received`); unreachable: 502, no answer in time: 504;
//! 6. upstream error status: its body converted into the client's error format;
//! 7. a stream is passed through byte for byte when no conversion or model
//!    alias is needed, else decoded, converted event by event and re-encoded;
//!    nothing buffers the whole stream. A broken upstream ends the client's
//!    stream with an error event of its format. Dropping the client's body
//!    (disconnect) drops the upstream body, which cancels the upstream request;
//! 8. a complete answer is converted back and its model alias written back.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use ccproxy_formats::{Format, convert, sse};
use ccproxy_plugin_abi::HookEvent;
use ccproxy_plugin_abi::{
    HookBody,
    protocol::{RequestHead, ops},
};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    App,
    response::{Body, BoxError, full},
};
use crate::{
    plugins::{handle::CallErrorKind, registry::ActivePlugin},
    telemetry::redact_header,
    upstream::{StreamingResponse, UpstreamError},
};

/// A provider endpoint mounted by the router.
#[derive(Debug, Clone)]
pub struct ProviderRoute {
    /// Full path.
    pub path: String,
    /// What clients speak there.
    pub client: Format,
    /// What the upstream speaks.
    pub native: Format,
}

/// Marks a provider endpoint's answer, for `request.completed`: which
/// provider, the model asked for, whether the body streams (then the event
/// waits for its end), and the token usage once it is known.
#[derive(Debug, Clone)]
pub struct ProviderAnswer {
    /// The provider plugin.
    pub provider: String,
    /// The model the client asked for.
    pub model: Option<String>,
    /// The body streams.
    pub streaming: bool,
    /// The answer's token usage, set when it has been read.
    pub usage: UsageSlot,
}

/// Where the usage of one answer lands once read (for a stream, at its end).
pub type UsageSlot = Arc<std::sync::OnceLock<convert::TokenUsage>>;

/// What each way of answering needs.
struct Answering<'a> {
    app: &'a App,
    name: &'a str,
    route: &'a ProviderRoute,
    request_id: &'a str,
    url: &'a str,
    method: &'a str,
    /// The model the client asked for.
    model: Option<&'a str>,
    alias: Option<String>,
    read_timeout: std::time::Duration,
    /// Where the usage goes; `None` when no hook listens for it.
    usage: Option<UsageSlot>,
    /// Set when `provider.response.received` waits for the complete body (a
    /// hook asked for it): the head's arrival, in ms after sending, and the
    /// upstream's headers.
    received_later: Option<(f64, http::HeaderMap)>,
}

impl Answering<'_> {
    /// `provider.response.received` with the complete body, when it waited
    /// for it (see `received_later`).
    fn received(&self, status: u16, body: &Result<Bytes, BodyFailure>) {
        let Some((duration_ms, headers)) = &self.received_later else {
            return;
        };
        let duration_ms = *duration_ms;
        self.app.shared.hooks.observe_with_body(
            HookEvent::ProviderResponseReceived,
            Some(self.request_id),
            || events::ResponseReceived {
                duration_ms,
                headers: Some(events::MaskedHeaderMap(headers)),
                method: self.method,
                provider: self.name,
                request_id: self.request_id,
                status_code: status,
                url: self.url,
            },
            HookBody::UpstreamResponseBody,
            || body.as_ref().cloned().unwrap_or_default(),
        );
    }
}

/// Marks a failed provider request (for `request.failed`).
#[derive(Debug, Clone)]
pub struct ProviderFailure(pub String);

#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    model: Option<String>,
}

/// An error response in `format`, marked as a failure.
pub fn format_error(format: Format, status: StatusCode, message: &str) -> Response<Body> {
    let kind = convert::ErrorKind::from_status(status.as_u16());
    let body = convert::error_body(format, status.as_u16(), kind, message);
    let mut response = json_response(status, body);
    response
        .extensions_mut()
        .insert(ProviderFailure(message.to_owned()));
    response
}

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The client's request head as the provider path sees it: the request's own
/// header map when no middleware changed it (nothing copied), else the
/// [`RequestHead`] the middleware produced. Written as `RequestHead`'s JSON.
#[derive(Serialize)]
pub struct ClientRequest<'a> {
    /// Method.
    pub method: &'a str,
    /// Path.
    pub path: &'a str,
    /// Query string, without `?`.
    pub query: &'a str,
    /// Headers.
    pub headers: ClientHeaders<'a>,
    /// The request id.
    pub request_id: &'a str,
}

/// The client's headers, in arrival order.
pub enum ClientHeaders<'a> {
    /// As received (values that are not UTF-8 are written lossily, as
    /// `RequestHead` holds them).
    Map(&'a http::HeaderMap),
    /// As the middleware left them.
    Pairs(&'a [(String, String)]),
}

impl<'a> ClientRequest<'a> {
    /// A view of `head`.
    pub fn of_head(head: &'a RequestHead) -> Self {
        Self {
            method: &head.method,
            path: &head.path,
            query: &head.query,
            headers: ClientHeaders::Pairs(&head.headers),
            request_id: &head.request_id,
        }
    }

    /// Whether the client asked for an event stream by its `Accept` header.
    fn accepts_event_stream(&self) -> bool {
        const SSE: &str = "text/event-stream";
        match self.headers {
            ClientHeaders::Map(headers) => headers
                .get_all(header::ACCEPT)
                .iter()
                .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(SSE)),
            ClientHeaders::Pairs(pairs) => pairs
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("accept") && v.contains(SSE)),
        }
    }
}

impl Serialize for ClientHeaders<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self {
            ClientHeaders::Pairs(pairs) => pairs.serialize(serializer),
            ClientHeaders::Map(headers) => {
                let mut seq = serializer.serialize_seq(Some(headers.len()))?;
                for (name, value) in headers.iter() {
                    seq.serialize_element(&(
                        name.as_str(),
                        &*String::from_utf8_lossy(value.as_bytes()),
                    ))?;
                }
                seq.end()
            }
        }
    }
}

/// Handles a request on provider endpoint `route` of `plugin`. Every answer,
/// failures included, names the provider (and the model, once the body was
/// read) for `request.completed` and `request.failed`.
pub async fn handle(
    app: &App,
    plugin: &Arc<ActivePlugin>,
    route: &ProviderRoute,
    head: &ClientRequest<'_>,
    body: Bytes,
) -> Response<Body> {
    let peek: Result<Peek, _> = serde_json::from_slice(&body);
    let model = peek.as_ref().ok().and_then(|peek| peek.model.clone());
    let mut response = match peek {
        Ok(peek) => answer(app, plugin, route, head, body, peek).await,
        Err(error) => format_error(
            route.client,
            StatusCode::BAD_REQUEST,
            &format!("request body is not valid JSON: {error}"),
        ),
    };
    if response.extensions().get::<ProviderAnswer>().is_none() {
        response.extensions_mut().insert(ProviderAnswer {
            provider: plugin.manifest.name.clone(),
            model,
            streaming: false,
            usage: UsageSlot::default(),
        });
    }
    response
}

/// The provider path once the body's `stream` and `model` are known.
async fn answer(
    app: &App,
    plugin: &Arc<ActivePlugin>,
    route: &ProviderRoute,
    head: &ClientRequest<'_>,
    body: Bytes,
    peek: Peek,
) -> Response<Body> {
    let client = route.client;
    let stream = peek.stream.unwrap_or(false) || head.accepts_event_stream();

    if app.shared.config.server.bypass_mode {
        return bypass(route, stream, peek.model.as_deref().unwrap_or("bypass"));
    }

    // The plugin takes an owned buffer; the same format needs no conversion,
    // and moving the body avoids a copy when nothing else holds it. A
    // converted body replaces the client's, which is let go at once rather
    // than held (a second copy of a large body) until the upstream answers.
    let native_body = if client == route.native {
        Vec::from(body)
    } else {
        let converted = convert::request(client, route.native, &body);
        drop(body);
        match converted {
            Ok(converted) => converted,
            Err(error) => {
                return format_error(client, StatusCode::BAD_REQUEST, &error.to_string());
            }
        }
    };

    let name = &plugin.manifest.name;
    let input = PrepareInput {
        endpoint: &route.path,
        client_format: client.id(),
        native_format: route.native.id(),
        stream,
        model: peek.model.as_deref(),
        request: head,
    };
    let prepared = match plugin
        .handle
        .call_with_timeout::<ops::ProviderPrepare>(
            &input,
            native_body,
            app.shared.config.server.plugin_call_timeout(),
        )
        .await
    {
        Ok(reply) => reply,
        Err(error) => {
            let status = StatusCode::from_u16(error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = match error.kind {
                CallErrorKind::Panicked => format!(
                    "provider {name} panicked while preparing the request: {}",
                    error.message
                ),
                // Its message names the plugin and the operation already.
                CallErrorKind::TimedOut => error.message,
                _ => format!("provider {name}: {}", error.message),
            };
            return format_error(client, status, &message);
        }
    };
    // Only a model the plugin mapped needs writing back (`model_alias`);
    // otherwise the upstream already reports the id the client asked for.
    let ccproxy_plugin_abi::protocol::ProviderPrepareOutput {
        method,
        url,
        headers,
        stream: upstream_streams,
        model_alias: alias,
        timeout_ms,
    } = prepared.meta;
    let (method, url, headers, upstream_body) = run_prepared_hooks(
        app,
        head,
        (name, route.native),
        method,
        url,
        headers,
        upstream_streams,
        prepared.body,
    )
    .await;

    let hooks = &app.shared.hooks;
    let request_id = head.request_id;
    hooks.observe(HookEvent::HttpRequest, Some(request_id), || {
        events::HttpRequest {
            is_client_request: false,
            is_provider_request: true,
            method: &method,
            provider: name,
            request_id,
            url: &url,
        }
    });
    let upstream_body = Bytes::from(upstream_body);
    hooks.observe_with_body(
        HookEvent::ProviderRequestSent,
        Some(request_id),
        || events::RequestSent {
            headers: events::MaskedPairs(&headers),
            is_streaming: stream,
            method: &method,
            provider: name,
            request_id,
            url: &url,
        },
        HookBody::UpstreamRequestBody,
        || upstream_body.clone(),
    );
    let started = Instant::now();
    let timeout = (timeout_ms > 0).then(|| std::time::Duration::from_millis(timeout_ms));
    let upstream = app
        .shared
        .upstream
        .send(&method, &url, &headers, upstream_body, timeout)
        .await;
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(error) => {
            let status = match error {
                UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                UpstreamError::Invalid(_) => StatusCode::INTERNAL_SERVER_ERROR,
                UpstreamError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            };
            let message = format!("provider {name}: {error}");
            hooks.observe(HookEvent::HttpError, Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "method": method, "url": url, "error_type": "transport", "error_detail": message})
            });
            hooks.observe(HookEvent::ProviderError, Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "url": url, "error": message, "phase": "connect"})
            });
            return format_error(client, status, &message);
        }
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1e3;
    hooks.observe(HookEvent::HttpResponse, Some(request_id), || {
        events::HttpResponse {
            duration_ms,
            is_provider_response: true,
            method: &method,
            provider: name,
            request_id,
            status_code: upstream.status,
            url: &url,
        }
    });
    let upstream_is_sse = upstream_streams
        || upstream
            .headers
            .get_all(header::CONTENT_TYPE)
            .iter()
            .any(|v| v.as_bytes().starts_with(b"text/event-stream"));
    // A complete answer's body reaches the hooks that asked for it with this
    // event, sent once the body has been read (`complete_response`,
    // `upstream_error`).
    // The upstream's headers come with the body: only for the hooks that
    // asked for it, so the others do not pay for writing them.
    let with_body = hooks.wants_body(
        &HookEvent::ProviderResponseReceived,
        HookBody::UpstreamResponseBody,
    );
    let received_later = (!upstream_is_sse || upstream.status >= 400) && with_body;
    if !received_later {
        hooks.observe(
            HookEvent::ProviderResponseReceived,
            Some(request_id),
            || events::ResponseReceived {
                duration_ms,
                headers: with_body.then_some(events::MaskedHeaderMap(&upstream.headers)),
                method: &method,
                provider: name,
                request_id,
                status_code: upstream.status,
                url: &url,
            },
        );
    }
    let upstream_time = started.elapsed();
    let passed = passed_headers(&upstream.headers);
    let usage_slot = UsageSlot::default();
    let wants_usage = [
        HookEvent::RequestCompleted,
        HookEvent::RequestFailed,
        HookEvent::ProviderStreamEnd,
    ]
    .iter()
    .any(|event| hooks.wants(event));
    let streaming = upstream.status < 400 && upstream_is_sse && stream;
    let answering = Answering {
        app,
        name,
        route,
        request_id,
        url: &url,
        method: &method,
        model: peek.model.as_deref(),
        alias,
        read_timeout: timeout.unwrap_or_else(|| app.shared.upstream.read_timeout()),
        usage: wants_usage.then(|| usage_slot.clone()),
        received_later: received_later.then(|| (duration_ms, upstream.headers.clone())),
    };
    let mut response = if upstream.status >= 400 {
        upstream_error(answering, upstream).await
    } else if streaming {
        stream_response(answering, upstream)
    } else if upstream_is_sse {
        // The upstream always streams (Codex); the client asked for one answer.
        accumulate_response(answering, upstream).await
    } else {
        complete_response(answering, upstream).await
    };
    response.extensions_mut().insert(ProviderAnswer {
        provider: name.to_owned(),
        model: peek.model,
        streaming,
        usage: usage_slot,
    });
    response
        .extensions_mut()
        .insert(UpstreamTime(upstream_time));
    let headers = response.headers_mut();
    for (name, value) in passed {
        headers.insert(name, value);
    }
    response
}

/// Upstream headers a client needs to see on every answer: the upstream's
/// request id and its rate-limit state (Claude Code reads
/// `anthropic-ratelimit-unified-*`). Everything else stays behind the proxy.
fn passed_headers(headers: &http::HeaderMap) -> Vec<(http::HeaderName, HeaderValue)> {
    const PREFIXES: [&str; 3] = ["anthropic-ratelimit-", "x-ratelimit-", "x-codex-"];
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name == "request-id"
                || name == "retry-after"
                || PREFIXES.iter().any(|p| name.starts_with(p))
        })
        .filter_map(|(name, value)| {
            // A value that is not UTF-8 passes converted lossily, as it did
            // when the upstream's headers were kept as strings.
            let value = match std::str::from_utf8(value.as_bytes()) {
                Ok(_) => value.clone(),
                Err(_) => HeaderValue::from_str(&String::from_utf8_lossy(value.as_bytes())).ok()?,
            };
            Some((name.clone(), value))
        })
        .collect()
}

/// The JSON of `protocol::ProviderPrepareInput` (same fields, same order),
/// borrowing the request instead of cloning it.
#[derive(Serialize)]
struct PrepareInput<'a> {
    endpoint: &'a str,
    client_format: &'a str,
    native_format: &'a str,
    stream: bool,
    model: Option<&'a str>,
    request: &'a ClientRequest<'a>,
}

impl ccproxy_plugin_abi::protocol::InputOf<ops::ProviderPrepare> for PrepareInput<'_> {}

/// The data of the provider events sent on every request, serialised
/// straight from borrowed fields instead of through a `Value` (keys in the
/// alphabetical order `json!` writes them in).
mod events {
    use serde::{Serialize, ser::SerializeSeq};

    use crate::telemetry::redact_header;

    /// A header map written as `[name, value]` lists with secrets masked.
    pub(super) struct MaskedHeaderMap<'a>(pub(super) &'a http::HeaderMap);

    impl Serialize for MaskedHeaderMap<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
            for (name, value) in self.0 {
                let value = String::from_utf8_lossy(value.as_bytes());
                seq.serialize_element(&(name.as_str(), redact_header(name.as_str(), &value)))?;
            }
            seq.end()
        }
    }

    /// Header pairs written as `[name, value]` lists with secrets masked.
    pub(super) struct MaskedPairs<'a>(pub(super) &'a [(String, String)]);

    impl Serialize for MaskedPairs<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
            for (name, value) in self.0 {
                seq.serialize_element(&(name, redact_header(name, value)))?;
            }
            seq.end()
        }
    }

    #[derive(Serialize)]
    pub(super) struct HttpRequest<'a> {
        pub(super) is_client_request: bool,
        pub(super) is_provider_request: bool,
        pub(super) method: &'a str,
        pub(super) provider: &'a str,
        pub(super) request_id: &'a str,
        pub(super) url: &'a str,
    }

    #[derive(Serialize)]
    pub(super) struct RequestSent<'a> {
        /// The upstream request's headers, credentials masked.
        pub(super) headers: MaskedPairs<'a>,
        pub(super) is_streaming: bool,
        pub(super) method: &'a str,
        pub(super) provider: &'a str,
        pub(super) request_id: &'a str,
        pub(super) url: &'a str,
    }

    #[derive(Serialize)]
    pub(super) struct HttpResponse<'a> {
        pub(super) duration_ms: f64,
        pub(super) is_provider_response: bool,
        pub(super) method: &'a str,
        pub(super) provider: &'a str,
        pub(super) request_id: &'a str,
        pub(super) status_code: u16,
        pub(super) url: &'a str,
    }

    #[derive(Serialize)]
    pub(super) struct ResponseReceived<'a> {
        pub(super) duration_ms: f64,
        /// The upstream's headers, masked; only when a hook asked for the
        /// answer's body (`HookBody::UpstreamResponseBody`).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) headers: Option<MaskedHeaderMap<'a>>,
        pub(super) method: &'a str,
        pub(super) provider: &'a str,
        pub(super) request_id: &'a str,
        pub(super) status_code: u16,
        pub(super) url: &'a str,
    }

    #[derive(Serialize)]
    pub(super) struct StreamStart<'a> {
        pub(super) provider: &'a str,
        pub(super) request_id: &'a str,
    }

    #[derive(Serialize)]
    pub(super) struct StreamChunk<'a> {
        pub(super) chunk_number: u64,
        pub(super) chunk_size: usize,
        pub(super) request_id: &'a str,
        /// `upstream` (as it arrived) or `client` (as it was sent).
        pub(super) side: &'static str,
    }

    #[derive(Serialize)]
    pub(super) struct StreamEnd<'a> {
        /// The model the client asked for.
        pub(super) model: Option<&'a str>,
        pub(super) provider: &'a str,
        pub(super) request_id: &'a str,
        pub(super) total_bytes: u64,
        pub(super) total_chunks: u64,
        /// `null` until the stream said.
        pub(super) usage: Option<ccproxy_formats::convert::TokenUsage>,
    }
}

/// How long the upstream took to send its response head, for `Server-Timing`.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTime(pub std::time::Duration);

#[allow(clippy::too_many_arguments)]
async fn run_prepared_hooks(
    app: &App,
    head: &ClientRequest<'_>,
    (provider, format): (&str, Format),
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    stream: bool,
    body: Vec<u8>,
) -> (String, String, Vec<(String, String)>, Vec<u8>) {
    let event = HookEvent::ProviderRequestPrepared;
    if !app.shared.hooks.wants(&event) {
        return (method, url, headers, body);
    }
    // Hooks see credentials masked, like every other event; a masked value
    // that comes back unchanged is the original secret again.
    let shown: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.clone(), redact_header(name, value)))
        .collect();
    let data = json!({"method": method, "url": url, "headers": shown, "is_streaming": stream,
        "provider": provider, "format": format.id()});
    let (mut data, body) = app
        .shared
        .hooks
        .mutate(event, Some(head.request_id), data, body)
        .await;
    let method = match data["method"].as_str() {
        Some(changed) => changed.to_owned(),
        None => method,
    };
    let url = match data["url"].as_str() {
        Some(changed) => changed.to_owned(),
        None => url,
    };
    let returned: Option<Vec<(String, String)>> =
        serde_json::from_value(data["headers"].take()).ok();
    let headers = match returned {
        Some(returned) => unmask_headers(returned, &headers),
        None => headers,
    };
    (method, url, headers, body)
}

/// Puts the original secret back wherever a hook returned a header's masked
/// value unchanged.
fn unmask_headers(
    returned: Vec<(String, String)>,
    original: &[(String, String)],
) -> Vec<(String, String)> {
    returned
        .into_iter()
        .map(|(name, value)| {
            let secret = original.iter().find(|(original_name, original_value)| {
                original_name.eq_ignore_ascii_case(&name)
                    && redact_header(original_name, original_value) == value
            });
            match secret {
                Some((_, original_value)) => (name, original_value.clone()),
                None => (name, value),
            }
        })
        .collect()
}

/// Why a complete upstream body could not be read.
enum BodyFailure {
    /// The connection broke.
    Broke(hyper::Error),
    /// Nothing arrived for the read timeout.
    Silent(std::time::Duration),
}

impl BodyFailure {
    fn status(&self) -> StatusCode {
        match self {
            BodyFailure::Broke(_) => StatusCode::BAD_GATEWAY,
            BodyFailure::Silent(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn describe(&self) -> String {
        match self {
            BodyFailure::Broke(error) => {
                format!("upstream connection broke while reading the answer: {error}")
            }
            BodyFailure::Silent(idle) => format!(
                "upstream sent nothing for {} s while sending its answer; raise http.read_timeout_seconds if it is slow",
                idle.as_secs()
            ),
        }
    }
}

/// Reads a whole upstream body, giving up when nothing arrives for
/// `read_timeout` (the same rule as for each chunk of a stream).
async fn collect_body(
    mut body: Incoming,
    read_timeout: std::time::Duration,
) -> Result<Bytes, BodyFailure> {
    let mut collected = Vec::new();
    loop {
        match tokio::time::timeout(read_timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if collected.is_empty() && http_body::Body::is_end_stream(&body) {
                        // One frame is the whole body: no copy.
                        return Ok(data);
                    }
                    collected.extend_from_slice(&data);
                }
            }
            Ok(Some(Err(error))) => return Err(BodyFailure::Broke(error)),
            Ok(None) => return Ok(Bytes::from(collected)),
            Err(_) => return Err(BodyFailure::Silent(read_timeout)),
        }
    }
}

async fn upstream_error(answering: Answering<'_>, upstream: StreamingResponse) -> Response<Body> {
    let status = upstream.status;
    let collected = collect_body(upstream.body, answering.read_timeout).await;
    answering.received(status, &collected);
    let Answering {
        app,
        name,
        route,
        request_id,
        url,
        ..
    } = answering;
    let body = match collected {
        Ok(body) => body,
        Err(failure) => {
            let message = format!(
                "provider {name}: the upstream answered {status} and then {}",
                failure.describe()
            );
            app.shared.hooks.observe(HookEvent::ProviderError, Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "url": url, "status_code": status, "error": message, "phase": "response"})
            });
            return format_error(route.client, failure.status(), &message);
        }
    };
    let converted = convert::error(route.native, route.client, status, &body);
    app.shared.hooks.observe(HookEvent::ProviderError, Some(request_id), || {
        json!({"request_id": request_id, "provider": name, "url": url, "status_code": status, "error": String::from_utf8_lossy(&body[..body.len().min(2048)]), "phase": "response"})
    });
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        converted,
    )
}

async fn complete_response(
    answering: Answering<'_>,
    upstream: StreamingResponse,
) -> Response<Body> {
    let status = upstream.status;
    let collected = collect_body(upstream.body, answering.read_timeout).await;
    answering.received(status, &collected);
    let Answering {
        app,
        name,
        route,
        request_id,
        url,
        alias,
        usage,
        ..
    } = answering;
    let body = match collected {
        Ok(body) => body,
        Err(failure) => {
            let message = format!("provider {name}: {}", failure.describe());
            app.shared.hooks.observe(HookEvent::ProviderError, Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "url": url, "error": message, "phase": "body"})
            });
            return format_error(route.client, failure.status(), &message);
        }
    };
    if let Some(slot) = &usage
        && let Some(read) = convert::response_usage(route.native, &body)
    {
        let _ = slot.set(read);
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if route.native == route.client && alias.is_none() {
        // Nothing to convert or rewrite: the upstream's bytes, not a copy.
        return json_response(status, body);
    }
    let converted = match convert::response(route.native, route.client, &body) {
        Ok(converted) => converted,
        Err(error) => {
            return format_error(
                route.client,
                StatusCode::BAD_GATEWAY,
                &format!("provider {name}: upstream answer could not be converted: {error}"),
            );
        }
    };
    let converted = match &alias {
        Some(model) => convert::rewrite_model(&converted, model).unwrap_or(converted),
        None => converted,
    };
    json_response(status, converted)
}

/// Builds one response in the client's format from an upstream stream.
async fn accumulate_response(
    answering: Answering<'_>,
    upstream: StreamingResponse,
) -> Response<Body> {
    let Answering {
        app,
        name,
        route,
        request_id,
        url,
        alias,
        read_timeout,
        usage,
        ..
    } = answering;
    let mut body = upstream.body;
    let mut decoder = sse::Decoder::new();
    let mut accumulator = convert::Accumulator::new(route.native, route.client);
    let mut scanner = usage
        .as_ref()
        .map(|_| convert::UsageScanner::new(route.native));
    let mut events = Vec::new();
    let failure = loop {
        match tokio::time::timeout(read_timeout, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    events.clear();
                    if let Err(error) = decoder.push(&data, &mut events) {
                        break Some((
                            StatusCode::BAD_GATEWAY,
                            format!("upstream stream is malformed: {error}"),
                        ));
                    }
                    for event in &events {
                        accumulator.push(event);
                        if let Some(scanner) = &mut scanner {
                            scanner.push(event);
                        }
                    }
                }
            }
            Ok(None) => {
                events.clear();
                let _ = decoder.finish(&mut events);
                for event in &events {
                    accumulator.push(event);
                    if let Some(scanner) = &mut scanner {
                        scanner.push(event);
                    }
                }
                break None;
            }
            Ok(Some(Err(error))) => {
                break Some((
                    StatusCode::BAD_GATEWAY,
                    format!("upstream connection broke mid-stream: {error}"),
                ));
            }
            Err(_) => {
                break Some((
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "upstream sent nothing for {} s mid-stream",
                        read_timeout.as_secs()
                    ),
                ));
            }
        }
    };
    if let (Some(slot), Some(read)) = (&usage, scanner.as_ref().and_then(|s| s.usage())) {
        let _ = slot.set(read);
    }
    let result = match failure {
        Some((status, message)) => Err((status, message)),
        None => accumulator.finish().map_err(|error| {
            let status =
                StatusCode::from_u16(error.kind.status()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, error.message)
        }),
    };
    match result {
        Ok(converted) => {
            let converted = match &alias {
                Some(model) => convert::rewrite_model(&converted, model).unwrap_or(converted),
                None => converted,
            };
            json_response(StatusCode::OK, converted)
        }
        Err((status, message)) => {
            let message = format!("provider {name}: {message}");
            app.shared.hooks.observe(HookEvent::ProviderError, Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "url": url, "error": message, "phase": "stream"})
            });
            format_error(route.client, status, &message)
        }
    }
}

/// State of one streamed answer.
struct StreamState {
    body: Incoming,
    decoder: sse::Decoder,
    converter: Option<convert::StreamConverter>,
    /// Decode and re-encode even without conversion (model alias rewrite).
    reencode: bool,
    alias: Option<String>,
    client: Format,
    read_timeout: std::time::Duration,
    /// Where the usage goes and what reads it off the upstream's events,
    /// when a hook listens.
    usage: Option<(UsageSlot, convert::UsageScanner)>,
    events: Vec<sse::Event>,
    converted: Vec<sse::Event>,
    provider: String,
    model: Option<String>,
    request_id: String,
    chunks: u64,
    bytes: u64,
    hooks: Arc<crate::hooks::HookBus>,
    finished: bool,
    /// A hook asked for the chunks sent to the client (decided once per stream).
    client_chunks: bool,
}

fn stream_response(answering: Answering<'_>, upstream: StreamingResponse) -> Response<Body> {
    let Answering {
        app,
        name,
        route,
        request_id,
        alias,
        read_timeout,
        usage,
        model,
        ..
    } = answering;
    let converter = (route.client != route.native)
        .then(|| convert::StreamConverter::new(route.native, route.client));
    let state = StreamState {
        body: upstream.body,
        decoder: sse::Decoder::new(),
        reencode: converter.is_none() && alias.is_some(),
        converter,
        alias,
        client: route.client,
        read_timeout,
        usage: usage.map(|slot| (slot, convert::UsageScanner::new(route.native))),
        events: Vec::new(),
        converted: Vec::new(),
        provider: name.to_owned(),
        model: model.map(str::to_owned),
        request_id: request_id.to_owned(),
        chunks: 0,
        bytes: 0,
        hooks: app.shared.hooks.clone(),
        finished: false,
        client_chunks: app
            .shared
            .hooks
            .wants_body(&HookEvent::ProviderStreamChunk, HookBody::ClientChunks),
    };
    app.shared
        .hooks
        .observe(HookEvent::ProviderStreamStart, Some(request_id), || {
            events::StreamStart {
                provider: name,
                request_id,
            }
        });
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if state.finished {
                return None;
            }
            let next = tokio::time::timeout(state.read_timeout, state.body.frame()).await;
            let output = match next {
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => state.on_data(data),
                    Err(_) => continue,
                },
                Ok(None) => {
                    state.finished = true;
                    state.on_end()
                }
                Ok(Some(Err(error))) => {
                    state.finished = true;
                    state.on_failure(&format!("upstream connection broke mid-stream: {error}"))
                }
                Err(_) => {
                    state.finished = true;
                    state.on_failure(&format!(
                        "upstream sent nothing for {} s mid-stream",
                        state.read_timeout.as_secs()
                    ))
                }
            };
            if !output.is_empty() {
                let (request_id, chunk_number) = (&state.request_id, state.chunks);
                if state.client_chunks {
                    state.hooks.observe_for_body(
                        HookEvent::ProviderStreamChunk,
                        Some(request_id),
                        || events::StreamChunk {
                            chunk_number,
                            chunk_size: output.len(),
                            request_id,
                            side: "client",
                        },
                        HookBody::ClientChunks,
                        output.clone(),
                    );
                }
                return Some((Ok::<_, BoxError>(Frame::data(output)), state));
            }
        }
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

impl StreamState {
    fn on_data(&mut self, data: Bytes) -> Bytes {
        self.chunks += 1;
        self.bytes += data.len() as u64;
        let (request_id, chunk_number, chunk_size) = (&self.request_id, self.chunks, data.len());
        self.hooks.observe_with_body(
            HookEvent::ProviderStreamChunk,
            Some(request_id),
            || events::StreamChunk {
                chunk_number,
                chunk_size,
                request_id,
                side: "upstream",
            },
            HookBody::UpstreamChunks,
            || data.clone(),
        );
        if self.converter.is_none() && !self.reencode {
            // Unconverted streams pass through byte for byte; they are
            // decoded only to read the usage, when someone wants it.
            if let Some((_, scanner)) = &mut self.usage {
                self.events.clear();
                if self.decoder.push(&data, &mut self.events).is_ok() {
                    for event in &self.events {
                        scanner.push(event);
                    }
                }
            }
            return data;
        }
        self.events.clear();
        if let Err(error) = self.decoder.push(&data, &mut self.events) {
            self.finished = true;
            return self.on_failure(&format!("upstream stream is malformed: {error}"));
        }
        self.emit_events()
    }

    fn emit_events(&mut self) -> Bytes {
        let mut out = Vec::new();
        if let Some((_, scanner)) = &mut self.usage {
            for event in &self.events {
                scanner.push(event);
            }
        }
        self.converted.clear();
        match &mut self.converter {
            Some(converter) => {
                for event in &self.events {
                    converter.push(event, &mut self.converted);
                }
            }
            None => self.converted.append(&mut self.events),
        }
        for event in &mut self.converted {
            if let Some(model) = &self.alias {
                convert::rewrite_model_event(event, model);
            }
            event.encode(&mut out);
        }
        Bytes::from(out)
    }

    fn on_end(&mut self) -> Bytes {
        self.events.clear();
        let _ = self.decoder.finish(&mut self.events);
        let mut out = if self.converter.is_some() || self.reencode {
            self.emit_events().to_vec()
        } else {
            if let Some((_, scanner)) = &mut self.usage {
                for event in &self.events {
                    scanner.push(event);
                }
            }
            Vec::new()
        };
        let usage = self.record_usage();
        if let Some(converter) = &mut self.converter {
            let mut tail = Vec::new();
            converter.finish(&mut tail);
            for mut event in tail {
                if let Some(model) = &self.alias {
                    convert::rewrite_model_event(&mut event, model);
                }
                event.encode(&mut out);
            }
        }
        let (request_id, provider, chunks, bytes) =
            (&self.request_id, &self.provider, self.chunks, self.bytes);
        let model = self.model.as_deref();
        self.hooks
            .observe(HookEvent::ProviderStreamEnd, Some(request_id), || {
                events::StreamEnd {
                    model,
                    provider,
                    request_id,
                    total_bytes: bytes,
                    total_chunks: chunks,
                    usage,
                }
            });
        Bytes::from(out)
    }

    /// Puts the usage read so far in the answer's slot (at the stream's end,
    /// or where it broke: what was sent before still counts).
    fn record_usage(&mut self) -> Option<convert::TokenUsage> {
        let (slot, scanner) = self.usage.as_ref()?;
        let usage = scanner.usage()?;
        let _ = slot.set(usage);
        Some(usage)
    }

    fn on_failure(&mut self, message: &str) -> Bytes {
        self.record_usage();
        let message = &format!("provider {}: {message}", self.provider);
        let (request_id, provider) = (&self.request_id, &self.provider);
        self.hooks.observe(HookEvent::ProviderError, Some(request_id), || {
            json!({"request_id": request_id, "provider": provider, "error": message, "phase": "stream"})
        });
        tracing::warn!(provider = %self.provider, "{message}");
        // The client's format ends the stream: an error event (and for a
        // converted Responses stream `response.failed`, items closed first);
        // a stream passed through unparsed gets the same from a converter of
        // its own format.
        let mut events = Vec::new();
        match &mut self.converter {
            Some(converter) => converter.fail(convert::ErrorKind::Api, message, &mut events),
            None => convert::StreamConverter::new(self.client, self.client).fail(
                convert::ErrorKind::Api,
                message,
                &mut events,
            ),
        }
        let mut out = Vec::new();
        for event in &events {
            event.encode(&mut out);
        }
        Bytes::from(out)
    }
}

/// The canned answer of bypass mode (`serve --bypass`): a format-correct
/// response or stream in the client's format, with no upstream and no
/// credentials, for trying clients out.
fn bypass(route: &ProviderRoute, stream: bool, model: &str) -> Response<Body> {
    const TEXT: &str = "Hello from ccproxy bypass mode: no upstream was called.";
    let id = format!("msg_bypass_{}", uuid::Uuid::new_v4().simple());
    let usage = json!({"input_tokens": 0, "output_tokens": 12});
    if !stream {
        let message = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": TEXT}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
        });
        let body = serde_json::to_vec(&message).unwrap_or_default();
        return match convert::response(Format::AnthropicMessages, route.client, &body) {
            Ok(converted) => json_response(StatusCode::OK, converted),
            Err(error) => format_error(
                route.client,
                StatusCode::INTERNAL_SERVER_ERROR,
                &error.to_string(),
            ),
        };
    }
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TEXT}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 12}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let mut converter = (route.client != Format::AnthropicMessages)
        .then(|| convert::StreamConverter::new(Format::AnthropicMessages, route.client));
    let mut out = Vec::new();
    let mut converted = Vec::new();
    for (name, data) in events {
        let event = sse::Event::new(name, data.to_string());
        match &mut converter {
            Some(converter) => converter.push(&event, &mut converted),
            None => converted.push(event),
        }
    }
    if let Some(converter) = &mut converter {
        converter.finish(&mut converted);
    }
    for event in &converted {
        event.encode(&mut out);
    }
    let mut response = Response::new(full(out));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::protocol::ProviderPrepareInput;

    use super::*;

    fn same_json(value: impl Serialize, expected: serde_json::Value) {
        // Same text, not only the same value: plugins receive the text.
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn borrowed_prepare_input_is_the_protocol_json() {
        let mut map = http::HeaderMap::new();
        map.append(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        map.append("x-b", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        map.append("x-b", HeaderValue::from_static("3"));
        map.append("x-bytes", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        // The pairs the pipeline builds from a header map.
        let pairs: Vec<(String, String)> = map
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let head = RequestHead {
            method: "POST".to_owned(),
            path: "/claude/v1/messages".to_owned(),
            query: "a=1".to_owned(),
            headers: pairs,
            request_id: "r1".to_owned(),
        };
        let from_map = ClientRequest {
            method: "POST",
            path: "/claude/v1/messages",
            query: "a=1",
            headers: ClientHeaders::Map(&map),
            request_id: "r1",
        };
        let from_head = ClientRequest::of_head(&head);
        assert!(from_map.accepts_event_stream() && from_head.accepts_event_stream());
        for model in [Some("sonnet"), None] {
            let owned = ProviderPrepareInput {
                endpoint: "/claude/v1/messages".to_owned(),
                client_format: "anthropic.messages".to_owned(),
                native_format: "anthropic.messages".to_owned(),
                stream: true,
                model: model.map(str::to_owned),
                request: head.clone(),
            };
            for request in [&from_map, &from_head] {
                let borrowed = PrepareInput {
                    endpoint: "/claude/v1/messages",
                    client_format: "anthropic.messages",
                    native_format: "anthropic.messages",
                    stream: true,
                    model,
                    request,
                };
                assert_eq!(
                    serde_json::to_string(&borrowed).unwrap(),
                    serde_json::to_string(&owned).unwrap()
                );
            }
        }
        let plain = http::HeaderMap::new();
        let without = ClientRequest {
            headers: ClientHeaders::Map(&plain),
            ..ClientRequest::of_head(&head)
        };
        assert!(!without.accepts_event_stream());
    }

    #[test]
    fn event_data_is_what_json_wrote() {
        let (request_id, name, method, url) = ("r1", "claude_api", "POST", "http://u/v1/messages");
        same_json(
            events::HttpRequest {
                is_client_request: false,
                is_provider_request: true,
                method,
                provider: name,
                request_id,
                url,
            },
            json!({"request_id": request_id, "provider": name, "method": method, "url": url, "is_client_request": false, "is_provider_request": true}),
        );
        let headers = [
            ("x-api-key".to_owned(), "sk-ant-secret-value".to_owned()),
            ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
        ];
        same_json(
            events::RequestSent {
                headers: events::MaskedPairs(&headers),
                is_streaming: true,
                method,
                provider: name,
                request_id,
                url,
            },
            json!({"request_id": request_id, "provider": name, "method": method, "url": url, "is_streaming": true,
                "headers": [["x-api-key", redact_header("x-api-key", "sk-ant-secret-value")], ["anthropic-version", "2023-06-01"]]}),
        );
        for duration_ms in [1.0, 0.123_456_789, 250.5] {
            same_json(
                events::HttpResponse {
                    duration_ms,
                    is_provider_response: true,
                    method,
                    provider: name,
                    request_id,
                    status_code: 200,
                    url,
                },
                json!({"request_id": request_id, "provider": name, "method": method, "url": url, "status_code": 200u16, "duration_ms": duration_ms, "is_provider_response": true}),
            );
            same_json(
                events::ResponseReceived {
                    duration_ms,
                    headers: None,
                    method,
                    provider: name,
                    request_id,
                    status_code: 429,
                    url,
                },
                json!({"request_id": request_id, "provider": name, "method": method, "url": url, "status_code": 429u16, "duration_ms": duration_ms}),
            );
        }
        same_json(
            events::StreamStart {
                provider: name,
                request_id,
            },
            json!({"request_id": request_id, "provider": name}),
        );
        same_json(
            events::StreamChunk {
                chunk_number: 3,
                chunk_size: 512,
                request_id,
                side: "upstream",
            },
            json!({"request_id": request_id, "chunk_number": 3u64, "chunk_size": 512usize, "side": "upstream"}),
        );
        same_json(
            events::StreamEnd {
                model: Some("claude-sonnet-4-5"),
                provider: name,
                request_id,
                total_bytes: 9,
                total_chunks: 2,
                usage: None,
            },
            json!({"request_id": request_id, "provider": name, "model": "claude-sonnet-4-5", "total_chunks": 2u64, "total_bytes": 9u64, "usage": null}),
        );
    }

    #[test]
    fn passed_headers_keep_what_the_client_needs() {
        let mut headers = http::HeaderMap::new();
        headers.insert("request-id", HeaderValue::from_static("req_1"));
        headers.insert(
            "anthropic-ratelimit-unified-status",
            HeaderValue::from_static("allowed"),
        );
        headers.insert("x-secret", HeaderValue::from_static("no"));
        headers.insert("retry-after", HeaderValue::from_bytes(b"\xff7").unwrap());
        let passed = passed_headers(&headers);
        let names: Vec<&str> = passed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "request-id",
                "anthropic-ratelimit-unified-status",
                "retry-after"
            ]
        );
        // Not UTF-8: converted lossily, as when headers were kept as text.
        assert_eq!(passed[2].1.as_bytes(), "\u{fffd}7".as_bytes());
    }

    #[test]
    fn hooks_see_secrets_masked_and_an_unchanged_mask_is_the_secret_again() {
        let original = vec![
            (
                "x-api-key".to_owned(),
                "sk-ant-api03-secret-value-1234".to_owned(),
            ),
            (
                "authorization".to_owned(),
                "Bearer sk-ant-oat01-secret-5678".to_owned(),
            ),
            ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
        ];
        let shown: Vec<(String, String)> = original
            .iter()
            .map(|(name, value)| (name.clone(), redact_header(name, value)))
            .collect();
        assert_eq!(shown[0].1, "***1234");
        assert_eq!(shown[1].1, "Bearer ***5678");
        // A hook that keeps the masked key, replaces the token and adds a header.
        let mut returned = shown.clone();
        returned[1].1 = "Bearer new-token-from-hook".to_owned();
        returned.push(("x-extra".to_owned(), "1".to_owned()));
        let sent = unmask_headers(returned, &original);
        assert_eq!(sent[0], original[0]);
        assert_eq!(sent[1].1, "Bearer new-token-from-hook");
        assert_eq!(sent[2], original[2]);
        assert_eq!(sent[3], ("x-extra".to_owned(), "1".to_owned()));
    }
}
