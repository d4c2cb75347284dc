//! The `Plugin` trait: what a plugin author implements.

use std::future::Future;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    ConfiguredEndpoints, Context, PluginError,
    format::FormatConversion,
    hooks::{HookCall, HookContext, HookOutcome},
    http::{Headers, Request, Response},
    manifest::Manifest,
};

/// A plugin. Implement `manifest` and `init`; every `on_*` method has a default
/// that does nothing (routes answer 404, hooks continue), so a plugin implements
/// only what its manifest declares.
///
/// Every method is called by the host on its runtime threads, possibly
/// concurrently; the futures must not block (wait through [`Context`]). A panic
/// in any of them is caught: the one call fails (a route answers 500), the host
/// counts it and shows it in `/plugins/{name}/health`.
///
/// ```
/// use ccproxy_plugin_abi::prelude::*;
///
/// struct Hello;
///
/// impl Plugin for Hello {
///     type Config = ();
///     fn manifest() -> Manifest {
///         Manifest::new("hello", "1.0.0").route("/hello", [Route::get("/")])
///     }
///     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
///         Ok(Hello)
///     }
///     async fn on_route(&self, _req: Request) -> Result<Response, PluginError> {
///         Ok(Response::text(200, "hello"))
///     }
/// }
/// export_plugin!(Hello);
/// ```
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The plugin's settings, deserialised from `[plugins.<name>]` merged over
    /// `Config::default()`. Use `()` for none.
    type Config: Serialize + DeserializeOwned + Default + Send + 'static;

    /// The manifest. Called without initialising the plugin (for `plugins list`).
    fn manifest() -> Manifest;

    /// Creates the plugin once its dependencies are initialised. An error
    /// disables this plugin (and those depending on it) with the message as reason.
    fn init(
        ctx: Context,
        config: Self::Config,
    ) -> impl Future<Output = Result<Self, PluginError>> + Send;

    /// Answers a request on one of the manifest's routes. Default: 404.
    fn on_route(&self, req: Request) -> impl Future<Output = Result<Response, PluginError>> + Send {
        async move {
            Err(PluginError::not_found(format!(
                "no handler for {} {}",
                req.method, req.path
            )))
        }
    }

    /// Answers a request on one of the manifest's routes with a complete or a
    /// streamed response ([`StreamResponse`](crate::StreamResponse)). Default:
    /// [`Plugin::on_route`]. Implement this instead of `on_route` when a route
    /// streams (plugin API 1.2; check `Context::has_capability("stream_routes")`).
    fn on_route_response(
        &self,
        req: Request,
    ) -> impl Future<Output = Result<crate::RouteResponse, PluginError>> + Send {
        async move { self.on_route(req).await.map(crate::RouteResponse::from) }
    }

    /// Receives an event for one of the manifest's hooks. Default: continue.
    ///
    /// Observing events arrive off the request path, in order per hook; a
    /// [`HookOutcome::Modify`] answer changes only what the later hooks of the
    /// event see (since 1.2). For mutating events (`provider.request.prepared`) the
    /// call is inline and [`HookOutcome::Modify`] changes the request.
    fn on_hook(
        &self,
        hook: HookContext,
    ) -> impl Future<Output = Result<HookOutcome, PluginError>> + Send {
        let _ = hook;
        async { Ok(HookOutcome::Continue) }
    }

    /// Receives an event for one of the manifest's hooks with its data not
    /// yet parsed. Default: parse the data and call [`Plugin::on_hook`].
    ///
    /// Implement this instead of `on_hook` when the hook reads only some of
    /// the data, or none: [`HookCall::data`] deserialises just the keys of a
    /// struct, borrowing its strings, which costs a fraction of building the
    /// whole [`serde_json::Value`]. Called exactly as `on_hook` is (plugin API
    /// 1.1; a plugin that implements it needs a 1.1 host, which every host
    /// that loads it is).
    fn on_hook_call(
        &self,
        call: HookCall,
    ) -> impl Future<Output = Result<HookOutcome, PluginError>> + Send {
        async move { self.on_hook(call.into_context()?).await }
    }

    /// Runs one of the manifest's tasks once. Default: nothing.
    fn on_task(&self, task: String) -> impl Future<Output = Result<(), PluginError>> + Send {
        let _ = task;
        async { Ok(()) }
    }

    /// Answers a call to a service in the manifest's `provides`. Default: not found.
    fn on_service_call(
        &self,
        call: ServiceCall,
    ) -> impl Future<Output = Result<Value, PluginError>> + Send {
        async move {
            Err(PluginError::not_found(format!(
                "service {} has no method {}",
                call.service, call.method
            )))
        }
    }

    /// Sees a request before it reaches its route, for each of the manifest's
    /// middleware. Default: continue unchanged.
    fn on_middleware_request(
        &self,
        middleware: MiddlewareRequest,
    ) -> impl Future<Output = Result<MiddlewareAction, PluginError>> + Send {
        let _ = middleware;
        async {
            Ok(MiddlewareAction::Continue {
                set_headers: Vec::new(),
            })
        }
    }

    /// Sees a response head on its way out, for middleware declared with
    /// `on_response`. Returns the (possibly changed) status and headers.
    fn on_middleware_response(
        &self,
        middleware: MiddlewareResponse,
    ) -> impl Future<Output = Result<(u16, Headers), PluginError>> + Send {
        async move { Ok((middleware.status, middleware.headers)) }
    }

    /// For provider plugins: turns a client request on one of the manifest's
    /// provider endpoints into the upstream request (URL, credentials, headers,
    /// body shaping). The host has already converted the body to the native
    /// format, and will send the request, convert the answer back and stream it.
    fn on_prepare_upstream(
        &self,
        req: ProviderRequest,
    ) -> impl Future<Output = Result<UpstreamRequest, PluginError>> + Send {
        async move {
            Err(PluginError::unsupported(format!(
                "plugin declares provider endpoint {} but does not implement on_prepare_upstream",
                req.endpoint
            )))
        }
    }

    /// For a provider: whether its [`Plugin::on_prepare_upstream`] may ask
    /// for retries ([`UpstreamRequest::with_retries`]), asked once right after
    /// [`Plugin::init`] (plugin API 1.3; the host offers capability
    /// `provider_retries`). Only then does the host keep the client's body
    /// for a second preparation, so answer `true` only when the config has
    /// something to fail over to (several accounts, a fallback model).
    /// Default: `false`.
    fn provider_retries(&self) -> bool {
        false
    }

    /// For a provider declared with [`Manifest::configured_provider`]: the
    /// endpoints and routes it serves under its config, asked once right after
    /// [`Plugin::init`] (plugin API 1.3). Default: nothing.
    fn configured_endpoints(&self) -> ConfiguredEndpoints {
        ConfiguredEndpoints::default()
    }

    /// Reports health. Default: healthy.
    fn on_health(&self) -> impl Future<Output = Health> + Send {
        async { Health::healthy() }
    }

    /// Releases resources before the host exits. Default: nothing.
    fn on_shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Converts a body (or one piece of a stream) with one of the manifest's
    /// format adapters ([`Manifest::format_adapter`],
    /// [`Manifest::format_adapter_endpoint`]); answers the converted bytes.
    /// Default: unsupported.
    ///
    /// Called on the request path, possibly concurrently for different
    /// requests; pieces of one stream arrive in order, one at a time. Keep
    /// per-stream state under [`FormatConversion::stream`] and drop it at
    /// [`ConversionKind::StreamEnd`](crate::ConversionKind::StreamEnd). An
    /// error fails the request with its kind's status (a client body that is
    /// not in your format: [`PluginError::invalid`], 400); an error on a
    /// stream piece cuts the client's stream short. Plugin API 1.2; the host
    /// offers capability `format_adapters`.
    ///
    /// ```
    /// use ccproxy_plugin_abi::prelude::*;
    ///
    /// struct Upper;
    ///
    /// impl Plugin for Upper {
    ///     type Config = ();
    ///     fn manifest() -> Manifest {
    ///         Manifest::new("upper", "1.0.0").format_adapter("example.upper", "openai.chat_completions", 100)
    ///     }
    ///     async fn init(_ctx: Context, _config: ()) -> Result<Self, PluginError> {
    ///         Ok(Upper)
    ///     }
    ///     async fn on_format_convert(&self, conversion: FormatConversion) -> Result<Vec<u8>, PluginError> {
    ///         Ok(conversion.body.to_ascii_uppercase())
    ///     }
    /// }
    /// ```
    fn on_format_convert(
        &self,
        conversion: FormatConversion,
    ) -> impl Future<Output = Result<Vec<u8>, PluginError>> + Send {
        async move {
            Err(PluginError::unsupported(format!(
                "plugin has no format adapter from {} to {} (implement on_format_convert)",
                conversion.from, conversion.to
            )))
        }
    }
}

