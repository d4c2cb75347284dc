//! # format_tiny: a plugin that adds a wire format (plugin API 1.2)
//!
//! A format adapter between a deliberately small format, `example.tiny`, and
//! OpenAI Chat Completions. Its endpoint `/v1/tiny` is mounted by the host
//! under every provider that serves Chat Completions (`/claude/v1/tiny`,
//! `/codex/v1/tiny`): the host converts the client's tiny body to Chat with
//! this plugin, runs the ordinary provider path (Chat → the upstream's format
//! and back) and converts the answer to tiny with this plugin again.
//!
//! The format:
//!
//! - request: `{"model": "...", "prompt": "...", "max_tokens": N, "stream": bool}`
//!   (`max_tokens` and `stream` optional) — one user message;
//! - answer: `{"model": "...", "text": "...", "tokens": {"in": N, "out": N}}`;
//! - error: `{"error": "message"}` with the upstream's status;
//! - stream (`"stream": true`): Server-Sent Events, `data: {"text": "..."}` per
//!   piece of text and `data: {"done": true, "tokens": {"in": N, "out": N}}` at
//!   the end (`data: {"error": "..."}` first when the upstream broke).
//!
//! Stream pieces arrive cut anywhere, so each stream keeps an SSE line buffer
//! under its id until the host says the stream ended.
//!
//! Build and try it (with `claude_api` configured):
//!
//! ```text
//! cargo build -p example-format-tiny
//! cp target/debug/libexample_format_tiny.so ~/.config/ccproxy/plugins/
//! ccproxy serve
//! curl -s http://127.0.0.1:8000/claude/v1/tiny \
//!   -d '{"model": "claude-sonnet-4-5", "prompt": "Say hi", "max_tokens": 50}'
//! ```
//!
//! The answer is one line of tiny JSON: `{"model":"claude-sonnet-4-5","text":"Hi!","tokens":{"in":9,"out":4}}`.
#![forbid(unsafe_code)]

use std::{collections::HashMap, sync::Mutex};

use ccproxy_plugin_abi::{prelude::*, serde_json};
use serde::Deserialize;

/// The format this plugin adds.
pub const TINY: &str = "example.tiny";
/// The core format it converts to and from.
pub const CHAT: &str = "openai.chat_completions";

/// The plugin: per-stream state, by the host's stream id.
pub struct FormatTiny {
    streams: Mutex<HashMap<u64, TinyStream>>,
}

impl Plugin for FormatTiny {
    type Config = ();

    fn manifest() -> Manifest {
        Manifest::new("format_tiny", env!("CARGO_PKG_VERSION"))
            .description(
                "Adds the example.tiny wire format at /v1/tiny of every Chat Completions provider",
            )
            .format_adapter_endpoint(TINY, CHAT, 100, "/v1/tiny")
    }

    async fn init(ctx: Context, _config: ()) -> Result<Self, PluginError> {
        if !ctx.has_capability("format_adapters") {
            warn!("this host does not honour format adapters; /v1/tiny will not be mounted");
        }
        Ok(FormatTiny {
            streams: Mutex::new(HashMap::new()),
        })
    }

    async fn on_format_convert(
        &self,
        conversion: FormatConversion,
    ) -> Result<Vec<u8>, PluginError> {
        let FormatConversion {
            from,
            to,
            kind,
            stream,
            body,
        } = conversion;
        match (from.as_str(), to.as_str(), kind) {
            (TINY, CHAT, ConversionKind::Request) => request_to_chat(&body),
            (CHAT, TINY, ConversionKind::Response) => response_from_chat(&body),
            (CHAT, TINY, ConversionKind::Error) => Ok(error_from_chat(&body)),
            (CHAT, TINY, ConversionKind::StreamChunk) => {
                let mut streams = self.lock_streams();
                Ok(streams.entry(stream).or_default().push(&body))
            }
            (CHAT, TINY, ConversionKind::StreamEnd) => {
                let state = self.lock_streams().remove(&stream);
                Ok(state.map(TinyStream::finish).unwrap_or_default())
            }
            _ => Err(PluginError::unsupported(format!(
                "format_tiny converts {kind} only from {TINY} to {CHAT} (requests) and back (answers), not from {from} to {to}"
            ))),
        }
    }

    async fn on_health(&self) -> Health {
        let open = self.lock_streams().len();
        Health::with(HealthStatus::Healthy, json!({"open_streams": open}))
    }
}

