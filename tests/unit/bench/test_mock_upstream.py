"""The benchmark's mock upstream speaks the OpenAI wire format, so the benchmark measures real answers.

Both implementations (raw asyncio protocol and aiohttp) are called with the official OpenAI SDK
and, for the SSE framing the SDK hides, with a raw HTTP client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import openai
import orjson
import pytest
from bench.drivers import StreamCheck, Target, run_streams
from bench.mock_upstream import COMPLETION_TOKENS, IMPLS, MockConfig, start_mock

CHUNKS = 5


@pytest.fixture(params=IMPLS)
async def mock_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A mock upstream of each implementation on an ephemeral port."""
    server = await start_mock(MockConfig(chunks=CHUNKS, pacing=0.001), "127.0.0.1", 0, request.param)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


def _client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0)


async def test_non_streaming_completion_parses_with_usage(mock_url: str) -> None:
    """A non-streaming chat completion parses in the SDK and carries usage."""
    async with _client(mock_url) as client:
        reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == COMPLETION_TOKENS


async def test_stream_chunks_arrive_in_order_with_usage_when_asked(mock_url: str) -> None:
    """A stream with include_usage yields t0…t4 in order, then one usage-only chunk."""
    async with _client(mock_url) as client:
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert contents == [f"t{i} " for i in range(CHUNKS)]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    assert usage_chunks[0].choices == []
    assert usage_chunks[0].usage is not None
    assert usage_chunks[0].usage.completion_tokens == CHUNKS


async def test_stream_has_no_usage_chunk_unless_asked(mock_url: str) -> None:
    """Without stream_options.include_usage no chunk carries usage."""
    async with _client(mock_url) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert len(chunks) == CHUNKS + 1  # the content chunks and the finish chunk
    assert all(c.usage is None for c in chunks)


async def test_raw_stream_ends_with_done_and_passes_the_benchmark_check(mock_url: str) -> None:
    """On the wire each event is a parseable `data:` line, the last is [DONE], and StreamCheck accepts it."""
    body = orjson.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "metadata": {"bench_chunks": "3", "bench_pacing_ms": "0"},
        }
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(mock_url + "/v1/chat/completions", data=body) as response,
    ):
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = await response.read()
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    for event in events[:-1]:
        assert event.startswith(b"data: ")
        orjson.loads(event[len(b"data: ") :])
    check = StreamCheck(expected_chunks=3, include_usage=True)
    for line in raw.splitlines(keepends=True):
        check.feed(line)
    assert check.verdict() is None


@pytest.mark.parametrize("spread_seconds", [0.0, 0.05])
async def test_the_stream_driver_verifies_every_stream(mock_url: str, spread_seconds: float) -> None:
    """The streaming driver completes and verifies every stream, opened at once or spread out."""
    body = orjson.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    target = Target(mock_url + "/v1/chat/completions", body, {"content-type": "application/json"})
    result = await run_streams(target, 4, 12, CHUNKS, include_usage=True, spread_seconds=spread_seconds)
    assert (result.streams, result.complete, result.errors) == (12, 12, {})
    assert result.ttft.samples == result.full.samples == 12
    wrong = await run_streams(target, 2, 2, CHUNKS + 1, include_usage=True, spread_seconds=spread_seconds)
    assert (wrong.complete, wrong.errors) == (0, {"chunks missing": 2})


def test_stream_check_rejects_a_stream_without_done() -> None:
    """The benchmark's verifier fails a stream that stops before [DONE] (so truncation cannot pass)."""
    check = StreamCheck(expected_chunks=1, include_usage=False)
    check.feed(b'data: {"choices":[{"index":0,"delta":{"content":"t0 "}}]}\n')
    assert check.verdict() == "no [DONE]"


def test_stream_check_rejects_chunks_out_of_order() -> None:
    """The benchmark's verifier fails a stream whose chunks arrive out of order."""
    check = StreamCheck(expected_chunks=2, include_usage=False)
    check.feed(b'data: {"choices":[{"index":0,"delta":{"content":"t1 "}}]}\n')
    assert check.verdict() == "chunk out of order"


async def test_embeddings_return_one_vector_per_input(mock_url: str) -> None:
    """Embeddings parse in the SDK: one vector per input, and usage."""
    async with _client(mock_url) as client:
        reply = await client.embeddings.create(model="e", input=["a", "b", "c"])
    assert [d.index for d in reply.data] == [0, 1, 2]
    assert len(reply.data[0].embedding) == 8
    assert reply.usage.prompt_tokens > 0
