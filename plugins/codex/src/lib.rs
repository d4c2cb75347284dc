//! # codex: OpenAI Codex on a ChatGPT plan
//!
//! A provider plugin for the ChatGPT backend's Codex Responses API
//! (`https://chatgpt.com/backend-api/codex/responses`), with the plan's OAuth
//! login from the `oauth.codex` service (plugin `oauth_codex`: `ccproxy auth
//! login codex`, or an existing `codex login`). The host serves these
//! endpoints for it and converts formats on its behalf; this plugin only
//! prepares each upstream request:
//!
//! | client calls | speaks |
//! |---|---|
//! | `POST /codex/v1/responses` (and the legacy `/codex/responses`) | OpenAI Responses |
//! | `POST /codex/v1/chat/completions` | OpenAI Chat Completions |
//! | `POST /codex/v1/messages` | Anthropic Messages: Claude Code with `ANTHROPIC_BASE_URL=http://127.0.0.1:8000/codex` |
//!
//! plus `GET /codex/v1/models`: the configured model cards in the OpenAI
//! list shape (`{"object": "list", "data": [cards]}`, what the `openai` SDK
//! parses; with the Anthropic SDK's fields too), `mappings`: every model
//! rule and what it `maps_to` (see `model_list`), and, as the original
//! does, `models`: the Codex CLI's own
//! entries for those models from its cache (`~/.codex/models_cache.json`,
//! written by `codex` from the backend's model list, whose `models` shape
//! it keeps); `[]` without the file.
//!
//! The upstream is always asked for a stream (`stream: true`); the host
//! turns it into one answer for a client that asked for none. Headers are the
//! Codex CLI's (`authorization: Bearer`, `chatgpt-account-id`, `openai-beta:
//! responses=experimental`, `originator: codex_cli_rs`, `version`, its user
//! agent shape, `session_id`/`conversation_id`); the client's own
//! credentials are never forwarded. The version is a Codex CLI client's own
//! (its `version` header, or its user agent as Codex CLI 0.171 sends none),
//! else `client_version`, else the installed Codex CLI's (`cli_path --version`,
//! `codex` on `PATH`, detected at start and every
//! `detection_interval_seconds`), else 0.171.0. The prompt prepended for
//! clients that are not the Codex CLI is `codex_instructions`, else the
//! installed Codex CLI's (captured once from `codex exec` at a capture point
//! of this plugin, cached per version in
//! `$XDG_CACHE_HOME/ccproxy/codex_headers_<version>.json`; `detect.rs`), else
//! the shipped 0.34.0 one. `/plugins/codex/health` says which of each
//! (`codex_cli_identity`). A Codex CLI client's session
//! (`session_id`, or `session-id` as 0.171 spells it) is the conversation's.
//!
//! Body shaping, in order, each step with its own switch (see `shaping.rs`):
//! model mapped (the client's id is written back into the answer); `input`
//! typed (`type: "message"`); system and developer messages folded into
//! `instructions`; unsupported parameters, `item_reference` items and `_*`
//! keys removed; the Codex CLI's instructions prepended; (off by default)
//! its tools added to tool-less requests; reasoning defaults added; `store:
//! false`; `stream: true`; a `prompt_cache_key` stable across the turns of a
//! conversation. The `chatgpt-account-id` header has its switch too
//! (`send_chatgpt_account_id`).
//!
//! Timeouts: the host's `http.read_timeout_seconds` (the longest silence
//! before the head and between chunks) unless `timeout_seconds` is set.
//!
//! Build and install:
//!
//! ```text
//! cargo build -p ccproxy-plugin-codex -p ccproxy-plugin-oauth-codex
//! ```
//!
//! Configure (every key is optional; a generic Responses client may want
//! the Codex CLI's instructions off):
//!
//! ```toml
//! [plugins.codex]
//! inject_instructions = false
//! reasoning_effort = "high"
//! ```
//!
//! Try it:
//!
//! ```text
//! ANTHROPIC_BASE_URL=http://127.0.0.1:8000/codex claude
//! curl -sN http://127.0.0.1:8000/codex/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model":"gpt-5.3-codex","stream":true,"messages":[{"role":"user","content":"Hi"}]}'
//! ```
//!
//! and expect this line in the proxy's log at startup:
//!
//! ```text
//! INFO plugin: codex ready: upstream https://chatgpt.com/backend-api/codex/responses, credentials: oauth.codex service, identifying as codex_cli_rs 0.171.0 plugin="codex"
//! ```
#![forbid(unsafe_code)]

mod accounts;
mod auth;
mod config;
mod detect;
mod shaping;

use std::{
    ffi::OsString,
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ccproxy_plugin_abi::{Value, prelude::*, serde_json};
use ccproxy_plugin_kit::{
    accounts::AccountPool,
    mapping::{ListedModel, ModelMapper},
};

use crate::{
    auth::{OAUTH_SERVICE, upstream_headers},
    config::Config,
    shaping::Body,
};

/// The Codex CLI's instructions, prepended by `inject_instructions`: from a
/// real Codex CLI 0.34.0 request (`data/README.md` says where exactly).
const CODEX_CLI_INSTRUCTIONS: &str = include_str!("../data/codex_cli_instructions.txt");

/// The Codex CLI's `shell` and `view_image` tools, added by `inject_tools`;
/// from the same request.
const CODEX_CLI_TOOLS: &str = include_str!("../data/codex_cli_tools.json");

/// The plugin: its host handle, settings and what init prepared from them.
struct Codex {
    ctx: Context,
    config: Config,
    mapper: ModelMapper,
    /// `codex_instructions`, or the shipped Codex CLI instructions.
    instructions: String,
    /// The parsed `CODEX_CLI_TOOLS`.
    tools: Vec<Value>,
    /// Where the Codex CLI's model cache is read from; `None` when neither
    /// `models_cache_file`, `CODEX_HOME` nor `HOME` says.
    models_cache: Option<PathBuf>,
    /// Whether the missing-account warning was logged (once is enough).
    warned_no_account: AtomicBool,
    /// The installed Codex CLI's version and prompt, once detected.
    detected: Arc<RwLock<Option<detect::Detected>>>,
    /// `[[plugins.codex.accounts]]`, when configured: used instead of the
    /// one login, with failover.
    pool: Option<AccountPool<accounts::AccountCredential>>,
}

/// A shaped body and what shaping found out.
struct Shaped {
    body: Vec<u8>,
    model_alias: Option<String>,
    conversation_id: String,
}

impl Codex {
    /// Applies every enabled shaping rule to `body`. `client_model` is the id
    /// the client asked for, written back when the model is mapped.
    fn shape(
        &self,
        body: &[u8],
        client: &Headers,
        client_model: Option<&str>,
    ) -> Result<Shaped, PluginError> {
        let config = &self.config;
        let mut body: Body = ccproxy_plugin_kit::json::request_object(body)?;
        let model_alias = self.map_model(&mut body, client_model);
        shaping::normalize_input(&mut body);
        if config.fold_system_into_instructions {
            let folded = shaping::fold_system_messages(&mut body);
            if folded > 0 {
                debug!("folded {folded} system/developer messages into instructions");
            }
        }
        if config.strip_unsupported_params {
            let removed = shaping::strip_params(&mut body, &config.unsupported_params);
            if !removed.is_empty() {
                debug!("removed unsupported parameters: {}", removed.join(", "));
            }
            shaping::remove_item_references(&mut body);
            shaping::remove_private_keys(&mut body);
        }
        // The conversation: the client's own id when it names one, else one
        // derived from the conversation's start (before the Codex CLI's
        // instructions are added, which are the same for everyone).
        let from_header = config
            .session_id_from_client
            .then(|| auth::client_conversation_id(client))
            .flatten();
        let conversation_id = from_header
            .or_else(|| shaping::client_prompt_cache_key(&body))
            .unwrap_or_else(|| shaping::conversation_id(&body));
        // A Codex CLI client sends its own (possibly newer) instructions.
        if config.inject_instructions && !auth::is_codex_client(client) {
            shaping::inject_instructions(&mut body, &self.injected_instructions().0);
        }
        if config.inject_tools && shaping::inject_tools(&mut body, &self.tools) {
            debug!("added the Codex CLI's tools to a request without tools");
        }
        if config.add_reasoning_defaults {
            shaping::add_reasoning_defaults(
                &mut body,
                &config.reasoning_effort,
                &config.reasoning_summary,
            );
        }
        if config.force_store_false {
            shaping::force_store_false(&mut body);
        }
        shaping::force_stream(&mut body);
        if config.stable_prompt_cache_key {
            shaping::ensure_prompt_cache_key(&mut body, &conversation_id);
        }
        Ok(Shaped {
            body: serde_json::to_vec(&body)?,
            model_alias,
            conversation_id,
        })
    }

    /// Rewrites `model` by the first matching rule, unless it is one of the
    /// listed models; returns the client's id when it changed.
    fn map_model(&self, body: &mut Body, client_model: Option<&str>) -> Option<String> {
        let listed = |model: &str| self.config.models.iter().any(|card| card.id == model);
        self.mapper.rewrite(body, client_model, listed)
    }

    /// The OpenAI model list of the configured cards, plus `models`: the
    /// Codex CLI's cache entries for them (by `slug`, in the cache's order),
    /// read on every call so a `codex` refresh shows at once.
    fn models(&self) -> Response {
        let mut listed = model_list(&self.config, &self.mapper);
        listed["models"] = Value::Array(
            self.models_cache
                .as_ref()
                .map(|path| self.cached_models(path))
                .unwrap_or_default(),
        );
        Response::json(200, &listed)
    }

    /// The entries of the Codex CLI's model cache at `path` whose `slug` is a
    /// listed model. A missing file is no error (the Codex CLI has not run
    /// yet); an unreadable one is logged and lists nothing.
    fn cached_models(&self, path: &std::path::Path) -> Vec<Value> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                debug!("no Codex CLI model cache at {}", path.display());
                return Vec::new();
            }
            Err(error) => {
                warn!(
                    "cannot read the Codex CLI model cache {}: {error}",
                    path.display()
                );
                return Vec::new();
            }
        };
        let entries = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(mut cache)) => match cache.remove("models") {
                Some(Value::Array(entries)) => entries,
                _ => Vec::new(),
            },
            Ok(_) => Vec::new(),
            Err(error) => {
                warn!(
                    "the Codex CLI model cache {} is not JSON ({error}); listing no cached models",
                    path.display()
                );
                return Vec::new();
            }
        };
        entries
            .into_iter()
            .filter(|entry| {
                entry
                    .get("slug")
                    .and_then(Value::as_str)
                    .is_some_and(|slug| self.config.models.iter().any(|card| card.id == slug))
            })
            .collect()
    }

    fn url(&self) -> String {
        format!("{}/responses", self.config.base())
    }
}

