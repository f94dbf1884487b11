"""The Gemini upstream codec: the gateway's requests in generateContent shape, and answers back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.genai import types as gtypes

from odock.errors import UnsupportedParameter, UpstreamError
from odock.llm.types import (
    BlockStop,
    EmbeddingRequest,
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
from odock.providers.adapters.gemini_codec import (
    GEMINI_EMBEDDINGS_UPSTREAM,
    GEMINI_UPSTREAM,
    json_schema_of,
    usage_from_gemini,
)

WEATHER = Tool(
    "get_weather", "The weather in a city.", {"type": "object", "properties": {"city": {"type": "string"}}}
)


def _request(messages: list[Message], **fields: Any) -> GenerationRequest:
    return GenerationRequest(model="m", messages=messages, **fields)


def _user(text: str) -> Message:
    return Message("user", [Text(text)])


def _encode(request: GenerationRequest) -> dict[str, Any]:
    payload = GEMINI_UPSTREAM.encode_request(request, "gemini-2.5-flash", stream=False)
    validate_request(payload)
    return payload


def validate_request(payload: dict[str, Any]) -> None:
    """Validate a generateContent body with the SDK's models (which forbid unknown fields).

    The SDK folds generationConfig and the request-level fields into one GenerateContentConfig.
    """
    assert set(payload) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
    for content in payload["contents"]:
        gtypes.Content.model_validate(content)
    config = dict(payload.get("generationConfig") or {})
    config.update(
        {key: payload[key] for key in ("systemInstruction", "tools", "toolConfig") if key in payload}
    )
    gtypes.GenerateContentConfig.model_validate(config)


def test_conversation_roles_system_and_images() -> None:
    """System becomes systemInstruction, assistant turns are role model, images inline or by URI."""
    request = _request(
        [
            Message("user", [Text("look"), Image(data="aGk=", media_type="image/jpeg")]),
            Message("assistant", [Text("a cat")]),
            Message("user", [Image(url="data:image/webp;base64,d2Vi"), Image(url="gs://b/cat.png")]),
        ],
        system=[Text("be brief")],
    )
    payload = _encode(request)
    assert payload["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert [c["role"] for c in payload["contents"]] == ["user", "model", "user"]
    assert payload["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/jpeg", "data": "aGk="}}
    assert payload["contents"][2]["parts"] == [
        {"inlineData": {"mimeType": "image/webp", "data": "d2Vi"}},
        {"fileData": {"fileUri": "gs://b/cat.png"}},
    ]
    assert "model" not in payload


def test_tool_round_trip_names_results_from_their_calls() -> None:
    """Calls go out as functionCall args; results as one user turn of functionResponse, named."""
    request = _request(
        [
            _user("weather?"),
            Message(
                "assistant",
                [
                    ToolCall("c1", "get_weather", '{"city":"Paris"}'),
                    ToolCall("c2", "get_time", ""),
                ],
            ),
            Message("tool", [ToolResult("c1", [Text('{"temp": 21}')])]),
            Message("tool", [ToolResult("c2", [Text("noon")], name="get_time")]),
            Message("tool", [ToolResult("c1", [Text("boom")], is_error=True)]),
        ],
        tools=[WEATHER],
        tool_choice=ToolChoice("tool", "get_weather"),
    )
    payload = _encode(request)
    assert payload["contents"][1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_time", "args": {}}},
    ]
    assert payload["contents"][2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
            {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
            {"functionResponse": {"name": "get_weather", "response": {"error": "boom"}}},
        ],
    }
    assert payload["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parametersJsonSchema": WEATHER.parameters,
                }
            ]
        }
    ]
    assert payload["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


@pytest.mark.parametrize(("mode", "expected"), [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")])
def test_tool_choice_modes(mode: Any, expected: str) -> None:
    """auto / none / required map to AUTO / NONE / ANY."""
    payload = _encode(_request([_user("x")], tools=[WEATHER], tool_choice=ToolChoice(mode)))
    assert payload["toolConfig"]["functionCallingConfig"] == {"mode": expected}


def test_generation_config_and_json_schema() -> None:
    """Sampling fields, limits, stops and a JSON schema land in generationConfig."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = _request(
        [_user("x")],
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        max_tokens=100,
        stop=["END"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.3,
        response_format=ResponseFormat("json_schema", schema=schema),
    )
    assert _encode(request)["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 100,
        "seed": 7,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.3,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    json_object = _encode(_request([_user("x")], response_format=ResponseFormat("json_object")))
    assert json_object["generationConfig"] == {"responseMimeType": "application/json"}


@pytest.mark.parametrize(
    ("reasoning", "thinking"),
    [
        (ReasoningConfig(enabled=False), {"thinkingBudget": 0}),
        (ReasoningConfig(budget_tokens=2000), {"includeThoughts": True, "thinkingBudget": 2000}),
        (ReasoningConfig(effort="low"), {"includeThoughts": True, "thinkingBudget": 1024}),
        (ReasoningConfig(effort="medium"), {"includeThoughts": True, "thinkingBudget": 4096}),
        (ReasoningConfig(effort="high"), {"includeThoughts": True, "thinkingBudget": 16384}),
    ],
)
def test_reasoning_becomes_thinking_config(reasoning: ReasoningConfig, thinking: dict[str, Any]) -> None:
    """Off is a zero budget; a budget passes; efforts map to the documented budgets."""
    assert (
        _encode(_request([_user("x")], reasoning=reasoning))["generationConfig"]["thinkingConfig"] == thinking
    )


def test_reasoning_and_signatures_go_back_on_their_parts() -> None:
    """Thought parts keep their signature; a bare signature rides on the part after it."""
    request = _request(
        [
            _user("x"),
            Message(
                "assistant",
                [
                    Reasoning("hmm", signature="c2lnYQ=="),
                    Reasoning("", signature="c2lnYg=="),
                    ToolCall("c1", "get_weather", "{}"),
                    Reasoning("", redacted="opaque"),
                ],
            ),
        ]
    )
    assert _encode(request)["contents"][1]["parts"] == [
        {"text": "hmm", "thought": True, "thoughtSignature": "c2lnYQ=="},
        {"functionCall": {"name": "get_weather", "args": {}}, "thoughtSignature": "c2lnYg=="},
    ]


@pytest.mark.parametrize(
    ("fields", "messages", "param"),
    [
        ({"parallel_tool_calls": False}, [_user("x")], "parallel_tool_calls"),
        ({"tools": [Tool("t", strict=True)]}, [_user("x")], "tools"),
        ({"user": "u-1"}, [_user("x")], "user"),
        ({"reasoning": ReasoningConfig(effort="extreme")}, [_user("x")], "reasoning_effort"),
        ({}, [Message("tool", [ToolResult("nobody", [Text("x")])])], "messages"),
        ({}, [Message("tool", [ToolResult("c", [Image(url="u")], name="t")])], "messages"),
        ({}, [Message("assistant", [ToolCall("c", "t", "[1]")])], "messages"),
    ],
)
def test_unexpressible_fields_are_refused(
    fields: dict[str, Any], messages: list[Message], param: str
) -> None:
    """What Gemini cannot be asked is refused naming the field, never dropped."""
    with pytest.raises(UnsupportedParameter) as caught:
        GEMINI_UPSTREAM.encode_request(_request(messages, **fields), "m", stream=False)
    assert caught.value.param == param


def _answer(parts: list[dict[str, Any]], finish: str = "STOP", **extra: Any) -> dict[str, Any]:
    payload = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
        "usageMetadata": {
            "promptTokenCount": 30,
            "candidatesTokenCount": 10,
            "thoughtsTokenCount": 5,
            "cachedContentTokenCount": 8,
            "toolUsePromptTokenCount": 2,
            "totalTokenCount": 47,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
        **extra,
    }
    gtypes.GenerateContentResponse.model_validate(payload)
    return payload


def test_usage_arithmetic() -> None:
    """Prompt includes tool-use prompts, completion includes thoughts, cache reads are kept."""
    usage = usage_from_gemini(_answer([])["usageMetadata"])
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (32, 15, 47)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (8, 5)
    assert usage_from_gemini({"promptTokenCount": 3, "candidatesTokenCount": 2}).total_tokens == 5


def test_decode_response_parts_and_finish() -> None:
    """Thoughts, text and calls decode in order; a call answer finishes with TOOL_CALLS."""
    response = GEMINI_UPSTREAM.decode_response(
        _answer(
            [
                {"text": "plan", "thought": True},
                {"text": "Sure."},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Rome"}},
                    "thoughtSignature": "c2ln",
                },
            ]
        )
    )
    assert response.id == "resp-1"
    assert response.model == "gemini-2.5-flash"
    assert response.parts[:3] == [Reasoning("plan"), Text("Sure."), Reasoning("", signature="c2ln")]
    call = response.parts[3]
    assert isinstance(call, ToolCall)
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Rome"})
    assert call.id.startswith("call_")
    assert response.finish_reason is FinishReason.TOOL_CALLS
    assert response.raw_finish_reason == "STOP"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("STOP", FinishReason.STOP),
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("SAFETY", FinishReason.CONTENT_FILTER),
        ("RECITATION", FinishReason.CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", FinishReason.OTHER),
    ],
)
def test_finish_reasons(raw: str, reason: FinishReason) -> None:
    """Gemini's finish reasons map to the gateway's; others are OTHER with the raw value."""
    response = GEMINI_UPSTREAM.decode_response(_answer([{"text": "x"}], finish=raw))
    assert (response.finish_reason, response.raw_finish_reason) == (reason, raw)


