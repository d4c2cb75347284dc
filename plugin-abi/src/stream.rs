//! Bodies produced or consumed over time (plugin API 1.2): a route that
//! answers with a stream, and an HTTP answer read as it arrives.
//!
//! A [`BodyStream`] is pulled, one piece at a time, by whoever consumes it:
//! the host asks a streamed route for its next piece only when the client has
//! taken the previous one, so a producer writing into a [`BodySender`] waits
//! while the client is slow (backpressure), and learns that the client has gone
//! when `send` fails (the host cancels the stream and drops it).

use std::{
    fmt,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context as TaskContext, Poll},
};

use futures_channel::mpsc;
use futures_util::{Stream, StreamExt, future::poll_fn};

use crate::{
    Headers, PluginError, Response,
    protocol::{AnsweredBy, TokenUsage},
};

/// Where a stream's producer leaves what it learnt by the end for the host
/// (plugin API 1.3).
pub(crate) type EndCell = Arc<Mutex<EndReport>>;

/// What a stream's last chunk reports.
#[derive(Debug, Default, Clone)]
pub(crate) struct EndReport {
    pub(crate) usage: Option<TokenUsage>,
    pub(crate) model: Option<String>,
}

/// A body that arrives in pieces; `None` ends it, an error breaks it (the host
/// then aborts the client's response, which the client sees as a truncated body).
pub struct BodyStream {
    inner: Pin<Box<dyn Stream<Item = Result<Vec<u8>, PluginError>> + Send>>,
    end: EndCell,
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream").finish_non_exhaustive()
    }
}

impl BodyStream {
    /// A body made of whatever `stream` yields.
    pub fn new(stream: impl Stream<Item = Result<Vec<u8>, PluginError>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(stream),
            end: EndCell::default(),
        }
    }

    /// A channel holding at most `capacity` pieces: the producer writes into
    /// the [`BodySender`] (from a task started with `Context::spawn`, or from
    /// a hook), the host reads the [`BodyStream`].
    pub fn channel(capacity: usize) -> (BodySender, BodyStream) {
        // futures' channel holds one slot per sender on top of the buffer.
        let (sender, receiver) = mpsc::channel(capacity.saturating_sub(1));
        let body = BodyStream::new(receiver);
        let end = body.end.clone();
        (BodySender { sender, end }, body)
    }

    /// The token usage the producer reported with
    /// [`BodySender::finish_with_usage`] or [`BodySender::set_usage`]
    /// (plugin API 1.3), once it has.
    pub fn usage(&self) -> Option<TokenUsage> {
        lock(&self.end).usage
    }

    /// The model the producer named with [`BodySender::set_model`] (plugin
    /// API 1.3), once it has.
    pub fn model(&self) -> Option<String> {
        lock(&self.end).model.clone()
    }

    pub(crate) fn end_cell(&self) -> EndCell {
        self.end.clone()
    }

    /// The next piece; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, PluginError>> {
        self.inner.next().await
    }

    /// Reads the rest of the body into one buffer.
    pub async fn collect(mut self) -> Result<Vec<u8>, PluginError> {
        let mut body = Vec::new();
        while let Some(piece) = self.next().await {
            body.extend_from_slice(&piece?);
        }
        Ok(body)
    }
}

impl Stream for BodyStream {
    type Item = Result<Vec<u8>, PluginError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// A stream of the items of `iter`, for a [`BodyStream`] made of pieces known
/// up front or computed one by one (`BodyStream::new(stream::iter(...))`).
pub fn iter<I: IntoIterator>(iter: I) -> futures_util::stream::Iter<I::IntoIter> {
    futures_util::stream::iter(iter)
}

/// The writing end of [`BodyStream::channel`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BodySender {
    sender: mpsc::Sender<Result<Vec<u8>, PluginError>>,
    end: EndCell,
}

fn lock(cell: &EndCell) -> std::sync::MutexGuard<'_, EndReport> {
    cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The reader of a [`BodySender`]'s stream has gone: the client left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stream's reader has gone")
    }
}

impl std::error::Error for Closed {}

impl BodySender {
    /// Sends one piece, waiting while the reader is behind (backpressure).
    /// Fails once the reader has gone: stop producing then.
    pub async fn send(&mut self, piece: impl Into<Vec<u8>>) -> Result<(), Closed> {
        poll_fn(|cx| self.sender.poll_ready(cx))
            .await
            .map_err(|_| Closed)?;
        self.sender.start_send(Ok(piece.into())).map_err(|_| Closed)
    }

    /// Sends a piece only if there is room now; `Ok(false)` when the reader is
    /// behind (a producer that would rather drop than wait, e.g. live events).
    pub fn try_send(&mut self, piece: impl Into<Vec<u8>>) -> Result<bool, Closed> {
        match self.sender.try_send(Ok(piece.into())) {
            Ok(()) => Ok(true),
            Err(error) if error.is_full() => Ok(false),
            Err(_) => Err(Closed),
        }
    }

