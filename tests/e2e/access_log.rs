//! The bundled `access_log` plugin through the real host: one client-log line
//! per answered request, with the provider, the model and the token usage
//! the host read off the upstream's answer (complete, passed-through stream,
//! converted stream), in the structured and Common formats, with the
//! protocol the client spoke; the provider log beside it; excluded paths
//! left out. Lines reach the file by shutdown at the latest.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use ccproxy_e2e::{Proxy, ProxyOptions, Sandbox, mock::Mock};
use serde_json::{Value, json};

const MODEL: &str = "claude-sonnet-4-20250514";

/// A proxy with the access log (client log in `format`, provider log on,
/// both in `logs`, which outlives the proxy's sandbox) and claude_api in
/// front of `mock`; returns the client log's path.
fn proxy(logs: &Path, mock: &Mock, format: &str) -> (Proxy, PathBuf) {
    let sandbox = Sandbox::new();
    let client_log = logs.join("access.log");
    let provider_log = logs.join("provider.log");
    let client_log_text = client_log.display().to_string();
    let provider_log_text = provider_log.display().to_string();
    let base_url = mock.url();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["access_log", "claude_api"],
            env: &[
                ("ANTHROPIC_API_KEY", "test-key"),
                ("PLUGINS__CLAUDE_API__BASE_URL", &base_url),
                ("PLUGINS__ACCESS_LOG__CLIENT_LOG_FILE", &client_log_text),
                ("PLUGINS__ACCESS_LOG__CLIENT_FORMAT", format),
                ("PLUGINS__ACCESS_LOG__PROVIDER_ENABLED", "true"),
                ("PLUGINS__ACCESS_LOG__PROVIDER_LOG_FILE", &provider_log_text),
            ],
            ..ProxyOptions::default()
        },
    );
    (proxy, client_log)
}

fn post(proxy: &Proxy, path: &str, body: &Value, request_id: &str) -> u16 {
    proxy
        .request(
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("x-request-id", request_id),
            ],
            body.to_string().as_bytes(),
        )
        .status
}

#[test]
fn every_answer_is_logged_with_its_provider_model_and_tokens() {
    let mock = Mock::start(&[]);
    let logs = tempfile::tempdir().expect("a scratch folder");
    let provider_log = logs.path().join("provider.log");
    let (proxy, client_log) = proxy(logs.path(), &mock, "structured");
    let anthropic = |stream: bool| {
        json!({"model": MODEL, "max_tokens": 100, "stream": stream,
               "messages": [{"role": "user", "content": "Hello"}]})
    };
    let chat = |stream: bool| {
        json!({"model": MODEL, "stream": stream, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "Hello"}]})
    };
    assert_eq!(
        post(&proxy, "/claude/v1/messages", &anthropic(false), "plain"),
        200
    );
    assert_eq!(
        post(
            &proxy,
            "/claude/v1/messages",
            &anthropic(true),
            "passthrough"
        ),
        200
    );
    assert_eq!(
        post(
            &proxy,
            "/claude/v1/chat/completions",
            &chat(true),
            "converted"
        ),
        200
    );
    assert_eq!(
        post(
            &proxy,
            "/claude/v1/chat/completions",
            &chat(false),
            "chat-plain"
        ),
        200
    );
    // Excluded by default.
    assert_eq!(proxy.get("/health").status, 200);
    let (exit, log) = proxy.stop_with(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}\n{log}");

    let text = fs::read_to_string(&client_log)
        .unwrap_or_else(|error| panic!("{}: {error}; log:\n{log}", client_log.display()));
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let line = |request_id: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["request_id"] == request_id)
            .unwrap_or_else(|| panic!("no line for {request_id}:\n{text}"))
    };
    assert_eq!(
        lines.len(),
        4,
        "one line per request, /health left out:\n{text}"
    );
    // The recorded answers: 24 input tokens, 40 out (complete) or 41 (stream).
    for (request_id, path, streaming, output) in [
        ("plain", "/claude/v1/messages", false, 40),
        ("passthrough", "/claude/v1/messages", true, 41),
        ("converted", "/claude/v1/chat/completions", true, 41),
        ("chat-plain", "/claude/v1/chat/completions", false, 40),
    ] {
        let entry = line(request_id);
        assert_eq!(entry["path"], path, "{entry}");
        assert_eq!(entry["status_code"], 200, "{entry}");
        assert_eq!(entry["provider"], "claude_api", "{entry}");
        assert_eq!(entry["model"], MODEL, "{entry}");
        assert_eq!(entry["streaming"], streaming, "{entry}");
        assert_eq!(entry["tokens_input"], 24, "{entry}");
        assert_eq!(entry["tokens_output"], output, "{entry}");
        assert!(
            entry["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{entry}"
        );
    }

    // The provider log: the upstream's answers, and the streams' ends with
    // their tokens.
    let provider_text = fs::read_to_string(&provider_log)
        .unwrap_or_else(|error| panic!("{}: {error}", provider_log.display()));
    let provider_lines: Vec<Value> = provider_text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let received = provider_lines
        .iter()
        .filter(|l| l["event"] == "provider.response.received")
        .count();
    assert_eq!(received, 4, "{provider_text}");
    let ends: Vec<&Value> = provider_lines
        .iter()
        .filter(|l| l["event"] == "provider.stream.end")
        .collect();
    assert_eq!(ends.len(), 2, "{provider_text}");
    for end in ends {
        assert_eq!(
            (&end["tokens_input"], &end["tokens_output"]),
            (&json!(24), &json!(41)),
            "{end}"
        );
    }
}

#[test]
fn the_common_format_writes_the_protocol_the_client_spoke() {
    let mock = Mock::start(&[]);
    let logs = tempfile::tempdir().expect("a scratch folder");
    let (proxy, client_log) = proxy(logs.path(), &mock, "common");
    assert_eq!(proxy.get("/plugins").status, 200);
    assert_eq!(proxy.get_h2c("/plugins").status, 200);
    std::thread::sleep(Duration::from_millis(100));
    let (exit, log) = proxy.stop_with(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}\n{log}");
    let text = fs::read_to_string(&client_log).expect("the client log exists");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /plugins HTTP/1.1\" 200 ")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /plugins HTTP/2.0\" 200 ")),
        "{text}"
    );
    assert!(
        lines.iter().all(|l| l.starts_with("127.0.0.1 - - [")),
        "{text}"
    );
}
