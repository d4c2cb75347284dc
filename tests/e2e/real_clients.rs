//! Today's real clients through the real proxy: the pinned Claude Code and Codex CLI
//! releases of `tests/clients` (installed by `scripts/deps/clients`), run
//! non-interactively with a private home each, against the mock upstream's scripted agent
//! (`POST /_mock/agent`, tests/mock_upstream/src/agent.rs).
//!
//! Claude Code on `/claude` (Anthropic to Anthropic) and on `/codex` (Anthropic to the
//! Codex backend's Responses); the Codex CLI on `/codex/v1` (Responses to the backend) and
//! on `/claude/v1` (Responses to Anthropic). Through `compat`'s configured upstreams
//! (tests/e2e/compat.rs): Claude Code on `/chatup` (Anthropic to a Chat Completions
//! server, also with real Chat servers' quirks) and the Codex CLI on `/anthup/v1`
//! (Responses to an Anthropic Messages server).
//! Each with a plain answer, and with a tool
//! loop: the agent asks for the client's shell tool running `echo TOKEN > proof.txt && cat
//! proof.txt`, the client really runs it, its next request carries the output, and the
//! agent's final text is what the client prints.

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ccproxy_e2e::{
    Proxy, ProxyOptions, Sandbox,
    mock::{CODEX_BACKEND_PATH, Mock, codex},
    workspace_root,
};
use serde_json::{Value, json};

/// The key the proxy's `claude_api` sends upstream.
const PROXY_API_KEY: &str = "sk-ant-proxy-real-clients";
/// The Claude subscription token of the OAuth login in the detection test.
const OAUTH_ACCESS_TOKEN: &str = "sk-ant-oat01-real-clients-0000";
/// How long one client run may take before it is killed (each takes about a second).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    ClaudeCode,
    CodexCli,
}

impl Client {
    fn binary(self) -> PathBuf {
        let name = match self {
            Client::ClaudeCode => "claude",
            Client::CodexCli => "codex",
        };
        let path = workspace_root()
            .join("tests/clients/node_modules/.bin")
            .join(name);
        let runs = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            runs,
            "{} is missing or does not run: install the pinned clients with scripts/deps/clients",
            path.display()
        );
        path
    }
}

/// Where a case sends its client, and so which provider and upstream format it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `claude_api`: Anthropic Messages at the mock's `/v1/messages`.
    Claude,
    /// `codex`: the Codex backend's Responses at the mock.
    Codex,
    /// `compat`'s `chatup`: Chat Completions at the mock's `/v1/chat/completions`.
    CompatChat,
    /// `compat`'s `anthup`: Anthropic Messages at the mock's `/v1/messages`.
    CompatAnthropic,
}

impl Route {
    fn upstream_path(self) -> &'static str {
        match self {
            Route::Claude | Route::CompatAnthropic => "/v1/messages",
            Route::Codex => CODEX_BACKEND_PATH,
            Route::CompatChat => "/v1/chat/completions",
        }
    }

    /// The mock and a proxy with this route's provider.
    fn start(self) -> (Mock, Proxy) {
        match self {
            Route::Claude | Route::Codex => start(),
            Route::CompatChat | Route::CompatAnthropic => start_compat(&[]),
        }
    }
}

/// The mock and a proxy with `claude_api` (API key) and `codex` (logged in) in front of
/// it, `env` added.
fn start_with(env: &[(&str, &str)]) -> (Mock, Proxy) {
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    codex::write_auth_json(
        &codex::auth_json_path(sandbox.root()),
        &codex::access_token(),
        codex::REFRESH_TOKEN,
    );
    let claude_base = mock.url();
    let codex_base = mock.codex_base_url();
    let mut all_env = vec![
        ("PLUGINS__CLAUDE_API__BASE_URL", claude_base.as_str()),
        ("ANTHROPIC_API_KEY", PROXY_API_KEY),
        ("PLUGINS__CODEX__BASE_URL", codex_base.as_str()),
    ];
    all_env.extend_from_slice(env);
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["claude_api", "codex", "oauth_codex"],
            env: &all_env,
            ..ProxyOptions::default()
        },
    );
    (mock, proxy)
}

