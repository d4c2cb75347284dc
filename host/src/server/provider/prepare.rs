//! Steps 2 to 4: the request in the provider's native format, the plugin's
//! `provider.prepare` (URL, credentials, headers, body shaping, model
//! mapping, timeout), then the mutating `provider.request.prepared` hooks,
//! both in one hop to the plugin runtime.

use std::{sync::Arc, time::Duration};

use ccproxy_formats::{Format, convert};
use ccproxy_plugin_abi::{
    HookEvent,
    fields::{self, PrepareFields},
    protocol::{
        Operation, ProviderAttempt, ProviderExhausted, ProviderPrepareOutput, members_text, ops,
    },
};
use http::StatusCode;
use serde::Serialize;

use super::{ClientRequest, ProviderRoute, ProxyError, Who};
use crate::{
    hooks::HookBus,
    plugins::{
        handle::{self, CallError, CallErrorKind},
        registry::ActivePlugin,
    },
    server::App,
    telemetry::{is_secret_header, redact_header},
};

/// The upstream request as prepared, without its body.
pub(super) struct UpstreamRequest {
    pub(super) method: String,
    pub(super) url: String,
    pub(super) headers: Vec<(String, String)>,
    /// The upstream answers with a stream whatever the client asked (Codex).
    pub(super) stream: bool,
    /// The plugin's own limit for the upstream's answer, if it set one.
    pub(super) timeout: Option<Duration>,
}

/// What the host read of the client's body (step 1), for the steps after.
#[derive(Clone, Copy)]
pub(super) struct Asked<'a> {
    /// The client asked for a stream (in its body or its `Accept`).
    pub(super) stream: bool,
    /// The model the client asked for.
    pub(super) model: Option<&'a str>,
    /// Where the body's top-level members are (`peek::Peek::members`):
    /// sent to a plugin that gets the body in the client's format.
    pub(super) members: &'a [[u32; 4]],
}

/// What `provider.prepare` and the hooks after it made of the request.
pub(super) struct Prepared {
    pub(super) request: UpstreamRequest,
    pub(super) body: Vec<u8>,
    /// The model id to write back into the answer: only a model the plugin
    /// mapped needs it; otherwise the upstream already reports the id the
    /// client asked for.
    pub(super) alias: Option<String>,
    /// What the plugin said about retrying this request (plugin API 1.3).
    pub(super) plan: AttemptPlan,
}

/// What a provider said about one attempt (plugin API 1.3): all empty for a
/// provider without accounts.
#[derive(Default)]
pub(super) struct AttemptPlan {
    /// The account the request uses, a label that is no secret.
    pub(super) account: Option<String>,
    /// Upstream requests in all the plugin allows; 0: no retry.
    pub(super) max_attempts: u32,
    /// Wait this long before sending.
    pub(super) delay: Option<Duration>,
    /// Nothing to send.
    pub(super) exhausted: Option<ProviderExhausted>,
}

/// Step 2: the client's body in the provider's native format (400 when it
/// cannot be converted), and the client's free-form and namespaced tools the
/// answer's conversion turns back (`convert::ClientTools`; only a Responses
/// request declaring some has them).
///
/// The plugin takes an owned buffer; the same format needs no conversion,
/// and moving the body avoids a copy when nothing else holds it. A converted
/// body replaces the client's, which is let go at once rather than held (a
/// second copy of a large body) until the upstream answers.
pub(super) fn to_native(
    route: &ProviderRoute,
    body: bytes::Bytes,
) -> Result<(Vec<u8>, Option<convert::ClientTools>), ProxyError> {
    if route.client == route.native {
        return Ok((Vec::from(body), None));
    }
    let converted = convert::request_with_tools(route.client, route.native, &body);
    drop(body);
    converted.map_err(|error| ProxyError::client(StatusCode::BAD_REQUEST, error.to_string()))
}

