//! Token usage read off an answer as it passes: from a complete body, or
//! event by event from a stream, in any of the three formats, without
//! converting anything (what access logs and cost tracking need).

use serde::{Deserialize, Serialize};

use super::{anthropic, ir, openai_chat, openai_responses};
use crate::{Format, sse};

/// Token counts of one answer, under Anthropic's names: `input_tokens` are
/// the input tokens not read from or written to the prompt cache, so the
/// four add up to what was billed as input plus output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    // Internal: fields in alphabetical order, as `json!` writes keys, so
    // hook data written from it matches data written from a `Value`.
    /// Input tokens written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
    /// Input tokens neither read from nor written to the prompt cache.
    pub input_tokens: u64,
    /// Output tokens (reasoning included).
    pub output_tokens: u64,
    /// Output tokens spent on reasoning, when the upstream says.
    pub reasoning_tokens: u64,
}

impl From<ir::Usage> for TokenUsage {
    fn from(usage: ir::Usage) -> Self {
        Self {
            input_tokens: usage.uncached_input(),
            output_tokens: usage.output,
            cache_read_input_tokens: usage.cache_read,
            cache_creation_input_tokens: usage.cache_creation,
            reasoning_tokens: usage.reasoning,
        }
    }
}

/// Just the `usage` of a body or event; everything else is skipped unread.
#[derive(Deserialize)]
struct WithUsage<U> {
    #[serde(default = "none")]
    usage: Option<U>,
}

/// An Anthropic `message_start` (`message.usage`) or any event with `usage`.
#[derive(Deserialize)]
struct AnthropicEvent {
    #[serde(default = "none")]
    message: Option<WithUsage<AnthropicUsage>>,
    #[serde(default = "none")]
    usage: Option<AnthropicUsage>,
}

/// A Responses event whose `response` carries the final `usage`.
#[derive(Deserialize)]
struct ResponsesEvent {
    #[serde(default = "none")]
    response: Option<WithUsage<ResponsesUsage>>,
}

// The counts alone, without the models' catch-all `extra` (which would
// buffer every other key): reading usage must cost little on every answer.

#[derive(Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<CachedTokens>,
    #[serde(default)]
    completion_tokens_details: Option<ReasoningTokens>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<CachedTokens>,
    #[serde(default)]
    output_tokens_details: Option<ReasoningTokens>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CachedTokens {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ReasoningTokens {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl AnthropicUsage {
    fn read(&self) -> ir::Usage {
        anthropic::decode_usage(&crate::anthropic::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            extra: Default::default(),
        })
    }
}

/// `cache_creation_input_tokens` as the converters put it in OpenAI usage.
fn cache_creation_extra(tokens: Option<u64>) -> crate::Extra {
    let mut extra = crate::Extra::new();
    if let Some(tokens) = tokens {
        extra.insert("cache_creation_input_tokens".to_owned(), tokens.into());
    }
    extra
}

impl ChatUsage {
    fn read(&self) -> ir::Usage {
        use crate::openai_chat as api;
        openai_chat::decode_usage(&api::Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.prompt_tokens + self.completion_tokens,
            prompt_tokens_details: self.prompt_tokens_details.as_ref().map(|details| {
                api::PromptTokensDetails {
                    cached_tokens: details.cached_tokens,
                    extra: Default::default(),
                }
            }),
            completion_tokens_details: self.completion_tokens_details.as_ref().map(|details| {
                api::CompletionTokensDetails {
                    reasoning_tokens: details.reasoning_tokens,
                    extra: Default::default(),
                }
            }),
            extra: cache_creation_extra(self.cache_creation_input_tokens),
        })
    }
}

impl ResponsesUsage {
    fn read(&self) -> ir::Usage {
        use crate::openai_responses as api;
        openai_responses::decode_usage(&api::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            total_tokens: self.input_tokens + self.output_tokens,
            input_tokens_details: self.input_tokens_details.as_ref().map(|details| {
                api::InputTokensDetails {
                    cached_tokens: details.cached_tokens.unwrap_or(0),
                    extra: Default::default(),
                }
            }),
            output_tokens_details: self.output_tokens_details.as_ref().map(|details| {
                api::OutputTokensDetails {
                    reasoning_tokens: details.reasoning_tokens.unwrap_or(0),
                    extra: Default::default(),
                }
            }),
            extra: cache_creation_extra(self.cache_creation_input_tokens),
        })
    }
}

fn none<T>() -> Option<T> {
    None
}

/// The usage of a complete (non-stream) answer in `format`; `None` when it
/// has none or is not an answer of that format.
pub fn response_usage(format: Format, body: &[u8]) -> Option<TokenUsage> {
    let usage = match format {
        Format::AnthropicMessages => serde_json::from_slice::<WithUsage<AnthropicUsage>>(body)
            .ok()?
            .usage?
            .read(),
        Format::OpenAiChat => serde_json::from_slice::<WithUsage<ChatUsage>>(body)
            .ok()?
            .usage?
            .read(),
        Format::OpenAiResponses => serde_json::from_slice::<WithUsage<ResponsesUsage>>(body)
            .ok()?
            .usage?
            .read(),
    };
    Some(usage.into())
}

