//! The bundled `dashboard` plugin through the real host, with the real
//! `storage` and `analytics` plugins behind its data and `claude_api` in
//! front of the mock upstream: the page and its files are served with their
//! content types and security headers to anyone, while the data routes it
//! reads refuse a client without the token; and in a real headless Chromium
//! (driven by `tests/browser/dashboard.mjs`, installed by
//! `scripts/deps/chromium`) the page asks for the token, then shows a
//! request made after it was opened in its live table and its charts, with
//! no page errors and no failed requests; the screenshot is kept at
//! `target/test-artifacts/dashboard.png`. The page's SSE parser also has
//! unit tests of its own under Node's test runner
//! (`tests/browser/sse.test.mjs`), run from here.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::{Duration, Instant},
};

use ccproxy_e2e::{Proxy, ProxyOptions, mock::Mock, target_dir, workspace_root};
use serde_json::{Value, json};

/// The client token the proxy is started with.
const TOKEN: &str = "dashboard-e2e-token";
/// The API key the proxy holds; the mock refuses any other.
const API_KEY: &str = "test-key";
/// The model of the recorded Anthropic samples (priced by `pricing`'s table).
const MODEL: &str = "claude-sonnet-4-20250514";
/// The browser the test drives: Debian's package.
const CHROMIUM: &str = "/usr/bin/chromium";
/// What installs the browser, Node.js and playwright-core.
const INSTALL: &str = "scripts/deps/chromium";
/// How long the browser side may take for each of its two steps.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn mock() -> Mock {
    Mock::start(&[
        "--expect-header",
        &format!("x-api-key={API_KEY}"),
        "--quiet",
    ])
}

/// The proxy with the plugins the page needs and a client token set.
fn proxy(mock: &Mock) -> Proxy {
    let base_url = mock.url();
    Proxy::start(ProxyOptions {
        bundled: &["storage", "analytics", "dashboard", "pricing", "claude_api"],
        env: &[
            ("SECURITY__AUTH_TOKEN", TOKEN),
            ("ANTHROPIC_API_KEY", API_KEY),
            ("PLUGINS__CLAUDE_API__BASE_URL", base_url.as_str()),
        ],
        ..ProxyOptions::default()
    })
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// `GET path` with the client token.
fn get_authorized(proxy: &Proxy, path: &str) -> ccproxy_e2e::Reply {
    proxy.get_with(path, &[("authorization", &bearer())])
}

/// Asks Claude for a (complete) answer through the proxy; its request id.
fn ask_claude(proxy: &Proxy) -> String {
    let body = json!({"model": MODEL, "max_tokens": 100,
                      "messages": [{"role": "user", "content": "Hello"}]});
    let reply = proxy.request(
        "POST",
        "/claude/v1/messages",
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer()),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
        .header("x-request-id")
        .expect("the proxy names the request")
        .to_owned()
}

#[test]
fn the_page_and_its_files_are_public_and_the_data_needs_the_token() {
    let mock = mock();
    let proxy = proxy(&mock);

    let page = proxy.get("/dashboard");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(page.text().contains("/dashboard/assets/dashboard.js"));
    assert_eq!(proxy.get("/dashboard/").body, page.body);

    for (path, content_type) in [
        ("/dashboard/favicon.svg", "image/svg+xml"),
        (
            "/dashboard/assets/dashboard.js",
            "text/javascript; charset=utf-8",
        ),
        ("/dashboard/assets/sse.js", "text/javascript; charset=utf-8"),
        (
            "/dashboard/assets/charts.js",
            "text/javascript; charset=utf-8",
        ),
        ("/dashboard/assets/dashboard.css", "text/css; charset=utf-8"),
    ] {
        let reply = proxy.get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert!(!reply.body.is_empty(), "{path}");
    }
    assert_eq!(proxy.get("/dashboard/assets/missing.js").status, 404);

    // The browser's revalidation gets a 304 through the host, body and all.
    let etag = page.header("etag").expect("an ETag").to_owned();
    let revalidated = proxy.get_with("/dashboard", &[("if-none-match", &etag)]);
    assert_eq!(revalidated.status, 304, "{}", revalidated.text());
    assert!(revalidated.body.is_empty());

    // What the page reads is not public.
    for path in [
        "/logs/query",
        "/logs/analytics",
        "/logs/stream",
        "/plugins/status",
    ] {
        assert_eq!(proxy.get(path).status, 401, "{path} without the token");
    }
    let query = get_authorized(&proxy, "/logs/query");
    assert_eq!(query.status, 200, "{}", query.text());
    assert!(query.json()["results"].is_array(), "{}", query.text());

    let health = get_authorized(&proxy, "/plugins/dashboard/health");
    assert_eq!(health.status, 200, "{}", health.text());
    let health = health.json();
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["details"]["analytics"], "active", "{health}");
}

