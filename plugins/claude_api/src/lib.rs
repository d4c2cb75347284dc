//! # claude_api: Claude through the Anthropic Messages API
//!
//! A provider plugin. The host serves three endpoints for it and converts
//! formats on its behalf; this plugin only prepares each upstream request:
//!
//! | client calls | speaks |
//! |---|---|
//! | `POST /claude/v1/messages` | Anthropic Messages |
//! | `POST /claude/v1/chat/completions` | OpenAI Chat Completions |
//! | `POST /claude/v1/responses` | OpenAI Responses |
//!
//! plus two plain routes of its own: `GET /claude/v1/models` (the configured
//! model cards and the aliases, each with what it `maps_to`, in a list both
//! the OpenAI and the Anthropic SDK parse: see `model_list`) and
//! `POST /claude/v1/messages/count_tokens` (forwarded to Anthropic with the
//! same credentials).
//!
//! Credentials: an API key (`[plugins.claude_api] api_key` or
//! `ANTHROPIC_API_KEY`) is sent as `x-api-key`; without one, the Claude
//! subscription's OAuth token from the `oauth.claude-api` service (plugin
//! `oauth_claude`, `ccproxy auth login claude-api`) is sent as a bearer token,
//! with the betas and the Claude Code system prompt block Anthropic requires
//! for it, and the Claude CLI's identity headers (`user-agent: claude-cli/…`,
//! `x-app: cli`, the `x-stainless-*` set): a Claude Code client's own, for
//! any other client those of the Claude CLI installed here, detected as the
//! original does (`detect.rs`: `cli_path`, default `claude` on `PATH`, run
//! once against a capture point, cached per version in
//! `$XDG_CACHE_HOME/ccproxy/claude_headers_<version>.json`, detected again
//! every `detection_interval_seconds`), else the bundled claude-cli 1.0.113
//! ones. `/plugins/claude_api/health` says which (`claude_cli_identity`).
//! With an API key the user agent is `ccproxy/<version>`. The client's own
//! credentials are never forwarded.
//!
//! Body shaping, in order (see `shaping.rs`): null `temperature` stripped,
//! `top_p` dropped when `temperature` is set, `max_tokens` defaulted, `stream`
//! set when the client asked for a stream by `Accept` header, model mapped
//! (the client's id is written back into the answer), billing-header lines
//! removed from the system prompt, the Claude Code identity block prepended
//! (OAuth only), at most 4 `cache_control` marks kept, `_*` keys removed.
//!
//! Build and install:
//!
//! ```text
//! cargo build -p ccproxy-plugin-claude-api
//! cp target/debug/libccproxy_plugin_claude_api.so ~/.config/ccproxy/plugins/
//! ```
//!
//! Configure (every key is optional):
//!
//! ```toml
//! [plugins.claude_api]
//! base_url = "https://api.anthropic.com"
//! auth_mode = "auto"            # auto | api_key | oauth
//! system_prompt_injection_mode = "minimal"   # none | minimal | full
//! ```
//!
//! Try it:
//!
//! ```text
//! curl -s http://127.0.0.1:8000/claude/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model":"sonnet","messages":[{"role":"user","content":"Hi"}]}'
//! ```
//!
//! and expect this line in the proxy's log at startup:
//!
//! ```text
//! INFO plugin: claude_api ready: upstream https://api.anthropic.com, credentials: oauth.claude-api service plugin="claude_api"
//! ```
#![forbid(unsafe_code)]

mod accounts;
mod auth;
mod config;
mod detect;
mod lean;
mod shaping;

use std::sync::{Arc, RwLock};

use ccproxy_plugin_abi::{Value, prelude::*, serde_json};
use ccproxy_plugin_kit::{
    accounts::AccountPool,
    mapping::{ListedModel, ModelMapper},
};

use crate::{
    auth::{Credential, Credentials, OAUTH_SERVICE, upstream_headers},
    config::{Config, InjectionMode},
    shaping::Body,
};

/// The plugin: its host handle, settings and compiled model rules.
struct ClaudeApi {
    ctx: Context,
    config: Config,
    credentials: Credentials,
    /// `[[plugins.claude_api.accounts]]`, when configured: used instead of
    /// `credentials` for messages, with failover.
    pool: Option<AccountPool<accounts::AccountCredential>>,
    mapper: ModelMapper,
    /// The installed Claude CLI's identity, once detected.
    detected: Arc<RwLock<Option<detect::Detected>>>,
}

/// The task that detects the Claude CLI's identity again.
const DETECTION_TASK: &str = "claude_cli_detection";

/// Detects the Claude CLI's identity and keeps it in `slot`; on failure the
/// last one (or the bundled snapshot) stays.
async fn run_detection(ctx: Context, program: String, slot: Arc<RwLock<Option<detect::Detected>>>) {
    match detect::detect(&ctx, &program).await {
        Ok(detected) => {
            info!(
                "claude_api: Claude CLI {} detected ({}); its identity headers are sent in OAuth mode",
                detected.version,
                if detected.cached {
                    "cached"
                } else {
                    "captured"
                }
            );
            if let Ok(mut slot) = slot.write() {
                *slot = Some(detected);
            }
        }
        Err(error) => debug!(
            "claude_api: no Claude CLI identity detected ({error}); keeping {}",
            slot.read()
                .ok()
                .and_then(|d| d.as_ref().map(|d| format!("claude-cli {}", d.version)))
                .unwrap_or_else(|| "the bundled claude-cli 1.0.113 headers".to_owned())
        ),
    }
}

/// What a body is being shaped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A Messages request (`/v1/messages`).
    Messages {
        /// The client asked for a stream.
        stream: bool,
    },
    /// A token count (`/v1/messages/count_tokens`), which takes no sampling
    /// parameters, `max_tokens` or `stream`.
    CountTokens,
}

/// What the top-level rules found out.
struct TopLevelShaped {
    stream: bool,
    model_alias: Option<String>,
    /// System blocks the OAuth injection prepended (`system[..n]`).
    n_injected: usize,
}

/// A shaped body and what shaping found out.
struct Shaped {
    body: Vec<u8>,
    stream: bool,
    model_alias: Option<String>,
}

/// The body-shaping rules and the settings they read.
struct Shaper<'a> {
    config: &'a Config,
    mapper: &'a ModelMapper,
}

impl Shaper<'_> {
    /// Applies every shaping rule for `purpose` to `body`, whose top-level
    /// `members` the host may have found already. `client_model` is the id
    /// the client asked for, written back when the model is mapped.
    fn shape<'b>(
        &self,
        (body, members): lean::Source<'b>,
        credential: &Credential,
        purpose: Purpose,
        client_model: Option<&str>,
    ) -> Result<Shaped, PluginError> {
        // Lean first: the rules below the top level (cache marks beyond the
        // limit, private keys) are rare, and parsing a Claude Code request's
        // messages and tools only to write them back is most of its cost.
        match self.shape_lean((body, members), credential, purpose, client_model)? {
            Some(shaped) => Ok(shaped),
            None => self.shape_whole(body, credential, purpose, client_model),
        }
    }

    /// [`Self::shape`] on the top level only, or `None` when the body must
    /// be shaped whole.
    fn shape_lean<'b>(
        &self,
        (body, members): lean::Source<'b>,
        credential: &Credential,
        purpose: Purpose,
        client_model: Option<&str>,
    ) -> Result<Option<Shaped>, PluginError> {
        let inject = match credential {
            Credential::OAuth(_) => self.config.system_prompt_injection_mode != InjectionMode::None,
            Credential::ApiKey(_) => false,
        };
        let keep_system = |raw: &str| shaping::leaves_raw_system_alone(raw, inject);
        let Some(mut split) = lean::Split::of(body, members, keep_system) else {
            return Ok(None);
        };
        let system_kept = split.keeps_system();
        let shaped = self.top_level_rules(
            &mut split.small,
            credential,
            (purpose, client_model),
            system_kept,
        );
        let marks = lean::small_cache_marks(&split.small) + split.kept_cache_marks();
        if marks > shaping::MAX_CACHE_CONTROL_BLOCKS {
            return Ok(None);
        }
        Ok(Some(Shaped {
            body: split.into_bytes()?,
            stream: shaped.stream,
            model_alias: shaped.model_alias,
        }))
    }

    /// [`Self::shape`] with the body parsed whole.
    fn shape_whole(
        &self,
        body: &[u8],
        credential: &Credential,
        purpose: Purpose,
        client_model: Option<&str>,
    ) -> Result<Shaped, PluginError> {
        let mut body: Body = ccproxy_plugin_kit::json::request_object(body)?;
        let shaped = self.top_level_rules(&mut body, credential, (purpose, client_model), false);
        let removed = shaping::cap_cache_control(&mut body, shaped.n_injected);
        if removed > 0 {
            debug!(
                "removed {removed} cache_control marks beyond Anthropic's limit of {}",
                shaping::MAX_CACHE_CONTROL_BLOCKS
            );
        }
        shaping::remove_private_keys(&mut body);
        Ok(Shaped {
            body: serde_json::to_vec(&body)?,
            stream: shaped.stream,
            model_alias: shaped.model_alias,
        })
    }

    /// The rules that change only top-level keys and the system prompt, in
    /// their order; the same for a whole body and a lean one. `system_kept`:
    /// the system prompt is not in `body` but kept as the client's text,
    /// which the system rules leave alone (`shaping::leaves_raw_system_alone`),
    /// so they are not run (injection would find no prompt and add one).
    fn top_level_rules(
        &self,
        body: &mut Body,
        credential: &Credential,
        (purpose, client_model): (Purpose, Option<&str>),
        system_kept: bool,
    ) -> TopLevelShaped {
        let mut stream = false;
        if let Purpose::Messages {
            stream: client_wants_stream,
        } = purpose
        {
            shaping::fix_sampling(body);
            shaping::ensure_max_tokens(body, self.config.default_max_tokens);
            stream = shaping::ensure_stream(body, client_wants_stream);
        }
        let model_alias = self.map_model(body, client_model);
        if system_kept {
            return TopLevelShaped {
                stream,
                model_alias,
                n_injected: 0,
            };
        }
        shaping::strip_billing_header(body);
        let n_injected = match credential {
            Credential::OAuth(_) => shaping::inject_system_prompt(
                body,
                shaping::injected_blocks(
                    self.config.system_prompt_injection_mode,
                    &self.config.full_system_prompt,
                ),
            ),
            Credential::ApiKey(_) => 0,
        };
        TopLevelShaped {
            stream,
            model_alias,
            n_injected,
        }
    }

    /// Rewrites `model` by the first matching rule; returns the client's id
    /// when it changed.
    fn map_model(&self, body: &mut Body, client_model: Option<&str>) -> Option<String> {
        self.mapper.rewrite(body, client_model, |_| false)
    }
}

