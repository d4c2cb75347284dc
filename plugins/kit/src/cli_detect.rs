//! Detection of an installed command-line client (Claude Code, the Codex
//! CLI): what a plugin that speaks as that client learns from the real one
//! instead of a fixed old snapshot, the way the original's detection services
//! do (feature `cli_detect`).
//!
//! The client tells its version ([`version`]); what was learnt for that
//! version is read from a [`Cache`] (`$XDG_CACHE_HOME/ccproxy/<cli>_headers_<version>.json`)
//! when there, else the client is run once against a one-shot capture point
//! on 127.0.0.1 ([`run_and_capture`], with a private home from
//! [`prepare_run`]) that takes its first request, answers it with a short
//! canned stream so the client ends, and hands the request to the plugin,
//! which keeps what it needs and caches it. What the plugin keeps (identity
//! headers, a prompt) and how the client is pointed at the capture point
//! (environment, a config file) stay in the plugin.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use ccproxy_plugin_abi::{Command, Context, Value, serde_json};

use crate::private_files::PrivateDir;

/// How long a client may take to send its request.
pub const CAPTURE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most headers a captured request may have.
const MAX_HEADERS: usize = 256;

/// The version in a client's `--version` output: the first word of three or
/// more dot-separated numbers (`2.1.332 (Claude Code)`, `codex-cli 0.171.0`).
pub fn parse_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|word| {
            word.split('.').count() >= 3
                && word
                    .split('.')
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
}

/// Runs `command` (a client's `--version`; `program` names it in errors) and
/// returns the version it prints.
pub async fn version(ctx: &Context, program: &str, command: Command) -> Result<String, String> {
    let text = output(ctx, command)
        .await
        .map_err(|error| format!("{program} --version: {error}"))?;
    parse_version(&text).ok_or_else(|| format!("{program} --version printed no version: {text:?}"))
}

/// Runs `command` to its end and returns its stdout.
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

/// What was learnt about the client `cli`, one JSON file per version in
/// `$XDG_CACHE_HOME/ccproxy` (folder 0700, files 0600, never through a link).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    cli: String,
}

impl Cache {
    /// The cache of `cli` (`claude`, `codex`) in `$XDG_CACHE_HOME/ccproxy`
    /// (`~/.cache/ccproxy` without it).
    pub fn new(cli: &str) -> Result<Self, String> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
        Ok(Self::at(base.join("ccproxy"), cli))
    }

    /// The cache of `cli` in `dir`.
    pub fn at(dir: PathBuf, cli: &str) -> Self {
        Self {
            dir,
            cli: cli.to_owned(),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The private home a run of the client gets (`<cli>-detection-home`),
    /// so nothing of the user's (login, settings) reaches it.
    pub fn run_home(&self) -> PathBuf {
        self.dir.join(format!("{}-detection-home", self.cli))
    }

    /// The file of `version`: `<cli>_headers_<version>.json`.
    pub fn file_name(&self, version: &str) -> String {
        format!("{}_headers_{version}.json", self.cli)
    }

    /// The cached document of `version`, if any (read without following
    /// links); the plugin checks what it holds.
    pub fn read(&self, version: &str) -> Option<Value> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.dir.join(self.file_name(version)))
            .ok()?;
        let mut text = String::new();
        file.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Caches `learnt` (a JSON object) for `version`, with `cli` and
    /// `version` added, atomically.
    pub fn write(&self, version: &str, learnt: Value) -> Result<(), String> {
        let folder =
            PrivateDir::open(self.dir.clone()).map_err(|error| error.message().to_owned())?;
        let mut document = match learnt {
            Value::Object(fields) => fields,
            other => return Err(format!("not a JSON object: {other}")),
        };
        document.insert("cli".to_owned(), Value::from(self.cli.as_str()));
        document.insert("version".to_owned(), Value::from(version));
        folder
            .write(
                &self.file_name(version),
                Value::Object(document).to_string().as_bytes(),
            )
            .map_err(|error| error.to_string())
    }

    /// [`Cache::read`] off the plugin's async tasks.
    pub async fn load(&self, ctx: &Context, version: &str) -> Result<Option<Value>, String> {
        let (cache, version) = (self.clone(), version.to_owned());
        ctx.blocking(move || cache.read(&version))
            .await
            .map_err(|error| error.message().to_owned())
    }

    /// [`Cache::write`] off the plugin's async tasks.
    pub async fn store(&self, ctx: &Context, version: &str, learnt: Value) -> Result<(), String> {
        let (cache, version) = (self.clone(), version.to_owned());
        ctx.blocking(move || cache.write(&version, learnt))
            .await
            .map_err(|error| error.message().to_owned())?
    }
}

