"""The Gemini surface: request checks, decoding a google-genai caller's body, and the answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.genai import types as gtypes

from odock.errors import (
    BudgetExceeded,
    InvalidRequestBody,
    ModelNotFound,
    UnsupportedParameter,
    UpstreamError,
    UpstreamRateLimited,
)
from odock.llm.types import (
    BlockStop,
    EmbeddingResponse,
    FinishReason,
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
from odock.surfaces import gemini

USER = {"role": "user", "parts": [{"text": "hello"}]}


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "gm", "contents": [USER], **fields}


# --- checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": "hi"}, "contents"),
        ({"contents": ["hi"]}, "contents[0]"),
        ({"contents": [{"role": "user", "parts": []}]}, "contents[0].parts"),
        ({"contents": [{"parts": ["x"]}]}, "contents[0].parts[0]"),
        (_body(tools={}), "tools"),
        (_body(generationConfig=[]), "generationConfig"),
        (_body(generationConfig={"temperature": "hot"}), "generationConfig.temperature"),
        (_body(generationConfig={"maxOutputTokens": 0}), "generationConfig.maxOutputTokens"),
        (_body(generationConfig={"maxOutputTokens": 2**31}), "generationConfig.maxOutputTokens"),
        (_body(generationConfig={"maxOutputTokens": True}), "generationConfig.maxOutputTokens"),
        (_body(generationConfig={"candidateCount": 0}), "generationConfig.candidateCount"),
        (_body(generationConfig={"topK": 2.5}), "generationConfig.topK"),
        (_body(generationConfig={"seed": 2**64}), "generationConfig.seed"),
        (
            _body(generationConfig={"thinkingConfig": {"thinkingBudget": -2}}),
            "generationConfig.thinkingConfig.thinkingBudget",
        ),
        (
            _body(generationConfig={"thinkingConfig": {"includeThoughts": "yes"}}),
            "generationConfig.thinkingConfig.includeThoughts",
        ),
    ],
)
def test_generate_request_checks_name_the_field(body: dict[str, Any], param: str) -> None:
    """A wrong generateContent body is a 400 naming the field."""
    with pytest.raises(InvalidRequestBody) as caught:
        gemini.check_generate_request(body)
    assert caught.value.param == param


def test_valid_generate_request_passes() -> None:
    """A body the SDK sends passes the checks."""
    config = {"maxOutputTokens": 10, "topK": 40.0, "thinkingConfig": {"thinkingBudget": -1}}
    gemini.check_generate_request(
        _body(generationConfig=config, systemInstruction={"parts": [{"text": "s"}]})
    )


def test_count_and_embed_checks() -> None:
    """countTokens, embedContent and batchEmbedContents bodies are checked the same way."""
    gemini.check_count_tokens_request({"contents": [USER]})
    gemini.check_count_tokens_request({"generateContentRequest": _body()})
    with pytest.raises(InvalidRequestBody) as caught:
        gemini.check_count_tokens_request({"generateContentRequest": {"contents": []}})
    assert caught.value.param == "generateContentRequest.contents"
    gemini.check_embed_request({"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8})
    with pytest.raises(InvalidRequestBody) as caught:
        gemini.check_embed_request({"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 0})
    assert caught.value.param == "outputDimensionality"
    with pytest.raises(InvalidRequestBody) as caught:
        gemini.check_batch_embed_request(
            {"requests": [{"content": {"parts": [{"text": "a"}]}}, {"content": 1}]}
        )
    assert caught.value.param == "requests[1].content"
    with pytest.raises(InvalidRequestBody) as caught:
        gemini.check_batch_embed_request({"requests": []})
    assert caught.value.param == "requests"


def test_estimates_and_asked_max_tokens() -> None:
    """The estimate counts system, contents and tools; the asked limit is maxOutputTokens."""
    body = _body(systemInstruction={"parts": [{"text": "x" * 8}]}, tools=[{"functionDeclarations": []}])
    tools_chars = len(json.dumps(body["tools"]))
    assert gemini.estimate_input_tokens(body) == (8 + 5 + tools_chars + 3) // 4 + 4
    assert gemini.asked_max_tokens(_body(generationConfig={"maxOutputTokens": 99})) == 99
    assert gemini.asked_max_tokens(_body()) is None


# --- decode ------------------------------------------------------------------------------------


def test_decode_conversation_with_tools_and_images() -> None:
    """Roles, images, calls (ids generated), responses matched to calls by name, system and tools."""
    body = _body(
        systemInstruction={"role": "user", "parts": [{"text": "be brief"}]},
        contents=[
            {
                "role": "user",
                "parts": [{"text": "look"}, {"inlineData": {"mimeType": "image/png", "data": "aGk="}}],
            },
            {
                "role": "model",
                "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x/cat.jpg"}},
                ],
            },
        ],
        tools=[
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "d",
                        "parameters": {"type": "OBJECT", "properties": {}},
                    }
                ]
            }
        ],
        toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    )
    gemini.check_generate_request(body)
    request = gemini.GEMINI_CLIENT.decode_request(body)
    assert request.model == "gm"
    assert request.system == [Text("be brief")]
    assert [m.role for m in request.messages] == ["user", "assistant", "tool", "user"]
    assert request.messages[0].parts[1] == Image(data="aGk=", media_type="image/png")
    assert request.messages[1].parts == [ToolCall("call_1", "get_weather", '{"city": "Paris"}')]
    assert request.messages[2].parts == [ToolResult("call_1", [Text('{"temp": 21}')], name="get_weather")]
    assert request.messages[3].parts == [Image(url="https://x/cat.jpg", media_type="image/jpeg")]
    assert request.tools[0].parameters == {"type": "object", "properties": {}}
    assert request.tool_choice == ToolChoice("tool", "get_weather")


def test_decode_keeps_given_call_ids_and_thoughts() -> None:
    """Given ids pair responses; thought parts become reasoning with their signature."""
    body = _body(
        contents=[
            USER,
            {
                "role": "model",
                "parts": [
                    {"text": "hmm", "thought": True, "thoughtSignature": "c2ln"},
                    {"functionCall": {"id": "a", "name": "f"}, "thoughtSignature": "c2lnMg=="},
                    {"functionCall": {"id": "b", "name": "f"}},
                ],
            },
            {"role": "user", "parts": [{"functionResponse": {"id": "b", "name": "f", "response": {"r": 2}}}]},
        ]
    )
    request = gemini.GEMINI_CLIENT.decode_request(body)
    assert request.messages[1].parts == [
        Reasoning("hmm", signature="c2ln"),
        Reasoning("", signature="c2lnMg=="),
        ToolCall("a", "f", "{}"),
        ToolCall("b", "f", "{}"),
    ]
    assert request.messages[2].parts == [ToolResult("b", [Text('{"r": 2}')], name="f")]


def test_decode_generation_config() -> None:
    """Sampling, limits, stops, JSON schema and thinking become the gateway's fields."""
    config = {
        "temperature": 0.5,
        "topP": 0.8,
        "topK": 20,
        "maxOutputTokens": 64,
        "stopSequences": ["X"],
        "seed": 3,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
        "thinkingConfig": {"thinkingBudget": 500, "includeThoughts": True},
        "candidateCount": 1,
        "responseModalities": ["TEXT"],
    }
    request = gemini.GEMINI_CLIENT.decode_request(_body(generationConfig=config, stream=True))
    assert (request.temperature, request.top_p, request.top_k, request.max_tokens) == (0.5, 0.8, 20, 64)
    assert (request.stop, request.seed, request.presence_penalty, request.frequency_penalty) == (
        ["X"],
        3,
        0.1,
        0.2,
    )
    assert request.response_format == ResponseFormat(
        "json_schema", schema={"type": "object", "properties": {"a": {"type": "string"}}}, name="response"
    )
    assert request.reasoning == ReasoningConfig(budget_tokens=500)
    assert request.stream
    off = gemini.GEMINI_CLIENT.decode_request(
        _body(generationConfig={"thinkingConfig": {"thinkingBudget": 0}})
    )
    assert off.reasoning == ReasoningConfig(enabled=False)
    level = gemini.GEMINI_CLIENT.decode_request(
        _body(generationConfig={"thinkingConfig": {"thinkingLevel": "LOW"}})
    )
    assert level.reasoning == ReasoningConfig(effort="low")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"cachedContent": "cachedContents/1"}, "cachedContent"),
        ({"labels": {"team": "a"}}, "labels"),
        ({"serviceTier": "flex"}, "serviceTier"),
        ({"toolConfig": {"retrievalConfig": {}}}, "toolConfig.retrievalConfig"),
        ({"generationConfig": {"thinkingConfig": {"budget": 1}}}, "generationConfig.thinkingConfig.budget"),
        (
            {"safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}]},
            "safetySettings[0]",
        ),
        ({"tools": [{"googleSearch": {}}]}, "tools"),
        ({"tools": [{"codeExecution": {}}]}, "tools"),
        ({"generationConfig": {"candidateCount": 2}}, "generationConfig.candidateCount"),
        ({"generationConfig": {"responseModalities": ["IMAGE"]}}, "generationConfig.responseModalities"),
        ({"generationConfig": {"responseLogprobs": True}}, "generationConfig.responseLogprobs"),
        ({"generationConfig": {"responseMimeType": "text/x.enum"}}, "generationConfig.responseMimeType"),
        (
            {"contents": [{"parts": [{"executableCode": {"code": "1"}}]}]},
            "contents[0].parts[0].executableCode",
        ),
        (
            {"contents": [{"parts": [{"inlineData": {"mimeType": "audio/wav", "data": "x"}}]}]},
            "contents[0].parts[0].inlineData.mimeType",
        ),
        (
            {"toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["a", "b"]}}},
            "toolConfig.functionCallingConfig",
        ),
    ],
)
def test_unexpressible_fields_are_refused(fields: dict[str, Any], param: str) -> None:
    """What another vendor cannot be asked is an unsupported_parameter naming the field as sent."""
    with pytest.raises(UnsupportedParameter) as caught:
        gemini.GEMINI_CLIENT.decode_request(_body(**fields))
    assert caught.value.param == param


