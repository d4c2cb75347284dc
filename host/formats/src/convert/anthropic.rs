//! Anthropic Messages to and from the internal representation.

use serde_json::Value;

use super::ir::{self, Block, Part, Role};
use super::{ConvertError, ErrorKind};
use crate::anthropic as api;
use crate::{Extra, Format, sse};

/// The `max_tokens` sent when the client gave none (Anthropic requires one).
pub(crate) const DEFAULT_MAX_TOKENS: u64 = 8192;

/// Block types that only make sense to Anthropic's servers (server tools and their results);
/// they are dropped from history converted to OpenAI formats.
fn is_server_block(block_type: &str) -> bool {
    block_type.starts_with("server_tool")
        || block_type.ends_with("_tool_result")
        || block_type.starts_with("mcp_")
        || block_type == "container_upload"
}

pub(crate) fn decode_request(
    request: api::Request,
    target: Format,
) -> Result<ir::Request, ConvertError> {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system {
        let texts: Vec<String> = match system {
            api::System::Text(text) => vec![text],
            api::System::Blocks(blocks) => blocks
                .into_iter()
                .filter_map(|block| match block {
                    api::ContentBlock::Text(text) => Some(text.text),
                    _ => None,
                })
                .collect(),
        };
        let parts: Vec<Part> = texts
            .iter()
            .filter_map(|text| ir::strip_billing_header(text))
            .map(Part::Text)
            .collect();
        if !parts.is_empty() {
            messages.push(ir::Message::new(Role::System, parts));
        }
    }
    for (index, message) in request.messages.into_iter().enumerate() {
        let role = match message.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            // Claude Code (2.1.x) sends its environment notes as `system` turns inside
            // `messages`; each target format places system text its own way.
            "system" => Role::System,
            "developer" => Role::Developer,
            other => {
                return Err(ConvertError::Invalid {
                    format: Format::AnthropicMessages,
                    path: format!("messages[{index}].role"),
                    message: format!("unknown role `{other}`"),
                });
            }
        };
        let parts = match message.content {
            api::Content::Text(text) => vec![Part::Text(text)],
            api::Content::Blocks(blocks) => {
                let mut parts = Vec::with_capacity(blocks.len());
                for (block_index, block) in blocks.into_iter().enumerate() {
                    let path = || format!("messages[{index}].content[{block_index}]");
                    if let Some(part) = decode_block(block, &path, target)? {
                        parts.push(part);
                    }
                }
                parts
            }
        };
        messages.push(ir::Message::new(role, parts));
    }
    let tools = request
        .tools
        .unwrap_or_default()
        .into_iter()
        .filter(api::Tool::is_custom)
        .map(|tool| ir::Tool {
            name: tool.name,
            description: tool.description,
            parameters: tool
                .input_schema
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            strict: None,
        })
        .collect();
    let mut parallel_tool_calls = None;
    let tool_choice = request.tool_choice.and_then(|choice| {
        if choice.disable_parallel_tool_use == Some(true) {
            parallel_tool_calls = Some(false);
        }
        match choice.kind.as_str() {
            "auto" => Some(ir::ToolChoice::Auto),
            "any" => Some(ir::ToolChoice::Required),
            "none" => Some(ir::ToolChoice::None),
            "tool" => choice.name.map(ir::ToolChoice::Named),
            _ => None,
        }
    });
    // Adaptive thinking's depth is `output_config.effort` (low, medium, high),
    // the same words as OpenAI's reasoning effort.
    let effort = request
        .extra
        .get("output_config")
        .and_then(|config| config.get("effort"))
        .and_then(|effort| effort.as_str())
        .map(str::to_owned);
    let reasoning = request
        .thinking
        .and_then(|thinking| match thinking.kind.as_str() {
            "enabled" => Some(ir::Reasoning {
                effort: None,
                budget_tokens: thinking.budget_tokens,
            }),
            "adaptive" => Some(ir::Reasoning {
                effort: effort.clone(),
                budget_tokens: None,
            }),
            _ => None,
        })
        .or_else(|| {
            effort.map(|effort| ir::Reasoning {
                effort: Some(effort),
                budget_tokens: None,
            })
        });
    let response_format = request.output_format.and_then(|format| {
        let schema = format.get("schema")?.clone();
        Some(ir::ResponseFormat::JsonSchema {
            name: "output".to_owned(),
            description: None,
            schema,
            strict: Some(true),
        })
    });
    Ok(ir::Request {
        model: request.model,
        messages,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        stop: request.stop_sequences.unwrap_or_default(),
        stream: request.stream,
        tools,
        tool_choice,
        parallel_tool_calls,
        reasoning,
        response_format,
        user: request.metadata.and_then(|metadata| metadata.user_id),
        openai: ir::OpenAiOptions::default(),
        client_tools: None,
    })
}

