//! Field by field: what each direction keeps, how it maps, and what it drops on purpose.
//! Every drop listed in the crate documentation has a test here that says so.

use ccproxy_formats::Format::{
    self, AnthropicMessages as A, OpenAiChat as C, OpenAiResponses as R,
};
use ccproxy_formats::convert::{self, ConvertError};
use serde_json::{Value, json};

fn request(from: Format, to: Format, body: Value) -> Value {
    let out = convert::request(from, to, body.to_string().as_bytes())
        .unwrap_or_else(|error| panic!("{from} -> {to}: {error}"));
    serde_json::from_slice(&out).expect("JSON")
}

fn request_error(from: Format, to: Format, body: Value) -> ConvertError {
    convert::request(from, to, body.to_string().as_bytes()).expect_err("refused")
}

fn response(from: Format, to: Format, body: Value) -> Value {
    let out = convert::response(from, to, body.to_string().as_bytes())
        .unwrap_or_else(|error| panic!("{from} -> {to}: {error}"));
    serde_json::from_slice(&out).expect("JSON")
}

fn tool_loop_anthropic() -> Value {
    json!({
        "model": "claude-sonnet-4", "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "Weather and time in NY?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"city": "NY"}},
                {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_A", "content": "Sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_B", "content": [{"type": "text", "text": "9am"}]},
                {"type": "text", "text": "Thanks, and tomorrow?"}
            ]},
            {"role": "assistant", "content": "Probably sunny."}
        ]
    })
}

#[test]
fn system_and_developer_messages_all_reach_the_anthropic_system_prompt() {
    let out = request(
        C,
        A,
        json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "Hi"}
        ]}),
    );
    assert_eq!(out["system"], "Be brief.\n\nUse metric units.");
    assert_eq!(
        out["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    );
}

#[test]
fn system_and_developer_messages_become_responses_instructions() {
    let out = request(
        C,
        R,
        json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use metric units."},
            {"role": "user", "content": "Hi"}
        ]}),
    );
    assert_eq!(out["instructions"], "Be brief.\n\nUse metric units.");
    assert_eq!(
        out["input"].as_array().map(Vec::len),
        Some(1),
        "no system item in input (#53)"
    );
    let back = request(R, C, out);
    assert_eq!(
        back["messages"][0],
        json!({"role": "system", "content": "Be brief.\n\nUse metric units."})
    );
}

#[test]
fn anthropic_tool_loop_keeps_its_order_in_chat() {
    let out = request(A, C, tool_loop_anthropic());
    let roles: Vec<&str> = out["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["role"].as_str().expect("role"))
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "tool", "tool", "user", "assistant"]
    );
    let assistant = &out["messages"][1];
    assert_eq!(assistant["content"], "Checking.");
    assert_eq!(assistant["tool_calls"][0]["id"], "toolu_A");
    assert_eq!(
        assistant["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"NY\"}"
    );
    assert_eq!(assistant["tool_calls"][1]["function"]["name"], "get_time");
    assert_eq!(
        out["messages"][2],
        json!({"role": "tool", "content": "Sunny", "tool_call_id": "toolu_A"})
    );
    assert_eq!(out["messages"][3]["content"], "9am");
    assert_eq!(out["messages"][4]["content"], "Thanks, and tomorrow?");
}

#[test]
fn anthropic_tool_loop_keeps_its_order_in_responses() {
    let out = request(A, R, tool_loop_anthropic());
    let kinds: Vec<String> = out["input"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            format!(
                "{}:{}",
                item["type"].as_str().unwrap_or("?"),
                item["role"]
                    .as_str()
                    .or(item["call_id"].as_str())
                    .unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "message:user",
            "message:assistant",
            "function_call:toolu_A",
            "function_call:toolu_B",
            "function_call_output:toolu_A",
            "function_call_output:toolu_B",
            "message:user",
            "message:assistant",
        ]
    );
    assert_eq!(
        out["input"][1]["content"][0]["type"], "output_text",
        "assistant text is output_text"
    );
    assert_eq!(out["input"][5]["output"], "9am");
}

#[test]
fn chat_tool_results_join_one_anthropic_user_turn_before_the_next_text() {
    let out = request(
        C,
        A,
        json!({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{\"x\":1}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "one"},
            {"role": "tool", "tool_call_id": "call_2", "content": "two"},
            {"role": "user", "content": "and?"}
        ]}),
    );
    let messages = out["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[1]["content"][1],
        json!({"type": "tool_use", "id": "call_2", "name": "b", "input": {"x": 1}})
    );
    let turn: Vec<&str> = messages[2]["content"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| b["type"].as_str().expect("type"))
        .collect();
    assert_eq!(turn, ["tool_result", "tool_result", "text"]);
}

