//! Adapter endpoints (plugin API 1.2): a wire format a plugin adds, served in
//! front of the provider path.
//!
//! A plugin's manifest declares a format adapter from its format to a core
//! format with an endpoint (`FormatAdapterSpec::endpoint`); the router mounts
//! it under every provider prefix with an endpoint in that core format. Here:
//!
//! 1. the client's body goes through the adapter (`format.convert`, kind
//!    `request`) into the core format;
//! 2. the ordinary provider path runs with it as if the client had spoken the
//!    core format (it converts to the upstream's native format and back; it
//!    also peeks `stream` and `model` in the converted body);
//! 3. the answer goes back through the adapter: a complete body as one
//!    `response` (or `error`, status 400 and above), a stream piece by piece
//!    as `stream_chunk` under one stream id, then `stream_end`; each piece is
//!    converted only when the client has taken the previous one, and a client
//!    that leaves early still ends the stream for the adapter, so it can drop
//!    its state.
//!
//! The answer keeps the provider path's status, headers and content type
//! (`application/json`, `text/event-stream`): an adapter changes bodies, not
//! heads. When the adapter fails (an error, a panic), the host's message is
//! put in the core format's error shape and offered to the adapter's own
//! `error` conversion, so the client still gets an error in its format; if
//! that fails too, the host's generic `{"error": {"type", "message"}}`.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use ccproxy_formats::Format;
use ccproxy_plugin_abi::protocol::{InputOf, ops};
use http::{HeaderValue, Response, StatusCode, header, response::Parts};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde::Serialize;

use super::{
    App,
    provider::{self, ClientRequest, ProviderOutcome, ProviderRoute},
    response::{Body, BoxError, error_response, full},
};
use crate::plugins::{
    handle::{CallError, CallErrorKind},
    registry::ActivePlugin,
};

/// An adapter endpoint mounted by the router.
#[derive(Debug, Clone)]
pub struct AdaptedRoute {
    /// The full path mounted, e.g. `/claude/v1/tiny`.
    pub path: String,
    /// The adapter's format, which clients speak here.
    pub from: String,
    /// The core format the adapter converts to.
    pub to: Format,
    /// The provider endpoint in `to` whose path runs behind this one.
    pub provider_route: ProviderRoute,
}

/// Stream ids for `stream_chunk` and `stream_end`, unique while the host runs.
static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

/// The JSON of `protocol::FormatConvertInput`, borrowing its strings.
#[derive(Serialize)]
struct ConvertInput<'a> {
    from: &'a str,
    to: &'a str,
    kind: &'static str,
    stream: u64,
}

impl InputOf<ops::FormatConvert> for ConvertInput<'_> {}

/// One direction of one adapter: who converts, from what, to what.
#[derive(Clone)]
struct Conversion {
    adapter: Arc<ActivePlugin>,
    from: Arc<str>,
    to: Arc<str>,
    /// How long one conversion may take (`server.plugin_call_timeout_seconds`).
    timeout: std::time::Duration,
}

impl Conversion {
    async fn run(
        &self,
        kind: &'static str,
        stream: u64,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, CallError> {
        let input = ConvertInput {
            from: &self.from,
            to: &self.to,
            kind,
            stream,
        };
        self.adapter
            .handle
            .call_with_timeout::<ops::FormatConvert>(&input, body, self.timeout)
            .await
            .map(|reply| reply.body)
    }

    /// What the client reads when converting `what` failed.
    fn describe(&self, what: &str, error: &CallError) -> String {
        let name = &self.adapter.manifest.name;
        match error.kind {
            CallErrorKind::Panicked => format!(
                "format adapter plugin {name} panicked converting the {what} from {} to {}: {}; this request failed, the server keeps serving",
                self.from, self.to, error.message
            ),
            _ => format!(
                "format adapter plugin {name} could not convert the {what} from {} to {}: {}",
                self.from, self.to, error.message
            ),
        }
    }
}

/// Handles a request on adapter endpoint `route` of plugin `adapter`, in
/// front of provider endpoint `route.provider_route` of `provider`.
pub async fn handle(
    app: &App,
    adapter: &Arc<ActivePlugin>,
    provider: &Arc<ActivePlugin>,
    route: &AdaptedRoute,
    head: &ClientRequest<'_>,
    body: Bytes,
) -> Response<Body> {
    let timeout = app.shared.config.server.plugin_call_timeout();
    let inward = Conversion {
        adapter: adapter.clone(),
        from: route.from.as_str().into(),
        to: route.to.id().into(),
        timeout,
    };
    let outward = Conversion {
        adapter: adapter.clone(),
        from: inward.to.clone(),
        to: inward.from.clone(),
        timeout,
    };
    let converted = match inward.run("request", 0, Vec::from(body)).await {
        Ok(converted) => converted,
        Err(error) => {
            // The client's body is not the adapter's format (400), or the
            // adapter broke (its error's status; 500 for a panic).
            let status = StatusCode::from_u16(error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return failure(&outward, status, &inward.describe("request", &error)).await;
        }
    };

    let response = provider::handle(
        app,
        provider,
        &route.provider_route,
        head,
        Bytes::from(converted),
    )
    .await;

    let (mut parts, body) = response.into_parts();
    // The body is replaced: its length is the server's business again.
    parts.headers.remove(header::CONTENT_LENGTH);
    let is_event_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
    let complete = http_body::Body::size_hint(&body).exact().is_some();
    if parts.status.as_u16() < 400 && (is_event_stream || !complete) {
        let stream = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
        return Response::from_parts(parts, stream_body(outward, stream, body));
    }
    // A complete body (the provider path's answers and errors are `full`):
    // reading it waits for nothing.
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let message = format!("the provider's answer could not be read: {error}");
            return failure(&outward, StatusCode::BAD_GATEWAY, &message).await;
        }
    };
    let (kind, what) = if parts.status.as_u16() >= 400 {
        ("error", "error")
    } else {
        ("response", "answer")
    };
    match outward.run(kind, 0, Vec::from(bytes)).await {
        Ok(converted) => Response::from_parts(parts, full(converted)),
        Err(error) => {
            let status = match error.kind {
                CallErrorKind::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_GATEWAY,
            };
            let mut response = failure(&outward, status, &outward.describe(what, &error)).await;
            keep_provider_marks(&parts, &mut response);
            response
        }
    }
}

