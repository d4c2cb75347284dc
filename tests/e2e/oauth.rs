//! OAuth through the real CLI and host, against the mock upstream's fake
//! authorization servers: `ccproxy auth login` (the browser flow's callback
//! server and its state check, the page it answers, the manual flow's
//! pasted code), `status`, `refresh`, `logout` and `providers` for both
//! auth providers (`oauth_claude`, `oauth_codex`), and `claude_api` in OAuth
//! mode: what it sends upstream (the Claude Code identity block, no billing
//! line, at most four cache marks, merged betas, the Claude CLI's headers)
//! and one refresh for fifty concurrent requests.

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Barrier,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ccproxy_e2e::{
    CliOutput, Proxy, ProxyOptions, Reply, Sandbox,
    login::{Login, LoginProcess, is_base64url, manual_login as manual_login_to, query_param},
    mock::{CODEX_TOKEN_PATH, Mock, codex},
    mode, read_json,
};
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

/// [`manual_login_to`] for claude-api.
fn manual_login(sandbox: &Sandbox, env: &[(&str, &str)], paste: impl Fn(&str) -> String) -> Login {
    manual_login_to(sandbox, "claude-api", env, paste)
}

/// Starts `auth login PROVIDER --no-browser`: its callback server listens
/// once the URL is printed.
fn browser_login(sandbox: &Sandbox, provider: &str, env: &[(&str, &str)]) -> LoginProcess {
    LoginProcess::start(sandbox, &["auth", "login", provider, "--no-browser"], env)
}