fn decode_block(
    block: api::ContentBlock,
    path: &dyn Fn() -> String,
    target: Format,
) -> Result<Option<Part>, ConvertError> {
    Ok(Some(match block {
        api::ContentBlock::Text(text) => Part::Text(text.text),
        api::ContentBlock::Image(image) => Part::Image(decode_source(image.source, path, target)?),
        api::ContentBlock::Document(document) => {
            let filename = document
                .extra
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match document.source {
                api::Source::Other(source)
                    if source.get("type").and_then(Value::as_str) == Some("text") =>
                {
                    Part::Text(
                        source
                            .get("data")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    )
                }
                source => Part::File {
                    media: decode_source(source, path, target)?,
                    filename,
                },
            }
        }
        api::ContentBlock::ToolUse(tool_use) => Part::ToolCall {
            id: tool_use.id,
            name: tool_use.name,
            arguments: ir::arguments_text(&tool_use.input),
        },
        api::ContentBlock::ToolResult(result) => {
            let mut content = Vec::new();
            match result.content {
                None => {}
                Some(api::Content::Text(text)) => content.push(Part::Text(text)),
                Some(api::Content::Blocks(blocks)) => {
                    for block in blocks {
                        match block {
                            api::ContentBlock::Text(text) => content.push(Part::Text(text.text)),
                            api::ContentBlock::Image(image) => content
                                .push(Part::Image(decode_source(image.source, path, target)?)),
                            // Internal: search results and documents inside tool results
                            // have no OpenAI counterpart; their text is what matters.
                            other => {
                                if let Ok(Value::Object(object)) = serde_json::to_value(&other)
                                    && let Some(Value::String(text)) = object.get("text")
                                {
                                    content.push(Part::Text(text.clone()));
                                }
                            }
                        }
                    }
                }
            }
            Part::ToolResult {
                call_id: result.tool_use_id,
                content,
                is_error: result.is_error.unwrap_or(false),
            }
        }
        api::ContentBlock::Thinking(thinking) => Part::Reasoning {
            text: thinking.thinking,
            signature: thinking.signature.filter(|signature| !signature.is_empty()),
        },
        api::ContentBlock::RedactedThinking(redacted) => Part::RedactedReasoning(redacted.data),
        api::ContentBlock::Other(object) => {
            let block_type = object
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if is_server_block(block_type) {
                return Ok(None);
            }
            return Err(ConvertError::Unsupported {
                path: path(),
                what: format!("block type `{block_type}`"),
                target,
            });
        }
    }))
}

