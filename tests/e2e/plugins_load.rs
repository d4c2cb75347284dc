//! Loading plugins: every bad library is refused or disabled with its one-line
//! reason while every other plugin loads and serves in the same process; the
//! same verdicts through `GET /plugins/status`, `ccproxy plugins list --json`
//! and `ccproxy plugins check`; and the compatibility promise: plugins built
//! against the frozen 1.0, 1.1 and 1.2 interfaces load into today's host, side
//! by side, and work.

use std::{
    fs,
    io::{Read, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use ccproxy_e2e::{Proxy, ProxyOptions, Reply, Sandbox, library, mock::Mock, poll, workspace_root};
use serde_json::Value;

/// The plugin API version this host speaks: the SDK crate's version.
fn host_api_version() -> String {
    let manifest = fs::read_to_string(workspace_root().join("plugin-abi/Cargo.toml"))
        .expect("plugin-abi/Cargo.toml is readable");
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("plugin-abi/Cargo.toml has a version line")
        .to_owned()
}

/// Every kind of bad library next to one good plugin, in one sandbox.
struct BadLot {
    sandbox: Sandbox,
    /// A folder every user may write to, holding an otherwise loadable plugin.
    open_dir: PathBuf,
    /// A safe folder in a folder every user may write to, holding one too.
    nested_dir: PathBuf,
}

fn bad_lot() -> BadLot {
    let sandbox = Sandbox::new();
    let plugins = sandbox.plugin_dir();
    for stem in [
        "test_plugin_panicky",
        "test_plugin_missing_dep",
        "test_plugin_cycle_a",
        "test_plugin_cycle_b",
        "test_plugin_abi_v2",
        "test_plugin_needs_newer_host",
        "test_plugin_layout_mismatch",
        "test_plugin_not_a_plugin",
    ] {
        sandbox.install(stem);
    }
    // Found after libtest_plugin_panicky.so (discovery is sorted by file name),
    // so the impostor is the one refused.
    sandbox.install_file(
        &library("test_plugin_duplicate"),
        &plugins,
        "libzz_duplicate.so",
        None,
    );
    // A file that is not a shared library at all.
    fs::write(plugins.join("libgarbage.so"), b"this is not an ELF file")
        .expect("the plugin folder is writable");
    // A loadable plugin that every user could have replaced.
    sandbox.install_file(
        &library("test_plugin_middleware_probe"),
        &plugins,
        "libworld_writable.so",
        Some(0o666),
    );
    // A loadable plugin in a folder every user can write to.
    let open_dir = sandbox.root().join("open");
    sandbox.install_file(
        &library("test_plugin_middleware_probe"),
        &open_dir,
        "libin_open_dir.so",
        None,
    );
    ccproxy_e2e::set_mode(&open_dir, 0o777);
    // A link in the plugin folder to a plugin in another such folder: the
    // file it resolves to is the one checked (and loaded).
    let link_target_dir = sandbox.root().join("open_link_target");
    let link_target = sandbox.install_file(
        &library("test_plugin_middleware_probe"),
        &link_target_dir,
        "liblink_target.so",
        None,
    );
    ccproxy_e2e::set_mode(&link_target_dir, 0o777);
    std::os::unix::fs::symlink(&link_target, plugins.join("liblinked_from_open_dir.so"))
        .expect("a link can be made in the plugin folder");
    // A loadable plugin its group could have replaced.
    sandbox.install_file(
        &library("test_plugin_middleware_probe"),
        &plugins,
        "libgroup_writable.so",
        Some(0o664),
    );
    // A safe folder inside a folder every user can write to (not sticky):
    // anyone could have swapped the safe folder for their own.
    let open_parent = sandbox.root().join("open_parent");
    let nested_dir = open_parent.join("nested");
    sandbox.install_file(
        &library("test_plugin_middleware_probe"),
        &nested_dir,
        "libunder_open_parent.so",
        None,
    );
    ccproxy_e2e::set_mode(&nested_dir, 0o755);
    ccproxy_e2e::set_mode(&open_parent, 0o777);
    BadLot {
        sandbox,
        open_dir,
        nested_dir,
    }
}

/// `(file name, status, reason phrase)` for every file of [`bad_lot`]; the
/// status as `/plugins/status` spells it.
fn expected_verdicts() -> Vec<(&'static str, &'static str, String)> {
    let host = host_api_version();
    vec![
        ("libtest_plugin_panicky.so", "active", String::new()),
        (
            "libtest_plugin_missing_dep.so",
            "disabled",
            "missing dependency no_such_plugin".into(),
        ),
        (
            "libtest_plugin_cycle_a.so",
            "disabled",
            "dependency cycle: cycle_a -> cycle_b -> cycle_a".into(),
        ),
        (
            "libtest_plugin_cycle_b.so",
            "disabled",
            "dependency cycle: cycle_b -> cycle_a -> cycle_b".into(),
        ),
        (
            "libtest_plugin_abi_v2.so",
            "refused",
            format!("built for plugin API 2.0.0, this host speaks {host}"),
        ),
        (
            "libtest_plugin_needs_newer_host.so",
            "refused",
            "needs a newer host".into(),
        ),
        (
            "libtest_plugin_layout_mismatch.so",
            "refused",
            "layout mismatch".into(),
        ),
        (
            "libtest_plugin_not_a_plugin.so",
            "refused",
            "not a ccproxy plugin".into(),
        ),
        (
            "libzz_duplicate.so",
            "refused",
            "duplicate plugin name panicky".into(),
        ),
        ("libgarbage.so", "refused", "not a loadable library".into()),
        (
            "libworld_writable.so",
            "refused",
            "writable by every user".into(),
        ),
        (
            "libin_open_dir.so",
            "refused",
            "writable by every user".into(),
        ),
        (
            "liblinked_from_open_dir.so",
            "refused",
            "open_link_target is writable by every user".into(),
        ),
        (
            "libgroup_writable.so",
            "refused",
            "writable by its group (mode 0664)".into(),
        ),
        (
            "libunder_open_parent.so",
            "refused",
            "open_parent is writable by every user".into(),
        ),
    ]
}

fn file_name(entry: &Value) -> String {
    let file = entry["file"].as_str().unwrap_or_default();
    PathBuf::from(file)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn find<'a>(plugins: &'a [Value], file: &str) -> &'a Value {
    plugins
        .iter()
        .find(|entry| file_name(entry) == file)
        .unwrap_or_else(|| panic!("{file} is not listed: {plugins:#?}"))
}

/// Checks every verdict in a listing whose active status is spelled `active_word`.
fn check_verdicts(plugins: &[Value], active_word: &str) {
    for (file, status, phrase) in expected_verdicts() {
        let entry = find(plugins, file);
        let status = if status == "active" {
            active_word
        } else {
            status
        };
        assert_eq!(entry["status"], status, "{file}: {entry:#}");
        let reason = entry["reason"].as_str().unwrap_or_default();
        if phrase.is_empty() {
            assert!(entry["reason"].is_null(), "{file} has a reason: {entry:#}");
        } else {
            assert!(
                reason.contains(&phrase),
                "{file}: reason {reason:?} lacks {phrase:?}"
            );
            assert!(
                !reason.contains('\n'),
                "{file}: reason is not one line: {reason:?}"
            );
        }
    }
}

#[test]
fn bad_plugins_are_refused_with_a_reason_and_the_rest_serve() {
    let lot = bad_lot();
    let open_dir = lot.open_dir.display().to_string();
    let nested_dir = lot.nested_dir.display().to_string();
    let proxy = Proxy::start_in(
        lot.sandbox,
        ProxyOptions {
            args: &["--plugin-dir", &open_dir, "--plugin-dir", &nested_dir],
            ..ProxyOptions::default()
        },
    );

    // The server is up, and the good plugin serves.
    let health = proxy.get("/health");
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(
        health.json()["status"],
        "warn",
        "refused files make health warn: {}",
        health.text()
    );
    let ok = proxy.get("/panicky/ok");
    assert_eq!((ok.status, ok.text().as_str()), (200, "still fine"));
    // The impostor's route was never mounted.
    assert_eq!(proxy.get("/impostor").status, 404);

    let status = proxy.get("/plugins/status").json();
    let plugins = status["plugins"]
        .as_array()
        .expect("plugins is an array")
        .clone();
    check_verdicts(&plugins, "active");
    let panicky = find(&plugins, "libtest_plugin_panicky.so");
    assert_eq!(
        (panicky["name"].as_str(), panicky["version"].as_str()),
        (Some("panicky"), Some("0.1.0"))
    );
    let abi_v2 = find(&plugins, "libtest_plugin_abi_v2.so");
    assert_eq!(
        abi_v2["api_version"], "2.0.0",
        "the refused plugin's version is shown: {abi_v2:#}"
    );
    let open = find(&plugins, "libin_open_dir.so");
    assert!(
        open["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("folder"),
        "{open:#}"
    );
    // Layout refusals are one readable line naming what differs, not
    // abi_stable's dump of both layouts.
    let layout = find(&plugins, "libtest_plugin_layout_mismatch.so")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(layout.len() < 500, "layout refusal is too long: {layout}");
    let host = host_api_version();
    assert!(
        layout.contains("claims plugin API 1.0.0")
            && layout.contains(&format!("this host's plugin API {host}")),
        "layout refusal does not name both versions: {layout}"
    );
    assert_eq!(
        find(&plugins, "libtest_plugin_layout_mismatch.so")["api_version"],
        "1.0.0"
    );
    assert!(
        layout.contains("test-plugin-layout-mismatch"),
        "layout refusal does not say what differs: {layout}"
    );
    assert_eq!(
        status["initialization_order"],
        serde_json::json!(["panicky"])
    );

    // The operator sees each refusal as one log line naming the file, and each
    // disabled plugin as one line naming the plugin.
    let log = proxy.log();
    for (file, status, phrase) in expected_verdicts() {
        let named = match status {
            "active" => continue,
            "refused" => file.to_owned(),
            _ => format!(
                "plugin={}",
                find(&plugins, file)["name"].as_str().unwrap_or_default()
            ),
        };
        assert!(
            log.lines()
                .any(|line| line.contains(&named) && line.contains(&phrase)),
            "no log line names {named} with {phrase:?}; log:\n{log}"
        );
    }

    // `plugins list --json` sees the same files and the same verdicts.
    let listed = proxy.sandbox().run_cli(
        &[
            "plugins",
            "list",
            "--json",
            "--plugin-dir",
            &open_dir,
            "--plugin-dir",
            &nested_dir,
        ],
        &[],
    );
    assert_eq!(listed.code, 0, "{listed:?}");
    let listed: Value = serde_json::from_str(&listed.stdout)
        .unwrap_or_else(|e| panic!("plugins list --json: {e}: {listed:?}"));
    check_verdicts(
        listed["plugins"].as_array().expect("plugins is an array"),
        "ok",
    );

    // And the table names the refused file with its reason on its row.
    let table = proxy
        .sandbox()
        .run_cli(&["plugins", "list", "--plugin-dir", &open_dir], &[]);
    assert_eq!(table.code, 0, "{table:?}");
    let row = table
        .stdout
        .lines()
        .find(|line| line.contains("libtest_plugin_needs_newer_host.so"))
        .unwrap_or_else(|| panic!("no row for needs_newer_host:\n{}", table.stdout));
    assert!(
        row.contains("refused") && row.contains("needs a newer host"),
        "{row}"
    );
}

#[test]
fn plugins_check_gives_a_verdict_and_an_exit_code() {
    let sandbox = Sandbox::new();
    let good = sandbox.install("test_plugin_panicky");
    let bad = sandbox.install("test_plugin_abi_v2");
    let missing_dep = sandbox.install("test_plugin_missing_dep");
    let host = host_api_version();

    let ok = sandbox.run_cli(&["plugins", "check", &good.display().to_string()], &[]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.starts_with("ok: panicky 0.1.0"), "{ok:?}");
    assert!(
        ok.stdout.contains(&format!("built for plugin API {host}")),
        "{ok:?}"
    );

    // A bare file name is the file in the working directory, not a search of
    // the system's library path.
    let bare = sandbox
        .command(&["plugins", "check", "libtest_plugin_panicky.so"], &[])
        .current_dir(sandbox.plugin_dir())
        .output()
        .expect("ccproxy runs");
    assert_eq!(
        bare.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&bare.stdout),
        String::from_utf8_lossy(&bare.stderr)
    );

    // A plugin whose dependency is missing is still a loadable library: the
    // check is about the file, the dependency is the registry's business.
    let loadable = sandbox.run_cli(
        &["plugins", "check", &missing_dep.display().to_string()],
        &[],
    );
    assert_eq!(loadable.code, 0, "{loadable:?}");

    let refused = sandbox.run_cli(&["plugins", "check", &bad.display().to_string()], &[]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stdout.starts_with("refused:"), "{refused:?}");
    assert!(
        refused.stdout.contains(&bad.display().to_string()),
        "names the file: {refused:?}"
    );
    assert!(
        refused.stdout.contains(&format!(
            "built for plugin API 2.0.0, this host speaks {host}"
        )),
        "{refused:?}"
    );

    let json = sandbox.run_cli(
        &["plugins", "check", "--json", &bad.display().to_string()],
        &[],
    );
    assert_eq!(json.code, 1, "{json:?}");
    let verdict: Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json:?}"));
    assert_eq!(verdict["verdict"], "refused");
    assert!(
        verdict["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("2.0.0"),
        "{verdict:#}"
    );
    let json = sandbox.run_cli(
        &["plugins", "check", "--json", &good.display().to_string()],
        &[],
    );
    let verdict: Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json:?}"));
    assert_eq!(
        (json.code, verdict["verdict"].as_str()),
        (0, Some("ok")),
        "{json:?}"
    );
    assert_eq!(verdict["manifest"]["name"], "panicky");

    // `plugins info` reads the same folder the server would.
    let info = sandbox.run_cli(&["plugins", "info", "panicky", "--json"], &[]);
    assert_eq!(info.code, 0, "{info:?}");
    let info: Value =
        serde_json::from_str(&info.stdout).unwrap_or_else(|e| panic!("{e}: {info:?}"));
    assert_eq!(info["manifest"]["name"], "panicky", "{info:#}");
    assert_eq!(
        info["manifest"]["hooks"][0]["events"],
        serde_json::json!(["request.completed"]),
        "{info:#}"
    );
    let unknown = sandbox.run_cli(&["plugins", "info", "no_such_plugin"], &[]);
    assert_ne!(unknown.code, 0, "{unknown:?}");
    assert!(unknown.stderr.contains("no_such_plugin"), "{unknown:?}");

    // A file that does not exist is a usage error (2), not a refused plugin (1).
    let nothing = sandbox.run_cli(&["plugins", "check", "/no/such/libfile.so"], &[]);
    assert_eq!(nothing.code, 2, "{nothing:?}");
    assert!(nothing.stderr.contains("does not exist"), "{nothing:?}");
}

