//! Grammar validators for the three stream formats, shared by the integration tests.
//!
//! Each validator walks a list of SSE events, fails with the index and the rule broken, and
//! returns a [`Summary`] of what the stream said (text, tool calls, usage) so tests can
//! compare a converted stream with its source.

#![allow(dead_code)]

use ccproxy_formats::sse::Event;
use serde_json::Value;

/// What a stream (or a response body) said.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) text: String,
    pub(crate) reasoning: String,
    pub(crate) tool_calls: Vec<ToolCall>,
    /// The stop reason in the stream's own vocabulary.
    pub(crate) stop: String,
    /// Every input token, cached ones included.
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cached_tokens: u64,
    pub(crate) error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) arguments: Value,
}

/// Strict for streams this crate produced; `Upstream` tolerates what recorded real servers
/// do that the client format does not require (Copilot's leading filter chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Ours,
    Upstream,
}

fn json(index: usize, event: &Event) -> Result<Value, String> {
    serde_json::from_str(&event.data)
        .map_err(|error| format!("event {index}: data is not JSON: {error}: {}", event.data))
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

fn parse_args(index: usize, text: &str) -> Result<Value, String> {
    if text.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(text)
        .map_err(|error| format!("event {index}: tool arguments are not JSON ({error}): {text}"))
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(format!($($arg)*));
        }
    };
}

