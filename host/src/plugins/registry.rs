//! The registry: every plugin file the host found, what became of it, and the
//! running plugins.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, OnceLock, atomic::AtomicBool},
};

use ccproxy_plugin_abi::manifest::{ConfiguredEndpoints, Manifest, ProviderEndpoint, RouteGroup};
use serde_json::Value;

use super::{
    deps,
    discover::{self, Candidate, Origin, SearchPath},
    handle::PluginHandle,
    load::{self, LoadedLibrary, Refusal},
};
use crate::config::{self, Config};

/// What became of a plugin file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Loaded and initialised (or, before initialisation, ready to be).
    Active,
    /// Loaded but not started: by config, a dependency or a config error.
    Disabled,
    /// Not loaded: the file failed a check.
    Refused,
    /// Loaded, but its initialisation failed.
    Failed,
}

impl Status {
    /// Lower-case name for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Disabled => "disabled",
            Status::Refused => "refused",
            Status::Failed => "failed",
        }
    }
}

/// One plugin file and its fate.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The file.
    pub file: PathBuf,
    /// Where it was found.
    pub origin: Origin,
    /// The manifest, when the file could be loaded.
    pub manifest: Option<Manifest>,
    /// The plugin API version it was built for, when known.
    pub api_version: Option<String>,
    /// What became of it.
    pub status: Status,
    /// Why it is not active.
    pub reason: Option<String>,
    /// Its validated config, for active plugins.
    pub config: Option<Value>,
    /// Not active because the user's config (or the plugin's own opt-in
    /// default) says so: no warning, and `/health` does not count it.
    pub on_purpose: bool,
}

impl Entry {
    /// The plugin's name, or the file name when the manifest is unknown.
    pub fn display_name(&self) -> String {
        match &self.manifest {
            Some(manifest) => manifest.name.clone(),
            None => self
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// A running plugin.
pub struct ActivePlugin {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its file.
    pub file: PathBuf,
    /// The file its image was loaded from (`file`, or a private copy of a
    /// replacement; see `plugins::image`).
    pub image: PathBuf,
    /// The plugin API version it was built against: what it can read.
    pub api_version: semver::Version,
    /// The instance.
    pub handle: PluginHandle,
    /// Whether `plugin.initialize` succeeded.
    pub initialized: AtomicBool,
    /// Its validated config (defaults merged with the user's section).
    pub config: Value,
    /// What a provider declared with `Manifest::configured_provider` serves
    /// under its config, as it answered `plugin.initialize` (plugin API 1.3).
    pub configured: OnceLock<ConfiguredEndpoints>,
    /// A provider that said at `plugin.initialize` its `provider.prepare`
    /// may ask for retries (plugin API 1.3): only for it does the provider
    /// path keep the client's body for a second preparation.
    pub provider_retries: AtomicBool,
}

impl ActivePlugin {
    /// Every provider endpoint with the upstream format it is served in: the
    /// manifest's, then the configured ones.
    pub fn provider_endpoints(&self) -> impl Iterator<Item = (&str, &ProviderEndpoint)> {
        let spec = self.manifest.provider.as_ref();
        let declared = spec.into_iter().flat_map(|spec| spec.endpoints.iter());
        let configured = self
            .configured
            .get()
            .into_iter()
            .flat_map(|served| served.provider_endpoints.iter());
        declared.chain(configured).map(move |endpoint| {
            let native = endpoint
                .native_format
                .as_deref()
                .or(spec.map(|spec| spec.native_format.as_str()))
                .unwrap_or_default();
            (native, endpoint)
        })
    }

    /// Every route group: the manifest's, then the configured ones.
    pub fn route_groups(&self) -> impl Iterator<Item = &RouteGroup> {
        let configured = self
            .configured
            .get()
            .into_iter()
            .flat_map(|served| served.routes.iter());
        self.manifest.routes.iter().chain(configured)
    }
}

impl std::fmt::Debug for ActivePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivePlugin")
            .field("name", &self.manifest.name)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Plugins found, loaded and resolved, before anything is initialised; what
/// `ccproxy plugins list` shows.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Every file, in discovery order.
    pub entries: Vec<Entry>,
    /// Libraries of active entries, by name.
    pub libraries: BTreeMap<String, LoadedLibrary>,
    /// Initialisation order.
    pub order: Vec<String>,
    /// Which plugin provides each service.
    pub services: BTreeMap<String, String>,
    /// Problems that disable nothing but deserve a look (a config section
    /// for a plugin that was not found).
    pub warnings: Vec<String>,
}

/// The folder of the running executable, through its real path (a symbolic
/// link in `/usr/local/bin` to an install elsewhere finds that install's plugins).
pub fn executable_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok())
        .and_then(|exe| exe.parent().map(PathBuf::from))
}