fn start() -> (Mock, Proxy) {
    start_with(&[])
}

/// The mock (`mock_args` after `--quiet`) and a proxy with `compat`'s two upstreams (no
/// credentials) in front of it.
fn start_compat(mock_args: &[&str]) -> (Mock, Proxy) {
    let mock = Mock::start(&[&["--quiet"], mock_args].concat());
    let config = crate::compat::mock_config(&mock.url());
    let proxy = Proxy::start(ProxyOptions {
        bundled: &["compat"],
        config_toml: Some(&config),
        ..ProxyOptions::default()
    });
    (mock, proxy)
}

/// Arms the mock's scripted agent (`command` first, when given, then `answer`).
fn arm_agent(mock: &Mock, answer: &str, command: Option<&str>) {
    arm_agent_with(mock, &json!({"answer": answer, "command": command}));
}

/// Arms the mock's scripted agent with `script` (tests/mock_upstream/src/agent.rs).
fn arm_agent_with(mock: &Mock, script: &Value) {
    let body = script.to_string();
    let mut stream = TcpStream::connect(mock.address()).expect("the mock accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "POST /_mock/agent HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("the control request is sent");
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "arming the agent: {reply}"
    );
}

/// A fresh random-looking token, so a test can only pass by what this run did.
fn token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("tok{:x}{:x}", nanos, std::process::id())
}

/// What a client run left.
struct Run {
    stdout: String,
    stderr: String,
    /// The folder the client worked in.
    work: PathBuf,
    _home: tempfile::TempDir,
}

/// Runs `client` on `base_url` with a private home, killed after [`CLIENT_TIMEOUT`]; the
/// Codex CLI on `gpt-5-codex`.
fn run(client: Client, base_url: &str, prompt: &str) -> Run {
    run_with(client, base_url, prompt, Some("gpt-5-codex"))
}

/// [`run`], the Codex CLI on `codex_model` (its default model when `None`).
fn run_with(client: Client, base_url: &str, prompt: &str, codex_model: Option<&str>) -> Run {
    let home = tempfile::Builder::new()
        .prefix("ccproxy-client-")
        .tempdir()
        .expect("a temporary home");
    let work = home.path().join("work");
    fs::create_dir_all(&work).expect("the work folder");
    let mut command = Command::new(client.binary());
    command
        .current_dir(&work)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("SHELL", "/bin/bash")
        .env("TMPDIR", home.path())
        .env("XDG_CONFIG_HOME", home.path().join(".config"))
        .env("XDG_CACHE_HOME", home.path().join(".cache"))
        .env("XDG_DATA_HOME", home.path().join(".local/share"))
        .env("XDG_STATE_HOME", home.path().join(".local/state"));
    match client {
        Client::ClaudeCode => {
            command
                .env("CLAUDE_CONFIG_DIR", home.path().join(".claude"))
                .env("ANTHROPIC_BASE_URL", base_url)
                // The proxy holds the real credentials; the client's key stays with it.
                .env("ANTHROPIC_API_KEY", "sk-ant-client-placeholder")
                // No telemetry, update checks, error reports or other traffic: there is no
                // internet here, and a run must not wait for it.
                .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
                .env("DISABLE_AUTOUPDATER", "1")
                .env("DISABLE_TELEMETRY", "1")
                .env("DISABLE_ERROR_REPORTING", "1")
                .args(["-p", prompt, "--output-format", "json"])
                // Root may not skip permissions; allowing the Bash tool is enough.
                .args(["--allowedTools", "Bash"]);
        }
        Client::CodexCli => {
            let codex_home = home.path().join(".codex");
            fs::create_dir_all(&codex_home).expect("CODEX_HOME");
            let model =
                codex_model.map_or_else(String::new, |model| format!("model = \"{model}\"\n"));
            let config = format!(
                r#"{model}model_provider = "ccproxy"
check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.ccproxy]
name = "ccproxy"
base_url = "{base_url}"
wire_api = "responses"
env_key = "CCPROXY_CLIENT_KEY"
"#
            );
            fs::write(codex_home.join("config.toml"), config).expect("config.toml");
            command
                .env("CODEX_HOME", &codex_home)
                .env("CCPROXY_CLIENT_KEY", "client-placeholder")
                .args(["exec", "--skip-git-repo-check"])
                // Codex's own sandbox needs namespaces a container may not give; the test
                // folder is the sandbox here.
                .arg("--dangerously-bypass-approvals-and-sandbox")
                .arg(prompt);
        }
    }
    let stdout_path = home.path().join("client.stdout");
    let stderr_path = home.path().join("client.stderr");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {client:?}: {error}"));
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the client can be waited for") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    match status {
        None => panic!(
            "{client:?} on {base_url} did not finish within {} s (killed)\nstdout:\n{stdout}\nstderr:\n{stderr}",
            CLIENT_TIMEOUT.as_secs()
        ),
        Some(status) if !status.success() => {
            panic!(
                "{client:?} on {base_url} failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
            )
        }
        Some(_) => {}
    }
    Run {
        stdout,
        stderr,
        work,
        _home: home,
    }
}

