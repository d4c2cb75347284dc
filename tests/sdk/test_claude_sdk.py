"""The official SDKs against the `claude_sdk` provider: the local Claude Code
CLI driven in stream-json mode answers the Anthropic SDK on `/claude/sdk`
(Messages) and the OpenAI SDK on `/claude/sdk/v1` (Chat Completions and
Responses), and the session forms `/claude/sdk/{session_id}/...`.

The CLI is the real, pinned Claude Code of `tests/clients` (installed by
`scripts/deps/clients`; these tests fail naming the script when it is
missing), pointed at the mock upstream's scripted agent, which answers a fresh
token per test: each answer is parsed by the SDK's own models (whole, and
streamed through the SDK's stream helpers, which assemble the events) and
compared with that token. The failures (a missing CLI, one that exits early,
one that hangs past the first-chunk timeout) run the stand-in CLI
`tests/data/claude_sdk/fake_claude.sh` and must raise the SDK's typed error
with a clear message within a bounded time; a request with the client's tools
is refused with a 400 naming the route that carries tools.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anthropic
import openai
import pytest

from conftest import (
    CLAUDE_SDK_CLI_KEY,
    FAKE_CLAUDE,
    Mock,
    Proxy,
    claude_code_cli,
    http_json,
    start_claude_sdk_proxy,
)

#: A real CLI turn takes a few seconds; a failure must come well within this.
TURN_SECONDS = 90
#: The failure cases are answered within this (the first-chunk timeout is 1 s).
FAILURE_SECONDS = 10
CLAUDE_MODEL = "claude-sonnet-4-5"


def token(tag: str) -> str:
    """A fresh word, so a test passes only by what this run did."""
    return f"{tag}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def sdk_proxy(claude_sdk_mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    """`claude_sdk` running the real Claude Code against the mock."""
    cli = claude_code_cli()
    proxy = start_claude_sdk_proxy(claude_sdk_mock, tmp_path_factory.mktemp("claude-sdk"), cli)
    yield proxy
    proxy.process.stop()


@pytest.fixture
def answer(claude_sdk_mock: Mock, sdk_proxy: Proxy) -> str:
    """The text the mock's agent answers this test with (no earlier request kept)."""
    claude_sdk_mock.reset()
    text = token("answer")
    claude_sdk_mock.arm_agent(text)
    return text


def anthropic_client(url: str, timeout: float = TURN_SECONDS) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="client-key", max_retries=0, timeout=timeout)


def openai_client(url: str, timeout: float = TURN_SECONDS) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="client-key", max_retries=0, timeout=timeout)


@pytest.fixture
def messages_client(sdk_proxy: Proxy) -> anthropic.Anthropic:
    client = anthropic_client(f"{sdk_proxy.url}/claude/sdk")
    yield client
    client.close()


@pytest.fixture
def openai_sdk(sdk_proxy: Proxy) -> openai.OpenAI:
    client = openai_client(f"{sdk_proxy.url}/claude/sdk/v1")
    yield client
    client.close()


def cli_requests(mock: Mock, containing: str) -> list[dict[str, Any]]:
    """The model requests the CLI sent to the mock whose messages hold
    `containing`, each proven to come from the CLI by its key."""
    found = [
        request
        for request in mock.upstream_requests("/v1/messages")
        if containing in str(request["body"].get("messages"))
    ]
    assert found, f"no request of the CLI holds {containing!r}: {mock.requests()}"
    for request in found:
        assert request["headers"].get("x-api-key") == CLAUDE_SDK_CLI_KEY, request["headers"]
        assert "client-key" not in str(request["headers"])
    return found


def system_text(request: dict[str, Any]) -> str:
    system = request["body"].get("system")
    if isinstance(system, list):
        return "\n".join(block.get("text", "") for block in system)
    return system or ""


def health(proxy: Proxy) -> dict[str, Any]:
    answer = http_json("GET", f"{proxy.url}/plugins/claude_sdk/health")
    return answer.get("details", answer)


# --- /claude/sdk/v1/messages -------------------------------------------------


def test_messages_plain_with_usage(
    messages_client: anthropic.Anthropic, claude_sdk_mock: Mock, answer: str
) -> None:
    question = token("question")
    message = messages_client.messages.create(
        model=CLAUDE_MODEL, max_tokens=100, messages=[{"role": "user", "content": question}]
    )
    assert [block.text for block in message.content if block.type == "text"] == [answer]
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    request = cli_requests(claude_sdk_mock, question)[-1]
    assert request["body"]["model"] == CLAUDE_MODEL, "the model reaches the CLI's --model"


