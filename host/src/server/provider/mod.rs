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

use std::{borrow::Cow, sync::Arc, time::Duration};

use bytes::Bytes;
use ccproxy_formats::{Format, convert};
use ccproxy_plugin_abi::{
    HookBody, HookEvent,
    protocol::{ProviderAttempt, RequestHead},
};
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
    /// The `[routing] fallback` provider, when it answered instead.
    answered_by: Option<String>,
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
    /// The client's free-form and namespaced tools, renamed for the upstream.
    tools: Option<convert::ClientTools>,
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

impl<'a> ClientHeaders<'a> {
    /// How many name/value pairs there are.
    pub fn pair_count(&self) -> usize {
        match self {
            ClientHeaders::Map(headers) => headers.len(),
            ClientHeaders::Pairs(pairs) => pairs.len(),
        }
    }

    /// The name/value pairs in arrival order, values that are not UTF-8
    /// lossily (as `RequestHead` holds them).
    pub fn pairs(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + 'a {
        let (map, pairs) = match *self {
            ClientHeaders::Map(headers) => (Some(headers), None),
            ClientHeaders::Pairs(pairs) => (None, Some(pairs)),
        };
        let from_map = map.into_iter().flat_map(|headers| {
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes())))
        });
        let from_pairs = pairs.into_iter().flat_map(|pairs| {
            pairs
                .iter()
                .map(|(name, value)| (name.as_str(), Cow::Borrowed(value.as_str())))
        });
        from_map.chain(from_pairs)
    }
}

impl Serialize for ClientHeaders<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.pairs())
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
        provider: facts
            .answered_by
            .unwrap_or_else(|| plugin.manifest.name.clone()),
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

/// Upstream requests for one client request at most, whatever a plugin asks
/// (plugin API 1.3 retries): a bound on the work one request can cause.
const MAX_ATTEMPTS: u32 = 8;

/// The attempt whose answer the client gets.
struct Attempted {
    request: prepare::UpstreamRequest,
    alias: Option<String>,
    sent: Sent,
    tools: Option<convert::ClientTools>,
}

