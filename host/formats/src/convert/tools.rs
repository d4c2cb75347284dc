//! Responses tools that other formats cannot declare: free-form (`custom`) tools, whose
//! input is one raw string that may follow a grammar, and tools grouped in a `namespace`.
//! The Codex CLI declares its tools this way with its default model (`exec`, a free-form
//! tool taking JavaScript, in the `functions` namespace; `clock`, `collaboration`, …).
//!
//! Towards Anthropic and Chat each becomes an ordinary function tool: a free-form tool takes
//! `{"input": string}`, and a namespaced one gets a flat name (`collaboration__spawn_agent`,
//! the Codex CLI's own `ToolName::canonical_flat_name`). The answer's call of such a tool
//! must reach the client as the item it expects (`custom_tool_call` with the raw `input`,
//! or a `function_call` with its `namespace`), so the request's conversion records what it
//! renamed in a [`ClientTools`], which the response and stream converters take back. A
//! request without such tools records nothing and allocates nothing for it.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The namespace the Responses API gives ordinary function tools (the model sees
/// `functions.NAME`): its tools keep their own name, and calls of them carry no namespace.
const DEFAULT_NAMESPACE: &str = "functions";

/// The longest tool name every format accepts (OpenAI's limit; Anthropic's is 128).
const MAX_NAME: usize = 64;

/// The largest grammar copied into a free-form tool's description; a longer one is only
/// named, since it would cost its length in tokens on every request.
const MAX_GRAMMAR: usize = 4096;

/// What the answer's converters must know about the client's tools: the tools the
/// request's conversion renamed or reshaped, by the name the upstream knows them by.
///
/// Produced by [`request_with_tools`](super::request_with_tools) only for a request that
/// declares free-form or namespaced tools (or a tool name the upstream would refuse), and
/// given to [`response_with_tools`](super::response_with_tools),
/// [`StreamConverter::with_tools`](super::StreamConverter::with_tools) or
/// [`Accumulator::with_tools`](super::Accumulator::with_tools) for the same request's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTools {
    tools: Vec<ClientTool>,
}

/// One tool as the client declared it, and the name the upstream knows it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientTool {
    /// The name sent upstream.
    pub(crate) flat: String,
    /// The client's name, within its namespace.
    pub(crate) name: String,
    /// The client's namespace; `None` for a top-level tool or one in `functions`.
    pub(crate) namespace: Option<String>,
    /// A free-form tool: its calls carry one raw string, `input`.
    pub(crate) free_form: bool,
}

impl ClientTools {
    /// Whether nothing was renamed or reshaped.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The client's tool the upstream calls `flat`, if it was renamed or reshaped.
    pub(crate) fn find(&self, flat: &str) -> Option<&ClientTool> {
        self.tools.iter().find(|tool| tool.flat == flat)
    }

    fn push(&mut self, tool: ClientTool) {
        if !self.tools.iter().any(|known| known.flat == tool.flat) {
            self.tools.push(tool);
        }
    }
}

/// The name the upstream knows a client's tool by: its own name when it is top-level (or
/// in `functions`) and valid everywhere, else `namespace__name` with the characters
/// Anthropic refuses (`^[a-zA-Z0-9_-]{1,128}$`) replaced by `_`, and past [`MAX_NAME`]
/// shortened with a hash of the whole, so two long names stay apart. The same tool always
/// gets the same name, so the calls in a conversation's history match their declarations.
pub(crate) fn flat_name(namespace: Option<&str>, name: &str) -> String {
    let namespace = namespace.filter(|namespace| *namespace != DEFAULT_NAMESPACE);
    if namespace.is_none() && is_valid_name(name) {
        return name.to_owned();
    }
    let mut flat = String::with_capacity(name.len() + namespace.map_or(0, |ns| ns.len() + 2));
    if let Some(namespace) = namespace {
        // As the Codex CLI joins them: stray underscores around the delimiter trimmed.
        flat.push_str(namespace.trim_end_matches('_'));
        flat.push_str("__");
        flat.push_str(name.trim_start_matches('_'));
    } else {
        flat.push_str(name);
    }
    let mut flat: String = flat
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if flat.is_empty() {
        flat.push_str("tool");
    }
    if flat.len() > MAX_NAME {
        let digest = Sha256::digest(format!("{}.{name}", namespace.unwrap_or_default()));
        flat.truncate(MAX_NAME - 9);
        flat.push('_');
        for byte in &digest[..4] {
            flat.push_str(&format!("{byte:02x}"));
        }
    }
    flat
}

