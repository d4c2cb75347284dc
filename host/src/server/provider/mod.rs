//! The provider path: a client request on a provider endpoint becomes an
//! upstream request and the answer comes back in the client's format. One
//! file per step of "Life of a provider request" (`docs/ARCHITECTURE.md`),
//! run in order by [`handle`]:
//!
//! 1. `peek.rs`: the body's `stream` and `model` (malformed JSON: 400);
//! 2. `prepare.rs`: the request converted into the provider's native format
//!    (`ccproxy-formats`);
//! 3. `prepare.rs`: the plugin's `provider.prepare` (URL, credentials,
//!    headers, body shaping, model mapping, timeout);
//! 4. `prepare.rs`: `provider.request.prepared` hooks, inline and mutating;
//! 5. `send.rs`: sent with the shared client (`provider.request.sent`), the
//!    head arrives (`provider.response.received`); unreachable: 502, no
//!    answer in time: 504;
//! 6. `complete.rs`: an upstream error status, its body converted into the
//!    client's error format;
//! 7. `stream.rs`: a stream, passed through or converted event by event;
//! 8. `complete.rs`: a streamed upstream accumulated for a non-stream client;
//! 9. `complete.rs`: a complete answer converted back, its model alias
//!    written back.
//!
//! Each step returns `Result<_, ProxyError>` (`error.rs`); [`handle`] turns
//! the first error into the client's answer in its format, in one place
//! ([`ProxyError::into_response`]), and puts what the pipeline needs to know
//! on every answer as one typed extension, [`ProviderOutcome`]. Hook event
//! data: `events.rs`; `serve --bypass`: `bypass.rs`.

mod bypass;
mod complete;
mod error;
mod events;
mod peek;
mod prepare;
mod send;
mod stream;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use ccproxy_formats::{Format, convert};
use ccproxy_plugin_abi::{HookBody, HookEvent, protocol::RequestHead};
use http::{HeaderName, HeaderValue, Response, header};
use serde::Serialize;

pub use self::error::{Origin, ProxyError};
use self::{prepare::Prepared, send::Sent};
use super::{App, response::Body};
use crate::plugins::registry::ActivePlugin;

/// A provider endpoint mounted by the router.
#[derive(Debug, Clone)]
pub struct ProviderRoute {
    /// Full path.
    pub path: String,
    /// What clients speak there.
    pub client: Format,
    /// What the upstream speaks.
    pub native: Format,
    /// For an endpoint a provider's config added (plugin API 1.3): the
    /// upstream it fronts, the path's first segment, named in error messages.
    pub upstream: Option<String>,
}

impl ProviderRoute {
    /// The provider as error messages name it: `compat (upstream local)` for
    /// a configured endpoint, the plugin's name otherwise. Formatted only
    /// when a message is written, so a request that succeeds pays nothing.
    pub fn who<'a>(&'a self, plugin: &'a str) -> Who<'a> {
        Self::who_of(plugin, self.upstream.as_deref())
    }

    /// [`ProviderRoute::who`] from its parts, for a stream that outlives the route's borrow.
    pub fn who_of<'a>(plugin: &'a str, upstream: Option<&'a str>) -> Who<'a> {
        Who { plugin, upstream }
    }
}

/// A provider as error messages name it ([`ProviderRoute::who`]).
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    plugin: &'a str,
    upstream: Option<&'a str>,
}

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.upstream {
            Some(upstream) => write!(f, "{} (upstream {upstream})", self.plugin),
            None => f.write_str(self.plugin),
        }
    }
}

/// A provider endpoint's answer, for `request.completed`: which provider,
/// the model asked for, whether the body streams (then the event waits for
/// its end), and the token usage once it is known.
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
    /// The model that answered, when a plugin route's stream names it only
    /// at its end (plugin API 1.3); it replaces `model`.
    pub model_at_end: Arc<std::sync::OnceLock<String>>,
}

/// Where the usage of one answer lands once read (for a stream, at its end).
pub type UsageSlot = Arc<std::sync::OnceLock<convert::TokenUsage>>;

/// What the provider path tells the pipeline about a response, as one typed
/// extension on it: the answer's provider, model and usage (for
/// `request.completed`), why it failed (for `request.failed`) and how long
/// the upstream took to answer (for `Server-Timing`). Error answers built
/// before the route runs (refusals in the client's format) carry only the
/// failure.
#[derive(Debug, Clone, Default)]
pub struct ProviderOutcome {
    /// Set on every answer of a provider endpoint, failures included.
    pub answer: Option<ProviderAnswer>,
    /// The message of a failed request.
    pub failure: Option<String>,
    /// How long the upstream took to send its response head.
    pub upstream_time: Option<Duration>,
}

impl ProviderOutcome {
    /// The outcome noted on `response`, if any.
    pub fn of<B>(response: &Response<B>) -> Option<&Self> {
        response.extensions().get()
    }

