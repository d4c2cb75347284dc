//! A few top-level keys of a JSON object, found without parsing the rest.
//!
//! The hook needs a request body's `model` and its output limit key, but a
//! Claude Code request is mostly `messages`, `system` and `tools`: parsing
//! every top-level value (what `RawObject::parse` does, through serde_json)
//! walks every byte of them, about 330 k instructions for a 64 KB body. Here
//! nested values are skipped instead: a string by `memchr` to its closing
//! quote (one not escaped by an odd run of backslashes), an array or object
//! by counting brackets outside its strings.
//!
//! Nothing skipped is validated. The caller parses the few bytes found with
//! serde_json, and parses the whole body (`RawObject::parse`) before changing
//! it, so a malformed body is still left as it came.

use std::borrow::Cow;

use ccproxy_plugin_abi::serde_json;

/// The raw text of each of `keys` at the top level of `json` (the last one
/// when a key repeats, as a whole parse keeps; `None` for a key it lacks or
/// for no key), or `None` when `json` is no object this scan can follow.
pub(crate) fn top_level<'a, const N: usize>(
    json: &'a [u8],
    keys: [Option<&str>; N],
) -> Option<[Option<&'a str>; N]> {
    let mut found = [None; N];
    let mut cursor = Cursor { json, at: 0 };
    cursor.skip_space();
    cursor.expect(b'{')?;
    cursor.skip_space();
    if cursor.peek()? == b'}' {
        return Some(found);
    }
    loop {
        cursor.skip_space();
        let (key_start, key_end) = cursor.string()?;
        cursor.skip_space();
        cursor.expect(b':')?;
        cursor.skip_space();
        let value_start = cursor.at;
        cursor.value()?;
        let key = &json[key_start..key_end];
        for (wanted, slot) in keys.iter().zip(found.iter_mut()) {
            if let Some(wanted) = wanted
                && key_is(json, key_start, key_end, key, wanted)
            {
                *slot = Some(std::str::from_utf8(&json[value_start..cursor.at]).ok()?);
            }
        }
        cursor.skip_space();
        match cursor.peek()? {
            b',' => cursor.at += 1,
            b'}' => return Some(found),
            _ => return None,
        }
    }
}

/// Whether the key between the quotes at `start - 1` and `end` is `wanted`;
/// a key written with escapes is decoded first (rare: one parse of the key).
fn key_is(json: &[u8], start: usize, end: usize, key: &[u8], wanted: &str) -> bool {
    if !key.contains(&b'\\') {
        return key == wanted.as_bytes();
    }
    serde_json::from_slice::<Cow<'_, str>>(&json[start - 1..=end])
        .is_ok_and(|decoded| decoded == wanted)
}

struct Cursor<'a> {
    json: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.json.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Past the string that starts here; the range of its contents.
    fn string(&mut self) -> Option<(usize, usize)> {
        self.expect(b'"')?;
        let start = self.at;
        let mut from = start;
        loop {
            // Only quotes stop the search (prompts are full of `\n`): one
            // after an odd number of backslashes is escaped, and the string
            // goes on.
            let quote = from + memchr::memchr(b'"', self.json.get(from..)?)?;
            let backslashes = self.json[start..quote]
                .iter()
                .rev()
                .take_while(|&&byte| byte == b'\\')
                .count();
            if backslashes % 2 == 0 {
                self.at = quote + 1;
                return Some((start, quote));
            }
            from = quote + 1;
        }
    }

    /// Past the value that starts here, of any kind.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => self.nested(),
            _ => {
                // A number, `true`, `false` or `null`: up to what ends it.
                let start = self.at;
                while let Some(byte) = self.peek() {
                    if matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.at += 1;
                }
                (self.at > start).then_some(())
            }
        }
    }

    /// Past the array or object that starts here.
    fn nested(&mut self) -> Option<()> {
        let mut depth = 0_usize;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.at += 1;
                        return Some(());
                    }
                }
                _ => {}
            }
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::json;
    use ccproxy_plugin_kit::json::RawObject;

    use super::*;

    fn find(json: &str) -> Option<[Option<&str>; 3]> {
        top_level(
            json.as_bytes(),
            [
                Some("model"),
                Some("max_tokens"),
                Some("max_completion_tokens"),
            ],
        )
    }

    #[test]
    fn the_keys_are_found_past_nested_values_with_quotes_brackets_and_escapes() {
        let body = json!({
            "messages": [{"role": "user", "content": "a \"quoted\" } ] { [ \\ text \u{1F600}"},
                         {"role": "assistant", "content": [{"type": "text", "text": "\\\""}]}],
            "model": "claude-sonnet-4-5",
            "metadata": {"user_id": "x", "nested": {"deep": [1, 2.5e3, true, false, null]}},
            "max_tokens": 32000,
            "stream": true
        })
        .to_string();
        assert_eq!(
            find(&body),
            Some([Some("\"claude-sonnet-4-5\""), Some("32000"), None])
        );
    }

    #[test]
    fn the_same_as_a_whole_parse_finds() {
        for body in [
            r#"{}"#,
            r#" { "model" : "m" , "max_tokens" : null } "#,
            "{\n\t\"max_tokens\": 5,\r\n\"model\":\"a\",\"max_tokens\":7}",
            r#"{"model": "m", "max_tokens": {"not": "a number"}, "max_completion_tokens": [1]}"#,
            r#"{"max\u005ftokens": 9, "model": "\u006d"}"#,
            r#"{"model": "", "x": "\\", "y": "\\\\\"", "max_tokens": -1}"#,
        ] {
            let whole = RawObject::parse(body.as_bytes()).unwrap();
            let expected =
                ["model", "max_tokens", "max_completion_tokens"].map(|key| whole.get(key));
            assert_eq!(find(body), Some(expected), "{body}");
        }
    }

    #[test]
    fn what_is_no_object_is_refused() {
        for body in [
            "",
            "[]",
            "\"model\"",
            "{",
            r#"{"model": "m""#,
            r#"{"model" "m"}"#,
            r#"{"model": "m" "max_tokens": 1}"#,
            r#"{"model": }"#,
            r#"{"model": ["m"}"#,
            r#"{"model": "unterminated}"#,
        ] {
            assert_eq!(find(body), None, "{body}");
        }
    }
}
