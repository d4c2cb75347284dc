//! Steps 6, 8 and 9: answers read whole before the client gets them (an
//! upstream error, a stream accumulated for a client that asked for one
//! answer, a complete answer), each converted into the client's format.

use bytes::Bytes;
use ccproxy_formats::{convert, sse};
use ccproxy_plugin_abi::HookEvent;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use super::{Answering, ProxyError, error::json_response};
use crate::{server::response::Body, upstream::StreamingResponse};

/// Why a complete upstream body could not be read.
pub(super) enum BodyFailure {
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

/// Step 6: an upstream error status, its body converted into the client's
/// error format with the status kept (an answer, not a failure of the
/// proxy); a body that cannot be read is the upstream's failure.
pub(super) async fn upstream_error(
    answering: Answering<'_>,
    upstream: StreamingResponse,
) -> Result<Response<Body>, ProxyError> {
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
    let who = route.who(name);
    let body = match collected {
        Ok(body) => body,
        Err(failure) => {
            let message = format!(
                "provider {who}: the upstream answered {status} and then {}",
                failure.describe()
            );
            app.shared.hooks.observe(HookEvent::ProviderError, Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "url": url, "status_code": status, "error": message, "phase": "response"})
            });
            return Err(ProxyError::upstream(failure.status(), message));
        }
    };
    let converted = convert::error(route.native, route.client, status, &body);
    app.shared.hooks.observe(HookEvent::ProviderError, Some(request_id), || {
        json!({"request_id": request_id, "provider": name, "url": url, "status_code": status, "error": String::from_utf8_lossy(&body[..body.len().min(2048)]), "phase": "response"})
    });
    Ok(json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        converted,
    ))
}

/// Step 9: a complete answer, converted back and its model alias written
/// back; a body that cannot be read or converted is the upstream's failure.
pub(super) async fn complete_response(
    answering: Answering<'_>,
    upstream: StreamingResponse,
) -> Result<Response<Body>, ProxyError> {
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
        tools,
        ..
    } = answering;
    let who = route.who(name);
    let body = match collected {
        Ok(body) => body,
        Err(failure) => {
            let message = format!("provider {who}: {}", failure.describe());
            app.shared.hooks.observe(HookEvent::ProviderError, Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "url": url, "error": message, "phase": "body"})
            });
            return Err(ProxyError::upstream(failure.status(), message));
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
        return Ok(json_response(status, body));
    }
    let converted = convert::response_with_tools(route.native, route.client, &body, tools.as_ref())
        .map_err(|error| {
            ProxyError::upstream(
                StatusCode::BAD_GATEWAY,
                format!("provider {who}: upstream answer could not be converted: {error}"),
            )
        })?;
    let converted = match &alias {
        Some(model) => convert::rewrite_model(&converted, model).unwrap_or(converted),
        None => converted,
    };
    Ok(json_response(status, converted))
}

/// Step 8: a streamed upstream for a client that asked for one answer (the
/// upstream always streams: Codex), accumulated into one response in the
/// client's format; a broken, silent or malformed stream is the upstream's
/// failure.
pub(super) async fn accumulate_response(
    answering: Answering<'_>,
    upstream: StreamingResponse,
) -> Result<Response<Body>, ProxyError> {
    let Answering {
        app,
        name,
        route,
        request_id,
        url,
        alias,
        read_timeout,
        usage,
        tools,
        ..
    } = answering;
    let who = route.who(name);
    let mut body = upstream.body;
    let mut decoder = sse::Decoder::new();
    let mut accumulator = convert::Accumulator::new(route.native, route.client);
    if let Some(tools) = tools {
        // As for a stream (`stream.rs`): the client's own tool calls back.
        accumulator = accumulator.with_tools(tools);
    }
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
                        break Some(ProxyError::upstream(
                            StatusCode::BAD_GATEWAY,
                            format!("provider {who}: upstream stream is malformed: {error}"),
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
                break Some(ProxyError::upstream(
                    StatusCode::BAD_GATEWAY,
                    format!("provider {who}: upstream connection broke mid-stream: {error}"),
                ));
            }
            Err(_) => {
                break Some(ProxyError::upstream(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "provider {who}: upstream sent nothing for {} s mid-stream",
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
        Some(failure) => Err(failure),
        None => accumulator.finish().map_err(|error| {
            let status =
                StatusCode::from_u16(error.kind.status()).unwrap_or(StatusCode::BAD_GATEWAY);
            ProxyError::upstream(status, format!("provider {who}: {}", error.message))
        }),
    };
    match result {
        Ok(converted) => {
            let converted = match &alias {
                Some(model) => convert::rewrite_model(&converted, model).unwrap_or(converted),
                None => converted,
            };
            Ok(json_response(StatusCode::OK, converted))
        }
        Err(failure) => {
            let message = failure.message();
            app.shared.hooks.observe(HookEvent::ProviderError, Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "url": url, "error": message, "phase": "stream"})
            });
            Err(failure)
        }
    }
}
