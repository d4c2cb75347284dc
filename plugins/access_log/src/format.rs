//! Access log lines: the client log in Common, Combined or structured (JSON
//! lines) format, and the provider log, always structured.
//!
//! Records are read from hook event data with the keys the host emits (see
//! `lib.rs`); a missing key becomes `-` in the text formats and is left out of
//! JSON lines, as in the original.

use std::{borrow::Cow, io::Write as _};

use ccproxy_plugin_abi::{HookCall, HookEvent, PluginError, Value, serde_json};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::BorrowedFormatItem, macros::format_description};

/// The client log's format (`client_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientFormat {
    /// NCSA Common Log Format.
    Common,
    /// Common plus referer and user agent.
    Combined,
    /// One JSON object per line.
    Structured,
}

impl ClientFormat {
    /// The config spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientFormat::Common => "common",
            ClientFormat::Combined => "combined",
            ClientFormat::Structured => "structured",
        }
    }
}

/// Token counts, under the original's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Tokens {
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_input: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_output: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_tokens: Option<u64>,
}

impl Tokens {
    /// `None` when the usage is absent, null or has none of the counts.
    fn from_usage(usage: Option<&Usage>) -> Option<Self> {
        let usage = usage?;
        let tokens = Self {
            tokens_input: usage.input_tokens,
            tokens_output: usage.output_tokens,
            cache_read_tokens: usage.cache_read_input_tokens,
            cache_write_tokens: usage.cache_creation_input_tokens,
        };
        (tokens != Self::default()).then_some(tokens)
    }
}

/// A `usage` object: the counts this log writes (other keys are skipped).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

/// The keys of an event's data this log reads, borrowed from the call's JSON
/// where no escape forces a copy; everything else (the request headers) is
/// skipped without being built.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EventData<'a> {
    #[serde(borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    http_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    query: Option<Cow<'a, str>>,
    #[serde(borrow)]
    url: Option<Cow<'a, str>>,
    status_code: Option<u64>,
    response_status: Option<u64>,
    duration_ms: Option<f64>,
    #[serde(borrow)]
    client_ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    bytes_sent: Option<u64>,
    streaming: Option<bool>,
    #[serde(borrow)]
    provider: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    total_chunks: Option<u64>,
    total_bytes: Option<u64>,
    usage: Option<Usage>,
    /// Added by the pricing plugin's hook, which runs before this one.
    cost_usd: Option<f64>,
    error: Option<Value>,
}

/// A non-empty string field, still borrowed from the call when it can be.
fn text(field: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    field.filter(|value| !value.is_empty())
}

/// The data of `call`, or why it could not be read (the host's event
/// shapes are fixed within plugin API 1, so this is a bug to report).
fn event_data(call: &HookCall) -> Result<EventData<'_>, PluginError> {
    call.data()
}

/// A client request that was answered (`request.completed`) or failed
/// (`request.failed`). Its text borrows from the call's JSON where no escape
/// forced a copy: a line is written straight into the file's buffer, with
/// no string of its own per field or per line.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ClientRecord<'a> {
    pub(crate) timestamp_ms: u64,
    pub(crate) request_id: Cow<'a, str>,
    pub(crate) method: Cow<'a, str>,
    pub(crate) path: Cow<'a, str>,
    pub(crate) query: Cow<'a, str>,
    /// `HTTP/1.1` or `HTTP/2.0`, as the client spoke.
    pub(crate) http_version: Option<Cow<'a, str>>,
    pub(crate) status_code: u16,
    pub(crate) duration_ms: f64,
    pub(crate) client_ip: Option<Cow<'a, str>>,
    pub(crate) user_agent: Option<Cow<'a, str>>,
    pub(crate) bytes_sent: u64,
    pub(crate) streaming: bool,
    pub(crate) provider: Option<Cow<'a, str>>,
    pub(crate) model: Option<Cow<'a, str>>,
    pub(crate) tokens: Option<Tokens>,
    /// The answer's cost, when a pricing hook put it in the data.
    pub(crate) cost_usd: Option<f64>,
    pub(crate) error: Option<String>,
}

