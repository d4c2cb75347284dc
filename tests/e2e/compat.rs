//! The `compat` plugin end to end: the real host with two configured
//! upstreams at once, one speaking Chat Completions and one Anthropic
//! Messages (both played by the mock upstream), reached in every client
//! format, streamed and not, with tool calls; the quirks of real
//! OpenAI-compatible servers (the mock's `--quirk` modes); usage and cost in
//! the access log; and the bad cases: an upstream that is down, answers
//! HTML or breaks mid-stream, a credential variable that is not set.

use std::{fs, net::TcpListener};

use ccproxy_e2e::{Proxy, ProxyOptions, Reply, mock::Mock, poll};
use serde_json::{Value, json};

/// The keys the proxy holds for each upstream (the clients send others).
const CHAT_KEY: &str = "chat-upstream-key";
const ANTHROPIC_KEY: &str = "anthropic-upstream-key";

/// The two upstreams, by name: `chatup` speaks Chat Completions, `anthup`
/// Anthropic Messages.
const UPSTREAMS: [&str; 2] = ["chatup", "anthup"];

/// A client format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Messages,
    Chat,
    Responses,
}

const CLIENTS: [Client; 3] = [Client::Messages, Client::Chat, Client::Responses];

impl Client {
    fn path(self, upstream: &str) -> String {
        match self {
            Client::Messages => format!("/{upstream}/v1/messages"),
            Client::Chat => format!("/{upstream}/v1/chat/completions"),
            Client::Responses => format!("/{upstream}/v1/responses"),
        }
    }

