//! OpenAI Chat Completions to and from the internal representation.

use serde_json::Value;

use super::ir::{self, Block, Part, Role};
use super::{ConvertError, ErrorKind};
use crate::openai_chat as api;
use crate::{Extra, Format, sse};

pub(crate) fn decode_request(
    request: api::Request,
    target: Format,
) -> Result<ir::Request, ConvertError> {
    let mut messages: Vec<ir::Message> = Vec::with_capacity(request.messages.len());
    for (index, message) in request.messages.into_iter().enumerate() {
        let path = |field: &str| format!("messages[{index}]{field}");
        let role = match message.role.as_str() {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => {
                let call_id = message.tool_call_id.ok_or_else(|| ConvertError::Invalid {
                    format: Format::OpenAiChat,
                    path: path(".tool_call_id"),
                    message: "a tool message needs tool_call_id".to_owned(),
                })?;
                let content = decode_content(message.content, &path, target)?;
                let result = Part::ToolResult {
                    call_id,
                    content,
                    is_error: false,
                };
                match messages.last_mut() {
                    Some(last)
                        if last.role == Role::User
                            && last
                                .parts
                                .iter()
                                .all(|part| matches!(part, Part::ToolResult { .. })) =>
                    {
                        last.parts.push(result)
                    }
                    _ => messages.push(ir::Message::new(Role::User, vec![result])),
                }
                continue;
            }
            other => {
                return Err(ConvertError::Unsupported {
                    path: path(".role"),
                    what: format!("role `{other}`"),
                    target,
                });
            }
        };
        let mut parts = Vec::new();
        if let Some(reasoning) = message.reasoning_content.filter(|text| !text.is_empty()) {
            parts.push(Part::Reasoning {
                text: reasoning,
                signature: None,
            });
        }
        parts.extend(decode_content(message.content, &path, target)?);
        if let Some(refusal) = message.refusal.filter(|text| !text.is_empty()) {
            parts.push(Part::Text(refusal));
        }
        for call in message.tool_calls.unwrap_or_default() {
            parts.push(Part::ToolCall {
                id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
            });
        }
        messages.push(ir::Message::new(role, parts));
    }
    let tools = request
        .tools
        .unwrap_or_default()
        .into_iter()
        .filter_map(|tool| {
            let function = tool.function.filter(|_| tool.kind == "function")?;
            Some(ir::Tool {
                name: function.name,
                description: function.description,
                parameters: function
                    .parameters
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
                strict: function.strict,
            })
        })
        .collect();
    let tool_choice = request.tool_choice.and_then(|choice| match choice {
        api::ToolChoice::Mode(mode) => decode_mode(&mode),
        api::ToolChoice::Named(named) => Some(ir::ToolChoice::Named(named.function.name)),
    });
    let response_format = request.response_format.and_then(|format| {
        Some(match format.kind.as_str() {
            "json_object" => ir::ResponseFormat::JsonObject,
            "json_schema" => {
                let schema = format.json_schema?;
                ir::ResponseFormat::JsonSchema {
                    name: schema.name,
                    description: schema.description,
                    schema: schema.schema.unwrap_or(Value::Object(Default::default())),
                    strict: schema.strict,
                }
            }
            _ => ir::ResponseFormat::Text,
        })
    });
    let openai = ir::OpenAiOptions {
        verbosity: request
            .extra
            .get("verbosity")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..ir::OpenAiOptions::read(&request.extra)
    };
    Ok(ir::Request {
        model: request.model,
        messages,
        max_tokens: request.max_completion_tokens.or(request.max_tokens),
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: None,
        stop: match request.stop {
            None => Vec::new(),
            Some(api::Stop::One(stop)) => vec![stop],
            Some(api::Stop::Many(stops)) => stops,
        },
        stream: request.stream,
        tools,
        tool_choice,
        parallel_tool_calls: request.parallel_tool_calls,
        reasoning: request.reasoning_effort.map(|effort| ir::Reasoning {
            effort: Some(effort),
            budget_tokens: None,
        }),
        response_format,
        user: request.user,
        openai,
        client_tools: None,
    })
}

pub(crate) fn decode_mode(mode: &str) -> Option<ir::ToolChoice> {
    match mode {
        "auto" => Some(ir::ToolChoice::Auto),
        "none" => Some(ir::ToolChoice::None),
        "required" => Some(ir::ToolChoice::Required),
        _ => None,
    }
}

fn decode_content(
    content: Option<api::Content>,
    path: &dyn Fn(&str) -> String,
    target: Format,
) -> Result<Vec<Part>, ConvertError> {
    match content {
        None => Ok(Vec::new()),
        Some(api::Content::Text(text)) if text.is_empty() => Ok(Vec::new()),
        Some(api::Content::Text(text)) => Ok(vec![Part::Text(text)]),
        Some(api::Content::Parts(parts)) => parts
            .into_iter()
            .enumerate()
            .map(|(index, part)| {
                Ok(match part {
                    api::ContentPart::Text(text) => Part::Text(text.text),
                    api::ContentPart::Refusal(refusal) => Part::Text(refusal.refusal),
                    api::ContentPart::ImageUrl(image) => {
                        Part::Image(ir::Media::from_url(&image.image_url.url))
                    }
                    api::ContentPart::File(file) => Part::File {
                        media: match (file.file.file_data, file.file.file_id) {
                            (Some(data), _) => ir::Media::from_url(&data),
                            (None, Some(id)) => ir::Media::FileId(id),
                            (None, None) => {
                                return Err(ConvertError::Invalid {
                                    format: Format::OpenAiChat,
                                    path: path(&format!(".content[{index}].file")),
                                    message: "a file part needs file_data or file_id".to_owned(),
                                });
                            }
                        },
                        filename: file.file.filename,
                    },
                    api::ContentPart::Other(object) => {
                        return Err(ConvertError::Unsupported {
                            path: path(&format!(".content[{index}]")),
                            what: format!(
                                "content part type `{}`",
                                object
                                    .get("type")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                            ),
                            target,
                        });
                    }
                })
            })
            .collect(),
    }
}

