//! # pricing: model prices and the cost of each answer
//!
//! Holds a price table in LiteLLM's `model_prices_and_context_window.json`
//! format: a snapshot bundled in the library (`data/prices.json`), so costs
//! work offline, with the entries of a configured `source_file` and of a
//! downloaded `source_url` merged over it. Other plugins ask it through the
//! `pricing` service (`cost`, `price`, `models`); its hook adds `cost_usd`
//! to the data of `request.completed`, `request.failed` and
//! `provider.stream.end` for the hooks that run after it (access log,
//! metrics), from the `usage` and `model` the host put there.
//!
//! Cost = `input_tokens` × input price + `output_tokens` × output price +
//! `cache_read_input_tokens` × cache-read price +
//! `cache_creation_input_tokens` × cache-write price. The host normalises
//! usage to Anthropic's meaning for every provider: `input_tokens` excludes
//! the cached tokens (OpenAI's `prompt_tokens`/`input_tokens`, which
//! include them, arrive with the cached part moved to
//! `cache_read_input_tokens`), so nothing is billed twice. See README.md.
#![forbid(unsafe_code)]

mod table;

use std::{
    fs,
    io::Read,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use ccproxy_plugin_abi::{Value, manifest::TaskSpec, prelude::*, serde_json};
use ccproxy_plugin_kit::{now_ms, secret_file::write_atomically};
use serde::{Deserialize, Serialize};

use crate::table::{Entries, ProviderFilter, Table, Usage};

/// The table bundled in the library.
const BUNDLED_PRICES: &str = include_str!("../data/prices.json");
/// The update task's name (the original's).
const UPDATE_TASK: &str = "pricing_cache_update";
/// Seconds between runs of the update task: it checks `source_file` for
/// changes each time and `source_url` every `update_interval_hours`.
const UPDATE_TICK_SECONDS: f64 = 60.0;
/// The downloaded table's file in `cache_dir` (the original's name).
const CACHE_FILE_NAME: &str = "model_pricing.json";

/// `[plugins.pricing]`, with the original's names and defaults except
/// `source_url` (see README.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    source_url: Option<String>,
    source_file: Option<String>,
    update_interval_hours: f64,
    download_timeout: u64,
    cache_dir: Option<String>,
    cache_ttl_hours: f64,
    auto_update: bool,
    force_refresh_on_startup: bool,
    pricing_provider: ProviderFilter,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            source_url: None,
            source_file: None,
            update_interval_hours: 6.0,
            download_timeout: 30,
            cache_dir: None,
            cache_ttl_hours: 24.0,
            auto_update: true,
            force_refresh_on_startup: false,
            pricing_provider: ProviderFilter::All,
        }
    }
}

/// The table and where each part of it came from.
#[derive(Debug)]
struct State {
    bundled: Entries,
    from_url: Option<Entries>,
    from_file: Option<Entries>,
    table: Arc<Table>,
    last_refresh_ms: Option<u64>,
    url_error: Option<String>,
    file_error: Option<String>,
    /// Modification time and length of `source_file` when last read.
    file_stamp: Option<(SystemTime, u64)>,
    /// When the URL was last considered (downloaded or found fresh).
    last_url_check_ms: Option<u64>,
}

impl State {
    fn rebuild(&mut self) {
        let layers = std::iter::once(&self.bundled)
            .chain(self.from_url.as_ref())
            .chain(self.from_file.as_ref());
        self.table = Arc::new(Table::merged(layers));
        self.last_refresh_ms = Some(now_ms());
    }

    /// The most specific source in the table.
    fn source(&self) -> &'static str {
        if self.from_file.is_some() {
            "file"
        } else if self.from_url.is_some() {
            "url"
        } else {
            "bundled"
        }
    }
}

struct Pricing {
    ctx: Context,
    config: Config,
    /// Where downloads of `source_url` are kept.
    cache_file: PathBuf,
    state: Mutex<State>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `$XDG_CACHE_HOME/ccproxy`, else `$HOME/.cache/ccproxy`, else `None`.
fn user_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|cache| cache.join("ccproxy"))
}

/// Reads `path` without following a link at its last component (a cache
/// file replaced by a link to somewhere else is not read).
fn read_no_follow(path: &Path) -> std::io::Result<String> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

