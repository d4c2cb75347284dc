//! Stream conversion of what the recorded samples lack: parallel tool calls streamed in
//! fragments, thinking, errors and truncated upstreams, in every direction.

mod grammar;

use ccproxy_formats::convert::StreamConverter;
use ccproxy_formats::{Format, sse};
use serde_json::{Value, json};

fn anthropic_event(value: Value) -> sse::Event {
    sse::Event::new(value["type"].as_str().expect("type"), value.to_string())
}

fn responses_event(sequence_number: &mut u64, mut value: Value) -> sse::Event {
    value["sequence_number"] = json!(*sequence_number);
    *sequence_number += 1;
    sse::Event::new(value["type"].as_str().expect("type"), value.to_string())
}

/// Thinking, text and two tool calls with their input in fragments, as Claude streams them.
fn anthropic_tools_stream() -> Vec<sse::Event> {
    let mut events = vec![
        anthropic_event(
            json!({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":1}}}),
        ),
        anthropic_event(
            json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}),
        ),
        anthropic_event(
            json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Two cities, "}}),
        ),
        anthropic_event(
            json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"two tools."}}),
        ),
        anthropic_event(
            json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2lnbmF0dXJl"}}),
        ),
        anthropic_event(json!({"type":"content_block_stop","index":0})),
        anthropic_event(
            json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}),
        ),
        anthropic_event(
            json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Checking both."}}),
        ),
        anthropic_event(json!({"type":"content_block_stop","index":1})),
        anthropic_event(json!({"type":"ping"})),
    ];
    for (index, id, name, fragments) in [
        (
            2,
            "toolu_01A",
            "get_weather",
            ["{\"locat", "ion\": \"New", " York\"}"],
        ),
        (3, "toolu_01B", "get_time", ["", "{\"zone\":", "\"EST\"}"]),
    ] {
        events.push(anthropic_event(json!({"type":"content_block_start","index":index,"content_block":{"type":"tool_use","id":id,"name":name,"input":{}}})));
        for fragment in fragments {
            events.push(anthropic_event(json!({"type":"content_block_delta","index":index,"delta":{"type":"input_json_delta","partial_json":fragment}})));
        }
        events.push(anthropic_event(
            json!({"type":"content_block_stop","index":index}),
        ));
    }
    events.push(anthropic_event(json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":42}})));
    events.push(anthropic_event(json!({"type":"message_stop"})));
    events
}

/// Text then two parallel tool calls, OpenAI style: id and name on the first fragment, the
/// finish chunk, then a usage-only chunk and `[DONE]`.
fn chat_tools_stream() -> Vec<sse::Event> {
    let chunk = |delta: Value, finish: Value| {
        sse::Event::data(json!({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"delta":delta,"finish_reason":finish}]}).to_string())
    };
    vec![
        chunk(json!({"role":"assistant","content":""}), Value::Null),
        chunk(json!({"content":"Checking both."}), Value::Null),
        chunk(json!({"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}}]}), Value::Null),
        chunk(json!({"tool_calls":[{"index":0,"function":{"arguments":"{\"location\""}}]}), Value::Null),
        chunk(json!({"tool_calls":[{"index":0,"function":{"arguments":": \"New York\"}"}}]}), Value::Null),
        chunk(json!({"tool_calls":[{"index":1,"id":"call_B","type":"function","function":{"name":"get_time","arguments":"{\"zone\":"}}]}), Value::Null),
        chunk(json!({"tool_calls":[{"index":1,"function":{"arguments":"\"EST\"}"}}]}), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        sse::Event::data(json!({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":115,"completion_tokens":42,"total_tokens":157,"prompt_tokens_details":{"cached_tokens":100}}}).to_string()),
        sse::Event::done(),
    ]
}

/// Reasoning summary, text and two function calls, as the Responses API streams them.
fn responses_tools_stream() -> Vec<sse::Event> {
    let mut seq = 0;
    let response = |status: &str, output: Value, usage: Value| json!({"id":"resp_1","object":"response","created_at":1700000000,"status":status,"model":"gpt-5","output":output,"usage":usage});
    let mut events = vec![
        responses_event(
            &mut seq,
            json!({"type":"response.created","response":response("in_progress", json!([]), Value::Null)}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.in_progress","response":response("in_progress", json!([]), Value::Null)}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.output_item.added","output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.reasoning_summary_part.added","item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""}}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"delta":"Two cities, "}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"delta":"two tools."}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.reasoning_summary_text.done","item_id":"rs_1","output_index":0,"summary_index":0,"text":"Two cities, two tools."}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.reasoning_summary_part.done","item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":"Two cities, two tools."}}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.output_item.done","output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"Two cities, two tools."}]}}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.output_item.added","output_index":1,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.content_part.added","item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.output_text.delta","item_id":"msg_1","output_index":1,"content_index":0,"delta":"Checking both."}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.output_text.done","item_id":"msg_1","output_index":1,"content_index":0,"text":"Checking both."}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.content_part.done","item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"output_text","text":"Checking both.","annotations":[]}}),
        ),
        responses_event(
            &mut seq,
            json!({"type":"response.output_item.done","output_index":1,"item":{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Checking both.","annotations":[]}]}}),
        ),
    ];
    let mut output = vec![
        json!({"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"Two cities, two tools."}]}),
        json!({"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Checking both.","annotations":[]}]}),
    ];
    for (output_index, item_id, call_id, name, fragments) in [
        (
            2,
            "fc_A",
            "call_A",
            "get_weather",
            ["{\"location\"", ": \"New York\"}"],
        ),
        (3, "fc_B", "call_B", "get_time", ["{\"zone\":", "\"EST\"}"]),
    ] {
        events.push(responses_event(&mut seq, json!({"type":"response.output_item.added","output_index":output_index,"item":{"id":item_id,"type":"function_call","status":"in_progress","call_id":call_id,"name":name,"arguments":""}})));
        for fragment in fragments {
            events.push(responses_event(&mut seq, json!({"type":"response.function_call_arguments.delta","item_id":item_id,"output_index":output_index,"delta":fragment})));
        }
        let arguments = fragments.concat();
        events.push(responses_event(&mut seq, json!({"type":"response.function_call_arguments.done","item_id":item_id,"output_index":output_index,"arguments":arguments})));
        let item = json!({"id":item_id,"type":"function_call","status":"completed","call_id":call_id,"name":name,"arguments":arguments});
        events.push(responses_event(
            &mut seq,
            json!({"type":"response.output_item.done","output_index":output_index,"item":item}),
        ));
        output.push(item);
    }
    events.push(responses_event(&mut seq, json!({"type":"response.completed","response":response("completed", Value::Array(output), json!({"input_tokens":115,"input_tokens_details":{"cached_tokens":100},"output_tokens":42,"output_tokens_details":{"reasoning_tokens":7},"total_tokens":157}))})));
    events
}

fn upstream(format: Format) -> Vec<sse::Event> {
    match format {
        Format::AnthropicMessages => anthropic_tools_stream(),
        Format::OpenAiChat => chat_tools_stream(),
        Format::OpenAiResponses => responses_tools_stream(),
    }
}

fn convert(from: Format, to: Format, events: &[sse::Event]) -> Vec<sse::Event> {
    let mut converter = StreamConverter::new(from, to);
    let mut out = Vec::new();
    for event in events {
        converter.push(event, &mut out);
    }
    converter.finish(&mut out);
    out
}

fn upstream_summary(format: Format) -> grammar::Summary {
    let events = upstream(format);
    match format {
        Format::OpenAiChat => grammar::chat(&events, grammar::Mode::Upstream),
        other => grammar::validate(other, &events),
    }
    .unwrap_or_else(|error| panic!("the {format} fixture is itself valid: {error}"))
}

#[test]
fn tool_streams_convert_in_every_direction() {
    for from in Format::ALL {
        let source = upstream_summary(from);
        assert_eq!(source.tool_calls.len(), 2, "{from}: fixture has two calls");
        for to in Format::ALL.into_iter().filter(|to| *to != from) {
            let context = format!("{from} -> {to}");
            let out = convert(from, to, &upstream(from));
            let summary = grammar::validate(to, &out)
                .unwrap_or_else(|error| panic!("{context}: {error}\n{out:#?}"));
            assert_eq!(
                summary.tool_calls, source.tool_calls,
                "{context}: tool calls"
            );
            assert_eq!(summary.text, source.text, "{context}: text");
            let expected_reasoning = if from == Format::OpenAiChat {
                ""
            } else {
                "Two cities, two tools."
            };
            assert_eq!(
                summary.reasoning, expected_reasoning,
                "{context}: reasoning"
            );
            assert_eq!(
                (
                    summary.input_tokens,
                    summary.cached_tokens,
                    summary.output_tokens
                ),
                (
                    source.input_tokens,
                    source.cached_tokens,
                    source.output_tokens
                ),
                "{context}: usage"
            );
            let stop = match to {
                Format::AnthropicMessages => "tool_use",
                Format::OpenAiChat => "tool_calls",
                Format::OpenAiResponses => "completed",
            };
            assert_eq!(summary.stop, stop, "{context}: stop reason");
        }
    }
}

#[test]
fn anthropic_thinking_reaches_chat_as_reasoning_content_in_one_block() {
    let out = convert(
        Format::AnthropicMessages,
        Format::OpenAiChat,
        &anthropic_tools_stream(),
    );
    let reasoning_chunks: Vec<&str> = out
        .iter()
        .filter(|event| event.data.contains("reasoning_content"))
        .map(|event| event.data.as_str())
        .collect();
    assert_eq!(reasoning_chunks.len(), 2, "one chunk per thinking delta");
    assert!(
        out.iter().all(|event| !event.data.contains("<thinking")),
        "no XML wrapping of thinking"
    );
}

#[test]
fn chat_tool_calls_are_streamed_incrementally_with_their_own_index() {
    let mut converter = StreamConverter::new(Format::AnthropicMessages, Format::OpenAiChat);
    let mut tool_chunks = Vec::new();
    for event in anthropic_tools_stream() {
        let mut out = Vec::new();
        converter.push(&event, &mut out);
        let value: Value = serde_json::from_str(&event.data).expect("json");
        let is_args = value["delta"]["type"] == "input_json_delta";
        if is_args
            && !value["delta"]["partial_json"]
                .as_str()
                .expect("text")
                .is_empty()
        {
            // Every non-empty fragment goes out as soon as it arrives.
            assert_eq!(out.len(), 1, "fragment {event:?} was forwarded at once");
        }
        for chunk in out {
            let chunk: Value = match serde_json::from_str(&chunk.data) {
                Ok(chunk) => chunk,
                Err(_) => continue,
            };
            if let Some(calls) = chunk["choices"][0]["delta"]["tool_calls"].as_array() {
                tool_chunks.push(calls[0].clone());
            }
        }
    }
    // Chat counts tool calls from 0, whatever the Anthropic block index (2 and 3 here).
    let indexes: Vec<u64> = tool_chunks
        .iter()
        .map(|call| call["index"].as_u64().expect("index on every chunk"))
        .collect();
    assert_eq!(indexes, [0, 0, 0, 0, 1, 1, 1]);
    assert!(
        tool_chunks.len() > 2,
        "arguments arrive in several chunks, not whole at block stop"
    );
}

#[test]
fn anthropic_streams_never_end_in_done_and_chat_streams_always_do() {
    for from in [Format::OpenAiChat, Format::OpenAiResponses] {
        let out = convert(from, Format::AnthropicMessages, &upstream(from));
        assert!(
            out.iter().all(|event| !event.is_done()),
            "{from}: no [DONE] for Anthropic clients"
        );
        assert_eq!(
            out.last().and_then(|event| event.event.as_deref()),
            Some("message_stop")
        );
    }
    for from in [Format::AnthropicMessages, Format::OpenAiResponses] {
        let out = convert(from, Format::OpenAiChat, &upstream(from));
        assert!(
            out.last().is_some_and(sse::Event::is_done),
            "{from}: Chat ends with [DONE]"
        );
    }
}

#[test]
fn truncated_upstreams_end_in_the_client_formats_error() {
    for from in Format::ALL {
        let events = upstream(from);
        for cut in [1, events.len() / 2, events.len() - 3] {
            for to in Format::ALL.into_iter().filter(|to| *to != from) {
                let out = convert(from, to, &events[..cut]);
                let summary = grammar::validate(to, &out).unwrap_or_else(|error| {
                    panic!("{from} cut at {cut} -> {to}: {error}\n{out:#?}")
                });
                assert!(
                    summary
                        .error
                        .as_deref()
                        .is_some_and(|message| message.contains("ended before")),
                    "{from} cut at {cut} -> {to}: {summary:?}"
                );
            }
        }
    }
}

#[test]
fn upstream_error_events_become_the_client_formats_error() {
    let anthropic_error = anthropic_event(
        json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
    );
    let chat_error = sse::Event::data(
        json!({"error":{"message":"Overloaded","type":"server_error","code":"server_overloaded"}})
            .to_string(),
    );
    let responses_error = sse::Event::new("error", json!({"type":"error","code":"server_overloaded","message":"Overloaded","sequence_number":2}).to_string());
    for (from, error) in [
        (Format::AnthropicMessages, anthropic_error),
        (Format::OpenAiChat, chat_error),
        (Format::OpenAiResponses, responses_error),
    ] {
        let mut events = upstream(from)[..2].to_vec();
        events.push(error);
        for to in Format::ALL.into_iter().filter(|to| *to != from) {
            let out = convert(from, to, &events);
            let summary = grammar::validate(to, &out)
                .unwrap_or_else(|error| panic!("{from} -> {to}: {error}\n{out:#?}"));
            assert_eq!(
                summary.error.as_deref(),
                Some("Overloaded"),
                "{from} -> {to}"
            );
            let kinds: Vec<&str> = out
                .iter()
                .filter_map(|event| {
                    event
                        .data
                        .contains("overload")
                        .then_some(event.data.as_str())
                })
                .collect();
            assert!(
                !kinds.is_empty(),
                "{from} -> {to}: the kind survives: {out:#?}"
            );
        }
    }
}

#[test]
fn long_and_foreign_tool_ids_are_hashed_deterministically() {
    let long_id = format!("toolu_{}", "x".repeat(70));
    let mut events = anthropic_tools_stream();
    for event in &mut events {
        event.data = event.data.replace("toolu_01A", &long_id);
    }
    let first = grammar::validate(
        Format::OpenAiChat,
        &convert(Format::AnthropicMessages, Format::OpenAiChat, &events),
    )
    .expect("valid");
    let second = grammar::validate(
        Format::OpenAiResponses,
        &convert(Format::AnthropicMessages, Format::OpenAiResponses, &events),
    )
    .expect("valid");
    assert!(first.tool_calls[0].id.starts_with("call_") && first.tool_calls[0].id.len() <= 64);
    assert_eq!(
        first.tool_calls[0].id, second.tool_calls[0].id,
        "the same id hashes the same way"
    );
    assert_eq!(first.tool_calls[1].id, "toolu_01B", "short ids are kept");

    let mut chat = chat_tools_stream();
    for event in &mut chat {
        event.data = event.data.replace("call_A", "functions.get_weather:0");
    }
    let anthropic = grammar::validate(
        Format::AnthropicMessages,
        &convert(Format::OpenAiChat, Format::AnthropicMessages, &chat),
    )
    .expect("valid");
    assert!(
        anthropic.tool_calls[0].id.starts_with("call_"),
        "{:?}",
        anthropic.tool_calls[0]
    );
}

#[test]
fn interleaved_chat_tool_fragments_after_the_next_call_started_are_dropped_on_purpose() {
    // A server that goes back to call 0 after call 1 started: a sequential client format
    // (Anthropic blocks, Responses items) cannot reopen call 0, so the late fragment is
    // dropped. OpenAI itself never does this.
    let mut events = chat_tools_stream();
    let late = sse::Event::data(json!({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"garbage"}}]},"finish_reason":null}]}).to_string());
    events.insert(6, late);
    let summary = grammar::validate(
        Format::AnthropicMessages,
        &convert(Format::OpenAiChat, Format::AnthropicMessages, &events),
    )
    .expect("valid");
    assert_eq!(
        summary.tool_calls,
        upstream_summary(Format::OpenAiChat).tool_calls
    );
}

