//! The internal representation every format converts to and from.
//!
//! A conversion from format A to format B is A's decoder followed by B's encoder, so each
//! pair of formats converts in one hop and no direction goes through a third format.
//! These types are deliberately not serialisable: they never appear on the wire.

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A request in any format.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Request {
    pub(crate) model: String,
    /// The conversation; system and developer messages keep their position.
    pub(crate) messages: Vec<Message>,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) temperature: Option<f64>,
    pub(crate) top_p: Option<f64>,
    pub(crate) top_k: Option<u64>,
    pub(crate) stop: Vec<String>,
    pub(crate) stream: Option<bool>,
    pub(crate) tools: Vec<Tool>,
    pub(crate) tool_choice: Option<ToolChoice>,
    pub(crate) parallel_tool_calls: Option<bool>,
    pub(crate) reasoning: Option<Reasoning>,
    pub(crate) response_format: Option<ResponseFormat>,
    pub(crate) user: Option<String>,
    pub(crate) openai: OpenAiOptions,
    /// The client's free-form and namespaced tools, renamed for the upstream; set by the
    /// Responses decoder only for a request that has such tools.
    pub(crate) client_tools: Option<super::tools::ClientTools>,
}

/// Request options the two OpenAI formats share; Anthropic has no counterpart.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct OpenAiOptions {
    pub(crate) prompt_cache_key: Option<String>,
    pub(crate) service_tier: Option<String>,
    pub(crate) store: Option<bool>,
    pub(crate) metadata: Option<serde_json::Map<String, Value>>,
    pub(crate) safety_identifier: Option<String>,
    /// Chat's top-level `verbosity`, Responses' `text.verbosity`.
    pub(crate) verbosity: Option<String>,
}

impl OpenAiOptions {
    /// Reads the options both formats keep at the top level of a request (all but
    /// `verbosity`) from its unnamed fields.
    pub(crate) fn read(extra: &crate::Extra) -> OpenAiOptions {
        let text = |key: &str| extra.get(key).and_then(Value::as_str).map(str::to_owned);
        OpenAiOptions {
            prompt_cache_key: text("prompt_cache_key"),
            service_tier: text("service_tier"),
            store: extra.get("store").and_then(Value::as_bool),
            metadata: extra.get("metadata").and_then(Value::as_object).cloned(),
            safety_identifier: text("safety_identifier"),
            verbosity: None,
        }
    }

    /// Writes the top-level options (all but `verbosity`) into a request's unnamed fields.
    pub(crate) fn write(&self, extra: &mut crate::Extra) {
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                extra.insert(key.to_owned(), value);
            }
        };
        put(
            "prompt_cache_key",
            self.prompt_cache_key.clone().map(Value::String),
        );
        put("service_tier", self.service_tier.clone().map(Value::String));
        put("store", self.store.map(Value::Bool));
        put("metadata", self.metadata.clone().map(Value::Object));
        put(
            "safety_identifier",
            self.safety_identifier.clone().map(Value::String),
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    System,
    Developer,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub(crate) role: Role,
    pub(crate) parts: Vec<Part>,
}

impl Message {
    pub(crate) fn new(role: Role, parts: Vec<Part>) -> Self {
        Message { role, parts }
    }
}

/// Where an image or file comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Media {
    Base64 { media_type: String, data: String },
    Url(String),
    FileId(String),
}

impl Media {
    /// Reads a `data:` URL as base64 media, anything else as a URL.
    ///
    /// A `data:` URL without `;base64` (`data:image/svg+xml;utf8,%3Csvg…`) is
    /// percent-decoded and base64-encoded: Anthropic takes inline media only as base64.
    /// Parameters (`;charset=…`) are dropped from the media type, which Anthropic matches
    /// exactly; an empty media type is `text/plain`, as RFC 2397 says.
    pub(crate) fn from_url(url: &str) -> Media {
        let Some((header, data)) = url
            .strip_prefix("data:")
            .and_then(|rest| rest.split_once(','))
        else {
            return Media::Url(url.to_owned());
        };
        let mut params = header.split(';');
        let media_type = params.next().unwrap_or_default().trim();
        let is_base64 = params.any(|param| param.trim().eq_ignore_ascii_case("base64"));
        Media::Base64 {
            media_type: if media_type.is_empty() {
                "text/plain".to_owned()
            } else {
                media_type.to_owned()
            },
            data: if is_base64 {
                data.to_owned()
            } else {
                // A malformed escape stays as it is.
                let bytes: Vec<u8> = percent_encoding::percent_decode_str(data).collect();
                base64::engine::general_purpose::STANDARD.encode(bytes)
            },
        }
    }

