//! Live reload (`SIGHUP`, `ccproxy reload`): read the config again, rescan the
//! plugin folders, and swap in a new app while the old one finishes what it
//! serves.
//!
//! - A plugin whose image and config are unchanged keeps running as it is.
//! - A new file, a changed file (loaded from a private copy, see
//!   `plugins::image`) or a changed config section gets a new instance; the
//!   old one is asked to stop once the requests it was serving are done.
//! - A plugin whose file is gone or that the config disables is retired: its
//!   routes answer 404 from the swap on, and it stops after its requests.
//! - A reload that fails (a bad config, a plugin that fails to start or a new
//!   file that is refused) changes nothing and says why; the old state keeps
//!   serving. Libraries are never unloaded.
//! - Only plugin settings take effect (and `server.request_lines`): a changed
//!   `server`, `logging`, `security`, `http` or `hooks` section is reported as
//!   needing a restart.

use std::{collections::HashSet, sync::Arc, time::Duration};

use ccproxy_plugin_abi::HookEvent;
use serde_json::json;
use tokio::sync::{Mutex, watch};

use super::{
    control::{self, ReloadReport, ServerState},
    notify,
};
use crate::{
    config::{self, Config, Sources},
    plugins::{
        lifecycle,
        registry::{self, ActivePlugin, Registry, Status},
    },
    server::{App, CurrentApp},
    services::Shared,
};

/// The plugin tasks of the current generation.
struct Tasks {
    stop: watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

/// Reloads the server it was made for; one reload at a time.
pub struct Reloader {
    sources: Sources,
    apps: Arc<CurrentApp>,
    plugin_runtime: tokio::runtime::Handle,
    grace: Duration,
    tasks: Mutex<Option<Tasks>>,
    state: std::sync::Mutex<ServerState>,
    state_path: std::path::PathBuf,
}

impl Reloader {
    /// A reloader for the server `apps` holds, started from `sources`; writes
    /// the state file for `ccproxy reload` at once.
    pub fn new(
        sources: Sources,
        apps: Arc<CurrentApp>,
        plugin_runtime: tokio::runtime::Handle,
        address: std::net::SocketAddr,
    ) -> Self {
        let shared = apps.load().shared.clone();
        let state = ServerState {
            pid: std::process::id(),
            address: address.to_string(),
            reloads: 0,
            last_reload: None,
        };
        let state_path = control::state_file(address.port());
        if let Err(error) = control::write(&state_path, &state) {
            tracing::warn!(%error, file = %state_path.display(), "cannot write the server state file; `ccproxy reload` will not find this server (send SIGHUP instead)");
        }
        Self {
            sources,
            apps,
            plugin_runtime,
            grace: shared.config.server.shutdown_grace(),
            tasks: Mutex::new(None),
            state: std::sync::Mutex::new(state),
            state_path,
        }
    }

    /// Starts the tasks of `plugins`, stopping those of the generation before.
    async fn restart_tasks(&self, plugins: &[Arc<ActivePlugin>]) {
        let mut tasks = self.tasks.lock().await;
        if let Some(old) = tasks.take() {
            let _ = old.stop.send(true);
            // A run in progress finishes before its plugin may be stopped.
            let _ =
                tokio::time::timeout(self.grace, futures_util::future::join_all(old.handles)).await;
        }
        let (stop, stopped) = watch::channel(false);
        let handles = {
            let _on_plugin_runtime = self.plugin_runtime.enter();
            lifecycle::spawn_tasks(plugins, stopped)
        };
        *tasks = Some(Tasks { stop, handles });
    }

    /// Starts the first generation's tasks.
    pub async fn start_tasks(&self) {
        let app = self.apps.load_full();
        self.restart_tasks(&app.registry.active).await;
    }

    /// Stops the tasks and removes the state file: the server is going away.
    pub async fn stop(&self) {
        if let Some(old) = self.tasks.lock().await.take() {
            let _ = old.stop.send(true);
            let _ =
                tokio::time::timeout(self.grace, futures_util::future::join_all(old.handles)).await;
        }
        let _ = std::fs::remove_file(&self.state_path);
    }

    /// Reloads, tells systemd, records the outcome for `ccproxy reload`.
    pub async fn reload(&self) -> ReloadReport {
        notify::reloading();
        let report = match self.swap().await {
            Ok(message) => {
                tracing::info!("reloaded: {message}");
                ReloadReport { ok: true, message }
            }
            Err(message) => {
                tracing::error!("reload failed, the old state keeps serving: {message}");
                ReloadReport { ok: false, message }
            }
        };
        let status = if report.ok {
            "serving (reloaded)"
        } else {
            "serving (last reload failed)"
        };
        notify::ready(status);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.reloads += 1;
        state.last_reload = Some(report.clone());
        if let Err(error) = control::write(&self.state_path, &state) {
            tracing::warn!(%error, file = %self.state_path.display(), "cannot write the server state file");
        }
        report
    }

