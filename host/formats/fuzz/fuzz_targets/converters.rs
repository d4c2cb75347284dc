//! Fuzzes the converters: any body in any direction must convert or be refused with an
//! error, never panic; error conversion never fails; a stream of any events converts to
//! events whose data is JSON (or Chat's `[DONE]`) and always ends. Every other input's
//! answer is converted with the client tools of a request declaring a free-form tool and a
//! namespaced one (`exec`, `ns__f` upstream), so restoring their calls is fuzzed too.
#![no_main]

use std::sync::LazyLock;

use ccproxy_formats::convert::{self, ClientTools, StreamConverter};
use ccproxy_formats::{Format, sse};
use libfuzzer_sys::fuzz_target;

static TOOLS: LazyLock<ClientTools> = LazyLock::new(|| {
    let request = br#"{"model":"m","input":[{"type":"additional_tools","tools":[{"type":"namespace","name":"ns","tools":[{"type":"function","name":"f"}]}]}],"tools":[{"type":"custom","name":"exec"}]}"#;
    convert::request_with_tools(Format::OpenAiResponses, Format::AnthropicMessages, request)
        .ok()
        .and_then(|(_, tools)| tools)
        .expect("the request declares client tools")
});

fuzz_target!(|input: &[u8]| {
    let Some((&control, body)) = input.split_first() else {
        return;
    };
    let from = Format::ALL[usize::from(control % 3)];
    let to = Format::ALL[usize::from((control / 3) % 3)];
    let tools = (control / 36) % 2 == 1;
    match (control / 9) % 4 {
        0 => {
            if let Ok(out) = convert::request(from, to, body) {
                if from != to {
                    serde_json::from_slice::<serde_json::Value>(&out).expect("valid JSON out");
                }
            }
        }
        1 => {
            let _ = convert::response_with_tools(from, to, body, tools.then(|| &*TOOLS));
        }
        2 => {
            let out = convert::error(from, to, 400 + u16::from(control), body);
            serde_json::from_slice::<serde_json::Value>(&out).expect("an error body is JSON");
        }
        _ => {
            if from == to {
                return;
            }
            let mut decoder = sse::Decoder::with_max_event_size(1 << 16);
            let mut events = Vec::new();
            let _ = decoder.push(body, &mut events);
            let _ = decoder.finish(&mut events);
            let mut converter = StreamConverter::new(from, to);
            if tools {
                converter = converter.with_tools(TOOLS.clone());
            }
            let mut out = Vec::new();
            for event in &events {
                converter.push(event, &mut out);
            }
            converter.finish(&mut out);
            assert!(
                !out.is_empty(),
                "a converted stream always ends with a terminal event"
            );
            for event in &out {
                if event.is_done() {
                    assert_eq!(to, Format::OpenAiChat, "[DONE] only in Chat streams");
                } else {
                    serde_json::from_str::<serde_json::Value>(&event.data)
                        .expect("event data is JSON");
                }
            }
        }
    }
});
