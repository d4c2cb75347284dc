//! # copilot: GitHub Copilot as a provider
//!
//! The Copilot API speaks OpenAI Chat Completions; the host converts the
//! other formats on this plugin's behalf, as the original does:
//!
//! | client calls | speaks | upstream |
//! |---|---|---|
//! | `POST /copilot/v1/chat/completions` | OpenAI Chat Completions | `{api}/chat/completions`, passthrough |
//! | `POST /copilot/v1/messages` | Anthropic Messages | converted to Chat Completions |
//! | `POST /copilot/v1/responses` | OpenAI Responses | converted to Chat Completions |
//!
//! plus plain routes of its own: `POST /copilot/v1/embeddings` and `GET
//! /copilot/v1/models` (forwarded to the Copilot API), `GET /copilot/usage`
//! (GitHub's `copilot_internal/user`: plan and quotas), `GET /copilot/token`
//! (the Copilot token's expiry and API base, the token masked) and `GET
//! /copilot/health`.
//!
//! Credentials come from the `oauth.copilot` service of the `oauth_copilot`
//! plugin (`ccproxy auth login copilot`, or a GitHub token in
//! `COPILOT_GITHUB_TOKEN`, `GH_TOKEN` or `GITHUB_TOKEN`): the short-lived
//! Copilot token, sent as `authorization: Bearer`, with the Copilot editor
//! plugin's headers (`api_headers`). The client's own credentials are never
//! forwarded. Several GitHub accounts with failover:
//! `[[plugins.copilot.accounts]]` and `[plugins.copilot.failover]` (see
//! `accounts.rs` and the README's "Several accounts").
//!
//! Where requests go: the Copilot API base the token exchange names
//! (`endpoints.api`, e.g. `https://api.individual.githubcopilot.com`), unless
//! `base_url` is set to something other than its default
//! `https://api.githubcopilot.com` (which is also used when the exchange
//! names none).
//!
//! ```toml
//! [plugins.copilot]
//! base_url = "https://api.githubcopilot.com"
//! ```
//!
//! and expect this line in the proxy's log at startup:
//!
//! ```text
//! INFO plugin: copilot ready: upstream the Copilot token's endpoints.api (else https://api.githubcopilot.com) plugin="copilot"
//! ```
#![forbid(unsafe_code)]

mod accounts;

use std::{collections::BTreeMap, time::Duration};

use ccproxy_plugin_abi::{prelude::*, serde_json};
use ccproxy_plugin_kit::{
    accounts::{AccountPool, PoolSettings},
    mapping::{MappingRule, ModelMapper},
    mask::Secret,
};
use serde::{Deserialize, Serialize};

/// The service of the `oauth_copilot` plugin.
const OAUTH_SERVICE: &str = "oauth.copilot";
/// The default (and fallback) Copilot API.
const DEFAULT_BASE_URL: &str = "https://api.githubcopilot.com";
/// Drops the cached Copilot token when the Copilot API refuses it.
const TOKEN_REFUSED_HOOK: &str = "copilot_token_refused";
const LOGIN_HINT: &str = "run `ccproxy auth login copilot`, or set COPILOT_GITHUB_TOKEN to a GitHub token with Copilot access";

