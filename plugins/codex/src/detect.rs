//! Detection: the version and the prompt of the Codex CLI installed here,
//! learnt the way the original's detection does (ccproxy-api `codex`
//! detection: `codex exec` against a local server) instead of a fixed old
//! version and the 0.34.0 prompt.
//!
//! The CLI (`cli_path`, `codex` on `PATH`) tells its version
//! (`codex --version`); the prompt of that version is read from
//! `$XDG_CACHE_HOME/ccproxy/codex_headers_<version>.json` when cached, else
//! the CLI is run once (`codex exec … test`) with a private `CODEX_HOME`
//! under the cache folder whose provider points at a one-shot capture point
//! of this plugin on 127.0.0.1; its request's `instructions` (or, as 0.171
//! sends none, its first developer message) are kept and cached. Nothing the
//! user has (login, API key) is given to the CLI.

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

use ccproxy_plugin_abi::{Command, Context, Value, json, serde_json};
use ccproxy_plugin_kit::private_files::PrivateDir;

/// How long the CLI may take to send its request.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request read from the CLI.
const MAX_REQUEST_BYTES: usize = 8 << 20;

/// What detection learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detected {
    /// The CLI's version (`0.171.0`).
    pub(crate) version: String,
    /// Its prompt, when it could be captured.
    pub(crate) instructions: Option<String>,
}

/// The version in `codex --version`'s output (`codex-cli 0.171.0`).
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

/// The prompt of a Codex CLI request body: `instructions`, else the text of
/// the first developer message (Codex CLI 0.171 puts it there).
pub(crate) fn prompt_of(body: &Value) -> Option<String> {
    if let Some(text) = body
        .get("instructions")
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
    {
        return Some(text.to_owned());
    }
    let first = body.get("input")?.as_array()?.iter().find(|item| {
        item.get("role").and_then(Value::as_str) == Some("developer")
                // Not the `additional_tools` item its default model's requests start with.
                && item.get("type").and_then(Value::as_str).is_none_or(|kind| kind == "message")
    })?;
    let text: String = match first.get("content")? {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => return None,
    };
    (!text.trim().is_empty()).then_some(text)
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
    format!("codex_headers_{version}.json")
}

/// The cached prompt of `version`, if any (read without following links).
pub(crate) fn load(dir: &Path, version: &str) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(cache_name(version)))
        .ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    value
        .get("instructions")
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
        .map(str::to_owned)
}

/// Caches the prompt of `version` (folder 0700, file 0600, never through a link).
pub(crate) fn store(dir: PathBuf, version: &str, instructions: &str) -> Result<(), String> {
    let folder = PrivateDir::open(dir).map_err(|error| error.message().to_owned())?;
    folder.ensure().map_err(|error| error.to_string())?;
    let document = json!({"cli": "codex", "version": version, "instructions": instructions});
    folder
        .write(&cache_name(version), document.to_string().as_bytes())
        .map_err(|error| error.to_string())
}

/// A complete, minimal Responses stream: the CLI prints `ok` and ends its turn.
const ANSWER: &str = concat!(
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
    "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_detect\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}}\n\n",
    "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_detect\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":[{\"type\":\"output_text\",\"text\":\"ok\",\"annotations\":[]}]}}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_detect\",\"object\":\"response\",\"status\":\"completed\",\"output\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":1,\"total_tokens\":2}}}\n\n",
);

/// Accepts one request on `listener` within `timeout` (or until `exited`
/// says the CLI is gone), answers it, and returns its body.
pub(crate) fn capture(
    listener: &TcpListener,
    timeout: Duration,
    exited: &AtomicBool,
) -> Result<Vec<u8>, String> {
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
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err("the request is too large".to_owned());
        }
        let read = stream
            .read(&mut buffer)
            .map_err(|error| error.to_string())?;
        if read == 0 {
            return Err("the CLI closed the connection before its request".to_owned());
        }
        bytes.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let header = |wanted: &str| {
        head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_owned())
        })
    };
    if header("content-encoding").is_some_and(|coding| coding != "identity") {
        return Err("the CLI compressed its request".to_owned());
    }
    let length = header("content-length")
        .and_then(|value| value.parse::<usize>().ok())
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
    Ok(bytes.split_off((head_end + 4).min(bytes.len())))
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

/// The version of the Codex CLI `program`.
pub(crate) async fn version(ctx: &Context, program: &str) -> Result<String, String> {
    let text = output(ctx, Command::new(program).arg("--version"))
        .await
        .map_err(|error| format!("{program} --version: {error}"))?;
    parse_version(&text).ok_or_else(|| format!("{program} --version printed no version: {text:?}"))
}

/// Learns the version and the prompt of the Codex CLI `program` (see the
/// module docs). A prompt that cannot be captured leaves `instructions` empty.
pub(crate) async fn detect(ctx: &Context, program: &str) -> Result<Detected, String> {
    let version = version(ctx, program).await?;
    let instructions = match prompt(ctx, program, &version).await {
        Ok(instructions) => Some(instructions),
        Err(error) => {
            ccproxy_plugin_abi::debug!("codex: the Codex CLI's prompt was not captured: {error}");
            None
        }
    };
    Ok(Detected {
        version,
        instructions,
    })
}

