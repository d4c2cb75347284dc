//! Hook events: what happened, and what a hook may answer.

use serde::Deserialize;
use serde_json::{Value, value::RawValue};

use crate::PluginError;

macro_rules! hook_events {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Every event the host emits, with the dotted name of the original.
        ///
        /// | variant | name |
        /// |---|---|
        $(#[doc = concat!("| `", stringify!($variant), "` | `", $name, "` |")])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HookEvent {
            $($(#[doc = $doc])* $variant,)*
            /// An event this SDK does not know (from a newer host), or a custom one.
            Other(String),
        }

        impl HookEvent {
            /// Every known event.
            pub const ALL: &'static [HookEvent] = &[$(HookEvent::$variant,)*];

            /// The dotted name.
            pub fn as_str(&self) -> &str {
                match self {
                    $(HookEvent::$variant => $name,)*
                    HookEvent::Other(name) => name,
                }
            }

            /// The event named `name`; unknown names become [`HookEvent::Other`].
            pub fn from_name(name: &str) -> Self {
                match name {
                    $($name => HookEvent::$variant,)*
                    other => HookEvent::Other(other.to_owned()),
                }
            }
        }
    };
}

hook_events! {
    /// The host finished starting plugins (data: `phase`).
    AppStartup = "app.startup",
    /// The host is listening and serving (data: `address`).
    AppReady = "app.ready",
    /// The host is shutting down (data: `phase`).
    AppShutdown = "app.shutdown",
    /// A client request arrived (data: `request_id`, `method`, `url`, `headers`).
    RequestStarted = "request.started",
    /// A client request was answered; for streams, after the stream ended
    /// (data: `request_id`, `method`, `path`, `query`, `url`, `status_code`,
    /// `duration_ms`, `ttfb_ms` (since 1.2: until the head, the first byte of
    /// a stream), `client_ip`, `user_agent`, `bytes_sent`, `streaming`,
    /// `provider`, `model`, `usage`, masked `headers`; `cost_usd` when the
    /// `pricing` plugin priced it for the hooks after it). Body on request
    /// (1.2): the client's request body ([`HookBody::RequestBody`](crate::HookBody)).
    RequestCompleted = "request.completed",
    /// The proxy could not produce an answer: a plugin panicked or failed with a
    /// 5xx, the upstream was unreachable, or the client went away mid-stream
    /// (data: as `request.completed`, plus `error`).
    RequestFailed = "request.failed",
    /// The upstream request is ready to send. **Inline and mutating**: hooks may
    /// change `method`, `url`, `headers` and the body, in priority order
    /// (data: `method`, `url`, masked `headers`, `is_streaming`, and since 1.2
    /// `provider` and `format`, the body's wire format).
    ProviderRequestPrepared = "provider.request.prepared",
    /// The upstream request was sent (data: `request_id`, `provider`,
    /// `method`, `url`, `is_streaming`, and since 1.2 masked `headers`). Body on
    /// request (1.2): the body as sent ([`HookBody::UpstreamRequestBody`](crate::HookBody)).
    ProviderRequestSent = "provider.request.sent",
    /// The upstream response head arrived (data: `request_id`, `provider`,
    /// `method`, `url`, `status_code`, `duration_ms`). Body on request (1.2,
    /// [`HookBody::UpstreamResponseBody`](crate::HookBody)): a complete
    /// answer's body, the event then sent once it has been read, and the
    /// upstream's masked `headers` in the data.
    ProviderResponseReceived = "provider.response.received",
    /// The upstream request failed.
    ProviderError = "provider.error",
    /// A streamed upstream response started.
    ProviderStreamStart = "provider.stream.start",
    /// A chunk of a streamed upstream response (data: `request_id`,
    /// `chunk_number`, `chunk_size`, and since 1.2 `side`: `upstream`). Body on
    /// request (1.2): the chunk as it arrived ([`HookBody::UpstreamChunks`](crate::HookBody));
    /// subscriptions asking for [`HookBody::ClientChunks`](crate::HookBody) also get
    /// one event per chunk sent to the client (`side`: `client`).
    ProviderStreamChunk = "provider.stream.chunk",
    /// A streamed upstream response ended (data: `request_id`, `provider`,
    /// `total_chunks`, `total_bytes`, `usage`, and since 1.2 `model`).
    ProviderStreamEnd = "provider.stream.end",
    /// A plugin was initialised (data: `plugin`, `version`).
    PluginLoaded = "plugin.loaded",
    /// A plugin was shut down (data: `plugin`).
    PluginUnloaded = "plugin.unloaded",
    /// A plugin failed: refused, disabled, panicked (data: `plugin`, `error`).
    PluginError = "plugin.error",
    /// An HTTP request was sent or received (data: `is_client_request`).
    HttpRequest = "http.request",
    /// An HTTP response was sent or received.
    HttpResponse = "http.response",
    /// An HTTP exchange failed.
    HttpError = "http.error",
    /// An OAuth token request was sent.
    OAuthTokenRequest = "oauth.token.request",
    /// An OAuth token response arrived.
    OAuthTokenResponse = "oauth.token.response",
    /// An OAuth refresh request was sent.
    OAuthRefreshRequest = "oauth.refresh.request",
    /// An OAuth refresh response arrived.
    OAuthRefreshResponse = "oauth.refresh.response",
    /// An OAuth exchange failed.
    OAuthError = "oauth.error",
    /// A plugin emitted a custom event with `Context::emit`.
    CustomEvent = "custom.event",
}

impl std::fmt::Display for HookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl HookEvent {
    /// Whether hooks for this event run inline, in priority order, and may change
    /// its data. All other events are observed off the request path.
    pub fn is_mutating(&self) -> bool {
        matches!(self, HookEvent::ProviderRequestPrepared)
    }
}

/// One hook call.
#[derive(Debug, Clone)]
pub struct HookContext {
    /// The hook's name as declared in the manifest.
    pub hook: String,
    /// The event.
    pub event: HookEvent,
    /// When it happened, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The request it belongs to.
    pub request_id: Option<String>,
    /// Event data; see each [`HookEvent`] variant for its keys.
    pub data: Value,
    /// The body, for events that carry one: `provider.request.prepared`, and
    /// since 1.2 the bodies the subscription asked for (`HookSpec::bodies`).
    pub body: Vec<u8>,
}

/// One hook call with its data still as JSON text, so a hook parses only
/// what it reads: what [`Plugin::on_hook_call`](crate::Plugin::on_hook_call)
/// receives.
///
/// Building the event's data as a [`Value`] (what [`HookContext`] holds) is
/// most of what an ordinary hook call costs: for a 1 KB `request.completed`
/// about twenty thousand instructions to parse and free, where a no-op hook
/// costs a few thousand. Reading a few keys into a struct of borrowed fields
/// with [`HookCall::data`] costs a fraction of that.
///
/// ```
/// use ccproxy_plugin_abi::prelude::*;
/// use ccproxy_plugin_abi::serde::Deserialize;
///
/// #[derive(Deserialize)]
/// #[serde(crate = "ccproxy_plugin_abi::serde")]
/// struct Completed<'a> {
///     path: &'a str,
///     status_code: u16,
/// }
///
/// fn describe(call: &HookCall) -> Result<String, PluginError> {
///     let completed: Completed = call.data()?;
///     Ok(format!("{} {}", completed.path, completed.status_code))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct HookCall {
    /// The hook's name as declared in the manifest.
    pub hook: String,
    /// The event.
    pub event: HookEvent,
    /// When it happened, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The request it belongs to.
    pub request_id: Option<String>,
    /// The body, for events that carry one: `provider.request.prepared`, and
    /// since 1.2 the bodies the subscription asked for (`HookSpec::bodies`).
    pub body: Vec<u8>,
    data: DataText,
    /// Where the data's top-level keys and values are: a range of the
    /// frame (plugin API 1.3, `hook.batch`), read only when the data is;
    /// empty when the host did not say.
    index: std::ops::Range<usize>,
    /// Fields added with [`HookCall::annotate`], which the SDK takes back
    /// once the hook has answered.
    annotations: Annotations,
}

