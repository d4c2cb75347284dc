//! `[plugins.codex]`: the settings and their defaults (those of the Python
//! original's `CodexSettings` and `codex/model_defaults.py` where it has
//! one), with every request-shaping step a switch of its own, so a generic
//! Responses client can turn off what only the Codex backend's quirks need.

pub(crate) use ccproxy_plugin_kit::mapping::{MappingRule, MatchKind};
use serde::{Deserialize, Serialize};

/// The ChatGPT plan's Codex backend; requests go to `{base_url}/responses`.
pub(crate) const DEFAULT_BASE_URL: &str = "https://chatgpt.com/backend-api/codex";

/// The model every foreign model id is mapped to by default.
pub(crate) const DEFAULT_MODEL: &str = "gpt-5.3-codex";

/// The Codex CLI version this plugin identifies as (`version` header and
/// user agent) unless a Codex CLI client sends its own, `client_version` is
/// set, or a Codex CLI is installed here (its version). The backend refuses
/// newer models to older clients ("requires a newer version of Codex"), so
/// this is the Codex CLI the e2e suite pins (tests/clients), whose catalog
/// has models needing a client of at least 0.166.0 (`minimal_client_version`),
/// not the 0.34.0 of the captured request; raise it with that pin, or when
/// the backend says so.
pub(crate) const DEFAULT_CLIENT_VERSION: &str = "0.171.0";

/// `[plugins.codex]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// Upstream root; requests go to `{base_url}/responses`.
    pub(crate) base_url: String,
    /// Model rewrite rules, first match wins. A model listed in `models` is
    /// never rewritten.
    pub(crate) model_mappings: Vec<MappingRule>,
    /// What `GET /codex/v1/models` lists.
    pub(crate) models: Vec<ModelCard>,
    /// The Codex CLI's model cache, whose entries for the listed models
    /// `GET /codex/v1/models` returns as `models`; empty:
    /// `$CODEX_HOME/models_cache.json`, else `~/.codex/models_cache.json`.
    pub(crate) models_cache_file: String,
    /// Send `store: false` (the backend refuses to store conversations).
    pub(crate) force_store_false: bool,
    /// Remove the parameters in `unsupported_params`, `item_reference`
    /// input items and `_*` keys.
    pub(crate) strip_unsupported_params: bool,
    /// The top-level parameters the backend refuses ("Unsupported parameter").
    pub(crate) unsupported_params: Vec<String>,
    /// Move system and developer input messages into `instructions`.
    pub(crate) fold_system_into_instructions: bool,
    /// Prepend the Codex CLI's instructions (the backend expects them).
    pub(crate) inject_instructions: bool,
    /// What `inject_instructions` prepends; empty: the Codex CLI prompt
    /// shipped with the plugin.
    pub(crate) codex_instructions: String,
    /// Add the Codex CLI's `shell` and `view_image` tools to requests without
    /// tools. Off: the original did it unconditionally, which gave every
    /// generic client tools it never asked for and cannot run.
    pub(crate) inject_tools: bool,
    /// Add `reasoning` and `include: ["reasoning.encrypted_content"]` when
    /// the request has none.
    pub(crate) add_reasoning_defaults: bool,
    /// `reasoning.effort` added by `add_reasoning_defaults`.
    pub(crate) reasoning_effort: String,
    /// `reasoning.summary` added by `add_reasoning_defaults`.
    pub(crate) reasoning_summary: String,
    /// Send a `prompt_cache_key` derived from the conversation when the
    /// client sends none, so every turn of a conversation shares one.
    pub(crate) stable_prompt_cache_key: bool,
    /// Send the ChatGPT account (workspace) named by the login's access
    /// token claim as `chatgpt-account-id`, which the Codex backend needs to
    /// pick the plan; a generic Responses upstream has no use for it.
    pub(crate) send_chatgpt_account_id: bool,
    /// Use the client's `session_id` / `conversation_id` header when it
    /// sends one; otherwise (and when off) the id derived from the
    /// conversation.
    pub(crate) session_id_from_client: bool,
    /// The Codex CLI version sent as `version` and in the user agent; empty:
    /// the installed Codex CLI's (`cli_path`), else [`DEFAULT_CLIENT_VERSION`].
    pub(crate) client_version: String,
    /// The Codex CLI whose version is detected (`codex --version`), a name on
    /// `PATH` or a path; empty turns detection off.
    pub(crate) cli_path: String,
    /// Seconds between detections.
    pub(crate) detection_interval_seconds: f64,
    /// Give up on the upstream (its head, then each chunk) after this many
    /// seconds; 0: the host's `http.read_timeout_seconds`, like every other
    /// provider. The Codex CLI itself waits five minutes for a silent stream
    /// (`stream_idle_timeout_ms = 300000`), a little more than the host's
    /// default 240 s; set 300 here to wait as long as it does.
    pub(crate) timeout_seconds: u64,
    /// Several credentials with failover (`[[plugins.codex.accounts]]`);
    /// empty: the `oauth.codex` login, as before.
    pub(crate) accounts: Vec<crate::accounts::AccountConfig>,
    /// How `accounts` are picked and rested (`[plugins.codex.failover]`).
    pub(crate) failover: ccproxy_plugin_kit::accounts::PoolSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            model_mappings: default_model_mappings(),
            models: default_models(),
            models_cache_file: String::new(),
            force_store_false: true,
            strip_unsupported_params: true,
            unsupported_params: default_unsupported_params(),
            fold_system_into_instructions: true,
            inject_instructions: true,
            codex_instructions: String::new(),
            inject_tools: false,
            add_reasoning_defaults: true,
            reasoning_effort: "medium".to_owned(),
            reasoning_summary: "auto".to_owned(),
            stable_prompt_cache_key: true,
            send_chatgpt_account_id: true,
            session_id_from_client: true,
            client_version: String::new(),
            cli_path: "codex".to_owned(),
            detection_interval_seconds: 3600.0,
            timeout_seconds: 0,
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

