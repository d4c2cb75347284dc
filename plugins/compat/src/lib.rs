//! # compat: any OpenAI- or Anthropic-compatible upstream, by configuration
//!
//! A provider plugin whose endpoints come from its config: each named
//! upstream (OpenRouter, a local vLLM or Ollama, a company gateway) speaks
//! one wire format, and clients reach it in any of the three under its own
//! prefix, converted by the host's formats:
//!
//! | client calls | speaks |
//! |---|---|
//! | `POST /{name}/v1/messages` | Anthropic Messages (Claude Code: `ANTHROPIC_BASE_URL=http://proxy/{name}`) |
//! | `POST /{name}/v1/chat/completions`, `/{name}/chat/completions` | OpenAI Chat Completions |
//! | `POST /{name}/v1/responses`, `/{name}/responses` | OpenAI Responses (the Codex CLI: `base_url = "http://proxy/{name}/v1"`) |
//! | `GET /{name}/v1/models`, `/{name}/models` | the configured models, or the upstream's list fetched and cached |
//! | `POST /{name}/v1/messages/count_tokens` | Anthropic's token count: an Anthropic-style upstream's own, else an estimate (characters / 4) |
//!
//! This plugin only prepares each upstream request (URL, credential,
//! headers, model rules, token caps, `stream_options.include_usage`); the
//! host sends it, converts the answer back, and reports the usage in the
//! same events as every other provider's.
//!
//! Configure (see README.md for every key):
//!
//! ```toml
//! [plugins.compat.upstreams.openrouter]
//! base_url = "https://openrouter.ai/api/v1"
//! format = "openai.chat_completions"
//! api_key_env = "OPENROUTER_API_KEY"
//! rename = { "claude-sonnet-4-5" = "anthropic/claude-sonnet-4.5" }
//!
//! [plugins.compat.upstreams.ollama]
//! base_url = "http://127.0.0.1:11434/v1"
//! format = "openai.chat_completions"
//! default_model = "qwen3-coder"
//! models = ["qwen3-coder"]
//! ```
//!
//! A credential variable that is not set does not stop the plugin: the
//! start-up log names it and the upstream, `/plugins/compat/health` is
//! degraded and says so, and that upstream's requests fail with a 401 that
//! names both, while the other upstreams keep serving.
#![forbid(unsafe_code)]

mod config;
mod credential;
mod shaping;

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use ccproxy_plugin_abi::{Value, prelude::*, serde_json};
use ccproxy_plugin_kit::{
    accounts::{AccountPool, Pick},
    mask::Secret,
};

use crate::{
    config::{AuthHeader, Config, UpstreamConfig, WireFormat},
    credential::{Credential, KeyFile},
    shaping::ModelRules,
};

/// The plugin: its upstreams, in the order of their names.
struct Compat {
    ctx: Context,
    upstreams: Vec<Upstream>,
}

/// One configured upstream, ready to use.
#[derive(Debug)]
struct Upstream {
    name: String,
    config: UpstreamConfig,
    format: WireFormat,
    auth: AuthHeader,
    credential: Credential,
    /// `api_key_envs`: several keys with failover, instead of `credential`.
    pool: Option<AccountPool<Secret>>,
    rules: ModelRules,
    /// The upstream's own model list and when it was fetched.
    fetched_models: Mutex<Option<(Instant, Vec<String>)>>,
}

/// The client formats each upstream is offered in, by path after `/{name}`.
const CLIENT_ENDPOINTS: [(&str, &str); 5] = [
    ("/v1/messages", "anthropic.messages"),
    ("/v1/chat/completions", "openai.chat_completions"),
    ("/v1/responses", "openai.responses"),
    ("/chat/completions", "openai.chat_completions"),
    ("/responses", "openai.responses"),
];

/// The plain routes of each upstream, after `/{name}`.
const MODEL_ROUTES: [&str; 2] = ["/v1/models", "/models"];

/// Anthropic's token count, after `/{name}` (Claude Code asks for it).
const COUNT_TOKENS_ROUTE: &str = "/v1/messages/count_tokens";

/// The fields of a Messages request that a token count takes.
const COUNTED_FIELDS: [&str; 6] = [
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
];

