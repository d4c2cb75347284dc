use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use ccproxy_plugin_abi::testing::{MockHost, TestPlugin};

use super::*;

const GITHUB_TOKEN: &str = "gho_test-github-token-0000-ABCD";
const COPILOT_TOKEN: &str = "tid=test-copilot-token;exp=1;sku=x-WXYZ";

fn json_response(status: u16, body: &Value) -> HttpResponse {
    HttpResponse {
        status,
        body: body.to_string().into_bytes(),
        ..HttpResponse::default()
    }
}

fn start(host: &MockHost) -> TestPlugin {
    let plugin = host.start::<OAuthCopilot>().expect("the plugin starts");
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    plugin
}

fn logged_in_host(
    dir: &tempfile::TempDir,
    exchange_status: u16,
    exchanges: Arc<AtomicUsize>,
) -> MockHost {
    TokenStore::new(dir.path().join("github_token.json"))
        .save(&Secret::new(GITHUB_TOKEN))
        .unwrap();
    MockHost::new().data_dir(dir.path()).http(move |req| {
        assert!(
            req.url.ends_with("/copilot_internal/v2/token"),
            "{}",
            req.url
        );
        assert_eq!(
            req.headers.get("authorization"),
            Some(format!("Bearer {GITHUB_TOKEN}").as_str())
        );
        exchanges.fetch_add(1, Ordering::SeqCst);
        let expires_at = now_ms() / 1000 + 1800;
        Ok(json_response(
            exchange_status,
            &json!({"token": COPILOT_TOKEN, "expires_at": expires_at, "refresh_in": 1500,
                    "endpoints": {"api": "https://api.individual.githubcopilot.com/"}}),
        ))
    })
}

#[test]
fn env_tokens_are_taken_in_order() {
    let env = |set: &'static [(&'static str, &'static str)]| {
        token_from_env(move |name| {
            set.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
        .map(|(name, token)| (name, token.expose().to_owned()))
    };
    assert_eq!(env(&[]), None);
    assert_eq!(
        env(&[
            ("GITHUB_TOKEN", "c"),
            ("GH_TOKEN", "b"),
            ("COPILOT_GITHUB_TOKEN", "a")
        ]),
        Some(("COPILOT_GITHUB_TOKEN", "a".to_owned()))
    );
    assert_eq!(
        env(&[("GITHUB_TOKEN", "c"), ("GH_TOKEN", "b")]),
        Some(("GH_TOKEN", "b".to_owned()))
    );
    assert_eq!(
        env(&[("GITHUB_TOKEN", "c"), ("COPILOT_GITHUB_TOKEN", "  ")]),
        Some(("GITHUB_TOKEN", "c".to_owned()))
    );
}

#[test]
fn the_copilot_token_is_exchanged_once_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let exchanges = Arc::new(AtomicUsize::new(0));
    let host = logged_in_host(&dir, 200, exchanges.clone());
    let plugin = start(&host);
    for _ in 0..3 {
        let answer = plugin.service(SERVICE, "access_token", json!({})).unwrap();
        assert_eq!(answer["access_token"], COPILOT_TOKEN);
        assert_eq!(
            answer["api_base"],
            "https://api.individual.githubcopilot.com"
        );
    }
    assert_eq!(exchanges.load(Ordering::SeqCst), 1);
    let status = plugin.service(SERVICE, "status", json!({})).unwrap();
    assert_eq!(status["logged_in"], true);
    assert_eq!(status["source"], "login");
    assert_eq!(status["github_token"], "gho_te***ABCD");
    assert_eq!(status["copilot_token"], "tid=te***WXYZ");
    let token = plugin.service(SERVICE, "token", json!({})).unwrap();
    assert!(!token.to_string().contains(COPILOT_TOKEN), "{token}");
    for (_, line) in host.logs() {
        assert!(
            !line.contains(GITHUB_TOKEN) && !line.contains(COPILOT_TOKEN),
            "{line}"
        );
    }
}

#[test]
fn an_account_without_copilot_gets_a_clear_forbidden() {
    let dir = tempfile::tempdir().unwrap();
    let host = logged_in_host(&dir, 403, Arc::new(AtomicUsize::new(0)));
    let plugin = start(&host);
    let error = plugin
        .service(SERVICE, "access_token", json!({}))
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Forbidden);
    assert!(
        error.message().contains("no GitHub Copilot access"),
        "{}",
        error.message()
    );
}

#[test]
fn without_a_login_the_answer_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let host = MockHost::new().data_dir(dir.path());
    let plugin = start(&host);
    if plugin.service(SERVICE, "status", json!({})).unwrap()["source"]
        .as_str()
        .is_some_and(|source| source.starts_with("env"))
    {
        return; // The developer's shell has a GitHub token: nothing to test here.
    }
    let error = plugin
        .service(SERVICE, "access_token", json!({}))
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized);
    assert!(error.message().contains("ccproxy auth login copilot"));
}

