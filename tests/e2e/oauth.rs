//! OAuth with Claude through the real CLI and host: `ccproxy auth login
//! claude-api --manual`, `status`, `refresh` and `logout` (plugin
//! `oauth_claude`), and a proxy in OAuth mode (plugin `claude_api`) refreshing
//! an expired token once for fifty concurrent requests; all against the mock
//! upstream's fake authorization server.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Barrier, mpsc},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ccproxy_e2e::{CliOutput, Proxy, ProxyOptions, Reply, Sandbox, mock::Mock};
use serde_json::{Value, json};

/// The oauth_claude defaults a login sends.
const CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
const MANUAL_REDIRECT_URI: &str = "https://console.anthropic.com/oauth/code/callback";
/// What the mock's token endpoint issues (see tests/mock_upstream).
const LOGIN_ACCESS: &str = "sk-ant-oat01-mock-login-1";
const LOGIN_REFRESH: &str = "sk-ant-ort01-mock-login-1";
const REFRESHED_ACCESS: &str = "sk-ant-oat01-mock-refreshed-1";
const REFRESHED_REFRESH: &str = "sk-ant-ort01-mock-refreshed-1";
/// The mock answers a grant with `expires_in` of eight hours.
const EXPIRES_IN_MS: u64 = 28_800_000;

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_millis()).expect("milliseconds fit in u64")
}

/// The environment that points `oauth_claude` at the mock and at a
/// credentials file in the sandbox.
fn oauth_env(mock: &Mock, credentials: &Path) -> Vec<(String, String)> {
    vec![
        (
            "PLUGINS__OAUTH_CLAUDE__TOKEN_URL".to_owned(),
            format!("{}/v1/oauth/token", mock.url()),
        ),
        (
            "PLUGINS__OAUTH_CLAUDE__PROFILE_URL".to_owned(),
            format!("{}/api/oauth/profile", mock.url()),
        ),
        (
            "PLUGINS__OAUTH_CLAUDE__CREDENTIALS_FILE".to_owned(),
            credentials.display().to_string(),
        ),
    ]
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{}: {error}: {text}", path.display()))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The value of query parameter `name` in `url`, percent-decoded.
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_base64url(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What `ccproxy auth login claude-api --manual` did.
struct Login {
    output: CliOutput,
    /// The authorize URL it printed.
    url: String,
}

/// Runs `auth login claude-api --manual`, reads the authorize URL it prints,
/// and pastes `paste(state)` (the state parsed from that URL) on its stdin.
fn manual_login(sandbox: &Sandbox, env: &[(&str, &str)], paste: impl Fn(&str) -> String) -> Login {
    let mut child = sandbox
        .command(&["auth", "login", "claude-api", "--manual"], env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ccproxy auth login starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // Lines as they come, so the paste can answer the printed URL.
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let stdout_reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            all.push_str(&line);
            let _ = lines_tx.send(line.clone());
            line.clear();
        }
        all
    });
    let url = loop {
        match lines_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("state=") => break line.trim().to_owned(),
            Ok(_) => continue,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "auth login printed no authorize URL; stdout:\n{}\nstderr:\n{}",
                    stdout_reader.join().unwrap_or_default(),
                    stderr_reader.join().unwrap_or_default()
                );
            }
        }
    };
    let state = query_param(&url, "state").expect("the URL carries a state");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    writeln!(stdin, "{}", paste(&state)).expect("the code can be pasted");
    drop(stdin);
    let status = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("the child can be polled") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("auth login did not finish within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    Login {
        output: CliOutput {
            code: status.code().unwrap_or(-1),
            stdout: stdout_reader.join().unwrap_or_default(),
            stderr: stderr_reader.join().unwrap_or_default(),
        },
        url,
    }
}