/// The fields hooks added to their events' data ([`HookCall::annotate`]),
/// each with its call's number: `(call, key, JSON text)`.
pub(crate) type AnnotationList = std::sync::Mutex<Vec<(usize, String, String)>>;

/// Where a call's annotations go.
#[derive(Debug, Clone)]
pub(crate) enum Annotations {
    /// Call `n` of a `hook.batch` frame: the frame's list, so a call
    /// allocates nothing for annotations it may never make.
    InFrame(crate::shim::SharedFrame, usize),
    /// A call on its own (`HookCall::new`, the 1.0 and 1.1 protocol).
    Own(std::sync::Arc<AnnotationList>),
}

impl Default for Annotations {
    fn default() -> Self {
        Self::Own(std::sync::Arc::default())
    }
}

impl Annotations {
    fn list(&self) -> (&AnnotationList, usize) {
        match self {
            Self::InFrame(frame, call) => (&frame.annotations, *call),
            Self::Own(list) => (list, 0),
        }
    }

    /// Adds (or replaces) field `key`, its value as JSON text.
    fn set(&self, key: &str, json: String) {
        let (list, call) = self.list();
        let mut fields = list.lock().unwrap_or_else(|e| e.into_inner());
        match fields.iter_mut().find(|(c, k, _)| *c == call && k == key) {
            Some(field) => field.2 = json,
            None => fields.push((call, key.to_owned(), json)),
        }
    }