    async fn swap(&self) -> Result<String, String> {
        let loaded = config::load(&self.sources).map_err(|error| format!("config: {error}"))?;
        let old_app = self.apps.load_full();
        let shared = old_app.shared.clone();
        let mut notes = needs_restart(&shared.config, &loaded.config);
        notes.extend(loaded.warnings.iter().cloned());

        let prepared = registry::prepare(&loaded.config, &registry::search_path(&loaded.config));
        let old = &old_app.registry;
        let new = lifecycle::initialize_reusing(prepared, &shared, &old.active).await;
        let is_new =
            |plugin: &Arc<ActivePlugin>| !old.active.iter().any(|o| Arc::ptr_eq(o, plugin));

        let problems = new_problems(old, &new);
        if !problems.is_empty() {
            // Back to the old state: the new instances stop, the old ones are
            // the ones service calls reach again.
            for plugin in new.active.iter().filter(|p| is_new(p)) {
                lifecycle::shutdown(plugin, &shared, false).await;
            }
            restore_plugins(&shared, &old.active);
            return Err(problems.join("; "));
        }

        let new = Arc::new(new);
        let retired: Vec<Arc<ActivePlugin>> = old
            .active
            .iter()
            .filter(|o| !new.active.iter().any(|n| Arc::ptr_eq(o, n)))
            .cloned()
            .collect();
        let summary = summarize(old, &new, &retired);
        restore_plugins(&shared, &new.active);
        {
            let _on_plugin_runtime = self.plugin_runtime.enter();
            shared.hooks.install(&new.active);
        }
        let new_app = Arc::new(App::new(shared.clone(), new.clone()));
        shared.attach_app(&new_app);
        self.apps.store(new_app);
        for plugin in new.active.iter().filter(|p| is_new(p)) {
            shared.hooks.observe(HookEvent::PluginLoaded, None, || {
                json!({"plugin": plugin.manifest.name, "version": plugin.manifest.version, "file": plugin.file.display().to_string()})
            });
        }
        self.restart_tasks(&new.active).await;
        self.retire(old_app, retired, &new);
        crate::server::request_line::set_enabled(loaded.config.server.request_lines);

        let mut message = summary;
        if !notes.is_empty() {
            message.push_str("; ");
            message.push_str(&notes.join("; "));
        }
        Ok(message)
    }

    /// Stops `retired` once the requests the old app was serving are done (or
    /// after the grace period).
    fn retire(&self, old_app: Arc<App>, retired: Vec<Arc<ActivePlugin>>, new: &Registry) {
        if retired.is_empty() {
            return;
        }
        let still_named: HashSet<String> =
            new.active.iter().map(|p| p.manifest.name.clone()).collect();
        let grace = self.grace;
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + grace;
            // Each request in flight holds the app it began on.
            while Arc::strong_count(&old_app) > 1 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let shared = old_app.shared.clone();
            drop(old_app);
            for plugin in retired {
                // A replaced plugin's processes belong to its successor now.
                let release = !still_named.contains(&plugin.manifest.name);
                lifecycle::shutdown(&plugin, &shared, release).await;
            }
        });
    }
}

/// Makes `active` exactly the plugins that service calls and status reach.
fn restore_plugins(shared: &Shared, active: &[Arc<ActivePlugin>]) {
    shared
        .plugins
        .retain(|name, _| active.iter().any(|p| p.manifest.name == *name));
    for plugin in active {
        shared
            .plugins
            .insert(plugin.manifest.name.clone(), plugin.clone());
    }
    shared
        .services
        .retain(|_, provider| active.iter().any(|p| p.manifest.name == *provider));
}

/// What makes a reload fail: a plugin that failed to start, or a file refused
/// now that was not refused before (a broken new file or a broken update).
fn new_problems(old: &Registry, new: &Registry) -> Vec<String> {
    new.entries
        .iter()
        .filter(|entry| matches!(entry.status, Status::Failed | Status::Refused))
        .filter(|entry| {
            !old.entries.iter().any(|before| {
                before.file == entry.file
                    && before.status == entry.status
                    && before.reason == entry.reason
            })
        })
        .map(|entry| {
            format!(
                "{} ({}) {}: {}",
                entry.display_name(),
                entry.file.display(),
                entry.status.as_str(),
                entry.reason.as_deref().unwrap_or("no reason given")
            )
        })
        .collect()
}

/// `added a, b; replaced c; removed d; kept 7`.
fn summarize(old: &Registry, new: &Registry, retired: &[Arc<ActivePlugin>]) -> String {
    let names = |plugins: &mut dyn Iterator<Item = &Arc<ActivePlugin>>| -> Vec<String> {
        plugins.map(|p| p.manifest.name.clone()).collect()
    };
    let was_active = |name: &str| old.active.iter().any(|p| p.manifest.name == name);
    let is_active = |name: &str| new.active.iter().any(|p| p.manifest.name == name);
    let fresh: Vec<&Arc<ActivePlugin>> = new
        .active
        .iter()
        .filter(|p| !old.active.iter().any(|o| Arc::ptr_eq(o, p)))
        .collect();
    let added = names(
        &mut fresh
            .iter()
            .copied()
            .filter(|p| !was_active(&p.manifest.name)),
    );
    let replaced = names(
        &mut fresh
            .iter()
            .copied()
            .filter(|p| was_active(&p.manifest.name)),
    );
    let removed = names(&mut retired.iter().filter(|p| !is_active(&p.manifest.name)));
    let kept = new.active.len() - fresh.len();
    let mut parts = Vec::new();
    for (what, list) in [
        ("added", added),
        ("replaced", replaced),
        ("removed", removed),
    ] {
        if !list.is_empty() {
            parts.push(format!("{what} {}", list.join(", ")));
        }
    }
    parts.push(format!("kept {kept}"));
    parts.join("; ")
}

/// The sections a reload does not apply, when they changed.
fn needs_restart(running: &Config, read: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    // `server.request_lines` is applied by the reload itself.
    let mut server = read.server.clone();
    server.request_lines = running.server.request_lines;
    if running.server != server {
        changed.push("server");
    }
    if running.logging != read.logging {
        changed.push("logging");
    }
    if running.security != read.security {
        changed.push("security");
    }
    if running.http != read.http {
        changed.push("http");
    }
    if running.hooks != read.hooks {
        changed.push("hooks");
    }
    changed
        .into_iter()
        .map(|section| format!("[{section}] changed: restart ccproxy to apply it"))
        .collect()
}
