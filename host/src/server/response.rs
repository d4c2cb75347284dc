//! Response bodies and the one way an error becomes a response.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use serde_json::json;

/// Any error a response body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the server sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    json_bytes(
        status,
        serde_json::to_vec(value).unwrap_or_default(),
        "application/json",
    )
}

/// A response with a JSON body already serialised, and its content type.
pub fn json_bytes(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An error response: `{"error": {"type": ..., "message": ...}}`.
pub fn error_response(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"type": error_type, "message": message}}),
    )
}

/// Calls `on_end(bytes_sent, completed)` once the body has been sent to the end
/// (`completed = true`), failed, or was dropped because the client went away
/// (`completed = false`). Used for `request.completed` of streamed responses.
pub fn on_end(body: Body, on_end: impl FnOnce(u64, bool) + Send + 'static) -> Body {
    OnEnd {
        inner: body,
        bytes: 0,
        on_end: Some(Box::new(on_end)),
    }
    .boxed_unsync()
}

type EndCallback = Box<dyn FnOnce(u64, bool) + Send>;

struct OnEnd {
    inner: Body,
    bytes: u64,
    on_end: Option<EndCallback>,
}

impl OnEnd {
    fn finish(&mut self, completed: bool) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.bytes, completed);
        }
    }
}

impl http_body::Body for OnEnd {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            std::task::Poll::Ready(Some(Err(_))) => self.finish(false),
            std::task::Poll::Ready(None) => self.finish(true),
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for OnEnd {
    fn drop(&mut self) {
        self.finish(false);
    }
}