fn decode_source(
    source: api::Source,
    path: &dyn Fn() -> String,
    target: Format,
) -> Result<ir::Media, ConvertError> {
    match source {
        api::Source::Base64(source) => Ok(ir::Media::Base64 {
            media_type: source.media_type,
            data: source.data,
        }),
        api::Source::Url(source) => Ok(ir::Media::Url(source.url)),
        api::Source::Other(source) => Err(ConvertError::Unsupported {
            path: format!("{}.source", path()),
            what: format!(
                "source type `{}`",
                source
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
            target,
        }),
    }
}

pub(crate) fn encode_request(request: ir::Request) -> api::Request {
    let mut system_texts: Vec<String> = Vec::new();
    let mut messages: Vec<api::Message> = Vec::with_capacity(request.messages.len());
    // Internal: ids of the tool calls in the latest assistant turn, to recognise orphan
    // tool results, which Anthropic rejects ("unexpected tool_use_id"). Consecutive
    // assistant messages merge into one turn below, so their calls add up.
    let mut open_calls: Vec<String> = Vec::new();
    for message in request.messages {
        let role = match message.role {
            Role::System | Role::Developer => {
                let text = ir::joined_text(&message.parts, "\n");
                if !text.is_empty() {
                    system_texts.push(text);
                }
                continue;
            }
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let mut blocks = Vec::with_capacity(message.parts.len());
        if message.role == Role::Assistant
            && messages.last().is_none_or(|last| last.role != "assistant")
        {
            // A new assistant turn: the results of the previous one were due before it.
            open_calls.clear();
        }
        for part in message.parts {
            match part {
                Part::Text(text) if text.is_empty() => {}
                Part::Text(text) => blocks.push(text_block(text)),
                Part::Image(media) => {
                    if let Some(source) = encode_source(media) {
                        blocks.push(api::ContentBlock::Image(api::ImageBlock {
                            source,
                            extra: Extra::new(),
                        }));
                    }
                }
                Part::File { media, filename } => {
                    if let Some(source) = encode_source(media) {
                        let mut extra = Extra::new();
                        if let Some(filename) = filename {
                            extra.insert("title".to_owned(), Value::String(filename));
                        }
                        blocks.push(api::ContentBlock::Document(api::DocumentBlock {
                            source,
                            extra,
                        }));
                    }
                }
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                } => {
                    let id = ir::anthropic_tool_id(&id);
                    open_calls.push(id.clone());
                    blocks.push(api::ContentBlock::ToolUse(api::ToolUseBlock {
                        id,
                        name,
                        input: ir::arguments_object(&arguments),
                        extra: Extra::new(),
                    }));
                }
                Part::ToolResult {
                    call_id,
                    content,
                    is_error,
                } => {
                    let call_id = ir::anthropic_tool_id(&call_id);
                    let content_blocks: Vec<api::ContentBlock> = content
                        .into_iter()
                        .filter_map(|part| match part {
                            Part::Text(text) => Some(text_block(text)),
                            Part::Image(media) => encode_source(media).map(|source| {
                                api::ContentBlock::Image(api::ImageBlock {
                                    source,
                                    extra: Extra::new(),
                                })
                            }),
                            _ => None,
                        })
                        .collect();
                    if open_calls.contains(&call_id) {
                        blocks.push(api::ContentBlock::ToolResult(api::ToolResultBlock {
                            tool_use_id: call_id,
                            content: Some(api::Content::Blocks(content_blocks)),
                            is_error: is_error.then_some(true),
                            extra: Extra::new(),
                        }));
                    } else {
                        let text: String = content_blocks
                            .iter()
                            .filter_map(|block| match block {
                                api::ContentBlock::Text(text) => Some(text.text.as_str()),
                                _ => None,
                            })
                            .collect::<Vec<_>>()
                            .join("\n");
                        blocks.push(text_block(format!("[tool result for {call_id}]\n{text}")));
                    }
                }
                // OpenAI's encrypted reasoning (carried in a signature for the client)
                // means nothing to Anthropic: dropped below like unsigned reasoning.
                Part::Reasoning {
                    text,
                    signature: Some(signature),
                } if message.role == Role::Assistant
                    && !signature.starts_with(super::openai_responses::OPENAI_REASONING) =>
                {
                    blocks.push(api::ContentBlock::Thinking(api::ThinkingBlock {
                        thinking: text,
                        signature: Some(signature),
                        extra: Extra::new(),
                    }));
                }
                Part::RedactedReasoning(data) if message.role == Role::Assistant => {
                    blocks.push(api::ContentBlock::RedactedThinking(
                        api::RedactedThinkingBlock {
                            data,
                            extra: Extra::new(),
                        },
                    ));
                }
                // Reasoning without an Anthropic signature cannot be verified by the API.
                Part::Reasoning { .. } | Part::RedactedReasoning(_) => {}
            }
        }
        if role == "user" {
            // Anthropic wants tool results before any other block of the turn.
            blocks.sort_by_key(|block| !matches!(block, api::ContentBlock::ToolResult(_)));
        }
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => {
                if let api::Content::Blocks(existing) = &mut last.content {
                    existing.extend(blocks);
                    if role == "user" {
                        existing.sort_by_key(|block| {
                            !matches!(block, api::ContentBlock::ToolResult(_))
                        });
                    }
                }
            }
            _ => messages.push(api::Message {
                role: role.to_owned(),
                content: api::Content::Blocks(blocks),
                extra: Extra::new(),
            }),
        }
    }
    if let Some(instruction) = request
        .response_format
        .as_ref()
        .and_then(ir::structured_output_instruction)
    {
        system_texts.push(instruction);
    }
    let mut max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let mut temperature = request.temperature;
    let mut top_p = request.top_p;
    let mut top_k = request.top_k;
    // Anthropic rejects thinking with a tool choice that forces tool use; the forced tool
    // is what the client asked for, so thinking gives way.
    let forces_tool_use = !request.tools.is_empty()
        && matches!(
            request.tool_choice,
            Some(ir::ToolChoice::Required | ir::ToolChoice::Named(_))
        );
    let thinking = request
        .reasoning
        .as_ref()
        .filter(|reasoning| !reasoning.is_off())
        .filter(|_| !forces_tool_use)
        .filter(|_| last_tool_turn_has_thinking(&messages))
        .map(|reasoning| {
            let budget = reasoning.budget_tokens();
            if max_tokens <= budget {
                max_tokens = budget + DEFAULT_MAX_TOKENS;
            }
            // Thinking rejects a changed temperature or top_k, and top_p below 0.95.
            temperature = temperature.filter(|temperature| *temperature == 1.0);
            top_k = None;
            top_p = top_p.filter(|top_p| *top_p >= 0.95);
            api::Thinking {
                kind: "enabled".to_owned(),
                budget_tokens: Some(budget),
                extra: Extra::new(),
            }
        });
    if temperature.is_some() {
        // Recent Claude models reject temperature and top_p together.
        top_p = None;
    }
    let has_tools = !request.tools.is_empty();
    let tools: Vec<api::Tool> = request
        .tools
        .into_iter()
        .map(|tool| api::Tool {
            kind: None,
            name: tool.name,
            description: tool.description,
            input_schema: Some(tool.parameters),
            extra: Extra::new(),
        })
        .collect();
    let disable_parallel = (request.parallel_tool_calls == Some(false)).then_some(true);
    let tool_choice = if has_tools {
        let kind = |kind: &str| kind.to_owned();
        match (request.tool_choice, disable_parallel) {
            (Some(ir::ToolChoice::Auto), _) | (None, Some(_)) => Some((kind("auto"), None)),
            (Some(ir::ToolChoice::Required), _) => Some((kind("any"), None)),
            (Some(ir::ToolChoice::None), _) => Some((kind("none"), None)),
            (Some(ir::ToolChoice::Named(name)), _) => Some((kind("tool"), Some(name))),
            (None, None) => None,
        }
        .map(|(kind, name)| api::ToolChoice {
            disable_parallel_tool_use: disable_parallel.filter(|_| kind != "none"),
            kind,
            name,
            extra: Extra::new(),
        })
    } else {
        None
    };
    api::Request {
        model: request.model,
        messages,
        max_tokens: Some(max_tokens),
        system: (!system_texts.is_empty()).then(|| api::System::Text(system_texts.join("\n\n"))),
        stream: request.stream,
        temperature,
        top_p,
        top_k,
        stop_sequences: (!request.stop.is_empty()).then_some(request.stop),
        tools: has_tools.then_some(tools),
        tool_choice,
        thinking,
        metadata: request.user.map(|user_id| api::Metadata {
            user_id: Some(user_id),
            extra: Extra::new(),
        }),
        output_format: None,
        extra: Extra::new(),
    }
}

