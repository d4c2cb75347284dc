//! The client's side: requests in the three formats read into one
//! [`Conversation`], and the CLI's answer written back in the client's format,
//! whole or as Server-Sent Events.
//!
//! The host's format converters are not offered to plugins (plugin API 1.3
//! has no call for them), so this is a small conversion of its own, for text
//! conversations: the CLI runs its own tools and cannot call a client's, so a
//! client's tool definitions, tool calls and tool results are refused (see
//! [`tools_refused`]; the definitions may be dropped instead, by config), and
//! image blocks too.

use ccproxy_plugin_abi::{Value, json};

/// The wire format of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientFormat {
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    Chat,
    /// OpenAI Responses (`/v1/responses`).
    Responses,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    User,
    Assistant,
}

/// A request, as far as the CLI can take it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Conversation {
    /// System text (top-level and system-role messages), appended to the CLI's own.
    pub(crate) system: String,
    pub(crate) turns: Vec<(Role, String)>,
    pub(crate) model: Option<String>,
    pub(crate) stream: bool,
    /// Chat Completions' `stream_options.include_usage`.
    pub(crate) include_usage: bool,
    /// The field in which the request declares tools for the model to call
    /// (`tools`, Chat's legacy `functions`): refused unless the config drops them.
    pub(crate) declared_tools: Option<&'static str>,
}

/// The other route of this proxy that answers `format` with tool calls.
fn route_with_tools(format: ClientFormat) -> &'static str {
    match format {
        ClientFormat::Anthropic => "/claude/v1/messages",
        ClientFormat::Chat => "/claude/v1/chat/completions",
        ClientFormat::Responses => "/claude/v1/responses",
    }
}

/// Why a request with the client's tools (`what`) is refused, and where to
/// go instead: Claude Code in stream-json mode runs its own tools and has no
/// way to hand a call of the client's tool back to the client and take its
/// result later.
pub(crate) fn tools_refused(format: ClientFormat, what: &str) -> String {
    format!(
        "claude_sdk cannot use the client's tools ({what}): the Claude Code CLI answers with text and calls only its own tools (allow them with [plugins.claude_sdk] cli_args, e.g. [\"--allowedTools\", \"Read\"]). Send requests with tools to {} (the Anthropic API, which returns tool calls), or leave the tools out",
        route_with_tools(format)
    )
}

/// [`tools_refused`] for tool definitions, which a config may drop instead.
pub(crate) fn tool_definitions_refused(format: ClientFormat, field: &str) -> String {
    format!(
        "{}; a client that always sends tool definitions it can do without (Claude Code does) is let through with [plugins.claude_sdk] client_tools = \"ignore\", which drops them",
        tools_refused(format, &format!("`{field}`"))
    )
}

/// A content block of the answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    Text(String),
    Thinking { thinking: String, signature: String },
}

impl Block {
    /// The block of a CLI assistant message, if a client is shown it (the
    /// CLI's own tool calls are not).
    pub(crate) fn from_cli(block: &Value) -> Option<Self> {
        match block["type"].as_str()? {
            "text" => Some(Block::Text(block["text"].as_str()?.to_owned())),
            "thinking" => Some(Block::Thinking {
                thinking: block["thinking"].as_str().unwrap_or_default().to_owned(),
                signature: block["signature"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => None,
        }
    }
}

/// What kind of block [`Encoder::begin`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Text,
    Thinking,
}

/// A piece of a streamed block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Delta {
    Text(String),
    Thinking(String),
    Signature(String),
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cache_creation_input_tokens: u64,
    pub(crate) cache_read_input_tokens: u64,
}

impl Usage {
    pub(crate) fn from_anthropic(usage: &Value) -> Self {
        let count = |key: &str| usage[key].as_u64().unwrap_or(0);
        Self {
            input_tokens: count("input_tokens"),
            output_tokens: count("output_tokens"),
            cache_creation_input_tokens: count("cache_creation_input_tokens"),
            cache_read_input_tokens: count("cache_read_input_tokens"),
        }
    }

