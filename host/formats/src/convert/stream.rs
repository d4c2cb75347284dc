//! Streaming conversion: an incremental state machine per stream.
//!
//! A [`StreamConverter`] is a decoder of the upstream format, a normaliser, and an encoder
//! of the client's format. Events go in one at a time and converted events come out at
//! once; nothing waits for the end of the response. State is a few counters and ids per
//! stream, plus, for a Responses client only, the finished output items that
//! `response.completed` must repeat.

use super::ir::{self, Block};
use super::{ErrorKind, anthropic, openai_chat, openai_responses};
use crate::{Format, sse};

/// Seconds since the Unix epoch, for the `created` fields a source format lacks.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Converts a stream of server-sent events from one format to another, event by event.
///
/// `push` each upstream event as the [`sse::Decoder`] produces it, send what lands in `out`
/// to the client, and call `finish` when the upstream body ends. If the upstream stopped
/// before its final event, `finish` emits the client format's error ending (Anthropic
/// `error`, a Chat error chunk and `[DONE]`, Responses `error` and `response.failed`), so
/// the client always sees a well-formed stream; [`fail`](Self::fail) does the same for a
/// failure the caller detects (a broken upstream connection).
///
/// ```
/// use ccproxy_formats::{Format, convert::StreamConverter, sse};
///
/// let mut converter = StreamConverter::new(Format::OpenAiChat, Format::AnthropicMessages);
/// let mut out = Vec::new();
/// converter.push(&sse::Event::data(r#"{"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}"#), &mut out);
/// converter.push(&sse::Event::data(r#"{"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#), &mut out);
/// converter.push(&sse::Event::done(), &mut out);
/// converter.finish(&mut out);
/// let names: Vec<_> = out.iter().map(|event| event.event.as_deref().unwrap()).collect();
/// assert_eq!(names, ["message_start", "content_block_start", "content_block_delta",
///     "content_block_stop", "message_delta", "message_stop"]);
/// ```
#[derive(Debug)]
pub struct StreamConverter {
    from: Format,
    to: Format,
    stages: Stages,
}

#[derive(Debug)]
enum Stages {
    /// Same format: events pass through (with the model id rewritten if asked).
    Identity {
        model: Option<String>,
        /// Events passed through, which is the next Responses `sequence_number`.
        passed: u64,
        /// [`StreamConverter::fail`] ended the stream.
        failed: bool,
    },
    /// One hop through the internal representation.
    Convert(Box<Hop>),
    /// Several hops, each feeding the next.
    Chain(Vec<StreamConverter>),
}

#[derive(Debug)]
struct Hop {
    decoder: Decoder,
    normalizer: Normalizer,
    encoder: Encoder,
    /// Scratch buffer reused between pushes.
    events: Vec<ir::Event>,
}

#[derive(Debug)]
enum Decoder {
    Anthropic(anthropic::StreamDecoder),
    Chat(openai_chat::StreamDecoder),
    Responses(openai_responses::StreamDecoder),
}

#[derive(Debug)]
enum Encoder {
    Anthropic(anthropic::StreamEncoder),
    Chat(openai_chat::StreamEncoder),
    Responses(Box<openai_responses::StreamEncoder>),
}

impl StreamConverter {
    /// A converter from the upstream format `from` to the client format `to`.
    pub fn new(from: Format, to: Format) -> Self {
        StreamConverter::build(from, to, None)
    }

    /// A converter through every format of `formats` in turn, from the first (upstream) to
    /// the last (client): the chain a route declares. Consecutive duplicates collapse.
    /// `None` for an empty list.
    pub fn chain(formats: &[Format]) -> Option<Self> {
        let (&first, rest) = formats.split_first()?;
        let mut hops = Vec::new();
        let mut previous = first;
        for &format in rest {
            if format != previous {
                hops.push(StreamConverter::new(previous, format));
                previous = format;
            }
        }
        Some(match hops.len() {
            0 => StreamConverter::new(first, first),
            1 => hops.remove(0),
            _ => StreamConverter {
                from: first,
                to: previous,
                stages: Stages::Chain(hops),
            },
        })
    }