/// With thinking on, Anthropic requires the assistant turn that made the pending tool calls
/// to start with its (signed) thinking block. History from another format has none, so
/// thinking is left off for such a request rather than have it rejected.
fn last_tool_turn_has_thinking(messages: &[api::Message]) -> bool {
    let Some(last_assistant) = messages
        .iter()
        .rev()
        .find(|message| message.role == "assistant")
    else {
        return true;
    };
    let api::Content::Blocks(blocks) = &last_assistant.content else {
        return true;
    };
    let calls_tools = blocks
        .iter()
        .any(|block| matches!(block, api::ContentBlock::ToolUse(_)));
    !calls_tools
        || matches!(
            blocks.first(),
            Some(api::ContentBlock::Thinking(_) | api::ContentBlock::RedactedThinking(_))
        )
}

fn text_block(text: String) -> api::ContentBlock {
    api::ContentBlock::Text(api::TextBlock {
        text,
        extra: Extra::new(),
    })
}

/// OpenAI file ids mean nothing to Anthropic, so such media is dropped.
fn encode_source(media: ir::Media) -> Option<api::Source> {
    match media {
        ir::Media::Base64 { media_type, data } => Some(api::Source::Base64(api::Base64Source {
            media_type,
            data,
            extra: Extra::new(),
        })),
        ir::Media::Url(url) => Some(api::Source::Url(api::UrlSource {
            url,
            extra: Extra::new(),
        })),
        ir::Media::FileId(_) => None,
    }
}

