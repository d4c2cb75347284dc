use ccproxy_plugin_abi::testing::{MockHost, TestPlugin};

use super::*;

const COPILOT_TOKEN: &str = "tid=unit-copilot-token;exp=1;sku=x-WXYZ";

fn start(host: &MockHost) -> TestPlugin {
    let plugin = host.start::<Copilot>().expect("the plugin starts");
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    plugin
}

fn provider_request(stream: bool) -> ProviderRequest {
    ProviderRequest {
        endpoint: "/copilot/v1/chat/completions".to_owned(),
        client_format: "openai.chat_completions".to_owned(),
        native_format: "openai.chat_completions".to_owned(),
        stream,
        model: Some("gpt-4o".to_owned()),
        headers: Headers(vec![("authorization".to_owned(), "Bearer client-secret".to_owned())]),
        query: String::new(),
        body: br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}"#.to_vec(),
        request_id: "req-1".to_owned(),
        attempt: None,
        body_members: Vec::new(),
    }
}

fn with_token(api_base: Option<&'static str>) -> MockHost {
    MockHost::new().service(OAUTH_SERVICE, move |method, _| match method {
        "access_token" => Ok(json!({"access_token": COPILOT_TOKEN, "api_base": api_base})),
        other => Err(PluginError::not_found(other.to_owned())),
    })
}

#[test]
fn requests_go_to_the_exchanges_api_base_with_copilots_headers() {
    let plugin = start(&with_token(Some(
        "https://api.individual.githubcopilot.com",
    )));
    let upstream = plugin.prepare_upstream(provider_request(true)).unwrap();
    assert_eq!(
        upstream.url,
        "https://api.individual.githubcopilot.com/chat/completions"
    );
    let headers = &upstream.headers;
    assert_eq!(
        headers.get("authorization"),
        Some(format!("Bearer {COPILOT_TOKEN}").as_str())
    );
    assert_eq!(headers.get("copilot-integration-id"), Some("vscode-chat"));
    assert_eq!(headers.get("editor-version"), Some("vscode/1.85.0"));
    assert_eq!(
        headers.get("editor-plugin-version"),
        Some("copilot-chat/0.26.7")
    );
    assert_eq!(headers.get("user-agent"), Some("GitHubCopilotChat/0.26.7"));
    assert_eq!(headers.get("x-github-api-version"), Some("2025-04-01"));
    assert!(upstream.stream);
    let body: Value = serde_json::from_slice(&upstream.body).unwrap();
    assert_eq!(body["stream"], true);
    assert!(!format!("{headers:?}").contains("client-secret"));
}

#[test]
fn an_explicit_base_url_wins_over_the_exchanges() {
    let host = with_token(Some("https://api.individual.githubcopilot.com"))
        .config(json!({"base_url": "http://127.0.0.1:9/"}));
    let plugin = start(&host);
    let upstream = plugin.prepare_upstream(provider_request(false)).unwrap();
    assert_eq!(upstream.url, "http://127.0.0.1:9/chat/completions");
    let body: Value = serde_json::from_slice(&upstream.body).unwrap();
    assert_eq!(body["stream"], false);
    assert!(body.get("stream_options").is_none());
    let plugin = start(&with_token(None));
    let upstream = plugin.prepare_upstream(provider_request(false)).unwrap();
    assert_eq!(
        upstream.url,
        "https://api.githubcopilot.com/chat/completions"
    );
}

#[test]
fn without_the_auth_plugin_the_error_says_what_to_do() {
    let plugin = start(&MockHost::new());
    let error = plugin
        .prepare_upstream(provider_request(false))
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized);
    assert!(
        error.message().contains("oauth_copilot"),
        "{}",
        error.message()
    );
}