/// Steps 3 and 4: the plugin's `provider.prepare`, under
/// `server.plugin_call_timeout_seconds` (a failure is the plugin's, with the
/// status its error maps to), then, unless the plugin has nothing to send,
/// the `provider.request.prepared` hooks. With such hooks both run as one
/// task on the plugin runtime (`handle::in_one_hop`): a request's inline
/// plugin calls cost one hop across runtimes, not two. Only the call's
/// metadata is encoded here; the task owns the rest. A plugin that blocks
/// its thread cannot be timed out from inside that thread, so the caller
/// keeps a deadline of its own (the call's timeout plus the hooks').
pub(super) async fn prepare(
    app: &App,
    plugin: &Arc<ActivePlugin>,
    route: &ProviderRoute,
    head: &ClientRequest<'_>,
    native_body: Vec<u8>,
    asked: Asked<'_>,
    attempt: Option<&ProviderAttempt>,
) -> Result<Prepared, ProxyError> {
    let input = PrepareInput {
        endpoint: &route.path,
        client_format: route.client.id(),
        native_format: route.native.id(),
        stream: asked.stream,
        model: asked.model,
        request: head,
        attempt,
        // The index is of the client's body: a converted body has none.
        body_members: if route.client == route.native {
            asked.members
        } else {
            &[]
        },
    };
    let who = route.who(&plugin.manifest.name);
    let meta = if plugin.handle.speaks_prepare_fields() {
        input.fields()
    } else {
        handle::encode_input::<ops::ProviderPrepare>(&input)
            .map_err(|error| call_failure(who, error))?
    };
    let timeout = app.shared.config.server.plugin_call_timeout();
    let Some(hooks_deadline) = app
        .shared
        .hooks
        .inline_deadline(&HookEvent::ProviderRequestPrepared)
    else {
        return call_prepare(plugin, who, meta, native_body, timeout).await;
    };
    let hooks = app.shared.hooks.clone();
    let (plugin, upstream) = (plugin.clone(), route.upstream.clone());
    let (native, request_id) = (route.native, head.request_id.to_owned());
    let hop = async move {
        let name = plugin.manifest.name.as_str();
        let who = ProviderRoute::who_of(name, upstream.as_deref());
        let prepared = call_prepare(&plugin, who, meta, native_body, timeout).await?;
        if prepared.plan.exhausted.is_some() {
            return Ok(prepared);
        }
        Ok(run_prepared_hooks(&hooks, &request_id, (name, native), prepared).await)
    };
    let deadline = timeout + hooks_deadline;
    // Boxed: the task's state (the call and every hook's) stays out of the
    // request's future, which would otherwise hold it several times over
    // and copy it at each move.
    match tokio::time::timeout(deadline, handle::in_one_hop(Box::pin(hop))).await {
        Ok(Some(prepared)) => prepared,
        Ok(None) => Err(ProxyError::internal(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "provider {who}: preparing the request stopped (the plugin runtime stopped or the host panicked)"
            ),
        )),
        Err(_) => Err(ProxyError::plugin(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "provider {who}: preparing the request did not finish within {} (a plugin blocks its thread)",
                handle::duration_text(deadline)
            ),
        )),
    }
}

/// The `provider.prepare` call itself, its metadata encoded.
async fn call_prepare(
    plugin: &ActivePlugin,
    who: Who<'_>,
    meta: String,
    native_body: Vec<u8>,
    timeout: Duration,
) -> Result<Prepared, ProxyError> {
    let handle = &plugin.handle;
    let op = <ops::ProviderPrepare as Operation>::NAME;
    let reply = handle
        .call_text_with_timeout(op, meta, native_body, timeout)
        .await
        .map_err(|error| call_failure(who, error))?;
    // Netstrings from an SDK that was called in them, JSON otherwise.
    let output = if reply.meta.starts_with(fields::MARK) {
        fields::read_prepare_output(&reply.meta).map_err(|error| handle.bad_reply(op, error))
    } else {
        serde_json::from_str::<ProviderPrepareOutput>(&reply.meta)
            .map_err(|error| handle.bad_reply(op, error))
    }
    .map_err(|error| call_failure(who, error))?;
    let ProviderPrepareOutput {
        method,
        url,
        headers,
        stream: upstream_streams,
        model_alias: alias,
        timeout_ms,
        account,
        retry,
        delay_ms,
        exhausted,
    } = output;
    Ok(Prepared {
        request: UpstreamRequest {
            method,
            url,
            headers,
            stream: upstream_streams,
            timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms)),
        },
        body: reply.body,
        alias,
        plan: AttemptPlan {
            account,
            max_attempts: retry.map_or(0, |policy| policy.max_attempts),
            delay: (delay_ms > 0).then(|| Duration::from_millis(delay_ms)),
            exhausted,
        },
    })
}

/// A failed `provider.prepare` as the client hears of it.
fn call_failure(who: Who<'_>, error: CallError) -> ProxyError {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match error.kind {
        CallErrorKind::Panicked => format!(
            "provider {who} panicked while preparing the request: {}",
            error.message
        ),
        // Its message names the plugin and the operation already.
        CallErrorKind::TimedOut => error.message,
        _ => format!("provider {who}: {}", error.message),
    };
    ProxyError::plugin(status, message)
}

