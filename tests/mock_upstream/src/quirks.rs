//! Quirks: the ways real OpenAI-compatible servers (vLLM, Ollama,
//! OpenRouter, LiteLLM, Gemini's compatibility endpoint, nginx in front of
//! any of them) differ from the recorded OpenAI answers, one mode each, so a
//! test can show the proxy tolerates them.
//!
//! Switched on for the whole run by `--quirk NAME` (repeatable), or for a
//! while by `POST /_mock/quirks {"quirks": [NAME, …]}` (replaces the set;
//! `DELETE /_mock/quirks` and `POST /_mock/reset` clear it; `GET` lists the
//! modes in force). The modes:
//!
//! | mode | what the mock does |
//! |---|---|
//! | `no_usage_unless_asked` | Chat streams carry no `usage`, except a final `{"choices": [], "usage": …}` chunk before `[DONE]` when the request set `stream_options.include_usage` (OpenAI, vLLM) |
//! | `no_tool_index` | Chat tool-call deltas have no `index` (Gemini's compatibility endpoint) |
//! | `reasoning_content` | Chat answers think first in `reasoning_content` (DeepSeek, vLLM) |
//! | `reasoning` | the same in `reasoning` (OpenRouter, Ollama) |
//! | `empty_choices` | Chat streams hold chunks with `"choices": []` (first) and `"choices": null` (Azure's filter results, keep-alives) |
//! | `no_done` | Chat streams end without `data: [DONE]` |
//! | `html_errors` | error statuses come as an HTML page (nginx, Cloudflare) |
//! | `text_errors` | error statuses come as plain text (uvicorn's `Internal Server Error`) |
//! | `html_answer` | every API request is answered `200 text/html` (a base URL that points at a web page) |

use std::{collections::BTreeSet, fmt, str::FromStr};

use serde_json::{Value, json};

use crate::samples::{Event, Format, Reply, Selected};

/// One quirk mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quirk {
    /// No `usage` in Chat streams unless `stream_options.include_usage`.
    NoUsageUnlessAsked,
    /// No `index` on Chat tool-call deltas.
    NoToolIndex,
    /// Reasoning in `reasoning_content`.
    ReasoningContent,
    /// Reasoning in `reasoning`.
    Reasoning,
    /// Chunks with empty or null `choices`.
    EmptyChoices,
    /// No `[DONE]` at the end of a Chat stream.
    NoDone,
    /// Error bodies as HTML.
    HtmlErrors,
    /// Error bodies as plain text.
    TextErrors,
    /// `200 text/html` for every API request.
    HtmlAnswer,
}

const ALL: [(Quirk, &str); 9] = [
    (Quirk::NoUsageUnlessAsked, "no_usage_unless_asked"),
    (Quirk::NoToolIndex, "no_tool_index"),
    (Quirk::ReasoningContent, "reasoning_content"),
    (Quirk::Reasoning, "reasoning"),
    (Quirk::EmptyChoices, "empty_choices"),
    (Quirk::NoDone, "no_done"),
    (Quirk::HtmlErrors, "html_errors"),
    (Quirk::TextErrors, "text_errors"),
    (Quirk::HtmlAnswer, "html_answer"),
];

impl Quirk {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(quirk, _)| *quirk == self)
            .map_or("", |(_, name)| name)
    }
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Quirk {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        ALL.iter()
            .find(|(_, name)| *name == text.trim())
            .map(|(quirk, _)| *quirk)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL.iter().map(|(_, name)| *name).collect();
                format!("no quirk {text:?}; the modes are {}", names.join(", "))
            })
    }
}

/// The modes in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks(BTreeSet<Quirk>);

/// The reasoning a quirky answer thinks first, in two pieces.
const THOUGHTS: [&str; 2] = ["The user greets me. ", "I should answer briefly."];