impl ClaudeApi {
    /// The detected identity headers, if any.
    fn detected_headers(&self) -> Option<Vec<(String, String)>> {
        self.detected
            .read()
            .ok()?
            .as_ref()
            .map(|detected| detected.headers.clone())
    }

    fn shaper(&self) -> Shaper<'_> {
        Shaper {
            config: &self.config,
            mapper: &self.mapper,
        }
    }

    fn models(&self) -> Response {
        Response::json(200, &model_list(&self.config, &self.mapper))
    }

    /// `POST /claude/v1/messages/count_tokens`: shaped like a Messages
    /// request, sent with the same credentials, the answer passed back.
    async fn count_tokens(&self, req: Request) -> Result<Response, PluginError> {
        if self.ctx.bypass_mode() {
            // `serve --bypass` calls no upstream and needs no credentials: a
            // canned count, as the host's canned messages.
            ccproxy_plugin_kit::json::request_object(&req.body)?;
            return Ok(Response::json(
                200,
                &json!({"input_tokens": bypass_token_estimate(&req.body)}),
            ));
        }
        // With accounts, the one a message would use now (no failover: a
        // count is cheap to ask again).
        let credential = match &self.pool {
            None => self.credentials.resolve(&self.ctx).await?,
            Some(pool) => match accounts::choose(pool, &self.ctx, None).await? {
                Ok(chosen) => chosen.credential,
                Err((message, _)) => return Err(PluginError::new(ErrorKind::RateLimited, message)),
            },
        };
        // A count has no model in its answer, so no alias to write back.
        let shaped =
            self.shaper()
                .shape((&req.body, None), &credential, Purpose::CountTokens, None)?;
        let url = format!("{}/v1/messages/count_tokens", self.config.base());
        let request = HttpRequest {
            method: "POST".to_owned(),
            url: url.clone(),
            headers: upstream_headers(
                &credential,
                &req.headers,
                &self.config.anthropic_version,
                self.detected_headers().as_deref(),
            ),
            body: shaped.body,
            timeout: Some(std::time::Duration::from_secs(self.config.timeout_seconds)),
        };
        let answer = self.ctx.http(request).await.map_err(|error| {
            let kind = match error.kind() {
                ErrorKind::Timeout => ErrorKind::Timeout,
                _ => ErrorKind::Upstream,
            };
            // The host's message usually names the URL already.
            let message = if error.message().contains(url.as_str()) {
                format!("count_tokens upstream failed: {error}")
            } else {
                format!("count_tokens upstream {url} failed: {error}")
            };
            PluginError::new(kind, message)
        })?;
        let mut response = Response::new(answer.status, answer.body);
        for (name, value) in answer.headers.iter() {
            let name = name.to_ascii_lowercase();
            let passes = name == "content-type"
                || name == "request-id"
                || name == "retry-after"
                || name.starts_with("anthropic-ratelimit-");
            if passes {
                response.headers.0.push((name, value.to_owned()));
            }
        }
        Ok(response)
    }
}

/// `GET /claude/v1/models`: one list both SDKs parse. Each entry has the
/// OpenAI model fields (`id`, `object`, `created`, `owned_by`: the original's
/// shape) and the Anthropic ones (`type`, `display_name`, `created_at`), and
/// the list has Anthropic's paging fields (`has_more: false`). The entries
/// are the cards, then the names of the `exact` rules (`sonnet`, `opus`,
/// `haiku`): aliases a client can pick, each with `maps_to`, the model sent
/// upstream instead (a card a rule rewrites has it too). `mappings` lists
/// every rule, `prefix` and `regex` ones included, in the order they apply.
fn model_list(config: &Config, mapper: &ModelMapper) -> Value {
    let cards: Vec<ListedModel<'_>> = config
        .models
        .iter()
        .map(|card| ListedModel {
            id: &card.id,
            created: card.created,
            owned_by: &card.owned_by,
            display_name: &card.display_name,
        })
        .collect();
    ccproxy_plugin_kit::mapping::model_list(
        &cards,
        &config.model_mappings,
        mapper,
        true,
        "anthropic",
    )
}

/// An error as Anthropic writes one, for the plugin's own routes.
fn anthropic_error(error: &PluginError) -> Response {
    let kind = error.kind();
    let error_type = match kind {
        ErrorKind::Invalid => "invalid_request_error",
        ErrorKind::Unauthorized => "authentication_error",
        ErrorKind::Forbidden => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Unavailable | ErrorKind::NotInitialized => "overloaded_error",
        _ => "api_error",
    };
    Response::json(
        kind.http_status(),
        &json!({"type": "error", "error": {"type": error_type, "message": error.message()}}),
    )
}

