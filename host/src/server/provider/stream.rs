//! Step 7: a streamed answer, passed through byte for byte when no
//! conversion and no model alias is needed, else decoded, converted event by
//! event and re-encoded; nothing buffers the whole stream. Once the head has
//! gone a failure cannot become an error response: a broken, silent or
//! malformed upstream ends the client's stream with an error event of its
//! format. Dropping the client's body (the client went away) drops the
//! upstream body, which cancels the upstream request.

use std::sync::Arc;

use bytes::Bytes;
use ccproxy_formats::{Format, convert, sse};
use ccproxy_plugin_abi::{HookBody, HookEvent};
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::json;

use super::{Answering, UsageSlot, events};
use crate::{
    server::response::{Body, BoxError},
    upstream::StreamingResponse,
};

/// State of one streamed answer.
struct StreamState {
    body: Incoming,
    decoder: sse::Decoder,
    converter: Option<convert::StreamConverter>,
    /// Decode and re-encode even without conversion (model alias rewrite).
    reencode: bool,
    alias: Option<String>,
    client: Format,
    read_timeout: std::time::Duration,
    /// Where the usage goes and what reads it off the upstream's events,
    /// when a hook listens.
    usage: Option<(UsageSlot, convert::UsageScanner)>,
    events: Vec<sse::Event>,
    converted: Vec<sse::Event>,
    provider: String,
    /// The configured upstream, for messages (`ProviderRoute::who`).
    upstream: Option<String>,
    model: Option<String>,
    request_id: String,
    chunks: u64,
    bytes: u64,
    hooks: Arc<crate::hooks::HookBus>,
    finished: bool,
    /// A hook asked for the chunks sent to the client (decided once per stream).
    client_chunks: bool,
}

