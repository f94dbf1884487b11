"""The Anthropic upstream codec: gateway requests as Messages bodies, and Anthropic answers read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pydantic
import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming

from odock.errors import InvalidRequestBody, UnsupportedParameter, UpstreamError, UpstreamRateLimited
from odock.llm.types import (
    BlockStop,
    FinishReason,
    GenerationRequest,
    Image,
    Message,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningStart,
    ResponseFormat,
    StreamFinish,
    StreamStart,
    Text,
    TextDelta,
    TextStart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    UsageUpdate,
)
from odock.providers.adapters.anthropic import usage_from_anthropic
from odock.providers.adapters.anthropic_codec import ANTHROPIC_UPSTREAM, DEFAULT_MAX_TOKENS
from odock.surfaces.anthropic_messages import ANTHROPIC_CLIENT
from tests.fakes import anthropic_server, script

CREATE_PARAMS = pydantic.TypeAdapter(MessageCreateParamsNonStreaming)


def _request(**fields: Any) -> GenerationRequest:
    fields.setdefault("messages", [Message("user", [Text("Hi")])])
    return GenerationRequest(model="odock-model", **fields)


def _validated(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` after validation with the SDK's own request type (its lazy iterables drained)."""
    drained: dict[str, Any] = _drained(CREATE_PARAMS.validate_python(body))
    return drained


def _drained(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _drained(item) for key, item in value.items()}
    if isinstance(value, list | Iterator):
        return [_drained(item) for item in value]
    return value


# --- encode_request ----------------------------------------------------------------------------


def test_encode_minimal_request() -> None:
    """A bare request gets the upstream model id and the default max_tokens Anthropic requires."""
    body = ANTHROPIC_UPSTREAM.encode_request(_request(), "claude-up", stream=False)
    assert _validated(body) == {
        "model": "claude-up",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_encode_fields() -> None:
    """System, sampling, stop, user and stream map to Anthropic's fields."""
    body = ANTHROPIC_UPSTREAM.encode_request(
        _request(
            system=[Text("A"), Text("B")],
            max_tokens=50,
            temperature=0.2,
            top_p=0.8,
            top_k=10,
            stop=["END"],
            user="u-1",
        ),
        "claude-up",
        stream=True,
    )
    assert body["system"] == [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"]) == (50, 0.2, 0.8, 10)
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["stream"] is True


def test_encode_conversation_with_tools() -> None:
    """Tool results become user turns of tool_result blocks, merged with the following user turn."""
    messages = [
        Message("user", [Text("Weather?"), Image(data="AAAA", media_type="image/png")]),
        Message(
            "assistant",
            [
                Reasoning("hmm", signature="sig"),
                Reasoning("", redacted="opaque"),
                Reasoning("unsigned, from another vendor"),
                ToolCall("call_1", "weather", '{"city": "Paris"}'),
                ToolCall("call_2", "time", ""),
            ],
        ),
        Message(
            "tool",
            [
                ToolResult("call_1", [Text("18C")]),
                ToolResult("call_2", [Text("boom"), Image(url="https://x.example/i.png")], is_error=True),
                ToolResult("call_3", []),
            ],
        ),
        Message("user", [Text("Thanks"), Image(url="data:image/jpeg;base64,QUJD")]),
    ]
    body = _validated(ANTHROPIC_UPSTREAM.encode_request(_request(messages=messages), "m", stream=False))
    assert [turn["role"] for turn in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "time", "input": {}},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18C"}]},
        {
            "type": "tool_result",
            "tool_use_id": "call_2",
            "content": [
                {"type": "text", "text": "boom"},
                {"type": "image", "source": {"type": "url", "url": "https://x.example/i.png"}},
            ],
            "is_error": True,
        },
        {"type": "tool_result", "tool_use_id": "call_3"},
        {"type": "text", "text": "Thanks"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("tool", "f"), False, {"type": "tool", "name": "f", "disable_parallel_tool_use": True}),
        (ToolChoice("none"), None, {"type": "none"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_encode_tool_choice(
    choice: ToolChoice | None, parallel: bool | None, expected: dict[str, Any]
) -> None:
    """Tool choices map (required → any); parallel_tool_calls=False → disable_parallel_tool_use."""
    tools = [Tool("f", "does f", {"type": "object", "properties": {}}, strict=True)]
    request = _request(tools=tools, tool_choice=choice, parallel_tool_calls=parallel)
    body = _validated(ANTHROPIC_UPSTREAM.encode_request(request, "m", stream=False))
    assert body["tool_choice"] == expected
    assert body["tools"] == [
        {
            "name": "f",
            "input_schema": {"type": "object", "properties": {}},
            "description": "does f",
            "strict": True,
        }
    ]


@pytest.mark.parametrize(
    ("reasoning", "thinking", "max_tokens"),
    [
        (
            ReasoningConfig(budget_tokens=2000),
            {"type": "enabled", "budget_tokens": 2000},
            DEFAULT_MAX_TOKENS + 2000,
        ),
        (
            ReasoningConfig(effort="low"),
            {"type": "enabled", "budget_tokens": 1024},
            DEFAULT_MAX_TOKENS + 1024,
        ),
        (
            ReasoningConfig(effort="medium"),
            {"type": "enabled", "budget_tokens": 4096},
            DEFAULT_MAX_TOKENS + 4096,
        ),
        (
            ReasoningConfig(effort="high"),
            {"type": "enabled", "budget_tokens": 16384},
            DEFAULT_MAX_TOKENS + 16384,
        ),
        (ReasoningConfig(), {"type": "adaptive"}, DEFAULT_MAX_TOKENS),
        (ReasoningConfig(enabled=False), {"type": "disabled"}, DEFAULT_MAX_TOKENS),
    ],
)
def test_encode_reasoning(reasoning: ReasoningConfig, thinking: dict[str, Any], max_tokens: int) -> None:
    """A budget or an effort becomes a thinking budget, max_tokens leaving room for the answer."""
    body = _validated(ANTHROPIC_UPSTREAM.encode_request(_request(reasoning=reasoning), "m", stream=False))
    assert body["thinking"] == thinking
    assert body["max_tokens"] == max_tokens


def test_encode_json_schema_output() -> None:
    """A json_schema response format is Anthropic's structured output format."""
    schema = {"type": "object"}
    request = _request(response_format=ResponseFormat(type="json_schema", schema=schema, name="x"))
    body = _validated(ANTHROPIC_UPSTREAM.encode_request(request, "m", stream=False))
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"seed": 1}, "seed"),
        ({"presence_penalty": 0.1}, "presence_penalty"),
        ({"frequency_penalty": 0.1}, "frequency_penalty"),
        ({"response_format": ResponseFormat(type="json_object")}, "response_format"),
        ({"reasoning": ReasoningConfig(effort="xhigh")}, "reasoning_effort"),
    ],
)
def test_encode_refusals(fields: dict[str, Any], param: str) -> None:
    """Fields Anthropic cannot express are refused with unsupported_parameter naming them."""
    with pytest.raises(UnsupportedParameter) as caught:
        ANTHROPIC_UPSTREAM.encode_request(_request(**fields), "m", stream=False)
    assert caught.value.param == param


