//! `[plugins.compat]`: the named upstreams and their settings.
//!
//! The Python original has no such plugin (it reached other servers only
//! through LiteLLM-style setups outside it), so there are no defaults to
//! keep: every default here is the one each ecosystem's own SDK uses (a
//! bearer token for OpenAI-style servers, `x-api-key` and `anthropic-version:
//! 2023-06-01` for Anthropic-style ones).

use std::collections::BTreeMap;

pub(crate) use ccproxy_plugin_kit::mapping::MappingRule;
use serde::{Deserialize, Serialize};

/// `[plugins.compat]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// The upstreams by name; each is served under `/{name}/`.
    pub(crate) upstreams: BTreeMap<String, UpstreamConfig>,
}

/// The wire format an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireFormat {
    /// OpenAI Chat Completions: `POST {base_url}/chat/completions`.
    #[serde(rename = "openai.chat_completions")]
    Chat,
    /// OpenAI Responses: `POST {base_url}/responses`.
    #[serde(rename = "openai.responses")]
    Responses,
    /// Anthropic Messages: `POST {base_url}/v1/messages`.
    #[serde(rename = "anthropic.messages")]
    Messages,
}

impl WireFormat {
    /// The format's name as the host's formats know it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WireFormat::Chat => "openai.chat_completions",
            WireFormat::Responses => "openai.responses",
            WireFormat::Messages => "anthropic.messages",
        }
    }

    /// Where requests of this format go, after `base_url`. OpenAI SDKs take a
    /// base URL that ends in `/v1` (`https://openrouter.ai/api/v1`,
    /// `http://localhost:11434/v1`), Anthropic SDKs one without
    /// (`https://api.anthropic.com`): each format follows its own SDKs, so a
    /// base URL copied from a server's docs works as it is.
    pub(crate) fn request_path(self) -> &'static str {
        match self {
            WireFormat::Chat => "/chat/completions",
            WireFormat::Responses => "/responses",
            WireFormat::Messages => "/v1/messages",
        }
    }

    /// Where the upstream lists its models, after `base_url`.
    pub(crate) fn models_path(self) -> &'static str {
        match self {
            WireFormat::Chat | WireFormat::Responses => "/models",
            WireFormat::Messages => "/v1/models",
        }
    }

    /// The auth header the format's SDKs send.
    pub(crate) fn default_auth(self) -> AuthHeader {
        match self {
            WireFormat::Chat | WireFormat::Responses => AuthHeader::Bearer,
            WireFormat::Messages => AuthHeader::XApiKey,
        }
    }
}

/// How the credential is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AuthHeader {
    /// `authorization: Bearer KEY` (OpenAI, OpenRouter, vLLM, most gateways).
    Bearer,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
    /// Nothing, even when a key is configured.
    None,
}

/// `[plugins.compat.upstreams.NAME]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct UpstreamConfig {
    /// The server's API root as its SDKs take it (see
    /// [`WireFormat::request_path`]).
    pub(crate) base_url: String,
    /// The wire format it speaks.
    pub(crate) format: Option<WireFormat>,
    /// An environment variable holding the API key.
    pub(crate) api_key_env: String,
    /// A file holding the API key (its first line; `~/` is the home folder).
    pub(crate) api_key_file: String,
    /// Several keys with failover (issue 12): the environment variables
    /// holding them, in priority order, each an account named after its
    /// variable; instead of `api_key_env`/`api_key_file`.
    pub(crate) api_key_envs: Vec<String>,
    /// How `api_key_envs` are picked and rested.
    pub(crate) failover: ccproxy_plugin_kit::accounts::PoolSettings,
    /// How the key is sent; default: by `format` (bearer for OpenAI-style,
    /// `x-api-key` for Anthropic-style).
    pub(crate) auth: Option<AuthHeader>,
    /// `anthropic-version` sent to an Anthropic-style upstream when the
    /// client sends none.
    pub(crate) anthropic_version: String,
    /// Headers added to every request (`HTTP-Referer`, `X-Title`, a
    /// gateway's tenant header).
    pub(crate) headers: BTreeMap<String, String>,
    /// Give up on the upstream (its head, then each chunk of a stream) after
    /// this many seconds; 0: the host's `http.read_timeout_seconds`.
    pub(crate) timeout_seconds: u64,
    /// The models it serves, listed by `GET /{name}/v1/models`; empty: the
    /// upstream's own list, fetched and cached.
    pub(crate) models: Vec<String>,
    /// How long a fetched model list is kept.
    pub(crate) models_cache_seconds: u64,
    /// Exact renames, client model id to upstream model id, applied first.
    pub(crate) rename: BTreeMap<String, String>,
    /// Rewrite rules `{kind = exact|prefix|suffix|regex, pattern, target,
    /// ignore_case}`, first match wins, applied after `rename`.
    pub(crate) model_mappings: Vec<MappingRule>,
    /// The model sent when the client names none, or (with `models` set) one
    /// that is not in `models` after renames and rules.
    pub(crate) default_model: String,
    /// Output token caps by upstream model id (`"*"`: every model): a
    /// request asking for more, or for nothing, is sent with the cap.
    pub(crate) max_tokens: BTreeMap<String, u64>,
    /// `max_tokens` sent to an Anthropic-style upstream when the request has
    /// none and no cap applies (Anthropic requires it).
    pub(crate) default_max_tokens: u64,
    /// Top-level request parameters removed before sending, for a server
    /// that refuses ones it does not know (`reasoning_effort`,
    /// `parallel_tool_calls`, `metadata`, …).
    pub(crate) drop_params: Vec<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            format: None,
            api_key_env: String::new(),
            api_key_file: String::new(),
            api_key_envs: Vec::new(),
            failover: Default::default(),
            auth: None,
            anthropic_version: "2023-06-01".to_owned(),
            headers: BTreeMap::new(),
            timeout_seconds: 0,
            models: Vec::new(),
            models_cache_seconds: 300,
            rename: BTreeMap::new(),
            model_mappings: Vec::new(),
            default_model: String::new(),
            max_tokens: BTreeMap::new(),
            default_max_tokens: 8192,
            drop_params: Vec::new(),
        }
    }
}

impl UpstreamConfig {
    /// `base_url` without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }
}

/// Checks an upstream's name: it becomes a path prefix, so it must be one
/// plain path segment.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name != "."
        && name != "..";
    if !plain {
        return Err(format!(
            "plugins.compat.upstreams.{name:?}: the name becomes the path prefix /{name}/, so it may hold only letters, digits, '-', '_' and '.'"
        ));
    }
    // Internal: these prefixes belong to the host and bundled plugins.
    const TAKEN: [&str; 6] = ["health", "plugins", "metrics", "claude", "codex", "v1"];
    if TAKEN.contains(&name) {
        return Err(format!(
            "plugins.compat.upstreams.{name}: /{name}/ is taken by the proxy or a bundled plugin; pick another name"
        ));
    }
    Ok(())
}
