//! Request bodies as JSON objects.

use ccproxy_plugin_abi::{
    PluginError, Value,
    serde_json::{self, Map},
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
}