/// The search path `config` describes, with the executable's folder for bundled plugins.
pub fn search_path(config: &Config) -> SearchPath {
    let executable_dir = executable_dir();
    let user_dir = (!config.plugin_discovery.disable_local_discovery)
        .then(|| crate::paths::config_dir().join("plugins"));
    SearchPath {
        executable_dir,
        user_dir,
        configured: config.plugin_discovery.directories.clone(),
    }
}

/// Discovers, loads, filters and resolves plugins. Never fails as a whole: each
/// problem becomes one entry's status and reason.
pub fn prepare(config: &Config, search: &SearchPath) -> Prepared {
    prepare_for(config, search, Purpose::Serve)
}

/// What the plugins are loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The server: every allowed plugin.
    Serve,
    /// A CLI command: only plugins marked `cli_safe`.
    Cli,
}

/// [`prepare`] for `purpose`.
pub fn prepare_for(config: &Config, search: &SearchPath, purpose: Purpose) -> Prepared {
    let candidates = discover::discover(search);
    let mut prepared = if config.enable_plugins {
        prepare_candidates(config, candidates, purpose)
    } else {
        listed_switched_off(candidates)
    };
    // A binary without its plugins (`cargo install`) serves next to nothing:
    // say so, with where they were looked for.
    if !prepared.entries.iter().any(|e| e.origin == Origin::Bundled) {
        let warning = discover::no_bundled_plugins_warning(search.executable_dir.as_deref());
        if purpose == Purpose::Serve {
            tracing::warn!("{warning}");
        }
        prepared.warnings.push(warning);
    }
    prepared
}

/// With plugins switched off, the files are still listed (with that reason)
/// but never opened: nothing of theirs runs.
fn listed_switched_off(candidates: Vec<Candidate>) -> Prepared {
    let mut prepared = Prepared::default();
    for candidate in candidates {
        prepared.entries.push(Entry {
            file: candidate.path,
            origin: candidate.origin,
            manifest: None,
            api_version: None,
            status: Status::Disabled,
            reason: Some("plugins are switched off (enable_plugins = false)".to_owned()),
            config: None,
            on_purpose: true,
        });
    }
    prepared
}