#[test]
fn login_status_refresh_and_logout_through_the_cli() {
    let mock = Mock::start(&[]);
    let sandbox = Sandbox::new();
    let credentials = sandbox.root().join("creds.json");
    let env = oauth_env(&mock, &credentials);
    let env = borrowed(&env);

    // Login: the URL, then the pasted `code#state`.
    let before = now_ms();
    let login = manual_login(&sandbox, &env, |state| format!("good-code#{state}"));
    let output = &login.output;
    assert_eq!(output.code, 0, "login failed: {:?}", output);
    assert!(
        output.stdout.contains("logged in to claude-api"),
        "{}",
        output.stdout
    );
    assert!(
        login.url.starts_with("https://claude.ai/oauth/authorize?"),
        "{}",
        login.url
    );
    let param = |name: &str| query_param(&login.url, name).unwrap_or_default();
    assert_eq!(param("client_id"), CLIENT_ID);
    assert_eq!(param("response_type"), "code");
    assert_eq!(param("redirect_uri"), MANUAL_REDIRECT_URI);
    assert_eq!(param("code_challenge_method"), "S256");
    let challenge = param("code_challenge");
    assert!(
        challenge.len() == 43 && is_base64url(&challenge),
        "{challenge}"
    );

    // What the token endpoint got: the code, the login's state and verifier.
    assert_eq!(mock.oauth()["authorization_code"], 1, "{}", mock.log());
    let grants = mock.requests_to("/v1/oauth/token");
    assert_eq!(grants.len(), 1, "{grants:#?}");
    let grant = &grants[0]["body"];
    assert_eq!(grant["grant_type"], "authorization_code");
    assert_eq!(grant["code"], "good-code");
    assert_eq!(
        grant["state"].as_str(),
        query_param(&login.url, "state").as_deref()
    );
    assert_eq!(grant["client_id"], CLIENT_ID);
    assert_eq!(grant["redirect_uri"], MANUAL_REDIRECT_URI);
    let verifier = grant["code_verifier"].as_str().unwrap_or_default();
    assert!(verifier.len() == 43 && is_base64url(verifier), "{verifier}");
    assert_ne!(
        verifier, challenge,
        "the verifier itself never goes in the URL"
    );
    assert!(
        grants[0]["headers"]["content-type"]
            .as_str()
            .is_some_and(|t| t.starts_with("application/json")),
        "{}",
        grants[0]["headers"]
    );

    // The file: mode 0600, exactly the Claude CLI's shape.
    assert_eq!(mode(&credentials), 0o600);
    let stored = read_json(&credentials);
    let expires_at = stored["claudeAiOauth"]["expiresAt"]
        .as_u64()
        .unwrap_or_else(|| panic!("expiresAt is a number of ms: {stored}"));
    assert!(
        (before + EXPIRES_IN_MS..=now_ms() + EXPIRES_IN_MS).contains(&expires_at),
        "{stored}"
    );
    assert_eq!(
        stored,
        json!({"claudeAiOauth": {
            "accessToken": LOGIN_ACCESS,
            "refreshToken": LOGIN_REFRESH,
            "expiresAt": expires_at,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        }})
    );

    // Status: logged in, the token masked.
    for args in [
        &["auth", "status", "claude-api"][..],
        &["auth", "status", "claude-api", "--json"],
    ] {
        let status = sandbox.run_cli(args, &env);
        assert_eq!(status.code, 0, "{args:?}: {status:?}");
        for secret in [LOGIN_ACCESS, LOGIN_REFRESH] {
            assert!(
                !status.stdout.contains(secret) && !status.stderr.contains(secret),
                "{args:?} shows a token: {status:?}"
            );
        }
        assert!(
            status.stdout.contains("sk-ant***in-1"),
            "{args:?}: {status:?}"
        );
    }
    let status = sandbox.run_cli(&["auth", "status", "claude-api"], &env);
    assert!(status.stdout.contains("logged in"), "{status:?}");
    assert!(status.stdout.contains("subscription max"), "{status:?}");

    // Refresh now: one refresh grant with the stored refresh token.
    let refreshed = sandbox.run_cli(&["auth", "refresh", "claude-api"], &env);
    assert_eq!(refreshed.code, 0, "{refreshed:?}");
    assert!(
        !refreshed.stdout.contains(REFRESHED_ACCESS),
        "{refreshed:?}"
    );
    assert_eq!(mock.oauth()["refresh_token"], 1);
    let grants = mock.requests_to("/v1/oauth/token");
    let grant = &grants.last().expect("a refresh grant")["body"];
    assert_eq!(
        (
            &grant["grant_type"],
            &grant["refresh_token"],
            &grant["client_id"]
        ),
        (
            &json!("refresh_token"),
            &json!(LOGIN_REFRESH),
            &json!(CLIENT_ID)
        )
    );
    let stored = read_json(&credentials);
    assert_eq!(stored["claudeAiOauth"]["accessToken"], REFRESHED_ACCESS);
    assert_eq!(stored["claudeAiOauth"]["refreshToken"], REFRESHED_REFRESH);
    assert_eq!(stored["claudeAiOauth"]["subscriptionType"], "max");
    assert_eq!(mode(&credentials), 0o600);

    // Logout removes the login; status then says so with exit 1.
    let logout = sandbox.run_cli(&["auth", "logout", "claude-api"], &env);
    assert_eq!(logout.code, 0, "{logout:?}");
    let gone = !credentials.exists() || read_json(&credentials).get("claudeAiOauth").is_none();
    assert!(gone, "the login is still stored");
    let status = sandbox.run_cli(&["auth", "status", "claude-api"], &env);
    assert_eq!(status.code, 1, "{status:?}");
    assert!(status.stdout.contains("not logged in"), "{status:?}");
}

