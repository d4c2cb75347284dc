//! The route table: core endpoints and every plugin's routes, matched by path
//! (matchit) and then by method.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ccproxy_formats::Format;
use ccproxy_plugin_abi::manifest::ProviderEndpoint;

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
    /// An adapter endpoint (plugin API 1.2): the adapter plugin converts the
    /// client's format to a core one and back, around a provider endpoint.
    Adapted {
        /// The plugin whose format adapter declared the endpoint.
        adapter: Arc<ActivePlugin>,
        /// The provider plugin behind it.
        provider: Arc<ActivePlugin>,
        /// The endpoint.
        route: Arc<super::adapted::AdaptedRoute>,
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

/// An adapter endpoint that was mounted, for `/plugins/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterEndpoint {
    /// The adapter plugin.
    pub plugin: String,
    /// The full path, e.g. `/claude/v1/tiny`.
    pub path: String,
    /// The format clients speak there.
    pub from: String,
    /// The core format it is converted to.
    pub to: String,
    /// The provider plugin behind it.
    pub provider: String,
    /// The provider endpoint behind it.
    pub provider_endpoint: String,
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
    adapter_endpoints: Vec<AdapterEndpoint>,
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
            for (native, endpoint) in plugin.provider_endpoints() {
                let mounted = provider_route(native, endpoint).and_then(|route| {
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
            for group in plugin.route_groups() {
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
        table.mount_adapters(plugins, &mut conflicts);
        (table, conflicts)
    }

    /// Mounts every format adapter's endpoint under the prefix (first path
    /// segment) of each provider endpoint in the adapter's target format,
    /// after every other route (which win). Adapters are taken by priority,
    /// lower first, so of two declaring the same path the lower wins and the
    /// other is a conflict.
    fn mount_adapters(&mut self, plugins: &[Arc<ActivePlugin>], conflicts: &mut Vec<Conflict>) {
        let mut adapters: Vec<_> = plugins
            .iter()
            .flat_map(|plugin| {
                plugin
                    .manifest
                    .format_adapters
                    .iter()
                    .filter_map(move |spec| Some((plugin, spec, spec.endpoint.as_deref()?)))
            })
            .collect();
        // Stable: equal priorities keep initialisation order.
        adapters.sort_by_key(|(_, spec, _)| spec.priority);
        for (adapter, spec, endpoint) in adapters {
            let name = &adapter.manifest.name;
            let endpoint = if endpoint.starts_with('/') {
                endpoint.to_owned()
            } else {
                format!("/{endpoint}")
            };
            let to: Format = match spec.to.parse() {
                Ok(to) => to,
                Err(_) => {
                    let reason = format!(
                        "format adapter {} -> {} refused: {} is not a core format (anthropic.messages, openai.chat_completions, openai.responses)",
                        spec.from, spec.to, spec.to
                    );
                    tracing::warn!(plugin = %name, %endpoint, %reason, "format adapter not mounted");
                    conflicts.push(Conflict {
                        plugin: name.clone(),
                        route: format!("POST {endpoint}"),
                        reason,
                    });
                    continue;
                }
            };
            let mut mounted = 0;
            for provider in plugins {
                let mut prefixes = HashSet::new();
                for (native, provider_endpoint) in provider.provider_endpoints() {
                    if provider_endpoint.format.parse::<Format>().ok() != Some(to) {
                        continue;
                    }
                    let Some(prefix) = first_segment(&provider_endpoint.path) else {
                        continue;
                    };
                    if !prefixes.insert(prefix) {
                        continue;
                    }
                    // A provider endpoint that cannot be mounted was reported already.
                    let Ok(provider_route) = provider_route(native, provider_endpoint) else {
                        continue;
                    };
                    let path = format!("{prefix}{endpoint}");
                    let target = Target::Adapted {
                        adapter: adapter.clone(),
                        provider: provider.clone(),
                        route: Arc::new(super::adapted::AdaptedRoute {
                            path: path.clone(),
                            from: spec.from.clone(),
                            to,
                            provider_route,
                        }),
                    };
                    match self.insert("POST", &path, target) {
                        Ok(()) => {
                            mounted += 1;
                            tracing::debug!(plugin = %name, %path, provider = %provider.manifest.name, "format adapter endpoint mounted");
                            self.adapter_endpoints.push(AdapterEndpoint {
                                plugin: name.clone(),
                                path,
                                from: spec.from.clone(),
                                to: to.id().to_owned(),
                                provider: provider.manifest.name.clone(),
                                provider_endpoint: provider_endpoint.path.clone(),
                            });
                        }
                        Err(reason) => {
                            tracing::warn!(plugin = %name, %path, %reason, "format adapter endpoint not mounted");
                            conflicts.push(Conflict {
                                plugin: name.clone(),
                                route: format!("POST {path}"),
                                reason,
                            });
                        }
                    }
                }
            }
            if mounted == 0 {
                tracing::info!(plugin = %name, %endpoint, to = %to.id(), "no provider serves the format adapter's target format; its endpoint is not mounted");
            }
        }
    }

    /// The adapter endpoints mounted, in mounting order.
    pub fn adapter_endpoints(&self) -> &[AdapterEndpoint] {
        &self.adapter_endpoints
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
        Target::Adapted { adapter, .. } => {
            format!("plugin {} (format adapter)", adapter.manifest.name)
        }
    }
}

/// `/claude` of `/claude/v1/chat/completions`; `None` for `/` or a path with
/// one segment only (no prefix to mount under).
fn first_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let end = rest.find('/')?;
    (end > 0).then(|| &path[..end + 1])
}

fn provider_route(
    native: &str,
    endpoint: &ProviderEndpoint,
) -> Result<super::provider::ProviderRoute, String> {
    let native = native
        .parse()
        .map_err(|e: ccproxy_formats::UnknownFormat| e.to_string())?;
    let client = endpoint
        .format
        .parse()
        .map_err(|e: ccproxy_formats::UnknownFormat| e.to_string())?;
    // An endpoint with a format of its own fronts one of several upstreams
    // (a configured provider): its first segment names that upstream.
    let upstream = endpoint.native_format.as_ref().and_then(|_| {
        first_segment(&endpoint.path).map(|prefix| prefix.trim_start_matches('/').to_owned())
    });
    Ok(super::provider::ProviderRoute {
        path: endpoint.path.clone(),
        client,
        native,
        upstream,
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

    #[test]
    fn adapters_mount_under_the_first_segment_of_a_provider_endpoint() {
        assert_eq!(
            first_segment("/claude/v1/chat/completions"),
            Some("/claude")
        );
        assert_eq!(first_segment("/codex/responses"), Some("/codex"));
        assert_eq!(first_segment("/messages"), None);
        assert_eq!(first_segment("//v1"), None);
        assert_eq!(first_segment("relative/path"), None);
    }
}