#[test]
fn plain_routes_answer_from_the_service_and_the_api() {
    let host = MockHost::new()
        .service(OAUTH_SERVICE, |method, _| match method {
            "access_token" => {
                Ok(json!({"access_token": COPILOT_TOKEN, "api_base": "https://api.example.test"}))
            }
            "token" => Ok(json!({"token": "tid=un***WXYZ", "expired": false})),
            "usage" => Ok(json!({"copilot_plan": "individual"})),
            "status" => {
                Ok(json!({"logged_in": true, "source": "login", "copilot_token": "tid=un***WXYZ"}))
            }
            other => Err(PluginError::not_found(other.to_owned())),
        })
        .http(|req| {
            assert_eq!(req.url, "https://api.example.test/embeddings");
            assert_eq!(
                req.headers.get("copilot-integration-id"),
                Some("vscode-chat")
            );
            Ok(HttpResponse {
                status: 200,
                body: br#"{"object":"list","data":[]}"#.to_vec(),
                ..HttpResponse::default()
            })
        });
    let plugin = start(&host);
    let request = |method: &str, path: &str| {
        let mut req = ccproxy_plugin_abi::testing::request(method, path);
        req.body = br#"{"model":"m","input":"x"}"#.to_vec();
        plugin.route(req).unwrap()
    };
    let embeddings = request("POST", "/copilot/v1/embeddings");
    assert_eq!(embeddings.status, 200);
    assert_eq!(request("GET", "/copilot/usage").status, 200);
    let token = request("GET", "/copilot/token");
    assert!(!String::from_utf8_lossy(&token.body).contains(COPILOT_TOKEN));
    let health = request("GET", "/copilot/health");
    assert_eq!(health.status, 200);
    let health: Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["details"]["credentials"], "login");
}

