//! `ccproxy serve`: load plugins, serve until SIGINT/SIGTERM, stop in order.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;
use tokio::sync::watch;

use super::exit;
use crate::{
    config::Loaded,
    paths,
    plugins::{
        handle, lifecycle,
        registry::{self, Status},
    },
    server::{self, App},
    services::Shared,
    telemetry,
};
use ccproxy_plugin_abi::HookEvent;

/// Runs the server; returns when it has shut down.
pub(super) fn run(loaded: Loaded) -> anyhow::Result<u8> {
    let started = Instant::now();
    telemetry::init(&loaded.config)?;
    match &loaded.file {
        Some(file) => tracing::info!(file = %file.display(), "config loaded"),
        None => tracing::info!("no config file found; using defaults, environment and flags"),
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ccproxy")
        .build()
        .context("cannot start the async runtime")?;
    // Plugin code runs on its own runtime: a plugin that blocks its thread
    // holds a plugin worker, and the server's keep accepting and answering
    // `/health*` (docs/ARCHITECTURE.md, "Plugin calls").
    let plugin_runtime = handle::build_plugin_runtime(loaded.config.server.plugin_worker_threads)
        .context("cannot start the plugin runtime")?;
    handle::use_plugin_runtime(plugin_runtime.handle().clone());
    let served = runtime.block_on(serve(loaded, started, plugin_runtime.handle()));
    // A plugin thread still blocked must not hold the process at exit.
    plugin_runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    Ok(exit::OK)
}

async fn serve(
    loaded: Loaded,
    started: Instant,
    plugin_runtime: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let config = loaded.config;
    let address = format!("{}:{}", config.server.host, config.server.port);
    // Bind before loading plugins so a busy port fails fast, before any plugin
    // initialises; the "listening" line is only printed once everything is ready.
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|error| {
            let advice = match error.kind() {
                std::io::ErrorKind::AddrInUse => "pick another --port or stop what uses it",
                std::io::ErrorKind::PermissionDenied => {
                    "ports below 1024 need privileges; pick another --port"
                }
                _ => "--host (server.host) must be an address or name of this machine",
            };
            anyhow::anyhow!("cannot listen on {address}: {error}; {advice}")
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;

    let search = registry::search_path(&config);
    let grace = config.server.shutdown_grace();
    let shared = Shared::new(config, paths::data_dir(), paths::config_dir());
    let prepared = registry::prepare(&shared.config, &search);
    let registry = Arc::new(lifecycle::initialize_all(prepared, &shared).await);
    {
        // The observer task calls plugin hooks one after another: it lives on
        // the plugin runtime, so those calls need no hop.
        let _on_plugin_runtime = plugin_runtime.enter();
        shared.hooks.install(&registry.active);
    }

    let hooks = &shared.hooks;
    hooks.observe(HookEvent::AppStartup, None, || json!({"phase": "startup"}));
    for plugin in &registry.active {
        hooks.observe(HookEvent::PluginLoaded, None, || {
            json!({"plugin": plugin.manifest.name, "version": plugin.manifest.version, "file": plugin.file.display().to_string()})
        });
    }
    for entry in registry
        .entries
        .iter()
        .filter(|e| e.status != Status::Active)
    {
        hooks.observe(HookEvent::PluginError, None, || {
            json!({"plugin": entry.display_name(), "status": entry.status.as_str(), "error": entry.reason, "file": entry.file.display().to_string()})
        });
    }

    let app = Arc::new(App::new(shared.clone(), registry.clone()));
    shared.attach_app(&app);
    let (stop_tasks, tasks_stopped) = watch::channel(false);
    let tasks = {
        // Plugin tasks run where plugin code does.
        let _on_plugin_runtime = plugin_runtime.enter();
        lifecycle::spawn_tasks(&registry.active, tasks_stopped)
    };

    // Handlers are installed before the "listening" line, so a signal sent as
    // soon as it appears already shuts down gracefully.
    let shutdown = server::shutdown_signal();
    let not_active = registry
        .entries
        .iter()
        .filter(|e| e.status != Status::Active)
        .count();
    tracing::info!(
        plugins = registry.active.len(),
        not_active,
        ready_ms = started.elapsed().as_secs_f64() * 1e3,
        "listening on {}",
        server::describe(bound)
    );
    hooks.observe(
        HookEvent::AppReady,
        None,
        || json!({"address": bound.to_string()}),
    );

    server::serve(app, listener, shutdown, grace).await;

    let _ = stop_tasks.send(true);
    // A task run in progress finishes before its plugin is shut down.
    let _ = tokio::time::timeout(grace, futures_util::future::join_all(tasks)).await;
    hooks.observe(
        HookEvent::AppShutdown,
        None,
        || json!({"phase": "shutdown"}),
    );
    // Observers hear `app.shutdown` before the plugins behind them stop.
    hooks.drain(Duration::from_secs(2)).await;
    lifecycle::shutdown_all(&registry, &shared).await;
    tracing::info!("stopped");
    Ok(())
}
