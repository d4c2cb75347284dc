//! `ccproxy plugins install FILE` and `ccproxy plugins remove NAME`: a good
//! library lands in the plugin folder as `lib<name>.so` with mode 0644 and
//! replaces an older copy of the same plugin; a bad one is refused with the
//! words and exit code of `plugins check` and leaves nothing behind; a link
//! planted in the folder is never written through; `remove` takes a plugin
//! out by name and refuses a bundled one, saying how to turn it off.

use std::{fs, os::unix::fs::PermissionsExt as _};

use ccproxy_e2e::{Proxy, ProxyOptions, Sandbox, file_names, library, library_file_name, mode};

/// The example system plugin: manifest name `hello_system`.
const STEM: &str = "example_hello_system";
const NAME: &str = "hello_system";

#[test]
fn install_checks_copies_with_safe_modes_and_replaces_an_older_copy() {
    let work = Sandbox::new();
    let source = library(STEM).display().to_string();
    // A copy of the same plugin under another file name, as a user might
    // have dropped it in by hand.
    let by_hand = work.install_file(
        &library(STEM),
        &work.plugin_dir(),
        "libhello_by_hand.so",
        Some(0o644),
    );

    let installed = work.run_cli(&["plugins", "install", &source], &[]);
    assert_eq!(installed.code, 0, "{installed:?}");
    let target = work.plugin_dir().join(library_file_name(NAME));
    // The verdict of `plugins check` first, then what was done.
    assert!(
        installed
            .stdout
            .starts_with(&format!("ok: {NAME} 0.1.0 (system)")),
        "{installed:?}"
    );
    assert!(
        installed
            .stdout
            .contains(&format!("replaced {NAME} 0.1.0 ({})", by_hand.display())),
        "{installed:?}"
    );
    assert!(
        installed
            .stdout
            .contains(&format!("installed {NAME} 0.1.0 as {}", target.display())),
        "{installed:?}"
    );
    assert_eq!(mode(&target), 0o644, "the build output was 0755");
    assert_eq!(fs::read(&target).unwrap(), fs::read(library(STEM)).unwrap());
    // The older copy is gone and no temporary file is left.
    assert_eq!(
        file_names(&work.plugin_dir()),
        vec![library_file_name(NAME)]
    );

    // Again: the same file name is replaced in place.
    let again = work.run_cli(&["plugins", "install", &source], &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again
            .stdout
            .contains(&format!("replaced {NAME} 0.1.0 ({})", target.display())),
        "{again:?}"
    );
    assert_eq!(
        file_names(&work.plugin_dir()),
        vec![library_file_name(NAME)]
    );

    // `--reload` without a running server: the file is installed all the
    // same, and the error says so.
    let reloaded = work.run_cli(&["plugins", "install", &source, "--reload"], &[]);
    assert_eq!(reloaded.code, 1, "{reloaded:?}");
    assert!(
        reloaded
            .stderr
            .contains("the plugin folder is changed, but the running server was not reloaded"),
        "{reloaded:?}"
    );
    assert_eq!(
        file_names(&work.plugin_dir()),
        vec![library_file_name(NAME)]
    );

    // The host loads what was installed.
    let proxy = Proxy::start_in(work, ProxyOptions::default());
    let entry = proxy.plugin_entry(NAME);
    assert_eq!(
        entry["status"],
        "active",
        "{entry:#}; log:\n{}",
        proxy.log()
    );
}

#[test]
fn install_and_remove_with_reload_change_the_running_server() {
    let proxy = Proxy::start(ProxyOptions::default());
    assert_eq!(proxy.get("/hello/greet?name=Ada").status, 404);
    // The server to reload is the one on server.port.
    let port = proxy.address().port().to_string();
    let env = [("SERVER__PORT", port.as_str())];
    let source = library(STEM).display().to_string();

    let installed = proxy
        .sandbox()
        .run_cli(&["plugins", "install", &source, "--reload"], &env);
    assert_eq!(installed.code, 0, "{installed:?}; log:\n{}", proxy.log());
    assert!(
        installed.stderr.contains("reloaded: added hello_system"),
        "{installed:?}"
    );
    let greeting = proxy.get("/hello/greet?name=Ada");
    assert_eq!(greeting.status, 200, "{}", greeting.text());
    assert_eq!(greeting.json()["message"], "Hello, Ada!");

    let removed = proxy
        .sandbox()
        .run_cli(&["plugins", "remove", NAME, "--reload"], &env);
    assert_eq!(removed.code, 0, "{removed:?}; log:\n{}", proxy.log());
    assert!(removed.stderr.contains("reloaded:"), "{removed:?}");
    assert_eq!(proxy.get("/hello/greet?name=Ada").status, 404);
}

