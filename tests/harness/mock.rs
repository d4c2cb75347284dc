//! The mock upstream of `tests/mock_upstream` (`ccproxy-mock-upstream`) as a
//! child process: it replays the recorded samples of `tests/data/samples`,
//! records and checks what it receives, misbehaves on demand, and fakes the
//! Claude and OpenAI OAuth servers and the Codex backend. Its control API is
//! wrapped here, with a ChatGPT login for the Codex plugins ([`codex`]); the
//! crate docs of `ccproxy-mock-upstream` describe the whole contract.
//!
//! ```no_run
//! use ccproxy_e2e::mock::Mock;
//!
//! let mock = Mock::start(&["--expect-header", "x-api-key=test-key"]);
//! mock.fault(serde_json::json!({"kind": "status", "status": 429}));
//! assert!(mock.requests().is_empty());
//! ```

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{http, listening_address, spawn_log_reader, target_dir, workspace_root};

/// How long the mock may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The mock upstream binary of the last `cargo build --workspace`.
pub fn binary() -> std::path::PathBuf {
    let path = target_dir().join("debug").join("ccproxy-mock-upstream");
    if !path.is_file() {
        panic!(
            "{} is missing; run `cargo build --workspace` first (the end-to-end tests never build anything)",
            path.display()
        );
    }
    path
}

/// A running mock upstream; killed on drop.
#[derive(Debug)]
pub struct Mock {
    child: Option<Child>,
    address: SocketAddr,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Mock {
    /// Starts `ccproxy-mock-upstream ARGS` on a free port, with the samples of
    /// this source tree, quiet, and stopping by itself after two idle minutes.
    pub fn start(args: &[&str]) -> Mock {
        let samples = workspace_root().join("tests").join("data").join("samples");
        let mut child = Command::new(binary())
            .arg("--samples")
            .arg(&samples)
            .args(["--idle-exit-seconds", "120"])
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the mock upstream {args:?}: {error}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(spawn_log_reader(stdout, log.clone(), Some(lines_tx)));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(spawn_log_reader(stderr, log.clone(), None));
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let address = loop {
            match lines_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(address) = listening_address(&line) {
                        break address;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!(
                        "the mock upstream did not start ({status:?}); its log:\n{}",
                        log.lock().map(|l| l.clone()).unwrap_or_default()
                    );
                }
            }
        };
        Mock {
            child: Some(child),
            address,
            log,
            readers,
        }
    }

    /// `http://127.0.0.1:PORT`, for `PLUGINS__*__BASE_URL` and `TOKEN_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Its address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What it printed (the listening line, and one line per request unless `--quiet`).
    pub fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let reply = http::request(
            self.address,
            method,
            path,
            &[("content-type", "application/json")],
            &bytes,
        )
        .unwrap_or_else(|error| {
            panic!(
                "mock control {method} {path} failed: {error}; its log:\n{}",
                self.log()
            )
        });
        assert_eq!(
            reply.status,
            200,
            "mock control {method} {path}: {}",
            reply.text()
        );
        reply.json()
    }

    /// Every request received since the start or the last reset, oldest first:
    /// `{method, path, query, headers: {name: value}, body, body_text,
    /// response: {status, sample, body, outcome}}`.
    pub fn requests(&self) -> Vec<Value> {
        match self.control("GET", "/_mock/requests", None) {
            Value::Array(requests) => requests,
            other => panic!("/_mock/requests answered {other}"),
        }
    }

    /// The requests received on `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|request| request["path"] == path)
            .collect()
    }

    /// Forgets requests, faults and counters.
    pub fn reset(&self) {
        self.control("POST", "/_mock/reset", Some(&serde_json::json!({})));
    }

    /// Arms a fault (`{"kind": "delay"|"status"|"reset_mid_stream"|"trickle", …}`).
    pub fn fault(&self, fault: Value) {
        self.control("POST", "/_mock/fault", Some(&fault));
    }

    /// `{"cancelled": n, "completed": n, "reset": n}`: how the streams it sent ended.
    pub fn streams(&self) -> Value {
        self.control("GET", "/_mock/cancelled", None)
    }

    /// `{"authorization_code": n, "refresh_token": n, "issued": [tokens]}`.
    pub fn oauth(&self) -> Value {
        self.control("GET", "/_mock/oauth", None)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// Where the mock plays the ChatGPT plan's Codex backend (with its checks;
/// see the crate docs of `ccproxy-mock-upstream`).
pub const CODEX_BACKEND_PATH: &str = "/backend-api/codex/responses";

/// Where the mock plays OpenAI's form-encoded token endpoint.
pub const CODEX_TOKEN_PATH: &str = "/oauth/token";

impl Mock {
    /// `http://MOCK/backend-api/codex`: `plugins.codex.base_url`, so the
    /// plugin's requests reach [`CODEX_BACKEND_PATH`].
    pub fn codex_base_url(&self) -> String {
        format!("{}/backend-api/codex", self.url())
    }

    /// The requests that reached the Codex backend, oldest first.
    pub fn codex_requests(&self) -> Vec<Value> {
        self.requests_to(CODEX_BACKEND_PATH)
    }
}

/// The server-sent events of a stream body: `(event name, data as JSON)`
/// (a `data:` that is not JSON, such as `[DONE]`, is a JSON string).
pub fn sse_events(body: &[u8]) -> Vec<(Option<String>, Value)> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data: Vec<&str> = Vec::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            if data.is_empty() {
                return None;
            }
            let data = data.join("\n");
            let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            Some((name, value))
        })
        .collect()
}

