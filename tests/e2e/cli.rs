//! The command line as a user meets it, through the real binary: `--version`
//! with the plugin API, `--help` naming each flag's environment variable,
//! global flags before the subcommand, shell completions and the man page;
//! what `serve` prints (the base URLs for the providers loaded, one line per
//! request, the warning for a reachable address without a client token), the
//! 404 hint for an API path without its provider prefix; and that no command
//! prints a planted API key or client token.

use std::{fs, process::Command, time::Duration};

use ccproxy_e2e::{MockUpstream, Proxy, ProxyOptions, Sandbox, library, run_cli};
use serde_json::{Value, json};

#[test]
fn version_names_the_plugin_api() {
    let out = run_cli(&["--version"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let line = out.stdout.trim();
    let (name_version, api) = line
        .split_once(" (plugin API ")
        .unwrap_or_else(|| panic!("no plugin API in {line:?}"));
    assert!(name_version.starts_with("ccproxy 0."), "{line}");
    let api = api.trim_end_matches(')');
    let parts: Vec<&str> = api.split('.').collect();
    assert_eq!(parts.len(), 2, "major.minor: {line}");
    assert!(
        parts.iter().all(|part| part.parse::<u32>().is_ok()),
        "{line}"
    );
    // The same version `plugins check` reports for this host.
    let check = run_cli(
        &[
            "plugins",
            "check",
            &library("ccproxy_plugin_access_log").display().to_string(),
        ],
        &[],
    );
    assert!(
        check
            .stdout
            .contains(&format!("this host (plugin API {api}.")),
        "{check:?}"
    );
}

#[test]
fn help_names_the_environment_variable_of_each_flag_without_secrets() {
    let out = run_cli(
        &["serve", "--help"],
        &[("SECURITY__AUTH_TOKEN", "help-must-not-show-this")],
    );
    assert_eq!(out.code, 0, "{out:?}");
    for expected in [
        "[env: SERVER__PORT=]",
        "[env: SERVER__HOST=]",
        "[env: SERVER__BYPASS_MODE=]",
        "[env: LOGGING__LEVEL=]",
        "[env: LOGGING__FILE=]",
        "[env: CONFIG_FILE=]",
        "[env: SECURITY__AUTH_TOKEN]",
        "SERVER__REQUEST_LINES",
        "ENABLED_PLUGINS",
        "DISABLED_PLUGINS",
        "PLUGIN_DISCOVERY__DIRECTORIES",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected} missing:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stdout.contains("help-must-not-show-this"),
        "{}",
        out.stdout
    );
}

#[test]
fn global_flags_come_before_or_after_the_subcommand() {
    let sandbox = Sandbox::new();
    let broken = sandbox.root().join("broken.toml");
    fs::write(&broken, "[server]\nprot = 1\n").expect("the sandbox is writable");
    let broken = broken.display().to_string();
    for args in [
        vec!["--config", broken.as_str(), "plugins", "list"],
        vec!["plugins", "list", "--config", broken.as_str()],
        vec!["-c", broken.as_str(), "config", "show"],
    ] {
        let out = sandbox.run_cli(&args, &[]);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("unknown config key `server.prot`")
                && out.stderr.contains("did you mean `server.port`?"),
            "{args:?}: {out:?}"
        );
    }
    let chatty = sandbox.run_cli(&["--log-level", "info", "auth", "providers"], &[]);
    assert_eq!(chatty.code, 0, "{chatty:?}");
    assert!(chatty.stderr.contains(" INFO "), "{chatty:?}");
    // A flag of `serve` before another subcommand would do nothing: refused.
    let misplaced = sandbox.run_cli(&["--port", "9", "plugins", "list"], &[]);
    assert_eq!(misplaced.code, 2, "{misplaced:?}");
    assert!(
        misplaced
            .stderr
            .contains("--port is a flag of `ccproxy serve`"),
        "{misplaced:?}"
    );
    // A value from the environment is the environment's, not a flag's.
    let shown = sandbox.run_cli(&["config", "show", "--json"], &[("SERVER__PORT", "9123")]);
    assert_eq!(shown.code, 0, "{shown:?}");
    let shown: Value = serde_json::from_str(&shown.stdout).expect("config show --json is JSON");
    let port = shown["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["key"] == "server.port"))
        .cloned()
        .unwrap_or_else(|| panic!("no server.port in {shown:#}"));
    assert_eq!(port["value"], 9123);
    assert_eq!(
        port["origin"],
        json!({"source": "env", "name": "SERVER__PORT"})
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = sandbox.run_cli(&["completions", shell], &[]);
        assert_eq!(out.code, 0, "{shell}: {out:?}");
        assert!(out.stdout.len() > 1000, "{shell}: {}", out.stdout);
        for word in ["ccproxy", "config", "validate", "log-level", "completions"] {
            assert!(out.stdout.contains(word), "{shell}: {word} missing");
        }
    }
    assert!(out_of(&sandbox, "zsh").starts_with("#compdef ccproxy"));
    assert!(out_of(&sandbox, "fish").contains("complete -c ccproxy"));
    // bash parses its script, which defines the completion function.
    let script = sandbox.root().join("ccproxy.bash");
    fs::write(&script, out_of(&sandbox, "bash")).expect("the sandbox is writable");
    let parsed = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        parsed.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let defined = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p ccproxy",
            script.display()
        ))
        .output()
        .expect("bash runs");
    assert!(
        String::from_utf8_lossy(&defined.stdout).contains("ccproxy"),
        "{defined:?}"
    );
    let unknown = sandbox.run_cli(&["completions", "tcsh"], &[]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
}