#[test]
fn responses_history_reaches_anthropic_and_chat() {
    let body = json!({"model": "gpt-5", "instructions": "Be brief.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "go"}]},
        {"type": "function_call", "call_id": "call_1", "name": "a", "arguments": "{\"k\":\"v\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "done"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}
    ]});
    let anthropic = request(R, A, body.clone());
    assert_eq!(anthropic["system"], "Be brief.");
    assert_eq!(
        anthropic["messages"][1]["content"][0]["input"],
        json!({"k": "v"})
    );
    assert_eq!(
        anthropic["messages"][2]["content"][0]["tool_use_id"],
        "call_1"
    );
    let chat = request(R, C, body);
    assert_eq!(
        chat["messages"][2]["tool_calls"][0]["function"]["arguments"],
        "{\"k\":\"v\"}"
    );
    assert_eq!(chat["messages"][3]["role"], "tool");
}

#[test]
fn orphan_tool_results_become_text_for_anthropic() {
    let out = request(
        C,
        A,
        json!({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "tool", "tool_call_id": "call_gone", "content": "stale"}
        ]}),
    );
    let blocks = &out["messages"][0]["content"];
    assert_eq!(blocks[1]["type"], "text", "{blocks}");
    assert!(blocks[1]["text"].as_str().expect("text").contains("stale"));
}

#[test]
fn tools_and_tool_choice_map_both_ways() {
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": false});
    let anthropic = request(C, A, chat.clone());
    assert_eq!(
        anthropic["tools"],
        json!([{"name": "f", "description": "d", "input_schema": {"type": "object"}}])
    );
    assert_eq!(
        anthropic["tool_choice"],
        json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})
    );
    let responses = request(C, R, chat);
    assert_eq!(
        responses["tools"][0],
        json!({"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": false})
    );
    assert_eq!(
        responses["tool_choice"],
        json!({"type": "function", "name": "f"})
    );
    assert_eq!(responses["parallel_tool_calls"], false);

    for (anthropic_choice, chat_choice) in [("any", "required"), ("auto", "auto"), ("none", "none")]
    {
        let body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": anthropic_choice}});
        assert_eq!(request(A, C, body.clone())["tool_choice"], chat_choice);
        assert_eq!(request(A, R, body)["tool_choice"], chat_choice);
    }
}

#[test]
fn images_travel_as_base64_and_urls() {
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    ]}]});
    let anthropic = request(C, A, chat);
    assert_eq!(
        anthropic["messages"][0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBOR"})
    );
    assert_eq!(
        anthropic["messages"][0]["content"][2]["source"],
        json!({"type": "url", "url": "https://example.com/cat.jpg"}),
        "URLs are kept (the original dropped them)"
    );
    let back = request(A, C, anthropic.clone());
    assert_eq!(
        back["messages"][0]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBOR"
    );
    let responses = request(A, R, anthropic);
    assert_eq!(
        responses["input"][0]["content"][1],
        json!({"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "auto"})
    );
    assert_eq!(
        responses["input"][0]["content"][2]["image_url"],
        "https://example.com/cat.jpg"
    );
    let anthropic_again = request(R, A, responses);
    assert_eq!(
        anthropic_again["messages"][0]["content"][1]["source"]["type"],
        "base64"
    );
}

#[test]
fn thinking_and_reasoning_effort_map_both_ways() {
    let anthropic = json!({"model": "m", "max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": 16000},
        "messages": [{"role": "user", "content": "think"}]});
    assert_eq!(
        request(A, C, anthropic.clone())["reasoning_effort"],
        "medium"
    );
    assert_eq!(
        request(A, R, anthropic)["reasoning"],
        json!({"effort": "medium", "summary": "auto"})
    );

    let chat = json!({"model": "m", "max_tokens": 1000, "temperature": 0.2, "top_k": 5, "reasoning_effort": "high",
        "messages": [{"role": "user", "content": "think"}]});
    let out = request(C, A, chat);
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 16384})
    );
    assert!(
        out["max_tokens"].as_u64().expect("max_tokens") > 16384,
        "max_tokens raised above the budget"
    );
    assert!(
        out.get("temperature").is_none(),
        "thinking rejects a changed temperature: dropped on purpose"
    );

    let responses = json!({"model": "m", "reasoning": {"effort": "low"}, "input": "think"});
    assert_eq!(request(R, A, responses)["thinking"]["budget_tokens"], 2048);
    let off = json!({"model": "m", "reasoning": {"effort": "none"}, "input": "quick"});
    assert!(request(R, A, off).get("thinking").is_none());
}

