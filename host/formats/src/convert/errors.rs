//! Error bodies: reading any upstream error and writing one in the client's format.

use serde_json::{Value, json};

use crate::Format;

/// The kind of an API error, the common ground of both families' error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or not acceptable (400, 422).
    InvalidRequest,
    /// Missing or wrong credentials (401).
    Authentication,
    /// The credentials may not do this (403).
    Permission,
    /// No such resource or model (404).
    NotFound,
    /// The request body is too large (413).
    RequestTooLarge,
    /// Too many requests (429).
    RateLimit,
    /// The account has no credit or quota left (402).
    Billing,
    /// An internal error of the API or the proxy (500, 502).
    Api,
    /// The upstream is overloaded or unavailable (503, 529).
    Overloaded,
    /// The upstream did not answer in time (504).
    Timeout,
}

impl ErrorKind {
    /// The kind an HTTP status implies.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Authentication,
            402 => ErrorKind::Billing,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimit,
            503 | 529 => ErrorKind::Overloaded,
            504 => ErrorKind::Timeout,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Api,
        }
    }

    /// The usual HTTP status of this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Billing => 402,
            ErrorKind::Permission => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::RateLimit => 429,
            ErrorKind::Api => 500,
            ErrorKind::Overloaded => 529,
            ErrorKind::Timeout => 504,
        }
    }

    /// The Anthropic `error.type`.
    pub fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Billing => "billing_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api => "api_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::Timeout => "timeout_error",
        }
    }

    /// The OpenAI `error.type`.
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Billing => "insufficient_quota",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api | ErrorKind::Overloaded | ErrorKind::Timeout => "server_error",
        }
    }

    /// The OpenAI `error.code`.
    pub fn openai_code(self) -> Option<&'static str> {
        match self {
            ErrorKind::Authentication => Some("invalid_api_key"),
            ErrorKind::Billing => Some("insufficient_quota"),
            ErrorKind::NotFound => Some("model_not_found"),
            ErrorKind::RateLimit => Some("rate_limit_exceeded"),
            ErrorKind::Overloaded => Some("server_overloaded"),
            ErrorKind::Timeout => Some("timeout"),
            ErrorKind::RequestTooLarge => Some("request_too_large"),
            ErrorKind::InvalidRequest | ErrorKind::Permission | ErrorKind::Api => None,
        }
    }

    /// Reads an error `type` or `code` of either family.
    pub fn from_type(name: &str) -> Option<ErrorKind> {
        Some(match name {
            "invalid_request_error" | "invalid_request" | "bad_request" => {
                ErrorKind::InvalidRequest
            }
            "authentication_error" | "invalid_api_key" | "unauthorized" => {
                ErrorKind::Authentication
            }
            "permission_error" | "permission_denied" | "forbidden" => ErrorKind::Permission,
            "not_found_error" | "model_not_found" | "not_found" => ErrorKind::NotFound,
            "request_too_large" => ErrorKind::RequestTooLarge,
            "rate_limit_error" | "rate_limit_exceeded" | "requests" | "tokens" => {
                ErrorKind::RateLimit
            }
            "billing_error" | "insufficient_quota" => ErrorKind::Billing,
            "api_error" | "server_error" | "internal_error" => ErrorKind::Api,
            "overloaded_error" | "server_overloaded" | "service_unavailable" => {
                ErrorKind::Overloaded
            }
            "timeout_error" | "timeout" => ErrorKind::Timeout,
            _ => return None,
        })
    }
}

/// Builds an error body of `format` from scratch (for errors the proxy itself raises, such
/// as 502 or 504).
///
/// ```
/// use ccproxy_formats::{Format, convert};
///
/// let body = convert::error_body(Format::AnthropicMessages, 504, convert::ErrorKind::Timeout, "upstream timed out");
/// let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(value["error"]["type"], "timeout_error");
/// ```
pub fn error_body(format: Format, status: u16, kind: ErrorKind, message: &str) -> Vec<u8> {
    let _ = status;
    crate::to_json_vec(&error_value(format, kind, message, None))
}

fn error_value(format: Format, kind: ErrorKind, message: &str, code: Option<Value>) -> Value {
    match format {
        Format::AnthropicMessages => json!({
            "type": "error",
            "error": {"type": kind.anthropic_type(), "message": message},
        }),
        Format::OpenAiChat | Format::OpenAiResponses => json!({
            "error": {
                "message": message,
                "type": kind.openai_type(),
                "param": null,
                "code": code.unwrap_or_else(|| kind.openai_code().map_or(Value::Null, Value::from)),
            }
        }),
    }
}

/// What an upstream error body says, whatever its shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UpstreamError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    pub(crate) code: Option<Value>,
}

/// The longest message taken from a non-JSON error body.
const MAX_TEXT_MESSAGE: usize = 2048;

