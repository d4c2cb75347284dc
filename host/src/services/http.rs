//! `host.http` and `host.http.stream`: a plugin's HTTP requests, sent with the
//! shared upstream client, observed as `http.request` / `http.response` /
//! `http.error` hook events.
//!
//! A streamed answer's body stays here, in the plugin's [`HttpStreams`], and
//! the plugin pulls it piece by piece (`host.http.stream.next`): nothing is
//! buffered beyond the piece being handed over, and a plugin that stops
//! pulling stops the upstream read (backpressure through hyper's window).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use ccproxy_plugin_abi::HookEvent;
use ccproxy_plugin_abi::{
    protocol::{HttpRequestHead, HttpResponseHead, StreamChunk, StreamRef},
    raw::{AbiError, ErrorCode},
};
use dashmap::DashMap;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::json;

use super::Shared;
use crate::upstream::{UpstreamError, error_chain, header_pairs};

/// One plugin's HTTP request as the hooks see it: `http.request` when it
/// starts, then `http.response` or `http.error`.
struct Observed<'a> {
    shared: &'a Shared,
    plugin: &'a str,
    head: &'a HttpRequestHead,
    started: Instant,
}

impl<'a> Observed<'a> {
    fn start(shared: &'a Shared, plugin: &'a str, head: &'a HttpRequestHead) -> Self {
        shared.hooks.observe(HookEvent::HttpRequest, None, || {
            json!({"plugin": plugin, "method": head.method, "url": head.url, "is_client_request": false, "is_provider_request": true})
        });
        Self {
            shared,
            plugin,
            head,
            started: Instant::now(),
        }
    }

    fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1e3
    }

    /// Reports the answer's head; `body_size` when the body was read whole.
    fn answered(&self, status: u16, body_size: Option<usize>) {
        let (plugin, head, duration_ms) = (self.plugin, self.head, self.elapsed_ms());
        self.shared.hooks.observe(HookEvent::HttpResponse, None, || {
            let mut data = json!({"plugin": plugin, "method": head.method, "url": head.url, "status_code": status, "duration_ms": duration_ms, "is_provider_response": true});
            if let Some(size) = body_size {
                data["body_size"] = json!(size);
            }
            data
        });
    }

    /// Reports the failure and turns it into the plugin's error.
    fn failed(&self, error: UpstreamError) -> AbiError {
        let (plugin, head, duration_ms) = (self.plugin, self.head, self.elapsed_ms());
        let detail = error.to_string();
        self.shared.hooks.observe(HookEvent::HttpError, None, || {
            json!({"plugin": plugin, "method": head.method, "url": head.url, "error_type": "transport", "error_detail": detail, "duration_ms": duration_ms})
        });
        let code = match error {
            UpstreamError::Invalid(_) => ErrorCode::Invalid,
            UpstreamError::Timeout { .. } => ErrorCode::Timeout,
            UpstreamError::Unreachable { .. } => ErrorCode::Upstream,
        };
        AbiError::new(code, detail)
    }
}

fn timeout_of(head: &HttpRequestHead) -> Option<Duration> {
    (head.timeout_ms > 0).then(|| Duration::from_millis(head.timeout_ms))
}

/// `host.http`: the whole answer at once.
pub(super) async fn send_buffered(
    shared: &Shared,
    plugin: &str,
    head: HttpRequestHead,
    body: Vec<u8>,
) -> Result<(HttpResponseHead, Vec<u8>), AbiError> {
    let observed = Observed::start(shared, plugin, &head);
    let response = shared
        .upstream
        .send_buffered(
            &head.method,
            &head.url,
            &head.headers,
            Bytes::from(body),
            timeout_of(&head),
        )
        .await
        .map_err(|error| observed.failed(error))?;
    observed.answered(response.status, Some(response.body.len()));
    Ok((
        HttpResponseHead {
            status: response.status,
            headers: response.headers,
            stream: None,
        },
        response.body.to_vec(),
    ))
}

/// `host.http.stream`: the head now; the body stays in `streams` under the id
/// the answer names.
pub(super) async fn send_streamed(
    shared: &Shared,
    plugin: &str,
    streams: &Arc<HttpStreams>,
    head: HttpRequestHead,
    body: Vec<u8>,
) -> Result<(HttpResponseHead, Vec<u8>), AbiError> {
    let observed = Observed::start(shared, plugin, &head);
    let timeout = timeout_of(&head);
    let response = shared
        .upstream
        .send(
            &head.method,
            &head.url,
            &head.headers,
            Bytes::from(body),
            timeout,
        )
        .await
        .map_err(|error| observed.failed(error))?;
    observed.answered(response.status, None);
    let read_timeout = shared.upstream.read_timeout();
    let piece_timeout = timeout.unwrap_or(read_timeout);
    let id = streams.insert(
        response.body,
        head.url.clone(),
        piece_timeout,
        piece_timeout.max(read_timeout),
    );
    Ok((
        HttpResponseHead {
            status: response.status,
            headers: header_pairs(&response.headers),
            stream: Some(id),
        },
        Vec::new(),
    ))
}

