//! `ccproxy plugins scaffold`: each kind of new plugin crate passes its own
//! tests, builds into a library this host loads, and works in the real server
//! (the system plugin's route and hook, the provider in front of the mock
//! upstream with a client format converted, the auth provider on the CLI).
//!
//! Unlike the rest of the suite this test runs cargo: building the user's new
//! crate is what is under test. It builds offline with the workspace's lock
//! file, into one target directory shared by the three crates.

use std::{fs, path::Path, process::Command, time::Duration};

use ccproxy_e2e::{Proxy, ProxyOptions, Sandbox, mock::Mock, poll, target_dir, workspace_root};
use serde_json::json;

const KINDS: [(&str, &str); 3] = [
    ("my_system", "system"),
    ("my_provider", "provider"),
    ("my_auth", "auth"),
];

/// Runs cargo in `crate_dir`; panics with its output when it fails.
fn cargo(crate_dir: &Path, args: &[&str]) {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(args)
        .arg("--offline")
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", target_dir().join("scaffold"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?} failed in {}:\n{}\n{}",
        crate_dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn each_kind_of_scaffold_tests_builds_and_serves() {
    let work = Sandbox::new();
    let sdk = workspace_root().join("plugin-abi");
    let sdk = sdk.display().to_string();
    for (name, kind) in KINDS {
        let dir = work.root().join(name);
        let dir_arg = dir.display().to_string();
        let created = work.run_cli(
            &[
                "plugins",
                "scaffold",
                name,
                "--type",
                kind,
                "--dir",
                &dir_arg,
                "--sdk-path",
                &sdk,
            ],
            &[],
        );
        assert_eq!(created.code, 0, "{created:?}");
        assert!(
            created.stdout.contains(&format!("plugin {name} in")),
            "{created:?}"
        );
        // Same versions as the workspace, so the build needs no network.
        fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock"))
            .expect("the lock file can be copied");
        cargo(&dir, &["test", "--quiet"]);
        cargo(&dir, &["build", "--quiet"]);
        let library = target_dir()
            .join("scaffold/debug")
            .join(ccproxy_e2e::library_file_name(name));
        let checked = work.run_cli(&["plugins", "check", &library.display().to_string()], &[]);
        assert_eq!(checked.code, 0, "{checked:?}");
        assert!(
            checked.stdout.starts_with(&format!("ok: {name} 0.1.0")),
            "{checked:?}"
        );
        work.install_file(
            &library,
            &work.plugin_dir(),
            &ccproxy_e2e::library_file_name(name),
            Some(0o644),
        );
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
    let bad = work.run_cli(&["plugins", "scaffold", "My-Plugin"], &[]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("lower-case ASCII letters"), "{bad:?}");

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
