//! The provider path end to end: the real host with the real `claude_api`
//! plugin in front of the mock upstream (`ccproxy_e2e::mock`). What reaches the
//! upstream for each client format, byte-for-byte passthrough of native
//! streams, cancellation when the client goes away, timeouts, unreachable
//! upstreams, upstream errors, broken streams, malformed bodies, bypass
//! mode, and the model list: current models only, what each name maps to,
//! and requests that follow it.

use std::{
    io::{Read, Write},
    net::TcpListener,
    time::{Duration, Instant},
};

use ccproxy_e2e::{Proxy, ProxyOptions, Reply, mock::Mock, poll, workspace_root};
use serde_json::{Value, json};

/// The API key the proxy holds; the mock refuses any other.
const API_KEY: &str = "test-key";
/// The model of the recorded Anthropic samples.
const MODEL: &str = "claude-sonnet-4-5-20250929";

/// A client format and the endpoint where the plugin serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Anthropic,
    Chat,
    Responses,
}

const CLIENTS: [Client; 3] = [Client::Anthropic, Client::Chat, Client::Responses];

impl Client {
    fn path(self) -> &'static str {
        match self {
            Client::Anthropic => "/claude/v1/messages",
            Client::Chat => "/claude/v1/chat/completions",
            Client::Responses => "/claude/v1/responses",
        }
    }

    /// "Hello", with a system prompt where the format has a place for one.
    fn body(self, stream: bool) -> Value {
        match self {
            Client::Anthropic => json!({
                "model": MODEL, "max_tokens": 100, "stream": stream,
                "messages": [{"role": "user", "content": "Hello"}],
            }),
            Client::Chat => json!({
                "model": MODEL, "stream": stream,
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
            }),
            Client::Responses => json!({
                "model": MODEL, "stream": stream, "instructions": "Be brief.", "input": "Hello",
            }),
        }
    }

    /// Checks that `reply` is an error of this format with `status`; returns
    /// its message.
    fn error_message(self, reply: &Reply, status: u16) -> String {
        assert_eq!(reply.status, status, "{self:?}: {}", reply.text());
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{self:?}: {:?}",
            reply.headers
        );
        let body = reply.json();
        let error = match self {
            Client::Anthropic => {
                assert_eq!(body["type"], "error", "{self:?}: {body}");
                &body["error"]
            }
            Client::Chat | Client::Responses => {
                assert!(body.get("type").is_none(), "{self:?}: {body}");
                &body["error"]
            }
        };
        assert!(error["type"].is_string(), "{self:?}: {body}");
        error["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{self:?}: no error message in {body}"))
            .to_owned()
    }
}

fn sample(name: &str) -> Value {
    let path = workspace_root().join(format!("tests/data/samples/{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).expect("samples are JSON")
}

/// The text of the recorded plain answer.
fn plain_text() -> String {
    sample("claude_messages")["response"]["body"]["content"][0]["text"]
        .as_str()
        .expect("the plain sample answers with text")
        .to_owned()
}

/// The recorded stream as the upstream sends it on the wire.
fn recorded_stream_bytes(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for event in sample(name)["response"]["events"]
        .as_array()
        .expect("a stream sample has events")
    {
        // The recorder's `[DONE]` marker is not on Anthropic's wire.
        if event["done"] == true {
            continue;
        }
        if let Some(name) = event["event"].as_str() {
            out.extend_from_slice(format!("event: {name}\n").as_bytes());
        }
        out.extend_from_slice(
            format!("data: {}\n\n", event["data"].as_str().unwrap_or("")).as_bytes(),
        );
    }
    out
}

/// `(event name, data)` of every event of an SSE body.
fn sse_events(body: &[u8]) -> Vec<(Option<String>, String)> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.trim_start().to_owned());
                }
            }
            (name, data.join("\n"))
        })
        .collect()
}

fn mock() -> Mock {
    Mock::start(&[
        "--expect-header",
        &format!("x-api-key={API_KEY}"),
        "--expect-header",
        "anthropic-version",
        "--forbid-header",
        "authorization",
    ])
}