    fn build(from: Format, to: Format, model: Option<String>) -> Self {
        let stages = if from == to {
            Stages::Identity {
                model,
                passed: 0,
                failed: false,
            }
        } else {
            Stages::Convert(Box::new(Hop {
                decoder: match from {
                    Format::AnthropicMessages => Decoder::Anthropic(Default::default()),
                    Format::OpenAiChat => Decoder::Chat(Default::default()),
                    Format::OpenAiResponses => Decoder::Responses(Default::default()),
                },
                normalizer: Normalizer::default(),
                encoder: match to {
                    Format::AnthropicMessages => {
                        Encoder::Anthropic(anthropic::StreamEncoder::new(model))
                    }
                    Format::OpenAiChat => Encoder::Chat(openai_chat::StreamEncoder::new(model)),
                    Format::OpenAiResponses => {
                        Encoder::Responses(Box::new(openai_responses::StreamEncoder::new(model)))
                    }
                },
                events: Vec::new(),
            }))
        };
        StreamConverter { from, to, stages }
    }

    /// Reports `model` as the model id in the converted stream (the alias the client asked
    /// for) instead of the upstream's.
    pub fn with_model(self, model: impl Into<String>) -> Self {
        let model = model.into();
        match self.stages {
            Stages::Chain(mut hops) => {
                if let Some(last) = hops.pop() {
                    hops.push(last.with_model(model));
                }
                StreamConverter {
                    stages: Stages::Chain(hops),
                    ..self
                }
            }
            Stages::Convert(mut hop) => {
                // Rebuilt with the model; the client tools set before stay.
                let tools = match &mut hop.encoder {
                    Encoder::Responses(encoder) => encoder.take_tools(),
                    _ => None,
                };
                let built = StreamConverter::build(self.from, self.to, Some(model));
                match tools {
                    Some(tools) => built.with_tools(tools),
                    None => built,
                }
            }
            Stages::Identity { .. } => StreamConverter::build(self.from, self.to, Some(model)),
        }
    }

    /// Restores calls of the client's free-form and namespaced tools as the client declared
    /// them (see [`ClientTools`](super::ClientTools), from
    /// [`request_with_tools`](super::request_with_tools)). Only a Responses client has such
    /// tools; for others, and for a same-format stream, this changes nothing.
    pub fn with_tools(mut self, tools: super::ClientTools) -> Self {
        match &mut self.stages {
            Stages::Convert(hop) => {
                if let Encoder::Responses(encoder) = &mut hop.encoder {
                    encoder.set_tools(tools);
                }
                self
            }
            Stages::Chain(hops) => {
                if let Some(last) = hops.pop() {
                    hops.push(last.with_tools(tools));
                }
                self
            }
            Stages::Identity { .. } => self,
        }
    }

    /// The upstream format.
    pub fn from(&self) -> Format {
        self.from
    }

    /// The client format.
    pub fn to(&self) -> Format {
        self.to
    }

    /// Converts one upstream event, appending the client events it yields to `out`.
    ///
    /// Events that are not valid JSON of the upstream format, keep-alive pings and event
    /// types the client format has no counterpart for yield nothing.
    pub fn push(&mut self, event: &sse::Event, out: &mut Vec<sse::Event>) {
        match &mut self.stages {
            Stages::Identity {
                model,
                passed,
                failed,
            } => {
                if *failed {
                    return;
                }
                let mut event = event.clone();
                if let Some(model) = model {
                    super::rewrite_model_event(&mut event, model);
                }
                out.push(event);
                *passed += 1;
            }
            Stages::Convert(hop) => {
                let Hop {
                    decoder,
                    normalizer,
                    encoder,
                    events,
                } = &mut **hop;
                match decoder {
                    Decoder::Anthropic(decoder) => decoder.push(event, events),
                    Decoder::Chat(decoder) => decoder.push(event, events),
                    Decoder::Responses(decoder) => decoder.push(event, events),
                }
                for event in events.drain(..) {
                    normalizer.push(event, &mut |event| encoder.push(event, out));
                }
            }
            Stages::Chain(hops) => {
                let mut events = vec![event.clone()];
                for hop in hops {
                    let mut next = Vec::with_capacity(events.len());
                    for event in &events {
                        hop.push(event, &mut next);
                    }
                    events = next;
                }
                out.extend(events);
            }
        }
    }

