//! `ccproxy plugins scaffold` as a plugin author without a checkout of this
//! repository uses it: the SDK crates are packaged (`cargo package`, as for
//! crates.io), each kind of new crate is scaffolded outside the repository,
//! names the SDK crates by version only, passes its own tests, builds against
//! the packaged crates, is installed with `ccproxy plugins install` and works
//! in the real server (the system plugin's route and hook, the provider in
//! front of the mock upstream with a client format converted, the auth
//! provider, which uses the kit, on the CLI).
//!
//! Unlike the rest of the suite this test runs cargo: packaging the SDK and
//! building the user's new crate is what is under test. Everything builds
//! offline: the packaged crates stand in for crates.io through
//! `[patch.crates-io]` (given with `--config`, so the scaffolded files stay as
//! a user gets them), every other crate comes from the registry cache the
//! workspace build filled, at the workspace's locked versions, and one target
//! directory (`target/scaffold`) is shared by the packaging, the three crates
//! and later runs.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use ccproxy_e2e::{
    Proxy, ProxyOptions, Sandbox, library_file_name, mock::Mock, mode, poll, target_dir,
    workspace_root,
};
use serde_json::json;

const KINDS: [(&str, &str); 3] = [
    ("my_system", "system"),
    ("my_provider", "provider"),
    ("my_auth", "auth"),
];

/// The target directory every cargo run of this test shares.
fn scaffold_target() -> PathBuf {
    target_dir().join("scaffold")
}

/// Runs cargo with `args` in `dir`, offline, in the shared target directory;
/// panics with its output when it fails. Returns its standard error.
fn cargo(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "cargo {args:?} failed in {}:\n{}\n{stderr}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
    );
    stderr
}

/// A packaged SDK crate, unpacked.
struct Packaged {
    name: String,
    version: String,
    folder: PathBuf,
}

/// `cargo package` of both SDK crates (the kit verified against the packaged
/// SDK, as before a release), and their `.crate` files unpacked into
/// `target/scaffold/sdk`.
fn package_the_sdk() -> Vec<Packaged> {
    let log = cargo(
        &workspace_root(),
        &[
            "package",
            "-p",
            "ccproxy-plugin-abi",
            "-p",
            "ccproxy-plugin-kit",
            "--allow-dirty",
        ],
    );
    // "   Packaging ccproxy-plugin-abi v1.3.0 (/…/plugin-abi)"
    let packaged: Vec<(String, String)> = log
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "Packaging").then_some(())?;
            let name = words.next()?.to_owned();
            let version = words.next()?.strip_prefix('v')?.to_owned();
            Some((name, version))
        })
        .collect();
    assert_eq!(packaged.len(), 2, "cargo package said:\n{log}");
    let unpacked = scaffold_target().join("sdk");
    fs::create_dir_all(&unpacked).expect("the sdk folder can be created");
    packaged
        .into_iter()
        .map(|(name, version)| {
            let crate_file = scaffold_target()
                .join("package")
                .join(format!("{name}-{version}.crate"));
            let folder = unpacked.join(format!("{name}-{version}"));
            let _ = fs::remove_dir_all(&folder);
            let status = Command::new("tar")
                .arg("-xzf")
                .arg(&crate_file)
                .arg("-C")
                .arg(&unpacked)
                .status()
                .expect("tar runs");
            assert!(status.success(), "cannot unpack {}", crate_file.display());
            // What a registry serves: the manifest cargo wrote for it, the
            // license and the readme beside the sources.
            for file in ["Cargo.toml", "LICENSE", "README.md", "src/lib.rs"] {
                assert!(folder.join(file).is_file(), "{name} {version} lacks {file}");
            }
            let manifest = fs::read_to_string(folder.join("Cargo.toml")).unwrap();
            assert!(
                !manifest.contains("path = \"../"),
                "{name}'s packaged manifest still names a path:\n{manifest}"
            );
            Packaged {
                name,
                version,
                folder,
            }
        })
        .collect()
}

/// `--config` arguments that make cargo take the packaged crates for the ones
/// on crates.io.
fn patches(sdk: &[Packaged]) -> Vec<String> {
    sdk.iter()
        .flat_map(|crate_| {
            [
                "--config".to_owned(),
                format!(
                    "patch.crates-io.{}.path={:?}",
                    crate_.name,
                    crate_.folder.display().to_string()
                ),
            ]
        })
        .collect()
}

