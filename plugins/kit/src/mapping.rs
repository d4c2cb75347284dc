//! Model mapping: rules that rewrite the model a client asks for into the
//! one sent upstream, compiled once, applied first match wins, with the
//! client's own id kept as the alias to write back into the answer.
//!
//! A rule in a plugin's config (`model_mappings = [{kind, pattern, target,
//! ignore_case}]`) compares the model id by `kind`: `exact`, `prefix`,
//! `suffix`, or `regex` (Rust `regex` syntax: no look-around; write
//! `^gpt-4(?:[^o]|$)` for `^gpt-4(?!o)`).
//!
//! ```
//! use ccproxy_plugin_kit::mapping::{MappingRule, MatchKind, ModelMapper};
//!
//! let rules = [MappingRule::new(MatchKind::Prefix, "gpt-", "my-model")];
//! let mapper = ModelMapper::new("my_plugin", &rules)?;
//! assert_eq!(mapper.map("gpt-4o"), Some("my-model"));
//! # Ok::<(), ccproxy_plugin_abi::PluginError>(())
//! ```

use ccproxy_plugin_abi::{PluginError, Value, debug, serde_json::Map};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// How a [`MappingRule`] compares its pattern with the model id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// The whole id.
    #[default]
    Exact,
    /// The id starts with the pattern.
    Prefix,
    /// The id ends with the pattern.
    Suffix,
    /// The pattern (Rust `regex` syntax) matches somewhere in the id.
    Regex,
}

/// One model rewrite rule, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingRule {
    /// How `pattern` is compared.
    #[serde(default)]
    pub kind: MatchKind,
    /// What the client's model is compared with.
    pub pattern: String,
    /// The model sent upstream instead.
    pub target: String,
    /// Compare without regard to case.
    #[serde(default)]
    pub ignore_case: bool,
}

impl MappingRule {
    /// A case-sensitive rule.
    pub fn new(kind: MatchKind, pattern: &str, target: &str) -> Self {
        Self {
            kind,
            pattern: pattern.to_owned(),
            target: target.to_owned(),
            ignore_case: false,
        }
    }
}

/// The compiled `model_mappings`.
#[derive(Debug)]
pub struct ModelMapper {
    rules: Vec<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    matcher: Matcher,
    target: String,
}

#[derive(Debug)]
enum Matcher {
    /// Exact, prefix or suffix; `pattern` is lower-cased when `ignore_case`.
    Text {
        kind: TextKind,
        pattern: String,
        ignore_case: bool,
    },
    Regex(Regex),
}

#[derive(Debug, Clone, Copy)]
enum TextKind {
    Exact,
    Prefix,
    Suffix,
}

impl ModelMapper {
    /// Compiles `rules` of the plugin whose config section is
    /// `[plugins.<section>]`; a bad regex or an empty pattern or target names
    /// its rule (`plugins.<section>.model_mappings[<index>]`), so the user
    /// can find it.
    pub fn new(section: &str, rules: &[MappingRule]) -> Result<Self, PluginError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| compile(section, index, rule))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// The model to send upstream instead of `model`, if a rule matches.
    pub fn map(&self, model: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|rule| rule.matcher.matches(model))
            .map(|rule| rule.target.as_str())
    }

    /// Rewrites the string `model` of a request `body` by the first matching
    /// rule, unless `keep` says to leave that model alone. Returns the alias
    /// to write back into the answer when the model changed: `client_model`
    /// (the id the client asked for, when it differs from the body's), else
    /// the body's original id.
    pub fn rewrite(
        &self,
        body: &mut Map<String, Value>,
        client_model: Option<&str>,
        keep: impl FnOnce(&str) -> bool,
    ) -> Option<String> {
        let Some(Value::String(model)) = body.get_mut("model") else {
            return None;
        };
        if keep(model) {
            return None;
        }
        let target = self.map(model)?;
        if target == model {
            return None;
        }
        debug!("model {model} mapped to {target}");
        let original = std::mem::replace(model, target.to_owned());
        Some(client_model.map_or(original, str::to_owned))
    }
}

fn compile(section: &str, index: usize, rule: &MappingRule) -> Result<Compiled, PluginError> {
    let name = format!("plugins.{section}.model_mappings[{index}]");
    if rule.pattern.is_empty() || rule.target.is_empty() {
        return Err(PluginError::invalid(format!(
            "{name}: pattern and target must not be empty"
        )));
    }
    let matcher = match rule.kind {
        MatchKind::Regex => {
            let regex = RegexBuilder::new(&rule.pattern)
                .case_insensitive(rule.ignore_case)
                .build()
                .map_err(|error| {
                    // The regex error is several lines (pattern, caret, reason);
                    // keep the message on one.
                    let reason = error.to_string().replace('\n', " ");
                    PluginError::invalid(format!(
                        "{name}: invalid regex {:?}: {reason}",
                        rule.pattern
                    ))
                })?;
            Matcher::Regex(regex)
        }
        MatchKind::Exact | MatchKind::Prefix | MatchKind::Suffix => Matcher::Text {
            kind: match rule.kind {
                MatchKind::Prefix => TextKind::Prefix,
                MatchKind::Suffix => TextKind::Suffix,
                _ => TextKind::Exact,
            },
            pattern: if rule.ignore_case {
                rule.pattern.to_lowercase()
            } else {
                rule.pattern.clone()
            },
            ignore_case: rule.ignore_case,
        },
    };
    Ok(Compiled {
        matcher,
        target: rule.target.clone(),
    })
}

