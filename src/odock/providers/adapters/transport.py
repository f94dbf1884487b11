"""What every upstream adapter shares: the body's lines, transport failures as Odock errors, and
reading an answer that may not be what it should.

Lines are split here rather than by a transport's line reader, which may refuse long lines that a
large event (an audio or image chunk) can exceed; one event may be large, but not unbounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from odock.errors import (
    UpstreamError,
    UpstreamStreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from odock.providers.upstream_client import (
    ConnectFailed,
    ConnectionDropped,
    Response,
    ResponseTimeout,
    UpstreamHttpError,
)

MAX_EVENT_BYTES = 16 * 1024 * 1024


async def body_lines(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body's lines without terminators, of any length up to MAX_EVENT_BYTES.

    Lines are split here rather than by a transport's line reader, which may refuse long lines
    that a large event (an audio or image chunk) can exceed.
    """
    pending = bytearray()
    async for piece in pieces:
        searched = len(pending)
        pending += piece
        start = 0
        while (end := pending.find(b"\n", searched)) >= 0:
            yield bytes(pending[start:end]).rstrip(b"\r")
            start = searched = end + 1
        del pending[:start]
        if len(pending) > MAX_EVENT_BYTES:
            raise UpstreamError(f"upstream sent a stream line longer than {MAX_EVENT_BYTES} bytes")
    if pending:
        yield bytes(pending).rstrip(b"\r")


@contextlib.contextmanager
def translated_failures(*, streaming: bool = False) -> Iterator[None]:
    """Translate transport failures into Odock upstream errors."""
    try:
        yield
    except UpstreamError:
        raise
    except (ResponseTimeout, TimeoutError) as exc:
        raise UpstreamTimeout() from exc
    except ConnectFailed as exc:
        raise UpstreamUnavailable(f"cannot connect to upstream: {exc}") from exc
    except (ConnectionDropped, OSError) as exc:
        if streaming:
            raise UpstreamStreamInterrupted() from exc
        raise UpstreamUnavailable("upstream closed the connection") from exc
    except UpstreamHttpError as exc:
        if streaming:
            raise UpstreamStreamInterrupted() from exc
        raise UpstreamUnavailable(f"upstream request failed: {exc}") from exc


def is_event_stream(response: Response) -> bool:
    # A missing content type is tolerated; a different one means the provider did not stream.
    return "content-type" not in response.headers or response.content_type == "text/event-stream"


def json_object_of(body: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def text_of(body: bytes) -> str | None:
    return body.decode("utf-8", "replace").strip()[:500] or None
