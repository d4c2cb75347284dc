//! The host's own endpoints: health and the `/plugins` family.

use std::{
    sync::atomic::Ordering,
    time::{Duration, SystemTime},
};

use ccproxy_plugin_abi::{manifest::RouteGroup, protocol::ops};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{
    App,
    response::{Body, error_response, json_bytes, json_response},
    router::CoreRoute,
};
use crate::plugins::{
    discover::{Origin, no_bundled_plugins_warning},
    registry::{ActivePlugin, Status, executable_dir},
};

/// A panic within this window makes a plugin unhealthy.
const PANIC_WINDOW: Duration = Duration::from_secs(300);
/// How long a plugin's health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/health` warns after an observed hook event was dropped.
const RECENT_DROPS: Duration = Duration::from_secs(300);

/// Answers core route `route`.
pub async fn handle(app: &App, route: CoreRoute, params: &[(String, String)]) -> Response<Body> {
    match route {
        CoreRoute::Health => {
            let unhealthy = unhealthy_reports(app).await;
            health(app, &unhealthy)
        }
        CoreRoute::Live => json_response(
            StatusCode::OK,
            &json!({"status": "pass", "version": env!("CARGO_PKG_VERSION"), "output": "alive"}),
        ),
        CoreRoute::Ready => {
            let ready = app.ready.load(Ordering::Acquire);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(
                status,
                &json!({
                    "status": if ready { "pass" } else { "fail" },
                    "version": env!("CARGO_PKG_VERSION"),
                    "output": if ready { format!("ready: {} plugins active", app.registry.active.len()) } else { "shutting down".to_owned() },
                }),
            )
        }
        CoreRoute::Plugins => plugins(app),
        CoreRoute::PluginsStatus => json_response(StatusCode::OK, &plugins_status(app)),
        CoreRoute::PluginHealth => {
            let name = params
                .iter()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            plugin_health(app, name).await
        }
    }
}

fn recent_panic(plugin: &ActivePlugin) -> Option<String> {
    let last = plugin.handle.stats.last_panic.lock().ok()?.clone()?;
    let age = SystemTime::now().duration_since(last.0).unwrap_or_default();
    (age < PANIC_WINDOW).then_some(last.1)
}

/// The last call plugin `plugin` gave up on after its timeout, when within
/// the same window as panics.
fn recent_timeout(plugin: &ActivePlugin) -> Option<String> {
    let last = plugin.handle.stats.last_timeout.lock().ok()?.clone()?;
    let age = SystemTime::now().duration_since(last.0).unwrap_or_default();
    (age < PANIC_WINDOW).then_some(last.1)
}

/// How long `/health` reuses the plugins' own health reports.
const REPORTS_TTL: Duration = Duration::from_secs(2);
/// How long `/health` waits for one plugin's report; one that does not answer
/// in time is left out (`/plugins/NAME/health` says more).
const REPORT_TIMEOUT: Duration = Duration::from_millis(500);

/// The active plugins that report themselves `unhealthy` (a store that
/// cannot be reached, say), as `name: reason`. Asked concurrently, at most
/// every [`REPORTS_TTL`]: a probe every second costs the plugins nothing.
async fn unhealthy_reports(app: &App) -> Vec<String> {
    let mut cache = app.health_reports.lock().await;
    if let Some((at, reports)) = &*cache
        && at.elapsed() < REPORTS_TTL
    {
        return reports.clone();
    }
    let asked = app.registry.active.iter().map(|plugin| async move {
        let reply = plugin
            .handle
            .call_with_timeout::<ops::Health>(&json!({}), Vec::new(), REPORT_TIMEOUT)
            .await
            .ok()?;
        let report = reply.meta;
        (report.status == "unhealthy").then(|| {
            let reason = ["reason", "error"]
                .iter()
                .find_map(|key| report.details.get(key).and_then(Value::as_str));
            match reason {
                Some(reason) => format!("{}: {reason}", plugin.manifest.name),
                None => format!("{}: unhealthy", plugin.manifest.name),
            }
        })
    });
    let reports: Vec<String> = futures_util::future::join_all(asked)
        .await
        .into_iter()
        .flatten()
        .collect();
    *cache = Some((std::time::Instant::now(), reports.clone()));
    reports
}