def test_encode_refuses_broken_tool_arguments() -> None:
    """Tool-call arguments in the history must be a JSON object."""
    messages = [Message("assistant", [ToolCall("c", "f", "[1, 2]")])]
    with pytest.raises(InvalidRequestBody):
        ANTHROPIC_UPSTREAM.encode_request(_request(messages=messages), "m", stream=False)


def test_client_decode_then_upstream_encode_round_trips() -> None:
    """An Anthropic body decoded and re-encoded keeps its meaning (cache_control aside)."""
    original = {
        "model": "m",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "S"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Q"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "R"}]}
                ],
            },
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["X"],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    again = ANTHROPIC_UPSTREAM.encode_request(ANTHROPIC_CLIENT.decode_request(original), "m", stream=False)
    assert again == original


# --- decode_response ---------------------------------------------------------------------------


def test_decode_fake_messages() -> None:
    """The fake's answers (validated by the SDK) decode to parts, finish reason and usage."""
    body = {
        "model": script.ECHO_MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    payload = anthropic_server.message_of(body)
    anthropic.types.Message.model_validate(payload)
    response = ANTHROPIC_UPSTREAM.decode_response(payload)
    assert response.parts == [
        Reasoning(script.REASONING_TEXT, signature=anthropic_server.SIGNATURE),
        ToolCall(script.TOOL_CALL_ID, "weather", json.dumps(script.TOOL_ARGUMENTS)),
    ]
    assert response.finish_reason is FinishReason.TOOL_CALLS
    assert response.raw_finish_reason == "tool_use"
    assert response.usage.prompt_tokens == script.PROMPT_TOKENS
    assert response.usage.cached_tokens == script.CACHED_TOKENS
    assert response.usage.completion_tokens == script.TOOL_CALL_TOKENS + script.REASONING_TOKENS
    assert response.usage.reasoning_tokens == script.REASONING_TOKENS


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("stop_sequence", FinishReason.STOP_SEQUENCE),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("refusal", FinishReason.CONTENT_FILTER),
        ("pause_turn", FinishReason.OTHER),
        ("model_context_window_exceeded", FinishReason.LENGTH),
    ],
)
def test_decode_stop_reasons(stop: str, finish: FinishReason) -> None:
    """Every Anthropic stop_reason has its finish reason, the raw value kept."""
    payload = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [{"type": "redacted_thinking", "data": "x"}, {"type": "text", "text": "t"}],
        "stop_reason": stop,
        "stop_sequence": "END" if stop == "stop_sequence" else None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    response = ANTHROPIC_UPSTREAM.decode_response(payload)
    assert response.finish_reason is finish
    assert response.raw_finish_reason == stop
    assert response.parts[0] == Reasoning("", redacted="x")
    assert response.stop_sequence == ("END" if stop == "stop_sequence" else None)


