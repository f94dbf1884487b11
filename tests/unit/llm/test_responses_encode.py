"""The Responses dialect's answer side: the Response object and typed stream events, checked by the SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pydantic
import pytest
from aiohttp import web
from openai.types.responses import Response, ResponseStreamEvent

from odock.errors import UpstreamStreamInterrupted
from odock.llm.types import (
    BlockStop,
    FinishReason,
    GenerationRequest,
    GenerationResponse,
    Message,
    Reasoning,
    ReasoningDelta,
    ReasoningStart,
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
    UsageUpdate,
)
from odock.llm.upstream import Usage
from odock.surfaces.openai_responses import RESPONSES_CLIENT, error_payload
from tests.fakes.openai_responses import serving, sse

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
USAGE = Usage(prompt_tokens=30, completion_tokens=12, total_tokens=42, cached_tokens=4, reasoning_tokens=5)
ARGS = '{"city": "Paris"}'
REQUEST = GenerationRequest(
    model="m",
    messages=[Message("user", [Text("hi")])],
    system=[Text("Be brief.")],
    tools=[Tool("weather", "Weather of a city", {"type": "object"}, True)],
    tool_choice=ToolChoice("required"),
    temperature=0.3,
    max_tokens=100,
)


def _answer(parts: list[Any], finish: FinishReason = FinishReason.STOP) -> GenerationResponse:
    return GenerationResponse(
        id="up-1", model="m-1", parts=parts, finish_reason=finish, usage=USAGE, created=1700
    )


def _events(*, finish: FinishReason = FinishReason.TOOL_CALLS) -> list[StreamEvent]:
    """A reasoning block, a text block and two interleaved tool calls, then usage and the finish."""
    return [
        StreamStart("up-1", "m-1", 1700),
        ReasoningStart(0),
        ReasoningDelta(0, "Think"),
        ReasoningDelta(0, "ing."),
        ReasoningDelta(0, signature="sig-9"),
        BlockStop(0),
        TextStart(1),
        TextDelta(1, "Hel"),
        TextDelta(1, "lo"),
        BlockStop(1),
        ToolCallStart(2, "call_a", "weather"),
        ToolCallStart(3, "call_b", "weather"),
        ToolCallDelta(2, ARGS[:5]),
        ToolCallDelta(3, ARGS),
        ToolCallDelta(2, ARGS[5:]),
        BlockStop(2),
        BlockStop(3),
        StreamFinish(finish),
        UsageUpdate(USAGE),
    ]


def _encode(events: list[StreamEvent], request: GenerationRequest = REQUEST) -> list[dict[str, Any]]:
    encoder = RESPONSES_CLIENT.stream_encoder(request)
    payloads = [payload for event in events for payload in encoder.encode(event)]
    return payloads + encoder.finish()


# --- the Response object -------------------------------------------------------------------------


def test_text_answer_is_a_completed_response_with_usage() -> None:
    """A text answer is one assistant message with one output_text, and OpenAI's usage fields."""
    body = RESPONSES_CLIENT.encode_answer(REQUEST, _answer([Text("Hello "), Text("world")]))
    response = Response.model_validate(body)
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Hello world"
    message = response.output[0]
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert (message.role, message.status) == ("assistant", "completed")
    assert response.usage is not None
    assert response.usage.model_dump(exclude_none=True) == {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 42,
    }


def test_items_keep_the_answers_order() -> None:
    """Reasoning, then text, then one function_call item per call, with the call ids kept."""
    parts = [
        Reasoning("Thinking.", signature="sig-9"),
        Text("Hello"),
        ToolCall("call_a", "weather", ARGS),
        ToolCall("call_b", "weather", "{}"),
    ]
    response = Response.model_validate(RESPONSES_CLIENT.encode_answer(REQUEST, _answer(parts)))
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message", "function_call", "function_call"]
    reasoning, _, first, second = response.output
    assert reasoning.type == "reasoning"
    assert [s.text for s in reasoning.summary] == ["Thinking."]
    assert reasoning.encrypted_content == "sig-9"
    assert first.type == "function_call"
    assert second.type == "function_call"
    assert (first.call_id, first.name, first.arguments, first.status) == (
        "call_a",
        "weather",
        ARGS,
        "completed",
    )
    assert first.id is not None
    assert first.id.startswith("fc_")
    assert first.id != second.id


