"""The official Anthropic SDK against `/claude`: messages plain, streamed and
with tools, token counting, and the proxy's own client authentication.

Every answer is parsed by the SDK's own models and compared with the recorded
sample the mock upstream replayed; every upstream request is checked by the
mock (API key, version, no client credential) and some are inspected here.
"""

from __future__ import annotations

import anthropic
import pytest

from conftest import API_KEY, AUTH_TOKEN, Mock, Proxy, sample

PLAIN = sample("claude_messages")
STREAM = sample("claude_messages_stream")
TOOLS = sample("claude_messages_tools")
# A current model: the samples' claude-sonnet-4-20250514 is retired, and the
# proxy sends it upstream as its successor.
MODEL = "claude-sonnet-4-5-20250929"


def request_of(recorded: dict) -> dict:
    """The keyword arguments of `messages.create` for a recorded request."""
    payload = dict(recorded["request"]["payload"])
    payload.pop("stream", None)
    payload["model"] = MODEL
    return payload


def streamed_text(recorded: dict) -> str:
    return "".join(
        event["json"]["delta"].get("text", "")
        for event in recorded["response"]["events"]
        if event.get("event") == "content_block_delta"
    )


def test_messages(claude: anthropic.Anthropic, mock: Mock) -> None:
    message = claude.messages.create(**request_of(PLAIN))
    body = PLAIN["response"]["body"]
    assert message.id == body["id"]
    assert message.model == body["model"]
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == body["content"][0]["text"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (24, 40)

    (upstream,) = mock.upstream_requests()
    assert upstream["headers"]["x-api-key"] == API_KEY
    # The client's API version travels on.
    assert upstream["headers"]["anthropic-version"] == claude.default_headers["anthropic-version"]
    assert upstream["body"]["messages"] == PLAIN["request"]["payload"]["messages"]
    assert upstream["body"]["model"] == MODEL


def test_messages_stream(claude: anthropic.Anthropic, mock: Mock) -> None:
    expected = streamed_text(STREAM)
    with claude.messages.stream(**request_of(STREAM)) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) == 4, deltas
    assert "".join(deltas) == expected
    assert final.content[0].text == expected
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (24, 41)
    (upstream,) = mock.upstream_requests()
    assert upstream["body"]["stream"] is True
    assert upstream["response"]["sample"] == "claude_messages_stream"
    assert upstream["response"]["outcome"] == "completed"


def tool_uses(message: anthropic.types.Message) -> list[tuple[str, str, dict]]:
    return [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]


def recorded_tool_uses() -> list[tuple[str, str, dict]]:
    return [
        (b["id"], b["name"], b["input"])
        for b in TOOLS["response"]["body"]["content"]
        if b["type"] == "tool_use"
    ]


def test_tools(claude: anthropic.Anthropic, mock: Mock) -> None:
    message = claude.messages.create(**request_of(TOOLS))
    assert message.stop_reason == "tool_use"
    assert tool_uses(message) == recorded_tool_uses()
    assert [name for _, name, _ in tool_uses(message)] == ["get_weather", "calculate_distance"]
    assert message.content[0].text == TOOLS["response"]["body"]["content"][0]["text"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (572, 182)
    (upstream,) = mock.upstream_requests()
    sent_tools = [tool["name"] for tool in upstream["body"]["tools"]]
    assert sent_tools == ["get_weather", "calculate_distance", "calculate"]


def test_tools_stream(claude: anthropic.Anthropic, mock: Mock) -> None:
    # No tools stream was recorded: the mock synthesizes one from the complete
    # answer, with the tool input split across input_json_delta events.
    with claude.messages.stream(**request_of(TOOLS)) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in events, events
    assert final.stop_reason == "tool_use"
    assert tool_uses(final) == recorded_tool_uses()
    (upstream,) = mock.upstream_requests()
    assert upstream["response"]["sample"] == "claude_messages_tools+synthesized-stream"


def test_count_tokens(claude: anthropic.Anthropic, mock: Mock) -> None:
    counted = claude.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}]
    )
    # The mock's estimate: characters of "user" and "Hello there", over four.
    assert counted.input_tokens == 3
    (upstream,) = mock.upstream_requests("/v1/messages/count_tokens")
    assert upstream["headers"]["x-api-key"] == API_KEY


@pytest.mark.parametrize("credential", ["api_key", "auth_token"])
def test_the_proxy_token_is_accepted_as_x_api_key_or_bearer(
    guarded_proxy: Proxy, mock: Mock, credential: str
) -> None:
    client = anthropic.Anthropic(
        base_url=f"{guarded_proxy.url}/claude",
        max_retries=0,
        timeout=15,
        **{credential: AUTH_TOKEN},
    )
    with client:
        message = client.messages.create(**request_of(PLAIN))
    assert message.content[0].text == PLAIN["response"]["body"]["content"][0]["text"]
    (upstream,) = mock.upstream_requests()
    # The proxy's token is the client's business, not the upstream's.
    assert upstream["headers"]["x-api-key"] == API_KEY
    assert "authorization" not in upstream["headers"]
    assert AUTH_TOKEN not in upstream["body_text"]


def test_a_wrong_proxy_token_is_an_authentication_error(
    guarded_proxy: Proxy, mock: Mock
) -> None:
    client = anthropic.Anthropic(
        base_url=f"{guarded_proxy.url}/claude", api_key="wrong", max_retries=0, timeout=15
    )
    with client, pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(**request_of(PLAIN))
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert "invalid credentials" in caught.value.body["error"]["message"]
    assert mock.requests() == [], "a refused request never reaches the upstream"
