//! What a request body gets before it goes to an upstream: its model
//! renamed, mapped or defaulted, its output tokens capped, and the stream
//! settings the upstream's format needs.

use ccproxy_plugin_abi::{PluginError, Value, serde_json::Map};
use ccproxy_plugin_kit::mapping::ModelMapper;

use crate::config::{UpstreamConfig, WireFormat};

/// The body of one request, shaped.
#[derive(Debug)]
pub(crate) struct Shaped {
    pub(crate) body: Map<String, Value>,
    /// The model the client asked for, when the upstream gets another one.
    pub(crate) model_alias: Option<String>,
}

/// The model rules of one upstream, compiled.
#[derive(Debug)]
pub(crate) struct ModelRules {
    mapper: ModelMapper,
}

impl ModelRules {
    pub(crate) fn new(name: &str, config: &UpstreamConfig) -> Result<Self, PluginError> {
        let section = format!("compat.upstreams.{name}");
        Ok(Self {
            mapper: ModelMapper::new(&section, &config.model_mappings)?,
        })
    }

    /// The upstream model for the client's `model`: `rename`, then the
    /// first matching rule, then `default_model` when there is no model or
    /// (with `models` set) one the upstream does not serve.
    pub(crate) fn resolve(&self, config: &UpstreamConfig, model: &str) -> String {
        let renamed = config.rename.get(model).map_or(model, String::as_str);
        let mapped = self.mapper.map(renamed).unwrap_or(renamed);
        let unserved =
            !config.models.is_empty() && !config.models.iter().any(|known| known == mapped);
        if !config.default_model.is_empty() && (mapped.is_empty() || unserved) {
            return config.default_model.clone();
        }
        mapped.to_owned()
    }
}

/// The output-token fields of each format, the one to set first.
fn max_tokens_fields(format: WireFormat) -> &'static [&'static str] {
    match format {
        // Internal: older vLLM and Ollama know only `max_tokens`; the host's
        // converter writes `max_completion_tokens`. Cap whichever is there.
        WireFormat::Chat => &["max_completion_tokens", "max_tokens"],
        WireFormat::Responses => &["max_output_tokens"],
        WireFormat::Messages => &["max_tokens"],
    }
}

