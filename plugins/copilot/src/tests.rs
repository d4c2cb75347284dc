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
