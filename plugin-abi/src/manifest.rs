//! The manifest: what a plugin declares about itself before it runs.
//!
//! The host reads the manifest without initialising the plugin, so `ccproxy
//! plugins list` and dependency resolution work on plugins that are later
//! disabled. It crosses the boundary as JSON; every field but `name` and
//! `version` has a default, so manifests from older and newer plugins both parse.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The three kinds of plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// Proxies requests to an upstream API (claude_api, codex).
    Provider,
    /// Provides credentials for providers without proxying (oauth_claude).
    AuthProvider,
    /// Everything else: logging, metrics, routes, services.
    #[default]
    System,
}

impl PluginKind {
    /// The name shown in `/plugins/status` and `ccproxy plugins list`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Provider => "provider",
            PluginKind::AuthProvider => "auth_provider",
            PluginKind::System => "system",
        }
    }
}

/// Middleware layers: lower numbers run first on the way in and last on the way out.
pub mod layer {
    /// Authentication, rate limiting.
    pub const SECURITY: u16 = 100;
    /// Logging, metrics.
    pub const OBSERVABILITY: u16 = 200;
    /// Compression, encoding.
    pub const TRANSFORMATION: u16 = 300;
    /// Path rewriting.
    pub const ROUTING: u16 = 400;
    /// Business logic.
    pub const APPLICATION: u16 = 500;
}

/// A plugin's declaration of itself.
///
/// ```
/// use ccproxy_plugin_abi::prelude::*;
///
/// let manifest = Manifest::new("hello", "1.0.0")
///     .description("says hello")
///     .route("/hello", [Route::get("/")])
///     .hook("hello_hook", ["request.completed"], 700);
/// assert_eq!(manifest.routes[0].prefix, "/hello");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// Unique name: the folder, config section (`[plugins.NAME]`) and log target.
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// One line saying what it does.
    #[serde(default)]
    pub description: String,
    /// Provider, auth provider or system.
    #[serde(default)]
    pub kind: PluginKind,
    /// Plugins that must be initialised before this one; if one is missing or
    /// disabled, this plugin is disabled too.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Services this plugin provides (answered by `Plugin::on_service_call`).
    #[serde(default)]
    pub provides: Vec<String>,
    /// Services this plugin cannot work without.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Services this plugin uses when present.
    #[serde(default)]
    pub optional_requires: Vec<String>,
    /// HTTP routes, grouped under prefixes.
    #[serde(default)]
    pub routes: Vec<RouteGroup>,
    /// HTTP middleware.
    #[serde(default)]
    pub middleware: Vec<MiddlewareSpec>,
    /// Hook subscriptions.
    #[serde(default)]
    pub hooks: Vec<HookSpec>,
    /// Scheduled tasks.
    #[serde(default)]
    pub tasks: Vec<TaskSpec>,
    /// The plugin's config: defaults (filled in by the SDK from the config
    /// type's `Default`) and an optional JSON schema.
    #[serde(default)]
    pub config: ConfigSpec,
    /// Format adapters this plugin contributes.
    #[serde(default)]
    pub format_adapters: Vec<FormatAdapterSpec>,
    /// The OAuth provider this plugin implements, if any.
    #[serde(default)]
    pub oauth: Option<OAuthSpec>,
    /// Whether the CLI may load this plugin (cheap to initialise, no server needed).
    #[serde(default)]
    pub cli_safe: bool,
    /// For provider plugins: the upstream's wire format and the endpoints the
    /// host serves for it, converting formats and streaming on the plugin's behalf.
    #[serde(default)]
    pub provider: Option<ProviderSpec>,
}

/// What a provider plugin proxies.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ProviderSpec {
    /// The format the upstream speaks, e.g. `anthropic.messages`.
    pub native_format: String,
    /// `POST` endpoints the host answers for this provider.
    #[serde(default)]
    pub endpoints: Vec<ProviderEndpoint>,
    /// Since 1.3: the endpoints (and their native formats) come from the
    /// plugin's config, answered by [`crate::Plugin::configured_endpoints`]
    /// after `init` ([`Manifest::configured_provider`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub configured: bool,
}

