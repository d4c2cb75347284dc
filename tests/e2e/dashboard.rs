//! The bundled `dashboard` plugin through the real host, with the real
//! `storage` and `analytics` plugins behind its data, and `claude_api` and
//! `codex` in front of the mock upstream: the page and its files are served
//! with their content types and security headers to anyone, while the data
//! routes it reads refuse a client without the token; and in a real
//! headless Chromium (driven by `tests/browser/dashboard.mjs`, installed by
//! `scripts/deps/chromium`) the page asks for the token (again after a
//! wrong one), shows requests made after it was opened in its live table,
//! totals and charts, filtered by provider shows only that provider's, old
//! and new, and when its connection is cut reconnects with backoff and
//! reads what it missed, with no page errors and no failed requests but
//! those; the screenshot is kept at `target/test-artifacts/dashboard.png`.
//! Without a client token the page asks for none, and Chromium logs not a
//! single error. The page's SSE parser
//! also has unit tests of its own under Node's test runner
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

use ccproxy_e2e::{
    Proxy, ProxyOptions, Reply, Sandbox,
    mock::{
        Mock,
        codex::{self, REFRESH_TOKEN, access_token, auth_json_path, write_auth_json},
    },
    target_dir, workspace_root,
};
use serde_json::{Value, json};

/// The client token the proxy is started with.
const TOKEN: &str = "dashboard-e2e-token";
/// The API key the proxy holds; the mock refuses any other.
const API_KEY: &str = "test-key";
/// The model of the recorded Anthropic samples (priced by `pricing`'s table).
const MODEL: &str = "claude-sonnet-4-20250514";
/// The model of the recorded Codex samples.
const CODEX_MODEL: &str = "gpt-5";
/// The browser the test drives: Debian's package.
const CHROMIUM: &str = "/usr/bin/chromium";
/// What installs the browser, Node.js and playwright-core.
const INSTALL: &str = "scripts/deps/chromium";
/// How long the browser side may take for each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn mock() -> Mock {
    Mock::start(&[
        "--expect-header",
        &format!("x-api-key={API_KEY}"),
        "--quiet",
    ])
}

/// The proxy with the plugins the page needs, the client token [`TOKEN`]
/// set when `with_token`, `claude_api` in front of `mock` and, with
/// `codex_mock`, `codex` (logged in) in front of that.
fn proxy(mock: &Mock, codex_mock: Option<&Mock>, with_token: bool) -> Proxy {
    let sandbox = Sandbox::new();
    let claude_url = mock.url();
    let codex_url = codex_mock.map(Mock::codex_base_url).unwrap_or_default();
    let mut env = vec![
        ("ANTHROPIC_API_KEY", API_KEY),
        ("PLUGINS__CLAUDE_API__BASE_URL", claude_url.as_str()),
    ];
    if with_token {
        env.push(("SECURITY__AUTH_TOKEN", TOKEN));
    }
    let mut bundled = vec!["storage", "analytics", "dashboard", "pricing", "claude_api"];
    if codex_mock.is_some() {
        write_auth_json(
            &auth_json_path(sandbox.root()),
            &access_token(),
            REFRESH_TOKEN,
        );
        env.push(("PLUGINS__CODEX__BASE_URL", codex_url.as_str()));
        bundled.extend(["codex", "oauth_codex"]);
    }
    Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &bundled,
            env: &env,
            ..ProxyOptions::default()
        },
    )
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// `GET path` with the client token.
fn get_authorized(proxy: &Proxy, path: &str) -> Reply {
    proxy.get_with(path, &[("authorization", &bearer())])
}

/// `POST path` with `body` and the client token, which must succeed; the
/// request's id.
fn post_authorized(proxy: &Proxy, path: &str, body: &Value) -> String {
    let reply = proxy.request(
        "POST",
        path,
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer()),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply
        .header("x-request-id")
        .expect("the proxy names the request")
        .to_owned()
}