/// The proxy with `claude_api` (API key mode) in front of `base_url`.
fn proxy_for(base_url: &str, env: &[(&str, &str)], args: &[&str]) -> Proxy {
    let mut all_env = vec![
        ("PLUGINS__CLAUDE_API__BASE_URL", base_url),
        ("ANTHROPIC_API_KEY", API_KEY),
    ];
    all_env.extend_from_slice(env);
    Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        env: &all_env,
        args,
        ..ProxyOptions::default()
    })
}

fn post(proxy: &Proxy, client: Client, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    proxy.request("POST", client.path(), &all, body.to_string().as_bytes())
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("127.0.0.1:0 can be bound");
    listener.local_addr().expect("a bound address").port()
}

/// Client headers that must never reach the upstream: its own credentials,
/// cookies, and hop-by-hop headers.
const CLIENT_ONLY: [(&str, &str); 6] = [
    ("authorization", "Bearer client-secret"),
    ("x-api-key", "client-key"),
    ("cookie", "session=client"),
    ("proxy-authorization", "Basic Y2xpZW50OnNlY3JldA=="),
    ("keep-alive", "timeout=5"),
    ("te", "trailers"),
];

#[test]
fn each_client_format_reaches_the_upstream_as_anthropic_with_the_proxys_key() {
    let mock = mock();
    let proxy = proxy_for(&mock.url(), &[], &[]);
    let text = plain_text();
    for client in CLIENTS {
        mock.reset();
        let mut headers = CLIENT_ONLY.to_vec();
        if client == Client::Anthropic {
            headers.push(("anthropic-beta", "prompt-caching-2024-07-31"));
        }
        let reply = post(&proxy, client, &client.body(false), &headers);
        assert_eq!(reply.status, 200, "{client:?}: {}", reply.text());

        // The answer, converted into the client's format.
        let answer = reply.json();
        let answered_text = match client {
            Client::Anthropic => {
                assert_eq!(answer["type"], "message", "{answer}");
                &answer["content"][0]["text"]
            }
            Client::Chat => {
                assert_eq!(answer["object"], "chat.completion", "{answer}");
                assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
                &answer["choices"][0]["message"]["content"]
            }
            Client::Responses => {
                assert_eq!(answer["object"], "response", "{answer}");
                assert_eq!(answer["status"], "completed", "{answer}");
                &answer["output"][0]["content"][0]["text"]
            }
        };
        assert_eq!(answered_text, &json!(text), "{client:?}: {answer}");

        // What the upstream got: one Anthropic request, the proxy's key.
        let received = mock.requests();
        assert_eq!(received.len(), 1, "{client:?}: {received:#?}");
        let upstream = &received[0];
        assert_eq!(
            (&upstream["method"], &upstream["path"]),
            (&json!("POST"), &json!("/v1/messages"))
        );
        let upstream_headers = &upstream["headers"];
        assert_eq!(upstream_headers["x-api-key"], API_KEY, "{client:?}");
        assert_eq!(
            upstream_headers["anthropic-version"], "2023-06-01",
            "{client:?}"
        );
        assert!(
            upstream_headers["content-type"]
                .as_str()
                .is_some_and(|t| t.starts_with("application/json")),
            "{upstream_headers}"
        );
        for (name, _) in CLIENT_ONLY {
            if name != "x-api-key" {
                assert!(
                    upstream_headers.get(name).is_none(),
                    "{client:?}: the client's {name} reached the upstream: {upstream_headers}"
                );
            }
        }
        let text_of_headers = upstream_headers.to_string();
        for secret in ["client-secret", "client-key", "session=client"] {
            assert!(
                !text_of_headers.contains(secret),
                "{client:?}: {secret} leaked: {text_of_headers}"
            );
        }
        if client == Client::Anthropic {
            assert_eq!(
                upstream_headers["anthropic-beta"],
                "prompt-caching-2024-07-31"
            );
        }

        let body = &upstream["body"];
        assert_eq!(body["model"], MODEL, "{client:?}: {body}");
        assert!(body["max_tokens"].as_u64().is_some(), "{client:?}: {body}");
        assert!(body.get("stream").is_none_or(|s| s == false), "{body}");
        let messages = body["messages"].as_array().expect("Anthropic messages");
        assert_eq!(messages.len(), 1, "{client:?}: {body}");
        assert_eq!(messages[0]["role"], "user");
        let content = &messages[0]["content"];
        assert!(
            content == "Hello" || content == &json!([{"type": "text", "text": "Hello"}]),
            "{client:?}: {content}"
        );
        if client != Client::Anthropic {
            // The system prompt moves to Anthropic's top-level `system`.
            let system = body["system"].to_string();
            assert!(system.contains("Be brief."), "{client:?}: {body}");
            assert!(body.get("instructions").is_none(), "{body}");
            assert!(body.get("input").is_none(), "{body}");
        }
    }

    // count_tokens goes out with the same credentials.
    mock.reset();
    let reply = proxy.request(
        "POST",
        "/claude/v1/messages/count_tokens",
        &[
            ("content-type", "application/json"),
            CLIENT_ONLY[0],
            CLIENT_ONLY[1],
        ],
        json!({"model": MODEL, "messages": [{"role": "user", "content": "12345678"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The mock's estimate: characters of "user" and "12345678", over four.
    assert_eq!(reply.json(), json!({"input_tokens": 3}));
    let counted = mock.requests_to("/v1/messages/count_tokens");
    assert_eq!(counted.len(), 1, "{counted:#?}");
    assert_eq!(counted[0]["headers"]["x-api-key"], API_KEY);
}

#[test]
fn a_native_stream_passes_through_byte_for_byte() {
    let mock = mock();
    let proxy = proxy_for(&mock.url(), &[], &[]);
    for (request, sample_name) in [
        (Client::Anthropic.body(true), "claude_messages_stream"),
        (
            {
                let mut body = sample("claude_messages_tools")["request"]["payload"].clone();
                body["stream"] = json!(true);
                body
            },
            "claude_messages_tools+synthesized-stream",
        ),
    ] {
        mock.reset();
        let reply = post(&proxy, Client::Anthropic, &request, &[]);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/event-stream")),
            "{:?}",
            reply.headers
        );
        let upstream = mock.requests_to("/v1/messages");
        assert_eq!(upstream.len(), 1);
        let response = &upstream[0]["response"];
        assert_eq!(response["sample"], sample_name);
        assert_eq!(response["outcome"], "completed");
        let sent = response["body"]
            .as_str()
            .expect("the mock records its bytes");
        assert!(
            reply.body == sent.as_bytes(),
            "{sample_name}: the proxy changed the stream\nupstream:\n{sent}\nclient:\n{}",
            reply.text()
        );
        assert!(sse_events(&reply.body).len() >= 8, "{}", reply.text());
    }
    // And what the mock sent is the recording itself.
    mock.reset();
    let reply = post(
        &proxy,
        Client::Anthropic,
        &Client::Anthropic.body(true),
        &[],
    );
    assert!(
        reply.body == recorded_stream_bytes("claude_messages_stream"),
        "{}",
        reply.text()
    );
}

#[test]
fn a_client_that_goes_away_mid_stream_cancels_the_upstream_request() {
    let mock = mock();
    let proxy = proxy_for(&mock.url(), &[], &[]);
    let full = recorded_stream_bytes("claude_messages_stream");
    // Passed through (Anthropic) and converted (Chat, Responses) alike.
    for (n, client) in CLIENTS.into_iter().enumerate() {
        // Ten events 300 ms apart: three seconds if nobody hangs up.
        mock.fault(json!({"kind": "trickle", "delay_ms": 300}));
        let body = client.body(true).to_string();
        let mut stream = proxy.connect();
        write!(
            stream,
            "POST {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            client.path(),
            body.len()
        )
        .expect("the request can be written");
        let started = Instant::now();
        // The first text delta is the third event.
        let received = ccproxy_e2e::read_until(&mut stream, "Hello! It", &format!("{client:?}"));
        assert!(received.starts_with("HTTP/1.1 200"));
        drop(stream);
        let hung_up = Instant::now();

        let cancelled = poll(Duration::from_secs(5), || {
            (mock.streams()["cancelled"] == n + 1).then_some(())
        });
        assert!(
            cancelled.is_some(),
            "{client:?}: the upstream stream was not cut short: {}; mock log:\n{}\nproxy log:\n{}",
            mock.streams(),
            mock.log(),
            proxy.log()
        );
        assert!(
            hung_up.elapsed() < Duration::from_secs(2),
            "{client:?}: the upstream ran on for {:?} after the client left",
            hung_up.elapsed()
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{client:?}");
        let upstream = mock.requests_to("/v1/messages");
        let last = &upstream.last().expect("an upstream request")["response"];
        assert_eq!(last["outcome"], "cancelled", "{client:?}");
        let sent = last["body"].as_str().unwrap_or_default();
        assert!(
            sent.len() < full.len(),
            "{client:?}: everything was sent: {sent}"
        );
    }
    assert_eq!(mock.streams()["completed"], 0);

    // The proxy serves on.
    let reply = post(
        &proxy,
        Client::Anthropic,
        &Client::Anthropic.body(true),
        &[],
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, full);
}

#[test]
fn an_upstream_that_does_not_answer_in_time_is_a_504_in_the_clients_format() {
    let mock = mock();
    // Regression (claude-api-timeout): `http.read_timeout_seconds` alone bounds
    // a claude_api request (its own `timeout_seconds` is for count_tokens).
    let proxy = proxy_for(&mock.url(), &[("HTTP__READ_TIMEOUT_SECONDS", "1")], &[]);
    mock.fault(json!({"kind": "delay", "delay_ms": 2500, "count": 3}));
    for client in CLIENTS {
        let started = Instant::now();
        let reply = post(&proxy, client, &client.body(false), &[]);
        let waited = started.elapsed();
        let message = client.error_message(&reply, 504);
        assert!(
            message.contains("did not answer within"),
            "{client:?}: {message}"
        );
        assert!(!message.contains(API_KEY), "{message}");
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_millis(2400),
            "{client:?}: answered after {waited:?}"
        );
    }
    assert_eq!(mock.requests_to("/v1/messages").len(), 3);
}

/// An upstream that sends a head announcing 1000 bytes, 13 of them, and then
/// nothing more until the test ends; answers `connections` connections.
fn stalling_upstream(status: u16, connections: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("127.0.0.1:0 can be bound");
    let url = format!("http://{}", listener.local_addr().expect("a bound address"));
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..connections {
            let Ok((mut socket, _)) = listener.accept() else {
                return;
            };
            let mut request = [0u8; 65536];
            let _ = socket.read(&mut request);
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"type\":\"err"
            );
            let _ = socket.write_all(head.as_bytes());
            held.push(socket);
        }
        // Held open, silent, for longer than any read timeout of the test.
        std::thread::sleep(Duration::from_secs(2));
    });
    (url, handle)
}

#[test]
fn an_upstream_that_stalls_inside_its_body_is_a_504_in_the_clients_format() {
    // A complete answer (200) and an error answer (500) that stop halfway.
    for status in [200u16, 500] {
        let (url, upstream) = stalling_upstream(status, CLIENTS.len());
        let proxy = proxy_for(&url, &[("HTTP__READ_TIMEOUT_SECONDS", "1")], &[]);
        for client in CLIENTS {
            let started = Instant::now();
            let reply = post(&proxy, client, &client.body(false), &[]);
            let waited = started.elapsed();
            let message = client.error_message(&reply, 504);
            assert!(
                message.contains("upstream sent nothing for 1 s while sending its answer"),
                "{status} {client:?}: {message}"
            );
            assert!(
                waited < Duration::from_millis(2500),
                "{status} {client:?}: answered after {waited:?}"
            );
        }
        drop(proxy);
        upstream.join().expect("the stalling upstream ends");
    }
}

#[test]
fn an_unreachable_upstream_is_a_502_in_the_clients_format() {
    let base_url = format!("http://127.0.0.1:{}", closed_port());
    let proxy = proxy_for(&base_url, &[], &[]);
    for client in CLIENTS {
        for stream in [false, true] {
            let reply = post(&proxy, client, &client.body(stream), &[]);
            let message = client.error_message(&reply, 502);
            assert!(message.contains("unreachable"), "{client:?}: {message}");
            assert!(message.contains(&base_url), "{client:?}: {message}");
        }
    }
    assert_eq!(proxy.get("/health").status, 200);
}

#[test]
fn upstream_errors_keep_their_status_message_and_retry_after() {
    let mock = mock();
    let proxy = proxy_for(&mock.url(), &[], &[]);
    for (status, anthropic_type) in [
        (429, "rate_limit_error"),
        (529, "overloaded_error"),
        (500, "api_error"),
    ] {
        let message = format!("the mock refuses with {status}");
        mock.fault(json!({
            "kind": "status", "status": status, "count": 3, "retry_after": "7",
            "body": {"type": "error", "error": {"type": anthropic_type, "message": message}},
        }));
        for client in CLIENTS {
            let reply = post(&proxy, client, &client.body(false), &[]);
            assert_eq!(client.error_message(&reply, status), message, "{client:?}");
            if client == Client::Anthropic {
                assert_eq!(reply.json()["error"]["type"], anthropic_type);
            }
            if status == 429 {
                assert_eq!(reply.header("retry-after"), Some("7"), "{client:?}");
            }
        }
    }
}

#[test]
fn a_stream_the_upstream_breaks_ends_with_an_error_event_in_the_clients_format() {
    let mock = mock();
    let proxy = proxy_for(&mock.url(), &[], &[]);
    let full = recorded_stream_bytes("claude_messages_stream");
    let first_three: usize = sse_blocks_len(&full, 3);
    for client in CLIENTS {
        mock.fault(json!({"kind": "reset_mid_stream", "after_events": 3}));
        let reply = post(&proxy, client, &client.body(true), &[]);
        assert_eq!(reply.status, 200, "{client:?}: {}", reply.text());
        let events = sse_events(&reply.body);
        let (name, data) = match client {
            Client::Chat => {
                let (done_name, done) = events.last().expect("events");
                assert_eq!(
                    (done_name, done.as_str()),
                    (&None, "[DONE]"),
                    "{}",
                    reply.text()
                );
                events[events.len() - 2].clone()
            }
            // The documented `error` event, then `response.failed` for clients
            // that wait for the response's end.
            Client::Responses => {
                let (last_name, last) = events.last().expect("events");
                assert_eq!(
                    last_name.as_deref(),
                    Some("response.failed"),
                    "{}",
                    reply.text()
                );
                let failed: Value = serde_json::from_str(last).expect("a JSON event");
                assert_eq!(failed["response"]["status"], "failed", "{failed}");
                events
                    .iter()
                    .rev()
                    .find(|(name, _)| name.as_deref() == Some("error"))
                    .unwrap_or_else(|| panic!("no error event: {}", reply.text()))
                    .clone()
            }
            Client::Anthropic => events.last().expect("events").clone(),
        };
        let error: Value = serde_json::from_str(&data)
            .unwrap_or_else(|e| panic!("{client:?}: {e}: {}", reply.text()));
        match client {
            Client::Anthropic => {
                assert_eq!(name.as_deref(), Some("error"));
                assert_eq!(error["type"], "error");
                // Before the error, the upstream's own bytes.
                assert_eq!(&reply.body[..first_three], &full[..first_three]);
            }
            Client::Responses => {
                assert_eq!(name.as_deref(), Some("error"), "{}", reply.text());
                // OpenAI's documented fields, and the nested error the SDKs read.
                assert_eq!(error["type"], "error", "{error}");
                assert!(
                    error["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("mid-stream"))
                );
                assert!(error["sequence_number"].as_u64().is_some(), "{error}");
            }
            Client::Chat => assert_eq!(name, None),
        }
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("mid-stream"), "{client:?}: {error}");
    }
    assert_eq!(mock.streams()["reset"], 3);
    let reply = post(
        &proxy,
        Client::Anthropic,
        &Client::Anthropic.body(false),
        &[],
    );
    assert_eq!(reply.status, 200, "the proxy serves on");
}

/// The length of the first `n` SSE events of `bytes`.
fn sse_blocks_len(bytes: &[u8], n: usize) -> usize {
    let mut end = 0;
    for _ in 0..n {
        let rest = &bytes[end..];
        let at = rest
            .windows(2)
            .position(|w| w == b"\n\n")
            .expect("enough events");
        end += at + 2;
    }
    end
}

#[test]
fn a_malformed_body_is_a_400_in_the_clients_format_and_never_sent() {
    let mock = mock();
    let proxy = proxy_for(&mock.url(), &[], &[]);
    for client in CLIENTS {
        for body in [&b"{\"model\": \"x\", "[..], b"[1, 2]", b"not json"] {
            let reply = proxy.request(
                "POST",
                client.path(),
                &[("content-type", "application/json")],
                body,
            );
            let message = client.error_message(&reply, 400);
            assert!(!message.is_empty(), "{client:?}");
        }
    }
    assert_eq!(mock.requests(), Vec::<Value>::new());
}

#[test]
fn bypass_mode_answers_every_format_without_an_upstream() {
    // No API key and nothing listening: bypass must need neither.
    let base_url = format!("http://127.0.0.1:{}", closed_port());
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        env: &[("PLUGINS__CLAUDE_API__BASE_URL", &base_url)],
        args: &["--bypass"],
        ..ProxyOptions::default()
    });
    for client in CLIENTS {
        let reply = post(&proxy, client, &client.body(false), &[]);
        assert_eq!(reply.status, 200, "{client:?}: {}", reply.text());
        let answer = reply.json();
        let text = match client {
            Client::Anthropic => {
                assert_eq!(answer["type"], "message");
                assert_eq!(answer["model"], MODEL);
                &answer["content"][0]["text"]
            }
            Client::Chat => {
                assert_eq!(answer["object"], "chat.completion");
                &answer["choices"][0]["message"]["content"]
            }
            Client::Responses => {
                assert_eq!(answer["object"], "response");
                &answer["output"][0]["content"][0]["text"]
            }
        };
        assert!(
            text.as_str().is_some_and(|t| t.contains("bypass")),
            "{client:?}: {answer}"
        );

        let reply = post(&proxy, client, &client.body(true), &[]);
        assert_eq!(reply.status, 200, "{client:?}: {}", reply.text());
        let events = sse_events(&reply.body);
        let (first, last) = (
            events.first().expect("events"),
            events.last().expect("events"),
        );
        match client {
            Client::Anthropic => {
                assert_eq!(first.0.as_deref(), Some("message_start"));
                assert_eq!(last.0.as_deref(), Some("message_stop"));
            }
            Client::Chat => {
                let chunk: Value = serde_json::from_str(&first.1).expect("a JSON chunk");
                assert_eq!(chunk["object"], "chat.completion.chunk");
                assert_eq!(last.1, "[DONE]");
            }
            Client::Responses => {
                assert_eq!(first.0.as_deref(), Some("response.created"));
                assert_eq!(last.0.as_deref(), Some("response.completed"));
            }
        }
    }
    // A token count needs no credentials or upstream either.
    let count = proxy.request(
        "POST",
        "/claude/v1/messages/count_tokens",
        &[("content-type", "application/json")],
        Client::Anthropic.body(false).to_string().as_bytes(),
    );
    assert_eq!(count.status, 200, "{}", count.text());
    assert!(
        count.json()["input_tokens"].as_u64().is_some_and(|n| n > 0),
        "{}",
        count.text()
    );
}