#[test]
fn adaptive_thinking_takes_its_depth_from_output_config_effort() {
    let adaptive = |extra: Value| {
        let mut body = json!({"model": "m", "max_tokens": 32000, "thinking": {"type": "adaptive"},
            "messages": [{"role": "user", "content": "think"}]});
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        body
    };
    let high = adaptive(json!({"output_config": {"effort": "high"}}));
    assert_eq!(request(A, C, high.clone())["reasoning_effort"], "high");
    assert_eq!(request(A, R, high)["reasoning"]["effort"], "high");
    // Without an effort, adaptive thinking is OpenAI's default depth.
    assert_eq!(
        request(A, R, adaptive(json!({})))["reasoning"]["effort"],
        "medium"
    );
    // An effort alone asks for reasoning too.
    let effort_only = json!({"model": "m", "max_tokens": 100, "output_config": {"effort": "low"},
        "messages": [{"role": "user", "content": "think"}]});
    assert_eq!(request(A, C, effort_only)["reasoning_effort"], "low");
}

#[test]
fn thinking_is_left_off_when_foreign_history_lacks_the_signed_thinking_block() {
    let body = json!({"model": "m", "reasoning_effort": "medium", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
    ]});
    assert!(
        request(C, A, body).get("thinking").is_none(),
        "Anthropic would reject the request"
    );
}

#[test]
fn structured_output_maps_to_text_format_and_to_an_anthropic_instruction() {
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]});
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "2+2?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "math", "schema": schema, "strict": true}}});
    let responses = request(C, R, chat.clone());
    assert_eq!(
        responses["text"]["format"],
        json!({"type": "json_schema", "name": "math", "schema": schema, "strict": true})
    );
    assert_eq!(
        request(R, C, responses)["response_format"]["json_schema"]["name"],
        "math"
    );
    let anthropic = request(C, A, chat);
    let system = anthropic["system"].as_str().expect("system");
    assert!(
        system.contains("JSON schema") && system.contains("\"answer\""),
        "{system}"
    );
}

#[test]
fn max_tokens_and_stop_sequences() {
    let chat = json!({"model": "m", "max_tokens": 77, "stop": "END", "messages": [{"role": "user", "content": "x"}]});
    let anthropic = request(C, A, chat);
    assert_eq!(anthropic["max_tokens"], 77);
    assert_eq!(anthropic["stop_sequences"], json!(["END"]));
    let back = request(A, C, anthropic.clone());
    assert_eq!(back["max_completion_tokens"], 77);
    assert_eq!(back["stop"], json!(["END"]));
    let responses = request(A, R, anthropic);
    assert_eq!(responses["max_output_tokens"], 77);
    assert!(
        responses.get("stop").is_none(),
        "Responses has no stop sequences: dropped on purpose"
    );
    let no_limit = request(R, A, json!({"model": "m", "input": "x"}));
    assert_eq!(
        no_limit["max_tokens"], 8192,
        "Anthropic requires max_tokens"
    );
}

#[test]
fn chat_only_sampling_fields_are_dropped_on_purpose() {
    let out = request(
        C,
        A,
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "n": 2, "seed": 7, "presence_penalty": 0.5, "frequency_penalty": 0.5, "logprobs": true, "logit_bias": {"1": 2}}),
    );
    for field in [
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "logit_bias",
    ] {
        assert!(
            out.get(field).is_none(),
            "{field} has no Anthropic counterpart"
        );
    }
}

#[test]
fn anthropic_only_fields_are_dropped_on_purpose() {
    let body = json!({"model": "m", "max_tokens": 5, "top_k": 3, "temperature": 0.5, "top_p": 0.9,
    "metadata": {"user_id": "u1", "other": 1},
    "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search"}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "text", "text": "found"}
        ]}
    ]});
    for to in [C, R] {
        let out = request(A, to, body.clone());
        let text = out.to_string();
        assert!(out.get("top_k").is_none(), "{to}: top_k");
        assert!(!text.contains("cache_control"), "{to}: cache_control");
        assert!(
            !text.contains("web_search"),
            "{to}: server tools and their blocks"
        );
        assert!(
            !text.contains("hmm"),
            "{to}: thinking history has no OpenAI input form"
        );
        assert!(out.get("metadata").is_none(), "{to}: metadata (#59)");
        assert_eq!(out["user"], "u1", "{to}: metadata.user_id becomes user");
        assert_eq!(out["temperature"], 0.5);
    }
}