fn file_stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let metadata = fs::metadata(path)?;
    Ok((metadata.modified()?, metadata.len()))
}

fn hours_to_ms(hours: f64) -> u64 {
    (hours * 3_600_000.0) as u64
}

impl Pricing {
    fn table(&self) -> Arc<Table> {
        lock(&self.state).table.clone()
    }

    /// Re-reads `source_file` when it changed since the last read; a file
    /// that cannot be read or parsed keeps the entries read before.
    fn refresh_file(&self) {
        let Some(path) = &self.config.source_file else {
            return;
        };
        let path = Path::new(path);
        let stamp = file_stamp(path);
        let mut state = lock(&self.state);
        if let Ok(stamp) = &stamp
            && state.file_stamp == Some(*stamp)
        {
            return;
        }
        let read = stamp
            .and_then(|stamp| Ok((stamp, fs::read_to_string(path)?)))
            .map_err(|error| format!("cannot read source_file {}: {error}", path.display()))
            .and_then(|(stamp, text)| {
                table::parse(&text, self.config.pricing_provider)
                    .map(|entries| (stamp, entries))
                    .map_err(|error| format!("source_file {}: {}", path.display(), error.message()))
            });
        match read {
            Ok((stamp, entries)) => {
                info!("pricing: {} models from {}", entries.len(), path.display());
                state.file_stamp = Some(stamp);
                state.from_file = Some(entries);
                state.file_error = None;
                state.rebuild();
            }
            Err(error) => {
                if state.file_error.as_ref() != Some(&error) {
                    warn!("pricing: {error}; keeping the table it had");
                }
                state.file_error = Some(error);
            }
        }
    }

    /// Loads the cached download, if there is one (at start, whatever its age).
    fn load_cache(&self) {
        if self.config.source_url.is_none() {
            return;
        }
        let Ok(text) = read_no_follow(&self.cache_file) else {
            return;
        };
        match table::parse(&text, self.config.pricing_provider) {
            Ok(entries) => {
                let mut state = lock(&self.state);
                state.from_url = Some(entries);
                state.rebuild();
            }
            Err(error) => warn!(
                "pricing: ignoring the cached table {}: {}",
                self.cache_file.display(),
                error.message()
            ),
        }
    }

    /// Age of the cached download in milliseconds; `None` when there is none.
    fn cache_age_ms(&self) -> Option<u64> {
        let modified = fs::symlink_metadata(&self.cache_file)
            .and_then(|metadata| metadata.modified())
            .ok()?;
        Some(
            SystemTime::now()
                .duration_since(modified)
                .map_or(0, |age| age.as_millis() as u64),
        )
    }

    /// Downloads `source_url` when it is due: every `update_interval_hours`
    /// the cache is checked, and downloaded again when it is missing, or
    /// older than `cache_ttl_hours` (with `auto_update`), or at the first
    /// check with `force_refresh_on_startup`.
    async fn refresh_url(&self) {
        let Some(url) = self.config.source_url.clone() else {
            return;
        };
        let now = now_ms();
        let first_check = {
            let mut state = lock(&self.state);
            let due = state.last_url_check_ms.is_none_or(|last| {
                now.saturating_sub(last) >= hours_to_ms(self.config.update_interval_hours)
            });
            if !due {
                return;
            }
            let first = state.last_url_check_ms.is_none();
            state.last_url_check_ms = Some(now);
            first
        };
        let stale = match self.cache_age_ms() {
            None => true,
            Some(age) => {
                (self.config.auto_update && age >= hours_to_ms(self.config.cache_ttl_hours))
                    || (first_check && self.config.force_refresh_on_startup)
            }
        };
        if !stale {
            return;
        }
        let result = self.download(&url).await;
        let mut state = lock(&self.state);
        match result {
            Ok(entries) => {
                info!("pricing: {} models from {url}", entries.len());
                state.from_url = Some(entries);
                state.url_error = None;
                state.rebuild();
            }
            Err(error) => {
                warn!("pricing: {error}; keeping the table it had");
                state.url_error = Some(error);
            }
        }
    }

