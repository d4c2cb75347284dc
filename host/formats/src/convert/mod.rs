//! Conversion between the formats: requests, responses, errors and streams.
//!
//! Each format has a decoder into the internal representation (`ir`) and an encoder out
//! of it (one file per format), so every one of the six directions is one hop. JSON bytes go
//! in and out; when `from == to` nothing is parsed and the bytes pass through.

mod anthropic;
mod errors;
mod ir;
mod openai_chat;
mod openai_responses;
mod stream;
mod tools;
mod usage;

pub use errors::{ErrorKind, error, error_body};
pub use stream::{AccumulateError, Accumulator, StreamConverter};
pub use tools::ClientTools;
pub use usage::{TokenUsage, UsageScanner, response_usage};

use serde_json::Value;

use crate::{Format, sse};

/// Why a body could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The body is not valid JSON of the source format. `path` locates the fault
    /// (`messages[2].content[0]`), empty for the whole body.
    #[error("invalid {format} body: {}{message}", path_prefix(path))]
    Invalid {
        /// The source format.
        format: Format,
        /// Where in the body, e.g. `messages[2].content[0]`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The body is valid but holds something the target format cannot express and that
    /// cannot be dropped without changing the meaning of the request.
    #[error("{path}: {what} cannot be converted to {target}")]
    Unsupported {
        /// Where in the body, e.g. `input[3]`.
        path: String,
        /// What it is, e.g. "item type `local_shell_call`".
        what: String,
        /// The target format.
        target: Format,
    },
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Parses a body of `format` as `T`, reporting the path of the first fault.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    format: Format,
    body: &[u8],
) -> Result<T, ConvertError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|error| ConvertError::Invalid {
        format,
        path: error.path().to_string(),
        message: error.into_inner().to_string(),
    })
}

/// Converts a request body from the client's format to the upstream's format.
///
/// With `from == to` the bytes are returned unchanged, unparsed.
///
/// ```
/// use ccproxy_formats::{Format, convert};
///
/// let chat = br#"{"model":"claude-sonnet-4","max_tokens":64,
///     "messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}"#;
/// let anthropic = convert::request(Format::OpenAiChat, Format::AnthropicMessages, chat).unwrap();
/// let value: serde_json::Value = serde_json::from_slice(&anthropic).unwrap();
/// assert_eq!(value["system"], "Be brief.");
/// assert_eq!(value["messages"][0]["content"][0]["text"], "Hi");
/// ```
pub fn request(from: Format, to: Format, body: &[u8]) -> Result<Vec<u8>, ConvertError> {
    request_with_tools(from, to, body).map(|(converted, _)| converted)
}

/// [`request`], and what the answer's conversion must know about the client's tools: the
/// free-form and namespaced tools of a Responses request, which the upstream knows under
/// other names and shapes (see [`ClientTools`]). `None` for every other request, which
/// costs nothing more than [`request`].
///
/// ```
/// use ccproxy_formats::{Format, convert};
///
/// let responses = br#"{"model":"claude-sonnet-4","input":"Hi","tools":[
///     {"type":"custom","name":"apply_patch","description":"Edits files."}]}"#;
/// let (anthropic, tools) =
///     convert::request_with_tools(Format::OpenAiResponses, Format::AnthropicMessages, responses)
///         .unwrap();
/// let value: serde_json::Value = serde_json::from_slice(&anthropic).unwrap();
/// assert_eq!(value["tools"][0]["input_schema"]["properties"]["input"]["type"], "string");
/// // The answer's `tool_use` of `apply_patch` goes back as a `custom_tool_call`.
/// let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude",
///     "content":[{"type":"tool_use","id":"toolu_1","name":"apply_patch","input":{"input":"*** Begin Patch"}}],
///     "stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}"#;
/// let converted = convert::response_with_tools(
///     Format::AnthropicMessages, Format::OpenAiResponses, answer, tools.as_ref()).unwrap();
/// let value: serde_json::Value = serde_json::from_slice(&converted).unwrap();
/// assert_eq!(value["output"][0]["type"], "custom_tool_call");
/// assert_eq!(value["output"][0]["input"], "*** Begin Patch");
/// ```
pub fn request_with_tools(
    from: Format,
    to: Format,
    body: &[u8],
) -> Result<(Vec<u8>, Option<ClientTools>), ConvertError> {
    if from == to {
        return Ok((body.to_vec(), None));
    }
    let mut request = decode_request(from, to, body)?;
    let tools = request.client_tools.take();
    // The converted request is about as long as the client's: written into
    // one buffer of that size (and an eighth), not a doubling one.
    let expected = body.len() + body.len() / 8 + 256;
    let converted = match to {
        Format::AnthropicMessages => {
            crate::to_json_vec_sized(&anthropic::encode_request(request), expected)
        }
        Format::OpenAiChat => {
            crate::to_json_vec_sized(&openai_chat::encode_request(request), expected)
        }
        Format::OpenAiResponses => {
            crate::to_json_vec_sized(&openai_responses::encode_request(request), expected)
        }
    };
    Ok((converted, tools))
}