pub(crate) fn encode_request(request: ir::Request) -> api::Request {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    // Internal: call ids sent so far; Chat servers refuse a `tool` message that
    // answers no earlier `tool_calls` entry.
    let mut calls: std::collections::HashSet<String> = std::collections::HashSet::new();
    for message in request.messages {
        match message.role {
            // Internal: `developer` is new; `system` works on every Chat server, and OpenAI
            // treats it as developer for the models that want one.
            Role::System | Role::Developer => {
                let text = ir::joined_text(&message.parts, "\n");
                if !text.is_empty() {
                    messages.push(plain_message("system", Some(api::Content::Text(text))));
                }
            }
            Role::User => {
                // Tool results become `tool` messages, in order with the rest of the turn.
                let mut pending: Vec<api::ContentPart> = Vec::new();
                for part in message.parts {
                    match part {
                        Part::ToolResult {
                            call_id, content, ..
                        } if !calls.contains(&ir::openai_call_id(&call_id)) => {
                            pending.extend(encode_part(Part::Text(ir::orphan_result_text(
                                &call_id, &content,
                            ))));
                        }
                        Part::ToolResult {
                            call_id,
                            content,
                            is_error,
                        } => {
                            flush_user(&mut pending, &mut messages);
                            let mut tool = plain_message(
                                "tool",
                                Some(api::Content::Text(ir::tool_output_text(&content, is_error))),
                            );
                            tool.tool_call_id = Some(ir::openai_call_id(&call_id));
                            messages.push(tool);
                        }
                        other => pending.extend(encode_part(other)),
                    }
                }
                flush_user(&mut pending, &mut messages);
            }
            Role::Assistant => {
                let text = ir::joined_text(&message.parts, "");
                let tool_calls: Vec<api::ToolCall> = message
                    .parts
                    .into_iter()
                    .filter_map(|part| match part {
                        Part::ToolCall {
                            id,
                            name,
                            arguments,
                        } => Some(api::ToolCall {
                            id: {
                                let id = ir::openai_call_id(&id);
                                calls.insert(id.clone());
                                id
                            },
                            kind: "function".to_owned(),
                            function: api::FunctionCall {
                                name,
                                arguments,
                                extra: Extra::new(),
                            },
                            extra: Extra::new(),
                        }),
                        _ => None,
                    })
                    .collect();
                if text.is_empty() && tool_calls.is_empty() {
                    continue;
                }
                // Consecutive assistant messages are one turn (Responses history gives one
                // per reasoning item): Chat servers want the calls of a turn in one message,
                // followed by their `tool` messages.
                if let Some(last) = messages.last_mut().filter(|last| last.role == "assistant") {
                    if !text.is_empty() {
                        match &mut last.content {
                            Some(api::Content::Text(existing)) => existing.push_str(&text),
                            _ => last.content = Some(api::Content::Text(text)),
                        }
                    }
                    if !tool_calls.is_empty() {
                        last.tool_calls
                            .get_or_insert_with(Vec::new)
                            .extend(tool_calls);
                    }
                    continue;
                }
                let mut assistant = plain_message(
                    "assistant",
                    (!text.is_empty()).then_some(api::Content::Text(text)),
                );
                assistant.tool_calls = (!tool_calls.is_empty()).then_some(tool_calls);
                messages.push(assistant);
            }
        }
    }
    let stream = request.stream;
    let has_tools = !request.tools.is_empty();
    let mut extra = Extra::new();
    request.openai.write(&mut extra);
    if let Some(verbosity) = request.openai.verbosity {
        extra.insert("verbosity".to_owned(), Value::String(verbosity));
    }
    api::Request {
        model: request.model,
        messages,
        max_completion_tokens: request.max_tokens,
        max_tokens: None,
        temperature: request.temperature,
        top_p: request.top_p,
        stop: (!request.stop.is_empty()).then_some(api::Stop::Many(request.stop)),
        stream,
        stream_options: (stream == Some(true)).then(|| api::StreamOptions {
            include_usage: Some(true),
            extra: Extra::new(),
        }),
        tools: (!request.tools.is_empty()).then(|| {
            request
                .tools
                .into_iter()
                .map(|tool| api::Tool {
                    kind: "function".to_owned(),
                    function: Some(api::FunctionDefinition {
                        name: tool.name,
                        description: tool.description,
                        parameters: Some(tool.parameters),
                        strict: tool.strict,
                        extra: Extra::new(),
                    }),
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
                    function: api::NamedFunction {
                        name,
                        extra: Extra::new(),
                    },
                    extra: Extra::new(),
                }),
            }),
        parallel_tool_calls: request.parallel_tool_calls.filter(|_| has_tools),
        response_format: request.response_format.map(|format| match format {
            ir::ResponseFormat::Text => api::ResponseFormat {
                kind: "text".to_owned(),
                json_schema: None,
                extra: Extra::new(),
            },
            ir::ResponseFormat::JsonObject => api::ResponseFormat {
                kind: "json_object".to_owned(),
                json_schema: None,
                extra: Extra::new(),
            },
            ir::ResponseFormat::JsonSchema {
                name,
                description,
                schema,
                strict,
            } => api::ResponseFormat {
                kind: "json_schema".to_owned(),
                json_schema: Some(api::JsonSchema {
                    name,
                    description,
                    schema: Some(schema),
                    strict,
                    extra: Extra::new(),
                }),
                extra: Extra::new(),
            },
        }),
        reasoning_effort: request.reasoning.map(|reasoning| reasoning.effort()),
        user: request.user,
        extra,
    }
}