    /// "Hello" with or without a `get_weather` tool.
    fn body(self, model: &str, stream: bool, tools: bool) -> Value {
        let schema = json!({"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]});
        let mut body = match self {
            Client::Messages => json!({
                "model": model, "max_tokens": 200, "stream": stream,
                "messages": [{"role": "user", "content": "What is the weather in New York?"}],
            }),
            Client::Chat => json!({
                "model": model, "stream": stream,
                "messages": [{"role": "user", "content": "What is the weather in New York?"}],
            }),
            Client::Responses => json!({
                "model": model, "stream": stream, "input": "What is the weather in New York?",
            }),
        };
        if tools {
            body["tools"] = match self {
                Client::Messages => {
                    json!([{"name": "get_weather", "description": "Weather", "input_schema": schema}])
                }
                Client::Chat => {
                    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": schema}}])
                }
                Client::Responses => {
                    json!([{"type": "function", "name": "get_weather", "description": "Weather", "parameters": schema}])
                }
            };
        }
        body
    }

    /// The tool calls of an answer (a complete one or a stream), as
    /// `(name, arguments)`; panics when the answer is not well-formed.
    /// `done`: a Chat stream ends with `[DONE]` (a Chat upstream's own
    /// stream passes to a Chat client as it is, so one that sends none
    /// reaches the client without).
    fn tool_calls(self, reply: &Reply, stream: bool, done: bool) -> Vec<(String, Value)> {
        assert_eq!(reply.status, 200, "{self:?}: {}", reply.text());
        if !stream {
            let body = reply.json();
            return match self {
                Client::Messages => body["content"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no content: {body}"))
                    .iter()
                    .filter(|b| b["type"] == "tool_use")
                    .map(|b| (b["name"].as_str().unwrap().to_owned(), b["input"].clone()))
                    .collect(),
                Client::Chat => body["choices"][0]["message"]["tool_calls"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| {
                        let args = c["function"]["arguments"].as_str().unwrap();
                        (
                            c["function"]["name"].as_str().unwrap().to_owned(),
                            serde_json::from_str(args).unwrap(),
                        )
                    })
                    .collect(),
                Client::Responses => body["output"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no output: {body}"))
                    .iter()
                    .filter(|item| item["type"] == "function_call")
                    .map(|item| {
                        let args = item["arguments"].as_str().unwrap();
                        (
                            item["name"].as_str().unwrap().to_owned(),
                            serde_json::from_str(args).unwrap(),
                        )
                    })
                    .collect(),
            };
        }
        let events = sse_events(&reply.body);
        let names: Vec<&str> = events.iter().filter_map(|(n, _)| n.as_deref()).collect();
        match self {
            Client::Messages => {
                assert_eq!(names.last(), Some(&"message_stop"), "{}", reply.text());
                let mut calls: Vec<(String, String)> = Vec::new();
                for (_, data) in &events {
                    if data["type"] == "content_block_start"
                        && data["content_block"]["type"] == "tool_use"
                    {
                        let name = data["content_block"]["name"].as_str().unwrap().to_owned();
                        calls.push((name, String::new()));
                    }
                    if data["delta"]["type"] == "input_json_delta" {
                        let last = calls.last_mut().expect("a delta after its block");
                        last.1
                            .push_str(data["delta"]["partial_json"].as_str().unwrap());
                    }
                }
                calls
                    .into_iter()
                    .map(|(name, args)| (name, serde_json::from_str(&args).unwrap()))
                    .collect()
            }
            Client::Chat => {
                let ends_done = events.last().map(|(_, d)| d.clone()) == Some(json!("[DONE]"));
                assert_eq!(ends_done, done, "{}", reply.text());
                let mut calls: Vec<(String, String)> = Vec::new();
                for (_, data) in &events {
                    let Some(deltas) = data
                        .pointer("/choices/0/delta/tool_calls")
                        .and_then(Value::as_array)
                    else {
                        continue;
                    };
                    for delta in deltas {
                        if let Some(name) = delta["function"]["name"].as_str() {
                            calls.push((name.to_owned(), String::new()));
                        }
                        if let Some(args) = delta["function"]["arguments"].as_str() {
                            calls
                                .last_mut()
                                .expect("arguments after a name")
                                .1
                                .push_str(args);
                        }
                    }
                }
                calls
                    .into_iter()
                    .map(|(name, args)| (name, serde_json::from_str(&args).unwrap()))
                    .collect()
            }
            Client::Responses => {
                assert_eq!(
                    names.last(),
                    Some(&"response.completed"),
                    "{}",
                    reply.text()
                );
                let completed = &events.last().unwrap().1;
                completed["response"]["output"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|item| item["type"] == "function_call")
                    .map(|item| {
                        (
                            item["name"].as_str().unwrap().to_owned(),
                            serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap(),
                        )
                    })
                    .collect()
            }
        }
    }

    /// Checks that `reply` is an error of this format with `status`; returns
    /// its message.
    fn error_message(self, reply: &Reply, status: u16) -> String {
        assert_eq!(reply.status, status, "{self:?}: {}", reply.text());
        let body = reply.json();
        match self {
            Client::Messages => assert_eq!(body["type"], "error", "{self:?}: {body}"),
            Client::Chat | Client::Responses => {
                assert!(body.get("type").is_none(), "{self:?}: {body}");
            }
        }
        assert!(body["error"]["type"].is_string(), "{self:?}: {body}");
        body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{self:?}: no error message in {body}"))
            .to_owned()
    }
}

/// `(event name, data as JSON; a string when it is not JSON)` of an SSE body.
fn sse_events(body: &[u8]) -> Vec<(Option<String>, Value)> {
    String::from_utf8_lossy(body)
        .replace("\r\n", "\n")
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
            let data = data.join("\n");
            let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, value)
        })
        .collect()
}

/// The config of the two upstreams, both at `mock_url`.
fn config(mock_url: &str, chat_env: &str) -> String {
    format!(
        r#"
[plugins.compat.upstreams.chatup]
base_url = "{mock_url}/v1"
format = "openai.chat_completions"
api_key_env = "{chat_env}"
headers = {{ "X-Title" = "ccproxy e2e" }}

[plugins.compat.upstreams.anthup]
base_url = "{mock_url}"
format = "anthropic.messages"
api_key_env = "COMPAT_E2E_ANTHROPIC_KEY"
models = ["claude-sonnet-4-20250514"]
default_model = "claude-sonnet-4-20250514"
"#
    )
}

/// Two upstreams at `mock_url` without credentials, for the real-client
/// tests: `chatup` (the mock's Chat Completions endpoint; Claude Code with
/// `ANTHROPIC_BASE_URL={proxy}/chatup`) and `anthup` (its Anthropic Messages
/// endpoint; the Codex CLI with `base_url = "{proxy}/anthup/v1"`, any model:
/// it becomes `claude-sonnet-4-20250514`). Start the proxy with
/// `bundled: &["compat"]` and this as `config_toml`.
pub(crate) fn mock_config(mock_url: &str) -> String {
    format!(
        r#"
[plugins.compat.upstreams.chatup]
base_url = "{mock_url}/v1"
format = "openai.chat_completions"

[plugins.compat.upstreams.anthup]
base_url = "{mock_url}"
format = "anthropic.messages"
models = ["claude-sonnet-4-20250514"]
default_model = "claude-sonnet-4-20250514"
"#
    )
}

fn start_proxy(mock_url: &str, bundled: &[&str], env: &[(&str, &str)]) -> Proxy {
    let toml = config(mock_url, "COMPAT_E2E_CHAT_KEY");
    let mut all_env = vec![
        ("COMPAT_E2E_CHAT_KEY", CHAT_KEY),
        ("COMPAT_E2E_ANTHROPIC_KEY", ANTHROPIC_KEY),
    ];
    all_env.extend_from_slice(env);
    Proxy::start(ProxyOptions {
        bundled,
        env: &all_env,
        config_toml: Some(&toml),
        ..ProxyOptions::default()
    })
}

fn post(proxy: &Proxy, path: &str, body: &Value) -> Reply {
    proxy.request(
        "POST",
        path,
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer client-secret"),
            ("x-api-key", "client-secret"),
        ],
        body.to_string().as_bytes(),
    )
}

