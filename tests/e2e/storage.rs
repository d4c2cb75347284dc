//! The bundled `storage` plugin (with `analytics` serving `/logs`) through
//! the real host, on SQLite and on a private PostgreSQL server
//! (`ccproxy_e2e::postgres`): requests through `/claude` and `/codex`
//! against the mock upstream are stored with their tokens and cost, rows
//! survive a SIGTERM and a restart (the queue is written at shutdown), and a
//! database that cannot be reached makes `/plugins/storage/health` degraded
//! while requests keep succeeding. Each test runs once per backend.

use std::{path::Path, time::Duration};

use ccproxy_e2e::{
    Proxy, ProxyOptions, Sandbox,
    mock::{
        Mock,
        codex::{self, REFRESH_TOKEN, access_token, auth_json_path, write_auth_json},
    },
    poll,
    postgres::Postgres,
};
use serde_json::{Value, json};

pub(crate) const CLAUDE_MODEL: &str = "claude-sonnet-4-20250514";
pub(crate) const CODEX_MODEL: &str = "gpt-5";
pub(crate) const TOKEN: &str = "client-token";

/// Where the store lives.
pub(crate) enum Backend {
    /// A SQLite file in this folder.
    Sqlite(tempfile::TempDir),
    /// A private PostgreSQL server.
    Postgres(Postgres),
}

impl Backend {
    pub(crate) fn sqlite() -> Self {
        Backend::Sqlite(
            tempfile::Builder::new()
                .prefix("ccproxy-e2e-storage-")
                .tempdir()
                .expect("a scratch folder"),
        )
    }

    pub(crate) fn postgres() -> Self {
        Backend::Postgres(Postgres::start())
    }

    /// The environment that points `storage` at this store.
    pub(crate) fn env(&self) -> (&'static str, String) {
        match self {
            Backend::Sqlite(dir) => (
                "PLUGINS__STORAGE__DATABASE_PATH",
                dir.path().join("logs.db").display().to_string(),
            ),
            Backend::Postgres(server) => ("PLUGINS__STORAGE__URL", server.url()),
        }
    }
}

/// The two upstreams: Anthropic's and the Codex backend.
pub(crate) struct Upstreams {
    pub(crate) claude: Mock,
    pub(crate) codex: Mock,
}

impl Upstreams {
    pub(crate) fn start() -> Self {
        Self {
            claude: Mock::start(&["--quiet"]),
            codex: codex::start_mock(),
        }
    }
}

/// A proxy with `storage`, `analytics`, `pricing` and both providers in
/// front of `upstreams`, the store at `backend`, a client token, and `env`.
pub(crate) fn start(upstreams: &Upstreams, backend: &Backend, env: &[(&str, &str)]) -> Proxy {
    let sandbox = Sandbox::new();
    write_auth_json(
        &auth_json_path(sandbox.root()),
        &access_token(),
        REFRESH_TOKEN,
    );
    let claude_url = upstreams.claude.url();
    let codex_url = upstreams.codex.codex_base_url();
    let (store_key, store_value) = backend.env();
    let mut all = vec![
        ("ANTHROPIC_API_KEY", "test-key"),
        ("PLUGINS__CLAUDE_API__BASE_URL", claude_url.as_str()),
        ("PLUGINS__CODEX__BASE_URL", codex_url.as_str()),
        ("SECURITY__AUTH_TOKEN", TOKEN),
        (store_key, store_value.as_str()),
    ];
    all.extend_from_slice(env);
    Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &[
                "storage",
                "analytics",
                "pricing",
                "claude_api",
                "codex",
                "oauth_codex",
            ],
            env: &all,
            ..ProxyOptions::default()
        },
    )
}

pub(crate) fn auth() -> [(&'static str, &'static str); 2] {
    [
        ("content-type", "application/json"),
        ("authorization", "Bearer client-token"),
    ]
}