/// `[plugins.copilot]`, with the original's defaults (its `CopilotConfig`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// The Copilot API. Left at the default, the token exchange's
    /// `endpoints.api` is used when it names one.
    base_url: String,
    /// individual, business or enterprise; informational, as in the original
    /// (the API base comes from the token exchange).
    account_type: String,
    /// Timeout of the plain routes' upstream requests (embeddings, models);
    /// chat requests use the host's `http.read_timeout_seconds`.
    request_timeout: u64,
    /// Headers sent with every Copilot API request (the Copilot editor
    /// plugin's); names are case-insensitive.
    api_headers: BTreeMap<String, String>,
    /// Model rewrite rules, first match wins; none by default, as in the
    /// original (Copilot serves GPT, Claude and Gemini models by their ids).
    model_mappings: Vec<MappingRule>,
    /// Several GitHub accounts with failover, in priority order; empty: the
    /// one login of `oauth_copilot`.
    accounts: Vec<accounts::AccountConfig>,
    /// How accounts are picked and rested (`kit::accounts`' settings).
    failover: PoolSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            account_type: "individual".to_owned(),
            request_timeout: 30,
            api_headers: [
                ("copilot-integration-id", "vscode-chat"),
                ("editor-version", "vscode/1.85.0"),
                ("editor-plugin-version", "copilot-chat/0.26.7"),
                ("user-agent", "GitHubCopilotChat/0.26.7"),
                ("x-github-api-version", "2025-04-01"),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
            model_mappings: Vec::new(),
            accounts: Vec::new(),
            failover: PoolSettings::default(),
        }
    }
}

/// The `access_token` answer of [`OAUTH_SERVICE`].
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Secret,
    #[serde(default)]
    api_base: Option<String>,
}

/// What one upstream request is sent with.
struct Credential {
    token: Secret,
    base: String,
}

/// The keys of `provider.response.received` the hook reads.
#[derive(Deserialize)]
struct ResponseReceived<'a> {
    #[serde(default, borrow)]
    provider: Option<&'a str>,
    #[serde(default)]
    status_code: Option<u16>,
}

/// The plugin.
struct Copilot {
    ctx: Context,
    config: Config,
    mapper: ModelMapper,
    /// `[[plugins.copilot.accounts]]`, when configured: used instead of the
    /// one login.
    pool: Option<AccountPool<accounts::AccountCredential>>,
}

/// An OpenAI-shaped error answer.
fn openai_error(error: &PluginError) -> Response {
    let (kind, code) = match error.kind() {
        ErrorKind::Unauthorized => ("authentication_error", "invalid_api_key"),
        ErrorKind::Forbidden => ("permission_error", "copilot_not_enabled"),
        ErrorKind::Invalid => ("invalid_request_error", "invalid_request"),
        ErrorKind::NotFound => ("invalid_request_error", "not_found"),
        _ => ("api_error", "upstream_error"),
    };
    Response::json(
        error.kind().http_status(),
        &json!({"error": {"message": error.message(), "type": kind, "code": code}}),
    )
}

/// An `oauth.copilot` error, saying what to do when the service is missing.
fn service_error(error: PluginError) -> PluginError {
    match error.kind() {
        ErrorKind::Unauthorized | ErrorKind::Forbidden | ErrorKind::Upstream => error,
        ErrorKind::NotFound | ErrorKind::Unavailable | ErrorKind::Unsupported => {
            PluginError::unauthorized(format!(
                "{OAUTH_SERVICE} is not available: enable the oauth_copilot plugin ({}); then {LOGIN_HINT}",
                error.message()
            ))
        }
        _ => error,
    }
}

impl Copilot {
    fn configured_base(&self) -> String {
        self.config.base_url.trim_end_matches('/').to_owned()
    }

    /// The Copilot token and the API base it goes to. Errors say what to do:
    /// not logged in or the token refused (401), no Copilot access (403).
    async fn credential(&self) -> Result<Credential, PluginError> {
        let answer = self
            .ctx
            .call_service(OAUTH_SERVICE, "access_token", json!({}))
            .await
            .map_err(service_error)?;
        self.credential_of(answer)
    }

