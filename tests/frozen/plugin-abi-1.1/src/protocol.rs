//! The operations that cross the boundary and the JSON payloads they carry.
//!
//! This is where the interface evolves within major version 1: a new operation
//! is a new name, a new field is an optional field (`#[serde(default)]`). A party
//! that does not know an operation answers `Unsupported`; a party that does not
//! know a field ignores it. Never remove or retype a field within 1.x.
//!
//! Host and SDK both use these types; plugin authors see the friendlier SDK
//! types built from them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Operation names the host sends to a plugin.
pub mod op {
    /// Set the plugin up with its config: [`super::InitializeInput`] → nothing.
    pub const INITIALIZE: &str = "plugin.initialize";
    /// Release resources before the process exits: nothing → nothing.
    pub const SHUTDOWN: &str = "plugin.shutdown";
    /// Report health: nothing → [`super::HealthOutput`].
    pub const HEALTH: &str = "plugin.health";
    /// Answer an HTTP request on one of the plugin's routes:
    /// [`super::RouteInput`] + body → [`super::ResponseHead`] + body.
    pub const ROUTE: &str = "route.handle";
    /// Deliver a hook event: [`super::HookInput`] + body → [`super::HookOutput`] + body
    /// (since 1.1 the body may carry the data first, see `HookInput::data_len`).
    pub const HOOK: &str = "hook.call";
    /// Run a scheduled task once: [`super::TaskInput`] → nothing.
    pub const TASK: &str = "task.run";
    /// Answer a call to a service the plugin provides:
    /// [`super::ServiceInput`] → JSON value.
    pub const SERVICE: &str = "service.call";
    /// Inspect or answer a request before it reaches its route:
    /// [`super::MiddlewareRequestInput`] → [`super::MiddlewareRequestOutput`] (+ body when it answers).
    pub const MIDDLEWARE_REQUEST: &str = "middleware.request";
    /// Adjust a response head on its way out:
    /// [`super::MiddlewareResponseInput`] → [`super::ResponseHead`].
    pub const MIDDLEWARE_RESPONSE: &str = "middleware.response";
    /// Turn a client request on a provider endpoint into the upstream request:
    /// [`super::ProviderPrepareInput`] + body (already in the provider's native
    /// format) → [`super::ProviderPrepareOutput`] + upstream body.
    pub const PROVIDER_PREPARE: &str = "provider.prepare";
}

/// Operation names a plugin sends to the host.
pub mod host_op {
    /// Wait: [`super::SleepInput`] → nothing.
    pub const SLEEP: &str = "host.sleep";
    /// Send an HTTP request with the host's shared client:
    /// [`super::HttpRequestHead`] + body → [`super::HttpResponseHead`] + body.
    pub const HTTP: &str = "host.http";
    /// Call a service another plugin provides: [`super::ServiceInput`] → JSON value.
    pub const SERVICE_CALL: &str = "host.service.call";
    /// Emit a custom hook event: [`super::EmitInput`] → nothing.
    pub const EMIT: &str = "host.emit";
}

/// Capabilities a host of this API version offers; a plugin checks
/// `Context::has_capability` before using one that a later minor version added.
pub mod capability {
    /// `host.sleep`.
    pub const SLEEP: &str = "sleep";
    /// `host.http`.
    pub const HTTP: &str = "http";
    /// `host.service.call`.
    pub const SERVICES: &str = "services";
    /// `host.emit`.
    pub const EMIT: &str = "emit";
    /// `HostObject::spawn`.
    pub const SPAWN: &str = "spawn";
}

/// Input of [`op::INITIALIZE`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct InitializeInput {
    /// The plugin's name as the host knows it.
    pub plugin_name: String,
    /// The plugin's validated config: its declared defaults merged with the user's section.
    #[serde(default)]
    pub config: Value,
    /// A directory the plugin may keep data in (created by the host).
    #[serde(default)]
    pub data_dir: String,
    /// The host's config directory.
    #[serde(default)]
    pub config_dir: String,
    /// Capabilities the host offers (see [`capability`]).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Whether the host serves canned answers instead of calling upstreams
    /// (`ccproxy serve --bypass`); since 1.1, absent (false) before.
    #[serde(default)]
    pub bypass: bool,
}

/// Output of [`op::HEALTH`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HealthOutput {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: String,
    /// Free-form details shown in `/plugins/{name}/health`.
    #[serde(default)]
    pub details: Value,
}

/// An HTTP request head as it reaches a plugin route or middleware.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RequestHead {
    /// Request method, upper case.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The raw query string, without `?`; empty when none.
    #[serde(default)]
    pub query: String,
    /// Header name/value pairs in arrival order; names lower case.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The request id (`x-request-id`).
    #[serde(default)]
    pub request_id: String,
}

/// Input of [`op::ROUTE`]; the request body travels as the message body.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RouteInput {
    /// The request head.
    #[serde(flatten)]
    pub head: RequestHead,
    /// The route pattern that matched, as declared in the manifest (with the prefix).
    #[serde(default)]
    pub route: String,
    /// Values of `{name}` segments of the pattern.
    #[serde(default)]
    pub params: Vec<(String, String)>,
}