def test_malformed_upstream_arguments_fail_as_upstream_error() -> None:
    """Arguments that are not a JSON object cannot become Gemini's args object."""
    response = GenerationResponse("r", "m", [ToolCall("c", "f", '{"a": ')], FinishReason.TOOL_CALLS, Usage())
    with pytest.raises(UpstreamError):
        gemini.GEMINI_CLIENT.encode_response(response)


def test_default_safety_settings_pass() -> None:
    """Settings that ask for no threshold are accepted."""
    settings = [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "HARM_BLOCK_THRESHOLD_UNSPECIFIED"}]
    gemini.GEMINI_CLIENT.decode_request(_body(safetySettings=settings))


def test_function_response_without_call_is_refused() -> None:
    """A functionResponse that answers no earlier call is a 400 naming it."""
    body = _body(contents=[{"parts": [{"functionResponse": {"name": "f", "response": {}}}]}])
    with pytest.raises(InvalidRequestBody) as caught:
        gemini.GEMINI_CLIENT.decode_request(body)
    assert caught.value.param == "contents[0].parts[0].functionResponse"


# --- answers -----------------------------------------------------------------------------------

USAGE = Usage(prompt_tokens=30, completion_tokens=12, total_tokens=42, cached_tokens=5, reasoning_tokens=4)


