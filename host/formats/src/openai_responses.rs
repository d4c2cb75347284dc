//! OpenAI Responses (`openai.responses`): `POST /v1/responses` request, response, error and
//! stream events, as spoken by the OpenAI API and the Codex backend.
//!
//! Every struct keeps the fields it does not name in `extra` and every tagged enum keeps
//! unknown types in `Other` (built-in tool calls, new event types), so parsing and
//! re-serialising loses nothing.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::Extra;
use crate::sse;
use crate::tagged::{string_or_list, tagged_enum};

pub use crate::openai_chat::{ErrorBody, ErrorDetail};

/// A Responses request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The model id.
    pub model: String,
    /// The input: a string or a list of items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The output token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Whether to stream events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Tool definitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may come in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Reasoning configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
    /// Text output configuration (structured output, verbosity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    /// An end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Fields this crate does not name (`store`, `include`, `prompt_cache_key`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Request input: a string or items.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// Items: messages, function calls and outputs, reasoning, …
    Items(Vec<Item>),
}

tagged_enum! {
    /// An input or output item. A bare `{role, content}` object is a message.
    pub enum Item [missing = "message"] {
        /// A message.
        "message" => Message(MessageItem),
        /// A function call made by the model.
        "function_call" => FunctionCall(FunctionCallItem),
        /// The output of a function call, sent back by the client.
        "function_call_output" => FunctionCallOutput(FunctionCallOutputItem),
        /// Reasoning.
        "reasoning" => Reasoning(ReasoningItem),
        /// A call of a free-form (`custom`) tool made by the model.
        "custom_tool_call" => CustomToolCall(CustomToolCallItem),
        /// The output of a free-form tool call, sent back by the client.
        "custom_tool_call_output" => CustomToolCallOutput(CustomToolCallOutputItem),
    }
}

/// A message item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    /// The item id (`msg_…`), on output items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `user`, `assistant`, `system` or `developer`.
    pub role: String,
    /// The content: a string or parts.
    pub content: MessageContent,
    /// `in_progress`, `completed` or `incomplete`, on output items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Message content: a string or parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// A plain string.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

tagged_enum! {
    /// A part of message content.
    pub enum ContentPart {
        /// Input text.
        "input_text" => InputText(TextPart),
        /// Output text (assistant messages).
        "output_text" => OutputText(OutputTextPart),
        /// An input image.
        "input_image" => InputImage(InputImagePart),
        /// An input file.
        "input_file" => InputFile(InputFilePart),
        /// A refusal.
        "refusal" => Refusal(RefusalPart),
    }
}

