//! # metrics: Prometheus metrics of the proxy
//!
//! Counts what the host's events say about each request and serves it at
//! `GET /metrics` in the Prometheus text format (0.0.4), under the
//! configured `namespace` (`ccproxy` by default):
//!
//! - `ccproxy_requests_total{provider,model,status,method}`,
//!   `ccproxy_request_duration_seconds{provider,model}` and
//!   `ccproxy_time_to_first_byte_seconds{provider,model}` (histograms) from
//!   `request.completed` and `request.failed`;
//! - `ccproxy_tokens_total{provider,model,type}` from their usage;
//! - `ccproxy_cost_usd_total{provider,model}` from their `cost_usd` (written
//!   by the `pricing` plugin);
//! - `ccproxy_upstream_errors_total{provider,kind}` from `provider.error`
//!   and `request.failed`;
//! - `ccproxy_active_streams{provider}` from `provider.stream.start` and
//!   `provider.stream.end`;
//! - `ccproxy_plugin_hook_seconds_total{plugin}` and
//!   `ccproxy_plugin_hook_calls_total{plugin}`, from the host's plugin status.
//!
//! With `pushgateway_enabled` and a `pushgateway_url`, the task
//! `metrics_pushgateway` also PUTs the same text to
//! `{pushgateway_url}/metrics/job/{pushgateway_job}` every
//! `pushgateway_push_interval` seconds, and once more at shutdown.
//!
//! The hook only observes, off the request path. Build it with
//! `cargo build -p ccproxy-plugin-metrics` (the host finds bundled plugins
//! next to its binary), then:
//!
//! ```text
//! curl http://127.0.0.1:8000/metrics
//! ```
//!
//! and at startup the proxy logs:
//!
//! ```text
//! INFO plugin: metrics serving /metrics (namespace ccproxy), pushgateway off plugin="metrics"
//! ```
//!
//! See README.md beside this crate for the config keys, labels and how they
//! differ from the original's.
#![forbid(unsafe_code)]

mod families;
mod pushgateway;

use std::sync::Arc;

use ccproxy_plugin_abi::{Value, prelude::*, protocol::capability};
use serde::{Deserialize, Serialize};

use crate::{
    families::{Answered, Metrics, PluginHookTime, ProviderFailed, Settings, Stream},
    pushgateway::Pushgateway,
};

/// The Pushgateway task's name, as the original's.
const PUSH_TASK: &str = "metrics_pushgateway";

/// The original's default push interval, seconds.
const DEFAULT_PUSH_INTERVAL: f64 = 60.0;

/// `Content-Type` of the Prometheus text format 0.0.4.
const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// `[plugins.metrics]`, with the original's keys and defaults. `enabled` is
/// the host's own key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    namespace: String,
    metrics_endpoint_enabled: bool,
    pushgateway_enabled: bool,
    pushgateway_url: Option<String>,
    pushgateway_job: String,
    pushgateway_push_interval: f64,
    collect_request_metrics: bool,
    collect_token_metrics: bool,
    collect_cost_metrics: bool,
    collect_error_metrics: bool,
    collect_pool_metrics: bool,
    histogram_buckets: Vec<f64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: "ccproxy".to_owned(),
            metrics_endpoint_enabled: true,
            pushgateway_enabled: false,
            pushgateway_url: None,
            pushgateway_job: "ccproxy".to_owned(),
            pushgateway_push_interval: DEFAULT_PUSH_INTERVAL,
            collect_request_metrics: true,
            collect_token_metrics: true,
            collect_cost_metrics: true,
            collect_error_metrics: true,
            collect_pool_metrics: true,
            histogram_buckets: vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0],
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), PluginError> {
        let mut characters = self.namespace.chars();
        let valid_name = characters
            .next()
            .is_none_or(|first| first.is_ascii_alphabetic() || first == '_')
            && characters.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(PluginError::invalid(format!(
                "namespace {:?} is not a metric name prefix: use letters, digits and underscores, not starting with a digit",
                self.namespace
            )));
        }
        if self.histogram_buckets.is_empty()
            || self.histogram_buckets.iter().any(|b| !b.is_finite())
            || self.histogram_buckets.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(PluginError::invalid(
                "histogram_buckets must be finite numbers of seconds in increasing order",
            ));
        }
        if !self.pushgateway_push_interval.is_finite() || self.pushgateway_push_interval <= 0.0 {
            return Err(PluginError::invalid(
                "pushgateway_push_interval must be a positive number of seconds",
            ));
        }
        Ok(())
    }

    fn settings(&self) -> Settings {
        Settings {
            namespace: self.namespace.clone(),
            requests: self.collect_request_metrics,
            tokens: self.collect_token_metrics,
            cost: self.collect_cost_metrics,
            errors: self.collect_error_metrics,
            streams: self.collect_pool_metrics,
            buckets: self.histogram_buckets.clone(),
        }
    }
}

