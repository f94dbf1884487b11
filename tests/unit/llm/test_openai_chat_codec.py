"""The client side of OpenAI Chat Completions: bodies decoded, answers and chunks encoded."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageFunctionToolCall

from odock.errors import InvalidRequestBody, UnsupportedParameter
from odock.llm.types import (
    BlockStop,
    FinishReason,
    GenerationRequest,
    GenerationResponse,
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
from odock.surfaces.openai_chat_codec import OPENAI_CHAT_CLIENT

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}
# A realistic agent conversation: instructions, an image, a tool round trip, sampling fields.
AGENT_BODY: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "They want Paris.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Nice"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
    ],
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "max_completion_tokens": 300,
    "max_tokens": 100,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["END"],
    "seed": 7,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.3,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": {"type": "object"}, "strict": True},
    },
    "reasoning_effort": "medium",
    "user": "user-42",
    "stream": True,
    "stream_options": {"include_usage": True},
    "n": 1,
    "logprobs": False,
}


def test_realistic_body_decodes_every_field() -> None:
    """Every field of an agent conversation lands in its place in the gateway's request."""
    request = OPENAI_CHAT_CLIENT.decode_request(copy.deepcopy(AGENT_BODY))
    assert request.system == [Text("You are terse."), Text("Use tools.")]
    assert request.messages == [
        Message(
            "user",
            [
                Text("Weather here?"),
                Image(data="iVBORw0KGgo=", media_type="image/png", detail="low"),
                Image(url="https://example.com/cat.jpg"),
            ],
        ),
        Message(
            "assistant",
            [
                Reasoning("They want Paris."),
                ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
                ToolCall("call_2", "get_weather", '{"city":"Nice"}'),
            ],
        ),
        Message("tool", [ToolResult("call_1", [Text("18C")]), ToolResult("call_2", [Text("21C")])]),
    ]
    function = WEATHER_TOOL["function"]
    assert request.tools == [Tool("get_weather", function["description"], function["parameters"], True)]
    assert request.tool_choice == ToolChoice("tool", "get_weather")
    assert request.parallel_tool_calls is False
    assert request.max_tokens == 300  # max_completion_tokens wins over the deprecated max_tokens
    assert (request.temperature, request.top_p, request.seed) == (0.2, 0.9, 7)
    assert (request.presence_penalty, request.frequency_penalty) == (0.1, 0.3)
    assert request.stop == ["END"]
    assert request.response_format == ResponseFormat("json_schema", {"type": "object"}, "weather", True)
    assert request.reasoning == ReasoningConfig(effort="medium")
    assert request.user == "user-42"
    assert request.stream is True


def test_plain_fields_take_their_simple_forms() -> None:
    """A string stop, max_tokens alone, string tool_choice and json_object decode as such."""
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "refusal": None},
        ],
        "stop": "STOP",
        "max_tokens": 50,
        "tool_choice": "required",
        "response_format": {"type": "json_object"},
        "safety_identifier": "hashed-user",
    }
    request = OPENAI_CHAT_CLIENT.decode_request(body)
    assert request.messages == [Message("user", [Text("hi")]), Message("assistant", [Text("hello")])]
    assert request.stop == ["STOP"]
    assert request.max_tokens == 50
    assert request.tool_choice == ToolChoice("required")
    assert request.response_format == ResponseFormat("json_object")
    assert request.user == "hashed-user"
    assert request.stream is False


def test_reasoning_effort_none_turns_reasoning_off() -> None:
    """reasoning_effort none is reasoning explicitly off (its effort kept for an OpenAI upstream)."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "none"}
    assert OPENAI_CHAT_CLIENT.decode_request(body).reasoning == ReasoningConfig(effort="none", enabled=False)


def test_assistant_refusal_and_text_parts_are_kept_as_text() -> None:
    """An assistant's earlier refusal and its text parts are what it said: text."""
    body = {
        "model": "m",
        "messages": [
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}],
            },
            {"role": "assistant", "content": None, "refusal": "I can't"},
        ],
    }
    messages = OPENAI_CHAT_CLIENT.decode_request(body).messages
    assert messages == [
        Message("assistant", [Text("a"), Text("no")]),
        Message("assistant", [Text("I can't")]),
    ]