def test_blocked_prompt_is_a_content_filter_answer() -> None:
    """A prompt blocked before any candidate is an empty answer finished by the content filter."""
    payload = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 4},
    }
    gtypes.GenerateContentResponse.model_validate(payload)
    response = GEMINI_UPSTREAM.decode_response(payload)
    assert response.parts == []
    assert response.finish_reason is FinishReason.CONTENT_FILTER
    assert response.raw_finish_reason == "PROHIBITED_CONTENT"


def _chunk(parts: list[dict[str, Any]], finish: str | None = None, usage: bool = False) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": "g", "responseId": "r1"}
    if usage:
        chunk["usageMetadata"] = {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12}
    gtypes.GenerateContentResponse.model_validate(chunk)
    return chunk


def test_stream_decoder_blocks() -> None:
    """Thoughts then text open one block each; a call is a whole block; finish then usage."""
    decoder = GEMINI_UPSTREAM.stream_decoder()
    events = decoder.decode(_chunk([{"text": "th", "thought": True}]))
    events += decoder.decode(_chunk([{"text": "ink", "thought": True}]))
    events += decoder.decode(_chunk([{"text": "Hel"}]))
    events += decoder.decode(_chunk([{"text": "lo"}]))
    events += decoder.decode(
        _chunk([{"functionCall": {"name": "f", "args": {"a": 1}, "id": "fc-1"}}], "STOP", True)
    )
    events += decoder.finish()
    assert events[:8] == [
        StreamStart("r1", "g"),
        ReasoningStart(0),
        ReasoningDelta(0, "th"),
        ReasoningDelta(0, "ink"),
        BlockStop(0),
        TextStart(1),
        TextDelta(1, "Hel"),
        TextDelta(1, "lo"),
    ]
    assert events[8:12] == [
        BlockStop(1),
        ToolCallStart(2, "fc-1", "f"),
        ToolCallDelta(2, '{"a": 1}'),
        BlockStop(2),
    ]
    finish, update = events[12:]
    assert finish == StreamFinish(FinishReason.TOOL_CALLS, raw_finish_reason="STOP")
    assert isinstance(update, UsageUpdate)
    assert (update.usage.prompt_tokens, update.usage.completion_tokens) == (9, 3)