fn out_of(sandbox: &Sandbox, shell: &str) -> String {
    sandbox.run_cli(&["completions", shell], &[]).stdout
}

#[test]
fn the_man_page_renders() {
    let out = run_cli(&["man"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "roff header: {}",
        &out.stdout[..80.min(out.stdout.len())]
    );
    assert!(out.stdout.contains(".TH ccproxy 1"), "{}", out.stdout);
    for section in [
        "CCPROXY CONFIG INIT",
        "CCPROXY SERVE",
        "CCPROXY PLUGINS LIST",
    ] {
        assert!(out.stdout.contains(section), "{section} missing");
    }
    // `man -l` formats it (groff when man-db is missing).
    let sandbox = Sandbox::new();
    let page = sandbox.root().join("ccproxy.1");
    fs::write(&page, &out.stdout).expect("the sandbox is writable");
    let rendered = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(&page)
        .env("MANWIDTH", "100")
        .output()
        .or_else(|_| {
            Command::new("groff")
                .args(["-man", "-Tutf8"])
                .arg(&page)
                .output()
        })
        .expect("man or groff is installed (scripts/deps/man-tools installs them)");
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(rendered.status.success(), "{rendered:?}");
    assert!(text.contains("CCPROXY CONFIG INIT"), "{text}");
    assert!(text.contains("SERVER__PORT"), "{text}");
}

/// The proxy with `claude_api` in front of a mock upstream.
fn claude_proxy(mock: &MockUpstream, env: &[(&str, &str)], args: &[&str]) -> Proxy {
    let url = mock.url();
    let mut all_env = vec![("PLUGINS__CLAUDE_API__BASE_URL", url.as_str())];
    all_env.extend_from_slice(env);
    Proxy::start(ProxyOptions {
        bundled: &["claude_api"],
        env: &all_env,
        args,
        ..ProxyOptions::default()
    })
}

const MESSAGE_REPLY: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}"#;

