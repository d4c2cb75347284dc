//! The Codex provider end to end: the real binary with the real `codex` and
//! `oauth_codex` libraries against the mock upstream playing the ChatGPT
//! plan's Codex backend (`/backend-api/codex/responses`, which refuses what
//! the real backend refuses) and OpenAI's form-encoded token endpoint.
//!
//! What each client format sends reaches the backend as the Codex CLI would
//! send it (headers and body), a Claude Code conversation keeps one session
//! and its tool history, `ccproxy auth login codex --manual` stores the Codex
//! CLI's file, an expired token is refreshed once for fifty concurrent
//! requests, and without a login every format gets a 401 saying what to do.
//! The switches for generic clients work (`send_chatgpt_account_id`), the
//! model list carries the Codex CLI's cache entries and says what each name
//! maps to (and requests follow it), and faults reach each
//! client format as it expects them: a backend that resets mid-stream, a
//! client that goes away (the backend request is cancelled), a backend
//! silent past `http.read_timeout_seconds` (504).

use std::{
    fs,
    io::Write,
    sync::Barrier,
    time::{Duration, Instant},
};

use ccproxy_e2e::{
    Proxy, Reply, Sandbox,
    login::{self, Login, is_base64url, query_param},
    mock::{CODEX_BACKEND_PATH, CODEX_TOKEN_PATH, Mock, codex, sse_events},
    mode, poll, read_json, workspace_root,
};
use serde_json::{Value, json};

/// The Codex CLI's OAuth client, which `oauth_codex` logs in as.
const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
const SCOPE: &str = "openid profile email offline_access";

fn sample(name: &str) -> Value {
    read_json(
        &workspace_root()
            .join("tests/data/samples")
            .join(format!("{name}.json")),
    )
}

