//! Dependency resolution: which plugins can run, and in what order.
//!
//! A plugin runs after every plugin it depends on (its `dependencies`, and the
//! providers of the services it `requires` or, when present, `optional_requires`).
//! A missing dependency, an unprovided required service, or a cycle disables
//! exactly the plugins involved and those that depend on them, each with its
//! reason; everything else still runs.

use std::collections::{BTreeMap, HashMap, HashSet};

use ccproxy_plugin_abi::manifest::Manifest;

/// The outcome of resolution.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Plugins that can run, dependencies first.
    pub order: Vec<String>,
    /// Plugins that cannot, with the reason.
    pub disabled: BTreeMap<String, String>,
    /// Which plugin provides each service.
    pub services: BTreeMap<String, String>,
}

/// Resolves `plugins` (in discovery order).
pub fn resolve(plugins: &[&Manifest]) -> Resolution {
    let names: HashSet<&str> = plugins.iter().map(|m| m.name.as_str()).collect();
    let mut services = BTreeMap::new();
    for manifest in plugins {
        for service in &manifest.provides {
            services
                .entry(service.clone())
                .or_insert_with(|| manifest.name.clone());
        }
    }

    let mut disabled: BTreeMap<String, String> = BTreeMap::new();
    let mut edges: HashMap<&str, Vec<String>> = HashMap::new();
    for manifest in plugins {
        let mut deps = Vec::new();
        for dependency in &manifest.dependencies {
            if !names.contains(dependency.as_str()) {
                disabled.entry(manifest.name.clone()).or_insert_with(|| {
                    format!("missing dependency {dependency}: install or enable it")
                });
            }
            deps.push(dependency.clone());
        }
        for service in &manifest.requires {
            match services.get(service) {
                Some(provider) => deps.push(provider.clone()),
                None => {
                    disabled.entry(manifest.name.clone()).or_insert_with(|| {
                        format!("requires service {service}, which no enabled plugin provides")
                    });
                }
            }
        }
        for service in &manifest.optional_requires {
            if let Some(provider) = services.get(service) {
                deps.push(provider.clone());
            }
        }
        deps.retain(|dep| dep != &manifest.name || manifest.dependencies.contains(dep));
        deps.dedup();
        edges.insert(manifest.name.as_str(), deps);
    }

    // Kahn's algorithm, taking ready plugins in discovery order for a stable result.
    let mut order: Vec<String> = Vec::new();
    let mut placed: HashSet<&str> = HashSet::new();
    loop {
        let next = plugins.iter().find(|m| {
            let name = m.name.as_str();
            !placed.contains(name)
                && !disabled.contains_key(name)
                && edges[name].iter().all(|dep| placed.contains(dep.as_str()))
        });
        let Some(manifest) = next else { break };
        placed.insert(manifest.name.as_str());
        order.push(manifest.name.clone());
    }

    // What is left is disabled: by a disabled dependency, or by a cycle.
    let mut changed = true;
    while changed {
        changed = false;
        for manifest in plugins {
            let name = manifest.name.as_str();
            if placed.contains(name) || disabled.contains_key(name) {
                continue;
            }
            if let Some(dep) = edges[name]
                .iter()
                .find(|dep| disabled.contains_key(dep.as_str()))
            {
                disabled.insert(
                    name.to_owned(),
                    format!("dependency {dep} is disabled: {}", disabled[dep.as_str()]),
                );
                changed = true;
            }
        }
    }
    for manifest in plugins {
        let name = manifest.name.as_str();
        if placed.contains(name) || disabled.contains_key(name) {
            continue;
        }
        let reason = match find_cycle(name, &edges, &placed) {
            Some(cycle) => format!("dependency cycle: {}", cycle.join(" -> ")),
            None => "depends on a plugin in a dependency cycle".to_owned(),
        };
        disabled.insert(name.to_owned(), reason);
    }
    services.retain(|_, provider| placed.contains(provider.as_str()));
    Resolution {
        order,
        disabled,
        services,
    }
}

/// A cycle through `start`, as the list of names ending with `start` again.
fn find_cycle(
    start: &str,
    edges: &HashMap<&str, Vec<String>>,
    placed: &HashSet<&str>,
) -> Option<Vec<String>> {
    fn walk(
        node: &str,
        start: &str,
        edges: &HashMap<&str, Vec<String>>,
        placed: &HashSet<&str>,
        path: &mut Vec<String>,
        seen: &mut HashSet<String>,
    ) -> bool {
        for dep in edges.get(node).into_iter().flatten() {
            if dep == start {
                path.push(dep.clone());
                return true;
            }
            if placed.contains(dep.as_str()) || !seen.insert(dep.clone()) {
                continue;
            }
            path.push(dep.clone());
            if walk(dep, start, edges, placed, path, seen) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = HashSet::new();
    walk(start, start, edges, placed, &mut path, &mut seen).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, deps: &[&str]) -> Manifest {
        let mut manifest = Manifest::new(name, "1.0.0");
        manifest.dependencies = deps.iter().map(|d| d.to_string()).collect();
        manifest
    }

    fn check(plugins: &[Manifest], order: &[&str], disabled: &[(&str, &str)]) {
        let refs: Vec<&Manifest> = plugins.iter().collect();
        let resolution = resolve(&refs);
        assert_eq!(resolution.order, order);
        let got: Vec<(String, String)> = resolution.disabled.into_iter().collect();
        assert_eq!(got.len(), disabled.len(), "{got:?}");
        for ((name, reason), (want_name, want_reason)) in got.iter().zip(disabled) {
            assert_eq!(name, want_name);
            assert!(
                reason.contains(want_reason),
                "{name}: {reason:?} lacks {want_reason:?}"
            );
        }
    }

    #[test]
    fn dependencies_come_first() {
        check(&[plugin("b", &["a"]), plugin("a", &[])], &["a", "b"], &[]);
    }

    #[test]
    fn missing_dependency_disables_only_the_dependents() {
        check(
            &[
                plugin("a", &[]),
                plugin("b", &["ghost"]),
                plugin("c", &["b"]),
            ],
            &["a"],
            &[
                ("b", "missing dependency ghost"),
                ("c", "dependency b is disabled"),
            ],
        );
    }

    #[test]
    fn cycle_disables_its_members_with_the_cycle_named() {
        check(
            &[plugin("x", &["y"]), plugin("y", &["x"]), plugin("z", &[])],
            &["z"],
            &[
                ("x", "dependency cycle: x -> y -> x"),
                ("y", "dependency cycle: y -> x -> y"),
            ],
        );
    }

    #[test]
    fn required_services_order_and_missing_services() {
        let provider = Manifest::new("provider", "1.0.0").provides("greeting");
        let consumer = Manifest::new("consumer", "1.0.0").requires("greeting");
        let orphan = Manifest::new("orphan", "1.0.0").requires("nothing");
        let refs = [&consumer, &provider, &orphan];
        let resolution = resolve(&refs);
        assert_eq!(resolution.order, ["provider", "consumer"]);
        assert_eq!(resolution.services["greeting"], "provider");
        assert!(resolution.disabled["orphan"].contains("requires service nothing"));
    }
}
