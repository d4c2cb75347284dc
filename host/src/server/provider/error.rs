//! The one error of the provider path, and the one place it becomes a
//! response: [`ProxyError::into_response`], in the client's API format.
//!
//! Each step of the path returns `Result<_, ProxyError>`; the step sequence
//! (`mod.rs`) turns the first error into the client's answer. Streams are the
//! exception by nature: once the head has gone, a failure can only end the
//! stream with an error event of its format (`stream.rs`).

use bytes::Bytes;
use ccproxy_formats::{Format, convert};
use http::{HeaderValue, Response, StatusCode, header};

use super::ProviderOutcome;
use crate::server::response::{Body, full};

/// Who caused a provider request to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client's request (malformed body, missing credentials, too large).
    Client,
    /// A plugin: its `provider.prepare` failed, panicked or timed out, or
    /// what it prepared cannot be sent.
    Plugin,
    /// The upstream: unreachable, silent, broken, or an answer that cannot
    /// be read or converted.
    Upstream,
    /// The proxy itself (its own limits, its own conversions).
    Internal,
}

/// A provider request that failed before its answer could start: where it
/// came from, the status the client gets, and the message it reads.
#[derive(Debug, Clone)]
pub struct ProxyError {
    origin: Origin,
    status: StatusCode,
    message: String,
    /// Seconds for the answer's `Retry-After`, when the client should wait.
    retry_after_secs: Option<u64>,
}

impl ProxyError {
    /// An error from `origin`, answered with `status` and `message`.
    pub fn new(origin: Origin, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            origin,
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The same error, telling the client to retry after `seconds`.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    /// The client's fault.
    pub fn client(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(Origin::Client, status, message)
    }

    /// A plugin's fault.
    pub fn plugin(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(Origin::Plugin, status, message)
    }

    /// The upstream's fault.
    pub fn upstream(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(Origin::Upstream, status, message)
    }

    /// The proxy's own fault.
    pub fn internal(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(Origin::Internal, status, message)
    }

    /// Who caused it.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message the client reads.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error answer in `format` (the client's API format), marked as a
    /// failure for `request.failed`. The only place a provider-path error
    /// becomes a response.
    pub fn into_response(self, format: Format) -> Response<Body> {
        tracing::debug!(origin = ?self.origin, status = self.status.as_u16(), message = %self.message, "provider request failed");
        let kind = convert::ErrorKind::from_status(self.status.as_u16());
        let body = convert::error_body(format, self.status.as_u16(), kind, &self.message);
        let mut response = json_response(self.status, body);
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        ProviderOutcome::of_mut(&mut response).failure = Some(self.message);
        response
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProxyError {}

/// A complete JSON answer with `status`.
pub(super) fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn becomes_the_clients_error_format_marked_as_failed() {
        let error = ProxyError::upstream(StatusCode::BAD_GATEWAY, "provider p: upstream gone");
        assert_eq!(error.origin(), Origin::Upstream);
        let response = error.into_response(Format::OpenAiChat);
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let outcome = ProviderOutcome::of(&response).expect("marked");
        assert_eq!(
            outcome.failure.as_deref(),
            Some("provider p: upstream gone")
        );
        assert!(outcome.answer.is_none() && outcome.upstream_time.is_none());
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let expected = convert::error_body(
            Format::OpenAiChat,
            502,
            convert::ErrorKind::from_status(502),
            "provider p: upstream gone",
        );
        assert_eq!(&body[..], &expected[..]);
    }

    #[test]
    fn retry_after_becomes_the_header() {
        let response = ProxyError::client(StatusCode::TOO_MANY_REQUESTS, "all cooling")
            .with_retry_after(42)
            .into_response(Format::AnthropicMessages);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }
}
