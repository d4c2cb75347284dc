//! `provider.prepare`'s metadata without JSON (plugin API 1.3): netstrings.
//!
//! Why: the host calls `provider.prepare` on every provider request, and its
//! metadata is mostly the client's headers (twenty or so from Claude Code).
//! As JSON the host escapes every name and value as it writes them and the
//! SDK scans and unescapes every one as it reads them: about 19 k
//! instructions of a small request's 300 k. A plugin built with this SDK
//! announces [`PREPARE_FIELDS`] in its answer to `plugin.features`; the host
//! then writes the metadata as [`MARK`] followed by netstrings
//! (`<decimal length>:<text>,`, D. J. Bernstein's format) in the order
//! below. The metadata is text, checked to be UTF-8 once as a whole, so the
//! SDK only slices it: nothing is escaped or scanned for escapes. Plugins of
//! older SDKs keep getting the JSON of [`ProviderPrepareInput`].
//!
//! ```text
//! ~ endpoint client_format native_format stream has_model [model]
//!   method path query request_id header_count (name value)×header_count
//!   has_attempt [attempt] body_members
//! ```
//!
//! Every item is one netstring: flags (`stream`, `has_*`) are `0` or `1`,
//! `header_count` is decimal, `attempt` is the JSON of [`ProviderAttempt`]
//! (retries only), `body_members` is the text of
//! [`ProviderPrepareInput::body_members`] (`protocol::members_text`; empty:
//! no index).
//!
//! The SDK answers a call that came so in kind ([`write_prepare_output`]),
//! and the host reads an answer that starts with [`MARK`] so
//! ([`read_prepare_output`]):
//!
//! ```text
//! ~ method url header_count (name value)×header_count stream
//!   has_model_alias [model_alias] timeout_ms has_account [account]
//!   has_retry [retry] delay_ms has_exhausted [exhausted]
//! ```
//!
//! `timeout_ms` and `delay_ms` are decimal; `retry` and `exhausted` are the
//! JSON of [`RetryPolicy`] and [`ProviderExhausted`] (rare).

use std::borrow::Cow;

use crate::protocol::{
    ProviderAttempt, ProviderExhausted, ProviderPrepareInput, ProviderPrepareOutput, RequestHead,
    RetryPolicy, members_text,
};

/// The feature: the SDK reads `provider.prepare`'s metadata as netstrings.
pub const PREPARE_FIELDS: &str = "prepare_fields";

/// The first character of metadata written as netstrings (JSON metadata
/// starts with `{`).
pub const MARK: char = '~';

/// Metadata that does not read as the fields of `provider.prepare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError(pub &'static str);

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed provider.prepare fields: {}", self.0)
    }
}

impl std::error::Error for FieldError {}

/// What `provider.prepare` says besides the body and the headers, borrowed
/// (the host writes it from its own request; see [`PrepareFields::write`]).
#[derive(Debug, Clone, Copy)]
pub struct PrepareFields<'a> {
    /// [`ProviderPrepareInput::endpoint`].
    pub endpoint: &'a str,
    /// [`ProviderPrepareInput::client_format`].
    pub client_format: &'a str,
    /// [`ProviderPrepareInput::native_format`].
    pub native_format: &'a str,
    /// [`ProviderPrepareInput::stream`].
    pub stream: bool,
    /// [`ProviderPrepareInput::model`].
    pub model: Option<&'a str>,
    /// [`RequestHead::method`].
    pub method: &'a str,
    /// [`RequestHead::path`].
    pub path: &'a str,
    /// [`RequestHead::query`].
    pub query: &'a str,
    /// [`RequestHead::request_id`].
    pub request_id: &'a str,
    /// [`ProviderPrepareInput::attempt`].
    pub attempt: Option<&'a ProviderAttempt>,
    /// [`ProviderPrepareInput::body_members`].
    pub body_members: &'a [[u32; 4]],
}