/// `POST path` with `Expect: 100-continue`: the body is sent only when the
/// proxy asks for it (reads it), so a refusal before reading is seen as such.
/// Returns the final status, its headers (names lower-case), its body, and
/// whether the body was sent.
fn post_expecting_continue(
    proxy: &Proxy,
    path: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>, bool) {
    let mut stream = proxy.connect();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("the head is sent");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut sent = false;
    loop {
        let read = stream.read(&mut buffer).expect("the proxy answers");
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
        if !sent
            && answer.starts_with(b"HTTP/1.1 100")
            && let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n")
        {
            answer.drain(..end + 4);
            stream.write_all(body).expect("the body is sent");
            sent = true;
        }
    }
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers, answer[end + 4..].to_vec(), sent)
}

/// A native request of about `mib` MiB.
fn large_body(mib: usize) -> Vec<u8> {
    let text = "lorem ipsum ".repeat(mib * 1024 * 1024 / 12);
    json!({
        "model": MODEL, "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
    })
    .to_string()
    .into_bytes()
}

#[test]
fn bodies_past_the_body_budget_get_a_503_unread_and_the_budget_comes_back() {
    let mock = mock();
    // Room for one 3 MiB body at a time; each may be up to 16 MiB.
    let proxy = proxy_for(
        &mock.url(),
        &[
            ("SERVER__BODY_BUDGET_BYTES", "4194304"),
            ("SERVER__MAX_REQUEST_BODY_BYTES", "16777216"),
        ],
        &[],
    );
    // The accepted request holds its share while the upstream thinks.
    mock.fault(json!({"kind": "delay", "delay_ms": 1500, "count": 3}));
    let body = large_body(3);
    let replies: Vec<_> = std::thread::scope(|scope| {
        let requests: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| post_expecting_continue(&proxy, Client::Anthropic.path(), &body))
            })
            .collect();
        requests
            .into_iter()
            .map(|request| request.join().expect("the client thread ends"))
            .collect()
    });
    let statuses: Vec<u16> = replies.iter().map(|reply| reply.0).collect();
    assert!(
        statuses
            .iter()
            .all(|status| *status == 200 || *status == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&503), "{statuses:?}");
    for (status, headers, answer, sent) in &replies {
        let reply = Reply {
            version: "HTTP/1.1".to_owned(),
            status: *status,
            headers: headers.clone(),
            body: answer.clone(),
        };
        if *status == 200 {
            assert!(sent, "an accepted body is read");
            continue;
        }
        // Refused in the client's format, before a byte of the body was read.
        assert!(!sent, "a refused body is never read");
        assert_eq!(reply.header("retry-after"), Some("1"), "{headers:?}");
        let message = Client::Anthropic.error_message(&reply, 503);
        assert!(message.contains("server.body_budget_bytes"), "{message}");
    }
    let accepted = statuses.iter().filter(|status| **status == 200).count();
    assert_eq!(mock.requests_to("/v1/messages").len(), accepted);

    // Every share came back: the next body is accepted, and so is one larger
    // than the whole budget (alone, it may take all of it).
    mock.reset();
    let reply = proxy.request(
        "POST",
        Client::Anthropic.path(),
        &[("content-type", "application/json")],
        &body,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let larger = large_body(6);
    let reply = proxy.request(
        "POST",
        Client::Chat.path(),
        &[("content-type", "application/json")],
        &String::from_utf8(larger)
            .expect("JSON is text")
            .replace("\"max_tokens\":100,", "")
            .into_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        proxy
            .log()
            .contains("the budget of request bodies in flight is full"),
        "{}",
        proxy.log()
    );
}