def test_encode_response_is_a_generate_content_response() -> None:
    """Parts, finish reason, usage (candidates exclude thoughts), model and id, valid for the SDK."""
    response = GenerationResponse(
        id="r-1",
        model="gpt-x",
        parts=[
            Reasoning("plan"),
            Text("Hi"),
            Reasoning("", signature="c2ln"),
            ToolCall("c9", "f", '{"a": 1}'),
        ],
        finish_reason=FinishReason.TOOL_CALLS,
        usage=USAGE,
    )
    payload = gemini.GEMINI_CLIENT.encode_response(response)
    parsed = gtypes.GenerateContentResponse.model_validate(payload)
    assert payload["candidates"][0]["content"]["parts"] == [
        {"text": "plan", "thought": True},
        {"text": "Hi"},
        {"functionCall": {"id": "c9", "name": "f", "args": {"a": 1}}, "thoughtSignature": "c2ln"},
    ]
    assert payload["candidates"][0]["finishReason"] == "STOP"
    assert payload["usageMetadata"] == {
        "promptTokenCount": 30,
        "candidatesTokenCount": 8,
        "thoughtsTokenCount": 4,
        "cachedContentTokenCount": 5,
        "totalTokenCount": 42,
    }
    assert (payload["modelVersion"], payload["responseId"]) == ("gpt-x", "r-1")
    assert parsed.function_calls is not None
    assert parsed.function_calls[0].args == {"a": 1}