/// One provider endpoint: a full path and the format clients speak on it.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ProviderEndpoint {
    /// Full path, e.g. `/claude/v1/chat/completions`.
    pub path: String,
    /// The client format on this path.
    pub format: String,
    /// Since 1.3: the upstream's format for this endpoint when it differs
    /// from the provider's `native_format` (a plugin proxying several
    /// upstreams). Absent: the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_format: Option<String>,
}

/// What a provider declared with [`Manifest::configured_provider`] serves,
/// decided from its config after `init` (plugin API 1.3; the host offers
/// capability `configured_endpoints`).
///
/// The host mounts each provider endpoint exactly like a manifest one (format
/// conversion, streaming, hooks, format adapters under its prefix) and each
/// route group like a manifest route group. `ProviderRequest::endpoint` names
/// the endpoint that was hit, so one plugin can front many upstreams.
///
/// ```
/// use ccproxy_plugin_abi::prelude::*;
/// let served = ConfiguredEndpoints::default()
///     .provider_endpoint("/local/v1/messages", "anthropic.messages", "openai.chat_completions")
///     .route("/local", [Route::new("GET", "/v1/models")]);
/// assert_eq!(served.provider_endpoints[0].native_format.as_deref(), Some("openai.chat_completions"));
/// assert_eq!(served.routes[0].full_path(&served.routes[0].routes[0]), "/local/v1/models");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ConfiguredEndpoints {
    /// Provider endpoints, each with its own native format.
    #[serde(default)]
    pub provider_endpoints: Vec<ProviderEndpoint>,
    /// Plain routes (a `/models` list, a health page per upstream).
    #[serde(default)]
    pub routes: Vec<RouteGroup>,
}

impl ConfiguredEndpoints {
    /// Adds a provider endpoint at `path` where clients speak `format`, served
    /// by an upstream speaking `native_format`.
    pub fn provider_endpoint(mut self, path: &str, format: &str, native_format: &str) -> Self {
        self.provider_endpoints.push(ProviderEndpoint {
            path: path.to_owned(),
            format: format.to_owned(),
            native_format: Some(native_format.to_owned()),
        });
        self
    }
    /// Adds routes under `prefix`.
    pub fn route(mut self, prefix: &str, routes: impl IntoIterator<Item = Route>) -> Self {
        self.routes.push(RouteGroup::new(prefix, routes));
        self
    }
    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.provider_endpoints.is_empty() && self.routes.is_empty()
    }
}

/// Routes mounted under one prefix.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct RouteGroup {
    /// Path prefix, e.g. `/claude`.
    pub prefix: String,
    /// Routes below the prefix.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Free-form tags (documentation).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl RouteGroup {
    /// `routes` under `prefix`, without tags.
    pub fn new(prefix: &str, routes: impl IntoIterator<Item = Route>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            routes: routes.into_iter().collect(),
            tags: Vec::new(),
        }
    }

    /// The full path of `route` under this group's prefix, as the host mounts
    /// it: `/hello` + `/greet` is `/hello/greet`, and `/hello` + `/` is `/hello`.
    pub fn full_path(&self, route: &Route) -> String {
        let prefix = self.prefix.trim_end_matches('/');
        let path = route.path.as_str();
        if (path.is_empty() || path == "/") && !prefix.is_empty() {
            return prefix.to_owned();
        }
        if path.starts_with('/') {
            format!("{prefix}{path}")
        } else {
            format!("{prefix}/{path}")
        }
    }
}

/// One route: a method and a path pattern below the group's prefix.
/// `{name}` matches one segment, `{*name}` the rest of the path.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Route {
    /// Method, upper case (`GET`, `POST` …), or `*` for any.
    pub method: String,
    /// Path below the prefix, starting with `/`.
    pub path: String,
    /// Since 1.2: the route needs no client token even when
    /// `security.auth_token` is set (a metrics scraper, a health probe).
    /// Older hosts ignore it and protect the route.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
}

impl Route {
    /// A route for `method` and `path`.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            public: false,
        }
    }
    /// Marks the route as needing no client token (plugin API 1.2): the
    /// default is "protected when a token is set". `/plugins/status` shows it.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }
    /// A `GET` route.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }
    /// A `POST` route.
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }
}