#[test]
fn temperature_and_top_p_together_keep_only_temperature_for_anthropic() {
    let out = request(
        C,
        A,
        json!({"model": "m", "temperature": 0.3, "top_p": 0.8, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(out["temperature"], 0.3);
    assert!(
        out.get("top_p").is_none(),
        "recent Claude models reject both"
    );
}

#[test]
fn responses_only_things_are_dropped_or_refused() {
    let out = request(
        R,
        A,
        json!({"model": "m", "input": [
        {"role": "user", "content": "x"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "openai thoughts"}], "encrypted_content": "gAAA"}
    ], "tools": [{"type": "web_search"}, {"type": "function", "name": "f", "parameters": {"type": "object"}}],
       "store": false, "include": ["reasoning.encrypted_content"]}),
    );
    let text = out.to_string();
    assert!(
        !text.contains("openai thoughts"),
        "reasoning without an Anthropic signature: dropped on purpose"
    );
    assert_eq!(
        out["tools"].as_array().map(Vec::len),
        Some(1),
        "built-in tools: dropped on purpose"
    );
    assert!(out.get("store").is_none() && out.get("include").is_none());

    let error = request_error(
        R,
        A,
        json!({"model": "m", "previous_response_id": "resp_1", "input": "x"}),
    );
    assert!(
        error.to_string().contains("previous_response_id"),
        "{error}"
    );
    let error = request_error(
        R,
        C,
        json!({"model": "m", "input": [{"type": "local_shell_call", "id": "x"}]}),
    );
    assert_eq!(
        error.to_string(),
        "input[0]: item type `local_shell_call` cannot be converted to openai.chat_completions"
    );
}

#[test]
fn unknown_blocks_are_refused_with_their_path() {
    let error = request_error(
        A,
        C,
        json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": [{"type": "hologram", "data": 1}]}
        ]}),
    );
    assert_eq!(
        error.to_string(),
        "messages[2].content[0]: block type `hologram` cannot be converted to openai.chat_completions"
    );
}

#[test]
fn images_in_tool_results_are_dropped_for_openai_on_purpose() {
    let body = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
            {"type": "text", "text": "see image"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
        ]}]}
    ]});
    let chat = request(A, C, body.clone());
    assert_eq!(
        chat["messages"][1],
        json!({"role": "tool", "content": "see image", "tool_call_id": "toolu_1"})
    );
    let responses = request(A, R, body);
    assert_eq!(responses["input"][1]["output"], "see image");
}

#[test]
fn the_claude_code_billing_header_is_stripped_for_openai() {
    let body = json!({"model": "m", "max_tokens": 5, "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=1; cch=abc"},
        {"type": "text", "text": "You are Claude Code."}
    ], "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(
        request(A, C, body.clone())["messages"][0],
        json!({"role": "system", "content": "You are Claude Code."})
    );
    assert_eq!(request(A, R, body)["instructions"], "You are Claude Code.");
}

#[test]
fn long_tool_ids_hash_the_same_for_the_call_and_its_result() {
    let long = format!("toolu_{}", "y".repeat(80));
    let body = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": long, "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": long, "content": "ok"}]}
    ]});
    let chat = request(A, C, body.clone());
    let id = chat["messages"][1]["tool_calls"][0]["id"]
        .as_str()
        .expect("id");
    assert!(id.starts_with("call_") && id.len() <= 64, "{id}");
    assert_eq!(chat["messages"][2]["tool_call_id"], id);
    let responses = request(A, R, body);
    assert_eq!(responses["input"][1]["call_id"], id);
    assert_eq!(responses["input"][2]["call_id"], id);
}

