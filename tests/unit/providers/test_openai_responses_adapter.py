"""The OpenAI adapter on the Responses API, against the fake Responses server (itself checked by the SDK)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pydantic
import pytest
from aiohttp import web
from openai.types.responses import Response, ResponseStreamEvent

from odock.errors import UpstreamError, UpstreamRateLimited, UpstreamRejected, UpstreamStreamInterrupted
from odock.llm.upstream import MAX_REPORTED_TOKENS, Endpoint, StreamChunk
from odock.providers.adapters import openai as adapter_module
from odock.providers.adapters.base import Timeouts, UpstreamCall
from odock.providers.adapters.openai import OpenAICompatibleAdapter, _target
from odock.providers.catalog import ProviderTarget
from odock.providers.upstream_client import UpstreamClient
from tests.fakes import script
from tests.fakes.openai_responses import FakeResponses, add_routes, serving, sse

KEY = "sk-fake-upstream"
EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeResponses, str]]:
    """The fake Responses server on a local port, with its base URL."""
    app = web.Application()
    state = add_routes(app)
    async with serving(app) as url:
        yield state, url


@pytest.fixture
async def adapter() -> AsyncIterator[OpenAICompatibleAdapter]:
    """The adapter over a fresh upstream client."""
    client = UpstreamClient(max_connections=4)
    try:
        yield OpenAICompatibleAdapter(client)
    finally:
        await client.close()


def _call(base_url: str, payload: dict[str, Any], *, kind: str = "OPENAI", **config: Any) -> UpstreamCall:
    provider = ProviderTarget("p1", kind, "up", base_url, None, True, "v1", config)
    return UpstreamCall(
        endpoint=Endpoint.RESPONSES,
        payload=payload,
        provider=provider,
        api_key=KEY,
        timeouts=Timeouts(connect=5, first_byte=10, idle=10, total=10),
        request_id="rid-1",
        model=payload["model"],
    )


async def _chunks(adapter: OpenAICompatibleAdapter, call: UpstreamCall) -> list[StreamChunk]:
    stream = await adapter.stream(call)
    try:
        return [chunk async for chunk in stream]
    finally:
        await stream.aclose()


# --- targets -------------------------------------------------------------------------------------


def test_openai_responses_target() -> None:
    """A Responses call goes to <base>/responses with the bearer key."""
    url, headers = _target(_call("https://api.openai.com/v1", {"model": "m"}))
    assert url == "https://api.openai.com/v1/responses"
    assert headers["authorization"] == f"Bearer {KEY}"


def test_azure_responses_target_is_the_v1_api() -> None:
    """On Azure, Responses go to the resource's v1 API with the api-key header, not to a deployment path."""
    url, headers = _target(_call("https://res.openai.azure.com", {"model": "m"}, kind="AZURE_OPENAI"))
    assert url == "https://res.openai.azure.com/openai/v1/responses"
    assert headers["api-key"] == KEY


def test_azure_responses_preview_version() -> None:
    """A configured responses_api_version selects Azure's preview route with that api-version."""
    call = _call(
        "https://res", {"model": "m"}, kind="AZURE_OPENAI", responses_api_version="2025-04-01-preview"
    )
    assert _target(call)[0] == "https://res/openai/responses?api-version=2025-04-01-preview"


# --- against the fake ----------------------------------------------------------------------------


async def test_unary_answer_and_usage(
    fake: tuple[FakeResponses, str], adapter: OpenAICompatibleAdapter
) -> None:
    """A unary answer is forwarded as sent, with its Responses usage read into Usage."""
    _, url = fake
    result = await adapter.complete(_call(url + "/v1", {"model": "fake-echo", "input": "hello there"}))
    body = Response.model_validate(json.loads(result.body))
    assert body.output_text == "Echo: hello there"
    assert result.usage is not None
    assert result.usage.prompt_tokens == script.PROMPT_TOKENS
    assert result.usage.cached_tokens == script.CACHED_TOKENS
    assert result.usage.completion_tokens == 3
    assert result.usage.total_tokens == script.PROMPT_TOKENS + 3
    assert result.provider_request_id is not None


