//! Body shaping: the changes made to a native (Anthropic Messages) request
//! body before it goes upstream. Each rule is one function on the body's JSON
//! object, so each can be tested alone; `lib.rs` decides which run and in
//! what order.

use std::cmp::Reverse;

use ccproxy_plugin_abi::{Value, json, serde_json, serde_json::Map};

use crate::config::InjectionMode;

/// The first system block of every Claude Code request. Anthropic serves
/// subscription (OAuth) tokens only to requests that open with it.
pub(crate) const CLAUDE_CODE_IDENTITY: &str =
    "You are Claude Code, Anthropic's official CLI for Claude.";

/// Anthropic refuses a request with more blocks marked `cache_control`.
pub(crate) const MAX_CACHE_CONTROL_BLOCKS: usize = 4;

/// Claude Code puts a per-request `cch=` value on a system line starting with
/// this; forwarded, it changes the prompt on every request and defeats
/// prompt caching (ccproxy-api #62, #63).
const BILLING_HEADER_PREFIX: &str = "x-anthropic-billing-header:";

/// A JSON object body.
pub(crate) type Body = Map<String, Value>;

/// Drops a `null` temperature, then `top_p` when a temperature is set:
/// Anthropic refuses both together on current models.
pub(crate) fn fix_sampling(body: &mut Body) {
    if body.get("temperature").is_some_and(Value::is_null) {
        body.remove("temperature");
    }
    if body.contains_key("temperature") {
        body.remove("top_p");
    }
}

/// Sets `max_tokens` (required upstream) when it is missing or `null`.
pub(crate) fn ensure_max_tokens(body: &mut Body, default_max_tokens: u64) {
    if body.get("max_tokens").is_none_or(Value::is_null) {
        body.insert("max_tokens".to_owned(), json!(default_max_tokens));
    }
}

/// Sets `"stream": true` when the client asked for a stream some other way
/// (`Accept: text/event-stream`); returns whether the upstream will stream.
pub(crate) fn ensure_stream(body: &mut Body, client_wants_stream: bool) -> bool {
    if client_wants_stream {
        body.insert("stream".to_owned(), Value::Bool(true));
    }
    body.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

/// Removes `x-anthropic-billing-header:` lines from the system prompt; a
/// block (or string) left empty by it is removed. Text without such a line is
/// left byte for byte as it was, so it stays cacheable.
pub(crate) fn strip_billing_header(body: &mut Body) {
    let remove_system = match body.get_mut("system") {
        Some(Value::String(text)) => match without_billing_lines(text) {
            Some(stripped) if stripped.trim().is_empty() => true,
            Some(stripped) => {
                *text = stripped;
                false
            }
            None => false,
        },
        Some(Value::Array(blocks)) => {
            blocks.retain_mut(|block| {
                let Some(Value::String(text)) = block.get_mut("text") else {
                    return true;
                };
                match without_billing_lines(text) {
                    Some(stripped) if stripped.trim().is_empty() => false,
                    Some(stripped) => {
                        *text = stripped;
                        true
                    }
                    None => true,
                }
            });
            blocks.is_empty()
        }
        _ => false,
    };
    if remove_system {
        body.remove("system");
    }
}

/// `text` without its billing lines, or `None` when it has none.
fn without_billing_lines(text: &str) -> Option<String> {
    if !text.split('\n').any(is_billing_line) {
        return None;
    }
    let kept: Vec<&str> = text
        .split('\n')
        .filter(|line| !is_billing_line(line))
        .collect();
    Some(kept.join("\n"))
}

fn is_billing_line(line: &str) -> bool {
    line.trim_start()
        .get(..BILLING_HEADER_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(BILLING_HEADER_PREFIX))
}

/// The system blocks `mode` prepends: none, the identity block, or the
/// identity block followed by `full_text` when it is set. Each carries
/// `cache_control`, as in Claude Code's own requests.
pub(crate) fn injected_blocks(mode: InjectionMode, full_text: &str) -> Vec<Value> {
    let block =
        |text: &str| json!({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}});
    match mode {
        InjectionMode::None => Vec::new(),
        InjectionMode::Minimal => vec![block(CLAUDE_CODE_IDENTITY)],
        InjectionMode::Full if full_text.trim().is_empty() => vec![block(CLAUDE_CODE_IDENTITY)],
        InjectionMode::Full => vec![block(CLAUDE_CODE_IDENTITY), block(full_text)],
    }
}

