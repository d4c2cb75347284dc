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
    /// Several credentials with failover (`[[plugins.claude_api.accounts]]`);
    /// empty: the one credential of `api_key`/`auth_mode`, as before.
    pub(crate) accounts: Vec<crate::accounts::AccountConfig>,
    /// How `accounts` are picked and rested (`[plugins.claude_api.failover]`).
    pub(crate) failover: ccproxy_plugin_kit::accounts::PoolSettings,
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
            accounts: Vec::new(),
            failover: Default::default(),
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
    /// Unix seconds (the release day for the default cards).
    #[serde(default)]
    pub(crate) created: u64,
    /// Owner shown to clients.
    #[serde(default = "anthropic")]
    pub(crate) owned_by: String,
    /// The name the Anthropic SDK shows (`display_name`); empty: the id.
    #[serde(default)]
    pub(crate) display_name: String,
}

fn anthropic() -> String {
    "anthropic".to_owned()
}

/// Claude Sonnet 4.6, where Sonnet-class and general OpenAI names go.
pub(crate) const SONNET: &str = "claude-sonnet-4-6";
/// Claude Opus 4.6, where Opus-class and reasoning (`o1`) names go.
pub(crate) const OPUS: &str = "claude-opus-4-6";
/// Claude Haiku 4.5, where small and cheap names go.
pub(crate) const HAIKU: &str = "claude-haiku-4-5-20251001";

/// The current Claude models (release days from Anthropic's announcements),
/// newest first. The original's eight Claude 3.x cards are gone: Anthropic
/// retired every Claude 3.x model between 2025-07-21 (Claude 3 Sonnet) and
/// 2026-04-20 (Claude 3 Haiku), and their names are mapped onto the current
/// models instead (`default_model_mappings`). So are the original's Claude
/// 4.0 cards (`claude-opus-4-20250514`, `claude-sonnet-4-20250514`), which
/// Anthropic retired on 2026-06-15.
fn default_models() -> Vec<ModelCard> {
    [
        (SONNET, 1_771_286_400, "Claude Sonnet 4.6"),
        (OPUS, 1_770_249_600, "Claude Opus 4.6"),
        ("claude-opus-4-5-20251101", 1_763_942_400, "Claude Opus 4.5"),
        (HAIKU, 1_760_486_400, "Claude Haiku 4.5"),
        (
            "claude-sonnet-4-5-20250929",
            1_759_104_000,
            "Claude Sonnet 4.5",
        ),
    ]
    .into_iter()
    .map(|(id, created, display_name)| ModelCard {
        id: id.to_owned(),
        created,
        owned_by: anthropic(),
        display_name: display_name.to_owned(),
    })
    .collect()
}