/// Makes the private `home` of a run of the client (folder 0700) and binds
/// the capture point on 127.0.0.1; `setup` then writes what the client needs
/// in its home (a config naming the capture point's port, say).
pub async fn prepare_run(
    ctx: &Context,
    home: PathBuf,
    setup: impl FnOnce(&PrivateDir, u16) -> std::io::Result<()> + Send + 'static,
) -> Result<TcpListener, String> {
    ctx.blocking(move || -> Result<TcpListener, String> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|error| error.to_string())?;
        let port = listener
            .local_addr()
            .map_err(|error| error.to_string())?
            .port();
        let home = PrivateDir::open(home).map_err(|error| error.message().to_owned())?;
        setup(&home, port).map_err(|error| error.to_string())?;
        Ok(listener)
    })
    .await
    .map_err(|error| error.message().to_owned())?
}

/// A request taken by the capture point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRequest {
    /// Its headers, names as sent, in the order sent.
    pub headers: Vec<(String, String)>,
    /// What came after the head (`content-length` bytes, when it says so).
    pub body: Vec<u8>,
}

impl CapturedRequest {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(sent, _)| sent.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The head of an HTTP/1.x request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Its headers, names as sent, values trimmed (invalid UTF-8 replaced),
    /// in the order sent.
    pub headers: Vec<(String, String)>,
    /// Its length in bytes, with the blank line that ends it.
    pub length: usize,
}

