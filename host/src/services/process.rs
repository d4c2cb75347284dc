//! `host.process.*`: child processes the host runs for a plugin.
//!
//! Each child gets a watcher task that owns it: it waits for the exit and
//! publishes the status, and kills the child when asked (`host.process.kill`)
//! or when the plugin's table forgets it, whichever comes first. The child is
//! also spawned with `kill_on_drop`, so when the runtime stops at host exit the
//! dropped watchers take their children with them: nothing outlives the host
//! that a plugin started (short of the host itself being killed with SIGKILL).
//!
//! A child's stderr is drained as it is written, into a tail of at most
//! [`STDERR_KEEP`] bytes that `host.process.read` hands out: a chatty child
//! never blocks on a full stderr pipe while its plugin reads only stdout, and
//! the last lines are still there when the plugin asks why it exited.

use std::{
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use ccproxy_plugin_abi::{
    protocol::{
        ProcessExit, ProcessReadInput, ProcessRef, ProcessSpawnInput, ProcessSpawnOutput,
        ProcessWriteInput, StreamChunk,
    },
    raw::{AbiError, ErrorCode},
};
use dashmap::DashMap;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    process::{ChildStderr, ChildStdin, ChildStdout},
    sync::{Mutex, Notify, oneshot, watch},
};

/// The most one `host.process.read` returns.
const READ_CHUNK: usize = 64 * 1024;
/// The most of a child's stderr kept unread; older bytes are dropped.
const STDERR_KEEP: usize = 64 * 1024;

/// One plugin's children, by the handle the plugin got.
#[derive(Debug, Default)]
pub(super) struct Processes {
    next_id: AtomicU64,
    children: DashMap<u64, Arc<Child>>,
}

#[derive(Debug)]
struct Child {
    program: String,
    stdin: Mutex<Option<ChildStdin>>,
    stdout: Mutex<ChildStdout>,
    stderr: Arc<StderrTail>,
    /// Taken to kill; dropping it kills too.
    kill: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    /// `None` until the child exits.
    exit: watch::Receiver<Option<ProcessExit>>,
}

/// The unread end of a child's stderr, filled by a task that reads the pipe
/// as the child writes it.
#[derive(Debug, Default)]
struct StderrTail {
    state: std::sync::Mutex<TailState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct TailState {
    unread: std::collections::VecDeque<u8>,
    /// The pipe is closed (or failed): nothing more comes.
    ended: bool,
}

impl StderrTail {
    fn state(&self) -> std::sync::MutexGuard<'_, TailState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads `pipe` to its end, keeping the last [`STDERR_KEEP`] bytes.
    async fn drain(self: Arc<Self>, mut pipe: ChildStderr) {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = pipe.read(&mut buffer).await.unwrap_or(0);
            {
                let mut state = self.state();
                if read == 0 {
                    state.ended = true;
                } else {
                    state.unread.extend(&buffer[..read]);
                    let excess = state.unread.len().saturating_sub(STDERR_KEEP);
                    state.unread.drain(..excess);
                }
            }
            self.changed.notify_waiters();
            if read == 0 {
                return;
            }
        }
    }

    /// What is unread (at most `limit` bytes), waiting for some; empty at the end.
    async fn read(&self, limit: usize) -> Vec<u8> {
        loop {
            // Made before the check: `notify_waiters` wakes it from then on.
            let changed = self.changed.notified();
            {
                let mut state = self.state();
                if !state.unread.is_empty() {
                    let take = state.unread.len().min(limit);
                    return state.unread.drain(..take).collect();
                }
                if state.ended {
                    return Vec::new();
                }
            }
            changed.await;
        }
    }
}