/// A call to a service this plugin provides.
#[derive(Debug, Clone)]
pub struct ServiceCall {
    /// The service name.
    pub service: String,
    /// The method.
    pub method: String,
    /// JSON arguments.
    pub args: Value,
    /// The plugin that called.
    pub caller: String,
}

impl ServiceCall {
    /// The arguments deserialised as `T`.
    pub fn args_as<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        Ok(serde_json::from_value(self.args.clone())?)
    }
}

/// A request as a middleware sees it: the head only.
#[derive(Debug, Clone)]
pub struct MiddlewareRequest {
    /// The middleware's name from the manifest.
    pub middleware: String,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Headers.
    pub headers: Headers,
    /// Request id.
    pub request_id: String,
}

/// What a middleware decides about a request.
#[derive(Debug, Clone)]
pub enum MiddlewareAction {
    /// Go on, after setting these headers on the request.
    Continue {
        /// Headers to set (replacing same-named ones).
        set_headers: Vec<(String, String)>,
    },
    /// Answer now with this response; the route is not called.
    Respond(Response),
}

/// A response head as a middleware sees it.
#[derive(Debug, Clone)]
pub struct MiddlewareResponse {
    /// The middleware's name from the manifest.
    pub middleware: String,
    /// The request's path.
    pub path: String,
    /// The request id.
    pub request_id: String,
    /// Status so far.
    pub status: u16,
    /// Headers so far.
    pub headers: Headers,
}