    /// Ends the stream with an error (the client's response is aborted).
    pub async fn fail(mut self, error: PluginError) {
        if poll_fn(|cx| self.sender.poll_ready(cx)).await.is_ok() {
            let _ = self.sender.start_send(Err(error));
        }
    }

    /// Whether the reader has gone.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Records the answer's token usage (plugin API 1.3); the host reads it
    /// when the stream ends, and `request.completed` carries it. The last
    /// call wins. Set it before the stream ends: with the last piece sent,
    /// or through [`BodySender::finish_with_usage`].
    pub fn set_usage(&self, usage: TokenUsage) {
        lock(&self.end).usage = Some(usage);
    }

    /// Names the model that answered when it is known only once the stream
    /// has begun (plugin API 1.3): it goes with the stream's end and replaces
    /// the model of [`StreamResponse::answered_by`]. The last call wins; an
    /// empty name is ignored.
    pub fn set_model(&self, model: impl Into<String>) {
        let model = model.into();
        if !model.is_empty() {
            lock(&self.end).model = Some(model);
        }
    }

    /// Ends the stream (once every clone of this sender is gone) and reports
    /// the answer's token usage with its end (plugin API 1.3): pair it with
    /// [`StreamResponse::answered_by`].
    ///
    /// ```
    /// use ccproxy_plugin_abi::prelude::*;
    ///
    /// fn answer(ctx: Context) -> StreamResponse {
    ///     let (mut sender, body) = BodyStream::channel(4);
    ///     ctx.spawn(async move {
    ///         if sender.send("data: {}\n\n").await.is_ok() {
    ///             let usage = TokenUsage { input_tokens: 12, output_tokens: 3, ..TokenUsage::default() };
    ///             sender.finish_with_usage(usage);
    ///         }
    ///     });
    ///     StreamResponse::sse(body).answered_by("my_cli", "claude-sonnet-4-5")
    /// }
    /// ```
    pub fn finish_with_usage(self, usage: TokenUsage) {
        self.set_usage(usage);
    }
}

/// A route answer whose body is produced over time: an SSE stream, a chunked
/// download, or an upstream answer forwarded as it arrives.
///
/// ```
/// use ccproxy_plugin_abi::prelude::*;
///
/// fn ticks(ctx: Context) -> StreamResponse {
///     let (mut sender, body) = BodyStream::channel(4);
///     let sleeper = ctx.clone();
///     ctx.spawn(async move {
///         for n in 0.. {
///             // Fails once the client has gone: the task ends with it.
///             if sender.send(format!("data: {n}\n\n")).await.is_err() {
///                 break;
///             }
///             sleeper.sleep(std::time::Duration::from_secs(1)).await;
///         }
///     });
///     StreamResponse::sse(body)
/// }
/// ```
#[derive(Debug)]
pub struct StreamResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Headers,
    /// The body.
    pub body: BodyStream,
    /// Since 1.3: the provider and model that answered (see
    /// [`StreamResponse::answered_by`]); the usage comes at the stream's end
    /// ([`BodySender::finish_with_usage`]).
    pub answered_by: Option<AnsweredBy>,
}

impl StreamResponse {
    /// A response with `status`, no headers and `body`.
    pub fn new(status: u16, body: BodyStream) -> Self {
        Self {
            status,
            headers: Headers::default(),
            body,
            answered_by: None,
        }
    }

    /// Says which provider and model answered (plugin API 1.3), as
    /// [`Response::answered_by`] does for a complete answer; the token usage
    /// follows at the stream's end ([`BodySender::finish_with_usage`]).
    pub fn answered_by(mut self, provider: impl Into<String>, model: impl Into<String>) -> Self {
        self.answered_by = Some(AnsweredBy {
            provider: provider.into(),
            model: Some(model.into()).filter(|model| !model.is_empty()),
        });
        self
    }

    /// A `200 text/event-stream` response that proxies and browsers do not
    /// buffer or cache.
    pub fn sse(body: BodyStream) -> Self {
        let mut response = Self::new(200, body);
        response.headers.set("content-type", "text/event-stream");
        response.headers.set("cache-control", "no-cache");
        response.headers.set("x-accel-buffering", "no");
        response
    }
}

/// What a route answers: a complete body, or one produced over time.
#[derive(Debug)]
pub enum RouteResponse {
    /// The whole body at once.
    Full(Response),
    /// A head now, the body as it is produced.
    Stream(StreamResponse),
}

impl From<Response> for RouteResponse {
    fn from(response: Response) -> Self {
        RouteResponse::Full(response)
    }
}

impl From<StreamResponse> for RouteResponse {
    fn from(response: StreamResponse) -> Self {
        RouteResponse::Stream(response)
    }
}