#[test]
fn cache_usage_survives_anthropic_to_openai_and_back() {
    let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 10, "cache_read_input_tokens": 200, "cache_creation_input_tokens": 30, "output_tokens": 5}});
    for to in [C, R] {
        let out = response(A, to, body.clone());
        let usage = &out["usage"];
        let (prompt, cached) = match to {
            C => (
                &usage["prompt_tokens"],
                &usage["prompt_tokens_details"]["cached_tokens"],
            ),
            _ => (
                &usage["input_tokens"],
                &usage["input_tokens_details"]["cached_tokens"],
            ),
        };
        assert_eq!(
            (prompt, cached),
            (&json!(240), &json!(200)),
            "{to}: OpenAI counts cached input in the prompt"
        );
        assert_eq!(
            usage["cache_creation_input_tokens"], 30,
            "{to}: cache writes kept as an extension"
        );
        let back = response(to, A, out);
        assert_eq!(
            back["usage"],
            json!({"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 200})
        );
    }
}

#[test]
fn thinking_in_responses_reaches_openai_clients() {
    let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "thinking", "thinking": "ponder", "signature": "sig"}, {"type": "text", "text": "answer"}],
        "stop_reason": "max_tokens", "usage": {"input_tokens": 1, "output_tokens": 2}});
    let chat = response(A, C, body.clone());
    assert_eq!(chat["choices"][0]["message"]["reasoning_content"], "ponder");
    assert_eq!(chat["choices"][0]["finish_reason"], "length");
    let responses = response(A, R, body);
    assert_eq!(responses["output"][0]["type"], "reasoning");
    assert_eq!(responses["output"][0]["summary"][0]["text"], "ponder");
    assert_eq!(responses["status"], "incomplete");
    assert_eq!(
        responses["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    let back = response(R, A, responses);
    assert_eq!(back["stop_reason"], "max_tokens");
    assert_eq!(back["content"][0]["thinking"], "ponder");
}

#[test]
fn only_the_first_chat_choice_is_converted() {
    let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "first"}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "second"}, "finish_reason": "stop"}
    ]});
    let out = response(C, A, body);
    assert_eq!(out["content"], json!([{"type": "text", "text": "first"}]));
}

#[test]
fn chat_refusals_reach_the_client_as_text() {
    let body = json!({"id": "c", "model": "gpt", "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": "I can't."}, "finish_reason": "stop"}]});
    let out = response(C, A, body);
    assert_eq!(out["content"][0]["text"], "I can't.");
}

#[test]
fn tool_arguments_that_are_not_an_object_are_kept() {
    let body = json!({"id": "c", "model": "gpt", "choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{broken"}}
    ]}, "finish_reason": "tool_calls"}]});
    let out = response(C, A, body);
    assert_eq!(out["content"][0]["input"], json!({"value": [1, 2]}));
    assert_eq!(out["content"][1]["input"], json!({"value": "{broken"}));
    assert_eq!(out["stop_reason"], "tool_use");
}

#[test]
fn errors_reach_the_client_in_its_format() {
    let anthropic_overloaded =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    for to in [C, R] {
        let out: Value = serde_json::from_slice(&convert::error(A, to, 529, anthropic_overloaded))
            .expect("JSON");
        assert_eq!(out["error"]["message"], "Overloaded");
        assert_eq!(out["error"]["code"], "server_overloaded");
    }
    let detail = br#"{"detail":"Unsupported parameter: metadata"}"#;
    let out: Value = serde_json::from_slice(&convert::error(R, A, 400, detail)).expect("JSON");
    assert_eq!(
        out,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "Unsupported parameter: metadata"}})
    );
}

#[test]
fn tool_choice_without_tools_is_dropped_on_purpose() {
    // OpenAI and Anthropic both reject a tool choice when no tool is defined (the source's
    // tools may all have been server tools, dropped above).
    let body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true}});
    for to in [C, R] {
        let out = request(A, to, body.clone());
        assert!(
            out.get("tools").is_none()
                && out.get("tool_choice").is_none()
                && out.get("parallel_tool_calls").is_none(),
            "{to}: {out}"
        );
    }
    let chat = json!({"model": "m", "tool_choice": "required", "messages": [{"role": "user", "content": "x"}]});
    assert!(request(C, A, chat).get("tool_choice").is_none());
}

/// Claude's interleaved thinking as a Responses client replays it: reasoning items between
/// the function calls of one assistant turn, then the outputs.
fn interleaved_reasoning_history() -> Value {
    json!({"model": "m", "input": [
        {"role": "user", "content": "go"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "first"}]},
        {"type": "function_call", "call_id": "call_1", "name": "a", "arguments": "{}"},
        {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "second"}]},
        {"type": "function_call", "call_id": "call_2", "name": "b", "arguments": "{\"x\":1}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "one"},
        {"type": "function_call_output", "call_id": "call_2", "output": "two"}
    ]})
}