#[test]
fn a_chat_stream_without_usage_chunk_still_finishes() {
    let mut events = chat_tools_stream();
    events.remove(8);
    let summary = grammar::validate(
        Format::AnthropicMessages,
        &convert(Format::OpenAiChat, Format::AnthropicMessages, &events),
    )
    .expect("valid");
    assert_eq!(summary.stop, "tool_use");
    assert_eq!(summary.output_tokens, 0, "no usage was sent");
}

#[test]
fn each_push_is_converted_at_once_and_long_streams_are_fine() {
    let mut converter = StreamConverter::new(Format::OpenAiChat, Format::AnthropicMessages);
    let mut out = Vec::new();
    converter.push(&chat_tools_stream()[0], &mut out);
    out.clear();
    for n in 0..10_000 {
        converter.push(&sse::Event::data(json!({"id":"chatcmpl-9","model":"gpt-4o","choices":[{"index":0,"delta":{"content":format!("{n} ")}}]}).to_string()), &mut out);
        assert!(!out.is_empty(), "delta {n} produced output immediately");
        out.clear();
    }
}

#[test]
fn chains_compose_hop_by_hop() {
    // Responses -> Chat -> Anthropic, as a route declaring that chain would ask.
    let mut chain = StreamConverter::chain(&[
        Format::OpenAiResponses,
        Format::OpenAiChat,
        Format::AnthropicMessages,
    ])
    .expect("non-empty");
    assert_eq!(
        (chain.from(), chain.to()),
        (Format::OpenAiResponses, Format::AnthropicMessages)
    );
    let mut out = Vec::new();
    for event in responses_tools_stream() {
        chain.push(&event, &mut out);
    }
    chain.finish(&mut out);
    let summary = grammar::validate(Format::AnthropicMessages, &out).expect("valid");
    assert_eq!(
        summary.tool_calls,
        upstream_summary(Format::OpenAiResponses).tool_calls
    );
    // Through Chat the reasoning survives as reasoning_content.
    assert_eq!(summary.reasoning, "Two cities, two tools.");
}

