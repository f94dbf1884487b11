"""What every link reads and writes: JSON-RPC message kinds, SSE event parsing, HTTP error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from odock.errors import McpAuthError, McpUpstreamError
from odock.mcp.link import JsonRpc, UpstreamTarget

EXCERPT_CHARS = 200  # how much of an upstream's error body a message quotes


def is_request(message: JsonRpc) -> bool:
    """A request: a method and an id."""
    return "method" in message and message.get("id") is not None


def is_response(message: JsonRpc) -> bool:
    """A response (result or error) to a request."""
    return "method" not in message and ("result" in message or "error" in message)


def progress_token(message: JsonRpc) -> Any:
    """The ``params._meta.progressToken`` of a request, or None."""
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    meta = params.get("_meta")
    return meta.get("progressToken") if isinstance(meta, dict) else None


def parse_messages(raw: bytes, target: UpstreamTarget) -> list[JsonRpc]:
    """One JSON-RPC message or a batch, as a list (anything else is out of protocol)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise McpUpstreamError(f"MCP server {target.slug} sent a body that is not JSON: {exc}") from exc
    items = body if isinstance(body, list) else [body]
    if not all(isinstance(item, dict) for item in items):
        raise McpUpstreamError(f"MCP server {target.slug} sent a body that is not JSON-RPC")
    return items


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The lines of a stream as they arrive, of any length (aiohttp's own readline caps them)."""
    buffer = b""
    async for chunk in content.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line
    if buffer:
        yield buffer


async def sse_events(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` for each server-sent event of a stream, as it arrives."""
    event = ""
    data: list[str] = []
    async for raw in _lines(content):
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event or "message", "\n".join(data)


async def sse_messages(content: aiohttp.StreamReader, target: UpstreamTarget) -> AsyncIterator[JsonRpc]:
    """The JSON-RPC messages of a stream's ``message`` events."""
    async for event, data in sse_events(content):
        if event == "message" and data.strip():
            for message in parse_messages(data.encode(), target):
                yield message


async def raise_for_status(response: aiohttp.ClientResponse, target: UpstreamTarget, what: str) -> None:
    """Map an upstream's failure status to McpAuthError (401/403) or McpUpstreamError."""
    if response.status < 400:
        return
    body = (await response.read())[:EXCERPT_CHARS].decode("utf-8", "replace").strip()
    if response.status in (401, 403):
        raise McpAuthError(
            f"MCP server {target.slug} refused the gateway's credentials ({what}: HTTP {response.status})"
        )
    raise McpUpstreamError(f"MCP server {target.slug} failed ({what}): HTTP {response.status}: {body}")


def dumps(message: JsonRpc | list[JsonRpc]) -> bytes:
    """A message (or batch) as JSON bytes."""
    return orjson.dumps(message)
