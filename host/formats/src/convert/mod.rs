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
    let invalid = |error: serde_json::Error| ConvertError::Invalid {
        format: Format::AnthropicMessages,
        path: String::new(),
        message: format!("not a JSON object: {error}"),
    };
    let text = std::str::from_utf8(body).map_err(|error| ConvertError::Invalid {
        format: Format::AnthropicMessages,
        path: String::new(),
        message: format!("not a JSON object: {error}"),
    })?;
    let spans = model_spans(text).map_err(invalid)?;
    Ok(splice_model(text, &spans, model).into_bytes())
}

/// [`rewrite_model`] for a stream event; events without a model (deltas, `[DONE]`) are left
/// alone without being parsed.
pub fn rewrite_model_event(event: &mut sse::Event, model: &str) {
    if !event.data.contains("\"model\"") {
        return;
    }
    if let Ok(spans) = model_spans(&event.data)
        && !spans.is_empty()
    {
        event.data = splice_model(&event.data, &spans, model);
    }
}

/// `text` with each of `spans` (model values, in order) replaced by `model` as a JSON string.
/// Only those bytes change: the rest of the upstream's answer (key order, numbers, spacing)
/// is passed on as it came, and nothing is built but the output.
fn splice_model(text: &str, spans: &[std::ops::Range<usize>], model: &str) -> String {
    if spans.is_empty() {
        return text.to_owned();
    }
    let quoted = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = String::with_capacity(text.len() + spans.len() * quoted.len());
    let mut at = 0;
    for span in spans {
        out.push_str(&text[at..span.start]);
        out.push_str(&quoted);
        at = span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Where the model values of a JSON object are, in order: its top-level `model`, and
/// `message.model` / `response.model` (Anthropic `message_start`, Responses `response.*`
/// events). The object is checked as serde_json parses it, but only those values' places are
/// kept (a whole parse into a `Map` and back cost about 30,000 instructions per answer).
/// An error when `text` is not a JSON object.
fn model_spans(text: &str) -> Result<Vec<std::ops::Range<usize>>, serde_json::Error> {
    let found: ModelFields<'_> = serde_json::from_str(text)?;
    let base = text.as_ptr() as usize;
    let offset = |raw: &serde_json::value::RawValue| {
        let start = raw.get().as_ptr() as usize - base;
        start..start + raw.get().len()
    };
    let mut spans: Vec<std::ops::Range<usize>> =
        found.models.iter().map(|raw| offset(raw)).collect();
    for inner in found.inner {
        // A `message` or `response` that is not an object has no model to set.
        if let Ok(nested) = serde_json::from_str::<ModelFields<'_>>(inner.get()) {
            spans.extend(nested.models.iter().map(|raw| offset(raw)));
        }
    }
    spans.sort_by_key(|span| span.start);
    Ok(spans)
}

/// The values of an object's `model` keys and of its `message` and `response` keys, borrowed
/// from the text; every other value is skipped unbuilt.
struct ModelFields<'a> {
    models: Vec<&'a serde_json::value::RawValue>,
    inner: Vec<&'a serde_json::value::RawValue>,
}

impl<'de> serde::Deserialize<'de> for ModelFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = ModelFields<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut fields = ModelFields {
                    models: Vec::new(),
                    inner: Vec::new(),
                };
                while let Some(key) = map.next_key::<FieldKey>()? {
                    match key {
                        FieldKey::Model => fields.models.push(map.next_value()?),
                        FieldKey::Inner => fields.inner.push(map.next_value()?),
                        FieldKey::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A key of [`ModelFields`], told apart without allocating (escaped keys included).
enum FieldKey {
    Model,
    Inner,
    Other,
}

impl<'de> serde::Deserialize<'de> for FieldKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl serde::de::Visitor<'_> for Key {
            type Value = FieldKey;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a key")
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<FieldKey, E> {
                Ok(match key {
                    "model" => FieldKey::Model,
                    "message" | "response" => FieldKey::Inner,
                    _ => FieldKey::Other,
                })
            }
        }
        deserializer.deserialize_str(Key)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

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

    #[test]
    fn rewrite_model_changes_only_the_model_bytes() {
        // Key order, spacing, numbers and escaped keys pass as the upstream wrote them; a
        // `model` elsewhere (in the content) is not the answer's model.
        let body = br#"{"id":"x", "model" : "up-1","usage":{"input_tokens":1.50},"content":[{"model":"keep"}],"\u006dodel2":1}"#;
        let rewritten = rewrite_model(body, r#"my "quoted" model"#).expect("object");
        assert_eq!(
            String::from_utf8(rewritten).expect("utf-8"),
            r#"{"id":"x", "model" : "my \"quoted\" model","usage":{"input_tokens":1.50},"content":[{"model":"keep"}],"\u006dodel2":1}"#
        );
        // Both places at once, in order.
        let both = br#"{"model":"a","response":{"id":"r","model":"b"},"message":"text"}"#;
        assert_eq!(
            rewrite_model(both, "m").expect("object"),
            br#"{"model":"m","response":{"id":"r","model":"m"},"message":"text"}"#
        );
        // No model: unchanged; not an object or not JSON: an error (callers keep the body).
        let plain = br#"{"id":"x"}"#;
        assert_eq!(rewrite_model(plain, "m").expect("object"), plain);
        assert!(rewrite_model(b"[1,2]", "m").is_err());
        assert!(rewrite_model(br#"{"model":"a""#, "m").is_err());
        assert!(rewrite_model(b"\xff", "m").is_err());
        // An event that is not JSON is left alone.
        let mut broken = sse::Event::data(r#"{"model": oops"#);
        rewrite_model_event(&mut broken, "m");
        assert_eq!(broken.data, r#"{"model": oops"#);
    }
}