/// The list of `GET /codex/v1/models` but the Codex CLI's `models`: one
/// list the OpenAI SDK parses (`id`, `object`, `created`, `owned_by`) and
/// the Anthropic SDK too (`type`, `display_name`, `created_at`,
/// `has_more`), for Claude Code on `/codex`. The entries are the cards
/// (never rewritten: a listed model is sent as it is), then the names of
/// `exact` rules as aliases with `maps_to`, the model sent instead; the
/// default rules are all families (`prefix`, `regex`), so by default the
/// entries are the cards alone. `mappings` lists every rule in the order
/// they apply, with what it `maps_to`.
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
    ccproxy_plugin_kit::mapping::model_list(&cards, &config.model_mappings, mapper, false, "openai")
}

/// Where the Codex CLI keeps its model cache: `configured` (with `~/`
/// expanded), else `$CODEX_HOME/models_cache.json`, else
/// `~/.codex/models_cache.json`; `None` without any of them.
fn models_cache_path(
    configured: &str,
    home: Option<OsString>,
    codex_home: Option<OsString>,
) -> Option<PathBuf> {
    let home = home.filter(|home| !home.is_empty()).map(PathBuf::from);
    let configured = configured.trim();
    if !configured.is_empty() {
        return match configured.strip_prefix("~/") {
            Some(rest) => home.map(|home| home.join(rest)),
            None => Some(PathBuf::from(configured)),
        };
    }
    if let Some(codex_home) = codex_home.filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(codex_home).join("models_cache.json"));
    }
    home.map(|home| home.join(".codex").join("models_cache.json"))
}

fn validate(config: &Config) -> Result<(), PluginError> {
    let base = config.base();
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(PluginError::invalid(format!(
            "plugins.codex.base_url must be an http(s) URL, not {:?}; remove it for {}",
            config.base_url,
            config::DEFAULT_BASE_URL
        )));
    }
    let version = config.client_version.trim();
    let valid_version = version.is_empty()
        || version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    if !valid_version {
        return Err(PluginError::invalid(format!(
            "plugins.codex.client_version must be a version such as {}, not {:?}",
            config::DEFAULT_CLIENT_VERSION,
            config.client_version
        )));
    }
    Ok(())
}

