//! `[plugins.claude_api]`: the settings, their defaults (those of the Python
//! original's `ClaudeAPISettings` and `claude_shared/model_defaults.py`) and
//! the secret wrapper that keeps the API key out of logs.

use std::fmt;

pub(crate) use ccproxy_plugin_kit::mapping::{MappingRule, MatchKind};
use serde::{Deserialize, Serialize};

/// The Anthropic API, where requests go unless `base_url` says otherwise.
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The environment variable read when `api_key` is empty.
pub(crate) const DEFAULT_API_KEY_ENV: &str = "ANTHROPIC_API_KEY";

/// `[plugins.claude_api]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// Upstream root; requests go to `{base_url}/v1/messages`.
    pub(crate) base_url: String,
    /// An Anthropic API key; empty reads `api_key_env` instead.
    pub(crate) api_key: Secret,
    /// The environment variable holding the API key when `api_key` is empty.
    pub(crate) api_key_env: String,
    /// Which credential to use.
    pub(crate) auth_mode: AuthMode,
    /// `anthropic-version` sent when the client sends none.
    pub(crate) anthropic_version: String,
    /// What system prompt to prepend in OAuth mode.
    pub(crate) system_prompt_injection_mode: InjectionMode,
    /// Text injected after the Claude Code identity block in `full` mode.
    pub(crate) full_system_prompt: String,
    /// `max_tokens` for requests that carry none.
    pub(crate) default_max_tokens: u64,
    /// Model rewrite rules, first match wins.
    pub(crate) model_mappings: Vec<MappingRule>,
    /// What `GET /claude/v1/models` lists.
    pub(crate) models: Vec<ModelCard>,
    /// Give up on `count_tokens` after this many seconds.
    pub(crate) timeout_seconds: u64,
    /// The Claude CLI whose identity headers are detected (`detect.rs`), a
    /// name on `PATH` or a path; empty turns detection off. The original
    /// detects from `claude` on `PATH` too.
    pub(crate) cli_path: String,
    /// Seconds between detections (the original's
    /// `claude_api_detection_refresh` task: 3600).
    pub(crate) detection_interval_seconds: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: Secret::default(),
            api_key_env: DEFAULT_API_KEY_ENV.to_owned(),
            auth_mode: AuthMode::Auto,
            anthropic_version: "2023-06-01".to_owned(),
            system_prompt_injection_mode: InjectionMode::Minimal,
            full_system_prompt: String::new(),
            default_max_tokens: 4096,
            model_mappings: default_model_mappings(),
            models: default_models(),
            timeout_seconds: 600,
            cli_path: "claude".to_owned(),
            detection_interval_seconds: 3600.0,
        }
    }
}

impl Config {
    /// `base_url` without trailing slashes, so paths can be appended.
    pub(crate) fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }
}

/// Which credential the plugin sends upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AuthMode {
    /// The API key when there is one, else the OAuth token.
    Auto,
    /// Only the API key (`x-api-key`).
    ApiKey,
    /// Only the OAuth token from the `oauth.claude-api` service.
    #[serde(rename = "oauth")]
    OAuth,
}

/// How much of Claude Code's system prompt is prepended in OAuth mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum InjectionMode {
    /// Nothing.
    None,
    /// The one-line identity block.
    Minimal,
    /// The identity block, then `full_system_prompt` when set.
    Full,
}

/// One entry of `GET /claude/v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelCard {
    /// The model id.
    pub(crate) id: String,
    /// Unix seconds.
    #[serde(default)]
    pub(crate) created: u64,
    /// Owner shown to clients.
    #[serde(default = "anthropic")]
    pub(crate) owned_by: String,
}

fn anthropic() -> String {
    "anthropic".to_owned()
}

/// The original's 11 model cards.
fn default_models() -> Vec<ModelCard> {
    [
        ("claude-sonnet-4-6", 1_722_816_000),
        ("claude-haiku-4-5-20251001", 1_722_816_000),
        ("claude-opus-4-6", 1_722_816_000),
        ("claude-opus-4-20250514", 1_716_336_000),
        ("claude-sonnet-4-20250514", 1_716_336_000),
        ("claude-3-7-sonnet-20250219", 1_708_819_200),
        ("claude-3-5-sonnet-20241022", 1_696_000_000),
        ("claude-3-5-haiku-20241022", 1_696_000_000),
        ("claude-3-opus-20240229", 1_696_000_000),
        ("claude-3-sonnet-20240229", 1_696_000_000),
        ("claude-3-haiku-20240307", 1_696_000_000),
    ]
    .into_iter()
    .map(|(id, created)| ModelCard {
        id: id.to_owned(),
        created,
        owned_by: anthropic(),
    })
    .collect()
}

