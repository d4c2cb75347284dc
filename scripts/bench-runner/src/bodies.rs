//! The request bodies: a small (~1 KB) conversation and the real Claude Code
//! request of `tests/data/claude_cli_request_capture.json` (~64 KB compact),
//! each as an Anthropic Messages body (streaming or not) and as the equivalent
//! Chat Completions body.

use std::path::Path;

use serde_json::{Value, json};

/// Bodies of one size.
pub(crate) struct Bodies {
    /// Anthropic Messages, `stream` absent.
    pub(crate) messages: Vec<u8>,
    /// Anthropic Messages, `"stream": true`.
    pub(crate) messages_stream: Vec<u8>,
    /// Chat Completions, `"stream": true`.
    pub(crate) chat_stream: Vec<u8>,
}

const MODEL: &str = "claude-sonnet-4-5-20250929";

/// The small conversation, about 1 KB.
pub(crate) fn small() -> Bodies {
    let system = "You are a careful assistant that answers questions about \
        software performance. Keep answers short and concrete, name the tool you \
        would measure with, and say what number you expect before measuring.";
    let turns = [
        (
            "user",
            "Our proxy forwards LLM API requests. How should we measure what it adds to each request?",
        ),
        (
            "assistant",
            "Put a mock upstream on loopback, drive a fixed load directly and through the proxy, \
             and compare percentiles from the same run.",
        ),
        (
            "user",
            "Which percentiles matter, and how long should each round be on a two-core machine?",
        ),
    ];
    let messages: Vec<Value> = turns
        .iter()
        .map(|(role, text)| json!({"role": role, "content": text}))
        .collect();
    let anthropic =
        json!({"model": MODEL, "max_tokens": 1024, "system": system, "messages": messages});
    let chat_messages: Vec<Value> = std::iter::once(json!({"role": "system", "content": system}))
        .chain(messages.iter().cloned())
        .collect();
    let chat = json!({"model": MODEL, "max_tokens": 1024, "messages": chat_messages});
    variants(anthropic, chat)
}

/// The real Claude Code request (15 tools, a 15 KB system prompt).
pub(crate) fn large(workspace: &Path) -> Result<Bodies, String> {
    let path = workspace.join("tests/data/claude_cli_request_capture.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let capture: Value = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not JSON: {error}", path.display()))?;
    let anthropic = capture
        .get("body_json")
        .cloned()
        .ok_or_else(|| format!("{} has no body_json", path.display()))?;
    let chat = to_chat(&anthropic);
    Ok(variants(anthropic, chat))
}

fn variants(anthropic: Value, mut chat: Value) -> Bodies {
    let mut streaming = anthropic.clone();
    streaming["stream"] = json!(true);
    chat["stream"] = json!(true);
    let encode = |value: &Value| serde_json::to_vec(value).unwrap_or_default();
    Bodies {
        messages: encode(&anthropic),
        messages_stream: encode(&streaming),
        chat_stream: encode(&chat),
    }
}

/// The same request in Chat Completions terms: system blocks as one system
/// message, text blocks joined, tools as functions.
fn to_chat(anthropic: &Value) -> Value {
    fn text_of(content: &Value) -> String {
        match content {
            Value::String(text) => text.clone(),
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
    let mut messages = Vec::new();
    if let Some(system) = anthropic.get("system") {
        messages.push(json!({"role": "system", "content": text_of(system)}));
    }
    for message in anthropic
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        messages.push(json!({
            "role": message.get("role").cloned().unwrap_or(json!("user")),
            "content": text_of(message.get("content").unwrap_or(&Value::Null)),
        }));
    }
    let tools: Vec<Value> = anthropic
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|tool| {
            json!({"type": "function", "function": {
                "name": tool.get("name"),
                "description": tool.get("description"),
                "parameters": tool.get("input_schema"),
            }})
        })
        .collect();
    json!({
        "model": anthropic.get("model").cloned().unwrap_or(json!(MODEL)),
        "max_tokens": anthropic.get("max_tokens").cloned().unwrap_or(json!(1024)),
        "messages": messages,
        "tools": tools,
    })
}
