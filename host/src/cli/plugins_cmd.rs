//! `ccproxy plugins list | info | check`: what the host would load, without serving.

use std::path::Path;

use anyhow::bail;
use serde_json::{Value, json};

use super::exit;
use crate::{
    config::{self, Config},
    plugins::{
        load,
        registry::{self, Entry, Status},
    },
};

fn entry_json(entry: &Entry) -> Value {
    json!({
        "name": entry.display_name(),
        "version": entry.manifest.as_ref().map(|m| m.version.clone()),
        "kind": entry.manifest.as_ref().map(|m| m.kind.as_str()),
        "status": if entry.status == Status::Active { "ok" } else { entry.status.as_str() },
        "file": entry.file.display().to_string(),
        "origin": entry.origin.as_str(),
        "api_version": entry.api_version,
        "reason": entry.reason,
    })
}

/// `plugins list`.
pub(super) fn list(config: &Config, json: bool) -> anyhow::Result<u8> {
    let prepared = registry::prepare(config, &registry::search_path(config));
    if json {
        let plugins: Vec<Value> = prepared.entries.iter().map(entry_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"plugins": plugins, "initialization_order": prepared.order, "warnings": prepared.warnings})
            )?
        );
        return Ok(exit::OK);
    }
    for warning in &prepared.warnings {
        eprintln!("warning: {warning}");
    }
    if prepared.entries.is_empty() {
        println!(
            "no plugin libraries found (searched next to the executable, the user plugin folder and plugin_discovery.directories)"
        );
        return Ok(exit::OK);
    }
    let rows: Vec<[String; 6]> = prepared
        .entries
        .iter()
        .map(|entry| {
            [
                entry.display_name(),
                entry
                    .manifest
                    .as_ref()
                    .map(|m| m.version.clone())
                    .unwrap_or_else(|| "-".into()),
                entry
                    .manifest
                    .as_ref()
                    .map(|m| m.kind.as_str().to_owned())
                    .unwrap_or_else(|| "-".into()),
                if entry.status == Status::Active {
                    "ok".into()
                } else {
                    entry.status.as_str().into()
                },
                entry.file.display().to_string(),
                entry.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let headers = ["NAME", "VERSION", "KIND", "STATUS", "FILE", "REASON"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row.iter()).take(5) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let print = |cells: [&str; 6]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 5 {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        println!("{}", line.trim_end());
    };
    print(headers);
    for row in &rows {
        print([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
    Ok(exit::OK)
}

/// `plugins info NAME`.
pub(super) fn info(config: &Config, name: &str, json: bool) -> anyhow::Result<u8> {
    let prepared = registry::prepare(config, &registry::search_path(config));
    let Some(entry) = prepared
        .entries
        .iter()
        .find(|e| e.manifest.as_ref().is_some_and(|m| m.name == name))
    else {
        bail!("no plugin named {name}; `ccproxy plugins list` shows what was found");
    };
    let manifest = entry.manifest.as_ref().expect("found by manifest name");
    let section = format!("plugins.{name}");
    // Settings such as `api_key` are shown masked, here and in the JSON.
    let effective = config::masked(&section, &entry.config.clone().unwrap_or(Value::Null));
    let defaults = config::masked(&section, &manifest.config.defaults);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"plugin": entry_json(entry), "manifest": masked_manifest(manifest), "config": effective})
            )?
        );
        return Ok(exit::OK);
    }
    println!(
        "{} {} ({})",
        manifest.name,
        manifest.version,
        manifest.kind.as_str()
    );
    if !manifest.description.is_empty() {
        println!("  {}", manifest.description);
    }
    println!(
        "  file: {} ({})",
        entry.file.display(),
        entry.origin.as_str()
    );
    println!(
        "  plugin API: {}",
        entry.api_version.as_deref().unwrap_or("-")
    );
    println!(
        "  status: {}{}",
        entry.status.as_str(),
        entry
            .reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    let list = |label: &str, items: &[String]| {
        if !items.is_empty() {
            println!("  {label}: {}", items.join(", "));
        }
    };
    list("depends on", &manifest.dependencies);
    list("provides", &manifest.provides);
    list("requires", &manifest.requires);
    list("optional", &manifest.optional_requires);
    for group in &manifest.routes {
        for route in &group.routes {
            println!("  route: {} {}", route.method, group.full_path(route));
        }
    }
    for hook in &manifest.hooks {
        println!(
            "  hook: {} on {} (priority {})",
            hook.name,
            hook.events.join(", "),
            hook.priority
        );
    }
    for task in &manifest.tasks {
        println!("  task: {} every {} s", task.name, task.interval_seconds);
    }
    for middleware in &manifest.middleware {
        println!(
            "  middleware: {} (layer {})",
            middleware.name, middleware.layer
        );
    }
    if let Value::Object(defaults) = &defaults {
        println!(
            "  config [plugins.{}] (default -> effective):",
            manifest.name
        );
        for (key, default) in defaults {
            let current = effective.get(key).cloned().unwrap_or(Value::Null);
            let description = manifest
                .config
                .descriptions
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, d)| format!("  # {d}"))
                .unwrap_or_default();
            println!("    {key} = {default} -> {current}{description}");
        }
    }
    Ok(exit::OK)
}

/// A manifest as JSON with the defaults of its config masked (a plugin may
/// ship a key as a default).
fn masked_manifest(manifest: &ccproxy_plugin_abi::Manifest) -> Value {
    let mut value = serde_json::to_value(manifest).unwrap_or(Value::Null);
    if let Some(defaults) = value.pointer_mut("/config/defaults") {
        *defaults = config::masked(&format!("plugins.{}", manifest.name), defaults);
    }
    value
}

/// `plugins check FILE`.
pub(super) fn check(file: &Path, json: bool) -> anyhow::Result<u8> {
    if !file.exists() {
        eprintln!("ccproxy: {} does not exist", file.display());
        return Ok(exit::USAGE);
    }
    match load::load(file) {
        Ok(library) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"file": file.display().to_string(), "verdict": "ok", "api_version": library.api_version.to_string(), "manifest": masked_manifest(&library.manifest)})
                    )?
                );
            } else {
                println!(
                    "ok: {} {} ({}) built for plugin API {}, loadable by this host (plugin API {})",
                    library.manifest.name,
                    library.manifest.version,
                    library.manifest.kind.as_str(),
                    library.api_version,
                    ccproxy_plugin_abi::API_VERSION
                );
            }
            Ok(exit::OK)
        }
        Err(refusal) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"file": file.display().to_string(), "verdict": "refused", "reason": refusal.to_string()})
                    )?
                );
            } else {
                println!("refused: {}: {refusal}", file.display());
            }
            Ok(exit::FAILURE)
        }
    }
}