#[test]
fn a_plugin_built_against_the_frozen_1_0_interface_loads_and_works() {
    let sandbox = Sandbox::new();
    sandbox.install_frozen("hello_v1_0");
    let proxy = Proxy::start_in(sandbox, ProxyOptions::default());

    let status = proxy.get("/plugins/status").json();
    let entry = find(
        status["plugins"].as_array().expect("plugins is an array"),
        "libhello_v1_0.so",
    );
    assert_eq!(entry["status"], "active", "{entry:#}");
    assert_eq!(entry["api_version"], "1.0.0", "{entry:#}");
    // ... into a host that speaks a newer minor of plugin API 1.
    let host = host_api_version();
    let host_minor: u64 = host
        .strip_prefix("1.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|minor| minor.parse().ok())
        .unwrap_or_else(|| panic!("the host speaks plugin API 1.x, not {host}"));
    assert!(host_minor >= 1, "the host speaks {host}");

    // Its route, and through it a host capability (ctx.sleep).
    let hello = proxy.get("/v1_0/hello");
    assert_eq!(hello.status, 200, "{}", hello.text());
    let hello = hello.json();
    assert_eq!(hello["plugin_api"], "1.0.0", "{hello:#}");
    assert!(
        hello["slept_ms"].as_u64().is_some_and(|ms| ms >= 10),
        "ctx.sleep did not wait: {hello:#}"
    );

    // Its hook: request.completed is observed off the request path, so poll.
    let count = poll(Duration::from_secs(5), || {
        let count = proxy.get("/v1_0/count").json()["completed"]
            .as_u64()
            .unwrap_or(0);
        (count >= 2).then_some(count)
    });
    assert!(
        count.is_some(),
        "the hook never counted; log:\n{}",
        proxy.log()
    );
}

/// A provider built against plugin API 1.2 gets its request as it always did:
/// since 1.3 the host writes `provider.prepare`'s metadata as netstrings for
/// plugins whose SDK reads them, and as JSON for the others.
#[test]
fn a_provider_built_against_the_frozen_1_2_interface_gets_its_request_as_before() {
    let mock = Mock::start(&[]);
    let sandbox = Sandbox::new();
    sandbox.install_frozen("hello_v1_2");
    let upstream = mock.url();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            env: &[("CCPROXY_TEST_HELLO_UPSTREAM", &upstream)],
            ..ProxyOptions::default()
        },
    );
    let body = serde_json::json!({
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "hi"}],
    })
    .to_string();
    let reply = proxy.request(
        "POST",
        "/v1_2/provider/v1/messages?beta=true",
        &[
            ("content-type", "application/json"),
            ("x-hello", "from the client, with: a colon"),
            ("x-request-id", "frozen-provider-1"),
        ],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["type"], "message", "{}", reply.text());

    let received = mock.requests_to("/v1/messages");
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(received[0]["body_text"], body.as_str());
    let seen: Value = serde_json::from_str(
        received[0]["headers"]["x-seen"]
            .as_str()
            .expect("the provider's x-seen header reached the upstream"),
    )
    .expect("x-seen is JSON");
    assert_eq!(
        seen,
        serde_json::json!({
            "endpoint": "/v1_2/provider/v1/messages",
            "client_format": "anthropic.messages",
            "native_format": "anthropic.messages",
            "model": "claude-sonnet-4-20250514",
            "stream": false,
            "query": "beta=true",
            "request_id": "frozen-provider-1",
            "hello": "from the client, with: a colon",
            "body_bytes": body.len(),
        })
    );
}

