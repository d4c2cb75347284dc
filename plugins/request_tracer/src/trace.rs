//! What a trace file holds: headers and bodies with the secrets taken out,
//! bodies cut at `max_body_size`, and the raw HTTP form of a message.

use std::borrow::Cow;

use ccproxy_plugin_abi::{Value, serde_json};
use ccproxy_plugin_kit::redact;

/// Headers as `(name, value)` pairs, in the order sent.
pub(crate) type HeaderList = Vec<(String, String)>;

/// Headers as a JSON object; a repeated name's values joined with `, `.
pub(crate) fn headers_json(headers: &HeaderList) -> Value {
    let mut object = serde_json::Map::new();
    for (name, value) in headers {
        match object.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                object.insert(name.clone(), Value::from(value.as_str()));
            }
        }
    }
    Value::Object(object)
}

/// How secrets are taken out and bodies cut.
#[derive(Debug, Clone)]
pub(crate) struct Redactor {
    /// Header names whose values are always masked.
    pub(crate) exclude_headers: Vec<String>,
    /// Also mask headers named like a credential and secret JSON keys in bodies.
    pub(crate) redact_sensitive: bool,
    /// Bytes of a body kept; the rest is cut (0: none kept).
    pub(crate) max_body_size: usize,
}

/// A body ready to be written: redacted, then cut.
#[derive(Debug)]
pub(crate) struct Body<'a> {
    /// The bytes written (redacted, cut).
    pub(crate) bytes: Cow<'a, [u8]>,
    /// The size of the body as sent.
    pub(crate) size: usize,
    /// Whether `bytes` is shorter than the body (after redaction).
    pub(crate) truncated: bool,
}

impl Redactor {
    /// `headers` with every secret value masked (`Bearer ***`, `***`).
    pub(crate) fn headers(&self, headers: &HeaderList) -> HeaderList {
        headers
            .iter()
            .map(|(name, value)| {
                let value =
                    if redact::is_secret_header(name, &self.exclude_headers, self.redact_sensitive)
                    {
                        redact::header_value(value)
                    } else {
                        value.clone()
                    };
                (name.clone(), value)
            })
            .collect()
    }

    /// `body` with the secrets of a JSON body masked (when
    /// `redact_sensitive`), then cut at `max_body_size`. Redacting first
    /// means a cut JSON body, no longer parseable, holds no secret either.
    pub(crate) fn body<'a>(&self, body: &'a [u8]) -> Body<'a> {
        let size = body.len();
        let mut bytes = match self
            .redact_sensitive
            .then(|| redact::json_body(body))
            .flatten()
        {
            Some(masked) => Cow::Owned(masked),
            None => Cow::Borrowed(body),
        };
        let truncated = bytes.len() > self.max_body_size;
        if truncated {
            match &mut bytes {
                Cow::Borrowed(slice) => *slice = &slice[..self.max_body_size],
                Cow::Owned(vec) => vec.truncate(self.max_body_size),
            }
        }
        Body {
            bytes,
            size,
            truncated,
        }
    }
}

impl Body<'_> {
    /// The body in a JSON trace: `null` when empty, the JSON value when it
    /// parses, else the text (invalid UTF-8 replaced).
    pub(crate) fn json(&self) -> Value {
        if self.bytes.is_empty() {
            return Value::Null;
        }
        if !self.truncated
            && let Ok(value) = serde_json::from_slice::<Value>(&self.bytes)
        {
            return value;
        }
        Value::from(String::from_utf8_lossy(&self.bytes).into_owned())
    }

    /// The keys a JSON trace adds about the body: `body`, `body_size`, and
    /// `body_truncated` with a note when it was cut.
    pub(crate) fn insert_into(&self, trace: &mut serde_json::Map<String, Value>) {
        trace.insert("body".to_owned(), self.json());
        trace.insert("body_size".to_owned(), Value::from(self.size));
        trace.insert("body_truncated".to_owned(), Value::from(self.truncated));
        if self.truncated {
            trace.insert(
                "body_note".to_owned(),
                Value::from(format!(
                    "cut at max_body_size ({} of {} bytes kept)",
                    self.bytes.len(),
                    self.size
                )),
            );
        }
    }

    /// At most `chars` characters of the body as text, for a log line.
    pub(crate) fn preview(&self, chars: usize) -> String {
        String::from_utf8_lossy(&self.bytes)
            .chars()
            .take(chars)
            .collect()
    }
}

