//! The route table: core endpoints and every plugin's routes, matched by path
//! (matchit) and then by method.

use std::{collections::HashMap, sync::Arc};

use crate::plugins::registry::ActivePlugin;

/// The host's own endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreRoute {
    /// `GET /health`.
    Health,
    /// `GET /health/live`.
    Live,
    /// `GET /health/ready`.
    Ready,
    /// `GET /plugins`.
    Plugins,
    /// `GET /plugins/status`.
    PluginsStatus,
    /// `GET /plugins/{name}/health`.
    PluginHealth,
}

/// What a matched route leads to.
#[derive(Debug, Clone)]
pub enum Target {
    /// A host endpoint.
    Core(CoreRoute),
    /// A provider endpoint: the host converts and streams, the plugin prepares.
    Provider {
        /// The provider plugin.
        plugin: Arc<ActivePlugin>,
        /// The endpoint.
        route: Arc<super::provider::ProviderRoute>,
    },
    /// A plugin route: the plugin and the full pattern it declared.
    Plugin {
        /// The plugin.
        plugin: Arc<ActivePlugin>,
        /// Prefix + path as declared.
        pattern: Arc<str>,
        /// Needs no client token (`Route::public`, plugin API 1.2).
        public: bool,
    },
}

/// A route a plugin declared that could not be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The plugin.
    pub plugin: String,
    /// Method and pattern.
    pub route: String,
    /// Why.
    pub reason: String,
}

/// The result of a lookup.
pub enum Lookup<'a> {
    /// Found, with path parameters.
    Found(&'a Target, Vec<(String, String)>),
    /// The path exists but not for this method; the allowed methods.
    MethodNotAllowed(Vec<String>),
    /// Nothing at this path.
    NotFound,
}

/// The route table.
#[derive(Default)]
pub struct RouteTable {
    router: matchit::Router<usize>,
    by_path: HashMap<String, usize>,
    methods: Vec<Vec<(String, Target)>>,
}

impl RouteTable {
    /// The core endpoints plus the routes of `plugins` (in initialisation
    /// order); routes that clash with an earlier one are skipped and reported.
    pub fn build(plugins: &[Arc<ActivePlugin>]) -> (Self, Vec<Conflict>) {
        let mut table = Self::default();
        let core = [
            ("/health", CoreRoute::Health),
            ("/health/live", CoreRoute::Live),
            ("/health/ready", CoreRoute::Ready),
            ("/plugins", CoreRoute::Plugins),
            ("/plugins/status", CoreRoute::PluginsStatus),
            ("/plugins/{name}/health", CoreRoute::PluginHealth),
        ];
        for (path, route) in core {
            table
                .insert("GET", path, Target::Core(route))
                .expect("core routes do not conflict");
        }
        let mut conflicts = Vec::new();
        for plugin in plugins {
            if let Some(spec) = &plugin.manifest.provider {
                for endpoint in &spec.endpoints {
                    let mounted =
                        provider_route(&spec.native_format, &endpoint.format, &endpoint.path)
                            .and_then(|route| {
                                let target = Target::Provider {
                                    plugin: plugin.clone(),
                                    route: Arc::new(route),
                                };
                                table.insert("POST", &endpoint.path, target)
                            });
                    if let Err(reason) = mounted {
                        tracing::warn!(plugin = %plugin.manifest.name, endpoint = %endpoint.path, %reason, "provider endpoint not mounted");
                        conflicts.push(Conflict {
                            plugin: plugin.manifest.name.clone(),
                            route: format!("POST {}", endpoint.path),
                            reason,
                        });
                    }
                }
            }
            for group in &plugin.manifest.routes {
                for route in &group.routes {
                    let pattern = group.full_path(route);
                    let target = Target::Plugin {
                        plugin: plugin.clone(),
                        pattern: pattern.as_str().into(),
                        public: route.public,
                    };
                    if let Err(reason) = table.insert(&route.method, &pattern, target) {
                        tracing::warn!(plugin = %plugin.manifest.name, route = %format!("{} {pattern}", route.method), %reason, "route not mounted");
                        conflicts.push(Conflict {
                            plugin: plugin.manifest.name.clone(),
                            route: format!("{} {pattern}", route.method),
                            reason,
                        });
                    }
                }
            }
        }
        (table, conflicts)
    }

    fn insert(&mut self, method: &str, pattern: &str, target: Target) -> Result<(), String> {
        let method = method.to_ascii_uppercase();
        if let Some(&index) = self.by_path.get(pattern) {
            let methods = &mut self.methods[index];
            if let Some((_, existing)) = methods
                .iter()
                .find(|(m, _)| *m == method || m == "*" || method == "*")
            {
                return Err(format!(
                    "{method} {pattern} is already served by {}",
                    owner(existing)
                ));
            }
            methods.push((method, target));
            return Ok(());
        }
        let index = self.methods.len();
        self.router
            .insert(pattern, index)
            .map_err(|error| format!("conflicts with an existing route: {error}"))?;
        self.by_path.insert(pattern.to_owned(), index);
        self.methods.push(vec![(method, target)]);
        Ok(())
    }

    /// Finds the target for `method` and `path`.
    pub fn lookup(&self, method: &str, path: &str) -> Lookup<'_> {
        let Ok(matched) = self.router.at(path) else {
            return Lookup::NotFound;
        };
        let methods = &self.methods[*matched.value];
        match methods.iter().find(|(m, _)| m == method || m == "*") {
            Some((_, target)) => Lookup::Found(
                target,
                matched
                    .params
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            None => Lookup::MethodNotAllowed(methods.iter().map(|(m, _)| m.clone()).collect()),
        }
    }
}

fn owner(target: &Target) -> String {
    match target {
        Target::Core(_) => "the host".to_owned(),
        Target::Plugin { plugin, .. } | Target::Provider { plugin, .. } => {
            format!("plugin {}", plugin.manifest.name)
        }
    }
}

fn provider_route(
    native: &str,
    client: &str,
    path: &str,
) -> Result<super::provider::ProviderRoute, String> {
    let native = native
        .parse()
        .map_err(|e: ccproxy_formats::UnknownFormat| e.to_string())?;
    let client = client
        .parse()
        .map_err(|e: ccproxy_formats::UnknownFormat| e.to_string())?;
    Ok(super::provider::ProviderRoute {
        path: path.to_owned(),
        client,
        native,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_routes_and_methods() {
        let (table, conflicts) = RouteTable::build(&[]);
        assert!(conflicts.is_empty());
        assert!(matches!(
            table.lookup("GET", "/health"),
            Lookup::Found(Target::Core(CoreRoute::Health), _)
        ));
        match table.lookup("GET", "/plugins/foo/health") {
            Lookup::Found(Target::Core(CoreRoute::PluginHealth), params) => {
                assert_eq!(params, vec![("name".to_owned(), "foo".to_owned())])
            }
            _ => panic!("plugin health route not found"),
        }
        assert!(
            matches!(table.lookup("POST", "/health"), Lookup::MethodNotAllowed(m) if m == ["GET"])
        );
        assert!(matches!(table.lookup("GET", "/nope"), Lookup::NotFound));
    }
}