REFUSED_FIELDS = [
    ("n", 2),
    ("logprobs", True),
    ("top_logprobs", 3),
    ("logit_bias", {"50256": -100}),
    ("audio", {"voice": "alloy", "format": "mp3"}),
    ("modalities", ["text", "audio"]),
    ("prediction", {"type": "content", "content": "x"}),
    ("web_search_options", {}),
    ("functions", [{"name": "f"}]),
    ("function_call", "auto"),
    ("service_tier", "flex"),
    ("store", True),
    ("metadata", {"a": "b"}),
    ("prompt_cache_key", "k"),
    ("verbosity", "low"),
    ("some_vendor_extension", 1),
]


@pytest.mark.parametrize(("name", "value"), REFUSED_FIELDS)
def test_fields_that_cannot_be_carried_are_refused(name: str, value: Any) -> None:
    """Each field with no equivalent elsewhere is a 400 unsupported_parameter naming it."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], name: value}
    with pytest.raises(UnsupportedParameter) as caught:
        OPENAI_CHAT_CLIENT.decode_request(body)
    assert caught.value.param == name
    assert caught.value.code == "unsupported_parameter"


REFUSED_CONTENT = [
    (
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]},
        "messages[0].content[0]",
    ),
    (
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "file", "file": {"file_id": "f"}}],
        },
        "messages[0].content[1]",
    ),
    ({"role": "function", "name": "f", "content": "x"}, "messages[0].role"),
    ({"role": "user", "name": "bob", "content": "x"}, "messages[0].name"),
    (
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]},
        "messages[0].content[0]",
    ),
    ({"role": "assistant", "audio": {"id": "a1"}}, "messages[0].audio"),
    (
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "custom", "function": {"name": "f", "arguments": ""}}],
        },
        "messages[0].tool_calls[0].type",
    ),
]


@pytest.mark.parametrize(("message", "param"), REFUSED_CONTENT)
def test_content_that_cannot_be_carried_is_refused(message: dict[str, Any], param: str) -> None:
    """Audio, files, function messages and message names are refused naming their place."""
    with pytest.raises(UnsupportedParameter) as caught:
        OPENAI_CHAT_CLIENT.decode_request({"model": "m", "messages": [message]})
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("tools", [{"type": "custom", "custom": {"name": "x"}}], "tools[0].type"),
        ("tool_choice", {"type": "allowed_tools", "allowed_tools": {}}, "tool_choice"),
        ("response_format", {"type": "grammar"}, "response_format"),
        (
            "response_format",
            {"type": "json_schema", "json_schema": {"name": "n", "description": "d", "schema": {}}},
            "response_format.json_schema.description",
        ),
    ],
)
def test_request_options_that_cannot_be_carried_are_refused(field: str, value: Any, param: str) -> None:
    """Non-function tools, allowed_tools, unknown formats and schema descriptions are refused."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value}
    with pytest.raises(UnsupportedParameter) as caught:
        OPENAI_CHAT_CLIENT.decode_request(body)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "user", "content": 5}, "messages[0].content"),
        ({"role": "user", "content": [{"type": "text", "text": 1}]}, "messages[0].content[0].text"),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": "u"}]},
            "messages[0].content[0].image_url",
        ),
        ({"role": "tool", "content": "x"}, "messages[0].tool_call_id"),
        ({"role": "assistant", "tool_calls": [{"id": "c"}]}, "messages[0].tool_calls[0]"),
    ],
)
def test_malformed_content_is_an_invalid_body(message: dict[str, Any], param: str) -> None:
    """A malformed message is a 400 invalid_request_body naming the field, never a 500."""
    with pytest.raises(InvalidRequestBody) as caught:
        OPENAI_CHAT_CLIENT.decode_request({"model": "m", "messages": [message]})
    assert type(caught.value) is InvalidRequestBody
    assert caught.value.param == param


def _response(parts: list[Any], finish: FinishReason = FinishReason.STOP, **extra: Any) -> GenerationResponse:
    usage = Usage(
        prompt_tokens=30, completion_tokens=12, total_tokens=42, cached_tokens=5, reasoning_tokens=4
    )
    return GenerationResponse(
        id="msg_01", model="claude-x", parts=parts, finish_reason=finish, usage=usage, **extra
    )


