"""The Anthropic Messages surface: request checks, decoding, answers, stream events and errors."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event

from odock.errors import (
    BudgetExceeded,
    InvalidRequestBody,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    UnsupportedParameter,
    UpstreamError,
    UpstreamRejected,
)
from odock.llm.types import (
    BlockStop,
    FinishReason,
    GenerationRequest,
    GenerationResponse,
    Image,
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
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolResult,
    UsageUpdate,
)
from odock.llm.upstream import Usage
from odock.surfaces import anthropic_messages as surface
from odock.surfaces.anthropic_messages import ANTHROPIC_CLIENT

STREAM_EVENT = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}], **fields}


# --- check_request -----------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["model", "messages", "max_tokens"])
def test_required_fields(missing: str) -> None:
    """A body without model, messages or max_tokens is refused naming the field."""
    body = _body()
    del body[missing]
    with pytest.raises(InvalidRequestBody) as caught:
        surface.check_request(body)
    assert caught.value.param == missing


def test_count_tokens_needs_no_max_tokens() -> None:
    """count_tokens bodies are checked without max_tokens, but still need messages."""
    body = _body()
    del body["max_tokens"]
    surface.check_count_tokens_request(body)
    with pytest.raises(InvalidRequestBody) as caught:
        surface.check_count_tokens_request({"model": "m"})
    assert caught.value.param == "messages"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": "hot"}, "temperature"),
        ({"system": 3}, "system"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"thinking": {"type": "enabled", "budget_tokens": "many"}}, "thinking.budget_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2**31}, "max_tokens"),
        ({"top_k": -1}, "top_k"),
        ({"stop_sequences": ["a", 1]}, "stop_sequences"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1023}}, "thinking.budget_tokens"),
        ({"model": " "}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ],
)
def test_invalid_fields_are_named(fields: dict[str, Any], param: str) -> None:
    """A wrong type, an integer out of range or a malformed message is a 400 naming the field."""
    with pytest.raises(InvalidRequestBody) as caught:
        surface.check_request(_body(**fields))
    assert caught.value.param == param


def test_valid_request_passes() -> None:
    """A full, well-formed request passes the checks."""
    surface.check_request(
        _body(
            system=[{"type": "text", "text": "Be brief."}],
            thinking={"type": "enabled", "budget_tokens": 1024},
            top_k=5,
            tools=[{"name": "f", "input_schema": {"type": "object"}}],
            tool_choice={"type": "auto"},
        )
    )


def test_estimates() -> None:
    """The estimate grows with system, messages and tools; max_tokens is read as asked."""
    small = surface.estimate_input_tokens(_body())
    tools = [{"name": "lookup", "description": "x" * 400, "input_schema": {"type": "object"}}]
    large = surface.estimate_input_tokens(_body(system="s" * 400, tools=tools))
    assert small >= 1
    assert large >= small + 200
    assert surface.asked_max_tokens(_body()) == 100
    assert surface.asked_max_tokens({"max_tokens": True}) is None


# --- decode_request ----------------------------------------------------------------------------


def test_decode_fields() -> None:
    """Sampling, stop sequences, thinking, metadata and stream map to the gateway request."""
    request = ANTHROPIC_CLIENT.decode_request(
        _body(
            system="Be brief.",
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            stop_sequences=["END"],
            thinking={"type": "enabled", "budget_tokens": 2048},
            metadata={"user_id": "u-1"},
            stream=True,
            cache_control={"type": "ephemeral"},
        )
    )
    assert request.system == [Text("Be brief.")]
    assert (request.temperature, request.top_p, request.top_k) == (0.5, 0.9, 40)
    assert request.stop == ["END"]
    assert request.max_tokens == 100
    assert request.reasoning == ReasoningConfig(budget_tokens=2048)
    assert request.user == "u-1"
    assert request.stream is True


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        ({"type": "disabled"}, ReasoningConfig(enabled=False)),
        ({"type": "adaptive"}, ReasoningConfig()),
    ],
)
def test_decode_thinking_modes(thinking: dict[str, Any], expected: ReasoningConfig) -> None:
    """Disabled thinking is reasoning off; adaptive is reasoning at the model's discretion."""
    assert ANTHROPIC_CLIENT.decode_request(_body(thinking=thinking)).reasoning == expected


