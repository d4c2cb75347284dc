"""Fixtures of the SDK suite: the mock upstream and the real proxy as processes.

One mock upstream (``ccproxy-mock-upstream``) serves the whole session; it
checks every upstream request (the API key ``test-key`` as ``x-api-key``, an
``anthropic-version``, and no ``authorization`` header: a client credential
must never reach the upstream). Two proxies (``ccproxy serve``) point at it,
each in its own scratch XDG folders with a cleared environment: ``proxy``
without client authentication and ``guarded_proxy`` with ``--auth-token``.
Both read their address from the ``listening on http://…`` log line.

Nothing is built here: the binaries and plugin libraries come from the last
``cargo build --workspace``; when one is missing the session stops and says so.
"""

from __future__ import annotations

import atexit
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


def start_proxy(mock: Mock, scratch: Path, extra: list[str], token: str | None = None) -> Proxy:
    binary = built("ccproxy")
    built("libccproxy_plugin_claude_api.so")
    for folder in ("cfg", "data", "home"):
        (scratch / folder).mkdir()
    # A cleared environment: no developer config, no stray PLUGINS__* or keys.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(scratch / "home"),
        "XDG_CONFIG_HOME": str(scratch / "cfg"),
        "XDG_DATA_HOME": str(scratch / "data"),
        "PLUGINS__CLAUDE_API__BASE_URL": mock.url,
        "ANTHROPIC_API_KEY": API_KEY,
        "RUST_BACKTRACE": "0",
    }
    args = [str(binary), "serve", "--port", "0", "--disable-plugin", "access_log", *extra]
    process = Process(args, env, scratch, scratch / "proxy.log")
    try:
        proxy = Proxy(url=f"http://{process.address()}", process=process)
        status = http_json("GET", f"{proxy.url}/plugins/status", token=token)
    except BaseException:
        process.stop()
        raise
    active = {p["name"]: p.get("status") for p in status.get("plugins", [])}
    if active.get("claude_api") != "active":
        process.stop()
        pytest.exit(
            f"the claude_api plugin is not active ({active}); the proxy's log:\n{process.log()}",
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