@pytest.mark.parametrize(
    ("reason", "raw", "expected"),
    [
        (FinishReason.STOP, None, "STOP"),
        (FinishReason.STOP_SEQUENCE, None, "STOP"),
        (FinishReason.LENGTH, None, "MAX_TOKENS"),
        (FinishReason.CONTENT_FILTER, None, "SAFETY"),
        (FinishReason.CONTENT_FILTER, "RECITATION", "RECITATION"),
        (FinishReason.OTHER, "pause_turn", "OTHER"),
    ],
)
def test_finish_reason_to_gemini(reason: FinishReason, raw: str | None, expected: str) -> None:
    """The gateway's finish reasons in Gemini's words (Gemini's own raw value kept)."""
    assert gemini.finish_reason_to_gemini(reason, raw) == expected


def test_stream_encoder_text_reasoning_call_then_finish_with_usage() -> None:
    """Deltas become chunks, a call is sent whole at its stop, the last chunk has finish and usage."""
    encoder = gemini.GEMINI_CLIENT.stream_encoder(gemini.GEMINI_CLIENT.decode_request(_body()))
    events: list[StreamEvent] = [
        StreamStart("r-1", "m-1"),
        ReasoningStart(0),
        ReasoningDelta(0, "think"),
        BlockStop(0),
        TextStart(1),
        TextDelta(1, "Hel"),
        TextDelta(1, "lo"),
        BlockStop(1),
        ToolCallStart(2, "c1", "f"),
        ToolCallDelta(2, '{"a"'),
        ToolCallDelta(2, ": 1}"),
        BlockStop(2),
        StreamFinish(FinishReason.TOOL_CALLS),
    ]
    chunks = [chunk for event in events for chunk in encoder.encode(event)]
    assert [c["candidates"][0]["content"]["parts"] for c in chunks] == [
        [{"text": "think", "thought": True}],
        [{"text": "Hel"}],
        [{"text": "lo"}],
        [{"functionCall": {"id": "c1", "name": "f", "args": {"a": 1}}}],
    ]
    last = encoder.encode(UsageUpdate(USAGE))
    assert encoder.finish() == []
    assert last[0]["candidates"][0]["finishReason"] == "STOP"
    assert last[0]["usageMetadata"]["candidatesTokenCount"] == 8
    for chunk in chunks + last:
        gtypes.GenerateContentResponse.model_validate(chunk)
        assert (chunk["responseId"], chunk["modelVersion"]) == ("r-1", "m-1")


def test_stream_encoder_finish_emits_the_last_chunk_without_usage() -> None:
    """When no usage follows the finish, finish() still sends the finishReason chunk."""
    encoder = gemini.GEMINI_CLIENT.stream_encoder(gemini.GEMINI_CLIENT.decode_request(_body()))
    assert encoder.encode(StreamFinish(FinishReason.LENGTH)) == []
    (last,) = encoder.finish()
    assert last["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert "usageMetadata" not in last


# --- embeddings, errors, models ----------------------------------------------------------------


def test_embeddings_decode_and_encode() -> None:
    """One or a batch of texts decode; vectors encode in both shapes, valid for the SDK."""
    one = gemini.GEMINI_EMBEDDINGS_CLIENT.decode_embeddings(
        {"model": "e", "content": {"parts": [{"text": "a"}, {"text": "b"}]}, "taskType": "RETRIEVAL_QUERY"}
    )
    assert (one.inputs, one.dimensions) == (["a\nb"], None)
    batch = gemini.GEMINI_EMBEDDINGS_CLIENT.decode_embeddings(
        {
            "requests": [
                {"model": "models/e", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4},
                {"model": "models/e", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 4},
            ]
        }
    )
    assert (batch.inputs, batch.dimensions) == (["a", "b"], 4)
    response = EmbeddingResponse(model="e", vectors=[[0.5, 0.25], [1.0, 0.0]], usage=Usage())
    many = gemini.GEMINI_EMBEDDINGS_CLIENT.encode_embeddings(response)
    single = gemini.GEMINI_EMBEDDINGS_CLIENT.encode_embeddings(response, batch=False)
    assert gtypes.EmbedContentResponse.model_validate(many).embeddings is not None
    assert single == {"embedding": {"values": [0.5, 0.25]}}
    gtypes.SingleEmbedContentResponse.model_validate(single)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "x"}}]}},
            "content.parts[0]",
        ),
        (
            {
                "requests": [
                    {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4},
                    {"content": {"parts": [{"text": "b"}]}},
                ]
            },
            "requests[].outputDimensionality",
        ),
    ],
)
def test_embeddings_refusals(body: dict[str, Any], param: str) -> None:
    """Non-text parts and mixed dimensionalities cannot be carried."""
    with pytest.raises(UnsupportedParameter) as caught:
        gemini.GEMINI_EMBEDDINGS_CLIENT.decode_embeddings(body)
    assert caught.value.param == param