def test_response_encodes_as_a_chat_completion() -> None:
    """Text, reasoning, tool calls and usage make a valid chat.completion."""
    response = _response(
        [
            Reasoning("hmm"),
            Text("Hello "),
            Text("there"),
            ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
        ],
        FinishReason.TOOL_CALLS,
        created=1700000000,
    )
    payload = OPENAI_CHAT_CLIENT.encode_response(response)
    completion = ChatCompletion.model_validate(payload)
    assert completion.id == "chatcmpl-msg_01"
    assert completion.created == 1700000000
    assert completion.model == "claude-x"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Hello there"
    assert choice.message.refusal is None
    assert payload["choices"][0]["message"]["reasoning_content"] == "hmm"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert (call.id, call.type, call.function.name, call.function.arguments) == (
        "call_1",
        "function",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert completion.usage is not None
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    ) == (30, 12, 42)
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 5
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 4


def test_response_without_text_has_null_content_and_no_extras() -> None:
    """Only a tool call: content null, no reasoning_content; an id already chatcmpl- is kept."""
    response = _response([ToolCall("c", "f", "{}")], FinishReason.TOOL_CALLS)
    response.id = "chatcmpl-abc"
    payload = OPENAI_CHAT_CLIENT.encode_response(response)
    ChatCompletion.model_validate(payload)
    message = payload["choices"][0]["message"]
    assert payload["id"] == "chatcmpl-abc"
    assert message["content"] is None
    assert "reasoning_content" not in message


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        (FinishReason.STOP, "stop"),
        (FinishReason.LENGTH, "length"),
        (FinishReason.TOOL_CALLS, "tool_calls"),
        (FinishReason.STOP_SEQUENCE, "stop"),
        (FinishReason.CONTENT_FILTER, "content_filter"),
        (FinishReason.OTHER, "stop"),
    ],
)
def test_finish_reasons_map_to_openai(finish: FinishReason, expected: str) -> None:
    """Each finish reason has its OpenAI value (a stop sequence is a stop)."""
    payload = OPENAI_CHAT_CLIENT.encode_response(_response([Text("x")], finish))
    assert ChatCompletion.model_validate(payload).choices[0].finish_reason == expected


def _request() -> GenerationRequest:
    return GenerationRequest(model="odock-model", messages=[Message("user", [Text("hi")])], stream=True)


def test_stream_encoder_produces_openai_chunks() -> None:
    """Blocks become deltas: role first, reasoning, text, tool calls by ordinal, finish, then usage."""
    encoder = OPENAI_CHAT_CLIENT.stream_encoder(_request())
    events: list[StreamEvent] = [
        StreamStart("msg_9", "claude-x", created=1700000001),
        ReasoningStart(0),
        ReasoningDelta(0, "think"),
        ReasoningDelta(0, signature="sig"),
        BlockStop(0),
        TextStart(1),
        TextDelta(1, "Hi"),
        BlockStop(1),
        ToolCallStart(2, "call_a", "f"),
        ToolCallDelta(2, '{"a":'),
        ToolCallDelta(2, "1}"),
        BlockStop(2),
        ToolCallStart(3, "call_b", "g"),
        ToolCallDelta(3, "{}"),
        BlockStop(3),
        StreamFinish(FinishReason.TOOL_CALLS),
        UsageUpdate(Usage(prompt_tokens=10, completion_tokens=3, total_tokens=13, cached_tokens=2)),
    ]
    chunks = [chunk for event in events for chunk in encoder.encode(event)] + encoder.finish()
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
        assert (chunk["id"], chunk["model"], chunk["created"]) == ("chatcmpl-msg_9", "claude-x", 1700000001)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks[:-1]]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "think"},
        {"content": "Hi"},
        {
            "tool_calls": [
                {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
        {
            "tool_calls": [
                {"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}}
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    usage_chunk = ChatCompletionChunk.model_validate(chunks[-1])
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.total_tokens) == (10, 13)


def test_stream_encoder_owes_no_usage_chunk_without_usage() -> None:
    """No usage reported upstream: finish() has nothing to add."""
    encoder = OPENAI_CHAT_CLIENT.stream_encoder(_request())
    encoder.encode(StreamStart("x", "m"))
    encoder.encode(StreamFinish(FinishReason.STOP))
    assert encoder.finish() == []
