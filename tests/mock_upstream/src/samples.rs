//! The recorded exchanges of `tests/data/samples`, which one answers a request,
//! and streams synthesized from a complete answer when no stream was recorded.

use std::{collections::HashMap, fs, path::Path};

use serde_json::{Value, json};

/// The wire format of an upstream endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
    /// OpenAI Responses (`/responses`, the Codex backend).
    Responses,
    /// OpenAI Chat Completions (`/chat/completions`, Copilot).
    Chat,
}

impl Format {
    /// The file-name prefix of this format's samples.
    fn prefix(self) -> &'static str {
        match self {
            Format::Anthropic => "claude_messages",
            Format::Responses => "codex_responses",
            Format::Chat => "copilot_chat_completions",
        }
    }

    /// The request field holding the conversation.
    pub fn conversation_field(self) -> &'static str {
        match self {
            Format::Responses => "input",
            Format::Anthropic | Format::Chat => "messages",
        }
    }
}

/// One server-sent event as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` line; none for data-only events (Chat Completions).
    pub name: Option<String>,
    /// The `data:` payload.
    pub data: String,
}

impl Event {
    fn named(name: &str, data: &Value) -> Self {
        Self {
            name: Some(name.to_owned()),
            data: data.to_string(),
        }
    }

    fn data(data: &Value) -> Self {
        Self {
            name: None,
            data: data.to_string(),
        }
    }

    /// `event: X\ndata: Y\n\n` (one `data:` line per line of the payload).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        if let Some(name) = &self.name {
            out.push_str("event: ");
            out.push_str(name);
            out.push('\n');
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// What a sample answers with.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete JSON body.
    Json(Value),
    /// An event stream.
    Events(Vec<Event>),
}

/// One recorded exchange.
#[derive(Debug, Clone)]
pub struct Sample {
    /// File stem (`claude_messages_stream`).
    pub name: String,
    /// Recorded status.
    pub status: u16,
    /// Recorded response headers worth replaying (no framing or hop-by-hop ones).
    pub headers: Vec<(String, String)>,
    /// The recorded answer.
    pub reply: Reply,
}

/// What answers a request: the sample it comes from and the answer itself.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The sample file stem, with `+synthesized-stream` when the stream was made here.
    pub source: String,
    /// Status.
    pub status: u16,
    /// Headers to replay.
    pub headers: Vec<(String, String)>,
    /// The answer.
    pub reply: Reply,
}

/// Every sample of a folder, by file stem.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    by_name: HashMap<String, Sample>,
}

/// Response headers that are the transport's business, or that would lie about
/// this server, and so are never replayed.
const NOT_REPLAYED: &[&str] = &[
    "connection",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "keep-alive",
    "date",
    "server",
    "via",
    "alt-svc",
    "set-cookie",
    "strict-transport-security",
    "report-to",
    "nel",
];

impl Samples {
    /// Reads every `*.json` of `dir`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let entries = fs::read_dir(dir).map_err(|error| {
            format!(
                "cannot read the samples folder {}: {error}; pass --samples DIR",
                dir.display()
            )
        })?;
        let mut by_name = HashMap::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = fs::read_to_string(&path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|error| format!("{} is not JSON: {error}", path.display()))?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let sample = Sample::from_json(&name, &value)
                .map_err(|error| format!("{}: {error}", path.display()))?;
            by_name.insert(name, sample);
        }
        if by_name.is_empty() {
            return Err(format!("no *.json samples in {}", dir.display()));
        }
        Ok(Self { by_name })
    }

    /// The sample named `name`.
    pub fn get(&self, name: &str) -> Option<&Sample> {
        self.by_name.get(name)
    }

    /// The answer to `request` on an endpoint of `format`: the tools sample when
    /// the request has tools, the structured-output sample for a Responses
    /// request with a JSON schema, else the plain one; the recorded stream
    /// variant when the request streams, or a stream synthesized from the
    /// complete answer when none was recorded.
    pub fn select(&self, format: Format, request: &Value) -> Result<Selected, String> {
        let has_tools = request
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|tools| !tools.is_empty());
        let structured = format == Format::Responses
            && request.pointer("/text/format/type").and_then(Value::as_str) == Some("json_schema");
        let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
        let variant = if has_tools {
            "_tools"
        } else if structured {
            "_structured"
        } else {
            ""
        };
        let name = format!("{}{variant}", format.prefix());
        if stream && let Some(sample) = self.get(&format!("{name}_stream")) {
            return Ok(sample.selected(sample.name.clone()));
        }
        let sample = self
            .get(&name)
            .ok_or_else(|| format!("no sample {name}.json to answer with"))?;
        match (&sample.reply, stream) {
            (Reply::Json(body), true) => {
                let mut selected = sample.selected(format!("{name}+synthesized-stream"));
                selected.reply = Reply::Events(synthesize(format, body));
                selected.headers.retain(|(k, _)| k != "content-type");
                selected.headers.push((
                    "content-type".to_owned(),
                    "text/event-stream; charset=utf-8".to_owned(),
                ));
                Ok(selected)
            }
            _ => Ok(sample.selected(sample.name.clone())),
        }
    }
}