    fn anthropic(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        })
    }

    /// All input tokens, cached ones included (what OpenAI formats count).
    fn prompt_tokens(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }

    fn chat(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens(),
            "completion_tokens": self.output_tokens,
            "total_tokens": self.prompt_tokens() + self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read_input_tokens},
        })
    }

    fn responses(&self) -> Value {
        json!({
            "input_tokens": self.prompt_tokens(),
            "input_tokens_details": {"cached_tokens": self.cache_read_input_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.prompt_tokens() + self.output_tokens,
        })
    }
}

/// The text of a content value: a string, or an array of text parts
/// (`text`, `input_text`, `output_text`); thinking parts are skipped, anything
/// else is refused.
fn content_text(format: ClientFormat, content: &Value, at: &str) -> Result<String, String> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for (n, part) in parts.iter().enumerate() {
                let kind = part["type"].as_str().unwrap_or("text");
                match kind {
                    "text" | "input_text" | "output_text" => texts.push(
                        part["text"]
                            .as_str()
                            .ok_or_else(|| format!("{at}[{n}].text must be a string"))?,
                    ),
                    "thinking" | "redacted_thinking" | "reasoning" => {}
                    // tool_use, tool_result, server_tool_use, web_search_tool_result,
                    // function_call, function_call_output, ...
                    kind if kind.contains("tool") || kind.contains("call") => {
                        return Err(format!(
                            "{at}[{n}]: {}",
                            tools_refused(format, &format!("a `{kind}` block"))
                        ));
                    }
                    other => {
                        return Err(format!(
                            "{at}[{n}]: claude_sdk takes text content only, not `{other}` blocks"
                        ));
                    }
                }
            }
            Ok(texts.join("\n\n"))
        }
        other => Err(format!(
            "{at} must be a string or an array of parts, not {}",
            kind_name(other)
        )),
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Conversation {
    /// Reads a request body of `format`.
    pub(crate) fn parse(format: ClientFormat, body: &[u8]) -> Result<Self, String> {
        let request: Value = ccproxy_plugin_abi::serde_json::from_slice(body)
            .map_err(|error| format!("the body is not JSON: {error}"))?;
        if !request.is_object() {
            return Err(format!(
                "the body must be a JSON object, not {}",
                kind_name(&request)
            ));
        }
        let mut conversation = Conversation {
            model: request["model"]
                .as_str()
                .filter(|model| !model.is_empty())
                .map(str::to_owned),
            stream: request["stream"].as_bool().unwrap_or(false),
            include_usage: request["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            ..Conversation::default()
        };
        let fields: &[&'static str] = match format {
            ClientFormat::Chat => &["tools", "functions"],
            _ => &["tools"],
        };
        conversation.declared_tools = fields.iter().copied().find(|field| {
            request[*field]
                .as_array()
                .is_some_and(|tools| !tools.is_empty())
        });
        let mut system = Vec::new();
        let (items, field) = match format {
            ClientFormat::Anthropic => {
                let text = content_text(format, &request["system"], "system")?;
                system.push(text);
                (&request["messages"], "messages")
            }
            ClientFormat::Chat => (&request["messages"], "messages"),
            ClientFormat::Responses => {
                if let Some(instructions) = request["instructions"].as_str() {
                    system.push(instructions.to_owned());
                }
                if let Some(text) = request["input"].as_str() {
                    conversation.turns.push((Role::User, text.to_owned()));
                }
                (&request["input"], "input")
            }
        };
        if let Some(items) = items.as_array() {
            for (n, item) in items.iter().enumerate() {
                let at = format!("{field}[{n}]");
                if let Some(kind) = item["type"].as_str()
                    && kind != "message"
                {
                    if kind == "reasoning" {
                        continue;
                    }
                    if kind.contains("call") || kind.contains("tool") {
                        return Err(format!(
                            "{at}: {}",
                            tools_refused(format, &format!("a `{kind}` item"))
                        ));
                    }
                    return Err(format!(
                        "{at}: claude_sdk takes messages only, not `{kind}` items"
                    ));
                }
                for calls in ["tool_calls", "function_call"] {
                    if item[calls].is_object()
                        || item[calls]
                            .as_array()
                            .is_some_and(|calls| !calls.is_empty())
                    {
                        return Err(format!(
                            "{at}: {}",
                            tools_refused(format, &format!("an assistant message's `{calls}`"))
                        ));
                    }
                }
                let text = content_text(format, &item["content"], &format!("{at}.content"))?;
                match item["role"].as_str() {
                    Some(role @ ("tool" | "function")) => {
                        return Err(format!(
                            "{at}: {}",
                            tools_refused(format, &format!("a `{role}` message"))
                        ));
                    }
                    Some("system" | "developer") => system.push(text),
                    Some("user") => conversation.turns.push((Role::User, text)),
                    Some("assistant") => conversation.turns.push((Role::Assistant, text)),
                    Some(other) => {
                        return Err(format!(
                            "{at}.role: claude_sdk takes system, user and assistant messages, not `{other}`"
                        ));
                    }
                    None => return Err(format!("{at}.role is missing")),
                }
            }
        } else if !(format == ClientFormat::Responses && items.is_string()) {
            return Err(format!("`{field}` must be an array of messages"));
        }
        conversation.system = system
            .into_iter()
            .filter(|text| !text.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");
        if conversation.latest_user_text().trim().is_empty() {
            return Err(format!(
                "`{field}` must end with a user message that has text"
            ));
        }
        Ok(conversation)
    }

    /// The user messages after the last assistant message: what a CLI that
    /// holds the conversation so far is sent.
    pub(crate) fn latest_user_text(&self) -> String {
        let start = self
            .turns
            .iter()
            .rposition(|(role, _)| *role == Role::Assistant)
            .map_or(0, |last| last + 1);
        self.turns[start..]
            .iter()
            .map(|(_, text)| text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    /// What a fresh CLI is sent: the latest user text, after the earlier turns
    /// as a transcript when there are any.
    pub(crate) fn first_message(&self) -> String {
        let start = self
            .turns
            .iter()
            .rposition(|(role, _)| *role == Role::Assistant)
            .map_or(0, |last| last + 1);
        if start == 0 {
            return self.latest_user_text();
        }
        let mut text = String::from("<conversation_so_far>\n");
        for (role, turn) in &self.turns[..start] {
            let name = match role {
                Role::User => "User",
                Role::Assistant => "Assistant",
            };
            text.push_str(&format!("{name}: {turn}\n\n"));
        }
        text.push_str("</conversation_so_far>\n\n");
        text.push_str(&self.latest_user_text());
        text
    }
}

/// How the turn ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) stop_reason: String,
    pub(crate) usage: Usage,
}

/// Writes one answer in the client's format: each block as it comes (SSE),
/// and the whole answer.
#[derive(Debug)]
pub(crate) struct Encoder {
    format: ClientFormat,
    id: String,
    item_id: String,
    pub(crate) model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    /// Blocks written so far (an Anthropic block index is its position).
    blocks: Vec<Block>,
    /// Whether the last block is still being streamed.
    open: bool,
    /// The input tokens `message_start` reports (Claude Code reads its context size there).
    pub(crate) start_usage: Usage,
    sequence: u64,
}

impl Encoder {
    pub(crate) fn new(
        format: ClientFormat,
        request_id: &str,
        model: &str,
        include_usage: bool,
    ) -> Self {
        let tag: String = request_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let id = match format {
            ClientFormat::Anthropic => format!("msg_sdk_{tag}"),
            ClientFormat::Chat => format!("chatcmpl-sdk{tag}"),
            ClientFormat::Responses => format!("resp_sdk_{tag}"),
        };
        Self {
            format,
            item_id: format!("msg_sdk_{tag}"),
            id,
            model: model.to_owned(),
            created,
            include_usage,
            started: false,
            blocks: Vec::new(),
            open: false,
            start_usage: Usage::default(),
            sequence: 0,
        }
    }

    /// All text of the answer.
    pub(crate) fn text(&self) -> String {
        self.blocks
            .iter()
            .filter_map(|block| match block {
                Block::Text(text) => Some(text.as_str()),
                Block::Thinking { .. } => None,
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    fn event(&mut self, name: &str, mut data: Value) -> String {
        if self.format == ClientFormat::Responses {
            data["sequence_number"] = Value::from(self.sequence);
            self.sequence += 1;
        }
        data["type"] = Value::from(name);
        format!("event: {name}\ndata: {data}\n\n")
    }

    fn chat_chunk(&self, delta: Value, finish_reason: Value) -> String {
        let chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        });
        format!("data: {chunk}\n\n")
    }

    fn responses_message(&self, status: &str) -> Value {
        let text = self.text();
        let content = if status == "completed" {
            json!([{"type": "output_text", "text": text, "annotations": []}])
        } else {
            json!([])
        };
        json!({"id": self.item_id, "type": "message", "status": status, "role": "assistant",
               "content": content})
    }

    fn responses_object(&self, status: &str, usage: Option<&Usage>) -> Value {
        let output = if status == "completed" {
            json!([self.responses_message("completed")])
        } else {
            json!([])
        };
        json!({
            "id": self.id, "object": "response", "created_at": self.created,
            "status": status, "model": self.model, "output": output,
            "usage": usage.map(Usage::responses),
        })
    }

    /// The opening events (sent before the first block).
    fn start(&mut self) -> String {
        if self.started {
            return String::new();
        }
        self.started = true;
        match self.format {
            ClientFormat::Anthropic => {
                let message = json!({
                    "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": self.start_usage.anthropic(),
                });
                self.event("message_start", json!({"message": message}))
            }
            ClientFormat::Chat => {
                self.chat_chunk(json!({"role": "assistant", "content": ""}), Value::Null)
            }
            ClientFormat::Responses => {
                let response = self.responses_object("in_progress", None);
                let mut out = self.event("response.created", json!({"response": response}));
                let item = self.responses_message("in_progress");
                out += &self.event(
                    "response.output_item.added",
                    json!({"output_index": 0, "item": item}),
                );
                out += &self.event(
                    "response.content_part.added",
                    json!({"item_id": self.item_id, "output_index": 0, "content_index": 0,
                           "part": {"type": "output_text", "text": "", "annotations": []}}),
                );
                out
            }
        }
    }

    /// Takes one whole block; answers its events (for a stream).
    pub(crate) fn block(&mut self, block: Block) -> String {
        match block {
            Block::Text(text) => {
                self.begin(BlockKind::Text) + &self.delta(Delta::Text(text)) + &self.end()
            }
            Block::Thinking {
                thinking,
                signature,
            } => {
                self.begin(BlockKind::Thinking)
                    + &self.delta(Delta::Thinking(thinking))
                    + &self.delta(Delta::Signature(signature))
                    + &self.end()
            }
        }
    }

    /// Opens a block streamed piece by piece ([`Encoder::delta`], then [`Encoder::end`]).
    pub(crate) fn begin(&mut self, kind: BlockKind) -> String {
        let mut out = self.start();
        if self.open {
            out += &self.end();
        }
        let index = self.blocks.len();
        let separator = if self.text().is_empty() { "" } else { "\n\n" };
        match (self.format, kind) {
            (ClientFormat::Anthropic, BlockKind::Text) => {
                out += &self.event(
                    "content_block_start",
                    json!({"index": index, "content_block": {"type": "text", "text": ""}}),
                );
            }
            (ClientFormat::Anthropic, BlockKind::Thinking) => {
                out += &self.event(
                    "content_block_start",
                    json!({"index": index,
                           "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                );
            }
            // Texts of several blocks are one text for OpenAI clients, a blank line apart.
            (ClientFormat::Chat, BlockKind::Text) if !separator.is_empty() => {
                out += &self.chat_chunk(json!({"content": separator}), Value::Null);
            }
            (ClientFormat::Responses, BlockKind::Text) if !separator.is_empty() => {
                out += &self.event(
                    "response.output_text.delta",
                    json!({"item_id": self.item_id, "output_index": 0, "content_index": 0,
                           "delta": separator}),
                );
            }
            _ => {}
        }
        self.blocks.push(match kind {
            BlockKind::Text => Block::Text(String::new()),
            BlockKind::Thinking => Block::Thinking {
                thinking: String::new(),
                signature: String::new(),
            },
        });
        self.open = true;
        out
    }

    /// A piece of the open block (nothing when none is open or the piece
    /// does not fit it).
    pub(crate) fn delta(&mut self, delta: Delta) -> String {
        if !self.open {
            return String::new();
        }
        let index = self.blocks.len() - 1;
        let format = self.format;
        let Some(block) = self.blocks.last_mut() else {
            return String::new();
        };
        match (block, delta) {
            (Block::Text(text), Delta::Text(piece)) => {
                text.push_str(&piece);
                match format {
                    ClientFormat::Anthropic => self.event(
                        "content_block_delta",
                        json!({"index": index, "delta": {"type": "text_delta", "text": piece}}),
                    ),
                    ClientFormat::Chat => self.chat_chunk(json!({"content": piece}), Value::Null),
                    ClientFormat::Responses => self.event(
                        "response.output_text.delta",
                        json!({"item_id": self.item_id, "output_index": 0, "content_index": 0,
                               "delta": piece}),
                    ),
                }
            }
            (Block::Thinking { thinking, .. }, Delta::Thinking(piece)) => {
                thinking.push_str(&piece);
                if format != ClientFormat::Anthropic {
                    // OpenAI clients are not shown Anthropic's signed thinking.
                    return String::new();
                }
                self.event(
                    "content_block_delta",
                    json!({"index": index, "delta": {"type": "thinking_delta", "thinking": piece}}),
                )
            }
            (Block::Thinking { signature, .. }, Delta::Signature(piece)) => {
                signature.push_str(&piece);
                if format != ClientFormat::Anthropic {
                    return String::new();
                }
                self.event(
                    "content_block_delta",
                    json!({"index": index, "delta": {"type": "signature_delta", "signature": piece}}),
                )
            }
            _ => String::new(),
        }
    }

    /// Closes the open block.
    pub(crate) fn end(&mut self) -> String {
        if !self.open {
            return String::new();
        }
        self.open = false;
        let index = self.blocks.len() - 1;
        match self.format {
            ClientFormat::Anthropic => self.event("content_block_stop", json!({"index": index})),
            ClientFormat::Chat | ClientFormat::Responses => String::new(),
        }
    }

    /// The closing events of a stream.
    pub(crate) fn finish(&mut self, outcome: &Outcome) -> String {
        let mut out = self.start();
        out += &self.end();
        match self.format {
            ClientFormat::Anthropic => {
                out += &self.event(
                    "message_delta",
                    json!({"delta": {"stop_reason": outcome.stop_reason, "stop_sequence": null},
                           "usage": outcome.usage.anthropic()}),
                );
                out += &self.event("message_stop", json!({}));
            }
            ClientFormat::Chat => {
                out +=
                    &self.chat_chunk(json!({}), Value::from(finish_reason(&outcome.stop_reason)));
                if self.include_usage {
                    let chunk = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": outcome.usage.chat(),
                    });
                    out += &format!("data: {chunk}\n\n");
                }
                out += "data: [DONE]\n\n";
            }
            ClientFormat::Responses => {
                let text = self.text();
                out += &self.event(
                    "response.output_text.done",
                    json!({"item_id": self.item_id, "output_index": 0, "content_index": 0, "text": text}),
                );
                out += &self.event(
                    "response.content_part.done",
                    json!({"item_id": self.item_id, "output_index": 0, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": []}}),
                );
                let item = self.responses_message("completed");
                out += &self.event(
                    "response.output_item.done",
                    json!({"output_index": 0, "item": item}),
                );
                let response = self.responses_object("completed", Some(&outcome.usage));
                out += &self.event("response.completed", json!({"response": response}));
            }
        }
        out
    }

    /// An error in the middle of a stream, in the client's format.
    pub(crate) fn stream_error(&mut self, message: &str) -> String {
        match self.format {
            ClientFormat::Anthropic => self.event(
                "error",
                json!({"error": {"type": "api_error", "message": message}}),
            ),
            ClientFormat::Chat => {
                let error = error_body(ClientFormat::Chat, 502, message);
                format!("data: {error}\n\ndata: [DONE]\n\n")
            }
            ClientFormat::Responses => {
                let mut response = self.responses_object("failed", None);
                response["error"] = json!({"code": "server_error", "message": message});
                self.event("response.failed", json!({"response": response}))
            }
        }
    }

    /// The whole answer.
    pub(crate) fn response(&self, outcome: &Outcome) -> Value {
        match self.format {
            ClientFormat::Anthropic => {
                let content: Vec<Value> = self
                    .blocks
                    .iter()
                    .map(|block| match block {
                        Block::Text(text) => json!({"type": "text", "text": text}),
                        Block::Thinking { thinking, signature } => {
                            json!({"type": "thinking", "thinking": thinking, "signature": signature})
                        }
                    })
                    .collect();
                json!({
                    "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": content, "stop_reason": outcome.stop_reason,
                    "stop_sequence": null, "usage": outcome.usage.anthropic(),
                })
            }
            ClientFormat::Chat => json!({
                "id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0,
                             "message": {"role": "assistant", "content": self.text()},
                             "finish_reason": finish_reason(&outcome.stop_reason)}],
                "usage": outcome.usage.chat(),
            }),
            ClientFormat::Responses => self.responses_object("completed", Some(&outcome.usage)),
        }
    }
}

fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        _ => "stop",
    }
}

/// An error body in the client's format for HTTP `status`.
pub(crate) fn error_body(format: ClientFormat, status: u16, message: &str) -> Value {
    match format {
        ClientFormat::Anthropic => {
            let kind = match status {
                400 | 409 => "invalid_request_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        ClientFormat::Chat | ClientFormat::Responses => {
            let kind = match status {
                400 | 409 => "invalid_request_error",
                404 => "not_found_error",
                _ => "server_error",
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_requests_with_system_messages_are_read() {
        let body = json!({
            "model": "claude-sonnet-4-5", "stream": true,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "system", "content": "env notes"},
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}, {"type": "text", "text": "two"}]},
                {"role": "user", "content": [{"type": "text", "text": "three"}]},
                {"role": "user", "content": "four"},
            ],
        });
        let conversation =
            Conversation::parse(ClientFormat::Anthropic, body.to_string().as_bytes()).unwrap();
        assert_eq!(conversation.system, "Be brief.\n\nenv notes");
        assert_eq!(conversation.model.as_deref(), Some("claude-sonnet-4-5"));
        assert!(conversation.stream);
        assert_eq!(conversation.latest_user_text(), "three\n\nfour");
        assert_eq!(
            conversation.first_message(),
            "<conversation_so_far>\nUser: one\n\nAssistant: two\n\n</conversation_so_far>\n\nthree\n\nfour"
        );
    }

    #[test]
    fn openai_requests_are_read() {
        let chat = json!({"model": "gpt-4o", "messages": [
            {"role": "developer", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "stream": true, "stream_options": {"include_usage": true}});
        let conversation =
            Conversation::parse(ClientFormat::Chat, chat.to_string().as_bytes()).unwrap();
        assert_eq!(
            (
                conversation.system.as_str(),
                conversation.first_message().as_str()
            ),
            ("sys", "hi")
        );
        assert!(conversation.include_usage);
        let responses = json!({"model": "m", "instructions": "be kind", "input": "hello"});
        let conversation =
            Conversation::parse(ClientFormat::Responses, responses.to_string().as_bytes()).unwrap();
        assert_eq!(
            (
                conversation.system.as_str(),
                conversation.first_message().as_str()
            ),
            ("be kind", "hello")
        );
        let items = json!({"input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {"type": "reasoning", "summary": []},
            {"role": "assistant", "content": [{"type": "output_text", "text": "b"}]},
            {"role": "user", "content": "c"}]});
        let conversation =
            Conversation::parse(ClientFormat::Responses, items.to_string().as_bytes()).unwrap();
        assert_eq!(conversation.latest_user_text(), "c");
        assert_eq!(conversation.turns.len(), 3);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            (ClientFormat::Anthropic, "not json", "not JSON"),
            (ClientFormat::Anthropic, "[1]", "JSON object"),
            (ClientFormat::Anthropic, "{}", "`messages` must be an array"),
            (
                ClientFormat::Anthropic,
                r#"{"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}"#,
                "messages[0].content[0]: claude_sdk takes text content only, not `image` blocks",
            ),
            (
                ClientFormat::Chat,
                r#"{"messages":[{"role":"critic","content":"x"}]}"#,
                "messages[0].role: claude_sdk takes system, user and assistant messages, not `critic`",
            ),
            (
                ClientFormat::Chat,
                r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#,
                "must end with a user message",
            ),
            (
                ClientFormat::Responses,
                r#"{"input":[{"type":"item_reference","id":"x"}]}"#,
                "not `item_reference` items",
            ),
        ];
        for (format, body, expected) in cases {
            let error = Conversation::parse(format, body.as_bytes()).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn tool_turns_are_refused_naming_the_route_that_carries_them() {
        let cases = [
            (
                ClientFormat::Anthropic,
                json!({"messages": [{"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]}),
                "messages[0].content[0]: claude_sdk cannot use the client's tools (a `tool_result` block)",
                "/claude/v1/messages",
            ),
            (
                ClientFormat::Anthropic,
                json!({"messages": [{"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}),
                "(a `tool_use` block)",
                "/claude/v1/messages",
            ),
            (
                ClientFormat::Chat,
                json!({"messages": [{"role": "user", "content": "q"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c", "content": "x"}]}),
                "messages[1]: claude_sdk cannot use the client's tools (an assistant message's `tool_calls`)",
                "/claude/v1/chat/completions",
            ),
            (
                ClientFormat::Chat,
                json!({"messages": [{"role": "tool", "tool_call_id": "c", "content": "x"}]}),
                "(a `tool` message)",
                "/claude/v1/chat/completions",
            ),
            (
                ClientFormat::Responses,
                json!({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}),
                "input[0]: claude_sdk cannot use the client's tools (a `function_call_output` item)",
                "/claude/v1/responses",
            ),
        ];
        for (format, body, expected, route) in cases {
            let error = Conversation::parse(format, body.to_string().as_bytes()).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
            assert!(
                error.contains(&format!("Send requests with tools to {route}")),
                "{error}"
            );
            assert!(error.contains("--allowedTools"), "{error}");
        }
    }

    #[test]
    fn declared_tools_are_noted() {
        let with = |format, body: Value| {
            Conversation::parse(format, body.to_string().as_bytes())
                .unwrap()
                .declared_tools
        };
        let hi = json!([{"role": "user", "content": "hi"}]);
        let tool = json!([{"name": "f", "input_schema": {"type": "object"}}]);
        let tools = Some("tools");
        assert_eq!(
            with(
                ClientFormat::Anthropic,
                json!({"messages": hi, "tools": tool})
            ),
            tools
        );
        assert_eq!(
            with(
                ClientFormat::Anthropic,
                json!({"messages": hi, "tools": []})
            ),
            None
        );
        assert_eq!(with(ClientFormat::Anthropic, json!({"messages": hi})), None);
        assert_eq!(
            with(
                ClientFormat::Chat,
                json!({"messages": hi, "functions": tool})
            ),
            Some("functions")
        );
        assert_eq!(
            with(
                ClientFormat::Responses,
                json!({"input": "hi", "tools": tool})
            ),
            tools
        );
        let message = tool_definitions_refused(ClientFormat::Chat, "tools");
        assert!(message.contains("(`tools`)"), "{message}");
        assert!(message.contains("client_tools = \"ignore\""), "{message}");
    }

    fn outcome() -> Outcome {
        Outcome {
            stop_reason: "end_turn".into(),
            usage: Usage {
                input_tokens: 42,
                output_tokens: 7,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 3,
            },
        }
    }

    fn thinking() -> Block {
        Block::Thinking {
            thinking: "hmm".into(),
            signature: "sig".into(),
        }
    }

    /// The `data:` values of an SSE text.
    fn data(sse: &str) -> Vec<Value> {
        sse.lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .map(|data| ccproxy_plugin_abi::serde_json::from_str(data).unwrap())
            .collect()
    }

    #[test]
    fn anthropic_answers_whole_and_streamed() {
        let mut encoder = Encoder::new(ClientFormat::Anthropic, "r-1", "claude-x", false);
        let mut sse = encoder.block(thinking());
        sse += &encoder.block(Block::Text("Hello".into()));
        sse += &encoder.finish(&outcome());
        let events = data(&sse);
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[0]["message"]["model"], "claude-x");
        assert_eq!(events[6]["delta"]["text"], "Hello");
        assert_eq!(events[6]["index"], 1);
        assert_eq!(events[8]["usage"]["output_tokens"], 7);
        assert!(sse.contains("event: message_stop\n"));
        let whole = encoder.response(&outcome());
        assert_eq!(
            whole["content"][1],
            json!({"type": "text", "text": "Hello"})
        );
        assert_eq!(whole["content"][0]["signature"], "sig");
        assert_eq!(whole["usage"]["input_tokens"], 42);
        assert_eq!(whole["stop_reason"], "end_turn");
    }

    #[test]
    fn chat_answers_whole_and_streamed() {
        let mut encoder = Encoder::new(ClientFormat::Chat, "r-2", "claude-x", true);
        let mut sse = encoder.block(thinking());
        sse += &encoder.block(Block::Text("Hello".into()));
        sse += &encoder.block(Block::Text("again".into()));
        sse += &encoder.finish(&outcome());
        assert!(sse.ends_with("data: [DONE]\n\n"));
        let chunks = data(&sse);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello\n\nagain");
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "stop"
        );
        assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 45);
        let whole = encoder.response(&outcome());
        assert_eq!(whole["choices"][0]["message"]["content"], "Hello\n\nagain");
        assert_eq!(whole["usage"]["total_tokens"], 52);
    }

    #[test]
    fn responses_answers_whole_and_streamed() {
        let mut encoder = Encoder::new(ClientFormat::Responses, "r-3", "claude-x", false);
        let mut sse = encoder.block(Block::Text("Hello".into()));
        sse += &encoder.finish(&outcome());
        let events = data(&sse);
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let sequence: Vec<u64> = events
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(sequence, (0..8).collect::<Vec<_>>());
        assert_eq!(
            events[7]["response"]["output"][0]["content"][0]["text"],
            "Hello"
        );
        assert_eq!(events[7]["response"]["usage"]["output_tokens"], 7);
        assert_eq!(encoder.response(&outcome())["status"], "completed");
    }

    #[test]
    fn blocks_streamed_piece_by_piece() {
        let mut encoder = Encoder::new(ClientFormat::Anthropic, "r", "m", false);
        let mut sse = encoder.begin(BlockKind::Text);
        sse += &encoder.delta(Delta::Text("Hel".into()));
        sse += &encoder.delta(Delta::Signature("ignored: not a thinking block".into()));
        sse += &encoder.delta(Delta::Text("lo".into()));
        sse += &encoder.finish(&outcome());
        let events = data(&sse);
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(encoder.response(&outcome())["content"][0]["text"], "Hello");
        let mut encoder = Encoder::new(ClientFormat::Chat, "r", "m", false);
        let mut sse = encoder.block(Block::Text("a".into()));
        sse += &encoder.begin(BlockKind::Text);
        sse += &encoder.delta(Delta::Text("b".into()));
        sse += &encoder.finish(&outcome());
        let text: String = data(&sse)
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "a\n\nb");
    }

    #[test]
    fn errors_are_in_the_client_format() {
        assert_eq!(
            error_body(ClientFormat::Anthropic, 502, "gone")["error"],
            json!({"type": "api_error", "message": "gone"})
        );
        assert_eq!(
            error_body(ClientFormat::Chat, 400, "bad")["error"]["type"],
            "invalid_request_error"
        );
        let mut encoder = Encoder::new(ClientFormat::Responses, "r", "m", false);
        let failed = data(&encoder.stream_error("boom"));
        assert_eq!(failed[0]["response"]["error"]["message"], "boom");
        let mut encoder = Encoder::new(ClientFormat::Anthropic, "r", "m", false);
        assert!(encoder.stream_error("boom").starts_with("event: error\n"));
    }
}
