//! The bundled `access_log` plugin through the real host: one client-log line
//! per answered request, with the provider, the model and the token usage
//! the host read off the upstream's answer (complete, passed-through stream,
//! converted stream), in the structured and Common formats, with the
//! protocol the client spoke; the provider log beside it; excluded paths
//! left out. Lines reach the file by shutdown at the latest.
//!
//! And what a hostile neighbour or client cannot do to it (issue 13): the
//! default files live in the user's private `$XDG_STATE_HOME/ccproxy` (0700
//! folder, 0600 files), a symlink planted at the log's name is refused and
//! reported rather than followed, a folder others can write is refused until
//! fixed, and control characters from the client never reach the file raw.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use ccproxy_e2e::{Proxy, ProxyOptions, Sandbox, mock::Mock, mode, poll, set_mode};
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

/// A proxy with only the access log, flushing every 0.2 s, with `env` added.
fn access_log_only(sandbox: Sandbox, env: &[(&str, &str)]) -> Proxy {
    let mut all = vec![("PLUGINS__ACCESS_LOG__FLUSH_INTERVAL", "0.2")];
    all.extend_from_slice(env);
    Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["access_log"],
            env: &all,
            ..ProxyOptions::default()
        },
    )
}

/// `$XDG_STATE_HOME/ccproxy` of the sandbox the harness runs the proxy in.
fn state_folder(sandbox: &Sandbox) -> PathBuf {
    sandbox.root().join("state").join("ccproxy")
}

/// The text of `path` once it holds `lines` lines (at most 10 s).
fn wait_for_lines(path: &Path, lines: usize, proxy: &Proxy) -> String {
    poll(Duration::from_secs(10), || {
        fs::read_to_string(path)
            .ok()
            .filter(|text| text.lines().count() >= lines)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} never held {lines} lines ({:?}); log:\n{}",
            path.display(),
            fs::read_to_string(path),
            proxy.log()
        )
    })
}

/// `/plugins/access_log/health` once its status is `status` (at most 10 s).
fn wait_for_health(proxy: &Proxy, status: &str) -> Value {
    let mut last = Value::Null;
    poll(Duration::from_secs(10), || {
        last = proxy.get("/plugins/access_log/health").json();
        (last["status"] == status).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "health never became {status}: {last:#}; log:\n{}",
            proxy.log()
        )
    })
}

#[test]
fn the_default_logs_are_private_files_in_the_xdg_state_folder() {
    let sandbox = Sandbox::new();
    let folder = state_folder(&sandbox);
    let proxy = access_log_only(
        sandbox,
        &[("PLUGINS__ACCESS_LOG__PROVIDER_ENABLED", "true")],
    );
    assert_eq!(proxy.get("/plugins").status, 200);
    let text = wait_for_lines(&folder.join("access.log"), 1, &proxy);
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["path"], "/plugins", "{text}");
    assert_eq!(mode(&folder), 0o700, "{}", folder.display());
    assert_eq!(mode(folder.parent().unwrap()), 0o700, "$XDG_STATE_HOME");
    assert_eq!(mode(&folder.join("access.log")), 0o600);
    // The provider log is opened at start, so it exists before any line.
    assert_eq!(mode(&folder.join("provider_access.log")), 0o600);

    let health = wait_for_health(&proxy, "healthy");
    assert_eq!(
        health["details"]["client"]["file"],
        folder.join("access.log").display().to_string(),
        "{health:#}"
    );
    assert!(
        proxy.log().contains(&format!(
            "writing client log to {}",
            folder.join("access.log").display()
        )),
        "{}",
        proxy.log()
    );
}

#[test]
fn a_symlink_planted_at_the_log_is_refused_and_its_target_left_alone() {
    let sandbox = Sandbox::new();
    let folder = state_folder(&sandbox);
    fs::create_dir_all(&folder).unwrap();
    set_mode(folder.parent().unwrap(), 0o700);
    set_mode(&folder, 0o700);
    // Outside the sandbox, which goes when the proxy stops.
    let elsewhere = tempfile::tempdir().expect("a scratch folder");
    let victim = elsewhere.path().join("victim.txt");
    fs::write(&victim, "keep me\n").unwrap();
    std::os::unix::fs::symlink(&victim, folder.join("access.log")).unwrap();

    let proxy = access_log_only(sandbox, &[]);
    assert_eq!(proxy.get("/plugins").status, 200);
    let health = wait_for_health(&proxy, "degraded");
    let reason = health["details"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("symbolic link") && reason.contains("remove it"),
        "{health:#}"
    );
    proxy.wait_for_log("symbolic link", Duration::from_secs(5));
    // The proxy keeps serving, and the line waits in memory.
    assert_eq!(proxy.get("/health/live").status, 200);
    assert_eq!(
        health["details"]["client"]["written_lines"], 0,
        "{health:#}"
    );
    let (exit, log) = proxy.stop_with(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}\n{log}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me\n", "{log}");
}