async def test_reasoning_tokens_are_read(
    fake: tuple[FakeResponses, str], adapter: OpenAICompatibleAdapter
) -> None:
    """output_tokens_details.reasoning_tokens becomes Usage.reasoning_tokens."""
    _, url = fake
    payload = {"model": "fake-echo", "input": "hi", "reasoning": {"effort": "low"}}
    result = await adapter.complete(_call(url + "/v1", payload))
    assert result.usage is not None
    assert result.usage.reasoning_tokens == script.REASONING_TOKENS


async def test_azure_call_names_the_deployment(
    fake: tuple[FakeResponses, str], adapter: OpenAICompatibleAdapter
) -> None:
    """An Azure Responses call reaches the v1 route with the deployment as the body's model."""
    state, url = fake
    call = _call(url, {"model": "slug", "input": "hi"}, kind="AZURE_OPENAI")
    call.model_config = {"deployment": "fake-echo"}
    result = await adapter.complete(call)
    assert Response.model_validate(json.loads(result.body)).model == "fake-echo"
    assert state.received[-1]["model"] == "fake-echo"


async def test_stream_keeps_event_names_and_reads_final_usage(
    fake: tuple[FakeResponses, str], adapter: OpenAICompatibleAdapter
) -> None:
    """Every chunk keeps its SSE event name; the response.completed chunk carries the usage; no [DONE]."""
    _, url = fake
    chunks = await _chunks(
        adapter, _call(url + "/v1", {"model": "fake-echo", "input": "a b", "stream": True})
    )
    names = [chunk.event for chunk in chunks]
    assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert names[-1] == "response.completed"
    for chunk in chunks:
        assert EVENTS.validate_json(chunk.data).type == chunk.event
    assert [c.usage is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == script.PROMPT_TOKENS
    assert sum(chunk.text_chars for chunk in chunks) == len("Echo: a b")


@pytest.mark.parametrize("model", ["fake-broken-stream", "fake-truncated-stream"])
async def test_stream_ending_before_its_final_event_is_interrupted(
    fake: tuple[FakeResponses, str], adapter: OpenAICompatibleAdapter, model: str
) -> None:
    """A stream that stops before response.completed is an interrupted stream, not a short answer."""
    _, url = fake
    with pytest.raises(UpstreamStreamInterrupted):
        await _chunks(adapter, _call(url + "/v1", {"model": model, "input": "hi", "stream": True}))


@pytest.mark.parametrize(
    ("model", "message"),
    [("fake-stream-failed", "The model failed to finish."), ("fake-stream-error", "invalid content")],
)
async def test_failed_or_error_event_is_an_upstream_error(
    fake: tuple[FakeResponses, str], adapter: OpenAICompatibleAdapter, model: str, message: str
) -> None:
    """response.failed and an error event end the stream with an UpstreamError carrying the message."""
    _, url = fake
    with pytest.raises(UpstreamError, match=message) as caught:
        await _chunks(adapter, _call(url + "/v1", {"model": model, "input": "hi", "stream": True}))
    assert not isinstance(caught.value, UpstreamStreamInterrupted)


async def test_previous_response_id_passes_through(
    fake: tuple[FakeResponses, str], adapter: OpenAICompatibleAdapter
) -> None:
    """A tool round trip continued by previous_response_id reaches the upstream, which answers from it."""
    state, url = fake
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}]
    first = await adapter.complete(
        _call(url + "/v1", {"model": "fake-echo", "input": "weather?", "tools": tools})
    )
    turn = Response.model_validate(json.loads(first.body))
    call = turn.output[-1]
    assert call.type == "function_call"
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    payload = {"model": "fake-echo", "previous_response_id": turn.id, "input": [output], "tools": tools}
    second = await adapter.complete(_call(url + "/v1", payload))
    assert Response.model_validate(json.loads(second.body)).output_text == "Tool said: sunny"
    assert state.received[-1]["previous_response_id"] == turn.id


async def test_unknown_previous_response_is_rejected_with_its_param(
    fake: tuple[FakeResponses, str], adapter: OpenAICompatibleAdapter
) -> None:
    """The upstream's 404 for an unknown previous response keeps its status and param."""
    _, url = fake
    payload = {"model": "fake-echo", "previous_response_id": "resp_nope", "input": "hi"}
    with pytest.raises(UpstreamRejected) as caught:
        await adapter.complete(_call(url + "/v1", payload))
    assert caught.value.param == "previous_response_id"


