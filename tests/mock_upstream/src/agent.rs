//! The scripted agent: instead of replaying a sample, the mock plays a model
//! that drives a real client's tool loop (the real-client tests in
//! `tests/e2e/real_clients.rs`).
//!
//! Armed with `POST /_mock/agent {"answer": TEXT, "command": CMD}` (disarmed by
//! `DELETE /_mock/agent` or `POST /_mock/reset`), it answers every Anthropic
//! Messages, Responses (the Codex backend's too) and Chat Completions request
//! itself:
//! - with `command`, a request that declares a shell tool and carries no tool
//!   result yet gets a call of that tool running `CMD`; the shell tool is the
//!   first declared of `Bash` (Claude Code), `exec_command`, `shell_command`
//!   and `shell` (Codex CLI releases), its arguments shaped by its schema
//!   (`cmd`, `command` as a string, or `command` as an argv array); without one,
//!   the Codex CLI's free-form `exec` tool as the proxy declares it upstream
//!   (`{"input": string}`) gets JavaScript that runs `CMD` with
//!   `tools.exec_command` and returns its output;
//! - with `tool` (`{"name": NAME, "input": {…}}`), a request that declares that
//!   tool and carries no tool result yet gets a call of it with that input
//!   (before `command`);
//! - anything else (no `command`, no shell tool, or a conversation that
//!   already holds a tool result) gets the text `answer`.
//!
//! Each Anthropic or Responses answer starts with the model's reasoning (a
//! signed `thinking` block, an encrypted `reasoning` item), which clients send
//! back with the next turn; Chat Completions has no such field to return.
//! The answer streams when the request asks for it, as the API would send it;
//! a Chat stream carries its usage chunk only when the request set
//! `stream_options.include_usage`, as OpenAI's does.

use serde_json::{Value, json};

use crate::samples::{Format, Reply, Selected, synthesize};

/// Tool names of the clients' shell tools, in order of preference.
const SHELL_TOOLS: [&str; 4] = ["Bash", "exec_command", "shell_command", "shell"];

/// What the agent does, as armed by the control call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Script {
    /// The final text.
    answer: String,
    /// The shell command to call the client's tool with first, if any.
    command: Option<String>,
    /// A tool to call first by its name, with this input, when the request declares it
    /// (before `command`).
    tool: Option<(String, Value)>,
}

impl Script {
    /// Reads `{"answer": TEXT, "command": CMD}` (`command` optional).
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|error| format!("the agent script is not JSON: {error}"))?;
        let answer = value
            .get("answer")
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .ok_or("the agent script needs a non-empty `answer` string")?
            .to_owned();
        let command = match value.get("command") {
            None | Some(Value::Null) => None,
            Some(Value::String(command)) if !command.is_empty() => Some(command.clone()),
            Some(other) => {
                return Err(format!(
                    "`command` must be a non-empty string when given, got {other}"
                ));
            }
        };
        let tool = match value.get("tool") {
            None | Some(Value::Null) => None,
            Some(tool) => match (tool.get("name").and_then(Value::as_str), tool.get("input")) {
                (Some(name), Some(input)) if !name.is_empty() && input.is_object() => {
                    Some((name.to_owned(), input.clone()))
                }
                _ => {
                    return Err(format!(
                        "`tool` must be {{\"name\": NAME, \"input\": {{…}}}} when given, got {tool}"
                    ));
                }
            },
        };
        Ok(Self {
            answer,
            command,
            tool,
        })
    }

    /// What the script looks like, for the control call's answer.
    pub(crate) fn describe(&self) -> Value {
        let mut described = json!({"answer": self.answer, "command": self.command});
        if let Some((name, input)) = &self.tool {
            described["tool"] = json!({"name": name, "input": input});
        }
        described
    }

    /// The answer to `request` in `format`.
    pub(crate) fn reply(&self, format: Format, request: &Value, number: usize) -> Selected {
        let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock-model");
        let answered = has_tool_result(format, request).unwrap_or(true);
        let call = self
            .tool
            .clone()
            .filter(|(name, _)| !answered && declares(format, request, name))
            .or_else(|| {
                self.command
                    .as_deref()
                    .filter(|_| !answered)
                    .and_then(|command| shell_call(format, request, command))
            });
        let body = match format {
            Format::Anthropic => anthropic_body(model, &self.answer, call, number),
            Format::Responses => responses_body(model, &self.answer, call, number),
            Format::Chat => chat_body(model, &self.answer, call, number),
        };
        let reply = if stream {
            let mut body = body;
            let usage_asked =
                request.pointer("/stream_options/include_usage") == Some(&json!(true));
            if format == Format::Chat && !usage_asked {
                body["usage"] = Value::Null;
            }
            Reply::Events(synthesize(format, &body))
        } else {
            Reply::Json(body)
        };
        let content_type = if stream {
            "text/event-stream; charset=utf-8"
        } else {
            "application/json"
        };
        Selected {
            source: "agent".to_owned(),
            status: 200,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            reply,
        }
    }
}