fn health(app: &App, unhealthy: &[String]) -> Response<Body> {
    let inactive = app
        .registry
        .entries
        .iter()
        // A plugin switched off on purpose (config, opt-in) is no problem.
        .filter(|e| e.status != Status::Active && !e.on_purpose)
        .count();
    let panicking: Vec<&str> = app
        .registry
        .active
        .iter()
        .filter(|p| recent_panic(p).is_some())
        .map(|p| p.manifest.name.as_str())
        .collect();
    let counters = &app.shared.hooks.counters;
    let dropped = counters.dropped.load(Ordering::Relaxed);
    // Warn while drops are recent, not forever after one burst.
    let dropping = counters.dropped_within(RECENT_DROPS);
    // No bundled plugin at all is a broken install (a bare `cargo install`).
    let no_bundled = !app
        .registry
        .entries
        .iter()
        .any(|e| e.origin == Origin::Bundled);
    let plugin_status =
        if panicking.is_empty() && inactive == 0 && !no_bundled && unhealthy.is_empty() {
            "pass"
        } else {
            "warn"
        };
    let overall = if plugin_status == "pass" && !dropping {
        "pass"
    } else {
        "warn"
    };
    let mut output = Vec::new();
    if inactive > 0 {
        output.push(format!(
            "{inactive} plugin file(s) not active; see /plugins/status"
        ));
    }
    if !panicking.is_empty() {
        output.push(format!("recent panics in: {}", panicking.join(", ")));
    }
    if no_bundled {
        output.push(no_bundled_plugins_warning(executable_dir().as_deref()));
    }
    if !unhealthy.is_empty() {
        output.push(format!("unhealthy: {}", unhealthy.join("; ")));
    }
    let body = json!({
        "status": overall,
        "version": env!("CARGO_PKG_VERSION"),
        "serviceId": "ccproxy",
        "description": "ccproxy LLM API proxy",
        // Whether routes other than /health* and public plugin routes need
        // the client token: a page (the dashboard) asks for it up front
        // instead of learning it from a refused request. The 401 would say as much.
        "client_token_required": app.shared.config.security.auth_token.as_ref().is_some_and(|token| !token.is_empty()),
        "checks": {
            "plugins:active": [{
                "componentType": "component",
                "observedValue": app.registry.active.len(),
                "status": plugin_status,
                "output": output.join("; "),
            }],
            "hooks:dropped": [{
                "componentType": "component",
                "observedValue": dropped,
                "status": if dropping { "warn" } else { "pass" },
                "output": if dropping {
                    format!("{dropped} observed hook event(s) dropped, the last within {} minutes, because the queue was full; raise hooks.observer_queue_capacity or find the slow hook in /plugins/status", RECENT_DROPS.as_secs() / 60)
                } else if dropped > 0 {
                    format!("{dropped} observed hook event(s) dropped, none in the last {} minutes", RECENT_DROPS.as_secs() / 60)
                } else {
                    String::new()
                },
            }],
        },
    });
    json_bytes(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
        "application/health+json",
    )
}

