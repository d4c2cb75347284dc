//! Anthropic Messages (`anthropic.messages`): `POST /v1/messages` request, response, error
//! and stream events.
//!
//! Every struct keeps the fields it does not name in `extra`, and every tagged enum keeps
//! unknown types in `Other`, so parsing and re-serialising loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Extra;
use crate::sse;
use crate::tagged::{string_or_list, tagged_enum};

/// A Messages API request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The model id.
    pub model: String,
    /// The conversation, alternating `user` and `assistant` turns.
    pub messages: Vec<Message>,
    /// The output token limit (required by the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// The system prompt, as a string or text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    /// Whether to stream the response as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    /// Custom stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Tool definitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Extended thinking configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    /// Request metadata (`user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Structured output (`{"type":"json_schema","schema":…}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<Value>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The system prompt: a string or a list of text blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum System {
    /// A plain string.
    Text(String),
    /// Text blocks (which may carry `cache_control`).
    Blocks(Vec<ContentBlock>),
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    /// The content: a string or blocks.
    pub content: Content,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Message or tool-result content: a string or a list of blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// A plain string.
    Text(String),
    /// Content blocks.
    Blocks(Vec<ContentBlock>),
}

tagged_enum! {
    /// A content block of a message, a response or a `content_block_start` event.
    pub enum ContentBlock {
        /// Text.
        "text" => Text(TextBlock),
        /// An image.
        "image" => Image(ImageBlock),
        /// A document (PDF or text).
        "document" => Document(DocumentBlock),
        /// A tool call made by the model.
        "tool_use" => ToolUse(ToolUseBlock),
        /// The result of a tool call, sent back by the client.
        "tool_result" => ToolResult(ToolResultBlock),
        /// Extended thinking.
        "thinking" => Thinking(ThinkingBlock),
        /// Thinking the API returns encrypted.
        "redacted_thinking" => RedactedThinking(RedactedThinkingBlock),
    }
}

/// A text block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextBlock {
    /// The text.
    pub text: String,
    /// Fields this crate does not name (`cache_control`, `citations`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// An image block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock {
    /// Where the image comes from.
    pub source: Source,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A document block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentBlock {
    /// Where the document comes from.
    pub source: Source,
    /// Fields this crate does not name (`title`, `context`, `citations`).
    #[serde(flatten)]
    pub extra: Extra,
}

tagged_enum! {
    /// Where an image or document comes from.
    pub enum Source {
        /// Inline base64 data.
        "base64" => Base64(Base64Source),
        /// A URL the API fetches.
        "url" => Url(UrlSource),
    }
}

/// Inline base64 data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Base64Source {
    /// The MIME type, e.g. `image/png`.
    pub media_type: String,
    /// The base64 data.
    pub data: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A URL source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlSource {
    /// The URL.
    pub url: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUseBlock {
    /// The call id (`toolu_…`).
    pub id: String,
    /// The tool name.
    pub name: String,
    /// The arguments, a JSON object.
    #[serde(default)]
    pub input: Value,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResultBlock {
    /// The id of the call this answers.
    pub tool_use_id: String,
    /// The result: a string or blocks (text and images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Whether the tool failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A thinking block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThinkingBlock {
    /// The thinking text.
    #[serde(default)]
    pub thinking: String,
    /// The signature that lets the API verify the block when it is sent back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A redacted thinking block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedactedThinkingBlock {
    /// The encrypted thinking.
    pub data: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool definition. Client tools have no `type` (or `custom`); server tools
/// (`web_search_20250305`, `bash_20250124`, …) name their type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// The tool type, absent for client tools.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The tool name.
    pub name: String,
    /// What the tool does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema of the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Fields this crate does not name (`cache_control`, server tool settings).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Tool {
    /// Whether this is a client tool with an input schema (as opposed to a server tool).
    pub fn is_custom(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("custom"))
    }
}

/// How the model may use tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolChoice {
    /// `auto`, `any`, `tool` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tool to call when `type` is `tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Allow at most one tool call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Extended thinking configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thinking {
    /// `enabled`, `disabled` or `adaptive`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The thinking token budget when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Request metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// An opaque end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A Messages API response body (also the `message` of `message_start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The message id (`msg_…`).
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    /// Always `assistant`.
    #[serde(default = "assistant_role")]
    pub role: String,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The content blocks.
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    /// Why the model stopped (`end_turn`, `max_tokens`, `stop_sequence`, `tool_use`,
    /// `pause_turn`, `refusal`).
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The stop sequence that matched.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Token usage.
    #[serde(default)]
    pub usage: Usage,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

fn message_type() -> String {
    "message".to_owned()
}

fn assistant_role() -> String {
    "assistant".to_owned()
}

/// Token usage. Anthropic counts cached input separately: `input_tokens` excludes
/// `cache_read_input_tokens` and `cache_creation_input_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Input tokens written to the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    /// Fields this crate does not name (`cache_creation`, `service_tier`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// An error response body: `{"type":"error","error":{"type":…,"message":…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Always `error`.
    #[serde(rename = "type", default = "error_type")]
    pub kind: String,
    /// The error.
    pub error: ErrorDetail,
    /// Fields this crate does not name (`request_id`).
    #[serde(flatten)]
    pub extra: Extra,
}

