//! `ccproxy plugins scaffold NAME --type system|provider|auth`: a new plugin
//! crate that builds, passes its own tests against the SDK's mock host, and
//! loads into this host as it is.
//!
//! The templates live beside this file (`scaffold/*.tmpl`) and are compiled
//! into the binary, so an installed `ccproxy` scaffolds without its sources.
//! They use only the public SDK, exactly like a third-party plugin.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use super::exit;

/// The kind of plugin to scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A route, an observing hook and a typed config.
    System,
    /// A provider: an upstream behind two client formats.
    Provider,
    /// An auth provider: OAuth login, stored tokens, refresh.
    Auth,
}

impl Kind {
    fn template(self) -> &'static str {
        match self {
            Kind::System => include_str!("scaffold/system.rs.tmpl"),
            Kind::Provider => include_str!("scaffold/provider.rs.tmpl"),
            Kind::Auth => include_str!("scaffold/auth_provider.rs.tmpl"),
        }
    }

    fn description(self) -> &'static str {
        match self {
            Kind::System => "a ccproxy system plugin",
            Kind::Provider => "a ccproxy provider plugin",
            Kind::Auth => "a ccproxy auth provider plugin",
        }
    }
}

/// What to scaffold, and where.
#[derive(Debug, Clone)]
pub(super) struct Request {
    /// The plugin name (manifest, config section, crate and library name).
    pub(super) name: String,
    /// The kind of plugin.
    pub(super) kind: Kind,
    /// The folder to create (default: `./NAME`).
    pub(super) dir: Option<PathBuf>,
    /// The SDK checkout to depend on (default: the one this binary was built
    /// from, when it is still on disk; else the registry version).
    pub(super) sdk_path: Option<PathBuf>,
}

/// Checks a plugin name: what the host accepts as a manifest name, and a
/// valid crate name too.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts_with_letter
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!(
            "plugin name {name:?} is not valid: use lower-case ASCII letters, digits and underscores, starting with a letter (e.g. my_plugin)"
        );
    }
    Ok(())
}

/// `my_plugin` → `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The SDK checkout this binary was built from, if it is still there.
fn built_from_checkout() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-abi");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().ok())?
}

/// The dependency lines for the SDK: (normal, with the `testing` feature).
fn sdk_dependency(sdk_path: Option<&Path>) -> anyhow::Result<(String, String, bool)> {
    let version = format!("~{}", ccproxy_plugin_abi::API_VERSION);
    let path = match sdk_path {
        Some(path) => {
            if !path.join("Cargo.toml").is_file() {
                bail!(
                    "--sdk-path {}: no Cargo.toml there; point it at the plugin-abi folder of a ccproxy checkout",
                    path.display()
                );
            }
            Some(path.canonicalize()?)
        }
        None => built_from_checkout(),
    };
    Ok(match path {
        Some(path) => {
            let path = toml_string(&path.display().to_string());
            (
                format!("{{ path = {path}, version = \"{version}\" }}"),
                format!("{{ path = {path}, version = \"{version}\", features = [\"testing\"] }}"),
                true,
            )
        }
        None => (
            format!("\"{version}\""),
            format!("{{ version = \"{version}\", features = [\"testing\"] }}"),
            false,
        ),
    })
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Fills a template's placeholders.
fn render(template: &str, fields: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (key, value) in fields {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    text
}

/// The files of a new plugin crate, as (relative path, contents).
fn files(
    request: &Request,
    sdk_path: Option<&Path>,
) -> anyhow::Result<(Vec<(PathBuf, String)>, bool)> {
    let (dependency, dependency_testing, local) = sdk_dependency(sdk_path)?;
    let api = semver::Version::parse(ccproxy_plugin_abi::API_VERSION)
        .context("the SDK's API version is not semver")?;
    let type_name = type_name(&request.name);
    let upper = request.name.to_ascii_uppercase();
    let minor = api.minor.to_string();
    let fields = [
        ("name", request.name.as_str()),
        ("NAME", upper.as_str()),
        ("Type", type_name.as_str()),
        ("description", request.kind.description()),
        ("sdk_dependency", dependency.as_str()),
        ("sdk_dependency_testing", dependency_testing.as_str()),
        ("sdk_minor", minor.as_str()),
    ];
    let files = vec![
        (
            PathBuf::from("Cargo.toml"),
            render(include_str!("scaffold/Cargo.toml.tmpl"), &fields),
        ),
        (
            PathBuf::from("src/lib.rs"),
            render(request.kind.template(), &fields),
        ),
        (
            PathBuf::from(".gitignore"),
            include_str!("scaffold/gitignore.tmpl").to_owned(),
        ),
    ];
    Ok((files, local))
}

/// Lays the generated code out as `cargo fmt` would for this name (line
/// lengths depend on it). Best effort: without rustfmt the code is still valid.
fn format_with_rustfmt(file: &Path) {
    let _ = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .arg(file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// `plugins scaffold`.
pub(super) fn run(request: &Request) -> anyhow::Result<u8> {
    check_name(&request.name)?;
    let dir = request
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&request.name));
    if dir.exists()
        && fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} already exists and is not empty: choose another folder with --dir, or remove it",
            dir.display()
        );
    }
    let (files, local_sdk) = files(request, request.sdk_path.as_deref())?;
    for (relative, contents) in &files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    }
    format_with_rustfmt(&dir.join("src/lib.rs"));
    println!(
        "created {} plugin {} in {}",
        match request.kind {
            Kind::System => "system",
            Kind::Provider => "provider",
            Kind::Auth => "auth provider",
        },
        request.name,
        dir.display()
    );
    if !local_sdk {
        println!(
            "note: the SDK is named by version (ccproxy-plugin-abi {}); if your registry does not have it, pass --sdk-path /path/to/ccproxy/plugin-abi",
            ccproxy_plugin_abi::API_VERSION
        );
    }
    println!(
        "next:\n  cd {}\n  cargo test\n  cargo build --release\n  ccproxy plugins check target/release/lib{}.so",
        dir.display(),
        request.name
    );
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_manifest_names() {
        for good in ["a", "my_plugin", "p2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "My", "2p", "my-plugin", "_p", "p.q"] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(error.contains("lower-case ASCII"), "{bad}: {error}");
        }
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("my_plugin"), "MyPlugin");
        assert_eq!(type_name("p2_x"), "P2X");
        assert_eq!(type_name("a__b"), "AB");
    }

    #[test]
    fn every_placeholder_is_filled() {
        for kind in [Kind::System, Kind::Provider, Kind::Auth] {
            let request = Request {
                name: "my_plugin".to_owned(),
                kind,
                dir: None,
                sdk_path: None,
            };
            let (files, _) = files(&request, None).unwrap();
            for (path, text) in files {
                assert!(!text.contains("{{"), "{kind:?} {}: {text}", path.display());
            }
        }
    }

    #[test]
    fn the_sdk_dependency_pins_this_minor_and_checks_the_path() {
        let version = format!("\"~{}\"", ccproxy_plugin_abi::API_VERSION);
        let (plain, testing, _) = sdk_dependency(None).unwrap();
        assert!(plain.contains(&version), "{plain}");
        assert!(
            testing.contains(&version) && testing.contains("\"testing\""),
            "{testing}"
        );
        let missing = sdk_dependency(Some(Path::new("/nonexistent/sdk"))).unwrap_err();
        assert!(missing.to_string().contains("no Cargo.toml there"));
    }
}