    /// Takes this call's fields, `(key, JSON text)` in the order first set.
    pub(crate) fn take(&self) -> Vec<(String, String)> {
        let (list, call) = self.list();
        let mut fields = list.lock().unwrap_or_else(|e| e.into_inner());
        if fields.is_empty() {
            return Vec::new();
        }
        let (mine, others): (Vec<_>, Vec<_>) = fields.drain(..).partition(|(c, ..)| *c == call);
        *fields = others;
        mine.into_iter().map(|(_, key, json)| (key, json)).collect()
    }
}

/// The event data as the host sent it: inside the call's JSON (plugin API
/// 1.0 layout), or as the first bytes of its body (1.1).
#[derive(Debug, Clone)]
enum DataText {
    Raw(Box<RawValue>),
    Text(String),
    /// Plugin API 1.3: bytes `range` of a `hook.batch` frame, shared by the
    /// frame's calls rather than copied, and checked to be UTF-8 only when
    /// read (a frame with data that is not UTF-8 reads as `null`; the host
    /// never writes one).
    Frame(crate::shim::SharedFrame, std::ops::Range<usize>),
}

impl DataText {
    fn get(&self) -> &str {
        match self {
            DataText::Raw(raw) => raw.get(),
            DataText::Text(text) => text,
            DataText::Frame(frame, range) => frame
                .get(range.clone())
                .and_then(|bytes| std::str::from_utf8(bytes).ok())
                .unwrap_or("null"),
        }
    }
}

impl HookCall {
    /// A call whose event data is `data_json` (a JSON document).
    pub fn new(
        hook: impl Into<String>,
        event: HookEvent,
        timestamp_ms: u64,
        request_id: Option<String>,
        data_json: &str,
        body: Vec<u8>,
    ) -> Result<Self, PluginError> {
        let data = RawValue::from_string(data_json.to_owned())
            .map_err(|error| PluginError::invalid(format!("hook data is not JSON: {error}")))?;
        Ok(Self {
            hook: hook.into(),
            event,
            timestamp_ms,
            request_id,
            body,
            data: DataText::Raw(data),
            index: 0..0,
            annotations: Annotations::default(),
        })
    }

