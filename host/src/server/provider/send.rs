//! Step 5: the request sent with the shared client (`http.request`,
//! `provider.request.sent`), the head received (`http.response`,
//! `provider.response.received`); unreachable: 502, no head in time: 504.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ccproxy_plugin_abi::{HookBody, HookEvent};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::{ProxyError, events, prepare::UpstreamRequest};
use crate::{
    server::App,
    upstream::{StreamingResponse, UpstreamError},
};

/// The upstream's head, and what the steps after it need to know of it.
pub(super) struct Sent {
    pub(super) upstream: StreamingResponse,
    /// The answer is an event stream (the plugin said so, or its content type).
    pub(super) is_sse: bool,
    /// Set when `provider.response.received` waits for the complete body (a
    /// hook asked for it): the head's arrival, in ms after sending, and the
    /// upstream's headers.
    pub(super) received_later: Option<(f64, http::HeaderMap)>,
    /// How long the head took, for `Server-Timing`.
    pub(super) upstream_time: Duration,
    /// The upstream's headers the client sees (see [`passed_headers`]).
    pub(super) passed: Vec<(http::HeaderName, HeaderValue)>,
}

/// Sends `request` with `body` for provider `name`. A request that cannot
/// be built is the plugin's fault (500); an unreachable or silent upstream
/// is the upstream's (502, 504).
pub(super) async fn send(
    app: &App,
    (name, who): (&str, super::Who<'_>),
    request_id: &str,
    request: &UpstreamRequest,
    body: Vec<u8>,
    client_streams: bool,
) -> Result<Sent, ProxyError> {
    let UpstreamRequest {
        method,
        url,
        headers,
        stream: upstream_streams,
        timeout,
    } = request;
    let hooks = &app.shared.hooks;
    hooks.observe(HookEvent::HttpRequest, Some(request_id), || {
        events::HttpRequest {
            is_client_request: false,
            is_provider_request: true,
            method,
            provider: name,
            request_id,
            url,
        }
    });
    let upstream_body = Bytes::from(body);
    hooks.observe_with_body(
        HookEvent::ProviderRequestSent,
        Some(request_id),
        || events::RequestSent {
            headers: events::MaskedPairs(headers),
            is_streaming: client_streams,
            method,
            provider: name,
            request_id,
            url,
        },
        HookBody::UpstreamRequestBody,
        || upstream_body.clone(),
    );
    let started = Instant::now();
    let upstream = app
        .shared
        .upstream
        .send(method, url, headers, upstream_body, *timeout)
        .await;
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(error) => {
            let message = format!("provider {who}: {error}");
            hooks.observe(HookEvent::HttpError, Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "method": method, "url": url, "error_type": "transport", "error_detail": message})
            });
            hooks.observe(HookEvent::ProviderError, Some(request_id), || {
                json!({"request_id": request_id, "provider": name, "url": url, "error": message, "phase": "connect"})
            });
            return Err(match error {
                UpstreamError::Timeout { .. } => {
                    ProxyError::upstream(StatusCode::GATEWAY_TIMEOUT, message)
                }
                UpstreamError::Unreachable { .. } => {
                    ProxyError::upstream(StatusCode::BAD_GATEWAY, message)
                }
                // What the plugin (or a hook) prepared is no valid request.
                UpstreamError::Invalid(_) => {
                    ProxyError::plugin(StatusCode::INTERNAL_SERVER_ERROR, message)
                }
            });
        }
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1e3;
    hooks.observe(HookEvent::HttpResponse, Some(request_id), || {
        events::HttpResponse {
            duration_ms,
            is_provider_response: true,
            method,
            provider: name,
            request_id,
            status_code: upstream.status,
            url,
        }
    });
    let is_sse = *upstream_streams
        || upstream
            .headers
            .get_all(header::CONTENT_TYPE)
            .iter()
            .any(|v| v.as_bytes().starts_with(b"text/event-stream"));
    // A complete answer's body reaches the hooks that asked for it with this
    // event, sent once the body has been read (`complete.rs`).
    // The upstream's headers come with the body: only for the hooks that
    // asked for it, so the others do not pay for writing them.
    let with_body = hooks.wants_body(
        &HookEvent::ProviderResponseReceived,
        HookBody::UpstreamResponseBody,
    );
    let received_later = (!is_sse || upstream.status >= 400) && with_body;
    if !received_later {
        hooks.observe(
            HookEvent::ProviderResponseReceived,
            Some(request_id),
            || events::ResponseReceived {
                duration_ms,
                headers: with_body.then_some(events::MaskedHeaderMap(&upstream.headers)),
                method,
                provider: name,
                request_id,
                status_code: upstream.status,
                url,
            },
        );
    }
    let upstream_time = started.elapsed();
    let passed = passed_headers(&upstream.headers);
    Ok(Sent {
        received_later: received_later.then(|| (duration_ms, upstream.headers.clone())),
        upstream,
        is_sse,
        upstream_time,
        passed,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