/// Anthropic Messages: `message_start`, then per block `content_block_start`,
/// `content_block_delta`*, `content_block_stop` with indexes 0, 1, 2…, then
/// `message_delta` (stop_reason and usage) and `message_stop`; `ping` anywhere; an `error`
/// event may end the stream at any point; never `[DONE]`.
pub(crate) fn anthropic(events: &[Event]) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut started = false;
    let mut next_index = 0u64;
    let mut open: Option<(u64, String)> = None;
    let mut args = String::new();
    let mut saw_delta = false;
    let mut ended = false;
    let mut input_uncached = 0;
    let mut cache_read = 0;
    let mut cache_creation = 0;
    for (index, event) in events.iter().enumerate() {
        ensure!(
            !ended,
            "event {index}: event after the end of the stream: {event:?}"
        );
        ensure!(
            !event.is_done(),
            "event {index}: [DONE] in an Anthropic stream"
        );
        let value = json(index, event)?;
        let kind = value["type"].as_str().unwrap_or_default().to_owned();
        ensure!(
            event.event.as_deref() == Some(kind.as_str()),
            "event {index}: event name {:?} differs from type {kind}",
            event.event
        );
        if kind == "ping" {
            continue;
        }
        if kind == "error" {
            ensure!(
                value["error"]["type"].is_string(),
                "event {index}: error without error.type"
            );
            ensure!(
                value["error"]["message"].is_string(),
                "event {index}: error without message"
            );
            summary.error = value["error"]["message"].as_str().map(str::to_owned);
            ended = true;
            continue;
        }
        if !started {
            ensure!(
                kind == "message_start",
                "event {index}: the first event is {kind}, not message_start"
            );
            let message = &value["message"];
            ensure!(
                message["role"] == "assistant",
                "event {index}: message role is not assistant"
            );
            ensure!(
                message["content"] == Value::Array(vec![]),
                "event {index}: message_start content is not empty"
            );
            ensure!(
                message["id"].is_string() && message["model"].is_string(),
                "event {index}: message_start lacks id or model"
            );
            ensure!(
                message["usage"].is_object(),
                "event {index}: message_start lacks usage"
            );
            summary.id = message["id"].as_str().unwrap_or_default().to_owned();
            summary.model = message["model"].as_str().unwrap_or_default().to_owned();
            input_uncached = u64_at(message, "/usage/input_tokens");
            cache_read = u64_at(message, "/usage/cache_read_input_tokens");
            cache_creation = u64_at(message, "/usage/cache_creation_input_tokens");
            started = true;
            continue;
        }
        match kind.as_str() {
            "content_block_start" => {
                ensure!(
                    open.is_none(),
                    "event {index}: block started while block {open:?} is open"
                );
                ensure!(!saw_delta, "event {index}: block after message_delta");
                let block_index = value["index"]
                    .as_u64()
                    .ok_or(format!("event {index}: no index"))?;
                ensure!(
                    block_index == next_index,
                    "event {index}: block index {block_index}, expected {next_index}"
                );
                let block = &value["content_block"];
                let block_type = block["type"].as_str().unwrap_or_default().to_owned();
                match block_type.as_str() {
                    "text" => ensure!(
                        block["text"] == "",
                        "event {index}: text block starts with text"
                    ),
                    "thinking" => {}
                    "tool_use" => {
                        ensure!(
                            block["input"] == serde_json::json!({}),
                            "event {index}: tool_use start input is not {{}}"
                        );
                        let id = block["id"].as_str().unwrap_or_default();
                        ensure!(!id.is_empty(), "event {index}: tool_use without id");
                        ensure!(
                            id.bytes().all(|byte| byte.is_ascii_alphanumeric()
                                || byte == b'_'
                                || byte == b'-'),
                            "event {index}: tool_use id {id} has characters Anthropic rejects"
                        );
                        summary.tool_calls.push(ToolCall {
                            id: id.to_owned(),
                            name: block["name"].as_str().unwrap_or_default().to_owned(),
                            arguments: Value::Null,
                        });
                        args.clear();
                    }
                    "redacted_thinking" | "server_tool_use" | "web_search_tool_result" => {}
                    other => return Err(format!("event {index}: unknown block type {other}")),
                }
                open = Some((block_index, block_type));
            }
            "content_block_delta" => {
                let Some((open_index, block_type)) = &open else {
                    return Err(format!("event {index}: delta outside a block"));
                };
                ensure!(
                    value["index"].as_u64() == Some(*open_index),
                    "event {index}: delta for block {} while {open_index} is open",
                    value["index"]
                );
                let delta = &value["delta"];
                match (
                    block_type.as_str(),
                    delta["type"].as_str().unwrap_or_default(),
                ) {
                    ("text", "text_delta") => summary
                        .text
                        .push_str(delta["text"].as_str().unwrap_or_default()),
                    ("thinking", "thinking_delta") => summary
                        .reasoning
                        .push_str(delta["thinking"].as_str().unwrap_or_default()),
                    ("thinking", "signature_delta") => {}
                    ("tool_use", "input_json_delta") => {
                        args.push_str(delta["partial_json"].as_str().ok_or(format!(
                            "event {index}: input_json_delta without partial_json"
                        ))?)
                    }
                    (block, delta) => {
                        return Err(format!("event {index}: {delta} in a {block} block"));
                    }
                }
            }
            "content_block_stop" => {
                let Some((open_index, block_type)) = open.take() else {
                    return Err(format!("event {index}: stop outside a block"));
                };
                ensure!(
                    value["index"].as_u64() == Some(open_index),
                    "event {index}: stop for block {} while {open_index} is open",
                    value["index"]
                );
                if block_type == "tool_use" {
                    let call = summary.tool_calls.last_mut().expect("pushed at start");
                    call.arguments = parse_args(index, &args)?;
                }
                next_index += 1;
            }
            "message_delta" => {
                ensure!(
                    open.is_none(),
                    "event {index}: message_delta with a block open"
                );
                ensure!(!saw_delta, "event {index}: second message_delta");
                saw_delta = true;
                let stop = value["delta"]["stop_reason"]
                    .as_str()
                    .ok_or(format!("event {index}: message_delta without stop_reason"))?;
                ensure!(
                    [
                        "end_turn",
                        "max_tokens",
                        "stop_sequence",
                        "tool_use",
                        "pause_turn",
                        "refusal"
                    ]
                    .contains(&stop),
                    "event {index}: unknown stop_reason {stop}"
                );
                summary.stop = stop.to_owned();
                let usage = &value["usage"];
                ensure!(
                    usage["output_tokens"].is_u64(),
                    "event {index}: message_delta usage lacks output_tokens"
                );
                summary.output_tokens = u64_at(usage, "/output_tokens");
                if let Some(input) = usage["input_tokens"].as_u64() {
                    input_uncached = input;
                }
                if let Some(read) = usage["cache_read_input_tokens"].as_u64() {
                    cache_read = read;
                }
                if let Some(creation) = usage["cache_creation_input_tokens"].as_u64() {
                    cache_creation = creation;
                }
            }
            "message_stop" => {
                ensure!(
                    saw_delta,
                    "event {index}: message_stop before message_delta"
                );
                ended = true;
            }
            other => return Err(format!("event {index}: unexpected event {other}")),
        }
    }
    ensure!(ended, "the stream does not end with message_stop or error");
    summary.input_tokens = input_uncached + cache_read + cache_creation;
    summary.cached_tokens = cache_read;
    Ok(summary)
}

