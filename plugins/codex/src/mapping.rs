//! Model mapping: the configured rules compiled once, applied first match wins.

use ccproxy_plugin_abi::PluginError;
use regex::{Regex, RegexBuilder};

use crate::config::{MappingRule, MatchKind};

/// The compiled `model_mappings`.
#[derive(Debug)]
pub(crate) struct ModelMapper {
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
    /// Compiles `rules`; a bad regex or an empty pattern or target names its
    /// rule, so the user can find it.
    pub(crate) fn new(rules: &[MappingRule]) -> Result<Self, PluginError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| compile(index, rule))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// The model to send upstream instead of `model`, if a rule matches.
    pub(crate) fn map(&self, model: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|rule| rule.matcher.matches(model))
            .map(|rule| rule.target.as_str())
    }
}

fn compile(index: usize, rule: &MappingRule) -> Result<Compiled, PluginError> {
    let name = format!("plugins.codex.model_mappings[{index}]");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

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
    fn default_rules_send_every_foreign_model_to_the_codex_model() {
        let mapper = ModelMapper::new(&Config::default().model_mappings).unwrap();
        check(&mapper, "gpt-5-codex", Some("gpt-5.3-codex"));
        check(&mapper, "gpt-5-codex-mini", Some("gpt-5.3-codex"));
        check(&mapper, "gpt-4o", Some("gpt-5.3-codex"));
        check(&mapper, "gpt-5", Some("gpt-5.3-codex"));
        check(&mapper, "o3-mini", Some("gpt-5.3-codex"));
        check(&mapper, "o1-preview", Some("gpt-5.3-codex"));
        check(&mapper, "claude-sonnet-4-5-20250929", Some("gpt-5.3-codex"));
        check(&mapper, "claude-3-5-haiku-20241022", Some("gpt-5.3-codex"));
        // No rule for these: sent as they are.
        check(&mapper, "o3", None);
        check(&mapper, "codex-mini-latest", None);
        check(&mapper, "Claude-x", None);
    }

    #[test]
    fn kinds_and_case() {
        let mapper = ModelMapper::new(&[
            rule(MatchKind::Exact, "Fast", "claude-haiku", true),
            rule(MatchKind::Suffix, "-large", "claude-opus", false),
            rule(MatchKind::Prefix, "MY-", "claude-sonnet", true),
            rule(MatchKind::Regex, r"^team/(a|b)$", "claude-team", true),
        ])
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
        let mapper = ModelMapper::new(&[
            rule(MatchKind::Prefix, "gpt", "first", false),
            rule(MatchKind::Exact, "gpt-4", "second", false),
        ])
        .unwrap();
        check(&mapper, "gpt-4", Some("first"));
    }

    #[test]
    fn bad_rules_name_themselves() {
        let error = ModelMapper::new(&[
            rule(MatchKind::Exact, "a", "b", false),
            rule(MatchKind::Regex, "^gpt-4(?!o)", "x", false),
        ])
        .unwrap_err();
        assert!(
            error
                .message()
                .starts_with("plugins.codex.model_mappings[1]: invalid regex"),
            "{error}"
        );
        assert!(error.message().contains("look-around"), "{error}");
        assert!(!error.message().contains('\n'), "{error}");
        let error = ModelMapper::new(&[rule(MatchKind::Exact, "", "b", false)]).unwrap_err();
        assert_eq!(
            error.message(),
            "plugins.codex.model_mappings[0]: pattern and target must not be empty"
        );
    }
}
