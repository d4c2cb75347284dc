//! Detection: the identity headers of the Claude CLI installed here, learnt
//! the way the original's detection does (ccproxy-api `detection_service.py`)
//! instead of a fixed old version.
//!
//! The CLI (`cli_path`, `claude` on `PATH` by default) tells its version
//! (`claude --version`); the headers of that version are read from
//! `$XDG_CACHE_HOME/ccproxy/claude_headers_<version>.json` when cached, else
//! the CLI is run once (`claude -p test`) with `ANTHROPIC_BASE_URL` at a
//! one-shot capture point of this plugin on 127.0.0.1 and a private home under
//! the cache folder, its request's identity headers kept (`user-agent`,
//! `x-app`, `x-stainless-*` …; never credentials) and cached. Without a CLI
//! the bundled claude-cli 1.0.113 snapshot stays in use.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    time::{Duration, Instant},
};

use ccproxy_plugin_abi::{Command, Context, serde_json};
use ccproxy_plugin_kit::private_files::PrivateDir;

use crate::auth::is_identity_header;

/// How long the CLI may take to send its request.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head and body read from the CLI.
const MAX_REQUEST_BYTES: usize = 4 << 20;

/// What detection learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detected {
    /// The CLI's version (`2.1.332`).
    pub(crate) version: String,
    /// Its identity headers, lower-case names, in the order it sent them.
    pub(crate) headers: Vec<(String, String)>,
    /// Whether they came from the cache (else from a run of the CLI).
    pub(crate) cached: bool,
}

/// The version in `claude --version`'s output (`2.1.332 (Claude Code)`).
pub(crate) fn parse_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|word| {
            word.split('.').count() >= 3
                && word
                    .split('.')
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
}

/// The identity headers of a raw HTTP/1.1 request head.
pub(crate) fn identity_headers(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if is_identity_header(&name) && !headers.iter().any(|(seen, _)| *seen == name) {
            headers.push((name, value.trim().to_owned()));
        }
    }
    headers
}

/// `$XDG_CACHE_HOME/ccproxy` (`~/.cache/ccproxy` without it).
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("ccproxy"))
}

fn cache_name(version: &str) -> String {
    format!("claude_headers_{version}.json")
}

/// The cached headers of `version`, if any (read without following links).
pub(crate) fn load(dir: &std::path::Path, version: &str) -> Option<Vec<(String, String)>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(cache_name(version)))
        .ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    // Pairs, in the order the CLI sent them.
    let headers: Vec<(String, String)> = value
        .get("headers")?
        .as_array()?
        .iter()
        .filter_map(|pair| {
            let name = pair.get(0)?.as_str()?.to_ascii_lowercase();
            let value = pair.get(1)?.as_str()?.to_owned();
            is_identity_header(&name).then_some((name, value))
        })
        .collect();
    (!headers.is_empty()).then_some(headers)
}

/// Caches `headers` for `version` (folder 0700, file 0600, never through a link).
pub(crate) fn store(
    dir: PathBuf,
    version: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let folder = PrivateDir::open(dir).map_err(|error| error.message().to_owned())?;
    folder.ensure().map_err(|error| error.to_string())?;
    let document = serde_json::json!({"cli": "claude", "version": version, "headers": headers});
    folder
        .write(&cache_name(version), document.to_string().as_bytes())
        .map_err(|error| error.to_string())
}

/// Accepts one request on `listener` within `timeout`, answers it with a short
/// stream so the CLI ends, and returns its head.
pub(crate) fn capture(listener: &TcpListener, timeout: Duration) -> Result<String, String> {
    listener
        .set_nonblocking(true)
        .map_err(|error| error.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut stream: TcpStream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!("no request within {} s", timeout.as_secs()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => return Err(error.to_string()),
        }
    };
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(timeout)))
        .map_err(|error| error.to_string())?;
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err("the request head is too large".to_owned());
        }
        let read = stream
            .read(&mut buffer)
            .map_err(|error| error.to_string())?;
        if read == 0 {
            return Err("the CLI closed the connection before its request head".to_owned());
        }
        bytes.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    // Reads the body too, so the CLI sees its request taken before the answer.
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0)
        .min(MAX_REQUEST_BYTES);
    while bytes.len() < head_end + 4 + length {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
        }
    }
    let _ = stream.write_all(ANSWER.as_bytes());
    let _ = stream.flush();
    Ok(head)
}