/// Fails naming the install script when Node.js is missing.
fn require_node() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|output| output.status.success()),
        "node is missing ({node:?}): run {INSTALL}"
    );
}

/// Fails naming the install script when a tool the browser test needs is
/// missing, instead of skipping.
fn browser_tools() -> PathBuf {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: run {INSTALL} (it installs Debian's chromium package, Node.js and playwright-core)"
    );
    require_node();
    let browser_tests = workspace_root().join("tests").join("browser");
    assert!(
        browser_tests
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "{} has no playwright-core: run {INSTALL} (npm ci there)",
        browser_tests.display()
    );
    browser_tests.join("dashboard.mjs")
}

/// `node tests/browser/dashboard.mjs`, killed on drop.
struct BrowserScript {
    child: Child,
    stdin: Option<ChildStdin>,
    messages: Receiver<Value>,
    stderr: Receiver<String>,
}

impl BrowserScript {
    fn start(script: &Path, url: &str, screenshot: &Path, user_data_dir: &Path) -> Self {
        let mut child = Command::new("node")
            .arg(script)
            .args(["--url", url, "--token", TOKEN, "--chromium", CHROMIUM])
            .arg("--screenshot")
            .arg(screenshot)
            .arg("--user-data-dir")
            .arg(user_data_dir)
            .args(["--timeout-ms", "150000"])
            .current_dir(workspace_root())
            // Its own process group, Chromium included, so all of it can be
            // stopped at once.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run node {}: {error}", script.display()));
        let (message_tx, messages) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let message = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"event": "output", "line": line}));
                if message_tx.send(message).is_err() {
                    break;
                }
            }
        });
        let (stderr_tx, stderr) = mpsc::channel();
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            let _ = stderr_tx.send(text);
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            messages,
            stderr,
        }
    }

    /// The next message with `event` (others, such as stray output, are
    /// skipped); panics with what the script said on an error or timeout.
    fn wait_for(&mut self, event: &str, proxy: &Proxy) -> Value {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) if message["event"] == event => return message,
                Ok(message) if message["event"] == "error" => self.fail(&message, proxy),
                Ok(_) => {}
                Err(_) => self.fail(
                    &json!({"event": "timeout", "waiting_for": event, "seconds": STEP_TIMEOUT.as_secs()}),
                    proxy,
                ),
            }
        }
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{message}").expect("the browser script reads its stdin");
        stdin.flush().expect("the browser script reads its stdin");
    }

    fn fail(&mut self, message: &Value, proxy: &Proxy) -> ! {
        // Its stderr ends when it does; the process group goes on drop.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        panic!(
            "the browser test failed: {message:#}\nits stderr:\n{stderr}\nthe proxy's log:\n{}",
            proxy.log()
        );
    }

    /// Waits (bounded) for the script to exit.
    fn finish(mut self) -> ExitStatus {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("the script can be waited for") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the browser script did not exit after it was done"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for BrowserScript {
    fn drop(&mut self) {
        // The script and the Chromium it started (its process group), which
        // a failed or timed-out run may leave behind otherwise.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The records of `done` (console messages, page errors, failed requests,
/// HTTP errors) as a list.
fn entries<'a>(done: &'a Value, key: &str) -> &'a Vec<Value> {
    done[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is missing: {done:#}"))
}

#[test]
fn the_page_shows_a_request_made_after_it_opened_in_headless_chromium() {
    let script = browser_tools();
    let mock = mock();
    let proxy = proxy(&mock);
    let artifacts = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("the artifact folder can be created");
    let screenshot = artifacts.join("dashboard.png");
    // A screenshot of an earlier run must not pass for this one.
    let _ = std::fs::remove_file(&screenshot);
    let profile = tempfile::Builder::new()
        .prefix("ccproxy-chromium-")
        .tempdir()
        .expect("a temporary folder for the browser profile");

    let mut browser = BrowserScript::start(&script, &proxy.base_url(), &screenshot, profile.path());
    browser.wait_for("live", &proxy);

    // Only now, with the page open and its stream connected.
    let request_id = ask_claude(&proxy);
    browser.send(&json!({"request_id": request_id, "model": MODEL}));
    let done = browser.wait_for("done", &proxy);
    let status = browser.finish();
    assert!(
        status.success(),
        "the browser script exited with {status}: {done:#}"
    );

    // The row of that request, as the table shows it.
    let row: Vec<&str> = done["row"]
        .as_array()
        .expect("the row's cells")
        .iter()
        .map(|cell| cell.as_str().unwrap_or_default())
        .collect();
    for expected in [request_id.as_str(), "claude_api", MODEL, "200"] {
        assert!(row.contains(&expected), "{expected} not in the row {row:?}");
    }

    // The charts drew that request: tokens, cost (priced by `pricing`) and latency.
    let charts = &done["charts"];
    for (mark, at_least) in [
        ("tokens_points", 1),
        ("tokens_bars", 2),
        ("cost_bars", 1),
        ("latency_lines", 2),
        ("latency_dots", 2),
    ] {
        assert!(
            charts[mark].as_u64().is_some_and(|n| n >= at_least),
            "{mark}: {charts:#}"
        );
    }
    assert_ne!(done["totals"]["requests"], "0", "{done:#}");
    assert_ne!(done["totals"]["cost"], "$0", "{done:#}");

    // Plugin health, live stream, token kept.
    let plugins = entries(&done, "plugins");
    for name in ["storage", "analytics", "dashboard", "pricing", "claude_api"] {
        assert!(
            plugins
                .iter()
                .any(|plugin| plugin["name"] == name && plugin["status"] == "active"),
            "{name} is not shown active: {plugins:#?}"
        );
    }
    assert_eq!(done["state"]["connection"], "live", "{done:#}");
    assert_eq!(done["state"]["notice_hidden"], true, "{done:#}");
    assert_eq!(done["state"]["token_kept"], true, "{done:#}");

    // The filters offer what was seen.
    for (list, expected) in [("providers", "claude_api"), ("models", MODEL)] {
        let offered = done["filters"][list]
            .as_array()
            .unwrap_or_else(|| panic!("no {list} in {:#}", done["filters"]));
        assert!(
            offered.iter().any(|value| value == expected),
            "{expected} is not offered: {offered:?}"
        );
    }

    // A wrong token was refused and the page asked again.
    let refused = done["refused_token_message"].as_str().unwrap_or_default();
    assert!(refused.contains("refused"), "{done:#}");

    // No page errors and no failed requests at all. The only refusals are
    // how the page learns it needs a (better) token: its first call, without
    // one, and its call with the wrong one, each before the form, with
    // Chromium's own log line about it. Nothing else is refused or logged
    // as an error or a warning.
    assert!(
        entries(&done, "page_errors").is_empty(),
        "{:#?}",
        done["page_errors"]
    );
    assert!(
        entries(&done, "failed_requests").is_empty(),
        "{:#?}",
        done["failed_requests"]
    );
    let probe = format!("{}/plugins/status", proxy.base_url());
    let refusals: Vec<Value> = ["before-token", "wrong-token"]
        .iter()
        .map(|phase| json!({"phase": phase, "url": probe, "status": 401}))
        .collect();
    assert_eq!(entries(&done, "http_errors"), &refusals, "HTTP errors");
    let console_lines: Vec<Value> = ["before-token", "wrong-token"]
        .iter()
        .map(|phase| {
            json!({"phase": phase, "type": "error", "url": probe,
                   "text": "Failed to load resource: the server responded with a status of 401 (Unauthorized)"})
        })
        .collect();
    let troubles: Vec<Value> = entries(&done, "console")
        .iter()
        .filter(|message| message["type"] == "error" || message["type"] == "warning")
        .cloned()
        .collect();
    assert_eq!(troubles, console_lines, "console errors and warnings");

    // The screenshot is a PNG of the whole page.
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 20_000, "{} bytes: an empty page?", png.len());

    // The stored row is the same request.
    let query = get_authorized(&proxy, &format!("/logs/query?model={MODEL}&limit=10"));
    assert_eq!(query.status, 200, "{}", query.text());
    assert!(
        query.json()["results"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|row| row["request_id"] == request_id)),
        "{}",
        query.text()
    );
}

#[test]
fn the_pages_sse_parser_passes_its_node_tests() {
    require_node();
    let mut child = Command::new("node")
        .args(["--test", "tests/browser/sse.test.mjs"])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let output = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("node can be waited for") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("node --test tests/browser/sse.test.mjs did not finish within 60 s");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .map(|mut pipe| pipe.read_to_string(&mut stderr));
    let output = output.join().unwrap_or_default();
    assert!(status.success(), "{status}:\n{output}\n{stderr}");
    // The runner ran them (eight when this was written), none failed or was skipped.
    let count = |what: &str| {
        output
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!("# {what} "))?
                    .parse::<u32>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no '# {what}' line:\n{output}"))
    };
    assert!(count("pass") >= 8, "{output}");
    for what in ["fail", "cancelled", "skipped", "todo"] {
        assert_eq!(count(what), 0, "{what}:\n{output}");
    }
}