/// The model each upstream's recorded samples answer for.
fn model_for(upstream: &str) -> &'static str {
    match upstream {
        "chatup" => "gpt-4o",
        _ => "claude-sonnet-4-20250514",
    }
}

/// Every client format, streamed and not, with and without tools, against
/// `proxy`'s two upstreams; checks the answers and what reached the mock.
fn every_format_against_both(proxy: &Proxy, mock: &Mock, quirks: &str) {
    for upstream in UPSTREAMS {
        for client in CLIENTS {
            for stream in [false, true] {
                for tools in [false, true] {
                    mock.reset();
                    let case =
                        format!("{quirks} {upstream} {client:?} stream={stream} tools={tools}");
                    let body = client.body(model_for(upstream), stream, tools);
                    let reply = post(proxy, &client.path(upstream), &body);
                    let done = !(quirks.contains("no_done") && upstream == "chatup");
                    let calls = client.tool_calls(&reply, stream, done);
                    if tools {
                        let names: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
                        assert_eq!(names, ["get_weather", "calculate_distance"], "{case}");
                        assert_eq!(calls[0].1, json!({"location": "New York"}), "{case}");
                    } else {
                        assert!(calls.is_empty(), "{case}: {calls:?}");
                    }
                    let requests = mock.requests();
                    assert_eq!(requests.len(), 1, "{case}: {requests:#?}");
                    let sent = &requests[0];
                    let headers = &sent["headers"];
                    match upstream {
                        "chatup" => {
                            assert_eq!(sent["path"], "/v1/chat/completions", "{case}");
                            assert_eq!(
                                headers["authorization"],
                                format!("Bearer {CHAT_KEY}"),
                                "{case}"
                            );
                            assert!(headers.get("x-api-key").is_none(), "{case}: {headers}");
                            assert_eq!(headers["x-title"], "ccproxy e2e", "{case}");
                            if stream {
                                assert_eq!(
                                    sent["body"]["stream_options"]["include_usage"], true,
                                    "{case}"
                                );
                            }
                        }
                        _ => {
                            assert_eq!(sent["path"], "/v1/messages", "{case}");
                            assert_eq!(headers["x-api-key"], ANTHROPIC_KEY, "{case}");
                            assert!(headers.get("authorization").is_none(), "{case}: {headers}");
                            assert_eq!(headers["anthropic-version"], "2023-06-01", "{case}");
                        }
                    }
                    if quirks != "no quirks" && upstream == "chatup" && stream {
                        let sample = sent["response"]["sample"].as_str().unwrap_or_default();
                        assert!(
                            sample.contains("+quirks:"),
                            "{case}: the mock answered {sample}"
                        );
                    }
                    assert_eq!(sent["body"]["model"], model_for(upstream), "{case}");
                    assert_eq!(sent["body"]["stream"] == true, stream, "{case}");
                }
            }
        }
    }
}