/// `GET path` with the client token; must answer `status`.
pub(crate) fn get(proxy: &Proxy, path: &str, status: u16) -> Value {
    let reply = proxy.get_with(path, &auth());
    assert_eq!(
        reply.status,
        status,
        "{path}: {}\n{}",
        reply.text(),
        proxy.log()
    );
    reply.json()
}

/// One Claude messages request, streamed or not; must succeed.
pub(crate) fn ask_claude(proxy: &Proxy, stream: bool) {
    let body = json!({"model": CLAUDE_MODEL, "max_tokens": 100, "stream": stream,
                      "messages": [{"role": "user", "content": "Hello"}]});
    let reply = proxy.request(
        "POST",
        "/claude/v1/messages",
        &auth(),
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// One Codex responses request, streamed or not; must succeed.
pub(crate) fn ask_codex(proxy: &Proxy, stream: bool) {
    let body = json!({"model": CODEX_MODEL, "stream": stream, "instructions": "Be brief.",
                      "input": [{"role": "user", "content": "Hello"}]});
    let reply = proxy.request(
        "POST",
        "/codex/v1/responses",
        &auth(),
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Polls `/logs/query?QUERY` until it holds `count` rows; returns them.
pub(crate) fn rows_eventually(proxy: &Proxy, query: &str, count: usize) -> Vec<Value> {
    let mut last = Value::Null;
    poll(Duration::from_secs(10), || {
        last = get(proxy, &format!("/logs/query?{query}"), 200);
        (last["results"].as_array().map(Vec::len) == Some(count)).then_some(())
    })
    .unwrap_or_else(|| panic!("/logs/query?{query} never held {count} rows: {last:#}"));
    last["results"].as_array().cloned().unwrap_or_default()
}

fn row<'a>(rows: &'a [Value], path: &str, streaming: bool) -> &'a Value {
    rows.iter()
        .find(|row| row["path"] == path && row["streaming"] == streaming)
        .unwrap_or_else(|| panic!("no row for {path} (streaming {streaming}): {rows:#?}"))
}

fn stored_with_tokens_and_cost(backend: Backend) {
    let upstreams = Upstreams::start();
    let proxy = start(&upstreams, &backend, &[]);
    for stream in [false, true] {
        ask_claude(&proxy, stream);
        ask_codex(&proxy, stream);
    }
    let rows = rows_eventually(&proxy, "limit=50", 4);

    // The recorded answers: Claude 24 tokens in, 40 out complete and 41
    // streamed; Codex 63 in, 2176 read from the cache, 15 out.
    for (stream, output) in [(false, 40), (true, 41)] {
        let claude = row(&rows, "/claude/v1/messages", stream);
        assert_eq!(claude["provider"], "claude_api", "{claude}");
        assert_eq!(claude["service_type"], "claude_api", "{claude}");
        assert_eq!(claude["model"], CLAUDE_MODEL, "{claude}");
        assert_eq!(claude["endpoint"], "/v1/messages", "{claude}");
        assert_eq!(claude["method"], "POST", "{claude}");
        assert_eq!(claude["status_code"], 200, "{claude}");
        assert_eq!(claude["tokens_input"], 24, "{claude}");
        assert_eq!(claude["tokens_output"], output, "{claude}");
        // claude-sonnet-4: $3 in, $15 out per million.
        let expected = 24.0 * 3e-6 + f64::from(output) * 15e-6;
        let cost = claude["cost_usd"].as_f64().unwrap_or_default();
        assert!(
            (cost - expected).abs() < 1e-12,
            "{cost} != {expected}: {claude}"
        );
        assert!(
            claude["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{claude}"
        );
        assert!(
            claude["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{claude}"
        );
        assert!(
            !claude["request_id"].as_str().unwrap_or_default().is_empty(),
            "{claude}"
        );
    }
    for stream in [false, true] {
        let codex = row(&rows, "/codex/v1/responses", stream);
        assert_eq!(codex["provider"], "codex", "{codex}");
        assert_eq!(codex["model"], CODEX_MODEL, "{codex}");
        assert_eq!(codex["tokens_input"], 63, "{codex}");
        assert_eq!(codex["cache_read_tokens"], 2176, "{codex}");
        assert_eq!(codex["tokens_output"], 15, "{codex}");
        assert!(
            codex["cost_usd"].as_f64().is_some_and(|cost| cost > 0.0),
            "{codex}"
        );
    }
    // Newest first by default, and the dashboard's own reads are not stored.
    let times: Vec<&str> = rows
        .iter()
        .filter_map(|row| row["timestamp"].as_str())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    assert!(
        rows.iter().all(|row| row["path"] != "/logs/query"),
        "{rows:#?}"
    );

    let health = get(&proxy, "/plugins/storage/health", 200);
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["details"]["written"], 4, "{health}");
}

#[test]
fn requests_through_claude_and_codex_are_stored_with_tokens_and_cost_sqlite() {
    stored_with_tokens_and_cost(Backend::sqlite());
}

#[test]
fn requests_through_claude_and_codex_are_stored_with_tokens_and_cost_postgres() {
    stored_with_tokens_and_cost(Backend::postgres());
}

fn rows_survive_a_restart(backend: Backend) {
    let upstreams = Upstreams::start();
    // Writes only at shutdown: the rows must come from the queue's last flush.
    let slow = [("PLUGINS__STORAGE__FLUSH_INTERVAL", "3600")];
    let proxy = start(&upstreams, &backend, &slow);
    ask_claude(&proxy, false);
    ask_codex(&proxy, true);
    // The hook has queued both rows once health counts them.
    poll(Duration::from_secs(10), || {
        let health = get(&proxy, "/plugins/storage/health", 200);
        (health["details"]["queued"] == 2).then_some(())
    })
    .unwrap_or_else(|| panic!("the rows were never queued:\n{}", proxy.log()));
    assert_eq!(get(&proxy, "/logs/query", 200)["count"], 0);
    let (exit, log) = proxy.stop_with(libc::SIGTERM);
    assert!(exit.success(), "{exit:?}\n{log}");

    let proxy = start(&upstreams, &backend, &[]);
    let rows = rows_eventually(&proxy, "order=asc", 2);
    assert_eq!(rows[0]["path"], "/claude/v1/messages", "{rows:#?}");
    assert_eq!(rows[1]["path"], "/codex/v1/responses", "{rows:#?}");
    assert_eq!(rows[1]["streaming"], true, "{rows:#?}");
    if let Backend::Sqlite(dir) = &backend {
        assert_private(dir.path(), &dir.path().join("logs.db"));
    }
}

/// The database file is 0600 in a folder nobody else may write.
fn assert_private(folder: &Path, file: &Path) {
    let mode = |path: &Path| ccproxy_e2e::mode(path);
    assert_eq!(mode(folder) & 0o022, 0, "{}", folder.display());
    assert_eq!(mode(file), 0o600, "{}", file.display());
}

#[test]
fn rows_survive_sigterm_and_a_restart_sqlite() {
    rows_survive_a_restart(Backend::sqlite());
}

#[test]
fn rows_survive_sigterm_and_a_restart_postgres() {
    rows_survive_a_restart(Backend::postgres());
}

#[test]
fn the_default_database_is_private_in_the_xdg_data_folder() {
    let upstreams = Upstreams::start();
    let sandbox = Sandbox::new();
    let data = sandbox.root().join("data");
    let claude_url = upstreams.claude.url();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["storage", "analytics", "claude_api"],
            env: &[
                ("ANTHROPIC_API_KEY", "test-key"),
                ("PLUGINS__CLAUDE_API__BASE_URL", &claude_url),
            ],
            ..ProxyOptions::default()
        },
    );
    let reply = proxy.post_json(
        "/claude/v1/messages",
        &json!({"model": CLAUDE_MODEL, "max_tokens": 100,
                "messages": [{"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let health = proxy.get("/plugins/storage/health").json();
    let database = data.join("ccproxy").join("logs.db");
    assert_eq!(
        health["details"]["database"],
        format!("sqlite {}", database.display()),
        "{health}"
    );
    assert_private(&data.join("ccproxy"), &database);
    rows_eventually_without_token(&proxy, 1);
}

fn rows_eventually_without_token(proxy: &Proxy, count: usize) {
    poll(Duration::from_secs(10), || {
        let reply = proxy.get("/logs/query");
        (reply.status == 200 && reply.json()["count"] == count).then_some(())
    })
    .unwrap_or_else(|| panic!("never {count} rows:\n{}", proxy.log()));
}

fn unavailable_database_degrades_health(backend_env: (&str, String)) {
    let upstreams = Upstreams::start();
    let sandbox = Sandbox::new();
    write_auth_json(
        &auth_json_path(sandbox.root()),
        &access_token(),
        REFRESH_TOKEN,
    );
    let claude_url = upstreams.claude.url();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["storage", "analytics", "pricing", "claude_api"],
            env: &[
                ("ANTHROPIC_API_KEY", "test-key"),
                ("PLUGINS__CLAUDE_API__BASE_URL", &claude_url),
                ("SECURITY__AUTH_TOKEN", TOKEN),
                (backend_env.0, &backend_env.1),
            ],
            ..ProxyOptions::default()
        },
    );
    for _ in 0..3 {
        ask_claude(&proxy, false);
    }
    let mut health = Value::Null;
    poll(Duration::from_secs(10), || {
        health = get(&proxy, "/plugins/storage/health", 503);
        (health["details"]["queued"] == 3).then_some(())
    })
    .unwrap_or_else(|| panic!("the rows were not kept queued: {health:#}"));
    assert_eq!(health["status"], "unhealthy", "{health}");
    // The host's own /health warns, naming the plugin and why.
    let host = proxy.get("/health").json();
    assert_eq!(host["status"], "warn", "{host:#}");
    assert!(
        host["checks"]["plugins:active"][0]["output"]
            .as_str()
            .is_some_and(|output| output.contains("unhealthy: storage: ")),
        "{host:#}"
    );
    assert!(
        health["details"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{health}"
    );
    assert_eq!(health["details"]["written"], 0, "{health}");
    // Reads say the store is unavailable, naming no secret.
    let reply = proxy.get_with("/logs/query", &auth());
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["error"]["type"], "service_unavailable");
    assert!(proxy.log().contains("storage:"), "{}", proxy.log());
}

#[test]
fn an_unavailable_database_degrades_health_while_requests_succeed_sqlite() {
    // A database path below a regular file: its folder can never be made.
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let blocker = scratch.path().join("blocker");
    std::fs::write(&blocker, "").expect("a file");
    let path = blocker.join("logs.db").display().to_string();
    unavailable_database_degrades_health(("PLUGINS__STORAGE__DATABASE_PATH", path));
}

#[test]
fn an_unavailable_database_degrades_health_while_requests_succeed_postgres() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgres://postgres:secret-password@127.0.0.1:{port}/postgres");
    unavailable_database_degrades_health(("PLUGINS__STORAGE__URL", url));
}

#[test]
fn a_postgres_server_that_comes_back_gets_the_queued_rows() {
    let upstreams = Upstreams::start();
    let server = Postgres::start();
    let backend = Backend::Postgres(server);
    let proxy = start(
        &upstreams,
        &backend,
        &[("PLUGINS__STORAGE__RECONNECT_SECONDS", "0.2")],
    );
    ask_claude(&proxy, false);
    rows_eventually(&proxy, "", 1);
    let Backend::Postgres(server) = &backend else {
        unreachable!("started as postgres")
    };
    // Every connection of the proxy is cut; the next write reconnects.
    server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = 'postgres'");
    ask_claude(&proxy, true);
    ask_codex(&proxy, false);
    let rows = rows_eventually(&proxy, "", 3);
    assert_eq!(rows.len(), 3);
    assert_eq!(server.psql("SELECT count(*) FROM access_logs"), "3");
    assert_eq!(
        server.psql("SELECT sum(requests) FROM access_log_minutes"),
        "3",
        "the rollup counts every row once"
    );
}