#[test]
fn a_wrong_code_or_state_logs_nobody_in() {
    let mock = Mock::start(&[]);
    let sandbox = Sandbox::new();
    let credentials = sandbox.root().join("creds.json");
    let env = oauth_env(&mock, &credentials);
    let env = borrowed(&env);

    // A code the server refuses.
    let login = manual_login(&sandbox, &env, |state| format!("bad-code#{state}"));
    assert_eq!(login.output.code, 1, "{:?}", login.output);
    assert!(
        login.output.stderr.contains("token exchange failed"),
        "{:?}",
        login.output
    );
    assert_eq!(mock.oauth()["authorization_code"], 1);
    assert!(!credentials.exists());

    // A code from another login attempt: refused before the token endpoint.
    let login = manual_login(&sandbox, &env, |_| "good-code#another-state".to_owned());
    assert_eq!(login.output.code, 1, "{:?}", login.output);
    assert!(
        login.output.stderr.contains("state mismatch"),
        "{:?}",
        login.output
    );
    assert_eq!(mock.oauth()["authorization_code"], 1);
    assert!(!credentials.exists());

    let status = sandbox.run_cli(&["auth", "status", "claude-api"], &env);
    assert_eq!(status.code, 1, "{status:?}");
}

#[test]
fn an_expired_token_is_refreshed_once_for_fifty_concurrent_requests() {
    const CALLERS: usize = 50;
    // Slow refreshes, so the fifty requests pile up behind the first one; and
    // every upstream request must carry the refreshed token and no API key.
    let mock = Mock::start(&[
        "--oauth-delay-ms",
        "500",
        "--expect-header",
        &format!("authorization=Bearer {REFRESHED_ACCESS}"),
        "--forbid-header",
        "x-api-key",
        "--quiet",
    ]);
    let sandbox = Sandbox::new();
    let credentials: PathBuf = sandbox.root().join("creds.json");
    let expired = json!({"claudeAiOauth": {
        "accessToken": "sk-ant-oat01-expired-0000000000",
        "refreshToken": "sk-ant-ort01-before-0000000000",
        "expiresAt": now_ms() - 60_000,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }});
    fs::write(&credentials, expired.to_string()).expect("the credentials file can be written");
    fs::set_permissions(&credentials, fs::Permissions::from_mode(0o600))
        .expect("the credentials file can be chmod 600");

    let mut env = oauth_env(&mock, &credentials);
    env.push(("PLUGINS__CLAUDE_API__BASE_URL".to_owned(), mock.url()));
    env.push((
        "PLUGINS__CLAUDE_API__AUTH_MODE".to_owned(),
        "oauth".to_owned(),
    ));
    let env = borrowed(&env);
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["claude_api", "oauth_claude"],
            env: &env,
            ..ProxyOptions::default()
        },
    );

    let body = json!({
        "model": "claude-sonnet-4-20250514", "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hello"}],
    })
    .to_string();
    // The host calls plugins from every runtime thread: threads released
    // at once give real concurrency.
    let start = Barrier::new(CALLERS);
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    proxy.request(
                        "POST",
                        "/claude/v1/messages",
                        &[("content-type", "application/json")],
                        body.as_bytes(),
                    )
                })
            })
            .collect();
        callers
            .into_iter()
            .map(|caller| caller.join().expect("a caller thread"))
            .collect()
    });
    for reply in &replies {
        assert_eq!(
            reply.status,
            200,
            "{}\nmock log:\n{}\nproxy log:\n{}",
            reply.text(),
            mock.log(),
            proxy.log()
        );
        assert_eq!(reply.json()["type"], "message");
    }

    let oauth = mock.oauth();
    assert_eq!(oauth["refresh_token"], 1, "single flight: {oauth}");
    assert_eq!(oauth["authorization_code"], 0);
    let grants = mock.requests_to("/v1/oauth/token");
    assert_eq!(grants.len(), 1);
    assert_eq!(
        grants[0]["body"]["refresh_token"],
        "sk-ant-ort01-before-0000000000"
    );
    let upstream = mock.requests_to("/v1/messages");
    assert_eq!(upstream.len(), CALLERS);
    for request in &upstream {
        let headers = &request["headers"];
        assert_eq!(
            headers["authorization"],
            format!("Bearer {REFRESHED_ACCESS}")
        );
        assert!(headers.get("x-api-key").is_none(), "{headers}");
        let betas = headers["anthropic-beta"].as_str().unwrap_or_default();
        assert!(
            betas.split(',').any(|b| b == "oauth-2025-04-20"),
            "{headers}"
        );
        assert_eq!(request["response"]["status"], 200);
    }

    // The refreshed login is stored for the next start and for the Claude CLI.
    let stored = read_json(&credentials);
    assert_eq!(stored["claudeAiOauth"]["accessToken"], REFRESHED_ACCESS);
    assert_eq!(stored["claudeAiOauth"]["refreshToken"], REFRESHED_REFRESH);
    assert!(stored["claudeAiOauth"]["expiresAt"].as_u64().unwrap_or(0) > now_ms());
    assert_eq!(mode(&credentials), 0o600);
    assert_eq!(proxy.get("/health").status, 200);
}

