//! Format adapters from plugins (plugin API 1.2), end to end: the real binary
//! with the example `format_tiny` (the `example.tiny` wire format, adapted to
//! Chat Completions at `/v1/tiny`) in front of the bundled `claude_api` and
//! `codex` providers and the mock upstream.
//!
//! The chain is tiny → Chat (the plugin) → the upstream's format (the host)
//! and back: the mock receives a proper Anthropic Messages or Responses
//! request carrying the prompt, and the client gets tiny answers with the
//! text the mock replayed, complete or streamed; upstream errors come back as
//! tiny errors with the upstream's status; a body that is not tiny is a 400
//! saying so; the adapter's per-stream state is released when a stream ends
//! and when the client leaves early; `/plugins/status` lists the endpoints.

use std::{
    io::{Read, Write},
    time::Duration,
};

use ccproxy_e2e::{
    Proxy, ProxyOptions, Reply,
    mock::{Mock, codex, sse_events},
    poll, read_json, workspace_root,
};
use serde_json::{Value, json};

/// The API key the proxy holds; the mock refuses any other.
const API_KEY: &str = "test-key";
/// The model of the recorded Anthropic samples.
const MODEL: &str = "claude-sonnet-4-5-20250929";
/// The example plugin's library.
const TINY: &[&str] = &["example_format_tiny"];
const PROMPT: &str = "Say hello in five words";

fn sample(name: &str) -> Value {
    read_json(&workspace_root().join(format!("tests/data/samples/{name}.json")))
}

/// The text of the recorded plain Anthropic answer.
fn claude_text() -> String {
    sample("claude_messages")["response"]["body"]["content"][0]["text"]
        .as_str()
        .expect("the plain sample answers with text")
        .to_owned()
}

