//! What the host offers plugins through their `Context`, and the shared state
//! behind it.

mod blocking;
mod host_impl;
mod http;
mod process;

use std::{
    path::PathBuf,
    sync::{Arc, RwLock, Weak},
};

use dashmap::DashMap;

pub use host_impl::host_handle_for;

use crate::{
    config::Config, hooks::HookBus, plugins::registry::ActivePlugin, server::App,
    upstream::UpstreamClient,
};

/// State shared by the server, the plugins' host handles and the lifecycle.
#[derive(Debug)]
pub struct Shared {
    /// The effective config.
    pub config: Config,
    /// Initialised plugins by name.
    pub plugins: DashMap<String, Arc<ActivePlugin>>,
    /// Which plugin provides each service.
    pub services: DashMap<String, String>,
    /// The hook pipeline.
    pub hooks: Arc<HookBus>,
    /// The shared upstream client.
    pub upstream: UpstreamClient,
    /// Where plugins keep data (`<data dir>/plugins/<name>`).
    pub data_dir: PathBuf,
    /// The host's config directory.
    pub config_dir: PathBuf,
    /// What each plugin holds open through its host handle (streamed HTTP
    /// answers, child processes), by plugin name.
    facilities: DashMap<String, Arc<Facilities>>,
    /// The running server, for `host.plugins.status`; set once it is built,
    /// and again after each reload.
    app: RwLock<Weak<App>>,
    /// The runtime `Shared` was made on (the server's), where the host's own
    /// I/O for plugins runs (see `host_impl::on_server_runtime`).
    server_runtime: Option<tokio::runtime::Handle>,
}

/// What one plugin holds open through its host handle.
#[derive(Debug, Default)]
struct Facilities {
    http_streams: Arc<http::HttpStreams>,
    processes: process::Processes,
}

impl Shared {
    /// Builds the shared state for `config`.
    pub fn new(config: Config, data_dir: PathBuf, config_dir: PathBuf) -> Arc<Self> {
        let hooks = Arc::new(HookBus::new(config.hooks.observer_queue_capacity));
        let upstream = UpstreamClient::new(&config.http);
        Arc::new(Self {
            config,
            plugins: DashMap::new(),
            services: DashMap::new(),
            hooks,
            upstream,
            data_dir,
            config_dir,
            facilities: DashMap::new(),
            app: RwLock::new(Weak::new()),
            server_runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// Makes `app` the server `host.plugins.status` describes.
    pub fn attach_app(&self, app: &Arc<App>) {
        *self.app.write().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(app);
    }

    /// The running server, while it runs.
    pub fn app(&self) -> Option<Arc<App>> {
        self.app.read().unwrap_or_else(|e| e.into_inner()).upgrade()
    }

    /// Releases what plugin `plugin` holds open: kills its child processes
    /// and drops its streamed HTTP answers (the plugin has stopped).
    pub fn release_plugin(&self, plugin: &str) {
        if let Some((_, facilities)) = self.facilities.remove(plugin) {
            facilities.processes.kill_all();
        }
    }

    /// The facilities of plugin `plugin`, created on first use.
    fn facilities_of(&self, plugin: &str) -> Arc<Facilities> {
        self.facilities
            .entry(plugin.to_owned())
            .or_default()
            .value()
            .clone()
    }
}
