//! Fuzzes the SSE decoder: any bytes, split anywhere, with a small size limit, must not
//! panic, must give the same events as one read, and must respect the limit.
#![no_main]

use ccproxy_formats::sse::Decoder;
use libfuzzer_sys::fuzz_target;

fn decode(data: &[u8], step: usize, limit: usize) -> Vec<ccproxy_formats::sse::Event> {
    let mut decoder = Decoder::with_max_event_size(limit);
    let mut events = Vec::new();
    for chunk in data.chunks(step.max(1)) {
        let _ = decoder.push(chunk, &mut events);
    }
    let _ = decoder.finish(&mut events);
    events
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else {
        return;
    };
    let step = usize::from(control % 17) + 1;
    let limit = usize::from(control) * 8 + 1;
    let whole = decode(data, data.len(), limit);
    assert_eq!(
        whole,
        decode(data, step, limit),
        "split at every {step} bytes"
    );
    for event in &whole {
        assert!(event.data.len() <= limit);
    }
    let mut wire = Vec::new();
    for event in &whole {
        event.encode(&mut wire);
    }
    let again = decode(&wire, wire.len(), usize::MAX);
    assert_eq!(again.len(), whole.len(), "encoded events decode back");
});