/// The bodies of one plugin's streamed HTTP answers.
///
/// A body is taken out of its slot while a piece is read, so no lock is held
/// across an await; a cancel meanwhile removes the slot and the reader then
/// drops the body instead of putting it back. A body the plugin neither reads
/// to the end nor cancels (a plugin bug, or a task that died) is dropped by a
/// small watchdog task once it has been idle for longer than the read timeout
/// (or the request's own, when longer), which also cancels the upstream
/// request: forgotten streams cannot pile up.
#[derive(Debug, Default)]
pub(super) struct HttpStreams {
    next_id: AtomicU64,
    slots: DashMap<u64, Slot>,
}

#[derive(Debug)]
struct Slot {
    /// `None` while a piece is being read.
    body: Option<Incoming>,
    url: String,
    piece_timeout: Duration,
    last_used: Instant,
}

impl HttpStreams {
    fn insert(
        self: &Arc<Self>,
        body: Incoming,
        url: String,
        piece_timeout: Duration,
        idle_limit: Duration,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.slots.insert(
            id,
            Slot {
                body: Some(body),
                url,
                piece_timeout,
                last_used: Instant::now(),
            },
        );
        self.watch(id, idle_limit);
        id
    }

    /// Drops stream `id` once it has been idle for `idle_limit`; ends with it.
    fn watch(self: &Arc<Self>, id: u64, idle_limit: Duration) {
        let streams = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut deadline = tokio::time::Instant::now() + idle_limit;
            loop {
                tokio::time::sleep_until(deadline).await;
                let Some(streams) = streams.upgrade() else {
                    return;
                };
                // A stream being read is in use right now.
                let idle_since = match streams.slots.get(&id) {
                    None => return,
                    Some(slot) if slot.body.is_none() => Instant::now(),
                    Some(slot) => slot.last_used,
                };
                if idle_since.elapsed() >= idle_limit {
                    if let Some((_, slot)) = streams.slots.remove(&id) {
                        tracing::warn!(url = %slot.url, idle_ms = idle_limit.as_millis() as u64, "a plugin left a streamed HTTP answer unread; dropped it and cancelled the request");
                    }
                    return;
                }
                deadline = tokio::time::Instant::from_std(idle_since + idle_limit);
            }
        });
    }

    /// `host.http.stream.next`: the next data piece (trailers are skipped), or
    /// the end, after which the stream is forgotten, as it is after an error.
    pub(super) async fn next(&self, input: StreamRef) -> Result<(StreamChunk, Vec<u8>), AbiError> {
        let id = input.stream;
        let (mut body, piece_timeout, url) = {
            let mut slot = self.slots.get_mut(&id).ok_or_else(|| {
                AbiError::new(
                    ErrorCode::NotFound,
                    format!("HTTP stream {id} is unknown (ended, cancelled or dropped while idle)"),
                )
            })?;
            let body = slot.body.take().ok_or_else(|| {
                AbiError::new(
                    ErrorCode::Invalid,
                    format!("HTTP stream {id} is already being read"),
                )
            })?;
            (body, slot.piece_timeout, slot.url.clone())
        };
        let outcome = loop {
            match tokio::time::timeout(piece_timeout, body.frame()).await {
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => break Ok(Some(data)),
                    // Empty data and trailers carry nothing for the plugin.
                    _ => continue,
                },
                Ok(None) => break Ok(None),
                Ok(Some(Err(error))) => {
                    break Err(AbiError::new(
                        ErrorCode::Upstream,
                        format!(
                            "upstream {url} broke off its answer: {}",
                            error_chain(&error)
                        ),
                    ));
                }
                Err(_) => {
                    break Err(AbiError::new(
                        ErrorCode::Timeout,
                        format!(
                            "upstream {url} sent nothing for {} ms",
                            piece_timeout.as_millis()
                        ),
                    ));
                }
            }
        };
        match outcome {
            Ok(Some(data)) => {
                // Put back unless cancelled meanwhile (then the body drops here).
                if let Some(mut slot) = self.slots.get_mut(&id) {
                    slot.body = Some(body);
                    slot.last_used = Instant::now();
                }
                Ok((StreamChunk { end: false }, data.to_vec()))
            }
            Ok(None) => {
                self.slots.remove(&id);
                Ok((StreamChunk { end: true }, Vec::new()))
            }
            Err(error) => {
                self.slots.remove(&id);
                Err(error)
            }
        }
    }

    /// `host.http.stream.cancel`: drops the body, which cancels the request.
    pub(super) fn cancel(&self, input: StreamRef) {
        self.slots.remove(&input.stream);
    }

    /// How many streams are open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{StreamBody, combinators::BoxBody};
    use hyper::body::Frame;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;
    use crate::{config::HttpConfig, upstream::UpstreamClient};

    /// A server whose every answer is `pieces`, one body frame each, `gap` apart.
    async fn server(pieces: &'static [&'static str], gap: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("bound"));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| async move {
                        let frames = futures_util::stream::unfold(0, move |n| async move {
                            if n >= pieces.len() {
                                return None;
                            }
                            if n > 0 {
                                tokio::time::sleep(gap).await;
                            }
                            let frame = Frame::data(Bytes::from_static(pieces[n].as_bytes()));
                            Some((Ok::<_, Infallible>(frame), n + 1))
                        });
                        let body: BoxBody<Bytes, Infallible> =
                            BoxBody::new(StreamBody::new(frames));
                        Ok::<_, Infallible>(http::Response::new(body))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        url
    }

    /// Longer than any test waits: the timeout or limit a test does not probe.
    const PATIENT: Duration = Duration::from_secs(5);

    /// An upstream client (reads time out after [`PATIENT`]) and no streams.
    fn fixture() -> (UpstreamClient, Arc<HttpStreams>) {
        let config = HttpConfig {
            read_timeout_seconds: PATIENT.as_secs(),
            ..HttpConfig::default()
        };
        let client = UpstreamClient::try_new(&config).expect("no CA file");
        (client, Arc::new(HttpStreams::default()))
    }

    async fn open(
        client: &UpstreamClient,
        streams: &Arc<HttpStreams>,
        url: &str,
        piece_timeout: Duration,
        idle_limit: Duration,
    ) -> u64 {
        let response = client
            .send("GET", url, &[], Bytes::new(), None)
            .await
            .expect("the local server answers");
        streams.insert(response.body, url.to_owned(), piece_timeout, idle_limit)
    }

    #[tokio::test]
    async fn pieces_arrive_one_by_one_then_the_end() {
        let url = server(&["one", "two"], Duration::from_millis(10)).await;
        let (client, streams) = fixture();
        let id = open(&client, &streams, &url, PATIENT, PATIENT).await;
        let mut pieces = Vec::new();
        loop {
            let (chunk, piece) = streams
                .next(StreamRef { stream: id })
                .await
                .expect("a piece");
            if chunk.end {
                break;
            }
            pieces.push(String::from_utf8(piece).expect("text"));
        }
        assert_eq!(pieces.concat(), "onetwo");
        assert_eq!(streams.len(), 0, "an ended stream is forgotten");
        let error = streams.next(StreamRef { stream: id }).await.unwrap_err();
        assert_eq!(ErrorCode::from_u32(error.code), ErrorCode::NotFound);
    }

    #[tokio::test]
    async fn a_silent_upstream_times_out_per_piece() {
        let url = server(&["first", "late"], Duration::from_secs(3)).await;
        let (client, streams) = fixture();
        let id = open(&client, &streams, &url, Duration::from_millis(200), PATIENT).await;
        let (chunk, piece) = streams.next(StreamRef { stream: id }).await.expect("first");
        assert!(!chunk.end);
        assert_eq!(piece, b"first");
        let started = Instant::now();
        let error = streams.next(StreamRef { stream: id }).await.unwrap_err();
        assert_eq!(ErrorCode::from_u32(error.code), ErrorCode::Timeout);
        assert!(
            error.message.contains("sent nothing for 200 ms"),
            "{}",
            error.message
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(streams.len(), 0);
    }

    #[tokio::test]
    async fn cancelled_and_idle_streams_are_dropped() {
        let url = server(&["a", "b"], Duration::from_millis(10)).await;
        let (client, streams) = fixture();
        let cancelled = open(&client, &streams, &url, PATIENT, PATIENT).await;
        streams.cancel(StreamRef { stream: cancelled });
        assert_eq!(streams.len(), 0);

        let forgotten = open(&client, &streams, &url, PATIENT, Duration::from_millis(150)).await;
        assert_eq!(streams.len(), 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            streams.len(),
            0,
            "an idle stream is dropped by its watchdog"
        );
        let error = streams
            .next(StreamRef { stream: forgotten })
            .await
            .unwrap_err();
        assert!(
            error.message.contains("dropped while idle"),
            "{}",
            error.message
        );
    }
}
