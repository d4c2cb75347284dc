//! Body shaping: the changes made to a native (OpenAI Responses) request body
//! before it goes to the Codex backend. Each rule is one function on the
//! body's JSON object, so each can be tested alone; `lib.rs` decides which
//! run (each has a config switch) and in what order.
//!
//! None of them reorders the `input` items that stay: a conversation's
//! messages, function calls and their outputs keep their order and their
//! `call_id`s (ccproxy-api #59 mangled tool cycles).

use ccproxy_plugin_abi::{
    Value, json,
    serde_json::{self, Map},
};
use sha2::{Digest, Sha256};

/// A JSON object body.
pub(crate) type Body = Map<String, Value>;

/// What the backend needs to return reasoning across turns without storing
/// the conversation (`store: false`).
pub(crate) const ENCRYPTED_REASONING: &str = "reasoning.encrypted_content";

/// Claude Code's per-request billing line; the host strips it from the
/// system prompt, and the conversation id ignores it too, so that one line
/// can never split a conversation (ccproxy-api #62, #63).
const BILLING_HEADER_PREFIX: &str = "x-anthropic-billing-header:";

/// Makes `input` a list of typed items: a string `input` becomes one user
/// message (as the Responses API reads it), and an item with a `role` but no
/// `type` gets `type: "message"`, which the backend requires. Returns how
/// many items were typed.
pub(crate) fn normalize_input(body: &mut Body) -> usize {
    if let Some(Value::String(text)) = body.get("input") {
        let message = json!({
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        });
        body.insert("input".to_owned(), Value::Array(vec![message]));
        return 0;
    }
    let mut typed = 0;
    for item in items_mut(body.get_mut("input")) {
        if let Value::Object(item) = item
            && item.contains_key("role")
            && !item.contains_key("type")
        {
            item.insert("type".to_owned(), Value::from("message"));
            typed += 1;
        }
    }
    typed
}

/// Moves every `system` and `developer` message of `input` into
/// `instructions`, after the instructions already there, joined with a blank
/// line; the backend refuses them in `input` (ccproxy-api #53). The other
/// items keep their order. Returns how many messages were moved.
pub(crate) fn fold_system_messages(body: &mut Body) -> usize {
    let Some(Value::Array(input)) = body.get_mut("input") else {
        return 0;
    };
    let mut folded = Vec::new();
    input.retain(|item| {
        let is_system = item.get("type").is_none_or(|kind| kind == "message")
            && matches!(
                item.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            );
        if is_system {
            folded.push(message_text(item.get("content")));
        }
        !is_system
    });
    let n_folded = folded.len();
    if n_folded == 0 {
        return 0;
    }
    let existing = body
        .get("instructions")
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
        .map(str::to_owned);
    let parts: Vec<String> = existing
        .into_iter()
        .chain(folded.into_iter().filter(|text| !text.trim().is_empty()))
        .collect();
    if !parts.is_empty() {
        body.insert("instructions".to_owned(), Value::from(parts.join("\n\n")));
    }
    n_folded
}

