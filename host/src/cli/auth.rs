//! `ccproxy auth …`: OAuth logins through the auth-provider plugins.
//!
//! The host owns the parts every provider shares (PKCE, state, the local
//! callback server, reading a pasted code); the plugin owns the parts that
//! differ (its URLs, the token exchange, where credentials are stored), behind
//! its service `oauth.<provider>`. Only `cli_safe` plugins are loaded. A
//! provider whose plugin has a `device_code_url` setting (Copilot) logs in by
//! the device flow instead, [`device_login`]: the host polls, the plugin asks.
//!
//! A login's code is exchanged only when it comes back with the login's own
//! `state`: the callback server refuses (and the login ends, nothing stored)
//! a request to its path without it or with another, and the manual flow a
//! pasted `code#state` or address whose state differs. A bare pasted code is
//! the one exception, see [`accept_pasted`]. The browser's page is answered
//! after the exchange, so it says whether the login worked.

use std::{io::BufRead, sync::Arc, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use ccproxy_plugin_abi::protocol::{ServiceInput, ops};
use serde_json::{Value, json};
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

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
        /// Provider name (`claude-api`, `codex`, `copilot`).
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
        .call::<ops::Service>(&input, Vec::new())
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
    // Copilot's GitHub token: a login's, or an environment variable's.
    if let Some(source) = status.get("source").and_then(Value::as_str) {
        parts.push(format!("GitHub token from {source}"));
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
    if plugin_setting(registry, provider, "device_code_url").is_some() {
        return device_login(registry, provider).await;
    }
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
    let exchange = |code: String| {
        call(
            registry,
            provider,
            "exchange",
            json!({"code": code, "state": state, "code_verifier": verifier, "redirect_uri": redirect_uri}),
        )
    };

    let status = if manual {
        println!(
            "Open this URL in a browser, authorize, then paste the code shown (code#state) or the whole address the browser was sent to:\n\n{url}\n"
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
        let code = accept_pasted(parse_pasted(line.trim())?, &state, provider)?;
        exchange(code).await?
    } else {
        let listener = bind_callback(&redirect_uri).await?;
        if no_browser {
            println!(
                "Open this URL in a browser to authorize ccproxy with {provider} (the answer comes back to {redirect_uri}):\n\n{url}\n"
            );
        } else {
            println!(
                "Opening the browser to authorize ccproxy with {provider}. If it does not open, visit:\n\n{url}\n"
            );
            open_browser(&url);
        }
        let callback =
            wait_for_callback(listener, &redirect_uri, &state, provider, timeout).await?;
        // The browser's page waits for the exchange, so that it says what
        // really happened rather than what we hope will.
        match exchange(callback.code.clone()).await {
            Ok(status) => {
                callback
                    .answer(
                        200,
                        &format!(
                            "Logged in to {provider}. You can close this tab and return to the terminal."
                        ),
                    )
                    .await;
                status
            }
            Err(error) => {
                callback
                    .answer(
                        400,
                        &format!("Login failed: {error:#}. Nothing was stored. See the terminal."),
                    )
                    .await;
                return Err(error);
            }
        }
    };
    println!("logged in to {provider}: {}", summary(&status));
    Ok(exit::OK)
}

/// The device flow (RFC 8628), for a provider whose plugin has a
/// `device_code_url` setting (Copilot): the plugin's `device_code` starts it,
/// the user enters the code shown at the verification page, and the plugin's
/// `device_poll` is asked every `interval` seconds (5 more after each
/// `slow_down`) until it answers `ok` (the plugin stored the login) or fails
/// (`expired_token`, `access_denied`), or the code expires.
async fn device_login(registry: &Registry, provider: &str) -> anyhow::Result<u8> {
    let start = call(registry, provider, "device_code", json!({})).await?;
    let text = |key: &str| {
        start
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{provider} started the device flow without {key}"))
    };
    let (device_code, user_code, uri) = (
        text("device_code")?,
        text("user_code")?,
        text("verification_uri")?,
    );
    // At least 1 s: a server naming 0 must not be polled in a busy loop.
    let mut interval = start
        .get("interval")
        .and_then(Value::as_u64)
        .unwrap_or(5)
        .max(1);
    let expires_in = start
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(900);
    println!(
        "To log in to {provider}, open {uri} and enter the code {user_code}\n(waiting; the code expires in {} min)",
        expires_in.div_ceil(60)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(expires_in);
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if std::time::Instant::now() >= deadline {
            bail!(
                "the device code expired before it was entered; nothing was stored; run `ccproxy auth login {provider}` again"
            );
        }
        let answer = call(
            registry,
            provider,
            "device_poll",
            json!({"device_code": device_code}),
        )
        .await?;
        match answer.get("status").and_then(Value::as_str) {
            Some("pending") => {}
            // RFC 8628 3.5: every later poll waits 5 s longer.
            Some("slow_down") => interval += 5,
            Some("ok") => {
                println!("logged in to {provider}: {}", summary(&answer));
                return Ok(exit::OK);
            }
            other => bail!("{provider} answered device_poll with an unknown status {other:?}"),
        }
    }
}

/// What the user pasted in the manual flow.
#[derive(Debug, PartialEq, Eq)]
enum Pasted {
    /// `code#state`, as the manual flow's callback page shows it.
    CodeAndState { code: String, state: String },
    /// A callback address (`…?code=…&state=…`), copied from the browser.
    Url { code: String, state: Option<String> },
    /// A code alone.
    Bare(String),
}

/// Reads `code#state`, a callback address, or a bare code.
fn parse_pasted(text: &str) -> anyhow::Result<Pasted> {
    if text.is_empty() {
        bail!("no code pasted");
    }
    if text.contains("code=") {
        let query = text.split_once('?').map_or(text, |(_, q)| q);
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        let params = query_params(query);
        let code = param(&params, "code")
            .filter(|code| !code.is_empty())
            .ok_or_else(|| anyhow!("the pasted address has no code parameter"))?;
        return Ok(Pasted::Url {
            code,
            state: param(&params, "state"),
        });
    }
    Ok(match text.split_once('#') {
        Some((code, state)) => Pasted::CodeAndState {
            code: code.trim().to_owned(),
            state: state.trim().to_owned(),
        },
        None => Pasted::Bare(text.to_owned()),
    })
}

/// The code to exchange, if what was pasted belongs to the login whose
/// state is `state`.
///
/// A pasted state (`code#state`, or the `state` of a pasted address) must be
/// this login's. A pasted address without a state is refused: every callback
/// of a login we started carries one. A bare code is accepted with a note:
/// the user copied it from the page themselves, there is nothing to compare,
/// and PKCE still ties the code to this login, because the token endpoint
/// only exchanges it with the verifier whose challenge the login sent (a code
/// from anyone else's login fails there).
fn accept_pasted(pasted: Pasted, state: &str, provider: &str) -> anyhow::Result<String> {
    let again = format!("run `ccproxy auth login {provider} --manual` again");
    match pasted {
        Pasted::CodeAndState {
            code,
            state: pasted,
        }
        | Pasted::Url {
            code,
            state: Some(pasted),
        } => {
            if !same_secret(&pasted, state) {
                bail!(
                    "state mismatch: the pasted code is from another login attempt; nothing was stored; {again}"
                );
            }
            if code.is_empty() {
                bail!("no code pasted before #state; {again}");
            }
            Ok(code)
        }
        Pasted::Url { state: None, .. } => bail!(
            "the pasted address has no state, so it cannot be checked against this login; nothing was stored; paste the code#state shown, or the whole address of this login's callback"
        ),
        Pasted::Bare(code) => {
            eprintln!(
                "note: the pasted code has no #state to check; it is accepted because PKCE binds it to this login (the token endpoint refuses a code from another login)"
            );
            Ok(code)
        }
    }
}

/// Compares two secrets in time independent of where they differ (a length
/// mismatch answers at once: a login state's length is no secret).
fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The pairs of a query string, `+` and `%XX` decoded (`application/x-www-form-urlencoded`).
fn query_params(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn param(params: &[(String, String)], key: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
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

/// Starts the user's browser on `url` without waiting for it (`xdg-open` and its
/// fallbacks, `open` on macOS, `wslview` under WSL); the URL is printed before, for when
/// none opens.
fn open_browser(url: &str) {
    if let Err(error) = open::that_detached(url) {
        eprintln!("could not start a browser ({error}); open the address above yourself");
    }
}

/// Why a request to the callback path does not give a code to exchange.
#[derive(Debug, PartialEq, Eq)]
enum CallbackFailure {
    /// No `state`: not the answer to the login we started (forged, or from
    /// another program). Refused.
    NoState,
    /// Another `state`: from another login attempt, or forged. Refused.
    StateMismatch,
    /// The authorization server sent the user back with an error.
    Denied {
        error: String,
        description: Option<String>,
    },
    /// Neither a code nor an error.
    NoCode,
}

impl CallbackFailure {
    /// The line for the terminal.
    fn message(&self, provider: &str) -> String {
        let again = format!("run `ccproxy auth login {provider}` again");
        match self {
            CallbackFailure::NoState => format!(
                "refused the OAuth callback: it carried no state, so it is not the answer to this login (forged, or from another program); nothing was stored; {again}"
            ),
            CallbackFailure::StateMismatch => format!(
                "refused the OAuth callback: state mismatch, the code is from another login attempt or forged; nothing was stored; {again}"
            ),
            CallbackFailure::Denied { error, description } => match description {
                Some(description) => {
                    format!("authorization failed: {error} ({description}); {again}")
                }
                None => format!("authorization failed: {error}; {again}"),
            },
            CallbackFailure::NoCode => {
                format!("the OAuth callback carried no code; nothing was stored; {again}")
            }
        }
    }

    /// The text of the browser's page.
    fn page(&self) -> String {
        match self {
            CallbackFailure::NoState | CallbackFailure::StateMismatch => "Login refused: this callback does not belong to the login ccproxy started (its state is missing or different). Nothing was stored. See the terminal.".to_owned(),
            CallbackFailure::Denied { error, .. } => {
                format!("Login failed: the authorization server answered {error}. Nothing was stored. See the terminal.")
            }
            CallbackFailure::NoCode => {
                "Login failed: the callback carried no code. Nothing was stored. See the terminal.".to_owned()
            }
        }
    }
}

/// Judges the query of a request to the callback path: the code, when the
/// request carries this login's `state`. The state is checked first, so that
/// nothing (not even an error report) is taken from a request that is not
/// the answer to this login.
fn judge_callback(params: &[(String, String)], state: &str) -> Result<String, CallbackFailure> {
    match param(params, "state") {
        None => return Err(CallbackFailure::NoState),
        Some(returned) if !same_secret(&returned, state) => {
            return Err(CallbackFailure::StateMismatch);
        }
        Some(_) => {}
    }
    if let Some(error) = param(params, "error") {
        return Err(CallbackFailure::Denied {
            error,
            description: param(params, "error_description").filter(|d| !d.is_empty()),
        });
    }
    param(params, "code")
        .filter(|code| !code.is_empty())
        .ok_or(CallbackFailure::NoCode)
}

/// A callback with this login's code, and the browser's connection, open
/// until [`Callback::answer`] tells it how the login ended.
struct Callback {
    code: String,
    stream: tokio::net::TcpStream,
}

impl Callback {
    async fn answer(mut self, status: u16, text: &str) {
        respond(&mut self.stream, status, text).await;
    }
}

/// How long one connection to the callback server may take to send its
/// request head; a connection that sends nothing must not hold the port.
const CALLBACK_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a request head the callback server reads.
const CALLBACK_HEAD_LIMIT: usize = 16 * 1024;

/// Reads a request head (up to the blank line), or `None` when the peer
/// sends nothing usable in time.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < CALLBACK_HEAD_LIMIT {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(CALLBACK_HEAD_TIMEOUT, read)
        .await
        .ok()??;
    (!head.is_empty()).then(|| String::from_utf8_lossy(&head).into_owned())
}

/// Writes a small HTML page with `text` (escaped) and closes the connection.
async fn respond(stream: &mut tokio::net::TcpStream, status: u16, text: &str) {
    use tokio::io::AsyncWriteExt;
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Bad Request",
    };
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>ccproxy</title><p>{}</p>\n",
        html_escape(text)
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
        html.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Serves the callback path until a request carrying this login's `state`
/// brings a code, or any request to that path fails the login (no or another
/// state, an error, no code), or `timeout` passes. Other paths get a 404 and
/// the server keeps waiting.
async fn wait_for_callback(
    listener: tokio::net::TcpListener,
    redirect_uri: &str,
    state: &str,
    provider: &str,
    timeout: Duration,
) -> anyhow::Result<Callback> {
    let expected_path = redirect_uri
        .parse::<http::Uri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| "/callback".to_owned());
    let wait = async {
        loop {
            let (mut stream, _) = listener.accept().await.context("callback server failed")?;
            let Some(head) = read_head(&mut stream).await else {
                continue;
            };
            let mut request_line = head.lines().next().unwrap_or("").split_whitespace();
            let method = request_line.next().unwrap_or("");
            let target = request_line.next().unwrap_or("");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            if path != expected_path {
                respond(&mut stream, 404, "Not found.").await;
                continue;
            }
            if method != "GET" {
                respond(&mut stream, 405, "The OAuth callback takes GET only.").await;
                continue;
            }
            match judge_callback(&query_params(query), state) {
                Ok(code) => return Ok(Callback { code, stream }),
                Err(failure) => {
                    respond(&mut stream, 400, &failure.page()).await;
                    return Err(anyhow!(failure.message(provider)));
                }
            }
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

    const STATE: &str = "s1-state";

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pasted_code_forms() {
        assert_eq!(
            parse_pasted("abc#xyz").unwrap(),
            Pasted::CodeAndState {
                code: "abc".to_owned(),
                state: "xyz".to_owned()
            }
        );
        assert_eq!(parse_pasted("abc").unwrap(), Pasted::Bare("abc".to_owned()));
        assert_eq!(
            parse_pasted("http://localhost:54545/callback?code=a%2Bb&state=s1").unwrap(),
            Pasted::Url {
                code: "a+b".to_owned(),
                state: Some("s1".to_owned())
            }
        );
        assert_eq!(
            parse_pasted("http://localhost:1455/auth/callback?code=c").unwrap(),
            Pasted::Url {
                code: "c".to_owned(),
                state: None
            }
        );
        assert_eq!(
            parse_pasted("http://localhost/callback?state=s1&code=a+b%2").unwrap(),
            Pasted::Url {
                code: "a b%2".to_owned(),
                state: Some("s1".to_owned())
            },
            "a form's + is a space; a malformed escape stays"
        );
        assert!(parse_pasted("").is_err());
        assert!(parse_pasted("http://localhost/callback?code=&state=s1").is_err());
    }

    #[test]
    fn a_pasted_state_must_be_this_logins() {
        let accept = |text: &str| accept_pasted(parse_pasted(text).unwrap(), STATE, "codex");
        assert_eq!(accept("good#s1-state").unwrap(), "good");
        assert_eq!(
            accept("http://localhost:1455/auth/callback?code=good&state=s1-state").unwrap(),
            "good"
        );
        for refused in [
            "good#another",
            "good#",
            "http://localhost:1455/auth/callback?code=good&state=another",
            "http://localhost:1455/auth/callback?code=good&state=",
        ] {
            let error = accept(refused).unwrap_err().to_string();
            assert!(error.starts_with("state mismatch"), "{refused}: {error}");
            assert!(error.contains("nothing was stored"), "{error}");
        }
        let error = accept("http://localhost:1455/auth/callback?code=good")
            .unwrap_err()
            .to_string();
        assert!(error.contains("has no state"), "{error}");
        // A bare code: nothing to compare; PKCE binds it (see accept_pasted).
        assert_eq!(accept("good").unwrap(), "good");
    }

    #[test]
    fn the_callback_needs_this_logins_state() {
        assert_eq!(
            judge_callback(&params(&[("code", "good"), ("state", STATE)]), STATE),
            Ok("good".to_owned())
        );
        assert_eq!(
            judge_callback(&params(&[("code", "good")]), STATE),
            Err(CallbackFailure::NoState)
        );
        for forged in ["", "s1-stat", "s1-statf", "another"] {
            assert_eq!(
                judge_callback(&params(&[("code", "good"), ("state", forged)]), STATE),
                Err(CallbackFailure::StateMismatch),
                "{forged:?}"
            );
        }
        // Not even an error is taken from a request without this state.
        assert_eq!(
            judge_callback(&params(&[("error", "access_denied")]), STATE),
            Err(CallbackFailure::NoState)
        );
        assert_eq!(
            judge_callback(
                &params(&[
                    ("error", "access_denied"),
                    ("error_description", "The user said no"),
                    ("state", STATE)
                ]),
                STATE
            ),
            Err(CallbackFailure::Denied {
                error: "access_denied".to_owned(),
                description: Some("The user said no".to_owned())
            })
        );
        assert_eq!(
            judge_callback(&params(&[("code", ""), ("state", STATE)]), STATE),
            Err(CallbackFailure::NoCode)
        );
    }

    #[test]
    fn refusals_say_what_happened_and_what_to_do() {
        let line = CallbackFailure::NoState.message("codex");
        assert!(line.starts_with("refused the OAuth callback: it carried no state"));
        assert!(
            line.ends_with("run `ccproxy auth login codex` again"),
            "{line}"
        );
        let line = CallbackFailure::StateMismatch.message("codex");
        assert!(line.contains("state mismatch") && line.contains("nothing was stored"));
        for failure in [CallbackFailure::NoState, CallbackFailure::StateMismatch] {
            let page = failure.page();
            assert!(page.starts_with("Login refused"), "{page}");
            assert!(!page.contains("Logged in"), "{page}");
        }
    }

    #[test]
    fn pages_are_escaped() {
        assert_eq!(html_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
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
