//! The binary frame of `hook.batch` (plugin API 1.3): several hook calls to
//! one plugin in one operation, with no JSON around them.
//!
//! Why: a `hook.call` costs JSON metadata written by the host and parsed by
//! the plugin (a few thousand instructions each way, per call) and one
//! operation per event and plugin. A plugin built with this SDK announces
//! [`HOOK_BATCH`] in its answer to [`FEATURES_OP`]; the host then sends it
//! every hook call as a `hook.batch`, and the observer delivers all the
//! events queued for a plugin in one call. Plugins built with older SDKs
//! never see it: they answer `plugin.features` with `Unsupported` and keep
//! getting `hook.call` exactly as before (docs/ARCHITECTURE.md, "Hook calls").
//!
//! Layout (all integers little-endian; `str` is a `u32` length and UTF-8
//! bytes, `bytes` a `u32` length and the bytes). The message's metadata is
//! empty; the frame is its body.
//!
//! ```text
//! call:  u8 version (1), u32 count, count × entry
//! entry: str hook, str event, u64 timestamp_ms, u8 has_request_id,
//!        [str request_id], str data (JSON), index, bytes body
//! index: u32 count, count × (u32 key_start, u32 key_end, u32 value_start,
//!        u32 value_end): where each top-level key (inside its quotes, no
//!        escapes) and its value are in `data`, so the plugin parses only
//!        the values it names; count 0 when the sender did not index it
//! reply: u32 count, count × outcome
//! outcome: u8 0 continue
//!        | u8 1 modify: str data, index
//!        | u8 2 modify with a new body: str data, index, bytes body
//!        | u8 3 failed: u32 error code (`raw::ErrorCode`), str message
//! ```
//!
//! Each entry runs in order, one after the other, as separate `hook.call`s
//! would; a failing or panicking hook fails its own entry only.

/// The operation the host asks once, right after instantiating a plugin,
/// before `plugin.initialize`: which call protocols beyond 1.0's the
/// plugin's SDK speaks. Metadata out: `{"features": [..]}`. SDKs before 1.3
/// answer `Unsupported`.
pub const FEATURES_OP: &str = "plugin.features";

/// The feature: the SDK takes hook calls as `hook.batch`.
pub const HOOK_BATCH: &str = "hook_batch";

/// The feature: this plugin library's vectors and the host's come from the
/// same allocation functions (the SDK's `host-allocator`, resolved to the
/// host's table), so the host takes the buffers the plugin answers without
/// copying them (`allocator::shares_host_heap`).
pub const SHARED_HEAP: &str = "shared_heap";

/// The batched hook operation.
pub const BATCH_OP: &str = "hook.batch";

/// The frame's version byte.
const VERSION: u8 = 1;

/// The answer to [`FEATURES_OP`].
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Features {
    /// Feature names, such as [`HOOK_BATCH`].
    #[serde(default)]
    pub features: Vec<String>,
}

/// A frame that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub &'static str);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed hook.batch frame: {}", self.0)
    }
}