/// A ChatGPT login for the `codex` and `oauth_codex` plugins against the
/// mock: JWT-shaped tokens as OpenAI issues them, the Codex CLI's
/// `auth.json`, and a proxy pointed at the mock's Codex backend.
pub mod codex {
    use std::{
        fs,
        path::{Path, PathBuf},
        time::{SystemTime, UNIX_EPOCH},
    };

    use base64::Engine as _;
    use serde_json::{Value, json};

    use super::Mock;
    use crate::{Proxy, ProxyOptions, Sandbox, set_mode};

    /// The ChatGPT account of [`access_token`].
    pub const ACCOUNT: &str = "acct_test";
    /// The refresh token [`write_auth_json`] stores unless told otherwise.
    pub const REFRESH_TOKEN: &str = "rt_test-0000-refresh";
    /// 2100-01-01T00:00:00Z, in seconds: a token that does not expire during a test.
    pub const FAR_FUTURE: u64 = 4_102_444_800;

    /// Seconds since the Unix epoch.
    pub fn now_s() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
    }

    /// base64url without padding, as JWTs use it.
    pub fn base64url(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// `base64url(header).base64url(payload).base64url(signature)`.
    pub fn jwt(payload: &Value, signature: &str) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT"});
        format!(
            "{}.{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(payload.to_string().as_bytes()),
            base64url(signature.as_bytes())
        )
    }

    /// A ChatGPT access token for [`ACCOUNT`] on plan `plus`, expiring at
    /// `exp` (seconds); `tag` makes it distinct.
    pub fn access_token_expiring(exp: u64, tag: &str) -> String {
        jwt(
            &json!({
                "iss": "https://auth.openai.com",
                "exp": exp,
                "https://api.openai.com/auth": {"chatgpt_account_id": ACCOUNT, "chatgpt_plan_type": "plus"},
            }),
            &format!("test-signature-{tag}"),
        )
    }

    /// The access token of the ordinary test login (valid until 2100).
    pub fn access_token() -> String {
        access_token_expiring(FAR_FUTURE, "valid")
    }

    /// `HOME/.codex/auth.json`: where `oauth_codex` (and the Codex CLI) look.
    pub fn auth_json_path(home: &Path) -> PathBuf {
        home.join(".codex").join("auth.json")
    }

    /// Writes the Codex CLI's `auth.json` at `path` (mode 0600, its folder
    /// 0700) holding `access_token` and `refresh_token`. It stores no
    /// `account_id` (older Codex CLIs did not), so the `chatgpt-account-id`
    /// a test sees can only come from the access token's claim.
    pub fn write_auth_json(path: &Path, access_token: &str, refresh_token: &str) {
        let dir = path.parent().expect("auth.json has a folder");
        fs::create_dir_all(dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        set_mode(dir, 0o700);
        let document = json!({
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": "",
                "access_token": access_token,
                "refresh_token": refresh_token,
                "account_id": null,
            },
            "last_refresh": "2026-01-01T00:00:00.000000Z",
        });
        fs::write(path, document.to_string())
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        set_mode(path, 0o600);
    }

    /// The mock arguments that make it insist on this login's headers (on
    /// top of the Codex backend's own checks) and refuse an API key.
    pub fn mock_args(access_token: &str) -> Vec<String> {
        [
            "--expect-header".to_owned(),
            format!("authorization=Bearer {access_token}"),
            "--expect-header".to_owned(),
            format!("chatgpt-account-id={ACCOUNT}"),
            "--expect-header".to_owned(),
            "openai-beta=responses=experimental".to_owned(),
            "--expect-header".to_owned(),
            "originator=codex_cli_rs".to_owned(),
            "--forbid-header".to_owned(),
            "x-api-key".to_owned(),
            "--quiet".to_owned(),
        ]
        .to_vec()
    }

    /// A mock upstream that accepts only [`access_token`]'s requests.
    pub fn start_mock() -> Mock {
        let args = mock_args(&access_token());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Mock::start(&args)
    }

    /// Starts a proxy in `sandbox` with only `codex` and `oauth_codex`
    /// enabled, the Codex backend at `mock`, and `env` added.
    pub fn start_proxy(mock: &Mock, sandbox: Sandbox, env: &[(&str, &str)]) -> Proxy {
        let base_url = mock.codex_base_url();
        let mut all: Vec<(&str, &str)> = vec![("PLUGINS__CODEX__BASE_URL", base_url.as_str())];
        all.extend_from_slice(env);
        Proxy::start_in(
            sandbox,
            ProxyOptions {
                bundled: &["codex", "oauth_codex"],
                env: &all,
                ..ProxyOptions::default()
            },
        )
    }

    /// A proxy logged in with [`access_token`] (in the sandbox's
    /// `~/.codex/auth.json`) in front of `mock`.
    pub fn logged_in_proxy(mock: &Mock, env: &[(&str, &str)]) -> Proxy {
        let sandbox = Sandbox::new();
        write_auth_json(
            &auth_json_path(sandbox.root()),
            &access_token(),
            REFRESH_TOKEN,
        );
        start_proxy(mock, sandbox, env)
    }
}
