"""The upstream side of OpenAI Chat Completions: requests encoded, answers and chunks decoded."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from odock.errors import UnsupportedParameter, UpstreamError
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
    StreamEvent,
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
from odock.llm.upstream import Usage
from odock.providers.adapters.openai_codec import (
    OPENAI_CHAT_UPSTREAM,
    OPENAI_COMPATIBLE_CHAT_UPSTREAM,
    reasoning_effort,
)
from odock.surfaces.openai_chat_codec import OPENAI_CHAT_CLIENT
from tests.unit.llm.test_openai_chat_codec import AGENT_BODY


def _request(**fields: Any) -> GenerationRequest:
    return GenerationRequest(model="odock-model", messages=[Message("user", [Text("hi")])], **fields)


def test_full_request_encodes_to_a_chat_payload() -> None:
    """System, images, a tool round trip and every option are written in OpenAI's fields."""
    request = GenerationRequest(
        model="odock-model",
        system=[Text("Be terse.")],
        messages=[
            Message(
                "user",
                [
                    Text("Look"),
                    Image(data="AAAA", media_type="image/png"),
                    Image(url="https://x/y.jpg", detail="high"),
                ],
            ),
            Message(
                "assistant",
                [
                    Reasoning("hidden"),
                    Text("Checking."),
                    ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
                ],
            ),
            Message("tool", [ToolResult("call_1", [Text("18C")], is_error=True, name="get_weather")]),
        ],
        tools=[Tool("get_weather", "Weather", {"type": "object"}, strict=True), Tool("noop")],
        tool_choice=ToolChoice("tool", "get_weather"),
        parallel_tool_calls=True,
        max_tokens=256,
        temperature=0.5,
        top_p=0.8,
        stop=["END"],
        seed=3,
        presence_penalty=0.0,
        frequency_penalty=0.2,
        response_format=ResponseFormat("json_schema", {"type": "object"}, strict=True),
        reasoning=ReasoningConfig(budget_tokens=4000),
        user="u-1",
    )
    payload = OPENAI_CHAT_UPSTREAM.encode_request(request, "gpt-4o-2024-08-06", stream=False)
    assert payload == {
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.jpg", "detail": "high"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": {"type": "object"},
                    "strict": True,
                },
            },
            {"type": "function", "function": {"name": "noop"}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": True,
        "max_completion_tokens": 256,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": ["END"],
        "seed": 3,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": {"type": "object"}, "strict": True},
        },
        "reasoning_effort": "medium",
        "user": "u-1",
    }


def test_stream_asks_for_usage_and_compatible_servers_get_max_tokens() -> None:
    """A stream always asks for the usage chunk; the compatible codec names the limit max_tokens."""
    payload = OPENAI_COMPATIBLE_CHAT_UPSTREAM.encode_request(_request(max_tokens=10), "m", stream=True)
    assert payload["stream"] is True
    assert payload["stream_options"] == {"include_usage": True}
    assert payload["max_tokens"] == 10
    assert "max_completion_tokens" not in payload


def test_tool_results_precede_the_rest_of_their_turn() -> None:
    """An Anthropic-style user turn (results then text) becomes tool messages, then a user message."""
    turn = Message(
        "user", [ToolResult("a", [Text("1"), Text("2")]), ToolResult("b", [Text("3")]), Text("thanks")]
    )
    payload = OPENAI_CHAT_UPSTREAM.encode_request(
        GenerationRequest(model="m", messages=[turn]), "m", stream=False
    )
    assert payload["messages"] == [
        {
            "role": "tool",
            "tool_call_id": "a",
            "content": [{"type": "text", "text": "1"}, {"type": "text", "text": "2"}],
        },
        {"role": "tool", "tool_call_id": "b", "content": "3"},
        {"role": "user", "content": "thanks"},
    ]


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (_request(top_k=40), "top_k"),
        (
            GenerationRequest(
                model="m", messages=[Message("tool", [ToolResult("a", [Image(url="https://x")])])]
            ),
            "messages[0].content",
        ),
        (
            GenerationRequest(model="m", messages=[Message("assistant", [Image(url="https://x")])]),
            "messages[0].content[0]",
        ),
        (
            GenerationRequest(model="m", messages=[Message("user", [ToolCall("c", "f", "{}")])]),
            "messages[0].content[0]",
        ),
    ],
)
def test_what_chat_cannot_express_is_refused(request_: GenerationRequest, param: str) -> None:
    """top_k, images in tool results or assistant turns are 400 unsupported_parameter."""
    with pytest.raises(UnsupportedParameter) as caught:
        OPENAI_CHAT_UPSTREAM.encode_request(request_, "m", stream=False)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("config", "effort"),
    [
        (None, None),
        (ReasoningConfig(budget_tokens=1024), "low"),
        (ReasoningConfig(budget_tokens=1025), "medium"),
        (ReasoningConfig(budget_tokens=8192), "medium"),
        (ReasoningConfig(budget_tokens=8193), "high"),
        (ReasoningConfig(effort="minimal", budget_tokens=100000), "minimal"),
        (ReasoningConfig(budget_tokens=2000, enabled=False), None),
        (ReasoningConfig(effort="none", enabled=False), "none"),
        (ReasoningConfig(), None),
    ],
)
def test_reasoning_budget_becomes_an_effort(config: ReasoningConfig | None, effort: str | None) -> None:
    """Budgets map to low/medium/high at 1024 and 8192 tokens; an explicit effort wins."""
    assert reasoning_effort(config) == effort