fn message_body() -> Vec<u8> {
    json!({"model": "claude-sonnet-4-20250514", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
        .into_bytes()
}

#[test]
fn serve_prints_base_urls_and_a_line_per_request() {
    let mock = MockUpstream::start(4, 200, "application/json", MESSAGE_REPLY);
    let proxy = claude_proxy(
        &mock,
        &[
            (
                "ANTHROPIC_API_KEY",
                "sk-ant-api03-e2e-request-lines-0123456789",
            ),
            ("SECURITY__AUTH_TOKEN", "client-token-for-request-lines"),
        ],
        &[],
    );
    let base = proxy.base_url();
    proxy.wait_for_log("ANTHROPIC_BASE_URL=", Duration::from_secs(5));
    let log = proxy.log();
    let line_of = |needle: &str| {
        log.lines()
            .find(|line| line.ends_with(needle))
            .unwrap_or_else(|| panic!("no line ends with {needle}:\n{log}"))
            .to_owned()
    };
    let anthropic = line_of(&format!("ANTHROPIC_BASE_URL={base}/claude"));
    assert!(
        anthropic.contains("claude_api") && anthropic.contains("Claude Code"),
        "{anthropic}"
    );
    let openai = line_of(&format!("OPENAI_BASE_URL={base}/claude/v1"));
    assert!(openai.contains("Codex CLI, OpenAI SDKs"), "{openai}");
    assert!(
        log.contains("to the proxy's token (security.auth_token)"),
        "{log}"
    );
    assert!(!log.contains("WARNING"), "loopback needs no warning: {log}");

    assert_eq!(proxy.get("/health").status, 200);
    let denied = proxy.request(
        "POST",
        "/claude/v1/messages?api_key=sk-ant-query-secret-0123456789",
        &[("content-type", "application/json")],
        &message_body(),
    );
    assert_eq!(denied.status, 401);
    let answered = proxy.request(
        "POST",
        "/claude/v1/messages",
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer client-token-for-request-lines"),
        ],
        &message_body(),
    );
    assert_eq!(answered.status, 200, "{}", answered.text());
    proxy.wait_for_log("POST /claude/v1/messages 200 ", Duration::from_secs(5));
    let log = proxy.log();
    let request_lines: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with("GET /") || line.starts_with("POST /"))
        .collect();
    assert!(
        request_lines
            .iter()
            .any(|line| line.starts_with("GET /health 200 ")),
        "{log}"
    );
    assert!(
        request_lines
            .iter()
            .any(|line| line.starts_with("POST /claude/v1/messages 401 ")),
        "{log}"
    );
    for line in &request_lines {
        assert!(line.ends_with(" ms") || line.ends_with(" s"), "{line}");
        assert!(line.len() < 80, "{line}");
    }
    for secret in [
        "sk-ant-query-secret-0123456789",
        "client-token-for-request-lines",
        "sk-ant-api03-e2e-request-lines-0123456789",
    ] {
        assert!(!log.contains(secret), "{secret} printed:\n{log}");
    }
}

#[test]
fn quiet_serves_without_request_lines() {
    for (args, env) in [
        (&["--quiet"][..], &[][..]),
        (&[][..], &[("SERVER__REQUEST_LINES", "false")][..]),
    ] {
        let proxy = Proxy::start(ProxyOptions {
            args,
            env,
            ..ProxyOptions::default()
        });
        assert_eq!(proxy.get("/health").status, 200);
        assert_eq!(proxy.get("/health/live").status, 200);
        let (_, log) = proxy.stop_with(libc::SIGTERM);
        assert!(!log.contains("GET /health"), "{args:?} {env:?}: {log}");
        assert!(log.contains("serving on"), "{log}");
    }
}

#[test]
fn an_api_path_without_its_provider_prefix_gets_a_hint() {
    let mock = MockUpstream::start(1, 200, "application/json", MESSAGE_REPLY);
    let proxy = claude_proxy(
        &mock,
        &[("ANTHROPIC_API_KEY", "sk-ant-api03-hint-0123456789")],
        &[],
    );
    let reply = proxy.request(
        "POST",
        "/v1/messages",
        &[("content-type", "application/json")],
        &message_body(),
    );
    assert_eq!(reply.status, 404);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("/claude/v1/messages (plugin claude_api)"),
        "{message}"
    );
    assert!(message.contains("ANTHROPIC_BASE_URL="), "{message}");
    let chat = proxy.request(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        b"{}",
    );
    let chat = chat.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        chat.contains("/claude/v1/chat/completions (plugin claude_api)"),
        "{chat}"
    );
    // Any other unknown path keeps the plain 404.
    let other = proxy.get("/nothing/here");
    assert_eq!(other.status, 404);
    assert!(
        other
            .text()
            .contains("GET /plugins/status lists every route"),
        "{}",
        other.text()
    );
    // Without a provider loaded, the hint says so.
    let bare = Proxy::start(ProxyOptions::default());
    let reply = bare.request(
        "POST",
        "/v1/messages",
        &[("content-type", "application/json")],
        b"{}",
    );
    assert_eq!(reply.status, 404);
    assert!(
        reply
            .text()
            .contains("no loaded provider plugin serves this one"),
        "{}",
        reply.text()
    );
    assert!(
        bare.log().contains("no provider plugin is loaded"),
        "{}",
        bare.log()
    );
}