/// Step 4: the `provider.request.prepared` hooks, inline and mutating, in
/// priority order; they may change the method, URL, headers and body.
async fn run_prepared_hooks(
    hooks: &HookBus,
    request_id: &str,
    (provider, format): (&str, Format),
    mut prepared: Prepared,
) -> Prepared {
    let event = HookEvent::ProviderRequestPrepared;
    let request = &prepared.request;
    // Hooks see credentials masked, like every other event; a masked value
    // that comes back unchanged is the original secret again.
    let data = PreparedData {
        format: format.id(),
        // Left out when every hook here named the keys it reads without it;
        // a hook's answer without `headers` keeps them as they were.
        headers: hooks
            .reads_key(&event, "headers")
            .then(|| MaskedPairs(&request.headers)),
        is_streaming: request.stream,
        method: &request.method,
        provider,
        url: &request.url,
    };
    let body = std::mem::take(&mut prepared.body);
    let (changed, body) = hooks.mutate(event, Some(request_id), &data, body).await;
    if let Some(data) = changed {
        apply_changes(data, &mut prepared.request);
    }
    prepared.body = body;
    prepared
}

/// Takes the method, URL and headers as the hooks left them in `data` (what
/// they answered): a key missing or of another type keeps the value it had.
fn apply_changes(mut data: serde_json::Value, request: &mut UpstreamRequest) {
    if let Some(changed) = data["method"].as_str() {
        request.method = changed.to_owned();
    }
    if let Some(changed) = data["url"].as_str() {
        request.url = changed.to_owned();
    }
    let returned: Option<Vec<(String, String)>> =
        serde_json::from_value(data["headers"].take()).ok();
    if let Some(returned) = returned {
        request.headers = unmask_headers(returned, &request.headers);
    }
}

/// The data of `provider.request.prepared`, written straight to JSON (keys
/// in the alphabetical order `json!` writes them in).
#[derive(Serialize)]
struct PreparedData<'a> {
    format: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<MaskedPairs<'a>>,
    is_streaming: bool,
    method: &'a str,
    provider: &'a str,
    url: &'a str,
}

/// Header pairs written as `[name, value]` arrays, secrets masked.
struct MaskedPairs<'a>(&'a [(String, String)]);

impl Serialize for MaskedPairs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (name, value) in self.0 {
            if is_secret_header(name) {
                seq.serialize_element(&(name, redact_header(name, value)))?;
            } else {
                seq.serialize_element(&(name, value))?;
            }
        }
        seq.end()
    }
}

/// Puts the original secret back wherever a hook returned a header's masked
/// value unchanged.
fn unmask_headers(
    returned: Vec<(String, String)>,
    original: &[(String, String)],
) -> Vec<(String, String)> {
    returned
        .into_iter()
        .map(|(name, value)| {
            let secret = original.iter().find(|(original_name, original_value)| {
                original_name.eq_ignore_ascii_case(&name)
                    && redact_header(original_name, original_value) == value
            });
            match secret {
                Some((_, original_value)) => (name, original_value.clone()),
                None => (name, value),
            }
        })
        .collect()
}

/// The JSON of `protocol::ProviderPrepareInput` (same fields, same order),
/// borrowing the request instead of cloning it.
#[derive(Serialize)]
struct PrepareInput<'a> {
    endpoint: &'a str,
    client_format: &'a str,
    native_format: &'a str,
    stream: bool,
    model: Option<&'a str>,
    request: &'a ClientRequest<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<&'a ProviderAttempt>,
    #[serde(
        skip_serializing_if = "<[_]>::is_empty",
        serialize_with = "members_text::serialize"
    )]
    body_members: &'a [[u32; 4]],
}

impl ccproxy_plugin_abi::protocol::InputOf<ops::ProviderPrepare> for PrepareInput<'_> {}