impl Sample {
    fn from_json(name: &str, value: &Value) -> Result<Self, String> {
        let response = value.get("response").ok_or("no `response` object")?.clone();
        let status = response
            .get("status_code")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(200);
        let mut headers: Vec<(String, String)> = response
            .get("headers")
            .and_then(Value::as_object)
            .map(|headers| {
                headers
                    .iter()
                    .filter(|(k, _)| !NOT_REPLAYED.contains(&k.to_ascii_lowercase().as_str()))
                    .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        headers.sort();
        let reply = if let Some(body) = response.get("body") {
            Reply::Json(body.clone())
        } else if let Some(events) = response.get("events").and_then(Value::as_array) {
            // The recorder marks the end of every stream with a `[DONE]` entry;
            // only Chat Completions sends one on the wire.
            let keep_done = name.starts_with(Format::Chat.prefix());
            Reply::Events(
                events
                    .iter()
                    .filter(|e| keep_done || e.get("done").and_then(Value::as_bool) != Some(true))
                    .map(|e| Event {
                        name: e.get("event").and_then(Value::as_str).map(str::to_owned),
                        data: e
                            .get("data")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    })
                    .collect(),
            )
        } else {
            return Err("the response has neither `body` nor `events`".to_owned());
        };
        Ok(Self {
            name: name.to_owned(),
            status,
            headers,
            reply,
        })
    }

    fn selected(&self, source: String) -> Selected {
        Selected {
            source,
            status: self.status,
            headers: self.headers.clone(),
            reply: self.reply.clone(),
        }
    }
}

/// `text` cut into at most `n` pieces of about the same number of characters.
pub(crate) fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(n.max(1));
    chars
        .chunks(size)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

/// The stream the API would have sent for the complete answer `body`.
pub fn synthesize(format: Format, body: &Value) -> Vec<Event> {
    match format {
        Format::Anthropic => synthesize_anthropic(body),
        Format::Chat => synthesize_chat(body),
        Format::Responses => synthesize_responses(body),
    }
}

fn synthesize_anthropic(body: &Value) -> Vec<Event> {
    let mut events = Vec::new();
    let usage = body.get("usage").cloned().unwrap_or_else(|| json!({}));
    let mut start_usage = usage.clone();
    if let Some(object) = start_usage.as_object_mut() {
        object.insert("output_tokens".to_owned(), json!(1));
    }
    let mut message = body.clone();
    if let Some(object) = message.as_object_mut() {
        object.insert("content".to_owned(), json!([]));
        object.insert("stop_reason".to_owned(), Value::Null);
        object.insert("stop_sequence".to_owned(), Value::Null);
        object.insert("usage".to_owned(), start_usage);
    }
    events.push(Event::named(
        "message_start",
        &json!({"type": "message_start", "message": message}),
    ));
    let blocks = body
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (index, block) in blocks.iter().enumerate() {
        let kind = block
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (start, deltas): (Value, Vec<Value>) = match kind {
            "text" => (
                json!({"type": "text", "text": ""}),
                pieces(block["text"].as_str().unwrap_or_default(), 3)
                    .into_iter()
                    .map(|text| json!({"type": "text_delta", "text": text}))
                    .collect(),
            ),
            "tool_use" => (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                pieces(&block["input"].to_string(), 3)
                    .into_iter()
                    .map(|part| json!({"type": "input_json_delta", "partial_json": part}))
                    .collect(),
            ),
            "thinking" => {
                let mut deltas: Vec<Value> =
                    pieces(block["thinking"].as_str().unwrap_or_default(), 2)
                        .into_iter()
                        .map(|text| json!({"type": "thinking_delta", "thinking": text}))
                        .collect();
                deltas.push(json!({"type": "signature_delta", "signature": block["signature"]}));
                (
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    deltas,
                )
            }
            _ => (block.clone(), Vec::new()),
        };
        events.push(Event::named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        if index == 0 {
            events.push(Event::named("ping", &json!({"type": "ping"})));
        }
        for delta in deltas {
            events.push(Event::named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(Event::named(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(Event::named(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": body["stop_reason"], "stop_sequence": body["stop_sequence"]},
            "usage": usage,
        }),
    ));
    events.push(Event::named(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    events
}

fn synthesize_chat(body: &Value) -> Vec<Event> {
    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": body["id"], "object": "chat.completion.chunk", "created": body["created"],
            "model": body["model"], "system_fingerprint": body["system_fingerprint"],
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    };
    let message = &body["choices"][0]["message"];
    let mut events = vec![Event::data(&chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ))];
    for text in pieces(message["content"].as_str().unwrap_or_default(), 3) {
        events.push(Event::data(&chunk(json!({"content": text}), Value::Null)));
    }
    let calls = message["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (index, call) in calls.iter().enumerate() {
        events.push(Event::data(&chunk(
            json!({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}]}),
            Value::Null,
        )));
        for part in pieces(
            call["function"]["arguments"].as_str().unwrap_or_default(),
            3,
        ) {
            events.push(Event::data(&chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": part}}]}),
                Value::Null,
            )));
        }
    }
    events.push(Event::data(&chunk(
        json!({}),
        body["choices"][0]["finish_reason"].clone(),
    )));
    if body.get("usage").is_some_and(|u| !u.is_null()) {
        let mut last = chunk(json!({}), Value::Null);
        last["choices"] = json!([]);
        last["usage"] = body["usage"].clone();
        events.push(Event::data(&last));
    }
    events.push(Event {
        name: None,
        data: "[DONE]".to_owned(),
    });
    events
}

fn synthesize_responses(body: &Value) -> Vec<Event> {
    let mut events = Vec::new();
    let mut sequence = 0u64;
    let mut push = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        events.push(Event::named(name, &data));
    };
    let mut pending = body.clone();
    pending["status"] = json!("in_progress");
    pending["output"] = json!([]);
    pending["usage"] = Value::Null;
    push("response.created", json!({"response": pending}));
    push("response.in_progress", json!({"response": pending}));
    let output = body["output"].as_array().cloned().unwrap_or_default();
    for (output_index, item) in output.iter().enumerate() {
        let item_id = item["id"].clone();
        match item["type"].as_str().unwrap_or_default() {
            "message" => {
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                added["content"] = json!([]);
                push(
                    "response.output_item.added",
                    json!({"output_index": output_index, "item": added}),
                );
                let parts = item["content"].as_array().cloned().unwrap_or_default();
                for (content_index, part) in parts.iter().enumerate() {
                    let text = part["text"].as_str().unwrap_or_default();
                    let place = json!({"item_id": item_id, "output_index": output_index, "content_index": content_index});
                    let mut empty = part.clone();
                    empty["text"] = json!("");
                    let mut data = place.clone();
                    data["part"] = empty;
                    push("response.content_part.added", data);
                    for delta in pieces(text, 3) {
                        let mut data = place.clone();
                        data["delta"] = json!(delta);
                        data["logprobs"] = json!([]);
                        push("response.output_text.delta", data);
                    }
                    let mut data = place.clone();
                    data["text"] = json!(text);
                    data["logprobs"] = json!([]);
                    push("response.output_text.done", data);
                    let mut data = place;
                    data["part"] = part.clone();
                    push("response.content_part.done", data);
                }
            }
            "function_call" => {
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                added["arguments"] = json!("");
                push(
                    "response.output_item.added",
                    json!({"output_index": output_index, "item": added}),
                );
                let arguments = item["arguments"].as_str().unwrap_or_default();
                for delta in pieces(arguments, 3) {
                    push(
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": output_index, "delta": delta}),
                    );
                }
                push(
                    "response.function_call_arguments.done",
                    json!({"item_id": item_id, "output_index": output_index, "arguments": arguments}),
                );
            }
            _ => push(
                "response.output_item.added",
                json!({"output_index": output_index, "item": item}),
            ),
        }
        push(
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
        );
    }
    let mut completed = body.clone();
    completed["status"] = json!("completed");
    push("response.completed", json!({"response": completed}));
    events
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn samples() -> Samples {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/samples");
        Samples::load(&dir).unwrap()
    }

    fn parsed(events: &[Event]) -> Vec<(Option<String>, Value)> {
        events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| (e.name.clone(), serde_json::from_str(&e.data).unwrap()))
            .collect()
    }

    #[test]
    fn selection_follows_tools_structure_and_stream() {
        let samples = samples();
        let check = |format, request: Value, expected: &str| {
            let selected = samples.select(format, &request).unwrap();
            assert_eq!(selected.source, expected, "{request}");
        };
        let tools = json!([{"name": "t"}]);
        check(Format::Anthropic, json!({}), "claude_messages");
        check(
            Format::Anthropic,
            json!({"stream": true}),
            "claude_messages_stream",
        );
        check(
            Format::Anthropic,
            json!({"tools": tools}),
            "claude_messages_tools",
        );
        check(
            Format::Anthropic,
            json!({"tools": tools, "stream": true}),
            "claude_messages_tools+synthesized-stream",
        );
        check(
            Format::Anthropic,
            json!({"tools": [], "stream": false}),
            "claude_messages",
        );
        check(
            Format::Responses,
            json!({"text": {"format": {"type": "json_schema"}}, "stream": true}),
            "codex_responses_structured_stream",
        );
        check(
            Format::Responses,
            json!({"tools": tools, "stream": true}),
            "codex_responses_tools+synthesized-stream",
        );
        check(
            Format::Chat,
            json!({"stream": true}),
            "copilot_chat_completions_stream",
        );
    }

    #[test]
    fn recorded_done_markers_stay_only_on_chat_streams() {
        let samples = samples();
        let last = |name: &str| match &samples.get(name).unwrap().reply {
            Reply::Events(events) => events.last().unwrap().data.clone(),
            Reply::Json(_) => panic!("{name} is not a stream"),
        };
        assert_eq!(last("copilot_chat_completions_stream"), "[DONE]");
        assert_eq!(last("claude_messages_stream"), r#"{"type":"message_stop"}"#);
    }

    #[test]
    fn events_encode_as_sse() {
        let event = Event::named("ping", &json!({"type": "ping"}));
        assert_eq!(
            event.encode(),
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
        let data = Event {
            name: None,
            data: "a\nb".to_owned(),
        };
        assert_eq!(data.encode(), b"data: a\ndata: b\n\n");
    }

    #[test]
    fn pieces_cover_the_text_on_char_boundaries() {
        assert_eq!(pieces("abcdefg", 3), ["abc", "def", "g"]);
        assert_eq!(pieces("héé", 2), ["hé", "é"]);
        assert!(pieces("", 3).is_empty());
    }

    #[test]
    fn a_synthesized_anthropic_stream_rebuilds_the_tools_answer() {
        let samples = samples();
        let Reply::Json(body) = &samples.get("claude_messages_tools").unwrap().reply else {
            panic!("the tools sample is a complete answer");
        };
        let events = parsed(&synthesize(Format::Anthropic, body));
        let mut texts: Vec<String> = Vec::new();
        let mut inputs: Vec<String> = Vec::new();
        let mut names = Vec::new();
        for (_, data) in &events {
            match data["type"].as_str().unwrap() {
                "content_block_start" => {
                    texts.push(String::new());
                    inputs.push(String::new());
                    names.push(data["content_block"]["name"].clone());
                }
                "content_block_delta" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    let delta = &data["delta"];
                    texts[index].push_str(delta["text"].as_str().unwrap_or_default());
                    inputs[index].push_str(delta["partial_json"].as_str().unwrap_or_default());
                }
                _ => {}
            }
        }
        let content = body["content"].as_array().unwrap();
        assert_eq!(texts.len(), content.len());
        assert_eq!(texts[0], content[0]["text"].as_str().unwrap());
        for (index, block) in content.iter().enumerate().skip(1) {
            assert_eq!(names[index], block["name"]);
            let input: Value = serde_json::from_str(&inputs[index]).unwrap();
            assert_eq!(input, block["input"]);
        }
        let kinds: Vec<&str> = events
            .iter()
            .map(|(name, _)| name.as_deref().unwrap())
            .collect();
        assert_eq!(kinds.first(), Some(&"message_start"));
        assert_eq!(&kinds[kinds.len() - 2..], ["message_delta", "message_stop"]);
        assert_eq!(
            events[events.len() - 2].1["delta"]["stop_reason"],
            "tool_use"
        );
    }

    #[test]
    fn a_synthesized_chat_stream_rebuilds_the_tool_calls() {
        let samples = samples();
        let Reply::Json(body) = &samples.get("copilot_chat_completions_tools").unwrap().reply
        else {
            panic!("the tools sample is a complete answer");
        };
        let events = synthesize(Format::Chat, body);
        assert_eq!(events.last().unwrap().data, "[DONE]");
        let mut arguments = vec![String::new(); 2];
        for (_, chunk) in parsed(&events) {
            for call in chunk["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let index = call["index"].as_u64().unwrap() as usize;
                arguments[index].push_str(call["function"]["arguments"].as_str().unwrap());
            }
        }
        let calls = body["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap();
        for (index, call) in calls.iter().enumerate() {
            assert_eq!(arguments[index], call["function"]["arguments"]);
        }
    }

    #[test]
    fn a_synthesized_responses_stream_ends_with_the_answer() {
        let samples = samples();
        let Reply::Json(body) = &samples.get("codex_responses_tools").unwrap().reply else {
            panic!("the tools sample is a complete answer");
        };
        let events = parsed(&synthesize(Format::Responses, body));
        let (name, last) = events.last().unwrap();
        assert_eq!(name.as_deref(), Some("response.completed"));
        assert_eq!(last["response"]["output"], body["output"]);
        let numbers: Vec<u64> = events
            .iter()
            .map(|(_, e)| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
    }
}