impl<'a> ClientRecord<'a> {
    /// Reads a `request.completed` or `request.failed` event.
    pub(crate) fn from_hook(call: &'a HookCall) -> Result<Self, PluginError> {
        let data = event_data(call)?;
        let failed = call.event == HookEvent::RequestFailed;
        let error = data.error.as_ref().and_then(error_text);
        // The URL is split only when the host left out the path or the query.
        let (path, query) = match (text(data.path), data.query) {
            (Some(path), Some(query)) => (path, query),
            (path, query) => {
                let (url_path, url_query) = split_url(data.url.as_deref().unwrap_or(""));
                (
                    path.unwrap_or(Cow::Owned(url_path)),
                    query.unwrap_or(Cow::Owned(url_query)),
                )
            }
        };
        Ok(Self {
            timestamp_ms: call.timestamp_ms,
            request_id: request_id(call, data.request_id),
            method: text(data.method).unwrap_or_default(),
            http_version: text(data.http_version),
            path,
            query,
            status_code: data
                .status_code
                .or(data.response_status)
                .and_then(|status| u16::try_from(status).ok())
                .unwrap_or(if failed { 500 } else { 0 }),
            duration_ms: data.duration_ms.unwrap_or(0.0),
            client_ip: text(data.client_ip),
            user_agent: text(data.user_agent),
            bytes_sent: data.bytes_sent.unwrap_or(0),
            streaming: data.streaming.unwrap_or(false),
            provider: text(data.provider),
            model: text(data.model),
            tokens: Tokens::from_usage(data.usage.as_ref()),
            cost_usd: data.cost_usd,
            error,
        })
    }

    /// The line in `format`, without its newline.
    #[cfg(test)]
    pub(crate) fn line(&self, format: ClientFormat) -> String {
        let mut out = Vec::new();
        self.write_line(format, &mut out);
        String::from_utf8(out).expect("lines are UTF-8")
    }

    /// Appends the line in `format` to `out`, without its newline.
    pub(crate) fn write_line(&self, format: ClientFormat, out: &mut Vec<u8>) {
        match format {
            ClientFormat::Common => self.write_common(out),
            ClientFormat::Combined => self.write_combined(out),
            ClientFormat::Structured => self.write_structured(out),
        }
    }

    /// `host ident authuser [date] "request" status bytes`, with `-` for a
    /// missing host or zero bytes.
    fn write_common(&self, out: &mut Vec<u8>) {
        escape_into(out, self.client_ip.as_deref().unwrap_or("-"));
        out.extend_from_slice(b" - - [");
        write_clf_time(out, self.timestamp_ms);
        out.extend_from_slice(b"] \"");
        escape_into(out, or_dash(&self.method));
        out.push(b' ');
        // `path?query`: `?` needs no escape, so each half is escaped alone.
        if self.query.is_empty() {
            escape_into(out, or_dash(&self.path));
        } else {
            escape_into(out, &self.path);
            out.push(b'?');
            escape_into(out, &self.query);
        }
        out.push(b' ');
        escape_into(out, self.http_version.as_deref().unwrap_or("HTTP/1.1"));
        // Writing to a Vec cannot fail.
        let _ = write!(out, "\" {} ", self.status_code);
        if self.bytes_sent > 0 {
            let _ = write!(out, "{}", self.bytes_sent);
        } else {
            out.push(b'-');
        }
    }

    /// Common plus `"referer" "user agent"`; API clients send no referer.
    fn write_combined(&self, out: &mut Vec<u8>) {
        self.write_common(out);
        out.extend_from_slice(b" \"-\" \"");
        escape_into(out, self.user_agent.as_deref().unwrap_or("-"));
        out.push(b'"');
    }

    fn write_structured(&self, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct Line<'a> {
            timestamp: f64,
            request_id: &'a str,
            method: &'a str,
            path: &'a str,
            query: &'a str,
            status_code: u16,
            duration_ms: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            client_ip: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            user_agent: Option<&'a str>,
            bytes_sent: u64,
            streaming: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            provider: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            model: Option<&'a str>,
            #[serde(flatten, skip_serializing_if = "Option::is_none")]
            tokens: Option<Tokens>,
            #[serde(skip_serializing_if = "Option::is_none")]
            cost_usd: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
        }
        write_json_line(
            out,
            &Line {
                timestamp: epoch_seconds(self.timestamp_ms),
                request_id: &self.request_id,
                method: &self.method,
                path: &self.path,
                query: &self.query,
                status_code: self.status_code,
                duration_ms: self.duration_ms,
                client_ip: self.client_ip.as_deref(),
                user_agent: self.user_agent.as_deref(),
                bytes_sent: self.bytes_sent,
                streaming: self.streaming,
                provider: self.provider.as_deref(),
                model: self.model.as_deref(),
                tokens: self.tokens,
                cost_usd: self.cost_usd,
                error: self.error.as_deref(),
            },
        );
    }
}