/// The prompt of `program` at `version`: cached, or captured and cached.
async fn prompt(ctx: &Context, program: &str, version: &str) -> Result<String, String> {
    let dir = cache_dir().ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    let (cached_dir, cached_version) = (dir.clone(), version.to_owned());
    if let Some(instructions) = ctx
        .blocking(move || load(&cached_dir, &cached_version))
        .await
        .map_err(|error| error.message().to_owned())?
    {
        return Ok(instructions);
    }
    let home = dir.join("codex-detection-home");
    let home_for_setup = home.clone();
    let listener = ctx
        .blocking(move || -> Result<TcpListener, String> {
            let listener =
                TcpListener::bind(("127.0.0.1", 0)).map_err(|error| error.to_string())?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let home = PrivateDir::open(home_for_setup).map_err(|e| e.message().to_owned())?;
            home.ensure().map_err(|error| error.to_string())?;
            // Its own provider, at the capture point; no login, no telemetry.
            let config = format!(
                "model_provider = \"ccproxy_detection\"\ncheck_for_update_on_startup = false\n\n[analytics]\nenabled = false\n\n[model_providers.ccproxy_detection]\nname = \"ccproxy detection\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nwire_api = \"responses\"\nenv_key = \"CCPROXY_DETECTION_KEY\"\n"
            );
            home.write("config.toml", config.as_bytes())
                .map_err(|error| error.to_string())?;
            Ok(listener)
        })
        .await
        .map_err(|error| error.message().to_owned())??;
    let home_text = home.display().to_string();
    let mut child = ctx
        .spawn_process(
            Command::new(program)
                .args(["exec", "--skip-git-repo-check", "-s", "read-only", "test"])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", &home_text)
                .env("CODEX_HOME", &home_text)
                .env("CCPROXY_DETECTION_KEY", "ccproxy-detection")
                .current_dir(&home_text),
        )
        .await
        .map_err(|error| format!("{program}: {}", error.message()))?;
    // Nothing to read: `codex exec` otherwise waits for more prompt on stdin.
    let _ = child.close_stdin().await;
    let exited = Arc::new(AtomicBool::new(false));
    let flag = exited.clone();
    let captured = {
        // The capture ends with the CLI's request, or soon after the CLI ends without one.
        let mut capture = pin!(ctx.blocking(move || capture(&listener, CAPTURE_TIMEOUT, &flag)));
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
    // The request is all detection needs: the CLI does not get to run on.
    let _ = child.kill().await;
    let _ = child.wait().await;
    let body: Value = serde_json::from_slice(&captured??)
        .map_err(|error| format!("the CLI's request is not JSON: {error}"))?;
    let instructions = prompt_of(&body).ok_or("the CLI's request holds no prompt")?;
    let to_store = instructions.clone();
    let stored_version = version.to_owned();
    if let Err(error) = ctx
        .blocking(move || store(dir, &stored_version, &to_store))
        .await
        .map_err(|error| error.message().to_owned())?
    {
        ccproxy_plugin_abi::warn!("codex: cannot cache the Codex CLI's prompt: {error}");
    }
    Ok(instructions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_cli_banner() {
        assert_eq!(
            parse_version("codex-cli 0.171.0\n").as_deref(),
            Some("0.171.0")
        );
        assert_eq!(parse_version("codex-cli"), None);
    }

    #[test]
    fn the_prompt_is_the_instructions_or_the_first_developer_message() {
        assert_eq!(
            prompt_of(&json!({"instructions": "You are Codex.", "input": []})).as_deref(),
            Some("You are Codex.")
        );
        // Codex CLI 0.171 (tests/data/clients/codex_cli_0.171.0.json).
        let body = json!({"input": [
            {"type": "additional_tools", "role": "developer", "tools": []},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are a coding agent running in the Codex CLI."}]},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<skills_instructions>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "test"}]},
        ]});
        assert_eq!(
            prompt_of(&body).as_deref(),
            Some("You are a coding agent running in the Codex CLI.")
        );
        assert_eq!(prompt_of(&json!({"input": []})), None);
    }

    #[test]
    fn the_capture_point_takes_one_request_and_answers_a_stream() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let address = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(address).unwrap();
            let body = r#"{"instructions":"You are Codex."}"#;
            stream
                .write_all(
                    format!(
                        "POST /v1/responses HTTP/1.1\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        });
        let body = capture(&listener, Duration::from_secs(10), &AtomicBool::new(false)).unwrap();
        assert_eq!(body, br#"{"instructions":"You are Codex."}"#);
        let answer = client.join().unwrap();
        assert!(answer.contains("response.completed"), "{answer}");

        let idle = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let started = Instant::now();
        let error = capture(&idle, Duration::from_secs(30), &AtomicBool::new(true)).unwrap_err();
        assert!(error.contains("ended without a request"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no wait for the timeout"
        );
    }

    #[test]
    fn the_cache_keeps_the_prompt_per_version() {
        let dir = std::env::temp_dir().join(format!("ccproxy-codex-detect-{}", std::process::id()));
        let folder = dir.join("ccproxy");
        store(folder.clone(), "0.171.0", "You are Codex.").unwrap();
        assert_eq!(load(&folder, "0.171.0").as_deref(), Some("You are Codex."));
        assert_eq!(load(&folder, "0.172.0"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
