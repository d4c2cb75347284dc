//! The mock upstream of `tests/mock_upstream` (`ccproxy-mock-upstream`) as a
//! child process: it replays the recorded samples of `tests/data/samples`,
//! records and checks what it receives, misbehaves on demand, and fakes the
//! Claude OAuth server. Its control API is wrapped here; the crate docs of
//! `ccproxy-mock-upstream` describe the whole contract.
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