/// The text of the recorded Codex stream, which answers every tool-less request.
fn stream_text() -> String {
    sample("codex_responses_stream")["response"]["events"]
        .as_array()
        .expect("the stream sample has events")
        .iter()
        .filter(|event| event["event"] == "response.output_text.delta")
        .map(|event| {
            serde_json::from_str::<Value>(event["data"].as_str().unwrap_or_default())
                .expect("event data is JSON")["delta"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The Codex CLI's instructions the plugin ships.
fn codex_cli_instructions() -> String {
    fs::read_to_string(workspace_root().join("plugins/codex/data/codex_cli_instructions.txt"))
        .expect("the plugin ships the Codex CLI instructions")
}

fn post(proxy: &Proxy, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    proxy.request("POST", path, &all, body.to_string().as_bytes())
}

/// The text of an answer in any client format, streamed or not.
fn answer_text(path: &str, reply: &Reply, stream: bool) -> String {
    if !stream {
        let body = reply.json();
        return match path {
            "/codex/v1/messages" => body["content"][0]["text"].as_str(),
            "/codex/v1/chat/completions" => body["choices"][0]["message"]["content"].as_str(),
            _ => body["output"][0]["content"][0]["text"].as_str(),
        }
        .unwrap_or_else(|| panic!("no text in {body}"))
        .to_owned();
    }
    sse_events(&reply.body)
        .iter()
        .filter_map(|(name, data)| match path {
            "/codex/v1/messages" => (name.as_deref() == Some("content_block_delta"))
                .then(|| data["delta"]["text"].as_str())
                .flatten(),
            "/codex/v1/chat/completions" => data["choices"][0]["delta"]["content"].as_str(),
            _ => (name.as_deref() == Some("response.output_text.delta"))
                .then(|| data["delta"].as_str())
                .flatten(),
        })
        .collect()
}

/// The shape of a request the Codex backend takes, whatever the client
/// sent: the Codex CLI's headers with this login, and a body with the
/// backend's settings and without what it refuses. Returns the body.
fn assert_codex_cli_shaped(request: &Value) -> &Value {
    let headers = &request["headers"];
    let header = |name: &str| headers[name].as_str().unwrap_or_default();
    assert_eq!(request["path"], "/backend-api/codex/responses");
    assert_eq!(
        header("authorization"),
        format!("Bearer {}", codex::access_token())
    );
    assert_eq!(header("chatgpt-account-id"), codex::ACCOUNT);
    assert_eq!(header("openai-beta"), "responses=experimental");
    assert_eq!(header("originator"), "codex_cli_rs");
    assert_eq!(header("version"), "0.171.0");
    assert!(
        header("user-agent").starts_with("codex_cli_rs/0.171.0 ("),
        "{headers}"
    );
    assert_eq!(header("accept"), "text/event-stream");
    for leaked in ["x-api-key", "cookie", "anthropic-version"] {
        assert!(headers.get(leaked).is_none(), "{leaked} leaked: {headers}");
    }
    let body = &request["body"];
    let session = header("session_id");
    assert_eq!(session.len(), 36, "a UUID: {session}");
    assert_eq!(header("conversation_id"), session);
    assert_eq!(body["prompt_cache_key"], session);
    assert_eq!(body["stream"], true, "{body}");
    assert_eq!(body["store"], false, "{body}");
    for refused in [
        "metadata",
        "temperature",
        "top_p",
        "max_output_tokens",
        "max_tokens",
        "max_completion_tokens",
        "user",
    ] {
        assert!(body.get(refused).is_none(), "{refused} was sent: {body}");
    }
    let instructions = body["instructions"].as_str().unwrap_or_default();
    assert!(
        instructions.starts_with(codex_cli_instructions().trim_end()),
        "the Codex CLI instructions come first: {instructions:.200}"
    );
    assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));
    for item in body["input"].as_array().expect("input is a list") {
        assert!(item["type"].is_string(), "untyped item: {item}");
        assert!(
            !matches!(item["role"].as_str(), Some("system" | "developer")),
            "a system message in input: {item}"
        );
    }
    body
}

#[test]
fn every_client_format_reaches_the_backend_as_the_codex_cli_sends_it() {
    let mock = codex::start_mock();
    let proxy = codex::logged_in_proxy(&mock, &[]);
    let text = stream_text();
    // What clients add that the backend refuses or must never see.
    let client_headers = [
        ("authorization", "Bearer client-secret"),
        ("x-api-key", "client-key"),
        ("cookie", "session=client"),
        ("anthropic-version", "2023-06-01"),
    ];
    let requests = |stream: bool| {
        [
            (
                "/codex/v1/responses",
                json!({
                    "model": "gpt-4o", "stream": stream, "instructions": "Be brief.",
                    "input": [
                        {"role": "system", "content": "You are terse."},
                        {"role": "user", "content": "Hello"},
                    ],
                    "temperature": 0.2, "max_output_tokens": 100, "metadata": {"k": "v"}, "top_p": 0.9,
                }),
            ),
            (
                "/codex/v1/chat/completions",
                json!({
                    "model": "gpt-4o", "stream": stream, "temperature": 0.2, "max_tokens": 100,
                    "max_completion_tokens": 100, "user": "u-1", "top_p": 0.9,
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "developer", "content": "You are terse."},
                        {"role": "user", "content": "Hello"},
                    ],
                }),
            ),
            (
                "/codex/v1/messages",
                json!({
                    "model": "claude-sonnet-4-5-20250929", "stream": stream, "max_tokens": 32000,
                    "temperature": 1, "metadata": {"user_id": "user_abc_account_def_session_ghi"},
                    "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "You are terse."}],
                    "messages": [{"role": "user", "content": "Hello"}],
                }),
            ),
        ]
    };
    let mut sent = 0;
    for stream in [false, true] {
        for (path, body) in requests(stream) {
            let reply = post(&proxy, path, &body, &client_headers);
            assert_eq!(
                reply.status,
                200,
                "{path} stream={stream}: {}\nmock: {:#}",
                reply.text(),
                mock.codex_requests().last().cloned().unwrap_or_default()["response"]
            );
            let content_type = reply.header("content-type").unwrap_or_default();
            assert_eq!(
                content_type.starts_with("text/event-stream"),
                stream,
                "{path}: {content_type}"
            );
            assert_eq!(
                answer_text(path, &reply, stream),
                text,
                "{path} stream={stream}"
            );
            // The plan's usage headers reach the client (as the Codex CLI sees them).
            assert_eq!(
                reply.header("x-codex-primary-used-percent"),
                Some("9"),
                "{path} stream={stream}: {:?}",
                reply.headers
            );
            if !stream {
                // One accumulated answer, with the client's model and the usage.
                let answer = reply.json();
                let model = body["model"].as_str().unwrap_or_default();
                assert_eq!(answer["model"], model, "{path}: {answer}");
                let usage = &answer["usage"];
                match path {
                    "/codex/v1/messages" => {
                        assert_eq!(
                            (
                                &usage["input_tokens"],
                                &usage["cache_read_input_tokens"],
                                &usage["output_tokens"]
                            ),
                            (&json!(63), &json!(2176), &json!(15)),
                            "{answer}"
                        );
                        assert_eq!(answer["stop_reason"], "end_turn");
                    }
                    "/codex/v1/chat/completions" => {
                        assert_eq!(
                            (&usage["prompt_tokens"], &usage["completion_tokens"]),
                            (&json!(2239), &json!(15)),
                            "{answer}"
                        );
                        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
                    }
                    _ => {
                        assert_eq!(
                            (&usage["input_tokens"], &usage["output_tokens"]),
                            (&json!(2239), &json!(15)),
                            "{answer}"
                        );
                        assert_eq!(answer["status"], "completed");
                    }
                }
            }
            sent += 1;
            let upstream = mock.codex_requests();
            assert_eq!(upstream.len(), sent);
            let request = upstream.last().expect("one request per client request");
            let body = assert_codex_cli_shaped(request);
            assert!(request["headers"]["authorization"] != "Bearer client-secret");
            // Every client's model is mapped to the backend's.
            assert_eq!(body["model"], "gpt-5.3-codex", "{path}");
            // The system prompt follows the Codex CLI's instructions, in order.
            let instructions = body["instructions"].as_str().unwrap_or_default();
            assert!(
                instructions.ends_with("Be brief.\n\nYou are terse.")
                    || instructions.ends_with("Be brief.\nYou are terse."),
                "{path}: {:?}",
                &instructions[instructions.len().saturating_sub(80)..]
            );
            let input = body["input"].as_array().expect("input is a list");
            assert_eq!(input.len(), 1, "{path}: {input:?}");
            assert_eq!(input[0]["role"], "user");
            let content = &input[0]["content"];
            let said = content
                .as_str()
                .or_else(|| content[0]["text"].as_str())
                .unwrap_or_default();
            assert_eq!(said, "Hello", "{path}: {content}");
            assert_eq!(request["response"]["status"], 200);
        }
    }
}

/// The Claude Code request of the codex plugin's tests: a system prompt with
/// Claude Code's billing line, two tools, and a history of three turns with
/// parallel tool calls and their results.
fn claude_code_history() -> Value {
    read_json(&workspace_root().join("plugins/codex/testdata/claude_code_history.anthropic.json"))
}

