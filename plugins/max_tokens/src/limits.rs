//! Per-model token limits from a `token_limits.json` file (the original's
//! flat format: `{model: {max_output_tokens, max_input_tokens}}`, keys
//! starting with `_` are metadata), and model lookup.

use ccproxy_plugin_abi::{PluginError, Value, serde_json};
use ccproxy_plugin_kit::model_id::ModelTable;

/// One model's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelLimits {
    pub(crate) max_output_tokens: u64,
    pub(crate) max_input_tokens: Option<u64>,
}

/// Limits by model id.
#[derive(Debug, Clone, Default)]
pub(crate) struct LimitTable {
    models: ModelTable<ModelLimits>,
}

impl LimitTable {
    /// Reads a token limits file; `origin` names it in errors.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Self, PluginError> {
        let document: serde_json::Map<String, Value> =
            serde_json::from_str(text).map_err(|error| {
                PluginError::invalid(format!("{origin}: not a token limits file: {error}"))
            })?;
        let models = document
            .into_iter()
            .filter(|(model, _)| !model.starts_with('_'))
            .filter_map(|(model, entry)| {
                let max_output_tokens = entry.get("max_output_tokens")?.as_u64()?;
                let max_input_tokens = entry.get("max_input_tokens").and_then(Value::as_u64);
                Some((
                    model,
                    ModelLimits {
                        max_output_tokens,
                        max_input_tokens,
                    },
                ))
            })
            .collect();
        Ok(Self { models })
    }

    /// `other`'s entries added, replacing same-named ones.
    pub(crate) fn merge(&mut self, other: LimitTable) {
        self.models.extend(other.models);
    }

    pub(crate) fn len(&self) -> usize {
        self.models.len()
    }

    /// The limits of `model`, found as [`ModelTable::find`] says.
    pub(crate) fn find(&self, model: &str) -> Option<ModelLimits> {
        self.models.find(model).map(|(_, limits)| *limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> LimitTable {
        LimitTable::parse(include_str!("../data/token_limits.json"), "bundled").unwrap()
    }

    #[test]
    fn the_bundled_file_is_read_without_its_metadata() {
        let table = bundled();
        assert_eq!(table.len(), 11);
        assert_eq!(
            table.find("claude-opus-4-1-20250805"),
            Some(ModelLimits {
                max_output_tokens: 32_000,
                max_input_tokens: Some(200_000)
            })
        );
        assert!(table.find("_metadata").is_none());
    }

    #[test]
    fn models_are_found_without_date_prefix_or_by_prefix() {
        let table = bundled();
        let output = |model: &str| table.find(model).map(|limits| limits.max_output_tokens);
        assert_eq!(output("claude-sonnet-4"), Some(64_000));
        assert_eq!(output("anthropic/claude-3-7-sonnet-20250219"), Some(8192));
        assert_eq!(output("claude-sonnet-4-5-20250929"), Some(64_000));
        assert_eq!(output("gpt-5-codex"), Some(128_000));
        assert_eq!(output("gpt-5.1"), None);
        assert_eq!(output("llama"), None);
    }

    #[test]
    fn a_bad_file_is_refused_with_its_name() {
        let error = LimitTable::parse("[", "limits.json").unwrap_err();
        assert!(error.message().starts_with("limits.json: "), "{error}");
    }
}
