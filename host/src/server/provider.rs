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
use ccproxy_plugin_abi::protocol::{ProviderPrepareInput, ProviderPrepareOutput, RequestHead, op};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::Deserialize;
use serde_json::json;

use super::{
    App,
    response::{Body, BoxError, full},
};
use crate::{
    plugins::{handle::CallErrorKind, registry::ActivePlugin},
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

/// Marks a response whose body streams, so `request.completed` waits for its end.
#[derive(Debug, Clone)]
pub struct Streaming {
    /// The provider plugin.
    pub provider: String,
    /// The model the client asked for.
    pub model: Option<String>,
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

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Handles a request on provider endpoint `route` of `plugin`.
pub async fn handle(
    app: &App,
    plugin: &Arc<ActivePlugin>,
    route: &ProviderRoute,
    head: &RequestHead,
    body: Bytes,
) -> Response<Body> {
    let client = route.client;
    let peek: Peek = match serde_json::from_slice(&body) {
        Ok(peek) => peek,
        Err(error) => {
            return format_error(
                client,
                StatusCode::BAD_REQUEST,
                &format!("request body is not valid JSON: {error}"),
            );
        }
    };
    let wants_sse = head
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("accept") && v.contains("text/event-stream"));
    let stream = peek.stream.unwrap_or(false) || wants_sse;

    if app.shared.config.server.bypass_mode {
        return bypass(route, stream, peek.model.as_deref().unwrap_or("bypass"));
    }

    let native_body = match convert::request(client, route.native, &body) {
        Ok(converted) => converted,
        Err(error) => return format_error(client, StatusCode::BAD_REQUEST, &error.to_string()),
    };

    let name = &plugin.manifest.name;
    let input = ProviderPrepareInput {
        endpoint: route.path.clone(),
        client_format: client.id().to_owned(),
        native_format: route.native.id().to_owned(),
        stream,
        model: peek.model.clone(),
        request: head.clone(),
    };
    let prepared = match plugin
        .handle
        .call::<_, ProviderPrepareOutput>(op::PROVIDER_PREPARE, &input, native_body)
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
                _ => format!("provider {name}: {}", error.message),
            };
            return format_error(client, status, &message);
        }
    };
    // Only a model the plugin mapped needs writing back; otherwise the upstream
    // already reports the id the client asked for.
    let alias = prepared.meta.model_alias.clone();
    let (method, url, headers, upstream_body) =
        run_prepared_hooks(app, head, prepared.meta.clone(), prepared.body).await;

    let hooks = &app.shared.hooks;
    let request_id = head.request_id.as_str();
    hooks.observe("http.request", Some(request_id), || {
        json!({"request_id": request_id, "provider": name, "method": method, "url": url, "is_client_request": false, "is_provider_request": true})
    });
    hooks.observe("provider.request.sent", Some(request_id), || {
        json!({"request_id": request_id, "provider": name, "method": method, "url": url, "is_streaming": stream})
    });
    let started = Instant::now();
    let timeout = (prepared.meta.timeout_ms > 0)
        .then(|| std::time::Duration::from_millis(prepared.meta.timeout_ms));
    let upstream = app
        .shared
        .upstream
        .send(&method, &url, &headers, Bytes::from(upstream_body), timeout)
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
            hooks.observe("http.error", Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "method": method, "url": url, "error_type": "transport", "error_detail": message})
            });
            hooks.observe("provider.error", Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "url": url, "error": message, "phase": "connect"})
            });
            return format_error(client, status, &message);
        }
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1e3;
    hooks.observe("http.response", Some(request_id), || {
        json!({"request_id": request_id, "provider": name, "method": method, "url": url, "status_code": upstream.status, "duration_ms": duration_ms, "is_provider_response": true})
    });
    hooks.observe("provider.response.received", Some(request_id), || {
        json!({"request_id": request_id, "provider": name, "method": method, "url": url, "status_code": upstream.status, "duration_ms": duration_ms})
    });

    let upstream_is_sse = prepared.meta.stream
        || upstream
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream"));
    let upstream_time = started.elapsed();
    let passed = passed_headers(&upstream.headers);
    let mut response = if upstream.status >= 400 {
        upstream_error(app, name, route, request_id, &url, upstream).await
    } else if upstream_is_sse && stream {
        stream_response(
            app, name, route, request_id, upstream, alias, peek.model, timeout,
        )
    } else if upstream_is_sse {
        // The upstream always streams (Codex); the client asked for one answer.
        let read_timeout = timeout.unwrap_or_else(|| app.shared.upstream.read_timeout());
        accumulate_response(
            app,
            name,
            route,
            request_id,
            &url,
            upstream,
            alias,
            read_timeout,
        )
        .await
    } else {
        complete_response(app, name, route, request_id, &url, upstream, alias).await
    };
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
fn passed_headers(headers: &[(String, String)]) -> Vec<(http::HeaderName, HeaderValue)> {
    const PREFIXES: [&str; 3] = ["anthropic-ratelimit-", "x-ratelimit-", "x-codex-"];
    headers
        .iter()
        .filter(|(name, _)| {
            name == "request-id"
                || name == "retry-after"
                || PREFIXES.iter().any(|p| name.starts_with(p))
        })
        .filter_map(|(name, value)| {
            Some((
                http::HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect()
}

/// How long the upstream took to send its response head, for `Server-Timing`.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTime(pub std::time::Duration);

async fn run_prepared_hooks(
    app: &App,
    head: &RequestHead,
    prepared: ProviderPrepareOutput,
    body: Vec<u8>,
) -> (String, String, Vec<(String, String)>, Vec<u8>) {
    let event = "provider.request.prepared";
    if !app.shared.hooks.wants(event) {
        return (prepared.method, prepared.url, prepared.headers, body);
    }
    let data = json!({"method": prepared.method, "url": prepared.url, "headers": prepared.headers, "is_streaming": prepared.stream});
    let (data, body) = app
        .shared
        .hooks
        .mutate(event, Some(&head.request_id), data, body)
        .await;
    let method = data["method"]
        .as_str()
        .unwrap_or(&prepared.method)
        .to_owned();
    let url = data["url"].as_str().unwrap_or(&prepared.url).to_owned();
    let headers = serde_json::from_value(data["headers"].clone()).unwrap_or(prepared.headers);
    (method, url, headers, body)
}

async fn upstream_error(
    app: &App,
    name: &str,
    route: &ProviderRoute,
    request_id: &str,
    url: &str,
    upstream: StreamingResponse,
) -> Response<Body> {
    let status = upstream.status;
    let body = match upstream.body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let converted = convert::error(route.native, route.client, status, &body);
    app.shared.hooks.observe("provider.error", Some(request_id), || {
        json!({"request_id": request_id, "provider": name, "url": url, "status_code": status, "error": String::from_utf8_lossy(&body[..body.len().min(2048)]), "phase": "response"})
    });
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        converted,
    )
}

async fn complete_response(
    app: &App,
    name: &str,
    route: &ProviderRoute,
    request_id: &str,
    url: &str,
    upstream: StreamingResponse,
    alias: Option<String>,
) -> Response<Body> {
    let status = upstream.status;
    let body = match upstream.body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let message = format!(
                "provider {name}: upstream connection broke while reading the answer: {error}"
            );
            app.shared.hooks.observe("provider.error", Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "url": url, "error": message, "phase": "body"})
            });
            return format_error(route.client, StatusCode::BAD_GATEWAY, &message);
        }
    };
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
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        converted,
    )
}