/// A provider event (`provider.response.received`, `provider.error`,
/// `provider.stream.end`) as one structured line, borrowing from the call.
#[derive(Serialize)]
pub(crate) struct ProviderLine<'a> {
    timestamp: f64,
    event: &'a str,
    request_id: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    streaming: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_chunks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_bytes: Option<u64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    tokens: Option<Tokens>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl<'a> ProviderLine<'a> {
    /// Reads a provider event.
    pub(crate) fn from_hook(call: &'a HookCall) -> Result<Self, PluginError> {
        let data = event_data(call)?;
        Ok(Self {
            timestamp: epoch_seconds(call.timestamp_ms),
            event: call.event.as_str(),
            error: data.error.as_ref().and_then(error_text),
            request_id: request_id(call, data.request_id),
            provider: text(data.provider),
            method: text(data.method),
            url: text(data.url),
            status_code: data.status_code,
            duration_ms: data.duration_ms,
            streaming: (call.event == HookEvent::ProviderStreamEnd).then_some(true),
            total_chunks: data.total_chunks,
            total_bytes: data.total_bytes,
            tokens: Tokens::from_usage(data.usage.as_ref()),
            cost_usd: data.cost_usd,
            model: text(data.model),
        })
    }

    /// Appends the line to `out`, without its newline.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        write_json_line(out, self);
    }
}

/// A provider event's line, without its newline.
#[cfg(test)]
pub(crate) fn provider_line(call: &HookCall) -> Result<String, PluginError> {
    let mut out = Vec::new();
    ProviderLine::from_hook(call)?.write(&mut out);
    Ok(String::from_utf8(out).expect("lines are UTF-8"))
}

/// Appends `line` as JSON to `out`.
fn write_json_line<T: Serialize>(out: &mut Vec<u8>, line: &T) {
    let start = out.len();
    // Internal: every field is a string, number or bool, so serialising cannot fail.
    if let Err(error) = serde_json::to_writer(&mut *out, line) {
        out.truncate(start);
        let _ = write!(out, "{{\"error\":\"{error}\"}}");
    }
    escape_beyond_json(out, start);
}

/// JSON escapes the ASCII controls but leaves DEL, the C1 controls (U+009B
/// is a terminal's CSI) and Unicode line separators and direction marks as
/// they are: these become `\uhhhh` too (in the line that starts at `start`
/// of `out`), which reads back as the same string. They can only stand
/// inside strings, so the JSON stays valid.
fn escape_beyond_json(out: &mut Vec<u8>, start: usize) {
    // DEL is 0x7f, everything else in question lies beyond ASCII: both
    // checks run a word or a vector at a time, not a byte.
    let line = &out[start..];
    if line.is_ascii() && memchr::memchr(0x7f, line).is_none() {
        return;
    }
    let line = String::from_utf8_lossy(&out[start..]).into_owned();
    out.truncate(start);
    let mut utf8 = [0; 4];
    for character in line.chars() {
        if character.is_control() || is_line_or_direction_mark(character) {
            let _ = write!(out, "\\u{:04x}", u32::from(character));
        } else {
            out.extend_from_slice(character.encode_utf8(&mut utf8).as_bytes());
        }
    }
}

/// The event's request id, else the call's, else `-`.
fn request_id<'a>(call: &'a HookCall, from_data: Option<Cow<'a, str>>) -> Cow<'a, str> {
    text(from_data)
        .or_else(|| call.request_id.as_deref().map(Cow::Borrowed))
        .unwrap_or(Cow::Borrowed("-"))
}

/// An `error` value as text: a string as is, a structure as JSON.
fn error_text(error: &Value) -> Option<String> {
    match error {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Object(map) => match map.get("message").and_then(Value::as_str) {
            Some(message) => Some(message.to_owned()),
            None => Some(error.to_string()),
        },
        other => Some(other.to_string()),
    }
}