#[test]
fn every_client_format_reaches_two_upstreams_streamed_and_not_with_tools() {
    let mock = Mock::start(&[]);
    let proxy = start_proxy(&mock.url(), &["compat"], &[]);
    proxy.wait_for_log("upstream chatup", std::time::Duration::from_secs(5));
    every_format_against_both(&proxy, &mock, "no quirks");
}

#[test]
fn the_quirks_of_real_servers_are_tolerated() {
    for quirks in [
        &[
            "no_usage_unless_asked",
            "no_tool_index",
            "reasoning_content",
            "empty_choices",
        ][..],
        &["reasoning", "no_done"][..],
    ] {
        let args: Vec<&str> = quirks.iter().flat_map(|quirk| ["--quirk", quirk]).collect();
        let mock = Mock::start(&args);
        let proxy = start_proxy(&mock.url(), &["compat"], &[]);
        every_format_against_both(&proxy, &mock, &quirks.join(","));
        // The reasoning reaches clients that have a place for it.
        let reply = post(
            &proxy,
            "/chatup/v1/messages",
            &Client::Messages.body("gpt-4o", false, false),
        );
        let body = reply.json();
        assert_eq!(body["content"][0]["type"], "thinking", "{quirks:?}: {body}");
        assert!(
            body["content"][0]["thinking"]
                .as_str()
                .is_some_and(|t| t.contains("I should answer briefly.")),
            "{body}"
        );
    }
}

#[test]
fn usage_and_cost_of_a_stream_reach_the_access_log() {
    // Without include_usage the mock's streams carry no usage: the plugin
    // must ask for it.
    let mock = Mock::start(&["--quirk", "no_usage_unless_asked"]);
    let logs = tempfile::tempdir().expect("a scratch folder");
    let client_log = logs.path().join("access.log");
    let client_log_text = client_log.display().to_string();
    let proxy = start_proxy(
        &mock.url(),
        &["compat", "access_log", "pricing"],
        &[("PLUGINS__ACCESS_LOG__CLIENT_LOG_FILE", &client_log_text)],
    );
    for client in CLIENTS {
        let reply = post(
            &proxy,
            &client.path("chatup"),
            &client.body("gpt-4o", true, false),
        );
        assert_eq!(reply.status, 200, "{client:?}: {}", reply.text());
    }
    let (exit, log) = proxy.stop_with(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}\n{log}");
    let text = fs::read_to_string(&client_log)
        .unwrap_or_else(|error| panic!("{}: {error}; log:\n{log}", client_log.display()));
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &Value| {
            line["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/chatup/"))
        })
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in &lines {
        assert_eq!(line["provider"], "compat", "{line}");
        assert_eq!(line["model"], "gpt-4o", "{line}");
        assert!(
            line["tokens_input"].as_u64().is_some_and(|n| n > 0),
            "{line}"
        );
        assert!(
            line["tokens_output"].as_u64().is_some_and(|n| n > 0),
            "{line}"
        );
        assert!(line["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "{line}");
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("127.0.0.1:0 can be bound");
    listener.local_addr().expect("a bound address").port()
}

#[test]
fn an_upstream_that_is_down_is_a_502_in_the_clients_format_and_the_other_serves() {
    let mock = Mock::start(&[]);
    let down = format!("http://127.0.0.1:{}", closed_port());
    let toml = config(&mock.url(), "COMPAT_E2E_CHAT_KEY")
        .replace(&format!("{}/v1", mock.url()), &format!("{down}/v1"));
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["compat"],
        env: &[
            ("COMPAT_E2E_CHAT_KEY", CHAT_KEY),
            ("COMPAT_E2E_ANTHROPIC_KEY", ANTHROPIC_KEY),
        ],
        config_toml: Some(&toml),
        ..ProxyOptions::default()
    });
    for client in CLIENTS {
        for stream in [false, true] {
            let reply = post(
                &proxy,
                &client.path("chatup"),
                &client.body("gpt-4o", stream, false),
            );
            let message = client.error_message(&reply, 502);
            assert!(message.contains("unreachable"), "{client:?}: {message}");
            assert!(message.contains(&down), "{client:?}: {message}");
        }
        let reply = post(
            &proxy,
            &client.path("anthup"),
            &client.body("x", false, false),
        );
        assert_eq!(reply.status, 200, "{client:?}: {}", reply.text());
    }
}