impl std::error::Error for FrameError {}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    // Lengths beyond 4 GiB cannot occur: bodies are bounded far below.
    out.extend_from_slice(&(value as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Where each top-level key of a JSON object and its value are in its text:
/// `[key_start, key_end, value_start, value_end]`, the key without its
/// quotes. Empty: not indexed.
pub type Index = Vec<[u32; 4]>;

/// Entry `n` of an index as written (16 bytes each); `None` past its end.
pub fn index_entry(index: &[u8], n: usize) -> Option<[u32; 4]> {
    let bytes = index.get(n * 16..n * 16 + 16)?;
    let number =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Some([number(0), number(4), number(8), number(12)])
}

/// An index as the frame carries it (its count, then its entries): written
/// once per event by the host and copied as is into each plugin's call.
pub fn encode_index(index: &[[u32; 4]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 16 * index.len());
    put_index(&mut out, Some(index));
    out
}

/// Writes an index (an empty one when `index` is `None`).
pub fn put_index(out: &mut Vec<u8>, index: Option<&[[u32; 4]]>) {
    let index = index.unwrap_or(&[]);
    put_u32(out, index.len());
    for entry in index {
        for number in entry {
            out.extend_from_slice(&number.to_le_bytes());
        }
    }
}

/// Writes `value` as compact JSON (exactly what `serde_json::to_string`
/// writes) and, when it is an object whose keys need no escapes, its
/// [`Index`], noted while writing: the host indexes event data so, and the
/// SDK the data a hook answers.
pub fn to_indexed_json<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<(String, Index), serde_json::Error> {
    let position = std::cell::Cell::new(0);
    let index = std::cell::RefCell::new(Vec::new());
    // Event data is about 1-2 KB (`request.completed` with its headers):
    // room for it up front instead of growing through 512 and 1024.
    let mut out = Vec::with_capacity(2048);
    {
        let writer = Tracked {
            out: &mut out,
            position: &position,
        };
        let formatter = Indexing {
            position: &position,
            index: &index,
            depth: 0,
            entry: [0; 4],
        };
        let mut serializer = serde_json::Serializer::with_formatter(writer, formatter);
        value.serialize(&mut serializer)?;
    }
    let mut index = index.into_inner();
    // Only a top-level object's keys are its keys (`[{..}]` has none), and a
    // key with an escape would not read back as written.
    let plain_keys = index
        .iter()
        .all(|&[start, end, ..]| !out[start as usize..end as usize].contains(&b'\\'));
    if out.first() != Some(&b'{') || !plain_keys || out.len() > u32::MAX as usize {
        index.clear();
    }
    let text = String::from_utf8(out)
        .map_err(|_| <serde_json::Error as serde::ser::Error>::custom("JSON is not UTF-8"))?;
    Ok((text, index))
}

/// Event data `data` (a JSON object) with `fields` (`(key, JSON text)`)
/// added at its end or put in place of its keys of the same name, and the
/// result's [`Index`]: the other members are copied as they are, using
/// `index` (the data's index as a frame carries it, 16 bytes an entry), so
/// nothing is parsed. `None` when that cannot be done (no index, a range
/// that is not in `data`, a key that needs escapes): the caller parses.
pub fn with_fields(
    data: &str,
    index: &[u8],
    fields: &[(String, String)],
) -> Option<(String, Index)> {
    if index.is_empty() || !data.starts_with('{') || fields.iter().any(|(key, _)| needs_escape(key))
    {
        return None;
    }
    let added: usize = fields
        .iter()
        .map(|(key, json)| key.len() + json.len() + 4)
        .sum();
    let mut out = String::with_capacity(data.len() + added);
    let mut entries = Index::with_capacity(index.len() / 16 + fields.len());
    out.push('{');
    let mut member = |out: &mut String, key: &str, value: &str| {
        if out.len() > 1 {
            out.push(',');
        }
        let key_start = out.len() + 1;
        out.push('"');
        out.push_str(key);
        out.push_str("\":");
        let value_start = out.len();
        out.push_str(value);
        entries.push([key_start, key_start + key.len(), value_start, out.len()].map(|n| n as u32));
    };
    for n in 0..index.len() / 16 {
        let [key_start, key_end, value_start, value_end] = index_entry(index, n)?;
        let key = data.get(key_start as usize..key_end as usize)?;
        let value = data.get(value_start as usize..value_end as usize)?;
        if !fields.iter().any(|(added, _)| added == key) {
            member(&mut out, key, value);
        }
    }
    for (key, json) in fields {
        member(&mut out, key, json);
    }
    out.push('}');
    (out.len() <= u32::MAX as usize).then_some((out, entries))
}

/// Reads `json`, which must be one JSON object, as `serde_json::from_slice`
/// would (every byte of it is validated), and notes its [`Index`] on the
/// way: the host reads a client's body so once, and hands the index to the
/// provider plugin with `provider.prepare`
/// ([`ProviderPrepareInput::body_members`](crate::protocol::ProviderPrepareInput::body_members)),
/// which then takes the body apart without parsing it again. The index is
/// empty when a key is written with escapes (it would not read back as
/// written) or the text is over 4 GiB.
pub fn index_object(json: &[u8]) -> Result<Index, serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;

    /// Where a borrowed slice of `json` starts and ends in it.
    fn range_in(json: &[u8], part: &str) -> Option<[u32; 2]> {
        let start = (part.as_ptr() as usize).checked_sub(json.as_ptr() as usize)?;
        let end = start + part.len();
        (end <= json.len()).then_some([u32::try_from(start).ok()?, u32::try_from(end).ok()?])
    }
    /// A key, borrowed from the text when it has no escape.
    struct Key;
    impl<'de> DeserializeSeed<'de> for Key {
        type Value = Option<&'de str>;
        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for Key {
        type Value = Option<&'de str>;
        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a key")
        }
        fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
            Ok(Some(key))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    struct Members<'j>(&'j [u8]);
    impl<'de> Visitor<'de> for Members<'_> {
        type Value = Option<Index>;
        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a JSON object")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut index = Some(Index::new());
            while let Some(key) = map.next_key_seed(Key)? {
                let value: &RawValue = map.next_value()?;
                let entry = key
                    .and_then(|key| range_in(self.0, key))
                    .zip(range_in(self.0, value.get()));
                match (entry, &mut index) {
                    (Some(([ks, ke], [vs, ve])), Some(entries)) => entries.push([ks, ke, vs, ve]),
                    // The rest is still read: the text must be valid.
                    _ => index = None,
                }
            }
            Ok(index)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let index = deserializer.deserialize_map(Members(json))?;
    deserializer.end()?;
    Ok(index.unwrap_or_default())
}

/// Whether a key must be escaped in JSON (then it is not spliced as is).
fn needs_escape(key: &str) -> bool {
    key.bytes()
        .any(|byte| byte == b'"' || byte == b'\\' || byte < 0x20)
}

/// A writer that tells [`Indexing`] how much has been written.
struct Tracked<'a> {
    out: &'a mut Vec<u8>,
    position: &'a std::cell::Cell<usize>,
}