/// An HTTP response head; the body travels as the message body.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Header name/value pairs.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

/// Input of [`op::HOOK`]; a body (when the event has one) travels as the message body.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HookInput {
    /// The hook's name as declared in the manifest.
    #[serde(default)]
    pub hook: String,
    /// The event's dotted name, e.g. `request.completed`.
    pub event: String,
    /// When the event happened, milliseconds since the Unix epoch.
    #[serde(default)]
    pub timestamp_ms: u64,
    /// The request the event belongs to, when there is one.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The event's data (keys as in the original's hook payloads). `null`
    /// when it travels in the body (`data_len`).
    #[serde(default)]
    pub data: Value,
    /// Since 1.1: the data is not in this JSON but is the first `data_len`
    /// bytes of the message body (a JSON document), followed by the event's
    /// own body. A host sends it so only to plugins built for 1.1 or later,
    /// which then need not scan the data to read the rest of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_len: Option<u64>,
}

/// Output of [`op::HOOK`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HookOutput {
    /// For mutating events: the new data; `None` keeps the data as it was.
    #[serde(default)]
    pub data: Option<Value>,
    /// For mutating events: whether the message body replaces the event's body.
    #[serde(default)]
    pub replace_body: bool,
}

/// Input of [`op::TASK`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TaskInput {
    /// The task's name as declared in the manifest.
    pub task: String,
    /// How many times the task has run before.
    #[serde(default)]
    pub run: u64,
}

/// Input of [`op::SERVICE`] and [`host_op::SERVICE_CALL`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ServiceInput {
    /// The service name, as in the provider's manifest `provides`.
    pub service: String,
    /// The method of the service.
    pub method: String,
    /// Arguments.
    #[serde(default)]
    pub args: Value,
    /// The calling plugin (filled in by the host).
    #[serde(default)]
    pub caller: String,
}

/// Input of [`op::MIDDLEWARE_REQUEST`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MiddlewareRequestInput {
    /// The middleware's name as declared in the manifest.
    pub middleware: String,
    /// The request head.
    pub request: RequestHead,
}

/// Output of [`op::MIDDLEWARE_REQUEST`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MiddlewareRequestOutput {
    /// Answer the request now with this head (and the message body), skipping the route.
    #[serde(default)]
    pub respond: Option<ResponseHead>,
    /// Headers to set on the request before it goes on (replacing same-named ones).
    #[serde(default)]
    pub set_headers: Vec<(String, String)>,
}

/// Input of [`op::MIDDLEWARE_RESPONSE`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct MiddlewareResponseInput {
    /// The middleware's name as declared in the manifest.
    pub middleware: String,
    /// The request head.
    pub request: RequestHead,
    /// The response head so far.
    pub response: ResponseHead,
}

/// Input of [`host_op::SLEEP`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SleepInput {
    /// How long, in milliseconds.
    pub millis: u64,
}

/// Input of [`host_op::HTTP`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HttpRequestHead {
    /// Method, upper case.
    pub method: String,
    /// Absolute URL (`http://` or `https://`).
    pub url: String,
    /// Header name/value pairs.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Give up after this many milliseconds (0: the host's default).
    #[serde(default)]
    pub timeout_ms: u64,
}

/// Output of [`host_op::HTTP`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HttpResponseHead {
    /// Status code.
    pub status: u16,
    /// Header name/value pairs.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

/// Input of [`host_op::EMIT`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct EmitInput {
    /// The event name (`custom.event` or a name under `custom.`).
    pub event: String,
    /// Event data.
    #[serde(default)]
    pub data: Value,
}

/// Input of [`op::PROVIDER_PREPARE`]; the request body, converted to the
/// provider's native format, travels as the message body.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ProviderPrepareInput {
    /// The provider endpoint's path, as declared in the manifest.
    pub endpoint: String,
    /// The format the client speaks (`anthropic.messages`, `openai.chat_completions`, `openai.responses`).
    pub client_format: String,
    /// The provider's native format (the body is in it).
    pub native_format: String,
    /// Whether the client asked for a stream.
    #[serde(default)]
    pub stream: bool,
    /// The model id the client asked for.
    #[serde(default)]
    pub model: Option<String>,
    /// The client's request head. It carries the client's own credentials:
    /// never forward them upstream.
    pub request: RequestHead,
}

/// Output of [`op::PROVIDER_PREPARE`]; the upstream body travels as the message body.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ProviderPrepareOutput {
    /// Method, upper case.
    pub method: String,
    /// Absolute upstream URL.
    pub url: String,
    /// Upstream headers (credentials included).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Whether the upstream answers with an SSE stream.
    #[serde(default)]
    pub stream: bool,
    /// The model id to show the client in responses (its alias), when the
    /// upstream model differs.
    #[serde(default)]
    pub model_alias: Option<String>,
    /// Give up waiting for the response head (and, when streaming, for each
    /// chunk) after this many milliseconds; 0: the host's `http.read_timeout_seconds`.
    #[serde(default)]
    pub timeout_ms: u64,
}