@pytest.mark.parametrize(
    ("finish", "reason"),
    [(FinishReason.LENGTH, "max_output_tokens"), (FinishReason.CONTENT_FILTER, "content_filter")],
)
def test_cut_answers_are_incomplete(finish: FinishReason, reason: str) -> None:
    """An answer cut by the output limit or a filter is incomplete, with OpenAI's reason."""
    response = Response.model_validate(
        RESPONSES_CLIENT.encode_answer(REQUEST, _answer([Text("Hel")], finish))
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == reason
    assert response.output[0].type == "message"
    assert response.output[0].status == "incomplete"


@pytest.mark.parametrize("finish", [FinishReason.STOP, FinishReason.TOOL_CALLS, FinishReason.STOP_SEQUENCE])
def test_other_finishes_are_completed(finish: FinishReason) -> None:
    """Natural ends, tool calls and stop sequences are completed responses."""
    response = Response.model_validate(RESPONSES_CLIENT.encode_answer(REQUEST, _answer([Text("a")], finish)))
    assert response.status == "completed"
    assert response.incomplete_details is None


def test_settings_of_the_request_are_echoed() -> None:
    """Tools, tool choice, temperature, instructions and the output limit are repeated as OpenAI does."""
    response = Response.model_validate(RESPONSES_CLIENT.encode_answer(REQUEST, _answer([Text("a")])))
    assert response.tool_choice == "required"
    assert [(t.type, t.name, t.strict) for t in response.tools] == [("function", "weather", True)]
    assert (response.temperature, response.max_output_tokens) == (0.3, 100)
    assert response.instructions == "Be brief."
    assert response.store is False
    assert response.parallel_tool_calls is True


def test_encode_response_without_the_request_is_still_valid() -> None:
    """The protocol's encode_response (no request at hand) gives a valid Response with default settings."""
    response = Response.model_validate(RESPONSES_CLIENT.encode_response(_answer([Text("a")])))
    assert (response.tool_choice, response.tools) == ("auto", [])


def test_output_items_sent_back_as_input_decode_to_the_same_turn() -> None:
    """A client replaying the output as input gets the same assistant turn (reasoning signature included)."""
    parts = [Reasoning("Thinking.", signature="sig-9"), Text("Hello"), ToolCall("call_a", "weather", ARGS)]
    body = RESPONSES_CLIENT.encode_answer(REQUEST, _answer(parts))
    request = RESPONSES_CLIENT.decode_request({"model": "m", "input": body["output"]})
    assert request.messages == [Message("assistant", parts)]


# --- the stream ----------------------------------------------------------------------------------


def test_stream_events_are_valid_numbered_and_in_openai_order() -> None:
    """Every event validates as a ResponseStreamEvent, numbered 0…n-1, in the order OpenAI sends them."""
    payloads = _encode(_events())
    for payload in payloads:
        EVENTS.validate_python(payload)
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert [p["type"] for p in payloads] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_stream_items_carry_their_output_index_and_full_values() -> None:
    """Deltas name their item; done events carry whole texts and arguments; the final response has it all."""
    payloads = _encode(_events())
    done = {p["item"]["id"]: p for p in payloads if p["type"] == "response.output_item.done"}
    arguments = [p for p in payloads if p["type"] == "response.function_call_arguments.done"]
    assert [(p["output_index"], p["arguments"]) for p in arguments] == [(2, ARGS), (3, ARGS)]
    final = Response.model_validate(payloads[-1]["response"])
    assert [item.id for item in final.output] == list(done)
    assert final.output_text == "Hello"
    assert final.usage is not None
    assert final.usage.total_tokens == 42
    assert final.status == "completed"
    created = Response.model_validate(payloads[0]["response"])
    assert (created.id, created.status, created.output) == (final.id, "in_progress", [])


def test_stream_cut_by_the_limit_ends_incomplete() -> None:
    """A stream that finished with LENGTH ends with response.incomplete."""
    payloads = _encode(
        [
            StreamStart("up", "m"),
            TextStart(0),
            TextDelta(0, "Hel"),
            BlockStop(0),
            StreamFinish(FinishReason.LENGTH),
        ]
    )
    last = EVENTS.validate_python(payloads[-1])
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert [item.status for item in last.response.output] == ["incomplete"]


def test_blocks_left_open_are_closed_by_finish() -> None:
    """An upstream that never stopped its block still yields a complete item before the final event."""
    payloads = _encode([StreamStart("up", "m"), TextStart(0), TextDelta(0, "Hi")])
    assert [p["type"] for p in payloads[-4:]] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = Response.model_validate(payloads[-1]["response"])
    assert final.output_text == "Hi"


def test_fail_is_the_error_event_continuing_the_numbering() -> None:
    """A stream broken after its start ends with the Responses error event."""
    encoder = RESPONSES_CLIENT.stream_encoder(REQUEST)
    started = encoder.encode(StreamStart("up", "m"))
    [event] = encoder.fail(UpstreamStreamInterrupted())
    parsed = EVENTS.validate_python(event)
    assert parsed.type == "error"
    assert event["sequence_number"] == len(started)
    assert event["code"] == "upstream_stream_interrupted"


def test_http_errors_keep_the_openai_shape() -> None:
    """An HTTP error on this route is the OpenAI error object, which the SDK reads."""
    error = UpstreamStreamInterrupted()
    assert error_payload(error) == error.payload()


# --- the SDK as a caller of the encoder ----------------------------------------------------------


async def _serve_encoder(request: web.Request) -> web.StreamResponse:
    """Decode the SDK's request, answer the scripted events through the encoder (SSE) or as one object."""
    body = await request.json()
    decoded = RESPONSES_CLIENT.decode_request(body)
    if not decoded.stream:
        parts = [
            Reasoning("Thinking."),
            Text("Hello"),
            ToolCall("call_a", "weather", ARGS),
            ToolCall("call_b", "weather", ARGS),
        ]
        answer = RESPONSES_CLIENT.encode_answer(decoded, _answer(parts, FinishReason.TOOL_CALLS))
        return web.json_response(answer)
    stream = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await stream.prepare(request)
    for payload in _encode(_events(), decoded):
        await stream.write(sse(payload))
    await stream.write_eof()
    return stream


@pytest.fixture
async def client() -> AsyncIterator[openai.AsyncOpenAI]:
    """The official SDK pointed at an app that answers through the encoder."""
    app = web.Application()
    app.router.add_post("/v1/responses", _serve_encoder)
    async with (
        serving(app) as url,
        openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as sdk,
    ):
        yield sdk


TOOLS: Any = [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": False}]


async def test_sdk_stream_helper_rebuilds_the_answer(client: openai.AsyncOpenAI) -> None:
    """responses.stream(): get_final_response() has the text, both function calls and the usage."""
    async with client.responses.stream(model="m", input="hi", tools=TOOLS) as stream:
        final = await stream.get_final_response()
    assert final.output_text == "Hello"
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_a", "weather", {"city": "Paris"}),
        ("call_b", "weather", {"city": "Paris"}),
    ]
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 12)
    assert final.usage.input_tokens_details.cached_tokens == 4
    assert final.usage.output_tokens_details.reasoning_tokens == 5


async def test_sdk_raw_stream_reads_every_event(client: openai.AsyncOpenAI) -> None:
    """responses.create(stream=True) yields typed events whose text deltas make the text."""
    stream = await client.responses.create(model="m", input="hi", tools=TOOLS, stream=True)
    events = [event async for event in stream]
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello"


async def test_sdk_reads_the_unary_answer(client: openai.AsyncOpenAI) -> None:
    """responses.create() parses the encoded Response, function calls included."""
    response = await client.responses.create(model="m", input="hi", tools=TOOLS)
    assert response.output_text == "Hello"
    assert [item.type for item in response.output] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