// Inlined, as `Vec<u8>`'s own `Write` is: serde_json writes each string
// fragment through it, and an out-of-line call per fragment made writing
// event data half again as costly.
impl std::io::Write for Tracked<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.write_all(bytes)?;
        Ok(bytes.len())
    }

    #[inline(always)]
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.extend_from_slice(bytes);
        self.position.set(self.out.len());
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// serde_json's compact formatter, noting where the keys and values of the
/// outermost object begin and end.
struct Indexing<'a> {
    position: &'a std::cell::Cell<usize>,
    index: &'a std::cell::RefCell<Index>,
    depth: usize,
    entry: [u32; 4],
}

impl serde_json::ser::Formatter for Indexing<'_> {
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        writer.write_all(b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        writer.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            writer.write_all(b",")?;
        }
        if self.depth == 1 {
            // After the opening quote, which comes next.
            self.entry[0] = self.position.get() as u32 + 1;
        }
        Ok(())
    }

    fn end_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        _writer: &mut W,
    ) -> std::io::Result<()> {
        if self.depth == 1 {
            // Before the closing quote.
            self.entry[1] = (self.position.get() as u32).saturating_sub(1);
        }
        Ok(())
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b":")?;
        if self.depth == 1 {
            self.entry[2] = self.position.get() as u32;
        }
        Ok(())
    }

    fn end_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        _writer: &mut W,
    ) -> std::io::Result<()> {
        if self.depth == 1 {
            self.entry[3] = self.position.get() as u32;
            self.index.borrow_mut().push(self.entry);
        }
        Ok(())
    }
}

/// Writes a `hook.batch` call.
pub struct CallWriter {
    out: Vec<u8>,
}

impl CallWriter {
    /// A call of `count` entries; `capacity` is the sum of their
    /// [`entry_size`]s (a guess costs a reallocation when it is short).
    pub fn new(count: usize, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity + 5);
        out.push(VERSION);
        put_u32(&mut out, count);
        Self { out }
    }

    /// Appends one entry; `encoded_index` comes from [`encode_index`] (empty:
    /// no index).
    #[allow(clippy::too_many_arguments)]
    pub fn entry(
        &mut self,
        hook: &str,
        event: &str,
        timestamp_ms: u64,
        request_id: Option<&str>,
        data: &str,
        encoded_index: &[u8],
        body: &[u8],
    ) {
        let out = &mut self.out;
        // At most one reallocation, when the caller's capacity was short (a
        // growing frame would copy a 64 KB body again at each step).
        out.reserve(entry_size(
            hook,
            event,
            request_id,
            data,
            encoded_index,
            body,
        ));
        put_bytes(out, hook.as_bytes());
        put_bytes(out, event.as_bytes());
        out.extend_from_slice(&timestamp_ms.to_le_bytes());
        match request_id {
            Some(id) => {
                out.push(1);
                put_bytes(out, id.as_bytes());
            }
            None => out.push(0),
        }
        put_bytes(out, data.as_bytes());
        // An index from `encode_index`, or none.
        if encoded_index.is_empty() {
            put_u32(out, 0);
        } else {
            out.extend_from_slice(encoded_index);
        }
        put_bytes(out, body);
    }

    /// The frame.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// The bytes [`CallWriter::entry`] writes for these arguments: callers sum
/// it for [`CallWriter::new`]'s capacity, so the frame is allocated once
/// (mimalloc's `realloc` copies the old block whole, not only what is in
/// use).
pub fn entry_size(
    hook: &str,
    event: &str,
    request_id: Option<&str>,
    data: &str,
    encoded_index: &[u8],
    body: &[u8],
) -> usize {
    // Five lengths, the timestamp and the request id's flag: 4 × 5 + 8 + 1.
    hook.len()
        + event.len()
        + request_id.map_or(0, str::len)
        + data.len()
        + encoded_index.len().max(4)
        + body.len()
        + 29
}