def test_messages_streamed(
    messages_client: anthropic.Anthropic, claude_sdk_mock: Mock, answer: str
) -> None:
    question = token("question")
    with messages_client.messages.stream(
        model=CLAUDE_MODEL, max_tokens=100, messages=[{"role": "user", "content": question}]
    ) as stream:
        types = []
        text = ""
        for event in stream:
            types.append(event.type)
            if event.type == "text":
                text += event.text
        final = stream.get_final_message()
    assert text == answer
    assert types[0] == "message_start" and types[-1] == "message_stop", types
    assert [block.text for block in final.content if block.type == "text"] == [answer]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    cli_requests(claude_sdk_mock, question)


def test_messages_system_prompt(
    messages_client: anthropic.Anthropic, claude_sdk_mock: Mock, answer: str
) -> None:
    question, rule = token("question"), token("rule")
    message = messages_client.messages.create(
        model=CLAUDE_MODEL,
        max_tokens=100,
        system=f"Always remember {rule}.",
        messages=[{"role": "user", "content": question}],
    )
    assert message.content[-1].text == answer
    request = cli_requests(claude_sdk_mock, question)[-1]
    assert f"Always remember {rule}." in system_text(request), "appended to the CLI's system"


# --- /claude/sdk/v1/chat/completions ----------------------------------------


def test_chat_plain_with_system_and_usage(
    openai_sdk: openai.OpenAI, claude_sdk_mock: Mock, answer: str
) -> None:
    question, rule = token("question"), token("rule")
    completion = openai_sdk.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": f"Always remember {rule}."},
            {"role": "user", "content": question},
        ],
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == answer
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    request = cli_requests(claude_sdk_mock, question)[-1]
    assert f"Always remember {rule}." in system_text(request)


def test_chat_streamed_with_usage(
    openai_sdk: openai.OpenAI, claude_sdk_mock: Mock, answer: str
) -> None:
    question = token("question")
    with openai_sdk.chat.completions.stream(
        model="gpt-4o",
        messages=[{"role": "user", "content": question}],
        stream_options={"include_usage": True},
    ) as stream:
        deltas = "".join(event.delta for event in stream if event.type == "content.delta")
        final = stream.get_final_completion()
    assert deltas == answer
    assert final.choices[0].message.content == answer
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens > 0
    cli_requests(claude_sdk_mock, question)


# --- /claude/sdk/v1/responses ------------------------------------------------


def test_responses_plain_with_instructions_and_usage(
    openai_sdk: openai.OpenAI, claude_sdk_mock: Mock, answer: str
) -> None:
    question, rule = token("question"), token("rule")
    response = openai_sdk.responses.create(
        model="gpt-5", instructions=f"Always remember {rule}.", input=question
    )
    assert response.status == "completed"
    assert response.output_text == answer
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    request = cli_requests(claude_sdk_mock, question)[-1]
    assert f"Always remember {rule}." in system_text(request)


def test_responses_streamed(openai_sdk: openai.OpenAI, claude_sdk_mock: Mock, answer: str) -> None:
    question = token("question")
    with openai_sdk.responses.stream(model="gpt-5", input=question) as stream:
        types = []
        deltas = ""
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas += event.delta
        final = stream.get_final_response()
    assert deltas == answer
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    assert final.output_text == answer
    assert final.usage is not None and final.usage.output_tokens > 0
    cli_requests(claude_sdk_mock, question)


# --- sessions: /claude/sdk/{session_id}/... ----------------------------------


def two_turns(format: str, proxy: Proxy, session: str, answer: str) -> tuple[str, str]:
    """Asks two questions in `session` in `format`, the second with the whole
    history as a client sends it; returns the questions."""
    first, second = token("firstq"), token("secondq")
    if format == "messages":
        client = anthropic_client(f"{proxy.url}/claude/sdk/{session}")
        history = [{"role": "user", "content": first}]
        reply = client.messages.create(model=CLAUDE_MODEL, max_tokens=100, messages=history)
        assert reply.content[-1].text == answer
        history += [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": second},
        ]
        with client.messages.stream(
            model=CLAUDE_MODEL, max_tokens=100, messages=history
        ) as stream:
            assert "".join(stream.text_stream) == answer
        client.close()
        return first, second
    client = openai_client(f"{proxy.url}/claude/sdk/{session}/v1")
    history = [{"role": "user", "content": first}]
    if format == "chat":
        reply = client.chat.completions.create(model="gpt-4o", messages=history)
        assert reply.choices[0].message.content == answer
    else:
        assert client.responses.create(model="gpt-5", input=history).output_text == answer
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": second}]
    if format == "chat":
        reply = client.chat.completions.create(model="gpt-4o", messages=history)
        assert reply.choices[0].message.content == answer
    else:
        assert client.responses.create(model="gpt-5", input=history).output_text == answer
    client.close()
    return first, second


