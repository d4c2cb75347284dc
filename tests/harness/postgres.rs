//! A private PostgreSQL server for one test (issue 11: the `storage`
//! plugin's suite runs on SQLite and on PostgreSQL): `initdb` into a fresh
//! temporary folder, then `postgres` listening on 127.0.0.1 at a free port
//! with its socket in that folder, trust authentication for user
//! `postgres`, no fsync; stopped (fast shutdown) and deleted when dropped.
//!
//! PostgreSQL refuses to run as root, so as root (CI, the dev machines) the
//! server runs as the `postgres` user (`setpriv`), which owns the folder.
//! The binaries are looked up under `/usr/lib/postgresql/*/bin` (Debian's
//! layout); `scripts/deps/postgres` installs them. Without them the test
//! fails saying so.
//!
//! ```no_run
//! let server = ccproxy_e2e::postgres::Postgres::start();
//! let url = server.url(); // postgres://postgres@127.0.0.1:PORT/postgres
//! # let _ = url;
//! ```

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{send_signal, spawn_log_reader, wait_with_timeout};

/// How long the server may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The folder of PostgreSQL's server binaries (the newest version when
/// several are installed); panics naming `scripts/deps/postgres` when none is.
pub fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .filter(|bin| bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|version| version.to_str())
            .and_then(|version| version.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries are missing (no /usr/lib/postgresql/*/bin/initdb); \
             run scripts/deps/postgres (it installs the Debian package postgresql)"
        )
    })
}

/// The uid and gid of user `postgres`, when this process runs as root.
fn run_as() -> Option<(u32, u32)> {
    if rustix_free_euid() != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap_or_else(|error| panic!("cannot run id: {error}"));
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "there is no user postgres to run PostgreSQL as (it refuses root); \
                     run scripts/deps/postgres"
                )
            })
    };
    Some((id("-u"), id("-g")))
}

/// The effective user id, from `/proc/self/status` (no `unsafe`).
fn rustix_free_euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .and_then(|euid| euid.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// A command for `program` of PostgreSQL's `bin`, as `postgres` when root.
fn command(bin: &Path, program: &str, user: Option<(u32, u32)>) -> Command {
    let mut command = match user {
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--init-groups")
                .arg("--")
                .arg(bin.join(program));
            command
        }
        None => Command::new(bin.join(program)),
    };
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    command
}

/// A running private PostgreSQL server; stopped and deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    port: u16,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    // Dropped last: the server's files.
    folder: tempfile::TempDir,
}

impl Postgres {
    /// Creates a cluster in a fresh folder and starts its server.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let user = run_as();
        let folder = tempfile::Builder::new()
            .prefix("ccproxy-e2e-postgres-")
            .tempdir()
            .expect("a temporary directory can be created");
        let data = folder.path().join("data");
        let socket = folder.path().join("socket");
        std::fs::create_dir(&socket).expect("the socket folder can be created");
        if let Some((uid, gid)) = user {
            for path in [folder.path(), socket.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap_or_else(|error| {
                    panic!("cannot give {} to postgres: {error}", path.display())
                });
            }
        }
        let initdb = command(&bin, "initdb", user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .unwrap_or_else(|error| panic!("cannot run initdb: {error}"));
        assert!(
            initdb.status.success(),
            "initdb failed ({}):\n{}\n{}",
            initdb.status,
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut child = command(&bin, "postgres", user)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&socket)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start postgres: {error}"));
        let log = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            readers.push(spawn_log_reader(stderr, log.clone(), None));
        }
        if let Some(stdout) = child.stdout.take() {
            readers.push(spawn_log_reader(stdout, log.clone(), None));
        }
        let mut server = Postgres {
            child: Some(child),
            port,
            log,
            readers,
            folder,
        };
        server.wait_ready(&bin);
        server
    }

    fn wait_ready(&mut self, bin: &Path) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let ready = TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && Command::new(bin.join("pg_isready"))
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        "postgres",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success());
            if ready {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "postgres exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within {STARTUP_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's folder (data and socket).
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Runs `sql` with `psql` (tuples only, unaligned) and returns its output.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(bin_dir().join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap_or_else(|error| panic!("cannot run psql: {error}"));
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: PostgreSQL's fast shutdown.
            send_signal(&child, libc::SIGINT);
            if wait_with_timeout(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}