/// The `api_version` a listing gives the frozen plugin in file `file`, after
/// checking it is listed active under `name`.
fn frozen_api_version(plugins: &[Value], file: &str, name: &str, active_word: &str) -> String {
    let entry = find(plugins, file);
    assert_eq!(
        (entry["name"].as_str(), entry["status"].as_str()),
        (Some(name), Some(active_word)),
        "{entry:#}"
    );
    entry["api_version"]
        .as_str()
        .unwrap_or_else(|| panic!("{file} has no api_version: {entry:#}"))
        .to_owned()
}

/// Reads `stream` on until everything received contains `needle`; panics,
/// saying what arrived, when the proxy closes first.
fn read_on_until(stream: &mut impl Read, received: &mut String, needle: &str) {
    let mut buffer = [0u8; 4096];
    while !received.contains(needle) {
        let read = stream.read(&mut buffer).expect("the stream can be read");
        assert!(read > 0, "closed before {needle:?}: {received}");
        received.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
}

/// The client token the side-by-side proxy requires (`security.auth_token`).
const CLIENT_TOKEN: &str = "fr0zen-t0ken";

/// `GET path` with the client token.
fn get_authorized(proxy: &Proxy, path: &str) -> Reply {
    proxy.get_with(
        path,
        &[("authorization", &format!("Bearer {CLIENT_TOKEN}"))],
    )
}

#[test]
fn plugins_built_against_the_frozen_1_0_1_1_and_1_2_interfaces_serve_side_by_side() {
    let sandbox = Sandbox::new();
    sandbox.install_frozen("hello_v1_0");
    sandbox.install_frozen("hello_v1_1");
    sandbox.install_frozen("hello_v1_2");
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            env: &[("SECURITY__AUTH_TOKEN", CLIENT_TOKEN)],
            ..ProxyOptions::default()
        },
    );
    let bearer = format!("Bearer {CLIENT_TOKEN}");
    let authorization = ("authorization", bearer.as_str());

    // All three loaded into the one host, each with the API version it was built for.
    let status = get_authorized(&proxy, "/plugins/status").json();
    let active = status["plugins"].as_array().expect("plugins is an array");
    let listed = proxy.sandbox().run_cli(&["plugins", "list", "--json"], &[]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let listed: Value = serde_json::from_str(&listed.stdout)
        .unwrap_or_else(|e| panic!("plugins list --json: {e}: {listed:?}"));
    let listed = listed["plugins"].as_array().expect("plugins is an array");
    for (file, name, minor) in [
        ("libhello_v1_0.so", "hello_v1_0", "1.0."),
        ("libhello_v1_1.so", "hello_v1_1", "1.1."),
        ("libhello_v1_2.so", "hello_v1_2", "1.2."),
    ] {
        let served = frozen_api_version(active, file, name, "active");
        let api_version = frozen_api_version(listed, file, name, "ok");
        assert!(api_version.starts_with(minor), "{name}: {api_version}");
        assert_eq!(served, api_version, "{name}");
    }
    // Route::public: the host knows the 1.2 plugin's one public route.
    let hello_v1_2 = find(active, "libhello_v1_2.so");
    assert_eq!(
        hello_v1_2["public_routes"],
        serde_json::json!(["GET /v1_2/count"]),
        "{hello_v1_2:#}"
    );

    // The token is in force: every plugin route but the public one needs it.
    for path in ["/v1_0/hello", "/v1_1/hello", "/v1_2/ticks"] {
        let denied = proxy.get(path);
        assert_eq!(
            denied.status,
            401,
            "{path} without a token: {}",
            denied.text()
        );
    }
    let public = proxy.get("/v1_2/count");
    assert_eq!(public.status, 200, "the public route: {}", public.text());
    assert_eq!(public.json()["plugin_api"], "1.2.0", "{}", public.text());

    // The 1.0 plugin's route and host call.
    let hello = get_authorized(&proxy, "/v1_0/hello");
    assert_eq!(hello.status, 200, "{}", hello.text());
    let hello = hello.json();
    assert_eq!(hello["plugin_api"], "1.0.0", "{hello:#}");
    assert!(
        hello["slept_ms"].as_u64().is_some_and(|ms| ms >= 10),
        "ctx.sleep did not wait: {hello:#}"
    );

    // The 1.1 plugin's route: ctx.sleep, Context::bypass_mode, and ctx.http
    // through the host's client, which sends no client token: here to the 1.2
    // plugin's public route.
    let count_url = format!("{}/v1_2/count", proxy.base_url());
    let hello = proxy.get_with(
        "/v1_1/hello",
        &[authorization, ("x-hello-fetch", &count_url)],
    );
    assert_eq!(hello.status, 200, "{}", hello.text());
    let hello = hello.json();
    assert_eq!(hello["plugin_api"], "1.1.0", "{hello:#}");
    assert_eq!(hello["host_api"], host_api_version(), "{hello:#}");
    assert_eq!(hello["bypass"], false, "{hello:#}");
    assert!(
        hello["slept_ms"].as_u64().is_some_and(|ms| ms >= 10),
        "ctx.sleep did not wait: {hello:#}"
    );
    assert_eq!(hello["fetched"]["status"], 200, "{hello:#}");
    assert_eq!(
        hello["fetched"]["body"]["plugin_api"], "1.2.0",
        "ctx.http did not reach /v1_2/count: {hello:#}"
    );

    // The 1.2 plugin's streamed route: the head first, then the events one by
    // one as its task produces them (150 ms apart on the host's timer), then
    // the end of the chunked body.
    let started = Instant::now();
    let mut stream = proxy.connect();
    write!(
        stream,
        "GET /v1_2/ticks HTTP/1.1\r\nhost: localhost\r\nauthorization: {bearer}\r\nconnection: close\r\n\r\n"
    )
    .expect("the request can be written");
    let mut received = String::new();
    read_on_until(&mut stream, &mut received, "data: {\"n\":1}");
    let first_at = started.elapsed();
    let head = received
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(
        !head.contains("content-length"),
        "a stream has no length: {head}"
    );
    assert!(
        !received.contains("\"n\":3"),
        "the first event came with the last: {received}"
    );
    read_on_until(&mut stream, &mut received, "data: {\"n\":3}");
    let last_at = started.elapsed();
    // The chunked body ends after the third event.
    read_on_until(&mut stream, &mut received, "\r\n0\r\n\r\n");
    assert!(received.contains("data: {\"n\":2}"), "{received}");
    assert!(
        last_at >= first_at + Duration::from_millis(250),
        "the ticks are 150 ms apart: first at {first_at:?}, last at {last_at:?}"
    );
    drop(stream);

    // Its blocking route: the sum is computed on another thread, the host's
    // blocking pool (Context::blocking).
    let numbers = serde_json::to_vec(&(1..=100).collect::<Vec<u64>>()).expect("numbers serialise");
    let sum = proxy.request(
        "POST",
        "/v1_2/sum",
        &[authorization, ("content-type", "application/json")],
        &numbers,
    );
    assert_eq!(sum.status, 200, "{}", sum.text());
    let sum = sum.json();
    assert_eq!(
        (
            &sum["sum"],
            &sum["other_thread"],
            &sum["blocking_capability"]
        ),
        (
            &serde_json::json!(5050),
            &Value::Bool(true),
            &Value::Bool(true)
        ),
        "{sum:#}"
    );

    // One more request, the last one the 1.0 and 1.1 hooks see before they are
    // asked: /v1_0/hello, /v1_1/hello, the /v1_2/count it fetched, the stream,
    // the sum, and this one (the refused and public requests aside).
    assert_eq!(get_authorized(&proxy, "/v1_0/hello").status, 200);
    const SEEN: u64 = 6;
    // request.completed is observed off the request path, so poll. The 1.1
    // hook read the path through HookCall::data (its own /v1_1/count aside).
    let seen_by_1_1 = poll(Duration::from_secs(5), || {
        let count = get_authorized(&proxy, "/v1_1/count").json();
        (count["completed"].as_u64().unwrap_or(0) >= SEEN && count["last_path"] == "/v1_0/hello")
            .then_some(count)
    });
    assert!(
        seen_by_1_1.is_some(),
        "the 1.1 hook never counted {SEEN} requests ending with /v1_0/hello: {:#}; log:\n{}",
        get_authorized(&proxy, "/v1_1/count").json(),
        proxy.log()
    );
    let seen_by_1_0 = poll(Duration::from_secs(5), || {
        let completed = get_authorized(&proxy, "/v1_0/count").json()["completed"]
            .as_u64()
            .unwrap_or(0);
        (completed >= SEEN).then_some(completed)
    });
    assert!(
        seen_by_1_0.is_some(),
        "the 1.0 hook never counted {SEEN} requests; log:\n{}",
        proxy.log()
    );
    // The 1.2 hook was sent the request bodies (HookBody::RequestBody): the
    // one request with a body is the sum's, and it saw exactly those bytes.
    let seen_by_1_2 = poll(Duration::from_secs(5), || {
        let count = proxy.get("/v1_2/count").json();
        (count["completed"].as_u64().unwrap_or(0) >= SEEN && count["with_body"] == 1)
            .then_some(count)
    });
    let count = seen_by_1_2.unwrap_or_else(|| {
        panic!(
            "the 1.2 hook never saw {SEEN} requests and the sum's body: {:#}; log:\n{}",
            proxy.get("/v1_2/count").json(),
            proxy.log()
        )
    });
    assert_eq!(count["hook_bodies_capability"], true, "{count:#}");
    assert_eq!(count["body_bytes"], numbers.len(), "{count:#}");
    assert_eq!(count["last_path"], "/v1_2/sum", "{count:#}");
    assert_eq!(
        count["last_body"].as_str().map(str::as_bytes),
        Some(numbers.as_slice()),
        "{count:#}"
    );
    assert_eq!(
        (&count["ticks_sent"], &count["streams_finished"]),
        (&serde_json::json!(3), &serde_json::json!(1)),
        "{count:#}"
    );
    drop(proxy);

    // In bypass mode the 1.1 plugin sees Context::bypass_mode and calls no upstream.
    let sandbox = Sandbox::new();
    sandbox.install_frozen("hello_v1_1");
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            args: &["--bypass"],
            ..ProxyOptions::default()
        },
    );
    let hello = proxy.get_with("/v1_1/hello", &[("x-hello-fetch", "http://127.0.0.1:9/")]);
    assert_eq!(hello.status, 200, "{}", hello.text());
    let hello = hello.json();
    assert_eq!(
        (&hello["bypass"], &hello["fetched"]),
        (&Value::Bool(true), &Value::Null),
        "{hello:#}"
    );
}