impl PrepareFields<'_> {
    /// The metadata, with the `count` header pairs of `headers` (names lower
    /// case, in arrival order). A count that does not match the pairs makes
    /// metadata the SDK refuses, never a wrong request.
    pub fn write<'h>(
        &self,
        count: usize,
        headers: impl Iterator<Item = (&'h str, Cow<'h, str>)>,
    ) -> String {
        let mut out = Writer(String::with_capacity(256 + count * 64));
        out.0.push(MARK);
        out.text(self.endpoint);
        out.text(self.client_format);
        out.text(self.native_format);
        out.flag(self.stream);
        out.optional(self.model);
        out.text(self.method);
        out.text(self.path);
        out.text(self.query);
        out.text(self.request_id);
        out.pairs(count, headers);
        out.optional(self.attempt.map(json_of).as_deref());
        out.text(&members_text::text(self.body_members));
        out.0
    }
}

/// Reads metadata [`PrepareFields::write`] wrote (starting with [`MARK`]).
pub fn read_prepare(meta: &str) -> Result<ProviderPrepareInput, FieldError> {
    let mut fields = Reader::after_mark(meta)?;
    let endpoint = fields.text()?.to_owned();
    let client_format = fields.text()?.to_owned();
    let native_format = fields.text()?.to_owned();
    let stream = fields.flag()?;
    let model = fields.optional()?.map(str::to_owned);
    let method = fields.text()?.to_owned();
    let path = fields.text()?.to_owned();
    let query = fields.text()?.to_owned();
    let request_id = fields.text()?.to_owned();
    let headers = fields.pairs()?;
    let attempt: Option<ProviderAttempt> = fields.optional_json("attempt")?;
    let body_members = members_text::parse(fields.text()?).unwrap_or_default();
    fields.end()?;
    Ok(ProviderPrepareInput {
        endpoint,
        client_format,
        native_format,
        stream,
        model,
        request: RequestHead {
            method,
            path,
            query,
            headers,
            request_id,
        },
        attempt,
        body_members,
    })
}

/// `provider.prepare`'s answer as netstrings, for a host that called in
/// them.
pub fn write_prepare_output(output: &ProviderPrepareOutput) -> String {
    let text_bytes: usize = output
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 12)
        .sum();
    let mut out = Writer(String::with_capacity(64 + output.url.len() + text_bytes));
    out.0.push(MARK);
    out.text(&output.method);
    out.text(&output.url);
    out.pairs(
        output.headers.len(),
        output
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), Cow::Borrowed(value.as_str()))),
    );
    out.flag(output.stream);
    out.optional(output.model_alias.as_deref());
    out.text(itoa::Buffer::new().format(output.timeout_ms));
    out.optional(output.account.as_deref());
    out.optional(output.retry.as_ref().map(json_of).as_deref());
    out.text(itoa::Buffer::new().format(output.delay_ms));
    out.optional(output.exhausted.as_ref().map(json_of).as_deref());
    out.0
}

/// Reads an answer [`write_prepare_output`] wrote.
pub fn read_prepare_output(meta: &str) -> Result<ProviderPrepareOutput, FieldError> {
    let mut fields = Reader::after_mark(meta)?;
    let method = fields.text()?.to_owned();
    let url = fields.text()?.to_owned();
    let headers = fields.pairs()?;
    let stream = fields.flag()?;
    let model_alias = fields.optional()?.map(str::to_owned);
    let timeout_ms = fields.number()?;
    let account = fields.optional()?.map(str::to_owned);
    let retry: Option<RetryPolicy> = fields.optional_json("retry")?;
    let delay_ms = fields.number()?;
    let exhausted: Option<ProviderExhausted> = fields.optional_json("exhausted")?;
    fields.end()?;
    Ok(ProviderPrepareOutput {
        method,
        url,
        headers,
        stream,
        model_alias,
        timeout_ms,
        account,
        retry,
        delay_ms,
        exhausted,
    })
}

/// The JSON of a rare nested field (plain numbers and strings: writing it
/// cannot fail).
fn json_of(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Netstrings written one after another.
struct Writer(String);

impl Writer {
    fn text(&mut self, text: &str) {
        self.0.push_str(itoa::Buffer::new().format(text.len()));
        self.0.push(':');
        self.0.push_str(text);
        self.0.push(',');
    }

    fn flag(&mut self, flag: bool) {
        self.0.push_str(if flag { "1:1," } else { "1:0," });
    }

    /// A flag, then the text when there is one.
    fn optional(&mut self, text: Option<&str>) {
        self.flag(text.is_some());
        if let Some(text) = text {
            self.text(text);
        }
    }

    /// `count`, then the `count` name/value pairs (what [`Reader::pairs`] reads).
    fn pairs<'h>(&mut self, count: usize, pairs: impl Iterator<Item = (&'h str, Cow<'h, str>)>) {
        self.text(itoa::Buffer::new().format(count));
        for (name, value) in pairs {
            self.text(name);
            self.text(&value);
        }
    }
}

