//! OpenAI Chat Completions (`openai.chat_completions`): `POST /v1/chat/completions`
//! request, response, error and stream chunks.
//!
//! Every struct keeps the fields it does not name in `extra` (Copilot's
//! `prompt_filter_results`, `padding`, …), so parsing and re-serialising loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Extra;
use crate::sse;
use crate::tagged::{string_or_list, tagged_enum};

/// A Chat Completions request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The model id.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// The output token limit (current name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// The output token limit (older name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Stop sequences: a string or a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Whether to stream chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Tool definitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may come in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Structured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Reasoning effort for reasoning models (`minimal`, `low`, `medium`, `high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// An end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Fields this crate does not name (`n`, `seed`, penalties, `logprobs`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Stop sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Several sequences.
    Many(Vec<String>),
}

/// Stream options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a usage chunk at the end of the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A message of the conversation (also the `message` of a response choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant`, `tool` (or the legacy `function`).
    pub role: String,
    /// The content: a string, parts, or null for an assistant turn with tool calls only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// A participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by the assistant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// For `tool` messages: the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// An assistant refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Reasoning text (the DeepSeek-style extension many servers and clients understand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Message content: a string or parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// A plain string.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

tagged_enum! {
    /// A part of message content.
    pub enum ContentPart {
        /// Text.
        "text" => Text(TextPart),
        /// An image by URL (`https:` or `data:`).
        "image_url" => ImageUrl(ImageUrlPart),
        /// A file (`file_data` as a data URL, or `file_id`).
        "file" => File(FilePart),
        /// An assistant refusal.
        "refusal" => Refusal(RefusalPart),
    }
}

/// A text part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    /// The text.
    pub text: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An image part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrlPart {
    /// The image.
    pub image_url: ImageUrl,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An image URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `https:` or `data:` URL.
    pub url: String,
    /// `auto`, `low` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A file part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePart {
    /// The file.
    pub file: FileData,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A file's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileData {
    /// The content as a `data:` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// An uploaded file id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// The file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A refusal part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalPart {
    /// The refusal text.
    pub refusal: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call id (`call_…`, at most 64 characters).
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

fn function_type() -> String {
    "function".to_owned()
}

/// The function of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The tool name.
    pub name: String,
    /// The arguments as a JSON text.
    #[serde(default)]
    pub arguments: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `function` (other kinds such as `custom` are kept but not converted).
    #[serde(rename = "type")]
    pub kind: String,
    /// The function, for `function` tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDefinition>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A function tool's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    /// The tool name.
    pub name: String,
    /// What the tool does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether the arguments must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// How the model may use tools: `none`, `auto`, `required` or one named function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(String),
    /// `{"type":"function","function":{"name":…}}`.
    Named(NamedToolChoice),
}