impl Plugin for Codex {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("codex", env!("CARGO_PKG_VERSION"))
            .description("OpenAI Codex on a ChatGPT plan through the Codex backend's Responses API; Claude Code and OpenAI clients")
            .provider("openai.responses")
            .provider_endpoint("/codex/v1/responses", "openai.responses")
            .provider_endpoint("/codex/v1/chat/completions", "openai.chat_completions")
            .provider_endpoint("/codex/v1/messages", "anthropic.messages")
            .provider_endpoint("/codex/responses", "openai.responses")
            .route("/codex", [Route::get("/v1/models")])
            .optional_requires(OAUTH_SERVICE)
            .config_key("base_url", "upstream root; requests go to {base_url}/responses")
            .config_key("model_mappings", "model rewrite rules {kind = exact|prefix|suffix|regex, pattern, target, ignore_case}, first match wins, never applied to a listed model; replaces the defaults")
            .config_key("models", "model cards {id, created, owned_by, display_name} listed by GET /codex/v1/models (with the model_mappings and what each maps to) and sent unmapped")
            .config_key("models_cache_file", "the Codex CLI's model cache, whose entries for the listed models GET /codex/v1/models returns as models; empty: $CODEX_HOME/models_cache.json or ~/.codex/models_cache.json")
            .config_key("force_store_false", "send store: false (the backend keeps no conversations)")
            .config_key("strip_unsupported_params", "remove unsupported_params, item_reference input items and _* keys")
            .config_key("unsupported_params", "top-level parameters the backend refuses, removed by strip_unsupported_params")
            .config_key("fold_system_into_instructions", "move system and developer input messages into instructions")
            .config_key("inject_instructions", "prepend the Codex CLI's instructions (not for Codex CLI clients, which send their own)")
            .config_key("codex_instructions", "the text inject_instructions prepends; empty: the installed Codex CLI's prompt (detected with cli_path), else the Codex CLI 0.34.0 prompt shipped with the plugin")
            .config_key("inject_tools", "give tool-less requests the Codex CLI's shell and view_image tools (off: generic clients cannot run them)")
            .config_key("add_reasoning_defaults", "add reasoning {effort, summary} and include [reasoning.encrypted_content] when absent")
            .config_key("reasoning_effort", "reasoning.effort added by add_reasoning_defaults")
            .config_key("reasoning_summary", "reasoning.summary added by add_reasoning_defaults")
            .config_key("stable_prompt_cache_key", "send a prompt_cache_key derived from the conversation when the client sends none")
            .config_key("send_chatgpt_account_id", "send the ChatGPT account of the login's token claim as chatgpt-account-id (the Codex backend needs it)")
            .config_key("session_id_from_client", "use the client's session_id/conversation_id header when sent (else the id derived from the conversation)")
            .config_key("client_version", "Codex CLI version sent as version and in the user agent (a Codex CLI client's own is used when it sends one); empty: the installed Codex CLI's, else 0.171.0")
            .config_key("cli_path", "the Codex CLI whose version is detected (codex on PATH); empty: no detection")
            .config_key("detection_interval_seconds", "seconds between detections of the Codex CLI's version (3600)")
            .task_from_config(DETECTION_TASK, "detection_interval_seconds", 3600.0, false)
            .config_key("timeout_seconds", "give up on the upstream's head, then on each chunk, after this many seconds; 0: the host's http.read_timeout_seconds")
            .config_key("accounts", "several credentials with failover, [[plugins.codex.accounts]] {label, access_token | access_token_env (with account_id) | oauth = true}, in priority order; empty: the oauth.codex login")
            .config_key("failover", "how accounts are picked and rested: {strategy = failover|round_robin, cooldown_seconds = 60, max_failures_before_disable = 2, failure_status_codes = [401, 403], cooldown_status_codes = [429, 529], max_retry_wait_seconds = 0, fallback_model = \"\" (the model every retry asks for)}")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        validate(&config)?;
        let mapper = ModelMapper::new("codex", &config.model_mappings)?;
        let tools: Vec<Value> = serde_json::from_str(CODEX_CLI_TOOLS).map_err(|error| {
            PluginError::internal(format!(
                "the shipped Codex CLI tools are unreadable: {error}"
            ))
        })?;
        let instructions = if config.codex_instructions.trim().is_empty() {
            CODEX_CLI_INSTRUCTIONS.to_owned()
        } else {
            config.codex_instructions.clone()
        };
        let pool = accounts::pool(&config)?;
        let models_cache = models_cache_path(
            &config.models_cache_file,
            std::env::var_os("HOME"),
            std::env::var_os("CODEX_HOME"),
        );
        info!(
            "codex ready: upstream {}/responses, credentials: {}, identifying as {} {}",
            config.base(),
            match &pool {
                Some(pool) => format!("{} accounts ({:?})", pool.len(), config.failover.strategy),
                None => format!("{OAUTH_SERVICE} service"),
            },
            auth::ORIGINATOR,
            if config.client_version.trim().is_empty() {
                config::DEFAULT_CLIENT_VERSION
            } else {
                config.client_version.trim()
            }
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
            mapper,
            instructions,
            tools,
            models_cache,
            warned_no_account: AtomicBool::new(false),
            detected,
            pool,
        })
    }

    fn provider_retries(&self) -> bool {
        // Configured accounts are failed over, and a fallback model is
        // asked for on a retry; a single credential alone is not retried.
        self.pool.is_some() || !self.config.failover.fallback_model.is_empty()
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        let path = req.path.trim_end_matches('/');
        match (req.method.as_str(), path) {
            ("GET", path) if path.ends_with("/v1/models") => Ok(self.models()),
            (method, path) => Err(PluginError::not_found(format!(
                "codex has no route {method} {path}"
            ))),
        }
    }

    async fn on_prepare_upstream(
        &self,
        req: ProviderRequest,
    ) -> Result<UpstreamRequest, PluginError> {
        let (mut credential, account) = match &self.pool {
            None => (auth::resolve(&self.ctx).await?, None),
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
        if !self.config.send_chatgpt_account_id {
            credential.account_id = None;
        } else if credential.account_id.is_none()
            && !self.warned_no_account.swap(true, Ordering::Relaxed)
        {
            warn!(
                "the Codex login names no ChatGPT account; sending no chatgpt-account-id (run `ccproxy auth login codex` if the backend refuses it)"
            );
        }
        let shaped = self.shape(&req.body, &req.headers, req.model.as_deref())?;
        let version = auth::client_version(&req.headers, &self.identity_version().0);
        debug!(
            "request {}: {} via {}, conversation {}",
            req.request_id, req.client_format, req.endpoint, shaped.conversation_id
        );
        let upstream = UpstreamRequest {
            method: "POST".to_owned(),
            url: self.url(),
            headers: upstream_headers(&credential, &shaped.conversation_id, &version),
            body: shaped.body,
            // The backend answers every request with a stream.
            stream: true,
            model_alias: shaped.model_alias,
            // 0: the host's `http.read_timeout_seconds`.
            timeout: (self.config.timeout_seconds > 0)
                .then(|| Duration::from_secs(self.config.timeout_seconds)),
            ..UpstreamRequest::default()
        };
        Ok(self
            .config
            .failover
            .plan(upstream, req.attempt.is_some(), account))
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

    async fn on_health(&self) -> Health {
        let (version, source) = self.identity_version();
        let identity = json!({"originator": auth::ORIGINATOR, "version": version, "source": source,
            "instructions": self.injected_instructions().1});
        if let Some(pool) = &self.pool {
            let details = json!({"base_url": self.config.base(), "credentials": "accounts", "codex_cli_identity": identity});
            return pool.plugin_health(details, accounts::describe);
        }
        match auth::resolve(&self.ctx).await {
            Ok(credential) => Health::with(
                HealthStatus::Healthy,
                json!({
                    "base_url": self.config.base(),
                    "credentials": "oauth",
                    "chatgpt_account": credential.account_id.is_some(),
                    "codex_cli_identity": identity,
                }),
            ),
            Err(error) => Health::with(
                HealthStatus::Degraded,
                json!({"base_url": self.config.base(), "reason": error.message()}),
            ),
        }
    }
}

/// The task that detects the installed Codex CLI's version again.
const DETECTION_TASK: &str = "codex_cli_detection";

impl Codex {
    /// The version to identify as for clients that bring none, and where it
    /// comes from: `client_version` (configured), the installed Codex CLI's
    /// (detected), else the bundled default.
    fn identity_version(&self) -> (String, &'static str) {
        let configured = self.config.client_version.trim();
        if !configured.is_empty() {
            return (configured.to_owned(), "configured");
        }
        let detected = self
            .detected
            .read()
            .ok()
            .and_then(|detected| Some(detected.as_ref()?.version.clone()));
        match detected {
            Some(version) => (version, "detected"),
            None => (config::DEFAULT_CLIENT_VERSION.to_owned(), "bundled"),
        }
    }

    /// The prompt `inject_instructions` prepends, and where it comes from:
    /// `codex_instructions` (configured), the installed Codex CLI's
    /// (detected), else the shipped 0.34.0 one (bundled).
    fn injected_instructions(&self) -> (String, &'static str) {
        if !self.config.codex_instructions.trim().is_empty() {
            return (self.instructions.clone(), "configured");
        }
        let detected = self
            .detected
            .read()
            .ok()
            .and_then(|detected| detected.as_ref()?.instructions.clone());
        match detected {
            Some(instructions) => (instructions, "detected"),
            None => (self.instructions.clone(), "bundled"),
        }
    }
}

/// Detects the installed Codex CLI and keeps what it learnt in `slot`; on
/// failure the last one (or the bundled defaults) stays.
async fn run_detection(ctx: Context, program: String, slot: Arc<RwLock<Option<detect::Detected>>>) {
    match detect::detect(&ctx, &program).await {
        Ok(detected) => {
            info!(
                "codex: Codex CLI {} detected{}; identifying as {} {}",
                detected.version,
                if detected.instructions.is_some() {
                    " with its prompt"
                } else {
                    ""
                },
                auth::ORIGINATOR,
                detected.version
            );
            if let Ok(mut slot) = slot.write() {
                *slot = Some(detected);
            }
        }
        Err(error) => debug!("codex: no Codex CLI detected from {program} ({error})"),
    }
}

export_plugin!(Codex);

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::testing::{MockHost, TestPlugin, request};

    use super::*;
    use crate::auth::NOT_LOGGED_IN;

    const ACCESS_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.codex-test-access-token.sig";
    const ACCOUNT: &str = "5f1c0a2e-7b3d-4c8a-9e21-acc000000001";
    const CLIENT_CREDENTIAL: &str = "Bearer client-proxy-token";

    /// A host where `oauth_codex` is logged in.
    fn host(config: Value) -> MockHost {
        MockHost::new()
            .config(config)
            .service(OAUTH_SERVICE, |method, args| {
                assert_eq!((method, &args), ("access_token", &json!({})));
                Ok(json!({"access_token": ACCESS_TOKEN, "account_id": ACCOUNT,
                          "expires_at_ms": 4_102_444_800_000u64, "plan_type": "plus"}))
            })
    }

    fn start(host: &MockHost) -> TestPlugin {
        host.start::<Codex>().expect("plugin starts")
    }

    fn provider_request(
        endpoint: &str,
        client_format: &str,
        body: &Value,
        headers: Headers,
    ) -> ProviderRequest {
        ProviderRequest {
            endpoint: endpoint.into(),
            client_format: client_format.into(),
            native_format: "openai.responses".into(),
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

    /// Prepares `body` as a Responses client's request on `/codex/v1/responses`.
    fn prepare_with(plugin: &TestPlugin, body: &Value, headers: Headers) -> UpstreamRequest {
        plugin
            .prepare_upstream(provider_request(
                "/codex/v1/responses",
                "openai.responses",
                body,
                headers,
            ))
            .expect("request prepared")
    }

    fn prepare(config: Value, body: &Value) -> UpstreamRequest {
        prepare_with(&start(&host(config)), body, Headers::default())
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

    fn read_json(path: &str) -> Value {
        let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    /// The headers and body of a real Codex CLI request.
    fn capture() -> (Headers, Value) {
        let capture = read_json(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/codex_cli_request_capture.json"
        ));
        let headers = capture["headers"]
            .as_object()
            .expect("capture has headers")
            .iter()
            .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
            .collect();
        (Headers(headers), capture["body_json"].clone())
    }

    /// A Claude-Code-shaped multi-turn request with parallel tool calls, as
    /// the host hands it over after converting it to Responses.
    fn claude_code_history() -> Value {
        read_json(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/claude_code_history.responses.json"
        ))
    }

    /// `history` cut after its first `n_items` input items: an earlier turn
    /// of the same conversation.
    fn earlier_turn(history: &Value, n_items: usize) -> Value {
        let mut turn = history.clone();
        turn["input"].as_array_mut().unwrap().truncate(n_items);
        turn
    }

    fn simple_body() -> Value {
        json!({"model": "gpt-5.3-codex", "input": [{"type": "message", "role": "user",
               "content": [{"type": "input_text", "text": "Hi"}]}]})
    }

    /// Every switch off: only the model mapping and the forced stream remain
    /// in the body, and no `chatgpt-account-id` is sent.
    fn all_off() -> Value {
        json!({
            "force_store_false": false,
            "strip_unsupported_params": false,
            "fold_system_into_instructions": false,
            "inject_instructions": false,
            "inject_tools": false,
            "add_reasoning_defaults": false,
            "stable_prompt_cache_key": false,
            "session_id_from_client": false,
            "send_chatgpt_account_id": false,
        })
    }

    fn with(base: Value, extra: Value) -> Value {
        let (Value::Object(mut base), Value::Object(extra)) = (base, extra) else {
            panic!("objects expected");
        };
        base.extend(extra);
        Value::Object(base)
    }

    fn call_ids(body: &Value) -> Vec<(String, String, String)> {
        body["input"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|item| {
                let kind = item["type"].as_str()?;
                let call_id = item["call_id"].as_str()?;
                Some((
                    kind.to_owned(),
                    call_id.to_owned(),
                    item["name"].as_str().unwrap_or_default().to_owned(),
                ))
            })
            .collect()
    }

    // Manifest, routes.

    #[test]
    fn manifest_declares_the_provider_its_endpoints_and_routes() {
        let plugin = start(&host(json!({})));
        let manifest = plugin.manifest();
        assert_eq!(manifest.name, "codex");
        assert_eq!(manifest.kind, PluginKind::Provider);
        let provider = manifest.provider.as_ref().expect("a provider");
        assert_eq!(provider.native_format, "openai.responses");
        let endpoints: Vec<(&str, &str)> = provider
            .endpoints
            .iter()
            .map(|endpoint| (endpoint.path.as_str(), endpoint.format.as_str()))
            .collect();
        assert_eq!(
            endpoints,
            [
                ("/codex/v1/responses", "openai.responses"),
                ("/codex/v1/chat/completions", "openai.chat_completions"),
                ("/codex/v1/messages", "anthropic.messages"),
                ("/codex/responses", "openai.responses"),
            ]
        );
        assert_eq!(manifest.routes[0].prefix, "/codex");
        assert_eq!(manifest.routes[0].routes, [Route::get("/v1/models")]);
        assert_eq!(manifest.optional_requires, ["oauth.codex"]);
        assert!(manifest.dependencies.is_empty());
        let defaults = &manifest.config.defaults;
        assert_eq!(
            defaults["base_url"],
            "https://chatgpt.com/backend-api/codex"
        );
        assert_eq!(defaults["inject_tools"], false);
        assert_eq!(defaults["timeout_seconds"], 0);
        assert_eq!(defaults["send_chatgpt_account_id"], true);
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

    /// A file in `testdata/`.
    fn testdata(name: &str) -> String {
        concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/").to_owned() + name
    }

    #[test]
    fn models_lists_the_default_cards() {
        // No Codex CLI cache: `models` is empty.
        let plugin = start(&host(
            json!({"models_cache_file": testdata("no_such_models_cache.json")}),
        ));
        let response = plugin.route(request("GET", "/codex/v1/models")).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(
            response.headers.get("content-type"),
            Some("application/json")
        );
        let listed: Value = serde_json::from_slice(&response.body).unwrap();
        let mappings = listed["mappings"].clone();
        assert_eq!(
            listed,
            json!({"object": "list", "data": [
                {"id": "gpt-5.3-codex", "object": "model", "created": 1_770_249_600, "owned_by": "openai",
                 "type": "model", "display_name": "GPT-5.3-Codex", "created_at": "2026-02-05T00:00:00.000Z"},
                {"id": "gpt-5.2-codex", "object": "model", "created": 1_766_016_000, "owned_by": "openai",
                 "type": "model", "display_name": "GPT-5.2-Codex", "created_at": "2025-12-18T00:00:00.000Z"},
            ], "has_more": false, "first_id": "gpt-5.3-codex", "last_id": "gpt-5.2-codex",
               "mappings": mappings, "models": []})
        );
        // Every default rule, in order, with what it maps to.
        let rules: Vec<(&str, &str, &str)> = mappings
            .as_array()
            .unwrap()
            .iter()
            .map(|rule| {
                assert_eq!(rule["ignore_case"], false, "{rule}");
                (
                    rule["kind"].as_str().unwrap(),
                    rule["pattern"].as_str().unwrap(),
                    rule["maps_to"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rules,
            [
                ("prefix", "gpt-5-codex", "gpt-5.3-codex"),
                ("prefix", "gpt-", "gpt-5.3-codex"),
                ("prefix", "o3-", "gpt-5.3-codex"),
                ("prefix", "o1-", "gpt-5.3-codex"),
                ("prefix", "claude-", "gpt-5.3-codex"),
                ("regex", "^o[134](?:-|$)", "gpt-5.3-codex"),
                ("prefix", "text-davinci", "gpt-5.3-codex"),
                ("prefix", "codex-mini", "gpt-5.3-codex"),
            ]
        );
        assert!(plugin.host().http_requests().is_empty());
        assert!(plugin.host().service_calls().is_empty());
        let error = plugin
            .route(request("GET", "/codex/v1/nothing"))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn models_has_the_codex_cli_cache_entries_of_the_listed_models() {
        let plugin = start(&host(
            json!({"models_cache_file": testdata("models_cache.json")}),
        ));
        let response = plugin.route(request("GET", "/codex/v1/models")).unwrap();
        assert_eq!(response.status, 200);
        let listed: Value = serde_json::from_slice(&response.body).unwrap();
        let ids: Vec<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|card| card["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["gpt-5.3-codex", "gpt-5.2-codex"]);
        // The cache's own entries, whole and in its order, without the
        // model that is not listed.
        let cache = read_json(&testdata("models_cache.json"));
        let entries = cache["models"].as_array().unwrap();
        assert_eq!(
            listed["models"],
            json!([entries[0].clone(), entries[2].clone()])
        );
        // A listed model the cache lacks is still a card.
        let plugin = start(&host(json!({
            "models_cache_file": testdata("models_cache.json"),
            "models": [{"id": "gpt-5.1-codex-mini"}, {"id": "gpt-6"}],
        })));
        let response = plugin.route(request("GET", "/codex/v1/models")).unwrap();
        let listed: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(listed["data"].as_array().unwrap().len(), 2);
        assert_eq!(listed["models"], json!([entries[1].clone()]));
    }

    #[test]
    fn an_unreadable_model_cache_lists_no_cached_models_and_says_why() {
        let dir = std::env::temp_dir().join(format!("ccproxy-codex-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let broken = dir.join("models_cache.json");
        std::fs::write(&broken, "{not json").unwrap();
        let host = host(json!({"models_cache_file": broken.to_string_lossy()}));
        let plugin = start(&host);
        let response = plugin.route(request("GET", "/codex/v1/models")).unwrap();
        assert_eq!(response.status, 200);
        let listed: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(listed["models"], json!([]));
        assert_eq!(listed["data"].as_array().unwrap().len(), 2);
        assert!(
            host.logs()
                .iter()
                .any(|(_, line)| line.contains("is not JSON") && line.contains("models_cache.json")),
            "{:?}",
            host.logs()
        );
        // A cache without a `models` list lists none either.
        std::fs::write(&broken, r#"{"models": {"slug": "gpt-5.3-codex"}}"#).unwrap();
        let response = plugin.route(request("GET", "/codex/v1/models")).unwrap();
        let listed: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(listed["models"], json!([]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_model_cache_is_the_codex_clis() {
        let path = |configured: &str, home: Option<&str>, codex_home: Option<&str>| {
            models_cache_path(configured, home.map(Into::into), codex_home.map(Into::into))
        };
        assert_eq!(
            path("", Some("/home/ada"), None),
            Some(PathBuf::from("/home/ada/.codex/models_cache.json"))
        );
        assert_eq!(
            path("", Some("/home/ada"), Some("/srv/codex")),
            Some(PathBuf::from("/srv/codex/models_cache.json"))
        );
        assert_eq!(
            path("~/cache/models.json", Some("/home/ada"), Some("/srv/codex")),
            Some(PathBuf::from("/home/ada/cache/models.json"))
        );
        assert_eq!(
            path("/etc/codex/models.json", None, None),
            Some(PathBuf::from("/etc/codex/models.json"))
        );
        assert_eq!(path("", None, Some("")), None);
        assert_eq!(path("~/models.json", Some(""), None), None);
    }

    #[test]
    fn models_lists_configured_cards() {
        let plugin = start(&host(json!({
            "models": [{"id": "gpt-5.5", "created": 5}, {"id": "mine", "owned_by": "me", "display_name": "Mine"}],
            "model_mappings": [
                {"pattern": "fast", "target": "gpt-5.5"},
                {"pattern": "mine", "target": "gpt-5.5"},
                {"kind": "prefix", "pattern": "gpt-", "target": "gpt-5.5"},
                {"pattern": "gpt-4o", "target": "never"},
                {"pattern": "other", "target": "elsewhere"},
            ],
        })));
        let response = plugin.route(request("GET", "/codex/v1/models/")).unwrap();
        let listed: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(
            listed["data"],
            json!([
                {"id": "gpt-5.5", "object": "model", "created": 5, "owned_by": "openai",
                 "type": "model", "display_name": "gpt-5.5", "created_at": "1970-01-01T00:00:05.000Z"},
                // Listed: sent as it is, though a rule names it.
                {"id": "mine", "object": "model", "created": 0, "owned_by": "me",
                 "type": "model", "display_name": "Mine", "created_at": "1970-01-01T00:00:00.000Z"},
                // Aliases: the target's card (its display name when it
                // has one, else the alias), and what they map to.
                {"id": "fast", "object": "model", "created": 5, "owned_by": "openai",
                 "type": "model", "display_name": "fast", "created_at": "1970-01-01T00:00:05.000Z",
                 "maps_to": "gpt-5.5"},
                // Shadowed by the `gpt-` prefix before it.
                {"id": "gpt-4o", "object": "model", "created": 5, "owned_by": "openai",
                 "type": "model", "display_name": "gpt-4o", "created_at": "1970-01-01T00:00:05.000Z",
                 "maps_to": "gpt-5.5"},
                {"id": "other", "object": "model", "created": 0, "owned_by": "openai",
                 "type": "model", "display_name": "other", "created_at": "1970-01-01T00:00:00.000Z",
                 "maps_to": "elsewhere"},
            ])
        );
        assert_eq!(
            listed["mappings"][3]["maps_to"], "never",
            "the rule as configured"
        );
    }

    // The upstream request: URL, headers, credentials, stream.

    #[test]
    fn the_upstream_request_has_the_codex_cli_headers_and_never_the_clients_credentials() {
        let plugin = start(&host(json!({})));
        let client = headers(&[
            ("Authorization", CLIENT_CREDENTIAL),
            ("x-api-key", "client-key"),
            ("cookie", "session=1"),
            ("connection", "keep-alive"),
            ("host", "127.0.0.1:8000"),
            ("content-length", "99"),
            ("accept-encoding", "gzip"),
            ("user-agent", "claude-cli/2.0.0 (external, cli)"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "interleaved-thinking-2025-05-14"),
            ("x-stainless-os", "Linux"),
            ("version", "9.9.9"),
        ]);
        let upstream = prepare_with(&plugin, &simple_body(), client);
        assert_eq!(upstream.method, "POST");
        assert_eq!(
            upstream.url,
            "https://chatgpt.com/backend-api/codex/responses"
        );
        // The host's `http.read_timeout_seconds`.
        assert_eq!(upstream.timeout, None);
        let conversation = sent(&upstream)["prompt_cache_key"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            upstream.headers,
            headers(&[
                ("content-type", "application/json"),
                ("accept", "text/event-stream"),
                ("authorization", &format!("Bearer {ACCESS_TOKEN}")),
                ("chatgpt-account-id", ACCOUNT),
                ("openai-beta", "responses=experimental"),
                ("originator", "codex_cli_rs"),
                ("version", "0.171.0"),
                ("user-agent", &auth::user_agent("0.171.0")),
                ("session_id", &conversation),
                ("conversation_id", &conversation),
            ])
        );
        let calls = plugin.host().service_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            (calls[0].service.as_str(), calls[0].method.as_str()),
            ("oauth.codex", "access_token")
        );
        assert!(
            !plugin
                .host()
                .logs()
                .iter()
                .any(|(_, line)| line.contains(ACCESS_TOKEN))
        );
    }

    #[test]
    fn the_upstream_always_streams() {
        let plugin = start(&host(json!({})));
        for client_stream in [false, true] {
            let mut body = simple_body();
            body["stream"] = json!(client_stream);
            let upstream = prepare_with(&plugin, &body, Headers::default());
            assert!(upstream.stream, "client stream {client_stream}");
            assert_eq!(sent(&upstream)["stream"], true);
        }
        // Even with every shaping step off.
        let upstream = prepare(all_off(), &simple_body());
        assert!(upstream.stream);
        assert_eq!(sent(&upstream)["stream"], true);
    }

    #[test]
    fn base_url_and_timeout_are_configurable() {
        let upstream = prepare(
            json!({"base_url": "http://127.0.0.1:4010/backend-api/codex/", "timeout_seconds": 30}),
            &simple_body(),
        );
        assert_eq!(
            upstream.url,
            "http://127.0.0.1:4010/backend-api/codex/responses"
        );
        assert_eq!(upstream.timeout, Some(Duration::from_secs(30)));
        let upstream = prepare(json!({"client_version": "0.130.0"}), &simple_body());
        assert_eq!(upstream.headers.get("version"), Some("0.130.0"));
        assert!(
            upstream
                .headers
                .get("user-agent")
                .unwrap()
                .starts_with("codex_cli_rs/0.130.0 (")
        );
    }

    #[test]
    fn a_login_without_an_account_sends_no_account_header() {
        let host = MockHost::new().service(OAUTH_SERVICE, |_, _| {
            Ok(json!({"access_token": ACCESS_TOKEN, "account_id": null}))
        });
        let plugin = start(&host);
        for _ in 0..2 {
            let upstream = prepare_with(&plugin, &simple_body(), Headers::default());
            assert_eq!(upstream.headers.get("chatgpt-account-id"), None);
        }
        let warnings = host
            .logs()
            .into_iter()
            .filter(|(_, line)| line.contains("names no ChatGPT account"))
            .count();
        assert_eq!(warnings, 1);
    }

    #[test]
    fn send_chatgpt_account_id_off_sends_no_account_header() {
        let host = host(json!({"send_chatgpt_account_id": false}));
        let plugin = start(&host);
        let upstream = prepare_with(&plugin, &simple_body(), Headers::default());
        assert_eq!(upstream.headers.get("chatgpt-account-id"), None);
        // The rest of the credential is sent as before.
        assert_eq!(
            upstream.headers.get("authorization"),
            Some(format!("Bearer {ACCESS_TOKEN}").as_str())
        );
        assert_eq!(upstream.headers.get("originator"), Some("codex_cli_rs"));
        // Leaving it out on purpose is not a login without an account.
        assert!(
            !host
                .logs()
                .iter()
                .any(|(_, line)| line.contains("names no ChatGPT account"))
        );
        // On (the default) it is the claim's account.
        let upstream = prepare(json!({"send_chatgpt_account_id": true}), &simple_body());
        assert_eq!(upstream.headers.get("chatgpt-account-id"), Some(ACCOUNT));
    }

    #[test]
    fn timeout_seconds_zero_is_the_hosts_read_timeout() {
        let upstream = prepare(json!({"timeout_seconds": 0}), &simple_body());
        assert_eq!(upstream.timeout, None);
        let upstream = prepare(json!({"timeout_seconds": 300}), &simple_body());
        assert_eq!(upstream.timeout, Some(Duration::from_secs(300)));
    }

    // A missing login.

    #[test]
    fn missing_login_says_what_to_do() {
        // No oauth_codex plugin at all.
        let plugin = start(&MockHost::new());
        let error = plugin
            .prepare_upstream(provider_request(
                "/codex/v1/messages",
                "anthropic.messages",
                &simple_body(),
                Headers::default(),
            ))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
        assert_eq!(error.kind().http_status(), 401);
        assert!(
            error
                .message()
                .starts_with("not logged in to Codex: run `ccproxy auth login codex` or `codex login` (oauth.codex is not available: enable the oauth_codex plugin"),
            "{error}"
        );
        assert!(plugin.host().http_requests().is_empty());
    }

    #[test]
    fn a_logged_out_oauth_service_answers_in_its_own_words() {
        let host = MockHost::new().service(OAUTH_SERVICE, |_, _| {
            Err(PluginError::new(ErrorKind::Unauthorized, NOT_LOGGED_IN))
        });
        let error = start(&host)
            .prepare_upstream(provider_request(
                "/codex/v1/responses",
                "openai.responses",
                &simple_body(),
                Headers::default(),
            ))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
        assert_eq!(
            error.message(),
            "not logged in to Codex: run `ccproxy auth login codex` or `codex login`"
        );

        let host = MockHost::new().service(OAUTH_SERVICE, |_, _| Ok(json!({"access_token": ""})));
        let error = start(&host)
            .prepare_upstream(provider_request(
                "/codex/v1/responses",
                "openai.responses",
                &simple_body(),
                Headers::default(),
            ))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthorized);
        assert!(error.message().starts_with(NOT_LOGGED_IN), "{error}");
    }

    #[test]
    fn a_failing_token_service_keeps_its_kind() {
        let host = MockHost::new().service(OAUTH_SERVICE, |_, _| {
            Err(PluginError::new(
                ErrorKind::Timeout,
                "token endpoint: no answer in 30 s",
            ))
        });
        let error = start(&host)
            .prepare_upstream(provider_request(
                "/codex/v1/responses",
                "openai.responses",
                &simple_body(),
                Headers::default(),
            ))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert_eq!(
            error.message(),
            "oauth.codex could not provide a token: token endpoint: no answer in 30 s"
        );
    }

    #[test]
    fn health_is_degraded_without_a_login() {
        let health = start(&MockHost::new()).health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        let reason = health.details["reason"].as_str().unwrap();
        assert!(reason.starts_with(NOT_LOGGED_IN), "{reason}");

        let health = start(&host(json!({}))).health().unwrap();
        assert_eq!(health.status, HealthStatus::Healthy);
        assert_eq!(health.details["chatgpt_account"], true);
        assert!(!health.details.to_string().contains(ACCESS_TOKEN));
    }

    // The real Codex CLI request.

    #[test]
    fn a_codex_cli_request_goes_through_unchanged_but_for_the_model() {
        let (client, body) = capture();
        let upstream = prepare_with(&start(&host(json!({}))), &body, client);
        let mut expected = body.clone();
        // `gpt-5` is not listed, and the `gpt-` rule maps it.
        expected["model"] = json!("gpt-5.3-codex");
        assert_eq!(sent(&upstream), expected);
        assert_eq!(upstream.model_alias.as_deref(), Some("gpt-5"));
        // It brings its own version; its (redacted, empty) credentials stay behind.
        assert_eq!(upstream.headers.get("version"), Some("0.34.0"));
        assert_eq!(
            upstream.headers.get("authorization"),
            Some(format!("Bearer {ACCESS_TOKEN}").as_str())
        );
        // Its prompt_cache_key names the conversation for both headers.
        let key = body["prompt_cache_key"].as_str().unwrap();
        assert_eq!(upstream.headers.get("session_id"), Some(key));
        assert_eq!(upstream.headers.get("conversation_id"), Some(key));
    }

    #[test]
    fn a_codex_cli_client_with_other_instructions_gets_none_added() {
        let (client, mut body) = capture();
        body["instructions"] = json!("You are Codex, based on GPT-5. (a newer prompt)");
        let upstream = prepare_with(&start(&host(json!({}))), &body, client);
        assert_eq!(sent(&upstream)["instructions"], body["instructions"]);
    }

    // Regressions of the original (ccproxy-api issue numbers).

    #[test]
    fn regression_59_metadata_is_stripped() {
        // What the original's Anthropic→Responses conversion sent for Claude
        // Code: metadata (and the user id), sampling and token limits, which
        // the backend refused ("Unsupported parameter: metadata").
        let body = json!({
            "model": "claude-sonnet-4-5-20250929",
            "instructions": "You are Claude Code, Anthropic's official CLI for Claude.",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
            "metadata": {"user_id": "user_abc_account_def_session_8e24f6d6"},
            "user": "user_abc_account_def_session_8e24f6d6",
            "temperature": 1.0,
            "top_p": 0.9,
            "max_output_tokens": 32000,
            "max_tokens": 32000,
            "max_completion_tokens": 32000,
            "service_tier": "auto",
            "_ccproxy_injected": true,
            "stream": true,
        });
        let upstream = prepare(json!({}), &body);
        let shaped = sent(&upstream);
        for gone in [
            "metadata",
            "user",
            "temperature",
            "top_p",
            "max_output_tokens",
            "max_tokens",
            "max_completion_tokens",
            "_ccproxy_injected",
        ] {
            assert!(shaped.get(gone).is_none(), "{gone} was sent: {shaped}");
        }
        assert_eq!(shaped["service_tier"], "auto");
        assert_eq!(shaped["model"], "gpt-5.3-codex");
        assert_eq!(
            upstream.model_alias.as_deref(),
            Some("claude-sonnet-4-5-20250929")
        );
        // And through the host's own conversion: `metadata.user_id` arrives as `user`.
        let shaped = sent(&prepare(json!({}), &claude_code_history()));
        assert!(shaped.get("user").is_none() && shaped.get("metadata").is_none());
        assert!(shaped.get("temperature").is_none() && shaped.get("max_output_tokens").is_none());
    }

    #[test]
    fn regression_59_history_and_tool_cycles_keep_order() {
        let history = claude_code_history();
        let plugin = start(&host(json!({})));
        let upstream = plugin
            .prepare_upstream(provider_request(
                "/codex/v1/messages",
                "anthropic.messages",
                &history,
                headers(&[("user-agent", "claude-cli/2.0.0 (external, cli)")]),
            ))
            .unwrap();
        let shaped = sent(&upstream);
        // Every input item reaches the upstream as the host converted it: same
        // items, same order, nothing merged, split or duplicated.
        assert_eq!(shaped["input"], history["input"]);
        let expected_calls = [
            ("function_call", "call_Fq3mS0Yw8kQm1V2xL7bZ0aTe", "Bash"),
            ("function_call", "call_9dKx2LpQ4rT6uW8yZ1cE3gHj", "Read"),
            ("function_call_output", "call_Fq3mS0Yw8kQm1V2xL7bZ0aTe", ""),
            ("function_call_output", "call_9dKx2LpQ4rT6uW8yZ1cE3gHj", ""),
            ("function_call", "call_Mn5bV7cX9zA1sD3fG5hJ7kL9", "Bash"),
            ("function_call_output", "call_Mn5bV7cX9zA1sD3fG5hJ7kL9", ""),
        ]
        .map(|(kind, id, name)| (kind.to_owned(), id.to_owned(), name.to_owned()));
        assert_eq!(call_ids(&shaped), expected_calls);
        // Identity fields appear once each ("shellshell" was a doubled name).
        let text = shaped.to_string();
        assert_eq!(text.matches("\"call_Fq3mS0Yw8kQm1V2xL7bZ0aTe\"").count(), 2);
        assert!(!text.contains("BashBash") && !text.contains("ReadRead"));
        // The tools keep their names and order too.
        let names: Vec<&str> = shaped["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Bash", "Read"]);
        // Claude Code's prompt follows the Codex CLI's in the instructions.
        let instructions = shaped["instructions"].as_str().unwrap();
        assert!(instructions.starts_with(CODEX_CLI_INSTRUCTIONS.trim_end()));
        assert!(instructions.ends_with(history["instructions"].as_str().unwrap()));
    }

    #[test]
    fn regression_53_system_messages_fold_into_instructions() {
        // What langchain sends: a SystemMessage in the Responses input.
        let body = json!({
            "model": "gpt-5.3-codex",
            "input": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is 2+2?"},
                {"role": "developer", "content": [{"type": "input_text", "text": "Answer with a number."}]},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "And 3+3?"},
            ],
        });
        let shaped = sent(&prepare(json!({"inject_instructions": false}), &body));
        assert_eq!(
            shaped["instructions"],
            "You are a helpful assistant.\n\nAnswer with a number."
        );
        assert_eq!(
            shaped["input"],
            json!([
                {"type": "message", "role": "user", "content": "What is 2+2?"},
                {"type": "message", "role": "assistant", "content": "4"},
                {"type": "message", "role": "user", "content": "And 3+3?"},
            ])
        );
        // With the Codex CLI's instructions in front of them.
        let shaped = sent(&prepare(json!({}), &body));
        let instructions = shaped["instructions"].as_str().unwrap();
        assert!(instructions.starts_with(CODEX_CLI_INSTRUCTIONS.trim_end()));
        assert!(
            instructions.ends_with("\n\nYou are a helpful assistant.\n\nAnswer with a number.")
        );
    }

    #[test]
    fn regression_63_prompt_cache_key_is_stable_across_turns() {
        let history = claude_code_history();
        let plugin = start(&host(json!({})));
        // Claude Code's turns 1, 2 and 3 of one conversation.
        let turns = [
            earlier_turn(&history, 1),
            earlier_turn(&history, 6),
            history.clone(),
        ];
        let mut keys = Vec::new();
        for turn in &turns {
            let upstream = prepare_with(&plugin, turn, Headers::default());
            let key = sent(&upstream)["prompt_cache_key"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(upstream.headers.get("session_id"), Some(key.as_str()));
            assert_eq!(upstream.headers.get("conversation_id"), Some(key.as_str()));
            keys.push(key);
        }
        assert_eq!(keys[0], keys[1]);
        assert_eq!(keys[1], keys[2]);
        // The same request twice: the same key (it used to be a fresh uuid each time).
        let again = prepare_with(&plugin, &history, Headers::default());
        assert_eq!(sent(&again)["prompt_cache_key"], keys[0].as_str());
        // Another conversation gets another key.
        let mut other = history.clone();
        other["input"][0]["content"][1]["text"] = json!("Something else entirely.");
        let other = prepare_with(&plugin, &other, Headers::default());
        assert_ne!(sent(&other)["prompt_cache_key"], keys[0].as_str());
        // A chat client's turns too.
        let chat_turn = |messages: Value| {
            let upstream = plugin
                .prepare_upstream(provider_request(
                    "/codex/v1/chat/completions",
                    "openai.chat_completions",
                    &json!({"model": "gpt-5.3-codex", "instructions": "Be brief.", "input": messages}),
                    Headers::default(),
                ))
                .unwrap();
            sent(&upstream)["prompt_cache_key"].clone()
        };
        let first = chat_turn(json!([{"role": "user", "content": "Hi"}]));
        let second = chat_turn(json!([
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ]));
        assert_eq!(first, second);
    }

    // Conversation ids from the client.

    #[test]
    fn the_clients_session_id_names_the_conversation() {
        let plugin = start(&host(json!({})));
        let upstream = prepare_with(
            &plugin,
            &simple_body(),
            headers(&[("session_id", "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")]),
        );
        assert_eq!(
            upstream.headers.get("session_id"),
            Some("0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(
            upstream.headers.get("conversation_id"),
            Some("0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(
            sent(&upstream)["prompt_cache_key"],
            "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
        );
        // A client's own prompt_cache_key is kept and names the session.
        let mut body = simple_body();
        body["prompt_cache_key"] = json!("my-cache-key");
        let upstream = prepare_with(&plugin, &body, Headers::default());
        assert_eq!(sent(&upstream)["prompt_cache_key"], "my-cache-key");
        assert_eq!(upstream.headers.get("session_id"), Some("my-cache-key"));
    }

    #[test]
    fn session_id_from_client_off_ignores_the_header() {
        let plugin = start(&host(json!({"session_id_from_client": false})));
        let derived = prepare_with(&plugin, &simple_body(), Headers::default());
        let derived = derived.headers.get("session_id").unwrap().to_owned();
        let upstream = prepare_with(
            &plugin,
            &simple_body(),
            headers(&[
                ("session_id", "client-chosen"),
                ("conversation_id", "client-chosen"),
            ]),
        );
        assert_eq!(upstream.headers.get("session_id"), Some(derived.as_str()));
        assert_eq!(sent(&upstream)["prompt_cache_key"], derived.as_str());
    }

    // The shaping switches.

    #[test]
    fn every_shaping_step_is_on_by_default_but_inject_tools() {
        let body = json!({
            "model": "gpt-4o",
            "input": "Hi",
            "store": true,
            "temperature": 0.2,
            "_debug": 1,
        });
        let upstream = prepare(json!({}), &body);
        let shaped = sent(&upstream);
        assert_eq!(shaped["model"], "gpt-5.3-codex");
        assert_eq!(upstream.model_alias.as_deref(), Some("gpt-4o"));
        assert_eq!(
            shaped["input"],
            json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}])
        );
        assert_eq!(shaped["store"], false);
        assert_eq!(shaped["stream"], true);
        assert!(shaped.get("temperature").is_none() && shaped.get("_debug").is_none());
        // Exactly the Codex CLI's instructions, as it sends them.
        assert_eq!(shaped["instructions"], CODEX_CLI_INSTRUCTIONS);
        assert!(shaped.get("tools").is_none(), "no tools injected: {shaped}");
        assert_eq!(
            shaped["reasoning"],
            json!({"effort": "medium", "summary": "auto"})
        );
        assert_eq!(shaped["include"], json!(["reasoning.encrypted_content"]));
        assert_eq!(shaped["prompt_cache_key"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn with_every_switch_off_the_body_passes_as_sent() {
        let body = json!({
            "model": "gpt-5.3-codex",
            "instructions": "Be brief.",
            "input": [
                {"role": "system", "content": "Sys"},
                {"type": "item_reference", "id": "msg_1"},
                {"type": "message", "role": "user", "content": "Hi"},
            ],
            "store": true,
            "stream": true,
            "temperature": 0.2,
            "metadata": {"a": "b"},
            "_debug": 1,
        });
        let upstream = prepare(all_off(), &body);
        let mut expected = body.clone();
        // Typing the input is not a switch: the backend needs it.
        expected["input"][0]["type"] = json!("message");
        assert_eq!(sent(&upstream), expected);
        assert_eq!(upstream.model_alias, None);
    }

    #[test]
    fn each_switch_alone() {
        let body = json!({
            "model": "gpt-5.3-codex",
            "instructions": "Be brief.",
            "input": [
                {"type": "message", "role": "developer", "content": "Dev"},
                {"type": "item_reference", "id": "msg_1"},
                {"type": "message", "role": "user", "content": "Hi"},
            ],
            "store": true,
            "temperature": 0.2,
        });
        let shaped = |switch: &str| sent(&prepare(with(all_off(), json!({switch: true})), &body));

        let store = shaped("force_store_false");
        assert_eq!(store["store"], false);
        assert_eq!(store["temperature"], 0.2);

        let strip = shaped("strip_unsupported_params");
        assert!(strip.get("temperature").is_none());
        assert_eq!(strip["input"].as_array().unwrap().len(), 2);
        assert_eq!(strip["store"], true);

        let fold = shaped("fold_system_into_instructions");
        assert_eq!(fold["instructions"], "Be brief.\n\nDev");
        assert_eq!(fold["input"].as_array().unwrap().len(), 2);

        let inject = shaped("inject_instructions");
        assert_eq!(
            inject["instructions"],
            format!("{}\n\nBe brief.", CODEX_CLI_INSTRUCTIONS.trim_end())
        );

        let reasoning = shaped("add_reasoning_defaults");
        assert_eq!(reasoning["reasoning"]["effort"], "medium");
        assert!(reasoning.get("prompt_cache_key").is_none());

        let key = shaped("stable_prompt_cache_key");
        assert_eq!(key["prompt_cache_key"].as_str().unwrap().len(), 36);
        assert!(key.get("reasoning").is_none());
    }

    #[test]
    fn inject_tools_gives_only_tool_less_requests_the_codex_cli_tools() {
        let plugin = start(&host(json!({"inject_tools": true})));
        let shaped = sent(&prepare_with(&plugin, &simple_body(), Headers::default()));
        let names: Vec<&str> = shaped["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["shell", "view_image"]);
        assert_eq!(shaped["tool_choice"], "auto");
        assert_eq!(shaped["parallel_tool_calls"], false);
        // A request with tools keeps its own.
        let shaped = sent(&prepare_with(
            &plugin,
            &claude_code_history(),
            Headers::default(),
        ));
        assert_eq!(shaped["tools"], claude_code_history()["tools"]);
    }

    #[test]
    fn reasoning_defaults_and_instructions_are_configurable() {
        let shaped = sent(&prepare(
            json!({"reasoning_effort": "high", "reasoning_summary": "detailed", "codex_instructions": "House rules."}),
            &simple_body(),
        ));
        assert_eq!(
            shaped["reasoning"],
            json!({"effort": "high", "summary": "detailed"})
        );
        assert_eq!(shaped["instructions"], "House rules.");
        // A client's own reasoning is left alone.
        let mut body = simple_body();
        body["reasoning"] = json!({"effort": "low"});
        body["include"] = json!([]);
        let shaped = sent(&prepare(json!({}), &body));
        assert_eq!(shaped["reasoning"], json!({"effort": "low"}));
        assert_eq!(shaped["include"], json!([]));
    }

    #[test]
    fn unsupported_params_are_configurable() {
        let mut body = simple_body();
        body["temperature"] = json!(0.5);
        body["service_tier"] = json!("flex");
        let shaped = sent(&prepare(
            json!({"unsupported_params": ["service_tier"]}),
            &body,
        ));
        assert_eq!(shaped["temperature"], 0.5);
        assert!(shaped.get("service_tier").is_none());
    }

    // Model mappings.

    #[test]
    fn default_mappings_send_claude_and_openai_models_to_codex_with_the_alias() {
        let plugin = start(&host(json!({})));
        let check = |model: &str, expected: &str| {
            let mut body = simple_body();
            body["model"] = json!(model);
            let upstream = prepare_with(&plugin, &body, Headers::default());
            assert_eq!(sent(&upstream)["model"], expected, "{model}");
            let alias = (model != expected).then(|| model.to_owned());
            assert_eq!(upstream.model_alias, alias, "{model}");
        };
        check("claude-sonnet-4-5-20250929", "gpt-5.3-codex");
        check("claude-3-5-haiku-20241022", "gpt-5.3-codex");
        check("gpt-5-codex", "gpt-5.3-codex");
        check("gpt-4o", "gpt-5.3-codex");
        check("o3-mini", "gpt-5.3-codex");
        check("o1-preview", "gpt-5.3-codex");
        check("o3", "gpt-5.3-codex");
        check("o4-mini", "gpt-5.3-codex");
        // Listed models are sent as they are, though `gpt-` would match them.
        check("gpt-5.3-codex", "gpt-5.3-codex");
        check("gpt-5.2-codex", "gpt-5.2-codex");
        // No rule matches.
        check("o10", "o10");
    }

    #[test]
    fn the_alias_is_the_model_the_client_asked_for() {
        // A chat client's model reaches the plugin in the converted body and
        // in `model`; the alias is the client's spelling.
        let plugin = start(&host(json!({})));
        let mut req = provider_request(
            "/codex/v1/chat/completions",
            "openai.chat_completions",
            &json!({"model": "gpt-4o", "input": []}),
            Headers::default(),
        );
        req.model = Some("gpt-4o".into());
        let upstream = plugin.prepare_upstream(req).unwrap();
        assert_eq!(upstream.model_alias.as_deref(), Some("gpt-4o"));
    }

    #[test]
    fn configured_mappings_replace_the_defaults() {
        let plugin = start(&host(json!({"model_mappings": [
            {"kind": "exact", "pattern": "Fast", "target": "gpt-5.1-codex-mini", "ignore_case": true},
            {"kind": "regex", "pattern": "^claude-(opus|sonnet)", "target": "gpt-5.2-codex"},
        ]})));
        let check = |model: &str, expected: &str| {
            let mut body = simple_body();
            body["model"] = json!(model);
            let upstream = prepare_with(&plugin, &body, Headers::default());
            assert_eq!(sent(&upstream)["model"], expected, "{model}");
        };
        check("FAST", "gpt-5.1-codex-mini");
        check("claude-opus-4-6", "gpt-5.2-codex");
        check("claude-haiku-4-5", "claude-haiku-4-5");
        check("gpt-4o", "gpt-4o");
    }

    #[test]
    fn a_bad_mapping_rule_stops_the_plugin() {
        let error =
            host(json!({"model_mappings": [{"kind": "regex", "pattern": "(", "target": "x"}]}))
                .start::<Codex>()
                .unwrap_err();
        assert!(
            error
                .message()
                .starts_with("plugins.codex.model_mappings[0]: invalid regex"),
            "{error}"
        );
    }

    // Config and bodies.

    #[test]
    fn bad_config_stops_the_plugin() {
        let refused = |config: Value| host(config).start::<Codex>().unwrap_err();
        let error = refused(json!({"inject_detection_payload": false}));
        assert!(
            error.message().contains("inject_detection_payload"),
            "{error}"
        );
        let error = refused(json!({"base_url": "chatgpt.com/backend-api/codex"}));
        assert!(
            error.message().contains("plugins.codex.base_url"),
            "{error}"
        );
        let error = refused(json!({"client_version": "0.1 beta"}));
        assert!(error.message().contains("client_version"), "{error}");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_a_400() {
        let plugin = start(&host(json!({})));
        let mut req = provider_request(
            "/codex/v1/responses",
            "openai.responses",
            &json!([1]),
            Headers::default(),
        );
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

    #[test]
    fn without_client_version_the_installed_codex_cli_is_the_identity() {
        let identity = |plugin: &TestPlugin| {
            plugin.health().expect("health").details["codex_cli_identity"].clone()
        };
        let off = start(&host(json!({"cli_path": ""})));
        assert_eq!(
            identity(&off),
            json!({"originator": "codex_cli_rs", "version": config::DEFAULT_CLIENT_VERSION, "source": "bundled", "instructions": "bundled"})
        );
        let configured = start(&host(json!({"client_version": "0.130.0"})));
        assert_eq!(identity(&configured)["source"], "configured");

        // A Codex CLI that says which version it is.
        let dir = std::env::temp_dir().join(format!("ccproxy-codex-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cli = dir.join("codex");
        std::fs::write(&cli, "#!/bin/sh\necho codex-cli 0.171.0\n").unwrap();
        std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let host = host(json!({"cli_path": cli.display().to_string()}));
        let detected = start(&host);
        detected.run_spawned();
        assert_eq!(
            identity(&detected),
            json!({"originator": "codex_cli_rs", "version": "0.171.0", "source": "detected", "instructions": "bundled"}),
            "a CLI that sends no request leaves the shipped prompt"
        );
        let upstream = detected
            .prepare_upstream(provider_request(
                "/codex/v1/responses",
                "openai.responses",
                &simple_body(),
                Headers::default(),
            ))
            .expect("prepared");
        assert_eq!(upstream.headers.get("version"), Some("0.171.0"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn init_logs_the_upstream_and_the_identity() {
        let host = host(json!({}));
        start(&host);
        assert!(host.logged(
            "codex ready: upstream https://chatgpt.com/backend-api/codex/responses, credentials: oauth.codex service, identifying as codex_cli_rs 0.171.0"
        ));
    }

    #[test]
    fn the_shipped_codex_cli_data_is_the_capture() {
        let (_, body) = capture();
        assert_eq!(body["instructions"], CODEX_CLI_INSTRUCTIONS);
        let tools: Value = serde_json::from_str(CODEX_CLI_TOOLS).unwrap();
        assert_eq!(tools, body["tools"]);
    }
}
