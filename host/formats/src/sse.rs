//! Server-sent events: a push-based incremental [`Decoder`] and the [`Event`] encoder.
//!
//! The decoder follows the WHATWG "interpreting an event stream" algorithm: lines end in
//! CRLF, LF or a lone CR (also when the CR and the LF arrive in different reads), a line
//! starting with `:` is a comment (keep-alives), `data:` lines of one event are joined with
//! `\n`, one space after the colon is removed, a leading byte-order mark is skipped, and a
//! blank line dispatches the event. Invalid UTF-8 becomes U+FFFD instead of failing.
//!
//! Memory is bounded: an event larger than [`Decoder::max_event_size`] is refused with
//! [`DecodeError::EventTooLarge`]; the decoder then skips to the end of that event and goes on.

use bytes::Bytes;
use memchr::memchr2;

/// The default limit on one event's size, in bytes (16 MiB).
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    /// The `data:` lines of the event joined with `\n`.
    pub data: String,
    /// The `id:` field, if the event had one.
    pub id: Option<String>,
}

impl Event {
    /// An event with an `event:` name and data.
    pub fn new(event: impl Into<String>, data: impl Into<String>) -> Self {
        Event {
            event: Some(event.into()),
            data: data.into(),
            id: None,
        }
    }

    /// An event with data only (how OpenAI Chat Completions streams are framed).
    pub fn data(data: impl Into<String>) -> Self {
        Event {
            event: None,
            data: data.into(),
            id: None,
        }
    }

    /// The `data: [DONE]` sentinel that ends an OpenAI Chat Completions stream.
    pub fn done() -> Self {
        Event::data("[DONE]")
    }

    /// Whether this is the `[DONE]` sentinel.
    pub fn is_done(&self) -> bool {
        self.data.trim() == "[DONE]"
    }

    /// Appends the wire form of the event to `buf`: `event:`, `id:`, one `data:` line per
    /// line of data, and the blank line that ends the event.
    ///
    /// Line breaks inside `event` or `id` cannot be framed and are replaced by spaces.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        if let Some(event) = &self.event {
            buf.extend_from_slice(b"event: ");
            push_single_line(buf, event);
            buf.push(b'\n');
        }
        if let Some(id) = &self.id {
            buf.extend_from_slice(b"id: ");
            push_single_line(buf, id);
            buf.push(b'\n');
        }
        let data = self.data.as_bytes();
        let mut start = 0;
        loop {
            let end = memchr2(b'\n', b'\r', &data[start..]).map(|offset| start + offset);
            buf.extend_from_slice(b"data: ");
            buf.extend_from_slice(&data[start..end.unwrap_or(data.len())]);
            buf.push(b'\n');
            match end {
                None => break,
                Some(end) => {
                    start = end + 1;
                    if data[end] == b'\r' && data.get(start) == Some(&b'\n') {
                        start += 1;
                    }
                }
            }
        }
        buf.push(b'\n');
    }

    /// The wire form of the event as [`Bytes`].
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = Vec::with_capacity(self.data.len() + 32);
        self.encode(&mut buf);
        Bytes::from(buf)
    }
}

fn push_single_line(buf: &mut Vec<u8>, value: &str) {
    buf.extend(value.bytes().map(|byte| {
        if byte == b'\n' || byte == b'\r' {
            b' '
        } else {
            byte
        }
    }));
}

/// Why the decoder refused part of a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// One event grew past the configured limit; it was discarded.
    #[error("server-sent event larger than the limit of {limit} bytes")]
    EventTooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
}