/// OpenAI Chat Completions: chunks with one id, the role on the first chunk only, every
/// tool-call fragment with its `index`, id and name on a call's first fragment only, one
/// chunk with `finish_reason`, usage on it or on a usage-only chunk after it, then
/// `[DONE]`. An error chunk followed by `[DONE]` may end the stream.
pub(crate) fn chat(events: &[Event], mode: Mode) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut chunks_seen = 0;
    let mut finished = false;
    let mut saw_usage = false;
    let mut done = false;
    let mut created = None;
    let mut args: Vec<String> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        ensure!(!done, "event {index}: event after [DONE]");
        ensure!(
            event.event.is_none(),
            "event {index}: Chat events carry no event name"
        );
        if event.is_done() {
            done = true;
            continue;
        }
        let value = json(index, event)?;
        if let Some(error) = value.get("error") {
            ensure!(
                error["message"].is_string(),
                "event {index}: error chunk without message"
            );
            summary.error = error["message"].as_str().map(str::to_owned);
            finished = true;
            saw_usage = true;
            continue;
        }
        let choices = value["choices"]
            .as_array()
            .ok_or(format!("event {index}: chunk without choices"))?;
        if mode == Mode::Upstream
            && chunks_seen == 0
            && choices.is_empty()
            && value.get("usage").is_none_or(Value::is_null)
        {
            // Copilot sends a prompt-filter chunk with an empty id first.
            continue;
        }
        if mode == Mode::Ours {
            ensure!(
                value["object"] == "chat.completion.chunk",
                "event {index}: object is {}",
                value["object"]
            );
        }
        let id = value["id"].as_str().unwrap_or_default();
        ensure!(!id.is_empty(), "event {index}: chunk without id");
        if chunks_seen == 0 {
            summary.id = id.to_owned();
            summary.model = value["model"].as_str().unwrap_or_default().to_owned();
            created = value["created"].as_u64();
        } else {
            ensure!(
                summary.id == id,
                "event {index}: id {id} differs from {}",
                summary.id
            );
            if mode == Mode::Ours {
                ensure!(
                    value["created"].as_u64() == created,
                    "event {index}: created changed"
                );
                ensure!(
                    value["model"] == summary.model.as_str(),
                    "event {index}: model changed"
                );
            }
        }
        if let Some(usage) = value.get("usage").filter(|usage| !usage.is_null()) {
            saw_usage = true;
            summary.input_tokens = u64_at(usage, "/prompt_tokens");
            summary.output_tokens = u64_at(usage, "/completion_tokens");
            summary.cached_tokens = u64_at(usage, "/prompt_tokens_details/cached_tokens");
            ensure!(
                u64_at(usage, "/total_tokens") == summary.input_tokens + summary.output_tokens,
                "event {index}: total_tokens is not the sum"
            );
        }
        if finished {
            ensure!(
                choices.is_empty(),
                "event {index}: choices after the finish chunk"
            );
        }
        for choice in choices {
            ensure!(
                choice["index"] == 0,
                "event {index}: choice index {}",
                choice["index"]
            );
            let delta = &choice["delta"];
            let role = delta.get("role").filter(|role| !role.is_null());
            if chunks_seen == 0 {
                ensure!(
                    role.is_some_and(|role| role == "assistant"),
                    "event {index}: the first chunk has no assistant role"
                );
            } else {
                ensure!(role.is_none(), "event {index}: role on a later chunk");
            }
            if let Some(text) = delta["content"].as_str() {
                summary.text.push_str(text);
            }
            if let Some(text) = delta["reasoning_content"].as_str() {
                summary.reasoning.push_str(text);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let call_index = call["index"]
                    .as_u64()
                    .ok_or(format!("event {index}: tool call fragment without index"))?
                    as usize;
                let first = call_index == summary.tool_calls.len();
                ensure!(
                    first || call_index + 1 == summary.tool_calls.len() || mode == Mode::Upstream,
                    "event {index}: tool call index {call_index} out of order"
                );
                ensure!(
                    call_index <= summary.tool_calls.len(),
                    "event {index}: tool call index {call_index} skips ahead"
                );
                if first {
                    let id = call["id"].as_str().ok_or(format!(
                        "event {index}: first fragment of call {call_index} has no id"
                    ))?;
                    ensure!(
                        id.len() <= 64,
                        "event {index}: tool call id longer than 64: {id}"
                    );
                    ensure!(
                        call["type"] == "function",
                        "event {index}: first fragment type is not function"
                    );
                    let name = call["function"]["name"]
                        .as_str()
                        .ok_or(format!("event {index}: first fragment has no name"))?;
                    summary.tool_calls.push(ToolCall {
                        id: id.to_owned(),
                        name: name.to_owned(),
                        arguments: Value::Null,
                    });
                    args.push(String::new());
                } else {
                    ensure!(
                        call.get("id").is_none_or(Value::is_null),
                        "event {index}: id on a later fragment of call {call_index}"
                    );
                    ensure!(
                        call["function"].get("name").is_none_or(Value::is_null),
                        "event {index}: name on a later fragment"
                    );
                }
                if let Some(fragment) = call["function"]["arguments"].as_str() {
                    args[call_index].push_str(fragment);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                ensure!(!finished, "event {index}: second finish_reason");
                ensure!(
                    [
                        "stop",
                        "length",
                        "tool_calls",
                        "content_filter",
                        "function_call"
                    ]
                    .contains(&reason),
                    "event {index}: unknown finish_reason {reason}"
                );
                summary.stop = reason.to_owned();
                finished = true;
            }
        }
        chunks_seen += 1;
    }
    ensure!(finished, "no chunk has a finish_reason");
    ensure!(saw_usage, "no usage in the stream");
    ensure!(done, "the stream does not end with [DONE]");
    for (call, args) in summary.tool_calls.iter_mut().zip(&args) {
        call.arguments = parse_args(events.len(), args)?;
    }
    Ok(summary)
}