/// Asks Claude for a (complete) answer through the proxy; its request id.
fn ask_claude(proxy: &Proxy) -> String {
    post_authorized(
        proxy,
        "/claude/v1/messages",
        &json!({"model": MODEL, "max_tokens": 100,
                "messages": [{"role": "user", "content": "Hello"}]}),
    )
}

/// Asks Codex for a (complete) answer through the proxy; its request id.
fn ask_codex(proxy: &Proxy) -> String {
    post_authorized(
        proxy,
        "/codex/v1/responses",
        &json!({"model": CODEX_MODEL, "stream": false, "instructions": "Be brief.",
                "input": [{"role": "user", "content": "Hello"}]}),
    )
}

#[test]
fn the_page_and_its_files_are_public_and_the_data_needs_the_token() {
    let mock = mock();
    let proxy = proxy(&mock, None, true);

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
    /// The script against the proxy at `url`, giving the page `token` when
    /// it asks.
    fn start(script: &Path, url: &str, token: Option<&str>, user_data_dir: &Path) -> Self {
        let mut child = Command::new("node")
            .arg(script)
            .args(["--url", url, "--chromium", CHROMIUM])
            .args(token.map(|token| ["--token", token]).into_iter().flatten())
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

    /// Runs `command` (see tests/browser/dashboard.mjs); its answer.
    fn run(&mut self, command: Value, proxy: &Proxy) -> Value {
        let name = command["cmd"].as_str().expect("a command name").to_owned();
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{command}").expect("the browser script reads its stdin");
        stdin.flush().expect("the browser script reads its stdin");
        self.wait_for(&name, proxy)
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

/// The list `key` of `message`.
fn entries<'a>(message: &'a Value, key: &str) -> &'a Vec<Value> {
    message[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is missing: {message:#}"))
}

/// The request ids in the live table, top to bottom.
fn table_rows(browser: &mut BrowserScript, proxy: &Proxy) -> Vec<String> {
    entries(&browser.run(json!({"cmd": "rows"}), proxy), "rows")
        .iter()
        .map(|id| id.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits for the row of `request_id`; its cells.
fn wait_row(browser: &mut BrowserScript, proxy: &Proxy, request_id: &str) -> Vec<String> {
    entries(
        &browser.run(json!({"cmd": "wait_row", "request_id": request_id}), proxy),
        "cells",
    )
    .iter()
    .map(|cell| cell.as_str().unwrap_or_default().to_owned())
    .collect()
}

#[test]
fn the_page_shows_requests_made_after_it_opened_in_headless_chromium() {
    let script = browser_tools();
    let mock = mock();
    let codex_mock = codex::start_mock();
    let proxy = proxy(&mock, Some(&codex_mock), true);
    let artifacts = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("the artifact folder can be created");
    let screenshot = artifacts.join("dashboard.png");
    // A screenshot of an earlier run must not pass for this one.
    let _ = std::fs::remove_file(&screenshot);
    let profile = tempfile::Builder::new()
        .prefix("ccproxy-chromium-")
        .tempdir()
        .expect("a temporary folder for the browser profile");

    let mut browser = BrowserScript::start(&script, &proxy.base_url(), Some(TOKEN), profile.path());
    // The page's address: the script's relay in front of the proxy.
    let open = browser.wait_for("open", &proxy);
    assert_eq!(open["connection"], "live", "{open}");
    let page_base = open["base"].as_str().expect("the page's base").to_owned();

    // Only now, with the page open and its stream connected.
    let claude_id = ask_claude(&proxy);
    let codex_id = ask_codex(&proxy);
    let row = wait_row(&mut browser, &proxy, &claude_id);
    for expected in [claude_id.as_str(), "claude_api", MODEL, "200"] {
        assert!(
            row.iter().any(|cell| cell == expected),
            "{expected} not in the row {row:?}"
        );
    }
    let row = wait_row(&mut browser, &proxy, &codex_id);
    for expected in [codex_id.as_str(), "codex", CODEX_MODEL, "200"] {
        assert!(
            row.iter().any(|cell| cell == expected),
            "{expected} not in the row {row:?}"
        );
    }
    assert_eq!(
        table_rows(&mut browser, &proxy),
        [codex_id.as_str(), claude_id.as_str()],
        "newest first"
    );

    // Totals and charts follow (asked again a moment after each row).
    browser.run(
        json!({"cmd": "wait_text", "selector": "#total-requests", "text": "2"}),
        &proxy,
    );
    let report = browser.run(json!({"cmd": "report"}), &proxy);
    // Both requests fall in the same bucket: tokens (input and output),
    // cost (priced by `pricing`) and latency (mean and p95).
    let charts = &report["charts"];
    for (mark, at_least) in [
        ("tokens_points", 1),
        ("tokens_bars", 2),
        ("cost_points", 1),
        ("cost_bars", 1),
        ("latency_points", 1),
        ("latency_lines", 2),
        ("latency_dots", 2),
    ] {
        assert!(
            charts[mark].as_u64().is_some_and(|n| n >= at_least),
            "{mark}: {charts:#}"
        );
    }
    assert_ne!(report["totals"]["cost"], "$0", "{report:#}");
    let plugins = entries(&report, "plugins");
    for name in [
        "storage",
        "analytics",
        "dashboard",
        "pricing",
        "claude_api",
        "codex",
    ] {
        assert!(
            plugins
                .iter()
                .any(|plugin| plugin["name"] == name && plugin["status"] == "active"),
            "{name} is not shown active: {plugins:#?}"
        );
    }
    assert_eq!(report["state"]["connection"], "live", "{report:#}");
    assert_eq!(report["state"]["notice_hidden"], true, "{report:#}");
    assert_eq!(report["state"]["token_kept"], true, "{report:#}");
    for (list, expected) in [
        ("providers", ["", "claude_api", "codex"]),
        ("models", ["", MODEL, CODEX_MODEL]),
    ] {
        let mut offered: Vec<&str> = entries(&report["filters"], list)
            .iter()
            .map(|value| value.as_str().unwrap_or_default())
            .collect();
        offered.sort_unstable();
        assert_eq!(offered, expected, "{list} offered");
    }
    browser.run(
        json!({"cmd": "screenshot", "path": screenshot.display().to_string()}),
        &proxy,
    );

    // Filtered by provider: the table, the totals and the stream.
    let filtered = browser.run(json!({"cmd": "filter", "provider": "codex"}), &proxy);
    let asked = entries(&filtered, "logs_requests");
    for route in ["/logs/query?", "/logs/analytics?", "/logs/stream?"] {
        assert!(
            asked
                .iter()
                .filter_map(Value::as_str)
                .any(|url| url.contains(route) && url.contains("provider=codex")),
            "{route} was not asked with the filter: {asked:#?}"
        );
    }
    // Read again from /logs/query with the filter.
    wait_row(&mut browser, &proxy, &codex_id);
    assert_eq!(
        table_rows(&mut browser, &proxy),
        [codex_id.as_str()],
        "only codex's row"
    );
    browser.run(
        json!({"cmd": "wait_text", "selector": "#total-requests", "text": "1"}),
        &proxy,
    );
    let claude_later = ask_claude(&proxy);
    let codex_later = ask_codex(&proxy);
    wait_row(&mut browser, &proxy, &codex_later);
    assert_eq!(
        table_rows(&mut browser, &proxy),
        [codex_later.as_str(), codex_id.as_str()],
        "the stream brought codex's new row and not claude's {claude_later}"
    );
    // The connection drops and comes back; the page reconnects with
    // backoff and reads the request that ended meanwhile from /logs/query.
    let unplugged = browser.run(json!({"cmd": "unplug"}), &proxy);
    // Backoff: 1 s after the drop, then 2 s (each plus up to a fifth).
    assert!(
        ["reconnecting in 2 s", "reconnecting in 3 s"]
            .contains(&unplugged["connection"].as_str().unwrap_or_default()),
        "{unplugged}"
    );
    assert!(unplugged["refused"].as_u64() >= Some(1), "{unplugged}");
    let missed = ask_codex(&proxy);
    browser.run(json!({"cmd": "plug"}), &proxy);
    wait_row(&mut browser, &proxy, &missed);
    assert_eq!(
        table_rows(&mut browser, &proxy),
        [missed.as_str(), codex_later.as_str(), codex_id.as_str()],
        "after {unplugged}"
    );
    // The totals are asked again once the stream is back.
    browser.run(
        json!({"cmd": "wait_text", "selector": "#total-requests", "text": "3"}),
        &proxy,
    );
    let report = browser.run(json!({"cmd": "report"}), &proxy);
    assert_eq!(report["state"]["connection"], "live", "{report:#}");
    assert_eq!(report["state"]["notice_hidden"], true, "{report:#}");
    assert_eq!(
        report["state"]["address"],
        format!("{page_base}/dashboard?provider=codex")
    );

    let closed = browser.run(json!({"cmd": "close"}), &proxy);
    let status = browser.finish();
    assert!(status.success(), "the browser script exited with {status}");

    // A wrong token was refused and the page asked again.
    let refused = closed["refused_token_message"].as_str().unwrap_or_default();
    assert!(refused.contains("refused"), "{closed:#}");

    // No page errors. The only refusals are how the page learns it needs a
    // (better) token: its first call, without one, and its call with the
    // wrong one, with Chromium's own log line about each. The only requests
    // that did not finish are the stream the filter replaced and, while
    // unplugged, the stream that was cut and the attempts to reconnect it
    // (each maybe with Chromium's log line). Nothing else is refused, cut or
    // logged as an error or a warning.
    assert!(
        entries(&closed, "page_errors").is_empty(),
        "{:#?}",
        closed["page_errors"]
    );
    let filtered_stream = format!("{page_base}/logs/stream?provider=codex");
    let failed = entries(&closed, "failed_requests");
    // While unplugged, any data call may fail (a refresh may fall there),
    // but only those.
    let is_unplugged_data_call = |entry: &Value| {
        entry["phase"] == "unplugged"
            && entry["url"].as_str().is_some_and(|url| {
                url.starts_with(&format!("{page_base}/logs/"))
                    || url == format!("{page_base}/plugins/status")
            })
    };
    assert_eq!(
        failed[0],
        json!({"phase": "filtered", "url": format!("{page_base}/logs/stream"), "error": "net::ERR_ABORTED"}),
        "failed requests: {failed:#?}"
    );
    assert!(
        failed[1..].iter().all(is_unplugged_data_call),
        "failed requests: {failed:#?}"
    );
    // The cut stream and the failed attempt to reconnect it.
    assert!(
        failed
            .iter()
            .filter(|entry| entry["url"] == filtered_stream.as_str())
            .count()
            >= 2,
        "failed requests: {failed:#?}"
    );
    let probe = format!("{page_base}/plugins/status");
    // The page learns from /health that a token is needed and asks before
    // any data call: the only refusal is the deliberately wrong token's.
    let refusals: Vec<Value> = ["wrong-token"]
        .iter()
        .map(|phase| json!({"phase": phase, "url": probe, "status": 401}))
        .collect();
    assert_eq!(entries(&closed, "http_errors"), &refusals, "HTTP errors");
    let refused_line =
        json!("Failed to load resource: the server responded with a status of 401 (Unauthorized)");
    let troubles: Vec<&Value> = entries(&closed, "console")
        .iter()
        .filter(|message| message["type"] == "error" || message["type"] == "warning")
        .collect();
    assert!(
        !troubles.is_empty()
            && troubles[..1]
                .iter()
                .zip(["wrong-token"])
                .all(|(message, phase)| {
                    message["phase"] == phase
                        && message["url"] == probe.as_str()
                        && message["text"] == refused_line
                })
            && troubles[1..].iter().all(|message| {
                is_unplugged_data_call(message)
                    && message["text"]
                        .as_str()
                        .is_some_and(|text| text.starts_with("Failed to load resource: net::ERR_"))
            }),
        "console errors and warnings: {troubles:#?}"
    );

    // The screenshot is a PNG of the whole page.
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 20_000, "{} bytes: an empty page?", png.len());

    // The rows shown are the stored ones.
    let query = get_authorized(&proxy, "/logs/query?limit=10");
    assert_eq!(query.status, 200, "{}", query.text());
    let results = query.json();
    let stored: Vec<&str> = entries(&results, "results")
        .iter()
        .filter_map(|row| row["request_id"].as_str())
        .collect();
    for id in [&claude_id, &codex_id, &claude_later, &codex_later] {
        assert!(stored.contains(&id.as_str()), "{id} not stored: {stored:?}");
    }
}

#[test]
fn without_a_client_token_the_page_asks_for_none_and_logs_no_error() {
    let script = browser_tools();
    let mock = mock();
    let proxy = proxy(&mock, None, false);
    let profile = tempfile::Builder::new()
        .prefix("ccproxy-chromium-")
        .tempdir()
        .expect("a temporary folder for the browser profile");
    let mut browser = BrowserScript::start(&script, &proxy.base_url(), None, profile.path());
    let open = browser.wait_for("open", &proxy);
    assert_eq!(open["connection"], "live", "{open}");
    let request_id = ask_claude(&proxy);
    wait_row(&mut browser, &proxy, &request_id);
    let report = browser.run(json!({"cmd": "report"}), &proxy);
    assert_eq!(report["state"]["token_kept"], false, "{report:#}");
    let closed = browser.run(json!({"cmd": "close"}), &proxy);
    let status = browser.finish();
    assert!(status.success(), "the browser script exited with {status}");
    // Not a single error or warning, refusal or failed request.
    for key in ["page_errors", "failed_requests", "http_errors"] {
        assert!(entries(&closed, key).is_empty(), "{key}: {closed:#}");
    }
    let troubles: Vec<&Value> = entries(&closed, "console")
        .iter()
        .filter(|message| message["type"] == "error" || message["type"] == "warning")
        .collect();
    assert!(
        troubles.is_empty(),
        "console errors and warnings: {troubles:#?}"
    );
}

#[test]
fn without_the_analytics_plugin_the_page_says_what_to_enable() {
    let script = browser_tools();
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["dashboard"],
        ..ProxyOptions::default()
    });
    let health = proxy.get("/plugins/dashboard/health").json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["details"]["analytics"], "disabled", "{health}");

    let profile = tempfile::Builder::new()
        .prefix("ccproxy-chromium-")
        .tempdir()
        .expect("a temporary folder for the browser profile");
    let mut browser = BrowserScript::start(&script, &proxy.base_url(), None, profile.path());
    let open = browser.wait_for("open", &proxy);
    assert_eq!(open["connection"], "off", "{open}");
    let report = browser.run(json!({"cmd": "report"}), &proxy);
    let notice = report["state"]["notice"].as_str().unwrap_or_default();
    assert!(
        notice.contains("analytics plugin is disabled")
            && notice.contains("enable the storage and analytics plugins"),
        "{report:#}"
    );
    let closed = browser.run(json!({"cmd": "close"}), &proxy);
    assert!(browser.finish().success());
    // It never asked for data that is not there.
    for key in [
        "page_errors",
        "failed_requests",
        "http_errors",
        "logs_requests",
    ] {
        assert!(entries(&closed, key).is_empty(), "{key}: {closed:#}");
    }
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