def test_plain_options_take_their_simple_forms() -> None:
    """String tool_choice modes, json_object and several system texts are written as OpenAI does."""
    request = _request(
        system=[Text("a"), Text("b")],
        tools=[Tool("f")],
        tool_choice=ToolChoice("none"),
        response_format=ResponseFormat("json_object"),
    )
    payload = OPENAI_CHAT_UPSTREAM.encode_request(request, "m", stream=False)
    assert payload["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    }
    assert payload["tool_choice"] == "none"
    assert payload["response_format"] == {"type": "json_object"}
    assert "stream" not in payload


def test_tool_options_go_only_with_tools() -> None:
    """Without tools, tool_choice and parallel_tool_calls are left out (OpenAI refuses them alone)."""
    request = _request(tool_choice=ToolChoice("required"), parallel_tool_calls=False)
    payload = OPENAI_CHAT_UPSTREAM.encode_request(request, "m", stream=False)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & payload.keys()


def _completion(message: dict[str, Any], finish_reason: str = "stop", **usage_extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 8,
            "total_tokens": 28,
            "prompt_tokens_details": {"cached_tokens": 6},
            "completion_tokens_details": {"reasoning_tokens": 3},
            **usage_extra,
        },
    }


def test_completion_decodes_into_parts_and_usage() -> None:
    """Reasoning, text and tool calls become parts in order; usage keeps cached and reasoning tokens."""
    payload = _completion(
        {
            "role": "assistant",
            "content": "Let me check.",
            "reasoning_content": "thinking",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}
            ],
        },
        "tool_calls",
    )
    ChatCompletion.model_validate(payload)
    response = OPENAI_CHAT_UPSTREAM.decode_response(payload)
    assert response.id == "chatcmpl-1"
    assert response.model == "gpt-4o-2024-08-06"
    assert response.created == 1700000000
    assert response.parts == [
        Reasoning("thinking"),
        Text("Let me check."),
        ToolCall("call_1", "f", '{"x":1}'),
    ]
    assert response.finish_reason == FinishReason.TOOL_CALLS
    assert response.raw_finish_reason == "tool_calls"
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (20, 8, 28)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (6, 3)


def test_reasoning_field_and_refusal_are_read() -> None:
    """``reasoning`` (OpenRouter, newer vLLM) is reasoning; a refusal is the model's text."""
    payload = _completion(
        {"role": "assistant", "content": None, "refusal": "I can't.", "reasoning": "r"}, "stop"
    )
    response = OPENAI_CHAT_UPSTREAM.decode_response(payload)
    assert response.parts == [Reasoning("r"), Text("I can't.")]


@pytest.mark.parametrize(
    ("raw", "finish"),
    [
        ("stop", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("function_call", FinishReason.TOOL_CALLS),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("abort", FinishReason.OTHER),
    ],
)
def test_finish_reasons_map_from_openai(raw: str, finish: FinishReason) -> None:
    """Each OpenAI finish reason has ours; an unknown one is OTHER with its raw value kept."""
    response = OPENAI_CHAT_UPSTREAM.decode_response(_completion({"role": "assistant", "content": "x"}, raw))
    assert (response.finish_reason, response.raw_finish_reason) == (finish, raw)


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "x", "choices": []},
        {"id": "x", "choices": [{"index": 0, "finish_reason": "stop"}]},
        _completion({"role": "assistant", "tool_calls": ["call"]}),
    ],
)
def test_malformed_completion_is_an_upstream_error(payload: dict[str, Any]) -> None:
    """No choice, no message or a tool call without a function cannot be translated: 502, not a crash."""
    with pytest.raises(UpstreamError):
        OPENAI_CHAT_UPSTREAM.decode_response(payload)


def test_decode_then_encode_gives_back_the_client_body() -> None:
    """An OpenAI body through the client decode and the upstream encode keeps every carried field."""
    body = copy.deepcopy(AGENT_BODY)
    payload = OPENAI_CHAT_UPSTREAM.encode_request(
        OPENAI_CHAT_CLIENT.decode_request(body), "gpt-4o", stream=True
    )
    expected = copy.deepcopy(AGENT_BODY)
    for dropped in ("max_tokens", "n", "logprobs"):  # superseded by max_completion_tokens; defaults
        del expected[dropped]
    expected["messages"][:2] = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use tools."}],
        }
    ]
    del expected["messages"][2]["reasoning_content"]  # chat upstreams take no reasoning back
    expected["messages"][4]["content"] = "21C"
    assert payload == expected


