//! Where configuration comes from, through the real binary: which file is
//! read (`--config`, `./.ccproxy.toml`, `./ccproxy.toml`,
//! `$XDG_CONFIG_HOME/ccproxy/config.toml`), the environment over the file and
//! flags over both, the plugin filters (`ENABLED_PLUGINS`, `DISABLED_PLUGINS`,
//! `PLUGINS__NAME__ENABLED`, `--enable-plugin`, `ENABLE_PLUGINS`), the
//! client token, and the warnings for names no plugin has. The precedence
//! table key by key is unit-tested in `host/src/config/precedence_tests.rs`.

use std::fs;

use ccproxy_e2e::{Proxy, ProxyOptions, Sandbox};
use serde_json::Value;

const EXAMPLES: [&str; 2] = ["example_hello_system", "example_provider_shaped"];

fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    for stem in EXAMPLES {
        sandbox.install(stem);
    }
    sandbox
}

fn greeting_file(greeting: &str) -> String {
    format!("[plugins.hello_system]\ngreeting = \"{greeting}\"\n")
}

/// The effective `greeting` of hello_system, as `plugins info --json` shows it.
fn greeting(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["plugins", "info", "hello_system", "--json"];
    all.extend_from_slice(args);
    let info = sandbox.run_cli(&all, env);
    assert_eq!(info.code, 0, "{info:?}");
    let info: Value =
        serde_json::from_str(&info.stdout).unwrap_or_else(|e| panic!("{e}: {info:?}"));
    info["config"]["greeting"]
        .as_str()
        .unwrap_or_else(|| panic!("no greeting in {info:#}"))
        .to_owned()
}

/// `(status, reason)` of each example plugin in `plugins list --json`.
fn verdicts(
    sandbox: &Sandbox,
    args: &[&str],
    env: &[(&str, &str)],
) -> Vec<(String, String, String)> {
    let mut all = vec!["plugins", "list", "--json"];
    all.extend_from_slice(args);
    let listed = sandbox.run_cli(&all, env);
    assert_eq!(listed.code, 0, "{listed:?}");
    let listed: Value =
        serde_json::from_str(&listed.stdout).unwrap_or_else(|e| panic!("{e}: {listed:?}"));
    listed["plugins"]
        .as_array()
        .expect("plugins is an array")
        .iter()
        .filter(|p| p["origin"] != "bundled")
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["status"].as_str().unwrap_or_default().to_owned(),
                p["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn status_of(verdicts: &[(String, String, String)], name: &str) -> (String, String) {
    verdicts
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, status, reason)| (status.clone(), reason.clone()))
        .unwrap_or_else(|| panic!("{name} is not listed: {verdicts:?}"))
}

#[test]
fn the_config_file_is_the_first_found_and_env_and_flags_win_over_it() {
    let sandbox = sandbox();
    assert_eq!(greeting(&sandbox, &[], &[]), "Hello", "the default");

    sandbox.write_config(&greeting_file("from xdg"));
    assert_eq!(greeting(&sandbox, &[], &[]), "from xdg");

    fs::write(
        sandbox.root().join("ccproxy.toml"),
        greeting_file("from ./ccproxy.toml"),
    )
    .expect("the working directory is writable");
    assert_eq!(greeting(&sandbox, &[], &[]), "from ./ccproxy.toml");

    fs::write(
        sandbox.root().join(".ccproxy.toml"),
        greeting_file("from ./.ccproxy.toml"),
    )
    .expect("the working directory is writable");
    assert_eq!(greeting(&sandbox, &[], &[]), "from ./.ccproxy.toml");

    let named = sandbox.root().join("named.toml");
    fs::write(&named, greeting_file("from --config")).expect("the sandbox is writable");
    let named = named.display().to_string();
    assert_eq!(
        greeting(&sandbox, &["--config", &named], &[]),
        "from --config"
    );

    // The environment wins over whichever file was read.
    assert_eq!(
        greeting(
            &sandbox,
            &["--config", &named],
            &[("PLUGINS__HELLO_SYSTEM__GREETING", "from env")]
        ),
        "from env"
    );

    // A file named on the command line must exist.
    let missing = sandbox.run_cli(&["plugins", "list", "--config", "/nonexistent/c.toml"], &[]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing.stderr.contains("/nonexistent/c.toml"),
        "{missing:?}"
    );
}