#[test]
fn html_answers_and_error_pages_become_errors_in_the_clients_format() {
    // An error status with an nginx page instead of JSON.
    let mock = Mock::start(&["--quirk", "html_errors"]);
    let proxy = start_proxy(&mock.url(), &["compat"], &[]);
    for upstream in UPSTREAMS {
        for client in CLIENTS {
            mock.fault(json!({"kind": "status", "status": 502}));
            let reply = post(
                &proxy,
                &client.path(upstream),
                &client.body("m", false, false),
            );
            let message = client.error_message(&reply, 502);
            assert!(
                message.contains("502 Bad Gateway"),
                "{upstream} {client:?}: {message}"
            );
        }
    }
    drop(proxy);
    // A 4xx in plain text (uvicorn, a gateway).
    let mock = Mock::start(&["--quirk", "text_errors"]);
    let proxy = start_proxy(&mock.url(), &["compat"], &[]);
    for upstream in UPSTREAMS {
        for client in CLIENTS {
            mock.fault(json!({"kind": "status", "status": 400}));
            let reply = post(
                &proxy,
                &client.path(upstream),
                &client.body("m", false, false),
            );
            let message = client.error_message(&reply, 400);
            assert_eq!(message, "Internal Server Error", "{upstream} {client:?}");
            assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
        }
    }
    drop(proxy);
    // A base URL that points at a web page: 200 text/html. Whatever the
    // formats, streamed or not, a 502 in the client's format naming the
    // upstream, before any of the page reaches the client.
    let mock = Mock::start(&["--quirk", "html_answer"]);
    let proxy = start_proxy(&mock.url(), &["compat"], &[]);
    for upstream in UPSTREAMS {
        for client in CLIENTS {
            for stream in [false, true] {
                let case = format!("{upstream} {client:?} stream={stream}");
                let reply = post(
                    &proxy,
                    &client.path(upstream),
                    &client.body("m", stream, false),
                );
                let message = client.error_message(&reply, 502);
                assert!(
                    message.contains(&format!("provider compat (upstream {upstream})"))
                        && message.contains("200 with text/html, not an API answer"),
                    "{case}: {message}"
                );
            }
        }
    }
}

