//! The data of the provider events sent on every request, serialised
//! straight from borrowed fields instead of through a `Value` (keys in the
//! alphabetical order `json!` writes them in).

use serde::{Serialize, ser::SerializeSeq};

use crate::telemetry::redact_header;

/// A header map written as `[name, value]` lists with secrets masked.
pub(super) struct MaskedHeaderMap<'a>(pub(super) &'a http::HeaderMap);

impl Serialize for MaskedHeaderMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (name, value) in self.0 {
            let value = String::from_utf8_lossy(value.as_bytes());
            seq.serialize_element(&(name.as_str(), redact_header(name.as_str(), &value)))?;
        }
        seq.end()
    }
}

/// Header pairs written as `[name, value]` lists with secrets masked.
pub(super) struct MaskedPairs<'a>(pub(super) &'a [(String, String)]);

impl Serialize for MaskedPairs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (name, value) in self.0 {
            seq.serialize_element(&(name, redact_header(name, value)))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
pub(super) struct HttpRequest<'a> {
    pub(super) is_client_request: bool,
    pub(super) is_provider_request: bool,
    pub(super) method: &'a str,
    pub(super) provider: &'a str,
    pub(super) request_id: &'a str,
    pub(super) url: &'a str,
}

#[derive(Serialize)]
pub(super) struct RequestSent<'a> {
    /// The upstream request's headers, credentials masked.
    pub(super) headers: MaskedPairs<'a>,
    pub(super) is_streaming: bool,
    pub(super) method: &'a str,
    pub(super) provider: &'a str,
    pub(super) request_id: &'a str,
    pub(super) url: &'a str,
}

#[derive(Serialize)]
pub(super) struct HttpResponse<'a> {
    pub(super) duration_ms: f64,
    pub(super) is_provider_response: bool,
    pub(super) method: &'a str,
    pub(super) provider: &'a str,
    pub(super) request_id: &'a str,
    pub(super) status_code: u16,
    pub(super) url: &'a str,
}

#[derive(Serialize)]
pub(super) struct ResponseReceived<'a> {
    pub(super) duration_ms: f64,
    /// The upstream's headers, masked; only when a hook asked for the
    /// answer's body (`HookBody::UpstreamResponseBody`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) headers: Option<MaskedHeaderMap<'a>>,
    pub(super) method: &'a str,
    pub(super) provider: &'a str,
    pub(super) request_id: &'a str,
    pub(super) status_code: u16,
    pub(super) url: &'a str,
}

#[derive(Serialize)]
pub(super) struct StreamStart<'a> {
    pub(super) provider: &'a str,
    pub(super) request_id: &'a str,
}

#[derive(Serialize)]
pub(super) struct StreamChunk<'a> {
    pub(super) chunk_number: u64,
    pub(super) chunk_size: usize,
    pub(super) request_id: &'a str,
    /// `upstream` (as it arrived) or `client` (as it was sent).
    pub(super) side: &'static str,
}

#[derive(Serialize)]
pub(super) struct StreamEnd<'a> {
    /// The model the client asked for.
    pub(super) model: Option<&'a str>,
    pub(super) provider: &'a str,
    pub(super) request_id: &'a str,
    pub(super) total_bytes: u64,
    pub(super) total_chunks: u64,
    /// `null` until the stream said.
    pub(super) usage: Option<ccproxy_formats::convert::TokenUsage>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn same_json(value: impl Serialize, expected: serde_json::Value) {
        // Same text, not only the same value: plugins receive the text.
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn event_data_is_what_json_wrote() {
        let (request_id, name, method, url) = ("r1", "claude_api", "POST", "http://u/v1/messages");
        same_json(
            HttpRequest {
                is_client_request: false,
                is_provider_request: true,
                method,
                provider: name,
                request_id,
                url,
            },
            json!({"request_id": request_id, "provider": name, "method": method, "url": url, "is_client_request": false, "is_provider_request": true}),
        );
        let headers = [
            ("x-api-key".to_owned(), "sk-ant-secret-value".to_owned()),
            ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
        ];
        same_json(
            RequestSent {
                headers: MaskedPairs(&headers),
                is_streaming: true,
                method,
                provider: name,
                request_id,
                url,
            },
            json!({"request_id": request_id, "provider": name, "method": method, "url": url, "is_streaming": true,
                "headers": [["x-api-key", redact_header("x-api-key", "sk-ant-secret-value")], ["anthropic-version", "2023-06-01"]]}),
        );
        for duration_ms in [1.0, 0.123_456_789, 250.5] {
            same_json(
                HttpResponse {
                    duration_ms,
                    is_provider_response: true,
                    method,
                    provider: name,
                    request_id,
                    status_code: 200,
                    url,
                },
                json!({"request_id": request_id, "provider": name, "method": method, "url": url, "status_code": 200u16, "duration_ms": duration_ms, "is_provider_response": true}),
            );
            same_json(
                ResponseReceived {
                    duration_ms,
                    headers: None,
                    method,
                    provider: name,
                    request_id,
                    status_code: 429,
                    url,
                },
                json!({"request_id": request_id, "provider": name, "method": method, "url": url, "status_code": 429u16, "duration_ms": duration_ms}),
            );
        }
        same_json(
            StreamStart {
                provider: name,
                request_id,
            },
            json!({"request_id": request_id, "provider": name}),
        );
        same_json(
            StreamChunk {
                chunk_number: 3,
                chunk_size: 512,
                request_id,
                side: "upstream",
            },
            json!({"request_id": request_id, "chunk_number": 3u64, "chunk_size": 512usize, "side": "upstream"}),
        );
        same_json(
            StreamEnd {
                model: Some("claude-sonnet-4-5"),
                provider: name,
                request_id,
                total_bytes: 9,
                total_chunks: 2,
                usage: None,
            },
            json!({"request_id": request_id, "provider": name, "model": "claude-sonnet-4-5", "total_chunks": 2u64, "total_bytes": 9u64, "usage": null}),
        );
    }
}