/// Collects the usage of a stream in `format` from its events as they pass:
/// Anthropic's `message_start` (input and cache) and `message_delta`
/// (output, and the input again on newer models), Chat's usage chunk
/// (`stream_options.include_usage`), Responses' `response.completed`.
/// Events without `"usage"` in their data are not parsed.
#[derive(Debug)]
pub struct UsageScanner {
    format: Format,
    usage: Option<ir::Usage>,
    finder: memchr::memmem::Finder<'static>,
}

impl UsageScanner {
    /// A scanner for a stream in `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            usage: None,
            finder: memchr::memmem::Finder::new(b"\"usage\""),
        }
    }

    /// Reads `event`'s usage, if it has one.
    pub fn push(&mut self, event: &sse::Event) {
        if self.finder.find(event.data.as_bytes()).is_none() {
            return;
        }
        match self.format {
            Format::AnthropicMessages => {
                let Ok(parsed) = serde_json::from_str::<AnthropicEvent>(&event.data) else {
                    return;
                };
                let start = parsed.message.and_then(|message| message.usage);
                if let Some(usage) = start {
                    self.usage = Some(usage.read());
                }
                if let Some(delta) = parsed.usage {
                    let mut usage = self.usage.unwrap_or_default();
                    let later = delta.read();
                    usage.output = later.output.max(usage.output);
                    // Newer models repeat the input counts in message_delta.
                    if delta.input_tokens.is_some() || later.cache_read > 0 {
                        usage.input = later.input.max(usage.input);
                        usage.cache_read = later.cache_read.max(usage.cache_read);
                        usage.cache_creation = later.cache_creation.max(usage.cache_creation);
                    }
                    self.usage = Some(usage);
                }
            }
            Format::OpenAiChat => {
                if let Ok(WithUsage { usage: Some(usage) }) =
                    serde_json::from_str::<WithUsage<ChatUsage>>(&event.data)
                {
                    self.usage = Some(usage.read());
                }
            }
            Format::OpenAiResponses => {
                let usage = serde_json::from_str::<ResponsesEvent>(&event.data)
                    .ok()
                    .and_then(|parsed| parsed.response)
                    .and_then(|response| response.usage);
                if let Some(usage) = usage {
                    self.usage = Some(usage.read());
                }
            }
        }
    }

    /// The usage seen so far; `None` before any.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage.map(TokenUsage::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_answers_in_each_format() {
        let anthropic = br#"{"type":"message","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":7}}"#;
        assert_eq!(
            response_usage(Format::AnthropicMessages, anthropic),
            Some(TokenUsage {
                input_tokens: 10,
                output_tokens: 5,
                cache_read_input_tokens: 100,
                cache_creation_input_tokens: 7,
                reasoning_tokens: 0,
            })
        );
        let chat = br#"{"object":"chat.completion","usage":{"prompt_tokens":110,"completion_tokens":5,"total_tokens":115,"prompt_tokens_details":{"cached_tokens":100},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        let usage = response_usage(Format::OpenAiChat, chat).unwrap();
        assert_eq!(
            (
                usage.input_tokens,
                usage.cache_read_input_tokens,
                usage.reasoning_tokens
            ),
            (10, 100, 2)
        );
        let responses = br#"{"object":"response","usage":{"input_tokens":30,"output_tokens":4,"total_tokens":34,"input_tokens_details":{"cached_tokens":20}}}"#;
        let usage = response_usage(Format::OpenAiResponses, responses).unwrap();
        assert_eq!(
            (usage.input_tokens, usage.cache_read_input_tokens),
            (10, 20)
        );
        assert_eq!(response_usage(Format::AnthropicMessages, b"{}"), None);
        assert_eq!(response_usage(Format::OpenAiChat, b"not json"), None);
    }

    fn scan(format: Format, events: &[(&str, &str)]) -> Option<TokenUsage> {
        let mut scanner = UsageScanner::new(format);
        for (name, data) in events {
            scanner.push(&sse::Event::new(*name, *data));
        }
        scanner.usage()
    }

    #[test]
    fn streams_in_each_format() {
        let anthropic = scan(
            Format::AnthropicMessages,
            &[
                (
                    "message_start",
                    r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":12,"cache_read_input_tokens":50,"output_tokens":1}}}"#,
                ),
                ("content_block_delta", r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"the word usage"}}"#),
                ("message_delta", r#"{"type":"message_delta","usage":{"output_tokens":42}}"#),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                anthropic.input_tokens,
                anthropic.cache_read_input_tokens,
                anthropic.output_tokens
            ),
            (12, 50, 42)
        );
        let chat = scan(
            Format::OpenAiChat,
            &[
                ("", r#"{"choices":[{"delta":{"content":"hi"}}],"usage":null}"#),
                ("", r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#),
            ],
        )
        .unwrap();
        assert_eq!((chat.input_tokens, chat.output_tokens), (9, 3));
        let responses = scan(
            Format::OpenAiResponses,
            &[(
                "response.completed",
                r#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":5,"output_tokens":6,"total_tokens":11}}}"#,
            )],
        )
        .unwrap();
        assert_eq!((responses.input_tokens, responses.output_tokens), (5, 6));
        assert_eq!(scan(Format::OpenAiChat, &[("", r#"{"choices":[]}"#)]), None);
    }
}