    /// A call as the shim decodes it: the data either inside the call's JSON
    /// or as text cut from the front of the body (not validated until read).
    pub(crate) fn decoded(
        hook: String,
        event: HookEvent,
        timestamp_ms: u64,
        request_id: Option<String>,
        data: Result<Box<RawValue>, String>,
        body: Vec<u8>,
    ) -> Self {
        Self {
            hook,
            event,
            timestamp_ms,
            request_id,
            body,
            data: match data {
                Ok(raw) => DataText::Raw(raw),
                Err(text) => DataText::Text(text),
            },
            index: 0..0,
            annotations: Annotations::default(),
        }
    }

    /// A call of `hook.batch` frame `frame` (plugin API 1.3), whose data
    /// stays in the frame.
    pub(crate) fn from_entry(
        frame: &crate::shim::SharedFrame,
        entry: crate::hook_wire::Entry<'_>,
        number: usize,
    ) -> Self {
        Self {
            hook: entry.hook.to_owned(),
            event: HookEvent::from_name(entry.event),
            timestamp_ms: entry.timestamp_ms,
            request_id: entry.request_id.map(str::to_owned),
            body: entry.body.to_vec(),
            data: DataText::Frame(
                frame.clone(),
                entry.data_at..entry.data_at + entry.data.len(),
            ),
            index: entry.index_at..entry.index_at + entry.index.len(),
            annotations: Annotations::InFrame(frame.clone(), number),
        }
    }

    /// Where [`HookCall::annotate`] puts its fields.
    pub(crate) fn annotations(&self) -> &Annotations {
        &self.annotations
    }

    /// The frame ranges of the data and of its index (empty ranges when the
    /// call did not come in a `hook.batch` frame).
    pub(crate) fn frame_ranges(&self) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        match &self.data {
            DataText::Frame(_, data) => (data.clone(), self.index.clone()),
            _ => (0..0, 0..0),
        }
    }

    /// Adds top-level field `key` (or replaces it) in the event's data, for
    /// the hooks after this one: an enrichment, such as the cost `pricing`
    /// adds for the access log and metrics. Unlike answering
    /// [`HookOutcome::Modify`] with the whole data, nothing is parsed into a
    /// [`Value`] or written again: the SDK copies the data's other fields
    /// as they are (plugin API 1.3 frames; otherwise it parses and writes
    /// the data as `Modify` would). The fields apply when the hook answers
    /// [`HookOutcome::Continue`]; `Modify` replaces the data whole and they
    /// are dropped. Call it from the hook call itself, not from a task it
    /// spawned after answering.
    pub fn annotate(&self, key: &str, value: impl serde::Serialize) -> Result<(), PluginError> {
        let json = serde_json::to_string(&value)?;
        self.annotations.set(key, json);
        Ok(())
    }

    /// The event data as JSON text, exactly as the host sent it.
    pub fn data_json(&self) -> &str {
        self.data.get()
    }

    /// The event data deserialised as `T`, which may borrow strings from the
    /// call (`&str` fields) and name only the keys it needs; unknown keys are
    /// skipped without being built. See each [`HookEvent`] for its keys.
    ///
    /// When the host sent where each top-level key is (plugin API 1.3), a
    /// struct's fields are read straight from their values and the keys it
    /// does not name are never looked at; the result is the same as parsing
    /// the whole text, except that a struct with `deny_unknown_fields` is
    /// not told about keys it does not name.
    pub fn data<'a, T: Deserialize<'a>>(&'a self) -> Result<T, PluginError> {
        let text = self.data.get();
        let index = match &self.data {
            DataText::Frame(frame, _) => frame.get(self.index.clone()).unwrap_or_default(),
            _ => &[],
        };
        let parsed = if index.is_empty() {
            serde_json::from_str(text)
        } else {
            T::deserialize(Indexed { text, index })
        };
        parsed.map_err(|error| {
            PluginError::invalid(format!(
                "{} data does not have the expected shape: {error}",
                self.event.as_str()
            ))
        })
    }

    /// The call with its data parsed into a [`Value`]: what
    /// [`Plugin::on_hook`](crate::Plugin::on_hook) receives.
    pub fn into_context(self) -> Result<HookContext, PluginError> {
        let data = serde_json::from_str(self.data.get())?;
        Ok(HookContext {
            hook: self.hook,
            event: self.event,
            timestamp_ms: self.timestamp_ms,
            request_id: self.request_id,
            data,
            body: self.body,
        })
    }
}