def test_stream_decoder_raises_on_error_chunk() -> None:
    """An error object in the stream is an upstream error."""
    with pytest.raises(UpstreamError, match="overloaded"):
        GEMINI_UPSTREAM.stream_decoder().decode({"error": {"code": 503, "message": "overloaded"}})


def test_json_schema_of_gemini_schema() -> None:
    """Upper-case OpenAPI types become JSON Schema types; nullable becomes a null type."""
    schema = {
        "type": "OBJECT",
        "properties": {
            "n": {"type": "INTEGER", "nullable": True},
            "l": {"type": "ARRAY", "items": {"type": "STRING"}},
        },
        "propertyOrdering": ["n", "l"],
        "required": ["n"],
    }
    assert json_schema_of(schema) == {
        "type": "object",
        "properties": {
            "n": {"type": ["integer", "null"]},
            "l": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["n"],
    }


def test_embeddings_one_and_many() -> None:
    """One input is an embedContent body, several a batch; both answers decode to vectors."""
    one = GEMINI_EMBEDDINGS_UPSTREAM.encode_embeddings_request(
        EmbeddingRequest("e", ["a"], dimensions=4), "emb"
    )
    assert one == {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4}
    many = GEMINI_EMBEDDINGS_UPSTREAM.encode_embeddings_request(EmbeddingRequest("e", ["a", "b"]), "emb")
    assert many == {
        "requests": [
            {"model": "models/emb", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/emb", "content": {"parts": [{"text": "b"}]}},
        ]
    }
    single = {"embedding": {"values": [0.5, 1]}}
    batch = {"embeddings": [{"values": [0.1]}, {"values": [0.2]}]}
    gtypes.SingleEmbedContentResponse.model_validate(single)
    gtypes.EmbedContentResponse.model_validate(batch)
    assert GEMINI_EMBEDDINGS_UPSTREAM.decode_embeddings_response(single).vectors == [[0.5, 1.0]]
    decoded = GEMINI_EMBEDDINGS_UPSTREAM.decode_embeddings_response(batch)
    assert decoded.vectors == [[0.1], [0.2]]
    assert decoded.usage.estimated
    with pytest.raises(UnsupportedParameter):
        GEMINI_EMBEDDINGS_UPSTREAM.encode_embeddings_request(EmbeddingRequest("e", ["a"], user="u"), "emb")