impl PrepareInput<'_> {
    /// The same metadata as netstrings (`ccproxy_plugin_abi::fields`), for
    /// plugins whose SDK reads them: nothing escaped on either side.
    fn fields(&self) -> String {
        let request = self.request;
        let fields = PrepareFields {
            endpoint: self.endpoint,
            client_format: self.client_format,
            native_format: self.native_format,
            stream: self.stream,
            model: self.model,
            method: request.method,
            path: request.path,
            query: request.query,
            request_id: request.request_id,
            attempt: self.attempt,
            body_members: self.body_members,
        };
        fields.write(request.headers.pair_count(), request.headers.pairs())
    }
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::protocol::{ProviderPrepareInput, RequestHead};
    use http::{HeaderValue, header};

    use super::*;
    use crate::server::provider::ClientHeaders;

    #[test]
    fn borrowed_prepare_input_is_the_protocol_json_and_its_fields() {
        let mut map = http::HeaderMap::new();
        map.append(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        map.append("x-b", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        map.append("x-b", HeaderValue::from_static("3"));
        map.append("x-bytes", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        // The pairs the pipeline builds from a header map.
        let pairs: Vec<(String, String)> = map
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let head = RequestHead {
            method: "POST".to_owned(),
            path: "/claude/v1/messages".to_owned(),
            query: "a=1".to_owned(),
            headers: pairs,
            request_id: "r1".to_owned(),
        };
        let from_map = ClientRequest {
            method: "POST",
            path: "/claude/v1/messages",
            query: "a=1",
            headers: ClientHeaders::Map(&map),
            request_id: "r1",
        };
        let from_head = ClientRequest::of_head(&head);
        assert!(from_map.accepts_event_stream() && from_head.accepts_event_stream());
        for model in [Some("sonnet"), None] {
            let owned = ProviderPrepareInput {
                endpoint: "/claude/v1/messages".to_owned(),
                client_format: "anthropic.messages".to_owned(),
                native_format: "anthropic.messages".to_owned(),
                stream: true,
                model: model.map(str::to_owned),
                request: head.clone(),
                attempt: None,
                body_members: vec![[2, 7, 9, 12]],
            };
            for request in [&from_map, &from_head] {
                let borrowed = PrepareInput {
                    endpoint: "/claude/v1/messages",
                    client_format: "anthropic.messages",
                    native_format: "anthropic.messages",
                    stream: true,
                    model,
                    request,
                    attempt: None,
                    body_members: &[[2, 7, 9, 12]],
                };
                assert_eq!(
                    serde_json::to_string(&borrowed).unwrap(),
                    serde_json::to_string(&owned).unwrap()
                );
                // The netstrings read back as the same input the JSON is.
                let read = ccproxy_plugin_abi::fields::read_prepare(&borrowed.fields()).unwrap();
                assert_eq!(
                    serde_json::to_string(&read).unwrap(),
                    serde_json::to_string(&owned).unwrap()
                );
            }
        }
        let plain = http::HeaderMap::new();
        let without = ClientRequest {
            headers: ClientHeaders::Map(&plain),
            ..ClientRequest::of_head(&head)
        };
        assert!(!without.accepts_event_stream());
    }

    #[test]
    fn prepared_data_is_the_json_hooks_always_saw() {
        let headers = vec![
            (
                "x-api-key".to_owned(),
                "sk-ant-api03-secret-value-1234".to_owned(),
            ),
            ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
        ];
        let data = PreparedData {
            format: "anthropic.messages",
            headers: Some(MaskedPairs(&headers)),
            is_streaming: true,
            method: "POST",
            provider: "claude_api",
            url: "https://api.anthropic.com/v1/messages",
        };
        let shown: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| (name.clone(), redact_header(name, value)))
            .collect();
        let before = serde_json::json!({"method": "POST", "url": "https://api.anthropic.com/v1/messages",
            "headers": shown, "is_streaming": true, "provider": "claude_api",
            "format": "anthropic.messages"});
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            serde_json::to_string(&before).unwrap()
        );
    }

    #[test]
    fn hooks_see_secrets_masked_and_an_unchanged_mask_is_the_secret_again() {
        let original = vec![
            (
                "x-api-key".to_owned(),
                "sk-ant-api03-secret-value-1234".to_owned(),
            ),
            (
                "authorization".to_owned(),
                "Bearer sk-ant-oat01-secret-5678".to_owned(),
            ),
            ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
        ];
        let shown: Vec<(String, String)> = original
            .iter()
            .map(|(name, value)| (name.clone(), redact_header(name, value)))
            .collect();
        assert_eq!(shown[0].1, "***1234");
        assert_eq!(shown[1].1, "Bearer ***5678");
        // A hook that keeps the masked key, replaces the token and adds a header.
        let mut returned = shown.clone();
        returned[1].1 = "Bearer new-token-from-hook".to_owned();
        returned.push(("x-extra".to_owned(), "1".to_owned()));
        let sent = unmask_headers(returned, &original);
        assert_eq!(sent[0], original[0]);
        assert_eq!(sent[1].1, "Bearer new-token-from-hook");
        assert_eq!(sent[2], original[2]);
        assert_eq!(sent[3], ("x-extra".to_owned(), "1".to_owned()));
    }
}