/// Event data with its index: a struct reads only the values of the keys it
/// names; anything else is read from the whole text by serde_json.
struct Indexed<'a> {
    text: &'a str,
    /// The index as written in the frame (see `hook_wire`).
    index: &'a [u8],
}

impl<'a> Indexed<'a> {
    /// A range of the text; the frame's reader checked it is within the
    /// text, a range that cuts a character is an error here.
    fn slice(&self, start: u32, end: u32) -> Result<&'a str, serde_json::Error> {
        self.text.get(start as usize..end as usize).ok_or_else(|| {
            <serde_json::Error as serde::de::Error>::custom("the data's index is not of this text")
        })
    }

    /// Reads the whole text with serde_json, as `serde_json::from_str` does.
    fn whole<T>(
        self,
        read: impl FnOnce(
            &mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
        ) -> Result<T, serde_json::Error>,
    ) -> Result<T, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_str(self.text);
        let value = read(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }
}

/// Forwards `deserialize_*` methods to serde_json over the whole text.
macro_rules! whole_text {
    ($($method:ident $(($($arg:ident: $ty:ty),*))?;)*) => {
        $(
            fn $method<V: serde::de::Visitor<'a>>(
                self,
                $($($arg: $ty,)*)?
                visitor: V,
            ) -> Result<V::Value, serde_json::Error> {
                self.whole(|de| serde::Deserializer::$method(de, $($($arg,)*)? visitor))
            }
        )*
    };
}

impl<'a> serde::Deserializer<'a> for Indexed<'a> {
    type Error = serde_json::Error;

    fn deserialize_struct<V: serde::de::Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        // A struct without named fields (or a newer serde that says none)
        // is read the ordinary way.
        if fields.is_empty() {
            return self
                .whole(|de| serde::Deserializer::deserialize_struct(de, name, fields, visitor));
        }
        visitor.visit_map(IndexedFields {
            data: self,
            fields,
            next: 0,
            value: None,
        })
    }

    whole_text! {
        deserialize_any;
        deserialize_bool;
        deserialize_i8;
        deserialize_i16;
        deserialize_i32;
        deserialize_i64;
        deserialize_i128;
        deserialize_u8;
        deserialize_u16;
        deserialize_u32;
        deserialize_u64;
        deserialize_u128;
        deserialize_f32;
        deserialize_f64;
        deserialize_char;
        deserialize_str;
        deserialize_string;
        deserialize_bytes;
        deserialize_byte_buf;
        deserialize_option;
        deserialize_unit;
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq;
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map;
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier;
        deserialize_ignored_any;
    }
}

/// The named fields of an indexed object, in the text's order.
struct IndexedFields<'a> {
    data: Indexed<'a>,
    fields: &'static [&'static str],
    next: usize,
    value: Option<&'a str>,
}

impl<'a> serde::de::MapAccess<'a> for IndexedFields<'a> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, serde_json::Error> {
        while let Some([key_start, key_end, value_start, value_end]) =
            crate::hook_wire::index_entry(self.data.index, self.next)
        {
            self.next += 1;
            let key = self.data.slice(key_start, key_end)?;
            if self.fields.contains(&key) {
                self.value = Some(self.data.slice(value_start, value_end)?);
                return seed
                    .deserialize(serde::de::value::BorrowedStrDeserializer::new(key))
                    .map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'a>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, serde_json::Error> {
        let text = self.value.take().ok_or_else(|| {
            <serde_json::Error as serde::de::Error>::custom("value without a key")
        })?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let value = seed.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }
}

