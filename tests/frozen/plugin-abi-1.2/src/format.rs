//! Format adapters (plugin API 1.2): a plugin that declares
//! [`Manifest::format_adapter`](crate::Manifest::format_adapter) converts
//! bodies between its own wire format and one of the host's core formats in
//! [`Plugin::on_format_convert`](crate::Plugin::on_format_convert).
//!
//! On an adapter endpoint
//! ([`Manifest::format_adapter_endpoint`](crate::Manifest::format_adapter_endpoint))
//! the host asks for one [`ConversionKind::Request`] (the client's body, from
//! the plugin's format to the core one), then for the answer the other way: one
//! [`ConversionKind::Response`] or [`ConversionKind::Error`], or, for a stream,
//! [`ConversionKind::StreamChunk`] per piece and one [`ConversionKind::StreamEnd`].

use std::fmt;

/// What a [`FormatConversion`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversionKind {
    /// A client request body.
    Request,
    /// A complete answer body (status below 400).
    Response,
    /// An error answer body (status 400 or above).
    Error,
    /// A piece of an SSE stream, cut anywhere (in the middle of a line too):
    /// keep what is incomplete for the next piece of the same
    /// [`FormatConversion::stream`], answer what is complete (may be empty).
    StreamChunk,
    /// The stream ended (or the client left): the body is empty; answer what
    /// was held back, and forget the stream's state.
    StreamEnd,
}

impl ConversionKind {
    /// The name on the wire: `request`, `response`, `error`, `stream_chunk`, `stream_end`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversionKind::Request => "request",
            ConversionKind::Response => "response",
            ConversionKind::Error => "error",
            ConversionKind::StreamChunk => "stream_chunk",
            ConversionKind::StreamEnd => "stream_end",
        }
    }

    /// The kind named `name`, if this SDK knows it.
    ///
    /// ```
    /// use ccproxy_plugin_abi::ConversionKind;
    /// assert_eq!(ConversionKind::from_name("stream_chunk"), Some(ConversionKind::StreamChunk));
    /// assert_eq!(ConversionKind::from_name("teleport"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "request" => ConversionKind::Request,
            "response" => ConversionKind::Response,
            "error" => ConversionKind::Error,
            "stream_chunk" => ConversionKind::StreamChunk,
            "stream_end" => ConversionKind::StreamEnd,
            _ => return None,
        })
    }

    /// Whether this is a piece or the end of a stream.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            ConversionKind::StreamChunk | ConversionKind::StreamEnd
        )
    }
}

impl fmt::Display for ConversionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One body (or stream piece) to convert with one of the manifest's format
/// adapters, as [`Plugin::on_format_convert`](crate::Plugin::on_format_convert)
/// receives it.
///
/// ```
/// use ccproxy_plugin_abi::{ConversionKind, FormatConversion};
/// let conversion = FormatConversion {
///     from: "example.tiny".into(),
///     to: "openai.chat_completions".into(),
///     kind: ConversionKind::Request,
///     stream: 0,
///     body: br#"{"prompt": "hi"}"#.to_vec(),
/// };
/// assert_eq!(conversion.kind.as_str(), "request");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatConversion {
    /// The format the body is in: the adapter's `from` for a request, its
    /// `to` (a core format) for answers.
    pub from: String,
    /// The format to produce.
    pub to: String,
    /// What the body is.
    pub kind: ConversionKind,
    /// For stream kinds: the stream's id, unique per answer while the host
    /// runs; the adapter keeps per-stream state under it. `0` for the others.
    pub stream: u64,
    /// The body, or the stream piece (empty for [`ConversionKind::StreamEnd`]).
    pub body: Vec<u8>,
}