#[test]
fn without_a_usable_login_oauth_mode_fails_in_the_clients_format_and_refreshes_once() {
    let mock = Mock::start(&["--oauth-delay-ms", "300", "--quiet"]);
    let sandbox = Sandbox::new();
    let credentials: PathBuf = sandbox.root().join("creds.json");
    let mut env = oauth_env(&mock, &credentials);
    env.push(("PLUGINS__CLAUDE_API__BASE_URL".to_owned(), mock.url()));
    env.push((
        "PLUGINS__CLAUDE_API__AUTH_MODE".to_owned(),
        "oauth".to_owned(),
    ));
    let env = borrowed(&env);
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["claude_api", "oauth_claude"],
            env: &env,
            ..ProxyOptions::default()
        },
    );
    let anthropic = json!({
        "model": "claude-sonnet-4-20250514", "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hello"}],
    })
    .to_string();
    let chat = json!({
        "model": "claude-sonnet-4-20250514",
        "messages": [{"role": "user", "content": "Hello"}],
    })
    .to_string();
    let send = |path: &str, body: &str| {
        proxy.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
    };
    // Regression (service-error-kinds): oauth_claude's Unauthorized reaches
    // claude_api as Unauthorized, so the client gets a 401, not a 500.
    const UNAUTHORIZED: u16 = 401;

    // Not logged in at all: the error says how to log in, in each format.
    let reply = send("/claude/v1/messages", &anthropic);
    assert_eq!(reply.status, UNAUTHORIZED, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["type"], "error", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("ccproxy auth login claude-api"), "{body}");
    let reply = send("/claude/v1/chat/completions", &chat);
    assert_eq!(reply.status, UNAUTHORIZED, "{}", reply.text());
    let body = reply.json();
    assert!(body.get("type").is_none(), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("ccproxy auth login claude-api"), "{body}");

    // An expired login whose refresh the server refuses: twenty concurrent
    // requests cause one refresh request and all see why it failed.
    let expired = json!({"claudeAiOauth": {
        "accessToken": "sk-ant-oat01-expired-0000000000",
        "refreshToken": "sk-ant-ort01-revoked-0000000000",
        "expiresAt": now_ms() - 60_000,
        "scopes": ["user:inference"],
    }});
    fs::write(&credentials, expired.to_string()).expect("the credentials file can be written");
    fs::set_permissions(&credentials, fs::Permissions::from_mode(0o600))
        .expect("the credentials file can be chmod 600");
    mock.fault(json!({
        "kind": "status", "status": 400, "path": "/v1/oauth/token", "count": 50,
        "body": {"error": "invalid_grant", "error_description": "Refresh token not found or invalid"},
    }));
    let start = Barrier::new(20);
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    send("/claude/v1/messages", &anthropic)
                })
            })
            .collect();
        callers
            .into_iter()
            .map(|caller| caller.join().expect("a caller thread"))
            .collect()
    });
    for reply in &replies {
        assert_eq!(reply.status, UNAUTHORIZED, "{}", reply.text());
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains("token refresh failed (400: Refresh token not found or invalid)"),
            "{message}"
        );
        assert!(!message.contains("revoked-0000000000"), "{message}");
    }
    assert_eq!(
        mock.oauth()["refresh_token"],
        1,
        "single flight, failures too"
    );
    assert!(mock.requests_to("/v1/messages").is_empty());
    // The stored login is left as it was.
    assert_eq!(read_json(&credentials), expired);
}