/// Prepends `blocks` to the system prompt unless it already opens with the
/// Claude Code identity (Claude Code's own requests do); a string system
/// prompt becomes a text block after them. Returns how many blocks were
/// prepended (they are `system[..n]`).
pub(crate) fn inject_system_prompt(body: &mut Body, blocks: Vec<Value>) -> usize {
    let existing = match body.get("system") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if opens_with_identity(text) => return 0,
        Some(Value::String(text)) if text.is_empty() => Vec::new(),
        Some(Value::String(text)) => vec![json!({"type": "text", "text": text})],
        Some(Value::Array(existing)) => {
            let first_text = existing
                .first()
                .and_then(|block| block.get("text"))
                .and_then(Value::as_str);
            if first_text.is_some_and(opens_with_identity) {
                return 0;
            }
            existing.clone()
        }
        // Not a shape Anthropic accepts; leave it for the upstream to refuse.
        Some(_) => return 0,
    };
    let n_injected = blocks.len();
    if n_injected == 0 {
        return 0;
    }
    let mut system = blocks;
    system.extend(existing);
    body.insert("system".to_owned(), Value::Array(system));
    n_injected
}

/// Whether a system prompt still as the client's JSON text (`raw`) is one
/// the system rules leave as it is, so it need not be parsed and written
/// back (a 15 KB Claude Code prompt costs more to parse and write than the
/// rest of the request): no billing line can be in it ([`strip_billing_header`])
/// and, when `inject` is set, it already opens with the Claude Code
/// identity ([`inject_system_prompt`]). Errs towards `false`: a text with a
/// `\u` escape, or of a shape this does not read, is parsed.
pub(crate) fn leaves_raw_system_alone(raw: &str, inject: bool) -> bool {
    !may_hold_billing_line(raw) && (!inject || raw_opens_with_identity(raw))
}

/// Whether the billing prefix may occur in `raw` JSON text, in any case;
/// an escape (`\u`) could spell it, so any escape counts.
fn may_hold_billing_line(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let prefix = BILLING_HEADER_PREFIX.as_bytes();
    memchr::memmem::find(bytes, b"\\u").is_some()
        || memchr::memchr2_iter(b'x', b'X', bytes).any(|at| {
            bytes
                .get(at..at + prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        })
}

/// Whether a system prompt's JSON text opens with the Claude Code identity,
/// read as [`inject_system_prompt`] reads it (a string, or the first block's
/// `text`) without building the prompt.
fn raw_opens_with_identity(raw: &str) -> bool {
    use std::{borrow::Cow, fmt};

    use serde::de::{Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};

    #[derive(serde::Deserialize)]
    struct Block<'a> {
        #[serde(borrow)]
        text: Option<Cow<'a, str>>,
    }
    struct Opening(bool);
    struct OpeningVisitor;
    impl<'de> Visitor<'de> for OpeningVisitor {
        type Value = Opening;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a system prompt")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Opening, E> {
            Ok(Opening(opens_with_identity(text)))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut blocks: A) -> Result<Opening, A::Error> {
            let first: Option<Block<'de>> = blocks.next_element()?;
            while blocks.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Opening(
                first
                    .and_then(|block| block.text)
                    .is_some_and(|text| opens_with_identity(&text)),
            ))
        }
    }
    impl<'de> Deserialize<'de> for Opening {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(OpeningVisitor)
        }
    }
    serde_json::from_str::<Opening>(raw).is_ok_and(|opening| opening.0)
}

fn opens_with_identity(text: &str) -> bool {
    text.trim_start().starts_with(CLAUDE_CODE_IDENTITY)
}

/// Where a block carrying `cache_control` sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    System(usize),
    Message(usize, usize),
    /// A block inside a `tool_result` block's content.
    ToolResult(usize, usize, usize),
    Tool(usize),
}

