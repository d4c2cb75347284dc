//! Fuzzes the converters: any body in any direction must convert or be refused with an
//! error, never panic; error conversion never fails; a stream of any events converts to
//! events whose data is JSON (or Chat's `[DONE]`) and always ends.
#![no_main]

use ccproxy_formats::convert::{self, StreamConverter};
use ccproxy_formats::{Format, sse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&control, body)) = input.split_first() else {
        return;
    };
    let from = Format::ALL[usize::from(control % 3)];
    let to = Format::ALL[usize::from((control / 3) % 3)];
    match (control / 9) % 4 {
        0 => {
            if let Ok(out) = convert::request(from, to, body) {
                if from != to {
                    serde_json::from_slice::<serde_json::Value>(&out).expect("valid JSON out");
                }
            }
        }
        1 => {
            let _ = convert::response(from, to, body);
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
