use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use ccproxy_plugin_abi::testing::{MockHost, TestPlugin};

use super::*;

fn start(dir: &Path, config: Value) -> (MockHost, TestPlugin) {
    let mut config = config;
    config["log_dir"] = Value::from(dir.display().to_string());
    let host = MockHost::new().config(config);
    let plugin = host
        .start::<CommandReplay>()
        .expect("command_replay starts");
    (host, plugin)
}

fn call(plugin: &TestPlugin, event: HookEvent, id: &str, data: Value, body: &[u8]) {
    plugin
        .hook_with(HookContext {
            hook: "command_replay".into(),
            event,
            timestamp_ms: 1_700_000_000_000,
            request_id: Some(id.to_owned()),
            data,
            body: body.to_vec(),
        })
        .unwrap();
}

fn sent(url: &str) -> Value {
    // As the host sends them: `[name, value]` pairs, credentials masked.
    json!({"request_id": "r1", "provider": "claude_api", "method": "POST", "url": url,
           "headers": [["x-api-key", "***cret"], ["authorization", "Bearer ***cret"],
                       ["anthropic-version", "2023-06-01"], ["content-type", "application/json"],
                       ["host", "api.anthropic.com"], ["content-length", "12"]]})
}

/// `provider.request.sent` of request `id` to Anthropic's Messages API.
fn send_to_anthropic(plugin: &TestPlugin, id: &str, body: &[u8]) {
    let data = sent("https://api.anthropic.com/v1/messages");
    call(plugin, HookEvent::ProviderRequestSent, id, data, body);
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn an_upstream_request_becomes_curl_and_xh_scripts_with_secrets_masked() {
    let root = tempfile::tempdir().unwrap();
    let scratch = root.path().join("replay");
    let scratch = scratch.as_path();
    let (_host, plugin) = start(scratch, json!({}));
    let body = br#"{"model":"m","messages":[{"role":"user","content":"it's\nfine"}]}"#;
    send_to_anthropic(&plugin, "r1", body);
    assert_eq!(names(scratch), ["r1_curl.sh", "r1_xh.sh"]);
    let curl = fs::read_to_string(scratch.join("r1_curl.sh")).unwrap();
    assert!(
        curl.starts_with("#!/bin/sh\n# ccproxy command_replay: upstream request of request r1\n"),
        "{curl}"
    );
    assert!(curl.contains("-H 'x-api-key: ***'"), "{curl}");
    assert!(curl.contains("-H 'authorization: Bearer ***'"), "{curl}");
    assert!(
        curl.contains("-H 'anthropic-version: 2023-06-01'"),
        "{curl}"
    );
    assert!(!curl.contains("***cret"), "{curl}");
    assert!(!curl.contains("content-length"), "{curl}");
    assert!(!curl.contains("host:"), "{curl}");
    assert!(
        curl.contains("'https://api.anthropic.com/v1/messages'"),
        "{curl}"
    );
    assert!(curl.contains(r#"printf '%s' '{"model":"m","messages":[{"role":"user","content":"it'\''s\nfine"}]}' | curl"#), "{curl}");
    let xh = fs::read_to_string(scratch.join("r1_xh.sh")).unwrap();
    assert!(
        xh.contains("| xh 'POST' 'https://api.anthropic.com/v1/messages'"),
        "{xh}"
    );
    assert!(xh.contains("'x-api-key:***'"), "{xh}");
    let mode = fs::metadata(scratch.join("r1_curl.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        fs::metadata(scratch).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn the_script_feeds_the_exact_body() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(
        scratch.path(),
        json!({"generate_xh": false, "include_url_patterns": []}),
    );
    let body = "{\"text\":\"quotes ' \\\" and $HOME `x` %s\\n\"}\n\n".as_bytes();
    call(
        &plugin,
        HookEvent::ProviderRequestSent,
        "r1",
        sent("http://127.0.0.1:9/v1/messages"),
        body,
    );
    let script = fs::read_to_string(scratch.path().join("r1_curl.sh")).unwrap();
    // The body feed is everything before ` | curl`, after the comments.
    let feed = script
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let feed = &feed[..feed.find(" | curl").unwrap()];
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(feed)
        .output()
        .unwrap();
    assert_eq!(output.stdout, body);
}

#[test]
fn every_header_the_host_masks_is_masked_by_its_name() {
    // The host's list (`host/src/telemetry.rs`).
    for name in [
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "cookie",
        "set-cookie",
        "x-auth-token",
        "anthropic-api-key",
        "openai-api-key",
    ] {
        assert!(redact::is_secret_header(name, &[], true), "{name}");
    }
}

#[test]
fn secret_body_keys_are_masked_unless_mask_secrets_is_off() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(scratch.path(), json!({"generate_xh": false}));
    let body = br#"{"grant_type":"refresh_token","refresh_token":"rt-secret"}"#;
    let url = "https://claude.ai/v1/oauth/token";
    call(
        &plugin,
        HookEvent::ProviderRequestSent,
        "r1",
        sent(url),
        body,
    );
    let script = fs::read_to_string(scratch.path().join("r1_curl.sh")).unwrap();
    assert!(!script.contains("rt-secret"), "{script}");
    assert!(script.contains(r#""refresh_token":"***""#), "{script}");

    let other = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(
        other.path(),
        json!({"generate_xh": false, "mask_secrets": false}),
    );
    call(
        &plugin,
        HookEvent::ProviderRequestSent,
        "r1",
        sent(url),
        body,
    );
    let script = fs::read_to_string(other.path().join("r1_curl.sh")).unwrap();
    assert!(script.contains("rt-secret"), "{script}");
    // Headers stay as the host masked them.
    assert!(script.contains("-H 'x-api-key: ***cret'"), "{script}");
}

#[test]
fn url_patterns_choose_the_upstream_requests() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(
        scratch.path(),
        json!({"exclude_url_patterns": ["count_tokens"]}),
    );
    call(
        &plugin,
        HookEvent::ProviderRequestSent,
        "local",
        sent("http://127.0.0.1:9/v1/messages"),
        b"{}",
    );
    call(
        &plugin,
        HookEvent::ProviderRequestSent,
        "count",
        sent("https://api.anthropic.com/v1/messages/count_tokens"),
        b"{}",
    );
    call(
        &plugin,
        HookEvent::ProviderRequestSent,
        "codex",
        sent("https://chatgpt.com/backend-api/codex/responses"),
        b"{}",
    );
    assert_eq!(names(scratch.path()), ["codex_curl.sh", "codex_xh.sh"]);
}

#[test]
fn client_requests_are_replayed_against_the_proxy() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(scratch.path(), json!({"generate_xh": false}));
    let data = json!({"request_id": "c1", "method": "POST", "path": "/claude/v1/messages", "url": "/claude/v1/messages?beta=true",
                      "headers": {"host": "127.0.0.1:8123", "x-api-key": "***oken", "content-type": "application/json",
                                  "x-request-id": "c1"}});
    call(
        &plugin,
        HookEvent::RequestCompleted,
        "c1",
        data.clone(),
        b"{}",
    );
    let script = fs::read_to_string(scratch.path().join("c1_client_curl.sh")).unwrap();
    assert!(
        script.contains("'http://127.0.0.1:8123/claude/v1/messages?beta=true'"),
        "{script}"
    );
    assert!(script.contains("-H 'x-api-key: ***'"), "{script}");
    assert!(script.contains("client request of request c1"), "{script}");
    // The replay gets an id of its own.
    assert!(!script.contains("x-request-id"), "{script}");

    let other = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(other.path(), json!({"only_provider_requests": true}));
    call(
        &plugin,
        HookEvent::RequestCompleted,
        "c1",
        data.clone(),
        b"{}",
    );
    let (_host, plugin) = start(other.path(), json!({"include_client_requests": false}));
    call(&plugin, HookEvent::RequestFailed, "c1", data, b"{}");
    assert!(names(other.path()).is_empty());
}

#[test]
fn one_file_for_all_commands_when_asked() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(
        scratch.path(),
        json!({"separate_files_per_command": false, "pretty_format": false}),
    );
    for id in ["a", "b"] {
        send_to_anthropic(&plugin, id, b"{}");
    }
    assert_eq!(names(scratch.path()), ["commands.sh"]);
    let text = fs::read_to_string(scratch.path().join("commands.sh")).unwrap();
    assert_eq!(text.matches("| curl ").count(), 2, "{text}");
    assert_eq!(text.matches("| xh ").count(), 2, "{text}");
    assert!(text.contains("# --- b_xh.sh"), "{text}");
}

#[test]
fn commands_can_go_to_the_log_only() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("never");
    let (host, plugin) = start(
        &folder,
        json!({"write_to_files": false, "log_to_console": true, "log_level": "info", "generate_xh": false}),
    );
    send_to_anthropic(&plugin, "r1", b"{}");
    assert!(host.logged("command_replay r1_curl.sh:"));
    assert!(!folder.exists());
}

#[test]
fn a_planted_symlink_is_not_followed() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("replay");
    let (_host, plugin) = start(&folder, json!({"generate_xh": false}));
    let victim = scratch.path().join("victim");
    fs::write(&victim, "untouched").unwrap();
    let planted = folder.join("r1_curl.sh");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    send_to_anthropic(&plugin, "r1", b"{}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
    // The script replaced the link.
    assert!(fs::symlink_metadata(&planted).unwrap().is_file());
    assert!(fs::read_to_string(&planted).unwrap().contains("| curl "));

    // Appending to commands.sh through a link is refused.
    let other = scratch.path().join("appended");
    let (_host, plugin) = start(&other, json!({"separate_files_per_command": false}));
    std::os::unix::fs::symlink(&victim, other.join("commands.sh")).unwrap();
    send_to_anthropic(&plugin, "r1", b"{}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
    let health = plugin.health().unwrap();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert_eq!(health.details["write_errors"], 2);
}

#[test]
fn manifest_and_defaults() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(scratch.path(), json!({}));
    let manifest = plugin.manifest();
    assert_eq!(manifest.hooks[0].priority, 200);
    assert_eq!(
        manifest.hooks[0].bodies,
        [HookBody::UpstreamRequestBody, HookBody::RequestBody]
    );
    assert_eq!(
        manifest.config.defaults,
        json!({
            "enabled": false,
            "generate_curl": true, "generate_xh": true, "pretty_format": true,
            "include_url_patterns": ["api.anthropic.com", "api.openai.com", "claude.ai", "chatgpt.com"],
            "exclude_url_patterns": [], "log_dir": null, "write_to_files": true,
            "separate_files_per_command": true, "log_to_console": false, "log_level": "TRACE",
            "only_provider_requests": false, "include_client_requests": true,
            "mask_secrets": true, "max_total_bytes": 268_435_456,
        })
    );
}

#[test]
fn bad_config_is_refused() {
    for config in [json!({"log_level": "LOUD"}), json!({"generate_wget": true})] {
        let error = MockHost::new()
            .config(config.clone())
            .start::<CommandReplay>()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid, "{config}: {error}");
    }
}