    async fn download(&self, url: &str) -> Result<Entries, String> {
        let mut request = HttpRequest::get(url);
        request.timeout = Some(Duration::from_secs(self.config.download_timeout));
        let response = self
            .ctx
            .http(request)
            .await
            .map_err(|error| format!("cannot download {url}: {}", error.message()))?;
        if response.status != 200 {
            return Err(format!("cannot download {url}: status {}", response.status));
        }
        let text = String::from_utf8(response.body)
            .map_err(|_| format!("{url} did not answer UTF-8 text"))?;
        let entries = table::parse(&text, self.config.pricing_provider)
            .map_err(|error| format!("{url}: {}", error.message()))?;
        if let Err(error) = write_atomically(&self.cache_file, text.as_bytes()) {
            // The table is still used; only the next start downloads again.
            warn!(
                "pricing: cannot write the cache {}: {error}",
                self.cache_file.display()
            );
        }
        Ok(entries)
    }
}

/// The keys of a hook event's data the cost needs.
#[derive(Deserialize)]
struct Priced<'a> {
    #[serde(default, borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Usage>,
}

/// The `cost` method's arguments.
#[derive(Deserialize)]
struct CostArgs {
    model: String,
    #[serde(default)]
    usage: Usage,
}

#[derive(Deserialize)]
struct ModelArgs {
    model: String,
}

impl Plugin for Pricing {
    type Config = Config;

    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("pricing", env!("CARGO_PKG_VERSION"))
            .description("Model prices (LiteLLM's format, a bundled snapshot, refreshable) and the cost of each answer")
            .provides("pricing")
            // Low number: before the access log (750) and metrics (700), which
            // read the `cost_usd` it adds.
            .hook(
                "pricing",
                ["request.completed", "request.failed", "provider.stream.end"],
                50,
            )
            .reads_fields_of::<Priced<'static>>()
            .config_key("source_url", "URL of a price table in LiteLLM's format to download (null: none, offline)")
            .config_key("source_file", "local price table in LiteLLM's format, merged over the bundled one")
            .config_key("update_interval_hours", "hours between checks of source_url")
            .config_key("download_timeout", "seconds a download of source_url may take")
            .config_key("cache_dir", "folder of the downloaded table (null: $XDG_CACHE_HOME/ccproxy)")
            .config_key("cache_ttl_hours", "hours a downloaded table is used before it is downloaded again")
            .config_key("auto_update", "download again when the cached table is older than cache_ttl_hours")
            .config_key("force_refresh_on_startup", "download at start even when the cached table is fresh")
            .config_key("pricing_provider", "entries taken from refreshed sources: all, anthropic or openai");
        // Every minute, and once at start: the file is checked for changes
        // each time, the URL every `update_interval_hours` (in hours, so not
        // a task interval key, which is in seconds).
        manifest.tasks.push(TaskSpec {
            name: UPDATE_TASK.to_owned(),
            interval_seconds: UPDATE_TICK_SECONDS,
            enabled: true,
            run_at_start: true,
            ..TaskSpec::default()
        });
        manifest
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        for (key, hours) in [
            ("update_interval_hours", config.update_interval_hours),
            ("cache_ttl_hours", config.cache_ttl_hours),
        ] {
            if !hours.is_finite() || hours <= 0.0 {
                return Err(PluginError::invalid(format!(
                    "{key} must be a positive number of hours"
                )));
            }
        }
        if config.download_timeout == 0 {
            return Err(PluginError::invalid(
                "download_timeout must be a positive number of seconds",
            ));
        }
        if let Some(url) = &config.source_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(PluginError::invalid(format!(
                "source_url must be an http(s) URL, got {url}"
            )));
        }
        let bundled = table::parse(BUNDLED_PRICES, ProviderFilter::All)?;
        let cache_dir = match &config.cache_dir {
            Some(dir) => PathBuf::from(dir),
            None => user_cache_dir().unwrap_or_else(|| ctx.data_dir().to_path_buf()),
        };
        let table = Arc::new(Table::merged([&bundled]));
        let plugin = Self {
            ctx,
            cache_file: cache_dir.join(CACHE_FILE_NAME),
            config,
            state: Mutex::new(State {
                bundled,
                from_url: None,
                from_file: None,
                table,
                last_refresh_ms: None,
                url_error: None,
                file_error: None,
                file_stamp: None,
                last_url_check_ms: None,
            }),
        };
        plugin.load_cache();
        plugin.refresh_file();
        let state = lock(&plugin.state);
        info!(
            "pricing: {} models (source {})",
            state.table.len(),
            state.source()
        );
        drop(state);
        Ok(plugin)
    }

    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        let priced: Priced = call.data()?;
        let (Some(model), Some(usage)) = (priced.model, priced.usage) else {
            return Ok(HookOutcome::Continue);
        };
        let cost = match self.table().cost(&model, &usage) {
            Ok(cost) => cost,
            Err(error) => {
                debug!("pricing: {}", error.message());
                return Ok(HookOutcome::Continue);
            }
        };
        // Added to the data as it is, not parsed and written again.
        call.annotate("cost_usd", cost.cost_usd)?;
        Ok(HookOutcome::Continue)
    }

    async fn on_service_call(&self, call: ServiceCall) -> Result<Value, PluginError> {
        let table = self.table();
        match call.method.as_str() {
            "cost" => {
                let args: CostArgs = call.args_as()?;
                Ok(serde_json::to_value(table.cost(&args.model, &args.usage)?)?)
            }
            "price" => {
                let args: ModelArgs = call.args_as()?;
                let (matched, entry) = table.find(&args.model).ok_or_else(|| {
                    PluginError::not_found(format!("no price known for model {}", args.model))
                })?;
                let mut entry = entry.raw().clone();
                if let Some(object) = entry.as_object_mut() {
                    object.insert("model_matched".to_owned(), Value::from(matched));
                }
                Ok(entry)
            }
            "models" => Ok(json!({"models": table.models().collect::<Vec<_>>()})),
            other => Err(PluginError::not_found(format!(
                "service pricing has no method {other} (cost, price, models)"
            ))),
        }
    }

    async fn on_task(&self, task: String) -> Result<(), PluginError> {
        if task == UPDATE_TASK {
            self.refresh_file();
            self.refresh_url().await;
        }
        Ok(())
    }

    async fn on_health(&self) -> Health {
        let state = lock(&self.state);
        let errors: Vec<&str> = [&state.url_error, &state.file_error]
            .into_iter()
            .filter_map(Option::as_deref)
            .collect();
        let mut details = json!({
            "source": state.source(),
            "models": state.table.len(),
            "bundled_models": state.bundled.len(),
            "source_url": self.config.source_url,
            "source_file": self.config.source_file,
            "cache_file": self.config.source_url.as_ref().map(|_| self.cache_file.display().to_string()),
            "last_refresh_ms": state.last_refresh_ms,
            "last_error": errors.first(),
        });
        if errors.is_empty() {
            Health::with(HealthStatus::Healthy, details)
        } else {
            details["reason"] = Value::from(errors.join("; "));
            Health::with(HealthStatus::Degraded, details)
        }
    }
}

