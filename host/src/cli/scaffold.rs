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
    /// Where the SDK crates are on disk, to depend on them by path (default:
    /// by version, from the registry).
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
    if name.contains("__") {
        bail!(
            "plugin name {name:?} is not valid: \"__\" separates the parts of a plugin's environment overrides (PLUGINS__NAME__FIELD), so they could not reach it; use single underscores (e.g. {})",
            name.split('_')
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join("_")
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

/// The kit's manifest, read when this binary is built, for its version.
const KIT_MANIFEST: &str = include_str!("../../../plugins/kit/Cargo.toml");

/// `MAJOR.MINOR` of a version: a caret requirement that takes every later
/// compatible release.
fn major_minor(version: &str) -> anyhow::Result<String> {
    let version = semver::Version::parse(version)
        .with_context(|| format!("{version:?} is not a semver version"))?;
    Ok(format!("{}.{}", version.major, version.minor))
}

/// The version of `ccproxy-plugin-kit` this host was released with.
fn kit_version() -> anyhow::Result<String> {
    let manifest: toml::Table = toml::from_str(KIT_MANIFEST).context("the kit's Cargo.toml")?;
    let version = manifest
        .get("package")
        .and_then(|package| package.get("version"))
        .and_then(toml::Value::as_str)
        .context("the kit's Cargo.toml has no package.version")?;
    major_minor(version)
}

/// Where the SDK crates are on disk (`--sdk-path`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SdkFolders {
    /// `ccproxy-plugin-abi`.
    abi: PathBuf,
    /// `ccproxy-plugin-kit`, when it is there.
    kit: Option<PathBuf>,
}

/// The name of the package whose `Cargo.toml` is in `dir`, if any.
fn package_name(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let manifest: toml::Table = toml::from_str(&text).ok()?;
    manifest
        .get("package")?
        .get("name")?
        .as_str()
        .map(str::to_owned)
}

/// Finds the SDK crates under `dir`: a ccproxy checkout (`plugin-abi`,
/// `plugins/kit`), its `plugin-abi` folder itself, or a folder holding the
/// unpacked packages (`ccproxy-plugin-abi-1.3.0/`, `ccproxy-plugin-kit-0.1.0/`,
/// as `cargo package` or a `.crate` file gives them).
fn find_sdk(dir: &Path) -> anyhow::Result<SdkFolders> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("--sdk-path {}", dir.display()))?;
    let is = |candidate: &Path, name: &str| package_name(candidate).as_deref() == Some(name);
    let unpacked = |prefix: &str, name: &str| -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|file| file.to_str())
                    .is_some_and(|file| file.starts_with(prefix))
                    && is(path, name)
            })
            .collect();
        // The newest when several versions are unpacked side by side.
        found.sort_by_cached_key(|path| {
            let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
            semver::Version::parse(&file[prefix.len()..]).ok()
        });
        found.pop()
    };
    const ABI: &str = "ccproxy-plugin-abi";
    const KIT: &str = "ccproxy-plugin-kit";
    let (abi, kit) = if is(&dir, ABI) {
        (Some(dir.clone()), Some(dir.join("../plugins/kit")))
    } else if is(&dir.join("plugin-abi"), ABI) {
        (Some(dir.join("plugin-abi")), Some(dir.join("plugins/kit")))
    } else {
        (
            unpacked("ccproxy-plugin-abi-", ABI),
            unpacked("ccproxy-plugin-kit-", KIT),
        )
    };
    let Some(abi) = abi else {
        bail!(
            "--sdk-path {}: no ccproxy-plugin-abi there; point it at a ccproxy checkout, its plugin-abi folder, or a folder holding the unpacked ccproxy-plugin-abi-X.Y.Z package",
            dir.display()
        );
    };
    let kit = kit
        .filter(|kit| is(kit, KIT))
        .map(|kit| kit.canonicalize())
        .transpose()?;
    Ok(SdkFolders {
        abi: abi.canonicalize()?,
        kit,
    })
}