#[test]
fn a_reachable_address_without_a_client_token_is_warned_about() {
    let open = Proxy::start(ProxyOptions {
        args: &["--host", "0.0.0.0"],
        ..ProxyOptions::default()
    });
    let (_, log) = open.stop_with(libc::SIGTERM);
    assert!(
        log.contains("WARNING: listening on 0.0.0.0:")
            && log.contains("without a client token")
            && log
                .lines()
                .any(|line| line.contains("WARN") && line.contains("set security.auth_token")),
        "{log}"
    );
    let guarded = Proxy::start(ProxyOptions {
        args: &["--host", "0.0.0.0", "--auth-token", "guarded-token-value"],
        ..ProxyOptions::default()
    });
    let (_, log) = guarded.stop_with(libc::SIGTERM);
    assert!(!log.contains("without a client token"), "{log}");
    assert!(!log.contains("guarded-token-value"), "{log}");
}

/// Planted secrets: an API key in the config file, another in the
/// environment, a client token in the environment and one on the command
/// line, and a key-looking value under a plain name. Every command's output
/// is searched for each of them.
#[test]
fn no_command_prints_a_planted_secret() {
    const FILE_KEY: &str = "sk-ant-api03-PLANTED-in-config-file-0123456789";
    const ENV_KEY: &str = "sk-ant-api03-PLANTED-in-environment-0123456789";
    const ENV_TOKEN: &str = "planted-client-token-from-env-42";
    const FLAG_TOKEN: &str = "planted-client-token-from-flag-42";
    const ODD_NAME_KEY: &str = "sk-proj-PLANTEDunderAplainName0123456789";
    let secrets = [FILE_KEY, ENV_KEY, ENV_TOKEN, FLAG_TOKEN, ODD_NAME_KEY];

    let mock = MockUpstream::start(4, 200, "application/json", MESSAGE_REPLY);
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(&format!(
        "[security]\nauth_token = \"{ENV_TOKEN}-file\"\n\n[plugins.claude_api]\napi_key = \"{FILE_KEY}\"\nbase_url = \"{}\"\nfull_system_prompt = \"{ODD_NAME_KEY}\"\n",
        mock.url()
    ));
    let env = [
        ("ANTHROPIC_API_KEY", ENV_KEY),
        ("SECURITY__AUTH_TOKEN", ENV_TOKEN),
        ("PLUGINS__CODEX__API_KEY", ENV_KEY),
    ];
    let config_arg = config.display().to_string();
    let access_log = library("ccproxy_plugin_access_log").display().to_string();
    let init_output = sandbox.root().join("init.toml").display().to_string();
    // Core problems stop the check before plugin sections: one file of each.
    let broken_core = sandbox.root().join("broken-core.toml");
    fs::write(
        &broken_core,
        format!("[server]\nport = \"{FILE_KEY}\"\napi_key = \"{FILE_KEY}\"\n"),
    )
    .expect("the sandbox is writable");
    let broken_core = broken_core.display().to_string();
    let broken = sandbox.root().join("broken.toml");
    fs::write(
        &broken,
        format!(
            "[plugins.claude_api]\napi_kye = \"{FILE_KEY}\"\ndefault_max_tokens = \"{ENV_KEY}\"\n"
        ),
    )
    .expect("the sandbox is writable");
    let broken_arg = broken.display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["plugins", "list"],
        vec!["plugins", "list", "--json"],
        vec!["plugins", "info", "claude_api"],
        vec!["plugins", "info", "claude_api", "--json"],
        vec!["plugins", "info", "codex", "--json"],
        vec!["plugins", "check", &access_log],
        vec!["plugins", "check", &access_log, "--json"],
        vec!["config", "show"],
        vec!["config", "show", "--json"],
        vec!["config", "validate"],
        vec!["config", "validate", "--config", &broken_arg],
        vec!["config", "validate", "--config", &broken_core],
        vec!["plugins", "info", "claude_api", "--config", &broken_arg],
        vec!["config", "show", "--config", &broken_arg],
        vec!["plugins", "list", "--config", &broken_arg],
        vec!["config", "init", "--output", "-"],
        vec!["config", "init", "--output", &init_output],
        vec!["config", "schema"],
        vec!["auth", "providers"],
        vec!["auth", "status", "claude-api"],
        vec!["auth", "status", "claude-api", "--json"],
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["serve", "--auth-token", FLAG_TOKEN, "--port", "not-a-port"],
    ];
    let mut outputs = Vec::new();
    for args in &commands {
        let mut all: Vec<&str> = args.clone();
        if !args.contains(&"--config") && args[0] != "serve" && !args.contains(&"--help") {
            all.extend(["--config", &config_arg]);
        }
        let out = sandbox.run_cli(&all, &env);
        outputs.push((
            all.join(" "),
            format!("{}\n{}", out.stdout, out.stderr),
            out.code,
        ));
    }
    // The written init file too.
    outputs.push((
        "init.toml".to_owned(),
        fs::read_to_string(sandbox.root().join("init.toml")).unwrap_or_default(),
        0,
    ));
    // Serve, with a request answered, a 401, a 404 and a stop.
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["claude_api", "access_log"],
            env: &env,
            args: &["--auth-token", FLAG_TOKEN, "--log-level", "debug"],
            ..ProxyOptions::default()
        },
    );
    let answered = proxy.request(
        "POST",
        "/claude/v1/messages",
        &[
            ("content-type", "application/json"),
            ("x-api-key", FLAG_TOKEN),
        ],
        &message_body(),
    );
    assert_eq!(answered.status, 200, "{}", answered.text());
    let denied = proxy.request(
        "POST",
        "/claude/v1/messages",
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {ENV_TOKEN}")),
        ],
        &message_body(),
    );
    assert_eq!(denied.status, 401);
    assert_eq!(
        proxy
            .get_with("/v1/messages", &[("x-api-key", FLAG_TOKEN)])
            .status,
        404
    );
    let status = proxy.get_with("/plugins/status", &[("x-api-key", FLAG_TOKEN)]);
    outputs.push(("GET /plugins/status".to_owned(), status.text(), 0));
    let (_, log) = proxy.stop_with(libc::SIGTERM);
    outputs.push(("serve".to_owned(), log, 0));

    for (command, output, _) in &outputs {
        for secret in secrets {
            assert!(
                !output.contains(secret),
                "`ccproxy {command}` printed {secret}:\n{output}"
            );
        }
    }
    // The commands did run and say something (a failure would print nothing to grep).
    let said = |needle: &str| outputs.iter().any(|(_, output, _)| output.contains(needle));
    assert!(said("claude_api"), "{outputs:#?}");
    assert!(said("server.port = *** in"), "{outputs:#?}");
    assert!(said("plugins.claude_api.api_key = \"***\""), "{outputs:#?}");
    assert!(
        said("unknown config key `plugins.claude_api.api_kye`"),
        "{outputs:#?}"
    );
    assert!(said("POST /claude/v1/messages 200"), "{outputs:#?}");
    assert!(said("POST /claude/v1/messages 401"), "{outputs:#?}");
}

