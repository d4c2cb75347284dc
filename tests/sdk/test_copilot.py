"""The official SDKs against the Copilot provider: the OpenAI SDK on
`/copilot/v1` (Chat Completions plain, streamed and with tool calls;
Responses plain and streamed; embeddings; the model list) and the Anthropic
SDK on `/copilot` (messages plain, streamed and with tool calls), and an
account without Copilot, which each SDK raises as a permission error.

The proxy runs only `copilot` and `oauth_copilot`, with a GitHub token from
`COPILOT_GITHUB_TOKEN`; the mock plays GitHub's Copilot token exchange and the
Copilot API (`tests/mock_upstream/src/github.rs`), which replays the recorded
`copilot_chat_completions*` samples and insists on Copilot's headers. Every
answer is parsed by the SDK's own models and compared with those samples.
"""

from __future__ import annotations

import json
import os

import anthropic
import openai
import pytest

from conftest import SAMPLES, Mock, Process, Proxy, built, sample, start_proxy

PLAIN = sample("copilot_chat_completions")
STREAM = sample("copilot_chat_completions_stream")
TOOLS = sample("copilot_chat_completions_tools")
TEXT = PLAIN["response"]["body"]["choices"][0]["message"]["content"]
STREAM_TEXT = "".join(
    (choice.get("delta") or {}).get("content") or ""
    for event in STREAM["response"]["events"]
    if isinstance(event.get("json"), dict)
    for choice in event["json"].get("choices", [])
)
CALLS = [
    (call["function"]["name"], json.loads(call["function"]["arguments"]))
    for call in TOOLS["response"]["body"]["choices"][0]["message"]["tool_calls"]
]
CHAT_TOOLS = TOOLS["request"]["payload"]["tools"]
ANTHROPIC_TOOLS = [
    {
        "name": t["function"]["name"],
        "description": t["function"]["description"],
        "input_schema": t["function"]["parameters"],
    }
    for t in CHAT_TOOLS
]
QUESTION = TOOLS["request"]["payload"]["messages"]
HELLO = [{"role": "user", "content": "Hello"}]
GITHUB_TOKEN = "gho_sdk-suite-github-token"
NO_COPILOT_TOKEN = "gho_no-copilot-sdk-suite"


@pytest.fixture(scope="session")
def copilot_mock(tmp_path_factory: pytest.TempPathFactory) -> Mock:
    """GitHub and the Copilot API: Copilot's headers required, no API key."""
    binary = built("ccproxy-mock-upstream")
    scratch = tmp_path_factory.mktemp("copilot-mock")
    args = [
        str(binary),
        "--samples",
        str(SAMPLES),
        "--expect-header",
        "copilot-integration-id=vscode-chat",
        "--expect-header",
        "editor-version=vscode/1.85.0",
        "--forbid-header",
        "x-api-key",
        "--idle-exit-seconds",
        "300",
    ]
    process = Process(args, {"PATH": os.environ.get("PATH", "")}, scratch, scratch / "mock.log")
    mock = Mock(url=f"http://{process.address()}", process=process)
    yield mock
    process.stop()


def copilot_env(mock: Mock, github_token: str) -> dict[str, str]:
    return {
        "COPILOT_GITHUB_TOKEN": github_token,
        "PLUGINS__OAUTH_COPILOT__COPILOT_TOKEN_URL": f"{mock.url}/copilot_internal/v2/token",
    }


EXTRA = ["--disable-plugin", "claude_api", "--disable-plugin", "oauth_claude"]