/// Keeps at most [`MAX_CACHE_CONTROL_BLOCKS`] `cache_control` marks: first
/// those on the `n_injected` injected system blocks, then those on the
/// largest blocks (serialised size); the others lose their mark. Returns how
/// many marks were removed.
pub(crate) fn cap_cache_control(body: &mut Body, n_injected: usize) -> usize {
    let locations = cache_control_locations(body);
    if locations.len() <= MAX_CACHE_CONTROL_BLOCKS {
        return 0;
    }
    let mut ranked: Vec<(Location, bool, usize)> = locations
        .into_iter()
        .map(|location| {
            let injected = matches!(location, Location::System(index) if index < n_injected);
            let size = block_at(body, location)
                .and_then(|block| ccproxy_plugin_abi::serde_json::to_vec(block).ok())
                .map_or(0, |bytes| bytes.len());
            (location, injected, size)
        })
        .collect();
    // Stable: equal blocks keep document order, so the earliest win.
    ranked.sort_by_key(|&(_, injected, size)| (Reverse(injected), Reverse(size)));
    let mut removed = 0;
    for &(location, _, _) in &ranked[MAX_CACHE_CONTROL_BLOCKS..] {
        if let Some(Value::Object(block)) = block_at_mut(body, location) {
            block.remove("cache_control");
            removed += 1;
        }
    }
    removed
}

/// How many blocks of `body` carry a `cache_control` mark.
pub(crate) fn cache_control_count(body: &Body) -> usize {
    cache_control_locations(body).len()
}

