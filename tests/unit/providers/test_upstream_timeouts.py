"""The bounds of an upstream exchange (connect, first byte, idle, total) against misbehaving servers.

Each bound is small (tenths of a second) and each elapsed time is checked against the bound plus
a generous margin, never for an exact value; the message names the bound that was hit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace

import pytest

from odock.errors import UpstreamTimeout, UpstreamUnavailable
from odock.providers.adapters.base import Timeouts
from odock.providers.adapters.transport import open_event_stream, translated_failures
from odock.providers.proxy import ProxyRoutes
from odock.providers.stage import timeouts_for
from odock.providers.upstream_client import (
    ConnectFailed,
    ConnectTimeout,
    Response,
    ResponseTimeout,
    UpstreamClient,
)
from odock.providers.upstream_client import _Connection as Connection
from tests.support.scripted_upstream import Handler, read_request, server
from tests.support.stages import provider_target

SHORT = Timeouts(connect=5.0, first_byte=5.0, idle=5.0, total=5.0)
MARGIN = 2.0  # seconds a bound may be late by on a loaded machine; far below the generous bounds
STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def piece(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    """A client with room for a few connections, closed after the test."""
    upstream = UpstreamClient(max_connections=4)
    yield upstream
    await upstream.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts the connection and never answers."""
    await reader.read()


def sends(*parts: bytes) -> Handler:
    """Reads the request, writes ``parts``, then holds the connection open without a word."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for part in parts:
            writer.write(part)
        await writer.drain()
        await reader.read()

    return handle


async def timed_out(call: Awaitable[object], bound: float) -> str:
    """Await ``call``; the ResponseTimeout's message, after checking it came within ``bound`` + MARGIN."""
    started = time.monotonic()
    with pytest.raises(ResponseTimeout) as caught:
        await call
    assert time.monotonic() - started < bound + MARGIN
    return str(caught.value)


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_that_never_answers_breaks_the_first_byte_bound(
    client: UpstreamClient, stream: bool
) -> None:
    """Nothing after the request: the first-byte bound fires, long before the total."""
    async with server(silent) as (url, _):
        bounds = replace(SHORT, first_byte=0.3, total=30.0)
        message = await timed_out(client.post(url, b"{}", {}, timeouts=bounds, stream=stream), 0.3)
    assert message == "upstream did not send a first byte within 0.3 s"


async def test_a_stream_whose_headers_come_alone_breaks_the_first_byte_bound(client: UpstreamClient) -> None:
    """Headers and then silence: a stream is not answered until its body's first byte."""
    async with server(sends(STREAM_HEAD)) as (url, _):
        bounds = replace(SHORT, first_byte=0.3, total=30.0)
        message = await timed_out(client.post(url, b"{}", {}, timeouts=bounds, stream=True), 0.3)
    assert message == "upstream did not send a first byte within 0.3 s"


async def test_a_unary_answer_whose_body_stalls_breaks_the_total_bound(client: UpstreamClient) -> None:
    """A unary call's first byte is its head; a body that never comes is the total's to catch."""
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
    async with server(sends(head)) as (url, _):
        bounds = replace(SHORT, first_byte=0.2, total=0.5)
        response = await client.post(url, b"{}", {}, timeouts=bounds, stream=False)
        message = await timed_out(response.read(), 0.5)
    assert message == "upstream exchange exceeded its total timeout of 0.5 s"


async def test_a_stream_that_stalls_after_its_first_piece_breaks_the_idle_bound(
    client: UpstreamClient,
) -> None:
    """Headers and one piece, then silence: the idle bound fires, well before the first-byte one."""
    async with server(sends(STREAM_HEAD + piece(b"data: 1\n\n"))) as (url, _):
        bounds = replace(SHORT, first_byte=30.0, idle=0.3, total=30.0)
        response = await client.post(url, b"{}", {}, timeouts=bounds, stream=True)
        pieces = response.chunks()
        assert await anext(pieces) == b"data: 1\n\n"
        message = await timed_out(anext(pieces), 0.3)
        response.release()
    assert message == "upstream stream idle for more than 0.3 s"


