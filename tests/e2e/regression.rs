//! Regression tests for the bugs of the Python original (ccproxy-api) on the
//! Codex path, one test per bug, named after its issue: the real binary with
//! the real `codex` and `oauth_codex` libraries against the mock upstream
//! playing the Codex backend, which refuses what the real backend refuses
//! (an unsupported parameter, a system message in `input`, an orphan tool
//! output, an undeclared tool name), so a request that regressed fails there
//! as it would in production.

use std::fs;

use ccproxy_e2e::{
    Proxy, Reply,
    mock::{Mock, codex, sse_events},
    workspace_root,
};
use serde_json::{Value, json};

fn read_json(path: &std::path::Path) -> Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn sample(name: &str) -> Value {
    read_json(
        &workspace_root()
            .join("tests/data/samples")
            .join(format!("{name}.json")),
    )
}

/// The text deltas of the recorded Codex stream (tool-less requests).
fn stream_deltas() -> Vec<String> {
    sample("codex_responses_stream")["response"]["events"]
        .as_array()
        .expect("the stream sample has events")
        .iter()
        .filter(|event| event["event"] == "response.output_text.delta")
        .map(|event| {
            let data: Value =
                serde_json::from_str(event["data"].as_str().unwrap_or_default()).unwrap();
            data["delta"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

fn stream_text() -> String {
    stream_deltas().concat()
}

/// `(call_id, name, arguments)` of the recorded tool calls (requests with tools).
fn recorded_calls() -> Vec<(String, String, Value)> {
    sample("codex_responses_tools")["response"]["body"]["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "function_call")
        .map(|item| {
            (
                item["call_id"].as_str().unwrap().to_owned(),
                item["name"].as_str().unwrap().to_owned(),
                serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Claude Code's request of the codex plugin's tests (billing line, metadata,
/// two tools, three turns with parallel tool calls).
fn claude_code_history() -> Value {
    read_json(&workspace_root().join("plugins/codex/testdata/claude_code_history.anthropic.json"))
}

/// The first turn of `history`: its first user message, with Claude Code's
/// per-request billing line changed (its `cch=` hash differs every request).
fn first_turn(history: &Value, cch: &str) -> Value {
    let mut turn = history.clone();
    turn["messages"].as_array_mut().unwrap().truncate(1);
    turn["system"][0]["text"] = json!(format!(
        "x-anthropic-billing-header: cc_version=2.1.37.3a9; cc_entrypoint=cli; cch={cch};"
    ));
    turn
}

fn post(proxy: &Proxy, path: &str, body: &Value) -> Reply {
    proxy.request(
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn ok(reply: &Reply, mock: &Mock) {
    assert_eq!(
        reply.status,
        200,
        "{}\nwhat the backend said: {:#}",
        reply.text(),
        mock.codex_requests()
            .last()
            .map(|request| request["response"].clone())
            .unwrap_or_default()
    );
}

fn setup() -> (Mock, Proxy) {
    let mock = codex::start_mock();
    let proxy = codex::logged_in_proxy(&mock, &[]);
    (mock, proxy)
}

/// The last request that reached the Codex backend.
fn last_upstream(mock: &Mock) -> Value {
    mock.codex_requests()
        .pop()
        .expect("a request reached the backend")
}

/// #59 (#16, #51): Claude Code on /codex failed with "Unsupported parameter:
/// metadata" (and the other parameters the backend refuses).
#[test]
fn issue_59_claude_code_metadata_is_not_sent_to_codex() {
    let (mock, proxy) = setup();
    let mut body = claude_code_history();
    body["top_p"] = json!(0.9);
    for stream in [true, false] {
        body["stream"] = json!(stream);
        let reply = post(&proxy, "/codex/v1/messages", &body);
        ok(&reply, &mock);
        let sent = &last_upstream(&mock)["body"];
        for refused in [
            "metadata",
            "user",
            "temperature",
            "top_p",
            "max_tokens",
            "max_output_tokens",
        ] {
            assert!(sent.get(refused).is_none(), "{refused} was sent: {sent}");
        }
        // Claude Code's user id does not hide anywhere else either.
        assert!(!sent.to_string().contains("user_a71c0dd8"), "{sent}");
    }
}

/// #59: Claude Code dropped the text of /codex answers: its deltas must be
/// `text_delta`s of a text block, in order, with nothing lost.
#[test]
fn issue_59_text_deltas_reach_claude_code() {
    let (mock, proxy) = setup();
    let body = json!({
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 1000, "stream": true,
        "messages": [{"role": "user", "content": "Hello"}],
    });
    let reply = post(&proxy, "/codex/v1/messages", &body);
    ok(&reply, &mock);
    let events = sse_events(&reply.body);
    let names: Vec<&str> = events
        .iter()
        .map(|(name, _)| name.as_deref().unwrap_or("(none)"))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(
        &names[names.len() - 2..],
        ["message_delta", "message_stop"],
        "{names:?}"
    );
    for (name, data) in &events {
        assert_eq!(data["type"].as_str(), name.as_deref(), "{data}");
    }
    let starts: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("content_block_start"))
        .map(|(_, data)| &data["content_block"])
        .collect();
    assert_eq!(starts, [&json!({"type": "text", "text": ""})]);
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("content_block_delta"))
        .map(|(_, data)| &data["delta"])
        .collect();
    let expected: Vec<Value> = stream_deltas()
        .iter()
        .map(|text| json!({"type": "text_delta", "text": text}))
        .collect();
    assert_eq!(
        deltas,
        expected.iter().collect::<Vec<_>>(),
        "every delta, as text_delta"
    );
    let (_, message_delta) = &events[events.len() - 2];
    assert_eq!(message_delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(message_delta["usage"]["output_tokens"], 15);
    assert_eq!(
        events[0].1["message"]["model"], "claude-sonnet-4-5-20250929",
        "the client's model"
    );
}

/// #59: Claude Code's history and tool cycles were mangled on the way to
/// Codex (order, call ids), and tool calls on the way back carried
/// duplicated identity fields (`"shellshell"`).
#[test]
fn issue_59_tool_cycles_keep_order_and_identity() {
    let (mock, proxy) = setup();
    let history = claude_code_history();
    let mut answers = Vec::new();
    for stream in [true, false] {
        let mut body = history.clone();
        body["stream"] = json!(stream);
        let reply = post(&proxy, "/codex/v1/messages", &body);
        ok(&reply, &mock);
        answers.push(reply);
    }

    // Upstream: every tool_use is a function_call with its id as call_id and
    // its name once, every tool_result the function_call_output right after
    // its assistant turn, in Claude Code's order.
    let sent = &last_upstream(&mock)["body"];
    let mut expected = Vec::new();
    for message in history["messages"].as_array().unwrap() {
        for block in message["content"].as_array().unwrap() {
            match block["type"].as_str().unwrap() {
                "tool_use" => expected.push(json!({
                    "type": "function_call", "call_id": block["id"], "name": block["name"],
                    "arguments": block["input"],
                })),
                "tool_result" => expected.push(json!({
                    "type": "function_call_output", "call_id": block["tool_use_id"],
                })),
                _ => {}
            }
        }
    }
    let calls: Vec<Value> = sent["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| match item["type"].as_str()? {
            "function_call" => Some(json!({
                "type": "function_call", "call_id": item["call_id"], "name": item["name"],
                "arguments": serde_json::from_str::<Value>(item["arguments"].as_str()?).ok()?,
            })),
            "function_call_output" => Some(json!({
                "type": "function_call_output", "call_id": item["call_id"],
            })),
            _ => None,
        })
        .collect();
    assert_eq!(calls, expected);

    // Back to Claude Code, streamed: one tool_use block per call, each with
    // the call's id and name exactly once, arguments as input_json_delta.
    let events = sse_events(&answers[0].body);
    let mut blocks: Vec<(String, String, String)> = Vec::new();
    for (name, data) in &events {
        match name.as_deref() {
            Some("content_block_start") => {
                let block = &data["content_block"];
                assert_eq!(block["type"], "tool_use", "{data}");
                assert_eq!(block["input"], json!({}), "{data}");
                assert_eq!(data["index"], blocks.len(), "{data}");
                blocks.push((
                    block["id"].as_str().unwrap().to_owned(),
                    block["name"].as_str().unwrap().to_owned(),
                    String::new(),
                ));
            }
            Some("content_block_delta") => {
                let delta = &data["delta"];
                assert_eq!(delta["type"], "input_json_delta", "{data}");
                assert!(
                    delta.get("name").is_none() && delta.get("id").is_none(),
                    "{data}"
                );
                let index = data["index"].as_u64().unwrap() as usize;
                blocks[index]
                    .2
                    .push_str(delta["partial_json"].as_str().unwrap());
            }
            _ => {}
        }
    }
    let streamed: Vec<(String, String, Value)> = blocks
        .into_iter()
        .map(|(id, name, json)| (id, name, serde_json::from_str(&json).unwrap()))
        .collect();
    assert_eq!(streamed, recorded_calls());
    let (_, message_delta) = &events[events.len() - 2];
    assert_eq!(message_delta["delta"]["stop_reason"], "tool_use");

    // And accumulated for a client that asked for one answer.
    let message = answers[1].json();
    let content: Vec<(String, String, Value)> = message["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|block| {
            assert_eq!(block["type"], "tool_use", "{message}");
            (
                block["id"].as_str().unwrap().to_owned(),
                block["name"].as_str().unwrap().to_owned(),
                block["input"].clone(),
            )
        })
        .collect();
    assert_eq!(content, recorded_calls());
    assert_eq!(message["stop_reason"], "tool_use");
}

/// #59: the backend's own error shape (`{"detail": …}`) reached Claude Code
/// as a 502 instead of its error. With the parameter stripping switched off
/// the backend refuses the request; Claude Code gets that refusal, status and
/// words, in its own error format.
#[test]
fn issue_59_backend_errors_reach_claude_code_in_its_format() {
    let mock = codex::start_mock();
    let proxy = codex::logged_in_proxy(
        &mock,
        &[("PLUGINS__CODEX__STRIP_UNSUPPORTED_PARAMS", "false")],
    );
    let body = json!({
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 100,
        "metadata": {"user_id": "user_abc"},
        "messages": [{"role": "user", "content": "Hello"}],
    });
    for stream in [false, true] {
        let mut body = body.clone();
        body["stream"] = json!(stream);
        let reply = post(&proxy, "/codex/v1/messages", &body);
        assert_eq!(reply.status, 400, "{}", reply.text());
        let error = reply.json();
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        // Exactly what the backend said (`max_tokens` travels as
        // `max_output_tokens`, which it refuses).
        assert_eq!(
            error["error"]["message"],
            "mock upstream: codex backend: Unsupported parameter: max_output_tokens",
            "{error}"
        );
    }
    let refused = mock.codex_requests();
    assert_eq!(refused.len(), 2);
    assert!(
        refused
            .iter()
            .all(|request| request["response"]["status"] == 400)
    );
}

/// #57: `ResponseObject.output Field required` on a non-stream
/// /codex/v1/chat/completions: the backend only streams, and its
/// `response.completed` may carry no `output`. A non-stream client gets one
/// accumulated answer either way.
#[test]
fn issue_57_non_stream_chat_completions_on_codex_has_output() {
    let (mock, proxy) = setup();
    let body =
        json!({"model": "gpt-5.3-codex", "messages": [{"role": "user", "content": "Hello"}]});
    for edit in [
        None,
        Some(json!({"kind": "edit", "event": "response.completed", "pointer": "/response/output"})),
        Some(
            json!({"kind": "edit", "event": "response.completed", "pointer": "/response/output", "value": []}),
        ),
    ] {
        if let Some(edit) = &edit {
            mock.fault(edit.clone());
        }
        let reply = post(&proxy, "/codex/v1/chat/completions", &body);
        ok(&reply, &mock);
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{edit:?}"
        );
        let completion = reply.json();
        assert_eq!(completion["object"], "chat.completion", "{completion}");
        let choice = &completion["choices"][0];
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["message"]["content"], stream_text(), "{edit:?}");
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(completion["usage"]["completion_tokens"], 15);
        // The backend was asked for a stream all the same.
        assert_eq!(last_upstream(&mock)["body"]["stream"], true);
    }
    // A Responses client too gets a complete response object with its output.
    mock.fault(
        json!({"kind": "edit", "event": "response.completed", "pointer": "/response/output"}),
    );
    let reply = post(
        &proxy,
        "/codex/v1/responses",
        &json!({"model": "gpt-5.3-codex", "input": "Hello"}),
    );
    ok(&reply, &mock);
    let response = reply.json();
    assert_eq!(response["object"], "response");
    assert_eq!(response["status"], "completed");
    let output = response["output"].as_array().expect("output is a list");
    assert_eq!(output.len(), 1, "{response}");
    assert_eq!(output[0]["content"][0]["text"], stream_text());
}

/// #55: the backend's SSE shape changed under the proxy (events without an
/// `event:` line, a `response.completed` without `output`); streaming
/// clients still get every word.
#[test]
fn issue_55_codex_sse_shape_changes_keep_the_answer() {
    let (mock, proxy) = setup();
    let text = stream_text();
    let anthropic = json!({
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "Hello"}],
    });
    let chat = json!({
        "model": "gpt-5.3-codex", "stream": true,
        "messages": [{"role": "user", "content": "Hello"}],
    });
    for edit in [
        json!({"kind": "edit", "anonymous": true}),
        json!({"kind": "edit", "event": "response.completed", "pointer": "/response/output"}),
    ] {
        mock.fault(edit.clone());
        let reply = post(&proxy, "/codex/v1/messages", &anthropic);
        ok(&reply, &mock);
        let events = sse_events(&reply.body);
        let said: String = events
            .iter()
            .filter_map(|(_, data)| data["delta"]["text"].as_str())
            .collect();
        assert_eq!(said, text, "{edit}");
        assert_eq!(
            events.last().and_then(|(name, _)| name.as_deref()),
            Some("message_stop"),
            "{edit}"
        );
        mock.fault(edit.clone());
        let reply = post(&proxy, "/codex/v1/chat/completions", &chat);
        ok(&reply, &mock);
        let events = sse_events(&reply.body);
        let said: String = events
            .iter()
            .filter_map(|(_, data)| data["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(said, text, "{edit}");
        assert_eq!(events.last().map(|(_, data)| data), Some(&json!("[DONE]")));
    }
}

/// #53 (#52): a langchain `SystemMessage` in the Responses input (a `system`
/// item without `type`) reached the backend, which answers 400.
#[test]
fn issue_53_system_message_in_responses_input() {
    let (mock, proxy) = setup();
    for stream in [false, true] {
        let body = json!({
            "model": "gpt-5.3-codex", "stream": stream,
            "input": [
                {"role": "system", "content": "You are a pirate."},
                {"role": "developer", "content": [{"type": "input_text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hello"},
            ],
        });
        let reply = post(&proxy, "/codex/v1/responses", &body);
        ok(&reply, &mock);
        let sent = &last_upstream(&mock)["body"];
        let input = sent["input"].as_array().unwrap();
        assert_eq!(input.len(), 1, "{input:?}");
        assert_eq!(
            (&input[0]["type"], &input[0]["role"]),
            (&json!("message"), &json!("user"))
        );
        let instructions = sent["instructions"].as_str().unwrap();
        assert!(
            instructions.ends_with("\n\nYou are a pirate.\n\nAnswer in French."),
            "{:?}",
            &instructions[instructions.len().saturating_sub(60)..]
        );
    }
}

/// Chat Completions tools the recorded tool answer calls.
fn chat_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "calculate_distance", "parameters": {"type": "object"}}},
    ])
}

/// #49: Chat Completions tool-call chunks without `index` (the genai crate
/// dropped them).
#[test]
fn issue_49_tool_call_chunks_carry_index() {
    let (mock, proxy) = setup();
    let body = json!({
        "model": "gpt-5.3-codex", "stream": true, "tools": chat_tools(),
        "messages": [{"role": "user", "content": "Weather in NYC, and how far is LA?"}],
    });
    let reply = post(&proxy, "/codex/v1/chat/completions", &body);
    ok(&reply, &mock);
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finishes = Vec::new();
    for (_, chunk) in sse_events(&reply.body) {
        if chunk == "[DONE]" {
            continue;
        }
        let choice = &chunk["choices"][0];
        if let Some(finish) = choice["finish_reason"].as_str() {
            finishes.push(finish.to_owned());
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("a tool_call chunk without index: {chunk}"))
                as usize;
            if index == calls.len() {
                // The first chunk of a call names it, once.
                calls.push((
                    call["id"]
                        .as_str()
                        .expect("the first chunk has the id")
                        .to_owned(),
                    call["function"]["name"]
                        .as_str()
                        .expect("the first chunk has the name")
                        .to_owned(),
                    String::new(),
                ));
                assert_eq!(call["type"], "function", "{chunk}");
            } else {
                assert!(index < calls.len(), "index {index} skipped ahead: {chunk}");
                assert!(
                    call.get("id").is_none() && call["function"].get("name").is_none(),
                    "identity repeated in a later chunk: {chunk}"
                );
            }
            calls[index]
                .2
                .push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(finishes, ["tool_calls"]);
    let got: Vec<(String, String, Value)> = calls
        .into_iter()
        .map(|(id, name, arguments)| (id, name, serde_json::from_str(&arguments).unwrap()))
        .collect();
    assert_eq!(got, recorded_calls());
}

/// #34 (n8n): a non-stream Chat Completions answer that called tools had no
/// `tool_calls` array in its message, so n8n saw no call. The backend only
/// streams; the accumulated answer carries every call in OpenAI's shape.
#[test]
fn issue_34_non_stream_chat_answer_has_tool_calls_array() {
    let (mock, proxy) = setup();
    let body = json!({
        "model": "gpt-5.3-codex", "tools": chat_tools(),
        "messages": [{"role": "user", "content": "Weather in NYC, and how far is LA?"}],
    });
    let reply = post(&proxy, "/codex/v1/chat/completions", &body);
    ok(&reply, &mock);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let completion = reply.json();
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    let choice = &completion["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{completion}");
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant", "{completion}");
    let calls = message["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no tool_calls array: {completion}"));
    let got: Vec<(String, String, Value)> = calls
        .iter()
        .map(|call| {
            assert_eq!(call["type"], "function", "{call}");
            assert!(
                call.get("index").is_none(),
                "index is for stream chunks: {call}"
            );
            let arguments = call["function"]["arguments"]
                .as_str()
                .unwrap_or_else(|| panic!("arguments are a JSON string: {call}"));
            (
                call["id"].as_str().unwrap().to_owned(),
                call["function"]["name"].as_str().unwrap().to_owned(),
                serde_json::from_str(arguments).unwrap(),
            )
        })
        .collect();
    assert_eq!(got, recorded_calls());
    // The backend was asked for a stream all the same.
    assert_eq!(last_upstream(&mock)["body"]["stream"], true);

    // A text answer has none (not an empty one).
    let body =
        json!({"model": "gpt-5.3-codex", "messages": [{"role": "user", "content": "Hello"}]});
    let reply = post(&proxy, "/codex/v1/chat/completions", &body);
    ok(&reply, &mock);
    let message = &reply.json()["choices"][0]["message"];
    assert_eq!(message["content"], stream_text());
    assert!(
        message.get("tool_calls").is_none_or(Value::is_null),
        "{message}"
    );
}

/// #42: Claude Code's adaptive thinking (`thinking: {"type": "adaptive"}`,
/// Claude Opus 4.6 and later) was refused by the request model, which knew
/// only `enabled` and `disabled`. On /codex it becomes the backend's
/// reasoning, and the backend's reasoning summary comes back as a
/// `thinking` block.
#[test]
fn issue_42_adaptive_thinking_reaches_codex_as_reasoning() {
    let (mock, proxy) = setup();
    let body = |thinking: Value, stream: bool| {
        json!({
            "model": "claude-opus-4-6", "max_tokens": 32000, "stream": stream,
            "thinking": thinking,
            "messages": [{"role": "user", "content": "Hello"}],
        })
    };
    for thinking in [
        json!({"type": "adaptive"}),
        json!({"type": "adaptive", "display": "summarized"}),
    ] {
        for stream in [true, false] {
            let reply = post(
                &proxy,
                "/codex/v1/messages",
                &body(thinking.clone(), stream),
            );
            ok(&reply, &mock);
            let sent = &last_upstream(&mock)["body"];
            assert!(sent.get("thinking").is_none(), "{sent}");
            assert_eq!(
                sent["reasoning"],
                json!({"effort": "medium", "summary": "auto"}),
                "{thinking}"
            );
            assert_eq!(sent["include"], json!(["reasoning.encrypted_content"]));
            let said = if stream {
                sse_events(&reply.body)
                    .iter()
                    .filter_map(|(_, data)| data["delta"]["text"].as_str())
                    .collect::<String>()
            } else {
                reply.json()["content"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            assert_eq!(said, stream_text(), "{thinking} stream={stream}");
        }
    }
    // An explicit budget keeps its size as the effort.
    let reply = post(
        &proxy,
        "/codex/v1/messages",
        &body(json!({"type": "enabled", "budget_tokens": 20000}), true),
    );
    ok(&reply, &mock);
    assert_eq!(
        last_upstream(&mock)["body"]["reasoning"],
        json!({"effort": "high", "summary": "auto"})
    );

    // The backend's reasoning summary reaches Claude Code as thinking.
    let summary = json!([{"type": "summary_text", "text": "The user greets me; greet back."}]);
    for stream in [true, false] {
        mock.fault(json!({
            "kind": "edit", "event": "response.output_item.done",
            "pointer": "/item/summary", "value": summary,
        }));
        let reply = post(
            &proxy,
            "/codex/v1/messages",
            &body(json!({"type": "adaptive"}), stream),
        );
        ok(&reply, &mock);
        let blocks: Vec<(String, String)> = if stream {
            let mut blocks: Vec<(String, String)> = Vec::new();
            for (name, data) in sse_events(&reply.body) {
                match name.as_deref() {
                    Some("content_block_start") => blocks.push((
                        data["content_block"]["type"].as_str().unwrap().to_owned(),
                        data["content_block"]["thinking"]
                            .as_str()
                            .or_else(|| data["content_block"]["text"].as_str())
                            .unwrap_or_default()
                            .to_owned(),
                    )),
                    Some("content_block_delta") => {
                        let delta = &data["delta"];
                        let text = delta["thinking"]
                            .as_str()
                            .or_else(|| delta["text"].as_str())
                            .unwrap_or_default();
                        blocks.last_mut().expect("a block").1.push_str(text);
                    }
                    _ => {}
                }
            }
            blocks
        } else {
            reply.json()["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|block| {
                    let kind = block["type"].as_str().unwrap().to_owned();
                    let text = block["thinking"]
                        .as_str()
                        .or_else(|| block["text"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    (kind, text)
                })
                .collect()
        };
        assert_eq!(
            blocks,
            [
                (
                    "thinking".to_owned(),
                    "The user greets me; greet back.".to_owned()
                ),
                ("text".to_owned(), stream_text()),
            ],
            "stream={stream}: {}",
            reply.text()
        );
    }
}

/// #50: Chat Completions history with `tool_calls` and `tool` messages lost
/// them on the way to Responses.
#[test]
fn issue_50_chat_tool_history_reaches_codex() {
    let (mock, proxy) = setup();
    let body = json!({
        "model": "gpt-5.3-codex",
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "user", "content": "Weather in NYC and LA?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"NYC\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"LA\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "foggy"},
            {"role": "user", "content": "Thanks. Compare them."},
        ],
    });
    let reply = post(&proxy, "/codex/v1/chat/completions", &body);
    ok(&reply, &mock);
    let sent = &last_upstream(&mock)["body"];
    let items: Vec<Value> = sent["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| match item["type"].as_str().unwrap() {
            "function_call" => json!([
                "function_call",
                item["call_id"],
                item["name"],
                item["arguments"]
            ]),
            "function_call_output" => {
                json!(["function_call_output", item["call_id"], item["output"]])
            }
            kind => json!([kind, item["role"]]),
        })
        .collect();
    assert_eq!(
        items,
        [
            json!(["message", "user"]),
            json!([
                "function_call",
                "call_a",
                "get_weather",
                "{\"location\":\"NYC\"}"
            ]),
            json!([
                "function_call",
                "call_b",
                "get_weather",
                "{\"location\":\"LA\"}"
            ]),
            json!(["function_call_output", "call_a", "sunny"]),
            json!(["function_call_output", "call_b", "foggy"]),
            json!(["message", "user"]),
        ]
    );
}

/// #63 (#62): `prompt_cache_key` was a random uuid per request, and Claude
/// Code's per-request billing line (`cch=`) changed what was cached: every
/// turn of a conversation must share one key and one session.
#[test]
fn issue_63_prompt_cache_key_stable() {
    let (mock, proxy) = setup();
    let history = claude_code_history();
    let mut second = history.clone();
    second["messages"].as_array_mut().unwrap().truncate(3);
    second["system"] = first_turn(&history, "2aaaa")["system"].clone();
    let turns = [
        first_turn(&history, "1aaaa"),
        second,
        history.clone(),
        // The same request again.
        history.clone(),
    ];
    let mut keys = Vec::new();
    for turn in &turns {
        let reply = post(&proxy, "/codex/v1/messages", turn);
        ok(&reply, &mock);
        let request = last_upstream(&mock);
        let key = request["body"]["prompt_cache_key"]
            .as_str()
            .expect("a prompt_cache_key")
            .to_owned();
        assert_eq!(request["headers"]["session_id"], key.as_str());
        assert_eq!(request["headers"]["conversation_id"], key.as_str());
        keys.push(key);
    }
    assert!(keys.iter().all(|key| *key == keys[0]), "{keys:?}");

    // Another conversation has another key.
    let mut other = first_turn(&history, "1aaaa");
    other["messages"][0]["content"][1]["text"] = json!("Something else entirely.");
    ok(&post(&proxy, "/codex/v1/messages", &other), &mock);
    let other_key = last_upstream(&mock)["body"]["prompt_cache_key"].clone();
    assert_ne!(other_key, keys[0].as_str());

    // A chat client's conversation keeps one key across turns too.
    let mut chat_keys = Vec::new();
    for messages in [
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]),
        json!([
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"},
        ]),
    ] {
        let body = json!({"model": "gpt-5.3-codex", "messages": messages});
        ok(&post(&proxy, "/codex/v1/chat/completions", &body), &mock);
        chat_keys.push(last_upstream(&mock)["body"]["prompt_cache_key"].clone());
    }
    assert_eq!(chat_keys[0], chat_keys[1]);
    assert_ne!(chat_keys[0], other_key);
}

/// 0.2.0a3: a client's `temperature: null` reached the upstream, which
/// refused it; the Codex backend refuses any temperature.
#[test]
fn release_0_2_0a3_null_temperature_is_not_sent() {
    let (mock, proxy) = setup();
    for (path, body) in [
        (
            "/codex/v1/messages",
            json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 100, "temperature": null,
                   "top_p": null, "messages": [{"role": "user", "content": "Hello"}]}),
        ),
        (
            "/codex/v1/chat/completions",
            json!({"model": "gpt-5.3-codex", "temperature": null, "top_p": null,
                   "messages": [{"role": "user", "content": "Hello"}]}),
        ),
        (
            "/codex/v1/responses",
            json!({"model": "gpt-5.3-codex", "temperature": null, "top_p": null, "input": "Hello"}),
        ),
    ] {
        let reply = post(&proxy, path, &body);
        ok(&reply, &mock);
        let sent = &last_upstream(&mock)["body"];
        assert!(
            sent.get("temperature").is_none() && sent.get("top_p").is_none(),
            "{path}: {sent}"
        );
    }
}

/// 0.2.0a3: an orphan `tool_result` (its `tool_use` is not in the history, as
/// after a compaction or a client's own trimming) made the upstream refuse
/// the whole request ("unexpected tool_use_id"; on the Codex backend "No tool
/// call found for function call output"). The Responses and Chat encoders now
/// send such a result as text, as the Anthropic encoder keeps it from
/// Anthropic: 200, no `function_call_output` upstream, the result's text kept.
#[test]
fn release_0_2_0a3_orphan_tool_result_on_codex() {
    let (mock, proxy) = setup();
    let body = json!({
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 100,
        "messages": [
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_compacted_away", "content": "exit 0"},
                {"type": "text", "text": "Go on."},
            ]},
        ],
    });
    let reply = post(&proxy, "/codex/v1/messages", &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = &last_upstream(&mock)["body"];
    let input = sent["input"].as_array().expect("input items");
    assert!(
        input
            .iter()
            .all(|item| item["type"] != "function_call_output"),
        "{sent}"
    );
    let text = sent["input"].to_string();
    assert!(
        text.contains("exit 0") && text.contains("toolu_compacted_away"),
        "{sent}"
    );
}