/// A port on 127.0.0.1 that was free a moment ago, for the callback server
/// (the real providers' fixed ports may be taken on a developer machine).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `GET target` on 127.0.0.1:`port`, as the browser sent back by the
/// authorization server does it: the status and the page.
fn browse(port: u16, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|error| panic!("the callback server on port {port}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: localhost:{port}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    )
    .expect("the request is sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the callback server answers");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

/// SHA-256 (FIPS 180-4), to check a PKCE S256 challenge against the verifier
/// the token endpoint received; checked against RFC 7636's example below.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut message = data.to_vec();
    let bits = u64::try_from(data.len()).expect("a short input") * 8;
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bits.to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let [a, b, c, d, e, f, g, hh] = v;
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let choice = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(choice)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let majority = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(majority);
            v = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
        }
        for (word, add) in h.iter_mut().zip(v) {
            *word = word.wrapping_add(add);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The PKCE S256 challenge of `verifier`.
fn s256(verifier: &str) -> String {
    codex::base64url(&sha256(verifier.as_bytes()))
}

#[test]
fn the_pkce_check_computes_rfc_7636s_example() {
    // RFC 7636, appendix B.
    assert_eq!(
        s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
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

#[test]
fn a_token_endpoint_outage_is_a_502_naming_it_and_keeps_the_login() {
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    let credentials: PathBuf = sandbox.root().join("creds.json");
    let mut env = oauth_env(&mock, &credentials);
    env.push(("PLUGINS__CLAUDE_API__BASE_URL".to_owned(), mock.url()));
    env.push((
        "PLUGINS__CLAUDE_API__AUTH_MODE".to_owned(),
        "oauth".to_owned(),
    ));
    let env = borrowed(&env);
    let expired = json!({"claudeAiOauth": {
        "accessToken": "sk-ant-oat01-expired-0000000000",
        "refreshToken": "sk-ant-ort01-still-good-000000",
        "expiresAt": now_ms() - 60_000,
        "scopes": ["user:inference"],
    }});
    fs::write(&credentials, expired.to_string()).expect("the credentials file can be written");
    fs::set_permissions(&credentials, fs::Permissions::from_mode(0o600))
        .expect("the credentials file can be chmod 600");
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["claude_api", "oauth_claude"],
            env: &env,
            ..ProxyOptions::default()
        },
    );
    mock.fault(json!({
        "kind": "status", "status": 500, "path": "/v1/oauth/token", "count": 5,
        "body": {"error": "server_error"},
    }));
    let reply = proxy.request(
        "POST",
        "/claude/v1/messages",
        &[("content-type", "application/json")],
        json!({"model": "claude-sonnet-4-20250514", "max_tokens": 10,
            "messages": [{"role": "user", "content": "Hello"}]})
        .to_string()
        .as_bytes(),
    );
    // Not a 401 telling the user to log in again: the endpoint failed, not the login.
    assert_eq!(reply.status, 502, "{}", reply.text());
    let body = reply.json();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("/v1/oauth/token"), "{body}");
    assert!(message.contains("500"), "{body}");
    assert!(!message.contains("auth login"), "{body}");
    assert!(!message.contains("still-good"), "{body}");
    assert_eq!(read_json(&credentials), expired, "the login is kept");
}

// The browser flow: `auth login --no-browser`, the callback server, the
// state check, and the page the browser is shown.

/// The Codex CLI's OAuth client, which `oauth_codex` logs in as.
const CODEX_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
const CODEX_SCOPE: &str = "openid profile email offline_access";
/// Where OpenAI sends the browser back in the manual flow (the original's
/// `manual_redirect_uri`, inventory §7a).
const CODEX_MANUAL_REDIRECT_URI: &str = "https://platform.openai.com/oauth/callback";

/// The environment of a Claude browser login whose callback listens on `port`.
fn claude_browser_env(mock: &Mock, credentials: &Path, port: u16) -> Vec<(String, String)> {
    let mut env = oauth_env(mock, credentials);
    env.push((
        "PLUGINS__OAUTH_CLAUDE__REDIRECT_URI".to_owned(),
        format!("http://localhost:{port}/callback"),
    ));
    env
}

/// The environment of a Codex login against the mock, its callback on `port`
/// (the credentials go to the sandbox's `~/.codex/auth.json`).
fn codex_env(mock: &Mock, port: u16) -> Vec<(String, String)> {
    vec![
        ("PLUGINS__OAUTH_CODEX__BASE_URL".to_owned(), mock.url()),
        (
            "PLUGINS__OAUTH_CODEX__REDIRECT_URI".to_owned(),
            format!("http://localhost:{port}/auth/callback"),
        ),
    ]
}

/// Checks the PKCE and state parameters of `url` and returns the challenge.
fn assert_pkce_and_state(url: &str) -> String {
    let param = |name: &str| query_param(url, name).unwrap_or_default();
    assert_eq!(param("code_challenge_method"), "S256", "{url}");
    let challenge = param("code_challenge");
    assert!(
        challenge.len() == 43 && is_base64url(&challenge),
        "{challenge}"
    );
    // 32 random bytes, base64url.
    let state = param("state");
    assert!(state.len() == 43 && is_base64url(&state), "{url}");
    assert_ne!(state, challenge);
    challenge
}

#[test]
fn browser_login_to_claude_checks_the_state_and_stores_the_claude_cli_file() {
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    let credentials = sandbox.root().join("creds.json");
    let port = free_port();
    let redirect_uri = format!("http://localhost:{port}/callback");
    let env = claude_browser_env(&mock, &credentials, port);
    let env = borrowed(&env);

    let before = now_ms();
    let login = browser_login(&sandbox, "claude-api", &env);
    assert!(
        login.url.starts_with("https://claude.ai/oauth/authorize?"),
        "{}",
        login.url
    );
    assert_eq!(login.param("code"), "true");
    assert_eq!(login.param("client_id"), CLIENT_ID);
    assert_eq!(login.param("response_type"), "code");
    assert_eq!(login.param("redirect_uri"), redirect_uri);
    assert_eq!(
        login.param("scope"),
        "org:create_api_key user:profile user:inference"
    );
    let challenge = assert_pkce_and_state(&login.url);
    let state = login.param("state");

    // Another path (a browser asks for /favicon.ico): 404, still waiting.
    assert_eq!(browse(port, "/favicon.ico").0, 404);
    assert_eq!(mock.oauth()["authorization_code"], 0);

    // The authorization server's redirect: the page answers after the
    // exchange, and says it worked.
    let (status, page) = browse(port, &format!("/callback?code=good-code&state={state}"));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Logged in to claude-api"), "{page}");
    let output = login.finish();
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output.stdout.contains("logged in to claude-api"),
        "{output:?}"
    );

    // One grant: the code, this login's state and redirect, and the verifier
    // whose S256 is the challenge of the URL.
    assert_eq!(mock.oauth()["authorization_code"], 1);
    let grants = mock.requests_to("/v1/oauth/token");
    assert_eq!(grants.len(), 1, "{grants:#?}");
    let grant = &grants[0]["body"];
    let verifier = grant["code_verifier"].as_str().unwrap_or_default();
    assert_eq!(s256(verifier), challenge, "{grant}");
    assert_eq!(
        grant,
        &json!({
            "grant_type": "authorization_code", "code": "good-code", "state": state,
            "redirect_uri": redirect_uri, "client_id": CLIENT_ID, "code_verifier": verifier,
        })
    );

    // The file: mode 0600, exactly the Claude CLI's shape.
    assert_eq!(mode(&credentials), 0o600);
    let stored = read_json(&credentials);
    let expires_at = stored["claudeAiOauth"]["expiresAt"].as_u64().unwrap_or(0);
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
}