/// The netstrings not read yet.
struct Reader<'a>(&'a str);

impl<'a> Reader<'a> {
    /// The netstrings after [`MARK`], which `meta` must start with.
    fn after_mark(meta: &'a str) -> Result<Self, FieldError> {
        meta.strip_prefix(MARK)
            .map(Self)
            .ok_or(FieldError("no leading mark"))
    }

    fn text(&mut self) -> Result<&'a str, FieldError> {
        let colon = self.0.as_bytes()[..self.0.len().min(11)]
            .iter()
            .position(|&byte| byte == b':')
            .ok_or(FieldError("a length"))?;
        let digits = &self.0[..colon];
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(FieldError("a length"));
        }
        let len: usize = digits.parse().map_err(|_| FieldError("a length"))?;
        let start = colon + 1;
        let end = start
            .checked_add(len)
            .ok_or(FieldError("a length past the end"))?;
        // `get` refuses a range past the end or through a character.
        let text = self
            .0
            .get(start..end)
            .ok_or(FieldError("a length past the end"))?;
        self.0 = self.0[end..]
            .strip_prefix(',')
            .ok_or(FieldError("a field not closed by a comma"))?;
        Ok(text)
    }

    fn flag(&mut self) -> Result<bool, FieldError> {
        match self.text()? {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(FieldError("a flag")),
        }
    }

    fn optional(&mut self) -> Result<Option<&'a str>, FieldError> {
        Ok(if self.flag()? {
            Some(self.text()?)
        } else {
            None
        })
    }

    /// An optional rare field written as embedded JSON ([`json_of`]);
    /// `what` names it in the error.
    fn optional_json<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &'static str,
    ) -> Result<Option<T>, FieldError> {
        self.optional()?
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| FieldError(what))
    }

    fn number<N: std::str::FromStr>(&mut self) -> Result<N, FieldError> {
        self.text()?.parse().map_err(|_| FieldError("a number"))
    }

    /// A count, then that many name/value pairs.
    fn pairs(&mut self) -> Result<Vec<(String, String)>, FieldError> {
        let count: usize = self.number()?;
        // Each pair takes at least six bytes (`0:,0:,`): a count past that is a lie.
        if count > self.0.len() / 6 {
            return Err(FieldError("a header count past the end"));
        }
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.text()?.to_owned();
            pairs.push((name, self.text()?.to_owned()));
        }
        Ok(pairs)
    }

    fn end(&self) -> Result<(), FieldError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FieldError("text after the last field"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(
        model: Option<&'a str>,
        attempt: Option<&'a ProviderAttempt>,
    ) -> PrepareFields<'a> {
        PrepareFields {
            endpoint: "/claude/v1/messages",
            client_format: "anthropic.messages",
            native_format: "anthropic.messages",
            stream: true,
            model,
            method: "POST",
            path: "/claude/v1/messages",
            query: "beta=true&x=1,2:3",
            request_id: "r-1",
            attempt,
            body_members: &[[2, 7, 9, 12], [14, 20, 22, 26]],
        }
    }

    #[test]
    fn fields_read_back_as_written_whatever_the_text_holds() {
        let headers = [
            ("content-type", "application/json"),
            ("x-odd", "1:2,3~\"quoted\" \\ é ✓ 𝄞"),
            ("x-empty", ""),
            ("authorization", "Bearer sk-ant-secret"),
        ];
        let attempt = ProviderAttempt {
            number: 2,
            previous_status: 529,
            previous_account: Some("work".to_owned()),
            retry_after_ms: Some(1500),
        };
        for (model, attempt) in [
            (Some("claude-sonnet-4"), None),
            (None, Some(&attempt)),
            (Some(""), None),
        ] {
            let written = fields(model, attempt).write(
                headers.len(),
                headers
                    .iter()
                    .map(|&(name, value)| (name, Cow::Borrowed(value))),
            );
            assert!(written.starts_with(MARK), "{written}");
            let read = read_prepare(&written).unwrap();
            assert_eq!(read.endpoint, "/claude/v1/messages");
            assert_eq!(read.client_format, "anthropic.messages");
            assert!(read.stream);
            assert_eq!(read.model.as_deref(), model);
            assert_eq!(read.request.method, "POST");
            assert_eq!(read.request.query, "beta=true&x=1,2:3");
            assert_eq!(read.request.request_id, "r-1");
            let pairs: Vec<(&str, &str)> = read
                .request
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            assert_eq!(pairs, headers);
            assert_eq!(
                read.attempt.as_ref().map(|a| (a.number, a.previous_status)),
                attempt.map(|a| (a.number, a.previous_status))
            );
            assert_eq!(read.body_members, [[2, 7, 9, 12], [14, 20, 22, 26]]);
        }
    }

    #[test]
    fn answers_read_back_as_written() {
        let plain = ProviderPrepareOutput {
            method: "POST".to_owned(),
            url: "https://api.anthropic.com/v1/messages?beta=true".to_owned(),
            headers: vec![
                ("x-api-key".to_owned(), "sk-ant-1:2,3".to_owned()),
                ("anthropic-beta".to_owned(), "a,b é".to_owned()),
            ],
            stream: true,
            ..ProviderPrepareOutput::default()
        };
        let full = ProviderPrepareOutput {
            model_alias: Some("sonnet".to_owned()),
            timeout_ms: 30_000,
            account: Some("work".to_owned()),
            retry: Some(RetryPolicy { max_attempts: 3 }),
            delay_ms: 250,
            exhausted: Some(ProviderExhausted {
                message: "every account rests".to_owned(),
                retry_after_ms: Some(60_000),
            }),
            ..plain.clone()
        };
        for output in [plain, full] {
            let written = write_prepare_output(&output);
            assert!(written.starts_with(MARK), "{written}");
            let read = read_prepare_output(&written).unwrap();
            // Same fields, as the JSON of each shows.
            assert_eq!(
                serde_json::to_value(&read).unwrap(),
                serde_json::to_value(&output).unwrap()
            );
            for at in (0..written.len()).filter(|&at| written.is_char_boundary(at)) {
                assert!(read_prepare_output(&written[..at]).is_err(), "cut at {at}");
            }
        }
    }

    /// Every cut and every one-character change of good metadata reads as
    /// an error or as some input, never as a panic.
    #[test]
    fn no_cut_or_change_of_the_text_panics() {
        let written = fields(Some("m"), None).write(
            2,
            [("a", Cow::Borrowed("b:1,")), ("é", Cow::Borrowed("ü"))].into_iter(),
        );
        for (at, _) in written.char_indices() {
            let _ = read_prepare(&written[..at]);
            for replacement in ["9", ":", ",", "~", "", "é"] {
                let mut changed = written.clone();
                let end = at + changed[at..].chars().next().map_or(0, char::len_utf8);
                changed.replace_range(at..end, replacement);
                let _ = read_prepare(&changed);
            }
        }
        assert!(read_prepare(&written).is_ok());
    }

    #[test]
    fn malformed_fields_are_refused_and_say_why() {
        let written = fields(Some("m"), None).write(1, [("a", Cow::Borrowed("b"))].into_iter());
        // A count of pairs that does not match them.
        let miscounted = fields(None, None).write(3, [("a", Cow::Borrowed("b"))].into_iter());
        let cases = [
            ("{\"endpoint\": \"x\"}".to_owned(), "no leading mark"),
            (
                written[..written.len() - 1].to_owned(),
                "not closed by a comma",
            ),
            (
                written[..written.len() / 2].to_owned(),
                "malformed provider.prepare fields",
            ),
            (format!("{written}1:x,"), "text after the last field"),
            ("~99:short,".to_owned(), "past the end"),
            ("~x:a,".to_owned(), "a length"),
            ("~99999999999999999999:a,".to_owned(), "a length"),
            // A length that ends inside a character.
            ("~1:é,".to_owned(), "past the end"),
            (miscounted, "malformed provider.prepare fields"),
        ];
        for (meta, says) in cases {
            let error = read_prepare(&meta).unwrap_err().to_string();
            assert!(error.contains(says), "{meta:?}: {error}");
        }
    }
}
