//! # max_tokens: the output token limit of each upstream request, checked
//!
//! An inline hook on `provider.request.prepared` (priority 500) reads the
//! upstream request body in the provider's native format and fixes its
//! output limit against the model's: `max_tokens` (Anthropic Messages),
//! `max_completion_tokens`/`max_tokens` (Chat Completions),
//! `max_output_tokens` (Responses). Four cases, as in the original:
//!
//! - **missing**: no limit → the model's limit (or `fallback_max_tokens`);
//! - **invalid**: not a positive integer → the same;
//! - **exceeded**: above the model's known limit → the limit;
//! - **enforced**: with `enforce_mode`, always the model's known limit.
//!
//! A model's limit comes from the `pricing` service's table (its
//! `max_output_tokens`) when that plugin is loaded, else from the bundled
//! `token_limits.json` (the order flips with `prioritize_local_file`). The
//! body is rewritten only when something changes, and then only at its top
//! level: every other value stays the client's bytes, in the client's key
//! order. The Codex backend refuses `max_output_tokens` (the codex plugin
//! strips it), so requests to Codex are left alone. See README.md.
#![forbid(unsafe_code)]

mod limits;
mod scan;

use std::{
    borrow::Cow,
    collections::HashMap,
    path::PathBuf,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use ccproxy_plugin_abi::{
    Value,
    prelude::*,
    serde_json::{self, value::RawValue},
};
use ccproxy_plugin_kit::json::{ObjectWriter, RawObject};
use serde::{Deserialize, Serialize};

use crate::limits::{LimitTable, ModelLimits};

/// The bundled limits (the original's `token_limits.json`).
const BUNDLED_LIMITS: &str = include_str!("../data/token_limits.json");
/// The `default_token_limits_file` value that means the bundled table.
const BUNDLED_FILE_NAME: &str = "token_limits.json";

/// The texts logged for each kind of change (`modification_reasons`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Reasons {
    missing: String,
    invalid: String,
    exceeded: String,
    enforced: String,
}

impl Default for Reasons {
    fn default() -> Self {
        Self {
            missing: "max_tokens was missing from the request".to_owned(),
            invalid: "max_tokens was not a positive integer".to_owned(),
            exceeded: "max_tokens exceeded the model's limit".to_owned(),
            enforced: "max_tokens set to the model's limit (enforce mode)".to_owned(),
        }
    }
}

/// `[plugins.max_tokens]`, with the original's names and defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    default_token_limits_file: String,
    fallback_max_tokens: u64,
    apply_to_all_providers: bool,
    target_providers: Vec<String>,
    require_pricing_data: bool,
    log_modifications: bool,
    enforce_mode: bool,
    prioritize_local_file: bool,
    modification_reasons: Reasons,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_token_limits_file: BUNDLED_FILE_NAME.to_owned(),
            fallback_max_tokens: 4096,
            apply_to_all_providers: true,
            target_providers: ["claude_api", "claude_sdk", "codex", "copilot"]
                .map(str::to_owned)
                .to_vec(),
            require_pricing_data: false,
            log_modifications: true,
            enforce_mode: false,
            prioritize_local_file: false,
            modification_reasons: Reasons::default(),
        }
    }
}

/// Where a model's limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Source {
    /// The `pricing` service's table.
    Pricing,
    /// `token_limits.json` (bundled, or the configured file merged over it).
    LocalFile,
    /// Unknown model: `fallback_max_tokens`.
    Fallback,
}

/// A model's limit and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Limit {
    max_output_tokens: u64,
    max_input_tokens: Option<u64>,
    source: Source,
}

impl Limit {
    fn known(&self) -> bool {
        self.source != Source::Fallback
    }
}

/// The wire format of an upstream body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Anthropic,
    Chat,
    Responses,
}

impl Format {
    /// The format id the host uses, or the endpoint a URL's path ends with.
    fn of(format_id: Option<&str>, url: &str) -> Option<Self> {
        match format_id {
            Some("anthropic.messages") => return Some(Format::Anthropic),
            Some("openai.chat_completions") => return Some(Format::Chat),
            Some("openai.responses") => return Some(Format::Responses),
            _ => {}
        }
        let path = url
            .split(['?', '#'])
            .next()
            .unwrap_or(url)
            .trim_end_matches('/');
        if path.ends_with("/messages") {
            Some(Format::Anthropic)
        } else if path.ends_with("/chat/completions") {
            Some(Format::Chat)
        } else if path.ends_with("/responses") {
            Some(Format::Responses)
        } else {
            None
        }
    }

