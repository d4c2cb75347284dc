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

/// Operation names the host sends to a plugin, as of 1.0 (kept for plugins
/// that name them; new code names the operation's type in [`ops`]).
pub mod op {
    /// Set the plugin up with its config: [`super::InitializeInput`] → nothing.
    pub const INITIALIZE: &str = <super::ops::Initialize as super::Operation>::NAME;
    /// Release resources before the process exits: nothing → nothing.
    pub const SHUTDOWN: &str = <super::ops::Shutdown as super::Operation>::NAME;
    /// Report health: nothing → [`super::HealthOutput`].
    pub const HEALTH: &str = <super::ops::Health as super::Operation>::NAME;
    /// Answer an HTTP request on one of the plugin's routes:
    /// [`super::RouteInput`] + body → [`super::ResponseHead`] + body.
    pub const ROUTE: &str = <super::ops::Route as super::Operation>::NAME;
    /// Deliver a hook event: [`super::HookInput`] + body → [`super::HookOutput`] + body
    /// (since 1.1 the body may carry the data first, see `HookInput::data_len`).
    pub const HOOK: &str = <super::ops::Hook as super::Operation>::NAME;
    /// Run a scheduled task once: [`super::TaskInput`] → nothing.
    pub const TASK: &str = <super::ops::Task as super::Operation>::NAME;
    /// Answer a call to a service the plugin provides:
    /// [`super::ServiceInput`] → JSON value.
    pub const SERVICE: &str = <super::ops::Service as super::Operation>::NAME;
    /// Inspect or answer a request before it reaches its route:
    /// [`super::MiddlewareRequestInput`] → [`super::MiddlewareRequestOutput`] (+ body when it answers).
    pub const MIDDLEWARE_REQUEST: &str = <super::ops::MiddlewareRequest as super::Operation>::NAME;
    /// Adjust a response head on its way out:
    /// [`super::MiddlewareResponseInput`] → [`super::ResponseHead`].
    pub const MIDDLEWARE_RESPONSE: &str =
        <super::ops::MiddlewareResponse as super::Operation>::NAME;
    /// Turn a client request on a provider endpoint into the upstream request:
    /// [`super::ProviderPrepareInput`] + body (already in the provider's native
    /// format) → [`super::ProviderPrepareOutput`] + upstream body.
    pub const PROVIDER_PREPARE: &str = <super::ops::ProviderPrepare as super::Operation>::NAME;
}

/// Operation names a plugin sends to the host, as of 1.0 (see [`op`]).
pub mod host_op {
    /// Wait: [`super::SleepInput`] → nothing.
    pub const SLEEP: &str = <super::ops::Sleep as super::Operation>::NAME;
    /// Send an HTTP request with the host's shared client:
    /// [`super::HttpRequestHead`] + body → [`super::HttpResponseHead`] + body.
    pub const HTTP: &str = <super::ops::Http as super::Operation>::NAME;
    /// Call a service another plugin provides: [`super::ServiceInput`] → JSON value.
    pub const SERVICE_CALL: &str = <super::ops::ServiceCall as super::Operation>::NAME;
    /// Emit a custom hook event: [`super::EmitInput`] → nothing.
    pub const EMIT: &str = <super::ops::Emit as super::Operation>::NAME;
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
    /// Since 1.2: streamed route answers ([`super::ResponseHead::stream`]).
    pub const STREAM_ROUTES: &str = "stream_routes";
    /// Since 1.2: [`super::ops::HttpStream`], an upstream body read as it arrives.
    pub const HTTP_STREAM: &str = "http_stream";
    /// Since 1.2: [`super::ops::Blocking`], blocking work on the host's pool.
    pub const BLOCKING: &str = "blocking";
    /// Since 1.2: [`super::ops::ProcessSpawn`] and the other `host.process.*` operations.
    pub const PROCESS: &str = "process";
    /// Since 1.2: hook subscriptions that ask for bodies and stream chunks
    /// (`HookSpec::bodies`), and observing hooks whose `Modify` answer the
    /// later hooks of the same event see.
    pub const HOOK_BODIES: &str = "hook_bodies";
    /// Since 1.2: routes that need no client token (`Route::public`).
    pub const PUBLIC_ROUTES: &str = "public_routes";
    /// Since 1.2: [`super::ops::PluginsStatus`].
    pub const PLUGINS_STATUS: &str = "plugins_status";
    /// Since 1.2: the manifest's format adapters take part in conversion
    /// ([`super::ops::FormatConvert`]).
    pub const FORMAT_ADAPTERS: &str = "format_adapters";
    /// Since 1.3: providers whose endpoints come from their config
    /// ([`super::InitializeOutput::configured_endpoints`]).
    pub const CONFIGURED_ENDPOINTS: &str = "configured_endpoints";
    /// Since 1.3: a route answer's [`super::ResponseHead::answered_by`] and
    /// usage (and a stream's final [`super::RouteStreamChunk::usage`]) reach
    /// `request.completed`, so access logs, metrics and pricing count it.
    pub const ROUTE_USAGE: &str = "route_usage";
    /// Since 1.3: a provider that asks for retries
    /// ([`super::InitializeOutput::provider_retries`],
    /// [`super::ProviderPrepareOutput::retry`]) is asked to prepare again, with
    /// a [`super::ProviderAttempt`], when an attempt fails before anything
    /// reached the client: failover across accounts.
    pub const PROVIDER_RETRIES: &str = "provider_retries";
}

