"""The benchmark's mock upstream speaks Anthropic's Messages wire format on /v1/messages.

Both implementations (raw asyncio protocol and aiohttp) are called with the official Anthropic
SDK, and every raw payload is validated against the SDK's own types (``Message``,
``RawMessageStreamEvent``, ``ErrorResponse``); the benchmark's Anthropic stream check is tested
against the mock and against broken streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import orjson
import pydantic
import pytest
from anthropic.types import ErrorResponse, Message, RawMessageStreamEvent
from bench.drivers import AnthropicStreamCheck, Target, run_streams
from bench.mock_upstream import COMPLETION_TOKENS, IMPLS, PROMPT_TOKENS, MockConfig, start_mock

CHUNKS = 5
EVENTS = pydantic.TypeAdapter(RawMessageStreamEvent)
HEADERS = {"content-type": "application/json", "x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


@pytest.fixture(params=IMPLS)
async def mock_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A mock upstream of each implementation on an ephemeral port."""
    server = await start_mock(MockConfig(chunks=CHUNKS, pacing=0.001), "127.0.0.1", 0, request.param)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


def _client(base: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base, api_key="sk-ant-test", max_retries=0)


def _body(**extra: Any) -> bytes:
    return orjson.dumps(
        {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}], **extra}
    )


async def _post(url: str, body: bytes) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=HEADERS) as response:
        return response.status, response.headers["content-type"], await response.read()


def _events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Each SSE event as (its ``event:`` name, its parsed ``data:``), checking the framing."""
    out = []
    for block in raw.split(b"\n\n"):
        if not block:
            continue
        name, data = block.split(b"\n")
        assert name.startswith(b"event: "), block
        assert data.startswith(b"data: "), block
        out.append((name[len(b"event: ") :].decode(), orjson.loads(data[len(b"data: ") :])))
    return out


async def test_unary_message_parses_in_the_sdk_with_usage(mock_url: str) -> None:
    """A non-streaming call is a valid ``Message``: one text block, end_turn, input and output usage."""
    async with _client(mock_url) as client:
        reply = await client.messages.create(
            model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert (reply.type, reply.role, reply.model) == ("message", "assistant", "m")
    assert [block.type for block in reply.content] == ["text"]
    assert reply.stop_reason == "end_turn"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    status, content_type, raw = await _post(mock_url + "/v1/messages", _body())
    assert (status, content_type) == (200, "application/json")
    assert Message.model_validate(orjson.loads(raw)) == reply


async def test_stream_through_the_sdk_yields_the_chunks_in_order(mock_url: str) -> None:
    """A stream read by the SDK: Anthropic's event order, text t0…t4, output usage in message_delta."""
    async with _client(mock_url) as client:
        stream = await client.messages.create(
            model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * CHUNKS,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    texts = [e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"]
    assert texts == [f"t{i} " for i in range(CHUNKS)]
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == PROMPT_TOKENS
    assert delta.type == "message_delta"
    assert delta.usage.output_tokens == CHUNKS
    assert delta.delta.stop_reason == "end_turn"


async def test_raw_stream_events_are_named_and_valid_with_overrides_in_user_id(mock_url: str) -> None:
    """On the wire: ``event:`` names equal to each data's type, every event a valid
    ``RawMessageStreamEvent``; the shape comes from ``metadata.user_id``; the check accepts it."""
    body = _body(stream=True, metadata={"user_id": "bench_chunks=3;bench_pacing_ms=0"})
    status, content_type, raw = await _post(mock_url + "/v1/messages", body)
    assert (status, content_type) == (200, "text/event-stream")
    events = _events(raw)
    for name, data in events:
        assert name == data["type"]
        EVENTS.validate_python(data)
    assert [name for name, _ in events].count("content_block_delta") == 3
    assert events[-1][0] == "message_stop"
    check = AnthropicStreamCheck(expected_chunks=3)
    over = [check.feed(line) for line in raw.splitlines() if line]
    assert over.index(True) == len(over) - 1  # over at message_stop, the last line
    assert check.verdict() is None


async def test_a_body_without_max_tokens_is_refused_as_anthropic_does(mock_url: str) -> None:
    """A 400 in Anthropic's error shape (the SDK's ``ErrorResponse``) when max_tokens is missing."""
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    status, _, raw = await _post(mock_url + "/v1/messages", body)
    assert status == 400
    error = ErrorResponse.model_validate(orjson.loads(raw))
    assert error.error.type == "invalid_request_error"


async def test_the_stream_driver_verifies_anthropic_streams(mock_url: str) -> None:
    """The streaming driver checks an Anthropic target's streams with the Anthropic check."""
    target = Target(mock_url + "/v1/messages", _body(stream=True), HEADERS, "anthropic")
    result = await run_streams(target, 4, 12, CHUNKS, include_usage=True)
    assert (result.streams, result.complete, result.errors) == (12, 12, {})
    assert result.ttft.samples == result.full.samples == 12
    wrong = await run_streams(target, 2, 2, CHUNKS + 1, include_usage=True)
    assert (wrong.complete, wrong.errors) == (0, {"chunks missing": 2})


def _delta(index: int) -> list[bytes]:
    data = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"t{index} "}}
    return [b"event: content_block_delta", b"data: " + orjson.dumps(data)]


START = [b"event: message_start", b'data: {"type":"message_start","message":{}}']
USAGE = [b"event: message_delta", b'data: {"type":"message_delta","delta":{},"usage":{"output_tokens":1}}']
STOP = [b"event: message_stop", b'data: {"type":"message_stop"}']


@pytest.mark.parametrize(
    ("lines", "verdict"),
    [
        ([*START, *_delta(0), *USAGE, *STOP], None),
        ([*START, *_delta(0), *USAGE], "no message_stop"),
        ([*START, *_delta(1), *USAGE, *STOP], "chunk out of order"),
        ([*START, *_delta(0), *STOP], "usage missing from message_delta"),
        ([*_delta(0), *USAGE, *STOP], "no message_start first"),
        ([*START, b"event: ping", _delta(0)[1], *USAGE, *STOP], "event name does not match its data"),
        ([*START, b"event: error", b'data: {"type":"error","error":{}}'], "in-band error"),
    ],
)
def test_the_anthropic_stream_check_fails_every_broken_stream(
    lines: list[bytes], verdict: str | None
) -> None:
    """The check passes a whole stream and names what is wrong with a broken one."""
    check = AnthropicStreamCheck(expected_chunks=1)
    for line in lines:
        if check.feed(line):
            break
    assert check.verdict() == verdict