/// The path and query of a URL or of an origin-form target.
fn split_url(url: &str) -> (String, String) {
    let target = match url.find("://") {
        Some(scheme_end) => {
            let after_scheme = &url[scheme_end + 3..];
            after_scheme
                .find('/')
                .map_or("/", |slash| &after_scheme[slash..])
        }
        None => url,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (path.to_owned(), query.to_owned())
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// Appends `text` to `out`, escaping `"`, `\\` and control characters as
/// Apache's `mod_log_config` does (`\n`, `\r`, `\t`, `\b`, `\v`, else
/// `\xhh`), and non-ASCII controls, line separators and direction marks as
/// `\uhhhh`: whatever the client sent, one record stays one line and carries
/// no terminal escape.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    // Most fields are plain printable ASCII: copied as they are.
    if text
        .bytes()
        .all(|byte| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\')
    {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let mut utf8 = [0; 4];
    for character in text.chars() {
        match character {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{b}' => out.extend_from_slice(b"\\v"),
            ascii if ascii.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(ascii));
            }
            other if other.is_control() || is_line_or_direction_mark(other) => {
                let _ = write!(out, "\\u{:04x}", u32::from(other));
            }
            other => out.extend_from_slice(other.encode_utf8(&mut utf8).as_bytes()),
        }
    }
}

/// Unicode line and paragraph separators and bidirectional marks: not
/// control characters, but a viewer may break a line at them or show the
/// text around them reordered, so a client could disguise what it sent.
fn is_line_or_direction_mark(character: char) -> bool {
    matches!(
        character,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

fn epoch_seconds(timestamp_ms: u64) -> f64 {
    timestamp_ms as f64 / 1000.0
}

/// `10/Oct/2000:13:55:36 +0000`: the Common Log Format date, in UTC.
#[cfg(test)]
pub(crate) fn clf_time(timestamp_ms: u64) -> String {
    let mut out = Vec::new();
    write_clf_time(&mut out, timestamp_ms);
    String::from_utf8(out).expect("dates are ASCII")
}

/// Appends the Common Log Format date of `timestamp_ms` to `out`.
fn write_clf_time(out: &mut Vec<u8>, timestamp_ms: u64) {
    const CLF: &[BorrowedFormatItem<'_>] =
        format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    // A time past the year 9999, which no clock gives, shows as the epoch.
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let _ = time.format_into(out, CLF);
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::json;

    use super::*;

    fn hook(event: HookEvent, data: Value) -> HookCall {
        HookCall::new(
            "access_log",
            event,
            1_700_000_000_123,
            None,
            &data.to_string(),
            Vec::new(),
        )
        .unwrap()
    }

    fn completed_data() -> Value {
        json!({
                "request_id": "req-1", "method": "POST", "path": "/v1/messages", "query": "beta=true",
                "url": "http://127.0.0.1:8000/v1/messages?beta=true", "status_code": 200,
                "duration_ms": 12.5, "client_ip": "127.0.0.1", "user_agent": "curl/8.5.0",
                "bytes_sent": 512, "streaming": true, "provider": "claude_api", "model": "claude-sonnet-4",
                "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 0,
                          "cache_creation_input_tokens": null},
                "headers": {"user-agent": "curl/8.5.0"},
        })
    }

    fn completed() -> HookCall {
        completed_with(completed_data())
    }

    fn completed_with(data: Value) -> HookCall {
        hook(HookEvent::RequestCompleted, data)
    }

    #[test]
    fn common() {
        let call = completed();
        let record = ClientRecord::from_hook(&call).unwrap();
        assert_eq!(
            record.line(ClientFormat::Common),
            r#"127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "POST /v1/messages?beta=true HTTP/1.1" 200 512"#
        );
    }

    #[test]
    fn escaped_strings_and_unknown_keys_are_read() {
        let mut data = completed_data();
        data["user_agent"] = json!("say \"hi\" é");
        data["new_key_of_a_later_host"] = json!({"nested": [1, 2, 3]});
        let call = completed_with(data);
        let record = ClientRecord::from_hook(&call).unwrap();
        assert_eq!(record.user_agent.as_deref(), Some("say \"hi\" é"));
    }

    #[test]
    fn the_protocol_is_the_one_the_client_spoke() {
        let mut data = completed_data();
        data["http_version"] = json!("HTTP/2.0");
        let call = completed_with(data);
        let record = ClientRecord::from_hook(&call).unwrap();
        assert!(
            record
                .line(ClientFormat::Common)
                .contains(r#""POST /v1/messages?beta=true HTTP/2.0" 200"#),
            "{}",
            record.line(ClientFormat::Common)
        );
    }

    #[test]
    fn combined() {
        let call = completed();
        let record = ClientRecord::from_hook(&call).unwrap();
        assert_eq!(
            record.line(ClientFormat::Combined),
            r#"127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "POST /v1/messages?beta=true HTTP/1.1" 200 512 "-" "curl/8.5.0""#
        );
    }

    #[test]
    fn structured() {
        let call = completed();
        let record = ClientRecord::from_hook(&call).unwrap();
        assert_eq!(
            record.line(ClientFormat::Structured),
            concat!(
                r#"{"timestamp":1700000000.123,"request_id":"req-1","method":"POST","path":"/v1/messages","#,
                r#""query":"beta=true","status_code":200,"duration_ms":12.5,"client_ip":"127.0.0.1","#,
                r#""user_agent":"curl/8.5.0","bytes_sent":512,"streaming":true,"provider":"claude_api","#,
                r#""model":"claude-sonnet-4","tokens_input":10,"tokens_output":20,"cache_read_tokens":0}"#
            )
        );
    }

    #[test]
    fn missing_fields_become_dashes_or_are_left_out() {
        let call = hook(
            HookEvent::RequestCompleted,
            json!({"request_id": "r", "method": "GET", "path": "/x", "query": "", "status_code": 204,
                   "provider": null, "model": null, "usage": null, "bytes_sent": 0}),
        );
        let record = ClientRecord::from_hook(&call).unwrap();
        assert_eq!(
            record.line(ClientFormat::Combined),
            r#"- - - [14/Nov/2023:22:13:20 +0000] "GET /x HTTP/1.1" 204 - "-" "-""#
        );
        assert_eq!(
            record.line(ClientFormat::Structured),
            r#"{"timestamp":1700000000.123,"request_id":"r","method":"GET","path":"/x","query":"","status_code":204,"duration_ms":0.0,"bytes_sent":0,"streaming":false}"#
        );
    }

    #[test]
    fn failed_requests_carry_the_error() {
        let call = hook(
            HookEvent::RequestFailed,
            json!({"request_id": "r", "method": "GET", "path": "/x", "error": "upstream timed out"}),
        );
        let record = ClientRecord::from_hook(&call).unwrap();
        assert_eq!(record.status_code, 500);
        let line: Value = serde_json::from_str(&record.line(ClientFormat::Structured)).unwrap();
        assert_eq!(line["error"], "upstream timed out");
    }

    #[test]
    fn path_and_query_fall_back_to_the_url() {
        let call = hook(
            HookEvent::RequestCompleted,
            json!({"url": "https://proxy.test:8000/api/v1?x=1", "response_status": 201}),
        );
        let record = ClientRecord::from_hook(&call).unwrap();
        assert_eq!(
            (
                record.path.as_ref(),
                record.query.as_ref(),
                record.status_code
            ),
            ("/api/v1", "x=1", 201)
        );
        assert_eq!(split_url("/a?b"), ("/a".to_owned(), "b".to_owned()));
        assert_eq!(split_url("http://host"), ("/".to_owned(), String::new()));
    }

    #[test]
    fn quotes_and_control_characters_are_escaped() {
        let call = completed();
        let mut record = ClientRecord::from_hook(&call).unwrap();
        record.user_agent = Some("evil\"agent\n".into());
        assert!(
            record
                .line(ClientFormat::Combined)
                .ends_with(r#""-" "evil\"agent\n""#),
            "{}",
            record.line(ClientFormat::Combined)
        );
    }

    #[test]
    fn a_client_cannot_forge_lines_or_terminal_escapes_in_text_formats() {
        let mut data = completed_data();
        data["method"] = json!("GET\r\n");
        data["path"] = json!(
            "/v1/x\n127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] \"GET /forged HTTP/1.1\" 200 1"
        );
        data["query"] = json!("a=\u{1b}]0;title\u{7}&b=\u{0}");
        data["user_agent"] = json!(
            "\u{1b}[31mred\u{1b}[0m\tx\u{8}\u{b}\u{c}\u{7f}\u{9b}2J \\ \u{2028}\u{202e}txt.exe"
        );
        let call = completed_with(data);
        let record = ClientRecord::from_hook(&call).unwrap();
        for format in [ClientFormat::Common, ClientFormat::Combined] {
            let line = record.line(format);
            assert!(
                !line
                    .chars()
                    .any(|c| c.is_control() || is_line_or_direction_mark(c)),
                "{line:?}"
            );
            assert!(
                line.contains(concat!(
                    r#""GET\r\n /v1/x\n127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] \"GET /forged HTTP/1.1\" 200 1"#,
                    r#"?a=\x1b]0;title\x07&b=\x00 HTTP/1.1" 200 512"#
                )),
                "{line}"
            );
        }
        assert!(
            record.line(ClientFormat::Combined).ends_with(
                r#""-" "\x1b[31mred\x1b[0m\tx\b\v\x0c\x7f\u009b2J \\ \u2028\u202etxt.exe""#
            ),
            "{}",
            record.line(ClientFormat::Combined)
        );
    }

    #[test]
    fn the_structured_format_escapes_by_json_and_keeps_the_text() {
        let mut data = completed_data();
        let path = "/v1/x\n{\"forged\":1}\r\u{1b}[2J\u{0}";
        let user_agent = "\u{1b}[31mred\u{7f}\u{9b}\u{202e}\t\"";
        data["path"] = json!(path);
        data["query"] = json!("q=\u{1b}");
        data["user_agent"] = json!(user_agent);
        let call = completed_with(data);
        let record = ClientRecord::from_hook(&call).unwrap();
        let line = record.line(ClientFormat::Structured);
        assert!(
            !line
                .chars()
                .any(|c| c.is_control() || is_line_or_direction_mark(c)),
            "{line:?}"
        );
        assert_eq!(line.lines().count(), 1);
        assert!(
            line.contains(r#""path":"/v1/x\n{\"forged\":1}\r\u001b[2J\u0000""#),
            "{line}"
        );
        assert!(
            line.contains(r#""user_agent":"\u001b[31mred\u007f\u009b\u202e\t\"""#),
            "{line}"
        );
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["path"], path);
        assert_eq!(parsed["query"], "q=\u{1b}");
        assert_eq!(parsed["user_agent"], user_agent);
    }

    #[test]
    fn provider_lines() {
        let received = hook(
            HookEvent::ProviderResponseReceived,
            json!({"request_id": "req-1", "provider": "claude_api", "url": "https://api.anthropic.com/v1/messages",
                   "method": "POST", "status_code": 200, "duration_ms": 80.0}),
        );
        assert_eq!(
            provider_line(&received).unwrap(),
            concat!(
                r#"{"timestamp":1700000000.123,"event":"provider.response.received","request_id":"req-1","#,
                r#""provider":"claude_api","method":"POST","url":"https://api.anthropic.com/v1/messages","#,
                r#""status_code":200,"duration_ms":80.0}"#
            )
        );
        let error = hook(
            HookEvent::ProviderError,
            json!({"request_id": "req-2", "provider": "codex", "url": "https://x.test/", "error": {"message": "reset"}}),
        );
        assert!(
            provider_line(&error)
                .unwrap()
                .ends_with(r#""url":"https://x.test/","error":"reset"}"#)
        );
        let end = hook(
            HookEvent::ProviderStreamEnd,
            json!({"request_id": "req-3", "provider": "codex", "total_chunks": 7, "total_bytes": 900,
                   "usage": {"input_tokens": 1, "output_tokens": 2}}),
        );
        assert!(provider_line(&end).unwrap().ends_with(
            r#""streaming":true,"total_chunks":7,"total_bytes":900,"tokens_input":1,"tokens_output":2}"#
        ));
    }

    #[test]
    fn dates() {
        assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf_time(951_782_400_000), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(clf_time(971_186_136_000), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(clf_time(4_107_542_399_000), "28/Feb/2100:23:59:59 +0000");
        assert_eq!(clf_time(4_133_980_799_000), "31/Dec/2100:23:59:59 +0000");
    }
}
