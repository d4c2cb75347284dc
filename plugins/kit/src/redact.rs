//! Secrets taken out of what a plugin writes down: header values and JSON
//! body fields.
//!
//! The host masks credential headers in event data already (keeping a hint:
//! `Bearer ***abcd`); a trace or a replay command on disk keeps nothing:
//! [`header_value`] leaves only the scheme (`Bearer ***`). [`json_body`]
//! replaces the values of keys such as `api_key`, `access_token` or
//! `client_secret`, at any depth, and leaves the bytes alone when there is
//! none, so an ordinary body stays byte for byte what was sent.

use std::collections::BTreeMap;

use ccproxy_plugin_abi::{Value, serde_json};
use serde::Deserialize;

/// Headers as event data carries them: `request.started` and
/// `request.completed` as an object (one value per name), the upstream
/// request of `provider.request.sent` as `[name, value]` pairs (in order,
/// repeats kept). Read either; [`pairs`](EventHeaders::pairs) gives the
/// pairs.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EventHeaders {
    /// `[[name, value], …]`.
    Pairs(Vec<(String, String)>),
    /// `{name: value, …}`.
    Map(BTreeMap<String, String>),
}

impl Default for EventHeaders {
    fn default() -> Self {
        Self::Pairs(Vec::new())
    }
}

impl EventHeaders {
    /// The headers as `(name, value)` pairs, in the order sent (a map's in
    /// name order).
    pub fn pairs(self) -> Vec<(String, String)> {
        match self {
            Self::Pairs(pairs) => pairs,
            Self::Map(map) => map.into_iter().collect(),
        }
    }

    /// The first value of `name` (compared without case).
    pub fn get(&self, name: &str) -> Option<&str> {
        match self {
            Self::Pairs(pairs) => pairs
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str()),
            Self::Map(map) => map
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str()),
        }
    }
}

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Body keys whose values are secrets (compared without case).
pub const SECRET_KEYS: &[&str] = &[
    "api_key",
    "apikey",
    "x-api-key",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "password",
    "secret",
    "authorization",
    "token",
    "code_verifier",
];

/// Whether header `name` is a credential: one of `always` (compared without
/// case) or, with `by_name`, any name containing `token`, `secret`, `key`,
/// `auth` or `cookie`.
pub fn is_secret_header(name: &str, always: &[String], by_name: bool) -> bool {
    if always
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(name))
    {
        return true;
    }
    if !by_name {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    ["token", "secret", "key", "auth", "cookie"]
        .iter()
        .any(|part| lower.contains(part))
}

/// A credential header's value with the secret gone: its scheme kept when it
/// has one (`Bearer ***`), else just `***`.
pub fn header_value(value: &str) -> String {
    match value.split_once(' ') {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme.len() < 16
                && scheme.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            format!("{scheme} {MASK}")
        }
        _ => MASK.to_owned(),
    }
}

/// Whether JSON key `key` holds a secret ([`SECRET_KEYS`]).
pub fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(key))
}

/// Replaces, in place, the value of every secret key (at any depth) with
/// [`MASK`]; answers whether anything changed.
pub fn json_value(value: &mut Value) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            for (key, item) in map.iter_mut() {
                if is_secret_key(key) && !item.is_null() && item.as_str() != Some(MASK) {
                    *item = Value::from(MASK);
                    changed = true;
                } else {
                    changed |= json_value(item);
                }
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| json_value(item) | changed),
        _ => false,
    }
}

/// `body` with the secrets of a JSON body masked (see [`json_value`]);
/// `None` when there was nothing to mask or it is not JSON, so the caller
/// keeps the original bytes.
pub fn json_body(body: &[u8]) -> Option<Vec<u8>> {
    // Cheap test first: most bodies name none of the keys at all.
    let text = std::str::from_utf8(body).ok()?;
    let lower = text.to_ascii_lowercase();
    if !SECRET_KEYS
        .iter()
        .any(|key| lower.contains(&format!("\"{key}\"")))
    {
        return None;
    }
    let mut value: Value = serde_json::from_str(text).ok()?;
    json_value(&mut value).then(|| serde_json::to_vec(&value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::json;

    use super::*;

    #[test]
    fn event_headers_are_read_as_pairs_or_as_a_map() {
        let pairs: EventHeaders =
            serde_json::from_value(json!([["b", "1"], ["a", "2"], ["b", "3"]])).unwrap();
        assert_eq!(pairs.get("B"), Some("1"));
        assert_eq!(
            pairs.pairs(),
            [("b", "1"), ("a", "2"), ("b", "3")].map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        let map: EventHeaders = serde_json::from_value(json!({"b": "1", "a": "2"})).unwrap();
        assert_eq!(map.get("a"), Some("2"));
        assert_eq!(
            map.pairs(),
            [("a", "2"), ("b", "1")].map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn secret_headers_by_list_and_by_name() {
        let always = vec!["x-api-key".to_owned(), "Cookie".to_owned()];
        assert!(is_secret_header("X-Api-Key", &always, false));
        assert!(is_secret_header("cookie", &always, false));
        assert!(!is_secret_header("authorization", &always, false));
        for name in [
            "authorization",
            "x-goog-api-key",
            "x-auth-token",
            "client-secret",
            "set-cookie",
        ] {
            assert!(is_secret_header(name, &[], true), "{name}");
        }
        for name in ["content-type", "anthropic-version", "user-agent"] {
            assert!(!is_secret_header(name, &[], true), "{name}");
        }
    }

    #[test]
    fn header_values_keep_only_the_scheme() {
        assert_eq!(header_value("Bearer sk-ant-abcdef"), "Bearer ***");
        assert_eq!(header_value("Bearer ***abcd"), "Bearer ***");
        assert_eq!(header_value("sk-ant-abcdef"), "***");
        assert_eq!(header_value("a=b; c=d"), "***");
        assert_eq!(header_value(""), "***");
    }

    #[test]
    fn body_secrets_are_masked_at_any_depth() {
        let body = json!({"grant_type": "refresh_token", "refresh_token": "rt-1",
                          "nested": [{"Access_Token": "at-1", "keep": 1}], "client_secret": null});
        let masked = json_body(body.to_string().as_bytes()).unwrap();
        let masked: Value = serde_json::from_slice(&masked).unwrap();
        assert_eq!(
            masked,
            json!({"grant_type": "refresh_token", "refresh_token": "***",
                   "nested": [{"Access_Token": "***", "keep": 1}], "client_secret": null})
        );
    }

    #[test]
    fn bodies_without_secrets_are_left_as_they_are() {
        assert_eq!(json_body(br#"{"model":"m","messages":[]}"#), None);
        // Named only inside a string: no key, nothing to mask.
        assert_eq!(json_body(br#"{"text":"the \"token\" word"}"#), None);
        assert_eq!(json_body(b"not json \"token\""), None);
        assert_eq!(json_body(&[0xff, 0xfe]), None);
    }
}
