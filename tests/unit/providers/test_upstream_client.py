"""The upstream HTTP client against scripted servers: keep-alive, body framings, timeouts, failures."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from odock.providers.adapters.base import Timeouts
from odock.providers.upstream_client import (
    ConnectFailed,
    ConnectionDropped,
    ResponseTimeout,
    UpstreamClient,
)
from tests.support.scripted_upstream import Handler, read_request, server

GENEROUS = Timeouts(connect=5.0, first_byte=5.0, idle=5.0, total=5.0)


def answering(*responses: bytes, then_close: bool = False) -> Handler:
    """A handler that answers successive requests on a connection with ``responses``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            try:
                if await read_request(reader) is None:
                    return
            except asyncio.IncompleteReadError:
                return
            writer.write(response)
            await writer.drain()
        if not then_close:
            await reader.read()  # keep the connection open until the client closes it

    return handle


OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nx-request-id: up-1\r\n\r\n{}"


async def post(client: UpstreamClient, url: str, **bounds: float) -> tuple[int, dict[str, str], bytes]:
    """POST a small body and read the whole answer (``bounds`` replace fields of GENEROUS)."""
    response = await client.post(
        url + "/v1/chat/completions",
        b'{"a":1}',
        {"content-type": "application/json"},
        timeouts=replace(GENEROUS, **bounds),
        stream=False,
    )
    return response.status, response.headers, await response.read()


async def test_keep_alive_reuses_one_connection() -> None:
    """Two sequential calls to one origin travel over the same connection."""
    async with server(answering(OK, OK)) as (url, connections):
        client = UpstreamClient(max_connections=10)
        first = await post(client, url)
        second = await post(client, url)
        await client.close()
    assert first == second == (200, first[1], b"{}")
    assert first[1]["x-request-id"] == "up-1"
    assert len(connections) == 1


async def test_request_carries_host_length_and_headers() -> None:
    """The request line, host, headers and body reach the upstream as sent."""
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert request is not None
        received.append(request)
        writer.write(OK)
        await writer.drain()

    async with server(record) as (url, _):
        client = UpstreamClient(max_connections=10)
        await post(client, url)
        await client.close()
    head, _, body = received[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert b"host: " + url.removeprefix("http://").encode() in lines
    assert b"content-type: application/json" in lines
    assert b"content-length: 7" in lines
    assert body == b'{"a":1}'


async def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    """A chunked body is de-chunked; a body without length ends with the connection."""
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    until_close = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it"
    async with server(answering(chunked)) as (url, _):
        client = UpstreamClient(max_connections=10)
        assert (await post(client, url))[2] == b"abcde"
        await client.close()
    async with server(answering(until_close, then_close=True)) as (url, _):
        client = UpstreamClient(max_connections=10)
        assert (await post(client, url))[2] == b"all of it"
        await client.close()


async def test_stream_pieces_arrive_in_order() -> None:
    """chunks() yields the body as it arrives and ends with it."""

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for piece in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with server(stream) as (url, _):
        client = UpstreamClient(max_connections=10)
        response = await client.post(url + "/s", b"{}", {}, timeouts=GENEROUS, stream=True)
        pieces = [piece async for piece in response.chunks()]
        response.release()
        await client.close()
    assert b"".join(pieces) == b"data: 1\n\ndata: 2\n\n"


async def test_a_silent_upstream_times_out() -> None:
    """No answer within the total deadline raises ResponseTimeout."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with server(silent) as (url, _):
        client = UpstreamClient(max_connections=10)
        with pytest.raises(ResponseTimeout):
            await post(client, url, total=0.2)
        await client.close()


async def test_a_stream_that_stalls_times_out_between_pieces() -> None:
    """A stream whose next piece does not come within the idle bound raises ResponseTimeout."""

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await reader.read()

    async with server(stall) as (url, _):
        client = UpstreamClient(max_connections=10)
        response = await client.post(url, b"{}", {}, timeouts=replace(GENEROUS, idle=0.2), stream=True)
        pieces = response.chunks()
        assert await anext(pieces) == b"first"
        with pytest.raises(ResponseTimeout):
            await anext(pieces)
        response.release()
        await client.close()


async def test_a_connection_cut_mid_body_is_dropped() -> None:
    """The upstream closing before the declared length arrived raises ConnectionDropped."""
    short = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly a part"
    async with server(answering(short, then_close=True)) as (url, _):
        client = UpstreamClient(max_connections=10)
        with pytest.raises(ConnectionDropped):
            await post(client, url)
        await client.close()


async def test_nothing_listening_fails_to_connect() -> None:
    """A refused connection raises ConnectFailed."""
    async with server(answering(OK)) as (url, _):
        pass  # closed again: nothing listens on that port any more
    client = UpstreamClient(max_connections=10)
    with pytest.raises(ConnectFailed):
        await post(client, url)
    await client.close()
