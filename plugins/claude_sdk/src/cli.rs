//! The Claude Code CLI's stream-json output, one JSON object a line: what the
//! plugin reads from it, and the user message it writes to it.

use ccproxy_plugin_abi::{Value, json};

use crate::convert::{Block, Usage};

/// One line of the CLI's `--output-format stream-json --verbose` output that
/// the plugin acts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CliEvent {
    /// `{"type":"system","subtype":"init",...}`: the start of a turn.
    Init { session_id: String, model: String },
    /// `{"type":"assistant","message":{...}}`: one message of the model, with
    /// the blocks a client can be shown (text and signed thinking).
    Assistant {
        message_id: String,
        model: String,
        blocks: Vec<Block>,
    },
    /// `{"type":"stream_event","event":{...}}` (with `--include-partial-messages`):
    /// one Anthropic stream event of the API message `message_id`, before the
    /// `assistant` line that holds its block whole.
    Partial { message_id: String, event: Value },
    /// `{"type":"result",...}`: the end of a turn.
    Result(TurnResult),
    /// Anything else (thinking-token estimates, the CLI's own tool results, ...).
    Other,
}

/// The CLI's `result` line.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct TurnResult {
    pub(crate) is_error: bool,
    pub(crate) subtype: String,
    /// The final text, or the error the CLI reports (`API Error: ...`).
    pub(crate) text: String,
    pub(crate) stop_reason: Option<String>,
    pub(crate) usage: Usage,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) session_id: String,
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Reads one output line; `None` when it is not a JSON object (the CLI
/// prints nothing else on stdout, but a wrapper script might).
pub(crate) fn parse_line(line: &str) -> Option<CliEvent> {
    let value: Value = ccproxy_plugin_abi::serde_json::from_str(line.trim()).ok()?;
    if !value.is_object() {
        return None;
    }
    Some(match value["type"].as_str() {
        Some("system") if value["subtype"] == "init" => CliEvent::Init {
            session_id: text(&value, "session_id"),
            model: text(&value, "model"),
        },
        Some("assistant") => {
            let message = &value["message"];
            let blocks = message["content"]
                .as_array()
                .map(|blocks| blocks.iter().filter_map(Block::from_cli).collect())
                .unwrap_or_default();
            CliEvent::Assistant {
                message_id: text(message, "id"),
                model: text(message, "model"),
                blocks,
            }
        }
        Some("stream_event") => CliEvent::Partial {
            message_id: value
                .get("api_message_id")
                .and_then(Value::as_str)
                .or_else(|| value["event"]["message"]["id"].as_str())
                .unwrap_or_default()
                .to_owned(),
            event: value["event"].clone(),
        },
        Some("result") => CliEvent::Result(TurnResult {
            is_error: value["is_error"].as_bool().unwrap_or(false),
            subtype: text(&value, "subtype"),
            text: match &value["result"] {
                Value::String(text) => text.clone(),
                _ => value["errors"]
                    .as_array()
                    .map(|errors| {
                        errors
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default(),
            },
            stop_reason: value["stop_reason"].as_str().map(str::to_owned),
            usage: Usage::from_anthropic(&value["usage"]),
            cost_usd: value["total_cost_usd"].as_f64(),
            session_id: text(&value, "session_id"),
        }),
        _ => CliEvent::Other,
    })
}

/// The stream-json input line carrying one user message.
pub(crate) fn user_message(text: &str) -> String {
    let mut line = json!({
        "type": "user",
        "message": {"role": "user", "content": text},
    })
    .to_string();
    line.push('\n');
    line
}

/// Splits the CLI's stdout into lines as pieces arrive (a piece may end in
/// the middle of a line).
#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Adds `piece`; returns the lines it completed, without their newline.
    pub(crate) fn push(&mut self, piece: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(piece);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).trim().to_owned();
            if !line.is_empty() {
                lines.push(line);
            }
        }
        lines
    }

    /// What is left after the end of the output (a last line without newline).
    pub(crate) fn rest(&mut self) -> Option<String> {
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.pending))
            .trim()
            .to_owned();
        (!rest.is_empty()).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_pieces() {
        let mut buffer = LineBuffer::default();
        assert!(buffer.push(b"{\"a\":").is_empty());
        assert_eq!(buffer.push(b"1}\n\n{\"b\""), vec!["{\"a\":1}"]);
        assert_eq!(buffer.push(b":2}\n"), vec!["{\"b\":2}"]);
        assert_eq!(buffer.push(b"tail"), Vec::<String>::new());
        assert_eq!(buffer.rest().as_deref(), Some("tail"));
        assert_eq!(buffer.rest(), None);
    }

    #[test]
    fn the_recorded_lines_are_understood() {
        let lines = include_str!("../../../tests/data/claude_sdk/plain_turn.jsonl");
        let events: Vec<CliEvent> = lines.lines().filter_map(parse_line).collect();
        assert!(matches!(&events[0], CliEvent::Init { session_id, .. } if session_id.len() == 36));
        let blocks: Vec<&Block> = events
            .iter()
            .filter_map(|event| match event {
                CliEvent::Assistant { blocks, .. } => Some(blocks),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(matches!(blocks[0], Block::Thinking { signature, .. } if !signature.is_empty()));
        assert_eq!(blocks[1], &Block::Text("HELLO-TOKEN-1".into()));
        let CliEvent::Result(result) = events.last().unwrap() else {
            panic!("the last line is the result: {events:?}");
        };
        assert!(!result.is_error);
        assert_eq!(result.text, "HELLO-TOKEN-1");
        assert_eq!(result.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(
            (result.usage.input_tokens, result.usage.output_tokens),
            (42, 7)
        );
        assert_eq!(result.cost_usd, Some(0.000308));
    }

    #[test]
    fn partial_messages_are_read() {
        let lines = include_str!("../../../tests/data/claude_sdk/partial_turn.jsonl");
        let events: Vec<CliEvent> = lines.lines().filter_map(parse_line).collect();
        let whole = events
            .iter()
            .find_map(|event| match event {
                CliEvent::Assistant { message_id, .. } => Some(message_id.clone()),
                _ => None,
            })
            .expect("an assistant line");
        assert!(whole.starts_with("msg_"), "{whole}");
        let deltas: String = events
            .iter()
            .filter_map(|event| match event {
                CliEvent::Partial { message_id, event } => {
                    assert_eq!(message_id, &whole, "a partial of the same API message");
                    event["delta"]["text"].as_str()
                }
                _ => None,
            })
            .collect();
        assert_eq!(deltas, "PARTIAL one two three");
    }

    #[test]
    fn a_user_message_is_one_line_of_json() {
        let line = user_message("two\nlines");
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let value: Value = ccproxy_plugin_abi::serde_json::from_str(&line).unwrap();
        assert_eq!(value["message"]["content"], "two\nlines");
    }
}
