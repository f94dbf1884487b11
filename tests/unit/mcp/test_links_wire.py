"""The links' wire helpers: SSE event parsing (as bytes arrive, in any chunking) and message kinds."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from odock.errors import McpUpstreamError
from odock.mcp.link import Transport, UpstreamTarget
from odock.mcp.links.wire import is_request, is_response, parse_messages, progress_token, sse_events

TARGET = UpstreamTarget("s", "wire-test", Transport.STREAMABLE_HTTP, "1", endpoint_url="http://127.0.0.1/")


class _Unpaused(BaseProtocol):
    """A protocol without a transport: a test feeds the whole body before reading it."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, *args: object, **kwargs: object) -> None:
        pass


def reader(*chunks: bytes) -> aiohttp.StreamReader:
    loop = asyncio.get_running_loop()
    stream = aiohttp.StreamReader(_Unpaused(loop), 2**16, loop=loop)
    for chunk in chunks:
        stream.feed_data(chunk)
    stream.feed_eof()
    return stream


async def events(*chunks: bytes) -> list[tuple[str, str]]:
    return [event async for event in sse_events(reader(*chunks))]


async def test_events_split_anywhere_and_crlf() -> None:
    raw = b'event: endpoint\r\ndata: /messages/?session_id=1\r\n\r\n: a comment\ndata: {"a":\ndata: 1}\n\n'
    expected = [("endpoint", "/messages/?session_id=1"), ("message", '{"a":\n1}')]
    assert await events(raw) == expected
    assert await events(*(raw[i : i + 1] for i in range(len(raw)))) == expected  # byte by byte


async def test_a_last_event_without_blank_line_and_no_space_after_colon() -> None:
    assert await events(b"data:tail") == [("message", "tail")]


async def test_long_lines() -> None:
    long = b"y" * 2_000_000
    assert await events(b"data: " + long + b"\n\n") == [("message", long.decode())]


def test_message_kinds() -> None:
    call = {"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {"_meta": {"progressToken": 5}}}
    assert is_request(call)
    assert not is_response(call)
    assert progress_token(call) == 5
    assert progress_token({"jsonrpc": "2.0", "id": 1, "method": "ping"}) is None
    assert is_response({"jsonrpc": "2.0", "id": 0, "error": {"code": 1, "message": "x"}})
    assert not is_request({"jsonrpc": "2.0", "method": "notifications/initialized"})


def test_parse_messages() -> None:
    assert parse_messages(b'[{"jsonrpc":"2.0","id":1,"result":{}}]', TARGET) == [
        {"jsonrpc": "2.0", "id": 1, "result": {}}
    ]
    with pytest.raises(McpUpstreamError, match="wire-test sent a body that is not JSON"):
        parse_messages(b"<html>", TARGET)
    with pytest.raises(McpUpstreamError, match="not JSON-RPC"):
        parse_messages(b"[1, 2]", TARGET)