#[test]
fn reasoning_between_responses_function_calls_keeps_one_anthropic_turn() {
    let out = request(R, A, interleaved_reasoning_history());
    let messages = out["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3, "{out}");
    let tool_uses: Vec<&str> = messages[1]["content"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|block| block["id"].as_str().expect("tool_use id"))
        .collect();
    assert_eq!(tool_uses, ["call_1", "call_2"]);
    assert_eq!(
        messages[2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "one"}]},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "two"}]}
        ]),
        "both results answer their call, none becomes orphan text"
    );
}

#[test]
fn reasoning_between_responses_function_calls_keeps_one_chat_assistant_message() {
    let out = request(R, C, interleaved_reasoning_history());
    let messages = out["messages"].as_array().expect("messages");
    let roles: Vec<&str> = messages
        .iter()
        .map(|message| message["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool"], "{out}");
    let ids: Vec<&str> = messages[1]["tool_calls"]
        .as_array()
        .expect("tool calls")
        .iter()
        .map(|call| call["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["call_1", "call_2"]);
    assert_eq!(messages[2]["tool_call_id"], "call_1");
    assert_eq!(messages[3]["tool_call_id"], "call_2");
}

#[test]
fn thinking_is_dropped_on_purpose_when_tool_use_is_forced() {
    // Anthropic: "Thinking may not be enabled when tool_choice forces tool use". The forced
    // tool is what the client asked for, so thinking gives way.
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    for (choice, anthropic_choice) in [
        (json!("required"), json!({"type": "any"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ] {
        let body = json!({"model": "m", "reasoning_effort": "high", "temperature": 0.3,
            "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice});
        let out = request(C, A, body);
        assert!(out.get("thinking").is_none(), "{out}");
        assert_eq!(out["tool_choice"], anthropic_choice);
        assert_eq!(
            out["temperature"], 0.3,
            "without thinking the sampling fields stay"
        );
    }
    let responses = json!({"model": "m", "reasoning": {"effort": "low"}, "input": "x",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": "required"});
    assert!(request(R, A, responses).get("thinking").is_none());
    let auto = json!({"model": "m", "reasoning_effort": "high", "messages": [{"role": "user", "content": "x"}],
        "tools": tools, "tool_choice": "auto"});
    assert!(
        request(C, A, auto).get("thinking").is_some(),
        "auto does not force a tool"
    );
}

#[test]
fn data_urls_that_are_not_base64_reach_anthropic_as_base64() {
    // Anthropic has no source for `data:` URLs; a percent-encoded one is decoded and sent
    // as base64 like any other inline image.
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/svg+xml;utf8,%3Csvg%20xmlns='http://www.w3.org/2000/svg'/%3E"}}
    ]}]});
    let anthropic = request(C, A, chat);
    assert_eq!(
        anthropic["messages"][0]["content"][0]["source"],
        json!({"type": "base64", "media_type": "image/svg+xml",
            "data": "PHN2ZyB4bWxucz0naHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmcnLz4="})
    );
}

#[test]
fn thinking_signatures_and_redacted_thinking_are_dropped_towards_openai_on_purpose() {
    let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "ponder", "signature": "SIGNATURE_BYTES"},
            {"type": "redacted_thinking", "data": "REDACTED_BYTES"},
            {"type": "text", "text": "answer"}
        ],
        "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2}});
    for to in [C, R] {
        let text = response(A, to, body.clone()).to_string();
        assert!(text.contains("ponder"), "{to}: the thinking text is kept");
        assert!(
            !text.contains("REDACTED_BYTES"),
            "{to}: redacted thinking is Anthropic's encrypted form"
        );
    }
    let chat = response(A, C, body.clone()).to_string();
    assert!(
        !chat.contains("SIGNATURE_BYTES"),
        "only Anthropic can check a signature, and Chat has nowhere to keep it"
    );
    // A Responses client keeps it, tagged, as the reasoning's `encrypted_content` (opaque to
    // it) and sends it back, so Anthropic gets its own thinking back with the next turn.
    let responses = response(A, R, body.clone());
    assert_eq!(
        responses["output"][0]["encrypted_content"],
        "ccproxy-anthropic-signature:SIGNATURE_BYTES"
    );
    let history = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [
            {"type": "redacted_thinking", "data": "REDACTED_BYTES"},
            {"type": "text", "text": "done"}
        ]},
        {"role": "user", "content": "y"}
    ]});
    for to in [C, R] {
        let text = request(A, to, history.clone()).to_string();
        assert!(!text.contains("REDACTED_BYTES"), "{to}: {text}");
    }
}

