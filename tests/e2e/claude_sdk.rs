//! `claude_sdk`: the real Claude Code CLI (the pinned release of `tests/clients`,
//! installed by `scripts/deps/clients`) as the proxy's upstream, itself pointed at
//! the mock upstream's scripted agent: plain answers on `/claude/sdk/v1/messages`,
//! `/chat/completions` and `/responses`, whole and streamed; a session whose CLI
//! keeps running into its second turn; the real Claude Code as the client too; and
//! the failures (a missing CLI, one that exits early, one that hangs past the
//! first-chunk timeout or stalls past the ongoing one, a busy session, a client that
//! leaves), each a clear error in the client's format within a bounded time; a CLI
//! that writes far more to stderr than a pipe holds still answers, and its last
//! stderr lines name why it ended; a request with the client's tools is refused,
//! naming the route that carries them. The failure cases use the stand-in CLI
//! `tests/data/claude_sdk/fake_claude.sh`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ccproxy_e2e::{Proxy, ProxyOptions, Sandbox, mock::Mock, workspace_root};
use serde_json::{Value, json};

/// The key the CLI sends to the mock (any key: the mock's agent takes it).
const CLI_API_KEY: &str = "sk-ant-claude-sdk-e2e";

/// The pinned Claude Code CLI; fails naming the install script when it is missing.
fn claude_cli() -> PathBuf {
    let path = workspace_root().join("tests/clients/node_modules/.bin/claude");
    let runs = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        runs,
        "{} is missing or does not run: install the pinned clients with scripts/deps/clients",
        path.display()
    );
    path
}

/// The stand-in CLI of the failure cases.
fn fake_cli() -> String {
    workspace_root()
        .join("tests/data/claude_sdk/fake_claude.sh")
        .display()
        .to_string()
}

/// A proxy with only `claude_sdk`, configured by `section` (TOML lines of
/// `[plugins.claude_sdk]`) and `env_section` (of `[plugins.claude_sdk.env]`).
fn proxy(section: &str, env_section: &str) -> Proxy {
    let config =
        format!("[plugins.claude_sdk]\n{section}\n\n[plugins.claude_sdk.env]\n{env_section}\n");
    Proxy::start_in(
        Sandbox::new(),
        ProxyOptions {
            bundled: &["claude_sdk"],
            config_toml: Some(&config),
            ..ProxyOptions::default()
        },
    )
}

/// The mock with its agent answering `answer`, and a proxy running the real CLI against it.
fn start_real(answer: &str) -> (Mock, Proxy) {
    start_real_with(answer, "")
}

/// [`start_real`] with more lines of `[plugins.claude_sdk]`.
fn start_real_with(answer: &str, section: &str) -> (Mock, Proxy) {
    let cli = claude_cli();
    let mock = Mock::start(&["--quiet"]);
    arm_agent(&mock, answer);
    let env = format!(
        r#"ANTHROPIC_BASE_URL = "{base}"
ANTHROPIC_API_KEY = "{CLI_API_KEY}"
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1"
DISABLE_AUTOUPDATER = "1"
DISABLE_TELEMETRY = "1"
DISABLE_ERROR_REPORTING = "1""#,
        base = mock.url()
    );
    let proxy = proxy(
        &format!("cli_path = \"{}\"\n{section}", cli.display()),
        &env,
    );
    (mock, proxy)
}

/// Arms the mock's scripted agent to answer `answer` (tests/mock_upstream/src/agent.rs).
fn arm_agent(mock: &Mock, answer: &str) {
    let body = json!({"answer": answer}).to_string();
    let mut stream = TcpStream::connect(mock.address()).expect("the mock accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "POST /_mock/agent HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("the control request is sent");
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "arming the agent: {reply}"
    );
}

/// A fresh token, so a test passes only by what this run did.
fn token(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{tag}{:x}{:x}", nanos, std::process::id())
}

/// The `data:` payloads of an SSE body (`[DONE]` left out).
fn sse_data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}")))
        .collect()
}