impl Processes {
    /// `host.process.spawn`.
    pub(super) fn spawn(&self, spec: ProcessSpawnInput) -> Result<ProcessSpawnOutput, AbiError> {
        if spec.program.is_empty() {
            return Err(AbiError::new(ErrorCode::Invalid, "no program to run"));
        }
        let mut command = tokio::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so killing it ends what it started
            // too (a CLI's shell tool, say), not only the child itself.
            .process_group(0)
            .kill_on_drop(true);
        if spec.clear_env {
            command.env_clear();
        }
        command.envs(spec.env.iter().map(|(name, value)| (name, value)));
        if let Some(dir) = &spec.cwd {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .map_err(|error| spawn_error(&spec, &error))?;
        let pid = child.id().unwrap_or_default();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(AbiError::new(
                ErrorCode::Internal,
                "the child's pipes were not set up",
            ));
        };
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let (exit_tx, exit_rx) = watch::channel(None);
        let program = spec.program.clone();
        let stderr_tail = Arc::new(StderrTail::default());
        tokio::spawn(Arc::clone(&stderr_tail).drain(stderr));
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                // Asked to kill, or the handle was forgotten: both end the child.
                _ = kill_rx => {
                    if let Some(group) = child.id().and_then(|pid| libc::pid_t::try_from(pid).ok()) {
                        let _ = crate::unix::send_signal(-group, libc::SIGKILL);
                    }
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let exit = match status {
                Ok(status) => exit_of(status),
                Err(error) => {
                    tracing::warn!(%program, %error, "cannot wait for a plugin's child process");
                    ProcessExit::default()
                }
            };
            let _ = exit_tx.send(Some(exit));
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.children.insert(
            id,
            Arc::new(Child {
                program: spec.program,
                stdin: Mutex::new(Some(stdin)),
                stdout: Mutex::new(stdout),
                stderr: stderr_tail,
                kill: std::sync::Mutex::new(Some(kill_tx)),
                exit: exit_rx,
            }),
        );
        Ok(ProcessSpawnOutput { process: id, pid })
    }

    fn child(&self, id: u64) -> Result<Arc<Child>, AbiError> {
        self.children
            .get(&id)
            .map(|child| Arc::clone(child.value()))
            .ok_or_else(|| {
                AbiError::new(
                    ErrorCode::NotFound,
                    format!("process {id} is unknown (never started, or killed)"),
                )
            })
    }

    /// `host.process.write`: the body to stdin (waiting while the pipe is
    /// full), then stdin closed when asked.
    pub(super) async fn write(
        &self,
        input: ProcessWriteInput,
        body: Vec<u8>,
    ) -> Result<(), AbiError> {
        let child = self.child(input.process)?;
        let mut stdin = child.stdin.lock().await;
        let pipe = stdin.as_mut().ok_or_else(|| {
            AbiError::new(
                ErrorCode::Invalid,
                format!("the stdin of {} is already closed", child.program),
            )
        })?;
        if !body.is_empty() {
            let written = async {
                pipe.write_all(&body).await?;
                pipe.flush().await
            };
            written.await.map_err(|error| {
                AbiError::new(
                    ErrorCode::Unavailable,
                    format!("cannot write to {}: {error}", child.program),
                )
            })?;
        }
        if input.close {
            // Dropping the pipe closes it: the child reads end of input.
            stdin.take();
        }
        Ok(())
    }

    /// `host.process.read`: what the child wrote since, at most [`READ_CHUNK`]
    /// bytes; the end once it closed the stream. Of stderr, only the last
    /// [`STDERR_KEEP`] bytes not read yet are kept.
    pub(super) async fn read(
        &self,
        input: ProcessReadInput,
    ) -> Result<(StreamChunk, Vec<u8>), AbiError> {
        let child = self.child(input.process)?;
        if input.stderr {
            let piece = child.stderr.read(READ_CHUNK).await;
            return Ok((
                StreamChunk {
                    end: piece.is_empty(),
                },
                piece,
            ));
        }
        let mut buffer = vec![0u8; READ_CHUNK];
        let read = child.stdout.lock().await.read(&mut buffer).await;
        let read = read.map_err(|error| {
            AbiError::new(
                ErrorCode::Internal,
                format!("cannot read from {}: {error}", child.program),
            )
        })?;
        buffer.truncate(read);
        Ok((StreamChunk { end: read == 0 }, buffer))
    }

    /// `host.process.wait`.
    pub(super) async fn wait(&self, input: ProcessRef) -> Result<ProcessExit, AbiError> {
        let child = self.child(input.process)?;
        let mut exit = child.exit.clone();
        let status = exit.wait_for(Option::is_some).await.map_err(|_| {
            AbiError::new(
                ErrorCode::Internal,
                format!("lost track of {}", child.program),
            )
        })?;
        Ok(status.unwrap_or_default())
    }

    /// `host.process.kill`: kills the child if it still runs and forgets it.
    pub(super) fn kill(&self, input: ProcessRef) {
        if let Some((_, child)) = self.children.remove(&input.process)
            && let Some(kill) = child
                .kill
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take()
        {
            let _ = kill.send(());
        }
    }

    /// Kills every child (the plugin stops).
    pub(super) fn kill_all(&self) {
        let ids: Vec<u64> = self.children.iter().map(|entry| *entry.key()).collect();
        for process in ids {
            self.kill(ProcessRef { process });
        }
    }
}

fn spawn_error(spec: &ProcessSpawnInput, error: &std::io::Error) -> AbiError {
    let program = &spec.program;
    if error.kind() == std::io::ErrorKind::NotFound {
        if let Some(dir) = spec.cwd.as_deref().filter(|dir| !Path::new(dir).is_dir()) {
            return AbiError::new(
                ErrorCode::NotFound,
                format!("cannot start {program}: working directory {dir} does not exist"),
            );
        }
        if program.contains('/') {
            return AbiError::new(
                ErrorCode::NotFound,
                format!("cannot start {program}: no such file"),
            );
        }
        // The lookup uses the child's PATH when the plugin set one.
        let path = spec
            .env
            .iter()
            .rev()
            .find(|(name, _)| name == "PATH")
            .map(|(_, value)| value.clone())
            .or_else(|| (!spec.clear_env).then(|| std::env::var("PATH").unwrap_or_default()))
            .unwrap_or_default();
        return AbiError::new(
            ErrorCode::NotFound,
            format!(
                "cannot start {program}: not found in PATH ({path}); give its absolute path or add its folder to the PATH ccproxy runs with"
            ),
        );
    }
    let code = match error.kind() {
        std::io::ErrorKind::PermissionDenied => ErrorCode::Forbidden,
        _ => ErrorCode::Internal,
    };
    AbiError::new(code, format!("cannot start {program}: {error}"))
}

#[cfg(unix)]
fn exit_of(status: std::process::ExitStatus) -> ProcessExit {
    use std::os::unix::process::ExitStatusExt as _;
    ProcessExit {
        code: status.code(),
        signal: status.signal(),
    }
}

#[cfg(not(unix))]
fn exit_of(status: std::process::ExitStatus) -> ProcessExit {
    ProcessExit {
        code: status.code(),
        signal: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn command(program: &str, args: &[&str]) -> ProcessSpawnInput {
        ProcessSpawnInput {
            program: program.to_owned(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            ..ProcessSpawnInput::default()
        }
    }

    async fn read_all(processes: &Processes, process: u64, stderr: bool) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let (chunk, piece) = processes
                .read(ProcessReadInput { process, stderr })
                .await
                .expect("readable");
            if chunk.end {
                return all;
            }
            all.extend_from_slice(&piece);
        }
    }

    #[tokio::test]
    async fn killing_a_child_ends_what_it_started_too() {
        let processes = Processes::default();
        // A child that starts a grandchild and says its pid.
        let spawned = processes
            .spawn(command("sh", &["-c", "sleep 30 & echo $!; wait"]))
            .expect("sh runs");
        let process = spawned.process;
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            let (chunk, piece) = processes
                .read(ProcessReadInput {
                    process,
                    stderr: false,
                })
                .await
                .expect("readable");
            assert!(!chunk.end, "no pid before the end");
            line.extend_from_slice(&piece);
        }
        let grandchild: libc::pid_t = String::from_utf8_lossy(&line).trim().parse().unwrap();
        assert!(
            crate::unix::send_signal(grandchild, 0).is_ok(),
            "the grandchild runs"
        );
        processes.kill(ProcessRef { process });
        let mut gone = false;
        for _ in 0..100 {
            // Gone, or a zombie of the exited shell: either way no longer sleeping.
            let state =
                std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z ") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the grandchild {grandchild} outlived the kill");
    }

