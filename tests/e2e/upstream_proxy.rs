//! `HTTPS_PROXY` / `HTTP_PROXY` are honoured: upstream connections go through a
//! `CONNECT` tunnel of the proxy the environment names, and `NO_PROXY` exempts
//! hosts from it. An HTTPS upstream gets TLS inside the tunnel, end to end.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use ccproxy_e2e::{Proxy, ProxyOptions, mock::Mock};
use serde_json::json;

/// A minimal forward proxy: answers `CONNECT host:port` with a tunnel, records
/// each target and the first byte the client sent through it, serves a bounded
/// number of tunnels and stops.
struct ConnectProxy {
    url: String,
    targets: Arc<Mutex<Vec<String>>>,
    first_bytes: Arc<Mutex<Vec<u8>>>,
}

impl ConnectProxy {
    fn start(max_tunnels: usize) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("127.0.0.1:0 can be bound");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let first_bytes = Arc::new(Mutex::new(Vec::new()));
        let (seen, firsts) = (targets.clone(), first_bytes.clone());
        thread::spawn(move || {
            for client in listener.incoming().take(max_tunnels).flatten() {
                let (seen, firsts) = (seen.clone(), firsts.clone());
                thread::spawn(move || tunnel(client, &seen, &firsts));
            }
        });
        ConnectProxy {
            url,
            targets,
            first_bytes,
        }
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().expect("not poisoned").clone()
    }

    /// The first byte of what each tunnel carried from the client.
    fn first_bytes(&self) -> Vec<u8> {
        self.first_bytes.lock().expect("not poisoned").clone()
    }
}

fn tunnel(client: TcpStream, seen: &Mutex<Vec<String>>, firsts: &Mutex<Vec<u8>>) {
    client.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(client.try_clone().expect("clonable socket"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the remaining header lines.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut words = request_line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ =
            (&client).write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    seen.lock().expect("not poisoned").push(target.to_owned());
    let Ok(upstream) = TcpStream::connect(target) else {
        let _ = (&client).write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    let _ = (&client).write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n");
    let (mut upstream_read, mut client_write) = (
        upstream.try_clone().expect("clonable"),
        client.try_clone().expect("clonable"),
    );
    let pump = thread::spawn(move || {
        let _ = std::io::copy(&mut upstream_read, &mut client_write);
        let _ = client_write.shutdown(std::net::Shutdown::Write);
    });
    // Bytes the reader already buffered belong to the tunnel too.
    let mut upstream_write = upstream;
    let buffered = reader.buffer().to_vec();
    let _ = upstream_write.write_all(&buffered);
    let mut noted_first = !buffered.is_empty();
    if let Some(first) = buffered.first() {
        firsts.lock().expect("not poisoned").push(*first);
    }
    let mut rest = reader.into_inner();
    let mut chunk = [0u8; 8192];
    loop {
        match rest.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !noted_first {
                    firsts.lock().expect("not poisoned").push(chunk[0]);
                    noted_first = true;
                }
                if upstream_write.write_all(&chunk[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = upstream_write.shutdown(std::net::Shutdown::Write);
    let _ = pump.join();
}

fn ask(proxy: &Proxy) -> u16 {
    let body = json!({"model": "claude-sonnet-4-20250514", "max_tokens": 50, "messages": [{"role": "user", "content": "Hello"}]});
    proxy
        .request(
            "POST",
            "/claude/v1/messages",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
        .status
}

#[test]
fn upstream_requests_go_through_the_proxy_the_environment_names() {
    let mock = Mock::start(&[]);
    let forward = ConnectProxy::start(8);
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        env: &[
            ("PLUGINS__CLAUDE_API__BASE_URL", &mock.url()),
            ("ANTHROPIC_API_KEY", "test-key"),
            ("HTTP_PROXY", &forward.url),
            ("HTTPS_PROXY", &forward.url),
        ],
        ..ProxyOptions::default()
    });
    assert_eq!(ask(&proxy), 200, "log:\n{}", proxy.log());
    let targets = forward.targets();
    assert_eq!(
        targets,
        vec![mock.address().to_string()],
        "the tunnel went to the mock upstream"
    );
    assert_eq!(
        mock.requests_to("/v1/messages").len(),
        1,
        "the request arrived through the tunnel"
    );
}

#[test]
fn no_proxy_exempts_a_host() {
    let mock = Mock::start(&[]);
    let forward = ConnectProxy::start(8);
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        env: &[
            ("PLUGINS__CLAUDE_API__BASE_URL", &mock.url()),
            ("ANTHROPIC_API_KEY", "test-key"),
            ("HTTP_PROXY", &forward.url),
            ("NO_PROXY", "127.0.0.1"),
        ],
        ..ProxyOptions::default()
    });
    assert_eq!(ask(&proxy), 200, "log:\n{}", proxy.log());
    assert!(
        forward.targets().is_empty(),
        "NO_PROXY host went through the proxy"
    );
    assert_eq!(mock.requests_to("/v1/messages").len(), 1);
}

#[test]
fn an_https_upstream_is_reached_with_tls_inside_the_tunnel() {
    let dir = tempfile::Builder::new()
        .prefix("ccproxy-e2e-tls-")
        .tempdir()
        .expect("a temporary directory can be created");
    let ca_file = dir.path().join("mock-ca.pem").display().to_string();
    let mock = Mock::start(&["--tls-ca-out", &ca_file]);
    let forward = ConnectProxy::start(8);
    let base_url = format!("https://{}", mock.address());
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        env: &[
            ("PLUGINS__CLAUDE_API__BASE_URL", &base_url),
            ("ANTHROPIC_API_KEY", "test-key"),
            ("HTTPS_PROXY", &forward.url),
            ("HTTP__EXTRA_CA_FILE", &ca_file),
        ],
        ..ProxyOptions::default()
    });
    assert_eq!(ask(&proxy), 200, "log:\n{}", proxy.log());
    assert_eq!(
        forward.targets(),
        vec![mock.address().to_string()],
        "the tunnel went to the mock upstream"
    );
    // 0x16 opens a TLS handshake record: the forward proxy carried TLS, not HTTP.
    assert_eq!(forward.first_bytes(), vec![0x16]);
    let requests = mock.requests_to("/v1/messages");
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]["tls"],
        json!({"alpn": "h2"}),
        "TLS ended at the mock, which negotiated HTTP/2: {}",
        requests[0]
    );
}