/// Whether the conversation already answers a tool call (`None` when it holds
/// no conversation).
fn has_tool_result(format: Format, request: &Value) -> Option<bool> {
    let items = request.get(format.conversation_field())?.as_array()?;
    Some(match format {
        Format::Anthropic => items.iter().any(|message| {
            message
                .get("content")
                .and_then(Value::as_array)
                .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
        }),
        Format::Responses => items.iter().any(|item| {
            matches!(
                item["type"].as_str(),
                Some("function_call_output" | "custom_tool_call_output")
            )
        }),
        Format::Chat => items.iter().any(|message| message["role"] == "tool"),
    })
}

/// Whether the request declares a tool named `name`.
fn declares(format: Format, request: &Value, name: &str) -> bool {
    let tools = request.get("tools").and_then(Value::as_array);
    tools.into_iter().flatten().any(|tool| {
        let declared = match format {
            Format::Chat => tool.pointer("/function/name"),
            _ => tool.get("name"),
        };
        declared.and_then(Value::as_str) == Some(name)
    })
}

/// A call of the request's shell tool running `command`: `(name, arguments)`.
fn shell_call(format: Format, request: &Value, command: &str) -> Option<(String, Value)> {
    shell_tool_call(format, request, command).or_else(|| exec_call(format, request, command))
}

/// The Codex CLI's default model has no shell tool of its own: its free-form `exec` tool
/// runs JavaScript whose `tools.exec_command` runs a command. As the proxy declares it to
/// a non-Responses upstream (one string property, `input`), a call of it running
/// `command` and returning its output.
fn exec_call(format: Format, request: &Value, command: &str) -> Option<(String, Value)> {
    let tools = request.get("tools")?.as_array()?;
    let is_exec = |tool: &Value| -> Option<bool> {
        let (tool, schema) = match format {
            Format::Anthropic => (tool, tool.get("input_schema")?),
            Format::Chat => (tool.get("function")?, tool.pointer("/function/parameters")?),
            Format::Responses => (tool, tool.get("parameters")?),
        };
        Some(
            tool.get("name")?.as_str()? == "exec"
                && schema.pointer("/properties/input/type")?.as_str()? == "string",
        )
    };
    let declared = tools.iter().any(|tool| is_exec(tool) == Some(true));
    if !declared {
        return None;
    }
    // A JSON string is a JavaScript string literal.
    let script = format!(
        "const result = await tools.exec_command({{cmd: {}}});\ntext(result.output);",
        json!(command)
    );
    Some(("exec".to_owned(), json!({"input": script})))
}

