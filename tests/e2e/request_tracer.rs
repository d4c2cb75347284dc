//! The bundled `request_tracer` plugin through the real host, with plugin API
//! 1.2's bodies in hooks: requests through `/claude/v1/messages` (complete
//! and streamed) and `/codex/v1/responses` leave JSON and raw HTTP traces of
//! what the client sent and what went upstream and came back, in
//! `$XDG_STATE_HOME/ccproxy/traces` (0700, files 0600); no credential planted
//! in the proxy's config, environment or login file, nor the client's token,
//! appears in any trace; a symlink planted at a trace's name is never
//! followed (a whole trace replaces it, an append to it is refused).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ccproxy_e2e::{
    Proxy, ProxyOptions, Sandbox, file_names,
    mock::{Mock, codex},
    mode, wait_for_files,
};
use serde_json::{Value, json};

const MODEL: &str = "claude-sonnet-4-5-20250929";
/// The Anthropic API key the proxy uses upstream.
const API_KEY: &str = "sk-ant-api03-PLANTED-api-key-0123456789abcdef";
/// The token clients must send the proxy.
const CLIENT_TOKEN: &str = "client-PLANTED-token-0123456789abcdef";

fn read_json(path: &Path) -> Value {
    ccproxy_e2e::read_json(path)
}