/// Binds an operation's name to the types of its metadata, in one place, so
/// the host and the SDK cannot disagree: a caller names the operation's type
/// (`ops::Route`), never a string, and gets its input and output types with it.
/// The message body that travels beside the metadata is described on each
/// operation.
pub trait Operation: Sized {
    /// The operation's name on the wire.
    const NAME: &'static str;
    /// The metadata the caller sends.
    type Input: Serialize + serde::de::DeserializeOwned;
    /// The metadata the receiver answers.
    type Output: Serialize + serde::de::DeserializeOwned + OutputOf<Self>;
}

/// A metadata type that writes the same JSON as operation `O`'s input, for a
/// caller that sends a borrowed view instead of the owned type (the host's
/// hook calls do). Implemented for `O::Input` itself.
pub trait InputOf<O: Operation>: Serialize {}

/// A metadata type that reads the same JSON as operation `O`'s output, for a
/// caller that keeps parts of it as text instead of building values (the
/// host reads a hook's new data so). Implemented for `O::Output` itself.
pub trait OutputOf<O: Operation>: serde::de::DeserializeOwned {}

macro_rules! operations {
    ($($(#[doc = $doc:literal])* $ty:ident = $name:literal: $input:ty => $output:ty;)*) => {
        /// Every operation, as a type (see [`Operation`]). Host → plugin
        /// operations come first, then plugin → host (`host.*`).
        pub mod ops {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[doc = $doc])*
                #[derive(Debug, Clone, Copy)]
                pub struct $ty;
                impl Operation for $ty {
                    const NAME: &'static str = $name;
                    type Input = $input;
                    type Output = $output;
                }
                impl InputOf<$ty> for $input {}
                impl OutputOf<$ty> for $output {}
            )*
        }
    };
}

