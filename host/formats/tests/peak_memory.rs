//! The memory a request conversion costs (issue 13 item 4): the peak of live
//! heap bytes while converting a large body, counted by a global allocator
//! that wraps the system's, as a multiple of the body's size.

// A global allocator is an unsafe trait; this one only forwards and counts.
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

use ccproxy_formats::{Format, convert};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            // Counted as if old and new were both live for a moment: a
            // moving realloc copies.
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A conversation of about `bytes` bytes in `format`: many 64 KiB messages.
fn conversation(format: Format, bytes: usize) -> Vec<u8> {
    let text = "lorem ipsum dolor sit amet ".repeat(2427);
    let mut messages = Vec::new();
    let mut size = 0;
    while size < bytes {
        let role = if messages.len() % 2 == 0 {
            "user"
        } else {
            "assistant"
        };
        messages.push(serde_json::json!({"role": role, "content": text}));
        size += text.len() + 40;
    }
    messages.push(serde_json::json!({"role": "user", "content": "Hello"}));
    let body = match format {
        Format::AnthropicMessages => {
            serde_json::json!({"model": "m", "max_tokens": 100, "messages": messages})
        }
        Format::OpenAiChat => serde_json::json!({"model": "m", "messages": messages}),
        Format::OpenAiResponses => serde_json::json!({"model": "m", "input": messages}),
    };
    serde_json::to_vec(&body).unwrap()
}

/// The peak of live bytes during `convert::request(from, to, body)` beyond
/// what was live before (the body itself), as a multiple of the body's size.
fn peak_ratio(from: Format, to: Format, bytes: usize) -> f64 {
    let body = conversation(from, bytes);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let converted = convert::request(from, to, &body).expect("converts");
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(converted.len() > body.len() / 2);
    drop(converted);
    peak as f64 / body.len() as f64
}

/// One test: the counters are global, so conversions must not overlap.
#[test]
fn a_conversion_costs_about_its_input_and_output_once() {
    const SIZE: usize = 8 * 1024 * 1024;
    for (from, to) in [
        (Format::OpenAiChat, Format::AnthropicMessages),
        (Format::AnthropicMessages, Format::OpenAiChat),
        (Format::OpenAiResponses, Format::AnthropicMessages),
    ] {
        let ratio = peak_ratio(from, to, SIZE);
        eprintln!("{from} -> {to}: peak {ratio:.2}x the body beyond the body");
        // The parsed request (its strings, about the body's size) and the
        // output (about the body's size), written into one buffer sized up
        // front (growing by doubling, it was 2.5x).
        assert!(ratio < 2.3, "{from} -> {to}: peak {ratio:.2}x the body");
    }
    let ratio = peak_ratio(Format::AnthropicMessages, Format::AnthropicMessages, SIZE);
    eprintln!("same format: peak {ratio:.2}x");
}
