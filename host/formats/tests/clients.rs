//! What today's clients really send converts in every direction: the captured requests of
//! Claude Code and the Codex CLI (`tests/data/clients`, origin noted in each file), turn 1
//! (the prompt) and turn 2 (after a shell tool ran, with the answer's reasoning), to every
//! other format.

use std::path::PathBuf;

use ccproxy_formats::Format::{
    self, AnthropicMessages as A, OpenAiChat as C, OpenAiResponses as R,
};
use ccproxy_formats::convert;
use serde_json::Value;

/// A capture of `tests/data/clients`.
fn capture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/clients")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).expect("a capture is JSON")
}

fn turns(name: &str) -> Vec<Value> {
    capture(name)["requests"]
        .as_array()
        .expect("a capture holds its requests")
        .clone()
}

fn convert_request(from: Format, to: Format, body: &Value) -> Value {
    let out = convert::request(from, to, body.to_string().as_bytes())
        .unwrap_or_else(|error| panic!("{from} -> {to}: {error}"));
    serde_json::from_slice(&out).expect("JSON")
}

const CLAUDE_CODE: &str = "claude_code_2.1.332.json";
const CODEX_CLI: &str = "codex_cli_0.171.0.json";

#[test]
fn claude_code_sends_system_turns_inside_messages() {
    let turns = turns(CLAUDE_CODE);
    for turn in &turns {
        let roles: Vec<&str> = turn["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|message| message["role"].as_str().unwrap())
            .collect();
        assert!(roles.contains(&"system"), "the capture shows it: {roles:?}");
    }
}

#[test]
fn claude_code_turns_convert_to_responses_with_the_system_turn_in_instructions() {
    for (number, turn) in turns(CLAUDE_CODE).iter().enumerate() {
        let body = convert_request(A, R, turn);
        let instructions = body["instructions"].as_str().unwrap_or_default();
        assert!(
            instructions.contains("You are a Claude agent"),
            "turn {number}: the top-level system: {instructions:.300}"
        );
        assert!(
            instructions.contains("# Environment"),
            "turn {number}: the system turn of `messages`: {instructions:.300}"
        );
        let input = body["input"].as_array().expect("input");
        assert!(
            input.iter().all(|item| item["role"] != "system"),
            "turn {number}: no system item is left in input"
        );
        assert!(
            input
                .iter()
                .any(|item| item["content"].to_string().contains("do it")),
            "turn {number}: the prompt"
        );
    }
    let body = convert_request(A, R, &turns(CLAUDE_CODE)[1]);
    let input = body["input"].as_array().unwrap();
    let call = input
        .iter()
        .find(|item| item["type"] == "function_call")
        .expect("the Bash call");
    assert_eq!(call["name"], "Bash");
    let output = input
        .iter()
        .find(|item| item["type"] == "function_call_output")
        .expect("the Bash result");
    assert_eq!(output["call_id"], call["call_id"]);
    assert!(output["output"].to_string().contains("tok"), "{output}");
}

#[test]
fn claude_code_turns_convert_to_chat_with_the_system_turn_kept() {
    for (number, turn) in turns(CLAUDE_CODE).iter().enumerate() {
        let body = convert_request(A, C, turn);
        let messages = body["messages"].as_array().expect("messages");
        let system: String = messages
            .iter()
            .filter(|message| message["role"] == "system" || message["role"] == "developer")
            .map(|message| message["content"].to_string())
            .collect();
        assert!(
            system.contains("# Environment"),
            "turn {number}: {system:.300}"
        );
    }
    let body = convert_request(A, C, &turns(CLAUDE_CODE)[1]);
    let messages = body["messages"].as_array().unwrap();
    let call = messages
        .iter()
        .find_map(|message| message["tool_calls"].get(0))
        .expect("the Bash call");
    let result = messages
        .iter()
        .find(|message| message["role"] == "tool")
        .expect("the Bash result");
    assert_eq!(result["tool_call_id"], call["id"]);
}

#[test]
fn codex_cli_turns_convert_to_anthropic_with_developer_messages_in_system() {
    for (number, turn) in turns(CODEX_CLI).iter().enumerate() {
        let body = convert_request(R, A, turn);
        let system = body["system"].to_string();
        assert!(
            system.contains("You are a coding agent running in the Codex CLI"),
            "turn {number}: {system:.300}"
        );
        let messages = body["messages"].as_array().expect("messages");
        assert!(
            messages
                .iter()
                .all(|message| message["role"] == "user" || message["role"] == "assistant"),
            "turn {number}: only user and assistant turns reach Anthropic"
        );
        let tools: Vec<&str> = body["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|tool| tool["name"].as_str())
            .collect();
        assert!(tools.contains(&"exec_command"), "turn {number}: {tools:?}");
    }
    let body = convert_request(R, A, &turns(CODEX_CLI)[1]);
    let messages = body["messages"].as_array().unwrap();
    let blocks: Vec<Value> = messages
        .iter()
        .flat_map(|message| message["content"].as_array().cloned().unwrap_or_default())
        .collect();
    let call = blocks
        .iter()
        .find(|block| block["type"] == "tool_use")
        .expect("the exec_command call");
    assert_eq!(call["name"], "exec_command");
    assert!(call["input"]["cmd"].is_string(), "{call}");
    let result = blocks
        .iter()
        .find(|block| block["type"] == "tool_result")
        .expect("the exec_command result");
    assert_eq!(result["tool_use_id"], call["id"]);
}

#[test]
fn codex_cli_turns_convert_to_chat() {
    for (number, turn) in turns(CODEX_CLI).iter().enumerate() {
        let body = convert_request(R, C, turn);
        let messages = body["messages"].as_array().expect("messages");
        assert!(
            messages[0].to_string().contains("Codex CLI"),
            "turn {number}: the developer prompt comes first"
        );
    }
}

#[test]
fn reasoning_the_clients_send_back_reaches_only_its_own_provider() {
    // Claude Code sends the signed thinking of the last answer back; an Anthropic
    // signature means nothing to OpenAI.
    let claude_turn = &turns(CLAUDE_CODE)[1];
    assert!(
        claude_turn.to_string().contains("mock-signature-0"),
        "the capture holds the thinking"
    );
    for to in [R, C] {
        let body = convert_request(A, to, claude_turn).to_string();
        assert!(!body.contains("mock-signature-0"), "{to}");
    }
    // The Codex CLI sends the encrypted reasoning item back; OpenAI's encryption means
    // nothing to Anthropic.
    let codex_turn = &turns(CODEX_CLI)[1];
    assert!(
        codex_turn
            .to_string()
            .contains("mock-encrypted-reasoning-0"),
        "the capture holds the reasoning"
    );
    for to in [A, C] {
        let body = convert_request(R, to, codex_turn).to_string();
        assert!(!body.contains("mock-encrypted-reasoning-0"), "{to}");
    }
}

#[test]
fn codex_cli_with_its_default_model_converts_with_its_input_tools() {
    // Its tools come as an `additional_tools` input item (namespaces of function tools and
    // the free-form `exec` tool): they become the upstream's tools, `exec` taking
    // `{"input": string}` and namespaced ones with flat names.
    let turn = &turns("codex_cli_0.171.0_default_model.json")[0];
    assert_eq!(turn["input"][0]["type"], "additional_tools");
    let (anthropic, tools) =
        convert::request_with_tools(R, A, turn.to_string().as_bytes()).expect("converts");
    assert!(tools.is_some_and(|tools| !tools.is_empty()));
    let anthropic: Value = serde_json::from_slice(&anthropic).expect("JSON");
    let system = anthropic["system"].to_string();
    assert!(system.contains("You are Codex"), "{system:.300}");
    assert!(
        !anthropic.to_string().contains("additional_tools"),
        "{anthropic:.300}"
    );
    assert_eq!(anthropic["messages"][0]["role"], "user");
    let names: Vec<&str> = anthropic["tools"]
        .as_array()
        .expect("its tools")
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert!(names.contains(&"exec"), "{names:?}");
    assert!(names.contains(&"collaboration__spawn_agent"), "{names:?}");
    assert!(
        names.iter().all(|name| name.len() <= 64
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')),
        "{names:?}"
    );
    let chat = convert_request(R, C, turn);
    assert!(chat["messages"][0].to_string().contains("You are Codex"));
    assert_eq!(chat["tools"].as_array().map(Vec::len), Some(names.len()));
}
