//! The three LLM wire formats (`anthropic.messages`, `openai.chat_completions`,
//! `openai.responses`) and the converters between them: requests, responses, errors and
//! server-sent event streams.
//!
//! **Architecture Invariant:** this crate is pure. Bytes and typed values in, bytes and
//! typed values out; no I/O, no tokio, no hyper, no plugin types. The host owns the sockets.
//!
//! # Map
//!
//! - [`anthropic`], [`openai_chat`], [`openai_responses`]: typed serde models of each
//!   format's `Request`, `Response`, `ErrorBody` and `StreamEvent`. Every struct keeps the
//!   fields it does not name in `extra` and every `type`-tagged enum keeps unknown types in
//!   an `Other` variant, so a new upstream field or block type survives a parse and
//!   re-serialisation. Call sites qualify: `anthropic::Request`, `openai_chat::Request`.
//! - [`sse`]: the push-based incremental [`sse::Decoder`] (bytes in, [`sse::Event`]s out, any
//!   split point, CRLF/LF/CR, comments, multi-line data, bounded event size) and
//!   [`sse::Event::encode`].
//! - [`convert`]: [`convert::request`], [`convert::response`] (and their `_with_tools`
//!   forms, see below), [`convert::error`],
//!   [`convert::error_body`], [`convert::StreamConverter`], [`convert::rewrite_model`].
//!   Internally each format has a decoder into one internal representation and an encoder
//!   out of it, so each of the six directions is one hop (no direction is routed through a
//!   third format, as the original routed Responses to Anthropic through Chat), and
//!   [`convert::StreamConverter::chain`] composes declared multi-format chains from those
//!   hops. Stream conversion is a state machine per stream: one upstream event in, the
//!   client's events out at once.
//!
//! # Why a hand-written SSE decoder
//!
//! The crates.io candidates either decode from an async `Stream` (`eventsource-stream`,
//! `async-sse`), which would tie this crate to a runtime and hide the buffer, or are new
//! and silently drop oversized events (`sse-parse` 0.1). The proxy needs a push decoder
//! over the `bytes::Bytes` the host reads, with a hard per-event limit reported as an
//! error; that is ~200 lines, covered by unit tests, property tests (any split point) and a
//! fuzz target (`host/formats/fuzz`, run by `scripts/fuzz-formats`).
//!
//! # What survives conversion
//!
//! System and developer prompts (all of them, in order; Anthropic's `system`, Responses'
//! `instructions`), multi-turn history with interleaved tool calls and results in order
//! (consecutive assistant-side items, such as Responses reasoning between the function calls
//! of one turn, stay one assistant turn so every result answers a call of that turn),
//! tool definitions, `tool_choice` and parallel tool calls, streamed tool-call arguments
//! (incrementally, with `index` on every Chat fragment; Chat upstreams that send no `index`,
//! as Gemini's OpenAI-compatible endpoint, are read by id: a new id is a new call, a
//! fragment with neither continues the last call), images as base64 and as URLs (a `data:`
//! URL that is not base64 is percent-decoded and sent as base64, Anthropic's only inline form),
//! PDFs as base64 documents/files, thinking and reasoning both ways (budget ↔ effort in
//! requests; thinking blocks ↔ `reasoning_content` ↔ reasoning summary items in responses),
//! structured output, stop reasons (tool calls always report `tool_use` / `tool_calls`),
//! usage with cache reads and writes, model ids, and errors in the client's format. Tool ids
//! longer than 64 characters (or with characters Anthropic rejects) become a deterministic
//! `call_<sha256>`, so calls and results stay paired. Anthropic streams never get
//! `data: [DONE]`; Chat streams always end with it.
//!
//! Responses tools that no other format can declare survive too (`convert/tools.rs`): those
//! of an `additional_tools` input item (the Codex CLI's default model sends its tools so),
//! free-form (`custom`) tools, which become tools taking `{"input": string}` with their
//! grammar quoted in the description, and tools grouped in a `namespace`, which get flat
//! names (`namespace__name`, valid for Anthropic and OpenAI). Their calls and outputs in
//! history convert the same way. Turning the answer's calls back into what the client
//! declared takes what the request's conversion renamed: [`convert::request_with_tools`]
//! returns it as a [`convert::ClientTools`] (only for a request that has such tools; the
//! others allocate nothing for it), and [`convert::response_with_tools`],
//! [`convert::StreamConverter::with_tools`] and [`convert::Accumulator::with_tools`] answer
//! `custom_tool_call` items with the raw `input` (streamed as
//! `response.custom_tool_call_input.delta` and `.done`, the input sent whole when the call
//! is complete) and `function_call` items with their own name and `namespace`.
//!
//! # Dropped on purpose, per direction
//!
//! Each of these has a test in `tests/mapping.rs` or `tests/streams.rs` that says so.
//!
//! - **Anthropic → OpenAI (Chat and Responses):** `top_k`; `cache_control`; `metadata`
//!   other than `user_id` (which becomes `user`; OpenAI rejects `metadata`, #59); server
//!   tools (`web_search_…`, `bash_…`) and server-tool blocks in history; thinking blocks in
//!   history (OpenAI has no input form for them), except OpenAI's own encrypted reasoning
//!   that reached an Anthropic client as a thinking signature (it goes back to OpenAI as the
//!   reasoning item it was); images inside tool results (OpenAI tool
//!   outputs are text); the `is_error` flag of tool results (OpenAI tool outputs have none:
//!   a failed result's output text starts with `Error: ` instead, unless it already starts
//!   with "error"); the thinking signature in Chat responses and streams (a Responses client
//!   keeps it, tagged, as the reasoning item's `encrypted_content` and sends it back, so
//!   Anthropic gets its own signed thinking again); redacted thinking;
//!   the `x-anthropic-billing-header:` line of Claude Code's system prompt (it changes per
//!   request and defeats prompt caching). Towards Responses also `stop_sequences`
//!   (Responses has none).
//! - **OpenAI (Chat and Responses) → Anthropic:** `n`, `seed`, penalties, `logprobs`,
//!   `logit_bias` and other Chat-only sampling fields; `top_p` when `temperature` is also
//!   set (recent Claude models reject both); `temperature` other than 1, `top_k` and `top_p`
//!   below 0.95 when thinking is on (Anthropic rejects them); thinking itself when the last
//!   tool-calling assistant turn has no signed thinking block (Anthropic would reject the
//!   request) and when `tool_choice` forces tool use (`required` or a named function: Anthropic
//!   rejects thinking with a forced tool, and the forced tool is what the client asked for);
//!   reasoning from OpenAI history (no Anthropic signature), except Anthropic's own that a
//!   Responses client kept as `encrypted_content`; media given only as
//!   an OpenAI file id; `response_format` becomes an instruction in the system prompt
//!   rather than a schema-enforced output; Chat choices after the first; the OpenAI server
//!   options `prompt_cache_key`, `service_tier` (Anthropic's takes other values), `store`,
//!   `metadata`, `safety_identifier` and verbosity.
//! - **Responses → anything:** built-in tools (`web_search`, `file_search`, `local_shell`,
//!   `image_generation`, …); `include`, `truncation` and the other server-side options Chat lacks
//!   (`prompt_cache_key`, `service_tier`, `store`, `metadata`, `safety_identifier` and
//!   `text.verbosity`, Chat's top-level `verbosity`, map both ways between Chat and
//!   Responses). Requests that depend on server-side state (`previous_response_id`,
//!   `conversation`) or items with no counterpart (`local_shell_call`, …) are refused with
//!   a [`convert::ConvertError`] naming the path, rather than silently losing history.
//! - **Chat → Responses and back:** reasoning in Chat history (`reasoning_content` is not
//!   accepted back by servers); images and files inside tool results; Chat streams that
//!   resume a tool call after a call first named in a later chunk started (no OpenAI server
//!   does) lose the late fragment, as Anthropic blocks and Responses items are sequential.
//!   Calls named together (several headers in one chunk, arguments following index by index
//!   or interleaved) lose nothing: the first streams live, the others are held and sent whole
//!   when it ends; a tool call's block starts once its name is known.
//!
//! Unknown block, part or item types in a request are refused with their path
//! (`messages[2].content[0]: block type `x` cannot be converted to …`); in responses and
//! streams they are skipped, since the client's format could not show them anyway.
//!
//! # Memory
//!
//! Stream converters hold a few ids and counters per stream. The exceptions: a Responses
//! client, since that format repeats every finished output item in `response.completed` and
//! the whole text of a part in its `.done` events, so the Responses encoder keeps what it
//! emitted, as the upstream itself would; and a Chat upstream that names several tool calls
//! before their arguments, whose held-back arguments are bounded at 4 MiB (beyond that the
//! stream ends in the client format's error rather than grow). The SSE decoder holds at most
//! one event ([`sse::DEFAULT_MAX_EVENT_SIZE`] unless configured).
#![deny(missing_docs, missing_debug_implementations)]