/// The text of a recorded stream: the data field `field` of its `event` events.
fn stream_text(name: &str, event: &str, pointer: &str) -> String {
    sample(name)["response"]["events"]
        .as_array()
        .expect("a stream sample has events")
        .iter()
        .filter(|recorded| recorded["event"] == event)
        .map(|recorded| {
            let data: Value = serde_json::from_str(recorded["data"].as_str().unwrap_or_default())
                .expect("event data is JSON");
            data.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn claude_mock() -> Mock {
    Mock::start(&[
        "--expect-header",
        &format!("x-api-key={API_KEY}"),
        "--expect-header",
        "anthropic-version",
    ])
}

fn claude_proxy(mock: &Mock) -> Proxy {
    let base_url = mock.url();
    Proxy::start(ProxyOptions {
        plugins: TINY,
        bundled: &["claude_api"],
        env: &[
            ("PLUGINS__CLAUDE_API__BASE_URL", &base_url),
            ("ANTHROPIC_API_KEY", API_KEY),
        ],
        ..ProxyOptions::default()
    })
}

fn post_tiny(proxy: &Proxy, path: &str, body: &[u8]) -> Reply {
    proxy.request("POST", path, &[("content-type", "application/json")], body)
}

fn tiny_request(stream: bool) -> Vec<u8> {
    json!({"model": MODEL, "prompt": PROMPT, "max_tokens": 64, "stream": stream})
        .to_string()
        .into_bytes()
}

/// The text of a tiny stream, checking its shape: text events, then one
/// `done` event with the token counts, last.
fn tiny_stream_text(reply: &Reply) -> (String, Value) {
    let events = sse_events(&reply.body);
    let (last, texts) = events
        .split_last()
        .unwrap_or_else(|| panic!("an empty stream: {}", reply.text()));
    assert_eq!(last.1["done"], true, "{}", reply.text());
    let text = texts
        .iter()
        .map(|(name, data)| {
            assert!(name.is_none(), "tiny events have no name: {name:?}");
            data["text"]
                .as_str()
                .unwrap_or_else(|| panic!("not a text event: {data}"))
                .to_owned()
        })
        .collect();
    (text, last.1["tokens"].clone())
}

/// The adapter's open streams, from its health.
fn open_streams(proxy: &Proxy) -> Value {
    let health = proxy.get("/plugins/format_tiny/health").json();
    health["details"]["open_streams"].clone()
}

/// What the user said in an upstream request, in Anthropic Messages or
/// Responses (a string or a list of text blocks).
fn said(content: &Value) -> &str {
    content
        .as_str()
        .or_else(|| content[0]["text"].as_str())
        .unwrap_or_default()
}

#[test]
fn a_tiny_request_reaches_claude_as_anthropic_messages_and_comes_back_tiny() {
    let mock = claude_mock();
    let proxy = claude_proxy(&mock);

    let reply = post_tiny(&proxy, "/claude/v1/tiny", &tiny_request(false));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        reply.headers
    );
    let answer = reply.json();
    let recorded = &sample("claude_messages")["response"]["body"];
    assert_eq!(
        answer,
        json!({
            // The model that answered: the recorded sample's, as replayed.
            "model": recorded["model"],
            "text": claude_text(),
            "tokens": {
                "in": recorded["usage"]["input_tokens"],
                "out": recorded["usage"]["output_tokens"],
            },
        }),
        "{answer}"
    );

    // The upstream got one ordinary Anthropic request with the prompt.
    let received = mock.requests();
    assert_eq!(received.len(), 1, "{received:#?}");
    let upstream = &received[0];
    assert_eq!(upstream["path"], "/v1/messages");
    let body = &upstream["body"];
    assert_eq!(body["model"], MODEL, "{body}");
    assert_eq!(body["max_tokens"], 64, "{body}");
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{body}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(said(&messages[0]["content"]), PROMPT, "{body}");
    assert_ne!(body["stream"], true, "{body}");
}

#[test]
fn a_streamed_tiny_request_gets_tiny_events_with_the_replayed_text() {
    let mock = claude_mock();
    let proxy = claude_proxy(&mock);
    let expected = stream_text(
        "claude_messages_stream",
        "content_block_delta",
        "/delta/text",
    );
    assert!(!expected.is_empty());
    for round in 0..2 {
        let reply = post_tiny(&proxy, "/claude/v1/tiny", &tiny_request(true));
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/event-stream")),
            "{:?}",
            reply.headers
        );
        let (text, tokens) = tiny_stream_text(&reply);
        assert_eq!(text, expected, "round {round}");
        assert!(
            tokens["out"].as_u64().is_some_and(|out| out > 0),
            "the usage reaches the done event: {tokens}"
        );
        let upstream = mock.requests();
        let body = &upstream.last().expect("an upstream request")["body"];
        assert_eq!(body["stream"], true, "{body}");
        assert_eq!(said(&body["messages"][0]["content"]), PROMPT);
    }
    // Every stream's state was released at its end.
    assert_eq!(open_streams(&proxy), 0);
}

#[test]
fn a_client_leaving_a_stream_early_releases_the_adapters_state() {
    let mock = claude_mock();
    let proxy = claude_proxy(&mock);
    // Events a second apart: the client is gone long before the end.
    mock.fault(json!({"kind": "trickle", "delay_ms": 1000}));
    let body = tiny_request(true);
    let mut socket = proxy.connect();
    let head = format!(
        "POST /claude/v1/tiny HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).expect("the head is sent");
    socket.write_all(&body).expect("the body is sent");
    // Wait for the first tiny text event, then leave.
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("data: {\"text\"") {
        let read = socket.read(&mut buffer).expect("the stream starts");
        assert!(
            read > 0,
            "the proxy closed early: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..read]);
    }
    assert_eq!(
        open_streams(&proxy),
        1,
        "the stream is open while the client reads"
    );
    drop(socket);
    let released = poll(Duration::from_secs(10), || {
        (open_streams(&proxy) == 0).then_some(())
    });
    assert!(released.is_some(), "the adapter still holds the stream");
}

#[test]
fn errors_come_back_in_the_tiny_format() {
    let mock = claude_mock();
    let proxy = claude_proxy(&mock);

    // An upstream error: its status, the upstream's message.
    mock.fault(json!({
        "kind": "status", "status": 429, "count": 1,
        "body": {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down, tiny"}},
    }));
    let reply = post_tiny(&proxy, "/claude/v1/tiny", &tiny_request(false));
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.json(), json!({"error": "slow down, tiny"}));

    // A body that is not tiny: 400 from the adapter, nothing sent upstream.
    mock.reset();
    for body in [&b"this is not json"[..], br#"{"model": "m"}"#] {
        let reply = post_tiny(&proxy, "/claude/v1/tiny", body);
        assert_eq!(reply.status, 400, "{}", reply.text());
        let message = reply.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("a tiny error: {}", reply.text()))
            .to_owned();
        assert!(
            message.contains("format_tiny") && message.contains("example.tiny request"),
            "{message}"
        );
    }
    assert!(mock.requests().is_empty(), "{:#?}", mock.requests());

    // The server keeps serving.
    let reply = post_tiny(&proxy, "/claude/v1/tiny", &tiny_request(false));
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn plugins_status_lists_the_adapter_endpoints() {
    let mock = claude_mock();
    let proxy = claude_proxy(&mock);
    let entry = proxy.plugin_entry("format_tiny");
    assert_eq!(
        entry["format_adapters"],
        json!([{"from": "example.tiny", "to": "openai.chat_completions", "priority": 100, "endpoint": "/v1/tiny"}]),
        "{entry:#}"
    );
    assert_eq!(
        entry["adapter_endpoints"],
        json!([{
            "route": "POST /claude/v1/tiny", "from": "example.tiny", "to": "openai.chat_completions",
            "provider": "claude_api", "provider_endpoint": "/claude/v1/chat/completions",
        }]),
        "{entry:#}"
    );
    // Only POST is mounted; the provider's own endpoints are untouched.
    assert_eq!(proxy.get("/claude/v1/tiny").status, 405);
    let status = proxy.get("/plugins/status").json();
    assert_eq!(status["route_conflicts"], json!([]), "{status:#}");
}

#[test]
fn a_tiny_request_reaches_codex_as_a_responses_request() {
    let mock = codex::start_mock();
    let sandbox = ccproxy_e2e::Sandbox::new();
    codex::write_auth_json(
        &codex::auth_json_path(sandbox.root()),
        &codex::access_token(),
        codex::REFRESH_TOKEN,
    );
    sandbox.install(TINY[0]);
    let proxy = codex::start_proxy(&mock, sandbox, &[]);
    let expected = stream_text(
        "codex_responses_stream",
        "response.output_text.delta",
        "/delta",
    );
    let entry = proxy.plugin_entry("format_tiny");
    let routes: Vec<&str> = entry["adapter_endpoints"]
        .as_array()
        .expect("adapter endpoints")
        .iter()
        .filter_map(|endpoint| endpoint["route"].as_str())
        .collect();
    assert_eq!(routes, ["POST /codex/v1/tiny"], "{entry:#}");

    // The backend always streams; a complete tiny answer is accumulated.
    let body = json!({"model": "gpt-5", "prompt": PROMPT}).to_string();
    let reply = post_tiny(&proxy, "/codex/v1/tiny", body.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["text"], expected, "{answer}");
    assert_eq!(answer["model"], "gpt-5", "{answer}");
    assert!(
        answer["tokens"]["out"].as_u64().is_some_and(|out| out > 0),
        "{answer}"
    );

    let reply = post_tiny(&proxy, "/codex/v1/tiny", &{
        let mut streamed = json!({"model": "gpt-5", "prompt": PROMPT, "stream": true});
        streamed["max_tokens"] = json!(64);
        streamed.to_string().into_bytes()
    });
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (text, _) = tiny_stream_text(&reply);
    assert_eq!(text, expected);

    // Both reached the backend as the Codex CLI's Responses requests.
    let upstream = mock.codex_requests();
    assert_eq!(upstream.len(), 2, "{upstream:#?}");
    for request in &upstream {
        let body = &request["body"];
        assert_eq!(body["stream"], true, "{body}");
        let input = body["input"].as_array().expect("input is a list");
        assert_eq!(input.len(), 1, "{body}");
        assert_eq!(input[0]["role"], "user");
        assert_eq!(said(&input[0]["content"]), PROMPT, "{body}");
    }
    assert_eq!(open_streams(&proxy), 0);
}
