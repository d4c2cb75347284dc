//! Accumulation: every recorded stream, built into one response in each format, says
//! the same as the stream did (text, tool calls, usage, stop reason).

use std::path::PathBuf;

use ccproxy_formats::convert::{Accumulator, StreamConverter};
use ccproxy_formats::{Format, sse};
use serde_json::Value;

fn stream_sample(name: &str) -> Vec<sse::Event> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../tests/data/samples/{name}.json"));
    let value: Value = serde_json::from_slice(&std::fs::read(&path).expect("sample exists"))
        .expect("sample is JSON");
    value["response"]["events"]
        .as_array()
        .expect("a stream sample has events")
        .iter()
        .map(|event| sse::Event {
            event: event["event"].as_str().map(str::to_owned),
            data: event["data"].as_str().expect("event data").to_owned(),
            id: None,
        })
        .collect()
}

fn accumulate(from: Format, to: Format, events: &[sse::Event]) -> Value {
    let mut accumulator = Accumulator::new(from, to);
    for event in events {
        accumulator.push(event);
    }
    serde_json::from_slice(&accumulator.finish().expect("a complete stream accumulates"))
        .expect("JSON")
}

/// The text the stream carries, as the Anthropic conversion of it says.
fn streamed_text(from: Format, events: &[sse::Event]) -> String {
    let mut converter = StreamConverter::new(from, Format::AnthropicMessages);
    let mut out = Vec::new();
    for event in events {
        converter.push(event, &mut out);
    }
    converter.finish(&mut out);
    out.iter()
        .filter_map(|event| serde_json::from_str::<Value>(&event.data).ok())
        .filter(|data| data["delta"]["type"] == "text_delta")
        .map(|data| {
            data["delta"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn text_of(format: Format, response: &Value) -> String {
    match format {
        Format::AnthropicMessages => response["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|block| block["type"] == "text")
            .map(|block| block["text"].as_str().unwrap_or_default().to_owned())
            .collect(),
        Format::OpenAiChat => response["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        Format::OpenAiResponses => response["output"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| item["type"] == "message")
            .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
            .filter(|part| part["type"] == "output_text")
            .map(|part| part["text"].as_str().unwrap_or_default().to_owned())
            .collect(),
    }
}

#[test]
fn every_text_stream_accumulates_to_the_same_text_in_every_format() {
    for (name, from) in [
        ("claude_messages_stream", Format::AnthropicMessages),
        ("codex_responses_stream", Format::OpenAiResponses),
        ("codex_responses_structured_stream", Format::OpenAiResponses),
        ("copilot_chat_completions_stream", Format::OpenAiChat),
    ] {
        let events = stream_sample(name);
        let expected = streamed_text(from, &events);
        assert!(!expected.is_empty(), "{name}: the sample streams text");
        for to in Format::ALL {
            let response = accumulate(from, to, &events);
            assert_eq!(text_of(to, &response), expected, "{name} -> {to}");
        }
    }
}

#[test]
fn usage_survives_accumulation() {
    let events = stream_sample("claude_messages_stream");
    let response = accumulate(Format::AnthropicMessages, Format::OpenAiChat, &events);
    assert!(
        response["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0,
        "{response}"
    );
    assert!(
        response["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{response}"
    );
    let anthropic = accumulate(
        Format::AnthropicMessages,
        Format::AnthropicMessages,
        &events,
    );
    assert_eq!(anthropic["stop_reason"], "end_turn");
}

#[test]
fn a_truncated_stream_is_an_error_not_a_partial_response() {
    let events = stream_sample("codex_responses_stream");
    let mut accumulator = Accumulator::new(Format::OpenAiResponses, Format::AnthropicMessages);
    for event in &events[..events.len() / 2] {
        accumulator.push(event);
    }
    let error = accumulator.finish().unwrap_err();
    assert!(error.message.contains("ended before"), "{error}");
}
