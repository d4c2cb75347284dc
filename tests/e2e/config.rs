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

/// The entry of `key` in `config show --json`.
fn shown_key(shown: &Value, key: &str) -> Value {
    shown["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|entry| entry["key"] == key))
        .cloned()
        .unwrap_or_else(|| panic!("{key} not shown: {shown:#}"))
}

/// `text` with every commented-out setting (`#port = 8000`) switched on.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn config_init_writes_a_private_commented_file_that_validates() {
    let sandbox = Sandbox::new();
    let written = sandbox.config_dir().join("config.toml");
    let init = sandbox.run_cli(&["config", "init"], &[]);
    assert_eq!(init.code, 0, "{init:?}");
    assert!(
        init.stdout.contains(&written.display().to_string()),
        "{init:?}"
    );
    assert_eq!(ccproxy_e2e::mode(&written), 0o600);
    let text = fs::read_to_string(&written).expect("config init wrote the file");
    for expected in [
        "#port = 8000",
        "(env SERVER__PORT)",
        "#request_lines = true",
        "[plugins.claude_api]",
        "# Anthropic API key, sent as x-api-key; empty reads api_key_env (env PLUGINS__CLAUDE_API__API_KEY)",
        "#api_key = \"\"",
        "[plugins.access_log]",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }

    // Never over an existing file without --force.
    fs::write(&written, "# mine\n").expect("the config folder is writable");
    let again = sandbox.run_cli(&["config", "init"], &[]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("exists; pass --force"), "{again:?}");
    assert_eq!(
        fs::read_to_string(&written).ok().as_deref(),
        Some("# mine\n")
    );
    let forced = sandbox.run_cli(&["config", "init", "--force"], &[]);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert_eq!(
        fs::read_to_string(&written).ok().as_deref(),
        Some(text.as_str())
    );

    // What it wrote validates, as written and with every setting uncommented.
    let valid = sandbox.run_cli(&["config", "validate"], &[]);
    assert_eq!(valid.code, 0, "{valid:?}");
    assert!(valid.stdout.starts_with("ok: "), "{valid:?}");
    let all_on = sandbox.root().join("all-on.toml");
    fs::write(&all_on, uncommented(&text)).expect("the sandbox is writable");
    let all_on = all_on.display().to_string();
    let valid = sandbox.run_cli(&["config", "validate", "--config", &all_on], &[]);
    assert_eq!(valid.code, 0, "{valid:?}\n{}", uncommented(&text));
    assert!(!valid.stderr.contains("warning"), "{valid:?}");

    // A symbolic link is not followed, even with --force.
    let target = sandbox.root().join("target.toml");
    fs::write(&target, "# target\n").expect("the sandbox is writable");
    let link = sandbox.root().join("link.toml");
    std::os::unix::fs::symlink(&target, &link).expect("a link can be made");
    let through_link =
        sandbox.run_cli(&["config", "init", "--force", "--output", "link.toml"], &[]);
    assert_eq!(through_link.code, 2, "{through_link:?}");
    assert!(
        through_link.stderr.contains("symbolic link"),
        "{through_link:?}"
    );
    assert_eq!(
        fs::read_to_string(&target).ok().as_deref(),
        Some("# target\n")
    );

    // `--output -` prints it.
    let printed = sandbox.run_cli(&["config", "init", "--output", "-"], &[]);
    assert_eq!(printed.code, 0, "{printed:?}");
    assert_eq!(printed.stdout, text);
}

#[test]
fn config_validate_lists_every_problem_on_its_own_line() {
    let sandbox = Sandbox::new();
    let broken = sandbox.root().join("broken.toml");
    fs::write(
        &broken,
        "[server]\nprot = 8000\nport = \"eighty\"\n\n[logging]\nlevel = \"loud\"\n\n[plugins.access_log]\nclient_log_fil = \"x\"\n",
    )
    .expect("the sandbox is writable");
    let broken = broken.display().to_string();
    let out = sandbox.run_cli(&["config", "validate", "--config", &broken], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 4, "{out:?}");
    assert!(
        errors[0].contains("unknown config key `server.prot`")
            && errors[0].contains("did you mean `server.port`?"),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|line| line.contains("server.port = \"eighty\"")
                && line.contains("expected an integer 0-65535")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|line| line.contains("logging.level = \"loud\"")),
        "{errors:?}"
    );
    // The plugin sections as written are checked too.
    assert!(
        errors.iter().any(|line| line
            .contains("unknown config key `plugins.access_log.client_log_fil`")
            && line.contains("did you mean `plugins.access_log.client_log_file`?")),
        "{errors:?}"
    );
    assert!(
        out.stderr.contains("4 problems in the configuration"),
        "{out:?}"
    );

    // Plugin sections are checked against what each plugin declares.
    let plugins = sandbox.root().join("plugins.toml");
    fs::write(
        &plugins,
        "[plugins.claude_api]\napi_kee = \"x\"\ndefault_max_tokens = \"many\"\n",
    )
    .expect("the sandbox is writable");
    let plugins = plugins.display().to_string();
    let out = sandbox.run_cli(&["config", "validate", "--config", &plugins], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("error: unknown config key `plugins.claude_api.api_kee`")
            && out
                .stderr
                .contains("did you mean `plugins.claude_api.api_key`?"),
        "{out:?}"
    );
    // The environment is part of the configuration.
    let env = sandbox.run_cli(&["config", "validate"], &[("SERVER__PORT", "99999")]);
    assert_eq!(env.code, 2, "{env:?}");
    assert!(
        env.stderr.contains("error: env SERVER__PORT=99999"),
        "{env:?}"
    );
}

