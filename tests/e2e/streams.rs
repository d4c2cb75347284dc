//! Streamed plugin routes (plugin API 1.2) through the real binary, with the
//! `sse_ticker` example: events reach the client one by one while the plugin
//! is still producing, a slow client holds the producer back, a client that
//! leaves cancels the stream (even one that would never end), and a public
//! route needs no client token.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use ccproxy_e2e::{Proxy, ProxyOptions, poll};
use serde_json::Value;

const TICKER: &[&str] = &["example_sse_ticker"];

fn stats(proxy: &Proxy) -> Value {
    let reply = proxy.get_with("/ticker/stats", &[("authorization", "Bearer s3cret")]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// A streamed answer as the client reads it: everything received so far
/// (the head and the first events may arrive in one read).
struct Reading {
    stream: TcpStream,
    received: String,
}

impl Reading {
    /// Opens `GET path` on a new connection.
    fn open(proxy: &Proxy, path: &str) -> Self {
        let mut stream = proxy.connect();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer s3cret\r\n\r\n"
        )
        .expect("the request can be written");
        Self {
            stream,
            received: String::new(),
        }
    }

    /// Reads until what arrived contains `needle`; returns all that arrived.
    fn until(&mut self, needle: &str) -> &str {
        let mut buffer = [0u8; 4096];
        while !self.received.contains(needle) {
            let read = self
                .stream
                .read(&mut buffer)
                .expect("the stream can be read");
            assert!(read > 0, "closed before {needle:?}: {}", self.received);
            self.received
                .push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
        &self.received
    }
}

fn start() -> Proxy {
    Proxy::start(ProxyOptions {
        plugins: TICKER,
        env: &[("SECURITY__AUTH_TOKEN", "s3cret")],
        ..ProxyOptions::default()
    })
}

#[test]
fn a_plugin_route_streams_sse_event_by_event() {
    let proxy = start();
    let started = Instant::now();
    let mut reading = Reading::open(&proxy, "/ticker/events?count=3&interval_ms=400");
    let head = reading.until("\r\n\r\n").to_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(
        !head.contains("content-length"),
        "a stream has no length: {head}"
    );

    // The first event arrives while the plugin has not produced the last one.
    let first = reading.until("\"n\":1").to_owned();
    let first_at = started.elapsed();
    let produced = stats(&proxy)["produced"].as_u64().unwrap_or(0);
    assert!(
        produced < 3,
        "the first event reached the client only after all {produced} were produced ({first})"
    );
    assert!(
        !first.contains("\"n\":2"),
        "events arrive one by one: {first}"
    );

    reading.until("\"n\":3");
    let last_at = started.elapsed();
    assert!(
        last_at >= first_at + Duration::from_millis(700),
        "the ticks are 400 ms apart: first at {first_at:?}, last at {last_at:?}"
    );
    // The chunked body ends after the third event.
    reading.until("\r\n0\r\n\r\n");
    let done = poll(Duration::from_secs(5), || {
        let stats = stats(&proxy);
        (stats["finished"] == 1 && stats["open"] == 0).then_some(stats)
    });
    assert!(done.is_some(), "the stream finished: {}", stats(&proxy));
}

#[test]
fn a_client_that_leaves_cancels_an_endless_stream() {
    let proxy = start();
    let mut reading = Reading::open(&proxy, "/ticker/events?count=0&interval_ms=20");
    reading.until("\"n\":2");
    assert_eq!(stats(&proxy)["open"], 1);
    drop(reading);

    // The producer learns that the client left and stops: nothing keeps running.
    let cancelled = poll(Duration::from_secs(5), || {
        let stats = stats(&proxy);
        (stats["cancelled"] == 1 && stats["open"] == 0).then_some(stats)
    });
    let cancelled = cancelled.unwrap_or_else(|| panic!("not cancelled: {}", stats(&proxy)));
    let produced = cancelled["produced"].as_u64().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        stats(&proxy)["produced"].as_u64().unwrap_or(0),
        produced,
        "nothing is produced after the cancel"
    );
    assert!(
        proxy.log().contains("ticker stream cancelled"),
        "{}",
        proxy.log()
    );
}

#[test]
fn a_slow_client_holds_the_producer_back() {
    let proxy = start();
    // 16 KiB events: the socket buffers between proxy and client fill quickly.
    let mut reading = Reading::open(&proxy, "/ticker/events?count=0&interval_ms=0&pad=16384");
    reading.until("\"n\":1,");
    // The client stops reading; the socket buffers fill, then the producer waits.
    std::thread::sleep(Duration::from_millis(1500));
    let a = stats(&proxy)["produced"].as_u64().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(500));
    let b = stats(&proxy)["produced"].as_u64().unwrap_or(0);
    assert_eq!(
        a, b,
        "a producer whose client does not read waits ({a} then {b})"
    );
    // What was produced is what the socket buffers hold (a few MiB), far below
    // what an unbounded producer would make in 2 seconds.
    assert!(
        a < 2_000,
        "{a} events were produced for a client that reads none"
    );
    drop(reading);
    let cancelled = poll(Duration::from_secs(5), || {
        (stats(&proxy)["cancelled"] == 1).then_some(())
    });
    assert!(cancelled.is_some(), "{}", stats(&proxy));
}

#[test]
fn public_routes_need_no_token_and_others_do() {
    let proxy = start();
    assert_eq!(proxy.get("/ticker/stats").status, 200, "public route");
    let denied = proxy.get("/ticker/events?count=1");
    assert_eq!(denied.status, 401, "{}", denied.text());
    let status = proxy
        .get_with("/plugins/status", &[("x-api-key", "s3cret")])
        .json();
    let ticker = status["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == "sse_ticker"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        ticker["public_routes"],
        serde_json::json!(["GET /ticker/stats"]),
        "{ticker:#}"
    );
}
