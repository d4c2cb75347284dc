//! Step 1: a peek at the client's body for `stream` and `model`, the only
//! fields the host reads before the request is converted.

use http::StatusCode;
use serde::Deserialize;

use super::ProxyError;

/// What the host reads of the client's body.
#[derive(Deserialize)]
pub(super) struct Peek {
    /// The client asked for a stream.
    #[serde(default)]
    pub(super) stream: Option<bool>,
    /// The model the client asked for.
    #[serde(default)]
    pub(super) model: Option<String>,
}

/// Reads `stream` and `model`; a body that is not JSON is the client's
/// fault (400).
pub(super) fn peek(body: &[u8]) -> Result<Peek, ProxyError> {
    serde_json::from_slice(body).map_err(|error| {
        ProxyError::client(
            StatusCode::BAD_REQUEST,
            format!("request body is not valid JSON: {error}"),
        )
    })
}