/// OpenAI Responses: `response.created`, `response.in_progress`, then per output item
/// `output_item.added`, its parts (`content_part.added`, `output_text.delta`*,
/// `output_text.done`, `content_part.done`; `function_call_arguments.delta`*, `.done`;
/// reasoning summary parts), `output_item.done`, and finally `response.completed` (or
/// `.incomplete` / `.failed`) with usage; `sequence_number` counts 0, 1, 2…
pub(crate) fn responses(events: &[Event]) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut ended = false;
    let mut items_done: Vec<Value> = Vec::new();
    // The open item: (output_index, item id, type, accumulated text).
    let mut open: Option<(u64, String, String, String)> = None;
    let mut part_open = false;
    for (index, event) in events.iter().enumerate() {
        ensure!(!ended, "event {index}: event after the end of the stream");
        ensure!(
            !event.is_done(),
            "event {index}: [DONE] in a Responses stream"
        );
        let value = json(index, event)?;
        let kind = value["type"].as_str().unwrap_or_default().to_owned();
        ensure!(
            event.event.as_deref() == Some(kind.as_str()),
            "event {index}: event name {:?} differs from type {kind}",
            event.event
        );
        ensure!(
            value["sequence_number"].as_u64() == Some(index as u64),
            "event {index}: sequence_number {} is not {index}",
            value["sequence_number"]
        );
        match (index, kind.as_str()) {
            (0, "response.created") => {
                let response = &value["response"];
                ensure!(
                    response["status"] == "in_progress" || response["status"] == "queued",
                    "event 0: created with status {}",
                    response["status"]
                );
                summary.id = response["id"].as_str().unwrap_or_default().to_owned();
                summary.model = response["model"].as_str().unwrap_or_default().to_owned();
                continue;
            }
            (0, other) => {
                return Err(format!(
                    "event 0: the first event is {other}, not response.created"
                ));
            }
            (1, "response.in_progress") => continue,
            (1, other) => return Err(format!("event 1: {other}, not response.in_progress")),
            _ => {}
        }
        let item_matches = |open: &Option<(u64, String, String, String)>| {
            open.as_ref().is_some_and(|(output_index, item_id, _, _)| {
                value["output_index"].as_u64() == Some(*output_index)
                    && value["item_id"].as_str() == Some(item_id.as_str())
            })
        };
        match kind.as_str() {
            "response.output_item.added" => {
                ensure!(
                    open.is_none(),
                    "event {index}: item added while another is open"
                );
                let output_index = value["output_index"].as_u64().unwrap_or(u64::MAX);
                ensure!(
                    output_index == items_done.len() as u64,
                    "event {index}: output_index {output_index}, expected {}",
                    items_done.len()
                );
                let item = &value["item"];
                let item_type = item["type"].as_str().unwrap_or_default().to_owned();
                let item_id = item["id"].as_str().unwrap_or_default().to_owned();
                ensure!(!item_id.is_empty(), "event {index}: item without id");
                if item_type == "function_call" {
                    let call_id = item["call_id"].as_str().unwrap_or_default();
                    ensure!(
                        !call_id.is_empty() && call_id.len() <= 64,
                        "event {index}: bad call_id {call_id}"
                    );
                    summary.tool_calls.push(ToolCall {
                        id: call_id.to_owned(),
                        name: item["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: Value::Null,
                    });
                }
                open = Some((output_index, item_id, item_type, String::new()));
            }
            "response.content_part.added" => {
                ensure!(
                    item_matches(&open),
                    "event {index}: part for an item that is not open"
                );
                ensure!(
                    open.as_ref().is_some_and(|open| open.2 == "message"),
                    "event {index}: content part outside a message"
                );
                ensure!(!part_open, "event {index}: second part open");
                part_open = true;
            }
            "response.output_text.delta" => {
                ensure!(
                    part_open && item_matches(&open),
                    "event {index}: text delta outside an open part"
                );
                let text = value["delta"].as_str().unwrap_or_default();
                open.as_mut().expect("checked").3.push_str(text);
                summary.text.push_str(text);
            }
            "response.output_text.done" => {
                ensure!(
                    part_open && item_matches(&open),
                    "event {index}: text done outside an open part"
                );
                ensure!(
                    value["text"].as_str() == open.as_ref().map(|open| open.3.as_str()),
                    "event {index}: done text differs from the deltas"
                );
            }
            "response.content_part.done" => {
                ensure!(
                    part_open && item_matches(&open),
                    "event {index}: part done outside an open part"
                );
                ensure!(
                    value["part"]["text"].as_str() == open.as_ref().map(|open| open.3.as_str()),
                    "event {index}: part text differs from the deltas"
                );
                part_open = false;
            }
            "response.function_call_arguments.delta" => {
                ensure!(
                    item_matches(&open)
                        && open.as_ref().is_some_and(|open| open.2 == "function_call"),
                    "event {index}: arguments delta outside a function call"
                );
                open.as_mut()
                    .expect("checked")
                    .3
                    .push_str(value["delta"].as_str().unwrap_or_default());
            }
            "response.function_call_arguments.done" => {
                ensure!(
                    item_matches(&open),
                    "event {index}: arguments done outside a function call"
                );
                ensure!(
                    value["arguments"].as_str() == open.as_ref().map(|open| open.3.as_str()),
                    "event {index}: done arguments differ from the deltas"
                );
            }
            "response.reasoning_summary_part.added" | "response.reasoning_summary_part.done" => {
                ensure!(
                    item_matches(&open) && open.as_ref().is_some_and(|open| open.2 == "reasoning"),
                    "event {index}: summary part outside reasoning"
                );
            }
            "response.reasoning_summary_text.delta" => {
                ensure!(
                    item_matches(&open) && open.as_ref().is_some_and(|open| open.2 == "reasoning"),
                    "event {index}: summary delta outside reasoning"
                );
                let text = value["delta"].as_str().unwrap_or_default();
                summary.reasoning.push_str(text);
            }
            "response.reasoning_summary_text.done" => {
                ensure!(
                    item_matches(&open),
                    "event {index}: summary done outside reasoning"
                );
            }
            "response.output_item.done" => {
                let Some((output_index, item_id, item_type, text)) = open.take() else {
                    return Err(format!("event {index}: item done with no item open"));
                };
                ensure!(!part_open, "event {index}: item done with a part open");
                ensure!(
                    value["output_index"].as_u64() == Some(output_index),
                    "event {index}: done for another output_index"
                );
                let item = &value["item"];
                ensure!(
                    item["id"].as_str() == Some(item_id.as_str()),
                    "event {index}: done item id differs"
                );
                ensure!(
                    item["type"].as_str() == Some(item_type.as_str()),
                    "event {index}: done item type differs"
                );
                match item_type.as_str() {
                    "message" => {
                        let content_text: String = item["content"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|part| part["text"].as_str())
                            .collect();
                        ensure!(
                            content_text == text,
                            "event {index}: message text differs from the deltas"
                        );
                    }
                    "function_call" => {
                        ensure!(
                            item["arguments"].as_str() == Some(text.as_str()),
                            "event {index}: item arguments differ from the deltas"
                        );
                        let call = summary.tool_calls.last_mut().expect("pushed when added");
                        ensure!(
                            item["call_id"].as_str() == Some(call.id.as_str()),
                            "event {index}: call_id changed"
                        );
                        call.arguments = parse_args(index, &text)?;
                    }
                    _ => {}
                }
                items_done.push(item.clone());
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                ensure!(open.is_none(), "event {index}: {kind} with an item open");
                let response = &value["response"];
                let status = kind.trim_start_matches("response.");
                ensure!(
                    response["status"] == status,
                    "event {index}: status {} in {kind}",
                    response["status"]
                );
                if kind == "response.failed" {
                    ensure!(
                        response["error"]["message"].is_string(),
                        "event {index}: failed without error message"
                    );
                    summary.error = response["error"]["message"].as_str().map(str::to_owned);
                } else {
                    let usage = &response["usage"];
                    ensure!(usage.is_object(), "event {index}: {kind} without usage");
                    summary.input_tokens = u64_at(usage, "/input_tokens");
                    summary.output_tokens = u64_at(usage, "/output_tokens");
                    summary.cached_tokens = u64_at(usage, "/input_tokens_details/cached_tokens");
                    let output = response["output"]
                        .as_array()
                        .ok_or(format!("event {index}: {kind} without output"))?;
                    ensure!(
                        output.len() == items_done.len(),
                        "event {index}: output has {} items, the stream had {}",
                        output.len(),
                        items_done.len()
                    );
                    for (item, done) in output.iter().zip(&items_done) {
                        ensure!(
                            item["id"] == done["id"],
                            "event {index}: output item {} differs from the streamed one",
                            item["id"]
                        );
                    }
                }
                summary.stop = status.to_owned();
                ended = true;
            }
            "error" => {
                // The documented shape: `type`, `code`, `message`, `param`, `sequence_number`.
                ensure!(
                    value["message"].is_string(),
                    "event {index}: error without a top-level message"
                );
                ensure!(
                    ["code", "param"].iter().all(|key| value
                        .get(*key)
                        .is_some_and(|field| field.is_string() || field.is_null())),
                    "event {index}: error without code or param"
                );
                summary.error = value["message"].as_str().map(str::to_owned);
            }
            other => return Err(format!("event {index}: unexpected event {other}")),
        }
    }
    ensure!(
        ended,
        "the stream does not end with response.completed, .incomplete or .failed"
    );
    Ok(summary)
}