/// The original's list (`max_output_tokens`, `max_completion_tokens`,
/// `max_tokens`, `temperature`, `metadata`) plus what the backend has been
/// seen refusing since (`top_p`, `user` — Claude Code's `metadata.user_id`
/// arrives as `user` —, penalties, `logprobs`, `n`, `seed`,
/// `stream_options`, `prompt_cache_retention`). `service_tier`,
/// `parallel_tool_calls`, `tool_choice`, `text`, `truncation` are accepted
/// and kept.
fn default_unsupported_params() -> Vec<String> {
    [
        "max_output_tokens",
        "max_completion_tokens",
        "max_tokens",
        "temperature",
        "top_p",
        "metadata",
        "user",
        "frequency_penalty",
        "presence_penalty",
        "logprobs",
        "top_logprobs",
        "n",
        "seed",
        "stream_options",
        "prompt_cache_retention",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// One entry of `GET /codex/v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelCard {
    /// The model id.
    pub(crate) id: String,
    /// Unix seconds.
    #[serde(default)]
    pub(crate) created: u64,
    /// Owner shown to clients.
    #[serde(default = "openai")]
    pub(crate) owned_by: String,
    /// The name the Anthropic SDK shows (`display_name`, for Claude Code on
    /// `/codex`); empty: the id.
    #[serde(default)]
    pub(crate) display_name: String,
}

fn openai() -> String {
    "openai".to_owned()
}

/// The original's two cards (release days, approximately): the Codex
/// backend's current coding models.
fn default_models() -> Vec<ModelCard> {
    [
        (DEFAULT_MODEL, 1_770_249_600, "GPT-5.3-Codex"),
        ("gpt-5.2-codex", 1_766_016_000, "GPT-5.2-Codex"),
    ]
    .into_iter()
    .map(|(id, created, display_name)| ModelCard {
        id: id.to_owned(),
        created,
        owned_by: openai(),
        display_name: display_name.to_owned(),
    })
    .collect()
}

/// The original's rules: every OpenAI or Claude model id onto the Codex
/// model, so Claude Code's `claude-*` models and OpenAI SDK defaults work;
/// plus the OpenAI names the original let through unchanged although the
/// Codex backend serves none of them (it answers "model is not supported"):
/// bare `o1`/`o3` and `o4-*`, `text-davinci-*`, and the retired API-only
/// `codex-mini-latest`.
fn default_model_mappings() -> Vec<MappingRule> {
    let mut rules: Vec<MappingRule> = ["gpt-5-codex", "gpt-", "o3-", "o1-", "claude-"]
        .into_iter()
        .map(|pattern| MappingRule::new(MatchKind::Prefix, pattern, DEFAULT_MODEL))
        .collect();
    rules.push(MappingRule::new(
        MatchKind::Regex,
        "^o[134](?:-|$)",
        DEFAULT_MODEL,
    ));
    for prefix in ["text-davinci", "codex-mini"] {
        rules.push(MappingRule::new(MatchKind::Prefix, prefix, DEFAULT_MODEL));
    }
    rules
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::serde_json;

    use ccproxy_plugin_kit::mapping::ModelMapper;

    use super::*;

    #[test]
    fn defaults_are_the_originals_with_the_generic_client_fixes() {
        let config = Config::default();
        assert_eq!(config.base(), "https://chatgpt.com/backend-api/codex");
        assert!(config.force_store_false);
        assert!(config.strip_unsupported_params);
        assert!(config.fold_system_into_instructions);
        assert!(config.inject_instructions);
        assert!(!config.inject_tools);
        assert!(config.add_reasoning_defaults);
        assert!(config.stable_prompt_cache_key);
        assert!(config.send_chatgpt_account_id);
        assert!(config.session_id_from_client);
        assert_eq!(
            config.timeout_seconds, 0,
            "the host's http.read_timeout_seconds"
        );
        assert_eq!(config.models_cache_file, "");
        let models: Vec<&str> = config.models.iter().map(|card| card.id.as_str()).collect();
        assert_eq!(models, ["gpt-5.3-codex", "gpt-5.2-codex"]);
        let patterns: Vec<&str> = config
            .model_mappings
            .iter()
            .map(|rule| rule.pattern.as_str())
            .collect();
        assert_eq!(
            patterns,
            [
                "gpt-5-codex",
                "gpt-",
                "o3-",
                "o1-",
                "claude-",
                "^o[134](?:-|$)",
                "text-davinci",
                "codex-mini"
            ]
        );
        assert!(
            config
                .model_mappings
                .iter()
                .all(|rule| rule.kind != MatchKind::Exact && rule.target == "gpt-5.3-codex"),
            "no aliases: every rule is a family of names"
        );
        for param in [
            "max_output_tokens",
            "temperature",
            "metadata",
            "top_p",
            "user",
        ] {
            assert!(
                config.unsupported_params.iter().any(|p| p == param),
                "{param}"
            );
        }
        assert!(
            !config
                .unsupported_params
                .iter()
                .any(|p| p == "service_tier")
        );
    }

    #[test]
    fn parses_user_keys_and_refuses_unknown_ones() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "inject_tools": true,
            "model_mappings": [{"pattern": "x", "target": "y"}],
            "models": [{"id": "m"}],
            "base_url": "http://127.0.0.1:9/",
        }))
        .unwrap();
        assert!(config.inject_tools);
        assert_eq!(config.base(), "http://127.0.0.1:9");
        assert_eq!(config.model_mappings[0].kind, MatchKind::Exact);
        assert_eq!(config.models[0].owned_by, "openai");
        let error = serde_json::from_value::<Config>(
            serde_json::json!({"inject_detection_payload": false}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("unknown field `inject_detection_payload`"),
            "{error}"
        );
    }

    fn check(mapper: &ModelMapper, model: &str, expected: Option<&str>) {
        assert_eq!(mapper.map(model), expected, "{model}");
    }

    #[test]
    fn default_rules_send_every_foreign_model_to_the_codex_model() {
        let mapper = ModelMapper::new("codex", &Config::default().model_mappings).unwrap();
        check(&mapper, "gpt-5-codex", Some("gpt-5.3-codex"));
        check(&mapper, "gpt-5-codex-mini", Some("gpt-5.3-codex"));
        check(&mapper, "gpt-4o", Some("gpt-5.3-codex"));
        check(&mapper, "gpt-5", Some("gpt-5.3-codex"));
        check(&mapper, "o3-mini", Some("gpt-5.3-codex"));
        check(&mapper, "o1-preview", Some("gpt-5.3-codex"));
        check(&mapper, "claude-sonnet-4-5-20250929", Some("gpt-5.3-codex"));
        check(&mapper, "claude-3-5-haiku-20241022", Some("gpt-5.3-codex"));
        check(&mapper, "o3", Some("gpt-5.3-codex"));
        check(&mapper, "o1", Some("gpt-5.3-codex"));
        check(&mapper, "o4-mini", Some("gpt-5.3-codex"));
        check(&mapper, "text-davinci-003", Some("gpt-5.3-codex"));
        check(&mapper, "codex-mini-latest", Some("gpt-5.3-codex"));
        // No rule for these: sent as they are.
        check(&mapper, "o10", None);
        check(&mapper, "Claude-x", None);
        check(&mapper, "gpt5", None);
    }

    /// Names the Codex backend does not serve: OpenAI models retired from
    /// the API or never offered on a ChatGPT plan's Codex backend (which
    /// serves its `gpt-5.x-codex` line), the superseded `gpt-5-codex`, and
    /// Claude models (Claude Code on `/codex`), current or retired.
    const NOT_SERVED: &[&str] = &[
        "gpt-4",
        "gpt-4-turbo",
        "gpt-4-32k",
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-3.5-turbo",
        "text-davinci-003",
        "o1",
        "o1-preview",
        "o1-mini",
        "o3",
        "o3-mini",
        "o4-mini",
        "codex-mini-latest",
        "gpt-5-codex",
        "gpt-5-codex-mini",
        "claude-3-5-sonnet-20241022",
        "claude-3-5-haiku-20241022",
        "claude-3-opus-20240229",
        "claude-3-haiku-20240307",
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5-20251001",
        "claude-opus-4-6",
    ];

    #[test]
    fn every_default_lands_on_a_current_codex_model() {
        let config = Config::default();
        let listed: Vec<&str> = config.models.iter().map(|card| card.id.as_str()).collect();
        for card in &listed {
            assert!(
                !NOT_SERVED.contains(card),
                "{card} is listed but not served"
            );
            assert!(
                card.starts_with("gpt-5.") && card.ends_with("-codex"),
                "{card}"
            );
        }
        for rule in &config.model_mappings {
            assert!(
                listed.contains(&rule.target.as_str()),
                "{} maps to {}, which GET /v1/models does not list",
                rule.pattern,
                rule.target
            );
        }
        let mapper = ModelMapper::new("codex", &config.model_mappings).unwrap();
        for model in NOT_SERVED {
            let target = mapper
                .map(model)
                .unwrap_or_else(|| panic!("{model} is sent upstream unchanged"));
            assert!(listed.contains(&target), "{model} -> {target}");
        }
    }
}