#[test]
fn plugin_filters_from_env_file_and_flags() {
    let sandbox = sandbox();
    let both_active = verdicts(&sandbox, &[], &[]);
    assert_eq!(status_of(&both_active, "provider_shaped").0, "ok");

    // An allow list from the environment.
    let allow = verdicts(&sandbox, &[], &[("ENABLED_PLUGINS", "hello_system")]);
    assert_eq!(status_of(&allow, "hello_system").0, "ok");
    assert_eq!(
        status_of(&allow, "provider_shaped"),
        ("disabled".to_owned(), "not in enabled_plugins".to_owned())
    );
    // --enable-plugin adds to the allow list.
    let added = verdicts(
        &sandbox,
        &["--enable-plugin", "provider_shaped"],
        &[("ENABLED_PLUGINS", "hello_system")],
    );
    assert_eq!(status_of(&added, "provider_shaped").0, "ok", "{added:?}");

    // A deny list from the environment; the dependent goes with it.
    let deny = verdicts(&sandbox, &[], &[("DISABLED_PLUGINS", "hello_system")]);
    assert_eq!(status_of(&deny, "hello_system").0, "disabled");
    let (status, reason) = status_of(&deny, "provider_shaped");
    assert_eq!(status, "disabled", "{deny:?}");
    assert!(reason.contains("hello_system"), "{reason}");

    // `enabled = false` in a plugin's section, here from the environment.
    let section = verdicts(
        &sandbox,
        &[],
        &[("PLUGINS__PROVIDER_SHAPED__ENABLED", "false")],
    );
    assert_eq!(
        status_of(&section, "provider_shaped").0,
        "disabled",
        "{section:?}"
    );
    assert_eq!(status_of(&section, "hello_system").0, "ok");

    // The master switch lists the files but opens none.
    let off = verdicts(&sandbox, &[], &[("ENABLE_PLUGINS", "false")]);
    assert!(!off.is_empty(), "files are still listed");
    for (name, status, reason) in &off {
        assert_eq!(
            (status.as_str(), reason.as_str()),
            (
                "disabled",
                "plugins are switched off (enable_plugins = false)"
            ),
            "{name}"
        );
    }
}

#[test]
fn names_no_plugin_has_are_warned_about() {
    let sandbox = sandbox();
    sandbox.write_config("[plugins.hello_sytem]\ngreeting = \"Hi\"\n");
    let listed = sandbox.run_cli(
        &["plugins", "list", "--disable-plugin", "provider_shapd"],
        &[],
    );
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(
        listed
            .stderr
            .contains("no plugin named hello_sytem was found, but a [plugins.NAME] section or PLUGINS__NAME__* variable names it; did you mean hello_system?"),
        "{listed:?}"
    );
    assert!(
        listed.stderr.contains("provider_shapd")
            && listed.stderr.contains("did you mean provider_shaped?"),
        "{listed:?}"
    );
    // The server says the same at start-up, and serves.
    let proxy = Proxy::start_in(sandbox, ProxyOptions::default());
    let log = proxy.log();
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("did you mean hello_system?")),
        "{log}"
    );
}