#[test]
fn install_into_a_new_folder_creates_it_private() {
    let work = Sandbox::new();
    let folder = work.root().join("new/plugins");
    let folder_arg = folder.display().to_string();
    let source = library(STEM).display().to_string();
    let installed = work.run_cli(
        &["plugins", "install", &source, "--plugin-dir", &folder_arg],
        &[],
    );
    assert_eq!(installed.code, 0, "{installed:?}");
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&folder.join(library_file_name(NAME))), 0o644);
    // Nothing went to the user folder.
    assert!(file_names(&work.plugin_dir()).is_empty());
}

#[test]
fn a_refused_library_is_not_installed_and_says_what_plugins_check_says() {
    let work = Sandbox::new();
    let garbage = work.root().join("libgarbage.so");
    fs::write(&garbage, b"this is not a shared library").unwrap();
    fs::set_permissions(&garbage, fs::Permissions::from_mode(0o644)).unwrap();
    for file in [
        garbage.display().to_string(),
        library("test_plugin_needs_newer_host")
            .display()
            .to_string(),
    ] {
        let checked = work.run_cli(&["plugins", "check", &file], &[]);
        let installed = work.run_cli(&["plugins", "install", &file], &[]);
        assert_eq!(checked.code, 1, "{checked:?}");
        assert!(checked.stdout.starts_with("refused: "), "{checked:?}");
        assert_eq!(installed.code, checked.code, "{installed:?}");
        assert_eq!(installed.stdout, checked.stdout);
        assert!(file_names(&work.plugin_dir()).is_empty());
    }
    let missing = work.run_cli(&["plugins", "install", "/nonexistent/libx.so"], &[]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("does not exist"), "{missing:?}");
}

#[test]
fn a_link_in_the_plugin_folder_is_never_written_through() {
    let work = Sandbox::new();
    let victim = work.root().join("victim.txt");
    fs::write(&victim, b"keep me").unwrap();
    let planted = work.plugin_dir().join(library_file_name(NAME));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let source = library(STEM).display().to_string();
    let installed = work.run_cli(&["plugins", "install", &source], &[]);
    assert_eq!(installed.code, 1, "{installed:?}");
    assert!(
        installed
            .stderr
            .contains("exists and is not plugin hello_system"),
        "{installed:?}"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    assert!(
        fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn remove_takes_a_plugin_out_and_refuses_a_bundled_one() {
    let work = Sandbox::new();
    let source = library(STEM).display().to_string();
    let installed = work.run_cli(&["plugins", "install", &source], &[]);
    assert_eq!(installed.code, 0, "{installed:?}");

    let removed = work.run_cli(&["plugins", "remove", NAME], &[]);
    assert_eq!(removed.code, 0, "{removed:?}");
    assert!(
        removed.stdout.contains(&format!("removed {NAME} 0.1.0")),
        "{removed:?}"
    );
    assert!(file_names(&work.plugin_dir()).is_empty());

    let again = work.run_cli(&["plugins", "remove", NAME], &[]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains(&format!("no plugin named {NAME}")),
        "{again:?}"
    );

    // A file that no longer loads goes by its file name.
    let broken = work.plugin_dir().join("libbroken.so");
    fs::write(&broken, b"garbage").unwrap();
    let by_file = work.run_cli(&["plugins", "remove", "libbroken.so"], &[]);
    assert_eq!(by_file.code, 0, "{by_file:?}");
    assert!(!broken.exists());

    // Bundled plugins live next to the binary: turned off, never removed.
    let bundled = work.run_cli(&["plugins", "remove", "access_log"], &[]);
    assert_eq!(bundled.code, 1, "{bundled:?}");
    assert!(
        bundled
            .stderr
            .contains("access_log is bundled with ccproxy")
            && bundled.stderr.contains("--disable-plugin access_log"),
        "{bundled:?}"
    );
    assert!(library("ccproxy_plugin_access_log").is_file());
    let shadow = work.run_cli(
        &[
            "plugins",
            "install",
            &library("ccproxy_plugin_access_log").display().to_string(),
        ],
        &[],
    );
    assert_eq!(shadow.code, 1, "{shadow:?}");
    assert!(
        shadow.stderr.contains("is the name of a bundled plugin"),
        "{shadow:?}"
    );
    assert!(file_names(&work.plugin_dir()).is_empty());
}