impl Upstream {
    fn new(name: &str, config: UpstreamConfig) -> Result<Self, PluginError> {
        let section = format!("plugins.compat.upstreams.{name}");
        config::check_name(name).map_err(PluginError::invalid)?;
        let Some(format) = config.format else {
            return Err(PluginError::invalid(format!(
                "{section}.format is missing: openai.chat_completions, openai.responses or anthropic.messages"
            )));
        };
        let base = config.base();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(PluginError::invalid(format!(
                "{section}.base_url must be an http:// or https:// URL, got {:?}",
                config.base_url
            )));
        }
        for (header, value) in &config.headers {
            let valid_name = !header.is_empty()
                && header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !valid_name || value.contains(['\r', '\n']) {
                return Err(PluginError::invalid(format!(
                    "{section}.headers: {header:?} is not a valid header"
                )));
            }
        }
        let credential = match (
            config.api_key_env.trim().is_empty(),
            config.api_key_file.trim().is_empty(),
        ) {
            (true, true) => Credential::None,
            (false, true) => {
                let variable = config.api_key_env.trim().to_owned();
                let key = std::env::var(&variable)
                    .ok()
                    .filter(|key| !key.trim().is_empty())
                    .map(|key| ccproxy_plugin_kit::mask::Secret::new(key.trim()));
                Credential::Env { variable, key }
            }
            (true, false) => Credential::File(KeyFile::new(credential::expand_home(
                config.api_key_file.trim(),
            ))),
            (false, false) => {
                return Err(PluginError::invalid(format!(
                    "{section}: set api_key_env or api_key_file, not both"
                )));
            }
        };
        let mut credential = credential;
        let pool = if config.api_key_envs.is_empty() {
            None
        } else {
            if !matches!(credential, Credential::None) {
                return Err(PluginError::invalid(format!(
                    "{section}: set api_key_envs, or api_key_env / api_key_file, not both"
                )));
            }
            let mut keys: Vec<(String, Secret)> = Vec::new();
            for variable in &config.api_key_envs {
                let variable = variable.trim();
                if keys.iter().any(|(seen, _)| seen == variable) {
                    return Err(PluginError::invalid(format!(
                        "{section}.api_key_envs: {variable} is listed twice"
                    )));
                }
                // As with api_key_env, an unset variable does not stop the
                // plugin: that key is left out, and said so.
                match std::env::var(variable)
                    .ok()
                    .filter(|key| !key.trim().is_empty())
                {
                    Some(key) => keys.push((variable.to_owned(), Secret::new(key.trim()))),
                    None => warn!(
                        "{section}.api_key_envs: environment variable {variable} is not set or empty; that key is left out"
                    ),
                }
            }
            if keys.is_empty() {
                // No key at all: requests get the 401 naming the variables.
                credential = Credential::Env {
                    variable: config.api_key_envs.join(", "),
                    key: None,
                };
                None
            } else {
                Some(AccountPool::new(keys, config.failover.clone()))
            }
        };
        let rules = ModelRules::new(name, &config)?;
        Ok(Self {
            name: name.to_owned(),
            auth: config.auth.unwrap_or_else(|| format.default_auth()),
            format,
            credential,
            pool,
            rules,
            config,
            fetched_models: Mutex::new(None),
        })
    }

    /// `upstream NAME (URL)`, the way every message names it.
    fn describe(&self) -> String {
        format!("upstream {} ({})", self.name, self.config.base())
    }

    /// The key, or a 401 naming the upstream and where the key should be.
    fn key(&self) -> Result<Option<ccproxy_plugin_kit::mask::Secret>, PluginError> {
        self.credential.key().map_err(|missing| {
            PluginError::unauthorized(format!("compat {}: {missing}", self.describe()))
        })
    }

    /// The headers of every request to this upstream: the credential,
    /// `anthropic-version` for Anthropic-style ones, the configured extras.
    fn headers(&self, client: &Headers, stream: bool) -> Result<Headers, PluginError> {
        let key = match &self.pool {
            // Outside the provider path (counts, model lists): the account a
            // message would use now.
            Some(pool) => match pool.pick(None) {
                Pick::Use { account, .. } => Some(account.credential().clone()),
                Pick::Exhausted { message, .. } => {
                    return Err(PluginError::new(
                        ErrorKind::RateLimited,
                        format!("compat {}: {message}", self.describe()),
                    ));
                }
            },
            None => self.key()?,
        };
        self.headers_with(client, stream, key)
    }

    /// [`Upstream::headers`] with `key`.
    fn headers_with(
        &self,
        client: &Headers,
        stream: bool,
        key: Option<Secret>,
    ) -> Result<Headers, PluginError> {
        let mut headers = Headers::default();
        headers.set("content-type", "application/json");
        if stream {
            headers.set("accept", "text/event-stream");
        }
        if self.format == WireFormat::Messages {
            let version = client
                .get("anthropic-version")
                .map(str::trim)
                .filter(|version| !version.is_empty())
                .unwrap_or(&self.config.anthropic_version);
            headers.set("anthropic-version", version);
            if let Some(betas) = client
                .get("anthropic-beta")
                .filter(|b| !b.trim().is_empty())
            {
                headers.set("anthropic-beta", betas);
            }
        }
        if let Some(key) = key {
            match self.auth {
                AuthHeader::Bearer => {
                    headers.set("authorization", format!("Bearer {}", key.expose()));
                }
                AuthHeader::XApiKey => headers.set("x-api-key", key.expose()),
                AuthHeader::None => {}
            }
        }
        for (name, value) in &self.config.headers {
            headers.set(name, value.as_str());
        }
        Ok(headers)
    }

    /// The upstream request for `req`, whose body is in this upstream's
    /// format already: shaped, with this upstream's URL and headers.
    fn prepare(&self, req: ProviderRequest) -> Result<UpstreamRequest, PluginError> {
        // With several keys: note the previous attempt's failure, pick the next.
        let mut account = None;
        if let Some(pool) = &self.pool {
            let previous = req
                .attempt
                .as_ref()
                .and_then(|attempt| attempt.previous_account.clone());
            if let (Some(attempt), Some(label)) = (&req.attempt, &previous) {
                let retry_after = attempt.retry_after_ms.map(Duration::from_millis);
                pool.report_failure(label, attempt.previous_status, retry_after);
                warn!(
                    "compat {}: key {label} failed with status {}; trying the next",
                    self.describe(),
                    attempt.previous_status
                );
            }
            match pool.pick(previous.as_deref()) {
                Pick::Use {
                    account: chosen,
                    delay,
                } => {
                    account = Some((
                        pool,
                        chosen.label().to_owned(),
                        chosen.credential().clone(),
                        delay,
                    ));
                }
                Pick::Exhausted {
                    retry_after,
                    message,
                } => {
                    return Ok(UpstreamRequest::exhausted(
                        format!("compat {}: {message}", self.describe()),
                        retry_after,
                    ));
                }
            }
        }
        let body = ccproxy_plugin_kit::json::request_object(&req.body)?;
        let shaped = shaping::shape(body, &self.config, self.format, &self.rules, req.stream);
        let headers = match &account {
            Some((_, _, key, _)) => {
                self.headers_with(&req.headers, req.stream, Some(key.clone()))?
            }
            None => self.headers(&req.headers, req.stream)?,
        };
        debug!(
            "request {}: compat {} model {}",
            req.request_id,
            self.describe(),
            shaped
                .body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
        );
        Ok(UpstreamRequest {
            method: "POST".to_owned(),
            url: format!("{}{}", self.config.base(), self.format.request_path()),
            headers,
            body: serde_json::to_vec(&shaped.body)?,
            stream: req.stream,
            model_alias: shaped.model_alias,
            timeout: self.timeout(),
            ..UpstreamRequest::default()
        }
        .with_plan(account))
    }

    /// `POST /{name}/v1/messages/count_tokens`: an Anthropic-style upstream
    /// counts (the request's countable fields, its model mapped, sent with
    /// this upstream's credential); for the others an estimate.
    async fn count_tokens(&self, ctx: &Context, req: &Request) -> Result<Response, PluginError> {
        let mut body = ccproxy_plugin_kit::json::request_object(&req.body)?;
        if self.format != WireFormat::Messages {
            return Ok(Response::json(
                200,
                &json!({"input_tokens": estimate_tokens(&body)}),
            ));
        }
        body.retain(|key, _| COUNTED_FIELDS.contains(&key.as_str()));
        let client_model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let model = self.rules.resolve(&self.config, client_model);
        body.insert("model".to_owned(), Value::String(model));
        let url = format!("{}{COUNT_TOKENS_ROUTE}", self.config.base());
        let answer = ctx
            .http(HttpRequest {
                method: "POST".to_owned(),
                url: url.clone(),
                headers: self.headers(&req.headers, false)?,
                body: serde_json::to_vec(&body)?,
                timeout: self.timeout(),
            })
            .await
            .map_err(|error| {
                PluginError::upstream(format!(
                    "compat {}: the token count {url} failed: {}",
                    self.describe(),
                    error.message()
                ))
            })?;
        let is_json = serde_json::from_slice::<Value>(&answer.body).is_ok_and(|v| v.is_object());
        if !is_json {
            let text = String::from_utf8_lossy(&answer.body);
            return Err(PluginError::upstream(format!(
                "compat {}: the token count {url} answered {} with no JSON: {}",
                self.describe(),
                answer.status,
                text.chars().take(300).collect::<String>().trim()
            )));
        }
        let mut response = Response::new(answer.status, answer.body);
        response.headers.set("content-type", "application/json");
        Ok(response)
    }

    fn timeout(&self) -> Option<Duration> {
        (self.config.timeout_seconds > 0).then(|| Duration::from_secs(self.config.timeout_seconds))
    }

    /// The models to list: the configured ones, else the upstream's own,
    /// fetched at most once per `models_cache_seconds`.
    async fn models(&self, ctx: &Context) -> Result<Vec<String>, PluginError> {
        if !self.config.models.is_empty() {
            return Ok(self.config.models.clone());
        }
        let max_age = Duration::from_secs(self.config.models_cache_seconds);
        if let Some((fetched, models)) = self
            .fetched_models
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && fetched.elapsed() < max_age
        {
            return Ok(models.clone());
        }
        let url = format!("{}{}", self.config.base(), self.format.models_path());
        let mut headers = self.headers(&Headers::default(), false)?;
        headers.remove("content-type");
        let answer = ctx
            .http(HttpRequest {
                method: "GET".to_owned(),
                url: url.clone(),
                headers,
                body: Vec::new(),
                timeout: self.timeout(),
            })
            .await
            .map_err(|error| {
                PluginError::upstream(format!(
                    "compat {}: the model list {url} could not be fetched: {}",
                    self.describe(),
                    error.message()
                ))
            })?;
        if answer.status >= 400 {
            let text = String::from_utf8_lossy(&answer.body);
            return Err(PluginError::upstream(format!(
                "compat {}: the model list {url} answered {}: {}",
                self.describe(),
                answer.status,
                text.chars().take(300).collect::<String>().trim()
            )));
        }
        let listed: Value = serde_json::from_slice(&answer.body).map_err(|error| {
            PluginError::upstream(format!(
                "compat {}: the model list {url} is not JSON: {error}",
                self.describe()
            ))
        })?;
        // OpenAI and Anthropic both answer `{"data": [{"id": …}, …]}`;
        // Ollama's native `/api/tags` is not asked for.
        let models: Vec<String> = listed
            .get("data")
            .and_then(Value::as_array)
            .map(|cards| {
                cards
                    .iter()
                    .filter_map(|card| card.get("id").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        *self
            .fetched_models
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), models.clone()));
        Ok(models)
    }

    /// What `/plugins/compat/health` says of this upstream: never the key,
    /// at most its masked form.
    fn health(&self) -> (bool, Value) {
        let mut details = json!({
            "base_url": self.config.base(),
            "format": self.format.as_str(),
            "credential": self.credential.source(),
        });
        if let Some(pool) = &self.pool {
            details["credential"] = json!("api_key_envs");
            details["accounts"] = pool.health(|key| json!({"key": key.masked()}));
            let ready = pool.available() > 0;
            if !ready {
                details["problem"] = json!("no key can take a request now");
            }
            details["ready"] = json!(ready);
            return (ready, details);
        }
        let ready = match self.credential.key() {
            Ok(Some(key)) => {
                details["key"] = json!(key.masked());
                true
            }
            Ok(None) => true,
            Err(missing) => {
                details["problem"] = json!(missing);
                false
            }
        };
        details["ready"] = json!(ready);
        (ready, details)
    }
}

