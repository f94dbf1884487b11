"""The Anthropic adapter against the fake Anthropic server: targets, unary, streams, errors, count_tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from odock.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamStreamInterrupted,
)
from odock.llm.upstream import Endpoint, StreamChunk
from odock.providers.adapters import anthropic as adapter
from odock.providers.adapters.anthropic import AnthropicAdapter
from odock.providers.adapters.base import Timeouts, UpstreamCall
from odock.providers.catalog import ProviderTarget
from odock.providers.upstream_client import UpstreamClient
from tests.fakes import anthropic_server, script
from tests.fakes.anthropic_server import FakeAnthropic, running_fake_anthropic

KEY = "sk-ant-up"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    """One fake server for the module."""
    with running_fake_anthropic(api_key=KEY) as server:
        yield server


@pytest.fixture
async def anthropic_adapter() -> AsyncIterator[AnthropicAdapter]:
    """An adapter over a fresh upstream client, closed after the test."""
    client = UpstreamClient(max_connections=4)
    yield AnthropicAdapter(client)
    await client.close()


def _call(
    base_url: str | None,
    model: str = script.ECHO_MODEL,
    *,
    stream: bool = False,
    config: dict[str, Any] | None = None,
    client_headers: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    endpoint: Endpoint = Endpoint.CHAT,
    **fields: Any,
) -> UpstreamCall:
    provider = ProviderTarget("p1", "ANTHROPIC", "anthropic", base_url, None, True, "v1", config or {})
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    payload.update(fields)
    if stream:
        payload["stream"] = True
    return UpstreamCall(
        endpoint=endpoint,
        payload=payload,
        provider=provider,
        api_key=KEY,
        timeouts=Timeouts(connect=5, first_byte=10, idle=10, total=10),
        request_id="rid-1",
        headers=headers or {},
        model=model,
        client_headers=client_headers or {},
    )


async def _drain(anthropic_adapter: AnthropicAdapter, call: UpstreamCall) -> list[StreamChunk]:
    stream = await anthropic_adapter.stream(call)
    try:
        return [chunk async for chunk in stream]
    finally:
        await stream.aclose()


async def _send(anthropic_adapter: AnthropicAdapter, call: UpstreamCall) -> object:
    if call.payload.get("stream"):
        return await _drain(anthropic_adapter, call)
    return await anthropic_adapter.complete(call)


async def _collect(stream: adapter.AnthropicStream, seen: list[StreamChunk]) -> None:
    async for chunk in stream:
        seen.append(chunk)


# --- target ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "url"),
    [
        (None, "https://api.anthropic.com/v1/messages"),
        ("https://proxy.example/", "https://proxy.example/v1/messages"),
        ("https://proxy.example/v1", "https://proxy.example/v1/messages"),
    ],
)
def test_target_url(base: str | None, url: str) -> None:
    """The default base is Anthropic's API; a base ending in /v1 is not doubled."""
    assert adapter._target(_call(base), "/v1/messages")[0] == url


def test_target_headers() -> None:
    """Key, version (configurable), the client's beta header and the provider's headers are sent."""
    call = _call(
        None,
        config={"anthropic_version": "2024-01-01"},
        client_headers={"Anthropic-Beta": "tools-2024"},
        headers={"X-Team": "a"},
    )
    _, headers = adapter._target(call, "/v1/messages")
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2024-01-01"
    assert headers["anthropic-beta"] == "tools-2024"
    assert headers["x-team"] == "a"
    assert headers["accept-encoding"] == "identity"
    assert adapter._target(_call(None), "/v1/messages")[1]["anthropic-version"] == "2023-06-01"


# --- unary -------------------------------------------------------------------------------------