impl Plugin for ClaudeApi {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("claude_api", env!("CARGO_PKG_VERSION"))
            .description("Claude through the Anthropic Messages API, with an API key or the Claude subscription's OAuth token")
            .provider("anthropic.messages")
            .provider_endpoint("/claude/v1/messages", "anthropic.messages")
            .provider_endpoint("/claude/v1/chat/completions", "openai.chat_completions")
            .provider_endpoint("/claude/v1/responses", "openai.responses")
            .route(
                "/claude",
                [
                    Route::get("/v1/models"),
                    Route::post("/v1/messages/count_tokens"),
                ],
            )
            .optional_requires(OAUTH_SERVICE)
            .config_key("base_url", "upstream root; requests go to {base_url}/v1/messages")
            .config_key("api_key", "Anthropic API key, sent as x-api-key; empty reads api_key_env")
            .config_key("api_key_env", "environment variable read when api_key is empty (ANTHROPIC_API_KEY)")
            .config_key("auth_mode", "auto (API key if set, else OAuth), api_key or oauth")
            .config_key("anthropic_version", "anthropic-version sent when the client sends none")
            .config_key("system_prompt_injection_mode", "OAuth only: none, minimal (the Claude Code identity block) or full (identity block and full_system_prompt)")
            .config_key("full_system_prompt", "text injected after the identity block in full mode")
            .config_key("default_max_tokens", "max_tokens for requests without one")
            .config_key("model_mappings", "model rewrite rules {kind = exact|prefix|suffix|regex, pattern, target, ignore_case}, first match wins; replaces the defaults")
            .config_key("models", "model cards {id, created, owned_by, display_name} listed by GET /claude/v1/models, with the aliases of the exact model_mappings and what each name maps to")
            .config_key("timeout_seconds", "count_tokens request timeout")
            .config_key("cli_path", "the Claude CLI whose identity headers are detected and sent in OAuth mode (claude on PATH); empty: the bundled claude-cli 1.0.113 ones")
            .config_key("detection_interval_seconds", "seconds between detections of the Claude CLI (3600)")
            .config_key("accounts", "several credentials with failover, [[plugins.claude_api.accounts]] {label, api_key | api_key_env | oauth = true}, in priority order; empty: api_key/auth_mode as one credential")
            .config_key("failover", "how accounts are picked and rested: {strategy = failover|round_robin, cooldown_seconds = 60, max_failures_before_disable = 2, failure_status_codes = [401, 403], cooldown_status_codes = [429, 529], max_retry_wait_seconds = 0, fallback_model = \"\" (the model every retry asks for)}")
            .task_from_config(DETECTION_TASK, "detection_interval_seconds", 3600.0, false)
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        let mapper = ModelMapper::new("claude_api", &config.model_mappings)?;
        if config.base().is_empty() {
            return Err(PluginError::invalid(
                "plugins.claude_api.base_url must not be empty; remove it for https://api.anthropic.com",
            ));
        }
        let api_key = if config.api_key.is_empty() && !config.api_key_env.is_empty() {
            config::Secret::new(std::env::var(&config.api_key_env).unwrap_or_default())
        } else {
            config.api_key.clone()
        };
        let credentials = Credentials {
            mode: config.auth_mode,
            api_key,
            api_key_env: config.api_key_env.clone(),
        };
        let pool = accounts::pool(&config)?;
        let source = match (credentials.mode, credentials.api_key.is_empty()) {
            _ if pool.is_some() => format!(
                "{} accounts ({:?})",
                config.accounts.len(),
                config.failover.strategy
            ),
            (config::AuthMode::OAuth, _) | (config::AuthMode::Auto, true) => {
                format!("{OAUTH_SERVICE} service")
            }
            (_, false) => "API key".to_owned(),
            (config::AuthMode::ApiKey, true) => {
                "none (auth_mode is api_key, no key set)".to_owned()
            }
        };
        info!(
            "claude_api ready: upstream {}, credentials: {source}",
            config.base()
        );
        let detected = Arc::new(RwLock::new(None));
        if !config.cli_path.is_empty() && !ctx.bypass_mode() {
            ctx.spawn(run_detection(
                ctx.clone(),
                config.cli_path.clone(),
                detected.clone(),
            ));
        }
        Ok(Self {
            ctx,
            config,
            credentials,
            pool,
            mapper,
            detected,
        })
    }

    fn provider_retries(&self) -> bool {
        // Configured accounts are failed over, and a fallback model is
        // asked for on a retry; a single credential alone is not retried.
        self.pool.is_some() || !self.config.failover.fallback_model.is_empty()
    }

    async fn on_task(&self, task: String) -> Result<(), PluginError> {
        if task == DETECTION_TASK && !self.config.cli_path.is_empty() {
            run_detection(
                self.ctx.clone(),
                self.config.cli_path.clone(),
                self.detected.clone(),
            )
            .await;
        }
        Ok(())
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        let path = req.path.trim_end_matches('/');
        match (req.method.as_str(), path) {
            ("GET", path) if path.ends_with("/v1/models") => Ok(self.models()),
            ("POST", path) if path.ends_with("/v1/messages/count_tokens") => {
                // Answer in Anthropic's error shape: count_tokens clients are
                // Anthropic SDKs.
                Ok(self
                    .count_tokens(req)
                    .await
                    .unwrap_or_else(|error| anthropic_error(&error)))
            }
            (method, path) => Err(PluginError::not_found(format!(
                "claude_api has no route {method} {path}"
            ))),
        }
    }

    async fn on_prepare_upstream(
        &self,
        req: ProviderRequest,
    ) -> Result<UpstreamRequest, PluginError> {
        let (credential, account) = match &self.pool {
            None => (self.credentials.resolve(&self.ctx).await?, None),
            Some(pool) => match accounts::choose(pool, &self.ctx, req.attempt.as_ref()).await? {
                Ok(chosen) => {
                    let delay = chosen.delay.unwrap_or_default();
                    (
                        chosen.credential,
                        Some((chosen.label, pool.max_attempts(), delay)),
                    )
                }
                Err((message, retry_after)) => {
                    return Ok(UpstreamRequest::exhausted(message, retry_after));
                }
            },
        };
        let shaped = self.shaper().shape(
            (&req.body, req.body_top_level()),
            &credential,
            Purpose::Messages { stream: req.stream },
            req.model.as_deref(),
        )?;
        debug!(
            "request {}: {} credentials, stream {}",
            req.request_id,
            credential.kind(),
            shaped.stream
        );
        let upstream = UpstreamRequest {
            method: "POST".to_owned(),
            url: format!("{}/v1/messages", self.config.base()),
            headers: upstream_headers(
                &credential,
                &req.headers,
                &self.config.anthropic_version,
                self.detected_headers().as_deref(),
            ),
            body: shaped.body,
            stream: shaped.stream,
            model_alias: shaped.model_alias,
            // Messages use the host's `http.read_timeout_seconds`;
            // `timeout_seconds` is the count_tokens timeout.
            timeout: None,
            ..UpstreamRequest::default()
        };
        Ok(self
            .config
            .failover
            .plan(upstream, req.attempt.is_some(), account))
    }

    async fn on_health(&self) -> Health {
        let identity = self.detected.read().ok().and_then(|detected| {
            detected.as_ref().map(|detected| {
                json!({"source": "detected", "cli_version": detected.version,
                       "user_agent": detected.headers.iter().find(|(n, _)| n == "user-agent").map(|(_, v)| v)})
            })
        });
        let identity =
            identity.unwrap_or_else(|| json!({"source": "bundled", "cli_version": "1.0.113"}));
        if let Some(pool) = &self.pool {
            let details = json!({"base_url": self.config.base(), "credentials": "accounts", "claude_cli_identity": identity});
            return pool.plugin_health(details, accounts::describe);
        }
        match self.credentials.resolve(&self.ctx).await {
            Ok(credential) => Health::with(
                HealthStatus::Healthy,
                json!({"base_url": self.config.base(), "credentials": credential.kind(), "claude_cli_identity": identity}),
            ),
            Err(error) => Health::with(
                HealthStatus::Degraded,
                json!({"base_url": self.config.base(), "reason": error.message()}),
            ),
        }
    }
}

/// A rough token count for bypass mode: about four bytes of JSON per token.
fn bypass_token_estimate(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4).max(1)
}