pub(crate) fn decode_usage(usage: &api::Usage) -> ir::Usage {
    let cache_read = usage.cache_read_input_tokens.unwrap_or(0);
    let cache_creation = usage.cache_creation_input_tokens.unwrap_or(0);
    ir::Usage {
        input: usage.input_tokens.unwrap_or(0) + cache_read + cache_creation,
        output: usage.output_tokens.unwrap_or(0),
        cache_read,
        cache_creation,
        reasoning: 0,
    }
}

fn encode_usage(usage: &ir::Usage) -> api::Usage {
    api::Usage {
        input_tokens: Some(usage.uncached_input()),
        output_tokens: Some(usage.output),
        cache_creation_input_tokens: Some(usage.cache_creation),
        cache_read_input_tokens: Some(usage.cache_read),
        extra: Extra::new(),
    }
}

pub(crate) fn decode_response(response: api::Response) -> ir::Response {
    let mut parts = Vec::with_capacity(response.content.len());
    for block in response.content {
        match block {
            api::ContentBlock::Text(text) => parts.push(Part::Text(text.text)),
            api::ContentBlock::ToolUse(tool_use) => parts.push(Part::ToolCall {
                id: tool_use.id,
                name: tool_use.name,
                arguments: ir::arguments_text(&tool_use.input),
            }),
            api::ContentBlock::Thinking(thinking) => parts.push(Part::Reasoning {
                text: thinking.thinking,
                signature: thinking.signature.filter(|signature| !signature.is_empty()),
            }),
            api::ContentBlock::RedactedThinking(redacted) => {
                parts.push(Part::RedactedReasoning(redacted.data))
            }
            // Server tool calls and their results were handled by Anthropic already.
            _ => {}
        }
    }
    ir::Response {
        id: response.id,
        model: response.model,
        created: None,
        parts,
        stop: ir::Stop {
            reason: response
                .stop_reason
                .as_deref()
                .map(ir::StopReason::from_anthropic)
                .unwrap_or_default(),
            sequence: response.stop_sequence,
        },
        usage: decode_usage(&response.usage),
    }
}

pub(crate) fn encode_response(response: ir::Response) -> api::Response {
    let stop_reason = response.effective_stop();
    let content = response
        .parts
        .into_iter()
        .filter_map(|part| match part {
            Part::Text(text) => Some(text_block(text)),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some(api::ContentBlock::ToolUse(api::ToolUseBlock {
                id: ir::anthropic_tool_id(&id),
                name,
                input: ir::arguments_object(&arguments),
                extra: Extra::new(),
            })),
            Part::Reasoning { text, signature } => {
                Some(api::ContentBlock::Thinking(api::ThinkingBlock {
                    thinking: text,
                    signature: Some(signature.unwrap_or_default()),
                    extra: Extra::new(),
                }))
            }
            Part::RedactedReasoning(data) => Some(api::ContentBlock::RedactedThinking(
                api::RedactedThinkingBlock {
                    data,
                    extra: Extra::new(),
                },
            )),
            _ => None,
        })
        .collect();
    api::Response {
        id: response.id,
        kind: "message".to_owned(),
        role: "assistant".to_owned(),
        model: response.model,
        content,
        stop_reason: Some(stop_reason.anthropic().to_owned()),
        stop_sequence: response.stop.sequence,
        usage: encode_usage(&response.usage),
        extra: Extra::new(),
    }
}