/// Reads a frame front to back.
pub struct Reader<'a> {
    rest: &'a [u8],
    len: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `frame`.
    pub fn new(frame: &'a [u8]) -> Self {
        Self {
            rest: frame,
            len: frame.len(),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < len {
            return Err(FrameError("truncated"));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32, FrameError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        let bytes = self.take(8)?;
        let mut array = [0; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, FrameError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| FrameError("text is not UTF-8"))
    }

    /// An index of `data`; ranges that are not within it are refused (and
    /// ranges not at character boundaries fail when read).
    pub fn index(&mut self, data: &[u8]) -> Result<Index, FrameError> {
        let count = self.u32()? as usize;
        // Each entry takes 16 bytes: a bound before allocating.
        if count > self.rest.len() / 16 {
            return Err(FrameError("index count"));
        }
        let mut index = Vec::with_capacity(count);
        for _ in 0..count {
            let entry = [self.u32()?, self.u32()?, self.u32()?, self.u32()?];
            for range in [entry[0]..entry[1], entry[2]..entry[3]] {
                if range.start > range.end || range.end as usize > data.len() {
                    return Err(FrameError("index range"));
                }
            }
            index.push(entry);
        }
        Ok(index)
    }

    /// The start of a call: its entry count.
    pub fn call_header(&mut self) -> Result<usize, FrameError> {
        if self.u8()? != VERSION {
            return Err(FrameError("unknown version"));
        }
        Ok(self.u32()? as usize)
    }

    /// One call entry.
    pub fn entry(&mut self) -> Result<Entry<'a>, FrameError> {
        let hook = self.str()?;
        let event = self.str()?;
        let timestamp_ms = self.u64()?;
        let request_id = match self.u8()? {
            0 => None,
            _ => Some(self.str()?),
        };
        // The data is checked to be UTF-8 only when a hook reads it: a hook
        // that reads nothing pays nothing for it.
        let data_len = self.u32()? as usize;
        let data_at = self.len - self.rest.len();
        let data = self.take(data_len)?;
        // The index too is read only when a hook reads the data; its ranges
        // are checked then (a range outside the data is an error there).
        let count = self.u32()? as usize;
        let index_at = self.len - self.rest.len();
        let index = self.take(count.checked_mul(16).ok_or(FrameError("index count"))?)?;
        let body = self.bytes()?;
        Ok(Entry {
            hook,
            event,
            timestamp_ms,
            request_id,
            data,
            data_at,
            index,
            index_at,
            body,
        })
    }

    /// One reply outcome.
    pub fn outcome(&mut self) -> Result<Outcome<'a>, FrameError> {
        Ok(match self.u8()? {
            0 => Outcome::Continue,
            tag @ (1 | 2) => {
                let data = self.str()?;
                let index = self.index(data.as_bytes())?;
                let body = if tag == 2 { Some(self.bytes()?) } else { None };
                Outcome::Modify { data, index, body }
            }
            3 => {
                let code = self.u32()?;
                let message = self.str()?;
                Outcome::Failed { code, message }
            }
            _ => return Err(FrameError("unknown outcome")),
        })
    }
}

/// One hook call of a batch, borrowed from the frame.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The hook's name as declared in the manifest.
    pub hook: &'a str,
    /// The event's dotted name.
    pub event: &'a str,
    /// When it happened, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The request it belongs to.
    pub request_id: Option<&'a str>,
    /// The event data (a JSON document; UTF-8 not yet checked).
    pub data: &'a [u8],
    /// Where `data` starts in the frame.
    pub data_at: usize,
    /// Where each top-level key and its value are in `data`: the index's
    /// entries as written, 16 bytes each (empty: not indexed).
    pub index: &'a [u8],
    /// Where `index` starts in the frame.
    pub index_at: usize,
    /// The event's body.
    pub body: &'a [u8],
}

/// What one hook of a batch answered.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// Leave the event as it was.
    Continue,
    /// New data (and, for mutating events, maybe a new body).
    Modify {
        /// The new data (a JSON document).
        data: &'a str,
        /// Its index (empty: not indexed).
        index: Index,
        /// The new body, when it changes.
        body: Option<&'a [u8]>,
    },
    /// The hook failed.
    Failed {
        /// A `raw::ErrorCode` value.
        code: u32,
        /// The hook's message.
        message: &'a str,
    },
}

