//! Conformance on every recorded exchange in `tests/data/samples/`: each request, response
//! and stream is converted into the two other formats, validated against the target's
//! grammar, and converted back; the round trip keeps text, tool calls and usage.
//!
//! No recorded stream has a tool call; `tests/streams.rs` covers streamed tool calls (two
//! parallel calls, arguments in fragments) in every direction and back.

mod grammar;

use std::path::PathBuf;

use ccproxy_formats::convert::{self, StreamConverter};
use ccproxy_formats::{Format, sse};
use serde_json::Value;

struct Sample {
    name: String,
    format: Format,
    request: Value,
    body: Option<Value>,
    events: Vec<sse::Event>,
}

fn samples() -> Vec<Sample> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/samples");
    let mut samples: Vec<Sample> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let value: Value =
                serde_json::from_slice(&std::fs::read(&path).expect("readable sample"))
                    .expect("sample is JSON");
            let format = match name.split('_').next() {
                Some("claude") => Format::AnthropicMessages,
                Some("codex") => Format::OpenAiResponses,
                Some("copilot") => Format::OpenAiChat,
                other => panic!("sample {name}: unknown prefix {other:?}"),
            };
            let events = value["response"]["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|event| sse::Event {
                    event: event["event"].as_str().map(str::to_owned),
                    data: event["data"].as_str().expect("event data").to_owned(),
                    id: None,
                })
                // The recorder of the original appended `[DONE]` to Anthropic streams (its
                // own bug); Anthropic never sends it.
                .filter(|event| !(format == Format::AnthropicMessages && event.is_done()))
                .collect();
            Sample {
                name,
                format,
                request: value["request"]["payload"].clone(),
                body: value["response"].get("body").cloned(),
                events,
            }
        })
        .collect();
    samples.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(samples.len(), 11, "the recorded samples are all there");
    samples
}

fn others(format: Format) -> impl Iterator<Item = Format> {
    Format::ALL
        .into_iter()
        .filter(move |other| *other != format)
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialisable")
}

/// The text of a request's conversation, per format, for round-trip comparison.
fn request_texts(format: Format, request: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    let mut push = |value: &Value| {
        if let Some(text) = value.as_str() {
            texts.push(text.to_owned());
        }
    };
    match format {
        Format::AnthropicMessages | Format::OpenAiChat => {
            for message in request["messages"].as_array().into_iter().flatten() {
                match &message["content"] {
                    Value::String(_) => push(&message["content"]),
                    Value::Array(parts) => parts.iter().for_each(|part| push(&part["text"])),
                    _ => {}
                }
            }
        }
        Format::OpenAiResponses => match &request["input"] {
            Value::String(_) => push(&request["input"]),
            Value::Array(items) => {
                for item in items {
                    match &item["content"] {
                        Value::String(_) => push(&item["content"]),
                        Value::Array(parts) => parts.iter().for_each(|part| push(&part["text"])),
                        _ => {}
                    }
                }
            }
            _ => {}
        },
    }
    texts
}

fn tool_names(format: Format, request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tool| {
            let name = match format {
                Format::OpenAiChat => &tool["function"]["name"],
                _ => &tool["name"],
            };
            name.as_str().expect("tool name").to_owned()
        })
        .collect()
}

#[test]
fn requests_convert_to_every_format_and_back() {
    for sample in samples() {
        let source = bytes(&sample.request);
        for target in others(sample.format) {
            let context = format!("{} request {} -> {target}", sample.name, sample.format);
            let converted = convert::request(sample.format, target, &source)
                .unwrap_or_else(|error| panic!("{context}: {error}"));
            let value: Value = serde_json::from_slice(&converted).expect("JSON");
            // The target's own typed model accepts it.
            match target {
                Format::AnthropicMessages => {
                    let request: ccproxy_formats::anthropic::Request =
                        serde_json::from_value(value.clone())
                            .unwrap_or_else(|e| panic!("{context}: {e}"));
                    assert!(
                        request.max_tokens.is_some(),
                        "{context}: Anthropic needs max_tokens"
                    );
                    assert_eq!(request.messages[0].role, "user", "{context}");
                }
                Format::OpenAiChat => {
                    serde_json::from_value::<ccproxy_formats::openai_chat::Request>(value.clone())
                        .unwrap_or_else(|e| panic!("{context}: {e}"));
                }
                Format::OpenAiResponses => {
                    serde_json::from_value::<ccproxy_formats::openai_responses::Request>(
                        value.clone(),
                    )
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                }
            }
            assert_eq!(
                value["model"], sample.request["model"],
                "{context}: model id kept"
            );
            assert_eq!(
                value["stream"], sample.request["stream"],
                "{context}: stream flag kept"
            );
            assert_eq!(
                request_texts(target, &value),
                request_texts(sample.format, &sample.request),
                "{context}: texts"
            );
            assert_eq!(
                tool_names(target, &value),
                tool_names(sample.format, &sample.request),
                "{context}: tools"
            );

            let back = convert::request(target, sample.format, &converted)
                .unwrap_or_else(|error| panic!("{context} and back: {error}"));
            let back: Value = serde_json::from_slice(&back).expect("JSON");
            assert_eq!(
                request_texts(sample.format, &back),
                request_texts(sample.format, &sample.request),
                "{context}: round trip texts"
            );
            assert_eq!(
                tool_names(sample.format, &back),
                tool_names(sample.format, &sample.request),
                "{context}: round trip tools"
            );
        }
    }
}

