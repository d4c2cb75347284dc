//! The precedence table, tested key by key: for every core key, the default is replaced by the
//! TOML file, which is replaced by the environment, which is replaced by the CLI flag where
//! one exists.

use serde_json::{Value, json};

use super::test_support::Scratch;
use super::*;

/// Sets one CLI flag.
type SetFlag = fn(&mut CliOverrides);

/// One row of the table: the key, its default, and what each layer sets and yields.
struct Case {
    /// Dotted key.
    key: &'static str,
    /// The value with no file, env or flag.
    default: Value,
    /// TOML literal written for the key in the file, and the value it yields.
    file: (&'static str, Value),
    /// Env var name and value, and the value they yield over the file.
    env: (&'static str, &'static str, Value),
    /// A CLI flag and the value it yields over the env, where the key has a flag.
    cli: Option<(SetFlag, Value)>,
}

/// Reads a key of the effective config as JSON (the real token for `security.auth_token`).
fn get(config: &Config, key: &str) -> Value {
    if key == "security.auth_token" {
        return config
            .security
            .auth_token
            .as_ref()
            .map_or(Value::Null, |token| json!(token.expose()));
    }
    let mut value = serde_json::to_value(config).expect("a config serialises");
    for segment in key.split('.') {
        value = value.get(segment).cloned().unwrap_or(Value::Null);
    }
    value
}

fn file_text(key: &str, literal: &str) -> String {
    match key.rsplit_once('.') {
        Some((table, field)) => format!("[{table}]\n{field} = {literal}\n"),
        None => format!("{key} = {literal}\n"),
    }
}

fn check(case: Case) {
    let scratch = Scratch::new();
    let mut sources = Sources {
        env: vec![("HOME".into(), scratch.path("home").to_string_lossy().into())],
        cwd: scratch.path("work"),
        xdg_config_home: Some(scratch.path("xdg")),
        ..Sources::default()
    };
    let key = case.key;
    let loaded = |sources: &Sources| load(sources).unwrap_or_else(|error| panic!("{key}: {error}"));

    let defaults = loaded(&sources);
    assert_eq!(get(&defaults.config, key), case.default, "{key}: default");
    assert_eq!(
        get(&Config::default(), key),
        case.default,
        "{key}: Config::default"
    );
    assert_eq!(defaults.origin(key), Origin::Default, "{key}");

    let (literal, from_file) = case.file;
    assert_ne!(
        from_file, case.default,
        "{key}: the file value must differ from the default"
    );
    let path = scratch.write("work/ccproxy.toml", &file_text(key, literal));
    let with_file = loaded(&sources);
    assert_eq!(
        get(&with_file.config, key),
        from_file,
        "{key}: file beats default"
    );
    assert_eq!(with_file.origin(key), Origin::File(path), "{key}");

    let (var, raw, from_env) = case.env;
    assert_ne!(
        from_env, from_file,
        "{key}: the env value must differ from the file's"
    );
    sources.env.push((var.into(), raw.into()));
    let with_env = loaded(&sources);
    assert_eq!(
        get(&with_env.config, key),
        from_env,
        "{key}: env beats file"
    );
    assert_eq!(with_env.origin(key), Origin::Env(var.into()), "{key}");

    if let Some((set_flag, from_cli)) = case.cli {
        assert_ne!(
            from_cli, from_env,
            "{key}: the CLI value must differ from the env's"
        );
        set_flag(&mut sources.cli);
        let with_cli = loaded(&sources);
        assert_eq!(get(&with_cli.config, key), from_cli, "{key}: CLI beats env");
        assert!(matches!(with_cli.origin(key), Origin::Cli(_)), "{key}");
    }
}

#[test]
fn server_host() {
    check(Case {
        key: "server.host",
        default: json!("127.0.0.1"),
        file: ("\"0.0.0.0\"", json!("0.0.0.0")),
        env: ("SERVER__HOST", "::1", json!("::1")),
        cli: Some((|cli| cli.host = Some("10.0.0.1".into()), json!("10.0.0.1"))),
    });
}

#[test]
fn server_port() {
    check(Case {
        key: "server.port",
        default: json!(8000),
        file: ("9001", json!(9001)),
        env: ("SERVER__PORT", "9002", json!(9002)),
        cli: Some((|cli| cli.port = Some(9003), json!(9003))),
    });
}

#[test]
fn server_bypass_mode() {
    check(Case {
        key: "server.bypass_mode",
        default: json!(false),
        file: ("true", json!(true)),
        env: ("SERVER__BYPASS_MODE", "false", json!(false)),
        cli: Some((|cli| cli.bypass = true, json!(true))),
    });
}

#[test]
fn server_max_request_body_bytes() {
    check(Case {
        key: "server.max_request_body_bytes",
        default: json!(32 * 1024 * 1024),
        file: ("1024", json!(1024)),
        env: ("SERVER__MAX_REQUEST_BODY_BYTES", "2048", json!(2048)),
        cli: None,
    });
}

#[test]
fn server_body_budget_bytes() {
    check(Case {
        key: "server.body_budget_bytes",
        default: json!(128 * 1024 * 1024),
        file: ("4194304", json!(4_194_304)),
        env: ("SERVER__BODY_BUDGET_BYTES", "8388608", json!(8_388_608)),
        cli: None,
    });
}

#[test]
fn server_shutdown_grace_seconds() {
    check(Case {
        key: "server.shutdown_grace_seconds",
        default: json!(30),
        file: ("5", json!(5)),
        env: ("SERVER__SHUTDOWN_GRACE_SECONDS", "0", json!(0)),
        cli: None,
    });
}

#[test]
fn server_header_read_timeout_seconds() {
    check(Case {
        key: "server.header_read_timeout_seconds",
        default: json!(10),
        file: ("5", json!(5)),
        env: ("SERVER__HEADER_READ_TIMEOUT_SECONDS", "1", json!(1)),
        cli: None,
    });
}

#[test]
fn server_idle_timeout_seconds() {
    check(Case {
        key: "server.idle_timeout_seconds",
        default: json!(60),
        file: ("30", json!(30)),
        env: ("SERVER__IDLE_TIMEOUT_SECONDS", "120", json!(120)),
        cli: None,
    });
}

#[test]
fn server_max_connections() {
    check(Case {
        key: "server.max_connections",
        default: json!(0),
        file: ("200", json!(200)),
        env: ("SERVER__MAX_CONNECTIONS", "20", json!(20)),
        cli: None,
    });
}

#[test]
fn server_request_timeout_seconds() {
    check(Case {
        key: "server.request_timeout_seconds",
        default: json!(600),
        file: ("60", json!(60)),
        env: ("SERVER__REQUEST_TIMEOUT_SECONDS", "120", json!(120)),
        cli: None,
    });
}

#[test]
fn server_allowed_hosts() {
    check(Case {
        key: "server.allowed_hosts",
        default: json!([]),
        file: ("[\"CCProxy.Internal\"]", json!(["ccproxy.internal"])),
        env: (
            "SERVER__ALLOWED_HOSTS",
            "proxy.lan, my-box.",
            json!(["proxy.lan", "my-box"]),
        ),
        cli: None,
    });
}

#[test]
fn server_cors_origins() {
    check(Case {
        key: "server.cors_origins",
        default: json!([]),
        file: (
            "[\"http://localhost:3000/\"]",
            json!(["http://localhost:3000"]),
        ),
        env: (
            "SERVER__CORS_ORIGINS",
            "https://app.example,vscode-file://vscode-app",
            json!(["https://app.example", "vscode-file://vscode-app"]),
        ),
        cli: None,
    });
}

#[test]
fn logging_level() {
    check(Case {
        key: "logging.level",
        default: json!("info"),
        file: ("\"DEBUG\"", json!("debug")),
        env: (
            "LOGGING__LEVEL",
            "warn,ccproxy=trace",
            json!("warn,ccproxy=trace"),
        ),
        cli: Some((|cli| cli.log_level = Some("error".into()), json!("error"))),
    });
}

#[test]
fn logging_level_from_ccproxy_log_level() {
    check(Case {
        key: "logging.level",
        default: json!("info"),
        file: ("\"debug\"", json!("debug")),
        env: ("CCPROXY_LOG_LEVEL", "warning", json!("warn")),
        cli: Some((|cli| cli.log_level = Some("trace".into()), json!("trace"))),
    });
}

#[test]
fn logging_format() {
    check(Case {
        key: "logging.format",
        default: json!("auto"),
        file: ("\"text\"", json!("text")),
        env: ("LOGGING__FORMAT", "json", json!("json")),
        cli: None,
    });
}

#[test]
fn logging_file() {
    check(Case {
        key: "logging.file",
        default: Value::Null,
        file: ("\"/var/log/file.log\"", json!("/var/log/file.log")),
        env: (
            "LOGGING__FILE",
            "/var/log/env.log",
            json!("/var/log/env.log"),
        ),
        cli: Some((
            |cli| cli.log_file = Some("/var/log/cli.log".into()),
            json!("/var/log/cli.log"),
        )),
    });
}

#[test]
fn security_auth_token() {
    check(Case {
        key: "security.auth_token",
        default: Value::Null,
        file: ("\"file-token\"", json!("file-token")),
        // Digits stay a string: the token field is string-typed.
        env: ("SECURITY__AUTH_TOKEN", "12345", json!("12345")),
        cli: Some((
            |cli| cli.auth_token = Some("cli-token".into()),
            json!("cli-token"),
        )),
    });
}

#[test]
fn http_connect_timeout_seconds() {
    check(Case {
        key: "http.connect_timeout_seconds",
        default: json!(5),
        file: ("7", json!(7)),
        env: ("HTTP__CONNECT_TIMEOUT_SECONDS", "3", json!(3)),
        cli: None,
    });
}

#[test]
fn http_read_timeout_seconds() {
    check(Case {
        key: "http.read_timeout_seconds",
        default: json!(240),
        file: ("100", json!(100)),
        env: ("HTTP__READ_TIMEOUT_SECONDS", "200", json!(200)),
        cli: None,
    });
}

#[test]
fn http_pool_idle_timeout_seconds() {
    check(Case {
        key: "http.pool_idle_timeout_seconds",
        default: json!(90),
        file: ("0", json!(0)),
        env: ("HTTP__POOL_IDLE_TIMEOUT_SECONDS", "30", json!(30)),
        cli: None,
    });
}

#[test]
fn http_pool_max_idle_per_host() {
    check(Case {
        key: "http.pool_max_idle_per_host",
        default: json!(64),
        file: ("8", json!(8)),
        env: ("HTTP__POOL_MAX_IDLE_PER_HOST", "0", json!(0)),
        cli: None,
    });
}

#[test]
fn http_http2() {
    check(Case {
        key: "http.http2",
        default: json!(true),
        file: ("false", json!(false)),
        env: ("HTTP__HTTP2", "true", json!(true)),
        cli: None,
    });
}

#[test]
fn plugin_discovery_directories() {
    check(Case {
        key: "plugin_discovery.directories",
        default: json!([]),
        file: ("[\"/from/file\"]", json!(["/from/file"])),
        // The env list replaces the file's; --plugin-dir appends to whatever is there.
        env: (
            "PLUGIN_DISCOVERY__DIRECTORIES",
            "/env/one:/env/two",
            json!(["/env/one", "/env/two"]),
        ),
        cli: Some((
            |cli| cli.plugin_dirs = vec!["/from/cli".into()],
            json!(["/env/one", "/env/two", "/from/cli"]),
        )),
    });
}

#[test]
fn plugin_discovery_disable_local_discovery() {
    check(Case {
        key: "plugin_discovery.disable_local_discovery",
        default: json!(false),
        file: ("true", json!(true)),
        env: (
            "PLUGIN_DISCOVERY__DISABLE_LOCAL_DISCOVERY",
            "false",
            json!(false),
        ),
        cli: None,
    });
}

#[test]
fn hooks_observer_queue_capacity() {
    check(Case {
        key: "hooks.observer_queue_capacity",
        default: json!(16384),
        file: ("16", json!(16)),
        env: ("HOOKS__OBSERVER_QUEUE_CAPACITY", "32", json!(32)),
        cli: None,
    });
}

#[test]
fn enable_plugins() {
    check(Case {
        key: "enable_plugins",
        default: json!(true),
        file: ("false", json!(false)),
        env: ("ENABLE_PLUGINS", "true", json!(true)),
        cli: None,
    });
}

#[test]
fn enabled_plugins() {
    check(Case {
        key: "enabled_plugins",
        default: Value::Null,
        file: ("[\"a\"]", json!(["a"])),
        env: ("ENABLED_PLUGINS", "b, c", json!(["b", "c"])),
        // --enable-plugin adds to the allow list instead of replacing it.
        cli: Some((
            |cli| cli.enable_plugins = vec!["d".into()],
            json!(["b", "c", "d"]),
        )),
    });
}

#[test]
fn disabled_plugins() {
    check(Case {
        key: "disabled_plugins",
        default: Value::Null,
        file: ("[\"a\"]", json!(["a"])),
        env: ("DISABLED_PLUGINS", "b", json!(["b"])),
        cli: Some((
            |cli| cli.disable_plugins = vec!["c".into()],
            json!(["b", "c"]),
        )),
    });
}

#[test]
fn plugin_section_key() {
    check(Case {
        key: "plugins.access_log.client_log_file",
        default: Value::Null,
        file: ("\"/from/file.log\"", json!("/from/file.log")),
        env: ("PLUGINS__ACCESS_LOG__CLIENT_LOG_FILE", "/x", json!("/x")),
        cli: None,
    });
}

#[test]
fn plugin_enabled_false_from_env_disables() {
    check(Case {
        key: "plugins.metrics.enabled",
        default: Value::Null,
        file: ("true", json!(true)),
        env: ("PLUGINS__METRICS__ENABLED", "false", json!(false)),
        cli: None,
    });
}

/// `http.extra_ca_file` names a file that must exist, so its row writes the files first:
/// default none < `SSL_CERT_FILE` < file < `HTTP__EXTRA_CA_FILE`.
#[test]
fn http_extra_ca_file() {
    let scratch = Scratch::new();
    let ca = |name: &str| scratch.write(&format!("work/{name}"), crate::upstream::TEST_CA);
    let (machine, from_file, from_env) = (ca("machine.pem"), ca("file.pem"), ca("env.pem"));
    let mut sources = Sources {
        env: vec![("HOME".into(), scratch.path("home").to_string_lossy().into())],
        cwd: scratch.path("work"),
        xdg_config_home: Some(scratch.path("xdg")),
        ..Sources::default()
    };
    let key = "http.extra_ca_file";
    let loaded = |sources: &Sources| load(sources).unwrap_or_else(|error| panic!("{key}: {error}"));
    let path_of = |config: &Config| get(config, key);

    let defaults = loaded(&sources);
    assert_eq!(path_of(&defaults.config), Value::Null);
    assert_eq!(defaults.origin(key), Origin::Default);
    sources
        .env
        .push(("SSL_CERT_FILE".into(), machine.display().to_string()));
    assert_eq!(path_of(&loaded(&sources).config), json!(machine));
    let file = scratch.write(
        "work/ccproxy.toml",
        "[http]\nextra_ca_file = \"file.pem\"\n",
    );
    let with_file = loaded(&sources);
    assert_eq!(
        path_of(&with_file.config),
        json!(from_file),
        "file beats SSL_CERT_FILE"
    );
    assert_eq!(with_file.origin(key), Origin::File(file));
    sources
        .env
        .push(("HTTP__EXTRA_CA_FILE".into(), "env.pem".into()));
    let with_env = loaded(&sources);
    assert_eq!(path_of(&with_env.config), json!(from_env), "env beats file");
    assert_eq!(
        with_env.origin(key),
        Origin::Env("HTTP__EXTRA_CA_FILE".into())
    );
}

#[test]
fn enabled_and_disabled_lists_through_load() {
    let scratch = Scratch::new();
    scratch.write(
        "work/ccproxy.toml",
        "enabled_plugins = [\"a\", \"b\", \"c\"]\n[plugins.c]\nenabled = false\n",
    );
    let sources = Sources {
        env: vec![("DISABLED_PLUGINS".into(), "b".into())],
        cwd: scratch.path("work"),
        xdg_config_home: Some(scratch.path("xdg")),
        cli: CliOverrides {
            disable_plugins: vec!["a".into()],
            ..CliOverrides::default()
        },
        ..Sources::default()
    };
    let config = load(&sources).expect("loads").config;
    let reasons: Vec<Result<(), String>> = ["a", "b", "c", "d"]
        .iter()
        .map(|name| plugin_allowed(&config, name))
        .collect();
    assert_eq!(
        reasons,
        [
            Err(
                "disabled by --disable-plugin or disabled_plugins, which wins over enabled_plugins"
                    .into()
            ),
            Err(
                "disabled by --disable-plugin or disabled_plugins, which wins over enabled_plugins"
                    .into()
            ),
            Err("disabled by plugins.c.enabled = false, which wins over enabled_plugins".into()),
            Err("not in enabled_plugins".into()),
        ]
    );
}

#[test]
fn secret_never_appears_in_debug_output() {
    let scratch = Scratch::new();
    scratch.write(
        "work/ccproxy.toml",
        "[security]\nauth_token = \"file-secret\"\n[plugins.claude_api]\napi_key = \"plugin-secret\"\n",
    );
    let sources = Sources {
        env: vec![("SECURITY__AUTH_TOKEN".into(), "env-secret".into())],
        cwd: scratch.path("work"),
        xdg_config_home: Some(scratch.path("xdg")),
        cli: CliOverrides {
            auth_token: Some("cli-secret".into()),
            ..CliOverrides::default()
        },
        ..Sources::default()
    };
    let loaded = load(&sources).expect("loads");
    assert_eq!(
        loaded
            .config
            .security
            .auth_token
            .as_ref()
            .map(Secret::expose),
        Some("cli-secret")
    );
    let printed = format!("{:?} {:#?} {:?}", loaded.config, loaded.config, sources);
    for secret in ["file-secret", "env-secret", "cli-secret", "plugin-secret"] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
    let rendered = render_effective(&loaded.config);
    for secret in ["cli-secret", "plugin-secret"] {
        assert!(!rendered.contains(secret), "{secret} leaked: {rendered}");
    }
    assert!(scratch.root().exists());
}