    /// Ends the stream with the client format's error ending, for a failure the proxy
    /// detects itself: the upstream connection broke, went silent, or sent bytes that are
    /// not SSE. Anthropic clients get an `error` event; Chat clients an error chunk and
    /// `[DONE]`; Responses clients an `error` event (OpenAI's documented fields, and the same
    /// error nested in `error` as the live API sends it) and, for a converted stream,
    /// `response.failed`, with the open output item closed first. Later pushes and
    /// [`finish`](Self::finish) yield nothing, and a converted stream that already ended
    /// yields nothing here either.
    ///
    /// A same-format converter passes events through unparsed, so it cannot tell whether
    /// the stream already ended, and its Responses `error` event numbers itself after the
    /// events pushed through it: a caller that passes the upstream bytes on without pushing
    /// them gets `sequence_number` 0.
    pub fn fail(&mut self, kind: ErrorKind, message: &str, out: &mut Vec<sse::Event>) {
        match &mut self.stages {
            Stages::Identity { passed, failed, .. } => {
                if *failed {
                    return;
                }
                *failed = true;
                let error = ir::Event::Error {
                    kind,
                    message: message.to_owned(),
                };
                match self.to {
                    Format::AnthropicMessages => {
                        anthropic::StreamEncoder::default().push(error, out)
                    }
                    Format::OpenAiChat => openai_chat::StreamEncoder::default().push(error, out),
                    Format::OpenAiResponses => {
                        out.push(openai_responses::error_event(kind, message, *passed).to_sse())
                    }
                }
            }
            Stages::Convert(hop) => {
                let Hop {
                    normalizer,
                    encoder,
                    ..
                } = &mut **hop;
                normalizer.push(
                    ir::Event::Error {
                        kind,
                        message: message.to_owned(),
                    },
                    &mut |event| encoder.push(event, out),
                );
            }
            Stages::Chain(hops) => {
                let Some((first, rest)) = hops.split_first_mut() else {
                    return;
                };
                let mut events = Vec::new();
                first.fail(kind, message, &mut events);
                for hop in rest {
                    let mut next = Vec::with_capacity(events.len());
                    for event in &events {
                        hop.push(event, &mut next);
                    }
                    events = next;
                }
                out.extend(events);
            }
        }
    }

    /// Ends the stream. Emits the final events still pending, or the client format's error
    /// ending when the upstream stopped before its last event. Later pushes yield nothing.
    pub fn finish(&mut self, out: &mut Vec<sse::Event>) {
        match &mut self.stages {
            Stages::Identity { .. } => {}
            Stages::Convert(hop) => {
                let Hop {
                    decoder,
                    normalizer,
                    encoder,
                    events,
                } = &mut **hop;
                if let Decoder::Chat(decoder) = decoder {
                    decoder.finish(events);
                }
                for event in events.drain(..) {
                    normalizer.push(event, &mut |event| encoder.push(event, out));
                }
                normalizer.finish(&mut |event| encoder.push(event, out));
            }
            Stages::Chain(hops) => {
                let mut events: Vec<sse::Event> = Vec::new();
                for hop in hops {
                    let mut next = Vec::with_capacity(events.len());
                    for event in &events {
                        hop.push(event, &mut next);
                    }
                    hop.finish(&mut next);
                    events = next;
                }
                out.extend(events);
            }
        }
    }
}

/// Builds one complete response in the client's format from an upstream stream,
/// for clients that asked for no stream from an upstream that always streams
/// (the Codex backend). Holds the response being built, nothing else.
///
/// ```
/// use ccproxy_formats::{Format, convert::Accumulator, sse::Event};
///
/// let mut accumulator = Accumulator::new(Format::AnthropicMessages, Format::OpenAiChat);
/// for (name, data) in [
///     ("message_start", r#"{"type":"message_start","message":{"id":"m1","model":"claude","content":[],"usage":{"input_tokens":3,"output_tokens":0}}}"#),
///     ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
///     ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#),
///     ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
///     ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}"#),
///     ("message_stop", r#"{"type":"message_stop"}"#),
/// ] {
///     accumulator.push(&Event::new(name, data));
/// }
/// let chat: serde_json::Value = serde_json::from_slice(&accumulator.finish().unwrap()).unwrap();
/// assert_eq!(chat["choices"][0]["message"]["content"], "Hi");
/// ```
#[derive(Debug)]
pub struct Accumulator {
    to: Format,
    decoder: Decoder,
    normalizer: Normalizer,
    events: Vec<ir::Event>,
    response: ir::Response,
    /// The block being built: its kind and text or arguments so far.
    open: Option<(Block, String, Option<String>)>,
    outcome: Option<Result<(), AccumulateError>>,
    /// The client's free-form and namespaced tools, when the request had some.
    tools: Option<super::ClientTools>,
}

/// The upstream stream ended in an error, or before it was complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AccumulateError {
    /// What kind of error, for the status and the client's error body.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