/// The final text the client printed: Claude Code's JSON `result`, the Codex CLI's stdout.
fn printed_answer(client: Client, run: &Run) -> String {
    match client {
        Client::ClaudeCode => {
            let result: Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|error| {
                panic!(
                    "Claude Code printed no JSON result ({error}):\n{}\nstderr:\n{}",
                    run.stdout, run.stderr
                )
            });
            assert_eq!(
                result["is_error"], false,
                "Claude Code reports an error: {result}\nstderr:\n{}",
                run.stderr
            );
            result["result"].as_str().unwrap_or_default().to_owned()
        }
        Client::CodexCli => run.stdout.clone(),
    }
}

/// The tokens the client says the run used: Claude Code's `usage` (input and output),
/// the Codex CLI's `tokens used` line.
fn reported_tokens(client: Client, run: &Run) -> u64 {
    match client {
        Client::ClaudeCode => {
            let result: Value = serde_json::from_str(run.stdout.trim()).unwrap_or(Value::Null);
            let usage = &result["usage"];
            usage["input_tokens"].as_u64().unwrap_or_default()
                + usage["output_tokens"].as_u64().unwrap_or_default()
        }
        Client::CodexCli => run
            .stderr
            .lines()
            .skip_while(|line| line.trim() != "tokens used")
            .nth(1)
            .and_then(|count| count.trim().replace(',', "").parse().ok())
            .unwrap_or_else(|| panic!("the Codex CLI reports no tokens used:\n{}", run.stderr)),
    }
}

/// The usage of every agent answer (42 in, 7 out) reached the client through the
/// proxy's conversion, streams included.
fn assert_usage_reached(client: Client, route: Route, run: &Run, requests: &[Value]) {
    let expected = 49 * requests.len() as u64;
    assert_eq!(
        reported_tokens(client, run),
        expected,
        "{client:?} on {route:?}: the usage of {} upstream answers\nstdout:\n{}\nstderr:\n{}",
        requests.len(),
        run.stdout,
        run.stderr
    );
}

/// The tool results a recorded upstream request carries (any upstream format).
fn tool_results(request: &Value) -> Vec<String> {
    let body = &request["body"];
    let anthropic = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|message| message["content"].as_array())
        .flatten()
        .filter(|block| block["type"] == "tool_result")
        .map(|block| block["content"].to_string());
    let responses = body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "function_call_output")
        .map(|item| item["output"].to_string());
    let chat = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|message| message["role"] == "tool")
        .map(|message| message["content"].to_string());
    anthropic.chain(responses).chain(chat).collect()
}

