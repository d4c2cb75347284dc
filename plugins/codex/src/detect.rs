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

use ccproxy_plugin_abi::{Command, Context, Value, json, serde_json};
use ccproxy_plugin_kit::cli_detect::{self, Cache};

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

/// The prompt of a cached document, if it holds one.
fn cached_prompt(document: &Value) -> Option<String> {
    document
        .get("instructions")
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
        .map(str::to_owned)
}

/// A complete, minimal Responses stream: the CLI prints `ok` and ends its turn.
const ANSWER: &str = concat!(
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
    "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_detect\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}}\n\n",
    "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_detect\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":[{\"type\":\"output_text\",\"text\":\"ok\",\"annotations\":[]}]}}\n\n",
    "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_detect\",\"object\":\"response\",\"status\":\"completed\",\"output\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":1,\"total_tokens\":2}}}\n\n",
);

/// The version of the Codex CLI `program`.
pub(crate) async fn version(ctx: &Context, program: &str) -> Result<String, String> {
    cli_detect::version(ctx, program, Command::new(program).arg("--version")).await
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
    let cache = Cache::new("codex")?;
    if let Some(instructions) = cache
        .load(ctx, version)
        .await?
        .as_ref()
        .and_then(cached_prompt)
    {
        return Ok(instructions);
    }
    let home = cache.run_home();
    let listener = cli_detect::prepare_run(ctx, home.clone(), |home, port| {
        // Its own provider, at the capture point; no login, no telemetry.
        let config = format!(
            "model_provider = \"ccproxy_detection\"\ncheck_for_update_on_startup = false\n\n[analytics]\nenabled = false\n\n[model_providers.ccproxy_detection]\nname = \"ccproxy detection\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nwire_api = \"responses\"\nenv_key = \"CCPROXY_DETECTION_KEY\"\n"
        );
        home.write("config.toml", config.as_bytes())
    })
    .await?;
    let home_text = home.display().to_string();
    let command = Command::new(program)
        .args(["exec", "--skip-git-repo-check", "-s", "read-only", "test"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home_text)
        .env("CODEX_HOME", &home_text)
        .env("CCPROXY_DETECTION_KEY", "ccproxy-detection")
        .current_dir(&home_text);
    let request =
        cli_detect::run_and_capture(ctx, program, command, listener, MAX_REQUEST_BYTES, ANSWER)
            .await?;
    if request
        .header("content-encoding")
        .is_some_and(|coding| coding != "identity")
    {
        return Err("the CLI compressed its request".to_owned());
    }
    let body: Value = serde_json::from_slice(&request.body)
        .map_err(|error| format!("the CLI's request is not JSON: {error}"))?;
    let instructions = prompt_of(&body).ok_or("the CLI's request holds no prompt")?;
    if let Err(error) = cache
        .store(ctx, version, json!({"instructions": instructions}))
        .await
    {
        ccproxy_plugin_abi::warn!("codex: cannot cache the Codex CLI's prompt: {error}");
    }
    Ok(instructions)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let body = r#"{"instructions":"You are Codex."}"#;
        let sent = format!(
            "POST /v1/responses HTTP/1.1\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (request, answer) =
            cli_detect::exchange(sent.as_bytes(), MAX_REQUEST_BYTES, ANSWER).unwrap();
        assert_eq!(request.body, body.as_bytes());
        assert!(answer.contains("response.completed"), "{answer}");
    }

    #[test]
    fn the_cache_keeps_the_prompt_per_version() {
        let dir = std::env::temp_dir().join(format!("ccproxy-codex-detect-{}", std::process::id()));
        let cache = Cache::at(dir.join("ccproxy"), "codex");
        cache
            .write("0.171.0", json!({"instructions": "You are Codex."}))
            .unwrap();
        assert!(dir.join("ccproxy/codex_headers_0.171.0.json").is_file());
        let read = |version: &str| cache.read(version).as_ref().and_then(cached_prompt);
        assert_eq!(read("0.171.0").as_deref(), Some("You are Codex."));
        assert_eq!(read("0.172.0"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