#[test]
fn without_no_browser_the_authorize_url_is_opened_in_the_users_browser() {
    // The user's browser: an `xdg-open` first on PATH that writes down what it
    // was asked to open.
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    let bin = sandbox.root().join("bin");
    fs::create_dir_all(&bin).expect("the sandbox is writable");
    let opened = sandbox.root().join("opened-url");
    let opener = bin.join("xdg-open");
    fs::write(
        &opener,
        format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > '{}.part' && mv '{0}.part' '{0}'\n",
            opened.display()
        ),
    )
    .expect("the sandbox is writable");
    fs::set_permissions(&opener, fs::Permissions::from_mode(0o755)).expect("chmod");
    let port = free_port();
    let mut env = codex_env(&mock, port);
    let path = std::env::var("PATH").unwrap_or_default();
    env.push(("PATH".to_owned(), format!("{}:{path}", bin.display())));
    let env = borrowed(&env);

    let login = LoginProcess::start(&sandbox, &["auth", "login", "codex"], &env);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !opened.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = fs::read_to_string(&opened).unwrap_or_default();
    // The URL is printed as well, for when no browser opens.
    assert_eq!(url, login.url, "the browser was given the printed URL");
    let state = login.param("state");
    let (status, page) = browse(
        port,
        &format!("/auth/callback?code=good-code&scope=openid&state={state}"),
    );
    assert_eq!(status, 200, "{page}");
    let output = login.finish();
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output.stdout.contains("If it does not open, visit"),
        "{output:?}"
    );
}

