//! The plugin API 1.2 host operations through the real binary, with the
//! `host_services` test plugin: blocking jobs run on the host's blocking pool
//! (the server keeps answering while they sleep), child processes (stdin,
//! stdout, stderr, exit codes, a missing program, children killed when the
//! host stops), an upstream SSE answer forwarded by a plugin as it arrives
//! (and cancelled upstream when the client leaves), the plugins status, the
//! capabilities the host announces, and the allocator plugins share.

use std::{
    io::Write,
    net::TcpStream,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use ccproxy_e2e::{Proxy, ProxyOptions, http_get, mock::Mock, poll, read_until};
use serde_json::{Value, json};

const PLUGIN: &[&str] = &["test_plugin_host_services"];

fn start(config_toml: Option<&str>) -> Proxy {
    Proxy::start(ProxyOptions {
        plugins: PLUGIN,
        config_toml,
        ..ProxyOptions::default()
    })
}

fn get_json(proxy: &Proxy, path: &str) -> Value {
    let reply = proxy.get(path);
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

#[test]
fn blocking_jobs_run_off_the_async_workers() {
    let proxy = start(None);
    let address = proxy.address();
    let jobs: Vec<_> = (0..4)
        .map(|_| thread::spawn(move || http_get(address, "/svc/blocking?ms=1500")))
        .collect();
    // The four jobs sleep 1.5 s each on host threads. Were they on the
    // runtime's workers (as many as cores: two here), those would be blocked
    // and /health/live would wait until a job ended.
    thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    let live = http_get(address, "/health/live").expect("the proxy answers");
    let live_took = asked.elapsed();
    assert_eq!(live.status, 200);
    let running = jobs.iter().filter(|job| !job.is_finished()).count();
    assert_eq!(
        running, 4,
        "/health/live took {live_took:?}: it waited for blocking jobs to end"
    );

    let mut spans = Vec::new();
    for job in jobs {
        let reply = job
            .join()
            .expect("the client thread ends")
            .expect("the proxy answers");
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        assert!(body["elapsed_ms"].as_u64().unwrap_or(0) >= 1500, "{body}");
        spans.push((
            body["started_ms"].as_u64().unwrap_or(0),
            body["ended_ms"].as_u64().unwrap_or(0),
        ));
        let file = Path::new(body["file"].as_str().expect("a file path"));
        assert!(
            file.starts_with(proxy.sandbox().root().join("data")),
            "the job wrote under the plugin's data dir: {}",
            file.display()
        );
        assert_eq!(
            std::fs::read_to_string(file).expect("the job wrote its file"),
            "done"
        );
    }
    // Side by side: a moment when all four were running.
    let last_start = spans.iter().map(|s| s.0).max().unwrap_or(0);
    let first_end = spans.iter().map(|s| s.1).min().unwrap_or(0);
    assert!(
        last_start < first_end,
        "the four jobs did not run side by side: {spans:?}"
    );
}

#[test]
fn child_processes_take_input_and_report_output_and_exit() {
    let proxy = start(None);
    let body = get_json(&proxy, "/svc/process");
    assert_eq!(
        body,
        json!({
            "pieces": ["one\n", "two\n", "three\n"],
            "rest": null,
            "cat_code": 0,
            "code": 3,
            "success": false,
            "stderr": "err\n",
            "stdout": null,
        })
    );

    let missing = proxy.get("/svc/missing");
    assert_eq!(missing.status, 404, "{}", missing.text());
    let text = missing.text();
    assert!(
        text.contains("cannot start ccproxy-test-no-such-program: not found in PATH ("),
        "{text}"
    );
    assert!(
        text.contains("give its absolute path or add its folder to the PATH"),
        "{text}"
    );
}

/// The state letter of process `pid` in `/proc`, or `None` once it is gone.
fn process_state(pid: u64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (name) S ...`: the state follows the closing parenthesis.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn a_plugins_children_die_with_the_host() {
    let proxy = start(None);
    let pid = get_json(&proxy, "/svc/sleeper")["pid"]
        .as_u64()
        .expect("a pid");
    assert!(
        matches!(process_state(pid), Some('S' | 'R')),
        "sleep 120 runs: {:?}",
        process_state(pid)
    );
    let (status, log) = proxy.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status:?}\n{log}");
    // Gone, or a zombie nobody reaps in this container: not running either way.
    let ended = poll(Duration::from_secs(5), || {
        matches!(process_state(pid), None | Some('Z')).then_some(())
    });
    assert!(
        ended.is_some(),
        "the plugin's child {pid} outlived the host: {:?}\n{log}",
        process_state(pid)
    );
}

fn forwarding_proxy(mock: &Mock) -> Proxy {
    start(Some(&format!(
        "[plugins.host_services]\nupstream = \"{}\"\n",
        mock.url()
    )))
}

/// Opens `GET /svc/forward`; returns the connection and what it sent so
/// far (the head, at least).
fn open_forward(proxy: &Proxy) -> (TcpStream, String) {
    let mut stream = proxy.connect();
    write!(
        stream,
        "GET /svc/forward HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .expect("the request can be written");
    let received = read_until(&mut stream, "\r\n\r\n", "the forwarded head");
    (stream, received)
}

/// Reads on until everything received contains `needle`.
fn read_on_until(stream: &mut TcpStream, received: &mut String, needle: &str) {
    if !received.contains(needle) {
        received.push_str(&read_until(stream, needle, needle));
    }
}

#[test]
fn a_plugin_forwards_an_upstream_stream_as_it_arrives() {
    let mock = Mock::start(&[]);
    let proxy = forwarding_proxy(&mock);
    // Ten recorded events 300 ms apart.
    mock.fault(json!({"kind": "trickle", "delay_ms": 300}));
    let started = Instant::now();
    let (mut stream, mut received) = open_forward(&proxy);
    let head = received
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(
        head.contains("x-mock-sample: claude_messages_stream"),
        "{head}"
    );
    assert!(!head.contains("content-length"), "{head}");

    read_on_until(&mut stream, &mut received, "event: message_start");
    let first_at = started.elapsed();
    assert!(
        !received.contains("message_stop"),
        "the first event came with the last: {received}"
    );
    read_on_until(&mut stream, &mut received, "event: message_stop");
    assert!(received.contains("Hello! It"), "{received}");
    let last_at = started.elapsed();
    assert!(
        last_at >= first_at + Duration::from_millis(1500),
        "events were held back and sent together: first at {first_at:?}, last at {last_at:?}"
    );
    assert_eq!(mock.streams()["completed"], 1, "{}", mock.streams());
    let upstream = mock.requests_to("/v1/messages");
    assert_eq!(upstream.len(), 1);
    assert_eq!(upstream[0]["body"]["stream"], true);
}

#[test]
fn a_client_leaving_a_forwarded_stream_cancels_the_upstream_request() {
    let mock = Mock::start(&[]);
    let proxy = forwarding_proxy(&mock);
    mock.fault(json!({"kind": "trickle", "delay_ms": 300}));
    let (mut stream, mut received) = open_forward(&proxy);
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    read_on_until(&mut stream, &mut received, "Hello! It");
    drop(stream);
    let hung_up = Instant::now();
    let cancelled = poll(Duration::from_secs(5), || {
        (mock.streams()["cancelled"] == 1).then_some(())
    });
    assert!(
        cancelled.is_some(),
        "the upstream stream ran on: {}; proxy log:\n{}",
        mock.streams(),
        proxy.log()
    );
    assert!(hung_up.elapsed() < Duration::from_secs(2));
    assert_eq!(mock.streams()["completed"], 0);
}

#[test]
fn the_plugins_status_and_the_capabilities() {
    let proxy = start(None);
    let from_plugin = get_json(&proxy, "/svc/status");
    let served = get_json(&proxy, "/plugins/status");
    let keys = |value: &Value| {
        let mut keys: Vec<String> = value
            .as_object()
            .map(|object| object.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    };
    assert_eq!(keys(&from_plugin), keys(&served), "{from_plugin}");
    assert_eq!(
        from_plugin["initialization_order"],
        json!(["host_services"])
    );
    let entry = from_plugin["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == "host_services"))
        .unwrap_or_else(|| panic!("no host_services entry: {from_plugin}"));
    assert_eq!(entry["status"], "active");
    assert!(entry["calls"].as_u64().unwrap_or(0) >= 2, "{entry}");

    assert_eq!(
        get_json(&proxy, "/svc/capabilities"),
        json!({
            "http_stream": true,
            "blocking": true,
            "process": true,
            "plugins_status": true,
            "stream_routes": true,
            "hook_bodies": true,
            "public_routes": true,
            "format_adapters": true,
        })
    );
}

/// A plugin built with the SDK's `host-allocator` feature finds the table the
/// `ccproxy` executable exports and allocates with it, so buffers change
/// hands without copies both ways (the heap is shared): a body the host
/// read is kept and freed by the plugin, an answer the plugin made is sent
/// and freed by the host. The library's unit tests (plugin-abi's
/// `allocator`) cover the fallback when there is no table.
#[test]
fn plugins_allocate_with_the_host_allocator() {
    let proxy = start(None);
    for round in 0..20_u8 {
        let answer = get_json(&proxy, "/svc/allocator");
        assert_eq!(
            answer["host_allocator"], true,
            "the plugin uses the system allocator"
        );
        assert_eq!(answer["shared_heap"], true, "{answer}");
        assert_eq!(answer["filler"].as_str().map(str::len), Some(64 * 1024));
        let mut body = vec![round; 200 * 1024];
        body[0] = 7;
        let reply = proxy.request("POST", "/svc/allocator", &[], &body);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let answer = reply.json();
        assert_eq!(answer["received"], 200 * 1024);
        assert_eq!(answer["received_ends"], json!([7, round]));
        assert_eq!(answer["filler"].as_str().map(str::len), Some(64 * 1024));
    }
    assert_eq!(proxy.get("/health").status, 200);
}
