"""How each dialect puts stream events on the wire: one framer per streamed answer.

The relay hands every event (a :class:`StreamChunk`, whose ``data`` is one event's JSON) to the
surface's framer and writes what it returns::

    OpenAI chat, unified   data: {...}\\n\\n … data: [DONE]\\n\\n          error: data: {error}\\n\\n
    Anthropic, Responses   event: <name>\\ndata: {...}\\n\\n (no end marker)  error: event: error …
    Gemini ?alt=sse        data: {...}\\r\\n\\r\\n (no end marker)              error: data: {error}
    Gemini, no alt=sse     [{...}\\r\\n,{...}\\r\\n]  (one JSON array)          error: its last element

A framer names an event from ``chunk.event`` (set by an adapter that read the name off the
upstream's stream) or, for events the gateway built itself, from the JSON's ``type`` field.
"""

from __future__ import annotations

from typing import Protocol

import orjson

from odock.llm.upstream import StreamChunk

SSE_CONTENT_TYPE = b"text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = b"application/json"


class Framer(Protocol):
    """Frames one stream's events for the client (stateful: one per stream)."""

    content_type: bytes

    def frame(self, chunk: StreamChunk) -> bytes:
        """The bytes that carry ``chunk`` to the client."""

    def end(self) -> bytes:
        """The bytes that close a complete stream (may be empty)."""

    def error(self, payload: bytes) -> bytes:
        """The bytes that end a stream with the error ``payload`` (a JSON error body)."""


def sse_frame(data: bytes) -> bytes:
    """One server-sent event carrying ``data`` (a multi-line payload becomes several data lines)."""
    return b"data: " + data.replace(b"\n", b"\ndata: ") + b"\n\n"


class DataEvents:
    """OpenAI chat completions: unnamed events, closed by ``data: [DONE]``."""

    content_type = SSE_CONTENT_TYPE
    DONE = b"data: [DONE]\n\n"

    def frame(self, chunk: StreamChunk) -> bytes:
        """``data: <json>``."""
        return sse_frame(chunk.data)

    def end(self) -> bytes:
        """The [DONE] sentinel."""
        return self.DONE

    def error(self, payload: bytes) -> bytes:
        """The error as one more data event (never followed by [DONE])."""
        return sse_frame(payload)


class NamedEvents:
    """Anthropic messages and OpenAI responses: every event named, no end marker."""

    content_type = SSE_CONTENT_TYPE

    def frame(self, chunk: StreamChunk) -> bytes:
        """``event: <name>`` then ``data: <json>``."""
        name = chunk.event or _type_of(chunk.data)
        return b"event: " + name.encode() + b"\n" + sse_frame(chunk.data)

    def end(self) -> bytes:
        """Nothing: the last event (message_stop, response.completed) ends the stream."""
        return b""

    def error(self, payload: bytes) -> bytes:
        """An ``error`` event."""
        return b"event: error\n" + sse_frame(payload)


class CrlfDataEvents:
    """Gemini's server-sent events (``?alt=sse``): unnamed, CRLF-separated, no end marker."""

    content_type = SSE_CONTENT_TYPE

    def frame(self, chunk: StreamChunk) -> bytes:
        """``data: <json>`` and a blank line, in CRLF."""
        return b"data: " + chunk.data + b"\r\n\r\n"

    def end(self) -> bytes:
        """Nothing: the body ends."""
        return b""

    def error(self, payload: bytes) -> bytes:
        """The error as one more data event."""
        return b"data: " + payload + b"\r\n\r\n"


class JsonArray:
    """Gemini's stream without ``alt=sse``: one JSON array whose elements arrive as they come."""

    content_type = JSON_CONTENT_TYPE

    def __init__(self) -> None:
        self._opened = False

    def _separator(self) -> bytes:
        if self._opened:
            return b",\r\n"
        self._opened = True
        return b"["

    def frame(self, chunk: StreamChunk) -> bytes:
        """The next element."""
        return self._separator() + chunk.data

    def end(self) -> bytes:
        """Close the array (an empty stream is ``[]``)."""
        return (b"" if self._opened else b"[") + b"]"

    def error(self, payload: bytes) -> bytes:
        """The error as the array's last element."""
        return self._separator() + payload + b"]"


def _type_of(data: bytes) -> str:
    """The ``type`` of an event the gateway built (its events always have one)."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return "message"
    kind = event.get("type") if isinstance(event, dict) else None
    return kind if isinstance(kind, str) else "message"
