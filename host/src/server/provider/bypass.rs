//! Bypass mode (`serve --bypass`): provider endpoints answered with canned,
//! format-correct responses, no upstream called.

use ccproxy_formats::{Format, convert, sse};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use super::{ProviderRoute, ProxyError, error::json_response};
use crate::server::response::{Body, full};

/// The canned answer of bypass mode (`serve --bypass`): a format-correct
/// response or stream in the client's format, with no upstream and no
/// credentials, for trying clients out.
pub(super) fn bypass(
    route: &ProviderRoute,
    stream: bool,
    model: &str,
) -> Result<Response<Body>, ProxyError> {
    const TEXT: &str = "Hello from ccproxy bypass mode: no upstream was called.";
    let id = format!("msg_bypass_{}", uuid::Uuid::new_v4().simple());
    let usage = json!({"input_tokens": 0, "output_tokens": 12});
    if !stream {
        let message = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": TEXT}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
        });
        let body = serde_json::to_vec(&message).unwrap_or_default();
        return match convert::response(Format::AnthropicMessages, route.client, &body) {
            Ok(converted) => Ok(json_response(StatusCode::OK, converted)),
            Err(error) => Err(ProxyError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                error.to_string(),
            )),
        };
    }
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TEXT}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 12}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let mut converter = (route.client != Format::AnthropicMessages)
        .then(|| convert::StreamConverter::new(Format::AnthropicMessages, route.client));
    let mut out = Vec::new();
    let mut converted = Vec::new();
    for (name, data) in events {
        let event = sse::Event::new(name, data.to_string());
        match &mut converter {
            Some(converter) => converter.push(&event, &mut converted),
            None => converted.push(event),
        }
    }
    if let Some(converter) = &mut converter {
        converter.finish(&mut converted);
    }
    for event in &converted {
        event.encode(&mut out);
    }
    let mut response = Response::new(full(out));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    Ok(response)
}