#[test]
fn a_claude_code_conversation_keeps_its_session_and_its_tool_history() {
    let mock = codex::start_mock();
    let proxy = codex::logged_in_proxy(&mock, &[]);
    let history = claude_code_history();
    // The first turn: the first user message only; Claude Code's billing
    // line differs between turns (its `cch=` hash changes every request).
    let mut first = history.clone();
    first["messages"].as_array_mut().unwrap().truncate(1);
    first["tools"] = json!([]);
    first["system"][0]["text"] =
        json!("x-anthropic-billing-header: cc_version=2.1.37.3a9; cc_entrypoint=cli; cch=00000;");
    for body in [&first, &history] {
        let reply = post(
            &proxy,
            "/codex/v1/messages",
            body,
            &[("x-api-key", "client-key")],
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        let events = sse_events(&reply.body);
        assert_eq!(
            events.last().map(|(name, _)| name.as_deref()),
            Some(Some("message_stop"))
        );
    }
    let upstream = mock.codex_requests();
    assert_eq!(upstream.len(), 2);
    let (one, two) = (
        assert_codex_cli_shaped(&upstream[0]),
        assert_codex_cli_shaped(&upstream[1]),
    );
    let session = |request: &Value| request["headers"]["session_id"].clone();
    assert_eq!(session(&upstream[0]), session(&upstream[1]), "one session");
    assert_eq!(one["prompt_cache_key"], two["prompt_cache_key"]);
    for body in [one, two] {
        let instructions = body["instructions"].as_str().unwrap_or_default();
        assert!(
            !instructions.contains("x-anthropic-billing-header"),
            "{instructions:.100}"
        );
        assert!(instructions.ends_with("Platform: linux\n</env>"));
    }

    // The second turn's history, item by item, in Claude Code's order.
    let items: Vec<(String, String, String)> = two["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let kind = item["type"].as_str().unwrap_or_default().to_owned();
            let who = item["role"]
                .as_str()
                .or_else(|| item["call_id"].as_str())
                .unwrap_or_default()
                .to_owned();
            let what = item["name"]
                .as_str()
                .or_else(|| item["output"].as_str())
                .or_else(|| item["content"].as_array()?.last()?["text"].as_str())
                .unwrap_or_default()
                .to_owned();
            (kind, who, what)
        })
        .collect();
    let item =
        |kind: &str, who: &str, what: &str| (kind.to_owned(), who.to_owned(), what.to_owned());
    assert_eq!(
        items,
        [
            item(
                "message",
                "user",
                "What is in this repo? Then run the tests."
            ),
            item(
                "message",
                "assistant",
                "I'll list the files and read the manifest."
            ),
            item("function_call", "call_Fq3mS0Yw8kQm1V2xL7bZ0aTe", "Bash"),
            item("function_call", "call_9dKx2LpQ4rT6uW8yZ1cE3gHj", "Read"),
            item(
                "function_call_output",
                "call_Fq3mS0Yw8kQm1V2xL7bZ0aTe",
                "Cargo.toml\nsrc"
            ),
            item(
                "function_call_output",
                "call_9dKx2LpQ4rT6uW8yZ1cE3gHj",
                "     1\t[package]\n     2\tname = \"demo\""
            ),
            item(
                "message",
                "assistant",
                "A crate named demo. Running the tests."
            ),
            item("function_call", "call_Mn5bV7cX9zA1sD3fG5hJ7kL9", "Bash"),
            item(
                "function_call_output",
                "call_Mn5bV7cX9zA1sD3fG5hJ7kL9",
                "test result: ok. 3 passed; 0 failed"
            ),
            item("message", "user", "Good. Now run clippy."),
        ]
    );
    let arguments: Vec<Value> = two["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "function_call")
        .map(|item| serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        arguments,
        [
            json!({"command": "ls"}),
            json!({"file_path": "/repo/Cargo.toml"}),
            json!({"command": "cargo test", "timeout": 120000}),
        ]
    );
    let tools: Vec<&Value> = two["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| &tool["name"])
        .collect();
    assert_eq!(tools, [&json!("Bash"), &json!("Read")]);
}

/// Runs `auth login codex --manual`, reads the authorize URL it prints and
/// pastes `good-code#STATE` on its stdin.
fn manual_login(sandbox: &Sandbox, env: &[(&str, &str)]) -> Login {
    login::manual_login(sandbox, "codex", env, |state| format!("good-code#{state}"))
}

#[test]
fn auth_login_codex_stores_the_codex_cli_file_and_the_proxy_uses_it() {
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    // One key moves both the authorize page and the token endpoint.
    let base_url = mock.url();
    let env = [("PLUGINS__OAUTH_CODEX__BASE_URL", base_url.as_str())];
    let login = manual_login(&sandbox, &env);
    assert_eq!(login.output.code, 0, "login failed: {:?}", login.output);
    assert!(
        login.output.stdout.contains("logged in to codex"),
        "{:?}",
        login.output
    );
    assert!(
        login
            .url
            .starts_with(&format!("{}/oauth/authorize?", mock.url())),
        "{}",
        login.url
    );
    let param = |name: &str| query_param(&login.url, name).unwrap_or_default();
    assert_eq!(param("response_type"), "code");
    assert_eq!(param("client_id"), CLIENT_ID);
    assert_eq!(param("scope"), SCOPE);
    assert_eq!(param("code_challenge_method"), "S256");
    assert_eq!(param("id_token_add_organizations"), "true");
    assert_eq!(param("codex_cli_simplified_flow"), "true");
    assert_eq!(param("originator"), "codex_cli_rs");
    let challenge = param("code_challenge");
    assert!(
        challenge.len() == 43 && is_base64url(&challenge),
        "{challenge}"
    );
    let redirect_uri = param("redirect_uri");
    assert!(redirect_uri.starts_with("http"), "{}", login.url);

    // One form-encoded authorization-code grant.
    let oauth = mock.oauth();
    assert_eq!(
        (&oauth["authorization_code"], &oauth["refresh_token"]),
        (&json!(1), &json!(0))
    );
    let grants = mock.requests_to(CODEX_TOKEN_PATH);
    assert_eq!(grants.len(), 1, "{grants:#?}");
    assert!(
        grants[0]["headers"]["content-type"]
            .as_str()
            .is_some_and(|kind| kind.starts_with("application/x-www-form-urlencoded")),
        "{}",
        grants[0]["headers"]
    );
    assert!(grants[0]["body"].is_null(), "a form, not JSON");
    let form = &grants[0]["form"];
    let verifier = form["code_verifier"].as_str().unwrap_or_default();
    assert!(verifier.len() == 43 && is_base64url(verifier), "{form}");
    assert_ne!(verifier, challenge);
    assert_eq!(
        form,
        &json!({
            "grant_type": "authorization_code", "code": "good-code", "redirect_uri": redirect_uri,
            "client_id": CLIENT_ID, "code_verifier": verifier,
        })
    );

    // ~/.codex/auth.json: mode 0600, exactly the Codex CLI's shape.
    let file = codex::auth_json_path(sandbox.root());
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let stored = read_json(&file);
    let issued = oauth["issued"][0]
        .as_str()
        .expect("an access token was issued");
    let id_token = stored["tokens"]["id_token"].as_str().unwrap_or_default();
    assert_eq!(id_token.split('.').count(), 3, "{stored}");
    let last_refresh = stored["last_refresh"].as_str().unwrap_or_default();
    assert!(
        last_refresh.len() >= 20 && last_refresh.ends_with('Z'),
        "{stored}"
    );
    assert_eq!(
        stored,
        json!({
            "OPENAI_API_KEY": null,
            "auth_mode": "chatgpt",
            "tokens": {
                "id_token": id_token, "access_token": issued,
                "refresh_token": "rt_mock-login-1", "account_id": "acct_mock",
            },
            "last_refresh": last_refresh,
        })
    );

    // Status names the account and plan and never shows a token.
    let status = sandbox.run_cli(&["auth", "status", "codex"], &env);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(status.stdout.contains("logged in"), "{status:?}");
    assert!(status.stdout.contains("account acct_mock"), "{status:?}");
    assert!(status.stdout.contains("subscription plus"), "{status:?}");
    for secret in [issued, "rt_mock-login-1", id_token] {
        assert!(
            !status.stdout.contains(secret) && !status.stderr.contains(secret),
            "{status:?}"
        );
    }

    // The proxy serves with that login: its token and account upstream.
    let proxy = codex::start_proxy(&mock, sandbox, &env);
    let reply = post(
        &proxy,
        "/codex/v1/chat/completions",
        &json!({"model": "gpt-5.3-codex", "messages": [{"role": "user", "content": "Hello"}]}),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let upstream = mock.codex_requests();
    assert_eq!(upstream.len(), 1);
    assert_eq!(
        upstream[0]["headers"]["authorization"],
        format!("Bearer {issued}")
    );
    assert_eq!(upstream[0]["headers"]["chatgpt-account-id"], "acct_mock");
    drop(proxy);
}

#[test]
fn an_expired_codex_token_is_refreshed_once_for_fifty_concurrent_requests() {
    const CALLERS: usize = 50;
    // Slow refreshes, so the fifty requests pile up behind the first.
    let mock = Mock::start(&["--oauth-delay-ms", "300", "--quiet"]);
    let sandbox = Sandbox::new();
    let file = codex::auth_json_path(sandbox.root());
    let expired = codex::access_token_expiring(codex::now_s() - 60, "expired");
    codex::write_auth_json(&file, &expired, codex::REFRESH_TOKEN);
    let before = read_json(&file);
    let base_url = mock.url();
    let proxy = codex::start_proxy(
        &mock,
        sandbox,
        &[("PLUGINS__OAUTH_CODEX__BASE_URL", base_url.as_str())],
    );

    let body =
        json!({"model": "gpt-5.3-codex", "messages": [{"role": "user", "content": "Hello"}]});
    let start = Barrier::new(CALLERS);
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    post(&proxy, "/codex/v1/chat/completions", &body, &[])
                })
            })
            .collect();
        callers
            .into_iter()
            .map(|caller| caller.join().expect("a caller thread"))
            .collect()
    });
    let text = stream_text();
    for reply in &replies {
        assert_eq!(
            reply.status,
            200,
            "{}\nproxy log:\n{}",
            reply.text(),
            proxy.log()
        );
        assert_eq!(reply.json()["choices"][0]["message"]["content"], text);
    }

    // Exactly one refresh grant, form-encoded, with the scopes.
    let oauth = mock.oauth();
    assert_eq!(oauth["refresh_token"], 1, "single flight: {oauth}");
    assert_eq!(oauth["authorization_code"], 0);
    let grants = mock.requests_to(CODEX_TOKEN_PATH);
    assert_eq!(grants.len(), 1, "{grants:#?}");
    assert!(
        grants[0]["headers"]["content-type"]
            .as_str()
            .is_some_and(|kind| kind.starts_with("application/x-www-form-urlencoded")),
        "{}",
        grants[0]["headers"]
    );
    assert_eq!(
        grants[0]["form"],
        json!({
            "grant_type": "refresh_token", "refresh_token": codex::REFRESH_TOKEN,
            "client_id": CLIENT_ID, "scope": SCOPE,
        })
    );
    assert!(
        grants[0]["body_text"]
            .as_str()
            .unwrap_or_default()
            .contains("scope=openid%20profile%20email%20offline_access"),
        "{}",
        grants[0]["body_text"]
    );

    // Every upstream request carries the refreshed token and its account.
    let refreshed = oauth["issued"][0].as_str().expect("a token was issued");
    let upstream = mock.codex_requests();
    assert_eq!(upstream.len(), CALLERS);
    for request in &upstream {
        assert_eq!(
            request["headers"]["authorization"],
            format!("Bearer {refreshed}")
        );
        assert_eq!(request["headers"]["chatgpt-account-id"], "acct_mock");
        assert_eq!(request["response"]["status"], 200);
    }

    // Stored for the next start and for the Codex CLI, other keys kept.
    let stored = read_json(&file);
    assert_eq!(stored["tokens"]["access_token"], refreshed);
    assert_eq!(stored["tokens"]["refresh_token"], "rt_mock-refreshed-1");
    assert_eq!(
        stored["tokens"]["account_id"], "acct_mock",
        "from the new claims"
    );
    assert_eq!(stored["OPENAI_API_KEY"], Value::Null);
    assert_ne!(stored["last_refresh"], before["last_refresh"]);
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn a_refused_refresh_is_asked_once_and_every_caller_gets_a_401_saying_what_to_do() {
    const CALLERS: usize = 20;
    let mock = Mock::start(&["--oauth-delay-ms", "200", "--quiet"]);
    let sandbox = Sandbox::new();
    let file = codex::auth_json_path(sandbox.root());
    let expired = codex::access_token_expiring(codex::now_s() - 60, "expired");
    codex::write_auth_json(&file, &expired, "rt_revoked-0000");
    let before = fs::read(&file).expect("auth.json is readable");
    let base_url = mock.url();
    let proxy = codex::start_proxy(
        &mock,
        sandbox,
        &[("PLUGINS__OAUTH_CODEX__BASE_URL", base_url.as_str())],
    );
    mock.fault(json!({
        "kind": "status", "status": 400, "path": CODEX_TOKEN_PATH, "count": 50,
        "body": {"error": "invalid_grant", "error_description": "Your refresh token has already been used"},
    }));
    let body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 10,
        "messages": [{"role": "user", "content": "Hello"}],
    });
    let start = Barrier::new(CALLERS);
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    post(&proxy, "/codex/v1/messages", &body, &[])
                })
            })
            .collect();
        callers
            .into_iter()
            .map(|caller| caller.join().expect("a caller thread"))
            .collect()
    });
    for reply in &replies {
        assert_eq!(reply.status, 401, "{}", reply.text());
        let error = reply.json();
        assert_eq!(error["type"], "error", "{error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message
                .contains("token refresh failed (400: Your refresh token has already been used)")
                && message.contains("ccproxy auth login codex"),
            "{message}"
        );
        assert!(!message.contains("rt_revoked"), "{message}");
    }
    assert_eq!(
        mock.oauth()["refresh_token"],
        1,
        "single flight, failures too"
    );
    assert!(mock.codex_requests().is_empty());
    assert_eq!(fs::read(&file).expect("auth.json is readable"), before);
}

