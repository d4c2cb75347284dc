//! `ccproxy auth …`: OAuth logins through the auth-provider plugins.
//!
//! The host owns the parts every provider shares (PKCE, state, the local
//! callback server, reading a pasted code); the plugin owns the parts that
//! differ (its URLs, the token exchange, where credentials are stored), behind
//! its service `oauth.<provider>`. Only `cli_safe` plugins are loaded.

use std::{io::BufRead, sync::Arc, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use ccproxy_plugin_abi::protocol::{ServiceInput, op};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::exit;
use crate::{
    config::Config,
    paths,
    plugins::{
        lifecycle,
        registry::{self, ActivePlugin, Purpose, Registry},
    },
    services::Shared,
};

/// What `auth` does.
#[derive(Debug, Clone)]
pub(super) enum Action {
    /// List providers.
    Providers,
    /// Log in.
    Login {
        /// Provider name (`claude-api`, `codex`).
        provider: String,
        /// Paste the code instead of running a callback server.
        manual: bool,
        /// Do not try to open a browser.
        no_browser: bool,
        /// How long to wait for the browser callback.
        timeout: Duration,
    },
    /// Show the stored credentials, masked.
    Status {
        /// Provider name.
        provider: String,
        /// Print JSON.
        json: bool,
    },
    /// Refresh now.
    Refresh {
        /// Provider name.
        provider: String,
    },
    /// Delete the stored credentials.
    Logout {
        /// Provider name.
        provider: String,
    },
}

pub(super) fn run(config: Config, action: Action) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(config, action))
}

async fn run_async(config: Config, action: Action) -> anyhow::Result<u8> {
    let search = registry::search_path(&config);
    let shared = Shared::new(config, paths::data_dir(), paths::config_dir());
    let prepared = registry::prepare_for(&shared.config, &search, Purpose::Cli);
    let registry = lifecycle::initialize_all(prepared, &shared).await;
    let result = match action {
        Action::Providers => providers(&registry),
        Action::Login {
            provider,
            manual,
            no_browser,
            timeout,
        } => login(&registry, &provider, manual, no_browser, timeout).await,
        Action::Status { provider, json } => status(&registry, &provider, json).await,
        Action::Refresh { provider } => {
            let status = call(&registry, &provider, "refresh", json!({})).await?;
            println!("refreshed {provider}: {}", summary(&status));
            Ok(exit::OK)
        }
        Action::Logout { provider } => {
            call(&registry, &provider, "logout", json!({})).await?;
            println!("logged out of {provider}: stored credentials removed");
            Ok(exit::OK)
        }
    };
    lifecycle::shutdown_all(&registry, &shared).await;
    result
}

fn auth_plugins(registry: &Registry) -> impl Iterator<Item = &Arc<ActivePlugin>> {
    registry
        .active
        .iter()
        .filter(|p| p.manifest.oauth.is_some())
}

fn providers(registry: &Registry) -> anyhow::Result<u8> {
    let mut any = false;
    for plugin in auth_plugins(registry) {
        let oauth = plugin.manifest.oauth.as_ref().expect("filtered on oauth");
        println!(
            "{:<12} {:<16} plugin {} {}",
            oauth.provider_name, oauth.display_name, plugin.manifest.name, plugin.manifest.version
        );
        any = true;
    }
    if !any {
        println!("no OAuth providers: no cli_safe auth-provider plugin is installed or enabled");
    }
    Ok(exit::OK)
}