/// Steps 2 to 5, repeated while the provider asks for retries (plugin API
/// 1.3, accounts with failover): each attempt is prepared by the plugin,
/// told what became of the previous one, and sent. A retry happens only on a
/// retryable answer (429, 401, 403, 408, 5xx, 529) or none at all, and only
/// before anything reached the client, since the answer's head is still
/// here. A provider that never asks pays nothing: no kept body, no extra
/// call, no allocation.
async fn attempts(
    app: &App,
    plugin: &Arc<ActivePlugin>,
    route: &ProviderRoute,
    head: &ClientRequest<'_>,
    body: Bytes,
    asked: prepare::Asked<'_>,
) -> Result<Attempted, ProxyError> {
    let name = &plugin.manifest.name;
    // The client's body, kept for a second preparation (a shared `Bytes`,
    // not copied) only for a provider that said it may retry.
    let kept = plugin
        .provider_retries
        .load(std::sync::atomic::Ordering::Relaxed)
        .then(|| body.clone());
    let mut body = Some(body);
    let mut attempt: Option<ProviderAttempt> = None;
    // The last failed attempt, answered if the plugin has nothing left.
    let mut failed: Option<Result<Attempted, ProxyError>> = None;
    loop {
        let Some(client_body) = body.take().or_else(|| kept.clone()) else {
            break;
        };
        let (native_body, tools) = prepare::to_native(route, client_body)?;
        let prepared = prepare::prepare(
            app,
            plugin,
            route,
            head,
            native_body,
            asked,
            attempt.as_ref(),
        )
        .await;
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let Some(failed) = failed else {
                    return Err(error);
                };
                // A retry the plugin cannot prepare leaves the client the
                // previous attempt's answer, which says more than the
                // plugin's failure (logged and counted by the plugin handle).
                tracing::warn!(provider = %name, error = %error, "provider failed to prepare a retry; answering the previous attempt");
                return failed;
            }
        };
        if let Some(exhausted) = prepared.plan.exhausted {
            // On a retry: nothing left to try, the previous answer stands.
            if let Some(failed) = failed {
                return failed;
            }
            let message = format!("provider {}: {}", route.who(name), exhausted.message);
            // Resting accounts come back: a 429 saying when. None that ever
            // will (all disabled): the service is unavailable until fixed.
            return Err(match exhausted.retry_after_ms {
                Some(ms) => ProxyError::upstream(http::StatusCode::TOO_MANY_REQUESTS, message)
                    .with_retry_after(ms.div_ceil(1000)),
                None => ProxyError::upstream(http::StatusCode::SERVICE_UNAVAILABLE, message),
            });
        }
        let Prepared {
            request,
            body: upstream_body,
            alias,
            plan,
        } = prepared;
        let number = attempt.as_ref().map_or(1, |attempt| attempt.number);
        if let Some(delay) = plan.delay {
            // A `Retry-After` honoured, never past the request's own limit.
            tokio::time::sleep(delay.min(app.shared.config.server.request_timeout())).await;
        }
        let sent = send::send(
            app,
            (name, route.who(name)),
            head.request_id,
            &request,
            upstream_body,
            asked.stream,
        )
        .await;
        let may_retry = kept.is_some() && number < plan.max_attempts.min(MAX_ATTEMPTS);
        let (status, retry_after, outcome) = match sent {
            Ok(sent) => {
                let status = sent.upstream.status;
                let retry_after = retry_after_ms(&sent.upstream.headers);
                let outcome = Ok(Attempted {
                    request,
                    alias,
                    sent,
                    tools,
                });
                (status, retry_after, outcome)
            }
            // No answer at all: worth another account or upstream; a request
            // the plugin prepared badly is not.
            Err(error) if error.origin() == Origin::Upstream => (0, None, Err(error)),
            Err(error) => {
                set_aside(app, name, head.request_id, failed);
                return Err(error);
            }
        };
        if !may_retry || !retryable(status) {
            set_aside(app, name, head.request_id, failed);
            return outcome;
        }
        tracing::debug!(provider = %name, account = plan.account.as_deref().unwrap_or("-"), status, attempt = number, "attempt failed before the client saw anything; asking the provider to prepare another");
        // The held answer's body is dropped unread when a retry is sent.
        set_aside(app, name, head.request_id, failed.take());
        failed = Some(outcome);
        attempt = Some(ProviderAttempt {
            number: number + 1,
            previous_status: status,
            previous_account: plan.account,
            retry_after_ms: retry_after,
        });
    }
    failed.unwrap_or_else(|| {
        Err(ProxyError::internal(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "provider retry without a kept body",
        ))
    })
}

/// Drops an attempt's answer that no client will see. Hooks waiting for its
/// complete body (`provider.response.received` with
/// `HookBody::UpstreamResponseBody`) still hear of it, with an empty body:
/// it was never read.
fn set_aside(
    app: &App,
    name: &str,
    request_id: &str,
    failed: Option<Result<Attempted, ProxyError>>,
) {
    let Some(Ok(attempted)) = failed else {
        return;
    };
    let Some((duration_ms, headers)) = &attempted.sent.received_later else {
        return;
    };
    app.shared.hooks.observe_with_body(
        HookEvent::ProviderResponseReceived,
        Some(request_id),
        || events::ResponseReceived {
            duration_ms: *duration_ms,
            headers: Some(events::MaskedHeaderMap(headers)),
            method: &attempted.request.method,
            provider: name,
            request_id,
            status_code: attempted.sent.upstream.status,
            url: &attempted.request.url,
        },
        HookBody::UpstreamResponseBody,
        Bytes::new,
    );
}

/// Whether the provider's last attempt failed in a way another provider
/// may fix: no answer, or a retryable status (an exhausted pool included).
fn failed_retryably(outcome: &Result<Attempted, ProxyError>) -> bool {
    match outcome {
        Ok(attempted) => retryable(attempted.sent.upstream.status),
        Err(error) => error.origin() == Origin::Upstream && retryable(error.status().as_u16()),
    }
}

