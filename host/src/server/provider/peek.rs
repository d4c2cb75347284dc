//! Step 1: a peek at the client's body for `stream` and `model`, the only
//! fields the host reads before the request is converted. The body is read
//! whole here (a malformed one gets its 400 before any plugin runs), and
//! where its top-level members are is noted on the way: a body sent in the
//! client's format goes to the provider plugin with that index
//! (`provider.prepare`'s `body_members`), so the plugin does not read it
//! a second time.

use ccproxy_plugin_abi::hook_wire::{self, Index};
use http::StatusCode;
use serde::Deserialize;

use super::ProxyError;

/// What the host reads of the client's body.
#[derive(Deserialize, Default)]
pub(super) struct Peek {
    /// The client asked for a stream.
    #[serde(default)]
    pub(super) stream: Option<bool>,
    /// The model the client asked for.
    #[serde(default)]
    pub(super) model: Option<String>,
    /// Where the body's top-level members are (empty: not indexed).
    #[serde(skip)]
    pub(super) members: Index,
}

/// Reads `stream` and `model` and indexes the body; a body that is not a
/// JSON object is the client's fault (400).
pub(super) fn peek(body: &[u8]) -> Result<Peek, ProxyError> {
    let members = hook_wire::index_object(body).map_err(not_json)?;
    if members.is_empty() {
        // `{}`, or a key written with escapes (which could spell `model`):
        // the fields are read the ordinary way. The body is a valid object
        // by now, so only a field can be wrong.
        return serde_json::from_slice(body)
            .map_err(|error| bad_body(format!("request body has a bad field: {error}")));
    }
    let mut peek = Peek::default();
    let (mut seen_stream, mut seen_model) = (false, false);
    for &[key_start, key_end, value_start, value_end] in &members {
        let value = &body[value_start as usize..value_end as usize];
        match &body[key_start as usize..key_end as usize] {
            b"stream" => peek.stream = field(value, "stream", &mut seen_stream)?,
            b"model" => peek.model = field(value, "model", &mut seen_model)?,
            _ => {}
        }
    }
    peek.members = members;
    Ok(peek)
}

/// One of the fields read, refused when repeated or of another type (as
/// reading the body into [`Peek`] would).
fn field<'a, T: Deserialize<'a>>(
    value: &'a [u8],
    name: &str,
    seen: &mut bool,
) -> Result<T, ProxyError> {
    if std::mem::replace(seen, true) {
        return Err(bad_body(format!("request body has `{name}` twice")));
    }
    serde_json::from_slice(value)
        .map_err(|error| bad_body(format!("request body has a bad `{name}`: {error}")))
}

/// A body that is not JSON, or not an object.
fn not_json(error: serde_json::Error) -> ProxyError {
    bad_body(if error.is_data() {
        format!("request body must be a JSON object: {error}")
    } else {
        format!("request body is not valid JSON: {error}")
    })
}

fn bad_body(message: String) -> ProxyError {
    ProxyError::client(StatusCode::BAD_REQUEST, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields as reading the whole body into [`Peek`] gives them.
    fn read_whole(body: &str) -> Result<(Option<bool>, Option<String>), String> {
        serde_json::from_str::<Peek>(body)
            .map(|peek| (peek.stream, peek.model))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn the_peek_reads_what_a_whole_read_does() {
        for body in [
            r#"{"model": "m", "stream": true, "messages": [{"model": "inner"}]}"#,
            r#"{"stream": false}"#,
            r#"{"model": null, "stream": null}"#,
            r#"{"x": 1}"#,
            r#"{}"#,
            r#"{"mod\u0065l": "escaped", "stream": true}"#,
        ] {
            let peek = peek(body.as_bytes()).unwrap();
            assert_eq!(Ok((peek.stream, peek.model)), read_whole(body), "{body}");
        }
        let indexed = peek(br#"{"model":"m","stream":true}"#).unwrap();
        assert_eq!(indexed.members, [[2, 7, 9, 12], [14, 20, 22, 26]]);
        assert!(peek(br#"{"mod\u0065l": "m"}"#).unwrap().members.is_empty());
    }

    #[test]
    fn what_a_whole_read_refuses_is_refused_and_says_why() {
        for (body, says) in [
            (
                r#"{"stream": "yes"}"#,
                "request body has a bad `stream`: invalid type",
            ),
            (
                r#"{"model": 5}"#,
                "request body has a bad `model`: invalid type",
            ),
            (
                r#"{"model": "a", "model": "b"}"#,
                "request body has `model` twice",
            ),
            (
                r#"{"stream": true, "stream": true}"#,
                "request body has `stream` twice",
            ),
            (
                r#"{"mod\u0065l": 5}"#,
                "request body has a bad field: invalid type",
            ),
            (r#"{"model": "m""#, "request body is not valid JSON: EOF"),
            (
                r#"{"model": "m"} trailing"#,
                "request body is not valid JSON: trailing",
            ),
            ("not json", "request body is not valid JSON: expected"),
            (
                r#"["model"]"#,
                "request body must be a JSON object: invalid type: sequence",
            ),
        ] {
            let error = peek(body.as_bytes()).err().unwrap();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{body}");
            let message = error.message();
            assert!(message.contains(says), "{body}: {message}");
            assert!(read_whole(body).is_err() || body.starts_with('['), "{body}");
        }
    }
}