/// [`prepare_for`] with an explicit list of candidates.
pub fn prepare_candidates(
    config: &Config,
    candidates: Vec<Candidate>,
    purpose: Purpose,
) -> Prepared {
    let mut prepared = Prepared::default();
    for candidate in candidates {
        let mut entry = Entry {
            file: candidate.path.clone(),
            origin: candidate.origin,
            manifest: None,
            api_version: None,
            status: Status::Active,
            reason: None,
            config: None,
            on_purpose: false,
        };
        match load::load(&candidate.path) {
            Ok(library) => {
                let name = library.manifest.name.clone();
                entry.manifest = Some(library.manifest.clone());
                entry.api_version = Some(library.api_version.to_string());
                if let Some(first) = prepared.libraries.get(&name) {
                    refuse(
                        &mut entry,
                        Refusal::DuplicateName {
                            name,
                            first: first.path.clone(),
                        },
                    );
                } else if purpose == Purpose::Cli && !library.manifest.cli_safe {
                    entry.status = Status::Disabled;
                    entry.reason = Some("not loaded by CLI commands (not cli_safe)".to_owned());
                    entry.on_purpose = true;
                } else if let Err(reason) = config::plugin_allowed(config, &name) {
                    entry.status = Status::Disabled;
                    entry.reason = Some(reason);
                    entry.on_purpose = true;
                } else {
                    match config::validate_plugin_section(
                        &name,
                        &library.manifest.config.defaults,
                        config.plugins.get(&name),
                    ) {
                        // A plugin that declares `enabled = false` among its
                        // defaults is opt-in: it loads once the user enables it
                        // (its section, `--enable-plugin`, or an allow list naming it).
                        Ok(value)
                            if value.get("enabled") == Some(&Value::Bool(false))
                                && !config
                                    .enabled_plugins
                                    .as_ref()
                                    .is_some_and(|allowed| allowed.contains(&name)) =>
                        {
                            entry.status = Status::Disabled;
                            entry.reason = Some(format!(
                                "off by default: enable it with [plugins.{name}] enabled = true, PLUGINS__{}__ENABLED=true or --enable-plugin {name}",
                                name.to_ascii_uppercase()
                            ));
                            entry.config = Some(value);
                            entry.on_purpose = true;
                        }
                        Ok(value) => {
                            entry.config = Some(value);
                            prepared.libraries.insert(name, library);
                        }
                        Err(error) => {
                            entry.status = Status::Disabled;
                            entry.reason = Some(format!("config error: {error}"));
                        }
                    }
                }
            }
            Err(refusal) => {
                entry.api_version = refusal.plugin_version().map(ToString::to_string);
                refuse(&mut entry, refusal);
            }
        }
        if entry.status != Status::Active && purpose == Purpose::Serve {
            let reason = entry.reason.as_deref().unwrap_or_default();
            let (file, status, name) = (
                entry.file.display(),
                entry.status.as_str(),
                entry.display_name(),
            );
            if entry.on_purpose {
                tracing::info!(file = %file, status, "plugin {name}: {reason}");
            } else {
                tracing::warn!(file = %file, status, "plugin {name}: {reason}");
            }
        }
        prepared.entries.push(entry);
    }

    let found: Vec<&str> = prepared
        .entries
        .iter()
        .filter_map(|entry| entry.manifest.as_ref().map(|m| m.name.as_str()))
        .collect();
    prepared.warnings = config::unknown_plugin_names(config, &found);
    if purpose == Purpose::Serve {
        for warning in &prepared.warnings {
            tracing::warn!("{warning}");
        }
    }

    let manifests: Vec<&Manifest> = prepared.libraries.values().map(|l| &l.manifest).collect();
    // Resolve in discovery order, not name order.
    let mut ordered: Vec<&Manifest> = Vec::new();
    for entry in &prepared.entries {
        if let Some(manifest) = manifests.iter().find(|m| {
            entry.status == Status::Active
                && entry.manifest.as_ref().is_some_and(|e| e.name == m.name)
        }) {
            ordered.push(manifest);
        }
    }
    let resolution = deps::resolve(&ordered);
    for (name, reason) in &resolution.disabled {
        tracing::warn!(plugin = %name, "plugin disabled: {reason}");
        if let Some(entry) = prepared.entries.iter_mut().find(|e| {
            e.status == Status::Active && e.manifest.as_ref().is_some_and(|m| &m.name == name)
        }) {
            entry.status = Status::Disabled;
            entry.reason = Some(reason.clone());
        }
        prepared.libraries.remove(name);
    }
    prepared.order = resolution.order;
    prepared.services = resolution.services;
    prepared
}

fn refuse(entry: &mut Entry, refusal: Refusal) {
    entry.status = Status::Refused;
    entry.reason = Some(refusal.to_string());
}

impl Prepared {
    /// The entry of active plugin `name`.
    pub fn entry_mut(&mut self, name: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| {
            e.status == Status::Active && e.manifest.as_ref().is_some_and(|m| m.name == name)
        })
    }
}

/// Plugins a plugin depends on: its dependencies and the providers of the
/// services it requires.
pub fn dependencies_of(manifest: &Manifest, services: &BTreeMap<String, String>) -> Vec<String> {
    let mut deps = manifest.dependencies.clone();
    deps.extend(
        manifest
            .requires
            .iter()
            .filter_map(|s| services.get(s).cloned()),
    );
    deps
}

/// The registry kept while serving.
#[derive(Debug)]
pub struct Registry {
    /// Every plugin file and its fate.
    pub entries: Vec<Entry>,
    /// Running plugins, in initialisation order.
    pub active: Vec<Arc<ActivePlugin>>,
    /// Initialisation order (names).
    pub order: Vec<String>,
}

impl Registry {
    /// The running plugin `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ActivePlugin>> {
        self.active.iter().find(|p| p.manifest.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bundled_plugin_is_a_warning_that_says_where_it_looked() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let search = SearchPath {
            executable_dir: Some(bin.clone()),
            ..SearchPath::default()
        };
        for enable_plugins in [true, false] {
            let config = Config {
                enable_plugins,
                ..Config::default()
            };
            let prepared = prepare_for(&config, &search, Purpose::Cli);
            assert_eq!(prepared.warnings.len(), 1, "{:?}", prepared.warnings);
            let warning = &prepared.warnings[0];
            assert!(warning.starts_with("no bundled plugins found"), "{warning}");
            assert!(
                warning.contains(&root.join("lib/ccproxy/plugins").display().to_string()),
                "{warning}"
            );
        }
    }
}