/// Input text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    /// The text.
    pub text: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Output text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputTextPart {
    /// The text.
    #[serde(default)]
    pub text: String,
    /// Citations and other annotations.
    #[serde(default)]
    pub annotations: Vec<Value>,
    /// Fields this crate does not name (`logprobs`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// An input image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputImagePart {
    /// An `https:` or `data:` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// An uploaded file id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// `auto`, `low` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An input file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFilePart {
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

/// A refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalPart {
    /// The refusal text.
    #[serde(default)]
    pub refusal: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A function call item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallItem {
    /// The item id (`fc_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The call id that the output refers to (`call_…`).
    pub call_id: String,
    /// The tool name.
    pub name: String,
    /// The arguments as a JSON text.
    #[serde(default)]
    pub arguments: String,
    /// `in_progress`, `completed` or `incomplete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A call of a free-form (`custom`) tool: its input is one raw string, which may follow
/// the tool's grammar. A tool declared in a `namespace` names it in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomToolCallItem {
    /// The item id (`ctc_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The call id that the output refers to (`call_…`).
    pub call_id: String,
    /// The tool name.
    pub name: String,
    /// The raw input.
    #[serde(default)]
    pub input: String,
    /// `in_progress`, `completed` or `incomplete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Fields this crate does not name (`namespace`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The output of a free-form tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomToolCallOutputItem {
    /// The call this answers.
    pub call_id: String,
    /// The output: a string, or a list of `input_text` / `input_image` parts.
    #[serde(default)]
    pub output: Value,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A function call output item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallOutputItem {
    /// The call this answers.
    pub call_id: String,
    /// The output: a string, or a list of `input_text` / `input_image` parts.
    #[serde(default)]
    pub output: Value,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A reasoning item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasoningItem {
    /// The item id (`rs_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Reasoning summary parts.
    #[serde(default)]
    pub summary: Vec<SummaryPart>,
    /// The reasoning, encrypted, when requested with `include`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<String>,
    /// Fields this crate does not name (`content`, `status`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A reasoning summary part (`{"type":"summary_text","text":…}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryPart {
    /// Always `summary_text`.
    #[serde(rename = "type", default = "summary_text_type")]
    pub kind: String,
    /// The text.
    #[serde(default)]
    pub text: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

fn summary_text_type() -> String {
    "summary_text".to_owned()
}

/// A tool definition. Function tools have a name and parameters; built-in tools
/// (`web_search`, `local_shell`, `custom`, …) keep their settings in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `function` or a built-in tool type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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

/// How the model may use tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(String),
    /// `{"type":"function","name":…}` or a built-in tool type.
    Named(NamedToolChoice),
}

/// A named tool choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedToolChoice {
    /// `function` or a built-in tool type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Reasoning configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reasoning {
    /// `none`, `minimal`, `low`, `medium` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// `auto`, `concise` or `detailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Text output configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// The output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
    /// Fields this crate does not name (`verbosity`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// An output format: `text`, `json_object` or `json_schema` with its schema inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The schema's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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

/// A response object: the body of a non-streamed response and the `response` of
/// `response.created` / `response.completed` / … events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The response id (`resp_…`).
    #[serde(default)]
    pub id: String,
    /// Always `response`.
    #[serde(default = "response_object")]
    pub object: String,
    /// Unix time of creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
    /// `queued`, `in_progress`, `completed`, `incomplete`, `failed` or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The model.
    #[serde(default)]
    pub model: String,
    /// The output items. A missing or non-list `output` reads as empty (seen from the
    /// Codex backend).
    #[serde(default, deserialize_with = "lenient_list")]
    pub output: Vec<Item>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The error of a failed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ResponseError>,
    /// Why an incomplete response stopped (`{"reason":"max_output_tokens"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_details: Option<IncompleteDetails>,
    /// Fields this crate does not name (`instructions`, `tools`, `reasoning`, `text`, …).
    #[serde(flatten)]
    pub extra: Extra,
}

fn response_object() -> String {
    "response".to_owned()
}

fn lenient_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Item>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| serde_json::from_value(item).map_err(serde::de::Error::custom))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

/// The error of a failed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseError {
    /// A machine-readable code (`server_error`, `rate_limit_exceeded`, …).
    #[serde(default)]
    pub code: Option<String>,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Why a response is incomplete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Token usage. `input_tokens` includes cached tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens, cached ones included.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens, reasoning included.
    #[serde(default)]
    pub output_tokens: u64,
    /// The sum.
    #[serde(default)]
    pub total_tokens: u64,
    /// Input details (`cached_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_details: Option<InputTokensDetails>,
    /// Output details (`reasoning_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<OutputTokensDetails>,
    /// Fields this crate does not name. Converters put Anthropic's prompt-cache writes in
    /// `cache_creation_input_tokens` here.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Input token details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputTokensDetails {
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Output token details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    /// Reasoning tokens.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

tagged_enum! {
    /// One event of a streamed response; the SSE `event:` name repeats the `type`.
    pub enum StreamEvent {
        /// The response was created.
        "response.created" => Created(ResponseEvent),
        /// The response is being generated.
        "response.in_progress" => InProgress(ResponseEvent),
        /// The response finished.
        "response.completed" => Completed(ResponseEvent),
        /// The response stopped early (`incomplete_details`).
        "response.incomplete" => Incomplete(ResponseEvent),
        /// The response failed (`error`).
        "response.failed" => Failed(ResponseEvent),
        /// An output item begins.
        "response.output_item.added" => OutputItemAdded(OutputItemEvent),
        /// An output item is complete.
        "response.output_item.done" => OutputItemDone(OutputItemEvent),
        /// A content part of a message begins.
        "response.content_part.added" => ContentPartAdded(ContentPartEvent),
        /// A content part of a message is complete.
        "response.content_part.done" => ContentPartDone(ContentPartEvent),
        /// Text for an `output_text` part.
        "response.output_text.delta" => OutputTextDelta(TextDeltaEvent),
        /// The whole text of an `output_text` part.
        "response.output_text.done" => OutputTextDone(TextDoneEvent),
        /// Text for a refusal part.
        "response.refusal.delta" => RefusalDelta(TextDeltaEvent),
        /// A fragment of a function call's arguments.
        "response.function_call_arguments.delta" => FunctionCallArgumentsDelta(TextDeltaEvent),
        /// The whole arguments of a function call.
        "response.function_call_arguments.done" => FunctionCallArgumentsDone(ArgumentsDoneEvent),
        /// A reasoning summary part begins.
        "response.reasoning_summary_part.added" => ReasoningSummaryPartAdded(SummaryPartEvent),
        /// A reasoning summary part is complete.
        "response.reasoning_summary_part.done" => ReasoningSummaryPartDone(SummaryPartEvent),
        /// Text for a reasoning summary part.
        "response.reasoning_summary_text.delta" => ReasoningSummaryTextDelta(TextDeltaEvent),
        /// The whole text of a reasoning summary part.
        "response.reasoning_summary_text.done" => ReasoningSummaryTextDone(TextDoneEvent),
        /// Raw reasoning text (open-weight models).
        "response.reasoning_text.delta" => ReasoningTextDelta(TextDeltaEvent),
        /// A fragment of a free-form tool call's input.
        "response.custom_tool_call_input.delta" => CustomToolCallInputDelta(TextDeltaEvent),
        /// The whole input of a free-form tool call.
        "response.custom_tool_call_input.done" => CustomToolCallInputDone(InputDoneEvent),
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

/// An event that carries the response object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEvent {
    /// The response so far.
    pub response: Response,
    /// The event's position in the stream, counting from 0.
    #[serde(default)]
    pub sequence_number: u64,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `response.output_item.added` / `.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputItemEvent {
    /// The item's position in `output`.
    #[serde(default)]
    pub output_index: usize,
    /// The item (empty when added, whole when done).
    pub item: Item,
    /// The event's position in the stream.
    #[serde(default)]
    pub sequence_number: u64,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `response.content_part.added` / `.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPartEvent {
    /// The message item's id.
    #[serde(default)]
    pub item_id: String,
    /// The item's position in `output`.
    #[serde(default)]
    pub output_index: usize,
    /// The part's position in the message content.
    #[serde(default)]
    pub content_index: usize,
    /// The part.
    pub part: ContentPart,
    /// The event's position in the stream.
    #[serde(default)]
    pub sequence_number: u64,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A text fragment: output text, refusal, function arguments or reasoning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextDeltaEvent {
    /// The item's id.
    #[serde(default)]
    pub item_id: String,
    /// The item's position in `output`.
    #[serde(default)]
    pub output_index: usize,
    /// The part's position in the message content (text and refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_index: Option<usize>,
    /// The summary part's position (reasoning summaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_index: Option<usize>,
    /// The fragment.
    #[serde(default)]
    pub delta: String,
    /// The event's position in the stream.
    #[serde(default)]
    pub sequence_number: u64,
    /// Fields this crate does not name (`logprobs`, `obfuscation`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The whole text of a part: output text or a reasoning summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextDoneEvent {
    /// The item's id.
    #[serde(default)]
    pub item_id: String,
    /// The item's position in `output`.
    #[serde(default)]
    pub output_index: usize,
    /// The part's position in the message content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_index: Option<usize>,
    /// The summary part's position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_index: Option<usize>,
    /// The whole text.
    #[serde(default)]
    pub text: String,
    /// The event's position in the stream.
    #[serde(default)]
    pub sequence_number: u64,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `response.function_call_arguments.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgumentsDoneEvent {
    /// The function call item's id.
    #[serde(default)]
    pub item_id: String,
    /// The item's position in `output`.
    #[serde(default)]
    pub output_index: usize,
    /// The whole arguments JSON.
    #[serde(default)]
    pub arguments: String,
    /// The event's position in the stream.
    #[serde(default)]
    pub sequence_number: u64,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `response.custom_tool_call_input.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputDoneEvent {
    /// The custom tool call item's id.
    #[serde(default)]
    pub item_id: String,
    /// The item's position in `output`.
    #[serde(default)]
    pub output_index: usize,
    /// The whole input.
    #[serde(default)]
    pub input: String,
    /// The event's position in the stream.
    #[serde(default)]
    pub sequence_number: u64,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `response.reasoning_summary_part.added` / `.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryPartEvent {
    /// The reasoning item's id.
    #[serde(default)]
    pub item_id: String,
    /// The item's position in `output`.
    #[serde(default)]
    pub output_index: usize,
    /// The summary part's position.
    #[serde(default)]
    pub summary_index: usize,
    /// The part.
    pub part: SummaryPart,
    /// The event's position in the stream.
    #[serde(default)]
    pub sequence_number: u64,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `error` stream event.
///
/// OpenAI documents the fields at the top level (`code`, `message`, `param`); the live API
/// has been seen to send them nested in `error` instead (openai/openai-dotnet#881), and the
/// openai Python SDK raises its `APIError` only for the nested form. This crate reads both
/// and writes both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamError {
    /// A machine-readable code.
    #[serde(default)]
    pub code: Option<String>,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// The parameter at fault.
    #[serde(default)]
    pub param: Option<String>,
    /// The event's position in the stream.
    #[serde(default)]
    pub sequence_number: u64,
    /// The same error nested, as the live API sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// Fields this crate does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

string_or_list!(Input, Text, Items, Item);
string_or_list!(MessageContent, Text, Parts, ContentPart);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bare_message_items_and_unknown_items_parse() {
        let request: Request = serde_json::from_value(json!({
            "model": "gpt-5",
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "web_search_call", "id": "ws_1", "status": "completed"}
            ]
        }))
        .expect("valid request");
        let Some(Input::Items(items)) = &request.input else {
            panic!("expected items")
        };
        assert!(matches!(&items[0], Item::Message(message) if message.role == "user"));
        assert_eq!(items[1].type_name(), "web_search_call");
    }

    #[test]
    fn missing_or_odd_output_reads_as_empty() {
        let response: Response =
            serde_json::from_value(json!({"id": "resp_1", "output": null})).expect("lenient");
        assert!(response.output.is_empty());
        let response: Response = serde_json::from_value(json!({"id": "resp_1"})).expect("lenient");
        assert!(response.output.is_empty());
    }

    #[test]
    fn unknown_events_pass_through() {
        let data =
            r#"{"type":"response.web_search_call.searching","sequence_number":3,"item_id":"ws_1"}"#;
        let event =
            StreamEvent::parse(&sse::Event::new("response.web_search_call.searching", data))
                .expect("parses");
        assert!(matches!(event, StreamEvent::Other(_)));
        assert_eq!(
            serde_json::to_value(&event).expect("serialises"),
            serde_json::from_str::<Value>(data).expect("json")
        );
    }
}