#[test]
fn browser_login_to_codex_then_status_refresh_and_logout() {
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    let port = free_port();
    let redirect_uri = format!("http://localhost:{port}/auth/callback");
    let env = codex_env(&mock, port);
    let env = borrowed(&env);

    let login = browser_login(&sandbox, "codex", &env);
    assert!(
        login
            .url
            .starts_with(&format!("{}/oauth/authorize?", mock.url())),
        "{}",
        login.url
    );
    assert_eq!(login.param("response_type"), "code");
    assert_eq!(login.param("client_id"), CODEX_CLIENT_ID);
    assert_eq!(login.param("redirect_uri"), redirect_uri);
    assert_eq!(login.param("scope"), CODEX_SCOPE);
    let challenge = assert_pkce_and_state(&login.url);
    let state = login.param("state");
    let (status, page) = browse(
        port,
        &format!("/auth/callback?code=good-code&scope=openid&state={state}"),
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Logged in to codex"), "{page}");
    let output = login.finish();
    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stdout.contains("logged in to codex"), "{output:?}");

    let grants = mock.requests_to(CODEX_TOKEN_PATH);
    assert_eq!(grants.len(), 1, "{grants:#?}");
    let form = &grants[0]["form"];
    let verifier = form["code_verifier"].as_str().unwrap_or_default();
    assert_eq!(s256(verifier), challenge, "{form}");
    assert_eq!(
        form,
        &json!({
            "grant_type": "authorization_code", "code": "good-code", "redirect_uri": redirect_uri,
            "client_id": CODEX_CLIENT_ID, "code_verifier": verifier,
        })
    );

    // ~/.codex/auth.json: mode 0600 in a 0700 folder, the Codex CLI's shape.
    let file = codex::auth_json_path(sandbox.root());
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().expect("a folder")), 0o700);
    let stored = read_json(&file);
    let issued = mock.oauth()["issued"][0]
        .as_str()
        .expect("an access token was issued")
        .to_owned();
    let id_token = stored["tokens"]["id_token"].as_str().unwrap_or_default();
    let last_refresh = stored["last_refresh"].as_str().unwrap_or_default();
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

    // `auth refresh codex`: one form-encoded refresh grant with the stored
    // refresh token and the scopes; the rotated tokens are stored.
    let refreshed = sandbox.run_cli(&["auth", "refresh", "codex"], &env);
    assert_eq!(refreshed.code, 0, "{refreshed:?}");
    assert!(
        refreshed.stdout.starts_with("refreshed codex: "),
        "{refreshed:?}"
    );
    assert!(
        refreshed.stdout.contains("account acct_mock"),
        "{refreshed:?}"
    );
    assert_eq!(mock.oauth()["refresh_token"], 1);
    let grants = mock.requests_to(CODEX_TOKEN_PATH);
    assert_eq!(grants.len(), 2, "{grants:#?}");
    assert_eq!(
        grants[1]["form"],
        json!({
            "grant_type": "refresh_token", "refresh_token": "rt_mock-login-1",
            "client_id": CODEX_CLIENT_ID, "scope": CODEX_SCOPE,
        })
    );
    let refreshed_token = mock.oauth()["issued"][1]
        .as_str()
        .expect("a refreshed token was issued")
        .to_owned();
    for secret in [issued.as_str(), refreshed_token.as_str(), "rt_mock-"] {
        assert!(
            !refreshed.stdout.contains(secret) && !refreshed.stderr.contains(secret),
            "{refreshed:?}"
        );
    }
    let stored = read_json(&file);
    assert_eq!(stored["tokens"]["access_token"], refreshed_token);
    assert_eq!(stored["tokens"]["refresh_token"], "rt_mock-refreshed-1");
    assert_eq!(stored["auth_mode"], "chatgpt");
    assert_eq!(mode(&file), 0o600);

    // `auth logout codex`: the login is gone (the file held nothing else),
    // and status says so with exit 1.
    let logout = sandbox.run_cli(&["auth", "logout", "codex"], &env);
    assert_eq!(logout.code, 0, "{logout:?}");
    assert!(logout.stdout.contains("logged out of codex"), "{logout:?}");
    assert!(
        !file.exists(),
        "{}",
        fs::read_to_string(&file).unwrap_or_default()
    );
    let status = sandbox.run_cli(&["auth", "status", "codex"], &env);
    assert_eq!(status.code, 1, "{status:?}");
    assert!(status.stdout.contains("not logged in"), "{status:?}");
    // Refreshing without a login fails, saying how to log in.
    let refresh = sandbox.run_cli(&["auth", "refresh", "codex"], &env);
    assert_eq!(refresh.code, 1, "{refresh:?}");
    assert!(
        refresh.stderr.contains("ccproxy auth login codex"),
        "{refresh:?}"
    );
    assert_eq!(mock.oauth()["refresh_token"], 1);
}

/// Hits the callback of a fresh `provider` login with `query(state)`; the
/// page's status and text, and what the CLI did.
fn answer_callback(
    sandbox: &Sandbox,
    provider: &str,
    env: &[(&str, &str)],
    port: u16,
    path: &str,
    query: impl Fn(&str) -> String,
) -> (u16, String, CliOutput) {
    let login = browser_login(sandbox, provider, env);
    let state = login.param("state");
    let (status, page) = browse(port, &format!("{path}?{}", query(&state)));
    (status, page, login.finish())
}