/// A named tool choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedToolChoice {
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function to call.
    pub function: NamedFunction,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The function of a named tool choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedFunction {
    /// The tool name.
    pub name: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Structured output: `text`, `json_object` or `json_schema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The schema for `json_schema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchema>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A named JSON schema for structured output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchema {
    /// The schema's name.
    #[serde(default)]
    pub name: String,
    /// What the output is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Whether the output must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A Chat Completions response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The completion id (`chatcmpl-…`).
    #[serde(default)]
    pub id: String,
    /// Always `chat.completion`.
    #[serde(default = "completion_object")]
    pub object: String,
    /// Unix time of creation.
    #[serde(default)]
    pub created: u64,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The choices (one unless the request set `n`).
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Fields this crate does not name (`system_fingerprint`, `service_tier`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

fn completion_object() -> String {
    "chat.completion".to_owned()
}

/// A choice of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The choice index.
    #[serde(default)]
    pub index: u32,
    /// The assistant message.
    pub message: Message,
    /// `stop`, `length`, `tool_calls`, `content_filter` or `function_call`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Fields this crate does not name (`logprobs`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Token usage. `prompt_tokens` includes cached tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens, cached ones included.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens, reasoning included.
    #[serde(default)]
    pub completion_tokens: u64,
    /// The sum.
    #[serde(default)]
    pub total_tokens: u64,
    /// Input details (`cached_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Output details (`reasoning_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Fields this crate does not name. Converters put Anthropic's prompt-cache writes in
    /// `cache_creation_input_tokens` here, as LiteLLM does.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Input token details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Input tokens read from the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Output token details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    /// Reasoning tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An error response body `{"error":{"message","type","param","code"}}`, shared by Chat
/// Completions and Responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The error inside an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `server_error`, …
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The parameter at fault.
    #[serde(default)]
    pub param: Option<String>,
    /// A machine-readable code (`invalid_api_key`, `rate_limit_exceeded`, …).
    #[serde(default)]
    pub code: Option<Value>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One event of a streamed response.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A `chat.completion.chunk`.
    Chunk(Chunk),
    /// An error sent in the stream (`{"error":{…}}`).
    Error(ErrorBody),
    /// The `[DONE]` sentinel.
    Done,
}

impl StreamEvent {
    /// Parses the data of an SSE event.
    pub fn parse(event: &sse::Event) -> Result<StreamEvent, serde_json::Error> {
        if event.is_done() {
            return Ok(StreamEvent::Done);
        }
        let mut value: serde_json::Map<String, Value> = serde_json::from_str(&event.data)?;
        if value.contains_key("error") && !value.contains_key("choices") {
            return serde_json::from_value(Value::Object(value)).map(StreamEvent::Error);
        }
        // Internal: a chunk with `"choices": null` is seen from some servers.
        if value.get("choices").is_some_and(Value::is_null) {
            value.remove("choices");
        }
        serde_json::from_value(Value::Object(value)).map(StreamEvent::Chunk)
    }

    /// The SSE event (data only, no `event:` name).
    pub fn to_sse(&self) -> sse::Event {
        match self {
            StreamEvent::Chunk(chunk) => sse::Event::data(crate::to_json_string(chunk)),
            StreamEvent::Error(error) => sse::Event::data(crate::to_json_string(error)),
            StreamEvent::Done => sse::Event::done(),
        }
    }
}

/// A `chat.completion.chunk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// The completion id, the same on every chunk.
    #[serde(default)]
    pub id: String,
    /// Always `chat.completion.chunk`.
    #[serde(default = "chunk_object")]
    pub object: String,
    /// Unix time of creation.
    #[serde(default)]
    pub created: u64,
    /// The model.
    #[serde(default)]
    pub model: String,
    /// The choice deltas (empty on a usage-only chunk).
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Token usage, on the last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}

/// A choice delta of a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// The choice index.
    #[serde(default)]
    pub index: u32,
    /// The delta.
    #[serde(default)]
    pub delta: ChunkDelta,
    /// Set on the chunk that finishes the choice.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// What a chunk adds to the message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkDelta {
    /// `assistant`, on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Reasoning text (DeepSeek-style extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool call fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// Refusal text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Fields this crate does not name (`reasoning` from some servers, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A fragment of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// The tool call's position among this message's tool calls, on every fragment. Some
    /// servers (Gemini's OpenAI-compatible endpoint) send none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The call id, on the first fragment only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, on the first fragment only.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name (first fragment) and an arguments fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The function part of a tool call fragment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDelta {
    /// The tool name, on the first fragment only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A fragment of the arguments JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

string_or_list!(Content, Text, Parts, ContentPart);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn copilot_extras_survive_a_round_trip() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop", "content_filter_results": {},
                "message": {"role": "assistant", "content": "hi", "padding": "abc"}}],
            "prompt_filter_results": [{"prompt_index": 0}]
        });
        let response: Response = serde_json::from_value(body.clone()).expect("valid response");
        assert_eq!(serde_json::to_value(&response).expect("serialises"), body);
    }

    #[test]
    fn stream_events_parse() {
        let done = StreamEvent::parse(&sse::Event::done()).expect("done");
        assert_eq!(done, StreamEvent::Done);
        let error = StreamEvent::parse(&sse::Event::data(r#"{"error":{"message":"boom"}}"#))
            .expect("error chunk");
        assert!(matches!(error, StreamEvent::Error(body) if body.error.message == "boom"));
        let chunk = StreamEvent::parse(&sse::Event::data(
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{"}}]}}]}"#,
        ))
        .expect("chunk");
        let StreamEvent::Chunk(chunk) = chunk else {
            panic!("expected a chunk")
        };
        let calls = chunk.choices[0]
            .delta
            .tool_calls
            .as_ref()
            .expect("tool calls");
        assert_eq!(calls[0].index, Some(1));
    }
}