#[test]
fn a_configured_folder_others_can_write_is_refused_until_it_is_made_private() {
    let sandbox = Sandbox::new();
    let shared = sandbox.root().join("shared");
    fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o777);
    let file = shared.join("access.log");
    let file_text = file.display().to_string();
    let proxy = access_log_only(
        sandbox,
        &[("PLUGINS__ACCESS_LOG__CLIENT_LOG_FILE", &file_text)],
    );
    let health = wait_for_health(&proxy, "degraded");
    let reason = health["details"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("writable by group or others") && reason.contains("chmod 700"),
        "{health:#}"
    );
    proxy.wait_for_log("writable by group or others", Duration::from_secs(5));
    assert_eq!(proxy.get("/plugins").status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!file.exists(), "written in a folder others can write");

    // Fixed by the user: the kept line is written at the next flush.
    set_mode(&shared, 0o700);
    let text = wait_for_lines(&file, 1, &proxy);
    assert!(text.contains("\"path\":\"/plugins\""), "{text}");
    assert_eq!(mode(&file), 0o600);
    wait_for_health(&proxy, "healthy");
}

/// Sends `head` (a request without its final blank line) on a connection of
/// its own and answers the status code (0 when no status line came back).
fn raw_status(proxy: &Proxy, head: &[u8]) -> u16 {
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(
        format!("Host: {}\r\nConnection: close\r\n\r\n", proxy.address()).as_bytes(),
    );
    let answer = proxy.raw(&bytes);
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[test]
fn client_control_characters_never_reach_the_log_raw() {
    for format in ["combined", "structured"] {
        let sandbox = Sandbox::new();
        let log = state_folder(&sandbox).join("access.log");
        let proxy = access_log_only(sandbox, &[("PLUGINS__ACCESS_LOG__CLIENT_FORMAT", format)]);
        // Encoded newlines and escapes in the path and query, a tab in the
        // user agent: the request is served and logged.
        let forged_path = "/plugins%0a127.0.0.1%20-%20-%20%5bforged%5d%1b%5b31m?q=%0d%0aX%1b";
        assert_eq!(
            raw_status(
                &proxy,
                format!("GET {forged_path} HTTP/1.1\r\nUser-Agent: tab\there\r\n").as_bytes()
            ),
            404
        );
        // Raw escapes and a bare newline from the client: the HTTP layer
        // refuses these requests (400) before any plugin sees them.
        for head in [
            &b"GET /plugins HTTP/1.1\r\nUser-Agent: red \x1b[31mtext\r\n"[..],
            b"GET /plugins HTTP/1.1\r\nUser-Agent: one\nforged line\r\n",
            b"GET /plug\x1b[31mins HTTP/1.1\r\n",
            b"GET /plug\x0bins HTTP/1.1\r\n",
        ] {
            let status = raw_status(&proxy, head);
            assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(head));
        }
        assert_eq!(proxy.get("/plugins").status, 200);
        let text = wait_for_lines(&log, 2, &proxy);
        std::thread::sleep(Duration::from_millis(500));
        let text = fs::read_to_string(&log).unwrap_or(text);
        assert!(
            !text
                .bytes()
                .any(|byte| byte < 0x20 && byte != b'\n' || byte == 0x7f),
            "{format}: a raw control byte in {text:?}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{format}: one line per request:\n{text}");
        let forged = lines
            .iter()
            .find(|line| line.contains("forged"))
            .unwrap_or_else(|| panic!("{format}: no line for the forged path:\n{text}"));
        if format == "combined" {
            for line in &lines {
                assert!(line.starts_with("127.0.0.1 - - ["), "{text}");
            }
            assert!(
                forged.contains(&format!("\"GET {forged_path} HTTP/1.1\" 404 ")),
                "{forged}"
            );
            assert!(forged.ends_with(r#""-" "tab\there""#), "{forged}");
        } else {
            let entry: Value = serde_json::from_str(forged).unwrap();
            assert_eq!(
                entry["path"],
                forged_path.split('?').next().unwrap(),
                "{entry}"
            );
            assert_eq!(entry["query"], "q=%0d%0aX%1b", "{entry}");
            assert_eq!(entry["user_agent"], "tab\there", "{entry}");
            assert!(forged.contains(r#""user_agent":"tab\there""#), "{forged}");
        }
    }
}