/// The upstream requests of this run: all on the route's upstream, all answered 200 by
/// the agent, with the proxy's credentials.
fn upstream_requests(mock: &Mock, route: Route) -> Vec<Value> {
    let requests = mock.requests();
    assert!(!requests.is_empty(), "nothing reached the upstream");
    for request in &requests {
        assert_eq!(
            request["path"],
            route.upstream_path(),
            "{route:?}: {}",
            request["body_text"]
        );
        assert_eq!(
            request["response"]["status"], 200,
            "the upstream refused what the proxy sent: {}\nrequest: {:.3000}",
            request["response"]["body"], request["body_text"]
        );
        // The agent's answer, maybe changed by the mock's quirk modes ("agent+quirks:…").
        let source = request["response"]["sample"].as_str().unwrap_or_default();
        assert!(
            source.split('+').next() == Some("agent"),
            "answered by {source}"
        );
        let headers = &request["headers"];
        match route {
            Route::Claude => assert_eq!(headers["x-api-key"], PROXY_API_KEY, "{headers}"),
            Route::Codex => assert_eq!(
                headers["authorization"],
                format!("Bearer {}", codex::access_token()),
                "{headers}"
            ),
            // No credential configured, and the client's own is never forwarded.
            Route::CompatChat | Route::CompatAnthropic => {
                assert!(!headers.to_string().contains("placeholder"), "{headers}")
            }
        }
    }
    requests
}

/// A Codex CLI client reaches the backend as itself: its version (0.171 says it only in
/// its user agent) and its session (`session-id` now) are what the backend sees.
fn assert_codex_cli_identity(run: &Run, requests: &[Value]) {
    let session = run
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix("session id: "))
        .unwrap_or_else(|| panic!("the Codex CLI names no session:\n{}", run.stderr))
        .trim();
    for request in requests {
        let headers = &request["headers"];
        assert_eq!(headers["version"], "0.171.0", "{headers}");
        assert!(
            headers["user-agent"]
                .as_str()
                .is_some_and(|agent| agent.starts_with("codex_cli_rs/0.171.0 (")),
            "{headers}"
        );
        assert_eq!(headers["session_id"], session, "{headers}");
        assert_eq!(request["body"]["prompt_cache_key"], session);
    }
}

fn base_url(proxy: &Proxy, client: Client, route: Route) -> String {
    let prefix = match route {
        Route::Claude => "/claude",
        Route::Codex => "/codex",
        Route::CompatChat => "/chatup",
        Route::CompatAnthropic => "/anthup",
    };
    match client {
        // Claude Code appends /v1/messages itself.
        Client::ClaudeCode => format!("{}{prefix}", proxy.base_url()),
        // The Codex CLI appends /responses to its provider's base_url.
        Client::CodexCli => format!("{}{prefix}/v1", proxy.base_url()),
    }
}

fn plain_answer(client: Client, route: Route) {
    let (mock, proxy) = route.start();
    let answer = format!("PLAIN-{}", token());
    arm_agent(&mock, &answer, None);
    let run = run(client, &base_url(&proxy, client, route), "Say hello.");
    let printed = printed_answer(client, &run);
    assert!(
        printed.contains(&answer),
        "{client:?} on {route:?} printed {printed:?}, not {answer:?}\nstderr:\n{}",
        run.stderr
    );
    let requests = upstream_requests(&mock, route);
    assert!(
        requests
            .iter()
            .all(|request| tool_results(request).is_empty())
    );
    if (client, route) == (Client::CodexCli, Route::Codex) {
        assert_codex_cli_identity(&run, &requests);
    }
    assert_usage_reached(client, route, &run, &requests);
    assert!(
        requests.iter().any(|request| request["body_text"]
            .as_str()
            .unwrap_or_default()
            .contains("Say hello.")),
        "the prompt reached the upstream"
    );
}

fn tool_loop(client: Client, route: Route) {
    tool_loop_on(client, route, route.start());
}

/// [`tool_loop`] on a mock and proxy already started for `route`; the upstream requests.
fn tool_loop_on(client: Client, route: Route, started: (Mock, Proxy)) -> Vec<Value> {
    tool_loop_with(client, route, started, Some("gpt-5-codex"))
}