def test_decode_system_blocks_drop_cache_control() -> None:
    """System text blocks become system parts; their cache_control hints are dropped."""
    system = [
        {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "B"},
    ]
    assert ANTHROPIC_CLIENT.decode_request(_body(system=system)).system == [Text("A"), Text("B")]


def test_decode_blocks_and_tool_round_trip() -> None:
    """Images, tool use, thinking and tool results decode in order; a mixed user turn is split."""
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [{"type": "text", "text": "boom"}],
                },
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]
    request = ANTHROPIC_CLIENT.decode_request(_body(messages=messages))
    assert [m.role for m in request.messages] == ["user", "assistant", "tool", "user"]
    assert request.messages[0].parts == [
        Text("Weather?"),
        Image(data="AAAA", media_type="image/png"),
        Image(url="https://x.example/a.png"),
    ]
    assert request.messages[1].parts == [
        Reasoning("hmm", signature="sig"),
        Reasoning("", redacted="opaque"),
        ToolCall("toolu_1", "weather", json.dumps({"city": "Paris"})),
    ]
    assert request.messages[2].parts == [
        ToolResult("toolu_1", [Text("18C")]),
        ToolResult("toolu_2", [Text("boom")], is_error=True),
    ]
    assert request.messages[3].parts == [Text("Thanks")]


def test_decode_tools_and_choices() -> None:
    """Tools keep name, description and schema; tool_choice maps, any → required, no parallel."""
    tools = [
        {"name": "f", "description": "d", "input_schema": {"type": "object"}, "cache_control": {"type": "x"}}
    ]
    choices = {
        "auto": ToolChoice("auto"),
        "any": ToolChoice("required"),
        "none": ToolChoice("none"),
    }
    for kind, expected in choices.items():
        request = ANTHROPIC_CLIENT.decode_request(_body(tools=tools, tool_choice={"type": kind}))
        assert request.tool_choice == expected
        assert request.parallel_tool_calls is None
    named = ANTHROPIC_CLIENT.decode_request(
        _body(tools=tools, tool_choice={"type": "tool", "name": "f", "disable_parallel_tool_use": True})
    )
    assert named.tool_choice == ToolChoice("tool", "f")
    assert named.parallel_tool_calls is False
    assert named.tools[0].name == "f"
    assert named.tools[0].description == "d"
    assert named.tools[0].parameters == {"type": "object"}