operations! {
    /// Set the plugin up with its config.
    Initialize = "plugin.initialize": InitializeInput => Option<InitializeOutput>;
    /// Release resources before the process exits.
    Shutdown = "plugin.shutdown": Value => Value;
    /// Report health.
    Health = "plugin.health": Value => HealthOutput;
    /// Answer an HTTP request on one of the plugin's routes; the request body
    /// travels as the message body, and so does the answer's (all of it, or
    /// its start when [`ResponseHead::stream`] is set).
    Route = "route.handle": RouteInput => ResponseHead;
    /// Since 1.2: the next piece of a streamed route answer (message body);
    /// `end` when there is no more. The host asks only when the client has
    /// taken the previous piece: that is the backpressure.
    /// Since 1.3 the last chunk may carry the answer's token usage
    /// ([`RouteStreamChunk`], which reads the same JSON as [`StreamChunk`]).
    RouteStreamNext = "route.stream.next": StreamRef => RouteStreamChunk;
    /// Since 1.2: the client left; drop the stream and what it holds.
    RouteStreamCancel = "route.stream.cancel": StreamRef => Value;
    /// Deliver a hook event (since 1.1 the body may carry the data first,
    /// see `HookInput::data_len`; since 1.2 it may carry the body or chunk
    /// the subscription asked for after it).
    Hook = "hook.call": HookInput => HookOutput;
    /// Run a scheduled task once.
    Task = "task.run": TaskInput => Value;
    /// Answer a call to a service the plugin provides.
    Service = "service.call": ServiceInput => Value;
    /// Inspect or answer a request before it reaches its route.
    MiddlewareRequest = "middleware.request": MiddlewareRequestInput => MiddlewareRequestOutput;
    /// Adjust a response head on its way out.
    MiddlewareResponse = "middleware.response": MiddlewareResponseInput => ResponseHead;
    /// Turn a client request on a provider endpoint into the upstream request
    /// (body in and out).
    ProviderPrepare = "provider.prepare": ProviderPrepareInput => ProviderPrepareOutput;
    /// Since 1.2: run blocking job `job`, which the plugin registered before
    /// asking the host for [`Blocking`]; called on a host thread that may block.
    BlockingRun = "blocking.run": BlockingInput => Value;
    /// Since 1.2: convert a body (or one stream chunk) with one of the
    /// manifest's format adapters; body in, body out.
    FormatConvert = "format.convert": FormatConvertInput => Value;

    /// Wait.
    Sleep = "host.sleep": SleepInput => Value;
    /// Send an HTTP request with the host's shared client; body in and out.
    Http = "host.http": HttpRequestHead => HttpResponseHead;
    /// Since 1.2: like [`Http`], but the answer's body is read piece by piece
    /// with [`HttpStreamNext`] under [`HttpResponseHead::stream`].
    HttpStream = "host.http.stream": HttpRequestHead => HttpResponseHead;
    /// Since 1.2: the next piece of a streamed HTTP answer.
    HttpStreamNext = "host.http.stream.next": StreamRef => StreamChunk;
    /// Since 1.2: stop reading a streamed HTTP answer (the upstream request is cancelled).
    HttpStreamCancel = "host.http.stream.cancel": StreamRef => Value;
    /// Call a service another plugin provides.
    ServiceCall = "host.service.call": ServiceInput => Value;
    /// Emit a custom hook event.
    Emit = "host.emit": EmitInput => Value;
    /// Since 1.2: run the plugin's blocking job on the host's blocking pool;
    /// the host calls [`BlockingRun`] there and answers with its reply.
    Blocking = "host.blocking": BlockingInput => Value;
    /// Since 1.2: start a child process.
    ProcessSpawn = "host.process.spawn": ProcessSpawnInput => ProcessSpawnOutput;
    /// Since 1.2: write the message body to the child's stdin (waits while
    /// the pipe is full), or close it.
    ProcessWrite = "host.process.write": ProcessWriteInput => Value;
    /// Since 1.2: the next bytes the child wrote to stdout or stderr; `end` at EOF.
    ProcessRead = "host.process.read": ProcessReadInput => StreamChunk;
    /// Since 1.2: wait for the child to exit.
    ProcessWait = "host.process.wait": ProcessRef => ProcessExit;
    /// Since 1.2: kill the child (and forget it).
    ProcessKill = "host.process.kill": ProcessRef => Value;
    /// Since 1.2: what `GET /plugins/status` shows (per-plugin counters, hook time).
    PluginsStatus = "host.plugins.status": Value => Value;
}

/// Input of the stream operations: which stream.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct StreamRef {
    /// The stream's id, as the side that owns it handed it out.
    pub stream: u64,
}

/// Output of the stream operations; the piece travels as the message body.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct StreamChunk {
    /// No more pieces: the body is empty and the stream is finished.
    #[serde(default)]
    pub end: bool,
}

/// Output of [`ops::RouteStreamNext`]: a [`StreamChunk`] whose last one may
/// say what the answer cost and which model gave it (since 1.3; older
/// plugins never send them, older hosts ignore them).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RouteStreamChunk {
    /// No more pieces: the body is empty and the stream is finished.
    #[serde(default)]
    pub end: bool,
    /// With `end`: the answer's token usage, known only now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    /// With `end`: the model that answered, when the head could not name it
    /// yet; it replaces [`AnsweredBy::model`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Since 1.3: who answered a route's request when the route works like a
/// provider (it answers model requests from an upstream of its own), for
/// `request.completed`'s `provider` and `model`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct AnsweredBy {
    /// The provider, as access logs and analytics name it (usually the plugin's name).
    pub provider: String,
    /// The model that answered, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Since 1.3: the token counts of one answer, under Anthropic's names, as
/// the host reports them in `request.completed`'s `usage`: `input_tokens` are
/// the input tokens neither read from nor written to the prompt cache.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Input tokens neither read from nor written to the prompt cache.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens (reasoning included).
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    /// Output tokens spent on reasoning, when known.
    #[serde(default)]
    pub reasoning_tokens: u64,
}

/// Input of [`ops::Blocking`] and [`ops::BlockingRun`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct BlockingInput {
    /// The job's id, chosen by the plugin.
    pub job: u64,
}

/// Input of [`ops::ProcessSpawn`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ProcessSpawnInput {
    /// The program: a path, or a name looked up in `PATH`.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables to set (after clearing, when `clear_env`).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Start from an empty environment instead of the host's.
    #[serde(default)]
    pub clear_env: bool,
    /// The working directory; the host's when absent.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// Output of [`ops::ProcessSpawn`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct ProcessSpawnOutput {
    /// The host's handle for the child, used by the other process operations.
    pub process: u64,
    /// The child's operating-system process id.
    #[serde(default)]
    pub pid: u32,
}