/// Writes a `hook.batch` reply.
pub struct ReplyWriter {
    out: Vec<u8>,
}

impl ReplyWriter {
    /// A reply of `count` outcomes.
    pub fn new(count: usize) -> Self {
        let mut out = Vec::with_capacity(4 + count);
        put_u32(&mut out, count);
        Self { out }
    }

    /// The hook left the event as it was.
    pub fn proceed(&mut self) {
        self.out.push(0);
    }

    /// The hook answered new data (and maybe a new body).
    pub fn modify(&mut self, data: &str, index: Option<&[[u32; 4]]>, body: Option<&[u8]>) {
        let index_len = index.map_or(0, |index| 16 * index.len());
        let body_len = body.map_or(0, <[u8]>::len);
        self.out.reserve(13 + data.len() + index_len + body_len);
        self.out.push(if body.is_some() { 2 } else { 1 });
        put_bytes(&mut self.out, data.as_bytes());
        put_index(&mut self.out, index);
        if let Some(body) = body {
            put_bytes(&mut self.out, body);
        }
    }

    /// The hook failed with `code` (a `raw::ErrorCode` value).
    pub fn fail(&mut self, code: u32, message: &str) {
        self.out.push(3);
        self.out.extend_from_slice(&code.to_le_bytes());
        put_bytes(&mut self.out, message.as_bytes());
    }

    /// The frame.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_reads_back_as_written() {
        let index = vec![[2, 3, 5, 6]];
        let mut writer = CallWriter::new(2, 64);
        writer.entry(
            "h",
            "request.completed",
            7,
            Some("r1"),
            r#"{"a":1}"#,
            &encode_index(&index),
            b"",
        );
        writer.entry("h2", "custom.x", 8, None, "null", &[], b"body");
        let frame = writer.finish();
        let mut reader = Reader::new(&frame);
        assert_eq!(reader.call_header().unwrap(), 2);
        let first = reader.entry().unwrap();
        assert_eq!(
            (
                first.hook,
                first.event,
                first.timestamp_ms,
                first.request_id
            ),
            ("h", "request.completed", 7, Some("r1"))
        );
        assert_eq!(first.data, br#"{"a":1}"#);
        assert_eq!(index_entry(first.index, 0), Some(index[0]));
        assert_eq!(index_entry(first.index, 1), None);
        let second = reader.entry().unwrap();
        assert_eq!((second.request_id, second.data), (None, &b"null"[..]));
        assert!(second.index.is_empty());
        assert_eq!(second.body, b"body");
        assert!(reader.entry().is_err(), "nothing after the last entry");
    }

    #[test]
    fn a_reply_reads_back_as_written() {
        let mut writer = ReplyWriter::new(3);
        writer.proceed();
        writer.modify("{}", None, Some(b"new"));
        writer.fail(3, "plugin panicked: boom");
        let frame = writer.finish();
        let mut reader = Reader::new(&frame);
        assert_eq!(reader.u32().unwrap(), 3);
        assert!(matches!(reader.outcome().unwrap(), Outcome::Continue));
        assert!(matches!(
            reader.outcome().unwrap(),
            Outcome::Modify {
                data: "{}",
                body: Some(b"new"),
                ..
            }
        ));
        assert!(
            matches!(reader.outcome().unwrap(), Outcome::Failed { code: 3, message } if message.contains("boom"))
        );
    }

    #[test]
    fn bad_frames_are_refused_not_trusted() {
        assert!(Reader::new(&[]).call_header().is_err());
        assert!(Reader::new(&[9, 0, 0, 0, 0]).call_header().is_err());
        let mut writer = CallWriter::new(1, 0);
        writer.entry("h", "e", 0, None, "{}", &[], b"");
        let frame = writer.finish();
        // Every cut of a valid frame is an error, never a panic.
        for cut in 0..frame.len() {
            let mut reader = Reader::new(&frame[..cut]);
            let result = reader.call_header().and_then(|_| reader.entry().map(drop));
            assert!(result.is_err(), "cut at {cut}");
        }
        // An index range past the data is refused.
        let mut out = vec![VERSION];
        put_u32(&mut out, 1);
        for text in ["h", "e"] {
            put_bytes(&mut out, text.as_bytes());
        }
        out.extend_from_slice(&0u64.to_le_bytes());
        out.push(0);
        put_bytes(&mut out, b"{}");
        put_index(&mut out, Some(&[[2, 3, 5, 9]]));
        put_bytes(&mut out, b"");
        // The SDK reads an entry's index only when a hook reads the data;
        // the host reads an answer's index at once and refuses the range.
        let mut reader = Reader::new(&out);
        reader.call_header().unwrap();
        let entry = reader.entry().unwrap();
        assert_eq!(index_entry(entry.index, 0), Some([2, 3, 5, 9]));
        let mut reply = vec![1];
        put_bytes(&mut reply, b"{}");
        put_index(&mut reply, Some(&[[2, 3, 5, 9]]));
        assert_eq!(
            Reader::new(&reply).outcome().unwrap_err(),
            FrameError("index range")
        );
    }
}