#[test]
fn a_stream_the_upstream_breaks_ends_with_an_error_in_the_clients_format() {
    let mock = Mock::start(&[]);
    let proxy = start_proxy(&mock.url(), &["compat"], &[]);
    for upstream in UPSTREAMS {
        for client in CLIENTS {
            let case = format!("{upstream} {client:?}");
            mock.fault(json!({"kind": "reset_mid_stream", "after_events": 2}));
            let reply = post(
                &proxy,
                &client.path(upstream),
                &client.body(model_for(upstream), true, false),
            );
            assert_eq!(reply.status, 200, "{case}: {}", reply.text());
            let text = reply.text();
            assert!(text.contains("mid-stream"), "{case}: {text}");
            let events = sse_events(&reply.body);
            match client {
                Client::Messages => assert_eq!(
                    events.last().unwrap().0.as_deref(),
                    Some("error"),
                    "{case}: {text}"
                ),
                Client::Chat => {
                    assert_eq!(events.last().unwrap().1, json!("[DONE]"), "{case}: {text}")
                }
                Client::Responses => assert!(
                    events
                        .iter()
                        .any(|(name, _)| name.as_deref() == Some("error")),
                    "{case}: {text}"
                ),
            }
        }
    }
}

#[test]
fn a_missing_credential_variable_is_named_at_start_up_and_in_each_answer() {
    let mock = Mock::start(&[]);
    let toml = config(&mock.url(), "COMPAT_E2E_UNSET_KEY");
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["compat"],
        env: &[("COMPAT_E2E_ANTHROPIC_KEY", ANTHROPIC_KEY)],
        config_toml: Some(&toml),
        ..ProxyOptions::default()
    });
    poll(std::time::Duration::from_secs(5), || {
        let log = proxy.log();
        (log.contains("COMPAT_E2E_UNSET_KEY") && log.contains("upstream chatup")).then_some(())
    })
    .unwrap_or_else(|| panic!("the start-up log names neither:\n{}", proxy.log()));
    for client in CLIENTS {
        let reply = post(
            &proxy,
            &client.path("chatup"),
            &client.body("gpt-4o", false, false),
        );
        let message = client.error_message(&reply, 401);
        assert!(
            message.contains("COMPAT_E2E_UNSET_KEY"),
            "{client:?}: {message}"
        );
        assert!(message.contains("chatup"), "{client:?}: {message}");
        let reply = post(
            &proxy,
            &client.path("anthup"),
            &client.body("x", false, false),
        );
        assert_eq!(
            reply.status,
            200,
            "the other upstream serves: {}",
            reply.text()
        );
    }
    assert!(mock.requests_to("/v1/chat/completions").is_empty());
    let health = proxy.get("/plugins/compat/health");
    let text = health.text();
    assert!(text.contains("COMPAT_E2E_UNSET_KEY"), "{text}");
    assert!(
        !text.contains(ANTHROPIC_KEY),
        "the key is never shown: {text}"
    );
    assert_eq!(proxy.get("/health/live").status, 200);
}

#[test]
fn model_lists_come_from_the_config_or_the_upstream() {
    let mock = Mock::start(&[]);
    let proxy = start_proxy(&mock.url(), &["compat"], &[]);
    let configured = proxy.get("/anthup/v1/models").json();
    assert_eq!(
        configured["data"][0]["id"], "claude-sonnet-4-20250514",
        "{configured}"
    );
    // chatup has no list: the mock's GET /v1/models, with chatup's key.
    for path in ["/chatup/v1/models", "/chatup/models"] {
        let fetched = proxy.get(path);
        assert_eq!(fetched.status, 200, "{}", fetched.text());
        let ids: Vec<String> = fetched.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|card| card["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            ids.contains(&"claude-opus-4-20250514".to_owned()),
            "{ids:?}"
        );
    }
    let fetches = mock.requests_to("/v1/models");
    assert_eq!(fetches.len(), 1, "the list is cached: {fetches:#?}");
    assert_eq!(
        fetches[0]["headers"]["authorization"],
        format!("Bearer {CHAT_KEY}")
    );
}

