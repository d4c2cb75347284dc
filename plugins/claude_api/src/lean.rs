//! Shaping without parsing the whole body: the shaping rules change the
//! top-level keys and the system prompt, so for most requests the `messages`
//! and `tools` arrays (nearly all of a Claude Code request's 64 KB) are left
//! as the client's bytes, and so is the system prompt (15 KB of it) when
//! the rules would leave it alone; only the rest is parsed into a [`Body`]
//! for the rules. A request whose arrays need an edit (more `cache_control` marks
//! than Anthropic allows, `_*` keys to remove) is shaped whole instead; the
//! two ways give the same JSON value (tested).

use std::{borrow::Cow, sync::LazyLock};

use ccproxy_plugin_abi::{Value, serde_json};
use ccproxy_plugin_kit::json::{ObjectWriter, RawObject};
use memchr::memmem;

use crate::shaping::{self, Body};

/// The top-level keys kept as the client's bytes.
const KEPT_AS_IS: [&str; 2] = ["messages", "tools"];

/// A body to shape: the client's bytes, and their top-level members when
/// the host found them (`ProviderRequest::body_top_level`).
pub(crate) type Source<'a> = (&'a [u8], Option<Vec<(&'a str, &'a str)>>);

/// A body split for lean shaping: the small keys parsed, the arrays kept.
pub(crate) struct Split<'a> {
    /// Every top-level key but those kept, parsed.
    pub(crate) small: Body,
    /// `messages`, `tools` and, when the rules leave it alone, `system`.
    kept: Vec<(Cow<'a, str>, &'a str)>,
    /// The body's length: the shaped body is about as long.
    source_len: usize,
}

impl<'a> Split<'a> {
    /// Splits `body`, or `None` when it must be shaped whole: not an object
    /// (the whole parse says why), a duplicate key, or a `_`-prefixed
    /// string somewhere (a private key the rules remove). `members` are its
    /// top-level members when the host found them (then the body is not
    /// parsed again); `system` is kept as it is when `keep_system` says the
    /// rules leave its text alone.
    pub(crate) fn of(
        body: &'a [u8],
        members: Option<Vec<(&'a str, &'a str)>>,
        keep_system: impl Fn(&str) -> bool,
    ) -> Option<Self> {
        if has_underscore_string(body) {
            return None;
        }
        let object = match members {
            Some(members) => RawObject::from_members(members),
            None => RawObject::parse(body).ok()?,
        };
        let mut small = Body::new();
        let mut kept = Vec::new();
        for (key, raw) in object.into_entries() {
            let seen = small.contains_key(key.as_ref())
                || kept.iter().any(|(k, _): &(Cow<str>, _)| k == &key);
            if seen {
                return None;
            }
            if KEPT_AS_IS.contains(&key.as_ref()) || (key == "system" && keep_system(raw)) {
                kept.push((key, raw));
            } else {
                let value: Value = serde_json::from_str(raw).ok()?;
                small.insert(key.into_owned(), value);
            }
        }
        Some(Self {
            small,
            kept,
            source_len: body.len(),
        })
    }

    /// Whether the system prompt is kept as the client's text.
    pub(crate) fn keeps_system(&self) -> bool {
        self.kept.iter().any(|(key, _)| key == "system")
    }

    /// `cache_control` marks in the kept arrays, counted in their bytes (a
    /// string mentioning it counts too: too many only means shaping whole).
    pub(crate) fn kept_cache_marks(&self) -> usize {
        // Built once: building a searcher costs more than a small body's search.
        static FINDER: LazyLock<memmem::Finder<'static>> =
            LazyLock::new(|| memmem::Finder::new(b"\"cache_control\""));
        self.kept
            .iter()
            .map(|(_, raw)| FINDER.find_iter(raw.as_bytes()).count())
            .sum()
    }

    /// The shaped body: the small keys as the rules left them, then the kept
    /// arrays as they came.
    pub(crate) fn into_bytes(self) -> Result<Vec<u8>, serde_json::Error> {
        // Sized once: a kept array written into a buffer sized for less
        // would be copied again as it grows.
        let mut out = ObjectWriter::with_capacity(self.source_len + 1024);
        for (key, value) in &self.small {
            out.value(key, value)?;
        }
        for (key, raw) in &self.kept {
            out.raw(key, raw);
        }
        Ok(out.finish())
    }
}

/// Whether a JSON string starting with `_` occurs: `"_` with no backslash
/// before the quote (inside a string a quote is always escaped).
fn has_underscore_string(body: &[u8]) -> bool {
    memmem::find_iter(body, b"\"_").any(|at| at == 0 || body[at - 1] != b'\\')
}

/// Every `cache_control` mark of the small keys (the system prompt's).
pub(crate) fn small_cache_marks(small: &Body) -> usize {
    shaping::cache_control_count(small)
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::json;

    use super::*;

    fn split(value: &Value) -> Option<(Value, usize)> {
        let bytes = value.to_string().into_bytes();
        let split = Split::of(&bytes, None, |_| false)?;
        let marks = split.kept_cache_marks();
        let rebuilt: Value = serde_json::from_slice(&split.into_bytes().unwrap()).unwrap();
        Some((rebuilt, marks))
    }

    #[test]
    fn a_split_body_is_rebuilt_as_the_same_value() {
        let body = json!({"model": "m", "max_tokens": 5, "system": [{"type": "text", "text": "s"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi \"there\"", "cache_control": {"type": "ephemeral"}}]}],
            "tools": [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral"}}],
            "metadata": {"user_id": "u"}});
        let (rebuilt, marks) = split(&body).unwrap();
        assert_eq!(rebuilt, body);
        assert_eq!(marks, 2);
    }

    #[test]
    fn bodies_the_rules_must_see_whole_are_not_split() {
        // A private key, anywhere.
        assert!(
            split(
                &json!({"model": "m", "messages": [{"role": "user", "content": "x", "_trace": 1}]})
            )
            .is_none()
        );
        // ... but an escaped quote before an underscore inside a string is text.
        assert!(
            split(&json!({"model": "m", "messages": [{"role": "user", "content": "say \"_x\""}]}))
                .is_some()
        );
        // Not an object, or a duplicate key.
        assert!(Split::of(b"[1]", None, |_| false).is_none());
        assert!(Split::of(br#"{"messages":[],"messages":[]}"#, None, |_| false).is_none());
        assert!(Split::of(br#"{"model":"a","model":"b"}"#, None, |_| false).is_none());
        assert!(Split::of(b"{", None, |_| false).is_none());
    }
}