#[test]
fn scaffolds_build_against_the_packaged_sdk_install_and_serve() {
    let sdk = package_the_sdk();
    let abi = sdk
        .iter()
        .find(|crate_| crate_.name == "ccproxy-plugin-abi")
        .expect("the SDK was packaged");
    let abi_minor: Vec<&str> = abi.version.split('.').take(2).collect();
    let abi_requirement = format!("~{}", abi_minor.join("."));
    let patches = patches(&sdk);
    let patches: Vec<&str> = patches.iter().map(String::as_str).collect();

    // The sandbox is a temporary folder outside the repository.
    let work = Sandbox::new();
    assert!(!work.root().starts_with(workspace_root()));
    for (name, kind) in KINDS {
        let dir = work.root().join(name);
        let dir_arg = dir.display().to_string();
        let created = work.run_cli(
            &[
                "plugins", "scaffold", name, "--type", kind, "--dir", &dir_arg,
            ],
            &[],
        );
        assert_eq!(created.code, 0, "{created:?}");
        assert!(
            created.stdout.contains(&format!("plugin {name} in")),
            "{created:?}"
        );
        assert!(created.stdout.contains("named by version"), "{created:?}");

        // By version only: nothing of this machine's checkout in the manifest.
        let manifest_text = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            !manifest_text.contains(&workspace_root().display().to_string()),
            "{manifest_text}"
        );
        let manifest: toml::Table = toml::from_str(&manifest_text).unwrap();
        for table in ["dependencies", "dev-dependencies"] {
            let sdk_dependency = &manifest[table]["ccproxy-plugin-abi"];
            assert_eq!(
                sdk_dependency["version"].as_str(),
                Some(abi_requirement.as_str()),
                "{manifest_text}"
            );
            assert!(sdk_dependency.get("path").is_none(), "{manifest_text}");
        }
        let kit = manifest["dependencies"].get("ccproxy-plugin-kit");
        assert_eq!(kit.is_some(), kind == "auth", "{manifest_text}");
        if let Some(kit) = kit {
            assert!(kit.get("version").is_some() && kit.get("path").is_none());
        }

        // The workspace's versions of every other crate: in the registry
        // cache already, so the build needs no network.
        fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock"))
            .expect("the lock file can be copied");
        let mut test = vec!["test", "--quiet"];
        test.extend(&patches);
        cargo(&dir, &test);
        let mut build = vec!["build", "--quiet"];
        build.extend(&patches);
        cargo(&dir, &build);
        let library = scaffold_target()
            .join("debug")
            .join(library_file_name(name));
        let library_arg = library.display().to_string();

        let checked = work.run_cli(&["plugins", "check", &library_arg], &[]);
        assert_eq!(checked.code, 0, "{checked:?}");
        assert!(
            checked.stdout.starts_with(&format!("ok: {name} 0.1.0")),
            "{checked:?}"
        );
        assert!(
            checked
                .stdout
                .contains(&format!("built for plugin API {}", abi.version)),
            "{checked:?}"
        );
        let installed = work.run_cli(&["plugins", "install", &library_arg], &[]);
        assert_eq!(installed.code, 0, "{installed:?}");
        let target = work.plugin_dir().join(library_file_name(name));
        assert!(
            installed
                .stdout
                .contains(&format!("installed {name} 0.1.0 as {}", target.display())),
            "{installed:?}"
        );
        assert_eq!(mode(&target), 0o644);
    }

    // A second scaffold into a folder that is not empty is refused, and a bad
    // name says what a good one is.
    let again = work.run_cli(
        &[
            "plugins",
            "scaffold",
            "my_system",
            "--dir",
            &work.root().join("my_system").display().to_string(),
        ],
        &[],
    );
    assert_eq!(again.code, 2, "{again:?}");
    assert!(
        again.stderr.contains("already exists and is not empty"),
        "{again:?}"
    );

    // The auth provider is offered to `ccproxy auth`, which loads only
    // cli_safe plugins.
    let providers = work.run_cli(&["auth", "providers"], &[]);
    assert_eq!(providers.code, 0, "{providers:?}");
    assert!(providers.stdout.contains("my_auth"), "{providers:?}");
    let status = work.run_cli(&["auth", "status", "my_auth"], &[]);
    assert_eq!(status.code, 1, "{status:?}");
    assert!(status.stdout.contains("not logged in"), "{status:?}");

    // All three in the real server; the provider in front of the mock.
    let mock = Mock::start(&["--expect-header", "x-api-key=sk-scaffold"]);
    let base_url = mock.url();
    let proxy = Proxy::start_in(
        work,
        ProxyOptions {
            env: &[
                ("PLUGINS__MY_PROVIDER__API_KEY", "sk-scaffold"),
                ("PLUGINS__MY_PROVIDER__BASE_URL", &base_url),
            ],
            ..ProxyOptions::default()
        },
    );
    let order = proxy.get("/plugins/status").json()["initialization_order"].clone();
    for (name, _) in KINDS {
        assert!(
            order.as_array().is_some_and(|o| o.contains(&json!(name))),
            "{name} is not active: {order}; log:\n{}",
            proxy.log()
        );
    }
    let chat = proxy.post_json(
        "/my_provider/v1/chat/completions",
        &json!({"model": "claude-sonnet-4-20250514", "messages": [{"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(chat.status, 200, "{}", chat.text());
    let chat = chat.json();
    assert_eq!(chat["object"], "chat.completion", "{chat:#}");
    assert!(
        chat["choices"][0]["message"]["content"].is_string(),
        "{chat:#}"
    );
    let sent = mock.requests_to("/v1/messages");
    assert_eq!(sent.len(), 1, "{sent:#?}");

    let counted = poll(Duration::from_secs(5), || {
        let status = proxy.get("/my_system/status").json();
        (status["requests_completed"].as_u64() >= Some(2)).then_some(status)
    });
    let status = counted.unwrap_or_else(|| {
        panic!(
            "the system plugin's hook did not count requests: {}",
            proxy.get("/my_system/status").text()
        )
    });
    assert_eq!(status["greeting"], "Hello", "{status:#}");
}

#[test]
fn sdk_path_names_the_sdk_crates_on_disk_by_path() {
    let work = Sandbox::new();
    let dir = work.root().join("my_auth");
    let checkout = workspace_root().display().to_string();
    let created = work.run_cli(
        &[
            "plugins",
            "scaffold",
            "my_auth",
            "--type",
            "auth",
            "--dir",
            &dir.display().to_string(),
            "--sdk-path",
            &checkout,
        ],
        &[],
    );
    assert_eq!(created.code, 0, "{created:?}");
    let manifest_text = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&manifest_text).unwrap();
    let root = workspace_root().canonicalize().unwrap();
    for (dependency, folder) in [
        ("ccproxy-plugin-abi", "plugin-abi"),
        ("ccproxy-plugin-kit", "plugins/kit"),
    ] {
        assert_eq!(
            manifest["dependencies"][dependency]["path"].as_str(),
            Some(root.join(folder).display().to_string().as_str()),
            "{manifest_text}"
        );
    }
    // Cargo resolves them (no build: the paths are what is under test).
    fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    cargo(&dir, &["metadata", "--format-version", "1", "--no-deps"]);
    cargo(&dir, &["tree", "--depth", "1", "-e", "normal"]);

    // A folder without the SDK is refused, saying what to point at.
    let empty = work.root().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let refused = work.run_cli(
        &[
            "plugins",
            "scaffold",
            "other",
            "--dir",
            &work.root().join("other").display().to_string(),
            "--sdk-path",
            &empty.display().to_string(),
        ],
        &[],
    );
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("no ccproxy-plugin-abi there"),
        "{refused:?}"
    );
}

#[test]
fn names_that_would_break_env_overrides_are_refused() {
    let work = Sandbox::new();
    let bad = work.run_cli(&["plugins", "scaffold", "My-Plugin"], &[]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("lower-case ASCII letters"), "{bad:?}");
    let double = work.run_cli(&["plugins", "scaffold", "my__plugin"], &[]);
    assert_eq!(double.code, 2, "{double:?}");
    assert!(
        double.stderr.contains("PLUGINS__NAME__FIELD") && double.stderr.contains("e.g. my_plugin"),
        "{double:?}"
    );
    assert!(!work.root().join("my__plugin").exists());
}