#[test]
fn images_reach_each_upstream_in_its_own_format() {
    let mock = Mock::start(&[]);
    let proxy = start_proxy(&mock.url(), &["compat"], &[]);
    // A 1x1 PNG.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    // Anthropic's image block to the Chat Completions upstream.
    let body = json!({
        "model": "gpt-4o", "max_tokens": 100,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
            {"type": "text", "text": "What is this?"},
        ]}],
    });
    let reply = post(&proxy, "/chatup/v1/messages", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = mock.requests_to("/v1/chat/completions");
    let parts = &sent[0]["body"]["messages"][0]["content"];
    assert_eq!(parts[0]["type"], "image_url", "{parts}");
    assert_eq!(
        parts[0]["image_url"]["url"],
        format!("data:image/png;base64,{png}"),
        "{parts}"
    );
    // Chat's image_url part to the Anthropic upstream.
    let body = json!({
        "model": "claude-sonnet-4-20250514",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
        ]}],
    });
    let reply = post(&proxy, "/anthup/v1/chat/completions", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = mock.requests_to("/v1/messages");
    let blocks = &sent[0]["body"]["messages"][0]["content"];
    assert_eq!(
        blocks[1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}),
        "{blocks}"
    );
}

#[test]
fn token_counts_come_from_an_anthropic_upstream_or_an_estimate() {
    let mock = Mock::start(&[]);
    let proxy = start_proxy(&mock.url(), &["compat"], &[]);
    let body = json!({"model": "anything", "max_tokens": 10,
        "messages": [{"role": "user", "content": "12345678"}]});
    let counted = post(&proxy, "/anthup/v1/messages/count_tokens", &body);
    assert_eq!(counted.status, 200, "{}", counted.text());
    // The mock counts characters / 4 ("user" and "12345678").
    assert_eq!(counted.json(), json!({"input_tokens": 3}));
    let sent = mock.requests_to("/v1/messages/count_tokens");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["headers"]["x-api-key"], ANTHROPIC_KEY);
    assert_eq!(sent[0]["body"]["model"], "claude-sonnet-4-20250514");
    assert!(
        sent[0]["body"].get("max_tokens").is_none(),
        "{}",
        sent[0]["body"]
    );
    let estimated = post(&proxy, "/chatup/v1/messages/count_tokens", &body);
    assert_eq!(estimated.status, 200, "{}", estimated.text());
    assert_eq!(estimated.json(), json!({"input_tokens": 3}));
    assert_eq!(mock.requests_to("/v1/messages/count_tokens").len(), 1);
}

/// The first TOML block of `docs/CLIENTS.md`'s section on this plugin.
fn documented_config() -> String {
    let path = ccproxy_e2e::workspace_root().join("docs/CLIENTS.md");
    let text = fs::read_to_string(&path).expect("docs/CLIENTS.md is readable");
    let section = text
        .split("## Any OpenAI- or Anthropic-compatible server")
        .nth(1)
        .expect("docs/CLIENTS.md has the compat section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the compat section has a TOML block");
    block.to_owned()
}

#[test]
fn the_documented_config_starts_and_serves_its_upstreams() {
    let toml = documented_config();
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["compat"],
        config_toml: Some(&toml),
        ..ProxyOptions::default()
    });
    // OPENROUTER_API_KEY is not set here: named at start-up, the others serve.
    proxy.wait_for_log("OPENROUTER_API_KEY", std::time::Duration::from_secs(5));
    let models = proxy.get("/ollama/v1/models");
    assert_eq!(models.status, 200, "{}", models.text());
    assert_eq!(models.json()["data"][0]["id"], "qwen3-coder:30b");
    let reply = post(
        &proxy,
        "/openrouter/v1/messages",
        &Client::Messages.body("claude-sonnet-4-5", false, false),
    );
    let message = Client::Messages.error_message(&reply, 401);
    assert!(message.contains("OPENROUTER_API_KEY"), "{message}");
    let reply = post(
        &proxy,
        "/anthropic/v1/chat/completions",
        &Client::Chat.body("claude-sonnet-4-5", false, false),
    );
    let message = Client::Chat.error_message(&reply, 401);
    assert!(message.contains("anthropic.key"), "{message}");
    let health = proxy.get("/plugins/compat/health").json();
    let upstreams = &health["details"]["upstreams"];
    for name in ["openrouter", "ollama", "anthropic"] {
        assert!(upstreams[name].is_object(), "{health}");
    }
    assert_eq!(upstreams["ollama"]["ready"], true, "{health}");
}

