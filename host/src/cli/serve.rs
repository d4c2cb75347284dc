//! `ccproxy serve`: load plugins, serve until SIGINT/SIGTERM (reloading on
//! SIGHUP), tell systemd how it goes, stop in order.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::exit;
use crate::{
    config::{Loaded, Sources},
    paths,
    plugins::{
        handle, lifecycle,
        registry::{self, Status},
    },
    server::{self, App, CurrentApp},
    service::{notify, reload::Reloader},
    services::Shared,
    telemetry,
};
use anyhow::Context as _;
use ccproxy_plugin_abi::HookEvent;
use serde_json::json;

/// Runs the server; returns when it has shut down.
pub(super) fn run(loaded: Loaded, sources: Sources) -> anyhow::Result<u8> {
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
    let served = runtime.block_on(serve(loaded, sources, started, plugin_runtime.handle()));
    // A plugin thread still blocked must not hold the process at exit.
    plugin_runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    Ok(exit::OK)
}

async fn serve(
    loaded: Loaded,
    sources: Sources,
    started: Instant,
    plugin_runtime: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    // SIGHUP means "reload" from the start: its default action would kill
    // the server while plugins load.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
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
    let apps = Arc::new(CurrentApp::from(app));
    let reloader = Arc::new(Reloader::new(
        sources,
        apps.clone(),
        plugin_runtime.clone(),
        bound,
    ));
    reloader.start_tasks().await;

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
    super::banner::print(bound, &registry, &shared.config);
    server::request_line::set_enabled(shared.config.server.request_lines);
    hooks.observe(
        HookEvent::AppReady,
        None,
        || json!({"address": bound.to_string()}),
    );
    notify::ready(&format!("serving on {}", server::describe(bound)));
    let watchdog = notify::spawn_watchdog();
    let reloads = tokio::spawn({
        let reloader = reloader.clone();
        async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP received: reloading config and plugins");
                reloader.reload().await;
            }
        }
    });

    let shutdown = async move {
        shutdown.await;
        notify::stopping();
    };
    server::serve(apps.clone(), listener, shutdown, grace).await;

    reloads.abort();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    // A task run in progress finishes before its plugin is shut down.
    reloader.stop().await;
    hooks.observe(
        HookEvent::AppShutdown,
        None,
        || json!({"phase": "shutdown"}),
    );
    // Observers hear `app.shutdown` before the plugins behind them stop.
    hooks.drain(Duration::from_secs(2)).await;
    lifecycle::shutdown_all(&apps.load().registry, &shared).await;
    tracing::info!("stopped");
    Ok(())
}
