//! Free-form (`custom`) and namespaced Responses tools, as the Codex CLI declares them with
//! its default model, towards Anthropic and Chat upstreams and back: the request's tools and
//! history, the complete answer, the stream, the accumulated stream, and a round trip of
//! the answer's items through the next request.

use ccproxy_formats::Format::{AnthropicMessages as A, OpenAiChat as C, OpenAiResponses as R};
use ccproxy_formats::convert::{self, Accumulator, ClientTools, StreamConverter};
use ccproxy_formats::sse;
use serde_json::{Value, json};

/// The JavaScript the model sends the free-form `exec` tool: quotes, a newline.
const SCRIPT: &str =
    "const r = await tools.exec_command({cmd: \"echo \\\"hi\\\"\"});\ntext(r.output);";

/// The Codex CLI's tools with its default model (0.171, abridged): an `additional_tools`
/// input item with the `functions` namespace (the free-form `exec` with its Lark grammar, a
/// function) and the `collaboration` namespace, plus a top-level free-form tool.
fn codex_request(history: Vec<Value>) -> Value {
    let mut input = vec![
        json!({"type": "additional_tools", "id": "at_1", "role": "developer", "tools": [
            {"type": "namespace", "name": "functions", "tools": [
                {"type": "custom", "name": "exec", "description": "Run JavaScript code.",
                 "format": {"type": "grammar", "syntax": "lark", "definition": "start: SOURCE\nSOURCE: /[\\s\\S]+/"}},
                {"type": "function", "name": "wait", "strict": false,
                 "parameters": {"type": "object", "properties": {"cell_id": {"type": "string"}}}},
            ]},
            {"type": "namespace", "name": "collaboration", "description": "Agents.", "tools": [
                {"type": "function", "name": "spawn_agent", "strict": false,
                 "parameters": {"type": "object", "properties": {"message": {"type": "string"}}}},
            ]},
        ]}),
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Write the proof file."}]}),
    ];
    input.extend(history);
    json!({
        "model": "gpt-5.3-codex",
        "instructions": "You are Codex.",
        "input": input,
        "tools": [{"type": "custom", "name": "apply_patch", "description": "Edits files."}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "stream": true,
    })
}

fn convert_request(to: ccproxy_formats::Format, body: &Value) -> (Value, Option<ClientTools>) {
    let (out, tools) = convert::request_with_tools(R, to, body.to_string().as_bytes())
        .unwrap_or_else(|error| panic!("responses -> {to}: {error}"));
    (serde_json::from_slice(&out).expect("JSON"), tools)
}

/// An Anthropic answer calling `exec`, a namespaced tool and a plain one.
fn anthropic_answer() -> Value {
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
        "content": [
            {"type": "text", "text": "Running it."},
            {"type": "tool_use", "id": "toolu_exec", "name": "exec", "input": {"input": SCRIPT}},
            {"type": "tool_use", "id": "toolu_spawn", "name": "collaboration__spawn_agent", "input": {"message": "go"}},
            {"type": "tool_use", "id": "toolu_wait", "name": "wait", "input": {"cell_id": "1"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}})
}

fn anthropic_event(value: Value) -> sse::Event {
    sse::Event::new(value["type"].as_str().expect("type"), value.to_string())
}

/// [`anthropic_answer`]'s calls streamed, the input in fragments as Claude sends it.
fn anthropic_stream() -> Vec<sse::Event> {
    let arguments = json!({"input": SCRIPT}).to_string();
    let (first, rest) = arguments.split_at(12);
    let mut events = vec![anthropic_event(
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    )];
    for (index, id, name, fragments) in [
        (
            0,
            "toolu_exec",
            "exec",
            vec![first.to_owned(), rest.to_owned()],
        ),
        (
            1,
            "toolu_spawn",
            "collaboration__spawn_agent",
            vec!["{\"message\":".to_owned(), "\"go\"}".to_owned()],
        ),
    ] {
        events.push(anthropic_event(
            json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        ));
        for fragment in fragments {
            events.push(anthropic_event(
                json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": fragment}}),
            ));
        }
        events.push(anthropic_event(
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(anthropic_event(json!({"type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 5}})));
    events.push(anthropic_event(json!({"type": "message_stop"})));
    events
}

fn data(event: &sse::Event) -> Value {
    serde_json::from_str(&event.data).expect("JSON event")
}

#[test]
fn codex_tools_become_upstream_tools_with_names_every_upstream_accepts() {
    let (anthropic, tools) = convert_request(A, &codex_request(Vec::new()));
    let tools = tools.expect("free-form and namespaced tools are recorded");
    assert!(!tools.is_empty());
    let declared = anthropic["tools"].as_array().expect("tools");
    let names: Vec<&str> = declared
        .iter()
        .map(|tool| tool["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(
        names,
        ["exec", "wait", "collaboration__spawn_agent", "apply_patch"]
    );
    let exec = &declared[0];
    assert_eq!(
        exec["input_schema"]["properties"]["input"]["type"],
        "string"
    );
    assert_eq!(exec["input_schema"]["required"], json!(["input"]));
    let description = exec["description"].as_str().expect("a description");
    assert!(
        description.starts_with("Run JavaScript code."),
        "{description}"
    );
    assert!(
        description.contains("lark grammar:\nstart: SOURCE"),
        "{description}"
    );
    assert_eq!(
        declared[2]["input_schema"]["properties"]["message"]["type"],
        "string"
    );
    assert!(!anthropic.to_string().contains("additional_tools"));
    assert_eq!(anthropic["tool_choice"]["type"], "auto");

    // Chat: the same functions.
    let (chat, chat_tools) = convert_request(C, &codex_request(Vec::new()));
    assert_eq!(chat_tools, Some(tools));
    let names: Vec<&Value> = chat["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|tool| &tool["function"]["name"])
        .collect();
    assert_eq!(
        names,
        ["exec", "wait", "collaboration__spawn_agent", "apply_patch"]
    );
    assert_eq!(
        chat["tools"][0]["function"]["parameters"]["properties"]["input"]["type"],
        "string"
    );
}

#[test]
fn a_second_output_of_one_free_form_call_joins_the_first() {
    // `notify()` in the Codex CLI's `exec` sends an output while the script runs.
    let history = vec![
        json!({"type": "custom_tool_call", "call_id": "call_exec", "name": "exec", "input": SCRIPT}),
        json!({"type": "custom_tool_call_output", "call_id": "call_exec", "output": "started"}),
        json!({"type": "custom_tool_call_output", "call_id": "call_exec", "output": [{"type": "input_text", "text": "done"}]}),
    ];
    let (anthropic, _) = convert_request(A, &codex_request(history));
    let results = &anthropic["messages"][2]["content"];
    assert_eq!(results.as_array().map(Vec::len), Some(1), "{results}");
    assert_eq!(results[0]["tool_use_id"], "call_exec");
    let text = results[0]["content"].to_string();
    assert!(text.contains("started") && text.contains("done"), "{text}");
}

#[test]
fn requests_without_such_tools_record_nothing() {
    let plain = json!({"model": "m", "input": "hi", "tools": [
        {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}},
        {"type": "web_search"}]});
    let (anthropic, tools) = convert_request(A, &plain);
    assert_eq!(tools, None);
    assert_eq!(anthropic["tools"][0]["name"], "shell");
    assert_eq!(anthropic["tools"].as_array().map(Vec::len), Some(1));
    // Same format: passed through, nothing recorded.
    let (same, tools) = convert::request_with_tools(R, R, b"not parsed").expect("identity");
    assert_eq!((same.as_slice(), tools), (&b"not parsed"[..], None));
}

#[test]
fn free_form_and_namespaced_calls_in_the_history_convert() {
    let history = vec![
        json!({"type": "custom_tool_call", "call_id": "call_exec", "name": "exec", "input": SCRIPT, "status": "completed"}),
        json!({"type": "function_call", "call_id": "call_spawn", "name": "spawn_agent", "namespace": "collaboration", "arguments": "{\"message\":\"go\"}"}),
        json!({"type": "custom_tool_call_output", "call_id": "call_exec", "output": "hi\n"}),
        json!({"type": "function_call_output", "call_id": "call_spawn", "output": [{"type": "input_text", "text": "spawned"}]}),
    ];
    let (anthropic, _) = convert_request(A, &codex_request(history.clone()));
    let messages = anthropic["messages"].as_array().expect("messages");
    let calls = &messages[1]["content"];
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(calls[0]["type"], "tool_use");
    assert_eq!(calls[0]["name"], "exec");
    assert_eq!(calls[0]["input"], json!({"input": SCRIPT}));
    assert_eq!(calls[1]["name"], "collaboration__spawn_agent");
    assert_eq!(calls[1]["input"], json!({"message": "go"}));
    let results = &messages[2]["content"];
    assert_eq!(results[0]["tool_use_id"], "call_exec");
    assert!(
        results[0]["content"].to_string().contains("hi\\n"),
        "{results}"
    );
    assert_eq!(results[1]["tool_use_id"], "call_spawn");
    assert!(results[1]["content"].to_string().contains("spawned"));

    let (chat, _) = convert_request(C, &codex_request(history));
    let messages = chat["messages"].as_array().expect("messages");
    let assistant = messages
        .iter()
        .find(|message| message["role"] == "assistant")
        .expect("the calls");
    assert_eq!(assistant["tool_calls"][0]["function"]["name"], "exec");
    assert_eq!(
        assistant["tool_calls"][1]["function"]["name"],
        "collaboration__spawn_agent"
    );
    let tool_outputs: Vec<&Value> = messages
        .iter()
        .filter(|message| message["role"] == "tool")
        .collect();
    assert_eq!(tool_outputs.len(), 2);
    assert_eq!(tool_outputs[0]["content"], "hi\n");
}

/// The Responses items a client gets for [`anthropic_answer`]'s calls.
fn assert_client_items(output: &[Value]) {
    let calls: Vec<&Value> = output
        .iter()
        .filter(|item| item["type"] != "message" && item["type"] != "reasoning")
        .collect();
    assert_eq!(calls.len(), 3, "{output:?}");
    assert_eq!(calls[0]["type"], "custom_tool_call");
    assert_eq!(calls[0]["name"], "exec");
    assert_eq!(calls[0]["input"], SCRIPT);
    assert_eq!(calls[0]["call_id"], "toolu_exec");
    assert!(
        calls[0].get("namespace").is_none(),
        "functions is the default namespace"
    );
    assert_eq!(calls[1]["type"], "function_call");
    assert_eq!(calls[1]["name"], "spawn_agent");
    assert_eq!(calls[1]["namespace"], "collaboration");
    assert_eq!(calls[1]["arguments"], "{\"message\":\"go\"}");
    assert_eq!(calls[2]["type"], "function_call");
    assert_eq!(calls[2]["name"], "wait");
    assert!(calls[2].get("namespace").is_none());
}

#[test]
fn complete_answers_call_the_tools_as_the_client_declared_them() {
    let (_, tools) = convert_request(A, &codex_request(Vec::new()));
    let body = anthropic_answer().to_string();
    let converted =
        convert::response_with_tools(A, R, body.as_bytes(), tools.as_ref()).expect("converts");
    let response: Value = serde_json::from_slice(&converted).expect("JSON");
    assert_client_items(response["output"].as_array().expect("output"));

    // From a Chat upstream too.
    let chat = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [
                {"id": "toolu_exec", "type": "function", "function": {"name": "exec", "arguments": json!({"input": SCRIPT}).to_string()}},
                {"id": "toolu_spawn", "type": "function", "function": {"name": "collaboration__spawn_agent", "arguments": "{\"message\":\"go\"}"}},
                {"id": "toolu_wait", "type": "function", "function": {"name": "wait", "arguments": "{\"cell_id\":\"1\"}"}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
    let converted = convert::response_with_tools(C, R, chat.to_string().as_bytes(), tools.as_ref())
        .expect("converts");
    let response: Value = serde_json::from_slice(&converted).expect("JSON");
    assert_client_items(response["output"].as_array().expect("output"));

    // Without the request's tools the calls stay function calls of the upstream's names.
    let converted = convert::response(A, R, body.as_bytes()).expect("converts");
    let response: Value = serde_json::from_slice(&converted).expect("JSON");
    assert_eq!(response["output"][1]["type"], "function_call");
    assert_eq!(response["output"][2]["name"], "collaboration__spawn_agent");
}

#[test]
fn streams_call_the_tools_as_the_client_declared_them() {
    let (_, tools) = convert_request(A, &codex_request(Vec::new()));
    // The model set after the tools keeps them.
    let mut converter = StreamConverter::new(A, R)
        .with_tools(tools.expect("tools"))
        .with_model("gpt-5.3-codex");
    let mut out = Vec::new();
    for event in anthropic_stream() {
        converter.push(&event, &mut out);
    }
    converter.finish(&mut out);
    let names: Vec<&str> = out
        .iter()
        .map(|event| event.event.as_deref().unwrap_or_default())
        .collect();
    let custom: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| name.contains("custom_tool_call") || name.contains("output_item"))
        .collect();
    assert_eq!(
        &custom[..4],
        [
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
        ],
        "{names:?}"
    );
    // No argument JSON of the free-form call leaks out as function arguments.
    let arguments: Vec<Value> = out
        .iter()
        .filter(|event| event.event.as_deref() == Some("response.function_call_arguments.delta"))
        .map(data)
        .collect();
    assert!(
        arguments.iter().all(|delta| !delta["delta"]
            .as_str()
            .unwrap_or_default()
            .contains("input")),
        "{arguments:?}"
    );
    let find = |name: &str| {
        out.iter()
            .filter(|event| event.event.as_deref() == Some(name))
            .map(data)
            .collect::<Vec<_>>()
    };
    let added = find("response.output_item.added");
    assert_eq!(added[0]["item"]["type"], "custom_tool_call");
    assert_eq!(added[0]["item"]["name"], "exec");
    assert_eq!(added[0]["item"]["input"], "");
    assert_eq!(added[1]["item"]["name"], "spawn_agent");
    assert_eq!(added[1]["item"]["namespace"], "collaboration");
    let delta = &find("response.custom_tool_call_input.delta")[0];
    let done = &find("response.custom_tool_call_input.done")[0];
    assert_eq!(delta["delta"], SCRIPT);
    assert_eq!(done["input"], SCRIPT);
    assert_eq!(done["item_id"], added[0]["item"]["id"]);
    let items = find("response.output_item.done");
    assert_eq!(items[0]["item"]["input"], SCRIPT);
    assert_eq!(items[0]["item"]["status"], "completed");
    assert_eq!(items[1]["item"]["namespace"], "collaboration");
    assert_eq!(items[1]["item"]["arguments"], "{\"message\":\"go\"}");
    let completed = find("response.completed");
    assert_eq!(completed[0]["response"]["model"], "gpt-5.3-codex");
    let output = completed[0]["response"]["output"]
        .as_array()
        .expect("output");
    assert_eq!(output[0]["type"], "custom_tool_call");
    assert_eq!(output[0]["input"], SCRIPT);
    assert_eq!(output[1]["namespace"], "collaboration");
    // Every event is numbered in order.
    for (number, event) in out.iter().enumerate() {
        assert_eq!(data(event)["sequence_number"], number, "{event:?}");
    }
}

#[test]
fn accumulated_streams_call_the_tools_as_the_client_declared_them() {
    let (_, tools) = convert_request(A, &codex_request(Vec::new()));
    let mut accumulator = Accumulator::new(A, R).with_tools(tools.expect("tools"));
    for event in anthropic_stream() {
        accumulator.push(&event);
    }
    let response: Value =
        serde_json::from_slice(&accumulator.finish().expect("complete")).expect("JSON");
    let output = response["output"].as_array().expect("output");
    assert_eq!(output[0]["type"], "custom_tool_call");
    assert_eq!(output[0]["input"], SCRIPT);
    assert_eq!(output[1]["name"], "spawn_agent");
    assert_eq!(output[1]["namespace"], "collaboration");
}

#[test]
fn the_answers_items_come_back_as_the_same_upstream_calls() {
    let (_, tools) = convert_request(A, &codex_request(Vec::new()));
    let answer = anthropic_answer();
    let converted =
        convert::response_with_tools(A, R, answer.to_string().as_bytes(), tools.as_ref())
            .expect("converts");
    let response: Value = serde_json::from_slice(&converted).expect("JSON");
    // The client sends its items back with their outputs, as the Codex CLI does.
    let mut history: Vec<Value> = response["output"].as_array().expect("output").to_vec();
    for (call_id, kind) in [
        ("toolu_exec", "custom_tool_call_output"),
        ("toolu_spawn", "function_call_output"),
        ("toolu_wait", "function_call_output"),
    ] {
        history.push(json!({"type": kind, "call_id": call_id, "output": "ok"}));
    }
    let (next, _) = convert_request(A, &codex_request(history));
    let messages = next["messages"].as_array().expect("messages");
    let assistant = messages
        .iter()
        .find(|message| message["role"] == "assistant")
        .expect("the answer again");
    let upstream_calls: Vec<&Value> = answer["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter(|block| block["type"] == "tool_use")
        .collect();
    let sent_calls: Vec<&Value> = assistant["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter(|block| block["type"] == "tool_use")
        .collect();
    assert_eq!(sent_calls, upstream_calls);
}
