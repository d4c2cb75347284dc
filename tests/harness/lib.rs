//! The end-to-end harness: runs the real `ccproxy` binary with real plugin
//! libraries in a scratch directory, and talks to it over real sockets.
//!
//! Nothing here builds anything. The binary and the libraries come from the
//! shared target directory, built once by `cargo build --workspace` (and
//! `scripts/build-frozen` for the plugin built against the frozen 1.0
//! interface); when something is missing the harness fails with the command to
//! run.
//!
//! Isolation: every [`Sandbox`] is a fresh temporary directory holding the
//! config home (`cfg/`, whose `ccproxy/plugins` folder is the plugin folder),
//! the data home (`data/`) and the working directory of the process, and the
//! process gets a cleared environment, so neither the developer's config nor
//! stray `SERVER__*`/`PLUGINS__*` variables reach it.
//!
//! ```no_run
//! use ccproxy_e2e::{Proxy, ProxyOptions};
//!
//! let proxy = Proxy::start(ProxyOptions { plugins: &["test_plugin_panicky"], ..ProxyOptions::default() });
//! let reply = proxy.get("/panicky/ok");
//! assert_eq!(reply.status, 200);
//! ```

mod http;
pub mod login;
pub mod mock;
pub mod postgres;
mod upstream;

use std::{
    ffi::OsString,
    fs,
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use http::Reply;
pub use upstream::{MockUpstream, RecordedRequest};

/// How long the proxy may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the proxy may take to exit after a signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The prefix every bundled plugin library's file stem has (see
/// `host/src/plugins/discover.rs`).
const BUNDLED_PREFIX: &str = "ccproxy_plugin_";

/// The workspace root: the nearest ancestor of this package whose `Cargo.toml`
/// declares a `[workspace]`.
pub fn workspace_root() -> PathBuf {
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .find(|dir| {
            fs::read_to_string(dir.join("Cargo.toml"))
                .map(|text| text.lines().any(|line| line.trim() == "[workspace]"))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no workspace Cargo.toml above {}", start.display()))
        .to_path_buf()
}

/// The cargo target directory: `$CARGO_TARGET_DIR` (at run time, else at build
/// time), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let configured = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|value| !value.is_empty())
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(OsString::from));
    match configured {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The `ccproxy` binary of the last `cargo build --workspace`.
pub fn ccproxy_binary() -> PathBuf {
    let path = target_dir().join("debug").join("ccproxy");
    if !path.is_file() {
        panic!(
            "{} is missing; run `cargo build --workspace` first (the end-to-end tests never build anything)",
            path.display()
        );
    }
    path
}

/// The file name of the library of crate `stem` on this platform (`libSTEM.so`).
pub fn library_file_name(stem: &str) -> String {
    format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The library with file stem `stem` (crate name with underscores, e.g.
/// `test_plugin_panicky`) from the last `cargo build --workspace`.
pub fn library(stem: &str) -> PathBuf {
    let path = target_dir().join("debug").join(library_file_name(stem));
    if !path.is_file() {
        panic!(
            "plugin library {} is missing; run `cargo build --workspace` first (the end-to-end tests never build anything)",
            path.display()
        );
    }
    path
}

/// The library `stem` built against the frozen 1.0 interface by `scripts/build-frozen`.
pub fn frozen_library(stem: &str) -> PathBuf {
    let path = target_dir()
        .join("frozen")
        .join("debug")
        .join(library_file_name(stem));
    if !path.is_file() {
        panic!(
            "plugin library {} is missing; run `scripts/build-frozen` first (it builds the plugins of tests/frozen; the end-to-end tests never build anything)",
            path.display()
        );
    }
    path
}

/// The bundled plugins the host would find next to the binary, by plugin name
/// (`libccproxy_plugin_access_log.so` is `access_log`).
pub fn bundled_plugins() -> Vec<String> {
    let dir = target_dir().join("debug");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry.file_name().into_string().ok()?;
                    let stem = name
                        .strip_prefix(std::env::consts::DLL_PREFIX)?
                        .strip_suffix(std::env::consts::DLL_SUFFIX)?;
                    stem.strip_prefix(BUNDLED_PREFIX).map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The JSON file at `path`; panics saying which file when it is not.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{}: {error}: {text}", path.display()))
}

/// The permission bits of `path` (`0o600`).
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Reads `stream` until what arrived contains `needle`; panics, saying
/// `what` and what arrived, when the peer closes first. Returns it all.
pub fn read_until(stream: &mut impl Read, needle: &str, what: &str) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains(needle) {
        let read = stream.read(&mut buffer).expect("the stream can be read");
        assert!(
            read > 0,
            "{what}: the proxy closed early: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// What [`run_cli`] returns.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `ccproxy ARGS` in a fresh, empty [`Sandbox`] with `env` added.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    Sandbox::new().run_cli(args, env)
}

/// A scratch directory the proxy runs in; deleted on drop.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// An empty sandbox with its plugin folder created (mode 0755).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ccproxy-e2e-")
            .tempdir()
            .expect("a temporary directory can be created");
        let sandbox = Self { dir };
        let plugins = sandbox.plugin_dir();
        fs::create_dir_all(&plugins).expect("the plugin folder can be created");
        for dir in [
            sandbox.root().join("cfg"),
            sandbox.root().join("cfg/ccproxy"),
            plugins,
        ] {
            set_mode(&dir, 0o755);
        }
        fs::create_dir_all(sandbox.root().join("data")).expect("the data folder can be created");
        sandbox
    }

    /// The sandbox directory; also the working directory of the process.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `$XDG_CONFIG_HOME/ccproxy`.
    pub fn config_dir(&self) -> PathBuf {
        self.root().join("cfg").join("ccproxy")
    }

    /// `$XDG_CONFIG_HOME/ccproxy/plugins`: the user plugin folder, also passed
    /// as `--plugin-dir`.
    pub fn plugin_dir(&self) -> PathBuf {
        self.config_dir().join("plugins")
    }

    /// Installs library `stem` from the target directory into the plugin folder
    /// under its own file name.
    pub fn install(&self, stem: &str) -> PathBuf {
        self.install_file(
            &library(stem),
            &self.plugin_dir(),
            &library_file_name(stem),
            None,
        )
    }

    /// Installs the frozen-1.0 library `stem` into the plugin folder.
    pub fn install_frozen(&self, stem: &str) -> PathBuf {
        self.install_file(
            &frozen_library(stem),
            &self.plugin_dir(),
            &library_file_name(stem),
            None,
        )
    }

    /// Puts a copy of `source` in `dir` (created when missing) as `file_name`.
    /// With `mode`, the copy gets exactly that mode; without, it is a hard link
    /// when possible (cheap, and the mode of a build output: 0755).
    pub fn install_file(
        &self,
        source: &Path,
        dir: &Path,
        file_name: &str,
        mode: Option<u32>,
    ) -> PathBuf {
        fs::create_dir_all(dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        let target = dir.join(file_name);
        let _ = fs::remove_file(&target);
        let linked = mode.is_none() && fs::hard_link(source, &target).is_ok();
        if !linked {
            fs::copy(source, &target).unwrap_or_else(|error| {
                panic!(
                    "cannot copy {} to {}: {error}",
                    source.display(),
                    target.display()
                )
            });
            set_mode(&target, mode.unwrap_or(0o755));
        }
        target
    }

    /// Writes the config file the host finds by default
    /// (`$XDG_CONFIG_HOME/ccproxy/config.toml`).
    pub fn write_config(&self, toml: &str) -> PathBuf {
        let path = self.config_dir().join("config.toml");
        fs::write(&path, toml)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        path
    }

    /// A `ccproxy ARGS` command with the sandbox's environment and working
    /// directory, plus `env`.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(ccproxy_binary());
        command.args(args).current_dir(self.root()).env_clear();
        // Only what a process needs to run; every ccproxy variable
        // (`ENABLED_PLUGINS`, `CONFIG_FILE`, `SERVER__*`, `PLUGINS__*` …) is gone.
        for passed in ["PATH", "LD_LIBRARY_PATH", "LLVM_PROFILE_FILE", "TMPDIR"] {
            if let Some(value) = std::env::var_os(passed) {
                command.env(passed, value);
            }
        }
        command
            .env("HOME", self.root())
            .env("XDG_CONFIG_HOME", self.root().join("cfg"))
            .env("XDG_DATA_HOME", self.root().join("data"))
            .env("XDG_CACHE_HOME", self.root().join("cache"))
            .env("XDG_STATE_HOME", self.root().join("state"))
            .env("RUST_BACKTRACE", "0");
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    /// Runs `ccproxy ARGS` to completion (at most 60 s) and captures its output.
    pub fn run_cli(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let mut child = self
            .command(args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run ccproxy {args:?}: {error}"));
        let stdout = read_all_in_background(child.stdout.take());
        let stderr = read_all_in_background(child.stderr.take());
        let status = wait_with_timeout(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ccproxy {args:?} did not finish within 60 s")
        });
        CliOutput {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }
}

/// Bundled plugins that are off by default (`enabled = false` among their
/// config defaults) and that [`ProxyOptions::bundled`] switches on by
/// naming them: the log store and what reads it (docs/PERFORMANCE.md,
/// "Round 2 changes: the plugins").
pub const OPT_IN_BUNDLED: [&str; 3] = ["storage", "analytics", "dashboard"];

/// How to start a [`Proxy`].
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions<'a> {
    /// Library stems (e.g. `test_plugin_panicky`) installed into the plugin folder.
    pub plugins: &'a [&'a str],
    /// Bundled plugins (found next to the binary) to leave enabled, by plugin
    /// name (`access_log`); every other bundled plugin gets `--disable-plugin`.
    /// Opt-in ones of [`OPT_IN_BUNDLED`] named here are enabled.
    pub bundled: &'a [&'a str],
    /// Extra arguments after `serve --port 0 --plugin-dir DIR --log-level info`
    /// (a `--log-level` here replaces the default).
    pub args: &'a [&'a str],
    /// Extra environment variables.
    pub env: &'a [(&'a str, &'a str)],
    /// Contents of the config file (`$XDG_CONFIG_HOME/ccproxy/config.toml`).
    pub config_toml: Option<&'a str>,
}

/// A running `ccproxy serve`; stopped (SIGINT, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Proxy {
    child: Option<Child>,
    address: SocketAddr,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    sandbox: Sandbox,
}

impl Proxy {
    /// Starts a proxy in a fresh sandbox with `options.plugins` installed.
    pub fn start(options: ProxyOptions<'_>) -> Proxy {
        let sandbox = Sandbox::new();
        for stem in options.plugins {
            sandbox.install(stem);
        }
        Proxy::start_in(sandbox, options)
    }

    /// Starts a proxy in `sandbox` (prepared by the caller; `options.plugins`
    /// are installed too) and waits for its `listening on` line.
    pub fn start_in(sandbox: Sandbox, options: ProxyOptions<'_>) -> Proxy {
        for stem in options.plugins {
            sandbox.install(stem);
        }
        if let Some(toml) = options.config_toml {
            sandbox.write_config(toml);
        }
        let plugin_dir = sandbox.plugin_dir().display().to_string();
        let mut args: Vec<String> = ["serve", "--port", "0", "--plugin-dir", &plugin_dir]
            .map(str::to_owned)
            .to_vec();
        if !options.args.contains(&"--log-level") {
            args.extend(["--log-level".to_owned(), "info".to_owned()]);
        }
        for bundled in bundled_plugins() {
            if !options.bundled.contains(&bundled.as_str()) {
                args.extend(["--disable-plugin".to_owned(), bundled]);
            }
        }
        args.extend(options.args.iter().map(|arg| (*arg).to_owned()));
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        // The opt-in bundled plugins a test lists in `bundled` are switched
        // on too, unless the test says otherwise in `env`.
        let mut env: Vec<(String, String)> = OPT_IN_BUNDLED
            .iter()
            .filter(|name| options.bundled.contains(name))
            .map(|name| format!("PLUGINS__{}__ENABLED", name.to_ascii_uppercase()))
            .filter(|key| !options.env.iter().any(|(set, _)| set == key))
            .map(|key| (key, "true".to_owned()))
            .collect();
        env.extend(
            options
                .env
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        let env_refs: Vec<(&str, &str)> = env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let mut child = sandbox
            .command(&arg_refs, &env_refs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start ccproxy {args:?}: {error}"));

        let log = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let mut readers = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            readers.push(spawn_log_reader(stderr, log.clone(), Some(lines_tx)));
        }
        if let Some(stdout) = child.stdout.take() {
            readers.push(spawn_log_reader(stdout, log.clone(), None));
        }

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let address = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(address) = listening_address(&line) {
                        break address;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "ccproxy printed no `listening on` line within {} s; its log:\n{}",
                        STARTUP_TIMEOUT.as_secs(),
                        log.lock().map(|l| l.clone()).unwrap_or_default()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    for reader in readers {
                        let _ = reader.join();
                    }
                    panic!(
                        "ccproxy exited ({status:?}) before listening; its log:\n{}",
                        log.lock().map(|l| l.clone()).unwrap_or_default()
                    );
                }
            }
        };
        Proxy {
            child: Some(child),
            address,
            log,
            readers,
            sandbox,
        }
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://ADDRESS`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The sandbox it runs in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Everything it logged so far (stderr and stdout).
    pub fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the log never contained {needle:?} within {timeout:?}; the log:\n{}",
            self.log()
        );
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    /// `GET path` with extra headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers, b"")
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("a JSON value serialises");
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            &bytes,
        )
    }

    /// Any HTTP/1.1 request, on a new connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        http::request(self.address, method, path, headers, body).unwrap_or_else(|error| {
            panic!(
                "{method} {path} failed: {error}; the proxy's log:\n{}",
                self.log()
            )
        })
    }

    /// Plugin `name`'s entry in `GET /plugins/status`; panics when it is not
    /// listed.
    pub fn plugin_entry(&self, name: &str) -> serde_json::Value {
        let status = self.get("/plugins/status").json();
        status["plugins"]
            .as_array()
            .and_then(|plugins| plugins.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not in /plugins/status: {status:#}"))
    }

    /// A new connection to it whose reads time out after 10 s, for reading an
    /// answer as it comes.
    pub fn connect(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(self.address).expect("the proxy accepts");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout can be set");
        stream
    }

    /// Writes `bytes` on a new connection and returns everything the server sends
    /// back until it closes the connection (or 5 s pass).
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        http::raw(self.address, bytes)
            .unwrap_or_else(|error| panic!("raw exchange failed: {error}"))
    }

    /// `GET path` over HTTP/2 with prior knowledge (h2c).
    pub fn get_h2c(&self, path: &str) -> Reply {
        http::get_h2c(self.address, path)
            .unwrap_or_else(|error| panic!("h2c GET {path} failed: {error}; log:\n{}", self.log()))
    }

    /// Sends `signal` to the proxy without waiting for it to exit.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            send_signal(child, signal);
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`), waits for the exit and returns the
    /// status and the complete log.
    pub fn stop_with(mut self, signal: i32) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("the child runs until stopped");
        send_signal(&child, signal);
        let status = wait_with_timeout(&mut child, STOP_TIMEOUT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ccproxy did not exit within {:?} of signal {signal}; log:\n{}",
                STOP_TIMEOUT,
                self.log()
            )
        });
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        (status, self.log())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(&child, libc::SIGINT);
            if wait_with_timeout(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// The address in a `listening on http://ADDRESS` log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn spawn_log_reader(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer).into_owned();
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                    }
                    if let Some(lines) = &lines {
                        // The receiver is gone once the proxy is up; keep capturing.
                        let _ = lines.send(line);
                    }
                }
            }
        }
    })
}

