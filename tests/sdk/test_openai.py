"""The official OpenAI SDK against `/claude/v1`: Chat Completions and Responses,
plain and streamed, tool calls, and the model list.

The proxy converts each request to Anthropic Messages (the mock upstream checks
it arrived as one) and the recorded Anthropic answer back, so these tests
compare the SDK's parsed objects with the Anthropic samples' content.
"""

from __future__ import annotations

import json

import openai

from conftest import AUTH_TOKEN, Mock, Proxy, sample

PLAIN = sample("claude_messages")
STREAM = sample("claude_messages_stream")
TOOLS = sample("claude_messages_tools")
# A current model: the samples' claude-sonnet-4-20250514 is retired, and the
# proxy sends it upstream as its successor.
MODEL = "claude-sonnet-4-5-20250929"
PLAIN_TEXT = PLAIN["response"]["body"]["content"][0]["text"]
STREAM_TEXT = "".join(
    event["json"]["delta"].get("text", "")
    for event in STREAM["response"]["events"]
    if event.get("event") == "content_block_delta"
)
HELLO = [{"role": "user", "content": "Hello"}]


def openai_tools() -> list[dict]:
    """The recorded Anthropic tools, as Chat Completions function tools."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool["name"],
                "description": tool["description"],
                "parameters": tool["input_schema"],
            },
        }
        for tool in TOOLS["request"]["payload"]["tools"]
    ]


def recorded_calls() -> list[tuple[str, str, dict]]:
    return [
        (block["id"], block["name"], block["input"])
        for block in TOOLS["response"]["body"]["content"]
        if block["type"] == "tool_use"
    ]


def assert_sent_as_anthropic(mock: Mock, stream: bool) -> dict:
    (upstream,) = mock.upstream_requests()
    body = upstream["body"]
    assert body["model"] == MODEL
    assert body["messages"][0]["role"] == "user"
    assert isinstance(body["max_tokens"], int)
    assert bool(body.get("stream")) is stream
    assert "authorization" not in upstream["headers"]
    return body


def test_chat_completion(chat: openai.OpenAI, mock: Mock) -> None:
    completion = chat.chat.completions.create(model=MODEL, messages=HELLO)
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == PLAIN_TEXT
    assert choice.finish_reason == "stop"
    # The model that answered: the replayed sample's.
    assert completion.model == PLAIN["response"]["body"]["model"]
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (24, 40)
    assert completion.usage.total_tokens == 64
    assert_sent_as_anthropic(mock, stream=False)


def test_chat_completion_stream(chat: openai.OpenAI, mock: Mock) -> None:
    chunks = list(
        chat.chat.completions.create(
            model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) == 4, deltas
    assert "".join(deltas) == STREAM_TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert usage and (usage[-1].prompt_tokens, usage[-1].completion_tokens) == (24, 41)
    assert {c.id for c in chunks} == {STREAM["response"]["events"][0]["json"]["message"]["id"]}
    assert_sent_as_anthropic(mock, stream=True)


def test_chat_tool_calls(chat: openai.OpenAI, mock: Mock) -> None:
    completion = chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in NYC?"}], tools=openai_tools()
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = [
        (call.id, call.function.name, json.loads(call.function.arguments))
        for call in choice.message.tool_calls
    ]
    assert calls == recorded_calls()
    body = assert_sent_as_anthropic(mock, stream=False)
    assert [tool["name"] for tool in body["tools"]] == ["get_weather", "calculate_distance", "calculate"]
    assert body["tools"][0]["input_schema"] == TOOLS["request"]["payload"]["tools"][0]["input_schema"]


def test_chat_tool_calls_stream(chat: openai.OpenAI, mock: Mock) -> None:
    stream = chat.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in NYC?"}],
        tools=openai_tools(),
        stream=True,
    )
    calls: dict[int, dict] = {}
    finishes = []
    n_argument_pieces = 0
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.finish_reason:
            finishes.append(choice.finish_reason)
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] = delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
                n_argument_pieces += 1
    assert finishes == ["tool_calls"]
    assert sorted(calls) == [0, 1], calls
    got = [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    assert got == recorded_calls()
    assert n_argument_pieces >= 4, "the arguments arrive in pieces"
    assert_sent_as_anthropic(mock, stream=True)


def test_response(chat: openai.OpenAI, mock: Mock) -> None:
    response = chat.responses.create(model=MODEL, input="Hello")
    assert response.status == "completed"
    assert response.output_text == PLAIN_TEXT
    assert response.output[0].type == "message"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (24, 40)
    body = assert_sent_as_anthropic(mock, stream=False)
    assert body["messages"][0]["content"] in ("Hello", [{"type": "text", "text": "Hello"}])


def test_response_stream(chat: openai.OpenAI, mock: Mock) -> None:
    events = list(chat.responses.create(model=MODEL, input="Hello", stream=True))
    types = [event.type for event in events]
    assert types[0] == "response.created", types
    assert types[-1] == "response.completed", types
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) == 4, types
    assert "".join(deltas) == STREAM_TEXT
    done = [event.text for event in events if event.type == "response.output_text.done"]
    assert done == [STREAM_TEXT]
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == STREAM_TEXT
    assert (final.usage.input_tokens, final.usage.output_tokens) == (24, 41)
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    assert_sent_as_anthropic(mock, stream=True)


def test_models(chat: openai.OpenAI, mock: Mock) -> None:
    models = list(chat.models.list())
    ids = [model.id for model in models]
    assert MODEL in ids
    assert len(ids) == len(set(ids))
    assert all(model.object == "model" and model.owned_by == "anthropic" for model in models)
    assert mock.requests() == [], "the list is the plugin's own, no upstream call"


def test_the_proxy_token_as_openai_bearer(guarded_proxy: Proxy, mock: Mock) -> None:
    with openai.OpenAI(
        base_url=f"{guarded_proxy.url}/claude/v1", api_key=AUTH_TOKEN, max_retries=0, timeout=15
    ) as client:
        completion = client.chat.completions.create(model=MODEL, messages=HELLO)
        assert completion.choices[0].message.content == PLAIN_TEXT
    with openai.OpenAI(
        base_url=f"{guarded_proxy.url}/claude/v1", api_key="wrong", max_retries=0, timeout=15
    ) as client:
        try:
            client.chat.completions.create(model=MODEL, messages=HELLO)
        except openai.AuthenticationError as error:
            assert error.status_code == 401
            assert "invalid credentials" in error.message
        else:
            raise AssertionError("a wrong token was accepted")
    assert len(mock.upstream_requests()) == 1