/// A call of the request's shell tool proper (`SHELL_TOOLS`).
fn shell_tool_call(format: Format, request: &Value, command: &str) -> Option<(String, Value)> {
    let tools = request.get("tools")?.as_array()?;
    // Chat Completions nests the declaration in `function`.
    let declaration = |tool: &'_ Value| match format {
        Format::Chat => tool.get("function").cloned().unwrap_or(Value::Null),
        _ => tool.clone(),
    };
    let (tool, name) = SHELL_TOOLS.iter().find_map(|wanted| {
        tools.iter().map(declaration).find_map(|tool| {
            let name = tool.get("name").and_then(Value::as_str)?.to_owned();
            (name == *wanted).then_some((tool, name))
        })
    })?;
    let schema = match format {
        Format::Anthropic => tool.get("input_schema"),
        _ => tool.get("parameters"),
    }
    .and_then(|schema| schema.get("properties"))
    .cloned()
    .unwrap_or_else(|| json!({}));
    let mut arguments = serde_json::Map::new();
    if schema.get("cmd").is_some() {
        arguments.insert("cmd".to_owned(), json!(command));
    } else if schema.pointer("/command/type") == Some(&json!("array")) {
        arguments.insert("command".to_owned(), json!(["bash", "-lc", command]));
    } else {
        arguments.insert("command".to_owned(), json!(command));
    }
    if schema.get("description").is_some() {
        arguments.insert(
            "description".to_owned(),
            json!("Write the proof token to a file"),
        );
    }
    Some((name, Value::Object(arguments)))
}