pub mod anthropic;
pub mod convert;
pub mod openai_chat;
pub mod openai_responses;
pub mod sse;
mod tagged;

use std::fmt;
use std::str::FromStr;

/// The JSON object fields a model struct does not name, kept so they pass through.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// One of the three wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Anthropic Messages (`/v1/messages`).
    AnthropicMessages,
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    OpenAiChat,
    /// OpenAI Responses (`/v1/responses`).
    OpenAiResponses,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 3] = [
        Format::AnthropicMessages,
        Format::OpenAiChat,
        Format::OpenAiResponses,
    ];

    /// The format id used in configuration and plugin manifests.
    pub fn id(self) -> &'static str {
        match self {
            Format::AnthropicMessages => "anthropic.messages",
            Format::OpenAiChat => "openai.chat_completions",
            Format::OpenAiResponses => "openai.responses",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The string is not one of the three format ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown format `{0}`; expected anthropic.messages, openai.chat_completions or openai.responses"
)]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|format| format.id() == id)
            .ok_or_else(|| UnknownFormat(id.to_owned()))
    }
}

/// Serialises a model value; only maps with non-string keys can fail, and
/// the models have none. Written by sonic-rs, whose string escaping is
/// several times faster than serde_json's on prompts full of quotes and new
/// lines, with the same bytes out (`json_writing_matches_serde_json`).
pub(crate) fn to_json_string<T: serde::Serialize>(value: &T) -> String {
    sonic_rs::to_string(value).expect("model types serialise: all map keys are strings")
}