export_plugin!(Pricing);

#[cfg(test)]
mod tests {
    use std::fs;

    use ccproxy_plugin_abi::testing::{MockHost, TestPlugin};

    use super::*;

    /// Without `source_url` the plugin never touches its cache folder, so
    /// these tests need none of their own.
    fn start(config: Value) -> (MockHost, TestPlugin) {
        assert!(config.get("source_url").is_none());
        let host = MockHost::new().config(config);
        let plugin = host.start::<Pricing>().expect("pricing starts");
        (host, plugin)
    }

    fn cost(plugin: &TestPlugin, model: &str, usage: Value) -> Result<Value, PluginError> {
        plugin.service("pricing", "cost", json!({"model": model, "usage": usage}))
    }

    fn close(actual: &Value, expected: f64) -> bool {
        actual
            .as_f64()
            .is_some_and(|actual| (actual - expected).abs() < 1e-12)
    }

    #[test]
    fn anthropic_cost_bills_the_four_counts_at_their_prices() {
        let (_host, plugin) = start(json!({}));
        let answer = cost(
            &plugin,
            "claude-sonnet-4-5-20250929",
            json!({"input_tokens": 1000, "output_tokens": 500,
                   "cache_read_input_tokens": 20000, "cache_creation_input_tokens": 4000}),
        )
        .unwrap();
        // $3 in, $15 out, $0.30 cache read, $3.75 cache write per million.
        assert!(close(&answer["input_cost_usd"], 0.003), "{answer}");
        assert!(close(&answer["output_cost_usd"], 0.0075), "{answer}");
        assert!(close(&answer["cache_read_cost_usd"], 0.006), "{answer}");
        assert!(close(&answer["cache_write_cost_usd"], 0.015), "{answer}");
        assert!(close(&answer["cost_usd"], 0.0315), "{answer}");
        assert_eq!(answer["model_matched"], "claude-sonnet-4-5-20250929");
    }