/// Parses the head of an HTTP/1.x request at the start of `bytes`; `None`
/// while it is incomplete.
pub fn parse_head(bytes: &[u8]) -> Result<Option<RequestHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => Ok(Some(RequestHead {
            headers: request
                .headers
                .iter()
                .map(|header| {
                    (
                        header.name.to_owned(),
                        String::from_utf8_lossy(header.value).trim().to_owned(),
                    )
                })
                .collect(),
            length,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(error) => Err(format!("the request head is malformed: {error}")),
    }
}

/// Runs the client (`command`, which points it at `listener`; `program`
/// names it in errors) until the capture point has its first request
/// ([`capture`], at most `max_bytes`, answered with `answer`) or the client
/// ended without one, then stops it.
pub async fn run_and_capture(
    ctx: &Context,
    program: &str,
    command: Command,
    listener: TcpListener,
    max_bytes: usize,
    answer: &'static str,
) -> Result<CapturedRequest, String> {
    let mut child = ctx
        .spawn_process(command)
        .await
        .map_err(|error| format!("{program}: {}", error.message()))?;
    // Nothing to read: a client otherwise waits for more prompt on stdin.
    let _ = child.close_stdin().await;
    let exited = Arc::new(AtomicBool::new(false));
    let flag = exited.clone();
    let captured = {
        // The capture ends with the client's request, or soon after the
        // client ends without one.
        let mut capture = pin!(ctx.blocking(move || capture(
            &listener,
            CAPTURE_TIMEOUT,
            max_bytes,
            answer,
            &flag
        )));
        let mut wait = pin!(child.wait());
        let mut waited = false;
        std::future::poll_fn(|cx| {
            if !waited && wait.as_mut().poll(cx).is_ready() {
                waited = true;
                exited.store(true, Ordering::SeqCst);
            }
            capture.as_mut().poll(cx)
        })
        .await
        .map_err(|error| error.message().to_owned())
    };
    // The request is all detection needs: the client does not get to run on.
    let _ = child.kill().await;
    let _ = child.wait().await;
    captured?
}

/// Accepts one request on `listener` within `timeout` (or until `exited`
/// says the client is gone), reads its head and body (at most `max_bytes`
/// each), answers it with `answer` and returns it.
pub fn capture(
    listener: &TcpListener,
    timeout: Duration,
    max_bytes: usize,
    answer: &str,
    exited: &AtomicBool,
) -> Result<CapturedRequest, String> {
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
                if exited.load(Ordering::SeqCst) {
                    // One more look: its request may have come just before it ended.
                    match listener.accept() {
                        Ok((stream, _)) => break stream,
                        Err(_) => return Err("the CLI ended without a request".to_owned()),
                    }
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
    let head = loop {
        if let Some(head) = parse_head(&bytes)? {
            break head;
        }
        if bytes.len() > max_bytes {
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
    let head_length = head.length;
    let mut request = CapturedRequest {
        headers: head.headers,
        body: Vec::new(),
    };
    // Reads the body too, so the client sees its request taken before the answer.
    let length = request
        .header("content-length")
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(0)
        .min(max_bytes);
    while bytes.len() < head_length + length {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
        }
    }
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.flush();
    request.body = bytes.split_off(head_length.min(bytes.len()));
    Ok(request)
}

/// Sends `request` to a capture point of this process that answers `answer`
/// (at most `max_bytes` read, 10 s to wait): what it took and what the sender
/// read back. For a plugin's tests of its answer and of what it keeps.
pub fn exchange(
    request: &[u8],
    max_bytes: usize,
    answer: &str,
) -> Result<(CapturedRequest, String), String> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|error| error.to_string())?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    let request = request.to_vec();
    let sender = std::thread::spawn(move || -> std::io::Result<String> {
        let mut stream = TcpStream::connect(address)?;
        // The capture point may hang up early on a request it refuses.
        let _ = stream.write_all(&request);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        Ok(answer)
    });
    let captured = capture(
        &listener,
        Duration::from_secs(10),
        max_bytes,
        answer,
        &AtomicBool::new(false),
    );
    // A connection never accepted is reset, so the sender ends.
    drop(listener);
    let answered = sender
        .join()
        .map_err(|_| "the sender panicked".to_owned())?
        .map_err(|error| error.to_string())?;
    Ok((captured?, answered))
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::json;

    use super::*;

    #[test]
    fn versions_are_read_from_the_cli_banner() {
        assert_eq!(
            parse_version("2.1.332 (Claude Code)\n").as_deref(),
            Some("2.1.332")
        );
        assert_eq!(parse_version("claude 1.0.113").as_deref(), Some("1.0.113"));
        assert_eq!(
            parse_version("codex-cli 0.171.0\n").as_deref(),
            Some("0.171.0")
        );
        assert_eq!(parse_version("Claude Code"), None);
        assert_eq!(parse_version("codex-cli"), None);
        assert_eq!(parse_version("v2.1"), None);
    }

    #[test]
    fn a_head_is_parsed_once_complete() {
        let head = b"POST /v1/messages HTTP/1.1\r\nUser-Agent:  claude-cli/2.1.332 \r\nx-app: cli\r\n\r\n{}";
        let parsed = parse_head(head).unwrap().unwrap();
        assert_eq!(
            parsed.headers,
            [
                ("User-Agent".to_owned(), "claude-cli/2.1.332".to_owned()),
                ("x-app".to_owned(), "cli".to_owned())
            ]
        );
        assert_eq!(&head[parsed.length..], b"{}");
        assert_eq!(parse_head(&head[..40]).unwrap(), None);
        let error = parse_head(b"POST / HTTP/1.1\r\nbad header\r\n\r\n").unwrap_err();
        assert!(error.contains("malformed"), "{error}");
    }

    const ANSWER: &str = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nok";

    #[test]
    fn the_capture_point_takes_one_request_and_answers_it() {
        let body = r#"{"instructions":"You are Codex."}"#;
        let sent = format!(
            "POST /v1/responses HTTP/1.1\r\nUser-Agent: codex\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (request, answer) = exchange(sent.as_bytes(), 1 << 20, ANSWER).unwrap();
        assert_eq!(request.body, body.as_bytes());
        assert_eq!(request.header("user-agent"), Some("codex"));
        assert_eq!(request.header("Content-Length"), Some("33"));
        assert_eq!(answer, ANSWER);
    }

    #[test]
    fn the_capture_point_gives_up_without_a_request() {
        let idle = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let quiet = AtomicBool::new(false);
        let error = capture(&idle, Duration::from_millis(100), 1024, ANSWER, &quiet).unwrap_err();
        assert!(error.contains("no request"), "{error}");

        let started = Instant::now();
        let ended = AtomicBool::new(true);
        let error = capture(&idle, Duration::from_secs(30), 1024, ANSWER, &ended).unwrap_err();
        assert!(error.contains("ended without a request"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no wait for the timeout"
        );
    }

    #[test]
    fn the_capture_point_refuses_a_huge_or_malformed_head() {
        let mut huge = b"POST / HTTP/1.1\r\nx-filler: ".to_vec();
        huge.resize(64 * 1024, b'a');
        let error = exchange(&huge, 1024, ANSWER).unwrap_err();
        assert!(error.contains("too large"), "{error}");

        let error = exchange(b"POST / HTTP/1.1\r\nno colon\r\n\r\n", 1024, ANSWER).unwrap_err();
        assert!(error.contains("malformed"), "{error}");
    }

    #[test]
    fn the_cache_keeps_a_document_per_version() {
        let dir = std::env::temp_dir().join(format!("ccproxy-cli-detect-{}", std::process::id()));
        let cache = Cache::at(dir.join("ccproxy"), "codex");
        assert_eq!(cache.file_name("0.171.0"), "codex_headers_0.171.0.json");
        assert_eq!(cache.run_home(), dir.join("ccproxy/codex-detection-home"));
        cache
            .write("0.171.0", json!({"instructions": "You are Codex."}))
            .unwrap();
        assert_eq!(
            cache.read("0.171.0"),
            Some(json!({"cli": "codex", "version": "0.171.0", "instructions": "You are Codex."}))
        );
        assert_eq!(cache.read("0.172.0"), None);
        let file = dir.join("ccproxy/codex_headers_0.171.0.json");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A link at a version's name is never followed.
        std::os::unix::fs::symlink(&file, dir.join("ccproxy/codex_headers_0.172.0.json")).unwrap();
        assert_eq!(cache.read("0.172.0"), None);
        assert!(cache.write("0.1.0", json!("text")).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