/// A request as raw HTTP/1.1: request line, headers, blank line, body.
pub(crate) fn raw_request(
    method: &str,
    target: &str,
    version: &str,
    headers: &HeaderList,
    body: &Body<'_>,
) -> Vec<u8> {
    raw(format!("{method} {target} {version}"), headers, body)
}

/// A response as raw HTTP/1.1: status line, headers, blank line, body.
pub(crate) fn raw_response(status: u16, headers: &HeaderList, body: &Body<'_>) -> Vec<u8> {
    raw(
        format!("HTTP/1.1 {status} {}", reason(status)),
        headers,
        body,
    )
}

fn raw(first_line: String, headers: &HeaderList, body: &Body<'_>) -> Vec<u8> {
    let mut out = first_line.into_bytes();
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body.bytes);
    out
}

/// The reason phrase of the statuses an LLM API answers with.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::json;

    use super::*;

    fn redactor(max_body_size: usize) -> Redactor {
        Redactor {
            exclude_headers: vec!["authorization".to_owned(), "cookie".to_owned()],
            redact_sensitive: true,
            max_body_size,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderList {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn listed_and_credential_like_headers_are_masked() {
        let masked = redactor(10).headers(&headers(&[
            ("authorization", "Bearer sk-ant-oat01-secret"),
            ("x-api-key", "sk-ant-api03-secret"),
            ("x-goog-api-key", "g-secret"),
            ("cookie", "session=abc"),
            ("content-type", "application/json"),
        ]));
        let masked = headers_json(&masked);
        assert_eq!(masked["authorization"], "Bearer ***");
        assert_eq!(masked["x-api-key"], "***");
        assert_eq!(masked["x-goog-api-key"], "***");
        assert_eq!(masked["cookie"], "***");
        assert_eq!(masked["content-type"], "application/json");
        let plain = Redactor {
            redact_sensitive: false,
            ..redactor(10)
        };
        // Only the listed names without redact_sensitive.
        assert_eq!(
            plain.headers(&headers(&[("x-api-key", "k")])),
            headers(&[("x-api-key", "k")])
        );
        assert_eq!(
            headers_json(&headers(&[("a", "1"), ("b", "2"), ("a", "3")])),
            ccproxy_plugin_abi::json!({"a": "1, 3", "b": "2"})
        );
    }

    #[test]
    fn bodies_are_redacted_then_cut() {
        let body = json!({"refresh_token": "rt-secret-value", "pad": "x".repeat(100)}).to_string();
        let cut = redactor(40).body(body.as_bytes());
        assert!(cut.truncated);
        assert_eq!(cut.size, body.len());
        assert_eq!(cut.bytes.len(), 40);
        let text = String::from_utf8_lossy(&cut.bytes);
        assert!(!text.contains("rt-secret"), "{text}");
        // A cut body is kept as text.
        assert!(cut.json().is_string());
        let mut trace = serde_json::Map::new();
        cut.insert_into(&mut trace);
        assert_eq!(trace["body_truncated"], true);
        assert!(
            trace["body_note"]
                .as_str()
                .unwrap()
                .contains("max_body_size")
        );

        let whole = redactor(1 << 20).body(br#"{"a":1}"#);
        assert!(matches!(whole.bytes, Cow::Borrowed(_)));
        assert_eq!(whole.json(), json!({"a": 1}));
        assert_eq!(redactor(10).body(b"").json(), Value::Null);
        assert_eq!(redactor(10).body(b"plain").json(), json!("plain"));
    }

    #[test]
    fn raw_http_has_a_first_line_headers_a_blank_line_and_the_body() {
        let body = redactor(100).body(b"{\"x\":1}");
        let raw = raw_request(
            "POST",
            "https://api.example/v1/messages",
            "HTTP/1.1",
            &headers(&[("content-type", "application/json")]),
            &body,
        );
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            "POST https://api.example/v1/messages HTTP/1.1\r\ncontent-type: application/json\r\n\r\n{\"x\":1}"
        );
        let raw = raw_response(429, &HeaderList::new(), &redactor(100).body(b""));
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            "HTTP/1.1 429 Too Many Requests\r\n\r\n"
        );
    }
}