#[test]
fn the_model_rules_apply_and_the_client_sees_its_own_model() {
    let mock = Mock::start(&[]);
    let proxy = start_proxy(&mock.url(), &["compat"], &[]);
    // anthup lists one model and defaults to it: any other is replaced.
    for stream in [false, true] {
        mock.reset();
        let reply = post(
            &proxy,
            "/anthup/v1/chat/completions",
            &Client::Chat.body("gpt-5", stream, false),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        let sent = mock.requests_to("/v1/messages");
        assert_eq!(sent[0]["body"]["model"], "claude-sonnet-4-20250514");
        let models: Vec<Value> = if stream {
            sse_events(&reply.body)
                .into_iter()
                .filter_map(|(_, data)| data.get("model").cloned())
                .collect()
        } else {
            vec![reply.json()["model"].clone()]
        };
        assert!(!models.is_empty(), "{}", reply.text());
        assert!(
            models.iter().all(|m| m == "gpt-5"),
            "stream={stream}: {models:?}"
        );
    }
}

#[test]
fn the_config_for_real_clients_serves_both_upstreams_without_credentials() {
    let mock = Mock::start(&[]);
    let toml = mock_config(&mock.url());
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["compat"],
        config_toml: Some(&toml),
        ..ProxyOptions::default()
    });
    let reply = post(
        &proxy,
        "/chatup/v1/messages",
        &Client::Messages.body("claude-sonnet-4-5", true, true),
    );
    let calls = Client::Messages.tool_calls(&reply, true, true);
    assert_eq!(calls.len(), 2, "{}", reply.text());
    let reply = post(
        &proxy,
        "/anthup/v1/responses",
        &Client::Responses.body("gpt-5-codex", true, true),
    );
    let calls = Client::Responses.tool_calls(&reply, true, true);
    assert_eq!(calls.len(), 2, "{}", reply.text());
    for request in mock.requests() {
        let headers = &request["headers"];
        assert!(
            headers.get("authorization").is_none() && headers.get("x-api-key").is_none(),
            "{headers}"
        );
    }
}

#[test]
fn an_upstream_slower_than_its_timeout_is_a_504_in_the_clients_format() {
    let mock = Mock::start(&[]);
    let toml = config(&mock.url(), "COMPAT_E2E_CHAT_KEY").replace(
        "format = \"openai.chat_completions\"",
        "format = \"openai.chat_completions\"\ntimeout_seconds = 1",
    );
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["compat"],
        env: &[
            ("COMPAT_E2E_CHAT_KEY", CHAT_KEY),
            ("COMPAT_E2E_ANTHROPIC_KEY", ANTHROPIC_KEY),
        ],
        config_toml: Some(&toml),
        ..ProxyOptions::default()
    });
    for client in CLIENTS {
        mock.fault(json!({"kind": "delay", "delay_ms": 2500, "path": "/v1/chat/completions"}));
        let started = std::time::Instant::now();
        let reply = post(
            &proxy,
            &client.path("chatup"),
            &client.body("gpt-4o", false, false),
        );
        let message = client.error_message(&reply, 504);
        assert!(message.contains("1000 ms"), "{client:?}: {message}");
        assert!(
            started.elapsed() < std::time::Duration::from_millis(2400),
            "{client:?}"
        );
    }
    // The other upstream has the host's timeout and is not affected.
    mock.fault(json!({"kind": "delay", "delay_ms": 1500, "path": "/v1/messages"}));
    let reply = post(
        &proxy,
        "/anthup/v1/messages",
        &Client::Messages.body("x", false, false),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}