# --- streams -----------------------------------------------------------------------------------


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1700000002,
        "model": "gpt-x",
        "choices": choices,
        **extra,
    }


USAGE = {
    "prompt_tokens": 9,
    "completion_tokens": 4,
    "total_tokens": 13,
    "prompt_tokens_details": {"cached_tokens": 2},
    "completion_tokens_details": {"reasoning_tokens": 2},
}
UPSTREAM_CHUNKS = [
    _chunk({"role": "assistant", "content": "", "refusal": None}),
    _chunk({"reasoning_content": "Thinking"}),
    _chunk({"reasoning_content": " more"}),
    _chunk({"content": "Hello"}),
    _chunk({"content": " world"}),
    _chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}
            ]
        }
    ),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
    _chunk(
        {
            "tool_calls": [
                {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}}
            ]
        }
    ),
    _chunk({}, "tool_calls"),
    _chunk(None, usage=USAGE),
]


def _decode_all(chunks: list[dict[str, Any]]) -> list[StreamEvent]:
    decoder = OPENAI_CHAT_UPSTREAM.stream_decoder()
    return [event for chunk in chunks for event in decoder.decode(chunk)] + decoder.finish()


def test_stream_decoder_numbers_blocks_in_order() -> None:
    """Reasoning, text and each tool call are blocks, each closed before the next and before the finish."""
    for chunk in UPSTREAM_CHUNKS:
        ChatCompletionChunk.model_validate(chunk)
    assert _decode_all(UPSTREAM_CHUNKS) == [
        StreamStart("chatcmpl-s", "gpt-x", 1700000002),
        ReasoningStart(0),
        ReasoningDelta(0, "Thinking"),
        ReasoningDelta(0, " more"),
        BlockStop(0),
        TextStart(1),
        TextDelta(1, "Hello"),
        TextDelta(1, " world"),
        BlockStop(1),
        ToolCallStart(2, "call_a", "f"),
        ToolCallDelta(2, '{"a":'),
        ToolCallDelta(2, "1}"),
        BlockStop(2),
        ToolCallStart(3, "call_b", "g"),
        ToolCallDelta(3, "{}"),
        BlockStop(3),
        StreamFinish(FinishReason.TOOL_CALLS, raw_finish_reason="tool_calls"),
        UsageUpdate(Usage.from_openai(USAGE)),
    ]


def test_stream_decoder_skips_azure_prompt_filter_event_and_closes_at_end() -> None:
    """Azure's choice-less first event opens nothing; a stream without finish closes its block."""
    azure_first = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": [],
    }
    events = _decode_all([azure_first, _chunk({"content": "x"})])
    assert events == [
        StreamStart("chatcmpl-s", "gpt-x", 1700000002),
        TextStart(0),
        TextDelta(0, "x"),
        BlockStop(0),
    ]


def test_stream_decoder_refuses_interleaved_tool_calls_and_error_events() -> None:
    """A closed tool call cannot take more arguments; an in-band error is an upstream error."""
    decoder = OPENAI_CHAT_UPSTREAM.stream_decoder()
    decoder.decode(
        _chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]})
    )
    decoder.decode(
        _chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": ""}}]})
    )
    with pytest.raises(UpstreamError):
        decoder.decode(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    with pytest.raises(UpstreamError, match="boom"):
        OPENAI_CHAT_UPSTREAM.stream_decoder().decode({"error": {"message": "boom", "type": "server_error"}})


def _accumulated(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What an OpenAI client builds from chunks: content, reasoning, tool calls, finish, usage."""
    built: dict[str, Any] = {"content": "", "reasoning": "", "calls": {}, "finish": None, "usage": None}
    for chunk in chunks:
        built["usage"] = chunk.get("usage") or built["usage"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            built["content"] += delta.get("content") or ""
            built["reasoning"] += delta.get("reasoning_content") or ""
            built["finish"] = choice["finish_reason"] or built["finish"]
            for call in delta.get("tool_calls") or []:
                entry = built["calls"].setdefault(call["index"], {"id": None, "name": "", "arguments": ""})
                entry["id"] = call.get("id") or entry["id"]
                entry["name"] += call.get("function", {}).get("name") or ""
                entry["arguments"] += call.get("function", {}).get("arguments") or ""
    return built


def test_stream_decoder_then_encoder_gives_back_the_stream() -> None:
    """Upstream chunks → events → client chunks carry the same content, reasoning, tool calls and usage."""
    encoder = OPENAI_CHAT_CLIENT.stream_encoder(_request(stream=True))
    events = _decode_all(UPSTREAM_CHUNKS)
    produced = [chunk for event in events for chunk in encoder.encode(event)] + encoder.finish()
    for chunk in produced:
        ChatCompletionChunk.model_validate(chunk)
    assert produced[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert _accumulated(produced) == _accumulated(UPSTREAM_CHUNKS)
    assert _accumulated(produced)["calls"][1] == {"id": "call_b", "name": "g", "arguments": "{}"}
    assert produced[-1]["choices"] == []
    assert {chunk["id"] for chunk in produced} == {"chatcmpl-s"}
