"""The HTTP/1.1 server protocol: uvicorn's httptools protocol, bounded, answering only in JSON.

uvicorn's own protocol accepts request heads of any size (httptools buffers a header until it is
complete), waits forever for a head or a body that never finishes, and answers a request it
cannot parse in plain text. This subclass adds, for every connection::

    head   request line + header fields ≤ max_request_header_bytes, ≤ max_request_headers fields
           → 431 request_headers_too_large
    time   head complete within request_header_timeout_seconds (a new connection that sends
           nothing is closed silently), body within request_body_timeout_seconds
           → 408 request_timeout
    parse  malformed request (bad Content-Length, Content-Length with Transfer-Encoding, bare LF…)
           → 400 malformed_http_request

Each of those answers is the JSON error shape with a fresh ``X-Request-Id``, then the connection
closes. The cost on a request whose head and body arrive in one read (the usual case) is a few
attribute updates per parser callback and no timer: a deadline is armed only when a read leaves a
request incomplete, and the exact head size is summed only when a read is larger than the limit.
A head in progress is checked after every read, so at most one read (≤ 256 KiB) is buffered past
the limit before the refusal.

The protocol also offers itself to the app as the request's :class:`~odock.web.asgi.ClientConnection`
(scope key ``odock.client_connection``): the app learns of a lost connection from a callback instead
of keeping a task in ``receive()``.
"""

from __future__ import annotations

import asyncio
import functools
import http
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from odock.errors import MalformedHttpRequest, OdockError, RequestHeadersTooLarge, RequestTimeout
from odock.ids import new_request_id
from odock.settings import Settings
from odock.web.asgi import CLIENT_CONNECTION


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """How much and how long a client may take to send one request."""

    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        """The limits configured in ``settings``."""
        return cls(
            max_header_bytes=settings.max_request_header_bytes,
            max_headers=settings.max_request_headers,
            header_timeout=settings.request_header_timeout_seconds,
            body_timeout=settings.request_body_timeout_seconds,
        )


def protocol_factory(settings: Settings) -> Any:
    """The ``http`` option of uvicorn for Odock: its protocol bound to the configured limits."""
    # A partial of a module-level class: picklable, so `odock serve --workers N` can hand it on.
    return functools.partial(OdockHttpProtocol, limits=HttpLimits.from_settings(settings))


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is answered by send_400_response."""


class OdockHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads and times, answering errors in JSON."""

    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._head_open = False  # a request's head has begun and is not complete
        self._body_open = False  # a request's head is complete and its body is not
        self._piece = 0  # size of the read being parsed
        self._head_first = 0  # size of the read in which the open head began
        self._head_later = 0  # size of the reads since then (all of them head bytes while it is open)
        self._deadline: asyncio.TimerHandle | None = None
        self._refusal: OdockError | None = None
        self._on_lost: Callable[[], None] | None = None

    # --- connection -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection; its first request head must arrive within the header timeout."""
        super().connection_made(transport)
        self._arm(self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection's deadline; tell a watching app that its client is gone."""
        self._disarm()
        super().connection_lost(exc)
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost()

    def watch_client(self, on_lost: Callable[[], None] | None) -> None:
        """Call ``on_lost`` once if the connection is (or gets) lost; None stops watching."""
        if on_lost is not None and self.transport.is_closing():
            on_lost()
            return
        self._on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        """Parse a read; refuse a head grown past the limit; arm a deadline for an unfinished request."""
        size = len(data)
        if self._head_open:
            self._head_later += size
        self._piece = size
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._head_open and self._head_later > self._limits.max_header_bytes:
            self._answer(RequestHeadersTooLarge(self._too_large()))
        elif self._deadline is None and (self._head_open or (self._body_open and not self.pipeline)):
            # (A pipelined request queued behind a running one cannot send its body while reading
            # is paused for it: its time starts when it runs, not while it waits.)
            self._arm(self._limits.header_timeout if self._head_open else self._limits.body_timeout)

    # --- parser callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        """A request begins: its head is measured from this read on."""
        super().on_message_begin()
        self.scope[CLIENT_CONNECTION] = self  # type: ignore[literal-required]
        self._head_open = True
        self._head_first = self._piece
        self._head_later = 0

    def on_headers_complete(self) -> None:
        """Refuse a head past the limits; otherwise hand the request to the app."""
        self._head_open = False
        self._disarm()
        if len(self.headers) > self._limits.max_headers or self._head_too_large():
            self._refusal = RequestHeadersTooLarge(self._too_large())
            raise _Refused()
        super().on_headers_complete()
        self._body_open = True

    def on_message_complete(self) -> None:
        """The whole request arrived: no deadline is left to keep."""
        super().on_message_complete()
        self._body_open = False
        self._disarm()

    def _unsupported_upgrade_warning(self) -> None:
        """Serve an Upgrade request as the ordinary request it is (no route speaks WebSocket), silently."""

    # --- answers the server writes itself ---------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """Answer a request the parser refused (or a refusal of ours) in JSON, then close."""
        refusal, self._refusal = self._refusal, None
        self._answer(refusal or MalformedHttpRequest())

    def _answer(self, error: OdockError) -> None:
        """Write ``error`` as a complete JSON response and close the connection."""
        body = error.body()
        status = error.http_status
        lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", new_request_id().encode()),
            (b"connection", b"close"),
        ]
        lines += [name + b": " + value for name, value in headers]
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        self.transport.close()

    # --- deadlines --------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        """The client took too long: 408 if a request is under way, else close quietly."""
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._body_open:
            self._stop_waiting_app()
            return
        if self._head_open:
            self._answer(RequestTimeout("the request headers were not received in time"))
            return
        self.transport.close()  # no request began: an idle connection, nothing to answer

    def _stop_waiting_app(self) -> None:
        """Answer 408 unless the app already answered, and tell the app its client is gone."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()
            return
        answered = cycle.response_started
        # From here on the app's sends are dropped and its receive() reports a disconnect.
        cycle.disconnected = True
        cycle.message_event.set()
        if answered:
            self.transport.close()
            return
        self._answer(RequestTimeout("the request body was not received in time"))

    # --- sizes ------------------------------------------------------------------------------
    def _head_too_large(self) -> bool:
        """Whether the complete head exceeds the byte limit (summed only when it might)."""
        limit = self._limits.max_header_bytes
        if self._head_first + self._head_later <= limit:
            return False  # the reads that carried it were no larger than the limit
        size = len(self.url) + sum(len(name) + len(value) for name, value in self.headers)
        return size > limit

    def _too_large(self) -> str:
        limits = self._limits
        return f"request headers exceed {limits.max_header_bytes} bytes or {limits.max_headers} fields"