    /// The credential of an attempt: with accounts, the one the pool picks
    /// after the previous attempt (`Some((label, wait))`); else the login's.
    /// `Ok(Err(..))`: every account rests or is disabled.
    async fn attempt_credential(
        &self,
        attempt: Option<&ProviderAttempt>,
    ) -> Result<
        Result<(Credential, Option<(String, Duration)>), (String, Option<Duration>)>,
        PluginError,
    > {
        let Some(pool) = &self.pool else {
            return Ok(Ok((self.credential().await?, None)));
        };
        match accounts::choose(pool, &self.ctx, OAUTH_SERVICE, attempt)
            .await
            .map_err(service_error)?
        {
            Ok(chosen) => Ok(Ok((
                self.credential_of(chosen.credential)?,
                Some((chosen.label, chosen.delay.unwrap_or_default())),
            ))),
            Err(exhausted) => Ok(Err(exhausted)),
        }
    }

    /// The credential in an `access_token` answer.
    fn credential_of(&self, answer: Value) -> Result<Credential, PluginError> {
        let answer: TokenAnswer = serde_json::from_value(answer).map_err(|error| {
            PluginError::internal(format!(
                "{OAUTH_SERVICE} answered access_token in an unknown shape: {error}"
            ))
        })?;
        if answer.access_token.is_empty() {
            return Err(PluginError::unauthorized(format!(
                "{OAUTH_SERVICE} answered without a Copilot token; {LOGIN_HINT}"
            )));
        }
        let configured = self.configured_base();
        let base = match answer.api_base.filter(|api| !api.is_empty()) {
            Some(api) if configured == DEFAULT_BASE_URL => api.trim_end_matches('/').to_owned(),
            _ => configured,
        };
        Ok(Credential {
            token: answer.access_token,
            base,
        })
    }

    fn headers(&self, credential: &Credential, request_id: &str, stream: bool) -> Headers {
        let mut headers = Headers::default();
        for (name, value) in &self.config.api_headers {
            headers.set(&name.to_ascii_lowercase(), value.clone());
        }
        headers.set(
            "authorization",
            format!("Bearer {}", credential.token.expose()),
        );
        headers.set("content-type", "application/json");
        headers.set(
            "accept",
            if stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        );
        headers.set("openai-intent", "conversation-panel");
        headers.set("x-request-id", request_id.to_owned());
        headers
    }

    /// Forwards a plain route's request to `{api}{path}`.
    async fn forward(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        request_id: &str,
    ) -> Result<Response, PluginError> {
        // With accounts, the one a chat request would use now (no failover).
        let credential = match self.attempt_credential(None).await? {
            Ok((credential, _)) => credential,
            Err((message, _)) => return Err(PluginError::new(ErrorKind::RateLimited, message)),
        };
        let url = format!("{}{path}", credential.base);
        let mut request = if method == "GET" {
            HttpRequest::get(url)
        } else {
            HttpRequest::post(url, body)
        };
        request.headers = self.headers(&credential, request_id, false);
        request.timeout = Some(Duration::from_secs(self.config.request_timeout.max(1)));
        let response = self.ctx.http(request).await.map_err(|error| {
            PluginError::upstream(format!(
                "the Copilot API at {} could not be reached: {}",
                credential.base,
                error.message()
            ))
        })?;
        let mut answer = Response::new(response.status, response.body);
        answer.headers.set("content-type", "application/json");
        Ok(answer)
    }

    async fn service_json(&self, method: &str) -> Result<Response, PluginError> {
        let answer = self
            .ctx
            .call_service(OAUTH_SERVICE, method, json!({}))
            .await?;
        Ok(Response::json(200, &answer))
    }

    async fn health_details(&self) -> (HealthStatus, Value) {
        match self
            .ctx
            .call_service(OAUTH_SERVICE, "status", json!({}))
            .await
        {
            Ok(status) => {
                let logged_in = status["logged_in"] == true;
                let details = json!({
                    "base_url": self.configured_base(),
                    "api_base": status["api_base"],
                    "account_type": self.config.account_type,
                    "credentials": status["source"],
                    "copilot_token": status["copilot_token"],
                    "reason": if logged_in { Value::Null } else { json!(format!("not logged in: {LOGIN_HINT}")) },
                });
                (
                    if logged_in {
                        HealthStatus::Healthy
                    } else {
                        HealthStatus::Degraded
                    },
                    details,
                )
            }
            Err(error) => (
                HealthStatus::Degraded,
                json!({"base_url": self.configured_base(), "reason": format!("{OAUTH_SERVICE}: {}", error.message())}),
            ),
        }
    }
}