#[test]
fn a_callback_without_this_logins_state_is_refused_and_nothing_is_stored() {
    let mock = Mock::start(&["--quiet"]);
    let refused = |status: u16, page: &str, output: &CliOutput, reason: &str| {
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("Login refused"), "{page}");
        assert!(!page.contains("Logged in"), "{page}");
        assert_eq!(output.code, 1, "{output:?}");
        assert!(
            output
                .stderr
                .contains(&format!("refused the OAuth callback: {reason}")),
            "{output:?}"
        );
        assert!(output.stderr.contains("nothing was stored"), "{output:?}");
        assert!(!output.stdout.contains("logged in to"), "{output:?}");
    };

    // Codex (the callback of `codex login`, port 1455 in real life).
    let sandbox = Sandbox::new();
    let port = free_port();
    let env = codex_env(&mock, port);
    let env = borrowed(&env);
    let file = codex::auth_json_path(sandbox.root());
    let (status, page, output) =
        answer_callback(&sandbox, "codex", &env, port, "/auth/callback", |_| {
            "code=good-code".to_owned()
        });
    refused(status, &page, &output, "it carried no state");
    let (status, page, output) =
        answer_callback(&sandbox, "codex", &env, port, "/auth/callback", |_| {
            "code=good-code&state=forged".to_owned()
        });
    refused(status, &page, &output, "state mismatch");
    // A state that only starts like this login's.
    let (status, page, output) =
        answer_callback(&sandbox, "codex", &env, port, "/auth/callback", |state| {
            format!("code=good-code&state={}", &state[..42])
        });
    refused(status, &page, &output, "state mismatch");
    // An error report without this login's state is not believed either.
    let (status, page, output) =
        answer_callback(&sandbox, "codex", &env, port, "/auth/callback", |_| {
            "error=access_denied".to_owned()
        });
    refused(status, &page, &output, "it carried no state");
    assert!(!file.exists());

    // Claude.
    let credentials = sandbox.root().join("creds.json");
    let env = claude_browser_env(&mock, &credentials, port);
    let env = borrowed(&env);
    let (status, page, output) =
        answer_callback(&sandbox, "claude-api", &env, port, "/callback", |_| {
            "code=good-code".to_owned()
        });
    refused(status, &page, &output, "it carried no state");
    let (status, page, output) =
        answer_callback(&sandbox, "claude-api", &env, port, "/callback", |_| {
            "code=good-code&state=forged".to_owned()
        });
    refused(status, &page, &output, "state mismatch");
    assert!(!credentials.exists());

    // None of them reached the token endpoint.
    assert_eq!(mock.oauth()["authorization_code"], 0, "{}", mock.log());
    let status = sandbox.run_cli(&["auth", "status", "claude-api"], &env);
    assert_eq!(status.code, 1, "{status:?}");
}

#[test]
fn the_callback_page_says_what_really_happened() {
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    let credentials = sandbox.root().join("creds.json");
    let port = free_port();
    let env = claude_browser_env(&mock, &credentials, port);
    let env = borrowed(&env);

    // This login's state, but a code the token endpoint refuses: the page
    // answers after the exchange, and says it failed.
    let (status, page, output) =
        answer_callback(&sandbox, "claude-api", &env, port, "/callback", |state| {
            format!("code=bad-code&state={state}")
        });
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("Login failed"), "{page}");
    assert!(page.contains("token exchange failed"), "{page}");
    assert!(!page.contains("Logged in"), "{page}");
    assert_eq!(output.code, 1, "{output:?}");
    assert!(
        output.stderr.contains("token exchange failed"),
        "{output:?}"
    );
    assert_eq!(mock.oauth()["authorization_code"], 1);
    assert!(!credentials.exists());

    // The user said no on the consent page.
    let (status, page, output) =
        answer_callback(&sandbox, "claude-api", &env, port, "/callback", |state| {
            format!("error=access_denied&error_description=The+user+said+no&state={state}")
        });
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("Login failed: the authorization server answered access_denied"),
        "{page}"
    );
    assert_eq!(output.code, 1, "{output:?}");
    assert!(
        output
            .stderr
            .contains("authorization failed: access_denied (The user said no)"),
        "{output:?}"
    );
    assert_eq!(mock.oauth()["authorization_code"], 1);
    assert!(!credentials.exists());
}

#[test]
fn manual_login_to_codex_uses_openais_manual_redirect() {
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    let base_url = mock.url();
    let env = [("PLUGINS__OAUTH_CODEX__BASE_URL", base_url.as_str())];
    let login = manual_login_to(&sandbox, "codex", &env, |state| {
        format!("good-code#{state}")
    });
    assert_eq!(login.output.code, 0, "{:?}", login.output);
    assert_eq!(
        query_param(&login.url, "redirect_uri").as_deref(),
        Some(CODEX_MANUAL_REDIRECT_URI)
    );
    let grants = mock.requests_to(CODEX_TOKEN_PATH);
    assert_eq!(grants.len(), 1, "{grants:#?}");
    assert_eq!(grants[0]["form"]["redirect_uri"], CODEX_MANUAL_REDIRECT_URI);
    assert!(codex::auth_json_path(sandbox.root()).exists());
}

