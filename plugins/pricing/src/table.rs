//! The price table: LiteLLM's `model_prices_and_context_window.json` format
//! (one object per model id, prices in USD per token), model lookup, and the
//! cost of one answer's token usage.

use std::collections::BTreeMap;

use ccproxy_plugin_abi::{PluginError, Value, serde_json};
use ccproxy_plugin_kit::model_id::ModelTable;
use serde::{Deserialize, Serialize};

/// Input tokens above which an entry's `*_above_200k_tokens` prices apply
/// (Anthropic's long-context pricing).
const LONG_CONTEXT_THRESHOLD: u64 = 200_000;

/// One model's prices and limits; the entry as the source wrote it is kept
/// for the `price` method.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
    long_context: Option<LongContext>,
    raw: Value,
}

/// Prices for answers whose input is above [`LONG_CONTEXT_THRESHOLD`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct LongContext {
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
}

impl Entry {
    /// The entry of `raw`, or `None` when it has no per-token price (LiteLLM
    /// lists image, audio and embedding models priced otherwise, and a
    /// `sample_spec` documenting the keys).
    fn read(raw: Value) -> Option<Self> {
        let price = |key: &str| raw.get(key).and_then(Value::as_f64);
        let input = price("input_cost_per_token");
        let output = price("output_cost_per_token");
        if input.is_none() && output.is_none() {
            return None;
        }
        let long_context = match (
            price("input_cost_per_token_above_200k_tokens"),
            price("output_cost_per_token_above_200k_tokens"),
        ) {
            (Some(input), Some(output)) => Some(LongContext {
                input,
                output,
                cache_read: price("cache_read_input_token_cost_above_200k_tokens"),
                cache_write: price("cache_creation_input_token_cost_above_200k_tokens"),
            }),
            _ => None,
        };
        Some(Self {
            input: input.unwrap_or(0.0),
            output: output.unwrap_or(0.0),
            cache_read: price("cache_read_input_token_cost"),
            cache_write: price("cache_creation_input_token_cost"),
            long_context,
            raw,
        })
    }

    /// The entry as its source wrote it.
    pub(crate) fn raw(&self) -> &Value {
        &self.raw
    }

    fn provider(&self) -> Option<&str> {
        self.raw.get("litellm_provider").and_then(Value::as_str)
    }

    /// The cost of `usage`. `usage.input_tokens` excludes the cached tokens
    /// (the host's normalised usage, for every provider), so the four counts
    /// are billed separately; a missing cache price is the input price.
    fn cost(&self, usage: &Usage) -> CostParts {
        let prompt =
            usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens;
        let (input, output, cache_read, cache_write) = match self.long_context {
            Some(long) if prompt > LONG_CONTEXT_THRESHOLD => (
                long.input,
                long.output,
                long.cache_read.or(self.cache_read),
                long.cache_write.or(self.cache_write),
            ),
            _ => (self.input, self.output, self.cache_read, self.cache_write),
        };
        CostParts {
            input: usage.input_tokens as f64 * input,
            output: usage.output_tokens as f64 * output,
            cache_read: usage.cache_read_input_tokens as f64 * cache_read.unwrap_or(input),
            cache_write: usage.cache_creation_input_tokens as f64 * cache_write.unwrap_or(input),
        }
    }
}

/// Token counts under the host's names (`request.completed`'s `usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct Usage {
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cache_read_input_tokens: u64,
    pub(crate) cache_creation_input_tokens: u64,
}

#[derive(Debug, Clone, Copy)]
struct CostParts {
    input: f64,
    output: f64,
    cache_read: f64,
    cache_write: f64,
}

/// What the `cost` method answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Cost {
    pub(crate) cost_usd: f64,
    pub(crate) input_cost_usd: f64,
    pub(crate) output_cost_usd: f64,
    pub(crate) cache_read_cost_usd: f64,
    pub(crate) cache_write_cost_usd: f64,
    /// The table's id the model was priced as.
    pub(crate) model_matched: String,
}

/// Which providers' entries a refreshed source contributes
/// (`pricing_provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProviderFilter {
    /// Every entry.
    All,
    /// `litellm_provider` `anthropic` only.
    Anthropic,
    /// `litellm_provider` `openai` only.
    Openai,
}