pub(crate) fn read_error(status: u16, body: &[u8]) -> UpstreamError {
    let by_status = ErrorKind::from_status(status);
    let fallback = || format!("upstream returned HTTP {status}");
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            fallback()
        } else {
            truncate(text, MAX_TEXT_MESSAGE)
        };
        return UpstreamError {
            kind: by_status,
            message,
            code: None,
        };
    };
    let as_text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let error = value.get("error");
    match error {
        Some(Value::Object(detail)) => {
            let type_name = detail.get("type").and_then(Value::as_str);
            let code = detail.get("code").filter(|code| !code.is_null()).cloned();
            let named = code
                .as_ref()
                .and_then(Value::as_str)
                .and_then(ErrorKind::from_type)
                .or_else(|| type_name.and_then(ErrorKind::from_type));
            let kind = match named {
                // Internal: stream errors have no status, and a generic 400/422 or 5xx
                // says less than the body's own type.
                Some(named) if status < 400 || named.status() == status => named,
                Some(named)
                    if by_status == ErrorKind::InvalidRequest && named.status() / 100 == 4 =>
                {
                    named
                }
                Some(named) if status >= 500 && named.status() >= 500 => named,
                _ => by_status,
            };
            let message = detail
                .get("message")
                .map(as_text)
                .filter(|message| !message.is_empty())
                .unwrap_or_else(fallback);
            UpstreamError {
                kind,
                message,
                code,
            }
        }
        Some(Value::String(message)) => UpstreamError {
            kind: by_status,
            message: message.clone(),
            code: None,
        },
        _ => {
            let message = ["detail", "message", "error_description"]
                .iter()
                .find_map(|key| value.get(*key).map(as_text))
                .unwrap_or_else(|| truncate(&value.to_string(), MAX_TEXT_MESSAGE));
            UpstreamError {
                kind: by_status,
                message,
                code: None,
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Converts an upstream error body to an error body of the client's format.
///
/// Never fails: any body (another format's error, `{"detail": …}`, HTML, empty) becomes a
/// valid error of `to`, with the kind taken from the body's error type or else from
/// `status`. A body that already is a valid error of `to` passes through unchanged.
///
/// ```
/// use ccproxy_formats::{Format, convert};
///
/// let body = convert::error(Format::OpenAiChat, Format::AnthropicMessages, 429, br#"{"detail":"slow down"}"#);
/// let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(value["type"], "error");
/// assert_eq!(value["error"]["type"], "rate_limit_error");
/// assert_eq!(value["error"]["message"], "slow down");
/// ```
pub fn error(from: Format, to: Format, status: u16, body: &[u8]) -> Vec<u8> {
    let _ = from;
    let already_valid = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => {
            let error = object.get("error");
            let message_is_text = error
                .and_then(|error| error.get("message"))
                .is_some_and(Value::is_string);
            match to {
                Format::AnthropicMessages => {
                    object.get("type").and_then(Value::as_str) == Some("error")
                        && message_is_text
                        && error
                            .and_then(|error| error.get("type"))
                            .is_some_and(Value::is_string)
                }
                Format::OpenAiChat | Format::OpenAiResponses => {
                    !object.contains_key("type") && message_is_text
                }
            }
        }
        _ => false,
    };
    if already_valid {
        return body.to_vec();
    }
    let upstream = read_error(status, body);
    let code = match to {
        Format::AnthropicMessages => None,
        _ => upstream.code,
    };
    crate::to_json_vec(&error_value(to, upstream.kind, &upstream.message, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(to: Format, status: u16, body: &[u8]) -> Value {
        serde_json::from_slice(&error(Format::OpenAiChat, to, status, body)).expect("json")
    }

    #[test]
    fn anthropic_error_to_openai() {
        let value = convert(
            Format::OpenAiChat,
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(value["error"]["type"], "server_error");
        assert_eq!(value["error"]["code"], "server_overloaded");
        assert_eq!(value["error"]["message"], "Overloaded");
    }

    #[test]
    fn openai_error_to_anthropic() {
        let value = convert(
            Format::AnthropicMessages,
            401,
            br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        );
        assert_eq!(value["error"]["type"], "authentication_error");
        assert_eq!(value["error"]["message"], "Incorrect API key");
    }

    #[test]
    fn detail_html_and_empty_bodies_become_valid_errors() {
        let value = convert(Format::AnthropicMessages, 400, br#"{"detail":"bad model"}"#);
        assert_eq!(value["error"]["message"], "bad model");
        assert_eq!(value["error"]["type"], "invalid_request_error");
        let value = convert(Format::OpenAiResponses, 502, b"<html>Bad Gateway</html>");
        assert_eq!(value["error"]["message"], "<html>Bad Gateway</html>");
        assert_eq!(value["error"]["type"], "server_error");
        let value = convert(Format::OpenAiChat, 503, b"");
        assert_eq!(value["error"]["message"], "upstream returned HTTP 503");
        let value = convert(
            Format::AnthropicMessages,
            422,
            br#"{"detail":[{"loc":["body"],"msg":"x"}]}"#,
        );
        assert!(
            value["error"]["message"]
                .as_str()
                .expect("text")
                .contains("\"msg\":\"x\"")
        );
    }

    #[test]
    fn valid_errors_of_the_target_pass_through() {
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"x"},"request_id":"r"}"#;
        assert_eq!(
            error(
                Format::AnthropicMessages,
                Format::AnthropicMessages,
                429,
                body
            ),
            body
        );
    }

    #[test]
    fn every_kind_survives_a_round_trip_through_both_families() {
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::Authentication,
            ErrorKind::Permission,
            ErrorKind::NotFound,
            ErrorKind::RequestTooLarge,
            ErrorKind::RateLimit,
            ErrorKind::Billing,
            ErrorKind::Api,
            ErrorKind::Overloaded,
            ErrorKind::Timeout,
        ] {
            let anthropic = error_body(Format::AnthropicMessages, kind.status(), kind, "m");
            let openai = error(
                Format::AnthropicMessages,
                Format::OpenAiChat,
                kind.status(),
                &anthropic,
            );
            let back = error(
                Format::OpenAiChat,
                Format::AnthropicMessages,
                kind.status(),
                &openai,
            );
            assert_eq!(back, anthropic, "{kind:?}");
        }
    }
}