/// The original's mapping rules: OpenAI model names onto Claude models, short
/// names onto current models, and `claude-3-*` aliases pinned to dated ids.
fn default_model_mappings() -> Vec<MappingRule> {
    use MatchKind::{Exact, Prefix, Regex};
    vec![
        MappingRule::new(Prefix, "gpt-4o-mini", "claude-3-5-haiku-latest"),
        MappingRule::new(Prefix, "gpt-4o", "claude-sonnet-4-6"),
        // The original's `^gpt-4(?!o)`, spelt without look-ahead, which the
        // `regex` crate does not have.
        MappingRule::new(Regex, "^gpt-4(?:[^o]|$)", "claude-3-5-sonnet-20241022"),
        MappingRule::new(Prefix, "gpt-3.5", "claude-3-5-haiku-20241022"),
        MappingRule::new(Prefix, "text-davinci", "claude-3-5-sonnet-20241022"),
        MappingRule::new(Prefix, "o1", "claude-opus-4-6"),
        MappingRule::new(Exact, "o3-mini", "claude-opus-4-6"),
        MappingRule::new(Prefix, "gpt-5", "claude-sonnet-4-6"),
        MappingRule::new(Exact, "sonnet", "claude-sonnet-4-6"),
        MappingRule::new(Exact, "opus", "claude-opus-4-6"),
        MappingRule::new(Exact, "haiku", "claude-haiku-4-5-20251001"),
        MappingRule::new(
            Exact,
            "claude-3-5-sonnet-latest",
            "claude-3-5-sonnet-20241022",
        ),
        MappingRule::new(
            Exact,
            "claude-3-5-haiku-latest",
            "claude-3-5-haiku-20241022",
        ),
        MappingRule::new(Exact, "claude-3-opus", "claude-3-opus-20240229"),
        MappingRule::new(Exact, "claude-3-sonnet", "claude-3-sonnet-20240229"),
        MappingRule::new(Exact, "claude-3-haiku", "claude-3-haiku-20240307"),
    ]
}

/// A credential: serialises as itself (config round trips) but never prints.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
    /// Whether it is empty (after trimming).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_kit::mapping::ModelMapper;

    use super::*;

    #[test]
    fn defaults_are_the_originals() {
        let config = Config::default();
        assert_eq!(config.base(), "https://api.anthropic.com");
        assert_eq!(config.auth_mode, AuthMode::Auto);
        assert_eq!(config.anthropic_version, "2023-06-01");
        assert_eq!(config.system_prompt_injection_mode, InjectionMode::Minimal);
        assert_eq!(config.default_max_tokens, 4096);
        assert_eq!(config.timeout_seconds, 600);
        assert_eq!(config.models.len(), 11);
        assert!(
            config
                .models
                .iter()
                .all(|card| card.owned_by == "anthropic")
        );
        assert_eq!(config.model_mappings[0].pattern, "gpt-4o-mini");
    }

    #[test]
    fn parses_user_keys_and_refuses_unknown_ones() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "auth_mode": "oauth",
            "system_prompt_injection_mode": "none",
            "model_mappings": [{"pattern": "x", "target": "y"}],
            "models": [{"id": "m"}],
            "base_url": "http://127.0.0.1:9/",
        }))
        .unwrap();
        assert_eq!(config.auth_mode, AuthMode::OAuth);
        assert_eq!(config.base(), "http://127.0.0.1:9");
        assert_eq!(config.model_mappings[0].kind, MatchKind::Exact);
        assert_eq!(config.models[0].owned_by, "anthropic");
        let error = serde_json::from_value::<Config>(serde_json::json!({"apikey": "x"}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `apikey`"), "{error}");
    }

    #[test]
    fn secrets_do_not_print() {
        let config = Config {
            api_key: Secret::new("sk-ant-secret"),
            ..Config::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("sk-ant-secret"), "{printed}");
        assert!(printed.contains("api_key: ***"), "{printed}");
    }

    fn check(mapper: &ModelMapper, model: &str, expected: Option<&str>) {
        assert_eq!(mapper.map(model), expected, "{model}");
    }

    #[test]
    fn default_rules() {
        let mapper = ModelMapper::new("claude_api", &Config::default().model_mappings).unwrap();
        check(&mapper, "gpt-4o-mini", Some("claude-3-5-haiku-latest"));
        check(&mapper, "gpt-4o-2024-08-06", Some("claude-sonnet-4-6"));
        check(&mapper, "gpt-4", Some("claude-3-5-sonnet-20241022"));
        check(&mapper, "gpt-4-turbo", Some("claude-3-5-sonnet-20241022"));
        check(&mapper, "gpt-3.5-turbo", Some("claude-3-5-haiku-20241022"));
        check(&mapper, "o1-preview", Some("claude-opus-4-6"));
        check(&mapper, "o3-mini", Some("claude-opus-4-6"));
        check(&mapper, "o3-mini-high", None);
        check(&mapper, "gpt-5-codex", Some("claude-sonnet-4-6"));
        check(&mapper, "sonnet", Some("claude-sonnet-4-6"));
        check(&mapper, "haiku", Some("claude-haiku-4-5-20251001"));
        check(&mapper, "claude-3-opus", Some("claude-3-opus-20240229"));
        check(&mapper, "claude-sonnet-4-20250514", None);
        check(&mapper, "Sonnet", None);
    }
}
