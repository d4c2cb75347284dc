//! `serve-PORT.json` in the runtime folder (`paths::runtime_dir`): the running
//! server's pid and address, how many reloads it has done and how the last
//! one went. `ccproxy reload` reads it, sends `SIGHUP`, and waits for the
//! count to move. Written whole (a new file renamed over the old), never
//! following a link, readable by the owner only; removed at shutdown.

use std::{
    fs,
    io::Write,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::{config::Config, paths, unix::send_signal};

/// What the file says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerState {
    /// The server's process id.
    pub pid: u32,
    /// The address it listens on.
    pub address: String,
    /// Reloads done so far (failed ones included).
    pub reloads: u64,
    /// How the last reload went.
    pub last_reload: Option<ReloadReport>,
}

/// How one reload went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReloadReport {
    /// Whether the new state is serving.
    pub ok: bool,
    /// What changed, or why nothing did.
    pub message: String,
}

/// The file of the server on `port`.
pub fn state_file(port: u16) -> PathBuf {
    paths::runtime_dir().join(format!("serve-{port}.json"))
}

/// Writes `state` to `path`.
pub fn write(path: &Path, state: &ServerState) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // A fresh name created exclusively, 0600 (`tempfile`), renamed over the
    // old file: a reader sees the old state or the new one, never half.
    let mut file = tempfile::Builder::new()
        .prefix(".serve-")
        .tempfile_in(dir)?;
    file.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<ServerState> {
    let text = fs::read_to_string(path).with_context(|| {
        format!(
            "no running ccproxy found ({} is missing): start it with `ccproxy serve`, or reload a systemd service with `systemctl reload ccproxy`",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a server state file", path.display()))
}

/// Asks the server on `port` to reload, and waits for the outcome:
/// `Ok(what changed)`, or an error saying why nothing did (the server keeps
/// its old state).
pub fn reload_running(port: u16, wait: Duration) -> anyhow::Result<String> {
    // The system service's runtime folder is `/run/ccproxy`, which only the
    // service itself is told of (RUNTIME_DIRECTORY): an operator's shell
    // looks there after its own folder.
    let service_file = Path::new("/run/ccproxy").join(format!("serve-{port}.json"));
    let path = match state_file(port) {
        own if !own.exists() && service_file.exists() => service_file,
        own => own,
    };
    let before = read(&path)?;
    let pid = libc::pid_t::try_from(before.pid).context("bad pid in the state file")?;
    if send_signal(pid, 0).is_err() {
        bail!(
            "the server recorded in {} (pid {pid}) is not running; remove the file or start ccproxy",
            path.display()
        );
    }
    if let Err(error) = send_signal(pid, libc::SIGHUP) {
        bail!("cannot signal pid {pid}: {error}");
    }
    let deadline = Instant::now() + wait;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(now) = read(&path)
            && now.reloads > before.reloads
        {
            let report = now.last_reload.unwrap_or(ReloadReport {
                ok: true,
                message: "reloaded".to_owned(),
            });
            return if report.ok {
                Ok(report.message)
            } else {
                Err(anyhow::anyhow!(
                    "reload failed, the old state keeps serving: {}",
                    report.message
                ))
            };
        }
        if Instant::now() >= deadline {
            bail!(
                "pid {pid} got SIGHUP but did not report a reload within {} s",
                wait.as_secs()
            );
        }
    }
}

/// [`reload_running`] for a command that only needs it done: prints what
/// changed on stderr.
pub fn request_reload(config: &Config) -> anyhow::Result<()> {
    let message = reload_running(config.server.port, Duration::from_secs(120))?;
    eprintln!("reloaded: {message}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_is_written_whole_and_private() {
        use std::os::unix::fs::MetadataExt;
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("run/serve-8000.json");
        let state = ServerState {
            pid: 42,
            address: "127.0.0.1:8000".to_owned(),
            reloads: 1,
            last_reload: Some(ReloadReport {
                ok: false,
                message: "config: bad".to_owned(),
            }),
        };
        write(&path, &state).unwrap();
        assert_eq!(read(&path).unwrap(), state);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn a_link_planted_at_the_files_name_is_replaced_not_followed() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("serve-8000.json");
        let victim = scratch.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let state = ServerState {
            pid: 7,
            address: String::new(),
            reloads: 0,
            last_reload: None,
        };
        write(&path, &state).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(read(&path).unwrap(), state);
    }
}
