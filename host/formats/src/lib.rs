//! The three wire formats (`anthropic.messages`, `openai.chat_completions`,
//! `openai.responses`) and the converters between them.
#![deny(missing_docs)]

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

/// Serialises a model value; only maps with non-string keys can fail, and the models have none.
pub(crate) fn to_json_string<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("model types serialise: all map keys are strings")
}

/// Like [`to_json_string`], as bytes.
pub(crate) fn to_json_vec<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("model types serialise: all map keys are strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_ids_round_trip() {
        for format in Format::ALL {
            assert_eq!(format.id().parse::<Format>(), Ok(format));
            assert_eq!(format.to_string(), format.id());
        }
        assert!("openai".parse::<Format>().is_err());
    }
}
