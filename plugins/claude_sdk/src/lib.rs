//! # claude_sdk: the local Claude Code CLI as an upstream
//!
//! `POST /claude/sdk/v1/messages` (Anthropic), `/claude/sdk/v1/chat/completions`
//! and `/claude/sdk/v1/responses` (OpenAI), and the same under
//! `/claude/sdk/{session_id}/v1/...`, answered by running `claude -p` in its
//! stream-json mode through the host's process facility (plugin API 1.2). A
//! session keeps its CLI process running between turns (the next user message
//! goes to the same process); an expired session is resumed with `--resume`.
//! See README.md.
#![forbid(unsafe_code)]

mod cli;
mod convert;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ccproxy_plugin_abi::prelude::*;
use futures_util::future::{Either, select};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    cli::{CliEvent, LineBuffer, TurnResult},
    convert::{
        BlockKind, ClientFormat, Conversation, Delta, Encoder, Outcome, Usage, error_body,
        tool_definitions_refused,
    },
};

/// `[plugins.claude_sdk.sdk_session_pool]`: the original's names; see README.md
/// for the defaults that differ.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PoolConfig {
    /// Keep a session's CLI running between turns (else each turn resumes it).
    enabled: bool,
    /// Seconds to wait for the CLI's first answer line of a turn.
    stream_first_chunk_timeout: f64,
    /// Seconds to wait for each later line of a turn.
    stream_ongoing_timeout: f64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            // The original's 3 s is for a warm SDK client; a real CLI starts
            // in about a second and a model may think for long before it
            // writes.
            stream_first_chunk_timeout: 120.0,
            // The CLI runs its own tools between two messages.
            stream_ongoing_timeout: 300.0,
        }
    }
}

/// What happens to a request that declares tools for the model to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ClientTools {
    /// A `400` naming the route that carries tools: the CLI cannot call them.
    #[default]
    Refuse,
    /// The definitions are dropped (the original's behaviour), for clients
    /// that always send tools they can do without, such as Claude Code.
    Ignore,
}

/// `[plugins.claude_sdk]`. `enabled` is the host's own key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// The CLI; `None`: `claude` looked up in `PATH`.
    cli_path: Option<String>,
    /// The CLI's working folder; `None`: `workspace` in the plugin's data folder.
    cwd: Option<String>,
    /// Extra environment for the CLI (it inherits the proxy's).
    env: BTreeMap<String, String>,
    /// Extra arguments for the CLI (`--allowedTools`, `--permission-mode`, ...).
    cli_args: Vec<String>,
    /// A request declaring tools: refused (`400`) or its tools dropped.
    client_tools: ClientTools,
    /// Most sessions kept running; the longest idle one is ended past it.
    session_pool_size: usize,
    /// A session's CLI idle this long is ended (the session is resumed later).
    session_timeout_seconds: u64,
    sdk_session_pool: PoolConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cli_path: None,
            cwd: None,
            env: BTreeMap::new(),
            cli_args: Vec::new(),
            client_tools: ClientTools::Refuse,
            session_pool_size: 5,
            session_timeout_seconds: 300,
            sdk_session_pool: PoolConfig::default(),
        }
    }
}

/// How often a stream waiting for the CLI checks whether its client left.
const CLIENT_CHECK_MS: u64 = 500;
/// The provider `request.completed` names for this plugin's answers.
const PROVIDER: &str = "claude_sdk";

/// How often idle sessions are checked for their timeout.
const SWEEP_SECONDS: f64 = 30.0;

/// Where `cli` is: itself when it names a path, else the first match in `PATH`.
fn find_cli(cli: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |path: &std::path::Path| {
        std::fs::metadata(path)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if cli.contains('/') {
        let path = std::path::PathBuf::from(cli);
        return runnable(&path).then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(cli))
        .find(|path| runnable(path))
}

/// A running CLI and what of its output is not read yet.
struct CliProcess {
    child: ChildProcess,
    lines: LineBuffer,
    ready: std::collections::VecDeque<String>,
}

/// Why a turn failed, with the HTTP status the client gets.
#[derive(Debug)]
struct Failure {
    status: u16,
    message: String,
}

impl Failure {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Runs `future` unless `seconds` pass first.
async fn within<T>(ctx: &Context, seconds: f64, future: impl Future<Output = T>) -> Option<T> {
    let sleep = ctx.sleep(Duration::from_secs_f64(seconds.max(0.001)));
    futures_util::pin_mut!(future, sleep);
    match select(future, sleep).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}

impl CliProcess {
    /// The next line; `Ok(None)` once stdout closed.
    async fn next_line(&mut self, ctx: &Context, seconds: f64) -> Result<Option<String>, Failure> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Ok(Some(line));
            }
            let piece = within(ctx, seconds, self.child.read_stdout())
                .await
                .ok_or_else(|| {
                    Failure::new(
                        504,
                        format!("the Claude Code CLI wrote nothing for {seconds} s (timeout)"),
                    )
                })?
                .map_err(|error| {
                    Failure::new(502, format!("cannot read the Claude Code CLI: {error}"))
                })?;
            match piece {
                Some(piece) => self.ready.extend(self.lines.push(&piece)),
                None => return Ok(self.lines.rest()),
            }
        }
    }

    /// Why the CLI stopped: its exit status and the end of its stderr.
    async fn exit_report(&mut self, ctx: &Context) -> String {
        let mut stderr = Vec::new();
        let _ = within(ctx, 2.0, async {
            while let Ok(Some(piece)) = self.child.read_stderr().await {
                stderr.extend_from_slice(&piece);
                if stderr.len() > 64 * 1024 {
                    break;
                }
            }
        })
        .await;
        let status = within(ctx, 2.0, self.child.wait()).await;
        let status = match status {
            Some(Ok(status)) => match (status.code, status.signal) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("signal {signal}"),
                _ => "an unknown status".to_owned(),
            },
            _ => "still running".to_owned(),
        };
        let stderr = String::from_utf8_lossy(&stderr);
        let tail: Vec<&str> = stderr.trim().lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let mut report = status;
        if !tail.is_empty() {
            let text = tail.join(" | ");
            let text: String = text.chars().take(600).collect();
            report.push_str(&format!("; stderr: {text}"));
        }
        report
    }
}