/// Step 7: the upstream's stream as the client's, pulled as the client
/// reads it.
pub(super) fn stream_response(
    answering: Answering<'_>,
    upstream: StreamingResponse,
) -> Response<Body> {
    let Answering {
        app,
        name,
        route,
        request_id,
        alias,
        read_timeout,
        usage,
        model,
        tools,
        ..
    } = answering;
    let converter = (route.client != route.native).then(|| {
        let converter = convert::StreamConverter::new(route.native, route.client);
        // Calls of tools the upstream knows under other names and shapes (a Responses
        // client's free-form and namespaced tools) go back as the client declared them.
        match tools {
            Some(tools) => converter.with_tools(tools),
            None => converter,
        }
    });
    let state = StreamState {
        body: upstream.body,
        decoder: sse::Decoder::new(),
        reencode: converter.is_none() && alias.is_some(),
        converter,
        alias,
        client: route.client,
        read_timeout,
        usage: usage.map(|slot| (slot, convert::UsageScanner::new(route.native))),
        events: Vec::new(),
        converted: Vec::new(),
        provider: name.to_owned(),
        upstream: route.upstream.clone(),
        model: model.map(str::to_owned),
        request_id: request_id.to_owned(),
        chunks: 0,
        bytes: 0,
        hooks: app.shared.hooks.clone(),
        finished: false,
        client_chunks: app
            .shared
            .hooks
            .wants_body(&HookEvent::ProviderStreamChunk, HookBody::ClientChunks),
    };
    app.shared
        .hooks
        .observe(HookEvent::ProviderStreamStart, Some(request_id), || {
            events::StreamStart {
                provider: name,
                request_id,
            }
        });
    // The state is boxed: `unfold` moves it into each step's future and back
    // out, and the whole state (decoder, converter, scanner) copied twice a
    // frame cost more than the rest of the step.
    let stream = futures_util::stream::unfold(Box::new(state), |mut state| async move {
        loop {
            if state.finished {
                return None;
            }
            let next = tokio::time::timeout(state.read_timeout, state.body.frame()).await;
            let output = match next {
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => state.on_data(data),
                    Err(_) => continue,
                },
                Ok(None) => {
                    state.finished = true;
                    state.on_end()
                }
                Ok(Some(Err(error))) => {
                    state.finished = true;
                    state.on_failure(&format!("upstream connection broke mid-stream: {error}"))
                }
                Err(_) => {
                    state.finished = true;
                    state.on_failure(&format!(
                        "upstream sent nothing for {} s mid-stream",
                        state.read_timeout.as_secs()
                    ))
                }
            };
            if !output.is_empty() {
                let (request_id, chunk_number) = (&state.request_id, state.chunks);
                if state.client_chunks {
                    state.hooks.observe_for_body(
                        HookEvent::ProviderStreamChunk,
                        Some(request_id),
                        || events::StreamChunk {
                            chunk_number,
                            chunk_size: output.len(),
                            request_id,
                            side: "client",
                        },
                        HookBody::ClientChunks,
                        output.clone(),
                    );
                }
                return Some((Ok::<_, BoxError>(Frame::data(output)), state));
            }
        }
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

impl StreamState {
    fn on_data(&mut self, data: Bytes) -> Bytes {
        self.chunks += 1;
        self.bytes += data.len() as u64;
        let (request_id, chunk_number, chunk_size) = (&self.request_id, self.chunks, data.len());
        self.hooks.observe_with_body(
            HookEvent::ProviderStreamChunk,
            Some(request_id),
            || events::StreamChunk {
                chunk_number,
                chunk_size,
                request_id,
                side: "upstream",
            },
            HookBody::UpstreamChunks,
            || data.clone(),
        );
        if self.converter.is_none() && !self.reencode {
            // Unconverted streams pass through byte for byte; they are
            // decoded only to read the usage, when someone wants it.
            if let Some((_, scanner)) = &mut self.usage {
                self.events.clear();
                if self.decoder.push(&data, &mut self.events).is_ok() {
                    for event in &self.events {
                        scanner.push(event);
                    }
                }
            }
            return data;
        }
        self.events.clear();
        if let Err(error) = self.decoder.push(&data, &mut self.events) {
            self.finished = true;
            return self.on_failure(&format!("upstream stream is malformed: {error}"));
        }
        self.emit_events()
    }

    fn emit_events(&mut self) -> Bytes {
        let mut out = Vec::new();
        if let Some((_, scanner)) = &mut self.usage {
            for event in &self.events {
                scanner.push(event);
            }
        }
        self.converted.clear();
        match &mut self.converter {
            Some(converter) => {
                for event in &self.events {
                    converter.push(event, &mut self.converted);
                }
            }
            None => self.converted.append(&mut self.events),
        }
        for event in &mut self.converted {
            if let Some(model) = &self.alias {
                convert::rewrite_model_event(event, model);
            }
            event.encode(&mut out);
        }
        Bytes::from(out)
    }

    fn on_end(&mut self) -> Bytes {
        self.events.clear();
        let _ = self.decoder.finish(&mut self.events);
        let mut out = if self.converter.is_some() || self.reencode {
            self.emit_events().to_vec()
        } else {
            if let Some((_, scanner)) = &mut self.usage {
                for event in &self.events {
                    scanner.push(event);
                }
            }
            Vec::new()
        };
        let usage = self.record_usage();
        if let Some(converter) = &mut self.converter {
            let mut tail = Vec::new();
            converter.finish(&mut tail);
            for mut event in tail {
                if let Some(model) = &self.alias {
                    convert::rewrite_model_event(&mut event, model);
                }
                event.encode(&mut out);
            }
        }
        let (request_id, provider, chunks, bytes) =
            (&self.request_id, &self.provider, self.chunks, self.bytes);
        let model = self.model.as_deref();
        self.hooks
            .observe(HookEvent::ProviderStreamEnd, Some(request_id), || {
                events::StreamEnd {
                    model,
                    provider,
                    request_id,
                    total_bytes: bytes,
                    total_chunks: chunks,
                    usage,
                }
            });
        Bytes::from(out)
    }

    /// Puts the usage read so far in the answer's slot (at the stream's end,
    /// or where it broke: what was sent before still counts).
    fn record_usage(&mut self) -> Option<convert::TokenUsage> {
        let (slot, scanner) = self.usage.as_ref()?;
        let usage = scanner.usage()?;
        let _ = slot.set(usage);
        Some(usage)
    }

    fn on_failure(&mut self, message: &str) -> Bytes {
        self.record_usage();
        let who = super::ProviderRoute::who_of(&self.provider, self.upstream.as_deref());
        let message = &format!("provider {who}: {message}");
        let (request_id, provider) = (&self.request_id, &self.provider);
        self.hooks.observe(HookEvent::ProviderError, Some(request_id), || {
            json!({"request_id": request_id, "provider": provider, "error": message, "phase": "stream"})
        });
        tracing::warn!(provider = %self.provider, "{message}");
        // The client's format ends the stream: an error event (and for a
        // converted Responses stream `response.failed`, items closed first);
        // a stream passed through unparsed gets the same from a converter of
        // its own format.
        let mut events = Vec::new();
        match &mut self.converter {
            Some(converter) => converter.fail(convert::ErrorKind::Api, message, &mut events),
            None => convert::StreamConverter::new(self.client, self.client).fail(
                convert::ErrorKind::Api,
                message,
                &mut events,
            ),
        }
        let mut out = Vec::new();
        for event in &events {
            event.encode(&mut out);
        }
        Bytes::from(out)
    }
}
