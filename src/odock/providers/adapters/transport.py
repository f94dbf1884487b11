"""What every upstream adapter shares: the body's lines, transport failures as Odock errors, and
reading an answer that may not be what it should.

Lines are split here rather than by a transport's line reader, which may refuse long lines that a
large event (an audio or image chunk) can exceed; one event may be large, but not unbounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import orjson

from odock.errors import (
    UpstreamError,
    UpstreamStreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from odock.providers.adapters.base import Timeouts
from odock.providers.upstream_client import (
    ConnectFailed,
    ConnectionDropped,
    ConnectTimeout,
    Response,
    ResponseTimeout,
    UpstreamClient,
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
    except (ResponseTimeout, ConnectTimeout) as exc:
        raise UpstreamTimeout(str(exc)) from exc
    except TimeoutError as exc:
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


StatusError = Callable[[int, bytes, Mapping[str, str]], UpstreamError]


async def open_event_stream(
    client: UpstreamClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeouts: Timeouts,
    status_error: StatusError,
) -> Response:
    """POST a streaming request; return the response once the upstream answered with an event stream.

    The response comes back once the first byte of its body arrived, within ``timeouts``: an
    upstream that answers its headers and then stalls is a 504 before any byte reaches the
    client (later silences are the stream's, bounded by the idle and total timeouts). A 4xx/5xx
    is translated by the adapter's ``status_error``; an answer that is not an event stream is a
    502 before any byte reaches the client. The connection is released on every failure.
    """
    with translated_failures():
        response = await client.post(url, body, headers, timeouts=timeouts, stream=True)
        try:
            if response.status >= 400:
                raise status_error(response.status, await response.read(), response.headers)
            if not is_event_stream(response):
                raise not_a_stream(response, await response.read())
        except BaseException:  # release the connection on every failure, then let it propagate
            response.release()
            raise
    return response


def not_a_stream(response: Response, body: bytes) -> UpstreamError:
    """The error of a stream request answered with something else (its message, if it has one)."""
    data = json_object_of(body)
    error = data.get("error") if data is not None else None
    detail = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    kind = response.headers.get("content-type", "")
    return UpstreamError(
        detail
        if isinstance(detail, str) and detail
        else f"upstream answered a stream request with '{kind}', not an event stream"
    )