@pytest.mark.parametrize("format", ["messages", "chat", "responses"])
def test_a_session_continues_in_the_same_cli(
    format: str, sdk_proxy: Proxy, claude_sdk_mock: Mock, answer: str
) -> None:
    before = health(sdk_proxy)
    first, second = two_turns(format, sdk_proxy, token(f"{format}-session-"), answer)
    after = health(sdk_proxy)
    assert after["processes_started"] - before["processes_started"] == 1, after
    assert after["processes_reused"] - before["processes_reused"] == 1, after
    # The second turn reached the CLI that holds the first: the proxy sent it
    # only the new question, and the CLI's own history carries the first once.
    latest = cli_requests(claude_sdk_mock, second)[-1]
    messages = str(latest["body"]["messages"])
    assert messages.count(first) == 1, messages
    assert after["sessions_busy"] == 0, after


# --- client tools ------------------------------------------------------------

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
WEATHER_FUNCTION = {
    "type": "function",
    "function": {
        "name": WEATHER["name"],
        "description": WEATHER["description"],
        "parameters": WEATHER["input_schema"],
    },
}


def test_client_tools_are_refused_naming_the_route_that_carries_them(
    messages_client: anthropic.Anthropic, openai_sdk: openai.OpenAI, sdk_proxy: Proxy
) -> None:
    started = health(sdk_proxy)["processes_started"]
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    with pytest.raises(anthropic.BadRequestError) as raised:
        messages_client.messages.create(
            model=CLAUDE_MODEL, max_tokens=100, messages=ask, tools=[WEATHER]
        )
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert "Send requests with tools to /claude/v1/messages" in str(raised.value)
    with pytest.raises(anthropic.BadRequestError) as raised:
        messages_client.messages.create(
            model=CLAUDE_MODEL,
            max_tokens=100,
            messages=[
                *ask,
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sun"}
                    ],
                },
            ],
        )
    assert "a `tool_use` block" in str(raised.value)
    with pytest.raises(openai.BadRequestError) as raised:
        openai_sdk.chat.completions.create(model="gpt-4o", messages=ask, tools=[WEATHER_FUNCTION])
    assert raised.value.code is None and raised.value.type == "invalid_request_error"
    assert "Send requests with tools to /claude/v1/chat/completions" in str(raised.value)
    with pytest.raises(openai.BadRequestError) as raised:
        openai_sdk.responses.create(
            model="gpt-5",
            input="What is the weather in Paris?",
            tools=[{"type": "function", **WEATHER_FUNCTION["function"]}],
        )
    assert "Send requests with tools to /claude/v1/responses" in str(raised.value)
    assert health(sdk_proxy)["processes_started"] == started, "refused before any CLI ran"


# --- failures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def failing_proxies(
    claude_sdk_mock: Mock, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Proxy]:
    """One proxy per failure: no CLI at the configured path, a CLI that exits
    at once, one that hangs past the 1 s first-chunk timeout."""
    proxies = {
        "missing": start_claude_sdk_proxy(
            claude_sdk_mock,
            tmp_path_factory.mktemp("claude-sdk-missing"),
            "/nonexistent/ccproxy-sdk-suite/claude",
        ),
        "exit": start_claude_sdk_proxy(
            claude_sdk_mock,
            tmp_path_factory.mktemp("claude-sdk-exit"),
            FAKE_CLAUDE,
            {"FAKE_CLAUDE_MODE": "exit"},
        ),
        "hang": start_claude_sdk_proxy(
            claude_sdk_mock,
            tmp_path_factory.mktemp("claude-sdk-hang"),
            FAKE_CLAUDE,
            {"FAKE_CLAUDE_MODE": "hang"},
            "[plugins.claude_sdk.sdk_session_pool]\nstream_first_chunk_timeout = 1",
        ),
    }
    yield proxies
    for proxy in proxies.values():
        proxy.process.stop()


FAILURES = {
    "missing": (
        502,
        "cannot start the Claude Code CLI `/nonexistent/ccproxy-sdk-suite/claude`",
        "install Claude Code or set [plugins.claude_sdk] cli_path",
    ),
    "exit": (
        502,
        "the Claude Code CLI ended before its answer",
        "exit code 3; stderr: fake failure",
    ),
    "hang": (504, "the Claude Code CLI wrote no answer for 1 s", "(timeout)"),
}