@pytest.fixture(scope="session")
def copilot_proxy(copilot_mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    """Only `copilot` and `oauth_copilot`, with a GitHub token from the environment."""
    proxy = start_proxy(
        copilot_mock,
        tmp_path_factory.mktemp("copilot-proxy"),
        EXTRA,
        env=copilot_env(copilot_mock, GITHUB_TOKEN),
        plugins=("copilot", "oauth_copilot"),
    )
    yield proxy
    proxy.process.stop()


@pytest.fixture
def copilot_openai(copilot_proxy: Proxy, copilot_mock: Mock) -> openai.OpenAI:
    copilot_mock.reset()
    client = openai.OpenAI(
        base_url=f"{copilot_proxy.url}/copilot/v1", api_key="client-key", max_retries=0, timeout=15
    )
    yield client
    client.close()


@pytest.fixture
def copilot_claude(copilot_proxy: Proxy, copilot_mock: Mock) -> anthropic.Anthropic:
    copilot_mock.reset()
    client = anthropic.Anthropic(
        base_url=f"{copilot_proxy.url}/copilot", api_key="client-key", max_retries=0, timeout=15
    )
    yield client
    client.close()


def copilot_requests(mock: Mock) -> list[dict]:
    """The Copilot API requests, each checked for Copilot's shape."""
    requests = mock.upstream_requests("/chat/completions")
    assert requests, "no request reached the Copilot API"
    for request in requests:
        headers = request["headers"]
        assert headers["authorization"].startswith("Bearer tid=mock-copilot-")
        assert headers["user-agent"] == "GitHubCopilotChat/0.26.7"
        assert headers["x-github-api-version"] == "2025-04-01"
        assert "client-key" not in json.dumps(headers)
        assert isinstance(request["body"]["messages"], list)
    return requests


def test_chat_plain(copilot_openai: openai.OpenAI, copilot_mock: Mock) -> None:
    completion = copilot_openai.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert copilot_requests(copilot_mock)[0]["body"]["model"] == "gpt-4o"


def test_chat_stream(copilot_openai: openai.OpenAI, copilot_mock: Mock) -> None:
    stream = copilot_openai.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
    )
    assert text == STREAM_TEXT
    assert copilot_requests(copilot_mock)[0]["body"]["stream"] is True


def test_chat_tools(copilot_openai: openai.OpenAI, copilot_mock: Mock) -> None:
    completion = copilot_openai.chat.completions.create(
        model="gpt-4o", messages=QUESTION, tools=CHAT_TOOLS
    )
    calls = completion.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == CALLS
    copilot_requests(copilot_mock)


def test_responses_plain_and_stream(copilot_openai: openai.OpenAI, copilot_mock: Mock) -> None:
    response = copilot_openai.responses.create(model="gpt-4o", input="Hello")
    assert response.output_text == TEXT
    stream = copilot_openai.responses.create(model="gpt-4o", input="Hello", stream=True)
    deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
    assert "".join(deltas) == STREAM_TEXT
    assert len(copilot_requests(copilot_mock)) == 2


def test_embeddings_and_models(copilot_openai: openai.OpenAI) -> None:
    embeddings = copilot_openai.embeddings.create(
        model="text-embedding-3-small", input=["one", "two"]
    )
    assert [e.index for e in embeddings.data] == [0, 1]
    assert embeddings.data[0].embedding == [0.25, -0.5, 0.75]
    ids = [model.id for model in copilot_openai.models.list()]
    assert "gpt-4o" in ids


def test_messages_plain_and_stream(copilot_claude: anthropic.Anthropic, copilot_mock: Mock) -> None:
    message = copilot_claude.messages.create(model="gpt-4o", max_tokens=100, messages=HELLO)
    assert message.content[0].type == "text"
    assert message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    with copilot_claude.messages.stream(model="gpt-4o", max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == STREAM_TEXT
    assert final.stop_reason == "end_turn"
    assert len(copilot_requests(copilot_mock)) == 2


def test_messages_tools(copilot_claude: anthropic.Anthropic, copilot_mock: Mock) -> None:
    message = copilot_claude.messages.create(
        model="gpt-4o", max_tokens=1000, messages=QUESTION, tools=ANTHROPIC_TOOLS
    )
    uses = [(block.name, block.input) for block in message.content if block.type == "tool_use"]
    assert uses == CALLS
    assert message.stop_reason == "tool_use"
    body = copilot_requests(copilot_mock)[0]["body"]
    assert [t["function"]["name"] for t in body["tools"]] == [t["name"] for t in ANTHROPIC_TOOLS]


def test_an_account_without_copilot_is_a_permission_error(
    copilot_mock: Mock, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proxy = start_proxy(
        copilot_mock,
        tmp_path_factory.mktemp("no-copilot-proxy"),
        EXTRA,
        env=copilot_env(copilot_mock, NO_COPILOT_TOKEN),
        plugins=("copilot", "oauth_copilot"),
    )
    try:
        chat = openai.OpenAI(
            base_url=f"{proxy.url}/copilot/v1", api_key="k", max_retries=0, timeout=15
        )
        with pytest.raises(openai.PermissionDeniedError) as raised:
            chat.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert "no GitHub Copilot access" in str(raised.value)
        claude = anthropic.Anthropic(
            base_url=f"{proxy.url}/copilot", api_key="k", max_retries=0, timeout=15
        )
        with pytest.raises(anthropic.PermissionDeniedError) as raised:
            claude.messages.create(model="gpt-4o", max_tokens=10, messages=HELLO)
        assert "no GitHub Copilot access" in str(raised.value)
    finally:
        proxy.process.stop()
