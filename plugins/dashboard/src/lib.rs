//! # dashboard: a page that shows what the proxy is doing
//!
//! Serves `GET /dashboard` (and `/dashboard/`): one page, with its script,
//! style sheet and icon embedded in this library (no build step, no CDN, no
//! external fonts), that reads the `/logs` API of the `analytics` plugin and
//! the host's `/plugins/status`:
//!
//! - a live table of requests: the last `initial_rows` from
//!   `GET /logs/query`, then each finished request as `GET /logs/stream`
//!   sends it (read with `fetch()` and a stream reader, since `EventSource`
//!   cannot send the client token; reconnected with backoff);
//! - totals and tokens, cost and latency over time, drawn as SVG from
//!   `GET /logs/analytics`;
//! - filters by provider and model, applied to all three;
//! - the health of every plugin from `GET /plugins/status`.
//!
//! The page and its files are `public` routes, as in the original (a browser
//! loading a page sends no token); the data routes are not: when the proxy
//! answers 401, the page asks for the client token once, keeps it in the
//! tab's `sessionStorage` (or `localStorage`, `token_storage = "local"`) and
//! sends it as `Authorization: Bearer`. Every file goes out with a strict
//! `Content-Security-Policy` (same origin only, no inline script or style),
//! `nosniff` and an `ETag`; see `files`.
//!
//! Build it with `cargo build -p ccproxy-plugin-dashboard` (the host finds
//! bundled plugins next to its binary) together with `storage` and
//! `analytics`, then open `http://127.0.0.1:8000/dashboard`. At startup the
//! proxy logs:
//!
//! ```text
//! INFO plugin: dashboard serving /dashboard (6 files, 42 KiB), data from /logs and /plugins/status plugin="dashboard"
//! ```
//!
//! README.md beside this crate lists the config keys.
#![forbid(unsafe_code)]

mod files;

use ccproxy_plugin_abi::{Value, prelude::*, protocol::capability};
use serde::{Deserialize, Serialize};

use crate::files::{Files, PageSettings};

/// The plugin whose `/logs` routes feed the page.
const ANALYTICS_PLUGIN: &str = "analytics";

/// Where the page keeps the client token it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TokenStorage {
    /// `sessionStorage`: forgotten when the tab closes.
    Session,
    /// `localStorage`: kept by the browser for this origin.
    Local,
}

impl TokenStorage {
    fn as_str(self) -> &'static str {
        match self {
            TokenStorage::Session => "session",
            TokenStorage::Local => "local",
        }
    }
}

/// `[plugins.dashboard]`. `mount_static` is the original's only key; the
/// others are new, since the original never shipped its page. `enabled` is
/// the host's own key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Off by default (opt-in, as the original's): the host loads it only
    /// once the user sets it true. Read by the host, not the plugin.
    #[allow(dead_code)]
    enabled: bool,
    /// Serve the page and its files (off: they answer 404).
    mount_static: bool,
    /// Where the page keeps the client token.
    token_storage: TokenStorage,
    /// The hours the charts and totals cover when the page opens (1..=168,
    /// the range `/logs/analytics` takes).
    hours: u32,
    /// Rows read from `/logs/query` when the page opens.
    initial_rows: u32,
    /// Rows the live table keeps; older ones fall off the bottom.
    max_rows: u32,
    /// Seconds between refreshes of the totals, charts and plugin health
    /// (they are also refreshed a moment after each new request).
    refresh_seconds: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: false,
            mount_static: true,
            token_storage: TokenStorage::Session,
            hours: 24,
            initial_rows: 100,
            max_rows: 500,
            refresh_seconds: 30,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), PluginError> {
        if !(1..=168).contains(&self.hours) {
            return Err(PluginError::invalid(format!(
                "hours must be from 1 to 168 (what /logs/analytics covers), not {}",
                self.hours
            )));
        }
        if !(1..=10_000).contains(&self.initial_rows) {
            return Err(PluginError::invalid(format!(
                "initial_rows must be from 1 to 10000 (what /logs/query returns at once), not {}",
                self.initial_rows
            )));
        }
        if !(self.initial_rows..=10_000).contains(&self.max_rows) {
            return Err(PluginError::invalid(format!(
                "max_rows must be from initial_rows ({}) to 10000, not {}",
                self.initial_rows, self.max_rows
            )));
        }
        if !(1..=3600).contains(&self.refresh_seconds) {
            return Err(PluginError::invalid(format!(
                "refresh_seconds must be from 1 to 3600, not {}",
                self.refresh_seconds
            )));
        }
        Ok(())
    }

    fn page_settings(&self) -> PageSettings {
        PageSettings {
            token_storage: self.token_storage.as_str(),
            hours: self.hours,
            initial_rows: self.initial_rows,
            max_rows: self.max_rows,
            refresh_seconds: self.refresh_seconds,
        }
    }
}