export_plugin!(ClaudeApi);

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::{
        serde_json::Map,
        testing::{MockHost, TestPlugin, json_request, request},
    };

    use super::*;
    use ccproxy_plugin_kit::json::RawObject;

    use crate::shaping::CLAUDE_CODE_IDENTITY;

    /// An environment variable nobody sets, so `ANTHROPIC_API_KEY` in the
    /// developer's shell cannot change what the tests see.
    const NO_SUCH_ENV: &str = "CCPROXY_CLAUDE_API_TEST_NO_SUCH_VARIABLE";
    const API_KEY: &str = "sk-ant-test-key";
    const OAUTH_TOKEN: &str = "sk-ant-oat-test-token";
    const MISSING: &str = "no Anthropic credentials: set ANTHROPIC_API_KEY or [plugins.claude_api] api_key, or run `ccproxy auth login claude-api`";

    fn config(extra: Value) -> Value {
        let mut merged = Map::new();
        merged.insert("api_key_env".into(), json!(NO_SUCH_ENV));
        if let Value::Object(extra) = extra {
            merged.extend(extra);
        }
        Value::Object(merged)
    }

    #[test]
    fn count_tokens_in_bypass_mode_needs_no_credentials_and_calls_no_upstream() {
        let host = MockHost::new().config(config(json!({}))).bypass(true);
        let plugin = host.start::<ClaudeApi>().unwrap();
        let body = json!({"model": "claude-sonnet-4-5-20250929", "messages": [{"role": "user", "content": "Hello"}]});
        let answer = plugin
            .route(json_request(
                "POST",
                "/claude/v1/messages/count_tokens",
                &body,
            ))
            .unwrap();
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let count: Value = serde_json::from_slice(&answer.body).unwrap();
        assert!(
            count["input_tokens"].as_u64().is_some_and(|n| n > 0),
            "{count}"
        );
        assert!(host.http_requests().is_empty());
        let bad = plugin
            .route(json_request(
                "POST",
                "/claude/v1/messages/count_tokens",
                &json!([1]),
            ))
            .unwrap();
        assert_eq!(bad.status, 400);
    }

    /// Every rule, lean and whole, over real and made-up requests: the same
    /// JSON value, the same stream flag and alias; and the lean way is taken
    /// exactly when nothing below the top level needs a change.
    #[test]
    fn lean_and_whole_shaping_agree() {
        let capture: Value = serde_json::from_str(include_str!(
            "../../../tests/data/claude_cli_request_capture.json"
        ))
        .unwrap();
        let claude_code = capture["body_json"].clone();
        let marked = |text: &str| json!({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}});
        let bodies = [
            (claude_code.clone(), true),
            (
                json!({"model": "claude-3-5-sonnet", "messages": [{"role": "user", "content": "hi"}], "temperature": null, "top_p": 0.5}),
                true,
            ),
            (
                json!({"model": "sonnet", "system": "x-anthropic-billing-header: cch=1\nBe brief.", "stream": false, "messages": []}),
                true,
            ),
            // System prompts kept as the client's text or parsed, each way.
            (
                json!({"model": "m", "system": format!("{} Be brief.", shaping::CLAUDE_CODE_IDENTITY), "messages": []}),
                true,
            ),
            (
                json!({"model": "m", "system": [{"type": "text", "text": "X-Anthropic-Billing-Header: cch=2"}, {"type": "text", "text": shaping::CLAUDE_CODE_IDENTITY}], "messages": []}),
                true,
            ),
            (
                json!({"model": "m", "system": [{"type": "text", "text": "tab\u{1}"}, "odd"], "messages": []}),
                true,
            ),
            (json!({"model": "m", "system": null, "messages": []}), true),
            (
                json!({"model": "m", "system": ["first", {"type": "text", "text": "b"}], "messages": []}),
                true,
            ),
            (
                json!({"model": "m", "system": [marked("a"), marked("b")], "messages": [{"role": "user", "content": [marked("c"), marked("d"), marked("e")]}]}),
                false,
            ),
            (
                json!({"model": "m", "max_tokens": null, "messages": [{"role": "user", "content": "x", "_internal": 1}]}),
                false,
            ),
        ];
        let config = Config::default();
        let mapper = ModelMapper::new("claude_api", &config.model_mappings).unwrap();
        let shaper = Shaper {
            config: &config,
            mapper: &mapper,
        };
        let credentials = [
            Credential::ApiKey(config::Secret::new("k".to_owned())),
            Credential::OAuth(config::Secret::new("t".to_owned())),
        ];
        for (body, lean_expected) in &bodies {
            let bytes = body.to_string().into_bytes();
            let indexed = ProviderRequest {
                body_members: ccproxy_plugin_abi::hook_wire::index_object(&bytes).unwrap(),
                body: bytes.clone(),
                ..ProviderRequest::default()
            };
            assert!(indexed.body_top_level().is_some());
            for credential in &credentials {
                for purpose in [
                    Purpose::Messages { stream: true },
                    Purpose::Messages { stream: false },
                    Purpose::CountTokens,
                ] {
                    let whole = shaper
                        .shape_whole(&bytes, credential, purpose, Some("alias"))
                        .unwrap();
                    let lean = shaper
                        .shape_lean((&bytes, None), credential, purpose, Some("alias"))
                        .unwrap();
                    // The host's index of the body gives the same bytes.
                    let indexed = shaper
                        .shape_lean(
                            (&bytes, indexed.body_top_level()),
                            credential,
                            purpose,
                            Some("alias"),
                        )
                        .unwrap();
                    assert_eq!(
                        indexed.as_ref().map(|shaped| &shaped.body),
                        lean.as_ref().map(|shaped| &shaped.body)
                    );
                    // Injection can push the marks over the limit: then whole.
                    let Some(lean) = lean else {
                        assert!(
                            !lean_expected || matches!(credential, Credential::OAuth(_)),
                            "{body}"
                        );
                        continue;
                    };
                    assert!(
                        lean_expected,
                        "shaped lean, but needs a change below the top level: {body}"
                    );
                    // Each key once (a Value would hide a repeated one).
                    let written = RawObject::parse(&lean.body).unwrap();
                    let mut keys: Vec<&str> = written
                        .entries()
                        .iter()
                        .map(|(key, _)| key.as_ref())
                        .collect();
                    keys.sort_unstable();
                    let written_keys = keys.join(",");
                    keys.dedup();
                    assert_eq!(keys.join(","), written_keys, "{credential:?} {purpose:?}");
                    let lean_value: Value = serde_json::from_slice(&lean.body).unwrap();
                    let whole_value: Value = serde_json::from_slice(&whole.body).unwrap();
                    assert_eq!(lean_value, whole_value, "{purpose:?} {body}");
                    assert_eq!(
                        (lean.stream, &lean.model_alias),
                        (whole.stream, &whole.model_alias)
                    );
                }
            }
        }
        // The Claude Code request is shaped lean in both credential modes.
        let bytes = claude_code.to_string().into_bytes();
        for credential in &credentials {
            assert!(
                shaper
                    .shape_lean(
                        (&bytes, None),
                        credential,
                        Purpose::Messages { stream: true },
                        None
                    )
                    .unwrap()
                    .is_some()
            );
        }
    }

    /// A host with an API key configured and no OAuth service.
    fn api_key_host(extra: Value) -> MockHost {
        let mut config = config(extra);
        config["api_key"] = json!(API_KEY);
        MockHost::new().config(config)
    }

    /// A host where `oauth_claude` is logged in, and no API key.
    fn oauth_host(extra: Value) -> MockHost {
        MockHost::new()
            .config(config(extra))
            .service(OAUTH_SERVICE, |method, args| {
                assert_eq!((method, &args), ("access_token", &json!({})));
                Ok(json!({"access_token": OAUTH_TOKEN, "expires_at_ms": 4_102_444_800_000u64, "subscription_type": "max"}))
            })
    }

    fn start(host: &MockHost) -> TestPlugin {
        host.start::<ClaudeApi>().expect("plugin starts")
    }

    fn provider_request(endpoint: &str, body: &Value, headers: Headers) -> ProviderRequest {
        ProviderRequest {
            endpoint: endpoint.into(),
            client_format: "anthropic.messages".into(),
            native_format: String::new(),
            stream: body["stream"].as_bool().unwrap_or(false),
            model: body["model"].as_str().map(str::to_owned),
            headers,
            query: String::new(),
            body: body.to_string().into_bytes(),
            request_id: "req-1".into(),
            attempt: None,
            body_members: Vec::new(),
        }
    }

    fn prepare(host: &MockHost, body: &Value) -> UpstreamRequest {
        start(host)
            .prepare_upstream(provider_request(
                "/claude/v1/messages",
                body,
                Headers::default(),
            ))
            .expect("request prepared")
    }

    fn sent(upstream: &UpstreamRequest) -> Value {
        serde_json::from_slice(&upstream.body).expect("upstream body is JSON")
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }

    /// The headers and body of a real Claude Code request, with a current
    /// model for its `claude-sonnet-4-20250514` (current when it was
    /// captured, retired since and mapped), so that it goes through as it is.
    fn capture() -> (Headers, Value) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/claude_cli_request_capture.json"
        );
        let text = std::fs::read_to_string(path).expect("tests/data capture is checked in");
        let capture: Value = serde_json::from_str(&text).expect("capture is JSON");
        let headers = capture["headers"]
            .as_object()
            .expect("capture has headers")
            .iter()
            .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
            .collect();
        let mut body = capture["body_json"].clone();
        body["model"] = json!("claude-sonnet-4-5-20250929");
        (Headers(headers), body)
    }

    /// A host with accounts a (key), b (the OAuth login), c (key).
    fn accounts_host(failover: Value) -> MockHost {
        oauth_host(json!({
            "accounts": [
                {"label": "a", "api_key": "sk-ant-key-a-000000000001"},
                {"label": "b", "oauth": true},
                {"api_key": "sk-ant-key-c-000000000003"},
            ],
            "failover": failover,
        }))
    }

    fn attempt(number: u32, status: u16, account: &str) -> ProviderAttempt {
        ProviderAttempt {
            number,
            previous_status: status,
            previous_account: Some(account.to_owned()),
            retry_after_ms: Some(30_000),
        }
    }

    #[test]
    fn accounts_are_tried_in_order_and_each_failure_moves_on() {
        let host = accounts_host(json!({}));
        let plugin = start(&host);
        assert!(plugin.provider_retries());
        let mut request =
            provider_request("/claude/v1/messages", &simple_body(), Headers::default());
        let first = plugin.prepare_upstream(request.clone()).unwrap();
        assert_eq!(first.account.as_deref(), Some("a"));
        assert_eq!(
            first.headers.get("x-api-key"),
            Some("sk-ant-key-a-000000000001")
        );
        assert_eq!(first.retry.map(|policy| policy.max_attempts), Some(4));
        request.attempt = Some(attempt(2, 429, "a"));
        let second = plugin.prepare_upstream(request.clone()).unwrap();
        assert_eq!(second.account.as_deref(), Some("b"));
        assert_eq!(
            second.headers.get("authorization"),
            Some(format!("Bearer {OAUTH_TOKEN}").as_str())
        );
        assert!(second.headers.get("x-api-key").is_none());
        request.attempt = Some(attempt(3, 401, "b"));
        let third = plugin.prepare_upstream(request.clone()).unwrap();
        assert_eq!(
            third.account.as_deref(),
            Some("account-3"),
            "unlabelled: by position"
        );
        // The report of the last failure: nothing left, nothing sent.
        request.attempt = Some(attempt(4, 529, "account-3"));
        let last = plugin.prepare_upstream(request.clone()).unwrap();
        let exhausted = last.exhausted.expect("exhausted");
        assert!(
            exhausted.message.contains("cooling down"),
            "{}",
            exhausted.message
        );
        // The first account back: a or c, 30 s after their failures.
        let retry_after_ms = exhausted.retry_after_ms.expect("a time to come back");
        assert!(
            (29_000..=30_000).contains(&retry_after_ms),
            "{retry_after_ms}"
        );
        // A new request finds every account resting too.
        request.attempt = None;
        assert!(
            plugin
                .prepare_upstream(request)
                .unwrap()
                .exhausted
                .is_some()
        );
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        let text = health.details.to_string();
        assert!(!text.contains("sk-ant-key-a-000000000001"), "{text}");
        assert!(text.contains("sk-ant***0001"), "{text}");
        assert_eq!(health.details["accounts"]["accounts"][1]["kind"], "oauth");
        assert_eq!(
            health.details["accounts"]["accounts"][1]["last_failure_status"],
            401
        );
    }

    #[test]
    fn bad_accounts_are_refused_at_start_saying_what_to_fix() {
        for (accounts, expected) in [
            (
                json!([{"label": "x"}]),
                "set exactly one of api_key, api_key_env, oauth",
            ),
            (json!([{"api_key": "k", "oauth": true}]), "set exactly one"),
            (
                json!([{"label": "x", "api_key": "k"}, {"label": "x", "oauth": true}]),
                "used twice",
            ),
            (json!([{"api_key_env": NO_SUCH_ENV}]), "is empty or unset"),
            (json!([{"api_key": "k", "apikey": "typo"}]), "apikey"),
        ] {
            let error = MockHost::new()
                .config(config(json!({"accounts": accounts})))
                .start::<ClaudeApi>()
                .err()
                .unwrap_or_else(|| panic!("{accounts} started"));
            assert!(
                error.message().contains(expected),
                "{accounts}: {}",
                error.message()
            );
        }
    }

    #[test]
    fn a_retry_asks_for_the_fallback_model() {
        let host = api_key_host(json!({"failover": {"fallback_model": "claude-haiku-4-5"}}));
        let plugin = start(&host);
        assert!(plugin.provider_retries());
        let mut request =
            provider_request("/claude/v1/messages", &simple_body(), Headers::default());
        let first = plugin.prepare_upstream(request.clone()).unwrap();
        assert_eq!(sent(&first)["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(first.retry.map(|policy| policy.max_attempts), Some(2));
        request.attempt = Some(ProviderAttempt {
            number: 2,
            previous_status: 529,
            ..ProviderAttempt::default()
        });
        let second = plugin.prepare_upstream(request).unwrap();
        assert_eq!(sent(&second)["model"], "claude-haiku-4-5");
        assert_eq!(sent(&second)["max_tokens"], 100);
        assert!(
            second.model_alias.is_none(),
            "the client sees the model that answered"
        );
        assert_eq!(second.headers.get("x-api-key"), Some(API_KEY));
    }

    #[test]
    fn without_accounts_nothing_is_retried() {
        let plugin = start(&api_key_host(json!({})));
        assert!(!plugin.provider_retries());
        let upstream = plugin
            .prepare_upstream(provider_request(
                "/claude/v1/messages",
                &simple_body(),
                Headers::default(),
            ))
            .unwrap();
        assert!(upstream.retry.is_none() && upstream.account.is_none());
    }

    fn simple_body() -> Value {
        json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]})
    }

    fn cache_marks(body: &Value) -> usize {
        body.to_string().matches("\"cache_control\"").count()
    }

    // Manifest, routes.

    #[test]
    fn manifest_declares_the_provider_and_its_routes() {
        let plugin = start(&api_key_host(json!({})));
        let manifest = plugin.manifest();
        assert_eq!(manifest.name, "claude_api");
        assert_eq!(manifest.kind, PluginKind::Provider);
        let provider = manifest.provider.as_ref().expect("a provider");
        assert_eq!(provider.native_format, "anthropic.messages");
        let endpoints: Vec<(&str, &str)> = provider
            .endpoints
            .iter()
            .map(|endpoint| (endpoint.path.as_str(), endpoint.format.as_str()))
            .collect();
        assert_eq!(
            endpoints,
            [
                ("/claude/v1/messages", "anthropic.messages"),
                ("/claude/v1/chat/completions", "openai.chat_completions"),
                ("/claude/v1/responses", "openai.responses"),
            ]
        );
        assert_eq!(manifest.routes[0].prefix, "/claude");
        assert_eq!(
            manifest.routes[0].routes,
            [
                Route::get("/v1/models"),
                Route::post("/v1/messages/count_tokens")
            ]
        );
        assert_eq!(manifest.optional_requires, ["oauth.claude-api"]);
        assert!(manifest.dependencies.is_empty());
        let defaults = &manifest.config.defaults;
        assert_eq!(defaults["base_url"], "https://api.anthropic.com");
        assert_eq!(defaults["api_key"], "");
        assert_eq!(defaults["timeout_seconds"], 600);
        let documented: Vec<&str> = manifest
            .config
            .descriptions
            .iter()
            .map(|(key, _)| key.as_str())
            .collect();
        for key in defaults.as_object().expect("a table").keys() {
            assert!(documented.contains(&key.as_str()), "{key} is undocumented");
        }
    }

    #[test]
    fn models_lists_the_default_cards_and_aliases_with_what_they_map_to() {
        let plugin = start(&api_key_host(json!({})));
        let response = plugin.route(request("GET", "/claude/v1/models")).unwrap();
        assert_eq!(response.status, 200);
        let listed: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(listed["object"], "list");
        assert_eq!(listed["has_more"], false);
        let data = listed["data"].as_array().unwrap();
        let ids: Vec<&str> = data
            .iter()
            .map(|entry| entry["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "claude-sonnet-4-6",
                "claude-opus-4-6",
                "claude-opus-4-5-20251101",
                "claude-haiku-4-5-20251001",
                "claude-sonnet-4-5-20250929",
                "o3-mini",
                "sonnet",
                "opus",
                "haiku",
            ]
        );
        assert_eq!(
            (listed["first_id"].as_str(), listed["last_id"].as_str()),
            (Some("claude-sonnet-4-6"), Some("haiku"))
        );
        assert_eq!(
            data[0],
            json!({
                "id": "claude-sonnet-4-6", "object": "model", "created": 1_771_286_400, "owned_by": "anthropic",
                "type": "model", "display_name": "Claude Sonnet 4.6", "created_at": "2026-02-17T00:00:00.000Z",
            })
        );
        // An alias: the target's card, and what it maps to.
        assert_eq!(
            data[8],
            json!({
                "id": "haiku", "object": "model", "created": 1_760_486_400, "owned_by": "anthropic",
                "type": "model", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-15T00:00:00.000Z",
                "maps_to": "claude-haiku-4-5-20251001",
            })
        );
        assert!(
            data[..5].iter().all(|card| card.get("maps_to").is_none()),
            "cards are sent as they are"
        );
        // Every rule, in order, with its target.
        let mappings = listed["mappings"].as_array().unwrap();
        assert_eq!(mappings.len(), Config::default().model_mappings.len());
        assert_eq!(
            mappings[2],
            json!({"kind": "regex", "pattern": "^gpt-4(?:[^o]|$)", "ignore_case": false, "maps_to": "claude-sonnet-4-6"})
        );
        assert!(
            mappings
                .iter()
                .any(|rule| rule["pattern"] == "claude-3-5-haiku"
                    && rule["maps_to"] == "claude-haiku-4-5-20251001"),
            "{listed}"
        );
        assert!(plugin.host().http_requests().is_empty());
    }

    #[test]
    fn models_lists_configured_cards() {
        let plugin = start(&api_key_host(json!({
            "models": [{"id": "claude-x", "created": 5}, {"id": "mine", "owned_by": "me", "display_name": "Mine"}],
            "model_mappings": [
                {"pattern": "mine", "target": "claude-x"},
                {"kind": "prefix", "pattern": "fast", "target": "claude-y"},
                {"pattern": "quick", "target": "claude-y"},
                {"pattern": "fast-one", "target": "never"},
            ],
        })));
        let response = plugin.route(request("GET", "/claude/v1/models")).unwrap();
        let listed: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(
            listed["data"],
            json!([
                {"id": "claude-x", "object": "model", "created": 5, "owned_by": "anthropic",
                 "type": "model", "display_name": "claude-x", "created_at": "1970-01-01T00:00:05.000Z"},
                // A card a rule rewrites says so.
                {"id": "mine", "object": "model", "created": 0, "owned_by": "me",
                 "type": "model", "display_name": "Mine", "created_at": "1970-01-01T00:00:00.000Z",
                 "maps_to": "claude-x"},
                // An alias of an unlisted model.
                {"id": "quick", "object": "model", "created": 0, "owned_by": "anthropic",
                 "type": "model", "display_name": "quick", "created_at": "1970-01-01T00:00:00.000Z",
                 "maps_to": "claude-y"},
                // `fast-one` is shadowed by the `fast` prefix before it: it
                // lists what it really becomes.
                {"id": "fast-one", "object": "model", "created": 0, "owned_by": "anthropic",
                 "type": "model", "display_name": "fast-one", "created_at": "1970-01-01T00:00:00.000Z",
                 "maps_to": "claude-y"},
            ])
        );
        assert_eq!(
            listed["mappings"][3]["maps_to"], "never",
            "the rule as configured"
        );
    }

    // Headers.

    #[test]
    fn api_key_mode_headers() {
        let plugin = start(&api_key_host(json!({})));
        let client = headers(&[
            ("Authorization", "Bearer client-proxy-token"),
            ("x-api-key", "client-key"),
            ("cookie", "session=1"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic eA=="),
            ("host", "127.0.0.1:8000"),
            ("content-length", "99"),
            ("accept-encoding", "gzip"),
            ("user-agent", "curl/8"),
            ("anthropic-beta", "prompt-caching-2024-07-31"),
        ]);
        let upstream = plugin
            .prepare_upstream(provider_request(
                "/claude/v1/messages",
                &simple_body(),
                client,
            ))
            .unwrap();
        assert_eq!(upstream.method, "POST");
        assert_eq!(upstream.url, "https://api.anthropic.com/v1/messages");
        assert_eq!(
            upstream.headers,
            headers(&[
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
                ("x-api-key", API_KEY),
                ("anthropic-beta", "prompt-caching-2024-07-31"),
                ("user-agent", auth::USER_AGENT),
            ])
        );
        assert!(plugin.host().service_calls().is_empty());
    }

    #[test]
    fn api_key_mode_adds_no_betas_of_its_own() {
        let upstream = prepare(&api_key_host(json!({})), &simple_body());
        assert_eq!(upstream.headers.get("anthropic-beta"), None);
    }

    #[test]
    fn oauth_mode_headers_merge_the_client_betas() {
        let plugin = start(&oauth_host(json!({})));
        let client = headers(&[
            ("authorization", "Bearer client-proxy-token"),
            ("anthropic-version", "2023-06-01"),
            (
                "anthropic-beta",
                "oauth-2025-04-20,interleaved-thinking-2025-05-14",
            ),
        ]);
        let upstream = plugin
            .prepare_upstream(provider_request(
                "/claude/v1/messages",
                &simple_body(),
                client,
            ))
            .unwrap();
        assert_eq!(
            upstream.headers.get("authorization"),
            Some(format!("Bearer {OAUTH_TOKEN}").as_str())
        );
        assert_eq!(upstream.headers.get("x-api-key"), None);
        // Client tags first, then the required ones it lacks; nothing else
        // (no context-1m: #60).
        assert_eq!(
            upstream.headers.get("anthropic-beta"),
            Some("oauth-2025-04-20,interleaved-thinking-2025-05-14,claude-code-20250219")
        );
        let calls = plugin.host().service_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            (calls[0].service.as_str(), calls[0].method.as_str()),
            ("oauth.claude-api", "access_token")
        );
    }

    #[test]
    fn claude_code_headers_pass_the_protocol_and_identity_ones() {
        let (mut client, body) = capture();
        // The capture's credentials are blanked; a real client sends some.
        client.set("authorization", "Bearer client-proxy-token");
        client.set("x-api-key", "client-key");
        let plugin = start(&oauth_host(json!({})));
        let upstream = plugin
            .prepare_upstream(provider_request("/claude/v1/messages", &body, client))
            .unwrap();
        assert_eq!(
            upstream.headers,
            headers(&[
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
                ("authorization", &format!("Bearer {OAUTH_TOKEN}")),
                (
                    "anthropic-beta",
                    "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
                ),
                // The client's own, in its order (the capture's keys are
                // read sorted).
                ("accept", "application/json"),
                ("accept-language", "*"),
                ("anthropic-dangerous-direct-browser-access", "true"),
                ("sec-fetch-mode", "cors"),
                ("user-agent", "claude-cli/1.0.113 (external, sdk-cli)"),
                ("x-app", "cli"),
                ("x-stainless-arch", "x64"),
                ("x-stainless-lang", "js"),
                ("x-stainless-os", "Linux"),
                ("x-stainless-package-version", "0.60.0"),
                ("x-stainless-retry-count", "0"),
                ("x-stainless-runtime", "node"),
                ("x-stainless-runtime-version", "v22.17.0"),
                ("x-stainless-timeout", "600"),
            ])
        );
    }

    #[test]
    fn auth_mode_oauth_ignores_the_api_key() {
        let host = oauth_host(json!({"auth_mode": "oauth", "api_key": API_KEY}));
        let upstream = prepare(&host, &simple_body());
        assert_eq!(upstream.headers.get("x-api-key"), None);
        assert_eq!(
            upstream.headers.get("authorization"),
            Some(format!("Bearer {OAUTH_TOKEN}").as_str())
        );
    }

    #[test]
    fn the_api_key_can_come_from_the_environment() {
        // PATH is set in every test environment; its value stands in for a key.
        let path = std::env::var("PATH").expect("PATH is set");
        let host = MockHost::new().config(json!({"api_key_env": "PATH"}));
        let upstream = prepare(&host, &simple_body());
        assert_eq!(upstream.headers.get("x-api-key"), Some(path.as_str()));
    }

    // Credentials missing.

    #[test]
    fn missing_credentials_say_what_to_do() {
        let plugin = start(&MockHost::new().config(json!({
            "api_key_env": "ANTHROPIC_API_KEY",
            "api_key": "",
            "auth_mode": "oauth",
        })));
        let error = plugin
            .prepare_upstream(provider_request(
                "/claude/v1/messages",
                &simple_body(),
                Headers::default(),
            ))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
        assert!(error.message().starts_with(MISSING), "{error}");
        assert!(error.message().contains("oauth.claude-api"), "{error}");
    }

    #[test]
    fn missing_credentials_in_auto_and_api_key_modes() {
        // auto: no key and no OAuth service; api_key: no key, and the
        // logged-in OAuth service is not asked.
        let hosts = [
            ("auto", MockHost::new().config(config(json!({})))),
            ("api_key", oauth_host(json!({"auth_mode": "api_key"}))),
        ];
        let expected = MISSING.replace("ANTHROPIC_API_KEY", NO_SUCH_ENV);
        for (mode, host) in hosts {
            let error = start(&host)
                .prepare_upstream(provider_request(
                    "/claude/v1/messages",
                    &simple_body(),
                    Headers::default(),
                ))
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Unauthorized, "{mode}");
            assert!(error.message().starts_with(&expected), "{error}");
        }
    }

    #[test]
    fn a_logged_out_oauth_service_is_missing_credentials() {
        let host = MockHost::new()
            .config(config(json!({})))
            .service(OAUTH_SERVICE, |_, _| {
                Err(PluginError::new(ErrorKind::Unauthorized, "not logged in"))
            });
        let error = start(&host)
            .prepare_upstream(provider_request(
                "/claude/v1/messages",
                &simple_body(),
                Headers::default(),
            ))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
        assert!(
            error
                .message()
                .ends_with("(oauth.claude-api: not logged in)"),
            "{error}"
        );
    }

    #[test]
    fn a_failed_token_refresh_keeps_its_kind() {
        let host = MockHost::new()
            .config(config(json!({})))
            .service(OAUTH_SERVICE, |_, _| {
                Err(PluginError::new(ErrorKind::Upstream, "refresh: 503"))
            });
        let error = start(&host)
            .prepare_upstream(provider_request(
                "/claude/v1/messages",
                &simple_body(),
                Headers::default(),
            ))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Upstream);
        assert_eq!(
            error.message(),
            "oauth.claude-api could not provide a token: refresh: 503"
        );
    }

    #[test]
    fn health_is_degraded_without_credentials() {
        let plugin = start(&MockHost::new().config(config(json!({}))));
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        let reason = health.details["reason"].as_str().unwrap();
        assert!(reason.starts_with("no Anthropic credentials"), "{reason}");

        let health = start(&oauth_host(json!({}))).health().unwrap();
        assert_eq!(health.status, HealthStatus::Healthy);
        assert_eq!(health.details["credentials"], "oauth");
        assert!(!health.details.to_string().contains(OAUTH_TOKEN));
    }

    // Body shaping with the real Claude Code request.

    #[test]
    fn a_claude_code_request_goes_through_unchanged() {
        let (client, body) = capture();
        for host in [oauth_host(json!({})), api_key_host(json!({}))] {
            let upstream = start(&host)
                .prepare_upstream(provider_request(
                    "/claude/v1/messages",
                    &body,
                    client.clone(),
                ))
                .unwrap();
            // Its system prompt already opens with the identity, it has 3
            // cache marks, a temperature and no top_p, max_tokens and a
            // model no rule maps.
            assert_eq!(sent(&upstream), body);
            assert_eq!(upstream.model_alias, None);
            assert!(!upstream.stream);
        }
    }

    #[test]
    fn null_temperature_is_stripped_and_top_p_kept() {
        let (_, mut body) = capture();
        body["temperature"] = Value::Null;
        body["top_p"] = json!(0.9);
        let shaped = sent(&prepare(&oauth_host(json!({})), &body));
        assert!(shaped.get("temperature").is_none());
        assert_eq!(shaped["top_p"], json!(0.9));
    }

    #[test]
    fn top_p_is_dropped_when_temperature_is_set() {
        let (_, mut body) = capture();
        body["top_p"] = json!(0.9);
        let shaped = sent(&prepare(&oauth_host(json!({})), &body));
        assert_eq!(shaped["temperature"], json!(1));
        assert!(shaped.get("top_p").is_none());
    }

    #[test]
    fn max_tokens_gets_the_configured_default() {
        let (_, mut body) = capture();
        body.as_object_mut().unwrap().remove("max_tokens");
        let shaped = sent(&prepare(&oauth_host(json!({})), &body));
        assert_eq!(shaped["max_tokens"], json!(4096));
        let shaped = sent(&prepare(
            &oauth_host(json!({"default_max_tokens": 123})),
            &body,
        ));
        assert_eq!(shaped["max_tokens"], json!(123));
    }

    #[test]
    fn billing_header_lines_are_stripped_from_claude_code_requests() {
        let (_, mut body) = capture();
        let original_system = body["system"].clone();
        let system = body["system"].as_array_mut().unwrap();
        system.insert(
            0,
            json!({"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.37.3a9; cc_entrypoint=cli; cch=5f1e2;"}),
        );
        let shaped = sent(&prepare(&oauth_host(json!({})), &body));
        // The billing block is gone; the identity now leads, so nothing is
        // injected, and the prompt is byte-identical from request to request.
        assert_eq!(shaped["system"], original_system);
    }

    #[test]
    fn oauth_injects_the_identity_before_a_foreign_system_prompt() {
        let (_, mut body) = capture();
        body["system"] = json!("You are a pirate.");
        let shaped = sent(&prepare(&oauth_host(json!({})), &body));
        assert_eq!(
            shaped["system"],
            json!([
                {"type": "text", "text": CLAUDE_CODE_IDENTITY, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "You are a pirate."},
            ])
        );
        // A chat client without a system prompt gets the identity alone.
        let shaped = sent(&prepare(&oauth_host(json!({})), &simple_body()));
        assert_eq!(shaped["system"][0]["text"], CLAUDE_CODE_IDENTITY);
        assert_eq!(shaped["system"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn injection_modes_and_api_key_mode() {
        let (_, mut body) = capture();
        body["system"] = json!("You are a pirate.");
        let shaped = sent(&prepare(
            &oauth_host(json!({"system_prompt_injection_mode": "none"})),
            &body,
        ));
        assert_eq!(shaped["system"], "You are a pirate.");
        let shaped = sent(&prepare(&api_key_host(json!({})), &body));
        assert_eq!(shaped["system"], "You are a pirate.");
        let shaped = sent(&prepare(
            &oauth_host(
                json!({"system_prompt_injection_mode": "full", "full_system_prompt": "House rules."}),
            ),
            &body,
        ));
        let texts: Vec<&str> = shaped["system"]
            .as_array()
            .unwrap()
            .iter()
            .map(|block| block["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            texts,
            [CLAUDE_CODE_IDENTITY, "House rules.", "You are a pirate."]
        );
    }

    #[test]
    fn cache_control_marks_are_capped_at_four_keeping_the_injected() {
        let (_, mut body) = capture();
        // A foreign system prompt with two marks (one large, one small) plus
        // the message's mark and two marked tools: 5, and 6 with the
        // injected identity.
        body["system"] = json!([
            {"type": "text", "text": "small", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "large ".repeat(2000), "cache_control": {"type": "ephemeral"}},
        ]);
        let tools = body["tools"].as_array_mut().unwrap();
        tools[0]["cache_control"] = json!({"type": "ephemeral"});
        tools[4]["cache_control"] = json!({"type": "ephemeral"});
        assert_eq!(cache_marks(&body), 5);
        let shaped = sent(&prepare(&oauth_host(json!({})), &body));
        assert_eq!(cache_marks(&shaped), 4);
        let system = &shaped["system"];
        assert_eq!(system[0]["text"], CLAUDE_CODE_IDENTITY);
        assert!(system[0].get("cache_control").is_some());
        assert!(
            system[1].get("cache_control").is_none(),
            "the small block loses its mark"
        );
        assert!(system[2].get("cache_control").is_some());
        // Both tool definitions (9 and 1 kB) outweigh the message's short
        // "test" block, which loses its mark.
        assert!(shaped["tools"][0].get("cache_control").is_some());
        assert!(shaped["tools"][4].get("cache_control").is_some());
        assert!(
            shaped["messages"][0]["content"][1]
                .get("cache_control")
                .is_none()
        );
    }

    #[test]
    fn private_keys_are_removed() {
        let (_, mut body) = capture();
        body["_ccproxy_debug"] = json!(true);
        body["system"][1]["_ccproxy_injected"] = json!(true);
        body["messages"][0]["content"][0]["_note"] = json!("x");
        body["tools"][0]["_origin"] = json!("y");
        let shaped = sent(&prepare(&oauth_host(json!({})), &body));
        let (_, original) = capture();
        assert_eq!(shaped, original);
    }

    #[test]
    fn a_body_that_is_not_an_object_is_a_400() {
        let plugin = start(&api_key_host(json!({})));
        let mut req = provider_request("/claude/v1/messages", &json!([1]), Headers::default());
        let error = plugin.prepare_upstream(req.clone()).unwrap_err();
        assert_eq!(error.kind().http_status(), 400);
        assert_eq!(
            error.message(),
            "request body must be a JSON object, got an array"
        );
        req.body = b"{".to_vec();
        assert_eq!(
            plugin.prepare_upstream(req).unwrap_err().kind(),
            ErrorKind::Invalid
        );
    }

    // Streams.

    #[test]
    fn the_stream_flag_reaches_the_upstream_request() {
        let mut body = simple_body();
        body["stream"] = json!(true);
        let upstream = prepare(&api_key_host(json!({})), &body);
        assert!(upstream.stream);
        assert_eq!(sent(&upstream)["stream"], json!(true));

        // Asked for by `Accept: text/event-stream` only: the host says
        // stream, the body gets the flag so the upstream streams.
        let plugin = start(&api_key_host(json!({})));
        let mut req = provider_request("/claude/v1/messages", &simple_body(), Headers::default());
        req.stream = true;
        let upstream = plugin.prepare_upstream(req).unwrap();
        assert!(upstream.stream);
        assert_eq!(sent(&upstream)["stream"], json!(true));

        let upstream = prepare(&api_key_host(json!({})), &simple_body());
        assert!(!upstream.stream);
        assert!(sent(&upstream).get("stream").is_none());
    }

    // Model mappings.

    #[test]
    fn default_mappings_rewrite_openai_models_and_keep_the_alias() {
        let plugin = start(&oauth_host(json!({})));
        let body = json!({"model": "gpt-4o", "max_tokens": 10, "messages": []});
        let mut req = provider_request("/claude/v1/chat/completions", &body, Headers::default());
        req.client_format = "openai.chat_completions".into();
        let upstream = plugin.prepare_upstream(req).unwrap();
        assert_eq!(sent(&upstream)["model"], "claude-sonnet-4-6");
        assert_eq!(upstream.model_alias.as_deref(), Some("gpt-4o"));

        let upstream = prepare(&oauth_host(json!({})), &simple_body());
        assert_eq!(sent(&upstream)["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(upstream.model_alias, None);

        // A retired Claude 4.0 id goes to its successor; the client is
        // answered under the name it asked for.
        let retired = json!({"model": "claude-opus-4-20250514", "max_tokens": 10, "messages": []});
        let upstream = prepare(&oauth_host(json!({})), &retired);
        assert_eq!(sent(&upstream)["model"], "claude-opus-4-6");
        assert_eq!(
            upstream.model_alias.as_deref(),
            Some("claude-opus-4-20250514")
        );
    }

    #[test]
    fn configured_mappings_replace_the_defaults() {
        let host = oauth_host(json!({"model_mappings": [
            {"kind": "exact", "pattern": "Fast", "target": "claude-haiku-4-5-20251001", "ignore_case": true},
            {"kind": "prefix", "pattern": "team-", "target": "claude-opus-4-6"},
            {"kind": "suffix", "pattern": "-cheap", "target": "claude-haiku-4-5"},
            {"kind": "regex", "pattern": "^big-(\\d+)$", "target": "claude-opus-4-5-20251101"},
        ]}));
        let plugin = start(&host);
        let check = |model: &str, expected: &str| {
            let body = json!({"model": model, "max_tokens": 1, "messages": []});
            let upstream = plugin
                .prepare_upstream(provider_request(
                    "/claude/v1/messages",
                    &body,
                    Headers::default(),
                ))
                .unwrap();
            assert_eq!(sent(&upstream)["model"], expected, "{model}");
            let alias = (model != expected).then(|| model.to_owned());
            assert_eq!(upstream.model_alias, alias, "{model}");
        };
        check("FAST", "claude-haiku-4-5-20251001");
        check("team-a", "claude-opus-4-6");
        check("x-cheap", "claude-haiku-4-5");
        check("big-7", "claude-opus-4-5-20251101");
        check("big-x", "big-x");
        // The defaults are gone.
        check("gpt-4o", "gpt-4o");
    }

    #[test]
    fn a_bad_mapping_rule_stops_the_plugin() {
        let error = api_key_host(json!({"model_mappings": [
            {"kind": "regex", "pattern": "(", "target": "x"},
        ]}))
        .start::<ClaudeApi>()
        .unwrap_err();
        assert!(
            error
                .message()
                .starts_with("plugins.claude_api.model_mappings[0]: invalid regex"),
            "{error}"
        );
    }

    #[test]
    fn unknown_config_keys_stop_the_plugin() {
        let error = api_key_host(json!({"apikey": "x"}))
            .start::<ClaudeApi>()
            .unwrap_err();
        assert!(error.message().contains("apikey"), "{error}");
    }

    #[test]
    fn base_url_is_configurable() {
        let upstream = prepare(
            &api_key_host(json!({"base_url": "http://127.0.0.1:4010/"})),
            &simple_body(),
        );
        assert_eq!(upstream.url, "http://127.0.0.1:4010/v1/messages");
    }

    // count_tokens.

    fn count_tokens_request(body: &Value, client: &[(&str, &str)]) -> Request {
        let mut req = json_request("POST", "/claude/v1/messages/count_tokens", body);
        for (name, value) in client {
            req.headers.set(name, *value);
        }
        req
    }

    #[test]
    fn count_tokens_is_forwarded_with_the_same_credentials() {
        let host = oauth_host(json!({"base_url": "http://mock.test"})).http(|req| {
            assert_eq!(req.method, "POST");
            Ok(HttpResponse {
                status: 200,
                headers: headers(&[
                    ("Content-Type", "application/json"),
                    ("request-id", "req_1"),
                    ("set-cookie", "x=1"),
                ]),
                body: br#"{"input_tokens":42}"#.to_vec(),
            })
        });
        let plugin = start(&host);
        let body =
            json!({"model": "sonnet", "messages": [{"role": "user", "content": "Hi"}], "_x": 1});
        let response = plugin
            .route(count_tokens_request(
                &body,
                &[
                    ("authorization", "Bearer client"),
                    ("anthropic-beta", "token-counting-2024-11-01"),
                ],
            ))
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, br#"{"input_tokens":42}"#);
        assert_eq!(
            response.headers,
            headers(&[
                ("content-type", "application/json"),
                ("request-id", "req_1")
            ])
        );

        let sent_requests = host.http_requests();
        assert_eq!(sent_requests.len(), 1);
        let upstream = &sent_requests[0];
        assert_eq!(upstream.url, "http://mock.test/v1/messages/count_tokens");
        assert_eq!(upstream.timeout, Some(std::time::Duration::from_secs(600)));
        assert_eq!(
            upstream.headers.get("authorization"),
            Some(format!("Bearer {OAUTH_TOKEN}").as_str())
        );
        assert_eq!(
            upstream.headers.get("anthropic-beta"),
            Some("token-counting-2024-11-01,claude-code-20250219,oauth-2025-04-20")
        );
        let forwarded: Value = serde_json::from_slice(&upstream.body).unwrap();
        // Shaped as the message would be, without Messages-only fields.
        assert_eq!(forwarded["model"], "claude-sonnet-4-6");
        assert_eq!(forwarded["system"][0]["text"], CLAUDE_CODE_IDENTITY);
        assert!(forwarded.get("max_tokens").is_none());
        assert!(forwarded.get("_x").is_none());
    }

    #[test]
    fn count_tokens_passes_upstream_errors_back() {
        let host = api_key_host(json!({})).http(|_| {
            Ok(HttpResponse {
                status: 429,
                headers: headers(&[("retry-after", "3"), ("content-type", "application/json")]),
                body:
                    br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
                        .to_vec(),
            })
        });
        let response = start(&host)
            .route(count_tokens_request(&simple_body(), &[]))
            .unwrap();
        assert_eq!(response.status, 429);
        assert_eq!(response.headers.get("retry-after"), Some("3"));
        assert!(String::from_utf8_lossy(&response.body).contains("slow down"));
        assert_eq!(
            host.http_requests()[0].headers.get("x-api-key"),
            Some(API_KEY)
        );
    }

    fn anthropic_error_body(response: &Response) -> (u16, String, String) {
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(
            response.headers.get("content-type"),
            Some("application/json")
        );
        (
            response.status,
            body["error"]["type"].as_str().unwrap().to_owned(),
            body["error"]["message"].as_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn count_tokens_upstream_failure_is_a_502_in_anthropic_shape() {
        let host = api_key_host(json!({"base_url": "http://127.0.0.1:9"}))
            .http(|_| Err(PluginError::new(ErrorKind::Upstream, "connection refused")));
        let response = start(&host)
            .route(count_tokens_request(&simple_body(), &[]))
            .unwrap();
        assert_eq!(
            anthropic_error_body(&response),
            (
                502,
                "api_error".to_owned(),
                "count_tokens upstream http://127.0.0.1:9/v1/messages/count_tokens failed: connection refused".to_owned()
            )
        );

        let host = api_key_host(json!({}))
            .http(|_| Err(PluginError::new(ErrorKind::Timeout, "no answer in 600 s")));
        let response = start(&host)
            .route(count_tokens_request(&simple_body(), &[]))
            .unwrap();
        let (status, error_type, _) = anthropic_error_body(&response);
        assert_eq!((status, error_type.as_str()), (504, "timeout_error"));
    }

    #[test]
    fn count_tokens_without_credentials_is_a_401_in_anthropic_shape() {
        let host = MockHost::new().config(config(json!({})));
        let response = start(&host)
            .route(count_tokens_request(&simple_body(), &[]))
            .unwrap();
        let (status, error_type, message) = anthropic_error_body(&response);
        assert_eq!((status, error_type.as_str()), (401, "authentication_error"));
        assert!(message.starts_with("no Anthropic credentials"), "{message}");
        assert!(host.http_requests().is_empty());
    }

    #[test]
    fn count_tokens_with_a_bad_body_is_a_400_in_anthropic_shape() {
        let plugin = start(&api_key_host(json!({})));
        let mut req = count_tokens_request(&json!({}), &[]);
        req.body = b"not json".to_vec();
        let (status, error_type, _) = anthropic_error_body(&plugin.route(req).unwrap());
        assert_eq!(
            (status, error_type.as_str()),
            (400, "invalid_request_error")
        );
        assert!(plugin.host().http_requests().is_empty());
    }

    #[test]
    fn init_logs_where_credentials_come_from() {
        let host = oauth_host(json!({}));
        start(&host);
        assert!(host.logged(
            "claude_api ready: upstream https://api.anthropic.com, credentials: oauth.claude-api service"
        ));
        let host = api_key_host(json!({}));
        start(&host);
        assert!(host.logged("credentials: API key"));
        assert!(!host.logs().iter().any(|(_, line)| line.contains(API_KEY)));
    }
}
