//! Throughput of the format converters.
//!
//! Run with `cargo bench -p ccproxy-formats --bench convert -- --warm-up-time 1 --measurement-time 3`.
//! Stream benchmarks feed the upstream's SSE bytes through [`sse::Decoder`] in 1 KiB reads,
//! convert every event and encode the client's SSE bytes, so MB/s is measured on upstream
//! bytes end to end. The request benchmarks convert the real Claude Code request in
//! `tests/data/claude_cli_request_capture.json`.

use std::hint::black_box;

use ccproxy_formats::convert::{self, StreamConverter};
use ccproxy_formats::{Format, sse};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

/// A long Anthropic stream: thinking, 2000 text deltas of token size, and a tool call whose
/// input arrives in 300 fragments.
fn anthropic_stream() -> Vec<sse::Event> {
    let event = |value: serde_json::Value| {
        sse::Event::new(value["type"].as_str().expect("type"), value.to_string())
    };
    let mut events = vec![event(
        json!({"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":2000,"cache_read_input_tokens":30000,"output_tokens":1}}}),
    )];
    events.push(event(json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}})));
    for n in 0..200 {
        events.push(event(json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":format!("step {n} of the plan, ")}})));
    }
    events.push(event(json!({"type":"content_block_stop","index":0})));
    events.push(event(
        json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}),
    ));
    for n in 0..2000 {
        events.push(event(json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":format!(" word{n} and")}})));
    }
    events.push(event(json!({"type":"content_block_stop","index":1})));
    events.push(event(json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_bench","name":"Edit","input":{}}})));
    events.push(event(json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"new_string\": \""}})));
    for n in 0..300 {
        events.push(event(json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":format!("line {n} of code\\n")}})));
    }
    events.push(event(json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\"}"}})));
    events.push(event(json!({"type":"content_block_stop","index":2})));
    events.push(event(json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":4000}})));
    events.push(event(json!({"type":"message_stop"})));
    events
}

fn convert_events(from: Format, to: Format, events: &[sse::Event]) -> Vec<sse::Event> {
    let mut converter = StreamConverter::new(from, to);
    let mut out = Vec::new();
    for event in events {
        converter.push(event, &mut out);
    }
    converter.finish(&mut out);
    out
}

fn wire(events: &[sse::Event]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for event in events {
        event.encode(&mut bytes);
    }
    bytes
}

/// Decode, convert and encode a whole stream, as the proxy does per response.
fn run(from: Format, to: Format, upstream: &[u8]) -> usize {
    let mut decoder = sse::Decoder::new();
    let mut converter = StreamConverter::new(from, to);
    let mut events = Vec::new();
    let mut converted = Vec::new();
    let mut client = Vec::with_capacity(upstream.len() * 2);
    for read in upstream.chunks(1024) {
        decoder.push(read, &mut events).expect("within limits");
        for event in events.drain(..) {
            converter.push(&event, &mut converted);
        }
        for event in converted.drain(..) {
            event.encode(&mut client);
        }
    }
    converter.finish(&mut converted);
    for event in converted.drain(..) {
        event.encode(&mut client);
    }
    client.len()
}

fn streams(c: &mut Criterion) {
    let anthropic = anthropic_stream();
    let sources = [
        (Format::AnthropicMessages, wire(&anthropic)),
        (
            Format::OpenAiChat,
            wire(&convert_events(
                Format::AnthropicMessages,
                Format::OpenAiChat,
                &anthropic,
            )),
        ),
        (
            Format::OpenAiResponses,
            wire(&convert_events(
                Format::AnthropicMessages,
                Format::OpenAiResponses,
                &anthropic,
            )),
        ),
    ];
    let mut group = c.benchmark_group("stream");
    for (from, upstream) in &sources {
        group.throughput(Throughput::Bytes(upstream.len() as u64));
        group.bench_function(format!("sse-decode/{from}"), |b| {
            b.iter(|| {
                let mut decoder = sse::Decoder::new();
                let mut events = Vec::new();
                for read in upstream.chunks(1024) {
                    decoder.push(read, &mut events).expect("within limits");
                }
                black_box(events.len())
            })
        });
        for to in Format::ALL.into_iter().filter(|to| to != from) {
            group.bench_function(format!("{from}->{to}"), |b| {
                b.iter(|| black_box(run(*from, to, black_box(upstream))))
            });
        }
    }
    group.finish();
}

fn requests(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/claude_cli_request_capture.json"
    );
    let capture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("capture")).expect("JSON");
    let body = serde_json::to_vec(&capture["body_json"]).expect("serialisable");
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for to in [Format::OpenAiChat, Format::OpenAiResponses] {
        group.bench_function(
            format!("claude-code-capture/anthropic.messages->{to}"),
            |b| {
                b.iter(|| {
                    black_box(
                        convert::request(Format::AnthropicMessages, to, black_box(&body))
                            .expect("converts"),
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, streams, requests);
criterion_main!(benches);