/// The plugin: its families and, when pushing, the Pushgateway.
struct MetricsPlugin {
    ctx: Context,
    config: Config,
    metrics: Arc<Metrics>,
    pushgateway: Option<Pushgateway>,
}

/// Why nothing is pushed although `pushgateway_enabled` is set.
const NO_PUSHGATEWAY_URL: &str =
    "pushgateway_enabled is set without a pushgateway_url: nothing is pushed";

impl MetricsPlugin {
    /// The exposition, with the plugins' hook times fresh from the host.
    async fn exposition(&self) -> String {
        if self.metrics.wants_plugin_hook_times() {
            self.metrics
                .set_plugin_hook_times(plugin_hook_times(&self.ctx).await);
        }
        self.metrics.encode()
    }

    async fn push(&self) {
        if let Some(pushgateway) = &self.pushgateway {
            let text = self.exposition().await;
            pushgateway.push(&self.ctx, text).await;
        }
    }
}

/// The hook time of every plugin, as `/plugins/status` shows it; nothing
/// from a host without the `plugins_status` capability (before plugin API
/// 1.2) or when the host cannot answer, so the two `plugin_hook_*` families
/// are simply absent then.
async fn plugin_hook_times(ctx: &Context) -> Vec<PluginHookTime> {
    if !ctx.has_capability(capability::PLUGINS_STATUS) {
        return Vec::new();
    }
    match ctx.plugins_status().await {
        Ok(status) => hook_times_from_status(&status),
        Err(error) => {
            debug!("plugin hook times unavailable: {error}");
            Vec::new()
        }
    }
}

/// `plugins[]` of a `/plugins/status` document: each active plugin's
/// `name`, `hook_calls` and `hook_seconds` (or `hook_time_ms`, as
/// `/plugins/status` writes it); plugins not running have no counters and
/// are left out.
fn hook_times_from_status(status: &Value) -> Vec<PluginHookTime> {
    let Some(plugins) = status.get("plugins").and_then(Value::as_array) else {
        return Vec::new();
    };
    plugins
        .iter()
        .filter_map(|plugin| {
            Some(PluginHookTime {
                plugin: plugin.get("name")?.as_str()?.to_owned(),
                hook_calls: plugin.get("hook_calls")?.as_u64()?,
                hook_seconds: match plugin.get("hook_seconds").and_then(Value::as_f64) {
                    Some(seconds) => seconds,
                    None => plugin.get("hook_time_ms")?.as_f64()? / 1e3,
                },
            })
        })
        .collect()
}

