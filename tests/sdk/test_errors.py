"""Upstream failures as the SDKs see them: error statuses with the provider's
own error body, in the client's format, and a stream the upstream breaks
halfway; the proxy keeps serving afterwards.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from conftest import Mock, Proxy, sample

PLAIN = sample("claude_messages")
STREAM = sample("claude_messages_stream")
MODEL = PLAIN["model"]
HELLO = [{"role": "user", "content": "Hello"}]
PLAIN_TEXT = PLAIN["response"]["body"]["content"][0]["text"]


def still_serving(claude: anthropic.Anthropic, proxy: Proxy) -> None:
    proxy.assert_alive()
    message = claude.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    assert message.content[0].text == PLAIN_TEXT


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
        (500, anthropic.InternalServerError, "api_error"),
    ],
)
def test_anthropic_error_statuses(
    claude: anthropic.Anthropic,
    proxy: Proxy,
    mock: Mock,
    status: int,
    error_class: type,
    error_type: str,
) -> None:
    message = f"mock says {status}"
    mock.fault(
        kind="status",
        status=status,
        retry_after="7",
        body={"type": "error", "error": {"type": error_type, "message": message}},
    )
    with pytest.raises(error_class) as caught:
        claude.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    error = caught.value
    assert isinstance(error, anthropic.APIStatusError)
    assert error.status_code == status
    assert error.body["type"] == "error"
    assert error.body["error"] == {"type": error_type, "message": message}
    if status == 429:
        assert error.response.headers["retry-after"] == "7"
    still_serving(claude, proxy)


def test_anthropic_error_body_written_by_the_mock(
    claude: anthropic.Anthropic, proxy: Proxy, mock: Mock
) -> None:
    # Without a body in the fault the mock writes Anthropic's own wording.
    mock.fault(kind="status", status=429)
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert "rate limit" in caught.value.body["error"]["message"]
    assert caught.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError)],
)
def test_openai_error_statuses_on_the_chat_path(
    chat: openai.OpenAI,
    claude: anthropic.Anthropic,
    proxy: Proxy,
    mock: Mock,
    status: int,
    error_class: type,
) -> None:
    mock.fault(kind="status", status=status)
    with pytest.raises(error_class) as caught:
        chat.chat.completions.create(model=MODEL, messages=HELLO)
    error = caught.value
    assert error.status_code == status
    # OpenAI's shape: {"error": {"message", "type", ...}}; the SDK unwraps it.
    assert isinstance(error.body, dict) and "message" in error.body, error.body
    assert error.body["message"] == error.message or error.body["message"] in error.message
    assert "type" in error.body
    if status == 429:
        assert "rate limit" in error.body["message"]
    still_serving(claude, proxy)


def test_anthropic_stream_broken_mid_way(
    claude: anthropic.Anthropic, proxy: Proxy, mock: Mock
) -> None:
    mock.fault(kind="reset_mid_stream", after_events=3)
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with claude.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            for text in stream.text_stream:
                received.append(text)
    # The three events before the break arrived (one of them a text delta),
    # then the proxy's `error` event, which the SDK raises.
    assert received == ["Hello! It"]
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "api_error"
    assert "mid-stream" in caught.value.body["error"]["message"]
    assert mock.streams()["reset"] == 1
    still_serving(claude, proxy)


def test_chat_stream_broken_mid_way(
    chat: openai.OpenAI, claude: anthropic.Anthropic, proxy: Proxy, mock: Mock
) -> None:
    mock.fault(kind="reset_mid_stream", after_events=4)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in chat.chat.completions.create(model=MODEL, messages=HELLO, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    # An error chunk ends the stream; the SDK raises it as an APIError.
    assert received == ["Hello! It", "'s nice to meet you. I'm"]
    assert "mid-stream" in caught.value.message
    still_serving(claude, proxy)


def test_responses_stream_broken_mid_way(
    chat: openai.OpenAI, claude: anthropic.Anthropic, proxy: Proxy, mock: Mock
) -> None:
    mock.fault(kind="reset_mid_stream", after_events=4)
    types = []
    with pytest.raises(openai.APIError) as caught:
        for event in chat.responses.create(model=MODEL, input="Hello", stream=True):
            types.append(event.type)
    # The events converted before the break arrived, then the proxy's `error`
    # event, which the SDK raises.
    assert types[0] == "response.created", types
    assert "response.output_text.delta" in types, types
    assert "response.completed" not in types, types
    assert "mid-stream" in caught.value.message
    still_serving(claude, proxy)