impl Accumulator {
    /// An accumulator of an upstream stream in `from` into a response in `to`.
    pub fn new(from: Format, to: Format) -> Self {
        Accumulator {
            to,
            decoder: match from {
                Format::AnthropicMessages => Decoder::Anthropic(Default::default()),
                Format::OpenAiChat => Decoder::Chat(Default::default()),
                Format::OpenAiResponses => Decoder::Responses(Default::default()),
            },
            normalizer: Normalizer::default(),
            events: Vec::new(),
            response: ir::Response::default(),
            open: None,
            outcome: None,
            tools: None,
        }
    }

    /// Restores calls of the client's free-form and namespaced tools, as
    /// [`StreamConverter::with_tools`] does.
    pub fn with_tools(mut self, tools: super::ClientTools) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Takes one upstream event.
    pub fn push(&mut self, event: &sse::Event) {
        match &mut self.decoder {
            Decoder::Anthropic(decoder) => decoder.push(event, &mut self.events),
            Decoder::Chat(decoder) => decoder.push(event, &mut self.events),
            Decoder::Responses(decoder) => decoder.push(event, &mut self.events),
        }
        self.drain();
    }

    fn drain(&mut self) {
        let mut normalized = Vec::with_capacity(self.events.len());
        for event in self.events.drain(..) {
            self.normalizer
                .push(event, &mut |event| normalized.push(event));
        }
        for event in normalized {
            self.apply(event);
        }
    }

    fn apply(&mut self, event: ir::Event) {
        match event {
            ir::Event::Start {
                id,
                model,
                created,
                usage,
            } => {
                self.response.id = id;
                self.response.model = model;
                self.response.created = created;
                self.response.usage = usage;
            }
            ir::Event::BlockStart(block) => self.open = Some((block, String::new(), None)),
            ir::Event::Text(text) | ir::Event::Reasoning(text) | ir::Event::ToolArgs(text) => {
                if let Some((_, buffer, _)) = &mut self.open {
                    buffer.push_str(&text);
                }
            }
            ir::Event::Signature(signature) => {
                if let Some((_, _, slot)) = &mut self.open {
                    slot.get_or_insert_with(String::new).push_str(&signature);
                }
            }
            ir::Event::BlockStop => {
                if let Some((block, text, signature)) = self.open.take() {
                    self.response.parts.push(match block {
                        Block::Text => ir::Part::Text(text),
                        Block::Reasoning => ir::Part::Reasoning { text, signature },
                        Block::ToolCall { id, name } => ir::Part::ToolCall {
                            id,
                            name,
                            arguments: text,
                        },
                    });
                }
            }
            ir::Event::Finish { stop, usage } => {
                self.response.stop = stop;
                // Final usage counts replace the start's; keep start's input counts
                // when the final event reports none.
                let start = std::mem::take(&mut self.response.usage);
                self.response.usage = ir::Usage {
                    input: if usage.input == 0 {
                        start.input
                    } else {
                        usage.input
                    },
                    cache_read: if usage.cache_read == 0 {
                        start.cache_read
                    } else {
                        usage.cache_read
                    },
                    cache_creation: if usage.cache_creation == 0 {
                        start.cache_creation
                    } else {
                        usage.cache_creation
                    },
                    ..usage
                };
                self.outcome = Some(Ok(()));
            }
            ir::Event::Error { kind, message } => {
                self.outcome = Some(Err(AccumulateError { kind, message }));
            }
        }
    }

    /// The complete response in the client's format, or why there is none.
    pub fn finish(mut self) -> Result<Vec<u8>, AccumulateError> {
        if let Decoder::Chat(decoder) = &mut self.decoder {
            decoder.finish(&mut self.events);
        }
        self.drain();
        if self.outcome.is_none() {
            let mut tail = Vec::new();
            self.normalizer.finish(&mut |event| tail.push(event));
            for event in tail {
                self.apply(event);
            }
        }
        match self.outcome.take() {
            Some(Ok(())) => Ok(super::encode_response(
                self.to,
                self.response,
                self.tools.as_ref(),
            )),
            Some(Err(error)) => Err(error),
            None => Err(AccumulateError {
                kind: ErrorKind::Api,
                message: "the upstream stream ended before the response was complete".to_owned(),
            }),
        }
    }
}

impl Encoder {
    fn push(&mut self, event: ir::Event, out: &mut Vec<sse::Event>) {
        match self {
            Encoder::Anthropic(encoder) => encoder.push(event, out),
            Encoder::Chat(encoder) => encoder.push(event, out),
            Encoder::Responses(encoder) => encoder.push(event, out),
        }
    }
}

