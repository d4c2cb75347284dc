//! `scripts/install` (issue 14 item 1): the install layout, its modes, the unit
//! files, the release archive, and the installed binary serving with every
//! bundled plugin from another working directory; a binary without its
//! plugins says so in `/health` and `plugins list`.
//!
//! The script runs with `--no-build --profile debug`: it takes the binary and
//! the plugin libraries the suite already built in the target folder.

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader},
    net::SocketAddr,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use ccproxy_e2e::{
    ccproxy_binary, http_get, library_file_name, set_mode, target_dir, workspace_root,
};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The bundled plugins: the workspace's cdylib crates under `plugins/` except
/// `kit`, by folder name (= plugin name), as scripts/install picks them.
fn bundled_plugin_names() -> Vec<String> {
    let root = workspace_root();
    let members = fs::read_to_string(root.join("Cargo.toml")).expect("the workspace manifest");
    let mut names: Vec<String> = fs::read_dir(root.join("plugins"))
        .expect("the plugins folder")
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name != "kit")
        .filter(|name| members.contains(&format!("\"plugins/{name}\"")))
        .filter(|name| {
            fs::read_to_string(root.join("plugins").join(name).join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.contains("\"cdylib\""))
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no bundled plugin crates found");
    names
}

/// Runs scripts/install with `args` plus `--no-build --profile debug` and the
/// suite's target folder; panics with its output when it fails.
fn run_install(args: &[&str]) -> String {
    let target = target_dir();
    let output = Command::new("bash")
        .arg(workspace_root().join("scripts/install"))
        .args(args)
        .args(["--no-build", "--profile", "debug", "--target-dir"])
        .arg(&target)
        .env_remove("DESTDIR")
        .stdin(Stdio::null())
        .output()
        .expect("bash runs scripts/install");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "scripts/install {args:?} failed:\n{text}"
    );
    text
}

/// Every path under `root`, relative, with its permission bits.
fn tree(root: &Path) -> Vec<(String, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u32)>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a folder entry").path();
            let meta = fs::symlink_metadata(&path).expect("metadata");
            let relative = path.strip_prefix(root).expect("below root");
            out.push((
                relative.display().to_string(),
                meta.permissions().mode() & 0o7777,
            ));
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The files every install has (relative to the prefix), besides the plugins.
const LAYOUT_FILES: &[&str] = &[
    "bin/ccproxy",
    "lib/systemd/system/ccproxy.service",
    "lib/systemd/user/ccproxy.service",
    "share/bash-completion/completions/ccproxy",
    "share/zsh/site-functions/_ccproxy",
    "share/fish/vendor_completions.d/ccproxy.fish",
    "share/man/man1/ccproxy.1",
    "share/doc/ccproxy/config.example.toml",
    "share/doc/ccproxy/README.md",
    "share/doc/ccproxy/LICENSE",
];

fn check_layout(prefix: &Path, entries: &[(String, u32)], unit_prefix: &Path) {
    let names: BTreeSet<&str> = entries.iter().map(|(path, _)| path.as_str()).collect();
    for file in LAYOUT_FILES {
        assert!(names.contains(file), "{file} is missing from {names:#?}");
    }
    let mut installed_plugins: Vec<&str> = names
        .iter()
        .filter_map(|path| path.strip_prefix("lib/ccproxy/plugins/"))
        .collect();
    installed_plugins.sort();
    let expected: Vec<String> = bundled_plugin_names()
        .iter()
        .map(|name| library_file_name(&format!("ccproxy_plugin_{name}")))
        .collect();
    assert_eq!(installed_plugins, expected, "the bundled plugins installed");
    for (path, mode) in entries {
        let is_dir = prefix.join(path).is_dir();
        let expected = if is_dir || path == "bin/ccproxy" {
            0o755
        } else {
            0o644
        };
        assert_eq!(*mode, expected, "{path} has mode {mode:o}");
    }
    for unit in [
        "lib/systemd/system/ccproxy.service",
        "lib/systemd/user/ccproxy.service",
    ] {
        let text = fs::read_to_string(prefix.join(unit)).expect("the unit");
        let exec_start = format!("ExecStart={}/bin/ccproxy serve", unit_prefix.display());
        assert!(
            text.lines().any(|line| line == exec_start),
            "{unit} lacks {exec_start}:\n{text}"
        );
        assert!(text.contains("Type=notify"), "{unit}");
        assert!(
            text.contains("ExecReload=/bin/kill -HUP $MAINPID"),
            "{unit}"
        );
    }
    let man = fs::read_to_string(prefix.join("share/man/man1/ccproxy.1")).expect("the man page");
    assert!(man.contains(".TH"), "not a man page: {man:.200}");
    let bash = fs::read_to_string(prefix.join("share/bash-completion/completions/ccproxy"))
        .expect("the bash completion");
    assert!(bash.contains("ccproxy"), "{bash:.200}");
    // The example has the bundled plugins' sections: `config init` found them
    // in the layout it was run from.
    let example = fs::read_to_string(prefix.join("share/doc/ccproxy/config.example.toml"))
        .expect("the config example");
    assert!(example.contains("[plugins.access_log]"), "{example:.400}");
}