HI = [{"role": "user", "content": "hi"}]


def streamed_message(client: anthropic.Anthropic) -> Any:
    with client.messages.stream(model=CLAUDE_MODEL, max_tokens=10, messages=HI) as stream:
        return stream.get_final_message()


#: How each SDK call is made, by name: (client kind, path under the proxy, call).
CALLS = {
    "messages": (
        "anthropic",
        "/claude/sdk",
        lambda c: c.messages.create(model=CLAUDE_MODEL, max_tokens=10, messages=HI),
    ),
    "messages stream, in a session": ("anthropic", "/claude/sdk/failing-session", streamed_message),
    "chat": (
        "openai",
        "/claude/sdk/v1",
        lambda c: c.chat.completions.create(model="gpt-4o", messages=HI),
    ),
    "chat stream": (
        "openai",
        "/claude/sdk/v1",
        lambda c: list(c.chat.completions.create(model="gpt-4o", stream=True, messages=HI)),
    ),
    "responses stream, in a session": (
        "openai",
        "/claude/sdk/failing-session/v1",
        lambda c: list(c.responses.create(model="gpt-5", input="hi", stream=True)),
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("call", list(CALLS))
def test_failures_are_typed_errors_in_the_clients_format(
    failing_proxies: dict[str, Proxy], failure: str, call: str
) -> None:
    proxy = failing_proxies[failure]
    status, what, detail = FAILURES[failure]
    kind, path, make = CALLS[call]
    client = (anthropic_client if kind == "anthropic" else openai_client)(
        f"{proxy.url}{path}", timeout=FAILURE_SECONDS * 3
    )
    started = time.monotonic()
    sdk = anthropic if kind == "anthropic" else openai
    expected = sdk.InternalServerError
    if kind == "anthropic" and status == 504:
        expected = anthropic.GatewayTimeoutError
    with pytest.raises(expected) as raised:
        make(client)
    elapsed = time.monotonic() - started
    client.close()
    assert elapsed < FAILURE_SECONDS, f"{elapsed:.1f} s"
    error = raised.value
    assert error.status_code == status, error
    assert what in str(error) and detail in str(error), str(error)
    if kind == "anthropic":
        assert error.body["type"] == "error" and error.body["error"]["type"] == "api_error"
    else:
        assert error.type == "server_error"
    proxy.assert_alive()


@pytest.fixture(scope="module")
def stalling_proxy(claude_sdk_mock: Mock, tmp_path_factory: pytest.TempPathFactory) -> Proxy:
    """A CLI that writes its text, then nothing for 30 s: past the 1 s ongoing timeout."""
    proxy = start_claude_sdk_proxy(
        claude_sdk_mock,
        tmp_path_factory.mktemp("claude-sdk-stall"),
        FAKE_CLAUDE,
        {"FAKE_CLAUDE_MODE": "stall"},
        "[plugins.claude_sdk.sdk_session_pool]\nstream_ongoing_timeout = 1",
    )
    yield proxy
    proxy.process.stop()


def test_a_cli_that_stalls_mid_stream_ends_it_with_an_error_the_sdk_sees(
    stalling_proxy: Proxy,
) -> None:
    stalled = "the Claude Code CLI wrote no answer for 1 s (timeout)"
    started = time.monotonic()
    client = anthropic_client(f"{stalling_proxy.url}/claude/sdk", timeout=FAILURE_SECONDS * 3)
    text = ""
    with pytest.raises(anthropic.APIStatusError) as raised:
        with client.messages.stream(model=CLAUDE_MODEL, max_tokens=10, messages=HI) as stream:
            for piece in stream.text_stream:
                text += piece
    client.close()
    assert text == "turn 1: hi", "what came before the stall reaches the client"
    assert stalled in str(raised.value)

    client = openai_client(f"{stalling_proxy.url}/claude/sdk/v1", timeout=FAILURE_SECONDS * 3)
    text = ""
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(model="gpt-4o", messages=HI, stream=True):
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert text == "turn 1: hi"
    assert stalled in str(raised.value)

    events = list(client.responses.create(model="gpt-5", input="hi", stream=True))
    client.close()
    assert events[-1].type == "response.failed", [event.type for event in events]
    assert events[-1].response.error.message == stalled
    assert time.monotonic() - started < 3 * FAILURE_SECONDS
    stalling_proxy.assert_alive()