#[test]
fn config_show_says_where_each_value_came_from() {
    let sandbox = Sandbox::new();
    let file = sandbox.write_config(
        "[server]\nport = 9100\n\n[http]\nconnect_timeout_seconds = 7\n\n[plugins.claude_api]\napi_key = \"sk-ant-api03-shown-masked-0123456789\"\n",
    );
    let env = [
        ("SERVER__PORT", "9200"),
        ("SECURITY__AUTH_TOKEN", "token-shown-masked"),
    ];
    let out = sandbox.run_cli(&["config", "show", "--json", "--log-level", "debug"], &env);
    assert_eq!(out.code, 0, "{out:?}");
    let shown: Value = serde_json::from_str(&out.stdout).expect("config show --json is JSON");
    assert_eq!(shown["file"], file.display().to_string());
    let port = shown_key(&shown, "server.port");
    assert_eq!(port["value"], 9200);
    assert_eq!(port["origin"]["name"], "SERVER__PORT");
    let timeout = shown_key(&shown, "http.connect_timeout_seconds");
    assert_eq!(timeout["value"], 7);
    assert_eq!(timeout["origin"]["source"], "file");
    assert_eq!(timeout["origin"]["path"], file.display().to_string());
    let level = shown_key(&shown, "logging.level");
    assert_eq!(level["value"], "debug");
    assert_eq!(
        level["origin"],
        serde_json::json!({"source": "flag", "name": "--log-level"})
    );
    let host = shown_key(&shown, "server.host");
    assert_eq!(host["value"], "127.0.0.1");
    assert_eq!(host["origin"]["source"], "default");
    assert_eq!(shown_key(&shown, "security.auth_token")["value"], "***");
    assert_eq!(
        shown_key(&shown, "plugins.claude_api.api_key")["value"],
        "***"
    );
    // A plugin key at its default is shown with it.
    assert_eq!(
        shown_key(&shown, "plugins.claude_api.api_key_env")["value"],
        "ANTHROPIC_API_KEY"
    );

    let text = sandbox.run_cli(&["config", "show"], &env);
    assert_eq!(text.code, 0, "{text:?}");
    let port_line = text
        .stdout
        .lines()
        .find(|line| line.starts_with("server.port = "))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        port_line.starts_with("server.port = 9200 ") && port_line.ends_with("# env SERVER__PORT"),
        "{port_line}"
    );
    for secret in ["sk-ant-api03-shown-masked-0123456789", "token-shown-masked"] {
        assert!(
            !text.stdout.contains(secret) && !out.stdout.contains(secret),
            "{secret}"
        );
    }
}

#[test]
fn config_schema_describes_core_keys_and_plugin_sections() {
    let out = ccproxy_e2e::run_cli(&["config", "schema"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let schema: Value = serde_json::from_str(&out.stdout).expect("the schema is JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    let port = &schema["properties"]["server"]["properties"]["port"];
    assert_eq!(port["type"], "integer");
    assert_eq!(port["default"], 8000);
    assert!(port["description"].as_str().is_some_and(|d| !d.is_empty()));
    let plugins = &schema["properties"]["plugins"]["properties"];
    assert_eq!(
        plugins["claude_api"]["properties"]["api_key"]["type"],
        "string"
    );
    assert_eq!(
        plugins["claude_api"]["properties"]["default_max_tokens"]["type"],
        "integer"
    );
    assert!(plugins["access_log"].is_object(), "{plugins:#}");
}

#[test]
fn keys_of_the_original_are_taken_with_a_warning() {
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "[server]\nlog_level = \"debug\"\n\n[cors]\norigins = [\"http://localhost:3000\", \"http://localhost:*/*\"]\ncredentials = true\n",
    );
    let valid = sandbox.run_cli(&["config", "validate"], &[]);
    assert_eq!(valid.code, 0, "{valid:?}");
    for warning in [
        "`server.log_level` is now `logging.level`",
        "`cors.origins` is now `server.cors_origins`",
        "\"http://localhost:*/*\" dropped",
        "`cors.credentials`",
    ] {
        assert!(valid.stderr.contains(warning), "{warning}: {valid:?}");
    }
    let out = sandbox.run_cli(&["config", "show", "--json"], &[]);
    let shown: Value = serde_json::from_str(&out.stdout).expect("config show --json is JSON");
    assert_eq!(shown_key(&shown, "logging.level")["value"], "debug");
    // Every command that reads the config says so.
    let listed = sandbox.run_cli(&["plugins", "list"], &[]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(
        listed
            .stderr
            .contains("warning: `server.log_level` is now `logging.level`"),
        "{listed:?}"
    );
    assert_eq!(
        shown_key(&shown, "server.cors_origins")["value"],
        serde_json::json!(["http://localhost:3000"])
    );
    // From the environment too, below the new name's own variable.
    let env = sandbox.run_cli(
        &["config", "show", "--json"],
        &[("SERVER__LOG_LEVEL", "warn")],
    );
    let shown: Value = serde_json::from_str(&env.stdout).expect("config show --json is JSON");
    let level = shown_key(&shown, "logging.level");
    assert_eq!(level["value"], "warn");
    assert_eq!(level["origin"]["name"], "SERVER__LOG_LEVEL");
    assert!(
        env.stdout.contains("`server.log_level` is now `logging.level`; the value was taken, set LOGGING__LEVEL instead"),
        "{env:?}"
    );
    // The server starts with them and says so.
    let proxy = Proxy::start_in(sandbox, ProxyOptions::default());
    assert!(
        proxy
            .log()
            .lines()
            .any(|line| line.contains("WARN") && line.contains("is now `logging.level`")),
        "{}",
        proxy.log()
    );
}