/// A `ccproxy serve` started from a binary outside the target folder.
struct Served {
    child: Child,
    address: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    /// Starts `binary serve --port 0 ARGS` in `cwd` with a cleared environment
    /// and an empty home under `home`; waits for its `listening on` line.
    fn start(binary: &Path, cwd: &Path, home: &Path, args: &[String], mdwe: bool) -> Served {
        for dir in [".config", ".local/share", ".local/state", ".cache"] {
            fs::create_dir_all(home.join(dir)).expect("the home folders");
        }
        let mut command = Command::new(binary);
        command
            .args(["serve", "--port", "0", "--log-level", "info"])
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("XDG_CACHE_HOME", home.join(".cache"));
        if mdwe {
            refuse_write_execute(&mut command);
        }
        Served::spawn(command, binary)
    }

    /// Spawns `command` (a `serve --port 0`) and waits for its `listening on` line.
    fn spawn(mut command: Command, binary: &Path) -> Served {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (log, lines_tx) = (log.clone(), lines_tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                    let _ = lines_tx.send(line);
                }
            });
        }
        drop(lines_tx);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let address = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(address) = line
                        .split("listening on http://")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .and_then(|address| address.parse().ok())
                    {
                        break address;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{} did not start listening; its log:\n{}",
                        binary.display(),
                        log.lock().map(|l| l.clone()).unwrap_or_default()
                    );
                }
            }
        };
        Served {
            child,
            address,
            log,
        }
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        let reply = http_get(self.address, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        reply.json()
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes `command` run with the kernel's memory-deny-write-execute
/// (`PR_SET_MDWE`, what systemd's `MemoryDenyWriteExecute=yes` uses on Linux
/// 6.3 and later), so the unit's choice is tested: plugins still load.
fn refuse_write_execute(command: &mut Command) {
    const PR_SET_MDWE: libc::c_int = 65;
    const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;
    // Safety: prctl is async-signal-safe and only changes this (forked) process.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Whether this kernel has `PR_SET_MDWE` (Linux 6.3+): a child tries it.
fn kernel_has_mdwe() -> bool {
    let mut probe = Command::new("true");
    refuse_write_execute(&mut probe);
    probe.status().is_ok_and(|status| status.success())
}

#[test]
fn installed_binary_serves_every_bundled_plugin_from_another_folder() {
    let scratch = tempfile::Builder::new()
        .prefix("ccproxy-install-")
        .tempdir()
        .expect("a scratch folder");
    let prefix = scratch.path().join("prefix");
    let output = run_install(&["--prefix", prefix.to_str().expect("a UTF-8 path")]);
    assert!(output.contains("installed ccproxy"), "{output}");
    // The units pass systemd's own check where systemd-analyze exists.
    let has_systemd_analyze = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if has_systemd_analyze {
        assert!(
            output.contains("unit files verified by systemd-analyze"),
            "{output}"
        );
    }

    let entries = tree(&prefix);
    check_layout(&prefix, &entries, &prefix);

    // Another working directory, an empty home, and every bundled plugin
    // enabled (opt-in ones included).
    let elsewhere = scratch.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).expect("a working folder");
    let names = bundled_plugin_names();
    let args: Vec<String> = names
        .iter()
        .flat_map(|name| ["--enable-plugin".to_owned(), name.clone()])
        .collect();
    let mdwe = kernel_has_mdwe();
    if !mdwe {
        eprintln!("this kernel has no PR_SET_MDWE: served without it");
    }
    let served = Served::start(
        &prefix.join("bin/ccproxy"),
        &elsewhere,
        &scratch.path().join("home"),
        &args,
        mdwe,
    );
    let status = served.get_json("/plugins/status");
    let plugins = status["plugins"].as_array().expect("a plugin list");
    let bundle = prefix.join("lib/ccproxy/plugins");
    for name in &names {
        let entry = plugins
            .iter()
            .find(|p| p["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in /plugins/status: {status:#}"));
        assert_eq!(
            entry["status"],
            "active",
            "{name}: {entry:#}\n{}",
            served.log()
        );
        assert_eq!(entry["initialized"], true, "{name}: {entry:#}");
        assert_eq!(entry["origin"], "bundled", "{name}: {entry:#}");
        let file = PathBuf::from(entry["file"].as_str().expect("a file"));
        assert!(
            file.starts_with(&bundle),
            "{name} was loaded from {}, not {}",
            file.display(),
            bundle.display()
        );
    }
    assert_eq!(plugins.len(), names.len(), "{status:#}");
    let health = served.get_json("/health");
    assert_eq!(health["status"], "pass", "{health:#}\n{}", served.log());
    assert!(
        !served.log().contains("no bundled plugins found"),
        "{}",
        served.log()
    );
}

#[test]
fn the_release_archive_has_the_install_layout() {
    let scratch = tempfile::Builder::new()
        .prefix("ccproxy-archive-")
        .tempdir()
        .expect("a scratch folder");
    let archive = scratch.path().join("out/ccproxy.tar");
    let output = run_install(&[
        "--prefix",
        "/opt/ccproxy",
        "--archive",
        archive.to_str().expect("a UTF-8 path"),
    ]);
    assert!(output.contains("wrote"), "{output}");
    let unpacked = scratch.path().join("unpacked");
    fs::create_dir_all(&unpacked).expect("a folder");
    let tar = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("tar runs");
    assert!(tar.success(), "tar -xf failed");
    let tops: Vec<String> = fs::read_dir(&unpacked)
        .expect("unpacked")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(tops.len(), 1, "one top folder: {tops:?}");
    let top = &tops[0];
    assert!(
        top.starts_with("ccproxy-") && top.ends_with(&format!("-{}-linux", std::env::consts::ARCH)),
        "top folder {top} (package version {version})"
    );
    let root = unpacked.join(top);
    check_layout(&root, &tree(&root), Path::new("/opt/ccproxy"));
}

#[test]
fn a_binary_without_its_plugins_makes_health_warn_and_says_where_it_looked() {
    let scratch = tempfile::Builder::new()
        .prefix("ccproxy-bare-")
        .tempdir()
        .expect("a scratch folder");
    // What `cargo install` gives: the binary alone, in PREFIX/bin.
    let bin = scratch.path().join("prefix/bin");
    fs::create_dir_all(&bin).expect("a bin folder");
    let binary = bin.join("ccproxy");
    if fs::hard_link(ccproxy_binary(), &binary).is_err() {
        fs::copy(ccproxy_binary(), &binary).expect("a copy of the binary");
    }
    let bundle = scratch.path().join("prefix/lib/ccproxy/plugins");
    let home = scratch.path().join("home");

    let served = Served::start(&binary, scratch.path(), &home, &[], false);
    let health = served.get_json("/health");
    assert_eq!(health["status"], "warn", "{health:#}");
    let check = &health["checks"]["plugins:active"][0];
    assert_eq!(check["status"], "warn", "{health:#}");
    let output = check["output"].as_str().expect("an output");
    assert!(output.contains("no bundled plugins found"), "{output}");
    assert!(
        output.contains(&bundle.display().to_string()),
        "{output} does not name {}",
        bundle.display()
    );
    assert!(output.contains("scripts/install"), "{output}");
    assert!(
        served.log().contains("no bundled plugins found"),
        "serve does not log it:\n{}",
        served.log()
    );
    drop(served);

    let list = Command::new(&binary)
        .args(["plugins", "list"])
        .current_dir(scratch.path())
        .env_clear()
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .expect("plugins list runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&list.stdout),
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(list.status.success(), "{text}");
    assert!(text.contains("no bundled plugins found"), "{text}");
    assert!(text.contains(&bundle.display().to_string()), "{text}");

    // The same binary with the layout next to it is a healthy install.
    fs::create_dir_all(&bundle).expect("the bundle folder");
    for dir in [
        "prefix",
        "prefix/lib",
        "prefix/lib/ccproxy",
        "prefix/lib/ccproxy/plugins",
    ] {
        set_mode(&scratch.path().join(dir), 0o755);
    }
    let access_log = library_file_name("ccproxy_plugin_access_log");
    fs::copy(
        target_dir().join("debug").join(&access_log),
        bundle.join(&access_log),
    )
    .expect("a copy of the access_log plugin");
    // Started through a link elsewhere (`/usr/local/bin/ccproxy` pointing
    // into `/opt`): the plugins are found beside the real file.
    let links = scratch.path().join("links");
    fs::create_dir_all(&links).expect("a folder for the link");
    std::os::unix::fs::symlink(&binary, links.join("ccproxy")).expect("a symbolic link");
    let served = Served::start(&links.join("ccproxy"), scratch.path(), &home, &[], false);
    let health = served.get_json("/health");
    assert_eq!(health["status"], "pass", "{health:#}\n{}", served.log());
    let status = served.get_json("/plugins/status");
    assert_eq!(
        status["plugins"][0]["file"],
        bundle.join(&access_log).display().to_string(),
        "{status:#}"
    );
}

/// The uid the test runs the service as when it runs as root, as systemd's
/// `DynamicUser=yes` would: not root, and owning none of the installed files.
const SERVICE_UID: u32 = 65534;

/// The value of `key=` in `unit` (the first one).
fn unit_value<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn the_system_units_environment_puts_files_in_the_folders_systemd_gives() {
    let scratch = tempfile::Builder::new()
        .prefix("ccproxy-unit-")
        .tempdir()
        .expect("a scratch folder");
    // The service's user must be able to reach the installed files.
    set_mode(scratch.path(), 0o755);
    let prefix = scratch.path().join("prefix");
    run_install(&["--prefix", prefix.to_str().expect("a UTF-8 path")]);
    let unit = fs::read_to_string(prefix.join("lib/systemd/system/ccproxy.service"))
        .expect("the system unit");

    // The specifiers of a system unit, each a folder of the scratch: /etc,
    // /var/lib, /var/log, /var/cache, /run.
    let system = scratch.path().join("system");
    let specifiers = [
        ("%E", system.join("etc")),
        ("%S", system.join("var/lib")),
        ("%L", system.join("var/log")),
        ("%C", system.join("var/cache")),
        ("%t", system.join("run")),
    ];
    let expand = |value: &str| {
        let mut value = value.to_owned();
        for (specifier, dir) in &specifiers {
            value = value.replace(specifier, &dir.display().to_string());
        }
        assert!(!value.contains('%'), "an unknown specifier in {value}");
        value
    };
    let as_root = {
        // Safety: geteuid has no preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::geteuid() == 0
        }
    };
    // What systemd does for each *Directory= line: create SPECIFIER/NAME owned
    // by the service's user (the configuration folder stays root's) and say
    // where in a variable.
    let mut env: Vec<(String, String)> = Vec::new();
    let mut service_dirs = Vec::new();
    for (key, var, specifier) in [
        ("StateDirectory", "STATE_DIRECTORY", "%S"),
        ("LogsDirectory", "LOGS_DIRECTORY", "%L"),
        ("CacheDirectory", "CACHE_DIRECTORY", "%C"),
        ("ConfigurationDirectory", "CONFIGURATION_DIRECTORY", "%E"),
        ("RuntimeDirectory", "RUNTIME_DIRECTORY", "%t"),
    ] {
        let name = unit_value(&unit, key).unwrap_or_else(|| panic!("the unit has no {key}="));
        let dir = PathBuf::from(expand(specifier)).join(name);
        fs::create_dir_all(&dir).expect("a service folder");
        for ancestor in dir
            .ancestors()
            .take_while(|a| a.starts_with(scratch.path()))
        {
            set_mode(ancestor, 0o755);
        }
        if key != "ConfigurationDirectory" {
            set_mode(&dir, 0o700);
            if as_root {
                std::os::unix::fs::chown(&dir, Some(SERVICE_UID), Some(SERVICE_UID))
                    .expect("chown a service folder");
            }
        }
        env.push((var.to_owned(), dir.display().to_string()));
        service_dirs.push((key, dir));
    }
    for assignment in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        let (name, value) = assignment
            .split_once('=')
            .unwrap_or_else(|| panic!("Environment={assignment} is not NAME=VALUE"));
        env.push((name.to_owned(), expand(value)));
    }
    let working_dir = expand(unit_value(&unit, "WorkingDirectory").expect("WorkingDirectory="));
    let dir_of = |key: &str| {
        service_dirs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, dir)| dir.clone())
            .expect("a service folder")
    };

    let binary = prefix.join("bin/ccproxy");
    let names = bundled_plugin_names();
    let mut command = Command::new(&binary);
    command
        .args(["serve", "--port", "0", "--log-level", "info"])
        .args(
            names
                .iter()
                .flat_map(|name| ["--enable-plugin", name.as_str()]),
        )
        .current_dir(&working_dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if kernel_has_mdwe() {
        refuse_write_execute(&mut command);
    }
    if as_root {
        // std drops the supplementary groups when root sets a uid.
        command.uid(SERVICE_UID).gid(SERVICE_UID);
    }
    let served = Served::spawn(command, &binary);
    let status = served.get_json("/plugins/status");
    for name in &names {
        let entry = status["plugins"]
            .as_array()
            .and_then(|plugins| plugins.iter().find(|p| p["name"] == name.as_str()))
            .unwrap_or_else(|| panic!("{name} is not in /plugins/status: {status:#}"));
        assert_eq!(
            entry["status"],
            "active",
            "{name}: {entry:#}\n{}",
            served.log()
        );
    }
    // The access log goes to the logs folder.
    let access_log = dir_of("LogsDirectory").join("access.log");
    let logged = ccproxy_e2e::poll(Duration::from_secs(10), || {
        let _ = http_get(served.address, "/plugins/status");
        fs::read_to_string(&access_log)
            .ok()
            .filter(|text| text.contains("/plugins/status"))
    });
    assert!(
        logged.is_some(),
        "no access-log line in {}; the log:\n{}",
        access_log.display(),
        served.log()
    );
    if as_root {
        use std::os::unix::fs::MetadataExt;
        let owner = fs::metadata(&access_log).expect("the access log").uid();
        assert_eq!(owner, SERVICE_UID, "the service ran as uid {owner}");
    }
    drop(served);

    // Everything the service wrote is in a folder systemd gave it to write,
    // and nothing in the read-only configuration folder.
    let writable: Vec<PathBuf> = service_dirs
        .iter()
        .filter(|(key, _)| *key != "ConfigurationDirectory")
        .map(|(_, dir)| dir.clone())
        .collect();
    for (path, _) in tree(&system) {
        let path = system.join(path);
        // The folders themselves and those above them (made by the test).
        if path.is_dir() && service_dirs.iter().any(|(_, dir)| dir.starts_with(&path)) {
            continue;
        }
        assert!(
            writable.iter().any(|dir| path.starts_with(dir)),
            "{} is outside the service's folders",
            path.display()
        );
    }
    assert_eq!(
        fs::read_dir(dir_of("ConfigurationDirectory"))
            .map(|d| d.count())
            .ok(),
        Some(0),
        "the service wrote into its configuration folder"
    );
}
