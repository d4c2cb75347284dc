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
}

/// The event data as the host sent it: inside the call's JSON (plugin API
/// 1.0 layout), or as the first bytes of its body (1.1).
#[derive(Debug, Clone)]
enum DataText {
    Raw(Box<RawValue>),
    Text(String),
}

impl DataText {
    fn get(&self) -> &str {
        match self {
            DataText::Raw(raw) => raw.get(),
            DataText::Text(text) => text,
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
        }
    }

    /// The event data as JSON text, exactly as the host sent it.
    pub fn data_json(&self) -> &str {
        self.data.get()
    }

    /// The event data deserialised as `T`, which may borrow strings from the
    /// call (`&str` fields) and name only the keys it needs; unknown keys are
    /// skipped without being built. See each [`HookEvent`] for its keys.
    pub fn data<'a, T: Deserialize<'a>>(&'a self) -> Result<T, PluginError> {
        serde_json::from_str(self.data.get()).map_err(|error| {
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