fn plain_message(role: &str, content: Option<api::Content>) -> api::Message {
    api::Message {
        role: role.to_owned(),
        content,
        name: None,
        tool_calls: None,
        tool_call_id: None,
        refusal: None,
        reasoning_content: None,
        extra: Extra::new(),
    }
}

fn flush_user(pending: &mut Vec<api::ContentPart>, messages: &mut Vec<api::Message>) {
    if pending.is_empty() {
        return;
    }
    let parts = std::mem::take(pending);
    let content = match parts.as_slice() {
        [api::ContentPart::Text(text)] => api::Content::Text(text.text.clone()),
        _ => api::Content::Parts(parts),
    };
    messages.push(plain_message("user", Some(content)));
}

/// A user content part; reasoning and file ids without data have no Chat form.
fn encode_part(part: Part) -> Option<api::ContentPart> {
    match part {
        Part::Text(text) => Some(api::ContentPart::Text(api::TextPart {
            text,
            extra: Extra::new(),
        })),
        Part::Image(media) => media.to_url().map(|url| {
            api::ContentPart::ImageUrl(api::ImageUrlPart {
                image_url: api::ImageUrl {
                    url,
                    detail: None,
                    extra: Extra::new(),
                },
                extra: Extra::new(),
            })
        }),
        Part::File { media, filename } => {
            let (file_data, file_id) = match media {
                ir::Media::Base64 { .. } => (media.to_url(), None),
                ir::Media::FileId(id) => (None, Some(id)),
                // Chat file parts take no URLs.
                ir::Media::Url(_) => return None,
            };
            Some(api::ContentPart::File(api::FilePart {
                file: api::FileData {
                    file_data,
                    file_id,
                    filename,
                    extra: Extra::new(),
                },
                extra: Extra::new(),
            }))
        }
        _ => None,
    }
}