/// A session's CLI waiting for its next turn.
struct Idle {
    process: CliProcess,
    since: Instant,
}

/// The sessions: running CLIs between turns, the ones answering now, and the
/// CLI session ids started while the proxy runs (those are resumed).
#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<String, Idle>>,
    busy: Mutex<HashSet<String>>,
    started: Mutex<HashSet<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Ends idle sessions past the timeout, and the longest idle ones past the pool size.
fn sweep(pool: &Pool, config: &Config) {
    let timeout = Duration::from_secs(config.session_timeout_seconds);
    let mut idle = lock(&pool.idle);
    idle.retain(|_, session| session.since.elapsed() < timeout);
    while idle.len() > config.session_pool_size {
        let oldest = idle
            .iter()
            .min_by_key(|(_, session)| session.since)
            .map(|(name, _)| name.clone());
        match oldest {
            Some(name) => {
                idle.remove(&name);
            }
            None => break,
        }
    }
}

/// Counters for `/plugins/claude_sdk/health`.
#[derive(Default)]
struct Stats {
    turns: AtomicU64,
    failed: AtomicU64,
    spawned: AtomicU64,
    reused: AtomicU64,
    resumed: AtomicU64,
}

/// Marks a session busy while it answers; frees it when dropped.
struct BusyGuard {
    pool: Arc<Pool>,
    session: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.pool.busy).remove(&self.session);
    }
}

