use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use ccproxy_plugin_abi::{
    serde_json,
    testing::{MockHost, TestPlugin},
};

use super::*;

const KEY: &str = "sk-ant-api03-SECRET-never-written";

fn start(dir: &Path, config: Value) -> (MockHost, TestPlugin) {
    let mut config = config;
    config["log_dir"] = Value::from(dir.display().to_string());
    let host = MockHost::new().config(config);
    let plugin = host
        .start::<RequestTracer>()
        .expect("request_tracer starts");
    (host, plugin)
}

fn call(plugin: &TestPlugin, event: HookEvent, id: &str, data: Value, body: &[u8]) {
    plugin
        .hook_with(HookContext {
            hook: "request_tracer".into(),
            event,
            timestamp_ms: 1_700_000_000_000,
            request_id: Some(id.to_owned()),
            data,
            body: body.to_vec(),
        })
        .unwrap();
}

fn completed(path: &str) -> Value {
    json!({"request_id": "r1", "method": "POST", "path": path, "query": "", "url": path,
           "http_version": "HTTP/1.1", "status_code": 200, "duration_ms": 12.5, "bytes_sent": 99,
           "streaming": false, "provider": "claude_api", "model": "m", "usage": {"input_tokens": 3},
           "headers": {"authorization": "Bearer ***cret", "x-api-key": "***cret",
                       "content-type": "application/json", "x-custom-token": "abc"}})
}

fn sent() -> Value {
    // As the host sends them: `[name, value]` pairs.
    json!({"request_id": "r1", "provider": "claude_api", "method": "POST", "is_streaming": false,
           "url": "https://api.anthropic.com/v1/messages",
           "headers": [["x-api-key", KEY], ["anthropic-version", "2023-06-01"]]})
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn all_text(dir: &Path) -> String {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            String::from_utf8_lossy(&fs::read(entry.unwrap().path()).unwrap()).into_owned()
        })
        .collect()
}

#[test]
fn a_client_request_is_traced_as_json_and_raw_http_with_secrets_masked() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(scratch.path(), json!({}));
    let body = json!({"model": "m", "api_key": KEY, "messages": []}).to_string();
    call(
        &plugin,
        HookEvent::RequestCompleted,
        "r1",
        completed("/claude/v1/messages"),
        body.as_bytes(),
    );

    let trace = read_json(&scratch.path().join("r1_client_request.json"));
    assert_eq!(trace["method"], "POST");
    assert_eq!(trace["url"], "/claude/v1/messages");
    assert_eq!(trace["headers"]["authorization"], "Bearer ***");
    assert_eq!(trace["headers"]["x-api-key"], "***");
    assert_eq!(trace["headers"]["x-custom-token"], "***");
    assert_eq!(trace["headers"]["content-type"], "application/json");
    assert_eq!(
        trace["body"],
        json!({"model": "m", "api_key": "***", "messages": []})
    );
    assert_eq!(trace["body_size"], body.len());

    let raw = fs::read_to_string(scratch.path().join("r1_client_request.http")).unwrap();
    assert!(
        raw.starts_with("POST /claude/v1/messages HTTP/1.1\r\n"),
        "{raw}"
    );
    assert!(raw.contains("authorization: Bearer ***\r\n"), "{raw}");
    assert!(raw.contains("\r\n\r\n{"), "{raw}");

    let answer = read_json(&scratch.path().join("r1_client_response.json"));
    assert_eq!(answer["status_code"], 200);
    assert_eq!(answer["usage"]["input_tokens"], 3);
    assert!(!all_text(scratch.path()).contains("SECRET"));
}