def test_decode_structured_output() -> None:
    """output_config.format json_schema is the gateway's json_schema response format."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = ANTHROPIC_CLIENT.decode_request(
        _body(output_config={"format": {"type": "json_schema", "schema": schema}})
    )
    assert request.response_format == ResponseFormat(type="json_schema", schema=schema)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"container": "c1"}, "container"),
        ({"mcp_servers": []}, "mcp_servers"),
        ({"service_tier": "auto"}, "service_tier"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools"),
        ({"tools": [{"name": "f", "input_schema": {}, "input_examples": []}]}, "tools[0].input_examples"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}}, "thinking.display"),
        ({"output_config": {"effort": "high"}}, "output_config.effort"),
        ({"metadata": {"tenant": "t"}}, "metadata.tenant"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {"type": "text", "data": "x"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "x", "citations": [{"a": 1}]}]}
                ]
            },
            "messages[0].content[0].citations",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            },
            "messages[0].content[0].source",
        ),
    ],
)
def test_unexpressible_fields_are_refused(fields: dict[str, Any], param: str) -> None:
    """A field the gateway cannot carry to another vendor is a 400 unsupported_parameter naming it."""
    with pytest.raises(UnsupportedParameter) as caught:
        ANTHROPIC_CLIENT.decode_request(_body(**fields))
    assert caught.value.param == param
    assert caught.value.code == "unsupported_parameter"


# --- encode_response ---------------------------------------------------------------------------


def _response(
    parts: list[Any], finish: FinishReason = FinishReason.STOP, raw: str | None = None
) -> GenerationResponse:
    usage = Usage(
        prompt_tokens=30, completion_tokens=9, total_tokens=39, cached_tokens=5, cache_write_tokens=4
    )
    return GenerationResponse(
        id="chatcmpl-1", model="gpt-x", parts=parts, finish_reason=finish, usage=usage, raw_finish_reason=raw
    )


def test_encode_response_is_an_sdk_message() -> None:
    """The answer validates as the SDK's Message, tool input parsed, usage split Anthropic's way."""
    parts = [
        Reasoning("why", signature="sig"),
        Reasoning("", redacted="opaque"),
        Text("Calling."),
        ToolCall("call_1", "weather", '{"city": "Paris"}'),
    ]
    payload = ANTHROPIC_CLIENT.encode_response(_response(parts, FinishReason.TOOL_CALLS))
    message = anthropic.types.Message.model_validate(payload)
    assert message.id == "msg_chatcmpl-1"
    assert [block.type for block in message.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
    assert payload["content"][3]["input"] == {"city": "Paris"}
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 21
    assert message.usage.output_tokens == 9
    assert message.usage.cache_read_input_tokens == 5
    assert message.usage.cache_creation_input_tokens == 4


@pytest.mark.parametrize(
    ("finish", "raw", "expected"),
    [
        (FinishReason.STOP, "stop", "end_turn"),
        (FinishReason.LENGTH, "length", "max_tokens"),
        (FinishReason.LENGTH, "model_context_window_exceeded", "model_context_window_exceeded"),
        (FinishReason.STOP_SEQUENCE, None, "stop_sequence"),
        (FinishReason.TOOL_CALLS, None, "tool_use"),
        (FinishReason.CONTENT_FILTER, "content_filter", "refusal"),
        (FinishReason.OTHER, "pause_turn", "pause_turn"),
        (FinishReason.OTHER, "RECITATION", "end_turn"),
    ],
)
def test_stop_reasons(finish: FinishReason, raw: str | None, expected: str) -> None:
    """Every finish reason has its Anthropic stop_reason."""
    payload = ANTHROPIC_CLIENT.encode_response(_response([Text("x")], finish, raw))
    assert payload["stop_reason"] == expected


def test_tool_arguments_that_are_not_an_object_are_an_upstream_error() -> None:
    """An upstream's tool call with broken arguments is the upstream's fault (502), not the client's."""
    with pytest.raises(UpstreamError):
        ANTHROPIC_CLIENT.encode_response(_response([ToolCall("c", "f", "[1")]))


# --- stream encoder ----------------------------------------------------------------------------


def _encode(events: list[StreamEvent]) -> list[dict[str, Any]]:
    request = GenerationRequest(model="claude-x", messages=[])
    encoder = ANTHROPIC_CLIENT.stream_encoder(request)
    out = [payload for event in events for payload in encoder.encode(event)]
    return out + encoder.finish()


def _validated(payloads: list[dict[str, Any]]) -> list[str]:
    """Each event validated with the SDK's stream event types (ping has none), its type returned."""
    for payload in payloads:
        if payload["type"] != "ping":
            STREAM_EVENT.validate_python(payload)
    return [payload["type"] for payload in payloads]