impl FormatTiny {
    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<u64, TinyStream>> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

export_plugin!(FormatTiny);

#[derive(Deserialize)]
struct TinyRequest {
    model: String,
    prompt: String,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    stream: bool,
}

/// A tiny request as one Chat Completions user message.
fn request_to_chat(body: &[u8]) -> Result<Vec<u8>, PluginError> {
    let request: TinyRequest = serde_json::from_slice(body).map_err(|error| {
        PluginError::invalid(format!(
            "an {TINY} request is {{\"model\": \"...\", \"prompt\": \"...\"}}: {error}"
        ))
    })?;
    let mut chat = json!({
        "model": request.model,
        "messages": [{"role": "user", "content": request.prompt}],
    });
    if let Some(max_tokens) = request.max_tokens {
        chat["max_tokens"] = json!(max_tokens);
    }
    if request.stream {
        chat["stream"] = json!(true);
        // The token counts of the final tiny event come from the usage chunk.
        chat["stream_options"] = json!({"include_usage": true});
    }
    Ok(chat.to_string().into_bytes())
}

/// `{"in": prompt_tokens, "out": completion_tokens}` of a Chat usage object.
fn tokens(usage: &Value) -> Value {
    json!({
        "in": usage["prompt_tokens"].as_u64().unwrap_or(0),
        "out": usage["completion_tokens"].as_u64().unwrap_or(0),
    })
}

/// A complete Chat Completions answer as a tiny answer.
fn response_from_chat(body: &[u8]) -> Result<Vec<u8>, PluginError> {
    let chat: Value = serde_json::from_slice(body).map_err(|error| {
        PluginError::upstream(format!("the Chat Completions answer is not JSON: {error}"))
    })?;
    let text: String = chat["choices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|choice| choice["message"]["content"].as_str())
        .collect();
    let tiny = json!({
        "model": chat["model"],
        "text": text,
        "tokens": tokens(&chat["usage"]),
    });
    Ok(tiny.to_string().into_bytes())
}

/// The message of a Chat Completions error (or the body itself when it is
/// something else).
fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => match &value["error"] {
            Value::String(message) => message.clone(),
            error => error["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string()),
        },
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

fn error_from_chat(body: &[u8]) -> Vec<u8> {
    json!({"error": error_message(body)})
        .to_string()
        .into_bytes()
}

fn sse_data(value: &Value) -> Vec<u8> {
    format!("data: {value}\n\n").into_bytes()
}

/// One tiny stream being converted: the SSE decoder and what the final event needs.
#[derive(Default)]
struct TinyStream {
    decoder: SseDecoder,
    tokens: Option<Value>,
    done: bool,
}

impl TinyStream {
    /// Converts the complete events in `piece` (plus what earlier pieces left).
    fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for data in self.decoder.push(piece) {
            self.event(&data, &mut out);
        }
        out
    }

    /// Converts what is left and closes the stream with its `done` event.
    fn finish(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(data) = self.decoder.finish() {
            self.event(&data, &mut out);
        }
        self.close(&mut out);
        out
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            self.done = true;
            out.extend(sse_data(
                &json!({"done": true, "tokens": self.tokens.take().unwrap_or(Value::Null)}),
            ));
        }
    }

    fn event(&mut self, data: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if data.trim() == "[DONE]" {
            self.close(out);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if chunk.get("error").is_some() {
            out.extend(sse_data(&json!({"error": error_message(data.as_bytes())})));
            return;
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            if let Some(text) = choice["delta"]["content"]
                .as_str()
                .filter(|t| !t.is_empty())
            {
                out.extend(sse_data(&json!({"text": text})));
            }
        }
        if chunk["usage"].is_object() {
            self.tokens = Some(tokens(&chunk["usage"]));
        }
    }
}

/// The data of Server-Sent Events from pieces cut anywhere (the
/// `text/event-stream` rules: lines end with LF, CRLF or CR; `data:` lines
/// of one event are joined with LF; a blank line ends the event; comments
/// and other fields are skipped).
#[derive(Default)]
struct SseDecoder {
    /// Bytes of a line not yet ended.
    line: Vec<u8>,
    /// The last byte was a CR: an LF right after it belongs to it.
    after_cr: bool,
    /// The `data` lines of the event so far.
    data: Option<String>,
}

impl SseDecoder {
    /// The data of every event `piece` completes.
    fn push(&mut self, piece: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &byte in piece {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(data) = self.line_ended(&line) {
                        events.push(data);
                    }
                }
                _ => self.line.push(byte),
            }
        }
        events
    }