    /// The keys that hold the output limit; the first is set when none is there.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Format::Anthropic => &["max_tokens"],
            // `max_tokens` is deprecated in Chat and refused by OpenAI's
            // reasoning models; `max_completion_tokens` is accepted by all.
            Format::Chat => &["max_completion_tokens", "max_tokens"],
            Format::Responses => &["max_output_tokens"],
        }
    }
}

/// Why a limit changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Missing,
    Invalid,
    Exceeded,
    Enforced,
}

/// One change to the body.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    key: &'static str,
    old: Option<String>,
    new: u64,
    reason: Reason,
}

/// The keys of `provider.request.prepared` data the hook reads. `provider`
/// and `format` are read when the host sends them; otherwise the format
/// comes from the URL and the provider is unknown.
#[derive(Deserialize)]
struct Prepared<'a> {
    #[serde(default, borrow)]
    url: Cow<'a, str>,
    #[serde(default, borrow)]
    provider: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    format: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    native_format: Option<Cow<'a, str>>,
}

/// `body` with `changes` applied: changed keys keep their place, new ones
/// go last, every other value is written as it came.
fn rewrite(body: &RawObject<'_>, changes: &[Change]) -> Vec<u8> {
    let entries = body.entries();
    let capacity = entries
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum::<usize>()
        + 32;
    let mut out = ObjectWriter::with_capacity(capacity);
    for (key, raw) in entries {
        match changes.iter().find(|change| change.key == key) {
            Some(change) => out.raw(key, &change.new.to_string()),
            None => out.raw(key, raw),
        }
    }
    for change in changes {
        if !entries.iter().any(|(key, _)| key == change.key) {
            out.raw(change.key, &change.new.to_string());
        }
    }
    out.finish()
}