/// The account of one attempt: its pool, label, key and wait.
type Account<'a> = (&'a AccountPool<Secret>, String, Secret, Option<Duration>);

/// Names an attempt's account and asks for retries across the pool.
trait WithPlan {
    fn with_plan(self, account: Option<Account<'_>>) -> Self;
}

impl WithPlan for UpstreamRequest {
    fn with_plan(self, account: Option<Account<'_>>) -> Self {
        match account {
            Some((pool, label, _, delay)) => self
                .with_account(label)
                .with_retries(pool.max_attempts())
                .after(delay.unwrap_or_default()),
            None => self,
        }
    }
}

/// A model card both OpenAI and Anthropic clients can read.
fn model_card(id: &str, owner: &str) -> Value {
    json!({
        "id": id,
        "object": "model",
        "type": "model",
        "display_name": id,
        "created": 0,
        "created_at": "1970-01-01T00:00:00Z",
        "owned_by": owner,
    })
}

/// An error as Anthropic writes one, for the token count (its clients are
/// Anthropic SDKs).
fn anthropic_error(error: &PluginError) -> Response {
    let kind = match error.kind() {
        ErrorKind::Invalid => "invalid_request_error",
        ErrorKind::Unauthorized => "authentication_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::Timeout => "timeout_error",
        _ => "api_error",
    };
    Response::json(
        error.kind().http_status(),
        &json!({"type": "error", "error": {"type": kind, "message": error.message()}}),
    )
}

/// About four characters of text per token: the estimate for an upstream
/// that cannot count (OpenAI-style servers have no such endpoint).
fn estimate_tokens(request: &serde_json::Map<String, Value>) -> u64 {
    fn characters(value: &Value) -> u64 {
        match value {
            Value::String(text) => text.chars().count() as u64,
            Value::Array(items) => items.iter().map(characters).sum(),
            Value::Object(map) => map.values().map(characters).sum(),
            _ => 0,
        }
    }
    let total: u64 = ["messages", "system", "tools"]
        .iter()
        .filter_map(|key| request.get(*key))
        .map(characters)
        .sum();
    total.div_ceil(4).max(1)
}

/// An error in OpenAI's shape, which both model-list readers accept.
fn error_response(error: &PluginError) -> Response {
    let kind = match error.kind() {
        ErrorKind::Unauthorized => "authentication_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::Invalid => "invalid_request_error",
        _ => "server_error",
    };
    Response::json(
        error.kind().http_status(),
        &json!({"error": {"message": error.message(), "type": kind, "param": null, "code": null}}),
    )
}

impl Compat {
    /// The upstream whose prefix starts `path` (`/{name}/…`).
    fn upstream_of(&self, path: &str) -> Option<&Upstream> {
        let name = path.strip_prefix('/')?.split('/').next()?;
        self.upstreams.iter().find(|upstream| upstream.name == name)
    }
}

impl Plugin for Compat {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("compat", env!("CARGO_PKG_VERSION"))
            .description("Any OpenAI- or Anthropic-compatible upstream (OpenRouter, vLLM, Ollama, a gateway) by configuration, each under /{name}/ in every client format")
            .configured_provider()
            .config_key("upstreams", "the upstreams by name, each served under /{name}/: [plugins.compat.upstreams.NAME]")
            .config_key("upstreams.NAME.base_url", "the API root as the format's SDKs take it: http://host/v1 for OpenAI-style, https://host for Anthropic-style")
            .config_key("upstreams.NAME.format", "openai.chat_completions, openai.responses or anthropic.messages")
            .config_key("upstreams.NAME.api_key_env", "environment variable holding the API key (read at start-up)")
            .config_key("upstreams.NAME.api_key_file", "file holding the API key (its first line; read again when it changes)")
            .config_key("upstreams.NAME.api_key_envs", "several API keys with failover: the environment variables holding them, in priority order (instead of api_key_env/api_key_file)")
            .config_key("upstreams.NAME.failover", "how api_key_envs are picked and rested: {strategy = failover|round_robin, cooldown_seconds = 60, max_failures_before_disable = 2, failure_status_codes = [401, 403], cooldown_status_codes = [429, 529], max_retry_wait_seconds = 0, fallback_model = \"\"}")
            .config_key("upstreams.NAME.auth", "bearer, x-api-key or none; default: bearer for OpenAI-style, x-api-key for Anthropic-style")
            .config_key("upstreams.NAME.anthropic_version", "anthropic-version sent to an Anthropic-style upstream when the client sends none")
            .config_key("upstreams.NAME.headers", "headers added to every request")
            .config_key("upstreams.NAME.timeout_seconds", "give up on the upstream after this long without data; 0: http.read_timeout_seconds")
            .config_key("upstreams.NAME.models", "the models it serves; empty: its /models list, fetched and cached")
            .config_key("upstreams.NAME.models_cache_seconds", "how long a fetched model list is kept")
            .config_key("upstreams.NAME.rename", "exact model renames, client id = upstream id")
            .config_key("upstreams.NAME.model_mappings", "model rewrite rules {kind = exact|prefix|suffix|regex, pattern, target, ignore_case}, first match wins, after rename")
            .config_key("upstreams.NAME.default_model", "the model sent when the client names none, or one not in models")
            .config_key("upstreams.NAME.max_tokens", "output token caps by upstream model id (\"*\": every model)")
            .config_key("upstreams.NAME.drop_params", "top-level request parameters removed before sending (model is never removed)")
            .config_key("upstreams.NAME.default_max_tokens", "max_tokens for an Anthropic-style upstream when the request has none")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for (name, upstream) in config.upstreams {
            upstreams.push(Upstream::new(&name, upstream)?);
        }
        if upstreams.is_empty() {
            info!(
                "compat: no upstreams configured; add [plugins.compat.upstreams.NAME] to serve one"
            );
        }
        for upstream in &upstreams {
            match upstream.credential.key() {
                Ok(_) => info!(
                    "compat: {} ready: {}, served at /{}/v1/, credential: {}",
                    upstream.describe(),
                    upstream.format.as_str(),
                    upstream.name,
                    upstream.credential.source()
                ),
                // Internal: a warning, not a failed start, so one upstream's
                // missing key leaves the others (and the server) serving.
                Err(missing) => warn!(
                    "compat: {}: {missing}; its requests fail with 401 until it is set (health: degraded)",
                    upstream.describe()
                ),
            }
        }
        Ok(Self { ctx, upstreams })
    }

