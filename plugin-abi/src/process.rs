//! Child processes the host runs for a plugin (plugin API 1.2, capability
//! `process`): [`Command`] describes one, `Context::spawn_process` starts it,
//! and [`ChildProcess`] talks to it.
//!
//! The host owns the process and its pipes (a plugin owns no runtime to wait on
//! them): writing waits while the child's stdin is full, reading returns what
//! the child wrote so far, and a child is killed when its [`ChildProcess`] is
//! dropped, when the plugin is stopped, and when the host exits.

use async_ffi::FutureExt as _;

use crate::{
    PluginError,
    context::call_host,
    protocol::{ProcessReadInput, ProcessRef, ProcessSpawnInput, ProcessWriteInput, ops},
    raw::HostBox,
};

/// A program to start, with its arguments, environment and working directory.
///
/// ```
/// use ccproxy_plugin_abi::Command;
///
/// let command = Command::new("git")
///     .args(["log", "-1", "--format=%H"])
///     .env("GIT_PAGER", "cat")
///     .current_dir("/srv/repo");
/// # let _ = command;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Command {
    spec: ProcessSpawnInput,
}

impl Command {
    /// Runs `program`: a path, or a name looked up in `PATH` (the `PATH` set
    /// with [`Command::env`] when there is one, else the host's).
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            spec: ProcessSpawnInput {
                program: program.into(),
                ..ProcessSpawnInput::default()
            },
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.spec.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets environment variable `name` for the child.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.env.push((name.into(), value.into()));
        self
    }

    /// Starts the child with an empty environment (plus what [`Command::env`]
    /// sets) instead of the host's, which holds the host's own secrets.
    pub fn env_clear(mut self) -> Self {
        self.spec.clear_env = true;
        self
    }

    /// Runs the child in `dir` instead of the host's working directory.
    pub fn current_dir(mut self, dir: impl Into<String>) -> Self {
        self.spec.cwd = Some(dir.into());
        self
    }

    pub(crate) fn into_spec(self) -> ProcessSpawnInput {
        self.spec
    }
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitStatus {
    /// The exit code, when the child exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it (Unix).
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Whether the child exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A running child process, started with `Context::spawn_process`.
///
/// Dropping it kills the child (unless [`ChildProcess::kill`] already did);
/// call [`ChildProcess::wait`] first to let it finish.
///
/// ```no_run
/// # use ccproxy_plugin_abi::prelude::*;
/// # async fn demo(ctx: &Context) -> Result<(), PluginError> {
/// let mut child = ctx.spawn_process(Command::new("tr").args(["a-z", "A-Z"])).await?;
/// child.write("hello\n").await?;
/// child.close_stdin().await?;
/// let mut output = Vec::new();
/// while let Some(piece) = child.read_stdout().await? {
///     output.extend_from_slice(&piece);
/// }
/// assert!(child.wait().await?.success());
/// assert_eq!(output, b"HELLO\n");
/// # Ok(()) }
/// ```
pub struct ChildProcess {
    host: HostBox,
    process: u64,
    pid: u32,
    killed: bool,
}

impl std::fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildProcess")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl ChildProcess {
    pub(crate) fn new(host: HostBox, process: u64, pid: u32) -> Self {
        Self {
            host,
            process,
            pid,
            killed: false,
        }
    }

    /// The child's operating-system process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Writes `bytes` to the child's stdin, waiting while the pipe is full.
    pub async fn write(&mut self, bytes: impl Into<Vec<u8>>) -> Result<(), PluginError> {
        self.send_input(bytes.into(), false).await
    }

    /// Closes the child's stdin: it sees the end of its input.
    pub async fn close_stdin(&mut self) -> Result<(), PluginError> {
        self.send_input(Vec::new(), true).await
    }

    /// The next bytes the child wrote to stdout (at most 64 KiB); `None` once
    /// it closed stdout.
    pub async fn read_stdout(&mut self) -> Result<Option<Vec<u8>>, PluginError> {
        self.read(false).await
    }

    /// The next bytes the child wrote to stderr (at most 64 KiB); `None` once
    /// it closed stderr. The host drains stderr as the child writes it and
    /// keeps the last 64 KiB not yet read (older bytes are dropped), so a
    /// child never blocks on a full stderr pipe, read or not.
    pub async fn read_stderr(&mut self) -> Result<Option<Vec<u8>>, PluginError> {
        self.read(true).await
    }

    /// Waits for the child to exit. Its output can still be read afterwards.
    /// A child that fills its stdout pipe waits for a reader: read its output
    /// (or have it go to a file) before waiting.
    pub async fn wait(&mut self) -> Result<ExitStatus, PluginError> {
        let (exit, _) = call_host::<ops::ProcessWait>(
            &self.host,
            &ProcessRef {
                process: self.process,
            },
            Vec::new(),
        )
        .await?;
        Ok(ExitStatus {
            code: exit.code,
            signal: exit.signal,
        })
    }

    /// Kills the child (if it still runs) and releases it; later calls on
    /// this handle fail with `NotFound`.
    pub async fn kill(&mut self) -> Result<(), PluginError> {
        self.killed = true;
        call_host::<ops::ProcessKill>(
            &self.host,
            &ProcessRef {
                process: self.process,
            },
            Vec::new(),
        )
        .await?;
        Ok(())
    }

    async fn send_input(&mut self, bytes: Vec<u8>, close: bool) -> Result<(), PluginError> {
        call_host::<ops::ProcessWrite>(
            &self.host,
            &ProcessWriteInput {
                process: self.process,
                close,
            },
            bytes,
        )
        .await?;
        Ok(())
    }

    async fn read(&mut self, stderr: bool) -> Result<Option<Vec<u8>>, PluginError> {
        let (chunk, piece) = call_host::<ops::ProcessRead>(
            &self.host,
            &ProcessReadInput {
                process: self.process,
                stderr,
            },
            Vec::new(),
        )
        .await?;
        Ok((!chunk.end).then_some(piece))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.killed {
            return;
        }
        // The host forgets the child only when told: ask it to kill (a no-op
        // for a child that exited) and release the pipes.
        let call = call_host::<ops::ProcessKill>(
            &self.host,
            &ProcessRef {
                process: self.process,
            },
            Vec::new(),
        );
        self.host.spawn(
            async move {
                let _ = call.await;
            }
            .into_ffi(),
        );
    }
}
