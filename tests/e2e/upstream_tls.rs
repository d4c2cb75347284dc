//! HTTPS upstreams end to end: the real host with `claude_api` in front of the mock upstream
//! in its TLS mode (a CA made at start-up, `--tls-ca-out`). The CA is trusted through
//! `http.extra_ca_file` (file, `HTTP__EXTRA_CA_FILE`) or `SSL_CERT_FILE`; HTTP/2 is
//! negotiated by ALPN when both sides offer it and HTTP/1.1 otherwise; an untrusted
//! certificate is a 502 in the client's format that says what to do; a CA file that cannot be
//! used stops `serve` with one line. (HTTPS through `HTTPS_PROXY` is in `upstream_proxy.rs`.)

use std::path::PathBuf;

use ccproxy_e2e::{Proxy, ProxyOptions, Reply, Sandbox, mock::Mock};
use serde_json::{Value, json};

/// The API key the proxy holds; the mock refuses any other.
const API_KEY: &str = "test-key";
const MODEL: &str = "claude-sonnet-4-20250514";

/// The mock upstream serving HTTPS with a CA of its own, and that CA's PEM file.
struct TlsMock {
    mock: Mock,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsMock {
    /// Starts the mock with `--tls-ca-out` and `args`.
    fn start(args: &[&str]) -> TlsMock {
        let dir = tempfile::Builder::new()
            .prefix("ccproxy-e2e-tls-")
            .tempdir()
            .expect("a temporary directory can be created");
        let ca_file = dir.path().join("mock-ca.pem");
        let ca_arg = ca_file.display().to_string();
        let mut all = vec![
            "--tls-ca-out",
            ca_arg.as_str(),
            "--expect-header",
            "x-api-key=test-key",
            "--expect-header",
            "anthropic-version",
        ];
        all.extend_from_slice(args);
        let mock = Mock::start(&all);
        TlsMock {
            mock,
            ca_file,
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:PORT`, for `PLUGINS__CLAUDE_API__BASE_URL`.
    fn url(&self) -> String {
        format!("https://{}", self.mock.address())
    }

    fn ca(&self) -> String {
        self.ca_file.display().to_string()
    }

    /// The one request that reached `/v1/messages`.
    fn only_request(&self) -> Value {
        let requests = self.mock.requests_to("/v1/messages");
        assert_eq!(requests.len(), 1, "{requests:?}");
        requests[0].clone()
    }
}

/// The proxy with `claude_api` (API key mode) in front of `base_url`, with `env` and an
/// optional config file.
fn proxy_for(base_url: &str, env: &[(&str, &str)], config_toml: Option<&str>) -> Proxy {
    let mut all_env = vec![
        ("PLUGINS__CLAUDE_API__BASE_URL", base_url),
        ("ANTHROPIC_API_KEY", API_KEY),
    ];
    all_env.extend_from_slice(env);
    Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        env: &all_env,
        config_toml,
        ..ProxyOptions::default()
    })
}

fn ask(proxy: &Proxy, path: &str, body: &Value) -> Reply {
    proxy.request(
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn anthropic(stream: bool) -> Value {
    json!({
        "model": MODEL, "max_tokens": 100, "stream": stream,
        "messages": [{"role": "user", "content": "Hello"}],
    })
}

fn ask_anthropic(proxy: &Proxy) -> Reply {
    ask(proxy, "/claude/v1/messages", &anthropic(false))
}

#[test]
fn with_the_ca_trusted_http2_is_negotiated_and_streams_work() {
    let upstream = TlsMock::start(&[]);
    let ca = upstream.ca();
    let proxy = proxy_for(&upstream.url(), &[("HTTP__EXTRA_CA_FILE", &ca)], None);
    let reply = ask_anthropic(&proxy);
    assert_eq!(reply.status, 200, "{}\nlog:\n{}", reply.text(), proxy.log());
    assert_eq!(reply.json()["type"], "message", "{}", reply.text());
    let request = upstream.only_request();
    assert_eq!(request["version"], "HTTP/2.0", "{request}");
    assert_eq!(request["tls"], json!({"alpn": "h2"}), "{request}");
    assert_eq!(request["headers"]["x-api-key"], API_KEY);

    // A stream over the same HTTP/2 connection ends as Anthropic streams end.
    upstream.mock.reset();
    let reply = ask(&proxy, "/claude/v1/messages", &anthropic(true));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    assert!(text.contains("event: message_stop"), "{text}");
    assert_eq!(upstream.only_request()["version"], "HTTP/2.0");
}

#[test]
fn an_upstream_offering_only_http1_is_spoken_to_in_http1() {
    let upstream = TlsMock::start(&["--alpn", "http/1.1"]);
    let ca = upstream.ca();
    let proxy = proxy_for(&upstream.url(), &[("HTTP__EXTRA_CA_FILE", &ca)], None);
    let reply = ask_anthropic(&proxy);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let request = upstream.only_request();
    assert_eq!(request["version"], "HTTP/1.1", "{request}");
    assert_eq!(request["tls"], json!({"alpn": "http/1.1"}), "{request}");
}

#[test]
fn with_http2_off_the_proxy_offers_no_alpn_and_speaks_http1() {
    let upstream = TlsMock::start(&[]);
    let ca = upstream.ca();
    let proxy = proxy_for(
        &upstream.url(),
        &[("HTTP__EXTRA_CA_FILE", &ca), ("HTTP__HTTP2", "false")],
        None,
    );
    let reply = ask_anthropic(&proxy);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let request = upstream.only_request();
    assert_eq!(request["version"], "HTTP/1.1", "{request}");
    assert_eq!(request["tls"], json!({"alpn": null}), "{request}");
}

#[test]
fn the_ca_can_come_from_the_config_file_or_ssl_cert_file() {
    let upstream = TlsMock::start(&[]);
    let config = format!("[http]\nextra_ca_file = {}\n", toml_string(&upstream.ca()));
    let proxy = proxy_for(&upstream.url(), &[], Some(&config));
    let reply = ask_anthropic(&proxy);
    assert_eq!(reply.status, 200, "{}\nlog:\n{}", reply.text(), proxy.log());
    drop(proxy);

    let ca = upstream.ca();
    let proxy = proxy_for(&upstream.url(), &[("SSL_CERT_FILE", &ca)], None);
    let reply = ask_anthropic(&proxy);
    assert_eq!(reply.status, 200, "{}\nlog:\n{}", reply.text(), proxy.log());
    assert_eq!(upstream.mock.requests_to("/v1/messages").len(), 2);
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

#[test]
fn without_the_ca_the_client_gets_a_502_in_its_format_saying_what_to_do() {
    let upstream = TlsMock::start(&[]);
    let proxy = proxy_for(&upstream.url(), &[], None);
    let clients = [
        ("/claude/v1/messages", anthropic(false)),
        (
            "/claude/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}),
        ),
        (
            "/claude/v1/responses",
            json!({"model": MODEL, "input": "Hello"}),
        ),
    ];
    for (path, body) in clients {
        let reply = ask(&proxy, path, &body);
        assert_eq!(reply.status, 502, "{path}: {}", reply.text());
        let body = reply.json();
        if path == "/claude/v1/messages" {
            assert_eq!(body["type"], "error", "{body}");
        } else {
            assert!(body.get("type").is_none(), "{path}: {body}");
        }
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no error message in {body}"));
        assert!(
            message.starts_with(&format!(
                "provider claude_api: upstream {}/v1/messages unreachable: its TLS certificate \
                 was not trusted (invalid peer certificate: UnknownIssuer); ",
                upstream.url()
            )),
            "{path}: {message}"
        );
        assert!(
            message.contains("trust that CA's PEM file with http.extra_ca_file"),
            "{path}: {message}"
        );
    }
    assert!(
        upstream.mock.requests_to("/v1/messages").is_empty(),
        "nothing was sent over a connection whose certificate was refused"
    );
    assert!(
        upstream
            .mock
            .log()
            .contains("TLS handshake failed: received fatal alert: UnknownCA"),
        "{}",
        upstream.mock.log()
    );
}

#[test]
fn a_ca_file_that_cannot_be_used_stops_serve_with_one_line() {
    let sandbox = Sandbox::new();
    let missing = sandbox.root().join("nope.pem");
    let missing_arg = missing.display().to_string();
    let output = sandbox.run_cli(
        &["serve", "--port", "0"],
        &[("HTTP__EXTRA_CA_FILE", &missing_arg)],
    );
    assert_eq!(output.code, 2, "{output:?}");
    let expected = format!(
        "ccproxy: http.extra_ca_file = \"{missing_arg}\" from env HTTP__EXTRA_CA_FILE: cannot read it: "
    );
    let line = output.stderr.trim_end();
    assert!(line.starts_with(&expected), "{line}");
    assert!(
        line.ends_with("; point it at a PEM file of CA certificates or remove the setting"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");

    let not_pem = sandbox.root().join("key.txt");
    std::fs::write(&not_pem, "not a certificate\n").expect("the sandbox is writable");
    sandbox.write_config("[http]\nextra_ca_file = \"../../key.txt\"\n");
    let output = sandbox.run_cli(&["serve", "--port", "0"], &[]);
    assert_eq!(output.code, 2, "{output:?}");
    let config = sandbox.config_dir().join("config.toml");
    let resolved = sandbox.config_dir().join("../../key.txt");
    assert_eq!(
        output.stderr.trim_end(),
        format!(
            "ccproxy: http.extra_ca_file = \"{}\" in {}: it holds no PEM certificate (a \
             -----BEGIN CERTIFICATE----- block); point it at a PEM file of CA certificates or \
             remove the setting",
            resolved.display(),
            config.display()
        )
    );
}