impl ProviderFilter {
    fn keeps(self, entry: &Entry) -> bool {
        match self {
            ProviderFilter::All => true,
            ProviderFilter::Anthropic => entry.provider() == Some("anthropic"),
            ProviderFilter::Openai => entry.provider() == Some("openai"),
        }
    }
}

/// Entries by model id, read from one source.
pub(crate) type Entries = BTreeMap<String, Entry>;

/// Reads a source in LiteLLM's format; keeps the entries `filter` allows.
pub(crate) fn parse(text: &str, filter: ProviderFilter) -> Result<Entries, PluginError> {
    let document: serde_json::Map<String, Value> = serde_json::from_str(text)
        .map_err(|error| PluginError::invalid(format!("not a LiteLLM price table: {error}")))?;
    let entries: Entries = document
        .into_iter()
        .filter_map(|(model, raw)| Some((model, Entry::read(raw)?)))
        .filter(|(_, entry)| filter.keeps(entry))
        .collect();
    if entries.is_empty() {
        return Err(PluginError::invalid(
            "the price table has no model with a per-token price",
        ));
    }
    Ok(entries)
}

/// The table the plugin answers from: the bundled entries with each
/// refreshed source's merged over them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    entries: ModelTable<Entry>,
}

impl Table {
    /// `layers` merged in order, later ones winning.
    pub(crate) fn merged<'a>(layers: impl IntoIterator<Item = &'a Entries>) -> Self {
        let mut entries = ModelTable::new();
        for layer in layers {
            entries.extend(
                layer
                    .iter()
                    .map(|(model, entry)| (model.clone(), entry.clone())),
            );
        }
        Self { entries }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn models(&self) -> impl Iterator<Item = &str> {
        self.entries.ids()
    }

    /// The entry for `model` and the id it was matched as, found as
    /// [`ModelTable::find`] says.
    pub(crate) fn find(&self, model: &str) -> Option<(&str, &Entry)> {
        self.entries.find(model)
    }

    /// The cost of `usage` on `model`, or a not-found error naming it.
    pub(crate) fn cost(&self, model: &str, usage: &Usage) -> Result<Cost, PluginError> {
        let (matched, entry) = self
            .find(model)
            .ok_or_else(|| PluginError::not_found(format!("no price known for model {model}")))?;
        let parts = entry.cost(usage);
        Ok(Cost {
            cost_usd: parts.input + parts.output + parts.cache_read + parts.cache_write,
            input_cost_usd: parts.input,
            output_cost_usd: parts.output,
            cache_read_cost_usd: parts.cache_read,
            cache_write_cost_usd: parts.cache_write,
            model_matched: matched.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_without_token_prices_is_refused() {
        let error = parse(
            r#"{"sample_spec": {"max_tokens": "LEGACY"}}"#,
            ProviderFilter::All,
        )
        .unwrap_err();
        assert!(error.to_string().contains("no model"), "{error}");
        assert!(parse("[1]", ProviderFilter::All).is_err());
    }

    #[test]
    fn the_provider_filter_keeps_one_provider() {
        let text = r#"{"a": {"input_cost_per_token": 1e-6, "litellm_provider": "anthropic"},
                       "b": {"input_cost_per_token": 1e-6, "litellm_provider": "openai"}}"#;
        let kept = parse(text, ProviderFilter::Openai).unwrap();
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn long_context_prices_apply_above_200k_input_tokens() {
        let entries = parse(include_str!("../data/prices.json"), ProviderFilter::All).unwrap();
        let table = Table::merged([&entries]);
        let usage = Usage {
            input_tokens: 150_000,
            cache_read_input_tokens: 60_000,
            output_tokens: 1_000,
            ..Usage::default()
        };
        let cost = table.cost("claude-sonnet-4-5", &usage).unwrap();
        let expected = 150_000.0 * 6e-6 + 60_000.0 * 6e-7 + 1_000.0 * 22.5e-6;
        assert!((cost.cost_usd - expected).abs() < 1e-9, "{cost:?}");
    }
}