/// HTTP middleware declared by a plugin.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct MiddlewareSpec {
    /// Name, passed back to the plugin on each call.
    pub name: String,
    /// Layer (see [`layer`]): lower runs first on requests.
    #[serde(default = "default_layer")]
    pub layer: u16,
    /// Whether the plugin also wants to see response heads.
    #[serde(default)]
    pub on_response: bool,
}

fn default_layer() -> u16 {
    layer::APPLICATION
}

/// A hook subscription.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct HookSpec {
    /// Name, passed back to the plugin on each call.
    pub name: String,
    /// Dotted event names (see `HookEvent`).
    pub events: Vec<String>,
    /// Lower runs first; 0–1000, default 500.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Since 1.2: the bodies and stream chunks this subscription wants with
    /// its events (see [`HookBody`]). Nobody pays for what nobody asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bodies: Vec<HookBody>,
    /// Since 1.3: the top-level keys of the event data this subscription
    /// reads ([`Manifest::reads`], [`Manifest::reads_fields_of`]). When every
    /// subscriber of an event names its keys, the host may leave out members
    /// none of them reads (it does for the costly ones, such as `headers`).
    /// Empty, or holding `"*"`: every key, as subscriptions of 1.0–1.2 get.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
}

/// The entry of [`HookSpec::reads`] that stands for every key.
pub const EVERY_KEY: &str = "*";

/// The entry of [`HookSpec::reads`] that stands for no key: no event's data
/// has an empty key, so a hook whose list is only this reads nothing
/// ([`Manifest::reads_nothing`]).
pub const NO_KEY: &str = "";

/// The field names a `Deserialize` struct asks its deserializer for (after
/// `rename`), in declaration order: the keys it reads. `None` when `T` is not
/// read as a plain struct (a map, an enum, a `flatten`ed struct, a `Value`).
pub fn keys_of<T: Deserialize<'static>>() -> Option<&'static [&'static str]> {
    let mut keys = None;
    // The probe answers an error after noting the names: nothing is built.
    let _ = T::deserialize(KeyProbe { keys: &mut keys });
    keys
}

/// A deserializer that notes the field names of the struct asked of it.
struct KeyProbe<'k> {
    keys: &'k mut Option<&'static [&'static str]>,
}

impl<'de> serde::Deserializer<'de> for KeyProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.keys = (!fields.is_empty()).then_some(fields);
        Err(serde::de::Error::custom("only the field names were wanted"))
    }

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// A body or stream chunk a hook subscription can ask for (plugin API 1.2).
/// Each travels as the hook call's body, after the event data. Headers in the
/// data stay masked, but a body is as the client or upstream sent it: a hook
/// that writes it anywhere redacts what it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookBody {
    /// The client's request body, on `request.completed` and `request.failed`.
    RequestBody,
    /// The body sent upstream, on `provider.request.sent`.
    UpstreamRequestBody,
    /// The upstream's complete (not streamed) answer, on
    /// `provider.response.received`, which is then sent when the body has
    /// been read rather than when its head arrived; the event's data then
    /// carries the upstream's `headers` too (masked), streamed answers included.
    UpstreamResponseBody,
    /// Each chunk of a streamed upstream answer as it arrived, on
    /// `provider.stream.chunk` (data `side: "upstream"`).
    UpstreamChunks,
    /// Each chunk the client is sent of a streamed answer, after conversion,
    /// on `provider.stream.chunk` (data `side: "client"`).
    ClientChunks,
    /// A kind this SDK does not know (from a newer plugin); ignored.
    #[serde(other)]
    Unknown,
}

fn default_priority() -> i32 {
    500
}

/// A scheduled task.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct TaskSpec {
    /// Name, passed back to the plugin on each run.
    pub name: String,
    /// Seconds between runs.
    pub interval_seconds: f64,
    /// Whether it is scheduled at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Run once right after initialisation instead of after the first interval.
    #[serde(default)]
    pub run_at_start: bool,
    /// A config key whose value (seconds) overrides `interval_seconds`, so the
    /// user can tune the interval (`[plugins.NAME] KEY = 2.5`).
    #[serde(default)]
    pub interval_key: Option<String>,
}

