//! Starting plugins in dependency order, running their tasks, and stopping them
//! in reverse order.

use std::{
    collections::HashSet,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use ccproxy_plugin_abi::HookEvent;
use ccproxy_plugin_abi::protocol::{InitializeInput, InitializeOutput, TaskInput, capability, ops};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{
    handle::PluginHandle,
    registry::{ActivePlugin, Prepared, Registry, Status, dependencies_of},
};
use crate::services::{Shared, host_handle_for};

/// How long `plugin.initialize` may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `plugin.shutdown` may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Instantiates and initialises every prepared plugin in order. A plugin whose
/// initialisation fails is marked failed, and so is everything depending on it;
/// the rest keep going.
pub async fn initialize_all(prepared: Prepared, shared: &Arc<Shared>) -> Registry {
    initialize_reusing(prepared, shared, &[]).await
}

/// [`initialize_all`] on a reload: a plugin of `running` with the same image
/// and the same config is kept as it is (not initialised again); any other
/// prepared plugin gets a new instance.
pub async fn initialize_reusing(
    mut prepared: Prepared,
    shared: &Arc<Shared>,
    running: &[Arc<ActivePlugin>],
) -> Registry {
    let mut active = Vec::new();
    let mut failed: HashSet<String> = HashSet::new();
    let order = prepared.order.clone();
    let mut initialized_order = Vec::new();
    for name in &order {
        let Some(library) = prepared.libraries.remove(name) else {
            continue;
        };
        let deps = dependencies_of(&library.manifest, &prepared.services);
        if let Some(dep) = deps.iter().find(|d| failed.contains(*d)) {
            mark(
                &mut prepared,
                name,
                Status::Disabled,
                format!("dependency {dep} failed to initialise"),
            );
            failed.insert(name.clone());
            continue;
        }
        let config = prepared
            .entry_mut(name)
            .and_then(|e| e.config.clone())
            .unwrap_or(Value::Null);
        if let Some(kept) = running.iter().find(|plugin| {
            plugin.manifest.name == *name
                && plugin.image == library.image
                && plugin.config == config
        }) {
            tracing::debug!(plugin = %name, "plugin unchanged; kept running");
            shared.plugins.insert(name.clone(), kept.clone());
            initialized_order.push(name.clone());
            active.push(kept.clone());
            continue;
        }
        let data_dir = shared.data_dir.join("plugins").join(name);
        // Private, like the folders above it that this creates: plugins keep
        // stores and credentials there.
        let created = std::os::unix::fs::DirBuilderExt::mode(
            std::fs::DirBuilder::new().recursive(true),
            0o700,
        )
        .create(&data_dir);
        if let Err(error) = created {
            tracing::warn!(plugin = %name, dir = %data_dir.display(), %error, "cannot create the plugin's data folder");
        }
        let handle = match PluginHandle::instantiate(&library, host_handle_for(name, shared)) {
            Ok(handle) => handle,
            Err(error) => {
                mark(
                    &mut prepared,
                    name,
                    Status::Failed,
                    format!("instantiation failed: {error}"),
                );
                failed.insert(name.clone());
                continue;
            }
        };
        let input = InitializeInput {
            plugin_name: name.clone(),
            config,
            data_dir: data_dir.to_string_lossy().into_owned(),
            config_dir: shared.config_dir.to_string_lossy().into_owned(),
            capabilities: [
                capability::SLEEP,
                capability::HTTP,
                capability::SERVICES,
                capability::EMIT,
                capability::SPAWN,
                capability::STREAM_ROUTES,
                capability::PUBLIC_ROUTES,
                capability::HOOK_BODIES,
                capability::HTTP_STREAM,
                capability::BLOCKING,
                capability::PROCESS,
                capability::PLUGINS_STATUS,
                capability::FORMAT_ADAPTERS,
                capability::CONFIGURED_ENDPOINTS,
                capability::ROUTE_USAGE,
                capability::PROVIDER_RETRIES,
            ]
            .map(str::to_owned)
            .to_vec(),
            bypass: shared.config.server.bypass_mode,
        };
        let plugin = Arc::new(ActivePlugin {
            manifest: library.manifest.clone(),
            file: library.path.clone(),
            image: library.image.clone(),
            api_version: library.api_version.clone(),
            handle,
            initialized: Default::default(),
            config: input.config.clone(),
            configured: Default::default(),
            provider_retries: Default::default(),
        });
        // Registered before initialisation so the plugin's own service calls
        // during `init` resolve, but services only once it is up.
        shared.plugins.insert(name.clone(), plugin.clone());
        match plugin
            .handle
            .call_with_timeout::<ops::Initialize>(&input, Vec::new(), INIT_TIMEOUT)
            .await
        {
            Ok(output) => {
                accept_configured_endpoints(&plugin, output.meta);
                plugin.initialized.store(true, Ordering::Release);
                for service in &plugin.manifest.provides {
                    if prepared.services.get(service) == Some(name) {
                        shared.services.insert(service.clone(), name.clone());
                    }
                }
                tracing::info!(plugin = %name, version = %plugin.manifest.version, file = %plugin.file.display(), "plugin loaded");
                initialized_order.push(name.clone());
                active.push(plugin);
            }
            Err(error) => {
                shared.plugins.remove(name);
                mark(
                    &mut prepared,
                    name,
                    Status::Failed,
                    format!("initialisation failed: {error}"),
                );
                failed.insert(name.clone());
            }
        }
    }
    Registry {
        entries: prepared.entries,
        active,
        order: initialized_order,
    }
}

/// Keeps what a configured provider serves (plugin API 1.3). Only a plugin
/// whose manifest says `configured_provider` may add endpoints: anything else
/// answering them is reported and ignored, so a manifest stays the whole
/// truth for every other plugin.
fn accept_configured_endpoints(plugin: &ActivePlugin, output: Option<InitializeOutput>) {
    let Some(output) = output else {
        return;
    };
    if output.provider_retries && plugin.manifest.provider.is_some() {
        plugin.provider_retries.store(true, Ordering::Relaxed);
    }
    let Some(served) = output.configured_endpoints else {
        return;
    };
    let name = &plugin.manifest.name;
    if !plugin
        .manifest
        .provider
        .as_ref()
        .is_some_and(|spec| spec.configured)
    {
        tracing::warn!(plugin = %name, "plugin answered configured endpoints but its manifest does not declare `configured_provider`; ignored");
        return;
    }
    tracing::info!(plugin = %name, endpoints = served.provider_endpoints.len(), route_groups = served.routes.len(), "configured provider endpoints");
    let _ = plugin.configured.set(served);
}

fn mark(prepared: &mut Prepared, name: &str, status: Status, reason: String) {
    tracing::warn!(plugin = %name, status = status.as_str(), "plugin {name}: {reason}");
    if let Some(entry) = prepared.entry_mut(name) {
        entry.status = status;
        entry.reason = Some(reason);
    }
}

/// Starts every enabled task of `plugins` on its interval until `stop` changes.
/// A run never overlaps the previous run of the same task. Await the returned
/// handles after signalling `stop`: a run in progress finishes first, so no
/// task is still inside a plugin when that plugin shuts down.
pub fn spawn_tasks(
    plugins: &[Arc<ActivePlugin>],
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for plugin in plugins {
        for task in plugin.manifest.tasks.iter().filter(|t| t.enabled) {
            let interval_seconds = task
                .interval_key
                .as_ref()
                .and_then(|key| plugin.config.get(key))
                .and_then(Value::as_f64)
                .unwrap_or(task.interval_seconds);
            if !(interval_seconds.is_finite() && interval_seconds > 0.0) {
                tracing::warn!(plugin = %plugin.manifest.name, task = %task.name, "task interval must be a positive number of seconds; task not scheduled");
                continue;
            }
            let period = Duration::from_secs_f64(interval_seconds.max(0.01));
            let plugin = plugin.clone();
            let task = task.clone();
            let mut stop = stop.clone();
            handles.push(tokio::spawn(async move {
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                if !task.run_at_start {
                    interval.tick().await;
                }
                let mut run = 0u64;
                loop {
                    tokio::select! {
                        _ = interval.tick() => {}
                        _ = stop.changed() => break,
                    }
                    let input = TaskInput {
                        task: task.name.clone(),
                        run,
                    };
                    let limit = period.max(Duration::from_secs(30));
                    if let Err(error) = plugin
                        .handle
                        .call_with_timeout::<ops::Task>(&input, Vec::new(), limit)
                        .await
                    {
                        tracing::warn!(plugin = %plugin.manifest.name, task = %task.name, %error, "task run failed");
                    }
                    run += 1;
                }
            }));
        }
    }
    handles
}

/// Shuts plugins down in reverse initialisation order. After each one,
/// `plugin.unloaded` is delivered to the plugins still running before the
/// next one stops.
pub async fn shutdown_all(registry: &Registry, shared: &Shared) {
    for plugin in registry.active.iter().rev() {
        shutdown(plugin, shared, true).await;
    }
}

/// Asks `plugin` to stop. With `release`, its child processes and open
/// upstream streams end with it; without, they are left to the instance
/// that replaced it under the same name (a reload).
pub async fn shutdown(plugin: &ActivePlugin, shared: &Shared, release: bool) {
    let name = &plugin.manifest.name;
    match plugin
        .handle
        .call_with_timeout::<ops::Shutdown>(&json!({}), Vec::new(), SHUTDOWN_TIMEOUT)
        .await
    {
        Ok(_) => tracing::info!(plugin = %name, "plugin stopped"),
        Err(error) => tracing::warn!(plugin = %name, %error, "plugin shutdown failed"),
    }
    if release {
        shared.release_plugin(name);
    }
    shared
        .hooks
        .observe(HookEvent::PluginUnloaded, None, || json!({"plugin": name}));
    shared.hooks.drain(Duration::from_secs(1)).await;
}
