//! Tidy: the layering rules of `docs/ARCHITECTURE.md` and `STYLE.md`, checked
//! as plain tests over the source tree (rust-analyzer's `tidy.rs` habit). Each
//! test names the rule it keeps; a failure names the file that breaks it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use ccproxy_e2e::workspace_root;
use toml::{Table, Value};

/// Every file under `dir` (relative to the workspace root) ending in `extension`,
/// skipping build output and hidden folders.
fn files(dir: &str, extension: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, extension: &str, found: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            if path.is_dir() {
                walk(&path, extension, found);
            } else if name.ends_with(extension) {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&workspace_root().join(dir), extension, &mut found);
    found.sort();
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn manifest(path: &Path) -> Table {
    read(path)
        .parse()
        .unwrap_or_else(|error| panic!("{} is not valid TOML: {error}", path.display()))
}

/// One dependency of a crate, resolved through `[workspace.dependencies]`.
#[derive(Debug)]
struct Dependency {
    /// The package depended on (`package = …` when renamed).
    package: String,
    /// Its path, when it is a path dependency.
    path: Option<PathBuf>,
}

/// Every dependency of the crate whose manifest is `path` (normal, dev, build,
/// and per-target), with `workspace = true` resolved against `workspace`.
fn dependencies(path: &Path, workspace: &Table) -> Vec<Dependency> {
    let table = manifest(path);
    let crate_dir = path.parent().expect("a manifest has a folder");
    let workspace_deps = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(Value::as_table)
        .cloned()
        .unwrap_or_default();
    let mut tables: Vec<&Table> = Vec::new();
    for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
        tables.extend(table.get(key).and_then(Value::as_table));
    }
    if let Some(targets) = table.get("target").and_then(Value::as_table) {
        for target in targets.values().filter_map(Value::as_table) {
            for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
                tables.extend(target.get(key).and_then(Value::as_table));
            }
        }
    }
    let mut found = Vec::new();
    for deps in tables {
        for (name, spec) in deps {
            let (spec, base) = if spec.get("workspace").and_then(Value::as_bool) == Some(true) {
                (
                    workspace_deps
                        .get(name)
                        .cloned()
                        .unwrap_or(Value::Table(Table::new())),
                    workspace_root(),
                )
            } else {
                (spec.clone(), crate_dir.to_path_buf())
            };
            found.push(Dependency {
                package: spec
                    .get("package")
                    .and_then(Value::as_str)
                    .unwrap_or(name)
                    .to_owned(),
                path: spec
                    .get("path")
                    .and_then(Value::as_str)
                    .map(|p| base.join(p)),
            });
        }
    }
    found
}

fn package_name(path: &Path) -> String {
    manifest(path)
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The manifests of plugin crates: bundled plugins, examples, test plugins and
/// the plugins built against the frozen 1.0 and 1.1 interfaces.
fn plugin_manifests() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in ["plugins", "examples", "tests/plugins", "tests/frozen"] {
        for path in files(dir, "Cargo.toml") {
            let is_sdk_copy = path.parent().is_some_and(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("plugin-abi-"))
            });
            let is_workspace_root =
                path.parent() == Some(workspace_root().join("tests/frozen").as_path());
            if path.file_name().is_some_and(|n| n == "Cargo.toml")
                && !is_sdk_copy
                && !is_workspace_root
            {
                found.push(path);
            }
        }
    }
    found
}

fn root_manifest() -> Table {
    manifest(&workspace_root().join("Cargo.toml"))
}

/// Lines that are not comments (`//`, `///`, `//!`), for rules about code.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(i, line)| (i + 1, line))
}