async def test_rate_limit_keeps_retry_after(
    fake: tuple[FakeResponses, str], adapter: OpenAICompatibleAdapter
) -> None:
    """A 429 from the Responses route is UpstreamRateLimited with the upstream's Retry-After."""
    _, url = fake
    with pytest.raises(UpstreamRateLimited) as caught:
        await adapter.complete(_call(url + "/v1", {"model": "fake-error-429", "input": "hi"}))
    assert caught.value.headers == {"retry-after": "7"}


# --- the fake, as the official SDK sees it -------------------------------------------------------


async def test_sdk_reads_the_fake_unary_and_streamed(fake: tuple[FakeResponses, str]) -> None:
    """The openai SDK parses the fake's answer, and its stream helper rebuilds the same answer."""
    _, url = fake
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as client:
        unary = await client.responses.create(model="fake-echo", input="hi you", reasoning={"effort": "low"})
        async with client.responses.stream(
            model="fake-echo", input="hi you", reasoning={"effort": "low"}
        ) as stream:
            streamed = await stream.get_final_response()
        with pytest.raises(openai.RateLimitError):
            await client.responses.create(model="fake-error-429", input="hi")
    assert unary.output_text == streamed.output_text == "Echo: hi you"
    assert [item.type for item in streamed.output] == ["reasoning", "message"]
    assert streamed.usage is not None
    assert streamed.usage.output_tokens_details.reasoning_tokens == script.REASONING_TOKENS


# --- the Responses event parser ------------------------------------------------------------------


async def _pieces(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def test_sse_events_keep_names_and_drop_comments() -> None:
    """Each event comes with its event: name (None without one); comments and ids are skipped."""
    body = b': hi\nevent: response.created\nid: 1\ndata: {"a":1}\n\ndata: {"b":2}\n\n'
    events = [event async for event in adapter_module._sse_events(_pieces(body))]
    assert events == [("response.created", b'{"a":1}'), (None, b'{"b":2}')]


def test_responses_usage_reads_every_class_and_clamps() -> None:
    """input/output tokens, cached and cache-write reads, reasoning tokens; absurd counts are clamped."""
    usage = adapter_module.responses_usage(
        {
            "input_tokens": 2**70,
            "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 2},
            "output_tokens": 9,
            "output_tokens_details": {"reasoning_tokens": 4},
        }
    )
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (MAX_REPORTED_TOKENS, 3, 2)
    assert (usage.completion_tokens, usage.reasoning_tokens) == (9, 4)
    assert usage.total_tokens == MAX_REPORTED_TOKENS + 9


def test_incomplete_event_is_final_with_usage() -> None:
    """response.incomplete ends the stream normally and carries the usage."""
    event = {"type": "response.incomplete", "sequence_number": 9, "response": {"usage": {"input_tokens": 5}}}
    chunk, final = adapter_module._responses_chunk(json.dumps(event).encode(), "response.incomplete")
    assert final
    assert chunk.usage is not None
    assert chunk.usage.prompt_tokens == 5
    assert not chunk.usage_only


def test_an_ordinary_event_is_not_final() -> None:
    """A delta event is forwarded with its text length, no usage, not final."""
    event = {"type": "response.output_text.delta", "delta": "abc", "item_id": "m", "output_index": 0}
    chunk, final = adapter_module._responses_chunk(json.dumps(event).encode(), None)
    assert (final, chunk.usage, chunk.text_chars, chunk.event) == (False, None, 3, None)


async def test_done_marker_does_not_end_a_responses_stream(adapter: OpenAICompatibleAdapter) -> None:
    """[DONE] before the final event is an interrupted Responses stream (chat streams end with it)."""
    created = {"type": "response.created", "sequence_number": 0, "response": {}}

    async def answer(request: web.Request) -> web.StreamResponse:
        stream = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await stream.prepare(request)
        await stream.write(sse(created) + b"data: [DONE]\n\n")
        await stream.write_eof()
        return stream

    app = web.Application()
    app.router.add_post("/v1/responses", answer)
    async with serving(app) as url:
        with pytest.raises(UpstreamStreamInterrupted):
            await _chunks(adapter, _call(url + "/v1", {"model": "m", "input": "hi", "stream": True}))
