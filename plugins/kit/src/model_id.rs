//! Model ids as clients write them: a table of values by model id found by
//! the exact id, the id without provider prefix and date suffix, or the
//! longest known id the model extends (`claude-sonnet-4-5` for
//! `claude-sonnet-4-5-20250929`, `anthropic/claude-haiku-4-5`,
//! `claude-sonnet-4-5-foo`).

use std::collections::{BTreeMap, HashMap, btree_map};

/// Providers whose prefix (`anthropic/claude-…`) a model id may carry.
const PROVIDER_PREFIXES: [&str; 2] = ["anthropic/", "openai/"];

/// `model` without a provider prefix (`anthropic/`, `openai/`) and a date
/// suffix (`-20250929`, `-2025-08-07`).
pub fn base_name(model: &str) -> &str {
    let model = PROVIDER_PREFIXES
        .iter()
        .find_map(|prefix| model.strip_prefix(prefix))
        .unwrap_or(model);
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    // `-YYYYMMDD`
    if let Some((head, tail)) = model.rsplit_once('-')
        && tail.len() == 8
        && digits(tail)
    {
        return head;
    }
    // `-YYYY-MM-DD`
    if model.len() > 11 && model.is_char_boundary(model.len() - 11) {
        let (head, tail) = model.split_at(model.len() - 11);
        let parts: Vec<&str> = tail.split('-').collect();
        if let ["", year, month, day] = parts.as_slice()
            && year.len() == 4
            && month.len() == 2
            && day.len() == 2
            && [year, month, day].iter().all(|part| digits(part))
        {
            return head;
        }
    }
    model
}

/// Values by model id, with an index by [`base_name`] for [`find`](Self::find).
#[derive(Debug, Clone)]
pub struct ModelTable<V> {
    entries: BTreeMap<String, V>,
    /// Base names to the id that stands for them: of the ids with that base
    /// name, the shortest (the undated one), then the last (the newest date).
    by_base_name: HashMap<String, String>,
}

impl<V> Default for ModelTable<V> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            by_base_name: HashMap::new(),
        }
    }
}

impl<V> ModelTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `id`'s value; returns the one it replaces.
    pub fn insert(&mut self, id: String, value: V) -> Option<V> {
        let base = base_name(&id);
        let stands_for_base = self.by_base_name.get(base).is_none_or(|current| {
            id.len() < current.len() || (id.len() == current.len() && id > *current)
        });
        if stands_for_base {
            self.by_base_name.insert(base.to_owned(), id.clone());
        }
        self.entries.insert(id, value)
    }

    /// How many ids the table has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no id.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The value of `model` and the table's id it was found as: its exact
    /// id; else the id without provider prefix and date suffix, or a table id
    /// that is the same without its own; else the table id with the longest
    /// base name that `model`'s extends at a `-` (`claude-sonnet-4-5-foo` is
    /// `claude-sonnet-4-5`, `gpt-5.3` is not `gpt-5`). Of table ids with the
    /// same base name, the undated one is found, else the newest.
    pub fn find(&self, model: &str) -> Option<(&str, &V)> {
        let found = |id: &str| {
            self.entries
                .get_key_value(id)
                .map(|(id, value)| (id.as_str(), value))
        };
        if let Some(found) = found(model) {
            return Some(found);
        }
        let base = base_name(model);
        if let Some(found) = found(base) {
            return Some(found);
        }
        if let Some(id) = self.by_base_name.get(base) {
            return found(id);
        }
        let (_, id) = self
            .by_base_name
            .iter()
            .filter(|(known, _)| {
                base.strip_prefix(known.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|(known, _)| known.len())?;
        found(id)
    }
}

impl<V> Extend<(String, V)> for ModelTable<V> {
    fn extend<I: IntoIterator<Item = (String, V)>>(&mut self, entries: I) {
        for (id, value) in entries {
            self.insert(id, value);
        }
    }
}

impl<V> FromIterator<(String, V)> for ModelTable<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(entries: I) -> Self {
        let mut table = Self::new();
        table.extend(entries);
        table
    }
}

impl<V> IntoIterator for ModelTable<V> {
    type Item = (String, V);
    type IntoIter = btree_map::IntoIter<String, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ids: &[&str]) -> ModelTable<usize> {
        ids.iter()
            .enumerate()
            .map(|(n, id)| ((*id).to_owned(), n))
            .collect()
    }

    fn found<'a>(table: &'a ModelTable<usize>, model: &str) -> Option<&'a str> {
        table.find(model).map(|(id, _)| id)
    }

    #[test]
    fn base_names_lose_prefix_and_date() {
        for (model, base) in [
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("anthropic/claude-haiku-4-5-20251001", "claude-haiku-4-5"),
            ("openai/gpt-4o-2024-08-06", "gpt-4o"),
            ("gpt-5.1-codex-max", "gpt-5.1-codex-max"),
            ("o3", "o3"),
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("claude-3-1234567", "claude-3-1234567"),
            ("x-2024-8-06", "x-2024-8-06"),
        ] {
            assert_eq!(base_name(model), base, "{model}");
        }
    }

    #[test]
    fn models_are_found_by_id_base_name_or_known_prefix() {
        let table = table(&[
            "claude-sonnet-4-5-20250929",
            "claude-sonnet-4",
            "gpt-5",
            "gpt-4o-2024-08-06",
        ]);
        for (model, id) in [
            ("claude-sonnet-4", Some("claude-sonnet-4")),
            ("claude-sonnet-4-5", Some("claude-sonnet-4-5-20250929")),
            (
                "anthropic/claude-sonnet-4-5-20251231",
                Some("claude-sonnet-4-5-20250929"),
            ),
            ("claude-sonnet-4-20250514", Some("claude-sonnet-4")),
            ("claude-sonnet-4-5-foo", Some("claude-sonnet-4-5-20250929")),
            ("claude-sonnet-4-1", Some("claude-sonnet-4")),
            ("openai/gpt-4o", Some("gpt-4o-2024-08-06")),
            ("gpt-5-codex", Some("gpt-5")),
            ("gpt-5.3", None),
            ("claude-sonnet", None),
            ("llama", None),
        ] {
            assert_eq!(found(&table, model), id, "{model}");
        }
    }

    #[test]
    fn of_ids_with_one_base_name_the_undated_then_the_newest_is_found() {
        let dated = table(&["m-20250101", "m-20250601", "m-20250301"]);
        assert_eq!(found(&dated, "m"), Some("m-20250601"));
        assert_eq!(found(&dated, "m-x"), Some("m-20250601"));
        let with_undated = table(&["m-20250601", "m", "m-2025-07-01"]);
        assert_eq!(found(&with_undated, "m-20251231"), Some("m"));
        assert_eq!(found(&with_undated, "m-x"), Some("m"));
    }

    #[test]
    fn a_replaced_value_is_returned_and_ids_stay_in_order() {
        let mut table = table(&["b", "a"]);
        assert_eq!(table.insert("a".to_owned(), 9), Some(1));
        assert_eq!(table.find("a"), Some(("a", &9)));
        assert_eq!(table.ids().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(table.len(), 2);
        assert!(!table.is_empty());
        assert_eq!(
            table.into_iter().collect::<Vec<_>>(),
            [("a".to_owned(), 9), ("b".to_owned(), 0)]
        );
    }
}