/// The upstream requests the CLI sent to the mock, with the proof that the CLI
/// (not the proxy) sent them: its key.
fn cli_requests(mock: &Mock) -> Vec<Value> {
    let requests = mock.requests_to("/v1/messages");
    assert!(!requests.is_empty(), "the CLI sent nothing to the mock");
    for request in &requests {
        assert_eq!(request["headers"]["x-api-key"], CLI_API_KEY, "{request}");
    }
    requests
}

#[test]
fn messages_answers_whole_and_streamed_through_the_real_cli() {
    let answer = token("sdkmsg");
    let (mock, proxy) = start_real(&answer);
    let request = json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
                         "messages": [{"role": "user", "content": "Say the word."}]});
    let reply = proxy.post_json("/claude/sdk/v1/messages", &request);
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), proxy.log());
    let body = reply.json();
    assert_eq!(body["type"], "message");
    let texts: Vec<&Value> = body["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter(|block| block["type"] == "text")
        .map(|block| &block["text"])
        .collect();
    assert_eq!(texts, [&Value::from(answer.as_str())], "{body}");
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body["usage"]["input_tokens"].as_u64() > Some(0), "{body}");
    assert!(body["usage"]["output_tokens"].as_u64() > Some(0), "{body}");
    assert_eq!(
        cli_requests(&mock).last().unwrap()["body"]["model"],
        "claude-sonnet-4-5",
        "the requested model reaches the CLI's --model"
    );

    let mut streamed = request.clone();
    streamed["stream"] = Value::Bool(true);
    let reply = proxy.post_json("/claude/sdk/v1/messages", &streamed);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let events = sse_data(&reply.text());
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"message_start"), "{types:?}");
    assert_eq!(types.last(), Some(&"message_stop"), "{types:?}");
    let text: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "text_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, answer);
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert!(
        delta["usage"]["output_tokens"].as_u64() > Some(0),
        "{delta}"
    );
}

#[test]
fn chat_completions_and_responses_through_the_real_cli() {
    let answer = token("sdkchat");
    let (mock, proxy) = start_real(&answer);
    let request = json!({"model": "gpt-4o",
                         "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "Say the word."}]});
    let reply = proxy.post_json("/claude/sdk/v1/chat/completions", &request);
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), proxy.log());
    let body = reply.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], answer.as_str());
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["total_tokens"].as_u64() > Some(0), "{body}");
    let upstream = cli_requests(&mock);
    let system = upstream.last().unwrap()["body"]["system"].to_string();
    assert!(
        system.contains("Be brief."),
        "the system text is appended: {system}"
    );

    let mut streamed = request.clone();
    streamed["stream"] = Value::Bool(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let reply = proxy.post_json("/claude/sdk/v1/chat/completions", &streamed);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks = sse_data(&text);
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, answer);
    assert!(chunks.last().unwrap()["usage"]["completion_tokens"].as_u64() > Some(0));

    let reply = proxy.post_json(
        "/claude/sdk/v1/responses",
        &json!({"model": "gpt-5", "input": "Say the word."}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"][0]["content"][0]["text"], answer.as_str());
}

#[test]
fn a_session_continues_in_the_same_cli() {
    let answer = token("sdksession");
    let (mock, proxy) = start_real(&answer);
    let first_question = token("firstq");
    let path = "/claude/sdk/e2e-chat/v1/messages";
    let first = json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
                       "messages": [{"role": "user", "content": first_question}]});
    let reply = proxy.post_json(path, &first);
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), proxy.log());
    let second_question = token("secondq");
    let second = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": true,
                        "messages": [{"role": "user", "content": first_question},
                                     {"role": "assistant", "content": answer},
                                     {"role": "user", "content": second_question}]});
    let reply = proxy.post_json(path, &second);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text: String = sse_data(&reply.text())
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, answer, "{}", reply.text());

    // The CLI's second upstream request carries the first turn: it continued the
    // conversation it holds (the proxy sent it only the new message).
    let upstream = cli_requests(&mock);
    let last = upstream
        .iter()
        .rev()
        .find(|request| {
            request["body"]["messages"]
                .to_string()
                .contains(&second_question)
        })
        .expect("an upstream request with the second question");
    let messages = last["body"]["messages"].to_string();
    assert!(messages.contains(&first_question), "{messages}");
    assert_eq!(
        messages.matches(&first_question).count(),
        1,
        "the first question is not sent again as a transcript: {messages}"
    );
    let health = proxy.get("/plugins/claude_sdk/health").json();
    let details = if health["details"].is_object() {
        &health["details"]
    } else {
        &health
    };
    assert_eq!(details["processes_started"], 1, "{health}");
    assert_eq!(details["processes_reused"], 1, "{health}");
}