/// A push-based incremental decoder of `text/event-stream` bytes.
///
/// Feed it the body in whatever pieces the transport delivers; events come out as soon as
/// their terminating blank line has arrived. Splitting the input at any byte gives the same
/// events.
///
/// ```
/// use ccproxy_formats::sse::{Decoder, Event};
///
/// let mut decoder = Decoder::new();
/// let mut events = Vec::new();
/// decoder.push(b"event: ping\r\ndata: {\"type\":", &mut events).unwrap();
/// decoder.push(b"\"ping\"}\r\n\r\n: keep-alive\n\n", &mut events).unwrap();
/// assert_eq!(events, vec![Event::new("ping", "{\"type\":\"ping\"}")]);
/// ```
#[derive(Debug)]
pub struct Decoder {
    /// Bytes of the current line that arrived without their line ending yet.
    line: Vec<u8>,
    /// The previous chunk ended in CR, so a LF starting the next chunk belongs to it.
    after_cr: bool,
    /// The byte-order mark check is still pending (fewer than 3 bytes seen).
    at_start: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    /// Bytes held for the current event (fields plus the partial line).
    event_size: usize,
    max_event_size: usize,
    /// The current event was too large: drop lines up to the next blank line.
    skipping: bool,
    /// The start of the current line was dropped (a comment, or a line of an oversized
    /// event): its end is not a blank line and the line is ignored.
    dropping_line: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the default event size limit ([`DEFAULT_MAX_EVENT_SIZE`]).
    pub fn new() -> Self {
        Decoder::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// A decoder that refuses events larger than `max_event_size` bytes.
    pub fn with_max_event_size(max_event_size: usize) -> Self {
        Decoder {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            data: String::new(),
            has_data: false,
            event: None,
            id: None,
            event_size: 0,
            max_event_size,
            skipping: false,
            dropping_line: false,
        }
    }

    /// The event size limit in bytes.
    pub fn max_event_size(&self) -> usize {
        self.max_event_size
    }

    /// Decodes the next piece of the stream, appending every completed event to `out`.
    ///
    /// On [`DecodeError::EventTooLarge`] the events completed before the oversized one are
    /// already in `out`; the oversized event is dropped, the rest of this chunk is still
    /// decoded, and later calls go on with the next event.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        let mut result = Ok(());
        if chunk.is_empty() {
            // Internal: an empty read must not forget a CR that ended the previous one.
            return result;
        }
        if self.at_start {
            // Internal: the BOM may itself arrive split over several reads.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let seen = self.line.len();
            let take = chunk.len().min(BOM.len() - seen);
            if chunk[..take] == BOM[seen..seen + take] {
                if seen + take == BOM.len() {
                    self.line.clear();
                    self.at_start = false;
                    chunk = &chunk[take..];
                } else {
                    self.line.extend_from_slice(&chunk[..take]);
                    return Ok(());
                }
            } else {
                self.at_start = false;
            }
        }
        if self.after_cr && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.after_cr = false;
        while let Some(position) = memchr2(b'\n', b'\r', chunk) {
            let line_end = chunk[position];
            let line_part = &chunk[..position];
            if self.line.is_empty() {
                self.process_line(line_part, out, &mut result);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(line_part);
                self.process_line(&line, out, &mut result);
                line.clear();
                self.line = line;
            }
            chunk = &chunk[position + 1..];
            if line_end == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if !chunk.is_empty() {
            let comment = self.line.first().or(chunk.first()) == Some(&b':');
            if self.skipping || self.dropping_line || comment {
                // Internal: comments can be arbitrarily long keep-alive padding; they are
                // ignored without being held or counted against the limit.
                self.line.clear();
                self.dropping_line = true;
            } else if self.event_size + self.line.len() + chunk.len() > self.max_event_size {
                self.start_skipping(&mut result);
                self.dropping_line = true;
            } else {
                self.line.extend_from_slice(chunk);
            }
        }
        result
    }

    /// Ends the stream: a final event that lacks its blank line is still delivered, as a
    /// truncated upstream would otherwise lose its last event. The decoder is then reset.
    pub fn finish(&mut self, out: &mut Vec<Event>) -> Result<(), DecodeError> {
        let mut result = Ok(());
        if !self.line.is_empty() && !self.at_start {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out, &mut result);
        }
        self.process_line(b"", out, &mut result);
        *self = Decoder::with_max_event_size(self.max_event_size);
        result
    }

    fn start_skipping(&mut self, result: &mut Result<(), DecodeError>) {
        self.skipping = true;
        self.line.clear();
        self.data.clear();
        self.has_data = false;
        self.event = None;
        self.id = None;
        self.event_size = 0;
        *result = Err(DecodeError::EventTooLarge {
            limit: self.max_event_size,
        });
    }

    fn process_line(
        &mut self,
        line: &[u8],
        out: &mut Vec<Event>,
        result: &mut Result<(), DecodeError>,
    ) {
        if std::mem::take(&mut self.dropping_line) {
            return;
        }
        if line.is_empty() {
            if self.skipping {
                self.skipping = false;
                return;
            }
            if self.has_data {
                out.push(Event {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                    id: self.id.take(),
                });
            }
            self.data.clear();
            self.has_data = false;
            self.event = None;
            self.id = None;
            self.event_size = 0;
            return;
        }
        if self.skipping || line.first() == Some(&b':') {
            return;
        }
        self.event_size += line.len() + 1;
        if self.event_size > self.max_event_size {
            self.start_skipping(result);
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&text(value));
                self.has_data = true;
                // Internal: an invalid byte decodes to a 3-byte U+FFFD, so the data can
                // outgrow the bytes counted above.
                if self.data.len() > self.max_event_size {
                    self.start_skipping(result);
                }
            }
            b"event" => self.event = Some(text(value).into_owned()),
            b"id" if !value.contains(&0) => self.id = Some(text(value).into_owned()),
            // `retry:` and unknown fields carry nothing a proxy forwards.
            _ => {}
        }
    }
}