#[test]
fn a_pasted_address_must_carry_this_logins_state_and_a_bare_code_gets_a_note() {
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    let credentials = sandbox.root().join("creds.json");
    let env = oauth_env(&mock, &credentials);
    let env = borrowed(&env);

    // The browser's address after the redirect, from another login.
    let login = manual_login(&sandbox, &env, |_| {
        "http://localhost:54545/callback?code=good-code&state=another".to_owned()
    });
    assert_eq!(login.output.code, 1, "{:?}", login.output);
    assert!(
        login.output.stderr.contains("state mismatch"),
        "{:?}",
        login.output
    );
    // An address without a state.
    let login = manual_login(&sandbox, &env, |_| {
        "http://localhost:54545/callback?code=good-code".to_owned()
    });
    assert_eq!(login.output.code, 1, "{:?}", login.output);
    assert!(
        login.output.stderr.contains("has no state"),
        "{:?}",
        login.output
    );
    assert_eq!(mock.oauth()["authorization_code"], 0);
    assert!(!credentials.exists());

    // This login's address: logged in.
    let login = manual_login(&sandbox, &env, |state| {
        format!("http://localhost:54545/callback?code=good-code&state={state}")
    });
    assert_eq!(login.output.code, 0, "{:?}", login.output);
    fs::remove_file(&credentials).expect("the login was stored");

    // A bare code: accepted, saying why (PKCE binds it to this login), and
    // exchanged with this login's state and verifier.
    let login = manual_login(&sandbox, &env, |_| "good-code".to_owned());
    assert_eq!(login.output.code, 0, "{:?}", login.output);
    assert!(
        login
            .output
            .stderr
            .contains("note: the pasted code has no #state to check"),
        "{:?}",
        login.output
    );
    let grants = mock.requests_to("/v1/oauth/token");
    let grant = &grants.last().expect("a grant")["body"];
    assert_eq!(grant["code"], "good-code");
    assert_eq!(
        grant["state"].as_str(),
        query_param(&login.url, "state").as_deref()
    );
    assert!(credentials.exists());
}

// The other `auth` commands.

#[test]
fn auth_providers_lists_the_auth_plugins_and_initialises_only_cli_safe_ones() {
    let sandbox = Sandbox::new();
    // access_log is bundled and not cli_safe; its init creates its log file.
    let access_log = sandbox.root().join("access.log");
    let access_log_env = access_log.display().to_string();
    let env = [(
        "PLUGINS__ACCESS_LOG__CLIENT_LOG_FILE",
        access_log_env.as_str(),
    )];

    let providers = sandbox.run_cli(&["auth", "providers"], &env);
    assert_eq!(providers.code, 0, "{providers:?}");
    let lines: Vec<&str> = providers.stdout.lines().collect();
    assert!(
        lines.contains(&"claude-api   Claude API       plugin oauth_claude 0.1.0"),
        "{providers:?}"
    );
    assert!(
        lines.contains(&"codex        OpenAI Codex     plugin oauth_codex 0.1.0"),
        "{providers:?}"
    );
    // Only auth providers are listed.
    for line in &lines {
        assert!(line.contains(" plugin oauth_"), "{providers:?}");
    }
    assert!(
        !access_log.exists(),
        "access_log (not cli_safe) was initialised by `auth providers`"
    );

    // Without them, it says why nothing is listed.
    let none = sandbox.run_cli(
        &[
            "auth",
            "providers",
            "--disable-plugin",
            "oauth_claude",
            "--disable-plugin",
            "oauth_codex",
            "--disable-plugin",
            "oauth_copilot",
        ],
        &env,
    );
    assert_eq!(none.code, 0, "{none:?}");
    assert_eq!(
        none.stdout,
        "no OAuth providers: no cli_safe auth-provider plugin is installed or enabled\n"
    );
    let unknown = sandbox.run_cli(
        &["auth", "status", "codex", "--disable-plugin", "oauth_codex"],
        &env,
    );
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("unknown OAuth provider codex; known: claude-api"),
        "{unknown:?}"
    );
    assert!(!access_log.exists());

    // The same plugin under `serve` is initialised, so the probe works.
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["access_log"],
            env: &env,
            ..ProxyOptions::default()
        },
    );
    assert!(access_log.exists(), "{}", proxy.log());
}

// What `claude_api` sends upstream in OAuth mode, as the mock upstream
// recorded it.

/// A login that stays valid during the test.
const VALID_ACCESS: &str = "sk-ant-oat01-valid-0000000000";
/// The Claude Code identity block every OAuth request opens with.
const CLAUDE_CODE_IDENTITY: &str = "You are Claude Code, Anthropic's official CLI for Claude.";