pub(crate) fn decode_usage(usage: &api::Usage) -> ir::Usage {
    ir::Usage {
        input: usage.prompt_tokens,
        output: usage.completion_tokens,
        cache_read: usage
            .prompt_tokens_details
            .as_ref()
            .and_then(|details| details.cached_tokens)
            .unwrap_or(0),
        cache_creation: usage
            .extra
            .get("cache_creation_input_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        reasoning: usage
            .completion_tokens_details
            .as_ref()
            .and_then(|details| details.reasoning_tokens)
            .unwrap_or(0),
    }
}

pub(crate) fn encode_usage(usage: &ir::Usage) -> api::Usage {
    let mut extra = Extra::new();
    if usage.cache_creation > 0 {
        extra.insert(
            "cache_creation_input_tokens".to_owned(),
            Value::from(usage.cache_creation),
        );
    }
    api::Usage {
        prompt_tokens: usage.input,
        completion_tokens: usage.output,
        total_tokens: usage.input + usage.output,
        prompt_tokens_details: Some(api::PromptTokensDetails {
            cached_tokens: Some(usage.cache_read),
            extra: Extra::new(),
        }),
        completion_tokens_details: Some(api::CompletionTokensDetails {
            reasoning_tokens: Some(usage.reasoning),
            extra: Extra::new(),
        }),
        extra,
    }
}

fn reasoning_extension(extra: &Extra) -> Option<&str> {
    // Internal: OpenRouter and some others name the field `reasoning`.
    extra.get("reasoning").and_then(Value::as_str)
}

pub(crate) fn decode_response(response: api::Response) -> ir::Response {
    let mut parts = Vec::new();
    let mut stop = ir::Stop::default();
    // Only the first choice is converted; the other formats have one answer per response.
    if let Some(choice) = response.choices.into_iter().next() {
        let message = choice.message;
        let reasoning = message
            .reasoning_content
            .clone()
            .or_else(|| reasoning_extension(&message.extra).map(str::to_owned));
        if let Some(text) = reasoning.filter(|text| !text.is_empty()) {
            parts.push(Part::Reasoning {
                text,
                signature: None,
            });
        }
        match message.content {
            Some(api::Content::Text(text)) if !text.is_empty() => parts.push(Part::Text(text)),
            Some(api::Content::Parts(content)) => {
                for part in content {
                    match part {
                        api::ContentPart::Text(text) => parts.push(Part::Text(text.text)),
                        api::ContentPart::Refusal(refusal) => {
                            parts.push(Part::Text(refusal.refusal))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if let Some(refusal) = message.refusal.filter(|text| !text.is_empty()) {
            parts.push(Part::Text(refusal));
            stop.reason = ir::StopReason::Refusal;
        }
        for call in message.tool_calls.unwrap_or_default() {
            parts.push(Part::ToolCall {
                id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
            });
        }
        if let Some(reason) = choice.finish_reason.as_deref() {
            stop.reason = ir::StopReason::from_chat(reason);
        }
    }
    ir::Response {
        id: response.id,
        model: response.model,
        created: Some(response.created),
        parts,
        stop,
        usage: response
            .usage
            .as_ref()
            .map(decode_usage)
            .unwrap_or_default(),
    }
}

pub(crate) fn encode_response(response: ir::Response) -> api::Response {
    let stop = response.effective_stop();
    let text = ir::joined_text(&response.parts, "");
    let reasoning: Vec<&str> = response
        .parts
        .iter()
        .filter_map(|part| match part {
            Part::Reasoning { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let reasoning = (!reasoning.is_empty()).then(|| reasoning.join("\n\n"));
    let tool_calls: Vec<api::ToolCall> = response
        .parts
        .iter()
        .filter_map(|part| match part {
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some(api::ToolCall {
                id: ir::openai_call_id(id),
                kind: "function".to_owned(),
                function: api::FunctionCall {
                    name: name.clone(),
                    arguments: arguments.clone(),
                    extra: Extra::new(),
                },
                extra: Extra::new(),
            }),
            _ => None,
        })
        .collect();
    let content = if text.is_empty() && !tool_calls.is_empty() {
        None
    } else {
        Some(api::Content::Text(text))
    };
    let mut message = plain_message("assistant", content);
    message.reasoning_content = reasoning;
    message.tool_calls = (!tool_calls.is_empty()).then_some(tool_calls);
    api::Response {
        id: response.id,
        object: "chat.completion".to_owned(),
        created: response.created.unwrap_or_else(super::stream::unix_now),
        model: response.model,
        choices: vec![api::Choice {
            index: 0,
            message,
            finish_reason: Some(stop.chat().to_owned()),
            extra: Extra::new(),
        }],
        usage: Some(encode_usage(&response.usage)),
        extra: Extra::new(),
    }
}

/// The most tool-call argument bytes a Chat stream decoder holds back (calls waiting for the
/// one before them to end, or for their name); beyond it the stream ends in an error.
pub(crate) const MAX_BUFFERED_TOOL_ARGUMENTS: usize = 4 << 20;

/// Chat chunks to internal events.
///
/// Tool calls: the client formats stream one block at a time, while a Chat server may name
/// several calls in one chunk and then send their arguments index by index (or
/// interleaved). So the first open call streams live and the others are buffered; they are
/// sent as whole blocks when the live one ends: when a call first named in a later chunk
/// arrives (a server names a call only once the calls before it are complete), or at the
/// finish. A call's block starts only once its name is known.
#[derive(Debug, Default)]
pub(crate) struct StreamDecoder {
    started: bool,
    /// The stream's id, for the call ids a server leaves out.
    id: String,
    /// Chunks seen, to tell calls named together from calls named later.
    chunks: u64,
    /// The kind of block last opened: text, reasoning, or a tool call (its position in
    /// `calls`).
    current: Option<Current>,
    /// The tool calls seen so far, in the order they appeared.
    calls: Vec<SeenCall>,
    stop: Option<ir::Stop>,
    usage: Option<ir::Usage>,
    finished: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    Text,
    Reasoning,
    Tool(usize),
}

/// A tool call of the stream. Its Chat `index` and its id identify it, and a server may
/// leave out either.
#[derive(Debug)]
struct SeenCall {
    index: Option<u32>,
    id: Option<String>,
    name: Option<String>,
    /// Arguments received and not yet passed on.
    arguments: String,
    /// The chunk that first named the call.
    chunk: u64,
    state: CallState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Not started: buffered.
    Waiting,
    /// The open block.
    Live,
    /// Its block is closed; later fragments are dropped.
    Done,
}

impl StreamDecoder {
    /// The position in `calls` of the call a fragment belongs to, or `None` for a new call.
    ///
    /// A new id is a new call, even on an index seen before (servers that send no index
    /// read as index 0 to a lenient parser); a fragment without an id belongs to the last
    /// call with its index, or without an index to the last call of all.
    fn call_of(&self, index: Option<u32>, id: Option<&str>) -> Option<usize> {
        if let Some(id) = id {
            if let Some(position) = self
                .calls
                .iter()
                .rposition(|call| call.id.as_deref() == Some(id))
            {
                return Some(position);
            }
            // Internal: a call whose first fragment had no id may get it later.
            return index.and_then(|index| {
                self.calls
                    .iter()
                    .rposition(|call| call.index == Some(index))
                    .filter(|position| self.calls[*position].id.is_none())
            });
        }
        match index {
            Some(index) => self
                .calls
                .iter()
                .rposition(|call| call.index == Some(index)),
            None => self.calls.len().checked_sub(1),
        }
    }

    /// Takes one tool-call fragment into its call's buffer.
    fn take_fragment(&mut self, call: api::ToolCallDelta) {
        let function = call.function.unwrap_or_default();
        let id = call.id.filter(|id| !id.is_empty());
        let position = self.call_of(call.index, id.as_deref()).unwrap_or_else(|| {
            self.calls.push(SeenCall {
                index: call.index,
                id: None,
                name: None,
                arguments: String::new(),
                chunk: self.chunks,
                state: CallState::Waiting,
            });
            self.calls.len() - 1
        });
        let seen = &mut self.calls[position];
        // A fragment of a call that already ended (a server that goes back to a call after
        // the next one was named) cannot be placed in a sequential stream.
        if seen.state == CallState::Done {
            return;
        }
        if seen.id.is_none() {
            seen.id = id;
        }
        // Identity fields repeated on later fragments are not concatenated (#59).
        if seen.name.is_none() {
            seen.name = function.name.filter(|name| !name.is_empty());
        }
        if let Some(arguments) = function.arguments {
            seen.arguments.push_str(&arguments);
        }
    }

    /// The open call that streams next: the earliest named, lowest index first.
    fn next_open(&self) -> Option<usize> {
        self.calls
            .iter()
            .enumerate()
            .filter(|(_, call)| call.state != CallState::Done)
            .min_by_key(|(position, call)| (call.chunk, call.index.unwrap_or(u32::MAX), *position))
            .map(|(position, _)| position)
    }

    /// Passes on what the tool calls allow after a chunk: ends the calls that a call named
    /// in a later chunk shows complete, then streams the first open call if its name is
    /// known.
    fn pump(&mut self, out: &mut Vec<ir::Event>) {
        let newest = self
            .calls
            .iter()
            .filter(|call| call.state != CallState::Done)
            .map(|call| call.chunk)
            .max();
        if let Some(newest) = newest {
            while let Some(position) = self
                .next_open()
                .filter(|position| self.calls[*position].chunk < newest)
            {
                self.end_call(position, out);
            }
        }
        match self.current {
            Some(Current::Tool(position)) => self.forward_arguments(position, out),
            _ => {
                if let Some(position) = self
                    .next_open()
                    .filter(|position| self.calls[*position].name.is_some())
                {
                    self.start_call(position, out);
                }
            }
        }
    }

    fn start_call(&mut self, position: usize, out: &mut Vec<ir::Event>) {
        self.close(out);
        let call = &mut self.calls[position];
        call.state = CallState::Live;
        // Internal: some servers send no id; the stream still needs one.
        let id = call.id.clone().unwrap_or_else(|| {
            format!("call_{}_{}", self.id, call.index.unwrap_or(position as u32))
        });
        out.push(ir::Event::BlockStart(Block::ToolCall {
            id,
            name: call.name.clone().unwrap_or_default(),
        }));
        self.current = Some(Current::Tool(position));
        self.forward_arguments(position, out);
    }

    fn forward_arguments(&mut self, position: usize, out: &mut Vec<ir::Event>) {
        let arguments = &mut self.calls[position].arguments;
        if !arguments.is_empty() {
            out.push(ir::Event::ToolArgs(std::mem::take(arguments)));
        }
    }

    /// Ends a call: the live one closes, a buffered one goes out whole (with an empty name
    /// if none ever came).
    fn end_call(&mut self, position: usize, out: &mut Vec<ir::Event>) {
        if self.current != Some(Current::Tool(position)) {
            self.start_call(position, out);
        }
        self.close(out);
    }

    /// Ends every tool call, in order.
    fn end_calls(&mut self, out: &mut Vec<ir::Event>) {
        if matches!(self.current, Some(Current::Tool(_))) {
            self.close(out);
        }
        while let Some(position) = self.next_open() {
            self.end_call(position, out);
        }
    }

    fn buffered(&self) -> usize {
        self.calls
            .iter()
            .filter(|call| call.state != CallState::Done)
            .map(|call| call.arguments.len())
            .sum()
    }

    pub(crate) fn push(&mut self, event: &sse::Event, out: &mut Vec<ir::Event>) {
        if self.finished {
            return;
        }
        let Ok(event) = api::StreamEvent::parse(event) else {
            return;
        };
        let chunk = match event {
            api::StreamEvent::Done => {
                self.finish(out);
                return;
            }
            api::StreamEvent::Error(error) => {
                self.finished = true;
                out.push(ir::Event::Error {
                    kind: error
                        .error
                        .code
                        .as_ref()
                        .and_then(Value::as_str)
                        .and_then(ErrorKind::from_type)
                        .or_else(|| error.error.kind.as_deref().and_then(ErrorKind::from_type))
                        .unwrap_or(ErrorKind::Api),
                    message: error.error.message,
                });
                return;
            }
            api::StreamEvent::Chunk(chunk) => chunk,
        };
        self.chunks += 1;
        if !self.started && (!chunk.choices.is_empty() || chunk.usage.is_some()) {
            self.started = true;
            self.id = chunk.id.clone();
            out.push(ir::Event::Start {
                id: chunk.id.clone(),
                model: chunk.model.clone(),
                created: Some(chunk.created).filter(|created| *created > 0),
                usage: ir::Usage::default(),
            });
        }
        for choice in chunk.choices.into_iter().filter(|choice| choice.index == 0) {
            let delta = choice.delta;
            let reasoning = delta
                .reasoning_content
                .as_deref()
                .or_else(|| reasoning_extension(&delta.extra));
            if let Some(text) = reasoning.filter(|text| !text.is_empty()) {
                self.open(Current::Reasoning, out);
                out.push(ir::Event::Reasoning(text.to_owned()));
            }
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                if !text.is_empty() {
                    self.open(Current::Text, out);
                    out.push(ir::Event::Text(text));
                }
            }
            if let Some(calls) = delta.tool_calls.filter(|calls| !calls.is_empty()) {
                for call in calls {
                    self.take_fragment(call);
                }
                self.pump(out);
                if self.buffered() > MAX_BUFFERED_TOOL_ARGUMENTS {
                    self.finished = true;
                    out.push(ir::Event::Error {
                        kind: ErrorKind::Api,
                        message: format!(
                            "the upstream interleaved its tool calls beyond the {} MiB the proxy buffers",
                            MAX_BUFFERED_TOOL_ARGUMENTS >> 20
                        ),
                    });
                    return;
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.end_calls(out);
                self.close(out);
                self.stop = Some(ir::Stop {
                    reason: ir::StopReason::from_chat(&reason),
                    sequence: None,
                });
            }
        }
        if let Some(usage) = &chunk.usage {
            self.usage = Some(decode_usage(usage));
        }
        if self.stop.is_some() && self.usage.is_some() {
            self.finish(out);
        }
    }

    /// Opens a text or reasoning block, unless it is the open one.
    fn open(&mut self, kind: Current, out: &mut Vec<ir::Event>) {
        if self.current == Some(kind) {
            return;
        }
        self.close(out);
        self.current = Some(kind);
        out.push(ir::Event::BlockStart(match kind {
            Current::Reasoning => Block::Reasoning,
            _ => Block::Text,
        }));
    }

    /// Closes the open block; a tool call's block closes for good.
    fn close(&mut self, out: &mut Vec<ir::Event>) {
        match self.current.take() {
            Some(Current::Tool(position)) => {
                self.forward_arguments(position, out);
                self.calls[position].state = CallState::Done;
                out.push(ir::Event::BlockStop);
            }
            Some(_) => out.push(ir::Event::BlockStop),
            None => {}
        }
    }

    /// The stream ended (`[DONE]` or end of body): a finish reason seen without a usage
    /// chunk still finishes the response.
    pub(crate) fn finish(&mut self, out: &mut Vec<ir::Event>) {
        if self.finished {
            return;
        }
        if let Some(stop) = self.stop.take() {
            self.finished = true;
            self.end_calls(out);
            self.close(out);
            out.push(ir::Event::Finish {
                stop,
                usage: self.usage.unwrap_or_default(),
            });
        }
    }
}

/// Internal events to Chat chunks.
#[derive(Debug, Default)]
pub(crate) struct StreamEncoder {
    model_override: Option<String>,
    id: String,
    model: String,
    created: u64,
    /// Chat index of the current tool call; the count of tool calls so far.
    tool_index: u32,
    in_tool: bool,
    saw_tool_call: bool,
}

impl StreamEncoder {
    pub(crate) fn new(model: Option<String>) -> Self {
        StreamEncoder {
            model_override: model,
            ..StreamEncoder::default()
        }
    }

    fn chunk(&self, delta: api::ChunkDelta, finish_reason: Option<String>) -> api::StreamEvent {
        api::StreamEvent::Chunk(api::Chunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![api::ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                extra: Extra::new(),
            }],
            usage: None,
            extra: Extra::new(),
        })
    }

    fn tool_delta(&self, call: api::ToolCallDelta) -> api::StreamEvent {
        self.chunk(
            api::ChunkDelta {
                tool_calls: Some(vec![call]),
                ..api::ChunkDelta::default()
            },
            None,
        )
    }

    pub(crate) fn push(&mut self, event: ir::Event, out: &mut Vec<sse::Event>) {
        let chunk = match event {
            ir::Event::Start {
                id, model, created, ..
            } => {
                self.id = id;
                self.model = self.model_override.clone().unwrap_or(model);
                self.created = created.unwrap_or_else(super::stream::unix_now);
                self.chunk(
                    api::ChunkDelta {
                        role: Some("assistant".to_owned()),
                        content: Some(String::new()),
                        ..api::ChunkDelta::default()
                    },
                    None,
                )
            }
            ir::Event::BlockStart(Block::ToolCall { id, name }) => {
                self.in_tool = true;
                self.saw_tool_call = true;
                self.tool_delta(api::ToolCallDelta {
                    index: Some(self.tool_index),
                    id: Some(ir::openai_call_id(&id)),
                    kind: Some("function".to_owned()),
                    function: Some(api::FunctionDelta {
                        name: Some(name),
                        arguments: Some(String::new()),
                        extra: Extra::new(),
                    }),
                    extra: Extra::new(),
                })
            }
            ir::Event::BlockStart(_) | ir::Event::Signature(_) => return,
            ir::Event::BlockStop => {
                if self.in_tool {
                    self.in_tool = false;
                    self.tool_index += 1;
                }
                return;
            }
            ir::Event::Text(text) => self.chunk(
                api::ChunkDelta {
                    content: Some(text),
                    ..api::ChunkDelta::default()
                },
                None,
            ),
            ir::Event::Reasoning(text) => self.chunk(
                api::ChunkDelta {
                    reasoning_content: Some(text),
                    ..api::ChunkDelta::default()
                },
                None,
            ),
            ir::Event::ToolArgs(arguments) => self.tool_delta(api::ToolCallDelta {
                index: Some(self.tool_index),
                id: None,
                kind: None,
                function: Some(api::FunctionDelta {
                    name: None,
                    arguments: Some(arguments),
                    extra: Extra::new(),
                }),
                extra: Extra::new(),
            }),
            ir::Event::Finish { stop, usage } => {
                let reason = if stop.reason == ir::StopReason::EndTurn && self.saw_tool_call {
                    ir::StopReason::ToolUse
                } else {
                    stop.reason
                };
                let mut chunk =
                    self.chunk(api::ChunkDelta::default(), Some(reason.chat().to_owned()));
                if let api::StreamEvent::Chunk(chunk) = &mut chunk {
                    chunk.usage = Some(encode_usage(&usage));
                }
                out.push(chunk.to_sse());
                api::StreamEvent::Done
            }
            ir::Event::Error { kind, message } => {
                out.push(
                    api::StreamEvent::Error(api::ErrorBody {
                        error: api::ErrorDetail {
                            message,
                            kind: Some(kind.openai_type().to_owned()),
                            param: None,
                            code: kind.openai_code().map(Value::from),
                            extra: Extra::new(),
                        },
                        extra: Extra::new(),
                    })
                    .to_sse(),
                );
                api::StreamEvent::Done
            }
        };
        out.push(chunk.to_sse());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn push(decoder: &mut StreamDecoder, chunk: Value) -> Vec<ir::Event> {
        let mut out = Vec::new();
        decoder.push(&sse::Event::data(chunk.to_string()), &mut out);
        out
    }

    #[test]
    fn consecutive_assistant_messages_become_one() {
        let call = |id: &str| Part::ToolCall {
            id: id.into(),
            name: "f".into(),
            arguments: "{}".into(),
        };
        let result = |id: &str| Part::ToolResult {
            call_id: id.into(),
            content: vec![Part::Text(id.into())],
            is_error: false,
        };
        let request = ir::Request {
            messages: vec![
                ir::Message::new(Role::User, vec![Part::Text("go".into())]),
                ir::Message::new(
                    Role::Assistant,
                    vec![Part::Text("a".into()), call("call_1")],
                ),
                ir::Message::new(
                    Role::Assistant,
                    vec![Part::Text("b".into()), call("call_2")],
                ),
                ir::Message::new(Role::User, vec![result("call_1"), result("call_2")]),
            ],
            ..ir::Request::default()
        };
        let encoded = serde_json::to_value(encode_request(request)).expect("serialises");
        let roles: Vec<&str> = encoded["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|message| message["role"].as_str().expect("role"))
            .collect();
        assert_eq!(roles, ["user", "assistant", "tool", "tool"], "{encoded}");
        assert_eq!(encoded["messages"][1]["content"], "ab");
        assert_eq!(
            encoded["messages"][1]["tool_calls"][1]["id"], "call_2",
            "{encoded}"
        );
    }

    #[test]
    fn a_prompt_filter_chunk_does_not_start_the_message() {
        let mut decoder = StreamDecoder::default();
        assert!(
            push(
                &mut decoder,
                json!({"id": "", "choices": [], "prompt_filter_results": []})
            )
            .is_empty()
        );
        let out = push(
            &mut decoder,
            json!({"id": "c1", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
        );
        assert!(matches!(&out[0], ir::Event::Start { id, .. } if id == "c1"));
    }

    #[test]
    fn the_finish_waits_for_the_usage_chunk() {
        let mut decoder = StreamDecoder::default();
        push(
            &mut decoder,
            json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "hi"}}]}),
        );
        let out = push(
            &mut decoder,
            json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        );
        assert_eq!(out, vec![ir::Event::BlockStop]);
        let out = push(
            &mut decoder,
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
        );
        assert!(
            matches!(&out[0], ir::Event::Finish { usage, .. } if usage.input == 3 && usage.output == 2)
        );
    }

    #[test]
    fn identity_fields_repeated_on_later_fragments_are_not_concatenated() {
        // #59: a merge that concatenated names produced "shellshell".
        let mut decoder = StreamDecoder::default();
        let mut out = Vec::new();
        for call in [
            json!({"index": 0, "id": "call_1", "type": "function", "function": {"name": "shell", "arguments": "{"}}),
            json!({"index": 0, "id": "call_1", "type": "function", "function": {"name": "shell", "arguments": "}"}}),
        ] {
            out.extend(push(
                &mut decoder,
                json!({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}),
            ));
        }
        let starts: Vec<_> = out
            .iter()
            .filter(|event| matches!(event, ir::Event::BlockStart(_)))
            .collect();
        assert_eq!(
            starts,
            [&ir::Event::BlockStart(Block::ToolCall {
                id: "call_1".into(),
                name: "shell".into()
            })]
        );
        assert_eq!(
            out.iter()
                .filter(|event| matches!(event, ir::Event::ToolArgs(_)))
                .count(),
            2
        );
    }

    /// What real OpenAI-compatible servers send (vLLM, Ollama, OpenRouter, Gemini's
    /// compatibility endpoint): a chunk with `choices: []` before the first, one with
    /// `choices: null`, reasoning in `reasoning_content` or `reasoning`, tool-call
    /// fragments without `index`, usage in its own last chunk or none, `[DONE]` or
    /// just the end of the body.
    fn quirky_stream(reasoning_field: &str, usage: bool, done: bool) -> Vec<sse::Event> {
        let chunk = |choices: Value| json!({"id": "c1", "model": "qwen3", "created": 1, "choices": choices});
        let delta =
            |delta: Value| chunk(json!([{"index": 0, "delta": delta, "finish_reason": null}]));
        let mut chunks = vec![
            json!({"id": "", "choices": []}),
            delta(json!({"role": "assistant", "content": ""})),
            json!({"id": "c1", "choices": null}),
            delta(json!({reasoning_field: "Think "})),
            delta(json!({reasoning_field: "first."})),
            delta(json!({"content": "Running it."})),
            delta(
                json!({"tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "shell", "arguments": ""}}]}),
            ),
            delta(json!({"tool_calls": [{"function": {"arguments": "{\"cmd\":"}}]})),
            delta(json!({"tool_calls": [{"function": {"arguments": "\"ls\"}"}}]})),
            delta(
                json!({"tool_calls": [{"id": "call_b", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"a\"}"}}]}),
            ),
            chunk(json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
        ];
        if usage {
            chunks.push(json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}));
        }
        let mut events: Vec<sse::Event> = chunks
            .into_iter()
            .map(|chunk| sse::Event::data(chunk.to_string()))
            .collect();
        if done {
            events.push(sse::Event::done());
        }
        events
    }

    #[test]
    fn quirky_chat_streams_convert_to_every_format_and_accumulate() {
        use crate::{
            Format,
            convert::{Accumulator, StreamConverter, UsageScanner},
        };
        for reasoning_field in ["reasoning_content", "reasoning"] {
            for (usage, done) in [(true, true), (false, true), (true, false), (false, false)] {
                let case = format!("{reasoning_field} usage={usage} done={done}");
                let events = quirky_stream(reasoning_field, usage, done);

                let mut accumulator =
                    Accumulator::new(Format::OpenAiChat, Format::AnthropicMessages);
                let mut scanner = UsageScanner::new(Format::OpenAiChat);
                for event in &events {
                    accumulator.push(event);
                    scanner.push(event);
                }
                let message: Value = serde_json::from_slice(
                    &accumulator
                        .finish()
                        .unwrap_or_else(|e| panic!("{case}: {e}")),
                )
                .unwrap();
                let content = message["content"].as_array().unwrap();
                let kinds: Vec<&str> = content
                    .iter()
                    .map(|b| b["type"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    kinds,
                    ["thinking", "text", "tool_use", "tool_use"],
                    "{case}: {message}"
                );
                assert_eq!(content[0]["thinking"], "Think first.", "{case}");
                assert_eq!(content[2]["id"], "call_a", "{case}");
                assert_eq!(content[2]["input"], json!({"cmd": "ls"}), "{case}");
                assert_eq!(content[3]["name"], "read", "{case}");
                assert_eq!(content[3]["input"], json!({"path": "a"}), "{case}");
                assert_eq!(message["stop_reason"], "tool_use", "{case}");
                let expected_input = if usage { 11 } else { 0 };
                assert_eq!(message["usage"]["input_tokens"], expected_input, "{case}");
                assert_eq!(
                    scanner.usage().map(|u| u.input_tokens),
                    usage.then_some(11),
                    "{case}"
                );

                for to in [Format::AnthropicMessages, Format::OpenAiResponses] {
                    let mut converter = StreamConverter::new(Format::OpenAiChat, to);
                    let mut out = Vec::new();
                    for event in &events {
                        converter.push(event, &mut out);
                    }
                    converter.finish(&mut out);
                    let names: Vec<&str> = out
                        .iter()
                        .map(|e| e.event.as_deref().unwrap_or(""))
                        .collect();
                    let text: String = out
                        .iter()
                        .map(|e| e.data.as_str())
                        .collect::<Vec<_>>()
                        .join("\n");
                    assert!(!names.contains(&"error"), "{case} {to:?}: {text}");
                    let last = match to {
                        Format::AnthropicMessages => "message_stop",
                        _ => "response.completed",
                    };
                    assert_eq!(names.last(), Some(&last), "{case} {to:?}: {names:?}");
                    assert!(
                        text.contains("call_a") && text.contains("call_b"),
                        "{case} {to:?}"
                    );
                    assert!(text.contains("Think "), "{case} {to:?}");
                }
            }
        }
    }

    #[test]
    fn a_chat_stream_cut_before_its_finish_is_an_error_not_an_answer() {
        use crate::{
            Format,
            convert::{Accumulator, StreamConverter},
        };
        let events = quirky_stream("reasoning", false, false);
        let cut = &events[..8];
        let mut accumulator = Accumulator::new(Format::OpenAiChat, Format::OpenAiResponses);
        for event in cut {
            accumulator.push(event);
        }
        let error = accumulator.finish().expect_err("a cut stream is no answer");
        assert!(error.message.contains("ended before"), "{error}");
        let mut converter = StreamConverter::new(Format::OpenAiChat, Format::AnthropicMessages);
        let mut out = Vec::new();
        for event in cut {
            converter.push(event, &mut out);
        }
        converter.finish(&mut out);
        assert_eq!(
            out.last().and_then(|e| e.event.as_deref()),
            Some("error"),
            "{out:?}"
        );
    }
}
