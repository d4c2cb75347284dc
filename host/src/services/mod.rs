//! What the host offers plugins through their `Context`, and the shared state
//! behind it.

mod host_impl;

use std::{path::PathBuf, sync::Arc};

use dashmap::DashMap;

pub use host_impl::host_handle_for;

use crate::{
    config::Config, hooks::HookBus, plugins::registry::ActivePlugin, upstream::UpstreamClient,
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
        })
    }
}