/// A proxy in OAuth mode, logged in with [`VALID_ACCESS`], in front of `mock`.
fn oauth_proxy(mock: &Mock) -> Proxy {
    let sandbox = Sandbox::new();
    let credentials = sandbox.root().join("creds.json");
    let login = json!({"claudeAiOauth": {
        "accessToken": VALID_ACCESS,
        "refreshToken": "sk-ant-ort01-valid-0000000000",
        "expiresAt": now_ms() + 3_600_000,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }});
    fs::write(&credentials, login.to_string()).expect("the credentials file can be written");
    fs::set_permissions(&credentials, fs::Permissions::from_mode(0o600))
        .expect("the credentials file can be chmod 600");
    let mut env = oauth_env(mock, &credentials);
    env.push(("PLUGINS__CLAUDE_API__BASE_URL".to_owned(), mock.url()));
    env.push((
        "PLUGINS__CLAUDE_API__AUTH_MODE".to_owned(),
        "oauth".to_owned(),
    ));
    let env = borrowed(&env);
    Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["claude_api", "oauth_claude"],
            env: &env,
            ..ProxyOptions::default()
        },
    )
}

/// How many blocks of `body` carry `cache_control`.
fn cache_marks(body: &Value) -> usize {
    body.to_string().matches("\"cache_control\"").count()
}

/// The upstream request `n` (0 = first) to `/v1/messages`.
fn sent_upstream(mock: &Mock, n: usize) -> Value {
    let sent = mock.requests_to("/v1/messages");
    sent.get(n)
        .cloned()
        .unwrap_or_else(|| panic!("no upstream request {n}: {sent:#?}"))
}