#[test]
fn device_poll_reads_githubs_answers() {
    let dir = tempfile::tempdir().unwrap();
    let answers = Arc::new(std::sync::Mutex::new(vec![
        json!({"access_token": GITHUB_TOKEN, "token_type": "bearer", "scope": "read:user"}),
        json!({"error": "access_denied"}),
        json!({"error": "expired_token", "error_description": "The device code has expired."}),
        json!({"error": "slow_down", "interval": 10}),
        json!({"error": "authorization_pending"}),
    ]));
    let host = MockHost::new().data_dir(dir.path()).http(move |req| {
        let body = String::from_utf8(req.body.clone()).unwrap();
        assert!(
            body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"),
            "{body}"
        );
        assert!(body.contains("device_code=dc-1"), "{body}");
        Ok(json_response(200, &answers.lock().unwrap().pop().unwrap()))
    });
    let plugin = start(&host);
    let poll = || plugin.service(SERVICE, "device_poll", json!({"device_code": "dc-1"}));
    assert_eq!(poll().unwrap(), json!({"status": "pending"}));
    assert_eq!(
        poll().unwrap(),
        json!({"status": "slow_down", "interval": 10})
    );
    let expired = poll().unwrap_err();
    assert!(
        expired.message().contains("expired"),
        "{}",
        expired.message()
    );
    let denied = poll().unwrap_err();
    assert!(
        denied.message().contains("cancelled"),
        "{}",
        denied.message()
    );
    let done = poll().unwrap();
    assert_eq!(done["status"], "ok");
    assert_eq!(done["github_token"], "gho_te***ABCD");
    let file = dir.path().join("github_token.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn every_default_key_is_documented() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = start(&MockHost::new().data_dir(dir.path()));
    let manifest = plugin.manifest();
    assert_eq!(manifest.oauth.as_ref().unwrap().provider_name, "copilot");
    assert_eq!(manifest.provides, ["oauth.copilot"]);
    let defaults = &manifest.config.defaults;
    assert_eq!(
        defaults["copilot_token_url"],
        "https://api.github.com/copilot_internal/v2/token"
    );
    assert_eq!(defaults["client_id"], "Iv1.b507a08c87ecfe98");
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

#[test]
fn authorize_url_is_the_originals_name_for_the_device_code_url() {
    let dir = tempfile::tempdir().unwrap();
    let host = MockHost::new()
        .data_dir(dir.path())
        .config(json!({"authorize_url": "http://127.0.0.1:9/device"}))
        .http(|req| {
            assert_eq!(req.url, "http://127.0.0.1:9/device");
            Ok(json_response(
                200,
                &json!({"device_code": "d", "user_code": "U-1", "verification_uri": "https://github.com/login/device", "interval": 7}),
            ))
        });
    let plugin = start(&host);
    let started = plugin.service(SERVICE, "device_code", json!({})).unwrap();
    assert_eq!(started["user_code"], "U-1");
    assert_eq!(started["interval"], 7);
    assert_eq!(started["expires_in"], 900);
}

#[test]
fn given_github_tokens_get_their_own_copilot_tokens_apart_from_the_login() {
    let dir = tempfile::tempdir().unwrap();
    let exchanged: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let seen = exchanged.clone();
    let host = MockHost::new().data_dir(dir.path()).http(move |req| {
        let github = req
            .headers
            .get("authorization")
            .unwrap_or_default()
            .trim_start_matches("Bearer ")
            .to_owned();
        seen.lock().unwrap().push(github.clone());
        if github.starts_with("gho_no-copilot") {
            return Ok(json_response(403, &json!({"message": "Not Found"})));
        }
        Ok(json_response(
            200,
            &json!({"token": format!("copilot-for-{github}"), "expires_at": now_ms() / 1000 + 1800, "refresh_in": 1500}),
        ))
    });
    let plugin = start(&host);
    let token_of = |github: &str| {
        plugin
            .service(SERVICE, "access_token", json!({"github_token": github}))
            .map(|answer| {
                answer["access_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
    };
    for _ in 0..2 {
        assert_eq!(token_of("gho_a").unwrap(), "copilot-for-gho_a");
        assert_eq!(token_of("gho_b").unwrap(), "copilot-for-gho_b");
    }
    assert_eq!(
        *exchanged.lock().unwrap(),
        ["gho_a", "gho_b"],
        "cached per token"
    );
    let refused = token_of("gho_no-copilot-1").unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Forbidden);
    // Dropping one account's token exchanges that one again, no other.
    plugin
        .service(SERVICE, "invalidate", json!({"github_token": "gho_a"}))
        .unwrap();
    assert_eq!(token_of("gho_a").unwrap(), "copilot-for-gho_a");
    assert_eq!(token_of("gho_b").unwrap(), "copilot-for-gho_b");
    assert_eq!(
        *exchanged.lock().unwrap(),
        ["gho_a", "gho_b", "gho_no-copilot-1", "gho_a"]
    );
    // The login's Copilot token is untouched: still none.
    let status = plugin.service(SERVICE, "status", json!({})).unwrap();
    assert_eq!(status["copilot_token"], Value::Null);
    for (_, line) in host.logs() {
        assert!(!line.contains("copilot-for-"), "{line}");
    }
}