#[test]
fn flags_win_over_the_environment_for_the_listener_and_the_client_token() {
    // A host from the environment that cannot be bound, and the flag that wins.
    let bad_host = ccproxy_e2e::run_cli(
        &["serve", "--port", "0", "--disable-plugin", "access_log"],
        &[("SERVER__HOST", "nonexistent.invalid")],
    );
    assert_eq!(bad_host.code, 1, "{bad_host:?}");
    assert!(
        bad_host
            .stderr
            .contains("cannot listen on nonexistent.invalid:0")
            && bad_host
                .stderr
                .contains("must be an address or name of this machine"),
        "{bad_host:?}"
    );
    let proxy = Proxy::start(ProxyOptions {
        plugins: &EXAMPLES,
        args: &["--host", "127.0.0.1", "--auth-token", "from-the-flag"],
        env: &[
            ("SERVER__HOST", "nonexistent.invalid"),
            ("SECURITY__AUTH_TOKEN", "from-the-env"),
        ],
        ..ProxyOptions::default()
    });
    assert_eq!(proxy.address().ip().to_string(), "127.0.0.1");
    // Health stays open; everything else needs the flag's token.
    assert_eq!(proxy.get("/health").status, 200);
    assert_eq!(proxy.get("/hello/greet?name=Ada").status, 401);
    let with_env_token = proxy.get_with(
        "/hello/greet?name=Ada",
        &[("authorization", "Bearer from-the-env")],
    );
    assert_eq!(with_env_token.status, 401, "{}", with_env_token.text());
    let with_flag_token =
        proxy.get_with("/hello/greet?name=Ada", &[("x-api-key", "from-the-flag")]);
    assert_eq!(with_flag_token.status, 200, "{}", with_flag_token.text());
}

#[test]
fn auth_commands_log_to_stderr_at_the_level_asked() {
    let quiet = ccproxy_e2e::run_cli(&["auth", "providers"], &[]);
    assert_eq!(quiet.code, 0, "{quiet:?}");
    assert!(!quiet.stderr.contains(" INFO "), "{quiet:?}");
    let chatty = ccproxy_e2e::run_cli(&["auth", "providers", "--log-level", "info"], &[]);
    assert_eq!(chatty.code, 0, "{chatty:?}");
    assert!(
        chatty.stderr.contains("plugin loaded plugin=oauth_claude"),
        "{chatty:?}"
    );
    let wrong = ccproxy_e2e::run_cli(&["auth", "providers", "--log-level", "loud[["], &[]);
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(wrong.stderr.contains("invalid log level"), "{wrong:?}");
}

/// `(status, reason)` of bundled plugin `name` in `plugins list --json`.
fn bundled_verdict(args: &[&str], env: &[(&str, &str)], name: &str) -> (String, String) {
    let mut all = vec!["plugins", "list", "--json"];
    all.extend_from_slice(args);
    let listed = Sandbox::new().run_cli(&all, env);
    assert_eq!(listed.code, 0, "{listed:?}");
    let listed: Value =
        serde_json::from_str(&listed.stdout).unwrap_or_else(|e| panic!("{e}: {listed:?}"));
    let entry = listed["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not listed: {listed:#}"));
    (
        entry["status"].as_str().unwrap_or_default().to_owned(),
        entry["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn opt_in_plugins_load_only_when_enabled() {
    let (status, reason) = bundled_verdict(&[], &[], "request_tracer");
    assert_eq!(status, "disabled");
    assert!(reason.starts_with("off by default"), "{reason}");
    assert!(
        reason.contains("--enable-plugin request_tracer"),
        "{reason}"
    );

    // Each way of enabling it works: the flag, the environment, an allow list.
    assert_eq!(
        bundled_verdict(
            &["--enable-plugin", "request_tracer"],
            &[],
            "request_tracer"
        )
        .0,
        "ok"
    );
    assert_eq!(
        bundled_verdict(
            &[],
            &[("PLUGINS__COMMAND_REPLAY__ENABLED", "true")],
            "command_replay"
        )
        .0,
        "ok"
    );
    let allowed = [("ENABLED_PLUGINS", "request_tracer,access_log")];
    assert_eq!(bundled_verdict(&[], &allowed, "request_tracer").0, "ok");
    // A disable still wins over the flag.
    let (status, _) = bundled_verdict(
        &["--enable-plugin", "request_tracer"],
        &[("PLUGINS__REQUEST_TRACER__ENABLED", "false")],
        "request_tracer",
    );
    assert_eq!(status, "disabled");
}