/// Shapes `body` (already in the upstream's format) for `config`.
pub(crate) fn shape(
    mut body: Map<String, Value>,
    config: &UpstreamConfig,
    format: WireFormat,
    rules: &ModelRules,
    client_stream: bool,
) -> Shaped {
    let client_model = match body.get("model") {
        Some(Value::String(model)) => model.clone(),
        _ => String::new(),
    };
    let model = rules.resolve(config, &client_model);
    let model_alias = (model != client_model && !client_model.is_empty()).then_some(client_model);
    body.insert("model".to_owned(), Value::String(model.clone()));

    let cap = config
        .max_tokens
        .get(&model)
        .or_else(|| config.max_tokens.get("*"))
        .copied();
    let fields = max_tokens_fields(format);
    let mut present = false;
    for field in fields {
        if let Some(asked) = body.get(*field).and_then(Value::as_u64) {
            present = true;
            if let Some(cap) = cap
                && asked > cap
            {
                body.insert((*field).to_owned(), Value::from(cap));
            }
        }
    }
    if !present {
        let fallback = match (cap, format) {
            (Some(cap), _) => Some(cap),
            (None, WireFormat::Messages) => Some(config.default_max_tokens),
            (None, _) => None,
        };
        if let Some(limit) = fallback {
            body.insert(fields[0].to_owned(), Value::from(limit));
        }
    }

    for param in &config.drop_params {
        if param != "model" {
            body.remove(param);
        }
    }

    if client_stream {
        body.insert("stream".to_owned(), Value::Bool(true));
        if format == WireFormat::Chat {
            // Without it an OpenAI-style server sends no usage in a stream,
            // and the request's tokens and cost go uncounted.
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Value::Object(options) = options {
                options.insert("include_usage".to_owned(), Value::Bool(true));
            }
        }
    }
    Shaped { body, model_alias }
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::json;
    use ccproxy_plugin_kit::mapping::{MappingRule, MatchKind};

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn upstream(extra: Value) -> UpstreamConfig {
        let mut base = json!({"base_url": "http://x/v1", "format": "openai.chat_completions"});
        if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
            base.extend(extra);
        }
        ccproxy_plugin_abi::serde_json::from_value(base).unwrap()
    }

    #[test]
    fn models_are_renamed_then_mapped_then_defaulted() {
        let mut config = upstream(json!({
            "rename": {"claude-sonnet-4-5": "qwen3-coder"},
            "default_model": "llama3.1",
        }));
        config.model_mappings = vec![MappingRule::new(MatchKind::Prefix, "gpt-", "gpt-oss-20b")];
        let rules = ModelRules::new("local", &config).unwrap();
        assert_eq!(rules.resolve(&config, "claude-sonnet-4-5"), "qwen3-coder");
        assert_eq!(rules.resolve(&config, "gpt-5"), "gpt-oss-20b");
        assert_eq!(rules.resolve(&config, ""), "llama3.1");
        // Without a model list every model passes as asked.
        assert_eq!(rules.resolve(&config, "mistral"), "mistral");
        config.models = vec!["qwen3-coder".to_owned(), "llama3.1".to_owned()];
        assert_eq!(rules.resolve(&config, "mistral"), "llama3.1");
        assert_eq!(rules.resolve(&config, "claude-sonnet-4-5"), "qwen3-coder");
    }

    #[test]
    fn a_renamed_model_is_written_back_and_tokens_capped() {
        let config = upstream(json!({
            "rename": {"gpt-4o": "openai/gpt-4o"},
            "max_tokens": {"openai/gpt-4o": 1000, "*": 50},
        }));
        let rules = ModelRules::new("or", &config).unwrap();
        let body =
            object(json!({"model": "gpt-4o", "messages": [], "max_completion_tokens": 4000}));
        let shaped = shape(body, &config, WireFormat::Chat, &rules, false);
        assert_eq!(shaped.model_alias.as_deref(), Some("gpt-4o"));
        assert_eq!(shaped.body["model"], "openai/gpt-4o");
        assert_eq!(shaped.body["max_completion_tokens"], 1000);
        assert!(!shaped.body.contains_key("stream_options"));
        // Under the cap: unchanged; absent: the cap ("*" for other models).
        let body = object(json!({"model": "m", "messages": [], "max_tokens": 10}));
        let shaped = shape(body, &config, WireFormat::Chat, &rules, false);
        assert_eq!(shaped.body["max_tokens"], 10);
        assert_eq!(shaped.model_alias, None);
        let body = object(json!({"model": "m", "input": []}));
        let shaped = shape(body, &config, WireFormat::Responses, &rules, false);
        assert_eq!(shaped.body["max_output_tokens"], 50);
    }

    #[test]
    fn anthropic_requests_always_carry_max_tokens() {
        let config = upstream(json!({"format": "anthropic.messages"}));
        let rules = ModelRules::new("a", &config).unwrap();
        let body = object(json!({"model": "m", "messages": []}));
        let shaped = shape(body, &config, WireFormat::Messages, &rules, false);
        assert_eq!(shaped.body["max_tokens"], 8192);
        let body = object(json!({"model": "m", "messages": []}));
        let shaped = shape(body, &config, WireFormat::Chat, &rules, false);
        assert!(!shaped.body.contains_key("max_completion_tokens"));
    }

    #[test]
    fn a_streamed_chat_request_asks_for_usage() {
        let config = upstream(json!({}));
        let rules = ModelRules::new("c", &config).unwrap();
        let body = object(
            json!({"model": "m", "messages": [], "stream_options": {"include_usage": false, "x": 1}}),
        );
        let shaped = shape(body, &config, WireFormat::Chat, &rules, true);
        assert_eq!(shaped.body["stream"], true);
        assert_eq!(
            shaped.body["stream_options"],
            json!({"include_usage": true, "x": 1})
        );
        // Other formats have no such option.
        let body = object(json!({"model": "m", "input": []}));
        let shaped = shape(body, &config, WireFormat::Responses, &rules, true);
        assert!(!shaped.body.contains_key("stream_options"));
        assert_eq!(shaped.body["stream"], true);
    }

    #[test]
    fn dropped_params_never_reach_the_upstream() {
        let config = upstream(json!({"drop_params": ["reasoning_effort", "metadata", "model"]}));
        let rules = ModelRules::new("strict", &config).unwrap();
        let body = object(
            json!({"model": "m", "messages": [], "reasoning_effort": "high", "metadata": {"a": 1}, "temperature": 0.2}),
        );
        let shaped = shape(body, &config, WireFormat::Chat, &rules, false);
        assert_eq!(
            Value::Object(shaped.body),
            json!({"model": "m", "messages": [], "temperature": 0.2})
        );
    }
}