async def test_complete_forwards_bytes_and_usage(
    anthropic_adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    """The answer's bytes pass through; usage counts cache reads among the prompt tokens."""
    result = await anthropic_adapter.complete(_call(fake.base_url))
    body = orjson.loads(result.body)
    assert body["content"][0]["text"] == "Echo: Hi"
    assert result.usage is not None
    assert result.usage.prompt_tokens == script.PROMPT_TOKENS
    assert result.usage.cached_tokens == script.CACHED_TOKENS
    assert result.usage.completion_tokens == 2
    assert result.provider_request_id is not None
    received = fake.last_request()
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == KEY
    assert received.body["model"] == script.ECHO_MODEL


async def test_count_tokens(anthropic_adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """count_tokens posts to the counting endpoint and returns its count."""
    call = _call(fake.base_url, endpoint=Endpoint.COUNT_TOKENS)
    del call.payload["max_tokens"]
    assert await anthropic_adapter.count_tokens(call) == anthropic_server.count_of(call.payload)
    assert fake.last_request().path == "/v1/messages/count_tokens"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("model", "error", "status"),
    [
        ("fake-error-400", UpstreamRejected, 400),
        ("fake-error-401", UpstreamAuthFailed, 401),
        ("fake-error-429", UpstreamRateLimited, 429),
        ("fake-error-500", UpstreamError, 500),
        ("fake-error-529", UpstreamError, 529),
    ],
)
async def test_status_errors(
    anthropic_adapter: AnthropicAdapter,
    fake: FakeAnthropic,
    model: str,
    error: type[UpstreamError],
    status: int,
    stream: bool,
) -> None:
    """Error statuses map to Odock's upstream errors with the provider's message and Retry-After."""
    with pytest.raises(error) as caught:
        await _send(anthropic_adapter, _call(fake.base_url, model, stream=stream))
    assert caught.value.upstream_status == status
    assert caught.value.message == anthropic_server._ERRORS[model][2]
    expected = {"retry-after": anthropic_server.RETRY_AFTER} if status in (429, 529) else {}
    assert caught.value.headers == expected


async def test_wrong_key_is_auth_failure(fake: FakeAnthropic) -> None:
    """The provider refusing the configured key is an upstream auth failure."""
    client = UpstreamClient(max_connections=1)
    call = _call(fake.base_url)
    call.api_key = "wrong"
    with pytest.raises(UpstreamAuthFailed):
        await AnthropicAdapter(client).complete(call)
    await client.close()


# --- streams -----------------------------------------------------------------------------------


async def test_stream_chunks_keep_event_names_and_usage(
    anthropic_adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    """Every event arrives named (ping too); usage is cumulative; text deltas are counted."""
    chunks = await _drain(anthropic_adapter, _call(fake.base_url, stream=True))
    names = [chunk.event for chunk in chunks]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-2:] == ["message_delta", "message_stop"]
    for chunk in chunks:
        assert orjson.loads(chunk.data)["type"] == chunk.event
    start, delta = chunks[0].usage, chunks[-2].usage
    assert start is not None
    assert delta is not None
    assert (start.prompt_tokens, start.completion_tokens) == (script.PROMPT_TOKENS, 1)
    assert (delta.prompt_tokens, delta.cached_tokens, delta.completion_tokens) == (
        script.PROMPT_TOKENS,
        script.CACHED_TOKENS,
        2,
    )
    assert sum(chunk.text_chars for chunk in chunks) == len("Echo: Hi")


async def test_broken_stream_is_interrupted(anthropic_adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """A connection dropped before message_stop is an interrupted stream."""
    stream = await anthropic_adapter.stream(_call(fake.base_url, "fake-broken-stream", stream=True))
    seen: list[StreamChunk] = []
    with pytest.raises(UpstreamStreamInterrupted):
        await _collect(stream, seen)
    await stream.aclose()
    assert seen
    assert seen[0].event == "message_start"


async def test_in_band_error_event(anthropic_adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    """An ``error`` event mid-stream raises the mapped upstream error (overloaded → 529)."""
    with pytest.raises(UpstreamError, match="Overloaded") as caught:
        await _drain(anthropic_adapter, _call(fake.base_url, "fake-stream-error", stream=True))
    assert caught.value.upstream_status == 529


async def test_unknown_model_answers_the_fixed_reply(
    anthropic_adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    """Another model gets the fixed reply, its cache writes counted apart from reads."""
    result = await anthropic_adapter.complete(_call(fake.base_url, "claude-other"))
    assert orjson.loads(result.body)["content"][0]["text"] == anthropic_server.REPLY
    assert result.usage is not None
    usage = anthropic_server.USAGE
    assert result.usage.prompt_tokens == (
        usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    )
    assert result.usage.cache_write_tokens == usage["cache_creation_input_tokens"]


class _Body:
    """A stand-in for the upstream client's Response: fixed body pieces, no headers."""

    def __init__(self, *pieces: bytes) -> None:
        self.headers: dict[str, str] = {}
        self._pieces = pieces
        self.released = False

    async def chunks(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece

    def release(self) -> None:
        self.released = True


async def test_quirky_but_valid_sse_is_parsed() -> None:
    """Comments, CRLF line ends, split pieces and a last event without its blank line are all read."""
    stop = b'event: message_stop\r\ndata: {"type":"message_stop"}'
    body = _Body(b": keep-alive\r\n\r\nevent: ping\r\nda", b'ta: {"type":"ping"}\r\n\r\n', stop)
    stream = adapter.AnthropicStream(body)  # type: ignore[arg-type]
    seen: list[StreamChunk] = []
    await _collect(stream, seen)
    await stream.aclose()
    assert [chunk.event for chunk in seen] == ["ping", "message_stop"]
    assert body.released


async def test_a_body_ending_without_message_stop_is_interrupted() -> None:
    """A clean end of body before message_stop is still an interrupted stream."""
    stream = adapter.AnthropicStream(_Body(b'event: ping\ndata: {"type":"ping"}\n\n'))  # type: ignore[arg-type]
    seen: list[StreamChunk] = []
    with pytest.raises(UpstreamStreamInterrupted):
        await _collect(stream, seen)
    assert [chunk.event for chunk in seen] == ["ping"]