fn error_type() -> String {
    "error".to_owned()
}

/// The error inside an [`ErrorBody`] or an `error` stream event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `request_too_large`, `rate_limit_error`, `api_error`,
    /// `overloaded_error`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

tagged_enum! {
    /// One event of a streamed response; the SSE `event:` name repeats the `type`.
    pub enum StreamEvent {
        /// The first event: the message with empty content and the input usage.
        "message_start" => MessageStart(MessageStart),
        /// A content block begins.
        "content_block_start" => ContentBlockStart(ContentBlockStart),
        /// A piece of the current content block.
        "content_block_delta" => ContentBlockDelta(ContentBlockDelta),
        /// The content block ends.
        "content_block_stop" => ContentBlockStop(ContentBlockStop),
        /// The stop reason and the final usage.
        "message_delta" => MessageDelta(MessageDelta),
        /// The last event.
        "message_stop" => MessageStop(Empty),
        /// A keep-alive.
        "ping" => Ping(Empty),
        /// An error ends the stream.
        "error" => Error(StreamError),
    }
}

impl StreamEvent {
    /// Parses the data of an SSE event.
    pub fn parse(event: &sse::Event) -> Result<StreamEvent, serde_json::Error> {
        serde_json::from_str(&event.data)
    }

    /// The SSE event: `event:` is the type, `data:` the JSON.
    pub fn to_sse(&self) -> sse::Event {
        sse::Event::new(self.type_name(), crate::to_json_string(self))
    }
}

/// The `message_start` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageStart {
    /// The message so far: id, model, empty content, input usage.
    pub message: Response,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `content_block_start` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentBlockStart {
    /// The block index, counting from 0.
    pub index: usize,
    /// The block with empty text, thinking or input.
    pub content_block: ContentBlock,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `content_block_delta` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentBlockDelta {
    /// The block index.
    pub index: usize,
    /// The piece.
    pub delta: Delta,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

tagged_enum! {
    /// A piece of a content block.
    pub enum Delta {
        /// Text for a text block.
        "text_delta" => Text(TextDelta),
        /// A fragment of a tool call's input JSON.
        "input_json_delta" => InputJson(InputJsonDelta),
        /// Thinking text.
        "thinking_delta" => Thinking(ThinkingDelta),
        /// The thinking block's signature.
        "signature_delta" => Signature(SignatureDelta),
    }
}

/// Text for a text block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextDelta {
    /// The text.
    pub text: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A fragment of a tool call's input JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputJsonDelta {
    /// The fragment; the concatenation of all fragments is the input object.
    pub partial_json: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Thinking text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThinkingDelta {
    /// The text.
    pub thinking: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A thinking block's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureDelta {
    /// The signature.
    pub signature: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `content_block_stop` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentBlockStop {
    /// The block index.
    pub index: usize,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `message_delta` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDelta {
    /// The stop reason and stop sequence.
    pub delta: MessageDeltaBody,
    /// The usage so far (`output_tokens`, and recently the input counts too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `delta` of a `message_delta` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    /// Why the model stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The stop sequence that matched.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An event with nothing but its type (`message_stop`, `ping`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `error` stream event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamError {
    /// The error.
    pub error: ErrorDetail,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

string_or_list!(System, Text, Blocks, ContentBlock);
string_or_list!(Content, Text, Blocks, ContentBlock);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_and_block_types_survive_a_round_trip() {
        let body = json!({
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 10,
            "new_top_level_field": {"x": 1},
            "messages": [{
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
                    {"type": "brand_new_block", "payload": [1, 2]},
                    {"type": "image", "source": {"type": "file", "file_id": "f_1"}}
                ]
            }]
        });
        let request: Request = serde_json::from_value(body.clone()).expect("valid request");
        assert_eq!(serde_json::to_value(&request).expect("serialises"), body);
    }

    #[test]
    fn stream_events_parse_and_keep_their_event_name() {
        let event = sse::Event::new(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
        );
        let parsed = StreamEvent::parse(&event).expect("valid event");
        match &parsed {
            StreamEvent::ContentBlockDelta(delta) => match &delta.delta {
                Delta::InputJson(json) => assert_eq!(json.partial_json, "{\"a\""),
                other => panic!("unexpected delta {other:?}"),
            },
            other => panic!("unexpected event {other:?}"),
        }
        assert_eq!(parsed.to_sse(), event);
    }

    #[test]
    fn a_known_type_with_a_missing_field_is_an_error() {
        let error =
            serde_json::from_value::<ContentBlock>(json!({"type": "tool_use", "name": "x"}))
                .expect_err("id is required");
        assert!(error.to_string().contains("missing field `id`"), "{error}");
    }
}