/// [`flat_name`] of an owned name, moved when it needs no change.
pub(crate) fn flat_name_owned(namespace: Option<&str>, name: String) -> String {
    match namespace.filter(|namespace| *namespace != DEFAULT_NAMESPACE) {
        None if is_valid_name(&name) => name,
        _ => flat_name(namespace, &name),
    }
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Reads a Responses tool declaration (top-level `tools` or an `additional_tools` item's)
/// into internal tools, recording in `renamed` what the answer must turn back. Built-in
/// tools (`web_search`, `local_shell`, …) run on OpenAI's side and are left out.
pub(crate) fn decode_tool(
    tool: crate::openai_responses::Tool,
    namespace: Option<&str>,
    tools: &mut Vec<super::ir::Tool>,
    renamed: &mut Option<ClientTools>,
) {
    let crate::openai_responses::Tool {
        kind,
        name,
        description,
        parameters,
        strict,
        mut extra,
    } = tool;
    match kind.as_str() {
        "function" | "custom" => {
            let Some(name) = name else { return };
            let free_form = kind == "custom";
            let restored_namespace = namespace
                .filter(|namespace| *namespace != DEFAULT_NAMESPACE)
                .map(str::to_owned);
            // An ordinary tool keeps its name (moved, not copied): only the others are
            // renamed and recorded.
            let flat = if free_form || restored_namespace.is_some() || !is_valid_name(&name) {
                let flat = flat_name(namespace, &name);
                renamed
                    .get_or_insert_with(ClientTools::default)
                    .push(ClientTool {
                        flat: flat.clone(),
                        name,
                        namespace: restored_namespace,
                        free_form,
                    });
                flat
            } else {
                name
            };
            let (description, parameters, strict) = if free_form {
                let description =
                    free_form_description(description.as_deref(), extra.get("format"));
                (Some(description), free_form_schema(), None)
            } else {
                let parameters =
                    parameters.unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                (description, parameters, strict)
            };
            tools.push(super::ir::Tool {
                name: flat,
                description,
                parameters,
                strict,
            });
        }
        "namespace" => {
            let Some(Value::Array(children)) = extra.remove("tools") else {
                return;
            };
            let namespace = name.unwrap_or_default();
            for child in children {
                if let Ok(child) = serde_json::from_value(child) {
                    decode_tool(child, Some(&namespace), tools, renamed);
                }
            }
        }
        _ => {}
    }
}

/// The schema of a free-form tool's input as a function tool.
fn free_form_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The tool's whole input, as raw text (not JSON)."}},
        "required": ["input"],
        "additionalProperties": false,
    })
}

/// A free-form tool's description, saying that the input is raw text and, when it has one,
/// the grammar it must follow (Lark or a regex).
fn free_form_description(description: Option<&str>, format: Option<&Value>) -> String {
    let mut text = description.unwrap_or_default().to_owned();
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str("Put the tool's whole input, as raw text, in `input`.");
    let grammar =
        format.filter(|format| format.get("type").and_then(Value::as_str) == Some("grammar"));
    if let Some(format) = grammar {
        let syntax = format
            .get("syntax")
            .and_then(Value::as_str)
            .unwrap_or("lark");
        match format.get("definition").and_then(Value::as_str) {
            Some(definition) if definition.len() <= MAX_GRAMMAR => {
                text.push_str(&format!(
                    " It must match this {syntax} grammar:\n{}",
                    definition.trim()
                ));
            }
            _ => text.push_str(&format!(" It must match the tool's {syntax} grammar.")),
        }
    }
    text
}

/// The raw input of a free-form tool's call from the arguments the upstream produced:
/// `input` when the model followed the schema, else the only string it gave, else the
/// arguments text itself, so nothing the model wrote is lost.
pub(crate) fn free_form_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(mut object)) => {
            if let Some(Value::String(input)) = object.remove("input") {
                return input;
            }
            if object.is_empty() {
                // A call with no input at all (`{}`): an empty one, not the text `{}`.
                return String::new();
            }
            let mut strings = object.into_iter().filter_map(|(_, value)| match value {
                Value::String(text) => Some(text),
                _ => None,
            });
            match (strings.next(), strings.next()) {
                (Some(only), None) => only,
                _ => arguments.to_owned(),
            }
        }
        Ok(Value::String(input)) => input,
        _ => arguments.to_owned(),
    }
}

/// The arguments text of a free-form call in the client's history.
pub(crate) fn free_form_arguments(input: &str) -> String {
    crate::to_json_string(&json!({ "input": input }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names_are_valid_everywhere_and_stable() {
        assert_eq!(flat_name(None, "exec"), "exec");
        assert_eq!(flat_name(Some("functions"), "exec"), "exec");
        assert_eq!(
            flat_name(Some("collaboration"), "spawn_agent"),
            "collaboration__spawn_agent"
        );
        assert_eq!(
            flat_name(Some("mcp__gmail_"), "_search"),
            "mcp__gmail__search"
        );
        assert_eq!(flat_name(None, "a.b c"), "a_b_c");
        let long = "x".repeat(100);
        let one = flat_name(Some("ns"), &long);
        let other = flat_name(Some("ns"), &format!("{long}y"));
        assert_eq!(one.len(), MAX_NAME);
        assert_ne!(one, other);
        assert_eq!(one, flat_name(Some("ns"), &long));
    }

    #[test]
    fn free_form_input_is_never_lost() {
        assert_eq!(free_form_input(r#"{"input":"ls -la"}"#), "ls -la");
        assert_eq!(free_form_input(r#"{"code":"x"}"#), "x");
        assert_eq!(free_form_input(r#""raw""#), "raw");
        assert_eq!(free_form_input("not json"), "not json");
        assert_eq!(free_form_input("{}"), "");
        assert_eq!(free_form_input(""), "");
        assert_eq!(
            free_form_input(r#"{"a":"1","b":"2"}"#),
            r#"{"a":"1","b":"2"}"#
        );
        assert_eq!(free_form_input(&free_form_arguments("a\"b\n")), "a\"b\n");
    }

    #[test]
    fn grammars_are_described_briefly() {
        let format = json!({"type": "grammar", "syntax": "lark", "definition": "start: /.+/"});
        let text = free_form_description(Some("Runs code."), Some(&format));
        assert!(text.starts_with("Runs code.\n\n"), "{text}");
        assert!(text.contains("lark grammar:\nstart: /.+/"), "{text}");
        let huge = json!({"type": "grammar", "syntax": "regex", "definition": "a".repeat(MAX_GRAMMAR + 1)});
        let text = free_form_description(None, Some(&huge));
        assert!(text.ends_with("the tool's regex grammar."), "{text}");
        assert!(
            free_form_description(None, Some(&json!({"type": "text"}))).ends_with("in `input`.")
        );
    }
}
