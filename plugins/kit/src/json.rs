//! Request bodies as JSON objects: parsed whole, or only at the top level
//! with every value kept as the client's bytes and written back around the
//! keys a plugin changes.

use std::borrow::Cow;

use ccproxy_plugin_abi::{
    PluginError, Value,
    serde_json::{self, Map, value::RawValue},
};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{MapAccess, Visitor},
};

/// `body` parsed as a JSON object, the shape every provider request has; an
/// `invalid` error for bad JSON (`invalid JSON: …`) or another JSON value
/// (`request body must be a JSON object, got an array`).
pub fn request_object(body: &[u8]) -> Result<Map<String, Value>, PluginError> {
    match serde_json::from_slice(body)? {
        Value::Object(body) => Ok(body),
        other => Err(PluginError::invalid(format!(
            "request body must be a JSON object, got {}",
            kind(&other)
        ))),
    }
}

/// What `value` is, with its article: `null`, `a boolean`, `a number`,
/// `a string`, `an array`, `an object`.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object's top-level entries in the order written, each value
/// unparsed (its JSON text as it came); a repeated key is kept each time.
#[derive(Debug)]
pub struct RawObject<'a>(Vec<(Cow<'a, str>, &'a str)>);

impl<'a> RawObject<'a> {
    /// The top level of `json`, or serde_json's error when it is not an
    /// object.
    pub fn parse(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// The members another reader found, in order, each key as written
    /// with its value's JSON text: the host's, which validated the body
    /// ([`ProviderRequest::body_top_level`](ccproxy_plugin_abi::ProviderRequest::body_top_level)).
    pub fn from_members(members: Vec<(&'a str, &'a str)>) -> Self {
        Self(
            members
                .into_iter()
                .map(|(key, value)| (Cow::Borrowed(key), value))
                .collect(),
        )
    }

    /// The value of `key`; the last one when it is repeated (as a whole
    /// parse keeps it).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, raw)| *raw)
    }

    /// The entries, in the order written.
    pub fn entries(&self) -> &[(Cow<'a, str>, &'a str)] {
        &self.0
    }

    /// The entries, in the order written.
    pub fn into_entries(self) -> Vec<(Cow<'a, str>, &'a str)> {
        self.0
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = RawObject<'de>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<RawObject<'de>, M::Error> {
                let mut entries = Vec::new();
                while let Some((key, raw)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    entries.push((key, raw.get()));
                }
                Ok(RawObject(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// A JSON object written one entry at a time, so values a plugin leaves
/// alone ([`RawObject`]'s) go out as the client's bytes.
#[derive(Debug)]
pub struct ObjectWriter {
    out: Vec<u8>,
    empty: bool,
}

impl ObjectWriter {
    /// An empty object, with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        Self { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        // Internal: a string written into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut self.out, key);
        self.out.push(b':');
    }

    /// Adds `key` with `json`, JSON text (a [`RawObject`] value's, a number's)
    /// written as it is.
    pub fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    /// Adds `key` with `value` serialised; serde_json's error for a value it
    /// cannot write (a map with keys that are not strings).
    pub fn value<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.key(key);
        serde_json::to_writer(&mut self.out, value)
    }

    /// The object's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::{ErrorKind, json};

    use super::*;

    #[test]
    fn only_an_object_is_a_request_body() {
        assert_eq!(request_object(br#"{"a":1}"#).unwrap()["a"], json!(1));
        for (body, kind) in [
            ("null", "null"),
            ("true", "a boolean"),
            ("1", "a number"),
            ("\"x\"", "a string"),
            ("[]", "an array"),
        ] {
            let error = request_object(body.as_bytes()).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{body}");
            assert_eq!(
                error.message(),
                format!("request body must be a JSON object, got {kind}")
            );
        }
        let error = request_object(b"{").unwrap_err();
        assert!(error.message().starts_with("invalid JSON: "), "{error}");
    }

    #[test]
    fn a_raw_object_keeps_order_repeats_and_bytes() {
        let body = br#"{ "b" : [1,  2], "a\u0041":"\u00e9", "b": {"x" :1} }"#;
        let object = RawObject::parse(body).unwrap();
        let keys: Vec<&str> = object.entries().iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["b", "aA", "b"]);
        assert_eq!(object.get("b").unwrap(), r#"{"x" :1}"#);
        assert_eq!(object.get("aA").unwrap(), r#""\u00e9""#);
        assert!(object.get("c").is_none());
        assert_eq!(object.into_entries()[0].1, "[1,  2]");
        for not_an_object in [&b"[1]"[..], b"1", b"{", b""] {
            assert!(RawObject::parse(not_an_object).is_err());
        }
    }

    #[test]
    fn a_written_object_has_raw_and_serialised_values() {
        let body = br#"{"keep": [1,  2.50], "change": 1}"#;
        let object = RawObject::parse(body).unwrap();
        let mut writer = ObjectWriter::with_capacity(body.len());
        for (key, raw) in object.entries() {
            match key.as_ref() {
                "change" => writer.value(key, &json!({"to": "\"2\""})).unwrap(),
                _ => writer.raw(key, raw),
            }
        }
        writer.raw("k\"ey", "3");
        assert_eq!(
            String::from_utf8(writer.finish()).unwrap(),
            r#"{"keep":[1,  2.50],"change":{"to":"\"2\""},"k\"ey":3}"#
        );
        assert_eq!(ObjectWriter::with_capacity(0).finish(), b"{}");
    }
}