/// A complete, minimal Messages stream: the CLI prints `ok` and exits.
const ANSWER: &str = concat!(
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_detect\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-detect\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":1}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

/// Runs `program ARGS` to its end and returns its stdout.
async fn output(ctx: &Context, command: Command) -> Result<String, String> {
    let mut child = ctx
        .spawn_process(command)
        .await
        .map_err(|error| error.message().to_owned())?;
    let mut stdout = Vec::new();
    while let Some(piece) = child
        .read_stdout()
        .await
        .map_err(|error| error.message().to_owned())?
    {
        stdout.extend_from_slice(&piece);
    }
    let status = child
        .wait()
        .await
        .map_err(|error| error.message().to_owned())?;
    if !status.success() {
        return Err(format!("exited with {status:?}"));
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Learns the identity of the Claude CLI `program` (see the module docs).
pub(crate) async fn detect(ctx: &Context, program: &str) -> Result<Detected, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let version_text = output(
        ctx,
        Command::new(program)
            .arg("--version")
            .env("DISABLE_AUTOUPDATER", "1"),
    )
    .await
    .map_err(|error| format!("{program} --version: {error}"))?;
    let version = parse_version(&version_text)
        .ok_or_else(|| format!("{program} --version printed no version: {version_text:?}"))?;
    let dir = cache_dir().ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    let cached_dir = dir.clone();
    let cached_version = version.clone();
    if let Some(headers) = ctx
        .blocking(move || load(&cached_dir, &cached_version))
        .await
        .map_err(|error| error.message().to_owned())?
    {
        return Ok(Detected {
            version,
            headers,
            cached: true,
        });
    }
    let home = dir.join("claude-detection-home");
    let home_for_setup = home.clone();
    let listener = ctx
        .blocking(move || -> Result<TcpListener, String> {
            let home = PrivateDir::open(home_for_setup).map_err(|e| e.message().to_owned())?;
            home.ensure().map_err(|error| error.to_string())?;
            TcpListener::bind(("127.0.0.1", 0)).map_err(|error| error.to_string())
        })
        .await
        .map_err(|error| error.message().to_owned())??;
    let port = listener
        .local_addr()
        .map_err(|error| error.to_string())?
        .port();
    let home_text = home.display().to_string();
    let mut child = ctx
        .spawn_process(
            Command::new(program)
                .args(["-p", "test", "--output-format", "json"])
                .env_clear()
                .env("PATH", path)
                .env("HOME", &home_text)
                .env("CLAUDE_CONFIG_DIR", format!("{home_text}/.claude"))
                .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{port}"))
                // A placeholder: the capture point answers anything, and no
                // credential of the user's ever reaches it.
                .env("ANTHROPIC_API_KEY", "sk-ant-ccproxy-detection")
                .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
                .env("DISABLE_AUTOUPDATER", "1")
                .current_dir(&home_text),
        )
        .await
        .map_err(|error| format!("{program}: {}", error.message()))?;
    // Nothing to read: the prompt is an argument.
    let _ = child.close_stdin().await;
    let captured = ctx
        .blocking(move || capture(&listener, CAPTURE_TIMEOUT))
        .await
        .map_err(|error| error.message().to_owned());
    // The request is all detection needs: the CLI does not get to run on.
    let _ = child.kill().await;
    let _ = child.wait().await;
    let headers = identity_headers(&captured??);
    if headers.is_empty() {
        return Err(format!("{program} sent no identity headers"));
    }
    let to_store = headers.clone();
    let stored_version = version.clone();
    if let Err(error) = ctx
        .blocking(move || store(dir, &stored_version, &to_store))
        .await
        .map_err(|error| error.message().to_owned())?
    {
        ccproxy_plugin_abi::warn!("claude_api: cannot cache the detected headers: {error}");
    }
    Ok(Detected {
        version,
        headers,
        cached: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_cli_banner() {
        assert_eq!(
            parse_version("2.1.332 (Claude Code)\n").as_deref(),
            Some("2.1.332")
        );
        assert_eq!(parse_version("claude 1.0.113").as_deref(), Some("1.0.113"));
        assert_eq!(parse_version("Claude Code"), None);
        assert_eq!(parse_version("v2.1"), None);
    }

    /// What Claude Code 2.1.332 sent (tests/data/clients/claude_code_2.1.332.json).
    const HEAD: &str = "POST /v1/messages?beta=true HTTP/1.1\r\nAccept: application/json\r\nContent-Type: application/json\r\nUser-Agent: claude-cli/2.1.332 (external, sdk-cli)\r\nX-Claude-Code-Session-Id: a0559ebc\r\nX-Stainless-Arch: x64\r\nX-Stainless-Package-Version: 0.128.0\r\nanthropic-dangerous-direct-browser-access: true\r\nanthropic-version: 2023-06-01\r\nx-api-key: sk-ant-secret\r\nauthorization: Bearer secret\r\nx-app: cli\r\nHost: 127.0.0.1:1\r\nContent-Length: 2";

    #[test]
    fn only_identity_headers_are_kept_never_credentials() {
        let headers = identity_headers(HEAD);
        let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "accept",
                "user-agent",
                "x-stainless-arch",
                "x-stainless-package-version",
                "anthropic-dangerous-direct-browser-access",
                "x-app"
            ]
        );
        assert_eq!(headers[1].1, "claude-cli/2.1.332 (external, sdk-cli)");
    }

    #[test]
    fn the_capture_point_takes_one_request_and_answers_a_stream() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let address = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(address).unwrap();
            stream
                .write_all(format!("{HEAD}\r\n\r\n{{}}").as_bytes())
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        });
        let head = capture(&listener, Duration::from_secs(10)).unwrap();
        assert!(head.contains("User-Agent: claude-cli/2.1.332"), "{head}");
        let answer = client.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("message_stop"), "{answer}");

        let idle = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let error = capture(&idle, Duration::from_millis(100)).unwrap_err();
        assert!(error.contains("no request"), "{error}");
    }

    #[test]
    fn the_cache_keeps_identity_headers_per_version() {
        let dir = std::env::temp_dir().join(format!("ccproxy-detect-test-{}", std::process::id()));
        let folder = dir.join("ccproxy");
        let headers = identity_headers(HEAD);
        store(folder.clone(), "2.1.332", &headers).unwrap();
        assert_eq!(load(&folder, "2.1.332"), Some(headers));
        assert_eq!(load(&folder, "2.1.333"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