#[test]
fn encrypted_reasoning_rides_through_the_other_format_and_comes_back_to_its_provider() {
    // Codex CLI on Anthropic: the signed thinking of the answer comes back as a reasoning
    // item, and reaches Anthropic as the thinking block it was.
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "ponder", "signature": "SIG"},
            {"type": "tool_use", "id": "toolu_1", "name": "shell", "input": {"cmd": "ls"}}
        ],
        "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2}});
    let output = response(A, R, answer)["output"].clone();
    let next_turn = json!({"model": "m", "input": [
        {"type": "message", "role": "user", "content": "go"},
        output[0], output[1],
        {"type": "function_call_output", "call_id": output[1]["call_id"], "output": "a.txt"}
    ]});
    let anthropic = request(R, A, next_turn);
    assert_eq!(
        anthropic["messages"][1]["content"][0],
        json!({"type": "thinking", "thinking": "ponder", "signature": "SIG"}),
        "{anthropic}"
    );

    // Claude Code on OpenAI: the encrypted reasoning comes back as a thinking signature,
    // and reaches OpenAI as the reasoning item it was; never Anthropic.
    let answer = json!({"id": "resp_1", "object": "response", "status": "completed", "model": "gpt",
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "ponder"}],
         "encrypted_content": "gAAAA-ENCRYPTED"},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "Bash", "arguments": "{}"}
    ]});
    let content = response(R, A, answer)["content"].clone();
    assert_eq!(content[0]["type"], "thinking");
    let next_turn = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "ok"}]}
    ]});
    let responses = request(A, R, next_turn);
    let reasoning = responses["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "reasoning")
        .cloned()
        .expect("the reasoning item goes back");
    assert_eq!(reasoning["encrypted_content"], "gAAAA-ENCRYPTED");
    assert_eq!(reasoning["summary"][0]["text"], "ponder");
    assert!(reasoning.get("id").is_none(), "nothing is stored upstream");
    let to_anthropic = convert::request(
        R,
        A,
        json!({"model": "m", "input": [{"type": "reasoning", "summary": [], "encrypted_content": "gAAAA-ENCRYPTED"},
            {"type": "message", "role": "user", "content": "x"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert!(
        !String::from_utf8_lossy(&to_anthropic).contains("gAAAA"),
        "OpenAI's reasoning never reaches Anthropic"
    );
}

#[test]
fn media_given_only_as_an_openai_file_id_is_dropped_towards_anthropic_on_purpose() {
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "read this"},
        {"type": "file", "file": {"file_id": "file-abc"}}
    ]}]});
    let out = request(C, A, chat);
    assert_eq!(
        out["messages"][0]["content"],
        json!([{"type": "text", "text": "read this"}]),
        "an OpenAI file id means nothing to Anthropic"
    );
    let responses = json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "look"},
        {"type": "input_image", "file_id": "file-img"},
        {"type": "input_file", "file_id": "file-doc"}
    ]}]});
    let out = request(R, A, responses);
    assert_eq!(
        out["messages"][0]["content"],
        json!([{"type": "text", "text": "look"}])
    );
}

#[test]
fn chat_reasoning_content_in_history_is_dropped_on_purpose() {
    let chat = json!({"model": "m", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "done", "reasoning_content": "CHAT_THOUGHTS"},
        {"role": "user", "content": "y"}
    ]});
    for to in [R, A] {
        let out = request(C, to, chat.clone());
        let text = out.to_string();
        assert!(
            !text.contains("CHAT_THOUGHTS"),
            "{to}: servers do not take reasoning back: {text}"
        );
        assert!(text.contains("done"), "{to}: the text of the turn is kept");
    }
}