def test_stream_event_sequence_with_usage_last() -> None:
    """Usage arriving after the finish (OpenAI's order) is in message_delta; the order is Anthropic's."""
    final = Usage(prompt_tokens=25, completion_tokens=6, total_tokens=31, cached_tokens=5)
    payloads = _encode(
        [
            StreamStart("chatcmpl-9", "gpt-x"),
            ReasoningStart(0),
            ReasoningDelta(0, text="think"),
            ReasoningDelta(0, signature="sig"),
            BlockStop(0),
            TextStart(1),
            TextDelta(1, "Hel"),
            TextDelta(1, "lo"),
            BlockStop(1),
            ToolCallStart(2, "call_1", "weather"),
            ToolCallDelta(2, '{"city":'),
            ToolCallDelta(2, '"Paris"}'),
            StreamFinish(FinishReason.TOOL_CALLS, raw_finish_reason="tool_calls"),
            UsageUpdate(final),
        ]
    )
    assert _validated(payloads) == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",  # the open tool block, stopped before message_delta
        "message_delta",
        "message_stop",
    ]
    assert payloads[0]["message"]["id"] == "msg_chatcmpl-9"
    assert payloads[4]["delta"] == {"type": "signature_delta", "signature": "sig"}
    assert payloads[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert payloads[-2]["usage"] == {
        "input_tokens": 20,
        "output_tokens": 6,
        "cache_read_input_tokens": 5,
        "cache_creation_input_tokens": 0,
    }


def test_stream_accumulates_in_the_sdk() -> None:
    """The SDK's own accumulator rebuilds the message from the encoded events."""
    payloads = _encode(
        [
            StreamStart("msg_1", "claude-x"),
            UsageUpdate(Usage(prompt_tokens=25, completion_tokens=1, cached_tokens=5)),
            TextStart(0),
            TextDelta(0, "Hi"),
            BlockStop(0),
            ToolCallStart(1, "toolu_1", "weather"),
            ToolCallDelta(1, '{"city"'),
            ToolCallDelta(1, ': "Paris"}'),
            BlockStop(1),
            StreamFinish(FinishReason.TOOL_CALLS, raw_finish_reason="tool_use"),
            UsageUpdate(Usage(prompt_tokens=25, completion_tokens=12, cached_tokens=5)),
        ]
    )
    assert payloads[0]["message"]["usage"]["input_tokens"] == 20  # the start's usage is in message_start
    snapshot = None
    buffers: dict[int, bytes] = {}
    for payload in payloads:
        if payload["type"] != "ping":
            snapshot = accumulate_event(
                event=STREAM_EVENT.validate_python(payload), current_snapshot=snapshot, json_bufs=buffers
            )
    assert snapshot is not None
    text, call = snapshot.content
    assert text.type == "text"
    assert text.text == "Hi"
    assert call.type == "tool_use"
    assert call.input == {"city": "Paris"}
    assert snapshot.stop_reason == "tool_use"
    assert snapshot.usage.output_tokens == 12


def test_empty_stream_still_opens_and_closes() -> None:
    """A stream with no event still yields a valid message_start … message_stop."""
    payloads = _encode([])
    assert _validated(payloads) == ["message_start", "ping", "message_delta", "message_stop"]
    assert payloads[0]["message"]["model"] == "claude-x"


def test_redacted_reasoning_streams_as_redacted_thinking() -> None:
    """A redacted reasoning block opens as redacted_thinking with its data."""
    payloads = _encode([StreamStart("m", "c"), ReasoningStart(0, redacted="opaque"), BlockStop(0)])
    _validated(payloads)
    assert payloads[2]["content_block"] == {"type": "redacted_thinking", "data": "opaque"}


def test_sse_framing() -> None:
    """Events are framed with their type as the SSE event name."""
    assert surface.sse_event({"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'


# --- errors, models, count_tokens --------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidRequestBody("bad", param="max_tokens"), "invalid_request_error"),
        (Unauthorized(), "authentication_error"),
        (BudgetExceeded(), "billing_error"),
        (ModelNotFound(), "invalid_request_error"),
        (PayloadTooLarge(), "request_too_large"),
        (RateLimited(), "rate_limit_error"),
        (UpstreamError("down"), "api_error"),
        (UpstreamRejected("nope", upstream_status=422), "invalid_request_error"),
    ],
)
def test_error_payload(error: Any, kind: str) -> None:
    """Errors take Anthropic's shape and type by status, keeping Odock's code and param."""
    payload = surface.error_payload(error)
    assert payload["type"] == "error"
    assert payload["error"]["type"] == kind
    assert payload["error"]["code"] == error.code
    assert payload["error"]["message"] == error.message
    assert payload["error"].get("param") == error.param
    if kind != "request_too_large":  # documented by Anthropic, absent from the SDK's union
        anthropic.types.ErrorResponse.model_validate(payload)


def test_models_page_validates() -> None:
    """The model list is Anthropic's page shape with RFC 3339 creation times."""
    page = surface.models_page([("claude-a", 0), ("claude-b", 1_700_000_000)])
    models = [anthropic.types.ModelInfo.model_validate(item) for item in page["data"]]
    assert [m.id for m in models] == ["claude-a", "claude-b"]
    assert page["data"][1]["created_at"] == "2023-11-14T22:13:20Z"
    assert (page["first_id"], page["last_id"], page["has_more"]) == ("claude-a", "claude-b", False)
    assert surface.models_page([])["first_id"] is None


def test_count_tokens_payload() -> None:
    """The count answer is the SDK's MessageTokensCount."""
    payload = surface.count_tokens_payload(42)
    assert anthropic.types.MessageTokensCount.model_validate(payload).input_tokens == 42