#[test]
fn a_missing_cli_is_a_clear_error_in_each_format() {
    let proxy = proxy("cli_path = \"/nonexistent/ccproxy-e2e/claude\"", "");
    let reply = proxy.post_json(
        "/claude/sdk/v1/messages",
        &json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    );
    assert_eq!(reply.status, 502, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["type"], "error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot start the Claude Code CLI `/nonexistent/ccproxy-e2e/claude`"),
        "{message}"
    );
    let reply = proxy.post_json(
        "/claude/sdk/my-session/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.json()["error"]["type"], "server_error");
}

#[test]
fn a_cli_that_exits_early_is_a_clear_error() {
    let proxy = proxy(
        &format!("cli_path = \"{}\"", fake_cli()),
        "FAKE_CLAUDE_MODE = \"exit\"",
    );
    for (path, stream) in [
        ("/claude/sdk/v1/messages", false),
        ("/claude/sdk/s1/v1/responses", true),
    ] {
        let body = if path.ends_with("messages") {
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": stream})
        } else {
            json!({"input": "hi", "stream": stream})
        };
        let reply = proxy.post_json(path, &body);
        assert_eq!(reply.status, 502, "{path}: {}", reply.text());
        let error = reply.json();
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("ended before its answer (exit code 3; stderr: fake failure)"),
            "{path}: {error}"
        );
    }
}

/// The stand-in CLI behind a wrapper that first writes 1 MB to stderr (a pipe
/// holds 64 KiB), as a chatty CLI with debug output on might.
fn chatty_cli(folder: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = folder.join("chatty_claude.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nyes 'a progress line of a chatty Claude Code CLI' | head -n 25000 >&2\nexec '{}' \"$@\"\n",
            fake_cli()
        ),
    )
    .expect("the wrapper is written");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("the wrapper is executable");
    path.display().to_string()
}