#[test]
fn failed_tool_results_are_marked_in_the_output_text_for_openai() {
    let body = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            {"type": "tool_use", "id": "toolu_2", "name": "f", "input": {}},
            {"type": "tool_use", "id": "toolu_3", "name": "f", "input": {}}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such file", "is_error": true},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "Error: already said", "is_error": true},
            {"type": "tool_result", "tool_use_id": "toolu_3", "content": "fine", "is_error": false}
        ]}
    ]});
    let chat = request(A, C, body.clone());
    let outputs: Vec<&Value> = chat["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|message| message["role"] == "tool")
        .map(|message| &message["content"])
        .collect();
    assert_eq!(
        outputs,
        [
            &json!("Error: no such file"),
            &json!("Error: already said"),
            &json!("fine")
        ],
        "Chat has no is_error field; the text says it"
    );
    let responses = request(A, R, body);
    let outputs: Vec<&Value> = responses["input"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|item| item["type"] == "function_call_output")
        .map(|item| &item["output"])
        .collect();
    assert_eq!(
        outputs,
        [
            &json!("Error: no such file"),
            &json!("Error: already said"),
            &json!("fine")
        ]
    );
}

#[test]
fn sampling_fields_thinking_rejects_are_dropped_on_purpose() {
    let body = |top_p: f64| {
        json!({"model": "m", "reasoning_effort": "low", "top_p": top_p,
            "messages": [{"role": "user", "content": "x"}]})
    };
    let out = request(C, A, body(0.5));
    assert!(out.get("thinking").is_some());
    assert!(out.get("top_p").is_none(), "top_p below 0.95: {out}");
    assert_eq!(request(C, A, body(0.97))["top_p"], 0.97);
    let responses =
        json!({"model": "m", "reasoning": {"effort": "low"}, "temperature": 1.0, "input": "x"});
    assert_eq!(
        request(R, A, responses)["temperature"],
        1.0,
        "temperature 1 is allowed"
    );
}

#[test]
fn images_inside_tool_results_are_dropped_between_chat_and_responses_on_purpose() {
    let chat = json!({"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [
            {"type": "text", "text": "see image"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        ]}
    ]});
    let responses = request(C, R, chat);
    assert_eq!(
        responses["input"][2],
        json!({"type": "function_call_output", "call_id": "call_1", "output": "see image"})
    );
    let back = json!({"model": "m", "input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "call_1", "name": "shot", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": [
            {"type": "input_text", "text": "see image"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
        ]}
    ]});
    let chat = request(R, C, back);
    assert_eq!(
        chat["messages"][2],
        json!({"role": "tool", "content": "see image", "tool_call_id": "call_1"})
    );
}

#[test]
fn options_both_openai_formats_share_map_between_chat_and_responses() {
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "prompt_cache_key": "conv-42", "service_tier": "flex", "store": false,
        "metadata": {"team": "a"}, "safety_identifier": "user-hash", "verbosity": "low"});
    let responses = request(C, R, chat.clone());
    assert_eq!(responses["prompt_cache_key"], "conv-42");
    assert_eq!(responses["service_tier"], "flex");
    assert_eq!(responses["store"], false);
    assert_eq!(responses["metadata"], json!({"team": "a"}));
    assert_eq!(responses["safety_identifier"], "user-hash");
    assert_eq!(responses["text"], json!({"verbosity": "low"}));
    let back = request(R, C, responses);
    for field in [
        "prompt_cache_key",
        "service_tier",
        "store",
        "metadata",
        "safety_identifier",
        "verbosity",
    ] {
        assert_eq!(back[field], chat[field], "{field} comes back");
    }

    let responses = json!({"model": "m", "input": "x", "store": true, "service_tier": "priority",
        "text": {"verbosity": "high", "format": {"type": "json_object"}},
        "include": ["reasoning.encrypted_content"], "truncation": "auto"});
    let chat = request(R, C, responses);
    assert!(
        chat.get("include").is_none() && chat.get("truncation").is_none(),
        "Responses-only server options: dropped on purpose"
    );
    assert_eq!(chat["store"], true);
    assert_eq!(chat["service_tier"], "priority");
    assert_eq!(chat["verbosity"], "high");
    assert_eq!(chat["response_format"], json!({"type": "json_object"}));
    let again = request(C, R, chat);
    assert_eq!(
        again["text"],
        json!({"format": {"type": "json_object"}, "verbosity": "high"})
    );
}

#[test]
fn openai_server_options_are_dropped_towards_anthropic_on_purpose() {
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "prompt_cache_key": "conv-42", "service_tier": "flex", "store": false,
        "metadata": {"team": "a"}, "safety_identifier": "user-hash", "verbosity": "low"});
    let out = request(C, A, chat);
    for field in [
        "prompt_cache_key",
        "service_tier",
        "store",
        "metadata",
        "safety_identifier",
        "verbosity",
    ] {
        assert!(
            out.get(field).is_none(),
            "{field}: no Anthropic counterpart"
        );
    }
}
