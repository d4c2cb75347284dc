//! The metric families, what each event adds to them, and the text exposition.
//!
//! Families live in a `prometheus_client` registry under the configured
//! namespace; a family whose `collect_*` switch is off is never registered,
//! so it is absent from the exposition rather than present and empty.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, prometheus_text},
    metrics::{
        counter::{ConstCounter, Counter},
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::{Metric, Registry},
};
use serde::Deserialize;

/// Which families are collected and how histograms are bucketed.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) namespace: String,
    pub(crate) requests: bool,
    pub(crate) tokens: bool,
    pub(crate) cost: bool,
    pub(crate) errors: bool,
    pub(crate) streams: bool,
    pub(crate) buckets: Vec<f64>,
}

/// `request.completed` and `request.failed`: only the keys the families read
/// (the masked headers and the rest are skipped unparsed).
#[derive(Debug, Deserialize)]
pub(crate) struct Answered<'a> {
    #[serde(borrow, default)]
    method: Cow<'a, str>,
    #[serde(default)]
    status_code: u16,
    #[serde(default)]
    duration_ms: f64,
    #[serde(borrow, default)]
    provider: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Usage>,
    /// Milliseconds to the answer's first byte (host 1.2; absent before).
    #[serde(default)]
    ttfb_ms: Option<f64>,
    /// Added by the `pricing` plugin's inline hook, when it runs.
    #[serde(default)]
    cost_usd: Option<f64>,
}

/// The host's token usage of one answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation_input_tokens: u64,
    reasoning_tokens: u64,
}

/// `provider.error`: which provider, and where the exchange failed.
#[derive(Debug, Deserialize)]
pub(crate) struct ProviderFailed<'a> {
    #[serde(borrow, default)]
    provider: Option<Cow<'a, str>>,
    /// `connect`, `response`, `body` or `stream`.
    #[serde(borrow, default)]
    phase: Option<Cow<'a, str>>,
    /// The upstream's status, when it answered one.
    #[serde(default)]
    status_code: Option<u16>,
}