    #[test]
    fn openai_cost_bills_cached_input_at_the_cached_price() {
        let (_host, plugin) = start(json!({}));
        // The host's usage for a Responses answer of 10 000 input tokens, 8 000
        // of them cached: input_tokens is the uncached 2 000.
        let answer = cost(
            &plugin,
            "gpt-5-codex",
            json!({"input_tokens": 2000, "cache_read_input_tokens": 8000, "output_tokens": 1000}),
        )
        .unwrap();
        // $1.25 in, $0.125 cached, $10 out per million.
        let expected = 2000.0 * 1.25e-6 + 8000.0 * 0.125e-6 + 1000.0 * 10e-6;
        assert!(close(&answer["cost_usd"], expected), "{answer}");
        assert!(close(&answer["cache_write_cost_usd"], 0.0), "{answer}");
    }

    #[test]
    fn models_are_found_by_date_prefix_and_longest_known_prefix() {
        let (_host, plugin) = start(json!({}));
        let usage = json!({"input_tokens": 1});
        for (model, matched) in [
            ("claude-opus-4-5-20251101", "claude-opus-4-5-20251101"),
            ("claude-opus-4-5-20991231", "claude-opus-4-5"),
            ("anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
            ("openai/gpt-5.1-codex-max", "gpt-5.1-codex-max"),
            ("claude-sonnet-4", "claude-sonnet-4-20250514"),
            ("gpt-4o-2024-05-13", "gpt-4o"),
            ("gpt-5.1-codex-mini-high", "gpt-5.1-codex-mini"),
            ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet-20250219"),
        ] {
            let answer = cost(&plugin, model, usage.clone()).unwrap();
            assert_eq!(answer["model_matched"], matched, "{model}");
        }
    }

    #[test]
    fn an_unknown_model_is_a_not_found_error_naming_it() {
        let (_host, plugin) = start(json!({}));
        for model in ["llama-3-70b", "gpt-5.9"] {
            let error = cost(&plugin, model, json!({})).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::NotFound);
            assert!(error.message().contains(model), "{error}");
        }
        let error = plugin
            .service("pricing", "price", json!({"model": "nope"}))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn price_and_models_answer_the_entry_and_the_list() {
        let (_host, plugin) = start(json!({}));
        let entry = plugin
            .service("pricing", "price", json!({"model": "o3"}))
            .unwrap();
        assert_eq!(entry["litellm_provider"], "openai");
        assert_eq!(entry["max_output_tokens"], 100_000);
        assert!(close(&entry["input_cost_per_token"], 2e-6));
        let models = plugin.service("pricing", "models", json!({})).unwrap();
        let models: Vec<&str> = models["models"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for model in [
            "claude-opus-4-5",
            "claude-opus-4-1",
            "claude-opus-4-20250514",
            "claude-sonnet-4-5",
            "claude-sonnet-4-20250514",
            "claude-haiku-4-5-20251001",
            "claude-3-7-sonnet-20250219",
            "claude-3-5-haiku-20241022",
            "gpt-5",
            "gpt-5-codex",
            "gpt-5.1",
            "gpt-5.1-codex",
            "gpt-5.1-codex-max",
            "gpt-5.1-codex-mini",
            "gpt-5-mini",
            "gpt-5-nano",
            "gpt-4.1",
            "gpt-4o",
            "o3",
            "o4-mini",
        ] {
            assert!(models.contains(&model), "{model} missing");
        }
    }

    fn completed(usage: Value, model: Value) -> Value {
        json!({"request_id": "r1", "method": "POST", "path": "/claude/v1/messages", "status_code": 200,
               "provider": "claude_api", "model": model, "usage": usage, "headers": {}})
    }

    #[test]
    fn a_completed_answer_with_usage_gets_its_cost() {
        let (_host, plugin) = start(json!({}));
        let data = completed(
            json!({"input_tokens": 1000000, "output_tokens": 0, "cache_read_input_tokens": 0,
                   "cache_creation_input_tokens": 0, "reasoning_tokens": 0}),
            json!("claude-haiku-4-5"),
        );
        let HookOutcome::Modify {
            data: changed,
            body,
        } = plugin
            .hook(HookEvent::RequestCompleted, data.clone())
            .unwrap()
        else {
            panic!("expected Modify");
        };
        assert!(body.is_none());
        assert!(close(&changed["cost_usd"], 1.0), "{changed}");
        let mut without_cost = changed.clone();
        without_cost.as_object_mut().unwrap().remove("cost_usd");
        assert_eq!(without_cost, data, "the rest of the data is unchanged");
        // Failed requests too.
        let outcome = plugin.hook(HookEvent::RequestFailed, data).unwrap();
        assert!(matches!(outcome, HookOutcome::Modify { .. }));
    }

    #[test]
    fn no_usage_no_model_or_an_unknown_model_continue() {
        let (_host, plugin) = start(json!({}));
        for data in [
            completed(Value::Null, json!("claude-haiku-4-5")),
            completed(json!({"input_tokens": 3}), Value::Null),
            completed(json!({"input_tokens": 3}), json!("mystery-model")),
            json!({"provider": "codex", "request_id": "r", "total_bytes": 1, "total_chunks": 1, "usage": {"input_tokens": 3}}),
        ] {
            let event = if data.get("total_chunks").is_some() {
                HookEvent::ProviderStreamEnd
            } else {
                HookEvent::RequestCompleted
            };
            let outcome = plugin.hook(event, data.clone()).unwrap();
            assert!(matches!(outcome, HookOutcome::Continue), "{data}");
        }
    }

    #[test]
    fn a_source_file_merges_over_the_bundled_table_and_overrides() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("prices.json");
        fs::write(
            &file,
            json!({
                "claude-haiku-4-5": {"input_cost_per_token": 1e-3, "output_cost_per_token": 2e-3,
                                     "litellm_provider": "anthropic"},
                "my-local-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6,
                                   "litellm_provider": "openai", "max_output_tokens": 1234},
            })
            .to_string(),
        )
        .unwrap();
        let (_host, plugin) = start(json!({"source_file": file.display().to_string()}));
        let haiku = cost(&plugin, "claude-haiku-4-5", json!({"input_tokens": 10})).unwrap();
        assert!(close(&haiku["cost_usd"], 0.01), "{haiku}");
        let local = cost(&plugin, "my-local-model", json!({"output_tokens": 10})).unwrap();
        assert!(close(&local["cost_usd"], 1e-5), "{local}");
        // Bundled entries the file does not name stay.
        assert!(cost(&plugin, "gpt-4o", json!({"input_tokens": 1})).is_ok());
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Healthy);
        assert_eq!(health.details["source"], "file");
        assert_eq!(
            health.details["models"],
            health.details["bundled_models"].as_u64().unwrap() + 1
        );
        assert!(health.details["last_refresh_ms"].as_u64().is_some());
    }

    #[test]
    fn a_bad_file_keeps_the_old_table_and_degrades_health() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("prices.json");
        fs::write(
            &file,
            r#"{"my-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}}"#,
        )
        .unwrap();
        let (host, plugin) = start(json!({"source_file": file.display().to_string()}));
        assert!(cost(&plugin, "my-model", json!({"input_tokens": 1})).is_ok());

        fs::write(&file, "{ not json, and longer than before").unwrap();
        plugin.task(UPDATE_TASK).unwrap();
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        let reason = health.details["reason"].as_str().unwrap();
        assert!(reason.contains("not a LiteLLM price table"), "{reason}");
        assert!(host.logged("keeping the table it had"));
        assert!(cost(&plugin, "my-model", json!({"input_tokens": 1})).is_ok());

        fs::write(
            &file,
            r#"{"my-model": {"input_cost_per_token": 2e-6, "output_cost_per_token": 1e-6}, "x": {"input_cost_per_token": 1}}"#,
        )
        .unwrap();
        plugin.task(UPDATE_TASK).unwrap();
        assert_eq!(plugin.health().unwrap().status, HealthStatus::Healthy);
        let answer = cost(&plugin, "my-model", json!({"input_tokens": 1})).unwrap();
        assert!(close(&answer["cost_usd"], 2e-6), "{answer}");
    }

    #[test]
    fn a_missing_file_at_start_degrades_health_with_the_bundled_table() {
        let (_host, plugin) = start(json!({"source_file": "/nonexistent/prices.json"}));
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        assert_eq!(health.details["source"], "bundled");
        assert!(cost(&plugin, "o3", json!({"input_tokens": 1})).is_ok());
    }

    #[test]
    fn the_url_is_downloaded_through_the_host_and_cached() {
        let scratch = tempfile::tempdir().unwrap();
        let cache_dir = scratch.path().join("cache");
        let host = MockHost::new()
            .config(json!({"source_url": "https://prices.test/table.json",
                           "cache_dir": cache_dir.display().to_string(),
                           "pricing_provider": "openai"}))
            .http(|request| {
                assert_eq!(request.url, "https://prices.test/table.json");
                assert_eq!(request.timeout, Some(Duration::from_secs(30)));
                Ok(HttpResponse {
                    status: 200,
                    body: json!({
                        "gpt-4o": {"input_cost_per_token": 1.0, "output_cost_per_token": 1.0, "litellm_provider": "openai"},
                        "claude-haiku-4-5": {"input_cost_per_token": 1.0, "litellm_provider": "anthropic"},
                    })
                    .to_string()
                    .into_bytes(),
                    ..Default::default()
                })
            });
        let plugin = host.start::<Pricing>().unwrap();
        assert!(
            host.http_requests().is_empty(),
            "no download before the task"
        );
        plugin.task(UPDATE_TASK).unwrap();
        assert_eq!(host.http_requests().len(), 1);
        let gpt = cost(&plugin, "gpt-4o", json!({"input_tokens": 2})).unwrap();
        assert!(close(&gpt["cost_usd"], 2.0), "{gpt}");
        // pricing_provider openai: the anthropic entry was not taken.
        let haiku = cost(&plugin, "claude-haiku-4-5", json!({"input_tokens": 1})).unwrap();
        assert!(close(&haiku["cost_usd"], 1e-6), "{haiku}");
        assert_eq!(plugin.health().unwrap().details["source"], "url");
        let cached = cache_dir.join(CACHE_FILE_NAME);
        assert!(fs::read_to_string(&cached).unwrap().contains("gpt-4o"));
        // Not due again for update_interval_hours.
        plugin.task(UPDATE_TASK).unwrap();
        assert_eq!(host.http_requests().len(), 1);
    }

    #[test]
    fn a_failed_download_keeps_the_table_and_degrades_health() {
        let scratch = tempfile::tempdir().unwrap();
        let host = MockHost::new()
            .config(json!({"source_url": "https://prices.test/table.json",
                           "cache_dir": scratch.path().display().to_string()}))
            .http(|_| {
                Ok(HttpResponse {
                    status: 503,
                    ..Default::default()
                })
            });
        let plugin = host.start::<Pricing>().unwrap();
        plugin.task(UPDATE_TASK).unwrap();
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        assert!(
            health.details["reason"]
                .as_str()
                .unwrap()
                .contains("status 503"),
            "{health:?}"
        );
        assert_eq!(health.details["source"], "bundled");
        assert!(cost(&plugin, "gpt-5", json!({"input_tokens": 1})).is_ok());
    }

    #[test]
    fn manifest_and_defaults() {
        let (_host, plugin) = start(json!({}));
        let manifest = plugin.manifest();
        assert_eq!(manifest.provides, ["pricing"]);
        assert_eq!(manifest.hooks[0].priority, 50);
        assert_eq!(manifest.tasks[0].name, UPDATE_TASK);
        assert!(manifest.tasks[0].run_at_start);
        assert_eq!(
            manifest.config.defaults,
            json!({
                "source_url": null, "source_file": null, "update_interval_hours": 6.0,
                "download_timeout": 30, "cache_dir": null, "cache_ttl_hours": 24.0,
                "auto_update": true, "force_refresh_on_startup": false, "pricing_provider": "all",
            })
        );
    }

    #[test]
    fn bad_config_is_refused() {
        for config in [
            json!({"update_interval_hours": 0.0}),
            json!({"cache_ttl_hours": -1.0}),
            json!({"download_timeout": 0}),
            json!({"source_url": "ftp://x"}),
            json!({"pricing_provider": "mistral"}),
            json!({"source_urls": "x"}),
        ] {
            let error = MockHost::new()
                .config(config.clone())
                .start::<Pricing>()
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{config}: {error}");
        }
    }
}