/// The reason given for a library that exports the version symbol as data.
const DATA_VERSION_SYMBOL: &str = "exports ccproxy_plugin_api_version as data, not as the function the plugin API defines: rebuild it with the ccproxy-plugin-abi SDK (export_plugin!)";

#[test]
fn a_library_exporting_the_version_symbol_as_data_is_refused_not_called() {
    // Called as the function it should be, the symbol's bytes would be run as
    // code: the process died of SIGSEGV, and one such file on the plugin path
    // kept the proxy from starting.
    let sandbox = Sandbox::new();
    let bad = sandbox.install("test_plugin_data_version_symbol");
    sandbox.install("test_plugin_panicky");
    let file = "libtest_plugin_data_version_symbol.so";

    let checked = sandbox.run_cli(&["plugins", "check", &bad.display().to_string()], &[]);
    assert_eq!(checked.code, 1, "{checked:?}");
    assert_eq!(
        checked.stdout.trim_end(),
        format!("refused: {}: {DATA_VERSION_SYMBOL}", bad.display()),
        "{checked:?}"
    );

    let listed = sandbox.run_cli(&["plugins", "list", "--json"], &[]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let listed: Value = serde_json::from_str(&listed.stdout)
        .unwrap_or_else(|e| panic!("plugins list --json: {e}: {listed:?}"));
    let listed = listed["plugins"].as_array().expect("plugins is an array");
    let entry = find(listed, file);
    assert_eq!(
        (entry["status"].as_str(), entry["reason"].as_str()),
        (Some("refused"), Some(DATA_VERSION_SYMBOL)),
        "{entry:#}"
    );
    assert_eq!(find(listed, "libtest_plugin_panicky.so")["status"], "ok");

    let proxy = Proxy::start_in(sandbox, ProxyOptions::default());
    let health = proxy.get("/health");
    assert_eq!(health.status, 200, "{}", health.text());
    let ok = proxy.get("/panicky/ok");
    assert_eq!((ok.status, ok.text().as_str()), (200, "still fine"));
    let status = proxy.get("/plugins/status").json();
    let entry = find(
        status["plugins"].as_array().expect("plugins is an array"),
        file,
    );
    assert_eq!(
        (entry["status"].as_str(), entry["reason"].as_str()),
        (Some("refused"), Some(DATA_VERSION_SYMBOL)),
        "{entry:#}"
    );
    let log = proxy.log();
    assert!(
        log.lines()
            .any(|line| line.contains(file) && line.contains(DATA_VERSION_SYMBOL)),
        "no log line names {file} with its reason; log:\n{log}"
    );
}