/// The original's rules with current targets: OpenAI model names onto the
/// Claude model of their class, the short names onto the current models,
/// and every retired Claude 4.0, 3.x and 2.x name, alias or dated id, onto
/// its successor, so an old client keeps working instead of getting Anthropic's
/// `not_found_error`. The README has the table and the reasons.
fn default_model_mappings() -> Vec<MappingRule> {
    use MatchKind::{Exact, Prefix, Regex};
    vec![
        MappingRule::new(Prefix, "gpt-4o-mini", HAIKU),
        MappingRule::new(Prefix, "gpt-4o", SONNET),
        // The original's `^gpt-4(?!o)`, spelt without look-ahead, which the
        // `regex` crate does not have.
        MappingRule::new(Regex, "^gpt-4(?:[^o]|$)", SONNET),
        MappingRule::new(Prefix, "gpt-3.5", HAIKU),
        MappingRule::new(Prefix, "text-davinci", SONNET),
        MappingRule::new(Prefix, "o1", OPUS),
        MappingRule::new(Exact, "o3-mini", OPUS),
        // The original's `gpt-5` prefix, widened: the Codex CLI's own default
        // models (`gpt-5.x`, `gpt-6.x` in its 0.171 catalog) and every other
        // GPT name would otherwise reach Anthropic unchanged and be refused.
        MappingRule::new(Prefix, "gpt-", SONNET),
        // The other OpenAI reasoning models, as `o1` and `o3-mini` above.
        MappingRule::new(Regex, "^o[34](?:-|$)", OPUS),
        MappingRule::new(Exact, "sonnet", SONNET),
        MappingRule::new(Exact, "opus", OPUS),
        MappingRule::new(Exact, "haiku", HAIKU),
        // Claude Sonnet 4 and Opus 4, retired on 2026-06-15: the dated ids
        // and their aliases (`-0` and bare), and no other `-4-` model
        // (`claude-sonnet-4-5`, `claude-opus-4-1`, … are current). Regexes,
        // not exact rules, so `GET /v1/models` does not offer the retired
        // names as aliases.
        MappingRule::new(Regex, "^claude-sonnet-4(?:-0|-20250514)?$", SONNET),
        MappingRule::new(Regex, "^claude-opus-4(?:-0|-20250514)?$", OPUS),
        // The original pinned these aliases to dated Claude 3.x ids, all
        // retired now; prefixes also catch the dated ids and `-latest`.
        MappingRule::new(Prefix, "claude-3-5-sonnet", SONNET),
        MappingRule::new(Prefix, "claude-3-7-sonnet", SONNET),
        MappingRule::new(Prefix, "claude-3-5-haiku", HAIKU),
        MappingRule::new(Prefix, "claude-3-opus", OPUS),
        MappingRule::new(Prefix, "claude-3-sonnet", SONNET),
        MappingRule::new(Prefix, "claude-3-haiku", HAIKU),
        MappingRule::new(Prefix, "claude-2", SONNET),
        MappingRule::new(Prefix, "claude-instant", HAIKU),
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
        assert_eq!(config.models.len(), 5);
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
        check(&mapper, "gpt-4o-mini", Some(HAIKU));
        check(&mapper, "gpt-4o-2024-08-06", Some(SONNET));
        check(&mapper, "gpt-4", Some(SONNET));
        check(&mapper, "gpt-4-turbo", Some(SONNET));
        check(&mapper, "gpt-4.1", Some(SONNET));
        check(&mapper, "gpt-3.5-turbo", Some(HAIKU));
        check(&mapper, "text-davinci-003", Some(SONNET));
        check(&mapper, "o1-preview", Some(OPUS));
        check(&mapper, "o3-mini", Some(OPUS));
        check(&mapper, "o3-mini-high", Some(OPUS));
        check(&mapper, "o3", Some(OPUS));
        check(&mapper, "o4-mini", Some(OPUS));
        check(&mapper, "o5x", None);
        check(&mapper, "gpt-5-codex", Some(SONNET));
        check(&mapper, "gpt-5.3-codex", Some(SONNET));
        check(&mapper, "gpt-6.2-sol", Some(SONNET));
        check(&mapper, "sonnet", Some(SONNET));
        check(&mapper, "opus", Some(OPUS));
        check(&mapper, "haiku", Some(HAIKU));
        check(&mapper, "claude-3-opus", Some(OPUS));
        check(&mapper, "claude-3-5-sonnet-latest", Some(SONNET));
        check(&mapper, "claude-3-5-haiku-20241022", Some(HAIKU));
        check(&mapper, "claude-3-7-sonnet-20250219", Some(SONNET));
        check(&mapper, "claude-sonnet-4-20250514", Some(SONNET));
        check(&mapper, "claude-sonnet-4-0", Some(SONNET));
        check(&mapper, "claude-sonnet-4", Some(SONNET));
        check(&mapper, "claude-opus-4-20250514", Some(OPUS));
        check(&mapper, "claude-opus-4-0", Some(OPUS));
        check(&mapper, "claude-opus-4", Some(OPUS));
        // Current models, and names no rule knows, are sent as they are.
        for current in [
            "claude-sonnet-4-5-20250929",
            "claude-sonnet-4-5",
            SONNET,
            "claude-opus-4-1-20250805",
            "claude-opus-4-1",
            "claude-opus-4-5-20251101",
            "claude-opus-4-5",
            OPUS,
            HAIKU,
            "claude-haiku-4-5",
            "claude-sonnet-4-20250514-extra",
            "claude-sonnet-4-00",
            "claude-opus-4-01",
            "Sonnet",
        ] {
            check(&mapper, current, None);
        }
    }

    /// Models past their retirement: Anthropic's deprecation table
    /// (docs.claude.com/en/docs/about-claude/model-deprecations) for Claude,
    /// with the retirement day; OpenAI's legacy names, retired by OpenAI and
    /// never Claude models anyway.
    const RETIRED: &[&str] = &[
        "claude-instant-1.2",         // 2024-11-06
        "claude-2.0",                 // 2025-07-21
        "claude-2.1",                 // 2025-07-21
        "claude-3-sonnet-20240229",   // 2025-07-21
        "claude-3-5-sonnet-20240620", // 2025-10-22
        "claude-3-5-sonnet-20241022", // 2025-10-22
        "claude-3-5-sonnet-latest",   // with its snapshot
        "claude-3-opus-20240229",     // 2026-01-05
        "claude-3-opus-latest",       // with its snapshot
        "claude-3-opus",              // the original's alias
        "claude-3-sonnet",            // the original's alias
        "claude-3-haiku",             // the original's alias
        "claude-3-5-haiku-20241022",  // 2026-02-19
        "claude-3-5-haiku-latest",    // with its snapshot
        "claude-3-7-sonnet-20250219", // 2026-02-19
        "claude-3-7-sonnet-latest",   // with its snapshot
        "claude-3-haiku-20240307",    // 2026-04-20
        "claude-sonnet-4-20250514",   // 2026-06-15
        "claude-sonnet-4-0",          // with its snapshot
        "claude-sonnet-4",            // with its snapshot
        "claude-opus-4-20250514",     // 2026-06-15
        "claude-opus-4-0",            // with its snapshot
        "claude-opus-4",              // with its snapshot
        "gpt-4",
        "gpt-4-turbo",
        "gpt-4-0613",
        "gpt-4-32k",
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo-16k",
        "text-davinci-003",
        "text-davinci-002",
        "o1-preview",
        "o1-mini",
        "o3-mini",
    ];

    /// Current OpenAI names clients send (the Codex CLI's defaults among
    /// them), which Anthropic does not serve either.
    const FOREIGN: &[&str] = &[
        "gpt-5",
        "gpt-5.3-codex",
        "gpt-5.5",
        "gpt-6.2-sol",
        "o3",
        "o4-mini",
    ];

    fn is_retired(model: &str) -> bool {
        RETIRED.contains(&model)
            || ["claude-3-", "claude-2", "claude-instant"]
                .iter()
                .any(|family| model.starts_with(family))
    }

    #[test]
    fn every_default_lands_on_a_current_model() {
        let config = Config::default();
        let listed: Vec<&str> = config.models.iter().map(|card| card.id.as_str()).collect();
        for card in &listed {
            assert!(!is_retired(card), "{card} is listed but retired");
        }
        for rule in &config.model_mappings {
            assert!(
                !is_retired(&rule.target),
                "{} maps to the retired {}",
                rule.pattern,
                rule.target
            );
            assert!(
                listed.contains(&rule.target.as_str()),
                "{} maps to {}, which GET /v1/models does not list",
                rule.pattern,
                rule.target
            );
        }
        // Every retired name a client may still send is mapped, onto a
        // listed current model.
        let mapper = ModelMapper::new("claude_api", &config.model_mappings).unwrap();
        for model in RETIRED.iter().chain(FOREIGN) {
            let target = mapper
                .map(model)
                .unwrap_or_else(|| panic!("{model} is sent upstream unchanged"));
            assert!(!is_retired(target), "{model} -> {target}");
            assert!(listed.contains(&target), "{model} -> {target}");
        }
    }
}