    /// The outcome noted on `response`, created empty when there is none.
    pub fn of_mut<B>(response: &mut Response<B>) -> &mut Self {
        response.extensions_mut().get_or_insert_default()
    }
}

/// What the steps learn on the way that every answer reports, failures
/// included (see [`ProviderOutcome`]).
#[derive(Default)]
struct Facts {
    /// The model the client asked for, once the body was read.
    model: Option<String>,
    /// The answer streams.
    streaming: bool,
    usage: UsageSlot,
    /// Known once the upstream's head arrived, as are `passed`.
    upstream_time: Option<Duration>,
    /// The upstream headers the client sees (`send::passed_headers`).
    passed: Vec<(HeaderName, HeaderValue)>,
}

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
    fn received(&self, status: u16, body: &Result<Bytes, complete::BodyFailure>) {
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
    let mut facts = Facts::default();
    let answered = answer(app, plugin, route, head, body, &mut facts).await;
    let mut response = answered.unwrap_or_else(|error| error.into_response(route.client));
    let outcome = ProviderOutcome::of_mut(&mut response);
    outcome.answer = Some(ProviderAnswer {
        provider: plugin.manifest.name.clone(),
        model: facts.model,
        streaming: facts.streaming,
        usage: facts.usage,
        model_at_end: Arc::default(),
    });
    if facts.upstream_time.is_some() {
        outcome.upstream_time = facts.upstream_time;
    }
    let headers = response.headers_mut();
    for (name, value) in facts.passed {
        headers.insert(name, value);
    }
    response
}

/// A success answered with a web page or plain text (a captive portal, a
/// gateway's login page, a server that is not the API) is no API answer:
/// a 502 naming the provider, never the page passed off as one.
fn refuse_a_page(headers: &http::HeaderMap, status: u16, who: Who<'_>) -> Result<(), ProxyError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("text/html") || media.eq_ignore_ascii_case("text/plain") {
        return Err(ProxyError::upstream(
            http::StatusCode::BAD_GATEWAY,
            format!(
                "provider {who}: the upstream answered {status} with {media}, not an API answer; check its base URL"
            ),
        ));
    }
    Ok(())
}

/// The steps in order; the first that fails ends the request. What every
/// answer reports (failed or not) is noted in `facts` on the way.
async fn answer(
    app: &App,
    plugin: &Arc<ActivePlugin>,
    route: &ProviderRoute,
    head: &ClientRequest<'_>,
    body: Bytes,
    facts: &mut Facts,
) -> Result<Response<Body>, ProxyError> {
    let peek = peek::peek(&body)?;
    let model = peek.model;
    facts.model = model.clone();
    let stream = peek.stream.unwrap_or(false) || head.accepts_event_stream();

    if app.shared.config.server.bypass_mode {
        return bypass::bypass(route, stream, model.as_deref().unwrap_or("bypass"));
    }

    let native_body = prepare::to_native(route, body)?;
    let name = &plugin.manifest.name;
    let prepared = prepare::prepare(
        app,
        plugin,
        route,
        head,
        native_body,
        stream,
        model.as_deref(),
    )
    .await?;
    let Prepared {
        request,
        body,
        alias,
    } = prepare::run_prepared_hooks(app, head, (name, route.native), prepared).await;

    let request_id = head.request_id;
    let Sent {
        upstream,
        is_sse,
        received_later,
        upstream_time,
        passed,
    } = send::send(
        app,
        (name, route.who(name)),
        request_id,
        &request,
        body,
        stream,
    )
    .await?;
    // From here on every answer, failures included, reports the upstream's
    // time and passes its rate-limit headers.
    facts.upstream_time = Some(upstream_time);
    facts.passed = passed;

    if upstream.status < 400 {
        refuse_a_page(&upstream.headers, upstream.status, route.who(name))?;
    }

    let hooks = &app.shared.hooks;
    let wants_usage = [
        HookEvent::RequestCompleted,
        HookEvent::RequestFailed,
        HookEvent::ProviderStreamEnd,
    ]
    .iter()
    .any(|event| hooks.wants(event));
    let streaming = upstream.status < 400 && is_sse && stream;
    facts.streaming = streaming;
    let answering = Answering {
        app,
        name,
        route,
        request_id,
        url: &request.url,
        method: &request.method,
        model: model.as_deref(),
        alias,
        read_timeout: request
            .timeout
            .unwrap_or_else(|| app.shared.upstream.read_timeout()),
        usage: wants_usage.then(|| facts.usage.clone()),
        received_later,
    };
    if upstream.status >= 400 {
        complete::upstream_error(answering, upstream).await
    } else if streaming {
        Ok(stream::stream_response(answering, upstream))
    } else if is_sse {
        // The upstream always streams (Codex); the client asked for one answer.
        complete::accumulate_response(answering, upstream).await
    } else {
        complete::complete_response(answering, upstream).await
    }
}