#[test]
fn every_host_and_sdk_source_file_opens_with_a_module_doc() {
    let mut missing = Vec::new();
    for dir in ["host", "plugin-abi"] {
        for path in files(dir, ".rs") {
            if !read(&path).starts_with("//!") {
                missing.push(relative(&path));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line saying what they are for: {missing:#?}"
    );
}

#[test]
fn the_sdk_depends_on_nothing_of_ours_and_on_no_runtime() {
    let root = root_manifest();
    for dependency in dependencies(&workspace_root().join("plugin-abi/Cargo.toml"), &root) {
        assert!(
            dependency.path.is_none(),
            "plugin-abi depends on {} by path: the SDK must depend on nothing of ours",
            dependency.package
        );
        for banned in ["tokio", "hyper", "hyper-util"] {
            assert_ne!(
                dependency.package, banned,
                "plugin-abi depends on {banned}: no async runtime crosses the boundary"
            );
        }
    }
}

#[test]
fn formats_is_pure() {
    let root = root_manifest();
    for dependency in dependencies(&workspace_root().join("host/formats/Cargo.toml"), &root) {
        for banned in [
            "tokio",
            "hyper",
            "hyper-util",
            "ccproxy-plugin-abi",
            "ccproxy",
        ] {
            assert_ne!(
                dependency.package, banned,
                "host/formats depends on {banned}: formats is pure data in, data out"
            );
        }
    }
}

/// The plugin kit: building blocks any plugin may link, on the SDK only.
const KIT_MANIFEST: &str = "plugins/kit/Cargo.toml";

#[test]
fn plugins_and_examples_depend_only_on_the_sdk_and_the_kit_among_our_crates() {
    let root = root_manifest();
    let manifests = plugin_manifests();
    assert!(
        manifests.len() >= 10,
        "found too few plugin crates: {manifests:#?}"
    );
    for path in &manifests {
        for dependency in dependencies(path, &root) {
            let ours = dependency.path.is_some() || dependency.package.starts_with("ccproxy");
            if ours {
                assert!(
                    ["ccproxy-plugin-abi", "ccproxy-plugin-kit"]
                        .contains(&dependency.package.as_str()),
                    "{} depends on {}: plugins use the SDK (and the kit built on it) only, exactly as a third party would",
                    relative(path),
                    dependency.package
                );
            }
        }
    }
}

#[test]
fn the_kit_is_a_library_on_the_sdk_only() {
    let root = root_manifest();
    let path = workspace_root().join(KIT_MANIFEST);
    assert_eq!(package_name(&path), "ccproxy-plugin-kit");
    for dependency in dependencies(&path, &root) {
        let ours = dependency.path.is_some() || dependency.package.starts_with("ccproxy");
        if ours {
            assert_eq!(
                dependency.package, "ccproxy-plugin-abi",
                "{KIT_MANIFEST} depends on {}: the kit uses the public SDK and crates.io only, so a third-party plugin can use it too",
                dependency.package
            );
        }
    }
    // A plain library linked into plugins: a cdylib would be a library the
    // host tries to load as a plugin.
    let crate_types: Vec<String> = manifest(&path)
        .get("lib")
        .and_then(|lib| lib.get("crate-type"))
        .and_then(Value::as_array)
        .map(|types| {
            types
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !crate_types.iter().any(|t| t == "cdylib" || t == "dylib"),
        "{KIT_MANIFEST} builds a {crate_types:?}: the kit must be a plain (rlib) library, never a plugin"
    );
    let lib = read(&workspace_root().join("plugins/kit/src/lib.rs"));
    for attribute in ["#![forbid(unsafe_code)]", "#![deny(missing_docs)]"] {
        assert!(
            lib.contains(attribute),
            "plugins/kit/src/lib.rs lacks {attribute}"
        );
    }
}

#[test]
fn plugins_and_examples_use_only_the_public_sdk() {
    // Hidden modules of the SDK: `export_plugin!` expands to them, a plugin
    // author never writes them.
    let back_doors = [
        "ccproxy_plugin_abi::raw",
        "ccproxy_plugin_abi::shim",
        "ccproxy_plugin_abi::__private",
        "ccproxy_plugin_abi::log::",
    ];
    // The scaffold's templates become third-party plugins: the same rule.
    let templates = files("host/src/cli/scaffold", ".rs.tmpl");
    assert!(
        !templates.is_empty(),
        "the scaffold templates were not found"
    );
    let sources = plugin_manifests()
        .into_iter()
        .flat_map(|manifest_path| {
            let crate_dir = manifest_path.parent().expect("a manifest has a folder");
            files(&relative(crate_dir), ".rs")
        })
        .chain(templates);
    for path in sources {
        let text = read(&path);
        for (number, line) in code_lines(&text) {
            let squeezed: String = line.split_whitespace().collect();
            let grouped_raw =
                squeezed.contains("ccproxy_plugin_abi::{") && squeezed.contains("raw");
            for door in back_doors {
                assert!(
                    !line.contains(door),
                    "{}:{number} uses {door}: plugins use only the public SDK",
                    relative(&path)
                );
            }
            assert!(
                !grouped_raw,
                "{}:{number} imports the SDK's raw layer: plugins use only the public SDK",
                relative(&path)
            );
        }
    }
}

#[test]
fn the_host_links_no_plugin() {
    let root = root_manifest();
    let plugin_packages: Vec<String> = plugin_manifests().iter().map(|p| package_name(p)).collect();
    for host_manifest in ["host/Cargo.toml", "host/formats/Cargo.toml"] {
        for dependency in dependencies(&workspace_root().join(host_manifest), &root) {
            assert!(
                !plugin_packages.contains(&dependency.package),
                "{host_manifest} depends on plugin crate {}: plugins are found at run time, never linked",
                dependency.package
            );
        }
    }
}

#[test]
fn only_the_raw_layer_and_the_loader_touch_raw_abi_types() {
    // The raw ABI: abi_stable itself and the two vtables.
    let raw_markers = ["abi_stable::", "PluginObject", "HostObject"];
    let allowed = [
        // The layer itself.
        "plugin-abi/src/raw/",
        // The host's loader and the one safe handle the rest of the host calls plugins through.
        "host/src/plugins/load.rs",
        "host/src/plugins/handle.rs",
        // Implements `HostObject`: the host side of a plugin's `Context`.
        "host/src/services/host_impl.rs",
        // The SDK's seam between the raw layer and the safe API: the shim
        // implements `PluginObject` for every `Plugin`, `Context` and the log
        // macros call `HostObject`, the mock host implements it, and
        // `export_plugin!` needs abi_stable's header type (`__private`). The
        // public SDK modules (http, hooks, manifest, plugin, error, protocol)
        // stay free of raw types.
        "plugin-abi/src/shim.rs",
        "plugin-abi/src/context.rs",
        "plugin-abi/src/log.rs",
        "plugin-abi/src/testing.rs",
        "plugin-abi/src/lib.rs",
    ];
    let mut offenders = Vec::new();
    for dir in ["host", "plugin-abi"] {
        for path in files(dir, ".rs") {
            let name = relative(&path);
            if allowed.iter().any(|prefix| name.starts_with(prefix)) {
                continue;
            }
            let text = read(&path);
            for (number, line) in code_lines(&text) {
                if let Some(marker) = raw_markers.iter().find(|marker| line.contains(*marker)) {
                    offenders.push(format!("{name}:{number} mentions {marker}"));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "raw ABI types outside the raw layer and the loader: {offenders:#?}"
    );
}

#[test]
fn no_should_panic_and_no_ignore_anywhere() {
    // Spelled in two halves so this file does not match itself.
    let banned = [concat!("#[should", "_panic"), concat!("#[ig", "nore")];
    let mut offenders = Vec::new();
    for path in files(".", ".rs") {
        let text = read(&path);
        for (number, line) in text.lines().enumerate() {
            if let Some(attribute) = banned.iter().find(|b| line.contains(*b)) {
                offenders.push(format!(
                    "{}:{} has {attribute}]",
                    relative(&path),
                    number + 1
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "if behaviour is wrong today, assert today's behaviour with a FIXME(issue) comment instead: {offenders:#?}"
    );
}

/// FNV-1a over every file of the frozen SDK copy in `folder` (relative paths
/// and contents, in path order).
fn frozen_sdk_fingerprint(folder: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for path in files(folder, "") {
        eat(relative(&path).as_bytes());
        eat(&fs::read(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display())));
    }
    format!("{hash:016x}")
}

#[test]
fn the_frozen_1_0_sdk_is_never_edited() {
    // The value for the copy taken when plugin API 1.0 shipped. The copy is what
    // plugin authors built against then; changing it would make the
    // compatibility test prove nothing.
    assert_eq!(
        frozen_sdk_fingerprint("tests/frozen/plugin-abi-1.0"),
        "9d3d9735a74a94e5",
        "tests/frozen/plugin-abi-1.0 changed: it is frozen, never edit it (see its README)"
    );
}

#[test]
fn the_frozen_1_1_sdk_is_never_edited() {
    // The copy of plugin-abi at 8f81403, the last commit of plugin API 1.1.
    assert_eq!(
        frozen_sdk_fingerprint("tests/frozen/plugin-abi-1.1"),
        "7a38c4ee94d614e0",
        "tests/frozen/plugin-abi-1.1 changed: it is frozen, never edit it (see its README)"
    );
}