impl Plugin for Copilot {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("copilot", env!("CARGO_PKG_VERSION"))
            .description("GitHub Copilot through its Chat Completions API, with the Copilot token of the oauth_copilot plugin")
            .provider("openai.chat_completions")
            .provider_endpoint("/copilot/v1/chat/completions", "openai.chat_completions")
            .provider_endpoint("/copilot/v1/messages", "anthropic.messages")
            .provider_endpoint("/copilot/v1/responses", "openai.responses")
            .route(
                "/copilot",
                [
                    Route::post("/v1/embeddings"),
                    Route::get("/v1/models"),
                    Route::get("/usage"),
                    Route::get("/token"),
                    Route::get("/health"),
                ],
            )
            .optional_requires(OAUTH_SERVICE)
            .hook(TOKEN_REFUSED_HOOK, ["provider.response.received"], 500)
            .reads_fields_of::<ResponseReceived<'static>>()
            .config_key("base_url", "the Copilot API; left at its default, the API base the token exchange names (endpoints.api) is used")
            .config_key("account_type", "individual, business or enterprise (informational; the API base comes from the token exchange)")
            .config_key("request_timeout", "timeout in seconds of the embeddings and models requests")
            .config_key("api_headers", "headers sent with every Copilot API request (the Copilot editor plugin's)")
            .config_key("accounts", "several GitHub accounts with failover, [[plugins.copilot.accounts]] {label, github_token | github_token_env | oauth = true}, in priority order, each with its own Copilot token; empty: the oauth_copilot login (or COPILOT_GITHUB_TOKEN, GH_TOKEN, GITHUB_TOKEN)")
            .config_key("failover", "how accounts are picked and rested: {strategy = failover|round_robin, cooldown_seconds = 60, max_failures_before_disable = 2, failure_status_codes = [401, 403], cooldown_status_codes = [429, 529], max_retry_wait_seconds = 0, fallback_model = \"\" (the model every retry asks for)}")
            .config_key("model_mappings", "model rewrite rules {kind = exact|prefix|suffix|regex, pattern, target, ignore_case}, first match wins; none by default")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        if !(config.base_url.starts_with("https://") || config.base_url.starts_with("http://")) {
            return Err(PluginError::invalid(format!(
                "plugins.copilot.base_url must be an http(s) URL, not {:?}",
                config.base_url
            )));
        }
        let mapper = ModelMapper::new("copilot", &config.model_mappings)?;
        let pool = accounts::pool(&config.accounts, &config.failover)?;
        if let Some(pool) = &pool {
            info!(
                "copilot: {} GitHub accounts ({:?})",
                pool.len(),
                config.failover.strategy
            );
        }
        let plugin = Self {
            ctx,
            config,
            mapper,
            pool,
        };
        if plugin.configured_base() == DEFAULT_BASE_URL {
            info!(
                "copilot ready: upstream the Copilot token's endpoints.api (else {DEFAULT_BASE_URL})"
            );
        } else {
            info!("copilot ready: upstream {}", plugin.configured_base());
        }
        Ok(plugin)
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        let path = req.path.trim_end_matches('/');
        let answer = match (req.method.as_str(), path) {
            ("POST", "/copilot/v1/embeddings") => {
                self.forward("POST", "/embeddings", req.body, &req.request_id)
                    .await
            }
            ("GET", "/copilot/v1/models") => {
                self.forward("GET", "/models", Vec::new(), &req.request_id)
                    .await
            }
            ("GET", "/copilot/usage") => self.service_json("usage").await,
            ("GET", "/copilot/token") => self.service_json("token").await,
            ("GET", "/copilot/health") => {
                let (status, details) = self.health_details().await;
                let healthy = status == HealthStatus::Healthy;
                Ok(Response::json(
                    if healthy { 200 } else { 503 },
                    &json!({"status": if healthy { "healthy" } else { "degraded" }, "provider": "copilot", "details": details}),
                ))
            }
            (method, path) => Err(PluginError::not_found(format!(
                "copilot has no route {method} {path}"
            ))),
        };
        Ok(answer.unwrap_or_else(|error| openai_error(&error)))
    }

    async fn on_prepare_upstream(
        &self,
        req: ProviderRequest,
    ) -> Result<UpstreamRequest, PluginError> {
        let (credential, account) = match self.attempt_credential(req.attempt.as_ref()).await? {
            Ok(chosen) => chosen,
            Err((message, retry_after)) => {
                return Ok(UpstreamRequest::exhausted(message, retry_after));
            }
        };
        let mut body: Value = serde_json::from_slice(&req.body).map_err(|error| {
            PluginError::invalid(format!("the request body is not JSON: {error}"))
        })?;
        let mut model_alias = None;
        if let Some(object) = body.as_object_mut() {
            object.insert("stream".to_owned(), json!(req.stream));
            if !req.stream {
                object.remove("stream_options");
            }
            model_alias = self.mapper.rewrite(object, req.model.as_deref(), |_| false);
        }
        debug!(
            "request {}: {} via {} to {}",
            req.request_id, req.client_format, req.endpoint, credential.base
        );
        let upstream = UpstreamRequest {
            method: "POST".to_owned(),
            url: format!("{}/chat/completions", credential.base),
            headers: self.headers(&credential, &req.request_id, req.stream),
            body: serde_json::to_vec(&body)
                .map_err(|error| PluginError::internal(error.to_string()))?,
            stream: req.stream,
            model_alias,
            timeout: None,
            ..UpstreamRequest::default()
        };
        let account = match (&self.pool, account) {
            // One attempt per account, one more per account for a renewed
            // Copilot token after a 401, and the call that hears of the
            // last failure.
            (Some(pool), Some((label, delay))) => {
                let max_attempts = pool.max_attempts().saturating_add(pool.len() as u32);
                Some((label, max_attempts, delay))
            }
            _ => None,
        };
        // On a retry, the fallback model (`failover.fallback_model`).
        Ok(self
            .config
            .failover
            .plan(upstream, req.attempt.is_some(), account))
    }

    fn provider_retries(&self) -> bool {
        // Configured accounts are failed over, and a fallback model is asked
        // for on a retry; the one login alone is not retried.
        self.pool.is_some() || !self.config.failover.fallback_model.is_empty()
    }

    /// A 401 from the Copilot API means its token was revoked or expired
    /// early: the cached one is dropped, so the next request exchanges the
    /// GitHub token again (this request's client gets the 401).
    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        // With accounts, a 401 renews that account's token on the retry.
        if call.hook == TOKEN_REFUSED_HOOK && self.pool.is_none() {
            let data: ResponseReceived<'_> = call.data()?;
            if data.provider == Some("copilot") && data.status_code == Some(401) {
                warn!(
                    "the Copilot API refused the Copilot token (401); the next request exchanges a new one"
                );
                self.ctx
                    .call_service(OAUTH_SERVICE, "invalidate", json!({}))
                    .await?;
            }
        }
        Ok(HookOutcome::Continue)
    }

    async fn on_health(&self) -> Health {
        if let Some(pool) = &self.pool {
            let details = json!({
                "base_url": self.configured_base(),
                "account_type": self.config.account_type,
                "credentials": "accounts",
            });
            return pool.plugin_health(details, accounts::describe);
        }
        let (status, details) = self.health_details().await;
        Health::with(status, details)
    }
}

export_plugin!(Copilot);

#[cfg(test)]
mod tests;
