"""The unified endpoint's surface: its body checked and decoded, its normalised answer encoded."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk

from odock.errors import InvalidRequestBody, UnsupportedParameter
from odock.llm.types import (
    FinishReason,
    GenerationResponse,
    Image,
    Message,
    Reasoning,
    StreamEvent,
    StreamFinish,
    StreamStart,
    Text,
    TextDelta,
    ToolCall,
)
from odock.llm.upstream import Usage
from odock.surfaces.unified import UNIFIED_CLIENT, UnifiedRequest, check_request, provider_matches

BODY: dict[str, Any] = {
    "model": "claude",
    "provider": "anthropic",
    "include_usage": True,
    "top_k": 40,
    "stream": True,
    "messages": [
        {
            "role": "user",
            "content_blocks": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ],
}


def test_body_is_checked_and_summarised() -> None:
    """A valid body says its provider, whether it streams and whether usage is wanted."""
    assert check_request(BODY) == UnifiedRequest(provider="anthropic", stream=True, include_usage=True)
    plain = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream_options": {"include_usage": True},
    }
    assert check_request(plain) == UnifiedRequest(provider=None, stream=False, include_usage=True)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": None}, "model"),
        ({"provider": "openrouter"}, "provider"),
        ({"provider": 3}, "provider"),
        ({"include_usage": "yes"}, "include_usage"),
        ({"top_k": 0}, "top_k"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content_blocks": "x"}]}, "messages[0].content_blocks"),
        (
            {"messages": [{"role": "user", "content": "a", "content_blocks": []}]},
            "messages[0].content_blocks",
        ),
        ({"stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ],
)
def test_invalid_bodies_are_refused_naming_the_field(change: dict[str, Any], param: str) -> None:
    """Each malformed field is a 400 invalid_request_body naming it."""
    with pytest.raises(InvalidRequestBody) as caught:
        check_request({**BODY, **change})
    assert caught.value.param == param


def test_decode_reads_content_blocks_and_top_k() -> None:
    """content_blocks are the message's parts; top_k is carried; Odock's own fields are not refused."""
    request = UNIFIED_CLIENT.decode_request(BODY)
    assert request.messages == [
        Message("user", [Text("What is this?"), Image(data="AAAA", media_type="image/png")])
    ]
    assert request.top_k == 40
    assert request.stream is True


def test_decode_refuses_what_chat_refuses() -> None:
    """The chat refusals hold here too (metadata has nowhere to go)."""
    with pytest.raises(UnsupportedParameter) as caught:
        UNIFIED_CLIENT.decode_request({**BODY, "metadata": {"team": "a"}})
    assert caught.value.param == "metadata"


@pytest.mark.parametrize(
    ("field", "provider_type", "matches"),
    [
        (None, "GOOGLE", True),
        ("gemini", "GOOGLE", True),
        ("anthropic", "ANTHROPIC", True),
        ("openai", "AZURE_OPENAI", False),
        ("azure_openai", "AZURE_OPENAI", True),
        ("vllm", "OPENAI", False),
        ("mock", "MOCK", True),
    ],
)
def test_provider_field_pins_the_provider_type(field: str | None, provider_type: str, matches: bool) -> None:
    """The provider field matches only its own provider type (gemini is GOOGLE)."""
    assert provider_matches(field, provider_type) is matches


def test_response_is_the_normalised_json() -> None:
    """Content joined, the provider's stop reason, token classes, blocks and tool calls."""
    response = GenerationResponse(
        id="msg_1",
        model="claude-sonnet-4-5",
        parts=[Reasoning("hmm"), Text("Hi "), Text("there"), ToolCall("t1", "f", '{"a":1}')],
        finish_reason=FinishReason.TOOL_CALLS,
        usage=Usage(
            prompt_tokens=24, completion_tokens=48, total_tokens=72, cached_tokens=4, reasoning_tokens=6
        ),
        raw_finish_reason="tool_use",
    )
    assert UNIFIED_CLIENT.encode_response(response, provider="ANTHROPIC") == {
        "id": "msg_1",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "content": "Hi there",
        "stop_reason": "tool_use",
        "input_tokens": 24,
        "output_tokens": 48,
        "cached_tokens": 4,
        "reasoning_tokens": 6,
        "content_blocks": [
            {"type": "reasoning", "text": "hmm"},
            {"type": "text", "text": "Hi "},
            {"type": "text", "text": "there"},
        ],
        "tool_calls": [{"id": "t1", "name": "f", "arguments": '{"a":1}'}],
    }


def test_stop_reason_falls_back_to_ours() -> None:
    """Without the provider's raw value, the stop reason is the gateway's own."""
    response = GenerationResponse("r", "m", [Text("x")], FinishReason.LENGTH, Usage())
    assert UNIFIED_CLIENT.encode_response(response)["stop_reason"] == "length"


def test_streams_are_openai_chunks() -> None:
    """A unified stream is chat.completion.chunk events whatever the provider."""
    encoder = UNIFIED_CLIENT.stream_encoder(UNIFIED_CLIENT.decode_request(BODY))
    events: list[StreamEvent] = [
        StreamStart("msg_1", "claude"),
        TextDelta(0, "Hi"),
        StreamFinish(FinishReason.STOP),
    ]
    chunks = [chunk for event in events for chunk in encoder.encode(event)]
    assert [ChatCompletionChunk.model_validate(chunk).choices[0].delta.content for chunk in chunks] == [
        "",
        "Hi",
        None,
    ]