    /// The media as a URL (`data:` for inline data); `None` for a file id.
    pub(crate) fn to_url(&self) -> Option<String> {
        match self {
            Media::Base64 { media_type, data } => Some(format!("data:{media_type};base64,{data}")),
            Media::Url(url) => Some(url.clone()),
            Media::FileId(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Text(String),
    Image(Media),
    File {
        media: Media,
        filename: Option<String>,
    },
    ToolCall {
        id: String,
        name: String,
        /// The arguments as JSON text, exactly as the source had them.
        arguments: String,
    },
    ToolResult {
        call_id: String,
        /// Text and image parts.
        content: Vec<Part>,
        is_error: bool,
    },
    Reasoning {
        text: String,
        /// Anthropic's thinking signature; only Anthropic can use it.
        signature: Option<String>,
    },
    /// Anthropic's encrypted thinking; only Anthropic can use it.
    RedactedReasoning(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tool {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) parameters: Value,
    pub(crate) strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolChoice {
    Auto,
    None,
    Required,
    Named(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Reasoning {
    /// `none`, `minimal`, `low`, `medium`, `high`, … as OpenAI names it.
    pub(crate) effort: Option<String>,
    /// Anthropic's thinking budget.
    pub(crate) budget_tokens: Option<u64>,
}

impl Reasoning {
    /// Whether reasoning is switched off (`effort: none`).
    pub(crate) fn is_off(&self) -> bool {
        self.effort.as_deref() == Some("none")
    }

    /// The OpenAI effort: as given, else derived from the Anthropic budget.
    pub(crate) fn effort(&self) -> String {
        if let Some(effort) = &self.effort {
            return effort.clone();
        }
        match self.budget_tokens {
            Some(budget) if budget < 4096 => "low",
            Some(budget) if budget >= 16384 => "high",
            _ => "medium",
        }
        .to_owned()
    }

    /// The Anthropic budget: as given, else derived from the OpenAI effort (1024 is
    /// Anthropic's minimum).
    pub(crate) fn budget_tokens(&self) -> u64 {
        if let Some(budget) = self.budget_tokens {
            return budget.max(1024);
        }
        match self.effort.as_deref() {
            Some("minimal") => 1024,
            Some("low") => 2048,
            Some("high") => 16384,
            Some("xhigh") => 32768,
            _ => 8192,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Value,
        strict: Option<bool>,
    },
}

/// A non-streamed response in any format.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Response {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) created: Option<u64>,
    /// Text, tool calls and reasoning, in order.
    pub(crate) parts: Vec<Part>,
    pub(crate) stop: Stop,
    pub(crate) usage: Usage,
}

impl Response {
    pub(crate) fn has_tool_calls(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::ToolCall { .. }))
    }

    /// The stop reason, corrected to `ToolUse` when the response calls tools and the source
    /// said only that the turn ended (the Responses API has no tool stop reason at all).
    pub(crate) fn effective_stop(&self) -> StopReason {
        if self.stop.reason == StopReason::EndTurn && self.has_tool_calls() {
            StopReason::ToolUse
        } else {
            self.stop.reason
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Stop {
    pub(crate) reason: StopReason,
    pub(crate) sequence: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum StopReason {
    #[default]
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    ContentFilter,
    PauseTurn,
    Refusal,
}

impl StopReason {
    pub(crate) fn from_anthropic(reason: &str) -> StopReason {
        match reason {
            "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
            "stop_sequence" => StopReason::StopSequence,
            "tool_use" => StopReason::ToolUse,
            "pause_turn" => StopReason::PauseTurn,
            "refusal" => StopReason::Refusal,
            _ => StopReason::EndTurn,
        }
    }

    pub(crate) fn anthropic(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ToolUse => "tool_use",
            StopReason::PauseTurn => "pause_turn",
            StopReason::ContentFilter | StopReason::Refusal => "refusal",
        }
    }

    pub(crate) fn from_chat(reason: &str) -> StopReason {
        match reason {
            "length" => StopReason::MaxTokens,
            "tool_calls" | "function_call" => StopReason::ToolUse,
            "content_filter" => StopReason::ContentFilter,
            _ => StopReason::EndTurn,
        }
    }

    pub(crate) fn chat(self) -> &'static str {
        match self {
            StopReason::EndTurn | StopReason::StopSequence | StopReason::PauseTurn => "stop",
            StopReason::MaxTokens => "length",
            StopReason::ToolUse => "tool_calls",
            StopReason::ContentFilter | StopReason::Refusal => "content_filter",
        }
    }

    /// The Responses `incomplete_details.reason` for reasons that end a response early.
    pub(crate) fn responses_incomplete(self) -> Option<&'static str> {
        match self {
            StopReason::MaxTokens => Some("max_output_tokens"),
            StopReason::ContentFilter => Some("content_filter"),
            _ => None,
        }
    }

    pub(crate) fn from_responses_incomplete(reason: Option<&str>) -> StopReason {
        match reason {
            Some("content_filter") => StopReason::ContentFilter,
            _ => StopReason::MaxTokens,
        }
    }
}

/// Token usage. `input` counts every input token, cached ones included (OpenAI's meaning);
/// Anthropic's `input_tokens` is `input - cache_read - cache_creation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_creation: u64,
    pub(crate) reasoning: u64,
}

impl Usage {
    pub(crate) fn uncached_input(&self) -> u64 {
        self.input
            .saturating_sub(self.cache_read)
            .saturating_sub(self.cache_creation)
    }
}

/// One step of a stream, between a decoder and an encoder.
///
/// The [`crate::convert::stream`] normaliser guarantees encoders a well-formed sequence:
/// `Start` first, blocks one at a time (`BlockStart`, deltas of that block's kind,
/// `BlockStop`), then exactly one of `Finish` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Start {
        id: String,
        model: String,
        created: Option<u64>,
        usage: Usage,
    },
    BlockStart(Block),
    Text(String),
    Reasoning(String),
    Signature(String),
    ToolArgs(String),
    BlockStop,
    Finish {
        stop: Stop,
        usage: Usage,
    },
    Error {
        kind: super::ErrorKind,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    Text,
    Reasoning,
    ToolCall { id: String, name: String },
}

/// The text an orphan tool result (its call is no longer in the history, as after
/// a compaction) becomes for APIs that refuse a result answering no call.
pub(crate) fn orphan_result_text(call_id: &str, content: &[Part]) -> String {
    format!(
        "[result of tool call {call_id}, whose call is no longer in this conversation]\n{}",
        joined_text(content, "\n")
    )
}

/// The output text of a tool result for the OpenAI formats, which have no error flag: a
/// failed result (Anthropic's `is_error`) starts with `Error: ` unless its text already says
/// so, so the model still learns that the call failed.
pub(crate) fn tool_output_text(content: &[Part], is_error: bool) -> String {
    let text = joined_text(content, "\n");
    let says_error = text
        .trim_start()
        .get(..5)
        .is_some_and(|start| start.eq_ignore_ascii_case("error"));
    match (is_error, text.is_empty()) {
        (true, true) => "Error".to_owned(),
        (true, false) if !says_error => format!("Error: {text}"),
        _ => text,
    }
}

/// OpenAI limits call ids to 64 characters; a longer id becomes `call_<hash>`, the same
/// for the same id, so a call and its result stay paired.
pub(crate) fn openai_call_id(id: &str) -> String {
    if id.len() <= 64 && !id.is_empty() {
        id.to_owned()
    } else {
        hashed_id(id)
    }
}

/// Anthropic accepts tool ids matching `^[a-zA-Z0-9_-]+$`; others become `call_<hash>`.
pub(crate) fn anthropic_tool_id(id: &str) -> String {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid { id.to_owned() } else { hashed_id(id) }
}

fn hashed_id(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let mut out = String::with_capacity(45);
    out.push_str("call_");
    for byte in &digest[..20] {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Reads tool arguments JSON text as an object: a non-object value becomes
/// `{"value": …}` and text that is not JSON becomes `{"value": "<text>"}`, so nothing the
/// model produced is lost.
pub(crate) fn arguments_object(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Default::default());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(object)) => Value::Object(object),
        Ok(other) => serde_json::json!({ "value": other }),
        Err(_) => serde_json::json!({ "value": arguments }),
    }
}

/// Serialises a tool input object as arguments text.
pub(crate) fn arguments_text(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_owned(),
        other => crate::to_json_string(other),
    }
}

/// Joins the text parts of a message.
pub(crate) fn joined_text(parts: &[Part], separator: &str) -> String {
    let mut out = String::new();
    for part in parts {
        if let Part::Text(text) = part {
            if !out.is_empty() && !separator.is_empty() {
                out.push_str(separator);
            }
            out.push_str(text);
        }
    }
    out
}

/// The system prompt of Claude Code carries a per-request `x-anthropic-billing-header:`
/// line; forwarded to OpenAI it changes the prompt on every request and defeats prompt
/// caching, so it is removed when leaving the Anthropic format.
pub(crate) fn strip_billing_header(text: &str) -> Option<String> {
    if !text.contains("x-anthropic-billing-header:") {
        return Some(text.to_owned());
    }
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("x-anthropic-billing-header:"))
        .collect();
    let joined = kept.join("\n");
    if joined.trim().is_empty() {
        None
    } else {
        Some(joined)
    }
}

/// The instruction that asks an Anthropic model for structured output.
pub(crate) fn structured_output_instruction(format: &ResponseFormat) -> Option<String> {
    match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => {
            Some("Respond with a single valid JSON object and nothing else.".to_owned())
        }
        ResponseFormat::JsonSchema { schema, .. } => Some(format!(
            "Respond with a single valid JSON object that conforms to this JSON schema, and nothing else:\n{}",
            crate::to_json_string(schema)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_hash_deterministically() {
        let long = "x".repeat(80);
        let hashed = openai_call_id(&long);
        assert_eq!(hashed, openai_call_id(&long));
        assert!(
            hashed.starts_with("call_") && hashed.len() == 45,
            "{hashed}"
        );
        assert_eq!(openai_call_id("call_abc"), "call_abc");
        assert_eq!(anthropic_tool_id("toolu_01-x_Y"), "toolu_01-x_Y");
        assert!(anthropic_tool_id("functions.get:0").starts_with("call_"));
    }

    #[test]
    fn arguments_are_never_lost() {
        assert_eq!(arguments_object(""), serde_json::json!({}));
        assert_eq!(arguments_object("{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(arguments_object("[1]"), serde_json::json!({"value": [1]}));
        assert_eq!(
            arguments_object("{oops"),
            serde_json::json!({"value": "{oops"})
        );
    }

    #[test]
    fn data_urls_round_trip() {
        let media = Media::from_url("data:image/png;base64,AAAA");
        assert_eq!(
            media,
            Media::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            }
        );
        assert_eq!(
            media.to_url().as_deref(),
            Some("data:image/png;base64,AAAA")
        );
        assert_eq!(
            Media::from_url("https://x/y.png"),
            Media::Url("https://x/y.png".into())
        );
    }

    #[test]
    fn data_urls_without_base64_are_decoded_and_encoded() {
        assert_eq!(
            Media::from_url("data:image/svg+xml;charset=utf-8,%3Csvg%2F%3E"),
            Media::Base64 {
                media_type: "image/svg+xml".into(),
                data: "PHN2Zy8+".into(),
            }
        );
        assert_eq!(
            Media::from_url("data:,a%zzb%+1%4"),
            Media::Base64 {
                media_type: "text/plain".into(),
                data: "YSV6emIlKzElNA==".into(),
            },
            "malformed escapes stay as they are"
        );
        assert_eq!(
            Media::from_url("data:image/png;name=x.png;BASE64,AAAA"),
            Media::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into(),
            }
        );
    }

    #[test]
    fn billing_header_lines_are_stripped() {
        assert_eq!(
            strip_billing_header("x-anthropic-billing-header: cch=1\nYou are Claude Code.")
                .as_deref(),
            Some("You are Claude Code.")
        );
        assert_eq!(
            strip_billing_header("x-anthropic-billing-header: cch=1"),
            None
        );
    }

    #[test]
    fn effort_and_budget_map_both_ways() {
        let from_effort = |effort: &str| Reasoning {
            effort: Some(effort.into()),
            budget_tokens: None,
        };
        assert_eq!(from_effort("low").budget_tokens(), 2048);
        assert_eq!(from_effort("high").budget_tokens(), 16384);
        let from_budget = |budget| Reasoning {
            effort: None,
            budget_tokens: Some(budget),
        };
        assert_eq!(from_budget(2048).effort(), "low");
        assert_eq!(from_budget(8192).effort(), "medium");
        assert_eq!(from_budget(16384).effort(), "high");
    }
}