fn plugins(app: &App) -> Response<Body> {
    let plugins: Vec<Value> = app
        .registry
        .entries
        .iter()
        .map(|entry| {
            json!({
                "name": entry.display_name(),
                // The seed's shape: every entry is a "plugin"; `kind` says which.
                "type": "plugin",
                "kind": entry.manifest.as_ref().map(|m| m.kind.as_str()),
                "status": entry.status.as_str(),
                "version": entry.manifest.as_ref().map(|m| m.version.clone()),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"plugins": plugins, "total": plugins.len()}),
    )
}

/// What `GET /plugins/status` shows, and plugins get from
/// `host.plugins.status`: every plugin file with its state, counters and hook
/// time, the services, the hook queue's counters and route conflicts.
pub fn plugins_status(app: &App) -> Value {
    let services: serde_json::Map<String, Value> = app
        .shared
        .services
        .iter()
        .map(|kv| (kv.key().clone(), Value::String(kv.value().clone())))
        .collect();
    let plugins: Vec<Value> = app
        .registry
        .entries
        .iter()
        .map(|entry| {
            let active = entry
                .manifest
                .as_ref()
                .filter(|_| entry.status == Status::Active)
                .and_then(|m| app.registry.get(&m.name));
            let mut value = json!({
                "name": entry.display_name(),
                "status": entry.status.as_str(),
                "reason": entry.reason,
                "file": entry.file.display().to_string(),
                "origin": entry.origin.as_str(),
                "api_version": entry.api_version,
                "initialized": active.is_some_and(|p| p.initialized.load(Ordering::Acquire)),
            });
            if let Some(manifest) = &entry.manifest {
                // A running plugin's routes include those its config added (plugin API 1.3).
                let groups: Vec<&RouteGroup> = match active {
                    Some(plugin) => plugin.route_groups().collect(),
                    None => manifest.routes.iter().collect(),
                };
                let provider_endpoints: Vec<Value> = match active {
                    Some(plugin) => plugin.provider_endpoints().map(|(native, e)| json!({"path": e.path, "format": e.format, "native_format": native})).collect(),
                    None => Vec::new(),
                };
                let extra = json!({
                    "version": manifest.version,
                    "type": manifest.kind.as_str(),
                    "description": manifest.description,
                    "dependencies": manifest.dependencies,
                    "provides": manifest.provides,
                    "requires": manifest.requires,
                    "optional_requires": manifest.optional_requires,
                    "routes": groups.iter().flat_map(|g| g.routes.iter().map(move |r| format!("{} {}", r.method, g.full_path(r)))).collect::<Vec<_>>(),
                    // Routes that need no client token (plugin API 1.2).
                    "public_routes": groups.iter().flat_map(|g| g.routes.iter().filter(|r| r.public).map(move |r| format!("{} {}", r.method, g.full_path(r)))).collect::<Vec<_>>(),
                    "hooks": manifest.hooks.iter().map(|h| json!({"name": h.name, "events": h.events, "priority": h.priority, "bodies": h.bodies})).collect::<Vec<_>>(),
                    "tasks": manifest.tasks.iter().map(|t| json!({"name": t.name, "interval_seconds": t.interval_seconds, "enabled": t.enabled})).collect::<Vec<_>>(),
                    "middleware": manifest.middleware.iter().map(|m| json!({"name": m.name, "layer": m.layer})).collect::<Vec<_>>(),
                    // Declared format adapters (plugin API 1.2); the endpoints mounted are under `adapter_endpoints`.
                    "format_adapters": manifest.format_adapters.iter().map(|a| json!({"from": a.from, "to": a.to, "priority": a.priority, "endpoint": a.endpoint})).collect::<Vec<_>>(),
                    "cli_safe": manifest.cli_safe,
                    "provider_endpoints": provider_endpoints,
                });
                merge(&mut value, extra);
            }
            if let Some(plugin) = active {
                let stats = &plugin.handle.stats;
                let hook_nanos = stats.hook_nanos.load(Ordering::Relaxed);
                let hook_calls = stats.hook_calls.load(Ordering::Relaxed);
                merge(
                    &mut value,
                    json!({
                        "calls": stats.calls.load(Ordering::Relaxed),
                        "errors": stats.errors.load(Ordering::Relaxed),
                        "panics": stats.panics.load(Ordering::Relaxed),
                        "hook_calls": hook_calls,
                        "hook_time_ms": hook_nanos as f64 / 1e6,
                        "hook_mean_us": if hook_calls == 0 { 0.0 } else { hook_nanos as f64 / hook_calls as f64 / 1e3 },
                    }),
                );
                let adapter_endpoints: Vec<Value> = app
                    .routes
                    .adapter_endpoints()
                    .iter()
                    .filter(|endpoint| endpoint.plugin == plugin.manifest.name)
                    .map(|endpoint| json!({"route": format!("POST {}", endpoint.path), "from": endpoint.from, "to": endpoint.to, "provider": endpoint.provider, "provider_endpoint": endpoint.provider_endpoint}))
                    .collect();
                merge(
                    &mut value,
                    json!({"adapter_endpoints": adapter_endpoints}),
                );
            }
            value
        })
        .collect();
    let counters = &app.shared.hooks.counters;
    json!({
        "initialization_order": app.registry.order,
        "services": services,
        "plugins": plugins,
        "hooks": {
            "queued": counters.queued.load(Ordering::Relaxed),
            "dropped": counters.dropped.load(Ordering::Relaxed),
            "failed": counters.failed.load(Ordering::Relaxed),
        },
        "route_conflicts": app.route_conflicts.iter().map(|c| json!({"plugin": c.plugin, "route": c.route, "reason": c.reason})).collect::<Vec<_>>(),
    })
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}

async fn plugin_health(app: &App, name: &str) -> Response<Body> {
    let Some(plugin) = app.registry.get(name) else {
        return match app
            .registry
            .entries
            .iter()
            .find(|e| e.display_name() == name)
        {
            Some(entry) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"plugin": name, "status": "unknown", "adapter_loaded": false, "details": {"status": entry.status.as_str(), "reason": entry.reason}}),
            ),
            None => error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no plugin named {name}; see GET /plugins"),
            ),
        };
    };
    let stats = &plugin.handle.stats;
    let reported = plugin
        .handle
        .call_with_timeout::<ops::Health>(&json!({}), Vec::new(), HEALTH_TIMEOUT)
        .await;
    let (mut status, mut details) = match reported {
        Ok(reply) => (reply.meta.status, reply.meta.details),
        Err(error) => (
            "unhealthy".to_owned(),
            json!({"health_check_error": error.message}),
        ),
    };
    if let Some(message) = recent_panic(plugin) {
        status = "unhealthy".to_owned();
        merge(&mut details, json!({"last_panic": message}));
        if !details.is_object() {
            details = json!({"last_panic": message});
        }
    }
    // A call given up on lately: the plugin still answers, but not always.
    if let Some(message) = recent_timeout(plugin) {
        if status == "healthy" {
            status = "degraded".to_owned();
        }
        merge(&mut details, json!({"last_timeout": message}));
        if !details.is_object() {
            details = json!({"last_timeout": message});
        }
    }
    let summary = json!({
        "type": plugin.manifest.kind.as_str(),
        "initialized": plugin.initialized.load(Ordering::Acquire),
        "version": plugin.manifest.version,
        "panics": stats.panics.load(Ordering::Relaxed),
        "errors": stats.errors.load(Ordering::Relaxed),
        "timeouts": stats.timeouts.load(Ordering::Relaxed),
        "calls": stats.calls.load(Ordering::Relaxed),
    });
    // The plugin's own details first, the host's counters over them: a
    // plugin cannot report itself initialised or panic-free.
    let mut all_details = if details.is_object() {
        details
    } else if details.is_null() {
        json!({})
    } else {
        json!({"plugin": details})
    };
    merge(&mut all_details, summary);
    let http_status = if status == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(
        http_status,
        &json!({"plugin": name, "status": status, "adapter_loaded": plugin.manifest.kind == ccproxy_plugin_abi::PluginKind::Provider, "details": all_details}),
    )
}
