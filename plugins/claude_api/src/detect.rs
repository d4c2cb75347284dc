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

use ccproxy_plugin_abi::{Command, Context, Value, json};
use ccproxy_plugin_kit::cli_detect::{self, Cache};

use crate::auth::is_identity_header;

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

/// The identity headers among a request's headers, lower-case names, the
/// first of each name.
pub(crate) fn identity_headers(sent: &[(String, String)]) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in sent {
        let name = name.to_ascii_lowercase();
        if is_identity_header(&name) && !headers.iter().any(|(seen, _)| *seen == name) {
            headers.push((name, value.clone()));
        }
    }
    headers
}

/// The identity headers of a cached document (pairs, in the order the CLI
/// sent them), if it holds any.
fn cached_headers(document: &Value) -> Option<Vec<(String, String)>> {
    let headers: Vec<(String, String)> = document
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

/// Learns the identity of the Claude CLI `program` (see the module docs).
pub(crate) async fn detect(ctx: &Context, program: &str) -> Result<Detected, String> {
    let version = cli_detect::version(
        ctx,
        program,
        Command::new(program)
            .arg("--version")
            .env("DISABLE_AUTOUPDATER", "1"),
    )
    .await?;
    let cache = Cache::new("claude")?;
    if let Some(headers) = cache
        .load(ctx, &version)
        .await?
        .as_ref()
        .and_then(cached_headers)
    {
        return Ok(Detected {
            version,
            headers,
            cached: true,
        });
    }
    let home = cache.run_home();
    let listener = cli_detect::prepare_run(ctx, home.clone(), |_, _| Ok(())).await?;
    let port = listener
        .local_addr()
        .map_err(|error| error.to_string())?
        .port();
    let home_text = home.display().to_string();
    let command = Command::new(program)
        .args(["-p", "test", "--output-format", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home_text)
        .env("CLAUDE_CONFIG_DIR", format!("{home_text}/.claude"))
        .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{port}"))
        // A placeholder: the capture point answers anything, and no
        // credential of the user's ever reaches it.
        .env("ANTHROPIC_API_KEY", "sk-ant-ccproxy-detection")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .current_dir(&home_text);
    let request =
        cli_detect::run_and_capture(ctx, program, command, listener, MAX_REQUEST_BYTES, ANSWER)
            .await?;
    let headers = identity_headers(&request.headers);
    if headers.is_empty() {
        return Err(format!("{program} sent no identity headers"));
    }
    if let Err(error) = cache
        .store(ctx, &version, json!({"headers": headers}))
        .await
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

    /// What Claude Code 2.1.332 sent (tests/data/clients/claude_code_2.1.332.json).
    const HEAD: &str = "POST /v1/messages?beta=true HTTP/1.1\r\nAccept: application/json\r\nContent-Type: application/json\r\nUser-Agent: claude-cli/2.1.332 (external, sdk-cli)\r\nX-Claude-Code-Session-Id: a0559ebc\r\nX-Stainless-Arch: x64\r\nX-Stainless-Package-Version: 0.128.0\r\nanthropic-dangerous-direct-browser-access: true\r\nanthropic-version: 2023-06-01\r\nx-api-key: sk-ant-secret\r\nauthorization: Bearer secret\r\nx-app: cli\r\nHost: 127.0.0.1:1\r\nContent-Length: 2";

    fn sent_headers() -> Vec<(String, String)> {
        cli_detect::parse_head(format!("{HEAD}\r\n\r\n").as_bytes())
            .unwrap()
            .unwrap()
            .headers
    }

    #[test]
    fn only_identity_headers_are_kept_never_credentials() {
        let headers = identity_headers(&sent_headers());
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
        let sent = format!("{HEAD}\r\n\r\n{{}}");
        let (request, answer) =
            cli_detect::exchange(sent.as_bytes(), MAX_REQUEST_BYTES, ANSWER).unwrap();
        assert_eq!(
            request.header("user-agent"),
            Some("claude-cli/2.1.332 (external, sdk-cli)")
        );
        assert_eq!(
            identity_headers(&request.headers),
            identity_headers(&sent_headers())
        );
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("message_stop"), "{answer}");
    }

    #[test]
    fn the_cache_keeps_identity_headers_per_version() {
        let dir = std::env::temp_dir().join(format!("ccproxy-detect-test-{}", std::process::id()));
        let cache = Cache::at(dir.join("ccproxy"), "claude");
        let headers = identity_headers(&sent_headers());
        cache.write("2.1.332", json!({"headers": headers})).unwrap();
        assert!(dir.join("ccproxy/claude_headers_2.1.332.json").is_file());
        let read = |version: &str| cache.read(version).as_ref().and_then(cached_headers);
        assert_eq!(read("2.1.332"), Some(headers));
        assert_eq!(read("2.1.333"), None);
        // Only identity headers are taken from the file, never credentials.
        cache
            .write(
                "2.1.334",
                json!({"headers": [["x-api-key", "sk-ant-secret"], ["x-app", "cli"]]}),
            )
            .unwrap();
        assert_eq!(
            read("2.1.334"),
            Some(vec![("x-app".to_owned(), "cli".to_owned())])
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