/// The plugin: its config and the files it serves.
struct Dashboard {
    ctx: Context,
    config: Config,
    files: Files,
}

impl Plugin for Dashboard {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::new("dashboard", env!("CARGO_PKG_VERSION"))
            .description("a dashboard page at /dashboard: live requests, tokens, cost and latency over time, plugin health")
            // Public as the original's: a browser opening the page sends no
            // token. The data it shows comes from routes that need one.
            .route(
                "/dashboard",
                [
                    Route::get("/").public(),
                    Route::get("/favicon.svg").public(),
                    Route::get("/assets/{*file}").public(),
                ],
            )
            // A group's "/" route is its prefix itself, so the trailing
            // slash is a route of its own.
            .route("", [Route::get("/dashboard/").public()])
            .config_key("mount_static", "serve the page and its files (off: 404)")
            .config_key(
                "token_storage",
                "where the page keeps the client token: \"session\" (the tab) or \"local\" (the browser)",
            )
            .config_key(
                "hours",
                "hours covered by the charts and totals when the page opens (1 to 168)",
            )
            .config_key("initial_rows", "rows read from /logs/query when the page opens")
            .config_key("max_rows", "rows the live table keeps")
            .config_key(
                "refresh_seconds",
                "seconds between refreshes of totals, charts and plugin health",
            )
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        config.validate()?;
        let files = Files::new(&config.page_settings());
        if config.mount_static {
            info!(
                "dashboard serving /dashboard ({} files, {} KiB), data from /logs and /plugins/status",
                files.len(),
                files.total_bytes().div_ceil(1024),
            );
        } else {
            info!("dashboard page switched off (mount_static = false)");
        }
        Ok(Self { ctx, config, files })
    }

    async fn on_route(&self, req: Request) -> Result<Response, PluginError> {
        if !self.config.mount_static {
            return Ok(Response::text(
                404,
                "the dashboard is switched off (plugins.dashboard.mount_static = false)",
            ));
        }
        Ok(self
            .files
            .answer(&req.path, req.headers.get("if-none-match")))
    }

    async fn on_health(&self) -> Health {
        let mut details = json!({
            "mount_static": self.config.mount_static,
            "files": self.files.len(),
            "bytes": self.files.total_bytes(),
        });
        let analytics = analytics_status(&self.ctx).await;
        details["analytics"] = Value::from(analytics.clone());
        match analytics.as_deref() {
            // Without the /logs routes the page loads but has nothing to show.
            Some(status) if status != "active" => {
                details["reason"] = Value::from(format!(
                    "the {ANALYTICS_PLUGIN} plugin is {status}, so the page has no data: enable the storage and {ANALYTICS_PLUGIN} plugins"
                ));
                Health::with(HealthStatus::Degraded, details)
            }
            _ => Health::with(HealthStatus::Healthy, details),
        }
    }
}

/// The status of the `analytics` plugin in `/plugins/status` (`active`,
/// `disabled` …, or `missing`), or `None` when the host cannot say (no
/// `plugins_status` capability, before plugin API 1.2).
async fn analytics_status(ctx: &Context) -> Option<String> {
    if !ctx.has_capability(capability::PLUGINS_STATUS) {
        return None;
    }
    let status = match ctx.plugins_status().await {
        Ok(status) => status,
        Err(error) => {
            debug!("plugin status unavailable: {error}");
            return None;
        }
    };
    Some(plugin_status(&status, ANALYTICS_PLUGIN).unwrap_or_else(|| "missing".to_owned()))
}

/// The `status` of plugin `name` in a `/plugins/status` document.
fn plugin_status(status: &Value, name: &str) -> Option<String> {
    status
        .get("plugins")?
        .as_array()?
        .iter()
        .find(|plugin| plugin.get("name").and_then(Value::as_str) == Some(name))?
        .get("status")?
        .as_str()
        .map(str::to_owned)
}

export_plugin!(Dashboard);

#[cfg(test)]
mod tests;
