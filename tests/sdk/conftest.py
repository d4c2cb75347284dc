"""Fixtures of the SDK suite: the mock upstream and the real proxy as processes.

One mock upstream (``ccproxy-mock-upstream``) serves the whole session; it
checks every upstream request (the API key ``test-key`` as ``x-api-key``, an
``anthropic-version``, and no ``authorization`` header: a client credential
must never reach the upstream). Two proxies (``ccproxy serve``) point at it,
each in its own scratch XDG folders with a cleared environment: ``proxy``
without client authentication and ``guarded_proxy`` with ``--auth-token``.
Both read their address from the ``listening on http://…`` log line.

The Codex suite has its own pair: ``codex_mock`` plays the ChatGPT plan's
Codex backend (``/backend-api/codex/responses``, which refuses what the real
backend refuses and here also insists on the test login's bearer token and
ChatGPT account), and ``codex_proxy`` runs only the ``codex`` and
``oauth_codex`` plugins, logged in through a Codex CLI ``~/.codex/auth.json``
holding a JWT-shaped access token.

The claude_sdk suite has its own too: ``claude_sdk_mock`` plays the Anthropic
API for the real Claude Code CLI (the pinned release of ``tests/clients``,
installed by ``scripts/deps/clients``) through its scripted agent, and
``start_claude_sdk_proxy`` runs only the ``claude_sdk`` plugin with a
``[plugins.claude_sdk]`` section of the test's choosing; the CLI inherits the
proxy's environment, which points it at the mock.

Nothing is built here: the binaries and plugin libraries come from the last
``cargo build --workspace``; when one is missing the session stops and says so.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data" / "samples"
API_KEY = "test-key"
AUTH_TOKEN = "sdk-suite-token"
STARTUP_SECONDS = 20
CODEX_ACCOUNT = "acct_test"
CODEX_BACKEND = "/backend-api/codex/responses"
LISTENING = re.compile(rb"listening on http://(\S+)")


def target_dir() -> Path:
    configured = os.environ.get("CARGO_TARGET_DIR")
    return ROOT / configured if configured else ROOT / "target"


def built(name: str) -> Path:
    path = target_dir() / "debug" / name
    if not path.is_file():
        pytest.exit(
            f"{path} is missing; run `cargo build --workspace` first "
            "(the SDK suite never builds anything)",
            returncode=3,
        )
    return path


def sample(name: str) -> dict[str, Any]:
    """A recorded exchange of tests/data/samples."""
    return json.loads((SAMPLES / f"{name}.json").read_text())


def http_json(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Process:
    """A child process whose output goes to a log file; stopped at exit at the
    latest, whatever happened to the fixture that started it."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.log_path = log
        self._log = open(log, "wb")
        self.popen = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        atexit.register(self.stop)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def address(self) -> str:
        """Waits for the `listening on http://ADDRESS` line."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_path.read_bytes())
            if found:
                return found.group(1).decode()
            if self.popen.poll() is not None:
                pytest.exit(
                    f"{self.popen.args[0]} exited ({self.popen.returncode}) before "
                    f"listening; its log:\n{self.log()}",
                    returncode=3,
                )
            time.sleep(0.02)
        self.stop()
        pytest.exit(
            f"{self.popen.args[0]} printed no `listening on` line within "
            f"{STARTUP_SECONDS} s; its log:\n{self.log()}",
            returncode=3,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


@dataclass
class Mock:
    """The mock upstream and its control API (see tests/mock_upstream)."""

    url: str
    process: Process

    def requests(self) -> list[dict[str, Any]]:
        return http_json("GET", f"{self.url}/_mock/requests")

    def upstream_requests(self, path: str = "/v1/messages") -> list[dict[str, Any]]:
        return [r for r in self.requests() if r["path"] == path]

    def reset(self) -> None:
        http_json("POST", f"{self.url}/_mock/reset", {})

    def fault(self, **fault: Any) -> None:
        http_json("POST", f"{self.url}/_mock/fault", fault)

    def streams(self) -> dict[str, int]:
        return http_json("GET", f"{self.url}/_mock/cancelled")

    def arm_agent(self, answer: str) -> None:
        """The scripted agent answers every model request with `answer`
        (tests/mock_upstream/src/agent.rs); `reset` disarms it."""
        http_json("POST", f"{self.url}/_mock/agent", {"answer": answer})


@dataclass
class Proxy:
    """A running `ccproxy serve`."""

    url: str
    process: Process

    def assert_alive(self) -> None:
        assert self.process.alive(), f"the proxy exited; its log:\n{self.process.log()}"


@pytest.fixture(scope="session")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Mock:
    binary = built("ccproxy-mock-upstream")
    scratch = tmp_path_factory.mktemp("mock")
    args = [
        str(binary),
        "--samples",
        str(SAMPLES),
        "--expect-header",
        f"x-api-key={API_KEY}",
        # Present; its value is the client's when it sends one (the SDK does).
        "--expect-header",
        "anthropic-version",
        "--forbid-header",
        "authorization",
        # A session that dies leaves no server behind.
        "--idle-exit-seconds",
        "300",
    ]
    process = Process(args, {"PATH": os.environ.get("PATH", "")}, scratch, scratch / "mock.log")
    mock = Mock(url=f"http://{process.address()}", process=process)
    yield mock
    process.stop()


def start_proxy(
    mock: Mock,
    scratch: Path,
    extra: list[str],
    token: str | None = None,
    env: dict[str, str] | None = None,
    plugins: tuple[str, ...] = ("claude_api",),
) -> Proxy:
    """A proxy in `scratch` (its HOME is `scratch/home`); `env` replaces the
    Claude settings, and every plugin of `plugins` must be active."""
    binary = built("ccproxy")
    for plugin in plugins:
        built(f"libccproxy_plugin_{plugin}.so")
    for folder in ("cfg", "data", "home"):
        (scratch / folder).mkdir(exist_ok=True)
    # A cleared environment: no developer config, no stray PLUGINS__* or keys.
    settings = (
        {"PLUGINS__CLAUDE_API__BASE_URL": mock.url, "ANTHROPIC_API_KEY": API_KEY}
        if env is None
        else env
    )
    process_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(scratch / "home"),
        "XDG_CONFIG_HOME": str(scratch / "cfg"),
        "XDG_DATA_HOME": str(scratch / "data"),
        "RUST_BACKTRACE": "0",
        **settings,
    }
    args = [str(binary), "serve", "--port", "0", "--disable-plugin", "access_log", *extra]
    process = Process(args, process_env, scratch, scratch / "proxy.log")
    try:
        proxy = Proxy(url=f"http://{process.address()}", process=process)
        status = http_json("GET", f"{proxy.url}/plugins/status", token=token)
    except BaseException:
        process.stop()
        raise
    active = {p["name"]: p.get("status") for p in status.get("plugins", [])}
    inactive = [plugin for plugin in plugins if active.get(plugin) != "active"]
    if inactive:
        process.stop()
        pytest.exit(
            f"plugins {inactive} are not active ({active}); the proxy's log:\n{process.log()}",
            returncode=3,
        )
    return proxy


@pytest.fixture(scope="session")
def proxy(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    proxy = start_proxy(mock, tmp_path_factory.mktemp("proxy"), [])
    yield proxy
    proxy.process.stop()


@pytest.fixture(scope="session")
def guarded_proxy(mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    """A proxy that requires `AUTH_TOKEN` from clients (`--auth-token`)."""
    proxy = start_proxy(
        mock, tmp_path_factory.mktemp("guarded"), ["--auth-token", AUTH_TOKEN], token=AUTH_TOKEN
    )
    yield proxy
    proxy.process.stop()


@pytest.fixture(autouse=True)
def clean_mock(mock: Mock) -> None:
    """Every test starts with no recorded request and no armed fault."""
    mock.reset()


@pytest.fixture
def claude(proxy: Proxy) -> anthropic.Anthropic:
    """The Anthropic SDK on `/claude`, with a key the proxy must not forward."""
    client = anthropic.Anthropic(
        base_url=f"{proxy.url}/claude", api_key="client-key", max_retries=0, timeout=15
    )
    yield client
    client.close()


@pytest.fixture
def chat(proxy: Proxy) -> openai.OpenAI:
    """The OpenAI SDK on `/claude/v1`, with a key the proxy must not forward."""
    client = openai.OpenAI(
        base_url=f"{proxy.url}/claude/v1", api_key="client-key", max_retries=0, timeout=15
    )
    yield client
    client.close()


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(payload: dict[str, Any], signature: str) -> str:
    """A JWT-shaped token (nobody checks the signature)."""
    header = {"alg": "RS256", "typ": "JWT"}
    return ".".join(
        base64url(part.encode())
        for part in (json.dumps(header), json.dumps(payload), signature)
    )


#: The test login's ChatGPT access token: expires in 2100, for CODEX_ACCOUNT.
CODEX_TOKEN = jwt(
    {
        "iss": "https://auth.openai.com",
        "exp": 4_102_444_800,
        "https://api.openai.com/auth": {
            "chatgpt_account_id": CODEX_ACCOUNT,
            "chatgpt_plan_type": "plus",
        },
    },
    "sdk-suite-signature",
)


@pytest.fixture(scope="session")
def codex_mock(tmp_path_factory: pytest.TempPathFactory) -> Mock:
    """The Codex backend: the test login's headers, never an API key."""
    binary = built("ccproxy-mock-upstream")
    scratch = tmp_path_factory.mktemp("codex-mock")
    args = [
        str(binary),
        "--samples",
        str(SAMPLES),
        "--expect-header",
        f"authorization=Bearer {CODEX_TOKEN}",
        "--expect-header",
        f"chatgpt-account-id={CODEX_ACCOUNT}",
        "--expect-header",
        "openai-beta=responses=experimental",
        "--expect-header",
        "originator=codex_cli_rs",
        "--forbid-header",
        "x-api-key",
        "--idle-exit-seconds",
        "300",
    ]
    process = Process(args, {"PATH": os.environ.get("PATH", "")}, scratch, scratch / "mock.log")
    mock = Mock(url=f"http://{process.address()}", process=process)
    yield mock
    process.stop()