def test_usage_arithmetic() -> None:
    """Prompt tokens are input + cache reads + cache writes; reads and writes are kept apart."""
    usage = usage_from_anthropic(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 20,
            "cache_creation_input_tokens": 30,
            "output_tokens": 7,
            "output_tokens_details": {"thinking_tokens": 3},
        }
    )
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (60, 20, 30)
    assert (usage.completion_tokens, usage.total_tokens, usage.reasoning_tokens) == (7, 67, 3)
    assert usage_from_anthropic({"input_tokens": -1, "output_tokens": True}).prompt_tokens == 0


def test_decode_refuses_server_tool_blocks() -> None:
    """A block the gateway cannot translate is an upstream error, never silently dropped."""
    payload = {"content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}
    with pytest.raises(UpstreamError):
        ANTHROPIC_UPSTREAM.decode_response(payload)


# --- stream decoder ----------------------------------------------------------------------------


def test_stream_decoder_on_the_fake_stream() -> None:
    """The fake's exact event sequence decodes to block events, a finish and cumulative usage."""
    body = {
        "model": script.ECHO_MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "thinking": {"type": "adaptive"},
    }
    decoder = ANTHROPIC_UPSTREAM.stream_decoder()
    events = [e for payload in anthropic_server.stream_events(body) for e in decoder.decode(payload)]
    events += decoder.finish()
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["StreamStart", "UsageUpdate", "ReasoningStart"]
    assert isinstance(events[0], StreamStart)
    assert events[0].model == script.ECHO_MODEL
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    signatures = [e.signature for e in events if isinstance(e, ReasoningDelta) and e.signature]
    assert (reasoning, signatures) == (script.REASONING_TEXT, [anthropic_server.SIGNATURE])
    assert ToolCallStart(1, script.TOOL_CALL_ID, "weather") in events
    arguments = [e.arguments for e in events if isinstance(e, ToolCallDelta)]
    assert len(arguments) >= 2
    assert json.loads("".join(arguments)) == script.TOOL_ARGUMENTS
    assert [e for e in events if isinstance(e, BlockStop)] == [BlockStop(0), BlockStop(1)]
    finish = next(e for e in events if isinstance(e, StreamFinish))
    assert finish.finish_reason is FinishReason.TOOL_CALLS
    last = events[-1]
    assert isinstance(last, UsageUpdate)
    assert last.usage.prompt_tokens == script.PROMPT_TOKENS  # message_start's input counts kept
    assert last.usage.cached_tokens == script.CACHED_TOKENS
    assert last.usage.completion_tokens == script.TOOL_CALL_TOKENS + script.REASONING_TOKENS


def test_stream_decoder_block_starts_and_unclosed_blocks() -> None:
    """Text and redacted thinking starts decode; ping is ignored; finish() stops open blocks."""
    decoder = ANTHROPIC_UPSTREAM.stream_decoder()
    assert decoder.decode({"type": "ping"}) == []
    assert decoder.decode(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}}
    ) == [TextStart(0), TextDelta(0, "Hi")]
    assert decoder.decode(
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "redacted_thinking", "data": "d"},
        }
    ) == [ReasoningStart(1, redacted="d")]
    assert decoder.decode({"type": "content_block_stop", "index": 1}) == [BlockStop(1)]
    assert decoder.finish() == [BlockStop(0)]


def test_stream_decoder_raises_on_error_events() -> None:
    """An in-band error event raises the mapped upstream error."""
    decoder = ANTHROPIC_UPSTREAM.stream_decoder()
    with pytest.raises(UpstreamError, match="Overloaded") as caught:
        decoder.decode({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert caught.value.upstream_status == 529
    with pytest.raises(UpstreamRateLimited):
        decoder.decode({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
