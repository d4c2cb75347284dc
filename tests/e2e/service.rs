//! The proxy as a service, end to end: live reload on SIGHUP and with
//! `ccproxy reload` (plugins added, replaced and retired while a client keeps
//! requesting, a broken config refused with the old state serving), and
//! systemd's notifications on a test `NOTIFY_SOCKET` (READY, RELOADING,
//! WATCHDOG, STOPPING) without systemd.

use std::{
    os::unix::net::UnixDatagram,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use ccproxy_e2e::{Proxy, ProxyOptions, Sandbox, http_get, library_file_name, poll};

const HELLO: &str = "example_hello_system";
const TICKER: &str = "example_sse_ticker";

/// Clients that ask `path` over and over until stopped, counting answers
/// that are not 200.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// Client threads of [`Load`].
const CLIENTS: usize = 4;

impl Load {
    fn start(proxy: &Proxy, path: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let address = proxy.address();
        let threads = (0..CLIENTS)
            .map(|_| {
                thread::spawn({
                    let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                    move || {
                        while !stop.load(Ordering::Relaxed) {
                            match http_get(address, path) {
                                Ok(reply) if reply.status == 200 => {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(reply) => failed.lock().unwrap().push(format!(
                                    "{} {}",
                                    reply.status,
                                    reply.text()
                                )),
                                Err(error) => failed.lock().unwrap().push(error.to_string()),
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Stops the clients; the number of good answers, after checking there
    /// was no other.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let failed = self.failed.lock().unwrap();
        assert!(
            failed.is_empty(),
            "requests failed during reloads: {failed:?}"
        );
        self.ok.load(Ordering::Relaxed)
    }
}

fn reload(proxy: &Proxy) -> ccproxy_e2e::CliOutput {
    let port = proxy.address().port().to_string();
    proxy.sandbox().run_cli(&["reload", "--port", &port], &[])
}

#[test]
fn reloads_add_replace_and_retire_plugins_while_requests_keep_flowing() {
    let sandbox = Sandbox::new();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            plugins: &[HELLO],
            ..ProxyOptions::default()
        },
    );
    assert_eq!(
        proxy.get("/hello/greet?name=Ada").json()["message"],
        "Hello, Ada!"
    );
    assert_eq!(proxy.get("/ticker/stats").status, 404);
    let load = Load::start(&proxy, "/hello/greet?name=Load");

    // A plugin copied into the folder serves after SIGHUP.
    proxy.sandbox().install(TICKER);
    proxy.signal(libc::SIGHUP);
    let served = poll(Duration::from_secs(20), || {
        (proxy.get("/ticker/stats").status == 200).then_some(())
    });
    assert!(
        served.is_some(),
        "the new plugin never served; log:\n{}",
        proxy.log()
    );
    proxy.wait_for_log("reloaded: added sse_ticker; kept 1", Duration::from_secs(5));

    // A changed config section gets a new instance; `ccproxy reload` waits
    // for the outcome and says what changed.
    proxy
        .sandbox()
        .write_config("[plugins.hello_system]\ngreeting = \"Bonjour\"\n");
    let reloaded = reload(&proxy);
    assert_eq!(reloaded.code, 0, "{reloaded:?}");
    assert!(
        reloaded.stdout.contains("replaced hello_system") && reloaded.stdout.contains("kept 1"),
        "{reloaded:?}"
    );
    assert_eq!(
        proxy.get("/hello/greet?name=Ada").json()["message"],
        "Bonjour, Ada!"
    );

    // A broken config is refused: exit 1, the reason, the old state serving.
    proxy
        .sandbox()
        .write_config("[plugins.hello_system\ngreeting = \"Hola\"\n");
    let refused = reload(&proxy);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("reload failed, the old state keeps serving")
            && refused.stderr.contains("config"),
        "{refused:?}"
    );
    assert_eq!(
        proxy.get("/hello/greet?name=Ada").json()["message"],
        "Bonjour, Ada!"
    );
    assert_eq!(proxy.get("/ticker/stats").status, 200);

    // A removed file is retired: its routes answer 404 from the swap on,
    // while a stream that began before finishes on the old plugin, which
    // stops only then.
    proxy
        .sandbox()
        .write_config("[plugins.hello_system]\ngreeting = \"Bonjour\"\n");
    let address = proxy.address();
    let stream = thread::spawn(move || {
        http_get(address, "/ticker/events?count=8&interval_ms=150").map(|reply| reply.text())
    });
    thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(proxy.sandbox().plugin_dir().join(library_file_name(TICKER))).unwrap();
    let retired = reload(&proxy);
    assert_eq!(retired.code, 0, "{retired:?}");
    assert!(retired.stdout.contains("removed sse_ticker"), "{retired:?}");
    assert_eq!(proxy.get("/ticker/stats").status, 404);
    let ticker_stopped = |log: &str| {
        log.lines()
            .any(|line| line.contains("plugin stopped") && line.contains("sse_ticker"))
    };
    assert!(
        !ticker_stopped(&proxy.log()),
        "the retired plugin stopped while its stream was still open:\n{}",
        proxy.log()
    );
    let events = stream
        .join()
        .unwrap()
        .expect("the stream that began before the reload");
    assert_eq!(events.matches("event: tick").count(), 8, "{events}");
    let stopped = poll(Duration::from_secs(10), || {
        ticker_stopped(&proxy.log()).then_some(())
    });
    assert!(
        stopped.is_some(),
        "the retired plugin never stopped:\n{}",
        proxy.log()
    );

    let answered = load.finish();
    assert!(answered > 0, "the client loop never got an answer");
    let entry = proxy.plugin_entry("hello_system");
    assert_eq!(entry["status"], "active", "{entry:#}");
}

#[test]
fn a_broken_new_plugin_file_fails_the_reload_and_changes_nothing() {
    let proxy = Proxy::start(ProxyOptions {
        plugins: &[HELLO],
        ..ProxyOptions::default()
    });
    let garbage = proxy
        .sandbox()
        .plugin_dir()
        .join(library_file_name("garbage"));
    std::fs::write(&garbage, b"not a library").unwrap();
    let refused = reload(&proxy);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("libgarbage.so") && refused.stderr.contains("refused"),
        "{refused:?}"
    );
    assert_eq!(
        proxy.get("/hello/greet?name=Ada").json()["message"],
        "Hello, Ada!"
    );
}

#[test]
fn reload_without_a_running_server_says_how_to_start_one() {
    let sandbox = Sandbox::new();
    let output = sandbox.run_cli(&["reload", "--port", "1"], &[]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(
        output.stderr.contains("no running ccproxy found"),
        "{output:?}"
    );
}

/// Reads datagrams until one contains `wanted` (or the time is up).
fn expect_notification(socket: &UnixDatagram, wanted: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(length) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
            let found = message.lines().any(|line| line == wanted);
            seen.push(message);
            if found {
                return;
            }
        }
    }
    panic!("no {wanted} on NOTIFY_SOCKET; got {seen:?}");
}

#[test]
fn systemd_hears_ready_reloading_watchdog_and_stopping() {
    let sandbox = Sandbox::new();
    let socket_path = sandbox.root().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let socket_env = socket_path.display().to_string();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            plugins: &[HELLO],
            env: &[("NOTIFY_SOCKET", &socket_env), ("WATCHDOG_USEC", "200000")],
            ..ProxyOptions::default()
        },
    );
    let mut seen = Vec::new();
    expect_notification(&socket, "READY=1", &mut seen);
    expect_notification(&socket, "WATCHDOG=1", &mut seen);
    proxy.signal(libc::SIGHUP);
    expect_notification(&socket, "RELOADING=1", &mut seen);
    expect_notification(&socket, "READY=1", &mut seen);
    let reloading = seen
        .iter()
        .find(|message| message.contains("RELOADING=1"))
        .unwrap();
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let (status, log) = proxy.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status:?}\n{log}");
    expect_notification(&socket, "STOPPING=1", &mut seen);
}