/// The SDK's side of `hook.batch`, driven through the mock host.
#[cfg(all(test, feature = "testing"))]
mod sdk_tests {
    use super::*;
    use crate::prelude::*;
    use crate::testing::MockHost;

    /// Counts calls; `boom` panics, `fail` fails, `enrich` adds a key.
    struct Batched;

    impl Plugin for Batched {
        type Config = ();
        fn manifest() -> Manifest {
            Manifest::new("batched", "1.0.0").hook("h", ["request.completed"], 100)
        }
        async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
            Ok(Batched)
        }
        async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
            #[derive(serde::Deserialize)]
            struct Data<'a> {
                what: &'a str,
            }
            let data: Data = call.data()?;
            match data.what {
                "boom" => panic!("boom"),
                "fail" => Err(PluginError::invalid("refused")),
                "annotate" => {
                    call.annotate("cost_usd", 0.5)?;
                    call.annotate("note", "first")?;
                    // Set again: replaced, not added twice.
                    call.annotate("note", "second")?;
                    Ok(HookOutcome::Continue)
                }
                "enrich" => Ok(HookOutcome::Modify {
                    data: json!({"what": "enrich", "cost": 1, "seen_body": String::from_utf8_lossy(&call.body)}),
                    body: None,
                }),
                _ => Ok(HookOutcome::Continue),
            }
        }
    }

    fn frame(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = CallWriter::new(entries.len(), 0);
        for (data, body) in entries {
            writer.entry("h", "request.completed", 1, Some("r"), data, &[], body);
        }
        writer.finish()
    }

    #[test]
    fn the_sdk_announces_hook_batch_and_prepare_fields() {
        let plugin = MockHost::new().start::<Batched>().unwrap();
        let (meta, _) = plugin
            .call_operation(FEATURES_OP, Value::Null, Vec::new())
            .unwrap();
        assert_eq!(
            meta,
            json!({"features": [HOOK_BATCH, crate::fields::PREPARE_FIELDS]})
        );
    }

    #[test]
    fn each_entry_answers_for_itself_in_order() {
        let plugin = MockHost::new().start::<Batched>().unwrap();
        let call = frame(&[
            (r#"{"what":"enrich"}"#, b"the body"),
            (r#"{"what":"boom"}"#, b""),
            (r#"{"what":"fail"}"#, b""),
            (r#"{"what":"quiet","headers":{"a":"b"}}"#, b""),
        ]);
        let (_, reply) = plugin.call_operation(BATCH_OP, Value::Null, call).unwrap();
        let mut reader = Reader::new(&reply);
        assert_eq!(reader.u32().unwrap(), 4);
        match reader.outcome().unwrap() {
            Outcome::Modify { data, body, .. } => {
                let data: Value = serde_json::from_str(data).unwrap();
                assert_eq!(
                    data,
                    json!({"what": "enrich", "cost": 1, "seen_body": "the body"})
                );
                assert!(body.is_none());
            }
            other => panic!("expected new data, got {other:?}"),
        }
        // A panic fails its own entry; the entries after it still run.
        assert!(
            matches!(reader.outcome().unwrap(), Outcome::Failed { code, message } if code == crate::raw::ErrorCode::Panicked as u32 && message.contains("boom"))
        );
        assert!(
            matches!(reader.outcome().unwrap(), Outcome::Failed { code, message } if code == crate::raw::ErrorCode::Invalid as u32 && message.contains("refused"))
        );
        assert!(matches!(reader.outcome().unwrap(), Outcome::Continue));
    }

    #[test]
    fn annotated_fields_are_spliced_into_the_data_with_an_index_that_fits() {
        let plugin = MockHost::new().start::<Batched>().unwrap();
        let indexed =
            json!({"what": "annotate", "headers": {"a": "b"}, "note": "old", "usage": [1, 2]});
        let (indexed_text, indexed_index) = to_indexed_json(&indexed).unwrap();
        let mut writer = CallWriter::new(3, 0);
        let plain = r#"{"what":"annotate","x":1}"#;
        for (data, index) in [
            (indexed_text.as_str(), encode_index(&indexed_index)),
            (r#"{"what":"quiet"}"#, Vec::new()),
            // Not indexed: the SDK parses it instead.
            (plain, Vec::new()),
        ] {
            writer.entry("h", "request.completed", 1, None, data, &index, b"");
        }
        let (_, reply) = plugin
            .call_operation(BATCH_OP, Value::Null, writer.finish())
            .unwrap();
        let mut reader = Reader::new(&reply);
        assert_eq!(reader.u32().unwrap(), 3);
        let Outcome::Modify { data, index, .. } = reader.outcome().unwrap() else {
            panic!("expected the annotated data");
        };
        assert_eq!(
            data,
            r#"{"headers":{"a":"b"},"usage":[1,2],"what":"annotate","cost_usd":0.5,"note":"second"}"#
        );
        // The index names every member where it is.
        let mut keys = Vec::new();
        for [key_start, key_end, value_start, value_end] in index {
            let key = &data[key_start as usize..key_end as usize];
            let value: Value =
                serde_json::from_str(&data[value_start as usize..value_end as usize]).unwrap();
            let expected: Value = serde_json::from_str::<Value>(data).unwrap()[key].clone();
            assert_eq!(value, expected, "{key}");
            keys.push(key.to_owned());
        }
        assert_eq!(keys, ["headers", "usage", "what", "cost_usd", "note"]);
        // The next call's answer is its own: nothing carried over.
        assert!(matches!(reader.outcome().unwrap(), Outcome::Continue));
        let Outcome::Modify { data, .. } = reader.outcome().unwrap() else {
            panic!("expected the annotated data");
        };
        assert_eq!(
            serde_json::from_str::<Value>(data).unwrap(),
            json!({"what": "annotate", "x": 1, "cost_usd": 0.5, "note": "second"})
        );
    }

    #[test]
    fn with_fields_refuses_what_it_cannot_splice() {
        let (text, index) = to_indexed_json(&json!({"a": 1})).unwrap();
        let index = &encode_index(&index)[4..];
        let field = |key: &str| vec![(key.to_owned(), "2".to_owned())];
        assert!(with_fields(&text, index, &field("b")).is_some());
        assert!(with_fields(&text, &[], &field("b")).is_none());
        assert!(with_fields(&text, index, &field("quo\"te")).is_none());
        // An index pointing past the data.
        assert!(with_fields("{}", index, &field("b")).is_none());
    }

    #[test]
    fn a_malformed_frame_runs_nothing() {
        let plugin = MockHost::new().start::<Batched>().unwrap();
        let mut call = frame(&[(r#"{"what":"boom"}"#, b""), (r#"{"what":"x"}"#, b"")]);
        call.truncate(call.len() - 2);
        let error = plugin
            .call_operation(BATCH_OP, Value::Null, call)
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid);
        assert!(error.message().contains("hook.batch"), "{error}");
    }
}

#[cfg(test)]
mod index_tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::hooks::{HookCall, HookEvent};

    fn call_with(data: &serde_json::Value) -> (HookCall, HookCall) {
        let (text, index) = to_indexed_json(data).unwrap();
        assert!(!index.is_empty());
        let mut writer = CallWriter::new(1, 0);
        writer.entry(
            "h",
            "request.completed",
            1,
            None,
            &text,
            &encode_index(&index),
            b"",
        );
        let frame = crate::shim::shared_frame(writer.finish());
        let mut reader = Reader::new(&frame);
        reader.call_header().unwrap();
        let indexed = HookCall::from_entry(&frame, reader.entry().unwrap(), 0);
        let plain =
            HookCall::new("h", HookEvent::RequestCompleted, 1, None, &text, Vec::new()).unwrap();
        (indexed, plain)
    }

    #[test]
    fn the_text_is_what_serde_json_writes_and_the_index_points_into_it() {
        let data =
            json!({"a": {"nested": {"deep": [1, {"x": 2}]}}, "b\"": 1, "c": "x\"y", "d": null});
        let (text, index) = to_indexed_json(&data).unwrap();
        assert_eq!(text, serde_json::to_string(&data).unwrap());
        // A key with an escape: no index at all, never a partial one.
        assert!(index.is_empty());
        let data = json!({"path": "/v1", "headers": {"a": "b"}, "usage": [1, 2], "n": 1.5});
        let (text, index) = to_indexed_json(&data).unwrap();
        let pairs: Vec<(&str, &str)> = index
            .iter()
            .map(|&[a, b, c, d]| (&text[a as usize..b as usize], &text[c as usize..d as usize]))
            .collect();
        assert_eq!(
            pairs,
            [
                ("headers", r#"{"a":"b"}"#),
                ("n", "1.5"),
                ("path", r#""/v1""#),
                ("usage", "[1,2]")
            ]
        );
        // Not an object: nothing to index.
        assert!(to_indexed_json(&json!([{"a": 1}])).unwrap().1.is_empty());
        assert!(to_indexed_json(&json!("text")).unwrap().1.is_empty());
    }

    #[test]
    fn reading_an_object_indexes_it_as_writing_it_does() {
        let data = json!({"model": "m", "messages": [{"role": "user", "content": "a \"b\""}],
            "max_tokens": 5, "stream": true, "n": null, "": {"x": [1, 2.5]}});
        let (text, written) = to_indexed_json(&data).unwrap();
        assert_eq!(index_object(text.as_bytes()).unwrap(), written);
        // Spaces anywhere, as a client writes them: the ranges are still
        // each key inside its quotes and each value's text, in order.
        let text = " {\n \"b\" : [1,  2] ,\"a\":\"x\\\"y\", \"b\":{}\t} ";
        let pairs: Vec<(&str, &str)> = index_object(text.as_bytes())
            .unwrap()
            .iter()
            .map(|&[a, b, c, d]| (&text[a as usize..b as usize], &text[c as usize..d as usize]))
            .collect();
        assert_eq!(pairs, [("b", "[1,  2]"), ("a", r#""x\"y""#), ("b", "{}")]);
        // A key with an escape: the text is read, but not indexed.
        assert!(
            index_object(br#"{"a\u0041": 1, "b": 2}"#)
                .unwrap()
                .is_empty()
        );
        assert!(index_object(b"{}").unwrap().is_empty());
        // What serde_json refuses, this refuses.
        for bad in [
            &b"[1]"[..],
            b"\"x\"",
            b"{",
            b"{\"a\":1} x",
            b"{\"a\":[}",
            b"",
            b"{\"a\":\"\xff\"}",
        ] {
            assert!(
                index_object(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn an_index_that_does_not_fit_its_data_is_an_error_not_a_panic() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Path<'a> {
            path: &'a str,
        }
        let text = r#"{"path":"/é"}"#;
        // Past the end, and a value range that cuts the `é` in two.
        for index in [[2, 6, 8, 99], [2, 6, 8, 12]] {
            let mut writer = CallWriter::new(1, 0);
            writer.entry(
                "h",
                "request.completed",
                1,
                None,
                text,
                &encode_index(&[index]),
                b"",
            );
            let frame = crate::shim::shared_frame(writer.finish());
            let mut reader = Reader::new(&frame);
            reader.call_header().unwrap();
            let call = HookCall::from_entry(&frame, reader.entry().unwrap(), 0);
            assert!(call.data::<Path>().is_err(), "{index:?}");
            assert_eq!(call.data_json(), text);
        }
    }

    #[test]
    fn an_indexed_call_reads_as_the_whole_text_does() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Completed<'a> {
            path: &'a str,
            status_code: u16,
            #[serde(default)]
            model: Option<String>,
            #[serde(borrow)]
            query: std::borrow::Cow<'a, str>,
            usage: Option<Usage>,
            #[serde(rename = "ttfb_ms")]
            first_byte: f64,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct Usage {
            input_tokens: u64,
        }
        let data = json!({"headers": {"authorization": "***"}, "path": "/v1/messages",
            "query": "a=\"b\"", "status_code": 200, "ttfb_ms": 1.25, "usage": {"input_tokens": 3},
            "model": null, "zzz": [1, 2, 3]});
        let (indexed, plain) = call_with(&data);
        let read: Completed = indexed.data().unwrap();
        assert_eq!(read, plain.data::<Completed>().unwrap());
        assert_eq!(read.query, "a=\"b\"");
        // Whole-value readings go the ordinary way.
        assert_eq!(indexed.data::<serde_json::Value>().unwrap(), data);
        #[derive(Deserialize)]
        struct Flat {
            path: String,
            #[serde(flatten)]
            rest: serde_json::Map<String, serde_json::Value>,
        }
        let flat: Flat = indexed.data().unwrap();
        assert_eq!(flat.path, "/v1/messages");
        assert_eq!(flat.rest.len(), 7);
        // A missing required field and a wrong type are errors, as before.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Missing {
            nope: u16,
        }
        assert!(indexed.data::<Missing>().is_err());
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct WrongType {
            path: u16,
        }
        assert!(indexed.data::<WrongType>().is_err());
    }
}