/// What to do to a body's limit keys (`value_of` a key, when the body has
/// it), given the model's `limit`.
fn plan<'a>(
    value_of: impl Fn(&str) -> Option<&'a RawValue>,
    format: Format,
    limit: Limit,
    enforce: bool,
) -> Vec<Change> {
    let present: Vec<(&'static str, &RawValue)> = format
        .keys()
        .iter()
        .filter_map(|key| Some((*key, value_of(key)?)))
        .filter(|(_, raw)| raw.get() != "null")
        .collect();
    if present.is_empty() {
        let reason = if enforce && limit.known() {
            Reason::Enforced
        } else {
            Reason::Missing
        };
        return vec![Change {
            key: format.keys()[0],
            old: None,
            new: limit.max_output_tokens,
            reason,
        }];
    }
    present
        .into_iter()
        .filter_map(|(key, raw)| {
            let value = serde_json::from_str::<Value>(raw.get())
                .ok()
                .and_then(|value| value.as_u64())
                .filter(|tokens| *tokens > 0);
            let reason = match value {
                None => Reason::Invalid,
                Some(tokens) if enforce && limit.known() && tokens != limit.max_output_tokens => {
                    Reason::Enforced
                }
                Some(tokens) if limit.known() && tokens > limit.max_output_tokens => {
                    Reason::Exceeded
                }
                Some(_) => return None,
            };
            Some(Change {
                key,
                old: Some(raw.get().to_owned()),
                new: limit.max_output_tokens,
                reason,
            })
        })
        .collect()
}

/// How long an answer of the pricing service is reused: the hook runs on
/// every upstream request, and a model's limit changes only when the price
/// table is refreshed (hours apart).
const PRICING_REUSE: Duration = Duration::from_secs(300);
/// Models whose pricing answer is kept at most; the cache starts over past it.
const PRICING_CACHE_MODELS: usize = 1024;

struct MaxTokens {
    ctx: Context,
    config: Config,
    local: LimitTable,
    /// The pricing service's recent answers by model (`None`: it does not
    /// know the model or is not loaded).
    priced: Mutex<HashMap<String, (Instant, Option<Limit>)>>,
}

impl MaxTokens {
    /// The limit of `model`: pricing's table and the local file in the
    /// configured order, else the fallback; `None` when
    /// `require_pricing_data` and pricing does not know the model.
    async fn limit(&self, model: &str) -> Option<Limit> {
        let local = self.local.find(model).map(|limits| Limit {
            max_output_tokens: limits.max_output_tokens,
            max_input_tokens: limits.max_input_tokens,
            source: Source::LocalFile,
        });
        if self.config.prioritize_local_file
            && !self.config.require_pricing_data
            && let Some(local) = local
        {
            return Some(local);
        }
        let priced = self.pricing_limit(model).await;
        if self.config.require_pricing_data && priced.is_none() {
            return None;
        }
        let fallback = Limit {
            max_output_tokens: self.config.fallback_max_tokens,
            max_input_tokens: None,
            source: Source::Fallback,
        };
        Some(if self.config.prioritize_local_file {
            local.or(priced).unwrap_or(fallback)
        } else {
            priced.or(local).unwrap_or(fallback)
        })
    }

    /// The limit the `pricing` service knows, if it is loaded and knows the
    /// model; asked at most every [`PRICING_REUSE`] per model.
    async fn pricing_limit(&self, model: &str) -> Option<Limit> {
        if let Some((asked, limit)) = lock(&self.priced).get(model)
            && asked.elapsed() < PRICING_REUSE
        {
            return *limit;
        }
        let limit = self.ask_pricing(model).await;
        let mut priced = lock(&self.priced);
        if priced.len() >= PRICING_CACHE_MODELS {
            priced.clear();
        }
        priced.insert(model.to_owned(), (Instant::now(), limit));
        limit
    }

    async fn ask_pricing(&self, model: &str) -> Option<Limit> {
        let entry = match self
            .ctx
            .call_service("pricing", "price", json!({"model": model}))
            .await
        {
            Ok(entry) => entry,
            Err(error) => {
                debug!(
                    "max_tokens: no pricing data for {model}: {}",
                    error.message()
                );
                return None;
            }
        };
        let limits = ModelLimits {
            max_output_tokens: entry
                .get("max_output_tokens")
                .or_else(|| entry.get("max_tokens"))
                .and_then(Value::as_u64)
                .filter(|tokens| *tokens > 0)?,
            max_input_tokens: entry.get("max_input_tokens").and_then(Value::as_u64),
        };
        Some(Limit {
            max_output_tokens: limits.max_output_tokens,
            max_input_tokens: limits.max_input_tokens,
            source: Source::Pricing,
        })
    }

    fn applies_to(&self, provider: Option<&str>) -> bool {
        self.config.apply_to_all_providers
            || provider.is_some_and(|provider| {
                self.config
                    .target_providers
                    .iter()
                    .any(|target| target == provider)
            })
    }

    fn reason_text(&self, reason: Reason) -> &str {
        let reasons = &self.config.modification_reasons;
        match reason {
            Reason::Missing => &reasons.missing,
            Reason::Invalid => &reasons.invalid,
            Reason::Exceeded => &reasons.exceeded,
            Reason::Enforced => &reasons.enforced,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether the request goes to the ChatGPT plan's Codex backend, which
/// refuses `max_output_tokens` (and `max_tokens`, `max_completion_tokens`).
fn is_codex(provider: Option<&str>, url: &str) -> bool {
    provider == Some("codex") || url.contains("/backend-api/codex")
}

#[derive(Deserialize)]
struct ModelArgs {
    model: String,
}

impl Plugin for MaxTokens {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("max_tokens", env!("CARGO_PKG_VERSION"))
            .description("Sets or clamps each upstream request's output token limit to the model's")
            .provides("max_tokens")
            .optional_requires("pricing")
            .hook("max_tokens", ["provider.request.prepared"], 500)
            // The body and these keys: the host may leave out the headers.
            .reads_fields_of::<Prepared<'static>>()
            .config_key("default_token_limits_file", "limits file merged over the bundled one (token_limits.json: the bundled one alone)")
            .config_key("fallback_max_tokens", "limit set for a missing or invalid value when the model is unknown")
            .config_key("apply_to_all_providers", "check requests to every provider, not only target_providers")
            .config_key("target_providers", "providers checked when apply_to_all_providers is false")
            .config_key("require_pricing_data", "change only requests whose model the pricing service knows")
            .config_key("log_modifications", "log each change (model, old, new, reason)")
            .config_key("enforce_mode", "always set the limit to the model's known limit")
            .config_key("prioritize_local_file", "prefer the limits file over the pricing service")
            .config_key("modification_reasons", "texts logged for missing, invalid, exceeded and enforced")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        if config.fallback_max_tokens == 0 {
            return Err(PluginError::invalid(
                "fallback_max_tokens must be a positive number of tokens",
            ));
        }
        let mut local = LimitTable::parse(BUNDLED_LIMITS, "the bundled token_limits.json")?;
        let configured = config.default_token_limits_file.trim();
        if !configured.is_empty() && configured != BUNDLED_FILE_NAME {
            // A relative path is relative to the config folder.
            let path = ctx.config_dir().join(PathBuf::from(configured));
            let text = std::fs::read_to_string(&path).map_err(|error| {
                PluginError::invalid(format!(
                    "default_token_limits_file {}: {error}",
                    path.display()
                ))
            })?;
            let extra = LimitTable::parse(&text, &path.display().to_string())?;
            info!(
                "max_tokens: {} model limits from {}",
                extra.len(),
                path.display()
            );
            local.merge(extra);
        }
        Ok(Self {
            ctx,
            config,
            local,
            priced: Mutex::new(HashMap::new()),
        })
    }

    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        if call.event != HookEvent::ProviderRequestPrepared {
            return Ok(HookOutcome::Continue);
        }
        let prepared: Prepared = call.data()?;
        let provider = prepared.provider.as_deref();
        if !self.applies_to(provider) || is_codex(provider, &prepared.url) {
            return Ok(HookOutcome::Continue);
        }
        let format_id = prepared
            .format
            .as_deref()
            .or(prepared.native_format.as_deref());
        let Some(format) = Format::of(format_id, &prepared.url) else {
            return Ok(HookOutcome::Continue);
        };
        // Only `model` and the limit keys are read, the rest of the body
        // skipped over (`scan`): most requests change nothing, and parsing
        // every top-level value of a 64 KB Claude Code request cost about
        // 330 k instructions. A body that is not a JSON object is the
        // upstream's to refuse.
        let keys = format.keys();
        let Some([model, first, second]) = scan::top_level(
            &call.body,
            [Some("model"), keys.first().copied(), keys.get(1).copied()],
        ) else {
            return Ok(HookOutcome::Continue);
        };
        let Some(model) = model.and_then(|raw| serde_json::from_str::<Cow<str>>(raw).ok()) else {
            return Ok(HookOutcome::Continue);
        };
        // Each limit value found must be JSON, as a whole parse would require.
        let mut limits: [Option<&RawValue>; 2] = [None; 2];
        for (slot, raw) in limits.iter_mut().zip([first, second]) {
            if let Some(raw) = raw {
                match serde_json::from_str::<&RawValue>(raw) {
                    Ok(value) => *slot = Some(value),
                    Err(_) => return Ok(HookOutcome::Continue),
                }
            }
        }
        let Some(limit) = self.limit(&model).await else {
            return Ok(HookOutcome::Continue);
        };
        let value_of = |key: &str| {
            let index = keys.iter().position(|known| *known == key)?;
            limits[index]
        };
        let changes = plan(value_of, format, limit, self.config.enforce_mode);
        if changes.is_empty() {
            return Ok(HookOutcome::Continue);
        }
        // Changing it: the whole body is parsed, which also checks what the
        // scan skipped (a malformed body is left as it came).
        let Ok(body) = RawObject::parse(&call.body) else {
            return Ok(HookOutcome::Continue);
        };
        if self.config.log_modifications {
            for change in &changes {
                info!(
                    "max_tokens: {model}: {} {} -> {} ({}; limit from {:?})",
                    change.key,
                    change.old.as_deref().unwrap_or("missing"),
                    change.new,
                    self.reason_text(change.reason),
                    limit.source
                );
            }
        }
        let new_body = rewrite(&body, &changes);
        let data: Value = serde_json::from_str(call.data_json())?;
        Ok(HookOutcome::Modify {
            data,
            body: Some(new_body),
        })
    }

    async fn on_service_call(&self, call: ServiceCall) -> Result<Value, PluginError> {
        match call.method.as_str() {
            "limit" => {
                let args: ModelArgs = call.args_as()?;
                let limit = self.limit(&args.model).await.ok_or_else(|| {
                    PluginError::not_found(format!(
                        "no pricing data for model {} (require_pricing_data is on)",
                        args.model
                    ))
                })?;
                Ok(serde_json::to_value(limit)?)
            }
            other => Err(PluginError::not_found(format!(
                "service max_tokens has no method {other} (limit)"
            ))),
        }
    }

    async fn on_health(&self) -> Health {
        Health::with(
            HealthStatus::Healthy,
            json!({
                "local_models": self.local.len(),
                "enforce_mode": self.config.enforce_mode,
                "fallback_max_tokens": self.config.fallback_max_tokens,
            }),
        )
    }
}

export_plugin!(MaxTokens);

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::testing::{MockHost, TestPlugin};

    use super::*;

    const ANTHROPIC_URL: &str = "https://api.anthropic.com/v1/messages?beta=true";
    const CHAT_URL: &str = "https://api.githubcopilot.com/chat/completions";
    const RESPONSES_URL: &str = "https://api.openai.com/v1/responses";

    fn start(config: Value) -> (MockHost, TestPlugin) {
        let host = MockHost::new().config(config);
        let plugin = host.start::<MaxTokens>().expect("max_tokens starts");
        (host, plugin)
    }

    fn data(url: &str, provider: Option<&str>) -> Value {
        let mut data = json!({"method": "POST", "url": url,
                              "headers": [["x-api-key", "sk-a...xyz"]], "is_streaming": false});
        if let Some(provider) = provider {
            data["provider"] = Value::from(provider);
        }
        data
    }

    /// The hook's answer for `body` sent to `url`: the new body, or `None`
    /// when it continued.
    fn run(plugin: &TestPlugin, url: &str, provider: Option<&str>, body: &str) -> Option<Value> {
        let data = data(url, provider);
        let outcome = plugin
            .hook_with(HookContext {
                hook: "max_tokens".into(),
                event: HookEvent::ProviderRequestPrepared,
                timestamp_ms: 1,
                request_id: Some("r1".into()),
                data: data.clone(),
                body: body.as_bytes().to_vec(),
            })
            .unwrap();
        match outcome {
            HookOutcome::Continue => None,
            HookOutcome::Modify {
                data: returned,
                body,
            } => {
                assert_eq!(returned, data, "the data goes back unchanged");
                let body = body.expect("a Modify answer carries the body");
                Some(serde_json::from_slice(&body).unwrap())
            }
        }
    }

    const SONNET: &str = "claude-sonnet-4-20250514";

    #[test]
    fn anthropic_missing_max_tokens_gets_the_model_limit() {
        let (host, plugin) = start(json!({}));
        let body =
            json!({"model": SONNET, "messages": [{"role": "user", "content": "Hi"}]}).to_string();
        let changed = run(&plugin, ANTHROPIC_URL, Some("claude_api"), &body).unwrap();
        assert_eq!(changed["max_tokens"], 64_000);
        assert_eq!(changed["messages"][0]["content"], "Hi");
        assert!(host.logged(&format!(
            "max_tokens: {SONNET}: max_tokens missing -> 64000 (max_tokens was missing from the request"
        )));
    }

    #[test]
    fn an_unknown_model_without_max_tokens_gets_the_fallback() {
        let (_host, plugin) = start(json!({"fallback_max_tokens": 1000}));
        let changed = run(
            &plugin,
            ANTHROPIC_URL,
            None,
            r#"{"model":"mystery","messages":[]}"#,
        )
        .unwrap();
        assert_eq!(changed["max_tokens"], 1000);
    }

    #[test]
    fn invalid_values_get_the_limit() {
        let (_host, plugin) = start(json!({}));
        for bad in ["0", "-5", "\"100\"", "12.5", "true"] {
            let body = format!(r#"{{"model":"{SONNET}","max_tokens":{bad},"messages":[]}}"#);
            let changed = run(&plugin, ANTHROPIC_URL, None, &body).unwrap();
            assert_eq!(changed["max_tokens"], 64_000, "{bad}");
        }
    }

    #[test]
    fn a_value_above_the_limit_is_clamped_and_keeps_its_place() {
        let (host, plugin) = start(json!({}));
        let body =
            format!(r#"{{"model":"{SONNET}","max_tokens":100000,"stream":true,"messages":[]}}"#);
        let data = data(ANTHROPIC_URL, None);
        let outcome = plugin
            .hook_with(HookContext {
                hook: "max_tokens".into(),
                event: HookEvent::ProviderRequestPrepared,
                timestamp_ms: 1,
                request_id: None,
                data,
                body: body.clone().into_bytes(),
            })
            .unwrap();
        let HookOutcome::Modify {
            body: Some(new_body),
            ..
        } = outcome
        else {
            panic!("expected a new body");
        };
        assert_eq!(
            String::from_utf8(new_body).unwrap(),
            format!(r#"{{"model":"{SONNET}","max_tokens":64000,"stream":true,"messages":[]}}"#)
        );
        assert!(host.logged("max_tokens 100000 -> 64000 (max_tokens exceeded the model's limit"));
    }

    #[test]
    fn a_value_within_the_limit_is_left_alone() {
        let (host, plugin) = start(json!({}));
        for body in [
            format!(r#"{{"model":"{SONNET}","max_tokens":64000,"messages":[]}}"#),
            format!(r#"{{ "model": "{SONNET}", "max_tokens": 100, "messages": [] }}"#),
        ] {
            assert_eq!(run(&plugin, ANTHROPIC_URL, None, &body), None, "{body}");
        }
        // An unknown model's value is not clamped to the fallback.
        let body = r#"{"model":"mystery","max_tokens":50000,"messages":[]}"#;
        assert_eq!(run(&plugin, ANTHROPIC_URL, None, body), None);
        assert!(!host.logged("->"));
    }

    #[test]
    fn enforce_mode_sets_the_known_limit_always() {
        let (_host, plugin) = start(json!({"enforce_mode": true}));
        let body = format!(r#"{{"model":"{SONNET}","max_tokens":100,"messages":[]}}"#);
        let changed = run(&plugin, ANTHROPIC_URL, None, &body).unwrap();
        assert_eq!(changed["max_tokens"], 64_000);
        // Already at the limit: nothing to change.
        let body = format!(r#"{{"model":"{SONNET}","max_tokens":64000,"messages":[]}}"#);
        assert_eq!(run(&plugin, ANTHROPIC_URL, None, &body), None);
        // Unknown model: enforce has no limit to enforce.
        let body = r#"{"model":"mystery","max_tokens":100,"messages":[]}"#;
        assert_eq!(run(&plugin, ANTHROPIC_URL, None, body), None);
    }

    #[test]
    fn chat_bodies_use_max_completion_tokens_and_max_tokens() {
        let (_host, plugin) = start(json!({}));
        let missing = run(
            &plugin,
            CHAT_URL,
            Some("copilot"),
            r#"{"model":"gpt-5","messages":[]}"#,
        )
        .unwrap();
        assert_eq!(missing["max_completion_tokens"], 128_000);
        assert!(missing.get("max_tokens").is_none());
        let both = run(
            &plugin,
            CHAT_URL,
            Some("copilot"),
            r#"{"model":"gpt-5","max_tokens":999999,"max_completion_tokens":1000,"messages":[]}"#,
        )
        .unwrap();
        assert_eq!(
            (&both["max_tokens"], &both["max_completion_tokens"]),
            (&json!(128_000), &json!(1000))
        );
    }

    #[test]
    fn responses_bodies_use_max_output_tokens() {
        let (_host, plugin) = start(json!({}));
        let changed = run(
            &plugin,
            RESPONSES_URL,
            Some("openai"),
            r#"{"model":"gpt-5-codex","input":"hi","max_output_tokens":500000}"#,
        )
        .unwrap();
        assert_eq!(changed["max_output_tokens"], 128_000);
        assert!(changed.get("max_tokens").is_none());
    }

    #[test]
    fn codex_requests_are_left_alone() {
        let (_host, plugin) = start(json!({"enforce_mode": true}));
        let body = r#"{"model":"gpt-5-codex","input":[],"stream":true}"#;
        assert_eq!(
            run(&plugin, "http://x/backend-api/codex/responses", None, body),
            None
        );
        assert_eq!(run(&plugin, RESPONSES_URL, Some("codex"), body), None);
    }

    #[test]
    fn only_target_providers_unless_applied_to_all() {
        let (_host, plugin) =
            start(json!({"apply_to_all_providers": false, "target_providers": ["claude_api"]}));
        let body = format!(r#"{{"model":"{SONNET}","messages":[]}}"#);
        assert!(run(&plugin, ANTHROPIC_URL, Some("claude_api"), &body).is_some());
        assert_eq!(run(&plugin, ANTHROPIC_URL, Some("other"), &body), None);
        assert_eq!(run(&plugin, ANTHROPIC_URL, None, &body), None);
    }

    #[test]
    fn other_urls_and_bodies_are_left_alone() {
        let (_host, plugin) = start(json!({}));
        assert_eq!(
            run(
                &plugin,
                "https://x.test/v1/embeddings",
                None,
                r#"{"model":"gpt-5"}"#
            ),
            None
        );
        assert_eq!(run(&plugin, ANTHROPIC_URL, None, "not json"), None);
        assert_eq!(
            run(&plugin, ANTHROPIC_URL, None, r#"{"messages":[]}"#),
            None
        );
    }

    #[test]
    fn an_untouched_body_is_not_sent_back() {
        // Continue means the host keeps the body it had, byte for byte.
        let (_host, plugin) = start(json!({}));
        let body = "{\n  \"model\": \"claude-3-5-haiku-20241022\",\n  \"max_tokens\": 10,\n  \"messages\": [{\"role\":\"user\",\"content\":\"\\u00e9\"}]\n}";
        assert_eq!(run(&plugin, ANTHROPIC_URL, None, body), None);
    }

    #[test]
    fn a_changed_body_keeps_the_other_values_as_sent() {
        let (_host, plugin) = start(json!({}));
        let body = r#"{"model":"claude-3-5-haiku-20241022","messages":[{"role":"user","content":"\u00e9  x"}],"max_tokens":99999,"z":1.50}"#;
        let HookOutcome::Modify {
            body: Some(new_body),
            ..
        } = plugin
            .hook_with(HookContext {
                hook: "max_tokens".into(),
                event: HookEvent::ProviderRequestPrepared,
                timestamp_ms: 1,
                request_id: None,
                data: data(ANTHROPIC_URL, None),
                body: body.as_bytes().to_vec(),
            })
            .unwrap()
        else {
            panic!("expected a new body");
        };
        assert_eq!(
            String::from_utf8(new_body).unwrap(),
            body.replace("99999", "8192")
        );
    }

    #[test]
    fn the_pricing_service_comes_first_unless_the_local_file_is_preferred() {
        let pricing = |_: &str, args: Value| match args["model"].as_str() {
            Some(SONNET) | Some("claude-haiku-4-5") => {
                Ok(json!({"max_output_tokens": 1234, "max_input_tokens": 5678}))
            }
            _ => Err(PluginError::not_found("no price")),
        };
        let host = MockHost::new().service("pricing", pricing);
        let plugin = host.start::<MaxTokens>().unwrap();
        let limit = plugin
            .service("max_tokens", "limit", json!({"model": SONNET}))
            .unwrap();
        assert_eq!(
            limit,
            json!({"max_output_tokens": 1234, "max_input_tokens": 5678, "source": "pricing"})
        );
        let limit = plugin
            .service("max_tokens", "limit", json!({"model": "gpt-5"}))
            .unwrap();
        assert_eq!(limit["source"], "local_file");
        let limit = plugin
            .service("max_tokens", "limit", json!({"model": "mystery"}))
            .unwrap();
        assert_eq!(
            limit,
            json!({"max_output_tokens": 4096, "max_input_tokens": null, "source": "fallback"})
        );

        let host = MockHost::new()
            .config(json!({"prioritize_local_file": true}))
            .service("pricing", pricing);
        let plugin = host.start::<MaxTokens>().unwrap();
        let limit = plugin
            .service("max_tokens", "limit", json!({"model": SONNET}))
            .unwrap();
        assert_eq!(limit["source"], "local_file");
        assert_eq!(limit["max_output_tokens"], 64_000);
        let limit = plugin
            .service("max_tokens", "limit", json!({"model": "claude-haiku-4-5"}))
            .unwrap();
        assert_eq!(limit["source"], "pricing");
    }

    #[test]
    fn the_pricing_answer_is_reused_per_model() {
        let host = MockHost::new().service("pricing", |_, _| Ok(json!({"max_output_tokens": 50})));
        let plugin = host.start::<MaxTokens>().unwrap();
        for _ in 0..3 {
            let changed = run(
                &plugin,
                ANTHROPIC_URL,
                None,
                r#"{"model":"a","max_tokens":99}"#,
            );
            assert_eq!(changed.unwrap()["max_tokens"], 50);
        }
        assert!(
            run(
                &plugin,
                ANTHROPIC_URL,
                None,
                r#"{"model":"b","max_tokens":99}"#
            )
            .is_some()
        );
        assert_eq!(host.service_calls().len(), 2);
    }

    #[test]
    fn require_pricing_data_leaves_unpriced_models_alone() {
        let host = MockHost::new()
            .config(json!({"require_pricing_data": true}))
            .service("pricing", |_, _| Err(PluginError::not_found("no price")));
        let plugin = host.start::<MaxTokens>().unwrap();
        let body = format!(r#"{{"model":"{SONNET}","messages":[]}}"#);
        assert_eq!(run(&plugin, ANTHROPIC_URL, None, &body), None);
        let error = plugin
            .service("max_tokens", "limit", json!({"model": SONNET}))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn a_configured_limits_file_is_merged_over_the_bundled_one() {
        let scratch = tempfile::tempdir().unwrap();
        std::fs::write(
            scratch.path().join("limits.json"),
            json!({"my-model": {"max_output_tokens": 777}, SONNET: {"max_output_tokens": 100}})
                .to_string(),
        )
        .unwrap();
        let host = MockHost::new()
            .config_dir(scratch.path())
            .config(json!({"default_token_limits_file": "limits.json", "modification_reasons": {"exceeded": "too many"}}));
        let plugin = host.start::<MaxTokens>().unwrap();
        let limit = |model: &str| {
            plugin
                .service("max_tokens", "limit", json!({"model": model}))
                .unwrap()
        };
        assert_eq!(limit("my-model")["max_output_tokens"], 777);
        assert_eq!(limit(SONNET)["max_output_tokens"], 100);
        assert_eq!(limit("gpt-5")["max_output_tokens"], 128_000);
        let body = format!(r#"{{"model":"{SONNET}","max_tokens":200,"messages":[]}}"#);
        assert_eq!(
            run(&plugin, ANTHROPIC_URL, None, &body).unwrap()["max_tokens"],
            100
        );
        assert!(host.logged("(too many; limit from LocalFile)"));
    }

    #[test]
    fn log_modifications_off_logs_nothing() {
        let (host, plugin) = start(json!({"log_modifications": false}));
        let body = format!(r#"{{"model":"{SONNET}","messages":[]}}"#);
        assert!(run(&plugin, ANTHROPIC_URL, None, &body).is_some());
        assert!(!host.logged("->"));
    }

    #[test]
    fn manifest_and_defaults_match_the_original() {
        let (_host, plugin) = start(json!({}));
        let manifest = plugin.manifest();
        assert_eq!(manifest.hooks[0].events, ["provider.request.prepared"]);
        assert_eq!(manifest.hooks[0].priority, 500);
        // Not the headers: the host may leave them out.
        assert_eq!(
            manifest.hooks[0].reads,
            ["url", "provider", "format", "native_format"]
        );
        assert_eq!(manifest.provides, ["max_tokens"]);
        let defaults = &manifest.config.defaults;
        assert_eq!(defaults["default_token_limits_file"], "token_limits.json");
        assert_eq!(defaults["fallback_max_tokens"], 4096);
        assert_eq!(defaults["apply_to_all_providers"], true);
        assert_eq!(
            defaults["target_providers"],
            json!(["claude_api", "claude_sdk", "codex", "copilot"])
        );
        assert_eq!(defaults["require_pricing_data"], false);
        assert_eq!(defaults["log_modifications"], true);
        assert_eq!(defaults["enforce_mode"], false);
        assert_eq!(defaults["prioritize_local_file"], false);
        let reasons = defaults["modification_reasons"].as_object().unwrap();
        assert_eq!(reasons.len(), 4);
    }

    #[test]
    fn bad_config_is_refused() {
        for config in [
            json!({"fallback_max_tokens": 0}),
            json!({"default_token_limits_file": "/nonexistent/limits.json"}),
            json!({"enforce": true}),
        ] {
            let error = MockHost::new()
                .config(config.clone())
                .start::<MaxTokens>()
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{config}: {error}");
        }
    }
}
