//! A plugin route's streamed answer (plugin API 1.2) as a response body.
//!
//! The body asks the plugin for its next piece (`route.stream.next`) only
//! when hyper polls it, i.e. when the client has taken the previous piece:
//! a slow client slows the producer down instead of filling memory. When the
//! body is dropped before the stream ended (the client went away, or the
//! server is shutting down), the plugin is told (`route.stream.cancel`) so it
//! can drop the stream and what it holds; a producer waiting to send then
//! learns that the client has gone.
//!
//! The last piece may carry the answer's token usage and model (plugin API 1.3); they
//! land in the answer's slots before the body ends, so
//! `request.completed` (emitted at the end of the body) carries them.

use std::sync::Arc;

use bytes::Bytes;
use ccproxy_plugin_abi::protocol::{StreamRef, ops};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::{
    provider::ProviderAnswer,
    response::{Body, BoxError},
};
use crate::plugins::registry::ActivePlugin;

/// The reading side of one plugin stream; cancels it when dropped unfinished.
struct Reader {
    plugin: Arc<ActivePlugin>,
    stream: u64,
    /// The first piece, sent with the answer's head.
    first: Option<Vec<u8>>,
    ended: bool,
    /// Where the usage and model reported at the end go, when the answer
    /// said who answered.
    answer: Option<ProviderAnswer>,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<Bytes, BoxError>> {
        if let Some(first) = self.first.take().filter(|piece| !piece.is_empty()) {
            return Some(Ok(Bytes::from(first)));
        }
        loop {
            if self.ended {
                return None;
            }
            let reply = self
                .plugin
                .handle
                .call::<ops::RouteStreamNext>(
                    &StreamRef {
                        stream: self.stream,
                    },
                    Vec::new(),
                )
                .await;
            match reply {
                Ok(reply) if reply.meta.end => {
                    self.ended = true;
                    if let Some(answer) = &self.answer {
                        if let Some(usage) = reply.meta.usage {
                            let _ = answer.usage.set(super::pipeline::token_usage(usage));
                        }
                        if let Some(model) = reply.meta.model {
                            let _ = answer.model_at_end.set(model);
                        }
                    }
                }
                // An empty piece is no frame; ask again.
                Ok(reply) if reply.body.is_empty() => {}
                Ok(reply) => return Some(Ok(Bytes::from(reply.body))),
                Err(error) => {
                    // The stream broke: the client sees a truncated body.
                    self.ended = true;
                    tracing::warn!(plugin = %self.plugin.manifest.name, %error, "a plugin's streamed answer failed; the response is cut short");
                    return Some(Err(error.into()));
                }
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let plugin = self.plugin.clone();
        let stream = StreamRef {
            stream: self.stream,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = plugin
                    .handle
                    .call::<ops::RouteStreamCancel>(&stream, Vec::new())
                    .await;
            });
        }
    }
}

/// The body of stream `stream` of `plugin`, starting with `first`; the usage
/// and model its end reports go to `answer`.
pub(crate) fn body(
    plugin: Arc<ActivePlugin>,
    stream: u64,
    first: Vec<u8>,
    answer: Option<ProviderAnswer>,
) -> Body {
    let reader = Reader {
        plugin,
        stream,
        first: Some(first),
        ended: false,
        answer,
    };
    let frames = futures_util::stream::unfold(reader, |mut reader| async move {
        let piece = reader.next().await?;
        Some((piece.map(Frame::data), reader))
    });
    StreamBody::new(frames).boxed_unsync()
}