/// What a hook answers.
#[derive(Debug, Clone, Default)]
pub enum HookOutcome {
    /// Leave the event as it was.
    #[default]
    Continue,
    /// Replace the data and, for mutating events, the body when given. For an
    /// observing event (since 1.2) the new data is what the later hooks of the
    /// same event see (an enrichment, such as a cost); the request is not changed.
    Modify {
        /// The new data.
        data: Value,
        /// The new body, if it changes.
        body: Option<Vec<u8>>,
    },
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::Indexed;
    use crate::hook_wire;

    /// Every shape a member can have, read into the types plugins read
    /// them as.
    #[derive(Debug, Deserialize, PartialEq)]
    struct Shapes<'a> {
        #[serde(borrow)]
        plain: Cow<'a, str>,
        #[serde(borrow)]
        escaped: Cow<'a, str>,
        owned: String,
        unicode: String,
        missing: Option<String>,
        null: Option<String>,
        count: u64,
        small: u16,
        negative: i64,
        zero: u32,
        float: f64,
        whole_as_float: f64,
        exponent: f64,
        negative_float: f64,
        huge: u64,
        flag: bool,
        off: Option<bool>,
        nested: Option<Nested>,
        any: Value,
        any_number: Value,
        list: Vec<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Nested {
        input_tokens: u64,
        name: String,
    }

    fn data() -> Value {
        json!({
            "plain": "claude-sonnet-4-5",
            "escaped": "a \"quoted\" \\ line\nand a tab\t",
            "owned": "/v1/messages",
            "unicode": "héllo ✓",
            "null": null,
            "count": 12345,
            "small": 200,
            "negative": -42,
            "zero": 0,
            "float": 12.375,
            "whole_as_float": 3,
            "exponent": 1.5e300,
            "negative_float": -0.25,
            "huge": u64::MAX,
            "flag": true,
            "off": false,
            "nested": {"input_tokens": 7, "name": "n"},
            "any": {"k": [1, "two", null]},
            "any_number": -7,
            "list": [1, 2, 3],
            "unread": {"big": ["skipped", 1, 2]},
        })
    }

    /// Reading through the index gives what parsing the whole text gives.
    #[test]
    fn indexed_members_read_as_the_whole_text_does() {
        let (text, index) = hook_wire::to_indexed_json(&data()).unwrap();
        let encoded = hook_wire::encode_index(&index);
        assert!(!index.is_empty());
        let whole: Shapes = serde_json::from_str(&text).unwrap();
        let indexed = Shapes::deserialize(Indexed {
            text: &text,
            index: &encoded[4..],
        })
        .unwrap();
        assert_eq!(indexed, whole);
        assert!(matches!(indexed.plain, Cow::Borrowed(_)));
        assert_eq!(indexed.escaped, "a \"quoted\" \\ line\nand a tab\t");
        assert_eq!(indexed.huge, u64::MAX);
        assert_eq!(indexed.exponent, 1.5e300);
    }

    /// A member of the wrong type fails as it would with serde_json.
    #[test]
    fn a_member_of_the_wrong_type_is_an_error() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrong {
            small: i8,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct NotAString {
            count: String,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct NotAnInteger {
            float: u64,
        }
        let (text, index) = hook_wire::to_indexed_json(&data()).unwrap();
        let encoded = hook_wire::encode_index(&index);
        let indexed = || Indexed {
            text: &text,
            index: &encoded[4..],
        };
        let too_big = Wrong::deserialize(indexed()).unwrap_err().to_string();
        assert!(too_big.contains("200"), "{too_big}");
        assert!(NotAString::deserialize(indexed()).is_err());
        assert!(NotAnInteger::deserialize(indexed()).is_err());
        assert!(serde_json::from_str::<NotAnInteger>(&text).is_err());
    }
}