/// A field's value as text, invalid bytes replaced by U+FFFD. Checked with
/// `str::from_utf8` first: it reads ASCII a word at a time, where
/// `from_utf8_lossy` reads byte by byte (a stream's data lines are long and
/// valid, and were a tenth of a stream's instructions that way).
fn text(value: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(valid) => std::borrow::Cow::Borrowed(valid),
        Err(_) => String::from_utf8_lossy(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Vec<Event> {
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.push(chunk, &mut out).expect("within limits");
        }
        decoder.finish(&mut out).expect("within limits");
        out
    }

    #[test]
    fn multi_line_data_and_fields() {
        let events = decode(&[b"event: a\nid: 7\ndata: one\ndata:two\ndata:  three\n\n"]);
        assert_eq!(
            events,
            vec![Event {
                event: Some("a".into()),
                data: "one\ntwo\n three".into(),
                id: Some("7".into()),
            }]
        );
    }

    #[test]
    fn crlf_split_between_reads() {
        let events = decode(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(events, vec![Event::data("a\nb")]);
    }

    #[test]
    fn an_empty_read_between_cr_and_lf_changes_nothing() {
        let events = decode(&[b"data: a\r", b"", b"\ndata: b\n\n"]);
        assert_eq!(events, vec![Event::data("a\nb")]);
    }

    #[test]
    fn lone_cr_ends_lines() {
        let events = decode(&[b"data: a\r\rdata: b\r\r"]);
        assert_eq!(events, vec![Event::data("a"), Event::data("b")]);
    }

    #[test]
    fn comments_and_keep_alives_are_skipped() {
        let events = decode(&[b": ping\n\n:\n\ndata: x\n: mid-event comment\n\n"]);
        assert_eq!(events, vec![Event::data("x")]);
    }

    #[test]
    fn long_comments_split_over_reads_are_not_counted() {
        let mut decoder = Decoder::with_max_event_size(10);
        let mut out = Vec::new();
        for chunk in [&b": padding pad"[..], b"ding padding\ndata: ok\n\n"] {
            decoder
                .push(chunk, &mut out)
                .expect("comments do not count");
        }
        assert_eq!(out, vec![Event::data("ok")]);
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        let events = decode(&[b"event: lonely\n\ndata: y\n\n"]);
        assert_eq!(events, vec![Event::data("y")]);
    }

    #[test]
    fn field_without_colon_and_empty_data() {
        let events = decode(&[b"data\n\n"]);
        assert_eq!(events, vec![Event::data("")]);
    }

    #[test]
    fn bom_is_skipped_even_when_split() {
        let events = decode(&[b"\xEF", b"\xBB", b"\xBFdata: x\n\n"]);
        assert_eq!(events, vec![Event::data("x")]);
    }

    #[test]
    fn unterminated_last_event_is_delivered_on_finish() {
        let events = decode(&[b"data: [DONE]"]);
        assert_eq!(events, vec![Event::done()]);
        assert!(events[0].is_done());
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let events = decode(&[b"data: a\xFFb\n\n"]);
        assert_eq!(events, vec![Event::data("a\u{FFFD}b")]);
    }

    #[test]
    fn oversized_event_is_refused_and_decoding_resumes() {
        let mut decoder = Decoder::with_max_event_size(16);
        let mut out = Vec::new();
        let result = decoder.push(b"data: small\n\ndata: 0123456789abcdefghij", &mut out);
        assert_eq!(result, Err(DecodeError::EventTooLarge { limit: 16 }));
        assert_eq!(out, vec![Event::data("small")]);
        decoder
            .push(b"klmno\ndata: more\n\ndata: next\n\n", &mut out)
            .expect("the next event fits");
        assert_eq!(out, vec![Event::data("small"), Event::data("next")]);
    }

    #[test]
    fn oversized_event_split_into_many_lines_is_refused() {
        let mut decoder = Decoder::with_max_event_size(16);
        let mut out = Vec::new();
        let result = decoder.push(b"data: 0123\ndata: 4567\ndata: 89ab\n\n", &mut out);
        assert!(result.is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn oversized_line_end_is_not_taken_for_a_blank_line() {
        let mut decoder = Decoder::with_max_event_size(16);
        let mut out = Vec::new();
        assert!(
            decoder
                .push(b"data: 0123456789abcdefghij", &mut out)
                .is_err()
        );
        decoder
            .push(b"\ndata: tail\n\ndata: ok\n\n", &mut out)
            .expect("the next event fits");
        assert_eq!(out, vec![Event::data("ok")]);
    }

    #[test]
    fn encode_round_trips() {
        let event = Event {
            event: Some("message_start".into()),
            data: "line one\nline two\r\nline three".into(),
            id: Some("42".into()),
        };
        let mut buf = Vec::new();
        event.encode(&mut buf);
        assert_eq!(
            String::from_utf8(buf.clone()).expect("utf-8"),
            "event: message_start\nid: 42\ndata: line one\ndata: line two\ndata: line three\n\n"
        );
        let decoded = decode(&[&buf]);
        assert_eq!(decoded[0].data, "line one\nline two\nline three");
        assert_eq!(
            Event::done().to_bytes(),
            Bytes::from_static(b"data: [DONE]\n\n")
        );
    }
}