async def test_a_stream_that_drips_within_the_idle_bound_still_ends_at_its_total(
    client: UpstreamClient,
) -> None:
    """Pieces every 0.1 s keep the idle bound (0.3 s) from firing; the total (1 s) ends the stream."""

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD)
        try:
            for _ in range(100):  # ten seconds' worth: far beyond the total
                writer.write(piece(b"data: x\n\n"))
                await writer.drain()
                await asyncio.sleep(0.1)  # the upstream's pace, the behaviour under test
        except ConnectionError:
            return  # the client gave up, as it should

    received: list[bytes] = []

    async def read_all(response: Response) -> None:
        async for chunk in response.chunks():
            received.append(chunk)

    async with server(drip) as (url, _):
        bounds = replace(SHORT, first_byte=5.0, idle=0.3, total=1.0)
        started = time.monotonic()
        response = await client.post(url, b"{}", {}, timeouts=bounds, stream=True)
        message = await timed_out(read_all(response), 1.0)
        response.release()
    assert message == "upstream exchange exceeded its total timeout of 1.0 s"
    assert time.monotonic() - started >= 1.0 * 0.9  # the total counted, not an idle silence
    assert len(received) > 3  # pieces kept arriving for longer than the idle bound


async def test_a_slow_reader_does_not_break_the_idle_bound(client: UpstreamClient) -> None:
    """A reader that falls behind pauses reads from the upstream; that pause is not the upstream's silence."""
    body = b"x" * 65_536

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD)
        for _ in range(128):  # 8 MiB: more than the client buffers before it pauses reading
            writer.write(piece(body))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with server(flood) as (url, _):
        bounds = replace(SHORT, idle=0.3, total=30.0)
        response = await client.post(url, b"{}", {}, timeouts=bounds, stream=True)
        connection: Connection = response._connection  # type: ignore[assignment]
        give_up = time.monotonic() + 10
        while not connection._paused:  # the upstream's bytes pile up until reading pauses
            assert time.monotonic() < give_up, "reading from the upstream never paused"
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)  # the slow reader: more than three idle bounds without reading
        total = sum([len(chunk) async for chunk in response.chunks()])
        response.release()
    assert total == 128 * len(body)


async def test_a_refused_connection_is_unavailable_not_a_timeout(client: UpstreamClient) -> None:
    """Nothing listening: ConnectFailed at once, translated to 502 upstream_unavailable."""
    async with server(silent) as (url, _):
        pass  # closed again: nothing listens on that port any more
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable) as caught, translated_failures():
        await client.post(url, b"{}", {}, timeouts=SHORT, stream=False)
    assert type(caught.value.__cause__) is ConnectFailed
    assert time.monotonic() - started < MARGIN


async def test_a_proxy_that_never_opens_the_tunnel_breaks_the_connect_bound() -> None:
    """A CONNECT that gets no answer is part of connecting: ConnectTimeout, then 504 naming the bound."""
    async with server(silent) as (proxy_url, _):
        client = UpstreamClient(max_connections=4, proxies=ProxyRoutes(https=proxy_url))
        bounds = replace(SHORT, connect=0.3, total=30.0)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout) as caught, translated_failures():
            await client.post("https://upstream.test/v1", b"{}", {}, timeouts=bounds, stream=False)
        elapsed = time.monotonic() - started
        await client.close()
    assert type(caught.value.__cause__) is ConnectTimeout
    assert caught.value.message == "could not connect to upstream.test:443 within 0.3 s"
    assert elapsed < 0.3 + MARGIN


async def test_an_event_stream_that_stalls_before_its_body_is_a_504_naming_the_bound(
    client: UpstreamClient,
) -> None:
    """Through the adapters' stream opener: the first-byte timeout is an UpstreamTimeout (504)."""
    async with server(sends(STREAM_HEAD)) as (url, _):
        bounds = replace(SHORT, first_byte=0.3, total=30.0)
        with pytest.raises(UpstreamTimeout) as caught:
            await open_event_stream(
                client, url, b"{}", {}, timeouts=bounds, status_error=lambda *_: AssertionError()
            )
    assert caught.value.http_status == 504
    assert caught.value.message == "upstream did not send a first byte within 0.3 s"


def test_a_providers_config_overrides_reach_its_timeouts() -> None:
    """A provider's ``*_timeout_ms`` config keys and its ``timeout_ms`` (the total) replace the defaults."""
    defaults = Timeouts(connect=10.0, first_byte=300.0, idle=120.0, total=600.0)
    assert timeouts_for(provider_target(), defaults) == defaults
    overriding = provider_target(
        timeout_ms=90_000,
        config={"connect_timeout_ms": 2_500, "first_byte_timeout_ms": 30_000, "idle_timeout_ms": 5_000},
    )
    assert timeouts_for(overriding, defaults) == Timeouts(connect=2.5, first_byte=30.0, idle=5.0, total=90.0)
    partial = provider_target(config={"idle_timeout_ms": 1_000, "first_byte_timeout_ms": None})
    assert timeouts_for(partial, defaults) == replace(defaults, idle=1.0)