/// A health report.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Overall status.
    pub status: HealthStatus,
    /// Free-form details shown in `/plugins/{name}/health`.
    pub details: Value,
}

/// Overall health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Working.
    Healthy,
    /// Working, with problems.
    Degraded,
    /// Not working.
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl Health {
    /// Healthy, no details.
    pub fn healthy() -> Self {
        Self {
            status: HealthStatus::Healthy,
            details: Value::Null,
        }
    }
    /// `status` with `details`.
    pub fn with(status: HealthStatus, details: Value) -> Self {
        Self { status, details }
    }
}

/// A client request on a provider endpoint, as the provider plugin sees it.
#[derive(Debug, Clone, Default)]
pub struct ProviderRequest {
    /// The endpoint path from the manifest.
    pub endpoint: String,
    /// The format the client speaks.
    pub client_format: String,
    /// The provider's native format; `body` is in it.
    pub native_format: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The model the client asked for.
    pub model: Option<String>,
    /// The client's headers, its own credentials included: never forward them.
    pub headers: Headers,
    /// The client's raw query string, without `?` (Claude Code sends `beta=true`).
    pub query: String,
    /// The body in the native format.
    pub body: Vec<u8>,
    /// The request id.
    pub request_id: String,
    /// Plugin API 1.3: set when the host asks again for the same client
    /// request because the previous attempt failed before anything reached
    /// the client ([`UpstreamRequest::with_retries`]): pick another account,
    /// and note the previous one's failure. `None` on a first attempt.
    pub attempt: Option<crate::protocol::ProviderAttempt>,
    /// Plugin API 1.3: where the body's top-level members are, as the host
    /// found them while validating it
    /// ([`ProviderPrepareInput::body_members`](crate::protocol::ProviderPrepareInput::body_members));
    /// read it with [`ProviderRequest::body_top_level`]. Empty when unknown.
    pub body_members: Vec<[u32; 4]>,
}

impl ProviderRequest {
    /// Whether this is a retry ([`ProviderRequest::attempt`] is set).
    pub fn is_retry(&self) -> bool {
        self.attempt.is_some()
    }

    /// The body's top-level members in the order written, each key (as
    /// written, no escapes) with its value's JSON text, taken from
    /// [`ProviderRequest::body_members`] without parsing the body: the host
    /// has validated it. `None` when there is no index, or it does not fit
    /// the body (then parse the body yourself).
    pub fn body_top_level(&self) -> Option<Vec<(&str, &str)>> {
        if self.body_members.is_empty() {
            return None;
        }
        // Checked once, so every range below is text or the index is refused.
        let body = std::str::from_utf8(&self.body).ok()?;
        let mut end_of_last = 0;
        self.body_members
            .iter()
            .map(|&[key_start, key_end, value_start, value_end]| {
                let [key_start, key_end, value_start, value_end] =
                    [key_start, key_end, value_start, value_end].map(|at| at as usize);
                let in_order = end_of_last < key_start
                    && key_start <= key_end
                    && key_end < value_start
                    && value_start < value_end;
                end_of_last = value_end;
                // The key between its quotes, with no escape or quote inside.
                let quoted = body.get(key_start.checked_sub(1)?..=key_end)?;
                let key = quoted
                    .strip_prefix('"')?
                    .strip_suffix('"')
                    .filter(|key| !key.contains(['"', '\\']))?;
                in_order.then_some((key, body.get(value_start..value_end)?))
            })
            .collect()
    }
}