/// Validates `events` as a stream of `format` made by this crate.
pub(crate) fn validate(
    format: ccproxy_formats::Format,
    events: &[Event],
) -> Result<Summary, String> {
    match format {
        ccproxy_formats::Format::AnthropicMessages => anthropic(events),
        ccproxy_formats::Format::OpenAiChat => chat(events, Mode::Ours),
        ccproxy_formats::Format::OpenAiResponses => responses(events),
    }
}

/// Summarises a non-streamed response body of `format`, checking the fields its clients
/// rely on.
pub(crate) fn response_body(
    format: ccproxy_formats::Format,
    body: &Value,
) -> Result<Summary, String> {
    let mut summary = Summary::default();
    match format {
        ccproxy_formats::Format::AnthropicMessages => {
            ensure!(
                body["type"] == "message" && body["role"] == "assistant",
                "not an assistant message: {body}"
            );
            summary.id = body["id"].as_str().unwrap_or_default().to_owned();
            summary.model = body["model"].as_str().unwrap_or_default().to_owned();
            for block in body["content"].as_array().ok_or("no content")? {
                match block["type"].as_str().unwrap_or_default() {
                    "text" => summary
                        .text
                        .push_str(block["text"].as_str().unwrap_or_default()),
                    "thinking" => summary
                        .reasoning
                        .push_str(block["thinking"].as_str().unwrap_or_default()),
                    "tool_use" => summary.tool_calls.push(ToolCall {
                        id: block["id"].as_str().unwrap_or_default().to_owned(),
                        name: block["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: block["input"].clone(),
                    }),
                    other => return Err(format!("unexpected block {other}")),
                }
            }
            summary.stop = body["stop_reason"]
                .as_str()
                .ok_or("no stop_reason")?
                .to_owned();
            let usage = &body["usage"];
            ensure!(
                usage["input_tokens"].is_u64() && usage["output_tokens"].is_u64(),
                "usage lacks tokens"
            );
            summary.cached_tokens = u64_at(usage, "/cache_read_input_tokens");
            summary.input_tokens = u64_at(usage, "/input_tokens")
                + summary.cached_tokens
                + u64_at(usage, "/cache_creation_input_tokens");
            summary.output_tokens = u64_at(usage, "/output_tokens");
        }
        ccproxy_formats::Format::OpenAiChat => {
            // Internal: Copilot leaves `object` out; this crate always writes it.
            ensure!(
                body["object"] == "chat.completion" || body["object"].is_null(),
                "object is {}",
                body["object"]
            );
            summary.id = body["id"].as_str().unwrap_or_default().to_owned();
            summary.model = body["model"].as_str().unwrap_or_default().to_owned();
            let choice = &body["choices"][0];
            let message = &choice["message"];
            ensure!(
                message["role"] == "assistant",
                "role is {}",
                message["role"]
            );
            summary.text = message["content"].as_str().unwrap_or_default().to_owned();
            summary.reasoning = message["reasoning_content"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for call in message["tool_calls"].as_array().into_iter().flatten() {
                ensure!(
                    call["type"] == "function",
                    "tool call type is {}",
                    call["type"]
                );
                summary.tool_calls.push(ToolCall {
                    id: call["id"].as_str().unwrap_or_default().to_owned(),
                    name: call["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    arguments: parse_args(
                        0,
                        call["function"]["arguments"].as_str().unwrap_or_default(),
                    )?,
                });
            }
            summary.stop = choice["finish_reason"]
                .as_str()
                .ok_or("no finish_reason")?
                .to_owned();
            let usage = &body["usage"];
            summary.input_tokens = u64_at(usage, "/prompt_tokens");
            summary.output_tokens = u64_at(usage, "/completion_tokens");
            summary.cached_tokens = u64_at(usage, "/prompt_tokens_details/cached_tokens");
        }
        ccproxy_formats::Format::OpenAiResponses => {
            ensure!(
                body["object"] == "response" || body["object"].is_null(),
                "object is {}",
                body["object"]
            );
            summary.id = body["id"].as_str().unwrap_or_default().to_owned();
            summary.model = body["model"].as_str().unwrap_or_default().to_owned();
            for item in body["output"].as_array().ok_or("no output")? {
                match item["type"].as_str().unwrap_or_default() {
                    "message" => {
                        for part in item["content"].as_array().into_iter().flatten() {
                            summary
                                .text
                                .push_str(part["text"].as_str().unwrap_or_default());
                        }
                    }
                    "reasoning" => {
                        for part in item["summary"].as_array().into_iter().flatten() {
                            summary
                                .reasoning
                                .push_str(part["text"].as_str().unwrap_or_default());
                        }
                    }
                    "function_call" => summary.tool_calls.push(ToolCall {
                        id: item["call_id"].as_str().unwrap_or_default().to_owned(),
                        name: item["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: parse_args(0, item["arguments"].as_str().unwrap_or_default())?,
                    }),
                    _ => {}
                }
            }
            summary.stop = body["status"].as_str().unwrap_or_default().to_owned();
            let usage = &body["usage"];
            summary.input_tokens = u64_at(usage, "/input_tokens");
            summary.output_tokens = u64_at(usage, "/output_tokens");
            summary.cached_tokens = u64_at(usage, "/input_tokens_details/cached_tokens");
        }
    }
    Ok(summary)
}