fn read_all_in_background(stream: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut stream) = stream {
            let _ = stream.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_signal(child: &Child, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // Safety: kill(2) has no memory-safety preconditions; `pid` is our own
    // child, not yet reaped, so it cannot name another process.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, signal);
    }
}

/// `GET path` on `address` without a [`Proxy`] (for use from another thread).
pub fn http_get(address: SocketAddr, path: &str) -> std::io::Result<Reply> {
    http::request(address, "GET", path, &[], b"")
}

/// `POST path` with a JSON body on `address` without a [`Proxy`] (for use
/// from another thread).
pub fn http_post_json(
    address: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> std::io::Result<Reply> {
    let bytes = serde_json::to_vec(body).expect("a JSON value serialises");
    http::request(
        address,
        "POST",
        path,
        &[("content-type", "application/json")],
        &bytes,
    )
}

/// Sets the permission bits of `path` exactly (ignoring the umask).
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|error| panic!("cannot chmod {:o} {}: {error}", mode, path.display()));
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most 10 s) until every file of `names` exists in `dir`; else
/// panics naming the missing ones, the files there and `proxy`'s log.
pub fn wait_for_files<N: AsRef<str>>(dir: &Path, names: &[N], proxy: &Proxy) {
    let missing = || -> Vec<&str> {
        names
            .iter()
            .map(AsRef::as_ref)
            .filter(|name| !dir.join(name).exists())
            .collect()
    };
    if poll(Duration::from_secs(10), || {
        missing().is_empty().then_some(())
    })
    .is_none()
    {
        panic!(
            "files missing in {}: {:?}; present: {:?}; log:\n{}",
            dir.display(),
            missing(),
            file_names(dir),
            proxy.log()
        );
    }
}

/// The names of the files in `dir`, sorted; none when it cannot be read.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listening_line() {
        let line = "2026-01-01T00:00:00Z  INFO ccproxy::cli::serve: listening on http://127.0.0.1:4321 plugins=2";
        assert_eq!(
            listening_address(line),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(listening_address("INFO plugin loaded"), None);
    }

    #[test]
    fn library_names_follow_the_platform() {
        assert_eq!(library_file_name("x"), "libx.so");
    }
}