#[test]
fn a_cli_writing_much_to_stderr_neither_hangs_nor_hides_why_it_ended() {
    let folder = tempfile::Builder::new()
        .prefix("ccproxy-claude-sdk-chatty-")
        .tempdir()
        .expect("a temporary folder");
    let cli = chatty_cli(folder.path());
    // Without the drain the CLI would block on its full stderr pipe: the
    // short first-chunk timeout turns that into a quick 504, not a long wait.
    let answering = proxy(
        &format!(
            "cli_path = \"{cli}\"\n[plugins.claude_sdk.sdk_session_pool]\nstream_first_chunk_timeout = 10"
        ),
        "",
    );
    for (path, stream) in [
        ("/claude/sdk/v1/messages", false),
        ("/claude/sdk/v1/messages", true),
        ("/claude/sdk/chatty/v1/messages", false),
    ] {
        let started = Instant::now();
        let reply = answering.post_json(
            path,
            &json!({"messages": [{"role": "user", "content": "hi"}], "stream": stream}),
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{path}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            reply.status,
            200,
            "{path}: {}\n{}",
            reply.text(),
            answering.log()
        );
        let text: String = if stream {
            sse_data(&reply.text())
                .iter()
                .filter_map(|event| event["delta"]["text"].as_str().map(str::to_owned))
                .collect()
        } else {
            reply.json()["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(text, "turn 1: hi", "{path}: {}", reply.text());
    }

    let exiting = proxy(
        &format!("cli_path = \"{cli}\""),
        "FAKE_CLAUDE_MODE = \"exit\"",
    );
    let started = Instant::now();
    let reply = exiting.post_json(
        "/claude/sdk/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 502, "{}", reply.text());
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("ended before its answer (exit code 3; stderr: "),
        "{message}"
    );
    assert!(
        message.contains("a progress line of a chatty Claude Code CLI | fake failure)"),
        "the last stderr lines, not the first: {message}"
    );
}

#[test]
fn client_tools_are_refused_naming_the_route_that_carries_them() {
    let proxy = proxy(&format!("cli_path = \"{}\"", fake_cli()), "");
    let reply = proxy.post_json(
        "/claude/sdk/v1/messages",
        &json!({"max_tokens": 100, "messages": [{"role": "user", "content": "weather?"}],
                "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}),
    );
    assert_eq!(reply.status, 400, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Send requests with tools to /claude/v1/messages"),
        "{message}"
    );
    let health = proxy.get("/plugins/claude_sdk/health").json();
    assert!(
        health.to_string().contains("\"processes_started\":0"),
        "{health}"
    );
}

#[test]
fn a_cli_that_hangs_is_ended_at_the_first_chunk_timeout() {
    let proxy = proxy(
        &format!(
            "cli_path = \"{}\"\n[plugins.claude_sdk.sdk_session_pool]\nstream_first_chunk_timeout = 1",
            fake_cli()
        ),
        "FAKE_CLAUDE_MODE = \"hang\"",
    );
    let started = Instant::now();
    let reply = proxy.post_json(
        "/claude/sdk/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 504, "{}", reply.text());
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("wrote no answer for 1 s (timeout)"),
        "{message}"
    );
}

#[test]
fn a_cli_that_stalls_mid_answer_ends_the_stream_with_an_error_event() {
    let proxy = proxy(
        &format!(
            "cli_path = \"{}\"\n[plugins.claude_sdk.sdk_session_pool]\nstream_ongoing_timeout = 1",
            fake_cli()
        ),
        "FAKE_CLAUDE_MODE = \"stall\"",
    );
    let started = Instant::now();
    let reply = proxy.post_json(
        "/claude/sdk/v1/messages",
        &json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events = sse_data(&reply.text());
    let text: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(
        text, "turn 1: hi",
        "what came before the stall reaches the client"
    );
    let last = events.last().expect("events");
    assert_eq!(last["type"], "error", "{events:?}");
    assert_eq!(
        last["error"]["message"],
        "the Claude Code CLI wrote no answer for 1 s (timeout)"
    );
}

#[test]
fn a_session_answers_one_request_at_a_time() {
    let proxy = proxy(
        &format!(
            "cli_path = \"{}\"\n[plugins.claude_sdk.sdk_session_pool]\nstream_ongoing_timeout = 3",
            fake_cli()
        ),
        "FAKE_CLAUDE_MODE = \"stall\"",
    );
    let path = "/claude/sdk/busy/v1/chat/completions";
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    std::thread::scope(|scope| {
        let first = scope.spawn(|| proxy.post_json(path, &body));
        // The first request holds the session once the fake CLI answered its text.
        let started = Instant::now();
        let second = loop {
            std::thread::sleep(Duration::from_millis(100));
            let health = proxy.get("/plugins/claude_sdk/health").json();
            let details = if health["details"].is_object() {
                health["details"].clone()
            } else {
                health
            };
            if details["sessions_busy"] == 1 {
                break proxy.post_json(path, &body);
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{details}");
        };
        assert_eq!(second.status, 409, "{}", second.text());
        let message = second.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains("session busy is answering another request"),
            "{message}"
        );
        let first = first.join().expect("the first request");
        assert_eq!(first.status, 504, "{}", first.text());
    });
    let health = proxy.get("/plugins/claude_sdk/health").json();
    assert!(
        health.to_string().contains("\"sessions_busy\":0"),
        "{health}"
    );
}

#[test]
fn a_client_that_leaves_mid_stream_ends_the_turn_and_frees_the_session() {
    let proxy = proxy(
        &format!("cli_path = \"{}\"", fake_cli()),
        "FAKE_CLAUDE_MODE = \"stall\"",
    );
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}).to_string();
    let mut stream = proxy.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "POST /claude/sdk/leaver/v1/messages HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("the request is sent");
    ccproxy_e2e::read_until(&mut stream, "turn 1: ", "the first text of the stream");
    let busy = |proxy: &Proxy| {
        let health = proxy.get("/plugins/claude_sdk/health").json();
        let details = if health["details"].is_object() {
            health["details"].clone()
        } else {
            health
        };
        details["sessions_busy"].as_u64()
    };
    assert_eq!(busy(&proxy), Some(1), "the stalled turn holds its session");
    drop(stream);
    // The CLI stalls for 30 s and the ongoing timeout is 300 s: only the
    // client's leaving can end the turn this soon.
    let freed = ccproxy_e2e::poll(Duration::from_secs(5), || {
        (busy(&proxy) == Some(0)).then_some(())
    });
    assert!(
        freed.is_some(),
        "the session is still busy 5 s after its client left"
    );
}

#[test]
fn the_cli_gets_the_users_environment_without_the_proxys_settings() {
    let proxy = Proxy::start_in(
        Sandbox::new(),
        ProxyOptions {
            bundled: &["claude_sdk"],
            config_toml: Some(&format!(
                "[plugins.claude_sdk]\ncli_path = \"{}\"\n[plugins.claude_sdk.env]\nFAKE_CLAUDE_MODE = \"env\"\n",
                fake_cli()
            )),
            env: &[
                ("PLUGINS__CLAUDE_SDK__SESSION_TIMEOUT_SECONDS", "301"),
                ("CCPROXY_E2E_SECRET", "not-for-the-cli"),
                ("USER_THING", "for-the-cli"),
            ],
            ..ProxyOptions::default()
        },
    );
    let reply = proxy.post_json(
        "/claude/sdk/v1/messages",
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), proxy.log());
    let names = reply.json()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for kept in [" HOME ", " PATH ", " USER_THING ", " FAKE_CLAUDE_MODE "] {
        assert!(names.contains(kept), "{kept} missing: {names}");
    }
    assert!(!names.contains("PLUGINS__"), "{names}");
    assert!(!names.contains("CCPROXY_E2E_SECRET"), "{names}");
}

#[test]
fn claude_code_as_the_client_is_answered_by_claude_code_as_the_upstream() {
    let answer = token("sdknested");
    // Claude Code sends its tool definitions with every request; they are
    // dropped instead of refused (the original's behaviour, by config).
    let (_mock, proxy) = start_real_with(&answer, "client_tools = \"ignore\"");
    let home = tempfile::Builder::new()
        .prefix("ccproxy-claude-sdk-client-")
        .tempdir()
        .expect("a temporary home");
    let work = home.path().join("work");
    std::fs::create_dir_all(&work).expect("the work folder");
    let output = home.path().join("client.stdout");
    let mut child = Command::new(claude_cli())
        .current_dir(&work)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CLAUDE_CONFIG_DIR", home.path().join(".claude"))
        .env(
            "ANTHROPIC_BASE_URL",
            format!("{}/claude/sdk", proxy.base_url()),
        )
        .env("ANTHROPIC_API_KEY", "sk-ant-outer-client")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .args(["-p", "Say the word.", "--output-format", "json"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&output).expect("stdout file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("the client starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the client can be waited for") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the client did not finish within 60 s; proxy log:\n{}",
                proxy.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = std::fs::read_to_string(&output).unwrap_or_default();
    assert!(status.success(), "{status}: {printed}\n{}", proxy.log());
    let result: Value = serde_json::from_str(printed.trim())
        .unwrap_or_else(|error| panic!("no JSON result ({error}): {printed}"));
    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["result"], answer.as_str(), "{result}");
}

/// Plugin API 1.3: a turn's answer says who answered and what it cost, so
/// `request.completed` carries provider, model and usage as for a provider
/// endpoint: `storage` keeps them (with `pricing`'s cost), `analytics` shows
/// them on `/logs/query`, whole and streamed (a model the stream's head
/// could not name given at its end).
#[test]
fn turns_are_stored_with_provider_model_and_tokens() {
    use crate::storage::{Backend, CLAUDE_MODEL, TOKEN, auth, rows_eventually};
    let backend = Backend::sqlite();
    let (store_key, store_value) = backend.env();
    let config = format!("[plugins.claude_sdk]\ncli_path = \"{}\"\n", fake_cli());
    let proxy = Proxy::start_in(
        Sandbox::new(),
        ProxyOptions {
            bundled: &["claude_sdk", "storage", "analytics", "pricing"],
            config_toml: Some(&config),
            env: &[
                ("SECURITY__AUTH_TOKEN", TOKEN),
                (store_key, store_value.as_str()),
            ],
            ..ProxyOptions::default()
        },
    );
    for stream in [false, true] {
        let body = json!({"model": CLAUDE_MODEL, "max_tokens": 100, "stream": stream,
                          "messages": [{"role": "user", "content": "hi"}]});
        let reply = proxy.request(
            "POST",
            "/claude/sdk/v1/messages",
            &auth(),
            body.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}\n{}", reply.text(), proxy.log());
        if stream {
            assert!(reply.text().contains("message_stop"), "{}", reply.text());
        }
    }
    // An OpenAI client's model is not the CLI's: the stream's head cannot name
    // the model, its end does (the fake CLI's default).
    let body = json!({"model": "gpt-4o", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let reply = proxy.request(
        "POST",
        "/claude/sdk/v1/chat/completions",
        &auth(),
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), proxy.log());
    let rows = rows_eventually(&proxy, "limit=50", 3);
    let chat = rows
        .iter()
        .find(|row| row["path"] == "/claude/sdk/v1/chat/completions")
        .unwrap_or_else(|| panic!("no chat row: {rows:#?}"));
    assert_eq!(chat["provider"], "claude_sdk", "{chat}");
    assert_eq!(chat["model"], "claude-fake-1", "{chat}");
    assert_eq!(chat["streaming"], true, "{chat}");
    assert_eq!(chat["tokens_input"], 10, "{chat}");
    assert_eq!(chat["tokens_output"], 5, "{chat}");
    let rows: Vec<&Value> = rows
        .iter()
        .filter(|row| row["path"] == "/claude/sdk/v1/messages")
        .collect();
    // The fake CLI's result: 10 tokens in, 5 out, 2 read from the cache.
    for stream in [false, true] {
        let row = rows
            .iter()
            .find(|row| row["streaming"] == stream)
            .copied()
            .unwrap_or_else(|| panic!("no row with streaming {stream}: {rows:#?}"));
        assert_eq!(row["provider"], "claude_sdk", "{row}");
        assert_eq!(row["model"], CLAUDE_MODEL, "{row}");
        assert_eq!(row["tokens_input"], 10, "{row}");
        assert_eq!(row["tokens_output"], 5, "{row}");
        assert_eq!(row["cache_read_tokens"], 2, "{row}");
        // claude-sonnet-4: $3 in, $15 out per million, cache reads cheaper than input.
        let priced = 10.0 * 3e-6 + 5.0 * 15e-6;
        let cost = row["cost_usd"].as_f64().unwrap_or_default();
        assert!(
            cost > priced && cost < priced + 2.0 * 3e-6,
            "{cost} is not {priced} plus two cache reads: {row}"
        );
    }
}