impl Plugin for MetricsPlugin {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("metrics", env!("CARGO_PKG_VERSION"))
            .description("Prometheus metrics at /metrics and an optional Pushgateway push")
            // Unauthenticated as the original's: scrapers carry no client token.
            .route(
                "/metrics",
                [Route::get("/").public(), Route::get("/health").public()],
            )
            .hook(
                "metrics",
                [
                    "request.completed",
                    "request.failed",
                    "provider.error",
                    "provider.stream.start",
                    "provider.stream.end",
                ],
                700,
            )
            // The structs the events are read as: the host may leave out the
            // rest (the request's headers).
            .reads_fields_of::<Answered<'static>>()
            .reads_fields_of::<ProviderFailed<'static>>()
            .reads_fields_of::<Stream<'static>>()
            // Runs whether or not pushing is on (the manifest is read before
            // the config); without a Pushgateway a run does nothing.
            .task_from_config(
                PUSH_TASK,
                "pushgateway_push_interval",
                DEFAULT_PUSH_INTERVAL,
                false,
            )
            .config_key("namespace", "prefix of every metric name")
            .config_key("metrics_endpoint_enabled", "serve GET /metrics (off: 404)")
            .config_key(
                "pushgateway_enabled",
                "push the metrics to a Prometheus Pushgateway",
            )
            .config_key(
                "pushgateway_url",
                "the Pushgateway's base URL, e.g. http://127.0.0.1:9091",
            )
            .config_key(
                "pushgateway_job",
                "the job name the metrics are pushed under",
            )
            .config_key("pushgateway_push_interval", "seconds between pushes")
            .config_key(
                "collect_request_metrics",
                "requests, durations, time to first byte and plugin hook time",
            )
            .config_key("collect_token_metrics", "tokens by type")
            .config_key(
                "collect_cost_metrics",
                "cost in USD (from the pricing plugin)",
            )
            .config_key("collect_error_metrics", "upstream errors by kind")
            .config_key("collect_pool_metrics", "upstream streams open now")
            .config_key(
                "histogram_buckets",
                "upper bounds (seconds) of the duration histograms' buckets",
            )
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        config.validate()?;
        let pushgateway = if config.pushgateway_enabled {
            let url = config.pushgateway_url.as_deref().unwrap_or_default();
            if url.is_empty() {
                warn!("{NO_PUSHGATEWAY_URL}");
                None
            } else {
                Some(Pushgateway::new(url, &config.pushgateway_job)?)
            }
        } else {
            None
        };
        info!(
            "metrics serving {} (namespace {}), pushgateway {}",
            if config.metrics_endpoint_enabled {
                "/metrics"
            } else {
                "nothing (metrics_endpoint_enabled is off)"
            },
            config.namespace,
            pushgateway.as_ref().map_or_else(
                || "off".to_owned(),
                |p| format!(
                    "{} every {} s",
                    p.display_url(),
                    config.pushgateway_push_interval
                )
            ),
        );
        Ok(Self {
            metrics: Arc::new(Metrics::new(&config.settings())),
            ctx,
            config,
            pushgateway,
        })
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        if !self.config.metrics_endpoint_enabled {
            return Ok(Response::text(404, "the metrics endpoint is switched off"));
        }
        if req.path.ends_with("/health") {
            return Ok(Response::json(200, &self.health_details()));
        }
        let mut response = Response::new(200, self.exposition().await);
        response.headers.set("content-type", CONTENT_TYPE);
        // As the original: every scrape sees the current values.
        response
            .headers
            .set("cache-control", "no-cache, no-store, must-revalidate");
        Ok(response)
    }

    // The data is read into structs of the keys the families use, never
    // built as a whole `Value`.
    async fn on_hook_call(&self, call: HookCall) -> Result<HookOutcome, PluginError> {
        let request_id = call.request_id.as_deref();
        match call.event {
            HookEvent::RequestCompleted => {
                self.metrics
                    .answered(request_id, &call.data::<Answered>()?, false)
            }
            HookEvent::RequestFailed => {
                self.metrics
                    .answered(request_id, &call.data::<Answered>()?, true)
            }
            HookEvent::ProviderError => self
                .metrics
                .provider_failed(request_id, &call.data::<ProviderFailed>()?),
            HookEvent::ProviderStreamStart => self
                .metrics
                .stream_started(request_id, &call.data::<Stream>()?),
            HookEvent::ProviderStreamEnd => self
                .metrics
                .stream_ended(request_id, &call.data::<Stream>()?),
            _ => {}
        }
        Ok(HookOutcome::Continue)
    }

    async fn on_task(&self, _task: String) -> Result<(), PluginError> {
        // The host runs this every `pushgateway_push_interval` seconds.
        self.push().await;
        Ok(())
    }

    async fn on_health(&self) -> Health {
        let mut details = self.health_details();
        let problem = match &self.pushgateway {
            Some(pushgateway) => pushgateway
                .last_error()
                .map(|error| format!("last push failed: {error}")),
            None if self.config.pushgateway_enabled => Some(NO_PUSHGATEWAY_URL.to_owned()),
            None => None,
        };
        match problem {
            Some(reason) => {
                details["reason"] = Value::from(reason);
                Health::with(HealthStatus::Degraded, details)
            }
            None => Health::with(HealthStatus::Healthy, details),
        }
    }

    async fn on_shutdown(&self) {
        // As the original: what was counted since the last push is not lost.
        self.push().await;
    }
}

impl MetricsPlugin {
    fn health_details(&self) -> Value {
        json!({
            "namespace": self.config.namespace,
            "metrics_endpoint_enabled": self.config.metrics_endpoint_enabled,
            "families": self.metrics.enabled_families(),
            "series": self.metrics.series(),
            "events": self.metrics.events(),
            "pushgateway": self.pushgateway.as_ref().map(Pushgateway::status),
        })
    }
}

export_plugin!(MetricsPlugin);

#[cfg(test)]
mod tests;