#[test]
fn without_a_login_every_format_gets_a_401_saying_what_to_do() {
    let mock = codex::start_mock();
    // No ~/.codex/auth.json in this sandbox.
    let proxy = codex::start_proxy(&mock, Sandbox::new(), &[]);
    let hello = [{ json!({"role": "user", "content": "Hello"}) }];
    for (path, body) in [
        (
            "/codex/v1/messages",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": hello}),
        ),
        (
            "/codex/v1/chat/completions",
            json!({"model": "gpt-5.3-codex", "messages": hello}),
        ),
        (
            "/codex/v1/responses",
            json!({"model": "gpt-5.3-codex", "input": "Hello"}),
        ),
    ] {
        let reply = post(&proxy, path, &body, &[]);
        assert_eq!(reply.status, 401, "{path}: {}", reply.text());
        let answer = reply.json();
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("ccproxy auth login codex"), "{answer}");
        assert_eq!(
            answer.get("type").is_some(),
            path == "/codex/v1/messages",
            "{path}: the client's error format: {answer}"
        );
    }
    assert!(mock.requests().is_empty());

    // The model list is the plugin's own.
    let models = proxy.get("/codex/v1/models").json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|model| model["id"].as_str())
        .collect();
    assert_eq!(ids, ["gpt-5.3-codex", "gpt-5.2-codex"]);
    assert!(mock.requests().is_empty());
}