/// The text of a message's `content`: a string, or the `text` of each part
/// joined with newlines (non-text parts have none to give).
fn message_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A stable id for the conversation `body` belongs to: a hash of its
/// instructions and its first user message, which every later turn repeats
/// unchanged, shaped as a UUID (RFC 9562 version 8: name-based, SHA-256).
/// Used as `prompt_cache_key` and `session_id`, so consecutive turns share
/// the backend's prompt cache (ccproxy-api #63: a random key per request
/// defeated it).
pub(crate) fn conversation_id(body: &Body) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"ccproxy/codex conversation\0");
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        for line in instructions.split('\n') {
            if !is_billing_line(line) {
                hasher.update(line.as_bytes());
                hasher.update(b"\n");
            }
        }
    }
    hasher.update(b"\0");
    let input = items(body.get("input"));
    let first = input
        .iter()
        .find(|item| item.get("role").and_then(Value::as_str) == Some("user"))
        .or_else(|| input.first());
    if let Some(first) = first {
        let content = first.get("content").unwrap_or(first);
        hasher.update(serde_json::to_vec(content).unwrap_or_default());
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn is_billing_line(line: &str) -> bool {
    line.trim_start()
        .get(..BILLING_HEADER_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(BILLING_HEADER_PREFIX))
}

/// Removes the top-level parameters named in `params`; returns the names
/// removed, in `params` order.
pub(crate) fn strip_params(body: &mut Body, params: &[String]) -> Vec<String> {
    params
        .iter()
        .filter(|param| body.remove(param.as_str()).is_some())
        .cloned()
        .collect()
}

/// Removes `item_reference` input items: they point at stored responses,
/// and the backend stores none (`store: false`). Returns how many.
pub(crate) fn remove_item_references(body: &mut Body) -> usize {
    let Some(Value::Array(input)) = body.get_mut("input") else {
        return 0;
    };
    let before = input.len();
    input.retain(|item| item.get("type").and_then(Value::as_str) != Some("item_reference"));
    before - input.len()
}

/// Removes keys starting with `_` (ccproxy-internal markers, refused as
/// unknown parameters) from the body, the input items and their content
/// parts, and the tool definitions. Tool arguments and schemas are user
/// data and left alone.
pub(crate) fn remove_private_keys(body: &mut Body) {
    fn strip(value: &mut Value) {
        if let Value::Object(object) = value {
            object.retain(|key, _| !key.starts_with('_'));
        }
    }
    body.retain(|key, _| !key.starts_with('_'));
    items_mut(body.get_mut("tools")).iter_mut().for_each(strip);
    for item in items_mut(body.get_mut("input")) {
        strip(item);
        items_mut(item.get_mut("content"))
            .iter_mut()
            .for_each(strip);
    }
}

/// Prepends `prompt` (the Codex CLI's instructions) to `instructions`, unless
/// they already start with it. Without instructions of its own the request
/// gets `prompt` exactly as the Codex CLI sends it. Returns whether it changed.
pub(crate) fn inject_instructions(body: &mut Body, prompt: &str) -> bool {
    let prompt_text = prompt.trim_end();
    if prompt_text.is_empty() {
        return false;
    }
    let existing = body
        .get("instructions")
        .and_then(Value::as_str)
        .unwrap_or("");
    if existing.trim_start().starts_with(prompt_text) {
        return false;
    }
    let instructions = if existing.trim().is_empty() {
        prompt.to_owned()
    } else {
        format!("{prompt_text}\n\n{existing}")
    };
    body.insert("instructions".to_owned(), Value::from(instructions));
    true
}

/// Gives a request without tools the Codex CLI's `tools` (with its
/// `tool_choice: "auto"` and `parallel_tool_calls: false` when unset).
/// Returns whether it did.
pub(crate) fn inject_tools(body: &mut Body, tools: &[Value]) -> bool {
    let has_tools = match body.get("tools") {
        None | Some(Value::Null) => false,
        Some(Value::Array(tools)) => !tools.is_empty(),
        Some(_) => true,
    };
    if has_tools || tools.is_empty() {
        return false;
    }
    body.insert("tools".to_owned(), Value::Array(tools.to_vec()));
    set_if_unset(body, "tool_choice", Value::from("auto"));
    set_if_unset(body, "parallel_tool_calls", Value::Bool(false));
    true
}

/// Adds `reasoning: {effort, summary}` and `include:
/// ["reasoning.encrypted_content"]` when the request has none (the Codex
/// CLI's defaults).
pub(crate) fn add_reasoning_defaults(body: &mut Body, effort: &str, summary: &str) {
    set_if_unset(
        body,
        "reasoning",
        json!({"effort": effort, "summary": summary}),
    );
    set_if_unset(body, "include", json!([ENCRYPTED_REASONING]));
}

/// Sets `store: false`: the backend keeps no conversations.
pub(crate) fn force_store_false(body: &mut Body) {
    body.insert("store".to_owned(), Value::Bool(false));
}

/// Sets `stream: true`: the backend only answers with a stream (the host
/// turns it into one answer for a client that asked for none).
pub(crate) fn force_stream(body: &mut Body) {
    body.insert("stream".to_owned(), Value::Bool(true));
}

/// Sets `prompt_cache_key` to `key` unless the client chose one. Returns
/// whether it did.
pub(crate) fn ensure_prompt_cache_key(body: &mut Body, key: &str) -> bool {
    let chosen = body
        .get("prompt_cache_key")
        .and_then(Value::as_str)
        .is_some_and(|chosen| !chosen.trim().is_empty());
    if chosen {
        return false;
    }
    body.insert("prompt_cache_key".to_owned(), Value::from(key));
    true
}

/// The client's own `prompt_cache_key`, when it sent a usable one.
pub(crate) fn client_prompt_cache_key(body: &Body) -> Option<String> {
    body.get("prompt_cache_key")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
}

fn set_if_unset(body: &mut Body, key: &str, value: Value) {
    if body.get(key).is_none_or(Value::is_null) {
        body.insert(key.to_owned(), value);
    }
}

fn items(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

fn items_mut(value: Option<&mut Value>) -> &mut [Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &mut [],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Body {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn check(rule: impl Fn(&mut Body), input: Value, expected: Value) {
        let mut shaped = body(input);
        rule(&mut shaped);
        assert_eq!(Value::Object(shaped), expected);
    }

    fn user(text: &str) -> Value {
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    }

    #[test]
    fn a_string_input_becomes_one_user_message() {
        check(
            |body| assert_eq!(normalize_input(body), 0),
            json!({"input": "Hi"}),
            json!({"input": [user("Hi")]}),
        );
    }

    #[test]
    fn items_with_a_role_get_a_type() {
        check(
            |body| assert_eq!(normalize_input(body), 2),
            json!({"input": [
                {"role": "user", "content": "a"},
                {"type": "function_call_output", "call_id": "c", "output": "x"},
                {"role": "assistant", "content": [{"type": "output_text", "text": "b"}]},
                {"type": "message", "role": "user", "content": "c"},
            ]}),
            json!({"input": [
                {"type": "message", "role": "user", "content": "a"},
                {"type": "function_call_output", "call_id": "c", "output": "x"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "b"}]},
                {"type": "message", "role": "user", "content": "c"},
            ]}),
        );
        check(
            |body| assert_eq!(normalize_input(body), 0),
            json!({}),
            json!({}),
        );
    }

    #[test]
    fn system_and_developer_messages_fold_after_the_instructions_in_order() {
        check(
            |body| assert_eq!(fold_system_messages(body), 3),
            json!({
                "instructions": "Be brief.",
                "input": [
                    {"type": "message", "role": "system", "content": "You are a pirate."},
                    user("Hi"),
                    {"role": "developer", "content": [
                        {"type": "input_text", "text": "Answer in French."},
                        {"type": "input_text", "text": "No emoji."},
                    ]},
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Ahoy"}]},
                    {"type": "message", "role": "system", "content": "  "},
                    user("Again"),
                ],
            }),
            json!({
                "instructions": "Be brief.\n\nYou are a pirate.\n\nAnswer in French.\nNo emoji.",
                "input": [
                    user("Hi"),
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Ahoy"}]},
                    user("Again"),
                ],
            }),
        );
        // No instructions yet; nothing to fold leaves the body alone.
        check(
            |body| assert_eq!(fold_system_messages(body), 1),
            json!({"input": [{"role": "system", "content": "Sys"}, user("Hi")]}),
            json!({"instructions": "Sys", "input": [user("Hi")]}),
        );
        check(
            |body| assert_eq!(fold_system_messages(body), 0),
            json!({"instructions": "x", "input": [user("Hi")]}),
            json!({"instructions": "x", "input": [user("Hi")]}),
        );
    }

    #[test]
    fn the_conversation_id_is_a_stable_uuid_of_the_conversation_start() {
        let turn_1 = body(json!({"instructions": "Sys", "input": [user("Hi")]}));
        let turn_2 = body(json!({
            "instructions": "Sys",
            "input": [
                user("Hi"),
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
                user("More"),
            ],
        }));
        let id = conversation_id(&turn_1);
        assert_eq!(id, conversation_id(&turn_2));
        assert_eq!(id.len(), 36);
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|group| group.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('8'), "{id}");
        assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"), "{id}");
        // Another first message or other instructions: another conversation.
        let other = body(json!({"instructions": "Sys", "input": [user("Hello")]}));
        assert_ne!(id, conversation_id(&other));
        let other = body(json!({"instructions": "Other", "input": [user("Hi")]}));
        assert_ne!(id, conversation_id(&other));
        // A billing line does not count.
        let billed = body(json!({
            "instructions": "x-anthropic-billing-header: cch=1a2b3;\nSys",
            "input": [user("Hi")],
        }));
        let billed_again = body(json!({
            "instructions": "x-anthropic-billing-header: cch=9f8e7;\nSys",
            "input": [user("Hi")],
        }));
        assert_eq!(conversation_id(&billed), conversation_id(&billed_again));
        // Degenerate bodies still get an id.
        assert_eq!(conversation_id(&Body::new()).len(), 36);
    }

    #[test]
    fn strip_params_removes_only_the_named_ones() {
        let params: Vec<String> = ["temperature", "metadata", "max_output_tokens"]
            .map(str::to_owned)
            .to_vec();
        check(
            |body| assert_eq!(strip_params(body, &params), ["temperature", "metadata"]),
            json!({"model": "m", "temperature": 0.2, "metadata": {"a": "b"}, "service_tier": "priority"}),
            json!({"model": "m", "service_tier": "priority"}),
        );
    }

    #[test]
    fn item_references_are_removed() {
        check(
            |body| assert_eq!(remove_item_references(body), 1),
            json!({"input": [user("a"), {"type": "item_reference", "id": "msg_1"}, user("b")]}),
            json!({"input": [user("a"), user("b")]}),
        );
    }

    #[test]
    fn private_keys_are_removed_but_not_from_schemas_or_arguments() {
        check(
            remove_private_keys,
            json!({
                "_ccproxy_debug": true,
                "input": [
                    {"type": "message", "role": "user", "_note": 1, "content": [{"type": "input_text", "text": "a", "_x": 2}]},
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"_id\":1}"},
                ],
                "tools": [{"type": "function", "name": "f", "_origin": "y",
                           "parameters": {"type": "object", "properties": {"_id": {"type": "string"}}}}],
            }),
            json!({
                "input": [
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"_id\":1}"},
                ],
                "tools": [{"type": "function", "name": "f",
                           "parameters": {"type": "object", "properties": {"_id": {"type": "string"}}}}],
            }),
        );
    }

    #[test]
    fn instructions_are_prepended_once() {
        let prompt = "You are Codex.\n";
        check(
            |body| assert!(inject_instructions(body, prompt)),
            json!({"instructions": "Be brief."}),
            json!({"instructions": "You are Codex.\n\nBe brief."}),
        );
        // Exactly the Codex CLI's text when the client has none.
        check(
            |body| assert!(inject_instructions(body, prompt)),
            json!({}),
            json!({"instructions": "You are Codex.\n"}),
        );
        check(
            |body| assert!(!inject_instructions(body, prompt)),
            json!({"instructions": "You are Codex.\n\nBe brief."}),
            json!({"instructions": "You are Codex.\n\nBe brief."}),
        );
        check(
            |body| assert!(!inject_instructions(body, "  ")),
            json!({"instructions": "x"}),
            json!({"instructions": "x"}),
        );
    }

    #[test]
    fn tools_are_injected_only_into_tool_less_requests() {
        let template = [json!({"type": "function", "name": "shell"})];
        check(
            |body| assert!(inject_tools(body, &template)),
            json!({"tools": []}),
            json!({"tools": [{"type": "function", "name": "shell"}], "tool_choice": "auto", "parallel_tool_calls": false}),
        );
        check(
            |body| assert!(!inject_tools(body, &template)),
            json!({"tools": [{"type": "function", "name": "mine"}]}),
            json!({"tools": [{"type": "function", "name": "mine"}]}),
        );
    }

    #[test]
    fn reasoning_defaults_fill_only_what_is_missing() {
        check(
            |body| add_reasoning_defaults(body, "medium", "auto"),
            json!({"reasoning": null}),
            json!({"reasoning": {"effort": "medium", "summary": "auto"}, "include": ["reasoning.encrypted_content"]}),
        );
        check(
            |body| add_reasoning_defaults(body, "medium", "auto"),
            json!({"reasoning": {"effort": "high"}, "include": []}),
            json!({"reasoning": {"effort": "high"}, "include": []}),
        );
    }

    #[test]
    fn store_stream_and_cache_key() {
        check(
            |body| {
                force_store_false(body);
                force_stream(body);
                assert!(ensure_prompt_cache_key(body, "k"));
            },
            json!({"store": true, "stream": false, "prompt_cache_key": ""}),
            json!({"store": false, "stream": true, "prompt_cache_key": "k"}),
        );
        let mut chosen = body(json!({"prompt_cache_key": "mine"}));
        assert!(!ensure_prompt_cache_key(&mut chosen, "k"));
        assert_eq!(client_prompt_cache_key(&chosen).as_deref(), Some("mine"));
        assert_eq!(client_prompt_cache_key(&Body::new()), None);
    }
}