/// Input of the process operations that need nothing else.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct ProcessRef {
    /// The handle from [`ProcessSpawnOutput::process`].
    pub process: u64,
}

/// Input of [`ops::ProcessWrite`]; the bytes travel as the message body.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct ProcessWriteInput {
    /// The handle from [`ProcessSpawnOutput::process`].
    pub process: u64,
    /// Close stdin after writing (the child sees end of input).
    #[serde(default)]
    pub close: bool,
}

/// Input of [`ops::ProcessRead`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct ProcessReadInput {
    /// The handle from [`ProcessSpawnOutput::process`].
    pub process: u64,
    /// Read stderr instead of stdout.
    #[serde(default)]
    pub stderr: bool,
}

/// Output of [`ops::ProcessWait`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct ProcessExit {
    /// The exit code, when the child exited normally.
    #[serde(default)]
    pub code: Option<i32>,
    /// The signal that ended it, on Unix.
    #[serde(default)]
    pub signal: Option<i32>,
}

/// Input of [`ops::FormatConvert`]; the body to convert travels as the message body.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct FormatConvertInput {
    /// The source format id (as in the manifest's adapter).
    pub from: String,
    /// The target format id.
    pub to: String,
    /// `request`, `response`, `error`, `stream_chunk` (a piece of an SSE
    /// stream, any cut) or `stream_end` (flush what is held back).
    pub kind: String,
    /// For `stream_chunk` and `stream_end`: the stream's id, so the adapter can
    /// keep state per stream.
    #[serde(default)]
    pub stream: u64,
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

/// What the plugin answers to [`op::INITIALIZE`] (since 1.3; before, nothing:
/// read with `Option<InitializeOutput>`, `None` for an older plugin).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct InitializeOutput {
    /// For a provider declared with `Manifest::configured_provider`: what it
    /// serves under its config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_endpoints: Option<crate::manifest::ConfiguredEndpoints>,
    /// Since 1.3, for a provider: its `provider.prepare` answers may ask for
    /// retries ([`ProviderPrepareOutput::retry`]). Only then does the host keep
    /// the client's body for a second `provider.prepare`, so a provider
    /// without retries pays nothing for them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provider_retries: bool,
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
    /// Since 1.2, answers of [`op::ROUTE`] only: the body goes on after the
    /// message body as a stream the host pulls with [`ops::RouteStreamNext`]
    /// under this id (and cancels with [`ops::RouteStreamCancel`] when the
    /// client leaves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<u64>,
    /// Since 1.3, answers of [`op::ROUTE`] only: the provider and model that
    /// answered (see [`capability::ROUTE_USAGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<AnsweredBy>,
    /// Since 1.3, answers of [`op::ROUTE`] only: the answer's token usage
    /// (for a stream, [`RouteStreamChunk::usage`] at its end instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
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

/// Output of [`host_op::HTTP`] and [`ops::HttpStream`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HttpResponseHead {
    /// Status code.
    pub status: u16,
    /// Header name/value pairs.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Since 1.2, answers of [`ops::HttpStream`] only: the body, read with
    /// [`ops::HttpStreamNext`] under this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<u64>,
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
    /// Since 1.3: set when this call prepares a retry, because the previous
    /// attempt failed before anything reached the client (see
    /// [`ProviderPrepareOutput::retry`]); `None` on a first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<ProviderAttempt>,
    /// Since 1.3: where each top-level member of the body (a JSON object)
    /// is, `[key_start, key_end, value_start, value_end]` byte offsets (the
    /// key inside its quotes): the host validated the body while it read
    /// its `stream` and `model`, and notes this on the way, so the plugin
    /// can take the body apart without parsing it again
    /// ([`ProviderRequest::body_top_level`](crate::ProviderRequest::body_top_level)).
    /// Empty when the host did not index it (a body it converted, a key
    /// with escapes, an older host). In the JSON it is one string of the
    /// numbers joined by commas ([`members_text`]): a quarter of the cost of
    /// an array of arrays to write and read.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "members_text")]
    pub body_members: Vec<[u32; 4]>,
}

/// [`ProviderPrepareInput::body_members`] as JSON: `"2,7,9,12,14,20,22,26"`.
/// Text that does not read as whole entries reads as no index (it only saves
/// the plugin a parse), never as an error.
pub mod members_text {
    use serde::{Deserializer, Serializer};