impl Matcher {
    fn matches(&self, model: &str) -> bool {
        match self {
            Matcher::Regex(regex) => regex.is_match(model),
            Matcher::Text {
                kind,
                pattern,
                ignore_case,
            } => {
                let lowered;
                let model = if *ignore_case {
                    lowered = model.to_lowercase();
                    lowered.as_str()
                } else {
                    model
                };
                match kind {
                    TextKind::Exact => model == pattern,
                    TextKind::Prefix => model.starts_with(pattern.as_str()),
                    TextKind::Suffix => model.ends_with(pattern.as_str()),
                }
            }
        }
    }
}

/// A model card as a provider lists it in its `GET …/v1/models`.
#[derive(Debug, Clone, Copy)]
pub struct ListedModel<'a> {
    /// The model id.
    pub id: &'a str,
    /// Unix seconds.
    pub created: u64,
    /// Owner shown to clients.
    pub owned_by: &'a str,
    /// The name the Anthropic SDK shows; empty: the id.
    pub display_name: &'a str,
}

/// The model list a provider answers on `GET …/v1/models`, one list both SDKs parse: each
/// entry has the OpenAI model fields (`id`, `object`, `created`, `owned_by`) and the Anthropic
/// ones (`type`, `display_name`, `created_at`), and the list Anthropic's paging fields. The
/// entries are the `cards` (each with `maps_to` when `map_cards` and a rule rewrites it), then
/// the names of the `exact` rules not listed yet, as aliases with `maps_to`, the model sent
/// instead (described by its card, or as owned by `owner`); `mappings` lists every rule in the
/// order it applies.
pub fn model_list(
    cards: &[ListedModel<'_>],
    rules: &[MappingRule],
    mapper: &ModelMapper,
    map_cards: bool,
    owner: &str,
) -> Value {
    let mut data: Vec<Value> = cards
        .iter()
        .map(|card| {
            model_entry(
                card.id,
                card,
                map_cards.then(|| mapper.map(card.id)).flatten(),
            )
        })
        .collect();
    for rule in rules {
        let alias = rule.pattern.as_str();
        let listed = data.iter().any(|entry| entry["id"] == alias);
        if rule.kind != MatchKind::Exact || listed {
            continue;
        }
        // What the alias really becomes: an earlier rule may shadow this one.
        let Some(target) = mapper.map(alias).filter(|target| *target != alias) else {
            continue;
        };
        let unlisted = ListedModel {
            id: target,
            created: 0,
            owned_by: owner,
            display_name: "",
        };
        let card = cards
            .iter()
            .find(|card| card.id == target)
            .unwrap_or(&unlisted);
        data.push(model_entry(alias, card, Some(target)));
    }
    let mappings: Vec<Value> = rules
        .iter()
        .map(|rule| {
            ccproxy_plugin_abi::json!({
                "kind": rule.kind,
                "pattern": rule.pattern,
                "ignore_case": rule.ignore_case,
                "maps_to": rule.target,
            })
        })
        .collect();
    let first_id = data.first().map(|entry| entry["id"].clone());
    let last_id = data.last().map(|entry| entry["id"].clone());
    ccproxy_plugin_abi::json!({
        "object": "list",
        "data": data,
        "has_more": false,
        "first_id": first_id,
        "last_id": last_id,
        "mappings": mappings,
    })
}

/// One model entry named `id`, described by `card` (its own, or for an alias the target's);
/// `maps_to` when the name is rewritten.
fn model_entry(id: &str, card: &ListedModel<'_>, maps_to: Option<&str>) -> Value {
    let display_name = if card.display_name.is_empty() {
        id
    } else {
        card.display_name
    };
    let created_ms = i64::try_from(card.created.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut entry = ccproxy_plugin_abi::json!({
        "id": id,
        "object": "model",
        "created": card.created,
        "owned_by": card.owned_by,
        "type": "model",
        "display_name": display_name,
        "created_at": crate::logs::rfc3339(created_ms),
    });
    if let Some(target) = maps_to.filter(|target| *target != id) {
        entry["maps_to"] = ccproxy_plugin_abi::json!(target);
    }
    entry
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::{json, serde_json};

    use super::*;

    fn rule(kind: MatchKind, pattern: &str, target: &str, ignore_case: bool) -> MappingRule {
        MappingRule {
            kind,
            pattern: pattern.to_owned(),
            target: target.to_owned(),
            ignore_case,
        }
    }

    fn check(mapper: &ModelMapper, model: &str, expected: Option<&str>) {
        assert_eq!(mapper.map(model), expected, "{model}");
    }

    #[test]
    fn kinds_and_case() {
        let mapper = ModelMapper::new(
            "p",
            &[
                rule(MatchKind::Exact, "Fast", "claude-haiku", true),
                rule(MatchKind::Suffix, "-large", "claude-opus", false),
                rule(MatchKind::Prefix, "MY-", "claude-sonnet", true),
                rule(MatchKind::Regex, r"^team/(a|b)$", "claude-team", true),
            ],
        )
        .unwrap();
        check(&mapper, "fast", Some("claude-haiku"));
        check(&mapper, "FAST", Some("claude-haiku"));
        check(&mapper, "fast-2", None);
        check(&mapper, "model-large", Some("claude-opus"));
        check(&mapper, "model-LARGE", None);
        check(&mapper, "my-model", Some("claude-sonnet"));
        check(&mapper, "Team/B", Some("claude-team"));
        check(&mapper, "team/c", None);
    }

    #[test]
    fn first_match_wins() {
        let mapper = ModelMapper::new(
            "p",
            &[
                rule(MatchKind::Prefix, "gpt", "first", false),
                rule(MatchKind::Exact, "gpt-4", "second", false),
            ],
        )
        .unwrap();
        check(&mapper, "gpt-4", Some("first"));
    }

    #[test]
    fn bad_rules_name_themselves() {
        let error = ModelMapper::new(
            "claude_api",
            &[
                rule(MatchKind::Exact, "a", "b", false),
                rule(MatchKind::Regex, "^gpt-4(?!o)", "x", false),
            ],
        )
        .unwrap_err();
        assert!(
            error
                .message()
                .starts_with("plugins.claude_api.model_mappings[1]: invalid regex"),
            "{error}"
        );
        assert!(error.message().contains("look-around"), "{error}");
        assert!(!error.message().contains('\n'), "{error}");
        let error =
            ModelMapper::new("codex", &[rule(MatchKind::Exact, "", "b", false)]).unwrap_err();
        assert_eq!(
            error.message(),
            "plugins.codex.model_mappings[0]: pattern and target must not be empty"
        );
    }

    #[test]
    fn rules_parse_with_defaults_and_refuse_unknown_keys() {
        let parsed: MappingRule =
            serde_json::from_value(json!({"pattern": "x", "target": "y"})).unwrap();
        assert_eq!(parsed, MappingRule::new(MatchKind::Exact, "x", "y"));
        let parsed: MappingRule = serde_json::from_value(
            json!({"kind": "suffix", "pattern": "x", "target": "y", "ignore_case": true}),
        )
        .unwrap();
        assert_eq!(parsed.kind, MatchKind::Suffix);
        assert!(parsed.ignore_case);
        let error = serde_json::from_value::<MappingRule>(
            json!({"pattern": "x", "target": "y", "flags": "i"}),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("unknown field `flags`"),
            "{error}"
        );
    }

    #[test]
    fn rewrite_writes_the_target_and_returns_the_alias() {
        let mapper =
            ModelMapper::new("p", &[MappingRule::new(MatchKind::Prefix, "gpt-", "m")]).unwrap();
        let body = |model: Value| match json!({ "model": model }) {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let mut mapped = body(json!("gpt-4o"));
        assert_eq!(
            mapper.rewrite(&mut mapped, None, |_| false).as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(mapped["model"], "m");
        // The client's own spelling wins as the alias.
        let mut mapped = body(json!("gpt-4o"));
        assert_eq!(
            mapper
                .rewrite(&mut mapped, Some("GPT-4o"), |_| false)
                .as_deref(),
            Some("GPT-4o")
        );
        // Kept, unmatched, already the target, or not a string: unchanged.
        for (model, keep) in [
            (json!("gpt-4o"), true),
            (json!("o3"), false),
            (json!(7), false),
        ] {
            let mut unchanged = body(model.clone());
            assert_eq!(mapper.rewrite(&mut unchanged, None, |_| keep), None);
            assert_eq!(unchanged["model"], model);
        }
        let same = ModelMapper::new("p", &[MappingRule::new(MatchKind::Exact, "m", "m")]).unwrap();
        let mut unchanged = body(json!("m"));
        assert_eq!(same.rewrite(&mut unchanged, None, |_| false), None);
        let mut no_model = Map::new();
        assert_eq!(mapper.rewrite(&mut no_model, None, |_| false), None);
    }
}
