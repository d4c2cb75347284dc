//! OpenAI Responses to and from the internal representation.

use serde_json::{Value, json};

use super::ir::{self, Block, Part, Role};
use super::tools::{self, ClientTools};
use super::{ConvertError, ErrorKind};
use crate::openai_responses as api;
use crate::{Extra, Format, sse};

/// Fields of a request that refer to state kept by OpenAI's servers: converting them to a
/// stateless format would silently lose the conversation, so they are refused.
const STATEFUL_FIELDS: [&str; 2] = ["previous_response_id", "conversation"];

pub(crate) fn decode_request(
    mut request: api::Request,
    target: Format,
) -> Result<ir::Request, ConvertError> {
    for field in STATEFUL_FIELDS {
        if request
            .extra
            .get(field)
            .is_some_and(|value| !value.is_null())
        {
            return Err(ConvertError::Unsupported {
                path: field.to_owned(),
                what: "server-side conversation state".to_owned(),
                target,
            });
        }
    }
    let mut messages: Vec<ir::Message> = Vec::new();
    let mut tools: Vec<ir::Tool> = Vec::new();
    // Only a request with free-form or namespaced tools fills this (see `tools.rs`).
    let mut client_tools: Option<tools::ClientTools> = None;
    if let Some(instructions) = request.instructions.take().filter(|text| !text.is_empty()) {
        messages.push(ir::Message::new(
            Role::System,
            vec![Part::Text(instructions)],
        ));
    }
    match request.input.take() {
        None => {}
        Some(api::Input::Text(text)) => {
            messages.push(ir::Message::new(Role::User, vec![Part::Text(text)]))
        }
        Some(api::Input::Items(items)) => {
            for (index, item) in items.into_iter().enumerate() {
                // Codex CLI 0.171 with its default model declares its tools in the input
                // (`{"type": "additional_tools", "role": "developer", "tools": [namespaces
                // of function and free-form tools]}`): they join the request's tools.
                let item = match item {
                    api::Item::Other(mut object)
                        if object.get("type").and_then(Value::as_str)
                            == Some("additional_tools") =>
                    {
                        if let Some(Value::Array(declared)) = object.remove("tools") {
                            for tool in declared {
                                if let Ok(tool) = serde_json::from_value(tool) {
                                    tools::decode_tool(tool, None, &mut tools, &mut client_tools);
                                }
                            }
                        }
                        continue;
                    }
                    item => item,
                };
                decode_item(item, index, target, &mut messages)?;
            }
        }
    }
    let declared = request.tools.take().unwrap_or_default();
    tools.reserve(declared.len());
    for tool in declared {
        tools::decode_tool(tool, None, &mut tools, &mut client_tools);
    }
    let tool_choice = request.tool_choice.take().and_then(|choice| match choice {
        api::ToolChoice::Mode(mode) => super::openai_chat::decode_mode(&mode),
        api::ToolChoice::Named(named) if named.kind == "function" || named.kind == "custom" => {
            let namespace = named.extra.get("namespace").and_then(Value::as_str);
            named
                .name
                .map(|name| ir::ToolChoice::Named(tools::flat_name_owned(namespace, name)))
        }
        api::ToolChoice::Named(_) => None,
    });
    let text = request.text.take().unwrap_or_default();
    let openai = ir::OpenAiOptions {
        verbosity: text
            .extra
            .get("verbosity")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..ir::OpenAiOptions::read(&request.extra)
    };
    let response_format = text.format.map(|format| match format.kind.as_str() {
        "json_object" => ir::ResponseFormat::JsonObject,
        "json_schema" => ir::ResponseFormat::JsonSchema {
            name: format.name.unwrap_or_else(|| "output".to_owned()),
            description: format.description,
            schema: format.schema.unwrap_or(Value::Object(Default::default())),
            strict: format.strict,
        },
        _ => ir::ResponseFormat::Text,
    });
    // Internal: clients (and the recorded Codex samples) also send the Chat names.
    let max_tokens = request.max_output_tokens.or_else(|| {
        ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|key| request.extra.get(*key).and_then(Value::as_u64))
    });
    Ok(ir::Request {
        model: request.model,
        messages,
        max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: None,
        stop: Vec::new(),
        stream: request.stream,
        tools,
        tool_choice,
        parallel_tool_calls: request.parallel_tool_calls,
        reasoning: request
            .reasoning
            .filter(|reasoning| reasoning.effort.is_some())
            .map(|reasoning| ir::Reasoning {
                effort: reasoning.effort,
                budget_tokens: None,
            }),
        response_format,
        user: request.user,
        openai,
        client_tools,
    })
}