def test_error_payload_in_google_shape() -> None:
    """Status name, Odock's code in an ErrorInfo with the param, RetryInfo from Retry-After."""
    error = gemini.error_payload(UpstreamRateLimited("slow down", headers={"Retry-After": "7"}))["error"]
    assert (error["code"], error["status"], error["message"]) == (429, "RESOURCE_EXHAUSTED", "slow down")
    assert error["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "upstream_rate_limited",
            "domain": "odock",
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
    ]
    invalid = gemini.error_payload(UnsupportedParameter("no", param="cachedContent"))["error"]
    assert (invalid["code"], invalid["status"]) == (400, "INVALID_ARGUMENT")
    assert invalid["details"][0]["metadata"] == {"param": "cachedContent"}
    assert gemini.error_payload(ModelNotFound())["error"]["status"] == "INVALID_ARGUMENT"
    assert gemini.error_payload(BudgetExceeded())["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_models_page_and_count_tokens() -> None:
    """Models list with their methods by type, parseable by the SDK; countTokens' total."""
    page = gemini.models_page([("chat-1", "chat"), ("emb-1", "embeddings")])
    assert page["models"][0]["name"] == "models/chat-1"
    assert page["models"][0]["supportedGenerationMethods"] == [
        "generateContent",
        "streamGenerateContent",
        "countTokens",
    ]
    assert page["models"][1]["supportedGenerationMethods"] == ["embedContent", "batchEmbedContents"]
    for model in page["models"]:
        gtypes.Model.model_validate({k: v for k, v in model.items() if k != "supportedGenerationMethods"})
    assert gemini.count_tokens_payload(12) == {"totalTokens": 12}
    gtypes.CountTokensResponse.model_validate(gemini.count_tokens_payload(12))


def test_snake_case_field_names_are_read() -> None:
    """Proto field names (as the SDK sends some) are read; free-form names inside stay as sent."""
    body = {
        "model": "gm",
        "contents": [
            USER,
            {"role": "model", "parts": [{"function_call": {"name": "f", "args": {"city_name": "Rome"}}}]},
        ],
        "generation_config": {"max_output_tokens": 5, "thinking_config": {"include_thoughts": True}},
        "tools": [
            {
                "function_declarations": [
                    {
                        "name": "f",
                        "parameters_json_schema": {"properties": {"city_name": {"type": "string"}}},
                    },
                    {
                        "name": "g",
                        "parameters": {"type": "OBJECT", "properties": {"max_items": {"type": "STRING"}}},
                    },
                ]
            }
        ],
    }
    gemini.check_generate_request(body)
    assert gemini.asked_max_tokens(body) == 5
    request = gemini.GEMINI_CLIENT.decode_request(body)
    assert request.max_tokens == 5
    assert request.reasoning == ReasoningConfig()
    assert request.messages[1].parts == [ToolCall("call_1", "f", '{"city_name": "Rome"}')]
    assert request.tools[0].parameters == {"properties": {"city_name": {"type": "string"}}}
    assert request.tools[1].parameters == {"type": "object", "properties": {"max_items": {"type": "string"}}}
