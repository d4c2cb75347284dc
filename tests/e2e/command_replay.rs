//! The bundled `command_replay` plugin through the real host, with plugin
//! API 1.2's bodies in hooks: after requests through `/claude/v1/messages`
//! (complete and streamed) and `/codex/v1/responses`, the curl scripts it
//! wrote, run with `sh`, send the mock upstream the same body bytes and the
//! same headers as the proxy did, credentials masked (`x-api-key: ***`,
//! `Authorization: Bearer ***`); the client's script replays the client
//! request through the proxy. Needs `curl` on the PATH.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use ccproxy_e2e::{
    Proxy, ProxyOptions, Sandbox,
    mock::{CODEX_BACKEND_PATH, Mock, codex},
    mode, wait_for_files,
};
use serde_json::{Value, json};

const MODEL: &str = "claude-sonnet-4-20250514";
const API_KEY: &str = "sk-ant-api03-PLANTED-api-key-0123456789abcdef";

/// Runs `sh script`; panics with its output unless it succeeds.
fn run(script: &Path) -> String {
    let output = Command::new("sh")
        .arg(script)
        .output()
        .unwrap_or_else(|error| panic!("cannot run sh {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "sh {} failed: {output:?}\n{}",
        script.display(),
        fs::read_to_string(script).unwrap_or_default()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The one request the mock receives while `action` runs.
fn received_during(mock: &Mock, action: impl FnOnce()) -> Value {
    mock.reset();
    action();
    let mut requests = mock.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    requests.remove(0)
}

/// Headers that differ by design between the proxy's request and a replay:
/// credentials (masked), and what curl computes itself.
fn compared(name: &str) -> bool {
    ![
        "x-api-key",
        "authorization",
        "host",
        "content-length",
        "accept",
        "expect",
    ]
    .contains(&name)
}

/// Asserts `replayed` carries the same body bytes and the same headers as
/// `original`, credentials masked.
fn assert_same_request(original: &Value, replayed: &Value, what: &str) {
    assert_eq!(replayed["method"], original["method"], "{what}");
    assert_eq!(replayed["path"], original["path"], "{what}");
    assert_eq!(replayed["query"], original["query"], "{what}");
    assert_eq!(
        replayed["body_text"], original["body_text"],
        "{what}: body bytes"
    );
    let headers = original["headers"].as_object().expect("recorded headers");
    for (name, value) in headers {
        if compared(name) {
            assert_eq!(&replayed["headers"][name], value, "{what}: header {name}");
        }
    }
    for (name, value) in replayed["headers"].as_object().unwrap() {
        if compared(name) {
            assert!(
                headers.contains_key(name),
                "{what}: extra header {name}: {value}"
            );
        }
    }
}

#[test]
fn replayed_curl_commands_reproduce_the_requests() {
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|output| output.status.success()),
        "this test runs the generated scripts with curl: install it (apt-get install curl)"
    );
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    codex::write_auth_json(
        &codex::auth_json_path(sandbox.root()),
        &codex::access_token(),
        codex::REFRESH_TOKEN,
    );
    let folder: PathBuf = sandbox.root().join("state/ccproxy/command_replay");
    let claude_url = mock.url();
    let codex_url = mock.codex_base_url();
    // The mock is at 127.0.0.1, which the default patterns do not match.
    let config =
        "[plugins.command_replay]\nenabled = true\ninclude_url_patterns = [\"127.0.0.1\"]\n";
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["command_replay", "claude_api", "codex", "oauth_codex"],
            env: &[
                ("ANTHROPIC_API_KEY", API_KEY),
                ("PLUGINS__CLAUDE_API__BASE_URL", &claude_url),
                ("PLUGINS__CODEX__BASE_URL", &codex_url),
            ],
            config_toml: Some(config),
            ..ProxyOptions::default()
        },
    );
    // Pretty JSON, so the body holds newlines; quotes, `$`, backslashes and
    // non-ASCII text besides.
    let text = "it's a \"test\" with $HOME, `id`, 100% and \\n: caf\u{e9}\nsecond line";
    let anthropic = |stream: bool| {
        serde_json::to_string_pretty(&json!({"model": MODEL, "max_tokens": 100, "stream": stream,
               "messages": [{"role": "user", "content": text}]}))
        .unwrap()
    };
    let post = |path: &str, body: &str, request_id: &str| {
        let reply = proxy.request(
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("x-request-id", request_id),
            ],
            body.as_bytes(),
        );
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    };
    let plain = received_during(&mock, || {
        post("/claude/v1/messages", &anthropic(false), "plain")
    });
    let streamed = received_during(&mock, || {
        post("/claude/v1/messages", &anthropic(true), "streamed")
    });
    let codex_body = json!({"model": "gpt-5.3-codex", "stream": true, "instructions": "Be brief.",
                            "input": [{"role": "user", "content": text}]});
    let codex = received_during(&mock, || {
        post("/codex/v1/responses", &codex_body.to_string(), "codex")
    });
    assert_eq!(codex["path"], CODEX_BACKEND_PATH);

    // Every script of the three requests, so none is still being written
    // (as a `.NAME.tmp` renamed into place) when the folder is read below.
    let every_script: Vec<String> = ["plain", "streamed", "codex"]
        .iter()
        .flat_map(|id| {
            ["curl", "xh", "client_curl", "client_xh"].map(|kind| format!("{id}_{kind}.sh"))
        })
        .collect();
    wait_for_files(&folder, &every_script, &proxy);
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&folder.join("plain_curl.sh")), 0o600);

    // Credentials masked, in every script.
    let access_token = codex::access_token();
    for entry in fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let script = fs::read_to_string(&path).unwrap();
        for secret in [API_KEY, access_token.as_str()] {
            assert!(!script.contains(secret), "{}:\n{script}", path.display());
        }
    }
    let plain_script = fs::read_to_string(folder.join("plain_curl.sh")).unwrap();
    assert!(
        plain_script.contains("-H 'x-api-key: ***'"),
        "{plain_script}"
    );
    let codex_script = fs::read_to_string(folder.join("codex_curl.sh")).unwrap();
    assert!(
        codex_script.contains("-H 'authorization: Bearer ***'"),
        "{codex_script}"
    );

    // Each script, run, sends the mock what the proxy sent.
    for (name, original) in [
        ("plain_curl.sh", &plain),
        ("streamed_curl.sh", &streamed),
        ("codex_curl.sh", &codex),
    ] {
        let replayed = received_during(&mock, || {
            run(&folder.join(name));
        });
        assert_same_request(original, &replayed, name);
        let masked = if name.starts_with("codex") {
            ("authorization", "Bearer ***")
        } else {
            ("x-api-key", "***")
        };
        assert_eq!(replayed["headers"][masked.0], masked.1, "{name}");
    }
    // xh is not installed here: its scripts are at least valid shell.
    for name in ["plain_xh.sh", "codex_xh.sh"] {
        let check = Command::new("sh")
            .arg("-n")
            .arg(folder.join(name))
            .output()
            .unwrap();
        assert!(check.status.success(), "{name}: {check:?}");
    }

    // The client's script replays through the proxy, which sends the same
    // upstream request again.
    let through_proxy = received_during(&mock, || {
        let answer = run(&folder.join("plain_client_curl.sh"));
        assert!(
            answer.contains("\"type\":\"message\"") || answer.contains("\"type\": \"message\""),
            "{answer}"
        );
    });
    assert_same_request(&plain, &through_proxy, "plain_client_curl.sh");
}