/// The CLI session id (a UUID) of a client's session name: the name itself
/// when it is a UUID, else one derived from it (always the same).
fn session_uuid(name: &str) -> String {
    let is_uuid = name.len() == 36
        && name.char_indices().all(|(at, c)| {
            if matches!(at, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if is_uuid {
        return name.to_ascii_lowercase();
    }
    let digest = Sha256::digest(format!("ccproxy claude_sdk session {name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // Version 8 (custom), RFC 9562 variant.
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A session name in a path is 1 to 128 letters, digits, `-`, `_` or `.`.
fn valid_session_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether `model` is passed to the CLI's `--model`: Claude model names and
/// the CLI's one-word aliases; an OpenAI client's `gpt-4o` leaves the CLI's
/// default.
fn cli_model(model: Option<&str>) -> Option<&str> {
    model.filter(|model| {
        model.starts_with("claude-")
            || (!model.is_empty() && model.chars().all(|c| c.is_ascii_lowercase()))
    })
}

/// Whether the proxy's environment variable `name` is passed on to the CLI:
/// all but the proxy's own settings (`SECTION__KEY`, `PLUGINS__NAME__KEY`,
/// `CCPROXY_*` and the plugin and config-file lists).
fn passed_to_cli(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    !(upper.contains("__")
        || upper.starts_with("CCPROXY_")
        || matches!(
            upper.as_str(),
            "CONFIG_FILE" | "ENABLE_PLUGINS" | "ENABLED_PLUGINS" | "DISABLED_PLUGINS"
        ))
}

/// How a turn's CLI is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// No session: nothing kept (`--no-session-persistence`), stdin closed after the message.
    OneShot,
    /// A new session with this id (`--session-id`).
    New,
    /// A session the CLI has on disk (`--resume`).
    Resume,
}

/// The plugin.
struct ClaudeSdk {
    ctx: Context,
    config: Config,
    cli: String,
    cwd: String,
    pool: Arc<Pool>,
    stats: Arc<Stats>,
}

/// Everything a turn needs once it runs (moved into the streaming task).
struct Turn {
    ctx: Context,
    config: Config,
    pool: Arc<Pool>,
    stats: Arc<Stats>,
    /// Taken when the session's CLI goes back to the pool.
    process: Option<CliProcess>,
    /// The session's name and the guard keeping it busy; `None` for one-shot turns.
    session: Option<(String, BusyGuard)>,
    encoder: Encoder,
    request_id: String,
    /// Whether the client asked for a stream (partial messages are used then).
    stream: bool,
    /// API messages whose blocks were streamed from partial messages (their
    /// whole `assistant` lines are skipped).
    streamed_messages: HashSet<String>,
    /// Whether the partial block being streamed is one the client is shown.
    partial_block_open: bool,
    /// The CLI's result usage, once the turn concluded: reported with the
    /// answer so `request.completed` counts it (plugin API 1.3).
    usage: Option<TokenUsage>,
}

impl ClaudeSdk {
    fn command(&self, conversation: &Conversation, start: Start, uuid: &str) -> Command {
        let mut command = Command::new(&self.cli)
            .args([
                "-p",
                "--output-format",
                "stream-json",
                "--input-format",
                "stream-json",
                "--verbose",
                // Text as the model writes it, for streams.
                "--include-partial-messages",
            ])
            .current_dir(&self.cwd);
        // `--name=value`: a value from the request that starts with `-` is
        // still the value, never another option.
        command = match start {
            Start::OneShot => command.arg("--no-session-persistence"),
            Start::New => command.arg(format!("--session-id={uuid}")),
            Start::Resume => command.arg(format!("--resume={uuid}")),
        };
        if let Some(model) = cli_model(conversation.model.as_deref()) {
            command = command.arg(format!("--model={model}"));
        }
        if !conversation.system.is_empty() {
            command = command.arg(format!("--append-system-prompt={}", conversation.system));
        }
        command = command.args(self.config.cli_args.iter().cloned());
        // The user's environment (its HOME and login, PATH, proxies), without
        // the proxy's own settings, which hold its secrets.
        command = command.env_clear();
        for (name, value) in std::env::vars_os() {
            if let (Some(name), Some(value)) = (name.to_str(), value.to_str())
                && passed_to_cli(name)
            {
                command = command.env(name, value);
            }
        }
        for (name, value) in &self.config.env {
            command = command.env(name.as_str(), value.as_str());
        }
        command
    }

    async fn spawn(
        &self,
        conversation: &Conversation,
        start: Start,
        uuid: &str,
    ) -> Result<CliProcess, Failure> {
        let child = self
            .ctx
            .spawn_process(self.command(conversation, start, uuid))
            .await
            .map_err(|error| {
                Failure::new(
                    502,
                    format!(
                        "cannot start the Claude Code CLI `{}`: {} (install Claude Code or set [plugins.claude_sdk] cli_path)",
                        self.cli,
                        error.message()
                    ),
                )
            })?;
        self.stats.spawned.fetch_add(1, Ordering::Relaxed);
        if start == Start::Resume {
            self.stats.resumed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(CliProcess {
            child,
            lines: LineBuffer::default(),
            ready: Default::default(),
        })
    }

    fn sweep(&self) {
        sweep(&self.pool, &self.config);
    }

    /// Starts (or takes up) the CLI for a turn and sends it the user's message.
    async fn begin(
        &self,
        conversation: &Conversation,
        session: Option<&str>,
    ) -> Result<(CliProcess, Option<BusyGuard>), Failure> {
        let Some(name) = session else {
            let mut process = self.spawn(conversation, Start::OneShot, "").await?;
            send(&self.ctx, &mut process, &conversation.first_message(), true).await?;
            return Ok((process, None));
        };
        if !lock(&self.pool.busy).insert(name.to_owned()) {
            return Err(Failure::new(
                409,
                format!("session {name} is answering another request; retry when it is done"),
            ));
        }
        let guard = BusyGuard {
            pool: self.pool.clone(),
            session: name.to_owned(),
        };
        self.sweep();
        let uuid = session_uuid(name);
        let running = lock(&self.pool.idle).remove(name);
        if let Some(Idle { mut process, .. }) = running {
            // A process that died meanwhile fails the write; start again then.
            if send(
                &self.ctx,
                &mut process,
                &conversation.latest_user_text(),
                false,
            )
            .await
            .is_ok()
            {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Ok((process, Some(guard)));
            }
        }
        let known = lock(&self.pool.started).contains(&uuid);
        let start = if known { Start::Resume } else { Start::New };
        let message = |start| match start {
            Start::Resume => conversation.latest_user_text(),
            _ => conversation.first_message(),
        };
        let mut process = self.spawn(conversation, start, &uuid).await?;
        let mut sent = send(&self.ctx, &mut process, &message(start), false).await;
        if start == Start::New && sent.is_ok() {
            sent = match process.next_line(&self.ctx, self.first_timeout()).await {
                Ok(Some(line)) => {
                    process.ready.push_front(line);
                    Ok(())
                }
                Ok(None) => Err(early_exit(&process.exit_report(&self.ctx).await)),
                Err(failure) => Err(failure),
            };
        }
        match sent {
            Ok(()) => {}
            // A session the CLI already has on disk (from an earlier run of the
            // proxy) refuses --session-id at once: resume it instead.
            Err(failure) if start == Start::New && failure.message.contains("already in use") => {
                process = self.spawn(conversation, Start::Resume, &uuid).await?;
                send(&self.ctx, &mut process, &message(Start::Resume), false).await?;
            }
            Err(failure) => return Err(failure),
        }
        lock(&self.pool.started).insert(uuid);
        Ok((process, Some(guard)))
    }

    fn first_timeout(&self) -> f64 {
        self.config.sdk_session_pool.stream_first_chunk_timeout
    }

    async fn answer(&self, format: ClientFormat, req: Request) -> RouteResponse {
        let session = req.param("session_id").map(str::to_owned);
        if let Some(name) = &session
            && !valid_session_name(name)
        {
            return error_response(
                format,
                &Failure::new(
                    400,
                    "a session id is 1 to 128 letters, digits, '-', '_' or '.'",
                ),
            );
        }
        let conversation = match Conversation::parse(format, &req.body) {
            Ok(conversation) => conversation,
            Err(message) => return error_response(format, &Failure::new(400, message)),
        };
        if let Some(field) = conversation.declared_tools
            && self.config.client_tools == ClientTools::Refuse
        {
            return error_response(
                format,
                &Failure::new(400, tool_definitions_refused(format, field)),
            );
        }
        self.stats.turns.fetch_add(1, Ordering::Relaxed);
        let (process, guard) = match self.begin(&conversation, session.as_deref()).await {
            Ok(begun) => begun,
            Err(failure) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                return error_response(format, &failure);
            }
        };
        let model = conversation.model.clone().unwrap_or_default();
        let mut turn = Turn {
            ctx: self.ctx.clone(),
            config: self.config.clone(),
            pool: self.pool.clone(),
            stats: self.stats.clone(),
            process: Some(process),
            session: session.clone().zip(guard),
            encoder: Encoder::new(format, &req.request_id, &model, conversation.include_usage),
            request_id: req.request_id.clone(),
            stream: conversation.stream,
            streamed_messages: HashSet::new(),
            partial_block_open: false,
            usage: None,
        };
        // The first answer line is awaited before the head is sent, so a CLI
        // that fails at once is an error status, not a broken stream.
        let first = match turn.next_event(true).await {
            Ok(event) => event,
            Err(failure) => return turn.fail(format, failure),
        };
        if !conversation.stream {
            return turn.whole(format, first).await;
        }
        let (mut sender, body) = BodyStream::channel(8);
        let ctx = self.ctx.clone();
        ctx.spawn(async move {
            let mut event = first;
            loop {
                let (piece, done) = match turn.step(event) {
                    Step::Piece(piece) => (piece, false),
                    Step::Done(piece) => (piece, true),
                };
                if !piece.is_empty() && sender.send(piece).await.is_err() {
                    // The client left: the turn's CLI is ended (dropped), and
                    // the session resumes from disk next time.
                    return;
                }
                if done {
                    // The model the CLI named on the way, for request.completed.
                    sender.set_model(turn.encoder.model.as_str());
                    if let Some(usage) = turn.usage {
                        sender.finish_with_usage(usage);
                    }
                    return;
                }
                let next = {
                    let watcher = turn.ctx.clone();
                    let sender = &sender;
                    // A client that leaves while the CLI is quiet ends the turn
                    // now, not at the next line or the timeout.
                    let left = async move {
                        while !sender.is_closed() {
                            watcher.sleep(Duration::from_millis(CLIENT_CHECK_MS)).await;
                        }
                    };
                    let next = turn.next_event(false);
                    futures_util::pin_mut!(next, left);
                    match select(next, left).await {
                        Either::Left((next, _)) => Some(next),
                        Either::Right(_) => None,
                    }
                };
                let Some(next) = next else {
                    debug!(
                        "claude_sdk turn {}: the client left; its CLI is ended",
                        turn.request_id
                    );
                    return;
                };
                event = match next {
                    Ok(event) => event,
                    Err(failure) => {
                        turn.stats.failed.fetch_add(1, Ordering::Relaxed);
                        let piece = turn.encoder.stream_error(&failure.message);
                        let _ = sender.send(piece).await;
                        return;
                    }
                };
            }
        });
        // The head goes out before the CLI names its model: the one it was
        // asked for, or none when it uses its default (named at the end).
        let asked = cli_model(conversation.model.as_deref()).unwrap_or_default();
        StreamResponse::sse(body)
            .answered_by(PROVIDER, asked)
            .into()
    }
}

/// What the stream does with one event.
enum Step {
    Piece(String),
    Done(String),
}

/// Writes one user message (and closes stdin with `close`); a CLI that is
/// gone by then is reported as an early exit, with its status and stderr.
async fn send(
    ctx: &Context,
    process: &mut CliProcess,
    text: &str,
    close: bool,
) -> Result<(), Failure> {
    let mut written = process.child.write(cli::user_message(text)).await;
    if close && written.is_ok() {
        written = process.child.close_stdin().await;
    }
    match written {
        Ok(()) => Ok(()),
        Err(error) => {
            let report = process.exit_report(ctx).await;
            debug!("claude_sdk: writing to the CLI failed: {error}");
            Err(early_exit(&report))
        }
    }
}

fn early_exit(report: &str) -> Failure {
    Failure::new(
        502,
        format!("the Claude Code CLI ended before its answer ({report})"),
    )
}

fn error_response(format: ClientFormat, failure: &Failure) -> RouteResponse {
    Response::json(
        failure.status,
        &error_body(format, failure.status, &failure.message),
    )
    .into()
}

/// An event a turn acts on.
enum TurnEvent {
    Assistant(CliEvent),
    Result(TurnResult),
}

impl Turn {
    /// The next assistant message or the result, within the first-chunk
    /// timeout (`first`) or the ongoing one.
    async fn next_event(&mut self, first: bool) -> Result<TurnEvent, Failure> {
        let pool = &self.config.sdk_session_pool;
        let seconds = if first {
            pool.stream_first_chunk_timeout
        } else {
            pool.stream_ongoing_timeout
        };
        let process = self
            .process
            .as_mut()
            .ok_or_else(|| Failure::new(500, "the turn has ended"))?;
        // The timeout is for the next answer event, however many status lines
        // (retries, token estimates) come meanwhile.
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = process
                .next_line(&self.ctx, left.as_secs_f64())
                .await
                .map_err(|mut failure| {
                    if failure.status == 504 {
                        failure.message = format!(
                            "the Claude Code CLI wrote no answer for {seconds} s (timeout)"
                        );
                    }
                    failure
                })?;
            let Some(line) = line else {
                let report = process.exit_report(&self.ctx).await;
                return Err(early_exit(&report));
            };
            match cli::parse_line(&line) {
                Some(event @ (CliEvent::Assistant { .. } | CliEvent::Partial { .. })) => {
                    return Ok(TurnEvent::Assistant(event));
                }
                Some(CliEvent::Result(result)) => return Ok(TurnEvent::Result(result)),
                Some(CliEvent::Init { session_id, .. }) => {
                    debug!(
                        "claude_sdk turn {} runs CLI session {session_id}",
                        self.request_id
                    );
                }
                Some(CliEvent::Other) => {}
                None => debug!("claude_sdk: a CLI line that is not JSON was skipped"),
            }
        }
    }

    /// One event's piece of the stream.
    fn step(&mut self, event: TurnEvent) -> Step {
        match event {
            TurnEvent::Assistant(CliEvent::Partial { message_id, event }) => {
                if !self.stream {
                    return Step::Piece(String::new());
                }
                self.streamed_messages.insert(message_id);
                Step::Piece(self.partial(&event))
            }
            TurnEvent::Assistant(CliEvent::Assistant {
                message_id,
                model,
                blocks,
            }) => {
                if !model.is_empty() {
                    self.encoder.model = model;
                }
                if self.streamed_messages.contains(&message_id) {
                    return Step::Piece(String::new());
                }
                let mut piece = String::new();
                for block in blocks {
                    piece += &self.encoder.block(block);
                }
                Step::Piece(piece)
            }
            TurnEvent::Assistant(_) => Step::Piece(String::new()),
            TurnEvent::Result(result) => match self.conclude(result) {
                Ok(outcome) => Step::Done(self.encoder.finish(&outcome)),
                Err(failure) => Step::Done(self.encoder.stream_error(&failure.message)),
            },
        }
    }

    /// One Anthropic stream event of the CLI, for the client: text and
    /// thinking blocks as they grow; the CLI's own tool calls stay inside.
    fn partial(&mut self, event: &Value) -> String {
        match event["type"].as_str() {
            Some("message_start") => {
                let message = &event["message"];
                if let Some(model) = message["model"].as_str()
                    && !model.is_empty()
                {
                    self.encoder.model = model.to_owned();
                }
                self.encoder.start_usage = Usage::from_anthropic(&message["usage"]);
                String::new()
            }
            Some("content_block_start") => {
                let kind = match event["content_block"]["type"].as_str() {
                    Some("text") => Some(BlockKind::Text),
                    Some("thinking") => Some(BlockKind::Thinking),
                    _ => None,
                };
                self.partial_block_open = kind.is_some();
                kind.map(|kind| self.encoder.begin(kind))
                    .unwrap_or_default()
            }
            Some("content_block_delta") if self.partial_block_open => {
                let delta = &event["delta"];
                let piece = |key: &str| delta[key].as_str().unwrap_or_default().to_owned();
                match delta["type"].as_str() {
                    Some("text_delta") => self.encoder.delta(Delta::Text(piece("text"))),
                    Some("thinking_delta") => {
                        self.encoder.delta(Delta::Thinking(piece("thinking")))
                    }
                    Some("signature_delta") => {
                        self.encoder.delta(Delta::Signature(piece("signature")))
                    }
                    _ => String::new(),
                }
            }
            Some("content_block_stop") if self.partial_block_open => {
                self.partial_block_open = false;
                self.encoder.end()
            }
            _ => String::new(),
        }
    }

    /// The turn's result: the outcome, reported; the session's CLI back in the pool.
    fn conclude(&mut self, result: TurnResult) -> Result<Outcome, Failure> {
        if result.is_error {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            let text = if result.text.is_empty() {
                result.subtype.clone()
            } else {
                result.text.clone()
            };
            return Err(Failure::new(
                502,
                format!("the Claude Code CLI reported an error: {text}"),
            ));
        }
        let outcome = Outcome {
            stop_reason: result
                .stop_reason
                .clone()
                .unwrap_or_else(|| "end_turn".to_owned()),
            usage: result.usage,
        };
        self.usage = Some(TokenUsage {
            input_tokens: result.usage.input_tokens,
            output_tokens: result.usage.output_tokens,
            cache_read_input_tokens: result.usage.cache_read_input_tokens,
            cache_creation_input_tokens: result.usage.cache_creation_input_tokens,
            ..TokenUsage::default()
        });
        if let Some((name, _guard)) = self.session.take()
            && self.config.sdk_session_pool.enabled
            && let Some(process) = self.process.take()
        {
            // Back in the pool before the guard frees the session name.
            let idle = Idle {
                process,
                since: Instant::now(),
            };
            lock(&self.pool.idle).insert(name, idle);
            sweep(&self.pool, &self.config);
        }
        Ok(outcome)
    }

    async fn whole(mut self, format: ClientFormat, first: TurnEvent) -> RouteResponse {
        let mut event = first;
        loop {
            match event {
                TurnEvent::Result(result) => {
                    return match self.conclude(result) {
                        Ok(outcome) => {
                            let mut response =
                                Response::json(200, &self.encoder.response(&outcome))
                                    .answered_by(PROVIDER, self.encoder.model.as_str());
                            response.usage = self.usage;
                            response.into()
                        }
                        Err(failure) => error_response(format, &failure),
                    };
                }
                other => {
                    let _ = self.step(other);
                }
            }
            event = match self.next_event(false).await {
                Ok(event) => event,
                Err(failure) => return self.fail(format, failure),
            };
        }
    }

    fn fail(self, format: ClientFormat, failure: Failure) -> RouteResponse {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        error_response(format, &failure)
    }
}

impl Plugin for ClaudeSdk {
    type Config = Config;

    fn manifest() -> Manifest {
        let mut routes = Vec::new();
        for path in ["/v1/messages", "/v1/chat/completions", "/v1/responses"] {
            routes.push(Route::post(path));
            routes.push(Route::post(&format!("/{{session_id}}{path}")));
        }
        Manifest::new("claude_sdk", env!("CARGO_PKG_VERSION"))
            .description("The local Claude Code CLI as an upstream (stream-json mode), with sessions")
            .route("/claude/sdk", routes)
            // Idle session CLIs are ended within this long past their timeout.
            .task("sweep", SWEEP_SECONDS)
            .config_key("cli_path", "the Claude Code CLI; null: `claude` looked up in PATH")
            .config_key("cwd", "the CLI's working folder; null: `workspace` in the plugin's data folder")
            .config_key("env", "extra environment variables for the CLI (it inherits the proxy's)")
            .config_key("cli_args", "extra arguments for the CLI, e.g. [\"--permission-mode\", \"plan\"]")
            .config_key("client_tools", "\"refuse\" (a 400 naming /claude/v1/...) or \"ignore\" (dropped) for a request declaring tools the CLI cannot call")
            .config_key("session_pool_size", "most sessions whose CLI keeps running between turns")
            .config_key("session_timeout_seconds", "a session's CLI idle this long is ended (resumed later)")
            .config_key("sdk_session_pool", "enabled (keep CLIs running), stream_first_chunk_timeout and stream_ongoing_timeout (seconds)")
    }

    async fn init(ctx: Context, config: Config) -> Result<Self, PluginError> {
        if !ctx.has_capability("process") || !ctx.has_capability("stream_routes") {
            return Err(PluginError::unsupported(
                "claude_sdk needs a host that runs processes and streams route answers (plugin API 1.2)",
            ));
        }
        let pool = &config.sdk_session_pool;
        for (key, value) in [
            (
                "stream_first_chunk_timeout",
                pool.stream_first_chunk_timeout,
            ),
            ("stream_ongoing_timeout", pool.stream_ongoing_timeout),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(PluginError::invalid(format!(
                    "sdk_session_pool.{key} must be a positive number of seconds, not {value}"
                )));
            }
        }
        let cli = config
            .cli_path
            .clone()
            .filter(|path| !path.is_empty())
            .unwrap_or_else(|| "claude".to_owned());
        let cwd = match &config.cwd {
            Some(cwd) if !cwd.is_empty() => cwd.clone(),
            _ => {
                let dir = ctx.data_dir().join("workspace");
                let create = dir.clone();
                ctx.blocking(move || {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&create)
                })
                .await?
                .map_err(|error| {
                    PluginError::internal(format!("cannot create {}: {error}", dir.display()))
                })?;
                dir.to_string_lossy().into_owned()
            }
        };
        info!("claude_sdk runs `{cli}` in {cwd}");
        Ok(Self {
            ctx,
            config,
            cli,
            cwd,
            pool: Arc::default(),
            stats: Arc::default(),
        })
    }

    async fn on_route_response(&self, req: Request) -> Result<RouteResponse, PluginError> {
        let format = if req.path.ends_with("/v1/messages") {
            ClientFormat::Anthropic
        } else if req.path.ends_with("/v1/chat/completions") {
            ClientFormat::Chat
        } else if req.path.ends_with("/v1/responses") {
            ClientFormat::Responses
        } else {
            return Err(PluginError::not_found(format!("no route {}", req.path)));
        };
        // Failures name the provider too, as a provider endpoint's do, so
        // request.failed counts them under claude_sdk.
        Ok(match self.answer(format, req).await {
            RouteResponse::Full(response) if response.answered_by.is_none() => {
                RouteResponse::Full(response.answered_by(PROVIDER, ""))
            }
            answer => answer,
        })
    }

    async fn on_task(&self, task: String) -> Result<(), PluginError> {
        match task.as_str() {
            "sweep" => {
                self.sweep();
                Ok(())
            }
            other => Err(PluginError::not_found(format!("no task {other}"))),
        }
    }

    async fn on_health(&self) -> Health {
        self.sweep();
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let cli = self.cli.clone();
        let found = self
            .ctx
            .blocking(move || find_cli(&cli))
            .await
            .ok()
            .flatten();
        let status = if found.is_some() {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded
        };
        let mut details = json!({
                "cli_path": self.cli,
                "cli_found": found.map(|path| path.display().to_string()),
                "cwd": self.cwd,
                "sessions_running": lock(&self.pool.idle).len(),
                "sessions_busy": lock(&self.pool.busy).len(),
                "turns": count(&self.stats.turns),
                "failed": count(&self.stats.failed),
                "processes_started": count(&self.stats.spawned),
                "processes_reused": count(&self.stats.reused),
                "sessions_resumed": count(&self.stats.resumed),
        });
        if status == HealthStatus::Degraded {
            details["reason"] = Value::from(format!(
                "the Claude Code CLI `{}` is not found (or not executable): install Claude Code or set [plugins.claude_sdk] cli_path",
                self.cli
            ));
        }
        Health::with(status, details)
    }

    async fn on_shutdown(&self) {
        lock(&self.pool.idle).clear();
    }
}

export_plugin!(ClaudeSdk);

#[cfg(test)]
mod tests {
    use ccproxy_plugin_abi::testing::{MockHost, TestPlugin, json_request};

    use super::*;

    fn fake_cli() -> String {
        format!(
            "{}/../../tests/data/claude_sdk/fake_claude.sh",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn start_with(mode: &str, extra: Value) -> (MockHost, TestPlugin) {
        let mut config = json!({"cli_path": fake_cli(), "env": {"FAKE_CLAUDE_MODE": mode}});
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            config.extend(extra.clone());
        }
        let host = MockHost::new().config(config);
        let plugin = host.start::<ClaudeSdk>().unwrap();
        (host, plugin)
    }

    fn start(mode: &str) -> (MockHost, TestPlugin) {
        start_with(mode, json!({}))
    }

    fn messages(text: &str, stream: bool) -> Value {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
               "messages": [{"role": "user", "content": text}]})
    }

    fn body(response: &Response) -> Value {
        ccproxy_plugin_abi::serde_json::from_slice(&response.body)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&response.body)))
    }

    #[test]
    fn manifest_routes_and_defaults() {
        let (_, plugin) = start("echo");
        let manifest = plugin.manifest();
        let paths: Vec<String> = manifest.routes[0]
            .routes
            .iter()
            .map(|route| manifest.routes[0].full_path(route))
            .collect();
        assert!(
            paths.contains(&"/claude/sdk/v1/messages".to_owned()),
            "{paths:?}"
        );
        assert!(paths.contains(&"/claude/sdk/{session_id}/v1/responses".to_owned()));
        assert_eq!(paths.len(), 6);
        assert_eq!(
            manifest.config.defaults,
            json!({"cli_path": null, "cwd": null, "env": {}, "cli_args": [],
                   "client_tools": "refuse", "session_pool_size": 5, "session_timeout_seconds": 300,
                   "sdk_session_pool": {"enabled": true, "stream_first_chunk_timeout": 120.0,
                                        "stream_ongoing_timeout": 300.0}})
        );
    }

    #[test]
    fn a_plain_answer_in_anthropic_format_with_usage_reported() {
        let (host, plugin) = start("echo");
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/v1/messages",
                &messages("hello", false),
            ))
            .unwrap();
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        let answer = body(&response);
        assert_eq!(answer["type"], "message");
        assert_eq!(answer["content"][0]["text"], "turn 1: hello");
        assert_eq!(
            answer["model"], "claude-sonnet-4-5",
            "the requested model reaches --model"
        );
        assert_eq!(answer["usage"]["input_tokens"], 10);
        assert_eq!(answer["usage"]["cache_read_input_tokens"], 2);
        // Reported to the host for request.completed (plugin API 1.3).
        let by = response.answered_by.as_ref().expect("who answered");
        assert_eq!(by.provider, "claude_sdk");
        assert_eq!(by.model.as_deref(), Some("claude-sonnet-4-5"));
        let usage = response.usage.expect("the result's usage");
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_input_tokens
            ),
            (10, 5, 2)
        );
        assert!(host.emitted().is_empty(), "no event of its own any more");
    }

    #[test]
    fn a_streamed_chat_answer() {
        let (_, plugin) = start("echo");
        let request = json!({"model": "gpt-4o", "stream": true,
                             "stream_options": {"include_usage": true},
                             "messages": [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": "hi there"}]});
        let (response, pieces) = plugin
            .route_stream(
                json_request("POST", "/claude/sdk/v1/chat/completions", &request),
                100,
            )
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(
            response.headers.get("content-type"),
            Some("text/event-stream")
        );
        let text: String = pieces.iter().map(|p| String::from_utf8_lossy(p)).collect();
        let deltas: Vec<String> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .map(|data| ccproxy_plugin_abi::serde_json::from_str::<Value>(data).unwrap())
            .filter_map(|chunk| {
                chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .filter(|content| !content.is_empty())
            .collect();
        assert_eq!(
            deltas,
            ["turn 1: ", "hi there"],
            "the partial messages' pieces, and the whole message not again"
        );
        assert!(
            text.contains(r#""model":"claude-fake-1""#),
            "gpt-4o is not passed to the CLI: {text}"
        );
        assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
        assert!(text.contains(r#""completion_tokens":5"#), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        // gpt-4o is not the CLI's model: the head cannot name it, the end does.
        let by = response.answered_by.as_ref().expect("who answered");
        assert_eq!(
            (by.provider.as_str(), by.model.as_deref()),
            ("claude_sdk", Some("claude-fake-1"))
        );
        let usage = response.usage.expect("the usage, with the stream's end");
        assert_eq!((usage.input_tokens, usage.output_tokens), (10, 5));
    }

    #[test]
    fn request_text_never_becomes_a_cli_option() {
        let (_, plugin) = start("args");
        let request = json!({"model": "claude-x", "system": "--dangerously-skip-permissions",
                             "messages": [{"role": "user", "content": "hi"}]});
        let response = plugin
            .route(json_request("POST", "/claude/sdk/v1/messages", &request))
            .unwrap();
        let text = body(&response)["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            text.contains(" --append-system-prompt=--dangerously-skip-permissions "),
            "{text}"
        );
        assert!(text.contains(" --model=claude-x "), "{text}");
    }

    #[test]
    fn the_proxys_settings_stay_out_of_the_cli_environment() {
        for kept in [
            "HOME",
            "PATH",
            "ANTHROPIC_API_KEY",
            "HTTPS_PROXY",
            "CLAUDE_CONFIG_DIR",
        ] {
            assert!(passed_to_cli(kept), "{kept}");
        }
        for dropped in [
            "SECURITY__AUTH_TOKEN",
            "PLUGINS__CLAUDE_API__API_KEY",
            "plugins__x__y",
            "CCPROXY_LOG_LEVEL",
            "CONFIG_FILE",
            "ENABLED_PLUGINS",
        ] {
            assert!(!passed_to_cli(dropped), "{dropped}");
        }
        let (_, plugin) = start("env");
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/v1/messages",
                &messages("x", false),
            ))
            .unwrap();
        let names = body(&response)["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(names.contains(" PATH "), "{names}");
        assert!(
            names.contains(" FAKE_CLAUDE_MODE "),
            "the config's env: {names}"
        );
    }

    #[test]
    fn a_responses_answer() {
        let (_, plugin) = start("echo");
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/v1/responses",
                &json!({"model": "claude-x", "input": "question"}),
            ))
            .unwrap();
        let answer = body(&response);
        assert_eq!(answer["object"], "response");
        assert_eq!(
            answer["output"][0]["content"][0]["text"],
            "turn 1: question"
        );
        assert_eq!(answer["usage"]["total_tokens"], 17);
    }

    #[test]
    fn a_session_keeps_its_cli_running_between_turns() {
        let (host, plugin) = start("echo");
        let path = "/claude/sdk/my-chat/v1/messages";
        let first = plugin
            .route(json_request("POST", path, &messages("one", false)))
            .unwrap();
        assert_eq!(body(&first)["content"][0]["text"], "turn 1: one");
        let mut second = messages("one", false);
        second["messages"] = json!([
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "turn 1: one"},
            {"role": "user", "content": "two"}]);
        let second = plugin.route(json_request("POST", path, &second)).unwrap();
        assert_eq!(
            body(&second)["content"][0]["text"],
            "turn 2: two",
            "the same CLI process gets only the new message"
        );
        let health = plugin.health().unwrap();
        assert_eq!(health.details["processes_started"], 1, "{}", health.details);
        assert_eq!(health.details["processes_reused"], 1);
        assert_eq!(health.details["sessions_running"], 1);
        // Another session is another CLI.
        let other = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/other/v1/messages",
                &messages("x", false),
            ))
            .unwrap();
        assert_eq!(body(&other)["content"][0]["text"], "turn 1: x");
        drop(host);
    }

    #[test]
    fn without_the_pool_a_session_is_resumed_each_turn() {
        let (_, plugin) = start_with("echo", json!({"sdk_session_pool": {"enabled": false}}));
        let path = "/claude/sdk/s/v1/chat/completions";
        let request = json!({"messages": [{"role": "user", "content": "a"}]});
        let first = plugin.route(json_request("POST", path, &request)).unwrap();
        assert_eq!(
            body(&first)["choices"][0]["message"]["content"],
            "turn 1: a"
        );
        let second = plugin.route(json_request("POST", path, &request)).unwrap();
        assert_eq!(
            body(&second)["choices"][0]["message"]["content"],
            "resumed turn 1: a"
        );
        assert_eq!(plugin.health().unwrap().details["sessions_resumed"], 1);
    }

    #[test]
    fn a_session_the_cli_already_has_is_resumed() {
        let (_, plugin) = start("in-use");
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/old/v1/messages",
                &messages("back", false),
            ))
            .unwrap();
        assert_eq!(
            body(&response)["content"][0]["text"],
            "resumed turn 1: back"
        );
    }

    #[test]
    fn a_missing_cli_is_a_clear_error_in_the_client_format() {
        let (_, plugin) = start_with("echo", json!({"cli_path": "/nonexistent/claude"}));
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/v1/messages",
                &messages("hi", true),
            ))
            .unwrap();
        assert_eq!(response.status, 502);
        let error = body(&response);
        assert_eq!(error["type"], "error");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("cannot start the Claude Code CLI `/nonexistent/claude`"),
            "{message}"
        );
        assert!(message.contains("cli_path"), "{message}");
        // request.failed names the provider, as for a provider endpoint.
        let by = response.answered_by.as_ref().expect("who failed");
        assert_eq!(
            (by.provider.as_str(), by.model.as_deref()),
            ("claude_sdk", None)
        );
        assert_eq!(response.usage, None);
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/v1/chat/completions",
                &json!({"messages": [{"role": "user", "content": "hi"}]}),
            ))
            .unwrap();
        assert_eq!(response.status, 502);
        assert_eq!(body(&response)["error"]["type"], "server_error");
    }

    #[test]
    fn a_cli_that_exits_early_is_a_clear_error() {
        for mode in ["exit", "init-then-exit"] {
            let (_, plugin) = start(mode);
            for stream in [false, true] {
                let response = plugin
                    .route(json_request(
                        "POST",
                        "/claude/sdk/v1/messages",
                        &messages("hi", stream),
                    ))
                    .unwrap();
                assert_eq!(response.status, 502, "{mode}");
                let message = body(&response)["error"]["message"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(
                    message.contains("ended before its answer"),
                    "{mode}: {message}"
                );
                let expected = if mode == "exit" {
                    "exit code 3; stderr: fake failure"
                } else {
                    "exit code 1"
                };
                assert!(message.contains(expected), "{mode}: {message}");
            }
        }
    }

    #[test]
    fn an_error_result_is_an_error_answer() {
        let (_, plugin) = start("error-result");
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/v1/responses",
                &json!({"input": "hi"}),
            ))
            .unwrap();
        assert_eq!(response.status, 502);
        let message = body(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("API Error: 401"), "{message}");
        assert_eq!(plugin.health().unwrap().details["failed"], 1);
    }

    #[test]
    fn bad_requests_are_refused_before_the_cli_runs() {
        let (_, plugin) = start("echo");
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/v1/chat/completions",
                &json!({"messages": "x"}),
            ))
            .unwrap();
        assert_eq!(response.status, 400);
        assert_eq!(body(&response)["error"]["type"], "invalid_request_error");
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/a%20b/v1/messages",
                &messages("x", false),
            ))
            .unwrap();
        assert_eq!(response.status, 400);
        assert_eq!(plugin.health().unwrap().details["processes_started"], 0);
    }

    #[test]
    fn client_tools_are_refused_unless_the_config_drops_them() {
        let tools = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
        let mut request = messages("weather?", false);
        request["tools"] = tools.clone();
        let (_, plugin) = start("echo");
        let response = plugin
            .route(json_request("POST", "/claude/sdk/v1/messages", &request))
            .unwrap();
        assert_eq!(response.status, 400);
        let error = body(&response);
        assert_eq!(error["error"]["type"], "invalid_request_error");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("(`tools`)"), "{message}");
        assert!(message.contains("/claude/v1/messages"), "{message}");
        let chat = json!({"messages": [{"role": "user", "content": "weather?"}],
                          "tools": [{"type": "function", "function": {"name": "f"}}]});
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/s/v1/chat/completions",
                &chat,
            ))
            .unwrap();
        assert_eq!(response.status, 400);
        let message = body(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("/claude/v1/chat/completions"), "{message}");
        assert_eq!(plugin.health().unwrap().details["processes_started"], 0);

        let (_, plugin) = start_with("echo", json!({"client_tools": "ignore"}));
        let response = plugin
            .route(json_request("POST", "/claude/sdk/v1/messages", &request))
            .unwrap();
        assert_eq!(response.status, 200, "{}", body(&response));
        assert_eq!(body(&response)["content"][0]["text"], "turn 1: weather?");
    }

    #[test]
    fn bad_timeouts_are_refused_at_start() {
        let host =
            MockHost::new().config(json!({"sdk_session_pool": {"stream_ongoing_timeout": 0}}));
        let error = host.start::<ClaudeSdk>().expect_err("refused");
        assert!(
            error.message().contains("stream_ongoing_timeout"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn health_says_whether_the_cli_is_there() {
        let (_, plugin) = start("echo");
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Healthy, "{}", health.details);
        assert_eq!(health.details["cli_found"], fake_cli());
        let (_, plugin) = start_with("echo", json!({"cli_path": "ccproxy-no-such-claude"}));
        let health = plugin.health().unwrap();
        assert_eq!(health.status, HealthStatus::Degraded);
        assert!(
            health.details["reason"]
                .as_str()
                .unwrap()
                .contains("set [plugins.claude_sdk] cli_path"),
            "{}",
            health.details
        );
        assert!(find_cli("sh").is_some(), "found in PATH");
    }

    #[test]
    fn the_sweep_ends_sessions_past_their_timeout() {
        let (_, plugin) = start_with("echo", json!({"session_timeout_seconds": 0}));
        let response = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/s/v1/messages",
                &messages("a", false),
            ))
            .unwrap();
        assert_eq!(response.status, 200);
        plugin.task("sweep").unwrap();
        let health = plugin.health().unwrap();
        assert_eq!(health.details["sessions_running"], 0, "{}", health.details);
        let again = plugin
            .route(json_request(
                "POST",
                "/claude/sdk/s/v1/messages",
                &messages("b", false),
            ))
            .unwrap();
        assert_eq!(body(&again)["content"][0]["text"], "resumed turn 1: b");
    }

    #[test]
    fn past_the_pool_size_the_longest_idle_session_is_ended() {
        let (_, plugin) = start_with("echo", json!({"session_pool_size": 1}));
        let turn = |session: &str, text: &str| {
            let path = format!("/claude/sdk/{session}/v1/messages");
            let response = plugin
                .route(json_request("POST", &path, &messages(text, false)))
                .unwrap();
            body(&response)["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(turn("a", "1"), "turn 1: 1");
        assert_eq!(turn("b", "1"), "turn 1: 1");
        assert_eq!(plugin.health().unwrap().details["sessions_running"], 1);
        assert_eq!(turn("b", "2"), "turn 2: 2", "b kept running");
        assert_eq!(turn("a", "2"), "resumed turn 1: 2", "a was ended for b");
    }

    #[test]
    fn session_names_become_stable_uuids() {
        let uuid = session_uuid("my-chat");
        assert_eq!(uuid, session_uuid("my-chat"));
        assert_ne!(uuid, session_uuid("my-chat2"));
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "8", "version 8: {uuid}");
        let given = "0A1B2C3D-4E5F-4A6B-9C7D-0E1F2A3B4C5D";
        assert_eq!(session_uuid(given), given.to_ascii_lowercase());
        assert!(valid_session_name("a.b_c-1"));
        assert!(!valid_session_name(""));
        assert!(!valid_session_name("a b"));
        assert_eq!(cli_model(Some("claude-opus-4")), Some("claude-opus-4"));
        assert_eq!(cli_model(Some("opus")), Some("opus"));
        assert_eq!(cli_model(Some("gpt-4o")), None);
    }
}