/// Anthropic stream events to internal events.
#[derive(Debug, Default)]
pub(crate) struct StreamDecoder {
    /// The upstream block being read is one this crate forwards.
    in_block: bool,
    usage: api::Usage,
}

impl StreamDecoder {
    pub(crate) fn push(&mut self, event: &sse::Event, out: &mut Vec<ir::Event>) {
        let Ok(event) = api::StreamEvent::parse(event) else {
            return;
        };
        match event {
            api::StreamEvent::MessageStart(start) => {
                self.usage = start.message.usage;
                out.push(ir::Event::Start {
                    id: start.message.id,
                    model: start.message.model,
                    created: None,
                    usage: decode_usage(&self.usage),
                });
            }
            api::StreamEvent::ContentBlockStart(start) => {
                self.in_block = true;
                match start.content_block {
                    api::ContentBlock::Text(text) => {
                        out.push(ir::Event::BlockStart(Block::Text));
                        if !text.text.is_empty() {
                            out.push(ir::Event::Text(text.text));
                        }
                    }
                    api::ContentBlock::Thinking(thinking) => {
                        out.push(ir::Event::BlockStart(Block::Reasoning));
                        if !thinking.thinking.is_empty() {
                            out.push(ir::Event::Reasoning(thinking.thinking));
                        }
                        if let Some(signature) = thinking.signature.filter(|s| !s.is_empty()) {
                            out.push(ir::Event::Signature(signature));
                        }
                    }
                    api::ContentBlock::ToolUse(tool_use) => {
                        out.push(ir::Event::BlockStart(Block::ToolCall {
                            id: tool_use.id,
                            name: tool_use.name,
                        }));
                        if tool_use
                            .input
                            .as_object()
                            .is_some_and(|input| !input.is_empty())
                        {
                            out.push(ir::Event::ToolArgs(ir::arguments_text(&tool_use.input)));
                        }
                    }
                    // Redacted thinking and server tool blocks have no OpenAI counterpart.
                    _ => self.in_block = false,
                }
            }
            api::StreamEvent::ContentBlockDelta(delta) if self.in_block => match delta.delta {
                api::Delta::Text(text) => out.push(ir::Event::Text(text.text)),
                api::Delta::InputJson(json) => out.push(ir::Event::ToolArgs(json.partial_json)),
                api::Delta::Thinking(thinking) => out.push(ir::Event::Reasoning(thinking.thinking)),
                api::Delta::Signature(signature) => {
                    out.push(ir::Event::Signature(signature.signature))
                }
                api::Delta::Other(_) => {}
            },
            api::StreamEvent::ContentBlockStop(_) if self.in_block => {
                self.in_block = false;
                out.push(ir::Event::BlockStop);
            }
            api::StreamEvent::MessageDelta(delta) => {
                if let Some(usage) = delta.usage {
                    let merge = |into: &mut Option<u64>, from: Option<u64>| {
                        if from.is_some() {
                            *into = from;
                        }
                    };
                    merge(&mut self.usage.input_tokens, usage.input_tokens);
                    merge(&mut self.usage.output_tokens, usage.output_tokens);
                    merge(
                        &mut self.usage.cache_read_input_tokens,
                        usage.cache_read_input_tokens,
                    );
                    merge(
                        &mut self.usage.cache_creation_input_tokens,
                        usage.cache_creation_input_tokens,
                    );
                }
                out.push(ir::Event::Finish {
                    stop: ir::Stop {
                        reason: delta
                            .delta
                            .stop_reason
                            .as_deref()
                            .map(ir::StopReason::from_anthropic)
                            .unwrap_or_default(),
                        sequence: delta.delta.stop_sequence,
                    },
                    usage: decode_usage(&self.usage),
                });
            }
            api::StreamEvent::MessageStop(_) => out.push(ir::Event::Finish {
                stop: ir::Stop::default(),
                usage: decode_usage(&self.usage),
            }),
            api::StreamEvent::Error(error) => out.push(ir::Event::Error {
                kind: ErrorKind::from_type(&error.error.kind).unwrap_or(ErrorKind::Api),
                message: error.error.message,
            }),
            _ => {}
        }
    }
}