@pytest.fixture(scope="session")
def codex_proxy(codex_mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    """A proxy with only `codex` and `oauth_codex`, logged in as the Codex CLI
    would be (`~/.codex/auth.json`, mode 0600)."""
    scratch = tmp_path_factory.mktemp("codex-proxy")
    auth = scratch / "home" / ".codex" / "auth.json"
    auth.parent.mkdir(parents=True, mode=0o700)
    auth.write_text(
        json.dumps(
            {
                "OPENAI_API_KEY": None,
                "tokens": {
                    "id_token": "",
                    "access_token": CODEX_TOKEN,
                    "refresh_token": "rt_sdk-suite",
                    "account_id": None,  # the account comes from the token's claim
                },
                "last_refresh": "2026-01-01T00:00:00.000000Z",
            }
        )
    )
    auth.chmod(0o600)
    extra = ["--disable-plugin", "claude_api", "--disable-plugin", "oauth_claude"]
    env = {"PLUGINS__CODEX__BASE_URL": f"{codex_mock.url}/backend-api/codex"}
    proxy = start_proxy(codex_mock, scratch, extra, env=env, plugins=("codex", "oauth_codex"))
    yield proxy
    proxy.process.stop()


@pytest.fixture
def codex_openai(codex_proxy: Proxy, codex_mock: Mock) -> openai.OpenAI:
    """The OpenAI SDK on `/codex/v1`, with a key the proxy must not forward;
    the Codex backend starts with no recorded request."""
    codex_mock.reset()
    client = openai.OpenAI(
        base_url=f"{codex_proxy.url}/codex/v1", api_key="client-key", max_retries=0, timeout=15
    )
    yield client
    client.close()


@pytest.fixture
def codex_claude(codex_proxy: Proxy, codex_mock: Mock) -> anthropic.Anthropic:
    """The Anthropic SDK on `/codex` (Claude Code's `ANTHROPIC_BASE_URL`),
    with a key the proxy must not forward."""
    codex_mock.reset()
    client = anthropic.Anthropic(
        base_url=f"{codex_proxy.url}/codex", api_key="client-key", max_retries=0, timeout=15
    )
    yield client
    client.close()


#: The pinned Claude Code CLI (`scripts/deps/clients` installs it).
CLAUDE_CODE = ROOT / "tests" / "clients" / "node_modules" / ".bin" / "claude"
#: The stand-in CLI of the claude_sdk failure cases (FAKE_CLAUDE_MODE picks one).
FAKE_CLAUDE = ROOT / "tests" / "data" / "claude_sdk" / "fake_claude.sh"
#: The key the real CLI sends to `claude_sdk_mock` (proof that the CLI sent a request).
CLAUDE_SDK_CLI_KEY = "sk-ant-claude-sdk-suite"


def claude_code_cli() -> Path:
    """The pinned Claude Code CLI; fails the test, naming the install script,
    when it is missing or does not run."""
    try:
        runs = subprocess.run(
            [str(CLAUDE_CODE), "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        ).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        runs = False
    if not runs:
        pytest.fail(
            f"{CLAUDE_CODE} is missing or does not run: install the pinned clients "
            "with scripts/deps/clients",
            pytrace=False,
        )
    return CLAUDE_CODE


@pytest.fixture(scope="session")
def claude_sdk_mock(tmp_path_factory: pytest.TempPathFactory) -> Mock:
    """The Anthropic API for the real Claude Code CLI (its scripted agent)."""
    binary = built("ccproxy-mock-upstream")
    scratch = tmp_path_factory.mktemp("claude-sdk-mock")
    args = [str(binary), "--samples", str(SAMPLES), "--idle-exit-seconds", "300"]
    process = Process(args, {"PATH": os.environ.get("PATH", "")}, scratch, scratch / "mock.log")
    mock = Mock(url=f"http://{process.address()}", process=process)
    yield mock
    process.stop()


def toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


def start_claude_sdk_proxy(
    mock: Mock,
    scratch: Path,
    cli: Path | str,
    cli_env: dict[str, str] | None = None,
    section: str = "",
) -> Proxy:
    """A proxy running only `claude_sdk` with `cli` as its CLI, `cli_env` in
    `[plugins.claude_sdk.env]` and `section` (TOML lines) in
    `[plugins.claude_sdk]`. The CLI inherits the proxy's environment, which
    points Claude Code at `mock` with its own key and no outside traffic."""
    config = scratch / "cfg" / "ccproxy" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    env_lines = "\n".join(
        f"{name} = {toml_string(value)}" for name, value in (cli_env or {}).items()
    )
    config.write_text(
        f"[plugins.claude_sdk]\ncli_path = {toml_string(str(cli))}\n{section}\n\n"
        f"[plugins.claude_sdk.env]\n{env_lines}\n"
    )
    env = {
        "ANTHROPIC_BASE_URL": mock.url,
        "ANTHROPIC_API_KEY": CLAUDE_SDK_CLI_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    extra = ["--disable-plugin", "claude_api", "--disable-plugin", "oauth_claude"]
    return start_proxy(mock, scratch, extra, env=env, plugins=("claude_sdk",))