#[test]
fn oauth_mode_shapes_the_request_as_claude_code_sends_it() {
    let mock = Mock::start(&[
        "--expect-header",
        &format!("authorization=Bearer {VALID_ACCESS}"),
        "--forbid-header",
        "x-api-key",
        "--quiet",
    ]);
    let proxy = oauth_proxy(&mock);
    let marked =
        |text: &str| json!({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}});
    // An SDK client (not Claude Code): a system prompt with Claude Code's
    // per-request billing line, a block that is only that line, and six
    // cache_control marks (seven with the injected identity).
    let body = json!({
        "model": "claude-sonnet-4-20250514", "max_tokens": 100,
        "system": [
            marked("x-anthropic-billing-header: cc_version=1.0.113; cch=0a1b2c;\nYou are a pirate."),
            {"type": "text", "text": "x-anthropic-billing-header: cch=ffff;"},
            marked(&"Long house rules. ".repeat(200)),
        ],
        "messages": [
            {"role": "user", "content": [marked("Hi"), marked(&"Some long context. ".repeat(100))]},
            {"role": "assistant", "content": [marked("Ahoy")]},
            {"role": "user", "content": [marked("Where is the treasure?")]},
        ],
    });
    let reply = proxy.request(
        "POST",
        "/claude/v1/messages",
        &[
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
            (
                "anthropic-beta",
                "interleaved-thinking-2025-05-14,oauth-2025-04-20",
            ),
            ("authorization", "Bearer client-proxy-token"),
            ("x-api-key", "client-key"),
            ("cookie", "session=1"),
            ("user-agent", "Anthropic/Python 0.40.0"),
            ("x-stainless-lang", "python"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), mock.log());

    let sent = sent_upstream(&mock, 0);
    let upstream = &sent["body"];
    let system = upstream["system"].as_array().expect("a system array");
    // The identity block first, marked; the billing lines gone (the block
    // holding nothing else too), the rest of the text byte for byte.
    assert_eq!(system[0], marked(CLAUDE_CODE_IDENTITY), "{upstream}");
    assert_eq!(system[1]["text"], "You are a pirate.");
    assert_eq!(system.len(), 3, "{upstream}");
    assert!(
        !upstream.to_string().contains("x-anthropic-billing-header"),
        "{upstream}"
    );
    // At most four marks: the identity's, then the largest blocks'.
    assert_eq!(cache_marks(upstream), 4, "{upstream}");
    assert!(system[2].get("cache_control").is_some(), "{upstream}");
    assert!(
        upstream["messages"][0]["content"][1]
            .get("cache_control")
            .is_some(),
        "{upstream}"
    );
    // Headers: the login's token, never the client's credentials; the
    // client's betas then the required ones; the Claude CLI's identity
    // (its defaults, since the client is not Claude Code).
    let headers = &sent["headers"];
    assert_eq!(headers["authorization"], format!("Bearer {VALID_ACCESS}"));
    for absent in ["x-api-key", "cookie"] {
        assert!(headers.get(absent).is_none(), "{headers}");
    }
    assert_eq!(
        headers["anthropic-beta"],
        "interleaved-thinking-2025-05-14,oauth-2025-04-20,claude-code-20250219"
    );
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        headers["user-agent"],
        "claude-cli/1.0.113 (external, sdk-cli)"
    );
    assert_eq!(headers["x-app"], "cli");
    assert_eq!(headers["x-stainless-lang"], "js");
    assert_eq!(headers["x-stainless-runtime"], "node");
    assert_eq!(headers["x-stainless-package-version"], "0.60.0");
    assert_eq!(headers["anthropic-dangerous-direct-browser-access"], "true");

    // An OpenAI client is shaped the same after conversion.
    let reply = proxy.post_json(
        "/claude/v1/chat/completions",
        &json!({"model": "claude-sonnet-4-20250514", "messages": [
            {"role": "system", "content": "x-anthropic-billing-header: cch=1;\nBe brief."},
            {"role": "user", "content": "Hello"},
        ]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = sent_upstream(&mock, 1);
    let system = &sent["body"]["system"];
    assert_eq!(system[0]["text"], CLAUDE_CODE_IDENTITY, "{sent}");
    assert!(!system.to_string().contains("billing"), "{system}");
    assert!(system.to_string().contains("Be brief."), "{system}");
    assert_eq!(
        sent["headers"]["anthropic-beta"],
        "claude-code-20250219,oauth-2025-04-20"
    );
    assert_eq!(sent["headers"]["x-app"], "cli");
}

#[test]
fn oauth_mode_forwards_claude_codes_own_identity_headers() {
    let mock = Mock::start(&["--forbid-header", "x-api-key", "--quiet"]);
    let proxy = oauth_proxy(&mock);
    let capture: Value = serde_json::from_str(
        &fs::read_to_string(
            ccproxy_e2e::workspace_root().join("tests/data/claude_cli_request_capture.json"),
        )
        .expect("the Claude Code capture is checked in"),
    )
    .expect("the capture is JSON");
    // A newer Claude Code than the defaults, so its own values are seen.
    let mut client: Vec<(String, String)> = capture["headers"]
        .as_object()
        .expect("captured headers")
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "host" | "content-length" | "connection" | "accept-encoding"
            )
        })
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
        .filter(|(_, value)| !value.is_empty())
        .collect();
    for (name, value) in &mut client {
        match name.as_str() {
            "user-agent" => *value = "claude-cli/2.0.14 (external, cli)".to_owned(),
            "x-stainless-package-version" => *value = "0.70.1".to_owned(),
            "x-stainless-retry-count" => *value = "2".to_owned(),
            _ => {}
        }
    }
    client.push(("x-api-key".to_owned(), "anything".to_owned()));
    client.push(("x-stainless-helper-method".to_owned(), "stream".to_owned()));
    let headers: Vec<(&str, &str)> = client
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let reply = proxy.request(
        "POST",
        "/claude/v1/messages",
        &headers,
        capture["body_json"].to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), mock.log());

    let sent = sent_upstream(&mock, 0);
    let upstream = &sent["headers"];
    assert_eq!(upstream["authorization"], format!("Bearer {VALID_ACCESS}"));
    assert!(upstream.get("x-api-key").is_none(), "{upstream}");
    assert_eq!(upstream["user-agent"], "claude-cli/2.0.14 (external, cli)");
    assert_eq!(upstream["x-stainless-package-version"], "0.70.1");
    assert_eq!(upstream["x-stainless-retry-count"], "2");
    assert_eq!(upstream["x-stainless-helper-method"], "stream");
    for name in [
        "x-app",
        "x-stainless-lang",
        "x-stainless-os",
        "x-stainless-arch",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "x-stainless-timeout",
        "anthropic-dangerous-direct-browser-access",
        "accept",
    ] {
        assert_eq!(
            upstream[name], capture["headers"][name],
            "{name}: {upstream}"
        );
    }
    assert_eq!(
        upstream["anthropic-beta"], capture["headers"]["anthropic-beta"],
        "{upstream}"
    );
    // Claude Code's prompt already opens with the identity: not doubled.
    let system = &sent["body"]["system"];
    assert_eq!(system[0]["text"], CLAUDE_CODE_IDENTITY);
    assert_ne!(system[1]["text"], CLAUDE_CODE_IDENTITY);
    assert_eq!(
        system.as_array().map(Vec::len),
        capture["body_json"]["system"].as_array().map(Vec::len)
    );
}