    fn provider_retries(&self) -> bool {
        // Upstreams with several keys fail over between them.
        self.upstreams
            .iter()
            .any(|upstream| upstream.pool.is_some())
    }

    fn configured_endpoints(&self) -> ConfiguredEndpoints {
        let mut served = ConfiguredEndpoints::default();
        for upstream in &self.upstreams {
            let prefix = format!("/{}", upstream.name);
            for (path, client) in CLIENT_ENDPOINTS {
                served = served.provider_endpoint(
                    &format!("{prefix}{path}"),
                    client,
                    upstream.format.as_str(),
                );
            }
            let routes = MODEL_ROUTES
                .map(Route::get)
                .into_iter()
                .chain([Route::post(COUNT_TOKENS_ROUTE)]);
            served = served.route(&prefix, routes);
        }
        served
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        let path = req.path.trim_end_matches('/');
        let Some(upstream) = self.upstream_of(path) else {
            return Err(PluginError::not_found(format!(
                "compat has no upstream for {path}"
            )));
        };
        let rest = &path[upstream.name.len() + 1..];
        match (req.method.as_str(), rest) {
            ("GET", rest) if MODEL_ROUTES.contains(&rest) => {
                match upstream.models(&self.ctx).await {
                    Ok(models) => {
                        let data: Vec<Value> = models
                            .iter()
                            .map(|id| model_card(id, &upstream.name))
                            .collect();
                        Ok(Response::json(
                            200,
                            &json!({"object": "list", "data": data, "has_more": false}),
                        ))
                    }
                    Err(error) => Ok(error_response(&error)),
                }
            }
            ("POST", COUNT_TOKENS_ROUTE) => Ok(upstream
                .count_tokens(&self.ctx, &req)
                .await
                .unwrap_or_else(|error| anthropic_error(&error))),
            (method, _) => Err(PluginError::not_found(format!(
                "compat has no route {method} {path}"
            ))),
        }
    }

    async fn on_prepare_upstream(
        &self,
        req: ProviderRequest,
    ) -> Result<UpstreamRequest, PluginError> {
        let upstream = self.upstream_of(&req.endpoint).ok_or_else(|| {
            PluginError::not_found(format!(
                "compat has no upstream for endpoint {}",
                req.endpoint
            ))
        })?;
        upstream.prepare(req)
    }

    async fn on_health(&self) -> Health {
        let mut all_ready = true;
        let mut details = serde_json::Map::new();
        for upstream in &self.upstreams {
            let (ready, upstream_details) = upstream.health();
            all_ready &= ready;
            details.insert(upstream.name.clone(), upstream_details);
        }
        let status = if all_ready {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded
        };
        Health::with(status, json!({"upstreams": details}))
    }
}

export_plugin!(Compat);

#[cfg(test)]
mod tests;