#[test]
fn traces_are_written_redacted_privately_and_never_through_a_planted_symlink() {
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    codex::write_auth_json(
        &codex::auth_json_path(sandbox.root()),
        &codex::access_token(),
        codex::REFRESH_TOKEN,
    );
    // The trace folder as the host's environment puts it, made in advance
    // (0700) with symlinks where traces go.
    let traces: PathBuf = sandbox.root().join("state/ccproxy/traces");
    fs::create_dir_all(&traces).unwrap();
    for dir in [sandbox.root().join("state/ccproxy"), traces.clone()] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim.txt");
    fs::write(&victim, "untouched").unwrap();
    let planted = traces.join("plain_provider_request.json");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let planted_stream = traces.join("codex_stream.jsonl");
    std::os::unix::fs::symlink(&victim, &planted_stream).unwrap();

    let claude_url = mock.url();
    let codex_url = mock.codex_base_url();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["request_tracer", "claude_api", "codex", "oauth_codex"],
            env: &[
                ("ANTHROPIC_API_KEY", API_KEY),
                ("PLUGINS__CLAUDE_API__BASE_URL", &claude_url),
                ("PLUGINS__CODEX__BASE_URL", &codex_url),
                ("SECURITY__AUTH_TOKEN", CLIENT_TOKEN),
                ("PLUGINS__REQUEST_TRACER__ENABLED", "true"),
                ("PLUGINS__REQUEST_TRACER__LOG_STREAMING_CHUNKS", "true"),
            ],
            ..ProxyOptions::default()
        },
    );
    let post = |path: &str, body: &Value, request_id: &str| {
        let reply = proxy.request(
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("x-api-key", CLIENT_TOKEN),
                ("x-request-id", request_id),
            ],
            body.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    };
    let anthropic = |stream: bool| {
        json!({"model": MODEL, "max_tokens": 100, "stream": stream,
               "messages": [{"role": "user", "content": "Hello"}]})
    };
    post("/claude/v1/messages", &anthropic(false), "plain");
    post("/claude/v1/messages", &anthropic(true), "streamed");
    post(
        "/codex/v1/responses",
        &json!({"model": "gpt-5.3-codex", "stream": true, "instructions": "Be brief.",
                "input": [{"role": "user", "content": "Hello"}]}),
        "codex",
    );

    let expected: Vec<String> = [
        "plain_client_request.json",
        "plain_client_request.http",
        "plain_client_response.json",
        "plain_provider_request.json",
        "plain_provider_request.http",
        "plain_provider_response.json",
        "plain_provider_response.http",
        "streamed_client_request.json",
        "streamed_provider_request.json",
        "streamed_stream.jsonl",
        "streamed_client_response.json",
        "codex_client_request.json",
        "codex_provider_request.json",
        "codex_provider_request.http",
        "codex_client_response.json",
    ]
    .map(str::to_owned)
    .to_vec();
    wait_for_files(&traces, &expected, &proxy);

    // The planted symlinks were not followed: the whole trace replaced its
    // link, the stream's appends were refused.
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
    assert!(fs::symlink_metadata(&planted).unwrap().is_file());
    assert_eq!(read_json(&planted)["kind"], "provider_request");
    assert!(
        fs::symlink_metadata(&planted_stream)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // Private: the folder 0700, every file 0600.
    assert_eq!(mode(&traces), 0o700);
    // (A `.NAME.tmp` is a trace still being written, about to be renamed.)
    for name in file_names(&traces) {
        if name.ends_with(".tmp") {
            continue;
        }
        let path = traces.join(&name);
        if !fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            assert_eq!(mode(&path), 0o600, "{name}");
        }
    }

    // What the client sent, its token masked.
    let client = read_json(&traces.join("plain_client_request.json"));
    assert_eq!(client["method"], "POST");
    assert_eq!(client["url"], "/claude/v1/messages");
    assert_eq!(client["headers"]["x-api-key"], "***");
    assert_eq!(client["body"], anthropic(false));
    let raw = fs::read_to_string(traces.join("plain_client_request.http")).unwrap();
    assert!(
        raw.starts_with("POST /claude/v1/messages HTTP/1.1\r\n"),
        "{raw}"
    );
    assert!(raw.contains("\r\n\r\n{"), "{raw}");
    let answered = read_json(&traces.join("plain_client_response.json"));
    assert_eq!(answered["status_code"], 200, "{answered}");

    // What went upstream, the API key masked; what came back.
    let raw = fs::read_to_string(traces.join("plain_provider_request.http")).unwrap();
    assert!(
        raw.starts_with(&format!("POST {claude_url}/v1/messages HTTP/1.1\r\n")),
        "{raw}"
    );
    assert!(raw.contains("x-api-key: ***\r\n"), "{raw}");
    let upstream = read_json(&traces.join("streamed_provider_request.json"));
    assert_eq!(upstream["headers"]["x-api-key"], "***", "{upstream}");
    assert_eq!(upstream["body"]["model"], MODEL, "{upstream}");
    assert_eq!(upstream["body"]["stream"], true, "{upstream}");
    let answer = read_json(&traces.join("plain_provider_response.json"));
    assert_eq!(answer["status_code"], 200, "{answer}");
    assert_eq!(answer["body"]["type"], "message", "{answer}");

    // The stream's chunks, both sides.
    let stream = fs::read_to_string(traces.join("streamed_stream.jsonl")).unwrap();
    let chunks: Vec<Value> = stream
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for side in ["upstream", "client"] {
        assert!(
            chunks.iter().any(|chunk| chunk["side"] == side),
            "no {side} chunk: {stream}"
        );
    }
    assert!(stream.contains("message_start"), "{stream}");

    // Codex: the login's bearer token masked.
    let codex_request = read_json(&traces.join("codex_provider_request.json"));
    assert!(
        codex_request["url"]
            .as_str()
            .unwrap()
            .ends_with("/backend-api/codex/responses"),
        "{codex_request}"
    );
    assert_eq!(codex_request["headers"]["authorization"], "Bearer ***");

    // No secret anywhere in the folder.
    let access_token = codex::access_token();
    for name in file_names(&traces) {
        let path = traces.join(&name);
        let Ok(bytes) = fs::read(&path) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        for secret in [
            API_KEY,
            CLIENT_TOKEN,
            access_token.as_str(),
            codex::REFRESH_TOKEN,
        ] {
            assert!(!text.contains(secret), "{name} holds a secret:\n{text}");
        }
        // Not even the hint the host's masking keeps.
        assert!(!text.contains("***cdef"), "{name}:\n{text}");
    }

    // Health counts the refused appends (once the codex chunks were seen).
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let reply = proxy.get_with(
            "/plugins/request_tracer/health",
            &[("x-api-key", CLIENT_TOKEN)],
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        let health = reply.json();
        if health["details"]["folders"][0]["write_errors"]
            .as_u64()
            .is_some_and(|errors| errors > 0)
            || Instant::now() > deadline
        {
            break health;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let folder = &health["details"]["folders"][0];
    assert!(folder["write_errors"].as_u64().unwrap() >= 1, "{health}");
    assert!(
        folder["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("codex_stream.jsonl"),
        "{health}"
    );
    assert!(folder["files_written"].as_u64().unwrap() >= 15, "{health}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
}