/// Models Anthropic has retired (its deprecation table): none is listed,
/// and each one a client still sends reaches the upstream as its successor.
const RETIRED_CLAUDE: [(&str, &str); 9] = [
    ("claude-sonnet-4-20250514", "claude-sonnet-4-6"),
    ("claude-opus-4-20250514", "claude-opus-4-6"),
    ("claude-sonnet-4-0", "claude-sonnet-4-6"),
    ("claude-3-5-sonnet-20241022", "claude-sonnet-4-6"),
    ("claude-3-5-haiku-latest", "claude-haiku-4-5-20251001"),
    ("claude-3-7-sonnet-20250219", "claude-sonnet-4-6"),
    ("claude-3-opus-20240229", "claude-opus-4-6"),
    ("claude-3-haiku-20240307", "claude-haiku-4-5-20251001"),
    ("claude-3-sonnet-20240229", "claude-sonnet-4-6"),
];

#[test]
fn models_lists_current_models_and_what_each_name_maps_to() {
    let mock = mock();
    let proxy = proxy_for(&mock.url(), &[], &[]);
    let reply = proxy.get("/claude/v1/models");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let listed = reply.json();
    assert!(mock.requests().is_empty(), "the plugin's own list");
    // Both SDKs' list shapes at once.
    assert_eq!(listed["object"], "list", "{listed}");
    assert_eq!(listed["has_more"], false, "{listed}");
    let data = listed["data"].as_array().expect("a list of models");
    for entry in data {
        assert_eq!(
            (&entry["object"], &entry["type"]),
            (&json!("model"), &json!("model")),
            "{entry}"
        );
        assert!(
            entry["created"].is_u64() && entry["created_at"].is_string(),
            "{entry}"
        );
        assert!(entry["display_name"].is_string(), "{entry}");
        let id = entry["id"].as_str().expect("an id");
        assert!(
            !id.starts_with("claude-3"),
            "a retired model is listed: {entry}"
        );
    }
    let maps_to = |id: &str| {
        data.iter()
            .find(|entry| entry["id"] == id)
            .unwrap_or_else(|| panic!("{id} is not listed: {listed}"))
            .get("maps_to")
            .cloned()
    };
    assert_eq!(maps_to("claude-sonnet-4-6"), None, "a model sent as it is");
    assert_eq!(maps_to(MODEL), None);
    assert_eq!(maps_to("sonnet"), Some(json!("claude-sonnet-4-6")));
    assert_eq!(maps_to("opus"), Some(json!("claude-opus-4-6")));
    assert_eq!(maps_to("haiku"), Some(json!("claude-haiku-4-5-20251001")));
    let listed_ids: Vec<&Value> = data.iter().map(|entry| &entry["id"]).collect();
    for (retired, _) in RETIRED_CLAUDE {
        assert!(
            !listed_ids.contains(&&json!(retired)),
            "the retired {retired} is listed: {listed}"
        );
    }
    // Every rule, with a listed current model as its target.
    let rules = listed["mappings"].as_array().expect("the rules");
    let rule_target = |pattern: &str| {
        rules
            .iter()
            .find(|rule| rule["pattern"] == pattern)
            .map(|rule| rule["maps_to"].clone())
    };
    assert_eq!(
        rule_target("gpt-4o-mini"),
        Some(json!("claude-haiku-4-5-20251001"))
    );
    assert_eq!(
        rule_target("^gpt-4(?:[^o]|$)"),
        Some(json!("claude-sonnet-4-6"))
    );
    assert_eq!(
        rule_target("gpt-3.5"),
        Some(json!("claude-haiku-4-5-20251001"))
    );
    assert_eq!(
        rule_target("text-davinci"),
        Some(json!("claude-sonnet-4-6"))
    );
    for rule in rules {
        assert!(
            listed_ids.contains(&&rule["maps_to"]),
            "{rule} targets an unlisted model"
        );
    }

    // What the list says is what happens: the upstream gets the target and
    // the client sees the name it asked for.
    let sent = [
        ("gpt-3.5-turbo", "claude-haiku-4-5-20251001"),
        ("gpt-4", "claude-sonnet-4-6"),
        ("text-davinci-003", "claude-sonnet-4-6"),
        // The Codex CLI's own models.
        ("gpt-5.5", "claude-sonnet-4-6"),
        ("o4-mini", "claude-opus-4-6"),
        ("haiku", "claude-haiku-4-5-20251001"),
    ];
    for (asked, expected) in sent.into_iter().chain(RETIRED_CLAUDE) {
        mock.reset();
        let body = json!({"model": asked, "messages": [{"role": "user", "content": "Hello"}]});
        let reply = post(&proxy, Client::Chat, &body, &[]);
        assert_eq!(reply.status, 200, "{asked}: {}", reply.text());
        assert_eq!(reply.json()["model"], asked, "the client's name comes back");
        let upstream = mock.requests_to("/v1/messages");
        assert_eq!(upstream.len(), 1, "{asked}");
        assert_eq!(upstream[0]["body"]["model"], expected, "{asked}");
    }
}