/// A body the mock sends as it is: status, content type, bytes.
pub(crate) type RawAnswer = (u16, &'static str, Vec<u8>);

impl Quirks {
    /// These modes.
    pub fn new(quirks: impl IntoIterator<Item = Quirk>) -> Self {
        Self(quirks.into_iter().collect())
    }

    /// `{"quirks": [NAME, …]}`, as `POST /_mock/quirks` takes it.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|error| format!("the quirks are not JSON: {error}"))?;
        let names = value
            .get("quirks")
            .and_then(Value::as_array)
            .ok_or("send {\"quirks\": [NAME, …]}")?;
        names
            .iter()
            .map(|name| name.as_str().ok_or("quirk names are strings")?.parse())
            .collect::<Result<BTreeSet<_>, String>>()
            .map(Self)
    }

    /// Both sets together.
    pub(crate) fn union(&self, other: &Quirks) -> Quirks {
        Quirks(self.0.union(&other.0).copied().collect())
    }

    /// The names, for `GET /_mock/quirks`.
    pub(crate) fn describe(&self) -> Value {
        json!(self.0.iter().map(|quirk| quirk.name()).collect::<Vec<_>>())
    }

    fn has(&self, quirk: Quirk) -> bool {
        self.0.contains(&quirk)
    }

    /// The HTML page that answers every API request, with `html_answer`.
    pub(crate) fn html_answer(&self) -> Option<RawAnswer> {
        self.has(Quirk::HtmlAnswer).then(|| {
            (
                200,
                "text/html; charset=utf-8",
                b"<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body><h1>It works!</h1><p>This is a web page, not an API.</p></body></html>\n".to_vec(),
            )
        })
    }

    /// The body an error status gets instead of the provider's JSON, with
    /// `html_errors` or `text_errors`.
    pub(crate) fn error_page(&self, status: u16) -> Option<RawAnswer> {
        if self.has(Quirk::HtmlErrors) {
            let page = format!(
                "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            );
            return Some((status, "text/html", page.into_bytes()));
        }
        if self.has(Quirk::TextErrors) {
            return Some((
                status,
                "text/plain; charset=utf-8",
                b"Internal Server Error".to_vec(),
            ));
        }
        None
    }

    /// Changes the answer to a Chat Completions `request` as the modes say;
    /// other formats pass unchanged.
    pub fn apply(&self, format: Format, request: &Value, mut selected: Selected) -> Selected {
        if format != Format::Chat || self.0.is_empty() {
            return selected;
        }
        let mut names = Vec::new();
        match &mut selected.reply {
            Reply::Json(body) => {
                for (quirk, field) in [
                    (Quirk::ReasoningContent, "reasoning_content"),
                    (Quirk::Reasoning, "reasoning"),
                ] {
                    if self.has(quirk)
                        && let Some(message) = body.pointer_mut("/choices/0/message")
                    {
                        message[field] = json!(THOUGHTS.concat());
                        names.push(quirk.name());
                    }
                }
            }
            Reply::Events(events) => {
                names = self.apply_to_stream(request, events);
            }
        }
        if !names.is_empty() {
            selected.source = format!("{}+quirks:{}", selected.source, names.join(","));
        }
        selected
    }

    fn apply_to_stream(&self, request: &Value, events: &mut Vec<Event>) -> Vec<&'static str> {
        let mut applied = Vec::new();
        let mut chunks: Vec<Option<Value>> = events
            .iter()
            .map(|event| serde_json::from_str(&event.data).ok())
            .collect();
        // Identity fields for chunks made here, from the first chunk with a
        // choice (Azure and Copilot open with a prompt-filter chunk).
        let has_choice = |chunk: &Value| {
            chunk
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(|choices| !choices.is_empty())
        };
        let identity = chunks
            .iter()
            .flatten()
            .find(|chunk| has_choice(chunk))
            .cloned()
            .unwrap_or_default();
        let made = |choices: Value, extra: Option<(&str, Value)>| {
            let mut chunk = json!({
                "id": identity["id"], "object": "chat.completion.chunk",
                "created": identity["created"], "model": identity["model"],
            });
            if !choices.is_null() || extra.is_none() {
                chunk["choices"] = choices;
            }
            if let Some((key, value)) = extra {
                chunk[key] = value;
            }
            chunk
        };
        if self.has(Quirk::NoToolIndex) {
            for chunk in chunks.iter_mut().flatten() {
                let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
                    continue;
                };
                for choice in choices {
                    if let Some(calls) = choice
                        .pointer_mut("/delta/tool_calls")
                        .and_then(Value::as_array_mut)
                    {
                        for call in calls {
                            if let Some(call) = call.as_object_mut() {
                                call.remove("index");
                            }
                        }
                    }
                }
            }
            applied.push(Quirk::NoToolIndex.name());
        }
        let mut usage = None;
        if self.has(Quirk::NoUsageUnlessAsked) {
            for chunk in chunks.iter_mut().flatten() {
                if let Some(found) = chunk.as_object_mut().and_then(|c| c.remove("usage"))
                    && !found.is_null()
                {
                    usage = Some(found);
                }
            }
            // A usage-only chunk emptied of its usage is dropped.
            for chunk in &mut chunks {
                let emptied = chunk.as_ref().is_some_and(|c| {
                    c.get("choices")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty)
                        && c.get("usage").is_none()
                });
                if emptied {
                    *chunk = None;
                }
            }
            applied.push(Quirk::NoUsageUnlessAsked.name());
        }
        let mut rebuilt: Vec<Event> = Vec::with_capacity(events.len() + 4);
        let data = |value: &Value| Event {
            name: None,
            data: value.to_string(),
        };
        let asked_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let mut first = true;
        for (event, chunk) in events.drain(..).zip(chunks) {
            let is_done = event.data.trim() == "[DONE]";
            if is_done {
                if let (Some(usage), true) = (usage.take(), asked_usage) {
                    rebuilt.push(data(&made(json!([]), Some(("usage", usage)))));
                }
                if self.has(Quirk::NoDone) {
                    continue;
                }
                rebuilt.push(event);
                continue;
            }
            let Some(chunk) = chunk else {
                // Unparsable events pass as they are; emptied ones are gone.
                if serde_json::from_str::<Value>(&event.data).is_err() {
                    rebuilt.push(event);
                }
                continue;
            };
            let opens = first && has_choice(&chunk);
            if opens && self.has(Quirk::EmptyChoices) {
                rebuilt.push(data(&made(json!([]), None)));
            }
            rebuilt.push(data(&chunk));
            if opens {
                for (quirk, field) in [
                    (Quirk::ReasoningContent, "reasoning_content"),
                    (Quirk::Reasoning, "reasoning"),
                ] {
                    if self.has(quirk) {
                        for thought in THOUGHTS {
                            rebuilt.push(data(&made(
                                json!([{"index": 0, "delta": {field: thought}, "finish_reason": null}]),
                                None,
                            )));
                        }
                    }
                }
                if self.has(Quirk::EmptyChoices) {
                    rebuilt.push(data(&made(Value::Null, Some(("choices", Value::Null)))));
                }
                first = false;
            }
        }
        for (quirk, name) in [
            (Quirk::ReasoningContent, "reasoning_content"),
            (Quirk::Reasoning, "reasoning"),
            (Quirk::EmptyChoices, "empty_choices"),
            (Quirk::NoDone, "no_done"),
        ] {
            if self.has(quirk) {
                applied.push(name);
            }
        }
        *events = rebuilt;
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Selected {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Hi",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "shell", "arguments": "{\"cmd\":\"ls\"}"}}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        });
        Selected {
            source: "chat".to_owned(),
            status: 200,
            headers: Vec::new(),
            reply: Reply::Events(crate::synthesize(Format::Chat, &body)),
        }
    }

    fn chunks(selected: &Selected) -> Vec<String> {
        match &selected.reply {
            Reply::Events(events) => events.iter().map(|e| e.data.clone()).collect(),
            Reply::Json(_) => panic!("not a stream"),
        }
    }

    #[test]
    fn names_parse_and_unknown_ones_are_listed() {
        let quirks = Quirks::parse(br#"{"quirks": ["no_done", "reasoning"]}"#).unwrap();
        assert_eq!(quirks.describe(), json!(["reasoning", "no_done"]));
        let error = Quirks::parse(br#"{"quirks": ["nope"]}"#).unwrap_err();
        assert!(error.contains("no_tool_index"), "{error}");
    }

    #[test]
    fn usage_comes_only_when_asked_and_then_in_its_own_chunk() {
        let quirks = Quirks::new([Quirk::NoUsageUnlessAsked]);
        let plain = quirks.apply(Format::Chat, &json!({"stream": true}), stream());
        let data = chunks(&plain);
        assert!(data.iter().all(|d| !d.contains("usage")), "{data:?}");
        assert_eq!(data.last().unwrap(), "[DONE]");
        let asked = quirks.apply(
            Format::Chat,
            &json!({"stream": true, "stream_options": {"include_usage": true}}),
            stream(),
        );
        let data = chunks(&asked);
        let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], 5);
        assert_eq!(data.iter().filter(|d| d.contains("usage")).count(), 1);
    }

    #[test]
    fn tool_indexes_go_reasoning_comes_and_done_can_go() {
        let quirks = Quirks::new([
            Quirk::NoToolIndex,
            Quirk::ReasoningContent,
            Quirk::EmptyChoices,
            Quirk::NoDone,
        ]);
        let changed = quirks.apply(Format::Chat, &json!({}), stream());
        assert!(
            changed.source.contains("no_tool_index"),
            "{}",
            changed.source
        );
        let data = chunks(&changed);
        assert!(data.iter().all(|d| d != "[DONE]"));
        let calls: Vec<Value> = data
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls").cloned())
            .flat_map(|calls| calls.as_array().cloned().unwrap_or_default())
            .collect();
        assert!(!calls.is_empty());
        assert!(
            calls.iter().all(|call| call.get("index").is_none()),
            "{calls:?}"
        );
        assert!(data[0].contains("\"choices\":[]"), "{}", data[0]);
        assert!(data.iter().any(|d| d.contains("\"choices\":null")));
        assert_eq!(
            data.iter()
                .filter(|d| d.contains("reasoning_content"))
                .count(),
            2
        );
        // Other formats are left alone.
        let anthropic = quirks.apply(Format::Anthropic, &json!({}), stream());
        assert_eq!(chunks(&anthropic), chunks(&stream()));
    }

    #[test]
    fn error_pages_replace_json_errors() {
        let (status, content_type, body) =
            Quirks::new([Quirk::HtmlErrors]).error_page(502).unwrap();
        assert_eq!((status, content_type), (502, "text/html"));
        assert!(String::from_utf8(body).unwrap().contains("<h1>502"));
        assert!(Quirks::default().error_page(500).is_none());
        assert!(Quirks::new([Quirk::HtmlAnswer]).html_answer().is_some());
    }
}