    #[tokio::test]
    async fn stdin_goes_in_and_stdout_comes_out() {
        let processes = Processes::default();
        let spawned = processes.spawn(command("cat", &[])).expect("cat runs");
        assert!(spawned.pid > 0);
        let process = spawned.process;
        processes
            .write(
                ProcessWriteInput {
                    process,
                    close: false,
                },
                b"one\n".to_vec(),
            )
            .await
            .expect("written");
        processes
            .write(
                ProcessWriteInput {
                    process,
                    close: true,
                },
                b"two\n".to_vec(),
            )
            .await
            .expect("written");
        assert_eq!(read_all(&processes, process, false).await, b"one\ntwo\n");
        let exit = processes.wait(ProcessRef { process }).await.expect("exits");
        assert_eq!((exit.code, exit.signal), (Some(0), None));
        let error = processes
            .write(
                ProcessWriteInput {
                    process,
                    close: false,
                },
                b"x".to_vec(),
            )
            .await
            .unwrap_err();
        assert!(
            error.message.contains("already closed"),
            "{}",
            error.message
        );
    }

    #[tokio::test]
    async fn exit_code_and_stderr() {
        let processes = Processes::default();
        let process = processes
            .spawn(command("sh", &["-c", "echo err >&2; exit 3"]))
            .expect("sh runs")
            .process;
        assert_eq!(read_all(&processes, process, true).await, b"err\n");
        assert_eq!(
            processes
                .wait(ProcessRef { process })
                .await
                .expect("exits")
                .code,
            Some(3)
        );
    }