/// The provider and endpoint `[routing] fallback` names for `plugin`: the
/// fallback's endpoint for the client's format, the one with the same path
/// after its prefix (`/v1/messages`) when there is one. `None` when nothing
/// is configured, or the fallback is not running or speaks no such format.
fn fallback_target(
    app: &App,
    plugin: &ActivePlugin,
    route: &ProviderRoute,
) -> Option<(Arc<ActivePlugin>, ProviderRoute)> {
    let to = app
        .shared
        .config
        .routing
        .fallback_for(&plugin.manifest.name)?;
    let Some(fallback) = app
        .shared
        .plugins
        .get(to)
        .map(|entry| entry.value().clone())
    else {
        tracing::debug!(provider = %plugin.manifest.name, fallback = to, "fallback provider is not running");
        return None;
    };
    let suffix = |path: &str| {
        path.get(1..)
            .and_then(|rest| rest.find('/').map(|at| rest[at..].to_owned()))
    };
    let wanted = suffix(&route.path);
    let mut chosen = None;
    for (native, endpoint) in fallback.provider_endpoints() {
        if endpoint.format != route.client.id() {
            continue;
        }
        let same_path = wanted.is_some() && suffix(&endpoint.path) == wanted;
        if chosen.is_none() || same_path {
            let Ok(native) = native.parse() else {
                continue;
            };
            let upstream = endpoint.native_format.as_ref().and_then(|_| {
                endpoint
                    .path
                    .get(1..)
                    .and_then(|rest| rest.split('/').next())
                    .map(str::to_owned)
            });
            chosen = Some(ProviderRoute {
                path: endpoint.path.clone(),
                client: route.client,
                native,
                upstream,
            });
            if same_path {
                break;
            }
        }
    }
    Some((fallback, chosen?))
}

/// Statuses another attempt may fix: rate limits and overload (429, 529),
/// a credential refused (401, 403), and the upstream's own failures.
fn retryable(status: u16) -> bool {
    matches!(status, 0 | 401 | 403 | 408 | 429 | 500..=599)
}

/// The `Retry-After` of an answer in milliseconds: seconds, or an HTTP date
/// (RFC 9110 section 10.2.3).
fn retry_after_ms(headers: &http::HeaderMap) -> Option<u64> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Some(wait.as_millis().min(u128::from(u64::MAX)) as u64)
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
    let asked = prepare::Asked {
        stream,
        model: model.as_deref(),
        members: &peek.members,
    };

    if app.shared.config.server.bypass_mode {
        return bypass::bypass(route, stream, model.as_deref().unwrap_or("bypass"));
    }

    // `[routing] fallback`: only a provider named there keeps a second
    // handle on the body; the others pay one scan of an empty list.
    let fallback = fallback_target(app, plugin, route);
    let spare = fallback.as_ref().map(|_| body.clone());
    let primary = attempts(app, plugin, route, head, body, asked).await;
    let (plugin, route, attempted) = match (fallback, spare) {
        (Some((fallback, fallback_route)), Some(spare)) if failed_retryably(&primary) => {
            let status = match &primary {
                Ok(attempted) => attempted.sent.upstream.status,
                Err(error) => error.status().as_u16(),
            };
            tracing::warn!(provider = %plugin.manifest.name, fallback = %fallback.manifest.name, status, "provider failed before the client saw anything; sending the request to its fallback");
            set_aside(app, &plugin.manifest.name, head.request_id, Some(primary));
            let attempted = attempts(app, &fallback, &fallback_route, head, spare, asked).await;
            facts.answered_by = Some(fallback.manifest.name.clone());
            (Cow::Owned(fallback), Cow::Owned(fallback_route), attempted)
        }
        // The usual case: nothing cloned.
        _ => (Cow::Borrowed(plugin), Cow::Borrowed(route), primary),
    };
    let route = &*route;
    let name = &plugin.manifest.name;
    let request_id = head.request_id;
    let Attempted {
        request,
        alias,
        sent,
        tools,
    } = attempted?;
    let Sent {
        upstream,
        is_sse,
        received_later,
        upstream_time,
        passed,
    } = sent;
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
        tools,
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

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn retryable_statuses_are_rate_limits_refusals_and_upstream_failures() {
        for status in [0, 401, 403, 408, 429, 500, 502, 503, 504, 529] {
            assert!(retryable(status), "{status}");
        }
        for status in [200, 201, 400, 404, 413, 422] {
            assert!(!retryable(status), "{status}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after_ms(&headers), None);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after_ms(&headers), Some(7000));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let date = httpdate::fmt_http_date(later);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let ms = retry_after_ms(&headers).unwrap();
        assert!((118_000..=120_000).contains(&ms), "{ms}");
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_ms(&headers), Some(0), "a date past is now");
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after_ms(&headers), None);
    }
}