fn decode_request(from: Format, to: Format, body: &[u8]) -> Result<ir::Request, ConvertError> {
    match from {
        Format::AnthropicMessages => anthropic::decode_request(parse(from, body)?, to),
        Format::OpenAiChat => openai_chat::decode_request(parse(from, body)?, to),
        Format::OpenAiResponses => openai_responses::decode_request(parse(from, body)?, to),
    }
}

/// Converts a non-streamed response body from the upstream's format to the client's format.
///
/// With `from == to` the bytes are returned unchanged, unparsed.
pub fn response(from: Format, to: Format, body: &[u8]) -> Result<Vec<u8>, ConvertError> {
    response_with_tools(from, to, body, None)
}

/// [`response`] for a request whose conversion reported the client's tools
/// ([`request_with_tools`]): calls of its free-form and namespaced tools come back as the
/// client declared them.
pub fn response_with_tools(
    from: Format,
    to: Format,
    body: &[u8],
    tools: Option<&ClientTools>,
) -> Result<Vec<u8>, ConvertError> {
    if from == to {
        return Ok(body.to_vec());
    }
    let response = match from {
        Format::AnthropicMessages => anthropic::decode_response(parse(from, body)?),
        Format::OpenAiChat => openai_chat::decode_response(parse(from, body)?),
        Format::OpenAiResponses => openai_responses::decode_response(parse(from, body)?),
    };
    Ok(encode_response(to, response, tools))
}

/// Serialises an internal response in format `to`; `tools` restores the client's
/// free-form and namespaced tool calls (Responses only: no other format declares them).
pub(crate) fn encode_response(
    to: Format,
    response: ir::Response,
    tools: Option<&ClientTools>,
) -> Vec<u8> {
    match to {
        Format::AnthropicMessages => crate::to_json_vec(&anthropic::encode_response(response)),
        Format::OpenAiChat => crate::to_json_vec(&openai_chat::encode_response(response)),
        Format::OpenAiResponses => {
            crate::to_json_vec(&openai_responses::encode_response(response, tools))
        }
    }
}

/// Sets the model id a body reports, so that the client sees the model id it asked for
/// rather than the upstream's.
///
/// Works on request and response bodies of every format and on the data of stream events:
/// it sets the top-level `model`, and `message.model` (Anthropic `message_start`) or
/// `response.model` (Responses `response.*` events) where present. A body without a model
/// field comes back unchanged.
pub fn rewrite_model(body: &[u8], model: &str) -> Result<Vec<u8>, ConvertError> {
    let mut value: serde_json::Map<String, Value> =
        serde_json::from_slice(body).map_err(|error| ConvertError::Invalid {
            format: Format::AnthropicMessages,
            path: String::new(),
            message: format!("not a JSON object: {error}"),
        })?;
    if set_model(&mut value, model) {
        Ok(crate::to_json_vec(&value))
    } else {
        Ok(body.to_vec())
    }
}

/// [`rewrite_model`] for a stream event; events without a model (deltas, `[DONE]`) are left
/// alone without being parsed.
pub fn rewrite_model_event(event: &mut sse::Event, model: &str) {
    if !event.data.contains("\"model\"") {
        return;
    }
    let Ok(mut value) = serde_json::from_str::<serde_json::Map<String, Value>>(&event.data) else {
        return;
    };
    if set_model(&mut value, model) {
        event.data = crate::to_json_string(&value);
    }
}

fn set_model(value: &mut serde_json::Map<String, Value>, model: &str) -> bool {
    let mut changed = false;
    if value.contains_key("model") {
        value.insert("model".to_owned(), Value::String(model.to_owned()));
        changed = true;
    }
    for key in ["message", "response"] {
        if let Some(Value::Object(inner)) = value.get_mut(key)
            && inner.contains_key("model")
        {
            inner.insert("model".to_owned(), Value::String(model.to_owned()));
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_does_not_parse() {
        let garbage = b"not json at all";
        for format in Format::ALL {
            assert_eq!(request(format, format, garbage).expect("identity"), garbage);
            assert_eq!(
                response(format, format, garbage).expect("identity"),
                garbage
            );
        }
    }

    #[test]
    fn invalid_bodies_say_where() {
        let body = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","name":"x"}]}]}"#;
        let error = request(Format::AnthropicMessages, Format::OpenAiChat, body)
            .expect_err("tool_use lacks its id");
        let text = error.to_string();
        assert!(text.contains("messages[1].content"), "{text}");
        assert!(text.contains("missing field `id`"), "{text}");
    }

    #[test]
    fn rewrite_model_everywhere() {
        let body =
            rewrite_model(br#"{"model":"gpt-5-2025-08-07","id":"x"}"#, "gpt-5").expect("object");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).expect("json")["model"],
            "gpt-5"
        );
        let mut event = sse::Event::new(
            "message_start",
            json!({"type":"message_start","message":{"model":"claude-x","id":"m"}}).to_string(),
        );
        rewrite_model_event(&mut event, "sonnet");
        assert!(
            event.data.contains("\"model\":\"sonnet\""),
            "{}",
            event.data
        );
        let mut delta = sse::Event::data("[DONE]");
        rewrite_model_event(&mut delta, "sonnet");
        assert_eq!(delta, sse::Event::done());
    }
}