fn anthropic_body(
    model: &str,
    answer: &str,
    call: Option<(String, Value)>,
    number: usize,
) -> Value {
    let thinking = json!({"type": "thinking", "thinking": "The user wants the proof.", "signature": format!("mock-signature-{number}")});
    let (content, stop_reason) = match call {
        Some((name, input)) => (
            json!([thinking, {"type": "tool_use", "id": format!("toolu_mock_agent_{number}"), "name": name, "input": input}]),
            "tool_use",
        ),
        None => (
            json!([thinking, {"type": "text", "text": answer}]),
            "end_turn",
        ),
    };
    json!({
        "id": format!("msg_mock_agent_{number}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": 42, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    })
}

fn responses_body(
    model: &str,
    answer: &str,
    call: Option<(String, Value)>,
    number: usize,
) -> Value {
    let item = match call {
        Some((name, arguments)) => json!({
            "type": "function_call",
            "id": format!("fc_mock_agent_{number}"),
            "call_id": format!("call_mock_agent_{number}"),
            "name": name,
            "arguments": arguments.to_string(),
            "status": "completed",
        }),
        None => json!({
            "type": "message",
            "id": format!("msg_mock_agent_{number}"),
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": answer, "annotations": []}],
        }),
    };
    json!({
        "id": format!("resp_mock_agent_{number}"),
        "object": "response",
        "created_at": 1_765_000_000,
        "status": "completed",
        "model": model,
        "output": [{
            "type": "reasoning",
            "id": format!("rs_mock_agent_{number}"),
            "summary": [{"type": "summary_text", "text": "The user wants the proof."}],
            "encrypted_content": format!("mock-encrypted-reasoning-{number}"),
        }, item],
        "usage": {
            "input_tokens": 42, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 49,
        },
    })
}

fn chat_body(model: &str, answer: &str, call: Option<(String, Value)>, number: usize) -> Value {
    let (message, finish_reason) = match call {
        Some((name, arguments)) => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_mock_agent_{number}"),
                "type": "function",
                "function": {"name": name, "arguments": arguments.to_string()},
            }]}),
            "tool_calls",
        ),
        None => (json!({"role": "assistant", "content": answer}), "stop"),
    };
    json!({
        "id": format!("chatcmpl-mock-agent-{number}"),
        "object": "chat.completion",
        "created": 1_765_000_000,
        "model": model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(command: Option<&str>) -> Script {
        let body = json!({"answer": "all done", "command": command});
        Script::parse(body.to_string().as_bytes()).unwrap()
    }

    fn json_reply(selected: Selected) -> Value {
        match selected.reply {
            Reply::Json(body) => body,
            Reply::Events(_) => panic!("expected a JSON answer"),
        }
    }

    #[test]
    fn scripts_parse_with_clear_errors() {
        assert_eq!(script(None).command, None);
        assert!(Script::parse(b"{}").unwrap_err().contains("answer"));
        assert!(
            Script::parse(br#"{"answer": "a", "command": 3}"#)
                .unwrap_err()
                .contains("command")
        );
    }

    #[test]
    fn claude_code_gets_a_bash_call_then_the_answer() {
        let agent = script(Some("echo t > f"));
        let tools = json!([{"name": "Read", "input_schema": {}},
            {"name": "Bash", "input_schema": {"properties": {"command": {"type": "string"}, "description": {"type": "string"}}}}]);
        let first =
            json!({"model": "m", "messages": [{"role": "user", "content": "go"}], "tools": tools});
        let body = json_reply(agent.reply(Format::Anthropic, &first, 0));
        assert_eq!(body["stop_reason"], "tool_use");
        assert_eq!(body["content"][0]["type"], "thinking");
        assert_eq!(body["content"][1]["name"], "Bash");
        assert_eq!(body["content"][1]["input"]["command"], "echo t > f");
        assert!(body["content"][1]["input"]["description"].is_string());

        let second = json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "x", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "ok"}]}]});
        let body = json_reply(agent.reply(Format::Anthropic, &second, 1));
        assert_eq!(body["content"][1]["text"], "all done");
    }

    #[test]
    fn codex_gets_an_exec_command_call_shaped_by_its_schema() {
        let agent = script(Some("echo t"));
        let tools = json!([{"type": "function", "name": "exec_command",
            "parameters": {"properties": {"cmd": {"type": "string"}}}}]);
        let request = json!({"model": "m", "input": [], "tools": tools, "stream": true});
        let selected = agent.reply(Format::Responses, &request, 0);
        let Reply::Events(events) = selected.reply else {
            panic!("a streamed request gets a stream")
        };
        let done = events
            .iter()
            .find(|e| e.name.as_deref() == Some("response.function_call_arguments.done"))
            .expect("the call's arguments");
        let data: Value = serde_json::from_str(&done.data).unwrap();
        assert_eq!(data["arguments"], r#"{"cmd":"echo t"}"#);

        let argv = json!([{"type": "function", "name": "shell",
            "parameters": {"properties": {"command": {"type": "array"}}}}]);
        let request = json!({"model": "m", "input": [], "tools": argv});
        let body = json_reply(agent.reply(Format::Responses, &request, 0));
        assert_eq!(
            body["output"][1]["arguments"],
            r#"{"command":["bash","-lc","echo t"]}"#
        );

        let answered = json!({"model": "m", "tools": tools, "input": [
            {"type": "function_call", "call_id": "c", "name": "exec_command", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "t"}]});
        let body = json_reply(agent.reply(Format::Responses, &answered, 1));
        assert_eq!(body["output"][0]["type"], "reasoning");
        assert_eq!(body["output"][1]["content"][0]["text"], "all done");
    }

    #[test]
    fn codex_default_model_exec_tool_gets_javascript_running_the_command() {
        // The Codex CLI's free-form `exec` as the proxy declares it to Anthropic.
        let tools = json!([{"name": "wait", "input_schema": {"type": "object", "properties": {}}},
            {"name": "exec", "input_schema": {"type": "object",
                "properties": {"input": {"type": "string"}}, "required": ["input"]}}]);
        let request =
            json!({"model": "m", "messages": [{"role": "user", "content": "go"}], "tools": tools});
        let body = json_reply(script(Some("echo \"hi\"")).reply(Format::Anthropic, &request, 0));
        let call = &body["content"][1];
        assert_eq!(call["name"], "exec");
        assert_eq!(
            call["input"]["input"],
            "const result = await tools.exec_command({cmd: \"echo \\\"hi\\\"\"});\ntext(result.output);"
        );
        // A real shell tool is still preferred.
        let both = json!({"model": "m", "messages": [], "tools": [tools[1].clone(),
            {"name": "Bash", "input_schema": {"properties": {"command": {"type": "string"}}}}]});
        let body = json_reply(script(Some("ls")).reply(Format::Anthropic, &both, 0));
        assert_eq!(body["content"][1]["name"], "Bash");
    }

    #[test]
    fn a_named_tool_is_called_when_declared() {
        let body =
            json!({"answer": "a", "tool": {"name": "clock__sleep", "input": {"duration_ms": 1}}});
        let script = Script::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(script.describe()["tool"]["name"], "clock__sleep");
        let declared = json!({"model": "m", "messages": [{"role": "user", "content": "go"}],
            "tools": [{"name": "clock__sleep", "input_schema": {}}]});
        let body = json_reply(script.reply(Format::Anthropic, &declared, 0));
        assert_eq!(body["content"][1]["name"], "clock__sleep");
        assert_eq!(body["content"][1]["input"], json!({"duration_ms": 1}));
        let undeclared = json!({"model": "m", "messages": [], "tools": []});
        let body = json_reply(script.reply(Format::Anthropic, &undeclared, 0));
        assert_eq!(body["content"][1]["text"], "a");
        assert!(Script::parse(br#"{"answer": "a", "tool": {"name": "x"}}"#).is_err());
        assert_eq!(
            self::script(None).describe(),
            json!({"answer": "all done", "command": null})
        );
    }

    #[test]
    fn without_a_command_or_a_shell_tool_it_answers_text() {
        let request = json!({"model": "m", "messages": [], "tools": [{"name": "Read"}]});
        let body = json_reply(script(Some("echo")).reply(Format::Anthropic, &request, 0));
        assert_eq!(body["content"][1]["text"], "all done");
        let body = json_reply(script(None).reply(Format::Chat, &json!({"messages": []}), 0));
        assert_eq!(body["choices"][0]["message"]["content"], "all done");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
    }

    /// The data of a Chat stream's chunks, `[DONE]` last.
    fn chat_chunks(selected: Selected) -> Vec<String> {
        assert_eq!(selected.headers[0].1, "text/event-stream; charset=utf-8");
        match selected.reply {
            Reply::Events(events) => events.into_iter().map(|event| event.data).collect(),
            Reply::Json(_) => panic!("a streamed request gets a stream"),
        }
    }

    #[test]
    fn a_chat_client_gets_a_function_call_then_the_answer() {
        let agent = script(Some("echo t > f"));
        // Claude Code's tools as the proxy converts them to Chat.
        let tools = json!([
            {"type": "function", "function": {"name": "Read", "parameters": {}}},
            {"type": "function", "function": {"name": "Bash", "parameters": {"type": "object",
                "properties": {"command": {"type": "string"}, "description": {"type": "string"}}}}}]);
        let first = json!({"model": "m", "tools": tools,
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "go"}]});
        let body = json_reply(agent.reply(Format::Chat, &first, 0));
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "Bash");
        let arguments: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments["command"], "echo t > f");
        assert!(arguments["description"].is_string());

        // Streamed: the call in index/id/name/arguments fragments, a finish
        // reason, no usage unless asked, then [DONE].
        let mut streamed = first.clone();
        streamed["stream"] = json!(true);
        let chunks = chat_chunks(agent.reply(Format::Chat, &streamed, 0));
        assert_eq!(chunks.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = chunks[..chunks.len() - 1]
            .iter()
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        let deltas: Vec<&Value> = chunks
            .iter()
            .filter_map(|chunk| chunk.pointer("/choices/0/delta/tool_calls/0"))
            .collect();
        assert_eq!(deltas[0]["index"], 0);
        assert_eq!(deltas[0]["id"], "call_mock_agent_0");
        assert_eq!(deltas[0]["function"]["name"], "Bash");
        let joined: String = deltas
            .iter()
            .filter_map(|delta| delta["function"]["arguments"].as_str())
            .collect();
        assert_eq!(joined, call["function"]["arguments"].as_str().unwrap());
        assert!(
            chunks
                .iter()
                .any(|chunk| chunk["choices"][0]["finish_reason"] == "tool_calls")
        );
        assert!(chunks.iter().all(|chunk| chunk["usage"].is_null()));
        streamed["stream_options"] = json!({"include_usage": true});
        let chunks = chat_chunks(agent.reply(Format::Chat, &streamed, 0));
        let usage: Value = serde_json::from_str(&chunks[chunks.len() - 2]).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 49);

        // The tool's result back: the final text.
        let answered = json!({"model": "m", "tools": tools, "stream": true, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "Bash", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "t"}]});
        let text: String = chat_chunks(agent.reply(Format::Chat, &answered, 1))
            .iter()
            .filter_map(|data| serde_json::from_str::<Value>(data).ok())
            .filter_map(|chunk| {
                chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "all done");
    }
}