/// An error answer for the client when the adapter itself failed: the
/// message in the core format's error shape, converted by the adapter's
/// `error` conversion when it can, else the host's generic error.
async fn failure(outward: &Conversion, status: StatusCode, message: &str) -> Response<Body> {
    tracing::warn!(plugin = %outward.adapter.manifest.name, %status, message, "format adapter failed");
    let core: Format = match outward.from.parse() {
        Ok(core) => core,
        Err(_) => return generic_failure(status, message),
    };
    let core_error = ccproxy_formats::convert::error_body(
        core,
        status.as_u16(),
        ccproxy_formats::convert::ErrorKind::from_status(status.as_u16()),
        message,
    );
    let mut response = match outward.run("error", 0, core_error).await {
        Ok(converted) => {
            let mut response = Response::new(full(converted));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(_) => generic_failure(status, message),
    };
    ProviderOutcome::of_mut(&mut response).failure = Some(message.to_owned());
    response
}

fn generic_failure(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = error_response(status, "format_adapter_error", message);
    ProviderOutcome::of_mut(&mut response).failure = Some(message.to_owned());
    response
}

/// Keeps what the provider path noted on its answer (provider, model, usage,
/// upstream time) on the error that replaces it.
fn keep_provider_marks(parts: &Parts, response: &mut Response<Body>) {
    let Some(kept) = parts.extensions.get::<ProviderOutcome>() else {
        return;
    };
    let outcome = ProviderOutcome::of_mut(response);
    if kept.answer.is_some() {
        outcome.answer.clone_from(&kept.answer);
    }
    if kept.upstream_time.is_some() {
        outcome.upstream_time = kept.upstream_time;
    }
}

/// The reading side of one converted stream; ends the stream for the
/// adapter when dropped before the end (the client left).
struct Reader {
    conversion: Conversion,
    stream: u64,
    inner: Body,
    /// The adapter has had `stream_end` (or is being sent it).
    ended: bool,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<Bytes, BoxError>> {
        loop {
            if self.ended {
                return None;
            }
            match self.inner.frame().await {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    match self
                        .conversion
                        .run("stream_chunk", self.stream, Vec::from(data))
                        .await
                    {
                        // Nothing complete yet: read on.
                        Ok(converted) if converted.is_empty() => {}
                        Ok(converted) => return Some(Ok(Bytes::from(converted))),
                        Err(error) => return Some(Err(self.broken(&error))),
                    }
                }
                None => {
                    self.ended = true;
                    return match self
                        .conversion
                        .run("stream_end", self.stream, Vec::new())
                        .await
                    {
                        Ok(tail) if tail.is_empty() => None,
                        Ok(tail) => Some(Ok(Bytes::from(tail))),
                        Err(error) => {
                            let message = self.conversion.describe("end of the stream", &error);
                            tracing::warn!(plugin = %self.conversion.adapter.manifest.name, message, "format adapter failed; the stream is cut short");
                            Some(Err(message.into()))
                        }
                    };
                }
                Some(Err(error)) => {
                    self.release();
                    return Some(Err(error));
                }
            }
        }
    }

    /// The adapter failed on a piece: the client's stream is cut short
    /// (a truncated body, as for a plugin's broken stream).
    fn broken(&mut self, error: &CallError) -> BoxError {
        let message = self.conversion.describe("stream", error);
        tracing::warn!(plugin = %self.conversion.adapter.manifest.name, message, "format adapter failed; the stream is cut short");
        self.release();
        message.into()
    }

    /// Ends the stream for the adapter, discarding what it answers, so it
    /// can forget the stream.
    fn release(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let conversion = self.conversion.clone();
        let stream = self.stream;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = conversion.run("stream_end", stream, Vec::new()).await;
            });
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.release();
    }
}

fn stream_body(conversion: Conversion, stream: u64, inner: Body) -> Body {
    let reader = Reader {
        conversion,
        stream,
        inner,
        ended: false,
    };
    let frames = futures_util::stream::unfold(reader, |mut reader| async move {
        let piece = reader.next().await?;
        Some((piece.map(Frame::data), reader))
    });
    StreamBody::new(frames).boxed_unsync()
}