#[test]
fn provider_request_response_and_error_are_traced() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(scratch.path(), json!({}));
    call(
        &plugin,
        HookEvent::ProviderRequestSent,
        "r1",
        sent(),
        br#"{"model":"m"}"#,
    );
    call(
        &plugin,
        HookEvent::ProviderResponseReceived,
        "r1",
        json!({"request_id": "r1", "provider": "claude_api", "url": "https://api.anthropic.com/v1/messages",
               "method": "POST", "status_code": 200, "duration_ms": 80.0}),
        br#"{"id":"msg_1","content":[]}"#,
    );
    call(
        &plugin,
        HookEvent::ProviderError,
        "r2",
        json!({"request_id": "r2", "provider": "codex", "url": "https://x.test/", "error": "reset", "phase": "stream"}),
        b"",
    );
    let request = read_json(&scratch.path().join("r1_provider_request.json"));
    assert_eq!(request["url"], "https://api.anthropic.com/v1/messages");
    assert_eq!(request["headers"]["x-api-key"], "***");
    assert_eq!(request["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(request["body"], json!({"model": "m"}));
    let raw = fs::read_to_string(scratch.path().join("r1_provider_request.http")).unwrap();
    assert!(raw.starts_with("POST https://api.anthropic.com/v1/messages HTTP/1.1\r\n"));
    assert!(raw.ends_with("\r\n\r\n{\"model\":\"m\"}"), "{raw}");

    let response = read_json(&scratch.path().join("r1_provider_response.json"));
    assert_eq!(response["status_code"], 200);
    assert_eq!(response["body"]["id"], "msg_1");
    let raw = fs::read_to_string(scratch.path().join("r1_provider_response.http")).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");

    let error = read_json(&scratch.path().join("r2_provider_error.json"));
    assert_eq!(
        (error["error"].as_str(), error["phase"].as_str()),
        (Some("reset"), Some("stream"))
    );
    assert!(!all_text(scratch.path()).contains("SECRET"));
    let health = plugin.health().unwrap();
    assert_eq!(health.status, HealthStatus::Healthy);
    assert_eq!(health.details["folders"][0]["files_written"], 5);
    assert_eq!(health.details["folders"][0]["write_errors"], 0);
}

#[test]
fn files_are_private_and_a_planted_symlink_is_not_followed() {
    let scratch = tempfile::tempdir().unwrap();
    let traces = scratch.path().join("traces");
    let (_host, plugin) = start(&traces, json!({"log_streaming_chunks": true}));
    assert_eq!(
        fs::metadata(&traces).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let victim = scratch.path().join("victim.txt");
    fs::write(&victim, "untouched").unwrap();
    let planted = traces.join("r1_provider_request.json");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let planted_stream = traces.join("r1_stream.jsonl");
    std::os::unix::fs::symlink(&victim, &planted_stream).unwrap();
    call(&plugin, HookEvent::ProviderRequestSent, "r1", sent(), b"{}");
    call(
        &plugin,
        HookEvent::ProviderStreamChunk,
        "r1",
        json!({"chunk_number": 1, "side": "upstream"}),
        b"data: x\n\n",
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
    // A whole trace replaces the link; appending to it is refused.
    assert!(fs::symlink_metadata(&planted).unwrap().is_file());
    assert_eq!(read_json(&planted)["kind"], "provider_request");
    for file in [&planted, &traces.join("r1_provider_request.http")] {
        assert_eq!(
            fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(fs::symlink_metadata(&planted_stream).unwrap().is_symlink());
    let health = plugin.health().unwrap();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert_eq!(health.details["folders"][0]["write_errors"], 1);
    assert!(
        health.details["reason"]
            .as_str()
            .unwrap()
            .contains("r1_stream.jsonl"),
        "{}",
        health.details
    );
}

#[test]
fn a_folder_others_can_write_is_refused_at_start() {
    let scratch = tempfile::tempdir().unwrap();
    let open = scratch.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let error = MockHost::new()
        .config(json!({"log_dir": open.display().to_string()}))
        .start::<RequestTracer>()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid);
    assert!(
        error.message().contains("writable by group or others"),
        "{error}"
    );
}

#[test]
fn request_ids_cannot_escape_the_folder() {
    let scratch = tempfile::tempdir().unwrap();
    let traces = scratch.path().join("traces");
    let (_host, plugin) = start(&traces, json!({"raw_http_enabled": false}));
    call(
        &plugin,
        HookEvent::ProviderRequestSent,
        "../../escaped",
        sent(),
        b"{}",
    );
    assert!(
        !scratch
            .path()
            .join("escaped_provider_request.json")
            .exists()
    );
    assert!(traces.join("_._.._escaped_provider_request.json").exists());
}

#[test]
fn bodies_are_cut_at_max_body_size() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(scratch.path(), json!({"max_body_size": 8}));
    call(
        &plugin,
        HookEvent::ProviderRequestSent,
        "r1",
        sent(),
        b"0123456789abcdef",
    );
    let trace = read_json(&scratch.path().join("r1_provider_request.json"));
    assert_eq!(trace["body"], "01234567");
    assert_eq!(trace["body_size"], 16);
    assert_eq!(trace["body_truncated"], true);
    let raw = fs::read(scratch.path().join("r1_provider_request.http")).unwrap();
    assert!(raw.ends_with(b"\r\n\r\n01234567"));
}

#[test]
fn switches_and_paths_choose_what_is_traced() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(
        scratch.path(),
        json!({"raw_http_enabled": false, "log_client_response": false, "include_paths": ["/claude"],
               "log_provider_request": false}),
    );
    call(
        &plugin,
        HookEvent::RequestCompleted,
        "health",
        completed("/health"),
        b"",
    );
    call(
        &plugin,
        HookEvent::RequestCompleted,
        "codex",
        completed("/codex/v1/responses"),
        b"",
    );
    call(
        &plugin,
        HookEvent::RequestCompleted,
        "claude",
        completed("/claude/v1/messages"),
        b"{}",
    );
    call(
        &plugin,
        HookEvent::ProviderRequestSent,
        "claude",
        sent(),
        b"{}",
    );
    let mut names: Vec<String> = fs::read_dir(scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["claude_client_request.json"]);
}

#[test]
fn oauth_exchanges_are_left_out_without_trace_oauth() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(scratch.path(), json!({"trace_oauth": false}));
    let mut data = sent();
    data["url"] = json!("https://console.anthropic.com/v1/oauth/token");
    call(&plugin, HookEvent::ProviderRequestSent, "r1", data, b"{}");
    assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[test]
fn stream_chunks_are_appended_only_with_log_streaming_chunks() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(scratch.path(), json!({}));
    let chunk = |plugin: &TestPlugin, number: u64, side: &str| {
        call(
            plugin,
            HookEvent::ProviderStreamChunk,
            "s1",
            json!({"request_id": "s1", "chunk_number": number, "chunk_size": 5, "side": side}),
            b"data: {\"x\":1}\n\n",
        );
    };
    chunk(&plugin, 1, "upstream");
    assert!(!scratch.path().join("s1_stream.jsonl").exists());

    let other = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(other.path(), json!({"log_streaming_chunks": true}));
    chunk(&plugin, 1, "upstream");
    chunk(&plugin, 1, "client");
    let text = fs::read_to_string(other.path().join("s1_stream.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["side"], "upstream");
    assert_eq!(lines[1]["side"], "client");
    assert_eq!(lines[1]["data"], "data: {\"x\":1}\n\n");
}

#[test]
fn the_folder_is_kept_under_max_total_bytes() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(
        scratch.path(),
        json!({"max_total_bytes": 4096, "raw_http_enabled": false}),
    );
    for index in 0..40 {
        call(
            &plugin,
            HookEvent::ProviderRequestSent,
            &format!("r{index:02}"),
            sent(),
            &[b'x'; 200],
        );
    }
    let total: u64 = fs::read_dir(scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 4096, "{total}");
    assert!(scratch.path().join("r39_provider_request.json").exists());
    assert!(!scratch.path().join("r00_provider_request.json").exists());
    assert!(
        plugin.health().unwrap().details["folders"][0]["pruned_files"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn separate_folders_for_json_and_raw() {
    let scratch = tempfile::tempdir().unwrap();
    let json_dir = scratch.path().join("json");
    let raw_dir = scratch.path().join("raw");
    let (_host, plugin) = start(
        &scratch.path().join("base"),
        json!({"request_log_dir": json_dir.display().to_string(), "raw_log_dir": raw_dir.display().to_string()}),
    );
    call(&plugin, HookEvent::ProviderRequestSent, "r1", sent(), b"{}");
    assert!(json_dir.join("r1_provider_request.json").exists());
    assert!(raw_dir.join("r1_provider_request.http").exists());
    assert_eq!(
        plugin.health().unwrap().details["folders"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn the_default_folder_is_the_xdg_state_folder() {
    let default =
        ccproxy_plugin_kit::private_files::state_folder_from(Some("/state".as_ref()), None, FOLDER)
            .unwrap();
    assert_eq!(default, PathBuf::from("/state/ccproxy/traces"));
}

#[test]
fn manifest_and_defaults() {
    let scratch = tempfile::tempdir().unwrap();
    let (_host, plugin) = start(scratch.path(), json!({}));
    let manifest = plugin.manifest();
    assert_eq!(manifest.hooks[0].name, "request_tracer");
    assert_eq!(manifest.hooks[0].priority, 300);
    assert!(
        manifest.hooks[0]
            .bodies
            .contains(&HookBody::UpstreamRequestBody)
    );
    assert_eq!(
        manifest.config.defaults,
        json!({
            "enabled": false,
            "verbose_api": true, "json_logs_enabled": true, "raw_http_enabled": true, "trace_oauth": true,
            "log_dir": null, "request_log_dir": null, "raw_log_dir": null,
            "exclude_paths": ["/health", "/metrics", "/readyz", "/livez"], "include_paths": [],
            "exclude_headers": ["authorization", "x-api-key", "cookie", "x-auth-token"],
            "redact_sensitive": true, "max_body_size": 10_485_760, "truncate_body_preview": 1024,
            "log_client_request": true, "log_client_response": true, "log_provider_request": true,
            "log_provider_response": true, "log_streaming_chunks": false, "max_total_bytes": 268_435_456,
        })
    );
}

#[test]
fn unknown_keys_are_refused() {
    let error = MockHost::new()
        .config(json!({"log_dirs": "/x"}))
        .start::<RequestTracer>()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
}