fn cache_control_locations(body: &Body) -> Vec<Location> {
    let marked = |block: &Value| block.get("cache_control").is_some();
    let mut locations = Vec::new();
    if let Some(Value::Array(system)) = body.get("system") {
        for (index, block) in system.iter().enumerate() {
            if marked(block) {
                locations.push(Location::System(index));
            }
        }
    }
    if let Some(Value::Array(messages)) = body.get("messages") {
        for (message_index, message) in messages.iter().enumerate() {
            let Some(Value::Array(content)) = message.get("content") else {
                continue;
            };
            for (block_index, block) in content.iter().enumerate() {
                if marked(block) {
                    locations.push(Location::Message(message_index, block_index));
                }
                if let Some(Value::Array(inner)) = block.get("content") {
                    for (inner_index, inner_block) in inner.iter().enumerate() {
                        if marked(inner_block) {
                            locations.push(Location::ToolResult(
                                message_index,
                                block_index,
                                inner_index,
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Some(Value::Array(tools)) = body.get("tools") {
        for (index, tool) in tools.iter().enumerate() {
            if marked(tool) {
                locations.push(Location::Tool(index));
            }
        }
    }
    locations
}

fn block_at(body: &Body, location: Location) -> Option<&Value> {
    match location {
        Location::System(index) => body.get("system")?.get(index),
        Location::Message(message, block) => body
            .get("messages")?
            .get(message)?
            .get("content")?
            .get(block),
        Location::ToolResult(message, block, inner) => body
            .get("messages")?
            .get(message)?
            .get("content")?
            .get(block)?
            .get("content")?
            .get(inner),
        Location::Tool(index) => body.get("tools")?.get(index),
    }
}

fn block_at_mut(body: &mut Body, location: Location) -> Option<&mut Value> {
    match location {
        Location::System(index) => body.get_mut("system")?.get_mut(index),
        Location::Message(message, block) => body
            .get_mut("messages")?
            .get_mut(message)?
            .get_mut("content")?
            .get_mut(block),
        Location::ToolResult(message, block, inner) => body
            .get_mut("messages")?
            .get_mut(message)?
            .get_mut("content")?
            .get_mut(block)?
            .get_mut("content")?
            .get_mut(inner),
        Location::Tool(index) => body.get_mut("tools")?.get_mut(index),
    }
}

/// Removes keys starting with `_` (ccproxy-internal markers, which Anthropic
/// refuses as unknown fields) from the body, system blocks, messages and
/// their content blocks, and tool definitions. Tool inputs and schemas are
/// user data and left alone.
pub(crate) fn remove_private_keys(body: &mut Body) {
    fn strip(value: &mut Value) {
        if let Value::Object(object) = value {
            object.retain(|key, _| !key.starts_with('_'));
        }
    }
    fn items(value: Option<&mut Value>) -> &mut [Value] {
        match value {
            Some(Value::Array(items)) => items,
            _ => &mut [],
        }
    }
    body.retain(|key, _| !key.starts_with('_'));
    items(body.get_mut("system")).iter_mut().for_each(strip);
    items(body.get_mut("tools")).iter_mut().for_each(strip);
    for message in items(body.get_mut("messages")) {
        strip(message);
        for block in items(message.get_mut("content")) {
            strip(block);
            items(block.get_mut("content")).iter_mut().for_each(strip);
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_raw_system_prompt_is_kept_only_when_the_rules_leave_it_alone() {
        let text = |value: Value| value.to_string();
        let identity = format!("{CLAUDE_CODE_IDENTITY} Be brief.");
        let block = |text: &str| json!({"type": "text", "text": text});
        // Without injection only a billing line (or an escape that could
        // spell one) needs the rules.
        assert!(leaves_raw_system_alone(&text(json!("be brief")), false));
        assert!(leaves_raw_system_alone(
            &text(json!([block("a"), block("b")])),
            false
        ));
        for billing in [
            "x-anthropic-billing-header: cch=1",
            "note\nX-ANTHROPIC-BILLING-HEADER: cch=1",
        ] {
            assert!(!leaves_raw_system_alone(&text(json!(billing)), false));
            assert!(!leaves_raw_system_alone(
                &text(json!([block(billing)])),
                true
            ));
        }
        assert!(!leaves_raw_system_alone(
            r#""x-anthropic-billing-header\u003a cch=1""#,
            false
        ));
        // With injection, only a prompt already opening with the identity.
        assert!(leaves_raw_system_alone(&text(json!(identity)), true));
        assert!(leaves_raw_system_alone(
            &text(json!([block(&identity), block("b"), "x"])),
            true
        ));
        assert!(leaves_raw_system_alone(
            &text(json!([{"text": format!("  {identity}"), "type": "text"}])),
            true
        ));
        for other in [
            json!("be brief"),
            json!([block("b"), block(&identity)]),
            json!([identity]),
            json!([{"type": "text", "text": 5}]),
            json!([]),
            json!(null),
            json!({"text": identity}),
            json!(""),
        ] {
            assert!(
                !leaves_raw_system_alone(&text(other.clone()), true),
                "{other}"
            );
        }
    }

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

    #[test]
    fn null_temperature_is_stripped() {
        check(
            fix_sampling,
            json!({"temperature": null, "top_p": 0.9}),
            json!({"top_p": 0.9}),
        );
    }

    #[test]
    fn top_p_goes_when_temperature_is_set() {
        check(
            fix_sampling,
            json!({"temperature": 0.5, "top_p": 0.9}),
            json!({"temperature": 0.5}),
        );
        check(fix_sampling, json!({"top_p": 0.9}), json!({"top_p": 0.9}));
    }

    #[test]
    fn max_tokens_default() {
        let rule = |body: &mut Body| ensure_max_tokens(body, 4096);
        check(rule, json!({}), json!({"max_tokens": 4096}));
        check(
            rule,
            json!({"max_tokens": null}),
            json!({"max_tokens": 4096}),
        );
        check(rule, json!({"max_tokens": 10}), json!({"max_tokens": 10}));
    }

    #[test]
    fn stream_flag() {
        let mut shaped = body(json!({}));
        assert!(!ensure_stream(&mut shaped, false));
        assert!(!shaped.contains_key("stream"));
        assert!(ensure_stream(&mut shaped, true));
        assert_eq!(shaped["stream"], json!(true));
        assert!(ensure_stream(&mut body(json!({"stream": true})), false));
    }

    #[test]
    fn billing_lines_leave_the_system_prompt() {
        let line = "x-anthropic-billing-header: cc_version=2.1.3.abc; cch=12345;";
        check(
            strip_billing_header,
            json!({"system": [
                {"type": "text", "text": line},
                {"type": "text", "text": format!("{CLAUDE_CODE_IDENTITY}\n{line}\nmore"), "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "untouched\r\n"},
            ]}),
            json!({"system": [
                {"type": "text", "text": format!("{CLAUDE_CODE_IDENTITY}\nmore"), "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "untouched\r\n"},
            ]}),
        );
        check(
            strip_billing_header,
            json!({"system": format!("{line}\nbe brief")}),
            json!({"system": "be brief"}),
        );
        check(strip_billing_header, json!({"system": line}), json!({}));
        check(
            strip_billing_header,
            json!({"system": [{"type": "text", "text": line}]}),
            json!({}),
        );
        check(
            strip_billing_header,
            json!({"system": "mentions x-anthropic-billing-header: inline"}),
            json!({"system": "mentions x-anthropic-billing-header: inline"}),
        );
    }

    #[test]
    fn injection_prepends_the_identity_once() {
        let minimal = || injected_blocks(InjectionMode::Minimal, "");
        let identity = minimal()[0].clone();
        let mut shaped = body(json!({"system": "be brief"}));
        assert_eq!(inject_system_prompt(&mut shaped, minimal()), 1);
        assert_eq!(
            shaped["system"],
            json!([identity, {"type": "text", "text": "be brief"}])
        );
        // Already there: a second pass (or Claude Code itself) changes nothing.
        assert_eq!(inject_system_prompt(&mut shaped, minimal()), 0);
        let mut shaped = body(json!({"system": format!("{CLAUDE_CODE_IDENTITY} Be brief.")}));
        assert_eq!(inject_system_prompt(&mut shaped, minimal()), 0);

        let mut shaped = body(json!({"messages": []}));
        assert_eq!(inject_system_prompt(&mut shaped, minimal()), 1);
        assert_eq!(shaped["system"], json!([identity]));

        let mut shaped = body(json!({"system": [{"type": "text", "text": "a"}]}));
        assert_eq!(inject_system_prompt(&mut shaped, Vec::new()), 0);
        assert_eq!(shaped["system"], json!([{"type": "text", "text": "a"}]));
    }

    #[test]
    fn injection_modes() {
        assert!(injected_blocks(InjectionMode::None, "x").is_empty());
        assert_eq!(injected_blocks(InjectionMode::Full, "  ").len(), 1);
        let full = injected_blocks(InjectionMode::Full, "House rules.");
        assert_eq!(full.len(), 2);
        assert_eq!(full[0]["text"], CLAUDE_CODE_IDENTITY);
        assert_eq!(full[1]["text"], "House rules.");
    }

    fn marked(text: &str) -> Value {
        json!({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}})
    }

    fn marks(body: &Body) -> Vec<Location> {
        cache_control_locations(body)
    }

    #[test]
    fn four_cache_marks_or_fewer_are_left_alone() {
        let mut shaped = body(json!({
            "system": [marked("a"), marked("b")],
            "messages": [{"role": "user", "content": [marked("c"), marked("d")]}],
        }));
        let before = shaped.clone();
        assert_eq!(cap_cache_control(&mut shaped, 0), 0);
        assert_eq!(shaped, before);
    }

    #[test]
    fn cache_marks_keep_the_injected_then_the_largest() {
        let mut shaped = body(json!({
            "system": [marked("injected"), marked("small")],
            "messages": [
                {"role": "user", "content": [marked(&"m".repeat(500)), {"type": "text", "text": "plain"}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [marked(&"r".repeat(300))]}]},
            ],
            "tools": [{"name": "big", "input_schema": {"description": "s".repeat(400)}, "cache_control": {"type": "ephemeral"}},
                      {"name": "tiny", "input_schema": {}, "cache_control": {"type": "ephemeral"}}],
        }));
        assert_eq!(marks(&shaped).len(), 6);
        assert_eq!(cap_cache_control(&mut shaped, 1), 2);
        assert_eq!(
            marks(&shaped),
            [
                Location::System(0),
                Location::Message(0, 0),
                Location::ToolResult(1, 0, 0),
                Location::Tool(0),
            ]
        );
        // Only the mark goes; the block stays.
        assert_eq!(
            shaped["system"][1],
            json!({"type": "text", "text": "small"})
        );
        assert_eq!(
            shaped["tools"][1],
            json!({"name": "tiny", "input_schema": {}})
        );
    }

    #[test]
    fn private_keys_go_but_user_data_stays() {
        check(
            remove_private_keys,
            json!({
                "_trace": 1,
                "model": "m",
                "system": [{"type": "text", "text": "s", "_ccproxy_injected": true}],
                "messages": [{"role": "user", "_note": "x", "content": [
                    {"type": "tool_use", "id": "t", "name": "n", "input": {"_private_arg": 1}, "_x": 0},
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r", "_y": 0}]},
                ]}],
                "tools": [{"name": "n", "_z": 0, "input_schema": {"properties": {"_id": {"type": "string"}}}}],
            }),
            json!({
                "model": "m",
                "system": [{"type": "text", "text": "s"}],
                "messages": [{"role": "user", "content": [
                    {"type": "tool_use", "id": "t", "name": "n", "input": {"_private_arg": 1}},
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r"}]},
                ]}],
                "tools": [{"name": "n", "input_schema": {"properties": {"_id": {"type": "string"}}}}],
            }),
        );
    }
}
