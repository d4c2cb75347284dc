//! The bundled `analytics` plugin's `/logs` API through the real host, over
//! the `storage` plugin's store (helpers in `storage.rs`): an open
//! `/logs/stream` gets each finished request within a second, with its
//! filters; `/logs/analytics` totals add up to the stored rows, on SQLite
//! and on PostgreSQL; cursors page without repeats; malformed parameters
//! get a 400 naming the parameter; hostile filter values are only values
//! (bound parameters), on both engines; the routes need the client token;
//! `POST /logs/reset` empties the store.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use ccproxy_e2e::Proxy;
use serde_json::Value;

use crate::storage::{
    Backend, CLAUDE_MODEL, CODEX_MODEL, TOKEN, Upstreams, ask_claude, ask_codex, auth, get,
    rows_eventually, start,
};

/// Opens `GET /logs/stream?QUERY` and reads its head and first comment.
fn open_stream(proxy: &Proxy, query: &str) -> std::net::TcpStream {
    let mut stream = proxy.connect();
    write!(
        stream,
        "GET /logs/stream?{query} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .expect("the request can be written");
    let head = ccproxy_e2e::read_until(&mut stream, ": stream open", "the stream's head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    stream
}

/// Reads `stream` until one `data:` event arrived; returns its JSON and
/// when it arrived.
fn next_row(stream: &mut std::net::TcpStream) -> (Value, Instant) {
    let text = ccproxy_e2e::read_until(stream, "\n\n", "a stream event");
    let arrived = Instant::now();
    let data = text
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data line in {text:?}"));
    (
        serde_json::from_str(data).expect("the data is JSON"),
        arrived,
    )
}

#[test]
fn an_open_stream_gets_each_finished_request_within_a_second() {
    let upstreams = Upstreams::start();
    let backend = Backend::sqlite();
    let proxy = start(&upstreams, &backend, &[]);
    let mut everything = open_stream(&proxy, "");
    let mut codex_only = open_stream(&proxy, &format!("model={CODEX_MODEL}&min_status=200"));

    let sent = Instant::now();
    ask_claude(&proxy, true);
    let answered = Instant::now();
    let (row, arrived) = next_row(&mut everything);
    assert_eq!(row["path"], "/claude/v1/messages", "{row}");
    assert_eq!(row["model"], CLAUDE_MODEL, "{row}");
    assert_eq!(row["streaming"], true, "{row}");
    assert!(
        row["tokens_output"].as_i64().is_some_and(|n| n > 0),
        "{row}"
    );
    assert!(row["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "{row}");
    assert!(
        arrived.duration_since(answered) < Duration::from_secs(1),
        "the row came {:?} after the answer ({:?} after the request)",
        arrived.duration_since(answered),
        arrived.duration_since(sent)
    );

    ask_codex(&proxy, false);
    let answered = Instant::now();
    let (row, arrived) = next_row(&mut codex_only);
    assert_eq!(
        row["model"], CODEX_MODEL,
        "the filtered stream skipped Claude: {row}"
    );
    assert!(arrived.duration_since(answered) < Duration::from_secs(1));
    let (row, _) = next_row(&mut everything);
    assert_eq!(row["model"], CODEX_MODEL, "{row}");

    // Both streams are open; a client that leaves is forgotten at the next row.
    let health = get(&proxy, "/plugins/analytics/health", 200);
    assert_eq!(health["details"]["open_streams"], 2, "{health}");
    drop(codex_only);
    drop(everything);
    let mut open = Value::Null;
    ccproxy_e2e::poll(Duration::from_secs(10), || {
        ask_claude(&proxy, false);
        open = get(&proxy, "/plugins/analytics/health", 200)["details"]["open_streams"].clone();
        (open == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("streams of clients that left stay open: {open}"));
}

fn totals_add_up(backend: Backend) {
    let upstreams = Upstreams::start();
    let proxy = start(&upstreams, &backend, &[]);
    for stream in [false, true, false] {
        ask_claude(&proxy, stream);
        ask_codex(&proxy, stream);
    }
    // A request the upstream fails: counted as failed, by status.
    upstreams
        .claude
        .fault(serde_json::json!({"kind": "status", "status": 529}));
    let reply = proxy.request(
        "POST",
        "/claude/v1/messages",
        &auth(),
        serde_json::json!({"model": CLAUDE_MODEL, "max_tokens": 10,
                           "messages": [{"role": "user", "content": "Hi"}]})
        .to_string()
        .as_bytes(),
    );
    assert!(reply.status >= 400, "{}", reply.text());
    let rows = rows_eventually(&proxy, "limit=100", 7);

    let analytics = get(&proxy, "/logs/analytics?hours=1", 200);
    let summary = &analytics["summary"];
    let sum = |key: &str| {
        rows.iter()
            .map(|row| row[key].as_i64().unwrap_or(0))
            .sum::<i64>()
    };
    let cost: f64 = rows
        .iter()
        .map(|row| row["cost_usd"].as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(summary["total_requests"], 7, "{analytics:#}");
    assert_eq!(summary["failed_requests"], 1, "{analytics:#}");
    assert_eq!(summary["successful_requests"], 6, "{analytics:#}");
    assert_eq!(
        summary["total_tokens_input"],
        sum("tokens_input"),
        "{analytics:#}"
    );
    assert_eq!(
        summary["total_tokens_output"],
        sum("tokens_output"),
        "{analytics:#}"
    );
    assert_eq!(
        summary["total_cache_read_tokens"],
        sum("cache_read_tokens"),
        "{analytics:#}"
    );
    let total_cost = summary["total_cost_usd"].as_f64().unwrap_or(-1.0);
    assert!(
        (total_cost - cost).abs() < 1e-9 && cost > 0.0,
        "{total_cost} != {cost}"
    );
    let durations: Vec<f64> = rows
        .iter()
        .filter_map(|row| row["duration_ms"].as_f64())
        .collect();
    let average = durations.iter().sum::<f64>() / durations.len() as f64;
    let reported = summary["avg_duration_ms"].as_f64().unwrap_or(-1.0);
    assert!((reported - average).abs() < 1e-6, "{reported} != {average}");
    let (p50, p95, p99) = (
        summary["p50_duration_ms"].as_f64().unwrap_or(-1.0),
        summary["p95_duration_ms"].as_f64().unwrap_or(-1.0),
        summary["p99_duration_ms"].as_f64().unwrap_or(-1.0),
    );
    let max = durations.iter().cloned().fold(0.0, f64::max);
    assert!(
        0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max * 1.5,
        "{summary}"
    );

    // Every breakdown adds up to the same totals.
    let requests = |list: &Value| -> i64 {
        list.as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| item["requests"].as_i64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(-1)
    };
    for breakdown in ["by_model", "by_provider", "by_status", "timeline"] {
        assert_eq!(
            requests(&analytics[breakdown]),
            7,
            "{breakdown}: {analytics:#}"
        );
    }
    let model = |name: &str| {
        analytics["by_model"]
            .as_array()
            .and_then(|items| items.iter().find(|item| item["model"] == name).cloned())
            .unwrap_or_else(|| panic!("no {name} in {analytics:#}"))
    };
    assert_eq!(model(CODEX_MODEL)["requests"], 3);
    assert_eq!(model(CODEX_MODEL)["tokens_input"], 3 * 63);
    let statuses: Vec<i64> = analytics["by_status"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["status_code"].as_i64())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        statuses.contains(&200) && statuses.iter().any(|s| *s >= 400),
        "{statuses:?}"
    );
    assert_eq!(analytics["bucket_seconds"], 60, "{analytics:#}");
    assert_eq!(
        analytics["timeline"].as_array().map(Vec::len),
        Some(61),
        "{analytics:#}"
    );

    // Filters apply to the analysis as to the rows.
    let codex = get(
        &proxy,
        "/logs/analytics?provider=codex&hours=2&bucket=hour",
        200,
    );
    assert_eq!(codex["summary"]["total_requests"], 3, "{codex:#}");
    assert_eq!(
        codex["summary"]["total_cache_read_tokens"],
        3 * 2176,
        "{codex:#}"
    );
    assert_eq!(codex["bucket_seconds"], 3600, "{codex:#}");
    let failed = get(&proxy, "/logs/analytics?min_status=400", 200);
    assert_eq!(failed["summary"]["total_requests"], 1, "{failed:#}");
    let streamed = get(&proxy, "/logs/query?streaming=true", 200);
    assert_eq!(streamed["count"], 2, "{streamed:#}");

    // Pages of two, oldest first, then newest first: every row once.
    for order in ["asc", "desc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let query = match &cursor {
                Some(cursor) => format!("/logs/query?limit=2&order={order}&cursor={cursor}"),
                None => format!("/logs/query?limit=2&order={order}"),
            };
            let page = get(&proxy, &query, 200);
            for row in page["results"].as_array().cloned().unwrap_or_default() {
                seen.push(row["request_id"].as_str().unwrap_or_default().to_owned());
            }
            if page["has_more"] != true {
                assert_eq!(page["next_cursor"], Value::Null, "{page}");
                break;
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((seen.len(), unique.len()), (7, 7), "{order}: {seen:?}");
    }

    // Reset empties the store, rollup included.
    let reply = proxy.request("POST", "/logs/reset", &auth(), b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"status": "success", "deleted": 7})
    );
    assert_eq!(get(&proxy, "/logs/query", 200)["count"], 0);
    assert_eq!(
        get(&proxy, "/logs/analytics", 200)["summary"]["total_requests"],
        0
    );
}

#[test]
fn analytics_totals_add_up_sqlite() {
    totals_add_up(Backend::sqlite());
}

#[test]
fn analytics_totals_add_up_postgres() {
    totals_add_up(Backend::postgres());
}

#[test]
fn malformed_parameters_get_a_400_naming_the_parameter() {
    let upstreams = Upstreams::start();
    let backend = Backend::sqlite();
    let proxy = start(&upstreams, &backend, &[]);
    for (path, param) in [
        ("/logs/query?limit=0", "limit"),
        ("/logs/query?limit=abc", "limit"),
        ("/logs/query?order=sideways", "order"),
        ("/logs/query?cursor=not-a-cursor", "cursor"),
        ("/logs/query?start_time=tomorrow", "start_time"),
        ("/logs/query?end_time=2026-13-40T99:00:00Z", "end_time"),
        ("/logs/query?status_code=2000", "status_code"),
        ("/logs/query?streaming=perhaps", "streaming"),
        ("/logs/analytics?hours=0", "hours"),
        ("/logs/analytics?hours=169", "hours"),
        ("/logs/analytics?bucket=fortnight", "bucket"),
        (
            "/logs/analytics?min_status=500&max_status=400",
            "min_status",
        ),
        ("/logs/stream?min_duration_ms=fast", "min_duration_ms"),
    ] {
        let reply = proxy.get_with(path, &auth());
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        let body = reply.json();
        assert_eq!(
            body["error"]["type"], "invalid_request_error",
            "{path}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("parameter '{param}': ")),
            "{path}: {message}"
        );
    }
    let reply = proxy.get_with("/logs/query?limit=0", &auth());
    assert_eq!(
        reply.json()["error"]["message"],
        "parameter 'limit': must be an integer from 1 to 10000"
    );
}

fn hostile_values_are_harmless(backend: Backend) {
    let upstreams = Upstreams::start();
    let proxy = start(&upstreams, &backend, &[]);
    ask_claude(&proxy, false);
    rows_eventually(&proxy, "", 1);
    let hostile = [
        "'; DROP TABLE access_logs; --",
        "x' OR '1'='1",
        "\" OR 1=1 --",
        "claude-sonnet-4-20250514' UNION SELECT * FROM access_log_minutes --",
        "%",
        "$1",
        "?1",
    ];
    for value in hostile {
        let encoded: String = value.bytes().map(|byte| format!("%{byte:02X}")).collect();
        for key in ["model", "provider", "service_type"] {
            let rows = get(&proxy, &format!("/logs/query?{key}={encoded}"), 200);
            assert_eq!(rows["count"], 0, "{key}={value}: {rows}");
            let analysis = get(&proxy, &format!("/logs/analytics?{key}={encoded}"), 200);
            assert_eq!(
                analysis["summary"]["total_requests"], 0,
                "{key}={value}: {analysis}"
            );
        }
    }
    // Everything is still there, and the honest filter still finds it.
    let rows = get(&proxy, &format!("/logs/query?model={CLAUDE_MODEL}"), 200);
    assert_eq!(rows["count"], 1, "{rows}");
    let analysis = get(&proxy, "/logs/analytics", 200);
    assert_eq!(analysis["summary"]["total_requests"], 1, "{analysis}");
}

#[test]
fn hostile_filter_values_are_harmless_sqlite() {
    hostile_values_are_harmless(Backend::sqlite());
}

#[test]
fn hostile_filter_values_are_harmless_postgres() {
    hostile_values_are_harmless(Backend::postgres());
}

#[test]
fn the_routes_need_the_client_token() {
    let upstreams = Upstreams::start();
    let backend = Backend::sqlite();
    let proxy = start(&upstreams, &backend, &[]);
    for (method, path) in [
        ("GET", "/logs/query"),
        ("GET", "/logs/analytics"),
        ("GET", "/logs/stream"),
        ("POST", "/logs/reset"),
    ] {
        let reply = proxy.request(method, path, &[], b"");
        assert_eq!(reply.status, 401, "{method} {path}: {}", reply.text());
    }
    let reply = proxy.request("GET", "/logs/query", &[("x-api-key", TOKEN)], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
}