fn default_true() -> bool {
    true
}

/// A plugin's config declaration.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ConfigSpec {
    /// Default values: an object whose keys are every key the plugin accepts.
    #[serde(default)]
    pub defaults: Value,
    /// An optional JSON schema for documentation and tooling.
    #[serde(default)]
    pub schema: Option<Value>,
    /// One line per key: what it does (shown by `ccproxy plugins info`).
    #[serde(default)]
    pub descriptions: Vec<(String, String)>,
}

/// A format adapter a plugin contributes.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct FormatAdapterSpec {
    /// Source format id, e.g. `openai.chat_completions`.
    pub from: String,
    /// Target format id, e.g. `anthropic.messages`.
    pub to: String,
    /// Lower wins when several plugins offer the same pair.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Since 1.2: a path such as `/v1/tiny` that the host mounts (`POST`)
    /// under every provider prefix with an endpoint in the `to` format (a
    /// core format): `/claude/v1/tiny` beside `/claude/v1/chat/completions`.
    /// Clients speak `from` there; see
    /// [`Manifest::format_adapter_endpoint`]. Absent before 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// An OAuth provider a plugin implements.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct OAuthSpec {
    /// Internal name used on the CLI, e.g. `claude-api`.
    pub provider_name: String,
    /// Display name, e.g. `Claude API`.
    pub display_name: String,
    /// Whether it uses PKCE.
    #[serde(default)]
    pub supports_pkce: bool,
    /// Whether tokens can be refreshed.
    #[serde(default)]
    pub supports_refresh: bool,
    /// Scopes it requests.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl Manifest {
    /// A system plugin called `name` at `version`, declaring nothing else yet.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            ..Self::default()
        }
    }
    /// Sets the description.
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_owned();
        self
    }
    /// Sets the kind.
    pub fn kind(mut self, kind: PluginKind) -> Self {
        self.kind = kind;
        self
    }
    /// Adds a dependency on another plugin.
    pub fn depends_on(mut self, plugin: &str) -> Self {
        self.dependencies.push(plugin.to_owned());
        self
    }
    /// Declares a provided service.
    pub fn provides(mut self, service: &str) -> Self {
        self.provides.push(service.to_owned());
        self
    }
    /// Declares a required service.
    pub fn requires(mut self, service: &str) -> Self {
        self.requires.push(service.to_owned());
        self
    }
    /// Declares an optional service.
    pub fn optional_requires(mut self, service: &str) -> Self {
        self.optional_requires.push(service.to_owned());
        self
    }
    /// Adds routes under `prefix`.
    pub fn route(mut self, prefix: &str, routes: impl IntoIterator<Item = Route>) -> Self {
        self.routes.push(RouteGroup::new(prefix, routes));
        self
    }
    /// Adds a middleware at `layer`.
    pub fn middleware(mut self, name: &str, layer: u16, on_response: bool) -> Self {
        self.middleware.push(MiddlewareSpec {
            name: name.to_owned(),
            layer,
            on_response,
        });
        self
    }
    /// Subscribes hook `name` to `events` at `priority`.
    pub fn hook<'a>(
        mut self,
        name: &str,
        events: impl IntoIterator<Item = &'a str>,
        priority: i32,
    ) -> Self {
        self.hooks.push(HookSpec {
            name: name.to_owned(),
            events: events.into_iter().map(str::to_owned).collect(),
            priority,
            bodies: Vec::new(),
            reads: Vec::new(),
        });
        self
    }
    /// Names `keys` among the top-level keys of the event data that the hook
    /// subscribed last reads (plugin API 1.3): when every subscriber of an
    /// event names its keys, the host may leave out the costly members none
    /// of them reads, such as `headers`. Call it again to add keys; a hook
    /// that reads the data whole ([`HookCall::data_json`](crate::HookCall::data_json),
    /// [`Plugin::on_hook`](crate::Plugin::on_hook)) names none.
    pub fn reads<'a>(mut self, keys: impl IntoIterator<Item = &'a str>) -> Self {
        if let Some(spec) = self.hooks.last_mut() {
            spec.reads.extend(keys.into_iter().map(str::to_owned));
        }
        self
    }
    /// Says the hook subscribed last reads none of the event data (plugin
    /// API 1.3): it acts on the event alone (its name, the request id, a
    /// body it asked for). With no key of its own it never makes the host
    /// write a member for it; hosts before 1.3 send the data whole anyway.
    pub fn reads_nothing(self) -> Self {
        self.reads([NO_KEY])
    }
    /// [`Manifest::reads`] with the fields of `T`, the struct the hook reads
    /// the data as ([`HookCall::data`](crate::HookCall::data)); every key when
    /// `T` is not a plain struct. Call it once per struct the hook reads.
    pub fn reads_fields_of<T: Deserialize<'static>>(self) -> Self {
        match keys_of::<T>() {
            Some(keys) => self.reads(keys.iter().copied()),
            None => self.reads([EVERY_KEY]),
        }
    }
    /// Subscribes hook `name` to `events` at `priority`, asking for `bodies`
    /// with them (plugin API 1.2; check `Context::has_capability("hook_bodies")`
    /// to know whether the host sends them).
    pub fn hook_with_bodies<'a>(
        mut self,
        name: &str,
        events: impl IntoIterator<Item = &'a str>,
        priority: i32,
        bodies: impl IntoIterator<Item = HookBody>,
    ) -> Self {
        self = self.hook(name, events, priority);
        if let Some(spec) = self.hooks.last_mut() {
            spec.bodies = bodies.into_iter().collect();
        }
        self
    }
    /// Schedules task `name` every `interval_seconds`.
    pub fn task(mut self, name: &str, interval_seconds: f64) -> Self {
        self.tasks.push(TaskSpec {
            name: name.to_owned(),
            interval_seconds,
            enabled: true,
            run_at_start: false,
            interval_key: None,
        });
        self
    }
    /// Schedules task `name` every `[plugins.NAME] <config_key>` seconds,
    /// `default_seconds` when the key is absent; optionally once at start.
    pub fn task_from_config(
        mut self,
        name: &str,
        config_key: &str,
        default_seconds: f64,
        run_at_start: bool,
    ) -> Self {
        self.tasks.push(TaskSpec {
            name: name.to_owned(),
            interval_seconds: default_seconds,
            enabled: true,
            run_at_start,
            interval_key: Some(config_key.to_owned()),
        });
        self
    }
    /// Declares a format adapter between `from` and `to`, converted in
    /// [`Plugin::on_format_convert`](crate::Plugin::on_format_convert); lower
    /// `priority` wins when several plugins offer the same.
    pub fn format_adapter(mut self, from: &str, to: &str, priority: i32) -> Self {
        self.format_adapters.push(FormatAdapterSpec {
            from: from.to_owned(),
            to: to.to_owned(),
            priority,
            description: String::new(),
            endpoint: None,
        });
        self
    }

    /// Declares a format adapter from the plugin's wire format `from` to the
    /// core format `to` (`anthropic.messages`, `openai.chat_completions` or
    /// `openai.responses`), and an endpoint where clients speak `from`
    /// (plugin API 1.2; the host offers capability `format_adapters`).
    ///
    /// The host mounts `POST {prefix}{endpoint}` under the prefix (the first
    /// path segment) of every provider endpoint in format `to`: converts the
    /// client's body to `to` with the plugin, runs the provider path as if
    /// the client had spoken `to`, and converts the answer back. When two
    /// plugins mount the same path, the lower `priority` wins and the other is
    /// listed under `route_conflicts` in `/plugins/status`.
    ///
    /// ```
    /// use ccproxy_plugin_abi::prelude::*;
    /// let manifest = Manifest::new("tiny", "1.0.0").format_adapter_endpoint(
    ///     "example.tiny",
    ///     "openai.chat_completions",
    ///     100,
    ///     "/v1/tiny",
    /// );
    /// assert_eq!(manifest.format_adapters[0].endpoint.as_deref(), Some("/v1/tiny"));
    /// ```
    pub fn format_adapter_endpoint(
        mut self,
        from: &str,
        to: &str,
        priority: i32,
        endpoint: &str,
    ) -> Self {
        self.format_adapters.push(FormatAdapterSpec {
            from: from.to_owned(),
            to: to.to_owned(),
            priority,
            description: String::new(),
            endpoint: Some(endpoint.to_owned()),
        });
        self
    }
    /// Declares the OAuth provider.
    pub fn oauth(mut self, spec: OAuthSpec) -> Self {
        self.oauth = Some(spec);
        self
    }
    /// Marks the plugin safe for the CLI to load.
    pub fn cli_safe(mut self) -> Self {
        self.cli_safe = true;
        self
    }
    /// Declares the provider's native format; add endpoints with
    /// [`Manifest::provider_endpoint`].
    pub fn provider(mut self, native_format: &str) -> Self {
        self.kind = PluginKind::Provider;
        self.provider = Some(ProviderSpec {
            native_format: native_format.to_owned(),
            endpoints: Vec::new(),
            configured: false,
        });
        self
    }
    /// Declares a provider whose endpoints, and the upstream format of each,
    /// come from its config (plugin API 1.3): after `init` the host asks
    /// [`crate::Plugin::configured_endpoints`] and mounts what it answers.
    /// For a proxy of any number of configured upstreams.
    ///
    /// ```
    /// use ccproxy_plugin_abi::prelude::*;
    /// let manifest = Manifest::new("upstreams", "1.0.0").configured_provider();
    /// assert!(manifest.provider.as_ref().is_some_and(|p| p.configured));
    /// ```
    pub fn configured_provider(mut self) -> Self {
        self.kind = PluginKind::Provider;
        let spec = self.provider.get_or_insert_with(ProviderSpec::default);
        spec.configured = true;
        self
    }
    /// Adds a provider endpoint at `path` where clients speak `format`.
    pub fn provider_endpoint(mut self, path: &str, format: &str) -> Self {
        let spec = self.provider.get_or_insert_with(ProviderSpec::default);
        spec.endpoints.push(ProviderEndpoint {
            path: path.to_owned(),
            format: format.to_owned(),
            native_format: None,
        });
        self
    }
    /// Documents config key `key`.
    pub fn config_key(mut self, key: &str, description: &str) -> Self {
        self.config
            .descriptions
            .push((key.to_owned(), description.to_owned()));
        self
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::HashMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Reads<'a> {
        #[serde(borrow)]
        model: Cow<'a, str>,
        #[serde(rename = "status_code")]
        status: Option<u16>,
        #[serde(default)]
        usage: Option<Value>,
    }

    /// A struct's keys are the names serde reads (renames applied); a type
    /// that is not a plain struct reads every key.
    #[test]
    fn a_hook_names_the_fields_of_the_struct_it_reads() {
        assert_eq!(
            keys_of::<Reads<'static>>(),
            Some(&["model", "status_code", "usage"][..])
        );
        assert_eq!(keys_of::<Value>(), None);
        assert_eq!(keys_of::<HashMap<String, Value>>(), None);

        let manifest = Manifest::new("reader", "0.1.0")
            .hook("early", ["request.completed"], 500)
            .hook("named", ["request.completed", "request.failed"], 500)
            .reads_fields_of::<Reads<'static>>()
            .reads(["error"])
            .hook("whole", ["request.completed"], 600)
            .reads_fields_of::<Value>()
            .hook("none", ["request.completed"], 700)
            .reads_nothing();
        assert!(manifest.hooks[0].reads.is_empty());
        assert_eq!(
            manifest.hooks[1].reads,
            ["model", "status_code", "usage", "error"]
        );
        assert_eq!(manifest.hooks[2].reads, [EVERY_KEY]);
        assert_eq!(manifest.hooks[3].reads, [NO_KEY]);
        // On the wire only when named, so a manifest without it reads as before.
        let json = serde_json::to_value(&manifest).unwrap();
        assert!(json["hooks"][0].get("reads").is_none());
        assert_eq!(json["hooks"][1]["reads"][3], "error");
    }
}