/// Turns whatever a decoder produced into the well-formed sequence encoders rely on (see
/// [`ir::Event`]): synthesises a missing start, opens a block for a stray text or reasoning
/// delta, closes a block left open, drops deltas that fit no block (tool arguments without a
/// tool call) and everything after the end.
#[derive(Debug, Default)]
struct Normalizer {
    started: bool,
    open: Option<Open>,
    ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Reasoning,
    Tool,
}

impl Normalizer {
    fn push(&mut self, event: ir::Event, emit: &mut dyn FnMut(ir::Event)) {
        if self.ended {
            return;
        }
        if let ir::Event::Start { .. } = event {
            // Internal: a second start (Responses sends created and in_progress) adds
            // nothing.
            if !self.started {
                self.started = true;
                emit(event);
            }
            return;
        }
        if !self.started {
            self.started = true;
            emit(ir::Event::Start {
                id: "msg_unknown".to_owned(),
                model: String::new(),
                created: None,
                usage: ir::Usage::default(),
            });
        }
        match event {
            ir::Event::Start { .. } => {}
            // Empty fragments (Anthropic opens every tool input with one) carry nothing.
            ir::Event::Text(text) | ir::Event::Reasoning(text) | ir::Event::ToolArgs(text)
                if text.is_empty() => {}
            ir::Event::BlockStart(block) => {
                self.close(emit);
                self.open = Some(match block {
                    Block::Text => Open::Text,
                    Block::Reasoning => Open::Reasoning,
                    Block::ToolCall { .. } => Open::Tool,
                });
                emit(ir::Event::BlockStart(block));
            }
            ir::Event::Text(text) => {
                self.ensure(Open::Text, Block::Text, emit);
                emit(ir::Event::Text(text));
            }
            ir::Event::Reasoning(text) => {
                self.ensure(Open::Reasoning, Block::Reasoning, emit);
                emit(ir::Event::Reasoning(text));
            }
            ir::Event::Signature(signature) => {
                if self.open == Some(Open::Reasoning) {
                    emit(ir::Event::Signature(signature));
                }
            }
            ir::Event::ToolArgs(arguments) => {
                if self.open == Some(Open::Tool) {
                    emit(ir::Event::ToolArgs(arguments));
                }
            }
            ir::Event::BlockStop => self.close(emit),
            ir::Event::Finish { .. } => {
                self.close(emit);
                self.ended = true;
                emit(event);
            }
            ir::Event::Error { .. } => {
                self.ended = true;
                emit(event);
            }
        }
    }

    fn ensure(&mut self, kind: Open, block: Block, emit: &mut dyn FnMut(ir::Event)) {
        if self.open != Some(kind) {
            self.close(emit);
            self.open = Some(kind);
            emit(ir::Event::BlockStart(block));
        }
    }

    fn close(&mut self, emit: &mut dyn FnMut(ir::Event)) {
        if self.open.take().is_some() {
            emit(ir::Event::BlockStop);
        }
    }

    /// The upstream ended: a stream without its final event ends in an error.
    fn finish(&mut self, emit: &mut dyn FnMut(ir::Event)) {
        if !self.ended {
            self.push(
                ir::Event::Error {
                    kind: ErrorKind::Api,
                    message: "the upstream stream ended before the response was complete"
                        .to_owned(),
                },
                emit,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converters_can_move_between_tasks() {
        fn assert_send_static<T: Send + 'static>() {}
        assert_send_static::<StreamConverter>();
    }

    #[test]
    fn the_normalizer_repairs_what_decoders_leave_out() {
        let mut normalizer = Normalizer::default();
        let mut out = Vec::new();
        for event in [
            ir::Event::ToolArgs("{}".into()),
            ir::Event::Text("hi".into()),
            ir::Event::Finish {
                stop: ir::Stop::default(),
                usage: ir::Usage::default(),
            },
            ir::Event::Text("late".into()),
        ] {
            normalizer.push(event, &mut |event| out.push(event));
        }
        assert!(
            matches!(out[0], ir::Event::Start { .. }),
            "a start is synthesised"
        );
        assert_eq!(
            out[1..],
            [
                ir::Event::BlockStart(Block::Text),
                ir::Event::Text("hi".into()),
                ir::Event::BlockStop,
                ir::Event::Finish {
                    stop: ir::Stop::default(),
                    usage: ir::Usage::default()
                },
            ],
            "arguments without a tool call and events after the end are dropped"
        );
    }
}
