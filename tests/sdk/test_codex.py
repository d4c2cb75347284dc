"""The official SDKs against the Codex provider: the OpenAI SDK on `/codex/v1`
(Responses and Chat Completions, plain and streamed, with tool calls) and the
Anthropic SDK on `/codex`, as Claude Code uses it (messages plain and
streamed, a multi-turn conversation with tool_use/tool_result history, and
streamed tool calls); the model list with the Codex CLI's cache entries, and
a stream the backend breaks halfway, which each SDK raises.

The proxy converts every request to the Codex backend's Responses API and
always asks it for a stream; the mock plays the backend, refusing what the
real one refuses, and replays `codex_responses_stream` (or the tools answer
as a synthesized stream). Every answer is parsed by the SDK's own models and
compared with those samples; every upstream request is checked for the
Codex CLI's shape here too.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from conftest import CODEX_ACCOUNT, CODEX_BACKEND, CODEX_TOKEN, ROOT, Mock, Proxy, sample

STREAM = sample("codex_responses_stream")
TOOLS = sample("codex_responses_tools")
DELTAS = [
    event["json"]["delta"]
    for event in STREAM["response"]["events"]
    if event.get("event") == "response.output_text.delta"
]
TEXT = "".join(DELTAS)
USAGE = STREAM["response"]["events"][-1]["json"]["response"]["usage"]
CALLS = [
    (item["call_id"], item["name"], json.loads(item["arguments"]))
    for item in TOOLS["response"]["body"]["output"]
    if item["type"] == "function_call"
]
CODEX_CLI_INSTRUCTIONS = (ROOT / "plugins/codex/data/codex_cli_instructions.txt").read_text()
CLAUDE_MODEL = "claude-sonnet-4-5-20250929"
HELLO = [{"role": "user", "content": "Hello"}]
REFUSED = (
    "metadata",
    "temperature",
    "top_p",
    "max_output_tokens",
    "max_tokens",
    "max_completion_tokens",
    "user",
)

# The recorded request's tools, as each SDK declares them.
CHAT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": t["name"],
            "description": t["description"],
            "parameters": t["parameters"],
        },
    }
    for t in TOOLS["request"]["payload"]["tools"]
]
ANTHROPIC_TOOLS = [
    {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
    for t in TOOLS["request"]["payload"]["tools"]
]


def backend_requests(mock: Mock) -> list[dict]:
    return mock.upstream_requests(CODEX_BACKEND)


def assert_codex_shaped(request: dict) -> dict:
    """The Codex CLI's headers with the test login, and a body the backend
    takes; returns the body."""
    headers = request["headers"]
    assert headers["authorization"] == f"Bearer {CODEX_TOKEN}"
    assert headers["chatgpt-account-id"] == CODEX_ACCOUNT
    assert headers["openai-beta"] == "responses=experimental"
    assert headers["originator"] == "codex_cli_rs"
    assert headers["user-agent"].startswith("codex_cli_rs/")
    assert "x-api-key" not in headers and "client-key" not in json.dumps(headers)
    body = request["body"]
    assert len(headers["session_id"]) == 36
    assert headers["conversation_id"] == headers["session_id"] == body["prompt_cache_key"]
    assert body["stream"] is True and body["store"] is False
    assert not [key for key in REFUSED if key in body], body.keys()
    assert body["instructions"].startswith(CODEX_CLI_INSTRUCTIONS.rstrip())
    assert all(item["type"] for item in body["input"])
    assert not [item for item in body["input"] if item.get("role") in ("system", "developer")]
    assert request["response"]["status"] == 200
    return body


def test_responses(codex_openai: openai.OpenAI, codex_mock: Mock) -> None:
    response = codex_openai.responses.create(
        model="gpt-5.3-codex",
        instructions="Be brief.",
        input="Hello",
        temperature=0.2,
        max_output_tokens=500,
        metadata={"run": "sdk"},
    )
    assert response.status == "completed"
    assert response.output_text == TEXT
    assert [item.type for item in response.output] == ["message"]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        USAGE["input_tokens"],
        USAGE["output_tokens"],
    )
    assert response.usage.input_tokens_details.cached_tokens == 2176
    (upstream,) = backend_requests(codex_mock)
    body = assert_codex_shaped(upstream)
    assert body["instructions"].endswith("\n\nBe brief.")
    assert upstream["response"]["sample"] == "codex_responses_stream"


def test_responses_stream(codex_openai: openai.OpenAI, codex_mock: Mock) -> None:
    events = list(
        codex_openai.responses.create(model="gpt-5.3-codex", input="Hello", stream=True)
    )
    types = [event.type for event in events]
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == DELTAS
    assert [e.text for e in events if e.type == "response.output_text.done"] == [TEXT]
    final = events[-1].response
    assert final.output_text == TEXT
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        USAGE["input_tokens"],
        USAGE["output_tokens"],
    )
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    (upstream,) = backend_requests(codex_mock)
    assert_codex_shaped(upstream)


def test_chat_completion(codex_openai: openai.OpenAI, codex_mock: Mock) -> None:
    completion = codex_openai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": "Be brief."}, *HELLO],
        temperature=0.2,
        max_tokens=100,
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == TEXT
    assert choice.finish_reason == "stop"
    assert completion.model == "gpt-4o", "the client's model, though gpt-5.3-codex was asked"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2239, 15)
    assert completion.usage.prompt_tokens_details.cached_tokens == 2176
    (upstream,) = backend_requests(codex_mock)
    body = assert_codex_shaped(upstream)
    assert body["model"] == "gpt-5.3-codex"
    assert body["instructions"].endswith("\n\nBe brief.")


def test_chat_completion_stream(codex_openai: openai.OpenAI, codex_mock: Mock) -> None:
    chunks = list(
        codex_openai.chat.completions.create(
            model="gpt-5.3-codex",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas == DELTAS
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert usage and (usage[-1].prompt_tokens, usage[-1].completion_tokens) == (2239, 15)
    (upstream,) = backend_requests(codex_mock)
    assert_codex_shaped(upstream)


def test_chat_tool_calls(codex_openai: openai.OpenAI, codex_mock: Mock) -> None:
    completion = codex_openai.chat.completions.create(
        model="gpt-5.3-codex",
        messages=[{"role": "user", "content": "Weather in New York, and how far is it from LA?"}],
        tools=CHAT_TOOLS,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = [
        (c.id, c.function.name, json.loads(c.function.arguments))
        for c in choice.message.tool_calls
    ]
    assert calls == CALLS
    (upstream,) = backend_requests(codex_mock)
    body = assert_codex_shaped(upstream)
    assert [tool["name"] for tool in body["tools"]] == ["get_weather", "calculate_distance", "calculate"]
    assert body["tools"][0]["parameters"] == TOOLS["request"]["payload"]["tools"][0]["parameters"]


def test_chat_tool_calls_stream(codex_openai: openai.OpenAI, codex_mock: Mock) -> None:
    stream = codex_openai.chat.completions.create(
        model="gpt-5.3-codex",
        messages=[{"role": "user", "content": "Weather in New York, and how far is it from LA?"}],
        tools=CHAT_TOOLS,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finishes = []
    pieces = 0
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.finish_reason:
            finishes.append(choice.finish_reason)
        for delta in choice.delta.tool_calls or []:
            assert delta.index is not None
            call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
            if delta.id:
                assert call["id"] is None, "the id comes once"
                call["id"] = delta.id
            if delta.function and delta.function.name:
                assert call["name"] is None, "the name comes once"
                call["name"] = delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
                pieces += 1
    assert finishes == ["tool_calls"]
    assert sorted(calls) == [0, 1]
    got = [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    assert got == CALLS
    assert pieces >= 4, "the arguments arrive in pieces"
    (upstream,) = backend_requests(codex_mock)
    assert_codex_shaped(upstream)
    assert upstream["response"]["sample"] == "codex_responses_tools+synthesized-stream"


def test_models(codex_openai: openai.OpenAI, codex_proxy: Proxy, codex_mock: Mock) -> None:
    ids = [model.id for model in codex_openai.models.list()]
    assert ids == ["gpt-5.3-codex", "gpt-5.2-codex"]
    # The original's `models` field beside the OpenAI list: empty until the
    # Codex CLI has written its model cache.
    raw = codex_openai.models.with_raw_response.list()
    assert [model.id for model in raw.parse()] == ids
    assert raw.http_response.json()["models"] == []
    # The proxy's HOME is `home` beside its log (conftest's `start_proxy`).
    cache = codex_proxy.process.log_path.parent / "home" / ".codex" / "models_cache.json"
    cache.write_text((ROOT / "plugins/codex/testdata/models_cache.json").read_text())
    try:
        raw = codex_openai.models.with_raw_response.list()
        assert [model.id for model in raw.parse()] == ids, "the SDK still parses the list"
        entries = raw.http_response.json()["models"]
        assert [entry["slug"] for entry in entries] == ids
        assert all(entry["supported_reasoning_levels"] for entry in entries)
    finally:
        cache.unlink()
    assert codex_mock.requests() == [], "the plugin's own list"


def test_messages_stream_the_backend_breaks(
    codex_claude: anthropic.Anthropic, codex_proxy: Proxy, codex_mock: Mock
) -> None:
    # The recording up to its second text delta, then a reset.
    codex_mock.fault(kind="reset_mid_stream", after_events=8, path=CODEX_BACKEND)
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with codex_claude.messages.stream(
            model=CLAUDE_MODEL, max_tokens=100, messages=HELLO
        ) as stream:
            for text in stream.text_stream:
                received.append(text)
    # What arrived before the break, then the proxy's `error` event, which
    # the SDK raises.
    assert received == DELTAS[:2]
    assert caught.value.body["type"] == "error"
    assert "mid-stream" in caught.value.body["error"]["message"]
    assert codex_mock.streams()["reset"] == 1
    codex_proxy.assert_alive()


def test_chat_stream_the_backend_breaks(codex_openai: openai.OpenAI, codex_mock: Mock) -> None:
    codex_mock.fault(kind="reset_mid_stream", after_events=8, path=CODEX_BACKEND)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in codex_openai.chat.completions.create(
            model="gpt-5.3-codex", messages=HELLO, stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == DELTAS[:2]
    assert "mid-stream" in caught.value.message


def test_responses_stream_the_backend_breaks(codex_openai: openai.OpenAI, codex_mock: Mock) -> None:
    codex_mock.fault(kind="reset_mid_stream", after_events=8, path=CODEX_BACKEND)
    events = []
    with pytest.raises(openai.APIError) as caught:
        for event in codex_openai.responses.create(
            model="gpt-5.3-codex", input="Hello", stream=True
        ):
            events.append(event)
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == DELTAS[:2]
    assert "response.completed" not in [e.type for e in events]
    assert "mid-stream" in caught.value.message


def test_messages(codex_claude: anthropic.Anthropic, codex_mock: Mock) -> None:
    message = codex_claude.messages.create(
        model=CLAUDE_MODEL,
        max_tokens=1000,
        system="Be brief.",
        metadata={"user_id": "user_abc_account_def_session_ghi"},
        messages=HELLO,
        # As Claude Code sends it (this SDK has no such parameter).
        extra_body={"temperature": 1},
    )
    assert message.model == CLAUDE_MODEL
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == TEXT
    assert (message.usage.input_tokens, message.usage.output_tokens) == (63, 15)
    assert message.usage.cache_read_input_tokens == 2176
    (upstream,) = backend_requests(codex_mock)
    body = assert_codex_shaped(upstream)
    assert body["model"] == "gpt-5.3-codex"
    assert body["instructions"].endswith("\n\nBe brief.")
    assert "user_abc" not in upstream["body_text"]


def test_messages_stream(codex_claude: anthropic.Anthropic, codex_mock: Mock) -> None:
    with codex_claude.messages.stream(model=CLAUDE_MODEL, max_tokens=1000, messages=HELLO) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert deltas == DELTAS
    assert final.content[0].text == TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 15
    (upstream,) = backend_requests(codex_mock)
    assert_codex_shaped(upstream)


def tool_uses(message: anthropic.types.Message) -> list[tuple[str, str, dict]]:
    return [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]


def test_messages_tool_use_stream(codex_claude: anthropic.Anthropic, codex_mock: Mock) -> None:
    with codex_claude.messages.stream(
        model=CLAUDE_MODEL,
        max_tokens=1000,
        tools=ANTHROPIC_TOOLS,
        messages=[{"role": "user", "content": "Weather in New York, and how far is it from LA?"}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert [e.content_block.name for e in events if e.type == "content_block_start"] == [
        "get_weather",
        "calculate_distance",
    ]
    assert len([e for e in events if e.type == "input_json"]) >= 4, "the input arrives in pieces"
    assert final.stop_reason == "tool_use"
    assert tool_uses(final) == CALLS
    (upstream,) = backend_requests(codex_mock)
    assert_codex_shaped(upstream)


def test_messages_multi_turn_tool_history(
    codex_claude: anthropic.Anthropic, codex_mock: Mock
) -> None:
    """Claude Code's loop: the model calls tools, the client runs them and
    sends the whole history back; the backend sees one conversation."""

    def system(cch: str) -> list[dict]:
        # Claude Code's billing line changes every request.
        return [
            {
                "type": "text",
                "text": f"x-anthropic-billing-header: cc_version=2.1.37; cc_entrypoint=cli; cch={cch};",
            },
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        ]

    question = {
        "role": "user",
        "content": [{"type": "text", "text": "Weather in New York, and how far is it from LA?"}],
    }
    first = codex_claude.messages.create(
        model=CLAUDE_MODEL,
        max_tokens=1000,
        system=system("11111"),
        tools=ANTHROPIC_TOOLS,
        messages=[question],
        metadata={"user_id": "user_abc_account_def_session_ghi"},
    )
    assert first.stop_reason == "tool_use"
    assert tool_uses(first) == CALLS
    results = [
        {"type": "tool_result", "tool_use_id": call_id, "content": f"result of {name}"}
        for call_id, name, _ in tool_uses(first)
    ]
    with codex_claude.messages.stream(
        model=CLAUDE_MODEL,
        max_tokens=1000,
        system=system("22222"),
        tools=ANTHROPIC_TOOLS,
        metadata={"user_id": "user_abc_account_def_session_ghi"},
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [*results, {"type": "text", "text": "Summarize."}]},
        ],
    ) as stream:
        second = stream.get_final_message()
    assert tool_uses(second) == CALLS

    one, two = backend_requests(codex_mock)
    first_body, second_body = assert_codex_shaped(one), assert_codex_shaped(two)
    assert one["headers"]["session_id"] == two["headers"]["session_id"], "one session"
    assert first_body["prompt_cache_key"] == second_body["prompt_cache_key"]
    assert "x-anthropic-billing-header" not in second_body["instructions"]
    items = [
        (item["type"], item.get("role") or item.get("call_id"), item.get("name"))
        for item in second_body["input"]
    ]
    (weather_id, weather, _), (distance_id, distance, _) = CALLS
    assert items == [
        ("message", "user", None),
        ("function_call", weather_id, weather),
        ("function_call", distance_id, distance),
        ("function_call_output", weather_id, None),
        ("function_call_output", distance_id, None),
        ("message", "user", None),
    ]
    calls = [item for item in second_body["input"] if item["type"] == "function_call"]
    assert [json.loads(call["arguments"]) for call in calls] == [args for _, _, args in CALLS]
    outputs = [
        item["output"] for item in second_body["input"] if item["type"] == "function_call_output"
    ]
    assert outputs == [f"result of {weather}", f"result of {distance}"]