/// `provider.stream.start` and `provider.stream.end`.
#[derive(Debug, Deserialize)]
pub(crate) struct Stream<'a> {
    #[serde(borrow, default)]
    provider: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    provider: String,
    model: String,
    status: String,
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderModel {
    provider: String,
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: String,
    model: String,
    r#type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    provider: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

/// Makes each new histogram of a family with the configured buckets.
#[derive(Debug, Clone)]
struct Buckets(Vec<f64>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type Histograms<L> = Family<L, Histogram, Buckets>;

/// One plugin's hook time, as the host reports it for `/plugins/status`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PluginHookTime {
    pub(crate) plugin: String,
    pub(crate) hook_calls: u64,
    pub(crate) hook_seconds: f64,
}

/// The hook time per plugin, read from the host before each exposition and
/// written out as two counter families.
#[derive(Debug, Default)]
struct PluginHookTimes(Mutex<Vec<PluginHookTime>>);

impl Collector for PluginHookTimes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let times = lock(&self.0);
        if times.is_empty() {
            return Ok(());
        }
        let mut seconds = encoder.encode_descriptor(
            "plugin_hook_seconds",
            "Seconds spent in each plugin's hooks",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for time in times.iter() {
            let labels = PluginLabel {
                plugin: time.plugin.clone(),
            };
            ConstCounter::new(time.hook_seconds).encode(seconds.encode_family(&labels)?)?;
        }
        let mut calls = encoder.encode_descriptor(
            "plugin_hook_calls",
            "Calls of each plugin's hooks",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for time in times.iter() {
            let labels = PluginLabel {
                plugin: time.plugin.clone(),
            };
            ConstCounter::new(time.hook_calls).encode(calls.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Request ids remembered between a request's provider events and its
/// `request.completed`/`request.failed`; beyond this many (events lost, say)
/// the memory starts afresh rather than grow.
const MAX_OPEN_REQUESTS: usize = 10_000;

/// Every family, registered or not, and the state that ties a request's
/// events together.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Option<Family<RequestLabels, Counter>>,
    duration: Option<Histograms<ProviderModel>>,
    ttfb: Option<Histograms<ProviderModel>>,
    tokens: Option<Family<TokenLabels, Counter>>,
    cost: Option<Family<ProviderModel, Counter<f64, AtomicU64>>>,
    upstream_errors: Option<Family<ErrorLabels, Counter>>,
    active_streams: Option<Family<ProviderLabel, Gauge>>,
    plugin_hooks: Option<std::sync::Arc<PluginHookTimes>>,
    /// Streams started and not yet ended, by request id: a stream that
    /// breaks or whose client leaves gets no `provider.stream.end`, and is
    /// closed by its request's end instead.
    open_streams: Mutex<HashMap<String, String>>,
    /// Requests whose failure `provider.error` already counted, so their
    /// `request.failed` does not count it twice.
    provider_failed: Mutex<HashSet<String>>,
    events: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A label value: the empty string when the event names none (see README).
fn label(value: &Option<Cow<'_, str>>) -> String {
    value.as_deref().unwrap_or_default().to_owned()
}

impl Metrics {
    pub(crate) fn new(settings: &Settings) -> Self {
        let mut registry = if settings.namespace.is_empty() {
            Registry::default()
        } else {
            Registry::with_prefix(&settings.namespace)
        };
        let buckets = Buckets(settings.buckets.clone());
        let histograms = || Histograms::<ProviderModel>::new_with_constructor(buckets.clone());
        let requests = register(
            &mut registry,
            settings.requests,
            "requests",
            "Requests answered, by provider, model, status and method",
            Family::<RequestLabels, Counter>::default,
        );
        let duration = register(
            &mut registry,
            settings.requests,
            "request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer",
            histograms,
        );
        let ttfb = register(
            &mut registry,
            settings.requests,
            "time_to_first_byte_seconds",
            "Seconds from a request's arrival to the first byte of its answer",
            histograms,
        );
        let tokens = register(
            &mut registry,
            settings.tokens,
            "tokens",
            "Tokens of provider answers, by type (input, output, cache_read, cache_write, reasoning)",
            Family::<TokenLabels, Counter>::default,
        );
        let cost = register(
            &mut registry,
            settings.cost,
            "cost_usd",
            "Cost of provider answers in US dollars, as the pricing plugin computes it",
            Family::<ProviderModel, Counter<f64, AtomicU64>>::default,
        );
        let upstream_errors = register(
            &mut registry,
            settings.errors,
            "upstream_errors",
            "Failed provider requests, by provider and kind",
            Family::<ErrorLabels, Counter>::default,
        );
        let active_streams = register(
            &mut registry,
            settings.streams,
            "active_streams",
            "Upstream streams open now",
            Family::<ProviderLabel, Gauge>::default,
        );
        let plugin_hooks = settings.requests.then(|| {
            let times = std::sync::Arc::new(PluginHookTimes::default());
            registry.register_collector(Box::new(times.clone()));
            times
        });
        Self {
            registry,
            requests,
            duration,
            ttfb,
            tokens,
            cost,
            upstream_errors,
            active_streams,
            plugin_hooks,
            open_streams: Mutex::default(),
            provider_failed: Mutex::default(),
            events: AtomicU64::new(0),
        }
    }

    /// Names of the families collected (without the namespace).
    pub(crate) fn enabled_families(&self) -> Vec<&'static str> {
        [
            ("requests_total", self.requests.is_some()),
            ("request_duration_seconds", self.duration.is_some()),
            ("time_to_first_byte_seconds", self.ttfb.is_some()),
            ("tokens_total", self.tokens.is_some()),
            ("cost_usd_total", self.cost.is_some()),
            ("upstream_errors_total", self.upstream_errors.is_some()),
            ("active_streams", self.active_streams.is_some()),
            ("plugin_hook_seconds_total", self.plugin_hooks.is_some()),
            ("plugin_hook_calls_total", self.plugin_hooks.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, enabled)| enabled.then_some(name))
        .collect()
    }

    /// Time series in the exposition (each sample line is one: a histogram
    /// has one per bucket plus its sum and count).
    pub(crate) fn series(&self) -> usize {
        self.encode()
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .count()
    }

    /// Events counted since the start.
    pub(crate) fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Whether the per-plugin hook families are collected (and so worth
    /// asking the host for).
    pub(crate) fn wants_plugin_hook_times(&self) -> bool {
        self.plugin_hooks.is_some()
    }

    /// Replaces the per-plugin hook times written by the next exposition.
    pub(crate) fn set_plugin_hook_times(&self, times: Vec<PluginHookTime>) {
        if let Some(plugin_hooks) = &self.plugin_hooks {
            *lock(&plugin_hooks.0) = times;
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every family.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug
        // in the client library, and then what was written is still served.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// `request.completed` or `request.failed` (`failed`), of request `request_id`.
    pub(crate) fn answered(&self, request_id: Option<&str>, answer: &Answered<'_>, failed: bool) {
        self.events.fetch_add(1, Ordering::Relaxed);
        if let Some(request_id) = request_id {
            self.close_stream(request_id);
        }
        // The provider and model strings are made once and moved from one
        // family's labels to the next (a lookup needs owned labels): a
        // request used to allocate them again for each of up to eight lookups.
        let mut request_labels = RequestLabels {
            provider: label(&answer.provider),
            model: label(&answer.model),
            status: String::new(),
            method: String::new(),
        };
        if let Some(requests) = &self.requests {
            request_labels.status = answer.status_code.to_string();
            request_labels.method = answer.method.clone().into_owned();
            requests.get_or_create(&request_labels).inc();
        }
        let RequestLabels {
            provider, model, ..
        } = request_labels;
        let provider_model = ProviderModel { provider, model };
        if let Some(duration) = &self.duration {
            duration
                .get_or_create(&provider_model)
                .observe(seconds(answer.duration_ms));
        }
        if let (Some(ttfb), Some(ttfb_ms)) = (&self.ttfb, answer.ttfb_ms) {
            ttfb.get_or_create(&provider_model)
                .observe(seconds(ttfb_ms));
        }
        if let (Some(cost), Some(cost_usd)) = (&self.cost, answer.cost_usd)
            && cost_usd.is_finite()
            && cost_usd > 0.0
        {
            cost.get_or_create(&provider_model).inc_by(cost_usd);
        }
        let ProviderModel { provider, model } = provider_model;
        let mut token_labels = TokenLabels {
            provider,
            model,
            r#type: "",
        };
        if let (Some(tokens), Some(usage)) = (&self.tokens, &answer.usage) {
            for (kind, count) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cache_read", usage.cache_read_input_tokens),
                ("cache_write", usage.cache_creation_input_tokens),
                ("reasoning", usage.reasoning_tokens),
            ] {
                // As the original: a type the answer did not use adds no series.
                if count > 0 {
                    token_labels.r#type = kind;
                    tokens.get_or_create(&token_labels).inc_by(count);
                }
            }
        }
        let provider = token_labels.provider;
        let counted_by_provider_error =
            request_id.is_some_and(|request_id| lock(&self.provider_failed).remove(request_id));
        if let Some(errors) = &self.upstream_errors
            && failed
            && !counted_by_provider_error
            && !provider.is_empty()
        {
            // A provider request that failed without `provider.error`: the
            // client left mid-answer (the status already sent is a success),
            // or the proxy refused or failed it before the upstream answered.
            let kind = if answer.status_code < 400 {
                "client_disconnected"
            } else {
                "proxy"
            };
            errors
                .get_or_create(&ErrorLabels {
                    provider,
                    kind: kind.to_owned(),
                })
                .inc();
        }
    }

    /// `provider.error` of request `request_id`.
    pub(crate) fn provider_failed(&self, request_id: Option<&str>, failure: &ProviderFailed<'_>) {
        self.events.fetch_add(1, Ordering::Relaxed);
        let Some(errors) = &self.upstream_errors else {
            return;
        };
        let phase = failure.phase.as_deref().unwrap_or("unknown");
        let kind = match (phase, failure.status_code) {
            // The upstream answered with an error status.
            ("response", Some(status)) => format!("http_{status}"),
            _ => phase.to_owned(),
        };
        errors
            .get_or_create(&ErrorLabels {
                provider: label(&failure.provider),
                kind,
            })
            .inc();
        if let Some(request_id) = request_id {
            let mut failed = lock(&self.provider_failed);
            if failed.len() >= MAX_OPEN_REQUESTS {
                failed.clear();
            }
            failed.insert(request_id.to_owned());
        }
    }

    /// `provider.stream.start` of request `request_id`.
    pub(crate) fn stream_started(&self, request_id: Option<&str>, stream: &Stream<'_>) {
        self.events.fetch_add(1, Ordering::Relaxed);
        let Some(active) = &self.active_streams else {
            return;
        };
        let provider = label(&stream.provider);
        active
            .get_or_create(&ProviderLabel {
                provider: provider.clone(),
            })
            .inc();
        if let Some(request_id) = request_id {
            let mut open = lock(&self.open_streams);
            if open.len() >= MAX_OPEN_REQUESTS {
                // Ends were lost: the gauge cannot be trusted beyond this.
                for (_, provider) in open.drain() {
                    active.get_or_create(&ProviderLabel { provider }).dec();
                }
            }
            open.insert(request_id.to_owned(), provider);
        }
    }

    /// `provider.stream.end` of request `request_id`.
    pub(crate) fn stream_ended(&self, request_id: Option<&str>, stream: &Stream<'_>) {
        self.events.fetch_add(1, Ordering::Relaxed);
        match request_id {
            Some(request_id) => self.close_stream(request_id),
            None => {
                if let Some(active) = &self.active_streams {
                    active
                        .get_or_create(&ProviderLabel {
                            provider: label(&stream.provider),
                        })
                        .dec();
                }
            }
        }
    }

    fn close_stream(&self, request_id: &str) {
        let Some(active) = &self.active_streams else {
            return;
        };
        if let Some(provider) = lock(&self.open_streams).remove(request_id) {
            active.get_or_create(&ProviderLabel { provider }).dec();
        }
    }
}

/// A family made by `family`, registered as `name` with `help`, when
/// `enabled` (else absent from the exposition).
fn register<M: Metric + Clone>(
    registry: &mut Registry,
    enabled: bool,
    name: &str,
    help: &str,
    family: impl FnOnce() -> M,
) -> Option<M> {
    enabled.then(|| {
        let family = family();
        registry.register(name, help, family.clone());
        family
    })
}

fn seconds(milliseconds: f64) -> f64 {
    if milliseconds.is_finite() {
        (milliseconds / 1e3).max(0.0)
    } else {
        0.0
    }
}