/// The upstream request a provider plugin prepares.
#[derive(Debug, Clone, Default)]
pub struct UpstreamRequest {
    /// Method, upper case.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers, credentials included.
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
    /// Whether the upstream answers with an SSE stream.
    pub stream: bool,
    /// The model id to show the client, when the upstream model differs.
    pub model_alias: Option<String>,
    /// Give up waiting for the answer (each chunk, when streaming) after this
    /// long; `None`: the host's `http.read_timeout_seconds`.
    pub timeout: Option<std::time::Duration>,
    /// Plugin API 1.3: the account this request uses, by a label that is no
    /// secret (told back in [`ProviderAttempt::previous_account`](crate::protocol::ProviderAttempt)).
    pub account: Option<String>,
    /// Plugin API 1.3: ask to be called again on a retryable failure (see
    /// [`UpstreamRequest::with_retries`]).
    pub retry: Option<crate::protocol::RetryPolicy>,
    /// Plugin API 1.3: wait this long before sending (a `Retry-After`
    /// honoured), bounded by the host.
    pub delay: Option<std::time::Duration>,
    /// Plugin API 1.3: nothing to send (see [`UpstreamRequest::exhausted`]).
    pub exhausted: Option<crate::protocol::ProviderExhausted>,
}

impl UpstreamRequest {
    /// Names the account (credential) this request uses, by a label that is
    /// no secret; the host tells it back when the attempt failed.
    pub fn with_account(mut self, label: impl Into<String>) -> Self {
        self.account = Some(label.into());
        self
    }

    /// Asks the host to call [`Plugin::on_prepare_upstream`] again, with
    /// [`ProviderRequest::attempt`] set, when this attempt fails retryably
    /// (429, 401, 403, 408, 5xx, 529, or no answer) before anything reached
    /// the client, up to `max_attempts` upstream requests in all. Needs
    /// [`Plugin::provider_retries`]; a host older than 1.3 ignores it.
    ///
    /// The call after the last account failed is how the plugin hears of
    /// that failure: answer it with [`UpstreamRequest::exhausted`], and the
    /// client gets the failed attempt's answer.
    pub fn with_retries(mut self, max_attempts: u32) -> Self {
        self.retry = Some(crate::protocol::RetryPolicy { max_attempts });
        self
    }

    /// Asks the host to wait `delay` before sending (bounded by the host).
    pub fn after(mut self, delay: std::time::Duration) -> Self {
        self.delay = (!delay.is_zero()).then_some(delay);
        self
    }

    /// Nothing to send: every account is cooling down or disabled. On a
    /// first attempt the client gets a 429 with `message` and `Retry-After`
    /// (`retry_after`, rounded up to seconds; without one, a 503: nothing
    /// comes back by itself); on a retry, the previous attempt's answer.
    pub fn exhausted(message: impl Into<String>, retry_after: Option<std::time::Duration>) -> Self {
        Self {
            exhausted: Some(crate::protocol::ProviderExhausted {
                message: message.into(),
                retry_after_ms: retry_after.map(duration_ms),
            }),
            ..Self::default()
        }
    }
}

/// `duration` in whole milliseconds, saturating.
pub(crate) fn duration_ms(duration: std::time::Duration) -> u64 {
    duration.as_millis().min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_top_level_comes_from_a_fitting_index_only() {
        let body = br#"{"model":"m","messages":[1, 2]}"#.to_vec();
        let mut request = ProviderRequest {
            body_members: crate::hook_wire::index_object(&body).unwrap(),
            body,
            ..ProviderRequest::default()
        };
        assert_eq!(
            request.body_top_level(),
            Some(vec![("model", r#""m""#), ("messages", "[1, 2]")])
        );
        let fitting = request.body_members.clone();
        for wrong in [
            vec![],
            vec![[2, 7, 9, 99]],
            vec![[2, 7, 9, 12], [2, 7, 9, 12]],
            vec![[7, 2, 9, 12]],
            vec![[2, 7, 9, 9]],
            vec![[1, 7, 9, 12]],
        ] {
            request.body_members = wrong.clone();
            assert_eq!(request.body_top_level(), None, "{wrong:?}");
        }
        // A range that cuts a character, or a body that is not text.
        request.body = "{\"é\":1}".as_bytes().to_vec();
        request.body_members = vec![[2, 3, 6, 7]];
        assert_eq!(request.body_top_level(), None);
        request.body = b"{\"model\":\"\xff\"}".to_vec();
        request.body_members = fitting;
        assert_eq!(request.body_top_level(), None);
    }
}