/// A Chat stream of the given tool-call fragments, one chunk per entry, then the finish and
/// usage chunks and `[DONE]`.
fn chat_calls_stream(chunks: &[Value]) -> Vec<sse::Event> {
    let chunk = |delta: Value, finish: Value| {
        sse::Event::data(json!({"id":"chatcmpl-7","object":"chat.completion.chunk","created":1700000000,"model":"gemini-2.5-pro","choices":[{"index":0,"delta":delta,"finish_reason":finish}]}).to_string())
    };
    let mut events = vec![chunk(json!({"role":"assistant"}), Value::Null)];
    for calls in chunks {
        events.push(chunk(json!({ "tool_calls": calls }), Value::Null));
    }
    events.push(chunk(json!({}), json!("tool_calls")));
    events.push(sse::Event::data(json!({"id":"chatcmpl-7","object":"chat.completion.chunk","created":1700000000,"model":"gemini-2.5-pro","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}).to_string()));
    events.push(sse::Event::done());
    events
}

fn calls(summary: &grammar::Summary) -> Vec<(String, String, Value)> {
    summary
        .tool_calls
        .iter()
        .map(|call| (call.id.clone(), call.name.clone(), call.arguments.clone()))
        .collect()
}

fn call(id: &str, name: &str, arguments: Value) -> (String, String, Value) {
    (id.to_owned(), name.to_owned(), arguments)
}

/// Converts a Chat stream to both other formats and returns what each client saw.
fn from_chat(events: &[sse::Event]) -> Vec<grammar::Summary> {
    [Format::AnthropicMessages, Format::OpenAiResponses]
        .into_iter()
        .map(|to| {
            let out = convert(Format::OpenAiChat, to, events);
            grammar::validate(to, &out).unwrap_or_else(|error| panic!("-> {to}: {error}\n{out:#?}"))
        })
        .collect()
}

#[test]
fn chat_tool_calls_without_index_are_told_apart_by_id() {
    // Gemini's OpenAI-compatible endpoint sends no `index`: a new id is a new call, and a
    // fragment with neither index nor id continues the last call.
    let events = chat_calls_stream(&[
        json!([{"id":"call_a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]),
        json!([{"id":"call_b","type":"function","function":{"name":"g","arguments":"{\"y\""}}]),
        json!([{"function":{"arguments":":2}"}}]),
    ]);
    for summary in from_chat(&events) {
        assert_eq!(
            calls(&summary),
            [
                call("call_a", "f", json!({"x": 1})),
                call("call_b", "g", json!({"y": 2}))
            ]
        );
    }
}
#[test]
fn chat_tool_call_headers_ahead_of_their_arguments_keep_every_argument() {
    // Both headers in one chunk, then the arguments index by index.
    let events = chat_calls_stream(&[
        json!([
            {"index":0,"id":"call_a","type":"function","function":{"name":"a","arguments":""}},
            {"index":1,"id":"call_b","type":"function","function":{"name":"b","arguments":""}}
        ]),
        json!([{"index":0,"function":{"arguments":"{\"x\""}}]),
        json!([{"index":0,"function":{"arguments":":1}"}}]),
        json!([{"index":1,"function":{"arguments":"{\"y\":"}}]),
        json!([{"index":1,"function":{"arguments":"2}"}}]),
    ]);
    for summary in from_chat(&events) {
        assert_eq!(
            calls(&summary),
            [
                call("call_a", "a", json!({"x": 1})),
                call("call_b", "b", json!({"y": 2}))
            ]
        );
    }
}

#[test]
fn chat_tool_calls_interleaved_after_shared_headers_keep_every_argument() {
    let events = chat_calls_stream(&[
        json!([
            {"index":0,"id":"call_a","type":"function","function":{"name":"a","arguments":"{\"x\":"}},
            {"index":1,"id":"call_b","type":"function","function":{"name":"b","arguments":"{\"y\":"}}
        ]),
        json!([{"index":1,"function":{"arguments":"2"}}]),
        json!([{"index":0,"function":{"arguments":"1"}}]),
        json!([{"index":0,"function":{"arguments":"}"}},{"index":1,"function":{"arguments":"}"}}]),
    ]);
    for summary in from_chat(&events) {
        assert_eq!(
            calls(&summary),
            [
                call("call_a", "a", json!({"x": 1})),
                call("call_b", "b", json!({"y": 2}))
            ]
        );
    }
}

#[test]
fn the_first_chat_tool_call_streams_live_while_the_others_wait() {
    let events = chat_calls_stream(&[
        json!([
            {"index":0,"id":"call_a","type":"function","function":{"name":"a","arguments":""}},
            {"index":1,"id":"call_b","type":"function","function":{"name":"b","arguments":""}}
        ]),
        json!([{"index":0,"function":{"arguments":"{\"x\":1}"}}]),
        json!([{"index":1,"function":{"arguments":"{\"y\":2}"}}]),
    ]);
    let mut converter = StreamConverter::new(Format::OpenAiChat, Format::AnthropicMessages);
    let mut out = Vec::new();
    for event in &events[..3] {
        converter.push(event, &mut out);
    }
    assert!(
        out.iter().any(|event| event.data.contains("{\\\"x\\\":1}")),
        "call 0's arguments went out as they arrived: {out:#?}"
    );
    assert!(
        !out.iter().any(|event| event.data.contains("call_b")),
        "call 1 waits until call 0 ends: {out:#?}"
    );
}

#[test]
fn a_chat_tool_name_that_arrives_late_still_names_the_call() {
    let events = chat_calls_stream(&[
        json!([{"index":0,"id":"call_a","type":"function","function":{"arguments":"{\"x\""}}]),
        json!([{"index":0,"function":{"name":"late"}}]),
        json!([{"index":0,"function":{"arguments":":1}"}}]),
    ]);
    for summary in from_chat(&events) {
        assert_eq!(calls(&summary), [call("call_a", "late", json!({"x": 1}))]);
    }
}

#[test]
fn buffered_chat_tool_arguments_are_bounded() {
    let huge = "x".repeat(5 << 20);
    let events = chat_calls_stream(&[
        json!([
            {"index":0,"id":"call_a","type":"function","function":{"name":"a","arguments":""}},
            {"index":1,"id":"call_b","type":"function","function":{"name":"b","arguments":""}}
        ]),
        json!([{"index":1,"function":{"arguments":huge}}]),
    ]);
    for to in [Format::AnthropicMessages, Format::OpenAiResponses] {
        let out = convert(Format::OpenAiChat, to, &events);
        let summary =
            grammar::validate(to, &out).unwrap_or_else(|error| panic!("-> {to}: {error}"));
        assert!(
            summary
                .error
                .as_deref()
                .is_some_and(|message| message.contains("buffer")),
            "-> {to}: the stream ends in an error: {:?}",
            summary.error
        );
        assert!(
            out.iter().all(|event| event.data.len() < 1 << 20),
            "-> {to}: the buffered arguments were not forwarded"
        );
    }
}

#[test]
fn thinking_signatures_and_redacted_thinking_are_dropped_from_openai_streams_on_purpose() {
    let mut events = anthropic_tools_stream();
    // A redacted thinking block as the second block; the later indexes move up by one.
    for event in &mut events[6..] {
        for index in (1..=3).rev() {
            event.data = event.data.replace(
                &format!("\"index\":{index}"),
                &format!("\"index\":{}", index + 1),
            );
        }
    }
    events.splice(
        6..6,
        [
            anthropic_event(
                json!({"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"REDACTED_BYTES"}}),
            ),
            anthropic_event(json!({"type":"content_block_stop","index":1})),
        ],
    );
    grammar::anthropic(&events).expect("the fixture is valid");
    for to in [Format::OpenAiChat, Format::OpenAiResponses] {
        let out = convert(Format::AnthropicMessages, to, &events);
        let summary = grammar::validate(to, &out).unwrap_or_else(|error| panic!("{to}: {error}"));
        assert_eq!(summary.reasoning, "Two cities, two tools.", "{to}");
        assert_eq!(summary.tool_calls.len(), 2, "{to}");
        if to == Format::OpenAiChat {
            assert!(
                out.iter().all(|event| !event.data.contains("c2lnbmF0dXJl")),
                "{to}: only Anthropic can check a signature, and Chat has nowhere to keep it"
            );
        } else {
            // A Responses client keeps it, tagged, as the reasoning item's
            // `encrypted_content`, and sends it back with the next turn.
            let carrying: Vec<&sse::Event> = out
                .iter()
                .filter(|event| event.data.contains("c2lnbmF0dXJl"))
                .collect();
            assert!(!carrying.is_empty(), "{to}: the signature is kept");
            for event in carrying {
                let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                let items = match data["type"].as_str() {
                    Some("response.output_item.done") => vec![data["item"].clone()],
                    Some("response.completed") => data["response"]["output"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                    other => panic!("{to}: the signature shows in {other:?}: {}", event.data),
                };
                assert!(
                    items.iter().any(|item| item["type"] == "reasoning"
                        && item["encrypted_content"]
                            .as_str()
                            .is_some_and(|text| text.starts_with("ccproxy-anthropic-signature:"))),
                    "{to}: {}",
                    event.data
                );
            }
        }
        assert!(
            out.iter()
                .all(|event| !event.data.contains("REDACTED_BYTES")),
            "{to}: redacted thinking has no OpenAI form"
        );
    }
}

/// Encodes events and decodes them again in pieces of `piece` bytes, as a client reads them.
fn through_the_wire(events: &[sse::Event], piece: usize) -> Vec<sse::Event> {
    let mut wire = Vec::new();
    for event in events {
        event.encode(&mut wire);
    }
    let mut decoder = sse::Decoder::new();
    let mut out = Vec::new();
    for bytes in wire.chunks(piece) {
        decoder.push(bytes, &mut out).expect("events within limits");
    }
    decoder.finish(&mut out).expect("events within limits");
    out
}

#[test]
fn tool_streams_survive_a_round_trip_in_every_direction() {
    // Two parallel calls with their arguments split across events, from each format through
    // each other one and back, over the wire both ways.
    let shared_headers = chat_calls_stream(&[
        json!([
            {"index":0,"id":"call_a","type":"function","function":{"name":"a","arguments":""}},
            {"index":1,"id":"call_b","type":"function","function":{"name":"b","arguments":""}}
        ]),
        json!([{"index":0,"function":{"arguments":"{\"x\""}}]),
        json!([{"index":1,"function":{"arguments":"{\"y\":"}}]),
        json!([{"index":0,"function":{"arguments":":1}"}}]),
        json!([{"index":1,"function":{"arguments":"2}"}}]),
    ]);
    let sources = [
        (Format::AnthropicMessages, anthropic_tools_stream()),
        (Format::OpenAiChat, chat_tools_stream()),
        (Format::OpenAiChat, shared_headers),
        (Format::OpenAiResponses, responses_tools_stream()),
    ];
    let mut checked = 0;
    for (from, events) in sources {
        let source = match from {
            Format::OpenAiChat => grammar::chat(&events, grammar::Mode::Upstream),
            other => grammar::validate(other, &events),
        }
        .unwrap_or_else(|error| panic!("{from}: the fixture is valid: {error}"));
        assert_eq!(source.tool_calls.len(), 2, "{from}: two calls");
        assert!(
            source.tool_calls.iter().all(|call| call
                .arguments
                .as_object()
                .is_some_and(|args| !args.is_empty())),
            "{from}: every call has arguments"
        );
        for to in Format::ALL.into_iter().filter(|to| *to != from) {
            let context = format!("{from} -> {to} -> {from}");
            let mut there = StreamConverter::new(from, to);
            let mut converted = Vec::new();
            for event in through_the_wire(&events, 5) {
                there.push(&event, &mut converted);
            }
            there.finish(&mut converted);
            let received = through_the_wire(&converted, 11);
            grammar::validate(to, &received)
                .unwrap_or_else(|error| panic!("{context}: {to} leg: {error}\n{received:#?}"));
            let mut back = StreamConverter::new(to, from);
            let mut returned = Vec::new();
            for event in &received {
                back.push(event, &mut returned);
            }
            back.finish(&mut returned);
            let returned = through_the_wire(&returned, 7);
            let summary = grammar::validate(from, &returned)
                .unwrap_or_else(|error| panic!("{context}: {error}\n{returned:#?}"));
            assert_eq!(
                summary.tool_calls, source.tool_calls,
                "{context}: ids, names, arguments"
            );
            assert_eq!(summary.text, source.text, "{context}: text");
            assert_eq!(summary.id, source.id, "{context}: id");
            assert_eq!(
                (
                    summary.input_tokens,
                    summary.cached_tokens,
                    summary.output_tokens
                ),
                (
                    source.input_tokens,
                    source.cached_tokens,
                    source.output_tokens
                ),
                "{context}: usage"
            );
            assert_eq!(summary.stop, source.stop, "{context}: stop reason");
            assert_eq!(summary.error, None, "{context}: no error");
            checked += 1;
        }
    }
    assert_eq!(checked, 8, "4 sources, 2 targets each");
}

/// The `error` events of a stream, as JSON.
fn error_events(events: &[sse::Event]) -> Vec<(usize, Value)> {
    events
        .iter()
        .enumerate()
        .filter(|(_, event)| event.event.as_deref() == Some("error"))
        .map(|(index, event)| (index, serde_json::from_str(&event.data).expect("json")))
        .collect()
}

#[test]
fn responses_clients_get_the_documented_error_event_then_response_failed() {
    let mut events = anthropic_tools_stream()[..8].to_vec();
    events.push(anthropic_event(
        json!({"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}),
    ));
    let out = convert(Format::AnthropicMessages, Format::OpenAiResponses, &events);
    grammar::validate(Format::OpenAiResponses, &out).unwrap_or_else(|error| panic!("{error}"));
    let errors = error_events(&out);
    assert_eq!(errors.len(), 1, "{out:#?}");
    let (index, error) = &errors[0];
    // OpenAI's documented shape, plus the nested `error` the live API sends, which the
    // openai Python SDK reads to raise its APIError.
    assert_eq!(
        error,
        &json!({"type": "error", "code": "rate_limit_exceeded", "message": "Slow down",
            "param": null, "sequence_number": index,
            "error": {"type": "rate_limit_error", "code": "rate_limit_exceeded",
                "message": "Slow down", "param": null}})
    );
    assert_eq!(
        out.last().and_then(|event| event.event.as_deref()),
        Some("response.failed"),
        "the lifecycle still ends"
    );
}

#[test]
fn responses_error_events_are_read_in_both_shapes() {
    let documented = json!({"type":"error","code":"rate_limit_exceeded","message":"Slow down","param":null,"sequence_number":2});
    // What the live API sends (openai/openai-dotnet#881).
    let live = json!({"type":"error","sequence_number":2,"error":{"type":"too_many_requests","code":"rate_limit_exceeded","message":"Slow down","param":null}});
    for data in [documented, live] {
        let mut events = responses_tools_stream()[..2].to_vec();
        events.push(sse::Event::new("error", data.to_string()));
        let out = convert(Format::OpenAiResponses, Format::AnthropicMessages, &events);
        let summary = grammar::validate(Format::AnthropicMessages, &out)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(summary.error.as_deref(), Some("Slow down"), "{data}");
        assert!(
            out.iter()
                .any(|event| event.data.contains("rate_limit_error")),
            "{data}: the kind survives: {out:#?}"
        );
    }
}

#[test]
fn a_failure_the_proxy_detects_ends_the_stream_in_the_client_format() {
    for from in Format::ALL {
        let events = upstream(from);
        let cut = events.len() / 2;
        for to in Format::ALL {
            let context = format!("{from} -> {to}");
            let mut converter = StreamConverter::new(from, to);
            let mut out = Vec::new();
            for event in &events[..cut] {
                converter.push(event, &mut out);
            }
            converter.fail(
                ccproxy_formats::convert::ErrorKind::Api,
                "upstream connection broke mid-stream",
                &mut out,
            );
            let mut later = Vec::new();
            converter.push(&events[cut], &mut later);
            converter.finish(&mut later);
            assert!(later.is_empty(), "{context}: nothing after the failure");
            if from == to {
                // Passed through unparsed: only the error ending is this crate's.
                let tail = &out[cut..];
                match to {
                    Format::AnthropicMessages => {
                        assert_eq!(tail.len(), 1, "{context}");
                        let value: Value = serde_json::from_str(&tail[0].data).expect("json");
                        assert_eq!(value["error"]["type"], "api_error", "{context}");
                    }
                    Format::OpenAiChat => {
                        assert!(tail[0].data.contains("mid-stream"), "{context}");
                        assert!(tail[1].is_done(), "{context}");
                    }
                    Format::OpenAiResponses => {
                        let errors = error_events(tail);
                        assert_eq!(errors.len(), 1, "{context}");
                        assert_eq!(errors[0].1["sequence_number"], cut, "{context}");
                        assert_eq!(
                            errors[0].1["message"],
                            "upstream connection broke mid-stream"
                        );
                    }
                }
                continue;
            }
            let summary = grammar::validate(to, &out)
                .unwrap_or_else(|error| panic!("{context}: {error}\n{out:#?}"));
            assert_eq!(
                summary.error.as_deref(),
                Some("upstream connection broke mid-stream"),
                "{context}"
            );
        }
    }
}