    #[tokio::test]
    async fn a_child_writing_much_to_stderr_never_blocks_and_its_last_lines_are_kept() {
        let processes = Processes::default();
        // 1.7 MB of whole lines to stderr (a pipe holds 64 KiB) before the one stdout line.
        let script = "yes 0123456789abcdef | head -c 1700000 >&2; echo last words >&2; echo done";
        let process = processes
            .spawn(command("sh", &["-c", script]))
            .expect("sh runs")
            .process;
        let stdout = tokio::time::timeout(
            Duration::from_secs(20),
            read_all(&processes, process, false),
        )
        .await
        .expect("stdout ends although nobody read stderr");
        assert_eq!(stdout, b"done\n");
        let exit = processes.wait(ProcessRef { process }).await.expect("exits");
        assert_eq!(exit.code, Some(0));
        let stderr = read_all(&processes, process, true).await;
        assert!(stderr.len() <= STDERR_KEEP, "{}", stderr.len());
        assert!(stderr.len() > STDERR_KEEP / 2, "{}", stderr.len());
        assert!(stderr.ends_with(b"abcdef\nlast words\n"));
    }

    #[tokio::test]
    async fn kill_ends_a_running_child_and_forgets_it() {
        let processes = Processes::default();
        let process = processes
            .spawn(command("sleep", &["30"]))
            .expect("sleep runs")
            .process;
        let child = processes.child(process).expect("known");
        processes.kill(ProcessRef { process });
        let mut exit = child.exit.clone();
        let status = tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some))
            .await
            .expect("killed in time")
            .expect("watched")
            .unwrap_or_default();
        assert_eq!(status.signal, Some(libc::SIGKILL));
        let error = processes.wait(ProcessRef { process }).await.unwrap_err();
        assert_eq!(ErrorCode::from_u32(error.code), ErrorCode::NotFound);
    }

    #[tokio::test]
    async fn a_missing_program_names_the_path() {
        let processes = Processes::default();
        let mut spec = command("surely-no-such-program-ccproxy", &[]);
        spec.env
            .push(("PATH".to_owned(), "/nowhere/bin".to_owned()));
        let error = processes.spawn(spec).unwrap_err();
        assert_eq!(ErrorCode::from_u32(error.code), ErrorCode::NotFound);
        assert!(
            error
                .message
                .contains("surely-no-such-program-ccproxy: not found in PATH (/nowhere/bin)"),
            "{}",
            error.message
        );
    }
}