fn find<'a>(registry: &'a Registry, provider: &str) -> anyhow::Result<&'a Arc<ActivePlugin>> {
    auth_plugins(registry)
        .find(|p| {
            p.manifest
                .oauth
                .as_ref()
                .is_some_and(|o| o.provider_name == provider)
        })
        .ok_or_else(|| {
            let known: Vec<String> = auth_plugins(registry)
                .filter_map(|p| p.manifest.oauth.as_ref().map(|o| o.provider_name.clone()))
                .collect();
            anyhow!(
                "unknown OAuth provider {provider}; known: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })
}

async fn call(
    registry: &Registry,
    provider: &str,
    method: &str,
    args: Value,
) -> anyhow::Result<Value> {
    let plugin = find(registry, provider)?;
    let input = ServiceInput {
        service: format!("oauth.{provider}"),
        method: method.to_owned(),
        args,
        caller: "cli".to_owned(),
    };
    let reply = plugin
        .handle
        .call::<_, Value>(op::SERVICE, &input, Vec::new())
        .await
        .map_err(|error| anyhow!("{provider}: {}", error.message))?;
    Ok(reply.meta)
}

fn plugin_setting(registry: &Registry, provider: &str, key: &str) -> Option<String> {
    let plugin = find(registry, provider).ok()?;
    let entry = registry.entries.iter().find(|e| {
        e.manifest
            .as_ref()
            .is_some_and(|m| m.name == plugin.manifest.name)
    })?;
    entry.config.as_ref()?.get(key)?.as_str().map(str::to_owned)
}

fn summary(status: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(kind) = status.get("subscription_type").and_then(Value::as_str) {
        parts.push(format!("subscription {kind}"));
    }
    if let Some(account) = status.get("account_id").and_then(Value::as_str) {
        parts.push(format!("account {account}"));
    }
    if let Some(expires) = status.get("expires_at_ms").and_then(Value::as_u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if expires > now {
            parts.push(format!("expires in {} min", (expires - now) / 60_000));
        } else {
            parts.push("expired".to_owned());
        }
    }
    if let Some(token) = status.get("access_token").and_then(Value::as_str) {
        parts.push(format!("token {token}"));
    }
    if let Some(file) = status.get("file").and_then(Value::as_str) {
        parts.push(format!("stored in {file}"));
    }
    parts.join(", ")
}

async fn status(registry: &Registry, provider: &str, json_out: bool) -> anyhow::Result<u8> {
    let status = call(registry, provider, "status", json!({})).await?;
    let logged_in = status
        .get("logged_in")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else if logged_in {
        println!("{provider}: logged in; {}", summary(&status));
    } else {
        println!("{provider}: not logged in; run `ccproxy auth login {provider}`");
    }
    Ok(if logged_in { exit::OK } else { exit::FAILURE })
}

/// PKCE S256: a verifier of 32 random bytes and its challenge.
fn pkce() -> anyhow::Result<(String, String)> {
    let verifier = random_token()?;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    Ok((verifier, challenge))
}

fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| anyhow!("no randomness available: {error}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

async fn login(
    registry: &Registry,
    provider: &str,
    manual: bool,
    no_browser: bool,
    timeout: Duration,
) -> anyhow::Result<u8> {
    find(registry, provider)?;
    let (verifier, challenge) = pkce()?;
    let state = random_token()?;
    let redirect_key = if manual {
        "manual_redirect_uri"
    } else {
        "redirect_uri"
    };
    let redirect_uri = plugin_setting(registry, provider, redirect_key)
        .ok_or_else(|| anyhow!("the {provider} plugin declares no {redirect_key} setting"))?;
    let url = call(
        registry,
        provider,
        "authorize_url",
        json!({"state": state, "code_challenge": challenge, "redirect_uri": redirect_uri}),
    )
    .await?;
    let url = url
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{provider} returned no authorization URL"))?
        .to_owned();

    let (code, returned_state) = if manual {
        println!(
            "Open this URL in a browser, authorize, then paste the code shown (code#state):\n\n{url}\n"
        );
        print!("code: ");
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map(|_| line)
        })
        .await
        .context("reading the pasted code failed")?
        .context("reading the pasted code failed")?;
        parse_pasted(line.trim())?
    } else {
        let listener = bind_callback(&redirect_uri).await?;
        println!(
            "Opening the browser to authorize ccproxy with {provider}. If it does not open, visit:\n\n{url}\n"
        );
        if !no_browser {
            open_browser(&url);
        }
        wait_for_callback(listener, &redirect_uri, timeout).await?
    };
    if let Some(returned) = &returned_state
        && returned != &state
    {
        bail!(
            "state mismatch: the code is from another login attempt; run `ccproxy auth login {provider}` again"
        );
    }
    let status = call(
        registry,
        provider,
        "exchange",
        json!({"code": code, "state": state, "code_verifier": verifier, "redirect_uri": redirect_uri}),
    )
    .await?;
    println!("logged in to {provider}: {}", summary(&status));
    Ok(exit::OK)
}

/// Accepts `code#state`, a bare code, or the whole callback URL.
fn parse_pasted(text: &str) -> anyhow::Result<(String, Option<String>)> {
    if text.is_empty() {
        bail!("no code pasted");
    }
    if text.contains("code=") {
        let query = text.split_once('?').map_or(text, |(_, q)| q);
        let params = query_params(query);
        let code = params
            .iter()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("the pasted URL has no code parameter"))?;
        let state = params
            .iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.clone());
        return Ok((code, state));
    }
    match text.split_once('#') {
        Some((code, state)) => Ok((code.to_owned(), Some(state.to_owned()))),
        None => Ok((text.to_owned(), None)),
    }
}

fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], decoded) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (byte, None) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn bind_callback(redirect_uri: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let uri: http::Uri = redirect_uri
        .parse()
        .with_context(|| format!("redirect URI {redirect_uri} is not a URL"))?;
    let port = uri.port_u16().unwrap_or(80);
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen for the OAuth callback on 127.0.0.1:{port}; free the port or use --manual"))
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Serves the callback path until it is hit once with a code (or an error), or `timeout`.
async fn wait_for_callback(
    listener: tokio::net::TcpListener,
    redirect_uri: &str,
    timeout: Duration,
) -> anyhow::Result<(String, Option<String>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let expected_path = redirect_uri
        .parse::<http::Uri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| "/callback".to_owned());
    let wait = async {
        loop {
            let (mut stream, _) = listener.accept().await.context("callback server failed")?;
            let mut buffer = vec![0u8; 8192];
            let read = stream.read(&mut buffer).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..read]).into_owned();
            let target = request
                .lines()
                .next()
                .and_then(|line| line.split_whitespace().nth(1))
                .unwrap_or("");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            if path != expected_path {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                continue;
            }
            let params = query_params(query);
            let get = |key: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let (page, outcome) = match (get("code"), get("error")) {
                (Some(code), _) => (
                    "Logged in. You can close this tab and return to the terminal.",
                    Ok((code, get("state"))),
                ),
                (None, Some(error)) => (
                    "Login failed. See the terminal.",
                    Err(anyhow!("authorization failed: {error}")),
                ),
                (None, None) => (
                    "Login failed: no code. See the terminal.",
                    Err(anyhow!("the callback carried no code")),
                ),
            };
            let html = format!("<!doctype html><title>ccproxy</title><p>{page}</p>");
            let _ = stream
                .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}", html.len()).as_bytes())
                .await;
            return outcome;
        }
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| {
        anyhow!(
            "no OAuth callback within {} s; try again, or use --manual to paste the code",
            timeout.as_secs()
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_code_forms() {
        assert_eq!(
            parse_pasted("abc#xyz").unwrap(),
            ("abc".to_owned(), Some("xyz".to_owned()))
        );
        assert_eq!(parse_pasted("abc").unwrap(), ("abc".to_owned(), None));
        assert_eq!(
            parse_pasted("http://localhost:54545/callback?code=a%2Bb&state=s1").unwrap(),
            ("a+b".to_owned(), Some("s1".to_owned()))
        );
        assert!(parse_pasted("").is_err());
    }

    #[test]
    fn pkce_challenge_is_s256_of_verifier() {
        let (verifier, challenge) = pkce().unwrap();
        assert_eq!(verifier.len(), 43);
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        assert_eq!(challenge, expected);
    }
}