    /// The data of an event the stream ended without a blank line after.
    fn finish(&mut self) -> Option<String> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty()
            && let Some(data) = self.line_ended(&line)
        {
            return Some(data);
        }
        self.data.take()
    }

    fn line_ended(&mut self, line: &[u8]) -> Option<String> {
        if line.is_empty() {
            return self.data.take();
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::testing::{MockHost, TestPlugin};

    use super::*;

    fn plugin() -> TestPlugin {
        MockHost::new()
            .start::<FormatTiny>()
            .expect("the plugin starts")
    }

    fn convert(
        plugin: &TestPlugin,
        (from, to): (&str, &str),
        kind: ConversionKind,
        stream: u64,
        body: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        plugin.format_convert(FormatConversion {
            from: from.to_owned(),
            to: to.to_owned(),
            kind,
            stream,
            body: body.to_vec(),
        })
    }

    fn json_of(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("the answer is JSON")
    }

    /// The data of every event of a tiny stream.
    fn events(stream: &[u8]) -> Vec<Value> {
        let text = String::from_utf8(stream.to_vec()).expect("UTF-8");
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
        text.split("\n\n")
            .filter(|block| !block.is_empty())
            .map(|block| {
                serde_json::from_str(block.strip_prefix("data: ").expect("a data line"))
                    .expect("JSON data")
            })
            .collect()
    }

    #[test]
    fn the_manifest_declares_the_adapter_and_its_endpoint() {
        let manifest = FormatTiny::manifest();
        let adapter = &manifest.format_adapters[0];
        assert_eq!((adapter.from.as_str(), adapter.to.as_str()), (TINY, CHAT));
        assert_eq!(adapter.endpoint.as_deref(), Some("/v1/tiny"));
    }

    #[test]
    fn a_request_becomes_one_user_message() {
        let plugin = plugin();
        let body = br#"{"model": "m1", "prompt": "Hello", "max_tokens": 7}"#;
        let chat =
            json_of(&convert(&plugin, (TINY, CHAT), ConversionKind::Request, 0, body).unwrap());
        assert_eq!(
            chat,
            json!({"model": "m1", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 7})
        );
        let body = br#"{"model": "m1", "prompt": "Hello", "stream": true}"#;
        let chat =
            json_of(&convert(&plugin, (TINY, CHAT), ConversionKind::Request, 0, body).unwrap());
        assert_eq!(chat["stream"], true);
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert!(chat.get("max_tokens").is_none());
    }

    #[test]
    fn a_bad_request_is_invalid_with_a_clear_message() {
        let plugin = plugin();
        for body in [&b"not json"[..], br#"{"model": "m1"}"#, br#"{"prompt": 3}"#] {
            let error =
                convert(&plugin, (TINY, CHAT), ConversionKind::Request, 0, body).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
            assert!(error.message().contains("example.tiny request"), "{error}");
        }
    }

    #[test]
    fn answers_and_errors_become_tiny() {
        let plugin = plugin();
        let chat = json!({
            "id": "c1", "object": "chat.completion", "model": "m1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        });
        let tiny = convert(
            &plugin,
            (CHAT, TINY),
            ConversionKind::Response,
            0,
            chat.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(
            json_of(&tiny),
            json!({"model": "m1", "text": "Hi there", "tokens": {"in": 5, "out": 2}})
        );
        let error = json!({"error": {"message": "slow down", "type": "rate_limit_error"}});
        let tiny = convert(
            &plugin,
            (CHAT, TINY),
            ConversionKind::Error,
            0,
            error.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(json_of(&tiny), json!({"error": "slow down"}));
        let tiny = convert(&plugin, (CHAT, TINY), ConversionKind::Error, 0, b"oops").unwrap();
        assert_eq!(json_of(&tiny), json!({"error": "oops"}));
    }

    #[test]
    fn other_directions_are_unsupported() {
        let plugin = plugin();
        let error = convert(&plugin, (CHAT, TINY), ConversionKind::Request, 0, b"{}").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        // Not declared at all: the mock host refuses like the host would never ask.
        let error = convert(
            &plugin,
            (TINY, "openai.responses"),
            ConversionKind::Request,
            0,
            b"{}",
        )
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
    }

    /// A Chat Completions stream as the host's converter writes it.
    fn chat_stream() -> Vec<u8> {
        let chunks = [
            json!({"id": "c1", "model": "m1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"id": "c1", "model": "m1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
            json!({"id": "c1", "model": "m1", "choices": [{"index": 0, "delta": {"content": "lo ✓"}}]}),
            json!({"id": "c1", "model": "m1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 9, "completion_tokens": 3}}),
        ];
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(format!("data: {chunk}\n\n").as_bytes());
        }
        out.extend(b"data: [DONE]\n\n");
        out
    }

    fn expected_stream() -> Vec<Value> {
        vec![
            json!({"text": "Hel"}),
            json!({"text": "lo ✓"}),
            json!({"done": true, "tokens": {"in": 9, "out": 3}}),
        ]
    }

    #[test]
    fn a_stream_converts_the_same_whatever_its_cuts() {
        let plugin = plugin();
        let stream = chat_stream();
        // Every cut in two, and one byte at a time (splitting the ✓ too).
        let mut cuts: Vec<Vec<usize>> = (0..=stream.len()).map(|at| vec![at]).collect();
        cuts.push((1..stream.len()).collect());
        for (id, cut) in cuts.iter().enumerate() {
            let id = id as u64 + 1;
            let mut out = Vec::new();
            let mut start = 0;
            for &end in cut.iter().chain([&stream.len()]) {
                out.extend(
                    convert(
                        &plugin,
                        (CHAT, TINY),
                        ConversionKind::StreamChunk,
                        id,
                        &stream[start..end],
                    )
                    .unwrap(),
                );
                start = end;
            }
            out.extend(convert(&plugin, (CHAT, TINY), ConversionKind::StreamEnd, id, b"").unwrap());
            assert_eq!(events(&out), expected_stream(), "cut at {cut:?}");
        }
        // Every stream's state is gone once it ended.
        assert_eq!(plugin.health().unwrap().details["open_streams"], 0);
    }

    #[test]
    fn streams_keep_their_own_state_and_line_endings_are_the_sse_ones() {
        let plugin = plugin();
        let stream = chat_stream();
        let crlf = String::from_utf8(stream.clone())
            .unwrap()
            .replace('\n', "\r\n")
            .into_bytes();
        let cr = String::from_utf8(stream.clone())
            .unwrap()
            .replace('\n', "\r")
            .into_bytes();
        let (mut out_crlf, mut out_cr) = (Vec::new(), Vec::new());
        // Two streams interleaved, both cut right after their first CR (in
        // the middle of a CRLF for the first).
        let cut = crlf.iter().position(|&b| b == b'\r').unwrap() + 1;
        out_crlf.extend(
            convert(
                &plugin,
                (CHAT, TINY),
                ConversionKind::StreamChunk,
                1,
                &crlf[..cut],
            )
            .unwrap(),
        );
        out_cr.extend(
            convert(
                &plugin,
                (CHAT, TINY),
                ConversionKind::StreamChunk,
                2,
                &cr[..cut],
            )
            .unwrap(),
        );
        assert_eq!(plugin.health().unwrap().details["open_streams"], 2);
        out_crlf.extend(
            convert(
                &plugin,
                (CHAT, TINY),
                ConversionKind::StreamChunk,
                1,
                &crlf[cut..],
            )
            .unwrap(),
        );
        out_cr.extend(
            convert(
                &plugin,
                (CHAT, TINY),
                ConversionKind::StreamChunk,
                2,
                &cr[cut..],
            )
            .unwrap(),
        );
        out_crlf.extend(convert(&plugin, (CHAT, TINY), ConversionKind::StreamEnd, 1, b"").unwrap());
        out_cr.extend(convert(&plugin, (CHAT, TINY), ConversionKind::StreamEnd, 2, b"").unwrap());
        assert_eq!(events(&out_crlf), expected_stream());
        assert_eq!(events(&out_cr), expected_stream());
    }

    #[test]
    fn a_stream_without_done_or_blank_line_is_flushed_at_its_end() {
        let plugin = plugin();
        let body = br#"data: {"choices": [{"delta": {"content": "Hi"}}]}"#;
        let out = convert(&plugin, (CHAT, TINY), ConversionKind::StreamChunk, 7, body).unwrap();
        assert!(out.is_empty(), "the event is not complete yet");
        let out = convert(&plugin, (CHAT, TINY), ConversionKind::StreamEnd, 7, b"").unwrap();
        assert_eq!(
            events(&out),
            vec![json!({"text": "Hi"}), json!({"done": true, "tokens": null})]
        );
        // A stream the host ends without any piece (the client left at once).
        let out = convert(&plugin, (CHAT, TINY), ConversionKind::StreamEnd, 8, b"").unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn an_error_event_reaches_the_tiny_client() {
        let plugin = plugin();
        let body = b"data: {\"error\": {\"message\": \"upstream broke\", \"type\": \"api_error\"}}\n\ndata: [DONE]\n\n";
        let mut out = convert(&plugin, (CHAT, TINY), ConversionKind::StreamChunk, 3, body).unwrap();
        out.extend(convert(&plugin, (CHAT, TINY), ConversionKind::StreamEnd, 3, b"").unwrap());
        assert_eq!(
            events(&out),
            vec![
                json!({"error": "upstream broke"}),
                json!({"done": true, "tokens": null})
            ]
        );
    }
}