#[test]
fn a_401_from_copilot_drops_the_cached_token() {
    let invalidated = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = invalidated.clone();
    let host = MockHost::new().service(OAUTH_SERVICE, move |method, _| {
        if method == "invalidate" {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(json!({}))
    });
    let plugin = start(&host);
    for (provider, status) in [("codex", 401), ("copilot", 200), ("copilot", 401)] {
        plugin
            .hook(
                HookEvent::ProviderResponseReceived,
                json!({"request_id": "r", "provider": provider, "method": "POST", "url": "u", "status_code": status, "duration_ms": 1}),
            )
            .unwrap();
    }
    assert_eq!(invalidated.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn model_mappings_rewrite_the_model_and_keep_the_clients_as_alias() {
    let host = with_token(None).config(json!({"model_mappings": [
        {"kind": "prefix", "pattern": "claude-sonnet-4-5", "target": "claude-sonnet-4.5"}
    ]}));
    let plugin = start(&host);
    let mut req = provider_request(false);
    req.model = Some("claude-sonnet-4-5-20250929".to_owned());
    req.body = br#"{"model":"claude-sonnet-4-5-20250929","messages":[]}"#.to_vec();
    let upstream = plugin.prepare_upstream(req).unwrap();
    let body: Value = serde_json::from_slice(&upstream.body).unwrap();
    assert_eq!(body["model"], "claude-sonnet-4.5");
    assert_eq!(
        upstream.model_alias.as_deref(),
        Some("claude-sonnet-4-5-20250929")
    );
    // None by default: the model goes as the client sent it.
    let plugin = start(&with_token(None));
    let upstream = plugin.prepare_upstream(provider_request(false)).unwrap();
    assert_eq!(upstream.model_alias, None);
    let Err(error) = MockHost::new()
        .config(json!({"model_mappings": [{"kind": "regex", "pattern": "(", "target": "x"}]}))
        .start::<Copilot>()
    else {
        panic!("a bad regex is refused");
    };
    assert!(
        error
            .message()
            .contains("plugins.copilot.model_mappings[0]"),
        "{}",
        error.message()
    );
}

#[test]
fn manifest_declares_the_provider_its_routes_and_documented_keys() {
    let plugin = start(&MockHost::new());
    let manifest = plugin.manifest();
    let provider = manifest.provider.as_ref().expect("a provider");
    assert_eq!(provider.native_format, "openai.chat_completions");
    let endpoints: Vec<(&str, &str)> = provider
        .endpoints
        .iter()
        .map(|endpoint| (endpoint.path.as_str(), endpoint.format.as_str()))
        .collect();
    assert_eq!(
        endpoints,
        [
            ("/copilot/v1/chat/completions", "openai.chat_completions"),
            ("/copilot/v1/messages", "anthropic.messages"),
            ("/copilot/v1/responses", "openai.responses"),
        ]
    );
    assert_eq!(manifest.routes[0].prefix, "/copilot");
    let defaults = &manifest.config.defaults;
    assert_eq!(defaults["base_url"], "https://api.githubcopilot.com");
    let documented: Vec<&str> = manifest
        .config
        .descriptions
        .iter()
        .map(|(key, _)| key.as_str())
        .collect();
    for key in defaults.as_object().unwrap().keys() {
        assert!(documented.contains(&key.as_str()), "{key} is undocumented");
    }
}

// Several GitHub accounts (`[[plugins.copilot.accounts]]`).

const GITHUB_A: &str = "gho_unit-account-a-000000001";
const GITHUB_B: &str = "gho_unit-account-b-000000002";

/// A service that exchanges each GitHub token for `copilot-<token>` (the
/// login for `copilot-login`), refuses `gho_no-copilot*` (403), and counts
/// invalidations per GitHub token.
fn accounts_host(
    config: Value,
    invalidated: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> MockHost {
    MockHost::new()
        .service(OAUTH_SERVICE, move |method, args| {
            let github = args["github_token"].as_str().unwrap_or("login").to_owned();
            match method {
                "access_token" if github.starts_with("gho_no-copilot") => Err(PluginError::new(
                    ErrorKind::Forbidden,
                    "this GitHub account has no GitHub Copilot access",
                )),
                "access_token" => {
                    Ok(json!({"access_token": format!("copilot-{github}"), "api_base": null}))
                }
                "invalidate" => {
                    invalidated.lock().unwrap().push(github);
                    Ok(json!({"invalidated": true}))
                }
                other => Err(PluginError::not_found(other.to_owned())),
            }
        })
        .config(config)
}

fn attempt(number: u32, status: u16, account: &str) -> ProviderAttempt {
    ProviderAttempt {
        number,
        previous_status: status,
        previous_account: Some(account.to_owned()),
        retry_after_ms: Some(30_000),
    }
}

fn bearer(upstream: &UpstreamRequest) -> String {
    upstream
        .headers
        .get("authorization")
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn accounts_fail_over_each_with_its_own_copilot_token() {
    let invalidated = std::sync::Arc::default();
    let host = accounts_host(
        json!({"accounts": [
            {"label": "none", "github_token": "gho_no-copilot-000001"},
            {"label": "a", "github_token": GITHUB_A},
            {"oauth": true},
        ]}),
        invalidated,
    );
    let plugin = start(&host);
    assert!(plugin.provider_retries());
    let mut request = provider_request(false);
    // "none" has no Copilot: skipped before anything is sent.
    let first = plugin.prepare_upstream(request.clone()).unwrap();
    assert_eq!(first.account.as_deref(), Some("a"));
    assert_eq!(bearer(&first), format!("Bearer copilot-{GITHUB_A}"));
    // Three accounts: one attempt each, one renewal each, and the last call.
    assert_eq!(first.retry.map(|policy| policy.max_attempts), Some(7));
    request.attempt = Some(attempt(2, 429, "a"));
    let second = plugin.prepare_upstream(request.clone()).unwrap();
    assert_eq!(second.account.as_deref(), Some("account-3"));
    assert_eq!(bearer(&second), "Bearer copilot-login");
    request.attempt = Some(attempt(3, 529, "account-3"));
    let last = plugin.prepare_upstream(request.clone()).unwrap();
    let exhausted = last.exhausted.expect("exhausted");
    assert!(
        exhausted.message.contains("cooling down"),
        "{}",
        exhausted.message
    );
    let health = plugin.health().unwrap();
    assert_eq!(health.status, HealthStatus::Degraded);
    let accounts = &health.details["accounts"]["accounts"];
    assert_eq!(accounts[0]["last_failure_status"], 403);
    assert_eq!(accounts[1]["last_failure_status"], 429);
    assert_eq!(accounts[1]["kind"], "github_token");
    assert_eq!(accounts[2]["kind"], "oauth");
    let text = health.details.to_string();
    assert!(!text.contains(GITHUB_A), "{text}");
}

#[test]
fn a_401_renews_the_accounts_copilot_token_once_before_it_counts() {
    let invalidated = std::sync::Arc::default();
    let host = accounts_host(
        json!({"accounts": [
            {"label": "a", "github_token": GITHUB_A},
            {"label": "b", "github_token": GITHUB_B},
        ]}),
        std::sync::Arc::clone(&invalidated),
    );
    let plugin = start(&host);
    let mut request = provider_request(true);
    request.attempt = Some(attempt(2, 401, "a"));
    let renewed = plugin.prepare_upstream(request.clone()).unwrap();
    assert_eq!(renewed.account.as_deref(), Some("a#renewed"));
    assert_eq!(bearer(&renewed), format!("Bearer copilot-{GITHUB_A}"));
    assert_eq!(*invalidated.lock().unwrap(), [GITHUB_A]);
    // Refused again: now a's failure, and b is asked.
    request.attempt = Some(attempt(3, 401, "a#renewed"));
    let next = plugin.prepare_upstream(request.clone()).unwrap();
    assert_eq!(next.account.as_deref(), Some("b"));
    assert_eq!(invalidated.lock().unwrap().len(), 1);
    let health = plugin.health().unwrap();
    assert_eq!(health.details["accounts"]["accounts"][0]["failures"], 1);
    assert_eq!(health.details["accounts"]["accounts"][1]["failures"], 0);
    // With accounts the hook leaves the login's token alone.
    plugin
        .hook(
            HookEvent::ProviderResponseReceived,
            json!({"request_id": "r", "provider": "copilot", "method": "POST", "url": "u", "status_code": 401, "duration_ms": 1}),
        )
        .unwrap();
    assert_eq!(invalidated.lock().unwrap().len(), 1);
}

#[test]
fn bad_accounts_are_refused_at_start_saying_what_to_fix() {
    for (accounts, expected) in [
        (
            json!([{"github_token": GITHUB_A, "oauth": true}]),
            "exactly one of github_token, github_token_env, oauth",
        ),
        (json!([{}]), "exactly one of"),
        (
            json!([{"label": "x", "oauth": true}, {"label": "x", "github_token": GITHUB_A}]),
            "used twice",
        ),
        (
            json!([{"github_token_env": "CCPROXY_UNIT_SURELY_UNSET_VARIABLE"}]),
            "CCPROXY_UNIT_SURELY_UNSET_VARIABLE is empty or unset",
        ),
        (
            json!([{"label": "a#renewed", "oauth": true}]),
            "may not contain",
        ),
    ] {
        let error = MockHost::new()
            .config(json!({"accounts": accounts}))
            .start::<Copilot>()
            .err()
            .unwrap_or_else(|| panic!("{accounts} started"));
        assert!(
            error.message().contains(expected),
            "{accounts}: {}",
            error.message()
        );
    }
}

#[test]
fn without_accounts_nothing_is_retried_and_the_login_is_used() {
    let plugin = start(&with_token(None));
    assert!(!plugin.provider_retries());
    let upstream = plugin.prepare_upstream(provider_request(false)).unwrap();
    assert_eq!(upstream.account, None);
    assert_eq!(upstream.retry, None);
}