/// The arguments README.md's first command gives `ccproxy serve` (the
/// newcomer's "start the proxy with every bundled plugin loaded").
fn readme_serve_args() -> Vec<String> {
    let readme = fs::read_to_string(ccproxy_e2e::workspace_root().join("README.md"))
        .expect("README.md is readable");
    let line = readme
        .lines()
        .find(|line| line.contains("./target/debug/ccproxy serve"))
        .expect("README.md has the `./target/debug/ccproxy serve` command");
    let (_, args) = line
        .split_once("./target/debug/ccproxy serve")
        .expect("the command names serve");
    args.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn the_readme_command_loads_every_bundled_plugin() {
    let args = readme_serve_args();
    let bundled = ccproxy_e2e::bundled_plugins();
    assert!(bundled.len() >= 17, "bundled plugins built: {bundled:?}");

    // Every plugin file found loads with the README's flags, the opt-in ones included.
    let sandbox = Sandbox::new();
    let mut list_args = vec!["plugins", "list", "--json"];
    list_args.extend(args.iter().map(String::as_str));
    let out = sandbox.run_cli(&list_args, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let listed: Value = serde_json::from_str(&out.stdout).expect("plugins list --json is JSON");
    let plugins = listed["plugins"].as_array().expect("a plugins array");
    for name in &bundled {
        let entry = plugins
            .iter()
            .find(|plugin| plugin["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not listed: {listed:#}"));
        assert_eq!(
            entry["status"], "ok",
            "README's command leaves {name} off: {entry:#}"
        );
    }

    // And `serve` with them answers with all of them active.
    let bundled_refs: Vec<&str> = bundled.iter().map(String::as_str).collect();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(ProxyOptions {
        bundled: &bundled_refs,
        args: &arg_refs,
        ..ProxyOptions::default()
    });
    for name in &bundled {
        assert_eq!(
            proxy.plugin_entry(name)["status"],
            "active",
            "{name} under serve with README's flags"
        );
    }
}