/// Internal events to Anthropic stream events.
#[derive(Debug, Default)]
pub(crate) struct StreamEncoder {
    model: Option<String>,
    index: usize,
    saw_tool_call: bool,
}

impl StreamEncoder {
    pub(crate) fn new(model: Option<String>) -> Self {
        StreamEncoder {
            model,
            ..StreamEncoder::default()
        }
    }

    pub(crate) fn push(&mut self, event: ir::Event, out: &mut Vec<sse::Event>) {
        let index = self.index;
        let delta = |delta: api::Delta| {
            api::StreamEvent::ContentBlockDelta(api::ContentBlockDelta {
                index,
                delta,
                extra: Extra::new(),
            })
        };
        let event = match event {
            ir::Event::Start {
                id, model, usage, ..
            } => {
                let mut usage = encode_usage(&usage);
                usage.output_tokens = Some(0);
                api::StreamEvent::MessageStart(api::MessageStart {
                    message: api::Response {
                        id,
                        kind: "message".to_owned(),
                        role: "assistant".to_owned(),
                        model: self.model.clone().unwrap_or(model),
                        content: Vec::new(),
                        stop_reason: None,
                        stop_sequence: None,
                        usage,
                        extra: Extra::new(),
                    },
                    extra: Extra::new(),
                })
            }
            ir::Event::BlockStart(block) => {
                let content_block = match block {
                    Block::Text => text_block(String::new()),
                    Block::Reasoning => api::ContentBlock::Thinking(api::ThinkingBlock {
                        thinking: String::new(),
                        signature: Some(String::new()),
                        extra: Extra::new(),
                    }),
                    Block::ToolCall { id, name } => {
                        self.saw_tool_call = true;
                        api::ContentBlock::ToolUse(api::ToolUseBlock {
                            id: ir::anthropic_tool_id(&id),
                            name,
                            input: Value::Object(Default::default()),
                            extra: Extra::new(),
                        })
                    }
                };
                api::StreamEvent::ContentBlockStart(api::ContentBlockStart {
                    index,
                    content_block,
                    extra: Extra::new(),
                })
            }
            ir::Event::Text(text) => delta(api::Delta::Text(api::TextDelta {
                text,
                extra: Extra::new(),
            })),
            ir::Event::Reasoning(thinking) => delta(api::Delta::Thinking(api::ThinkingDelta {
                thinking,
                extra: Extra::new(),
            })),
            ir::Event::Signature(signature) => delta(api::Delta::Signature(api::SignatureDelta {
                signature,
                extra: Extra::new(),
            })),
            ir::Event::ToolArgs(partial_json) => {
                delta(api::Delta::InputJson(api::InputJsonDelta {
                    partial_json,
                    extra: Extra::new(),
                }))
            }
            ir::Event::BlockStop => {
                self.index += 1;
                api::StreamEvent::ContentBlockStop(api::ContentBlockStop {
                    index,
                    extra: Extra::new(),
                })
            }
            ir::Event::Finish { stop, usage } => {
                let reason = if stop.reason == ir::StopReason::EndTurn && self.saw_tool_call {
                    ir::StopReason::ToolUse
                } else {
                    stop.reason
                };
                out.push(
                    api::StreamEvent::MessageDelta(api::MessageDelta {
                        delta: api::MessageDeltaBody {
                            stop_reason: Some(reason.anthropic().to_owned()),
                            stop_sequence: stop.sequence,
                            extra: Extra::new(),
                        },
                        usage: Some(encode_usage(&usage)),
                        extra: Extra::new(),
                    })
                    .to_sse(),
                );
                api::StreamEvent::MessageStop(api::Empty::default())
            }
            ir::Event::Error { kind, message } => api::StreamEvent::Error(api::StreamError {
                error: api::ErrorDetail {
                    kind: kind.anthropic_type().to_owned(),
                    message,
                    extra: Extra::new(),
                },
                extra: Extra::new(),
            }),
        };
        out.push(event.to_sse());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(body: Value) -> Result<ir::Request, ConvertError> {
        decode_request(
            serde_json::from_value(body).expect("valid model"),
            Format::OpenAiChat,
        )
    }

    #[test]
    fn unknown_roles_are_refused_with_their_path() {
        let error = decode(json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}))
            .expect_err("robots are not a role");
        assert_eq!(
            error.to_string(),
            "invalid anthropic.messages body: messages[0].role: unknown role `robot`"
        );
    }

    #[test]
    fn system_and_developer_turns_inside_messages_keep_their_place() {
        // Claude Code 2.1.x: environment notes as a `system` turn after the prompt.
        let request = decode(json!({"model": "m", "system": "Top", "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": [{"type": "text", "text": "# Environment", "cache_control": {"type": "ephemeral"}}]},
            {"role": "developer", "content": "Be brief."},
        ]}))
        .expect("system turns are accepted");
        let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::User, Role::System, Role::Developer]
        );
        assert_eq!(
            request.messages[2].parts,
            [Part::Text("# Environment".to_owned())]
        );
        // Back to Anthropic they join the top-level system prompt.
        let back = encode_request(request);
        assert!(back.messages.iter().all(|m| m.role == "user"));
        let system = serde_json::to_string(&back.system).unwrap();
        assert!(
            system.contains("Top")
                && system.contains("# Environment")
                && system.contains("Be brief."),
            "{system}"
        );
    }

    #[test]
    fn consecutive_turns_merge_and_tool_results_come_first() {
        let request = ir::Request {
            messages: vec![
                ir::Message::new(
                    Role::Assistant,
                    vec![Part::ToolCall {
                        id: "toolu_1".into(),
                        name: "f".into(),
                        arguments: "{}".into(),
                    }],
                ),
                ir::Message::new(Role::User, vec![Part::Text("also".into())]),
                ir::Message::new(
                    Role::User,
                    vec![Part::ToolResult {
                        call_id: "toolu_1".into(),
                        content: vec![Part::Text("ok".into())],
                        is_error: true,
                    }],
                ),
            ],
            ..ir::Request::default()
        };
        let encoded = serde_json::to_value(encode_request(request)).expect("serialises");
        assert_eq!(encoded["messages"].as_array().map(Vec::len), Some(2));
        assert_eq!(encoded["messages"][1]["content"][0]["type"], "tool_result");
        assert_eq!(encoded["messages"][1]["content"][0]["is_error"], true);
        assert_eq!(encoded["messages"][1]["content"][1]["text"], "also");
    }

    fn split_turn() -> ir::Request {
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
        ir::Request {
            messages: vec![
                ir::Message::new(Role::User, vec![Part::Text("go".into())]),
                ir::Message::new(Role::Assistant, vec![call("call_1")]),
                ir::Message::new(Role::Assistant, vec![call("call_2")]),
                ir::Message::new(Role::User, vec![result("call_1"), result("call_2")]),
            ],
            ..ir::Request::default()
        }
    }

    #[test]
    fn consecutive_assistant_messages_keep_their_calls_open() {
        let encoded = serde_json::to_value(encode_request(split_turn())).expect("serialises");
        let messages = encoded["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 3, "{encoded}");
        assert_eq!(messages[1]["content"].as_array().map(Vec::len), Some(2));
        let results: Vec<&Value> = messages[2]["content"]
            .as_array()
            .expect("blocks")
            .iter()
            .map(|block| &block["tool_use_id"])
            .collect();
        assert_eq!(results, [&json!("call_1"), &json!("call_2")]);
    }

    #[test]
    fn the_stream_decoder_skips_blocks_openai_cannot_show() {
        let mut decoder = StreamDecoder::default();
        let mut out = Vec::new();
        for data in [
            json!({"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}),
            json!({"type":"content_block_stop","index":0}),
        ] {
            decoder.push(&sse::Event::new("x", data.to_string()), &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
    }
}