// Settings for generic clients.

#[test]
fn send_chatgpt_account_id_off_leaves_the_header_out_for_a_generic_responses_upstream() {
    // A plain Responses upstream (the mock's `/v1/responses`, without the
    // Codex backend's checks) that refuses the account header.
    let mock = Mock::start(&[
        "--expect-header",
        &format!("authorization=Bearer {}", codex::access_token()),
        "--forbid-header",
        "chatgpt-account-id",
        "--quiet",
    ]);
    let base_url = format!("{}/v1", mock.url());
    let body = json!({"model": "gpt-5.3-codex", "input": "Hello"});

    let proxy = codex::logged_in_proxy(
        &mock,
        &[
            ("PLUGINS__CODEX__BASE_URL", base_url.as_str()),
            ("PLUGINS__CODEX__SEND_CHATGPT_ACCOUNT_ID", "false"),
        ],
    );
    let reply = post(&proxy, "/codex/v1/responses", &body, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        answer_text("/codex/v1/responses", &reply, false),
        stream_text()
    );
    let upstream = mock.requests_to("/v1/responses");
    assert_eq!(upstream.len(), 1);
    let headers = &upstream[0]["headers"];
    assert!(headers.get("chatgpt-account-id").is_none(), "{headers}");
    assert_eq!(headers["originator"], "codex_cli_rs", "the rest as before");
    assert!(
        !proxy.log().contains("names no ChatGPT account"),
        "{}",
        proxy.log()
    );
    drop(proxy);

    // On by default: the claim's account goes out, and this upstream refuses it.
    mock.reset();
    let proxy = codex::logged_in_proxy(&mock, &[("PLUGINS__CODEX__BASE_URL", base_url.as_str())]);
    let reply = post(&proxy, "/codex/v1/responses", &body, &[]);
    assert_eq!(reply.status, 400, "{}", reply.text());
    let upstream = mock.requests_to("/v1/responses");
    assert_eq!(upstream[0]["headers"]["chatgpt-account-id"], codex::ACCOUNT);
}