/// Like [`to_json_string`], as bytes.
pub(crate) fn to_json_vec<T: serde::Serialize>(value: &T) -> Vec<u8> {
    sonic_rs::to_vec(value).expect("model types serialise: all map keys are strings")
}

/// [`to_json_vec`] into a buffer made for about `expected` bytes at once, so
/// a large document is not copied again each time a growing buffer doubles.
pub(crate) fn to_json_vec_sized<T: serde::Serialize>(value: &T, expected: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(expected);
    sonic_rs::to_writer(&mut out, value).expect("model types serialise: all map keys are strings");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sonic-rs writes what serde_json writes: every escape, non-ASCII text,
    /// floats at the edges of their notation, and a real Claude Code request.
    #[test]
    fn json_writing_matches_serde_json() {
        let mut text: String = (0u8..0x80).map(char::from).collect();
        text.push_str("é ✓ \u{2028}\u{2029} 😀 \\ \" </script>");
        let floats = [
            0.0,
            -0.0,
            0.1,
            0.7,
            1.0,
            -1.5,
            1e-7,
            1.5e-5,
            123_456_789.123,
            1e15,
            1e16,
            1e17,
            1e20,
            1e21,
            1e22,
            1.7976931348623157e308,
            5e-324,
            2.2250738585072014e-308,
            0.30000000000000004,
        ];
        let capture: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/data/claude_cli_request_capture.json"
        ))
        .unwrap();
        let values = [
            serde_json::json!({"text": text, "floats": floats, "ints": [0, -1, u64::MAX, i64::MIN],
                "nested": [{"a": null, "b": true, "": {}}], "empty": []}),
            capture["body_json"].clone(),
        ];
        for value in &values {
            assert_eq!(to_json_string(value), serde_json::to_string(value).unwrap());
            assert_eq!(to_json_vec(value), serde_json::to_vec(value).unwrap());
            assert_eq!(
                to_json_vec_sized(value, 16),
                serde_json::to_vec(value).unwrap()
            );
        }
        for float in floats.iter().chain(&[f64::NAN, f64::INFINITY]) {
            assert_eq!(
                to_json_string(float),
                serde_json::to_string(float).unwrap(),
                "{float}"
            );
            assert_eq!(
                to_json_string(&(*float as f32)),
                serde_json::to_string(&(*float as f32)).unwrap(),
                "{float}"
            );
        }
    }

    #[test]
    fn format_ids_round_trip() {
        for format in Format::ALL {
            assert_eq!(format.id().parse::<Format>(), Ok(format));
            assert_eq!(format.to_string(), format.id());
        }
        assert!("openai".parse::<Format>().is_err());
    }
}