/// Builds one response in the client's format from an upstream stream.
#[allow(clippy::too_many_arguments)]
async fn accumulate_response(
    app: &App,
    name: &str,
    route: &ProviderRoute,
    request_id: &str,
    url: &str,
    upstream: StreamingResponse,
    alias: Option<String>,
    read_timeout: std::time::Duration,
) -> Response<Body> {
    let mut body = upstream.body;
    let mut decoder = sse::Decoder::new();
    let mut accumulator = convert::Accumulator::new(route.native, route.client);
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
                    }
                }
            }
            Ok(None) => {
                events.clear();
                let _ = decoder.finish(&mut events);
                for event in &events {
                    accumulator.push(event);
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
            app.shared.hooks.observe("provider.error", Some(request_id), || {
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
    events: Vec<sse::Event>,
    converted: Vec<sse::Event>,
    provider: String,
    request_id: String,
    chunks: u64,
    bytes: u64,
    hooks: Arc<crate::hooks::HookBus>,
    finished: bool,
}

#[allow(clippy::too_many_arguments)]
fn stream_response(
    app: &App,
    name: &str,
    route: &ProviderRoute,
    request_id: &str,
    upstream: StreamingResponse,
    alias: Option<String>,
    client_model: Option<String>,
    timeout: Option<std::time::Duration>,
) -> Response<Body> {
    let converter = (route.client != route.native)
        .then(|| convert::StreamConverter::new(route.native, route.client));
    let state = StreamState {
        body: upstream.body,
        decoder: sse::Decoder::new(),
        reencode: converter.is_none() && alias.is_some(),
        converter,
        alias,
        client: route.client,
        read_timeout: timeout.unwrap_or_else(|| app.shared.upstream.read_timeout()),
        events: Vec::new(),
        converted: Vec::new(),
        provider: name.to_owned(),
        request_id: request_id.to_owned(),
        chunks: 0,
        bytes: 0,
        hooks: app.shared.hooks.clone(),
        finished: false,
    };
    app.shared.hooks.observe(
        "provider.stream.start",
        Some(request_id),
        || json!({"request_id": request_id, "provider": name}),
    );
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
    response.extensions_mut().insert(Streaming {
        provider: name.to_owned(),
        model: client_model,
    });
    response
}

impl StreamState {
    fn on_data(&mut self, data: Bytes) -> Bytes {
        self.chunks += 1;
        self.bytes += data.len() as u64;
        let (request_id, chunk_number, chunk_size) = (&self.request_id, self.chunks, data.len());
        self.hooks.observe("provider.stream.chunk", Some(request_id), || {
            json!({"request_id": request_id, "chunk_number": chunk_number, "chunk_size": chunk_size})
        });
        if self.converter.is_none() && !self.reencode {
            // Unconverted streams pass through byte for byte.
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
            Vec::new()
        };
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
        self.hooks.observe("provider.stream.end", Some(request_id), || {
            json!({"request_id": request_id, "provider": provider, "total_chunks": chunks, "total_bytes": bytes, "usage": null})
        });
        Bytes::from(out)
    }

    fn on_failure(&mut self, message: &str) -> Bytes {
        let (request_id, provider) = (&self.request_id, &self.provider);
        self.hooks.observe("provider.error", Some(request_id), || {
            json!({"request_id": request_id, "provider": provider, "error": message, "phase": "stream"})
        });
        tracing::warn!(provider = %self.provider, "{message}");
        let mut out = Vec::new();
        let body = convert::error_body(self.client, 502, convert::ErrorKind::Api, message);
        let data = String::from_utf8_lossy(&body).into_owned();
        let event = match self.client {
            Format::AnthropicMessages => sse::Event::new("error", data),
            Format::OpenAiResponses => sse::Event::new("error", data),
            Format::OpenAiChat => sse::Event::data(data),
        };
        event.encode(&mut out);
        if self.client == Format::OpenAiChat {
            sse::Event::done().encode(&mut out);
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