/// The dependency lines of the new crate's `Cargo.toml`: (dependencies,
/// dev-dependencies). By version, from the registry; by path only with
/// `--sdk-path`. Only the auth provider uses the kit.
fn sdk_dependencies(kind: Kind, sdk_path: Option<&Path>) -> anyhow::Result<(String, String)> {
    let abi_version = major_minor(ccproxy_plugin_abi::API_VERSION)?;
    let kit_version = kit_version()?;
    let folders = sdk_path.map(find_sdk).transpose()?;
    let path = |folder: &Path| format!("path = {}, ", toml_string(&folder.display().to_string()));
    let abi_path = folders
        .as_ref()
        .map(|folders| path(&folders.abi))
        .unwrap_or_default();
    let mut dependencies = format!(
        "# `host-allocator`: allocate with the proxy's allocator (mimalloc), the\n\
         # system's when not loaded by it. Drop it to declare a global allocator.\n\
         ccproxy-plugin-abi = {{ {abi_path}version = \"~{abi_version}\", features = [\"host-allocator\"] }}\n"
    );
    if kind == Kind::Auth {
        let kit_path = match &folders {
            None => String::new(),
            Some(SdkFolders { kit: Some(kit), .. }) => path(kit),
            Some(SdkFolders { kit: None, .. }) => bail!(
                "--sdk-path {}: the auth provider also needs ccproxy-plugin-kit, which is not there (plugins/kit in a checkout, or the unpacked ccproxy-plugin-kit-X.Y.Z package)",
                sdk_path.unwrap_or(Path::new("")).display()
            ),
        };
        dependencies.push_str(
            "# Building blocks shared with the bundled plugins: the token file written\n\
             # atomically with mode 0600, masking, form encoding. No model rules, so\n\
             # without the default `mapping` feature.\n",
        );
        dependencies.push_str(&format!(
            "ccproxy-plugin-kit = {{ {kit_path}version = \"{kit_version}\", default-features = false }}\n"
        ));
    }
    let dev_dependencies = format!(
        "ccproxy-plugin-abi = {{ {abi_path}version = \"~{abi_version}\", features = [\"testing\"] }}\n"
    );
    Ok((dependencies, dev_dependencies))
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
fn files(request: &Request, sdk_path: Option<&Path>) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let (dependencies, dev_dependencies) = sdk_dependencies(request.kind, sdk_path)?;
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
        ("dependencies", dependencies.trim_end()),
        ("dev_dependencies", dev_dependencies.trim_end()),
        ("sdk_minor", minor.as_str()),
    ];
    Ok(vec![
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
    ])
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
    let files = files(request, request.sdk_path.as_deref())?;
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
    if request.sdk_path.is_none() {
        println!(
            "the SDK is named by version (ccproxy-plugin-abi ~{}, from crates.io); to build against SDK sources on disk instead, scaffold with --sdk-path DIR",
            major_minor(ccproxy_plugin_abi::API_VERSION)?
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
            for (path, text) in files(&request, None).unwrap() {
                assert!(!text.contains("{{"), "{kind:?} {}: {text}", path.display());
            }
        }
    }

    #[test]
    fn names_with_a_double_underscore_are_refused_with_the_reason() {
        let error = check_name("my__plugin").unwrap_err().to_string();
        assert!(error.contains("PLUGINS__NAME__FIELD"), "{error}");
        assert!(error.contains("e.g. my_plugin"), "{error}");
    }

    #[test]
    fn without_sdk_path_the_sdk_crates_are_named_by_version_only() {
        let abi = format!(
            "version = \"~{}\"",
            major_minor(ccproxy_plugin_abi::API_VERSION).unwrap()
        );
        let (plain, testing) = sdk_dependencies(Kind::System, None).unwrap();
        assert!(plain.contains(&abi) && !plain.contains("path"), "{plain}");
        assert!(!plain.contains("ccproxy-plugin-kit"), "{plain}");
        assert!(
            testing.contains(&abi) && testing.contains("\"testing\"") && !testing.contains("path"),
            "{testing}"
        );
        let (auth, _) = sdk_dependencies(Kind::Auth, None).unwrap();
        let kit = format!(
            "ccproxy-plugin-kit = {{ version = \"{}\"",
            kit_version().unwrap()
        );
        assert!(auth.contains(&kit) && !auth.contains("path"), "{auth}");
        let request = Request {
            name: "my_auth".to_owned(),
            kind: Kind::Auth,
            dir: None,
            sdk_path: None,
        };
        let manifest = &files(&request, None).unwrap()[0].1;
        let parsed: toml::Table = toml::from_str(manifest).unwrap();
        assert!(
            parsed["dependencies"]["ccproxy-plugin-kit"].is_table(),
            "{manifest}"
        );
    }

    #[test]
    fn sdk_path_finds_a_checkout_and_refuses_a_folder_without_the_sdk() {
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for dir in [checkout.clone(), checkout.join("plugin-abi")] {
            let (plain, _) = sdk_dependencies(Kind::Auth, Some(&dir)).unwrap();
            let abi = checkout.join("plugin-abi").canonicalize().unwrap();
            let kit = checkout.join("plugins/kit").canonicalize().unwrap();
            assert!(
                plain.contains(&toml_string(&abi.display().to_string())),
                "{plain}"
            );
            assert!(
                plain.contains(&toml_string(&kit.display().to_string())),
                "{plain}"
            );
        }
        let missing = sdk_dependencies(Kind::System, Some(Path::new("/nonexistent/sdk")))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("--sdk-path /nonexistent/sdk"), "{missing}");
        let empty = sdk_dependencies(Kind::System, Some(Path::new("/")))
            .unwrap_err()
            .to_string();
        assert!(empty.contains("no ccproxy-plugin-abi there"), "{empty}");
    }
}