/// [`tool_loop_on`], the Codex CLI on `codex_model` (its default model when `None`).
fn tool_loop_with(
    client: Client,
    route: Route,
    (mock, proxy): (Mock, Proxy),
    codex_model: Option<&str>,
) -> Vec<Value> {
    let token = token();
    let answer = format!("FINAL-{token}");
    let command = format!("echo {token} > proof.txt && cat proof.txt");
    arm_agent(&mock, &answer, Some(&command));
    let run = run_with(
        client,
        &base_url(&proxy, client, route),
        "Write the proof file.",
        codex_model,
    );

    // The client really ran its shell tool...
    let proof = fs::read_to_string(run.work.join("proof.txt")).unwrap_or_else(|error| {
        panic!(
            "{client:?} on {route:?} did not run the tool ({error})\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    });
    assert_eq!(proof.trim(), token);
    // ...sent its output back in the next request...
    let requests = upstream_requests(&mock, route);
    assert!(requests.len() >= 2, "a tool loop takes two requests");
    assert!(
        tool_results(&requests[0]).is_empty(),
        "the first request has no tool result yet"
    );
    let last = requests.last().expect("a last request");
    let results = tool_results(last);
    assert!(
        results.iter().any(|result| result.contains(&token)),
        "the last request carries the tool's output: {results:?}"
    );
    // ...with the model's reasoning of the first answer (the agent signs and encrypts
    // it as the APIs do), so the upstream can carry on where it stopped (Chat
    // Completions has no reasoning to send back)...
    let reasoning = match route {
        Route::Claude | Route::CompatAnthropic => Some("mock-signature-0"),
        Route::Codex => Some("mock-encrypted-reasoning-0"),
        Route::CompatChat => None,
    };
    if let Some(reasoning) = reasoning {
        assert!(
            last["body_text"]
                .as_str()
                .unwrap_or_default()
                .contains(reasoning),
            "{client:?} on {route:?}: the reasoning {reasoning} did not come back: {:.4000}",
            last["body_text"]
        );
    }
    // ...and printed the agent's final answer, with the usage of both.
    assert_usage_reached(client, route, &run, &requests);
    let printed = printed_answer(client, &run);
    assert!(
        printed.contains(&answer),
        "{client:?} on {route:?} printed {printed:?}, not {answer:?}\nstderr:\n{}",
        run.stderr
    );
    requests
}

#[test]
fn claude_code_on_claude_answers() {
    plain_answer(Client::ClaudeCode, Route::Claude);
}

#[test]
fn claude_code_on_claude_runs_its_tool() {
    tool_loop(Client::ClaudeCode, Route::Claude);
}

#[test]
fn claude_code_on_codex_answers() {
    plain_answer(Client::ClaudeCode, Route::Codex);
}

#[test]
fn claude_code_on_codex_runs_its_tool() {
    tool_loop(Client::ClaudeCode, Route::Codex);
}

#[test]
fn codex_cli_on_codex_answers() {
    plain_answer(Client::CodexCli, Route::Codex);
}

#[test]
fn codex_cli_on_codex_runs_its_tool() {
    tool_loop(Client::CodexCli, Route::Codex);
}

/// With its default model the Codex CLI sends other shapes (its tools as an
/// `additional_tools` input item, another prompt); a plain answer still comes through.
fn default_model_answers(route: Route) {
    let (mock, proxy) = start();
    let answer = format!("PLAIN-{}", token());
    arm_agent(&mock, &answer, None);
    let base = base_url(&proxy, Client::CodexCli, route);
    let run = run_with(Client::CodexCli, &base, "Say hello.", None);
    let printed = printed_answer(Client::CodexCli, &run);
    assert!(
        printed.contains(&answer),
        "{route:?}: printed {printed:?}, not {answer:?}\nstderr:\n{}",
        run.stderr
    );
    let requests = upstream_requests(&mock, route);
    assert!(
        requests[0]["body_text"]
            .as_str()
            .unwrap_or_default()
            .contains("You are Codex"),
        "its prompt reached the upstream"
    );
}

#[test]
fn codex_cli_with_its_default_model_on_claude_answers() {
    default_model_answers(Route::Claude);
}

#[test]
fn codex_cli_with_its_default_model_on_codex_answers() {
    default_model_answers(Route::Codex);
}

/// With its default model the Codex CLI declares its tools in an `additional_tools` input
/// item: namespaces of function tools, and the free-form `exec` (JavaScript that calls its
/// nested tools, `exec_command` among them). On an Anthropic upstream `exec` becomes a tool
/// taking `{"input": string}` and namespaced tools get flat names; the agent's `tool_use`
/// of `exec` must reach the Codex CLI as a `custom_tool_call` it runs, and its
/// `custom_tool_call_output` must come back as the `tool_result`.
#[test]
fn codex_cli_with_its_default_model_on_claude_runs_its_tool() {
    let requests = tool_loop_with(Client::CodexCli, Route::Claude, start(), None);
    let first = &requests[0]["body"];
    let tools: Vec<&Value> = first["tools"].as_array().into_iter().flatten().collect();
    let named = |name: &str| tools.iter().find(|tool| tool["name"] == name).copied();
    let exec = named("exec").unwrap_or_else(|| panic!("no exec tool upstream: {tools:?}"));
    assert_eq!(
        exec["input_schema"]["properties"]["input"]["type"], "string",
        "{exec}"
    );
    assert!(
        exec["description"]
            .as_str()
            .is_some_and(|text| text.contains("lark grammar")),
        "the grammar is named: {exec}"
    );
    assert!(
        named("collaboration__spawn_agent").is_some(),
        "namespaced tools get flat names: {:?}",
        tools.iter().map(|tool| &tool["name"]).collect::<Vec<_>>()
    );
    // The history carries the call as the upstream made it, the raw input wrapped again.
    let last = &requests.last().expect("a last request")["body"];
    let call = last["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|message| message["content"].as_array())
        .flatten()
        .find(|block| block["type"] == "tool_use")
        .unwrap_or_else(|| panic!("the call is in the history: {last}"));
    assert_eq!(call["name"], "exec");
    assert!(
        call["input"]["input"]
            .as_str()
            .is_some_and(|script| script.contains("tools.exec_command")),
        "{call}"
    );
}

/// A namespaced tool of the Codex CLI's default model (`clock.sleep`) reaches Claude as
/// `clock__sleep`; Claude's call of it must come back as a `function_call` named `sleep`
/// in the `clock` namespace, which the Codex CLI runs and answers.
#[test]
fn codex_cli_with_its_default_model_on_claude_runs_a_namespaced_tool() {
    let (mock, proxy) = start();
    let answer = format!("SLEPT-{}", token());
    arm_agent_with(
        &mock,
        &json!({"answer": answer, "tool": {"name": "clock__sleep", "input": {"duration_ms": 20}}}),
    );
    let base = base_url(&proxy, Client::CodexCli, Route::Claude);
    let run = run_with(Client::CodexCli, &base, "Wait a moment.", None);
    let requests = upstream_requests(&mock, Route::Claude);
    assert!(requests.len() >= 2, "the call was answered: {}", run.stderr);
    let last = &requests.last().expect("a last request")["body"];
    let results: Vec<&Value> = last["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|message| message["content"].as_array())
        .flatten()
        .filter(|block| block["type"] == "tool_result")
        .collect();
    let result = results
        .iter()
        .find(|block| block["tool_use_id"] == "toolu_mock_agent_0")
        .unwrap_or_else(|| panic!("the sleep call has its result: {last:.3000}"));
    let text = result["content"].to_string().to_lowercase();
    // Codex CLI 0.171 answers "Wall time: … seconds\nSleep completed."
    assert!(
        text.contains("sleep completed") && !text.contains("unsupported"),
        "the Codex CLI ran clock.sleep: {result}"
    );
    let printed = printed_answer(Client::CodexCli, &run);
    assert!(
        printed.contains(&answer),
        "printed {printed:?}\nstderr:\n{}",
        run.stderr
    );
}

/// [`codex_cli_with_its_default_model_on_claude_runs_its_tool`] through `compat`: on a
/// Chat Completions server and on an Anthropic Messages server.
#[test]
fn codex_cli_with_its_default_model_on_compat_upstreams_runs_its_tool() {
    for route in [Route::CompatChat, Route::CompatAnthropic] {
        let requests = tool_loop_with(Client::CodexCli, route, route.start(), None);
        let first = requests[0]["body"].to_string();
        assert!(
            first.contains("\"collaboration__spawn_agent\""),
            "{route:?}: namespaced tools get flat names: {first:.2000}"
        );
    }
}

#[test]
fn claude_code_on_a_chat_completions_upstream_answers() {
    plain_answer(Client::ClaudeCode, Route::CompatChat);
}

#[test]
fn claude_code_on_a_chat_completions_upstream_runs_its_tool() {
    tool_loop(Client::ClaudeCode, Route::CompatChat);
}

/// The same loop against a Chat server with the quirks of real ones at once (the mock's
/// modes, tests/mock_upstream/src/quirks.rs): tool-call deltas without `index` (Gemini),
/// reasoning in `reasoning_content` (vLLM, DeepSeek), chunks with empty or null
/// `choices` (Azure), usage only when asked, and no `[DONE]`.
#[test]
fn claude_code_on_a_quirky_chat_completions_upstream_runs_its_tool() {
    let quirks = [
        "no_tool_index",
        "reasoning_content",
        "empty_choices",
        "no_usage_unless_asked",
        "no_done",
    ];
    let args: Vec<&str> = quirks.iter().flat_map(|quirk| ["--quirk", quirk]).collect();
    let requests = tool_loop_on(Client::ClaudeCode, Route::CompatChat, start_compat(&args));
    for request in &requests {
        let source = request["response"]["sample"].as_str().unwrap_or_default();
        for quirk in quirks {
            assert!(source.contains(quirk), "{quirk} not applied: {source}");
        }
    }
}

#[test]
fn codex_cli_on_an_anthropic_upstream_answers() {
    plain_answer(Client::CodexCli, Route::CompatAnthropic);
}

#[test]
fn codex_cli_on_an_anthropic_upstream_runs_its_tool() {
    tool_loop(Client::CodexCli, Route::CompatAnthropic);
}

#[test]
fn codex_cli_on_claude_answers() {
    plain_answer(Client::CodexCli, Route::Claude);
}

#[test]
fn codex_cli_on_claude_runs_its_tool() {
    tool_loop(Client::CodexCli, Route::Claude);
}

/// `claude_api` learns the installed Claude CLI's identity headers by running it once
/// against its capture point, caches them per version, says so in its health, and sends
/// them in OAuth mode for a client that is not Claude Code.
#[test]
fn claude_api_detects_the_installed_claude_cli() {
    let claude = Client::ClaudeCode.binary();
    let mock = Mock::start(&["--quiet"]);
    let sandbox = Sandbox::new();
    let credentials = sandbox.root().join("claude-credentials.json");
    let expires_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
        + 3_600_000;
    let login = json!({"claudeAiOauth": {
        "accessToken": OAUTH_ACCESS_TOKEN, "refreshToken": "sk-ant-ort01-real-clients",
        "expiresAt": expires_ms, "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }});
    fs::write(&credentials, login.to_string()).expect("the credentials file");
    ccproxy_e2e::set_mode(&credentials, 0o600);
    let base = mock.url();
    let token_url = format!("{base}/v1/oauth/token");
    let profile_url = format!("{base}/api/oauth/profile");
    let credentials_file = credentials.display().to_string();
    let cli_path = claude.display().to_string();
    let proxy = Proxy::start_in(
        sandbox,
        ProxyOptions {
            bundled: &["claude_api", "oauth_claude"],
            env: &[
                ("PLUGINS__CLAUDE_API__BASE_URL", &base),
                ("PLUGINS__CLAUDE_API__AUTH_MODE", "oauth"),
                ("PLUGINS__CLAUDE_API__CLI_PATH", &cli_path),
                ("PLUGINS__OAUTH_CLAUDE__TOKEN_URL", &token_url),
                ("PLUGINS__OAUTH_CLAUDE__PROFILE_URL", &profile_url),
                ("PLUGINS__OAUTH_CLAUDE__CREDENTIALS_FILE", &credentials_file),
            ],
            ..ProxyOptions::default()
        },
    );
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let identity = loop {
        let health = proxy.get("/plugins/claude_api/health").json();
        let identity = health["details"]["claude_cli_identity"].clone();
        if identity["source"] == "detected" {
            break identity;
        }
        assert!(
            Instant::now() < deadline,
            "no Claude CLI detected within {} s: {health}\nproxy log:\n{}",
            CLIENT_TIMEOUT.as_secs(),
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(identity["cli_version"], "2.1.332", "{identity}");
    assert_eq!(
        identity["user_agent"], "claude-cli/2.1.332 (external, sdk-cli)",
        "{identity}"
    );
    // Cached under the user's cache folder, private, without credentials.
    let cache = proxy.sandbox().root().join("cache/ccproxy");
    let file = cache.join("claude_headers_2.1.332.json");
    let text = fs::read_to_string(&file)
        .unwrap_or_else(|error| panic!("{} was not written: {error}", file.display()));
    assert_eq!(ccproxy_e2e::mode(&cache), 0o700);
    assert_eq!(ccproxy_e2e::mode(&file), 0o600);
    assert!(text.contains("x-app"), "{text}");
    for secret in ["sk-ant", "authorization", "x-api-key"] {
        assert!(!text.contains(secret), "{secret} in the cache: {text}");
    }
    // The capture point took the CLI's request: nothing reached the upstream.
    assert!(mock.requests_to("/v1/messages").is_empty());

    // A client that is not Claude Code goes out as the detected Claude CLI.
    arm_agent(&mock, "hello", None);
    let reply = proxy.post_json(
        "/claude/v1/chat/completions",
        &json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = mock.requests_to("/v1/messages");
    let headers = &sent[0]["headers"];
    assert_eq!(
        headers["authorization"],
        format!("Bearer {OAUTH_ACCESS_TOKEN}")
    );
    assert_eq!(
        headers["user-agent"], "claude-cli/2.1.332 (external, sdk-cli)",
        "{headers}"
    );
    assert_eq!(headers["x-app"], "cli", "{headers}");
    assert_ne!(
        headers["x-stainless-package-version"], "0.60.0",
        "not the bundled claude-cli 1.0.113 set: {headers}"
    );
}

/// `codex` identifies as the installed Codex CLI's version (not a fixed old one) for
/// clients that bring none, once `codex --version` has told it.
#[test]
fn codex_identifies_as_the_installed_codex_cli() {
    let codex_cli = Client::CodexCli.binary().display().to_string();
    let (mock, proxy) = start_with(&[("PLUGINS__CODEX__CLI_PATH", &codex_cli)]);
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        let health = proxy.get("/plugins/codex/health").json();
        let identity = &health["details"]["codex_cli_identity"];
        if identity["source"] == "detected" && identity["instructions"] == "detected" {
            assert_eq!(identity["version"], "0.171.0", "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Codex CLI detected: {health}\nproxy log:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    arm_agent(&mock, "hello", None);
    let reply = proxy.post_json(
        "/codex/v1/chat/completions",
        &json!({"model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let requests = upstream_requests(&mock, Route::Codex);
    let headers = &requests[0]["headers"];
    assert_eq!(headers["version"], "0.171.0", "{headers}");
    // The prompt is the installed CLI's (captured once, cached per version), not the
    // shipped 0.34.0 one.
    let cache = proxy.sandbox().root().join("cache/ccproxy");
    let cached: Value = serde_json::from_str(
        &fs::read_to_string(cache.join("codex_headers_0.171.0.json"))
            .expect("the Codex CLI's prompt is cached"),
    )
    .expect("the cache is JSON");
    assert_eq!(
        ccproxy_e2e::mode(&cache.join("codex_headers_0.171.0.json")),
        0o600
    );
    let prompt = cached["instructions"].as_str().unwrap_or_default();
    // Its default model's prompt ("You are Codex, an agent based on …").
    assert!(prompt.starts_with("You are Codex"), "{prompt:.200}");
    let shipped =
        fs::read_to_string(workspace_root().join("plugins/codex/data/codex_cli_instructions.txt"))
            .expect("the shipped prompt");
    assert_ne!(
        prompt.trim(),
        shipped.trim(),
        "0.171's prompt is not 0.34's"
    );
    let instructions = requests[0]["body"]["instructions"]
        .as_str()
        .unwrap_or_default();
    assert!(
        instructions.starts_with(prompt.trim_end()),
        "{instructions:.300}"
    );
    assert!(
        headers["user-agent"]
            .as_str()
            .is_some_and(|agent| agent.starts_with("codex_cli_rs/0.171.0 (")),
        "{headers}"
    );
}