#[test]
fn models_lists_the_cards_and_the_codex_cli_cache_entries() {
    let mock = codex::start_mock();
    let proxy = codex::logged_in_proxy(&mock, &[]);
    // Before the Codex CLI has run: no cache, no cached entries.
    let listed = proxy.get("/codex/v1/models").json();
    assert_eq!(listed["object"], "list");
    assert_eq!(listed["models"], json!([]), "{listed}");
    // `codex` writes its cache; the next listing has its entries for the
    // listed models.
    let cache = read_json(&workspace_root().join("plugins/codex/testdata/models_cache.json"));
    let file = proxy.sandbox().root().join(".codex/models_cache.json");
    fs::write(&file, cache.to_string()).expect("the cache can be written");
    let reply = proxy.get("/codex/v1/models");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let listed = reply.json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .expect("an OpenAI list")
        .iter()
        .map(|card| {
            assert_eq!(card["object"], "model", "{card}");
            card["id"].as_str().unwrap_or_default()
        })
        .collect();
    assert_eq!(ids, ["gpt-5.3-codex", "gpt-5.2-codex"]);
    let slugs: Vec<&str> = listed["models"]
        .as_array()
        .expect("models is a list")
        .iter()
        .map(|entry| entry["slug"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(slugs, ["gpt-5.3-codex", "gpt-5.2-codex"]);
    assert_eq!(
        listed["models"][0], cache["models"][0],
        "entries kept whole"
    );
    assert!(mock.requests().is_empty());
}

#[test]
fn models_says_what_each_name_maps_to_and_requests_follow_it() {
    let mock = codex::start_mock();
    let proxy = codex::logged_in_proxy(&mock, &[]);
    let reply = proxy.get("/codex/v1/models");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let listed = reply.json();
    assert!(mock.requests().is_empty(), "the plugin's own list");
    // The cards, sent as they are: no `maps_to`; the Anthropic SDK's fields
    // beside the OpenAI ones (Claude Code on `/codex`).
    assert_eq!(listed["has_more"], false, "{listed}");
    for card in listed["data"].as_array().expect("an OpenAI list") {
        assert!(card.get("maps_to").is_none(), "{card}");
        assert_eq!(
            (&card["object"], &card["type"]),
            (&json!("model"), &json!("model")),
            "{card}"
        );
        assert!(
            card["created_at"].is_string() && card["display_name"].is_string(),
            "{card}"
        );
    }
    // Every rule and its target, in the order they apply.
    let rules: Vec<(String, String)> = listed["mappings"]
        .as_array()
        .expect("the rules")
        .iter()
        .map(|rule| {
            (
                rule["pattern"].as_str().unwrap_or_default().to_owned(),
                rule["maps_to"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for pattern in [
        "gpt-",
        "claude-",
        "^o[134](?:-|$)",
        "text-davinci",
        "codex-mini",
    ] {
        assert!(
            rules.contains(&(pattern.to_owned(), "gpt-5.3-codex".to_owned())),
            "{pattern}: {rules:?}"
        );
    }

    // What the list says is what reaches the backend; the client sees the
    // name it asked for.
    for (asked, expected) in [
        ("gpt-4o", "gpt-5.3-codex"),
        ("gpt-3.5-turbo", "gpt-5.3-codex"),
        ("o3", "gpt-5.3-codex"),
        ("o4-mini", "gpt-5.3-codex"),
        ("codex-mini-latest", "gpt-5.3-codex"),
        ("claude-3-5-haiku-20241022", "gpt-5.3-codex"),
        ("gpt-5.2-codex", "gpt-5.2-codex"),
    ] {
        mock.reset();
        let body = json!({"model": asked, "input": "Hello"});
        let reply = post(&proxy, "/codex/v1/responses", &body, &[]);
        assert_eq!(reply.status, 200, "{asked}: {}", reply.text());
        if asked != expected {
            assert_eq!(reply.json()["model"], asked, "the client's name comes back");
        }
        let upstream = mock.codex_requests();
        assert_eq!(upstream.len(), 1, "{asked}");
        assert_eq!(upstream[0]["body"]["model"], expected, "{asked}");
    }
}

/// The Codex backend's WebSocket transport is not carried (plugins/codex/README.md,
/// "WebSocket transport"): a handshake on the Responses path gets a plain HTTP answer, never
/// `101 Switching Protocols`, so a Codex CLI told that the provider `supports_websockets`
/// falls back to HTTPS (its "Falling back from WebSockets to HTTPS transport"), and
/// nothing reaches the backend.
#[test]
fn a_websocket_handshake_on_responses_is_refused_plainly() {
    let mock = codex::start_mock();
    let proxy = codex::logged_in_proxy(&mock, &[]);
    let handshake = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("openai-beta", "responses_websockets=2026-02-06"),
    ];
    for path in ["/codex/v1/responses", "/codex/responses"] {
        let reply = proxy.request("GET", path, &handshake, b"");
        assert_eq!(reply.status, 405, "{path}: {}", reply.text());
        assert_eq!(reply.header("allow"), Some("POST"), "{path}");
        assert!(
            reply.header("upgrade").is_none(),
            "{path}: {:?}",
            reply.headers
        );
        let error = reply.json();
        assert!(error["error"]["message"].is_string(), "{path}: {error}");
    }
    assert!(mock.requests().is_empty());
}

// Faults on the Codex path: what each client format sees when the backend
// breaks, goes silent, or is left by the client.

/// The three client formats on the codex plugin, with a request each that
/// the backend answers with `codex_responses_stream`.
const CLIENT_PATHS: [&str; 3] = [
    "/codex/v1/messages",
    "/codex/v1/chat/completions",
    "/codex/v1/responses",
];

fn hello(path: &str, stream: bool) -> Value {
    match path {
        "/codex/v1/messages" => json!({
            "model": "claude-sonnet-4-5-20250929", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": "Hello"}],
        }),
        "/codex/v1/chat/completions" => json!({
            "model": "gpt-5.3-codex", "stream": stream,
            "messages": [{"role": "user", "content": "Hello"}],
        }),
        _ => json!({"model": "gpt-5.3-codex", "stream": stream, "input": "Hello"}),
    }
}

/// Checks that `reply` is a JSON error of `path`'s format with `status`;
/// returns its message.
fn error_message(path: &str, reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "{path}: {}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|kind| kind.starts_with("application/json")),
        "{path}: {:?}",
        reply.headers
    );
    let body = reply.json();
    assert_eq!(
        body.get("type").and_then(Value::as_str),
        (path == "/codex/v1/messages").then_some("error"),
        "{path}: the client's error format: {body}"
    );
    assert!(body["error"]["type"].is_string(), "{path}: {body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: no error message in {body}"))
        .to_owned()
}

/// The text deltas of the recorded stream.
fn stream_deltas() -> Vec<String> {
    sample("codex_responses_stream")["response"]["events"]
        .as_array()
        .expect("the stream sample has events")
        .iter()
        .filter(|event| event["event"] == "response.output_text.delta")
        .map(|event| {
            let data: Value = serde_json::from_str(event["data"].as_str().unwrap_or_default())
                .expect("event data is JSON");
            data["delta"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

#[test]
fn a_stream_the_backend_resets_ends_with_an_error_event_in_the_clients_format() {
    let mock = codex::start_mock();
    let proxy = codex::logged_in_proxy(&mock, &[]);
    let deltas = stream_deltas();
    // Events 0-7 of the recording (the first two text deltas), then a reset.
    let reset = json!({"kind": "reset_mid_stream", "after_events": 8, "path": CODEX_BACKEND_PATH});
    for path in CLIENT_PATHS {
        mock.fault(reset.clone());
        let reply = post(&proxy, path, &hello(path, true), &[]);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert!(
            reply
                .header("content-type")
                .is_some_and(|kind| kind.starts_with("text/event-stream")),
            "{path}: {:?}",
            reply.headers
        );
        // What came before the reset reached the client.
        assert_eq!(
            answer_text(path, &reply, true),
            deltas[..2].concat(),
            "{path}: {}",
            reply.text()
        );
        let events = sse_events(&reply.body);
        let (name, error) = match path {
            // Chat streams end with `[DONE]`, after the error chunk.
            "/codex/v1/chat/completions" => {
                assert_eq!(
                    events.last().map(|(_, data)| data),
                    Some(&json!("[DONE]")),
                    "{}",
                    reply.text()
                );
                events[events.len() - 2].clone()
            }
            _ => events.last().expect("events").clone(),
        };
        match path {
            "/codex/v1/messages" => {
                assert_eq!(name.as_deref(), Some("error"), "{}", reply.text());
                assert_eq!(error["type"], "error", "{error}");
                assert!(error["error"]["type"].is_string(), "{error}");
                // No message_stop: the answer did not end well.
                assert!(
                    events
                        .iter()
                        .all(|(name, _)| name.as_deref() != Some("message_stop")),
                    "{}",
                    reply.text()
                );
            }
            "/codex/v1/chat/completions" => {
                assert_eq!(name, None, "{}", reply.text());
                assert!(
                    events
                        .iter()
                        .all(|(_, data)| data["choices"][0]["finish_reason"].as_str().is_none()),
                    "no finish_reason: {}",
                    reply.text()
                );
            }
            _ => {
                // The OpenAI error envelope, which the openai SDK raises as
                // an APIError (its stream reader looks for `error`).
                assert_eq!(name.as_deref(), Some("error"), "{}", reply.text());
                assert!(error["error"]["type"].is_string(), "{error}");
                assert!(
                    events
                        .iter()
                        .all(|(name, _)| name.as_deref() != Some("response.completed")),
                    "{}",
                    reply.text()
                );
            }
        }
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("provider codex: upstream connection broke mid-stream"),
            "{path}: {error}"
        );
        let last = mock.codex_requests().pop().expect("a backend request");
        assert_eq!(last["response"]["outcome"], "reset", "{path}");
    }
    assert_eq!(mock.streams()["reset"], 3);

    // A client that asked for one answer gets a 502 in its format instead.
    for path in CLIENT_PATHS {
        mock.fault(reset.clone());
        let reply = post(&proxy, path, &hello(path, false), &[]);
        let message = error_message(path, &reply, 502);
        assert!(message.contains("mid-stream"), "{path}: {message}");
    }
    assert_eq!(mock.streams()["reset"], 6);

    // The proxy serves on.
    let reply = post(&proxy, CLIENT_PATHS[0], &hello(CLIENT_PATHS[0], true), &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(answer_text(CLIENT_PATHS[0], &reply, true), stream_text());
}

#[test]
fn a_client_that_goes_away_mid_stream_cancels_the_backend_request() {
    let mock = codex::start_mock();
    let proxy = codex::logged_in_proxy(&mock, &[]);
    let first_delta = stream_deltas()[0].clone();
    // The JSON spelling of the first delta, as every format carries it.
    let first_delta_json = serde_json::to_string(&first_delta).expect("a string");
    let first_delta_json = first_delta_json.trim_matches('"').to_owned();
    for (n, path) in CLIENT_PATHS.into_iter().enumerate() {
        // Nineteen events 200 ms apart: almost four seconds if nobody hangs up.
        mock.fault(json!({"kind": "trickle", "delay_ms": 200, "path": CODEX_BACKEND_PATH}));
        let body = hello(path, true).to_string();
        let mut stream = proxy.connect();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("the request can be written");
        let started = Instant::now();
        // The first text delta is the seventh event.
        let received = ccproxy_e2e::read_until(&mut stream, &first_delta_json, path);
        assert!(received.starts_with("HTTP/1.1 200"));
        drop(stream);
        let hung_up = Instant::now();

        let cancelled = poll(Duration::from_secs(5), || {
            (mock.streams()["cancelled"] == n + 1).then_some(())
        });
        assert!(
            cancelled.is_some(),
            "{path}: the backend stream was not cut short: {}; proxy log:\n{}",
            mock.streams(),
            proxy.log()
        );
        assert!(
            hung_up.elapsed() < Duration::from_secs(2),
            "{path}: the backend stream ran on for {:?} after the client left",
            hung_up.elapsed()
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{path}");
        let last = mock.codex_requests().pop().expect("a backend request");
        assert_eq!(last["response"]["outcome"], "cancelled", "{path}");
        assert!(
            !last["response"]["body"]
                .as_str()
                .unwrap_or_default()
                .contains("response.completed"),
            "{path}: the whole stream was sent"
        );
    }
    assert_eq!(mock.streams()["completed"], 0);
    assert_eq!(proxy.get("/health").status, 200);
}

#[test]
fn a_backend_that_does_not_answer_in_time_is_a_504_in_the_clients_format() {
    let mock = codex::start_mock();
    // `http.read_timeout_seconds` bounds the codex plugin's requests too.
    let proxy = codex::logged_in_proxy(&mock, &[("HTTP__READ_TIMEOUT_SECONDS", "1")]);
    let requests: Vec<(&str, bool)> = CLIENT_PATHS
        .into_iter()
        .flat_map(|path| [(path, false), (path, true)])
        .collect();
    mock.fault(json!({
        "kind": "delay", "delay_ms": 2500, "count": requests.len(), "path": CODEX_BACKEND_PATH,
    }));
    // All at once: six one-second waits in parallel.
    let replies: Vec<(&str, Reply, Duration)> = std::thread::scope(|scope| {
        let callers: Vec<_> = requests
            .iter()
            .map(|&(path, stream)| {
                let proxy = &proxy;
                scope.spawn(move || {
                    let started = Instant::now();
                    let reply = post(proxy, path, &hello(path, stream), &[]);
                    (path, reply, started.elapsed())
                })
            })
            .collect();
        callers
            .into_iter()
            .map(|caller| caller.join().expect("a caller thread"))
            .collect()
    });
    for (path, reply, waited) in &replies {
        let message = error_message(path, reply, 504);
        assert!(
            message.contains("did not answer within 1000 ms"),
            "{path}: {message}"
        );
        assert!(message.contains(CODEX_BACKEND_PATH), "{path}: {message}");
        assert!(!message.contains(&codex::access_token()), "{message}");
        assert!(
            *waited >= Duration::from_millis(900) && *waited < Duration::from_millis(2400),
            "{path}: answered after {waited:?}"
        );
    }
    assert_eq!(mock.codex_requests().len(), requests.len());
    drop(proxy);

    // The plugin's own `timeout_seconds`, when set, wins over the host's.
    mock.reset();
    let proxy = codex::logged_in_proxy(
        &mock,
        &[
            ("HTTP__READ_TIMEOUT_SECONDS", "1"),
            ("PLUGINS__CODEX__TIMEOUT_SECONDS", "10"),
        ],
    );
    mock.fault(json!({"kind": "delay", "delay_ms": 1500, "path": CODEX_BACKEND_PATH}));
    let path = CLIENT_PATHS[1];
    let reply = post(&proxy, path, &hello(path, false), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(answer_text(path, &reply, false), stream_text());
}