#[test]
fn responses_convert_to_every_format_and_back() {
    let mut checked = 0;
    for sample in samples() {
        let Some(body) = &sample.body else { continue };
        let source = grammar::response_body(sample.format, body)
            .unwrap_or_else(|error| panic!("{}: recorded body: {error}", sample.name));
        for target in others(sample.format) {
            let context = format!("{} response {} -> {target}", sample.name, sample.format);
            let converted = convert::response(sample.format, target, &bytes(body))
                .unwrap_or_else(|error| panic!("{context}: {error}"));
            let value: Value = serde_json::from_slice(&converted).expect("JSON");
            match target {
                Format::AnthropicMessages => assert_eq!(value["type"], "message", "{context}"),
                Format::OpenAiChat => assert_eq!(value["object"], "chat.completion", "{context}"),
                Format::OpenAiResponses => assert_eq!(value["object"], "response", "{context}"),
            }
            let summary = grammar::response_body(target, &value)
                .unwrap_or_else(|error| panic!("{context}: {error}"));
            assert_eq!(summary.text, source.text, "{context}: text");
            assert_eq!(
                summary.tool_calls, source.tool_calls,
                "{context}: tool calls"
            );
            assert_eq!(summary.model, source.model, "{context}: model");
            assert_eq!(
                (
                    summary.input_tokens,
                    summary.output_tokens,
                    summary.cached_tokens
                ),
                (
                    source.input_tokens,
                    source.output_tokens,
                    source.cached_tokens
                ),
                "{context}: usage"
            );
            let calls_tools = !source.tool_calls.is_empty();
            let expected_stop = match (target, calls_tools) {
                (Format::AnthropicMessages, true) => "tool_use",
                (Format::AnthropicMessages, false) => "end_turn",
                (Format::OpenAiChat, true) => "tool_calls",
                (Format::OpenAiChat, false) => "stop",
                (Format::OpenAiResponses, _) => "completed",
            };
            assert_eq!(summary.stop, expected_stop, "{context}: stop reason");

            let back = convert::response(target, sample.format, &converted)
                .unwrap_or_else(|error| panic!("{context} and back: {error}"));
            let back = grammar::response_body(
                sample.format,
                &serde_json::from_slice(&back).expect("JSON"),
            )
            .unwrap_or_else(|error| panic!("{context} and back: {error}"));
            assert_eq!(back.text, source.text, "{context}: round trip text");
            assert_eq!(
                back.tool_calls, source.tool_calls,
                "{context}: round trip tool calls"
            );
            assert_eq!(back.id, source.id, "{context}: round trip id");
            assert_eq!(
                (back.input_tokens, back.output_tokens, back.cached_tokens),
                (
                    source.input_tokens,
                    source.output_tokens,
                    source.cached_tokens
                ),
                "{context}: round trip usage"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 14, "7 non-stream samples, 2 targets each");
}

/// Encodes events to bytes and decodes them again in chunks of `chunk` bytes, as a client
/// would receive them.
fn through_the_wire(events: &[sse::Event], chunk: usize) -> Vec<sse::Event> {
    let mut wire = Vec::new();
    for event in events {
        event.encode(&mut wire);
    }
    let mut decoder = sse::Decoder::new();
    let mut out = Vec::new();
    for piece in wire.chunks(chunk) {
        decoder.push(piece, &mut out).expect("events within limits");
    }
    decoder.finish(&mut out).expect("events within limits");
    out
}

fn convert_stream(converter: &mut StreamConverter, events: &[sse::Event]) -> Vec<sse::Event> {
    let mut out = Vec::new();
    for event in events {
        converter.push(event, &mut out);
    }
    converter.finish(&mut out);
    out
}

fn source_summary(sample: &Sample) -> grammar::Summary {
    match sample.format {
        Format::AnthropicMessages => grammar::anthropic(&sample.events),
        Format::OpenAiChat => grammar::chat(&sample.events, grammar::Mode::Upstream),
        Format::OpenAiResponses => grammar::responses(&sample.events),
    }
    .unwrap_or_else(|error| {
        panic!(
            "{}: the recorded stream breaks its own grammar: {error}",
            sample.name
        )
    })
}

#[test]
fn streams_convert_with_the_target_grammar_and_back() {
    let mut checked = 0;
    for sample in samples() {
        if sample.events.is_empty() {
            continue;
        }
        let source = source_summary(&sample);
        let upstream = through_the_wire(&sample.events, 7);
        assert_eq!(
            upstream, sample.events,
            "{}: the SSE codec round-trips the recording",
            sample.name
        );
        for target in others(sample.format) {
            let context = format!("{} stream {} -> {target}", sample.name, sample.format);
            let converted =
                convert_stream(&mut StreamConverter::new(sample.format, target), &upstream);
            let received = through_the_wire(&converted, 13);
            let summary = grammar::validate(target, &received)
                .unwrap_or_else(|error| panic!("{context}: {error}\n{received:#?}"));
            assert_eq!(summary.text, source.text, "{context}: text");
            assert_eq!(summary.reasoning, source.reasoning, "{context}: reasoning");
            assert_eq!(
                summary.tool_calls, source.tool_calls,
                "{context}: tool calls"
            );
            assert_eq!(summary.model, source.model, "{context}: model");
            assert_eq!(
                (
                    summary.input_tokens,
                    summary.output_tokens,
                    summary.cached_tokens
                ),
                (
                    source.input_tokens,
                    source.output_tokens,
                    source.cached_tokens
                ),
                "{context}: usage"
            );
            assert_eq!(summary.error, None, "{context}: no error");

            let mut round_trip =
                StreamConverter::chain(&[sample.format, target, sample.format]).expect("non-empty");
            let back = convert_stream(&mut round_trip, &upstream);
            let back_summary = match sample.format {
                Format::OpenAiChat => grammar::chat(&back, grammar::Mode::Ours),
                format => grammar::validate(format, &back),
            }
            .unwrap_or_else(|error| panic!("{context} and back: {error}"));
            assert_eq!(back_summary.text, source.text, "{context}: round trip text");
            assert_eq!(
                back_summary.tool_calls, source.tool_calls,
                "{context}: round trip tool calls"
            );
            assert_eq!(back_summary.id, source.id, "{context}: round trip id");
            assert_eq!(
                (
                    back_summary.input_tokens,
                    back_summary.output_tokens,
                    back_summary.cached_tokens
                ),
                (
                    source.input_tokens,
                    source.output_tokens,
                    source.cached_tokens
                ),
                "{context}: round trip usage"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 8, "4 stream samples, 2 targets each");
}

#[test]
fn identity_streams_pass_through_unchanged() {
    for sample in samples() {
        let mut converter = StreamConverter::new(sample.format, sample.format);
        assert_eq!(
            convert_stream(&mut converter, &sample.events),
            sample.events,
            "{}",
            sample.name
        );
    }
}

#[test]
fn model_alias_is_written_back_into_converted_streams() {
    for sample in samples()
        .into_iter()
        .filter(|sample| !sample.events.is_empty())
    {
        for target in Format::ALL {
            let mut converter = StreamConverter::new(sample.format, target).with_model("my-alias");
            let out = convert_stream(&mut converter, &sample.events);
            let models: Vec<String> = out
                .iter()
                .filter_map(|event| serde_json::from_str::<Value>(&event.data).ok())
                .flat_map(|value| {
                    [
                        value.pointer("/model"),
                        value.pointer("/message/model"),
                        value.pointer("/response/model"),
                    ]
                    .into_iter()
                    .flatten()
                    .filter_map(|model| model.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
                })
                .collect();
            assert!(
                !models.is_empty(),
                "{} -> {target}: some event names the model",
                sample.name
            );
            assert!(
                models.iter().all(|model| model == "my-alias"),
                "{} -> {target}: {models:?}",
                sample.name
            );
        }
    }
}