fn decode_item(
    item: api::Item,
    index: usize,
    target: Format,
    messages: &mut Vec<ir::Message>,
) -> Result<(), ConvertError> {
    // Consecutive assistant-side items (reasoning, assistant messages, function calls) are
    // the output of one model turn: Claude's interleaved thinking gives reasoning, call,
    // reasoning, call. They become one assistant message, so that the outputs that follow
    // answer calls of the same turn. Consecutive outputs likewise form one user turn.
    let push =
        |messages: &mut Vec<ir::Message>, role: Role, parts: Vec<Part>| match messages.last_mut() {
            Some(last)
                if last.role == role
                    && (role == Role::Assistant
                        || matches!(last.parts.last(), Some(Part::ToolResult { .. }))
                            && parts
                                .iter()
                                .all(|part| matches!(part, Part::ToolResult { .. }))) =>
            {
                last.parts.extend(parts)
            }
            _ => messages.push(ir::Message::new(role, parts)),
        };
    match item {
        api::Item::Message(message) => {
            let role = match message.role.as_str() {
                "system" => Role::System,
                "developer" => Role::Developer,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ConvertError::Invalid {
                        format: Format::OpenAiResponses,
                        path: format!("input[{index}].role"),
                        message: format!("unknown role `{other}`"),
                    });
                }
            };
            let parts = match message.content {
                api::MessageContent::Text(text) => vec![Part::Text(text)],
                api::MessageContent::Parts(parts) => parts
                    .into_iter()
                    .enumerate()
                    .map(|(part_index, part)| {
                        decode_part(part).ok_or_else(|| ConvertError::Unsupported {
                            path: format!("input[{index}].content[{part_index}]"),
                            what: "this content part".to_owned(),
                            target,
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            if role == Role::Assistant {
                push(messages, role, parts);
            } else {
                messages.push(ir::Message::new(role, parts));
            }
        }
        api::Item::FunctionCall(call) => {
            // A namespaced tool's call goes by the flat name its declaration got.
            let namespace = call.extra.get("namespace").and_then(Value::as_str);
            let name = tools::flat_name_owned(namespace, call.name);
            push(
                messages,
                Role::Assistant,
                vec![Part::ToolCall {
                    id: call.call_id,
                    name,
                    arguments: call.arguments,
                }],
            )
        }
        api::Item::CustomToolCall(call) => {
            let namespace = call.extra.get("namespace").and_then(Value::as_str);
            let name = tools::flat_name(namespace, &call.name);
            push(
                messages,
                Role::Assistant,
                vec![Part::ToolCall {
                    id: call.call_id,
                    name,
                    arguments: tools::free_form_arguments(&call.input),
                }],
            )
        }
        api::Item::FunctionCallOutput(output) => push(
            messages,
            Role::User,
            vec![Part::ToolResult {
                call_id: output.call_id,
                content: decode_output(output.output),
                is_error: false,
            }],
        ),
        api::Item::CustomToolCallOutput(output) => {
            let content = decode_output(output.output);
            // The Codex CLI's `exec` may report more than once for one call (its
            // `notify()` adds an output while the script runs); the other APIs take one
            // result per call, so a later output joins the earlier one.
            let earlier = messages.last_mut().and_then(|last| {
                last.parts.iter_mut().rev().find_map(|part| match part {
                    Part::ToolResult {
                        call_id,
                        content: earlier,
                        ..
                    } if *call_id == output.call_id => Some(earlier),
                    _ => None,
                })
            });
            match earlier {
                Some(earlier) => earlier.extend(content),
                None => push(
                    messages,
                    Role::User,
                    vec![Part::ToolResult {
                        call_id: output.call_id,
                        content,
                        is_error: false,
                    }],
                ),
            }
        }
        api::Item::Reasoning(reasoning) => {
            let text = reasoning
                .summary
                .iter()
                .map(|part| part.text.as_str())
                .collect::<Vec<_>>()
                .join("\n\n");
            push(
                messages,
                Role::Assistant,
                vec![Part::Reasoning {
                    text,
                    signature: reasoning.encrypted_content.as_deref().map(signature_of),
                }],
            )
        }
        api::Item::Other(object) => {
            return Err(ConvertError::Unsupported {
                path: format!("input[{index}]"),
                what: format!(
                    "item type `{}`",
                    object
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                ),
                target,
            });
        }
    }
    Ok(())
}

/// A tool output: a string, or `input_text` / `input_image` parts.
fn decode_output(output: Value) -> Vec<Part> {
    match output {
        Value::String(text) => vec![Part::Text(text)],
        Value::Array(parts) => parts
            .into_iter()
            .filter_map(|part| serde_json::from_value::<api::ContentPart>(part).ok())
            .filter_map(decode_part)
            .collect(),
        Value::Null => Vec::new(),
        other => vec![Part::Text(other.to_string())],
    }
}

fn decode_part(part: api::ContentPart) -> Option<Part> {
    Some(match part {
        api::ContentPart::InputText(text) => Part::Text(text.text),
        api::ContentPart::OutputText(text) => Part::Text(text.text),
        api::ContentPart::Refusal(refusal) => Part::Text(refusal.refusal),
        api::ContentPart::InputImage(image) => {
            Part::Image(match (image.image_url, image.file_id) {
                (Some(url), _) => ir::Media::from_url(&url),
                (None, Some(id)) => ir::Media::FileId(id),
                (None, None) => return None,
            })
        }
        api::ContentPart::InputFile(file) => Part::File {
            media: match (file.file_data, file.file_id) {
                (Some(data), _) => ir::Media::from_url(&data),
                (None, Some(id)) => ir::Media::FileId(id),
                (None, None) => return None,
            },
            filename: file.filename,
        },
        api::ContentPart::Other(_) => return None,
    })
}

pub(crate) fn encode_request(request: ir::Request) -> api::Request {
    let mut instructions: Vec<String> = Vec::new();
    let mut items: Vec<api::Item> = Vec::new();
    // Internal: call ids sent so far; a result answering none of them is refused
    // by the Codex backend ("No tool call found for function call output").
    let mut calls: std::collections::HashSet<String> = std::collections::HashSet::new();
    for message in request.messages {
        match message.role {
            // Internal: the Codex backend rejects system messages in `input` (#53).
            Role::System | Role::Developer => {
                let text = ir::joined_text(&message.parts, "\n");
                if !text.is_empty() {
                    instructions.push(text);
                }
            }
            Role::User | Role::Assistant => {
                let assistant = message.role == Role::Assistant;
                let mut pending: Vec<api::ContentPart> = Vec::new();
                for part in message.parts {
                    match part {
                        Part::ToolCall {
                            id,
                            name,
                            arguments,
                        } => {
                            flush(&mut pending, assistant, &mut items);
                            let call_id = ir::openai_call_id(&id);
                            calls.insert(call_id.clone());
                            items.push(api::Item::FunctionCall(api::FunctionCallItem {
                                id: None,
                                call_id,
                                name,
                                arguments,
                                status: None,
                                extra: Extra::new(),
                            }));
                        }
                        Part::ToolResult {
                            call_id, content, ..
                        } if !calls.contains(&ir::openai_call_id(&call_id)) => {
                            let text = ir::orphan_result_text(&call_id, &content);
                            pending.extend(encode_part(Part::Text(text), assistant));
                        }
                        Part::ToolResult {
                            call_id,
                            content,
                            is_error,
                        } => {
                            flush(&mut pending, assistant, &mut items);
                            items.push(api::Item::FunctionCallOutput(
                                api::FunctionCallOutputItem {
                                    call_id: ir::openai_call_id(&call_id),
                                    output: Value::String(ir::tool_output_text(&content, is_error)),
                                    extra: Extra::new(),
                                },
                            ));
                        }
                        Part::Reasoning {
                            text,
                            signature: Some(signature),
                        } if assistant && encrypted_for_openai(&signature).is_some() => {
                            // OpenAI's own encrypted reasoning, back where it came from
                            // (without its id: with `store: false` none is kept upstream).
                            flush(&mut pending, assistant, &mut items);
                            let mut item = reasoning_item(String::new(), text, None);
                            if let api::Item::Reasoning(reasoning) = &mut item {
                                reasoning.id = None;
                                reasoning.encrypted_content = encrypted_for_openai(&signature);
                            }
                            items.push(item);
                        }
                        other => pending.extend(encode_part(other, assistant)),
                    }
                }
                flush(&mut pending, assistant, &mut items);
            }
        }
    }
    let has_tools = !request.tools.is_empty();
    let mut extra = Extra::new();
    request.openai.write(&mut extra);
    let reasoning = request.reasoning.as_ref().map(|reasoning| api::Reasoning {
        effort: Some(reasoning.effort()),
        summary: (!reasoning.is_off()).then(|| "auto".to_owned()),
        extra: Extra::new(),
    });
    api::Request {
        model: request.model,
        input: Some(api::Input::Items(items)),
        instructions: (!instructions.is_empty()).then(|| instructions.join("\n\n")),
        max_output_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        stream: request.stream,
        tools: (!request.tools.is_empty()).then(|| {
            request
                .tools
                .into_iter()
                .map(|tool| api::Tool {
                    kind: "function".to_owned(),
                    name: Some(tool.name),
                    description: tool.description,
                    parameters: Some(tool.parameters),
                    // Internal: Responses defaults to strict, which rejects most schemas
                    // written for other APIs (optional fields, no additionalProperties).
                    strict: Some(tool.strict.unwrap_or(false)),
                    extra: Extra::new(),
                })
                .collect()
        }),
        // OpenAI rejects tool_choice and parallel_tool_calls without tools.
        tool_choice: request
            .tool_choice
            .filter(|_| has_tools)
            .map(|choice| match choice {
                ir::ToolChoice::Auto => api::ToolChoice::Mode("auto".to_owned()),
                ir::ToolChoice::None => api::ToolChoice::Mode("none".to_owned()),
                ir::ToolChoice::Required => api::ToolChoice::Mode("required".to_owned()),
                ir::ToolChoice::Named(name) => api::ToolChoice::Named(api::NamedToolChoice {
                    kind: "function".to_owned(),
                    name: Some(name),
                    extra: Extra::new(),
                }),
            }),
        parallel_tool_calls: request.parallel_tool_calls.filter(|_| has_tools),
        reasoning,
        text: (request.response_format.is_some() || request.openai.verbosity.is_some()).then(
            || api::TextConfig {
                format: request.response_format.map(|format| match format {
                    ir::ResponseFormat::Text => text_format("text"),
                    ir::ResponseFormat::JsonObject => text_format("json_object"),
                    ir::ResponseFormat::JsonSchema {
                        name,
                        description,
                        schema,
                        strict,
                    } => api::TextFormat {
                        name: Some(name),
                        description,
                        schema: Some(schema),
                        strict,
                        ..text_format("json_schema")
                    },
                }),
                extra: request
                    .openai
                    .verbosity
                    .clone()
                    .map(|verbosity| {
                        Extra::from_iter([("verbosity".to_owned(), Value::String(verbosity))])
                    })
                    .unwrap_or_default(),
            },
        ),
        user: request.user,
        extra,
    }
}

fn text_format(kind: &str) -> api::TextFormat {
    api::TextFormat {
        kind: kind.to_owned(),
        name: None,
        description: None,
        schema: None,
        strict: None,
        extra: Extra::new(),
    }
}

fn flush(pending: &mut Vec<api::ContentPart>, assistant: bool, items: &mut Vec<api::Item>) {
    if pending.is_empty() {
        return;
    }
    items.push(api::Item::Message(api::MessageItem {
        id: None,
        role: if assistant { "assistant" } else { "user" }.to_owned(),
        content: api::MessageContent::Parts(std::mem::take(pending)),
        status: None,
        extra: Extra::new(),
    }));
}

/// A content part; reasoning has no input form without OpenAI's encrypted content.
fn encode_part(part: Part, assistant: bool) -> Option<api::ContentPart> {
    match part {
        Part::Text(text) if assistant => Some(output_text(text)),
        Part::Text(text) => Some(api::ContentPart::InputText(api::TextPart {
            text,
            extra: Extra::new(),
        })),
        Part::Image(media) => {
            let (image_url, file_id) = match media {
                ir::Media::FileId(id) => (None, Some(id)),
                other => (other.to_url(), None),
            };
            Some(api::ContentPart::InputImage(api::InputImagePart {
                image_url,
                file_id,
                detail: Some("auto".to_owned()),
                extra: Extra::new(),
            }))
        }
        Part::File { media, filename } => {
            let (file_data, file_id, file_url) = match media {
                ir::Media::FileId(id) => (None, Some(id), None),
                ir::Media::Url(url) => (None, None, Some(url)),
                base64 => (base64.to_url(), None, None),
            };
            let mut extra = Extra::new();
            if let Some(url) = file_url {
                extra.insert("file_url".to_owned(), Value::String(url));
            }
            Some(api::ContentPart::InputFile(api::InputFilePart {
                file_data,
                file_id,
                filename,
                extra,
            }))
        }
        _ => None,
    }
}

fn output_text(text: String) -> api::ContentPart {
    api::ContentPart::OutputText(api::OutputTextPart {
        text,
        annotations: Vec::new(),
        extra: Extra::new(),
    })
}

pub(crate) fn decode_usage(usage: &api::Usage) -> ir::Usage {
    ir::Usage {
        input: usage.input_tokens,
        output: usage.output_tokens,
        cache_read: usage
            .input_tokens_details
            .as_ref()
            .map_or(0, |details| details.cached_tokens),
        cache_creation: usage
            .extra
            .get("cache_creation_input_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        reasoning: usage
            .output_tokens_details
            .as_ref()
            .map_or(0, |details| details.reasoning_tokens),
    }
}

fn encode_usage(usage: &ir::Usage) -> api::Usage {
    let mut extra = Extra::new();
    if usage.cache_creation > 0 {
        extra.insert(
            "cache_creation_input_tokens".to_owned(),
            Value::from(usage.cache_creation),
        );
    }
    api::Usage {
        input_tokens: usage.input,
        output_tokens: usage.output,
        total_tokens: usage.input + usage.output,
        input_tokens_details: Some(api::InputTokensDetails {
            cached_tokens: usage.cache_read,
            extra: Extra::new(),
        }),
        output_tokens_details: Some(api::OutputTokensDetails {
            reasoning_tokens: usage.reasoning,
            extra: Extra::new(),
        }),
        extra,
    }
}

fn stop_of(status: Option<&str>, incomplete: Option<&api::IncompleteDetails>) -> ir::Stop {
    ir::Stop {
        reason: match status {
            Some("incomplete") => ir::StopReason::from_responses_incomplete(
                incomplete.and_then(|details| details.reason.as_deref()),
            ),
            _ => ir::StopReason::EndTurn,
        },
        sequence: None,
    }
}

pub(crate) fn decode_response(response: api::Response) -> ir::Response {
    let mut parts = Vec::new();
    for item in response.output {
        match item {
            api::Item::Message(message) => match message.content {
                api::MessageContent::Text(text) => parts.push(Part::Text(text)),
                api::MessageContent::Parts(content) => {
                    for part in content {
                        match part {
                            api::ContentPart::OutputText(text) => parts.push(Part::Text(text.text)),
                            api::ContentPart::Refusal(refusal) => {
                                parts.push(Part::Text(refusal.refusal))
                            }
                            _ => {}
                        }
                    }
                }
            },
            api::Item::FunctionCall(call) => parts.push(Part::ToolCall {
                id: call.call_id,
                name: call.name,
                arguments: call.arguments,
            }),
            api::Item::Reasoning(reasoning)
                if !reasoning.summary.is_empty() || reasoning.encrypted_content.is_some() =>
            {
                parts.push(Part::Reasoning {
                    text: reasoning
                        .summary
                        .iter()
                        .map(|part| part.text.as_str())
                        .collect::<Vec<_>>()
                        .join("\n\n"),
                    signature: reasoning.encrypted_content.as_deref().map(signature_of),
                })
            }
            // Built-in tool calls ran on OpenAI's side; empty reasoning says nothing.
            _ => {}
        }
    }
    ir::Response {
        id: response.id,
        model: response.model,
        created: response.created_at,
        parts,
        stop: stop_of(
            response.status.as_deref(),
            response.incomplete_details.as_ref(),
        ),
        usage: response
            .usage
            .as_ref()
            .map(decode_usage)
            .unwrap_or_default(),
    }
}

fn item_id(prefix: &str, response_id: &str, index: usize) -> String {
    let base = response_id
        .split_once('_')
        .map_or(response_id, |(_, rest)| rest);
    format!("{prefix}_{base}{index:02}")
}

/// The fields every response object carries, so strict clients find them.
fn response_defaults() -> Extra {
    let mut extra = Extra::new();
    for (key, value) in [
        ("instructions", Value::Null),
        ("metadata", json!({})),
        ("parallel_tool_calls", Value::Bool(true)),
        ("tool_choice", Value::from("auto")),
        ("tools", json!([])),
        ("temperature", Value::Null),
        ("top_p", Value::Null),
    ] {
        extra.insert(key.to_owned(), value);
    }
    extra
}

pub(crate) fn encode_response(
    response: ir::Response,
    tools: Option<&ClientTools>,
) -> api::Response {
    let stop = response.effective_stop();
    let incomplete = stop.responses_incomplete();
    let mut output: Vec<api::Item> = Vec::new();
    let mut pending_text: Option<String> = None;
    let id = response.id;
    let flush_text = |pending: &mut Option<String>, output: &mut Vec<api::Item>| {
        if let Some(text) = pending.take() {
            let index = output.len();
            output.push(message_item(item_id("msg", &id, index), text, "completed"));
        }
    };
    for part in response.parts {
        match part {
            Part::Text(text) => pending_text.get_or_insert_with(String::new).push_str(&text),
            Part::ToolCall {
                id: call_id,
                name,
                arguments,
            } => {
                flush_text(&mut pending_text, &mut output);
                let index = output.len();
                let client = tools.and_then(|tools| tools.find(&name));
                output.push(call_item(
                    &id,
                    index,
                    ir::openai_call_id(&call_id),
                    name,
                    arguments,
                    client,
                    "completed",
                ));
            }
            Part::Reasoning { text, signature } => {
                flush_text(&mut pending_text, &mut output);
                let index = output.len();
                output.push(reasoning_item(
                    item_id("rs", &id, index),
                    text,
                    signature.as_deref(),
                ));
            }
            _ => {}
        }
    }
    flush_text(&mut pending_text, &mut output);
    api::Response {
        id: id.clone(),
        object: "response".to_owned(),
        created_at: Some(response.created.unwrap_or_else(super::stream::unix_now)),
        status: Some(
            if incomplete.is_some() {
                "incomplete"
            } else {
                "completed"
            }
            .to_owned(),
        ),
        model: response.model,
        output,
        usage: Some(encode_usage(&response.usage)),
        error: None,
        incomplete_details: incomplete.map(|reason| api::IncompleteDetails {
            reason: Some(reason.to_owned()),
            extra: Extra::new(),
        }),
        extra: response_defaults(),
    }
}

/// The output item of a tool call: a `function_call`, or, for a tool the client declared
/// free-form or in a namespace (`client`), the item it expects: a `custom_tool_call` with
/// the raw input, or a `function_call` with its own name and `namespace`.
fn call_item(
    response_id: &str,
    index: usize,
    call_id: String,
    name: String,
    arguments: String,
    client: Option<&tools::ClientTool>,
    status: &str,
) -> api::Item {
    let namespace = |client: &tools::ClientTool| {
        let mut extra = Extra::new();
        if let Some(namespace) = &client.namespace {
            extra.insert("namespace".to_owned(), Value::String(namespace.clone()));
        }
        extra
    };
    match client {
        Some(client) if client.free_form => api::Item::CustomToolCall(api::CustomToolCallItem {
            id: Some(item_id("ctc", response_id, index)),
            call_id,
            name: client.name.clone(),
            input: if status == "in_progress" {
                String::new()
            } else {
                tools::free_form_input(&arguments)
            },
            status: Some(status.to_owned()),
            extra: namespace(client),
        }),
        _ => api::Item::FunctionCall(api::FunctionCallItem {
            id: Some(item_id("fc", response_id, index)),
            call_id,
            name: client.map_or(name, |client| client.name.clone()),
            arguments,
            status: Some(status.to_owned()),
            extra: client.map(namespace).unwrap_or_default(),
        }),
    }
}

fn message_item(id: String, text: String, status: &str) -> api::Item {
    api::Item::Message(api::MessageItem {
        id: Some(id),
        role: "assistant".to_owned(),
        content: api::MessageContent::Parts(if status == "in_progress" {
            Vec::new()
        } else {
            vec![output_text(text)]
        }),
        status: Some(status.to_owned()),
        extra: Extra::new(),
    })
}

/// A reasoning item for a Responses client; `signature` (internal) becomes its
/// `encrypted_content`, which the client sends back.
fn reasoning_item(id: String, text: String, signature: Option<&str>) -> api::Item {
    api::Item::Reasoning(api::ReasoningItem {
        id: Some(id),
        summary: if text.is_empty() {
            Vec::new()
        } else {
            vec![summary_part(text)]
        },
        encrypted_content: signature.map(encrypted_for_client),
        extra: Extra::new(),
    })
}

/// Reasoning a provider encrypts (OpenAI's `encrypted_content`) or signs (Anthropic's
/// thinking `signature`) rides through the other format to the client, which sends it
/// back with the next turn: OpenAI's in an Anthropic `signature` behind this tag,
/// Anthropic's in an `encrypted_content` behind [`ANTHROPIC_SIGNATURE`]. Internally a
/// signature is Anthropic's as it is, OpenAI's with this tag; each provider is only ever
/// sent its own.
pub(crate) const OPENAI_REASONING: &str = "ccproxy-openai-reasoning:";

/// An Anthropic signature inside a Responses `encrypted_content` (see [`OPENAI_REASONING`]).
pub(crate) const ANTHROPIC_SIGNATURE: &str = "ccproxy-anthropic-signature:";

/// The internal signature of a Responses `encrypted_content`.
fn signature_of(encrypted: &str) -> String {
    match encrypted.strip_prefix(ANTHROPIC_SIGNATURE) {
        Some(signature) => signature.to_owned(),
        None => format!("{OPENAI_REASONING}{encrypted}"),
    }
}

/// The `encrypted_content` a Responses client keeps for an internal signature.
fn encrypted_for_client(signature: &str) -> String {
    match signature.strip_prefix(OPENAI_REASONING) {
        Some(encrypted) => encrypted.to_owned(),
        None => format!("{ANTHROPIC_SIGNATURE}{signature}"),
    }
}

/// The `encrypted_content` for OpenAI, when the internal signature is OpenAI's.
fn encrypted_for_openai(signature: &str) -> Option<String> {
    signature.strip_prefix(OPENAI_REASONING).map(str::to_owned)
}

fn summary_part(text: String) -> api::SummaryPart {
    api::SummaryPart {
        kind: "summary_text".to_owned(),
        text,
        extra: Extra::new(),
    }
}

/// Responses events to internal events.
#[derive(Debug, Default)]
pub(crate) struct StreamDecoder {
    current: Option<Current>,
    /// The output index of the last block opened, to tell whether an item arriving whole
    /// in `output_item.done` was streamed already.
    last_opened: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    Text {
        output_index: usize,
    },
    Reasoning {
        output_index: usize,
        summary_index: usize,
    },
    Tool {
        output_index: usize,
        args_seen: bool,
    },
}

impl StreamDecoder {
    fn close(&mut self, out: &mut Vec<ir::Event>) {
        if self.current.take().is_some() {
            out.push(ir::Event::BlockStop);
        }
    }

    fn open(&mut self, current: Current, block: Block, out: &mut Vec<ir::Event>) {
        self.close(out);
        self.last_opened = Some(match current {
            Current::Text { output_index }
            | Current::Reasoning { output_index, .. }
            | Current::Tool { output_index, .. } => output_index,
        });
        self.current = Some(current);
        out.push(ir::Event::BlockStart(block));
    }

    fn ensure_text(&mut self, output_index: usize, out: &mut Vec<ir::Event>) {
        if !matches!(self.current, Some(Current::Text { .. })) {
            self.open(Current::Text { output_index }, Block::Text, out);
        }
    }

    fn ensure_reasoning(
        &mut self,
        output_index: usize,
        summary_index: usize,
        out: &mut Vec<ir::Event>,
    ) {
        match self.current {
            Some(Current::Reasoning {
                output_index: open_index,
                summary_index: open_summary,
            }) if open_index == output_index => {
                if open_summary != summary_index {
                    // A new summary part of the same reasoning continues the block.
                    out.push(ir::Event::Reasoning("\n\n".to_owned()));
                    self.current = Some(Current::Reasoning {
                        output_index,
                        summary_index,
                    });
                }
            }
            _ => self.open(
                Current::Reasoning {
                    output_index,
                    summary_index,
                },
                Block::Reasoning,
                out,
            ),
        }
    }

    pub(crate) fn push(&mut self, event: &sse::Event, out: &mut Vec<ir::Event>) {
        let Ok(event) = api::StreamEvent::parse(event) else {
            return;
        };
        match event {
            api::StreamEvent::Created(event) | api::StreamEvent::InProgress(event) => {
                out.push(ir::Event::Start {
                    id: event.response.id,
                    model: event.response.model,
                    created: event.response.created_at,
                    usage: ir::Usage::default(),
                })
            }
            api::StreamEvent::OutputItemAdded(event) => {
                if let api::Item::FunctionCall(call) = event.item {
                    self.open(
                        Current::Tool {
                            output_index: event.output_index,
                            args_seen: !call.arguments.is_empty(),
                        },
                        Block::ToolCall {
                            id: call.call_id,
                            name: call.name,
                        },
                        out,
                    );
                    if !call.arguments.is_empty() {
                        out.push(ir::Event::ToolArgs(call.arguments));
                    }
                }
            }
            api::StreamEvent::ContentPartAdded(event) => {
                self.open(
                    Current::Text {
                        output_index: event.output_index,
                    },
                    Block::Text,
                    out,
                );
            }
            api::StreamEvent::OutputTextDelta(delta) | api::StreamEvent::RefusalDelta(delta)
                if !delta.delta.is_empty() =>
            {
                self.ensure_text(delta.output_index, out);
                out.push(ir::Event::Text(delta.delta));
            }
            api::StreamEvent::ContentPartDone(_) => {
                if matches!(self.current, Some(Current::Text { .. })) {
                    self.close(out);
                }
            }
            api::StreamEvent::FunctionCallArgumentsDelta(delta) => {
                if let Some(Current::Tool { args_seen, .. }) = &mut self.current {
                    *args_seen = true;
                    if !delta.delta.is_empty() {
                        out.push(ir::Event::ToolArgs(delta.delta));
                    }
                }
            }
            api::StreamEvent::FunctionCallArgumentsDone(done) => {
                if let Some(Current::Tool { args_seen, .. }) = &mut self.current
                    && !*args_seen
                    && !done.arguments.is_empty()
                {
                    *args_seen = true;
                    out.push(ir::Event::ToolArgs(done.arguments));
                }
            }
            api::StreamEvent::ReasoningSummaryPartAdded(event) => {
                self.ensure_reasoning(event.output_index, event.summary_index, out);
            }
            api::StreamEvent::ReasoningSummaryTextDelta(delta)
            | api::StreamEvent::ReasoningTextDelta(delta)
                if !delta.delta.is_empty() =>
            {
                self.ensure_reasoning(delta.output_index, delta.summary_index.unwrap_or(0), out);
                out.push(ir::Event::Reasoning(delta.delta));
            }
            api::StreamEvent::OutputItemDone(event) => {
                self.item_done(event.output_index, event.item, out)
            }
            api::StreamEvent::Completed(event) | api::StreamEvent::Incomplete(event) => {
                self.close(out);
                let response = event.response;
                out.push(ir::Event::Finish {
                    stop: stop_of(
                        response.status.as_deref(),
                        response.incomplete_details.as_ref(),
                    ),
                    usage: response
                        .usage
                        .as_ref()
                        .map(decode_usage)
                        .unwrap_or_default(),
                });
            }
            api::StreamEvent::Failed(event) => {
                let error = event.response.error;
                out.push(ir::Event::Error {
                    kind: error
                        .as_ref()
                        .and_then(|error| error.code.as_deref())
                        .and_then(ErrorKind::from_type)
                        .unwrap_or(ErrorKind::Api),
                    message: error
                        .map_or_else(|| "the response failed".to_owned(), |error| error.message),
                });
            }
            api::StreamEvent::Error(error) => {
                // Internal: the documented shape has the fields at the top level, the live
                // API nests them in `error`; either may come.
                let nested = error.error.as_ref();
                let kind = error
                    .code
                    .as_deref()
                    .or_else(|| nested.and_then(|detail| detail.code.as_ref()?.as_str()))
                    .and_then(ErrorKind::from_type)
                    .or_else(|| {
                        nested
                            .and_then(|detail| detail.kind.as_deref())
                            .and_then(ErrorKind::from_type)
                    })
                    .unwrap_or(ErrorKind::Api);
                let message = Some(error.message)
                    .filter(|message| !message.is_empty())
                    .or_else(|| {
                        nested
                            .map(|detail| detail.message.clone())
                            .filter(|message| !message.is_empty())
                    })
                    .unwrap_or_else(|| "the upstream stream failed".to_owned());
                out.push(ir::Event::Error { kind, message })
            }
            _ => {}
        }
    }

    fn item_done(&mut self, output_index: usize, item: api::Item, out: &mut Vec<ir::Event>) {
        let streamed = self.last_opened == Some(output_index);
        match item {
            api::Item::FunctionCall(call) => {
                if !streamed {
                    self.open(
                        Current::Tool {
                            output_index,
                            args_seen: false,
                        },
                        Block::ToolCall {
                            id: call.call_id,
                            name: call.name,
                        },
                        out,
                    );
                }
                if let Some(Current::Tool { args_seen, .. }) = self.current
                    && !args_seen
                    && !call.arguments.is_empty()
                {
                    out.push(ir::Event::ToolArgs(call.arguments));
                }
                self.close(out);
            }
            api::Item::Message(message) if !streamed => {
                let decoded = decode_response(api::Response {
                    output: vec![api::Item::Message(message)],
                    ..empty_response()
                });
                let text = ir::joined_text(&decoded.parts, "");
                if !text.is_empty() {
                    self.open(Current::Text { output_index }, Block::Text, out);
                    out.push(ir::Event::Text(text));
                }
                self.close(out);
            }
            api::Item::Reasoning(reasoning) => {
                let signature = reasoning.encrypted_content.as_deref().map(signature_of);
                if !streamed {
                    let text = reasoning
                        .summary
                        .iter()
                        .map(|part| part.text.as_str())
                        .collect::<Vec<_>>()
                        .join("\n\n");
                    if !text.is_empty() || signature.is_some() {
                        self.open(
                            Current::Reasoning {
                                output_index,
                                summary_index: 0,
                            },
                            Block::Reasoning,
                            out,
                        );
                    }
                    if !text.is_empty() {
                        out.push(ir::Event::Reasoning(text));
                    }
                }
                if let (Some(signature), Some(Current::Reasoning { .. })) =
                    (signature, self.current)
                {
                    out.push(ir::Event::Signature(signature));
                }
                self.close(out);
            }
            _ => self.close(out),
        }
    }
}

/// The `error` stream event: OpenAI's documented fields (`type`, `code`, `message`,
/// `param`, `sequence_number`) and the same error nested in `error`, as the live API sends
/// it and the openai Python SDK reads it.
pub(crate) fn error_event(
    kind: ErrorKind,
    message: &str,
    sequence_number: u64,
) -> api::StreamEvent {
    api::StreamEvent::Error(api::StreamError {
        code: Some(kind.openai_code().unwrap_or(kind.openai_type()).to_owned()),
        message: message.to_owned(),
        param: None,
        sequence_number,
        error: Some(api::ErrorDetail {
            message: message.to_owned(),
            kind: Some(kind.openai_type().to_owned()),
            param: None,
            code: Some(Value::from(
                kind.openai_code().unwrap_or(kind.openai_type()),
            )),
            extra: Extra::new(),
        }),
        extra: Extra::new(),
    })
}

fn empty_response() -> api::Response {
    api::Response {
        id: String::new(),
        object: "response".to_owned(),
        created_at: None,
        status: None,
        model: String::new(),
        output: Vec::new(),
        usage: None,
        error: None,
        incomplete_details: None,
        extra: Extra::new(),
    }
}

/// Internal events to Responses events.
///
/// Unlike the other encoders this one keeps the finished output items: the format repeats
/// them in `response.completed`, and the text of the current part in its `.done` events.
#[derive(Debug, Default)]
pub(crate) struct StreamEncoder {
    model_override: Option<String>,
    sequence_number: u64,
    response: Option<api::Response>,
    current: Option<OpenItem>,
    saw_tool_call: bool,
    /// The client's free-form and namespaced tools, when the request had some.
    tools: Option<ClientTools>,
}

#[derive(Debug)]
struct OpenItem {
    block: Block,
    item_id: String,
    output_index: usize,
    /// The text, reasoning or arguments so far.
    text: String,
    /// The reasoning's signature (internal), for its `encrypted_content`.
    signature: Option<String>,
    /// For a call of a tool the client declared free-form or in a namespace: that tool.
    client: Option<tools::ClientTool>,
}

impl StreamEncoder {
    pub(crate) fn new(model: Option<String>) -> Self {
        StreamEncoder {
            model_override: model,
            ..StreamEncoder::default()
        }
    }

    /// Restores calls of the client's free-form and namespaced tools (see `tools.rs`).
    pub(crate) fn set_tools(&mut self, tools: ClientTools) {
        self.tools = Some(tools);
    }

    /// The client tools, taken out (for a converter rebuilt with another model).
    pub(crate) fn take_tools(&mut self) -> Option<ClientTools> {
        self.tools.take()
    }

    fn emit(&mut self, event: api::StreamEvent, out: &mut Vec<sse::Event>) {
        out.push(event.to_sse());
        self.sequence_number += 1;
    }

    fn response_event(&self, status: &str) -> api::ResponseEvent {
        let mut response = self.response.clone().unwrap_or_else(empty_response);
        response.status = Some(status.to_owned());
        api::ResponseEvent {
            response,
            sequence_number: self.sequence_number,
            extra: Extra::new(),
        }
    }

    fn text_delta(&self, open: &OpenItem, delta: String, summary: bool) -> api::TextDeltaEvent {
        let mut extra = Extra::new();
        if !summary {
            extra.insert("logprobs".to_owned(), json!([]));
        }
        api::TextDeltaEvent {
            item_id: open.item_id.clone(),
            output_index: open.output_index,
            content_index: (!summary && open.block == Block::Text).then_some(0),
            summary_index: summary.then_some(0),
            delta,
            sequence_number: self.sequence_number,
            extra,
        }
    }

    pub(crate) fn push(&mut self, event: ir::Event, out: &mut Vec<sse::Event>) {
        match event {
            ir::Event::Start {
                id, model, created, ..
            } => {
                let mut response = empty_response();
                response.id = id;
                response.model = self.model_override.clone().unwrap_or(model);
                response.created_at = Some(created.unwrap_or_else(super::stream::unix_now));
                response.extra = response_defaults();
                self.response = Some(response);
                let created = self.response_event("in_progress");
                self.emit(api::StreamEvent::Created(created), out);
                let in_progress = self.response_event("in_progress");
                self.emit(api::StreamEvent::InProgress(in_progress), out);
            }
            ir::Event::BlockStart(block) => self.start_item(block, out),
            ir::Event::Text(text) | ir::Event::Reasoning(text) | ir::Event::ToolArgs(text) => {
                let Some(mut open) = self.current.take() else {
                    return;
                };
                if open.client.as_ref().is_some_and(|client| client.free_form) {
                    // The arguments are JSON around the raw input: the input is sent
                    // whole when the call is complete.
                    open.text.push_str(&text);
                    self.current = Some(open);
                    return;
                }
                let event = match open.block {
                    Block::Text => api::StreamEvent::OutputTextDelta(self.text_delta(
                        &open,
                        text.clone(),
                        false,
                    )),
                    Block::Reasoning => api::StreamEvent::ReasoningSummaryTextDelta(
                        self.text_delta(&open, text.clone(), true),
                    ),
                    Block::ToolCall { .. } => {
                        let mut delta = self.text_delta(&open, text.clone(), true);
                        delta.summary_index = None;
                        api::StreamEvent::FunctionCallArgumentsDelta(delta)
                    }
                };
                open.text.push_str(&text);
                self.current = Some(open);
                self.emit(event, out);
            }
            ir::Event::Signature(signature) => {
                if let Some(open) = &mut self.current
                    && open.block == Block::Reasoning
                {
                    open.signature
                        .get_or_insert_with(String::new)
                        .push_str(&signature);
                }
            }
            ir::Event::BlockStop => self.finish_item(out),
            ir::Event::Finish { stop, usage } => {
                let reason = if stop.reason == ir::StopReason::EndTurn && self.saw_tool_call {
                    ir::StopReason::ToolUse
                } else {
                    stop.reason
                };
                let incomplete = reason.responses_incomplete();
                if let Some(response) = &mut self.response {
                    response.usage = Some(encode_usage(&usage));
                    response.incomplete_details = incomplete.map(|reason| api::IncompleteDetails {
                        reason: Some(reason.to_owned()),
                        extra: Extra::new(),
                    });
                }
                let event = if incomplete.is_some() {
                    api::StreamEvent::Incomplete(self.response_event("incomplete"))
                } else {
                    api::StreamEvent::Completed(self.response_event("completed"))
                };
                self.emit(event, out);
            }
            ir::Event::Error { kind, message } => {
                // Internal: the item being streamed is closed with what it has, so the
                // client's view of the output stays consistent with `response.failed`.
                self.finish_item(out);
                // The `error` event is what SDKs surface (the openai Python SDK raises on
                // it); `response.failed` then ends the lifecycle for clients that wait for
                // a terminal response event (Codex).
                let error = error_event(kind, &message, self.sequence_number);
                self.emit(error, out);
                if let Some(response) = &mut self.response {
                    response.error = Some(api::ResponseError {
                        code: Some(kind.openai_code().unwrap_or(kind.openai_type()).to_owned()),
                        message,
                        extra: Extra::new(),
                    });
                }
                let failed = self.response_event("failed");
                self.emit(api::StreamEvent::Failed(failed), out);
            }
        }
    }

    fn start_item(&mut self, block: Block, out: &mut Vec<sse::Event>) {
        let response_id = self
            .response
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_default();
        let output_index = self.response.as_ref().map_or(0, |r| r.output.len());
        let mut client = None;
        let (item, item_id) = match &block {
            Block::Text => {
                let item_id = item_id("msg", &response_id, output_index);
                (
                    message_item(item_id.clone(), String::new(), "in_progress"),
                    item_id,
                )
            }
            Block::Reasoning => {
                let item_id = item_id("rs", &response_id, output_index);
                (
                    reasoning_item(item_id.clone(), String::new(), None),
                    item_id,
                )
            }
            Block::ToolCall { id, name } => {
                self.saw_tool_call = true;
                client = self
                    .tools
                    .as_ref()
                    .and_then(|tools| tools.find(name))
                    .cloned();
                let item = call_item(
                    &response_id,
                    output_index,
                    ir::openai_call_id(id),
                    name.clone(),
                    String::new(),
                    client.as_ref(),
                    "in_progress",
                );
                let item_id = match &item {
                    api::Item::CustomToolCall(call) => call.id.clone(),
                    api::Item::FunctionCall(call) => call.id.clone(),
                    _ => None,
                }
                .unwrap_or_default();
                (item, item_id)
            }
        };
        let added = api::StreamEvent::OutputItemAdded(api::OutputItemEvent {
            output_index,
            item,
            sequence_number: self.sequence_number,
            extra: Extra::new(),
        });
        self.emit(added, out);
        match &block {
            Block::Text => {
                let part = api::StreamEvent::ContentPartAdded(api::ContentPartEvent {
                    item_id: item_id.clone(),
                    output_index,
                    content_index: 0,
                    part: output_text(String::new()),
                    sequence_number: self.sequence_number,
                    extra: Extra::new(),
                });
                self.emit(part, out);
            }
            Block::Reasoning => {
                let part = api::StreamEvent::ReasoningSummaryPartAdded(api::SummaryPartEvent {
                    item_id: item_id.clone(),
                    output_index,
                    summary_index: 0,
                    part: summary_part(String::new()),
                    sequence_number: self.sequence_number,
                    extra: Extra::new(),
                });
                self.emit(part, out);
            }
            Block::ToolCall { .. } => {}
        }
        self.current = Some(OpenItem {
            block,
            item_id,
            output_index,
            text: String::new(),
            signature: None,
            client,
        });
    }

    fn finish_item(&mut self, out: &mut Vec<sse::Event>) {
        let Some(open) = self.current.take() else {
            return;
        };
        let OpenItem {
            block,
            item_id,
            output_index,
            text,
            signature,
            client,
        } = open;
        let done = |sequence_number: u64, summary: bool, text: String| api::TextDoneEvent {
            item_id: item_id.clone(),
            output_index,
            content_index: (!summary).then_some(0),
            summary_index: summary.then_some(0),
            text,
            sequence_number,
            extra: if summary {
                Extra::new()
            } else {
                let mut extra = Extra::new();
                extra.insert("logprobs".to_owned(), json!([]));
                extra
            },
        };
        let item = match block {
            Block::Text => {
                let event = api::StreamEvent::OutputTextDone(done(
                    self.sequence_number,
                    false,
                    text.clone(),
                ));
                self.emit(event, out);
                let event = api::StreamEvent::ContentPartDone(api::ContentPartEvent {
                    item_id: item_id.clone(),
                    output_index,
                    content_index: 0,
                    part: output_text(text.clone()),
                    sequence_number: self.sequence_number,
                    extra: Extra::new(),
                });
                self.emit(event, out);
                message_item(item_id.clone(), text, "completed")
            }
            Block::Reasoning => {
                let event = api::StreamEvent::ReasoningSummaryTextDone(done(
                    self.sequence_number,
                    true,
                    text.clone(),
                ));
                self.emit(event, out);
                let event = api::StreamEvent::ReasoningSummaryPartDone(api::SummaryPartEvent {
                    item_id: item_id.clone(),
                    output_index,
                    summary_index: 0,
                    part: summary_part(text.clone()),
                    sequence_number: self.sequence_number,
                    extra: Extra::new(),
                });
                self.emit(event, out);
                reasoning_item(item_id.clone(), text, signature.as_deref())
            }
            Block::ToolCall { id, name } => {
                if client.as_ref().is_some_and(|client| client.free_form) {
                    // As OpenAI streams a free-form call: its input in deltas (here one),
                    // then whole.
                    let input = tools::free_form_input(&text);
                    if !input.is_empty() {
                        let delta =
                            api::StreamEvent::CustomToolCallInputDelta(api::TextDeltaEvent {
                                item_id: item_id.clone(),
                                output_index,
                                content_index: None,
                                summary_index: None,
                                delta: input.clone(),
                                sequence_number: self.sequence_number,
                                extra: Extra::new(),
                            });
                        self.emit(delta, out);
                    }
                    let event = api::StreamEvent::CustomToolCallInputDone(api::InputDoneEvent {
                        item_id: item_id.clone(),
                        output_index,
                        input,
                        sequence_number: self.sequence_number,
                        extra: Extra::new(),
                    });
                    self.emit(event, out);
                } else {
                    let event =
                        api::StreamEvent::FunctionCallArgumentsDone(api::ArgumentsDoneEvent {
                            item_id: item_id.clone(),
                            output_index,
                            arguments: text.clone(),
                            sequence_number: self.sequence_number,
                            extra: Extra::new(),
                        });
                    self.emit(event, out);
                }
                let response_id = self
                    .response
                    .as_ref()
                    .map(|response| response.id.as_str())
                    .unwrap_or_default();
                call_item(
                    response_id,
                    output_index,
                    ir::openai_call_id(&id),
                    name,
                    text,
                    client.as_ref(),
                    "completed",
                )
            }
        };
        let event = api::StreamEvent::OutputItemDone(api::OutputItemEvent {
            output_index,
            item: item.clone(),
            sequence_number: self.sequence_number,
            extra: Extra::new(),
        });
        self.emit(event, out);
        if let Some(response) = &mut self.response {
            response.output.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_that_arrives_whole_is_emitted_whole() {
        let mut decoder = StreamDecoder::default();
        let mut out = Vec::new();
        let done = serde_json::json!({"type": "response.output_item.done", "output_index": 0, "sequence_number": 3,
            "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{\"a\":1}"}});
        decoder.push(
            &sse::Event::new("response.output_item.done", done.to_string()),
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                ir::Event::BlockStart(Block::ToolCall {
                    id: "call_1".into(),
                    name: "f".into()
                }),
                ir::Event::ToolArgs("{\"a\":1}".into()),
                ir::Event::BlockStop,
            ]
        );
    }

    #[test]
    fn consecutive_texts_share_one_message_item() {
        let response = ir::Response {
            id: "msg_1".into(),
            parts: vec![Part::Text("a".into()), Part::Text("b".into())],
            ..ir::Response::default()
        };
        let encoded = encode_response(response, None);
        assert_eq!(encoded.output.len(), 1);
        assert_eq!(encoded.status.as_deref(), Some("completed"));
    }
}