    /// Writes `members` as one string.
    pub fn serialize<S: Serializer>(
        members: &[[u32; 4]],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&text(members))
    }

    /// The string of `members`.
    pub(crate) fn text(members: &[[u32; 4]]) -> String {
        let mut text = String::with_capacity(members.len() * 16);
        let mut digits = itoa::Buffer::new();
        for number in members.iter().flatten() {
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str(digits.format(*number));
        }
        text
    }

    /// Reads the string back; anything else is no index.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<[u32; 4]>, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Vec<[u32; 4]>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("numbers joined by commas")
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(parse(text).unwrap_or_default())
            }
        }
        deserializer.deserialize_str(Text)
    }

    /// The entries of a string [`text`] wrote (`None`: not whole entries).
    pub(crate) fn parse(text: &str) -> Option<Vec<[u32; 4]>> {
        // By hand: `split` and `str::parse` cost several times more here.
        let mut members = Vec::with_capacity(text.len() / 16 + 1);
        let mut entry = [0_u32; 4];
        let (mut filled, mut digits, mut number) = (0, 0, 0_u64);
        for &byte in text.as_bytes().iter().chain(b",") {
            match byte {
                b'0'..=b'9' if digits < 10 => {
                    number = number * 10 + u64::from(byte - b'0');
                    digits += 1;
                }
                b',' if digits > 0 => {
                    entry[filled] = u32::try_from(number).ok()?;
                    (filled, digits, number) = (filled + 1, 0, 0);
                    if filled == 4 {
                        members.push(entry);
                        filled = 0;
                    }
                }
                _ => return None,
            }
        }
        (filled == 0).then_some(members)
    }
}

/// Since 1.3: why `provider.prepare` is called again for the same client
/// request: what became of the previous attempt.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct ProviderAttempt {
    /// This attempt's number: 2 for the first retry.
    pub number: u32,
    /// The status the previous attempt's upstream answered; 0 when it did
    /// not answer (unreachable, or no head in time).
    pub previous_status: u16,
    /// The account the previous attempt used
    /// ([`ProviderPrepareOutput::account`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_account: Option<String>,
    /// The previous answer's `Retry-After`, in milliseconds (seconds or an
    /// HTTP date, read by the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Since 1.3: a provider's request for retries, with one prepared request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Upstream requests in all for this client request, this one included.
    /// The host stops earlier at its own limit and when an answer has begun
    /// to reach the client.
    pub max_attempts: u32,
}

/// Since 1.3: a provider's answer that there is nothing (left) to send: every
/// account is cooling down or disabled.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct ProviderExhausted {
    /// What the client reads when nothing was sent yet (on a retry the
    /// client gets the previous attempt's answer instead).
    pub message: String,
    /// When to try again, in milliseconds: the client's `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
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
    /// Since 1.3: the account (credential) this request uses, by a label that
    /// is no secret: told back in [`ProviderAttempt::previous_account`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Since 1.3: ask the host to call `provider.prepare` again (with a
    /// [`ProviderAttempt`]) when this attempt fails retryably (429, 401, 403,
    /// 408, 5xx, 529, or no answer) before anything reached the client. Needs
    /// [`InitializeOutput::provider_retries`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Since 1.3: wait this long before sending (a `Retry-After` honoured),
    /// bounded by the host.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_ms: u64,
    /// Since 1.3: send nothing; there is no account to send with. On a first
    /// attempt the client gets a 429 with `Retry-After` (a 503 without a
    /// time: nothing will come back by itself); on a retry, the previous
    /// attempt's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhausted: Option<ProviderExhausted>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_index_travels_as_text_and_bad_text_is_no_index() {
        let input = ProviderPrepareInput {
            body_members: vec![[2, 7, 9, 12], [14, 20, 22, 4_000_000_000]],
            ..ProviderPrepareInput::default()
        };
        let json = serde_json::to_value(&input).unwrap();
        assert_eq!(json["body_members"], "2,7,9,12,14,20,22,4000000000");
        let read: ProviderPrepareInput = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read.body_members, input.body_members);
        // Left out when empty; an older host's JSON has none.
        let plain = serde_json::to_value(ProviderPrepareInput::default()).unwrap();
        assert!(plain.get("body_members").is_none());
        let read: ProviderPrepareInput = serde_json::from_value(plain.clone()).unwrap();
        assert!(read.body_members.is_empty());
        for bad in [
            "",
            "1,2,3",
            "1,2,3,4,5",
            "1,2,x,4",
            "1,,2,3",
            "-1,2,3,4",
            "4294967296,1,2,3",
        ] {
            let mut json = plain.clone();
            json["body_members"] = bad.into();
            let read: ProviderPrepareInput = serde_json::from_value(json).unwrap();
            assert!(read.body_members.is_empty(), "{bad}");
        }
    }
}
