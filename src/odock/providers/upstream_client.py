"""A lean HTTP/1.1 client for upstream model calls: pooled keep-alive connections, parsed by httptools.

A general-purpose client (aiohttp) spends more CPU per request than the rest of the gateway's
hot path together: request and response objects, header multidicts, tracing hooks, a timeout
handle per call. An upstream call needs little of that: one POST with a JSON body, a status,
a few headers and a body that is either read whole or relayed as it arrives. Flow::

    post(url, body, headers, timeouts, stream)
      ├─ idle keep-alive connection to the origin, or a new one (within timeouts.connect)
      ├─ one write: request line + headers + body
      └─ Response once the status line and headers arrived (a stream: and the body's first byte)
    Response.read()       whole body, within timeouts.total
    Response.chunks()     body pieces as they arrive; silences within timeouts.idle
    Response.release()    complete and keep-alive: back to the pool; otherwise closed

With proxies configured (:mod:`odock.providers.proxy`), a plain-HTTP origin is reached through
the proxy with absolute-form request lines, an HTTPS origin through a CONNECT tunnel; the pool
still keys connections by origin.

The bounds of :class:`~odock.providers.adapters.base.Timeouts` cost one timer per request (a
connection watchdog), not one per read: arrivals only note the time, and the watchdog, when it
fires, works out which bound is next (first byte, idle, total) and sleeps until then or fails
the exchange with it. A stream whose reader falls behind pauses reading from the upstream socket
(back-pressure) instead of buffering without bound; while paused the idle bound waits too (the
upstream is not the one being slow). Errors are this module's own (:class:`ConnectFailed`,
:class:`ConnectTimeout`, :class:`ResponseTimeout`, :class:`ConnectionDropped`,
:class:`BadResponse`); the adapter translates them into Odock's upstream errors at its boundary.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from odock.providers.adapters.base import Timeouts
from odock.providers.proxy import Proxy, ProxyRoutes, open_tunnel

_PAUSE_ABOVE = 256 * 1024  # buffered, unread stream bytes before reading from upstream pauses
_RESUME_BELOW = 64 * 1024
_URL_CACHE_SIZE = 1024
USER_AGENT = "odock"


class UpstreamHttpError(Exception):
    """An upstream exchange failed below HTTP semantics (connect, timeout, protocol)."""


class ConnectFailed(UpstreamHttpError):
    """No connection to the upstream could be opened."""


class ConnectTimeout(ConnectFailed):
    """The connection did not open within the connect bound."""


class ResponseTimeout(UpstreamHttpError):
    """The upstream broke a bound of the exchange: first byte, idle or total (the message says which)."""


class ConnectionDropped(UpstreamHttpError):
    """The upstream closed the connection before the response was complete."""


class BadResponse(UpstreamHttpError):
    """The upstream's bytes are not a valid HTTP/1.1 response."""


class InvalidRequest(UpstreamHttpError):
    """The request cannot be sent as given (a header value with a line break)."""


@dataclass(frozen=True, slots=True)
class _Target:
    """A parsed URL: the origin to connect to and what to put in the request line."""

    origin: tuple[str, str, int]  # scheme, host, port
    path: str  # absolute form (http://host:port/path) when sent to an HTTP proxy
    host_header: bytes
    proxy: Proxy | None = None  # the proxy the origin is reached through
    proxy_header: bytes = b""  # a Proxy-Authorization line, for requests sent to an HTTP proxy


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: tuple[str, str, int]) -> None:
        self.loop = loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.complete = False
        self.failure: UpstreamHttpError | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._timeouts = _NO_TIMEOUTS
        self._first_byte_at = 0.0  # loop times: when the first byte is due
        self._total_at = 0.0  # when the exchange must be over
        self._last_arrival = 0.0  # a stream's latest arrival (or resumed read)
        self._body_started = False
        self._streaming = False
        self._until_close = False
        self._keep_alive = False

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not register with asyncio's ABCs: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._streaming:
            self._last_arrival = self.loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadResponse(f"upstream sent an invalid HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self.head_done and self._until_close and not self.complete:
            self.on_message_complete()  # a body delimited by the end of the connection
            return
        if not self.complete:
            self._fail(ConnectionDropped(f"upstream closed the connection{f': {exc}' if exc else ''}"))

    def pause_writing(self) -> None:  # the request body is written at once; nothing to pause
        return

    def resume_writing(self) -> None:
        return

    # --- httptools callbacks ---------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools hands over each header whole; a repeated header keeps its last value.
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.head_done = True
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._until_close = "content-length" not in self.headers and not chunked
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body_started = True
        self._chunks.append(body)
        self._buffered += len(body)
        if self._streaming and self._buffered > _PAUSE_ABOVE and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        # Asked here: the parser forgets the message's connection flags once it returns.
        self._keep_alive = not self.closed and self._parser.should_keep_alive()
        self.complete = True
        self._stop_watchdog()
        self._wake()

    # --- exchange --------------------------------------------------------------------------
    def start(self, request: bytes, timeouts: Timeouts, *, total_at: float, stream: bool) -> None:
        """Send a request, to be over by ``total_at``; a stream's slow reader pauses reads."""
        assert self.transport is not None
        self._reset()
        self._timeouts = timeouts
        self._streaming = stream
        self._total_at = total_at
        now = self.loop.time()
        self._first_byte_at = now + timeouts.first_byte
        self._arm(now)
        self.transport.write(request)

    async def wait_head(self) -> None:
        """Until the status line and headers arrived."""
        while not self.head_done:
            await self._wait()

    async def wait_body(self) -> None:
        """Until the first byte of the body arrived, or the (empty) body ended."""
        while not self._chunks and not self.complete:
            await self._wait()

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or None once it is complete."""
        while not self._chunks:
            if self.complete:
                return None
            await self._wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < _RESUME_BELOW and self.transport is not None:
            self._paused = False
            self._last_arrival = self.loop.time()
            self.transport.resume_reading()
        return chunk

    async def read_all(self) -> bytes:
        """The whole body."""
        while not self.complete:
            await self._wait()
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return body

    @property
    def reusable(self) -> bool:
        """True when the exchange ended cleanly and the upstream keeps the connection open."""
        return (
            self.complete
            and self.failure is None
            and not self.closed
            and not self._paused
            and self._keep_alive
        )

    def close(self) -> None:
        """Close the connection now."""
        self._stop_watchdog()
        self.closed = True
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def _wait(self) -> None:
        if self.failure is not None:
            raise self.failure
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self.failure is not None:
            raise self.failure

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamHttpError) -> None:
        if self.failure is None and not self.complete:
            self.failure = error
        self._stop_watchdog()
        self._wake()
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self.closed = True

    def _arm(self, now: float) -> None:
        """Start the watchdog for the next bound.

        Until a stream's first piece, it also wakes at least once per idle bound: the idle bound
        starts from that piece, which may come long before the first-byte bound ends (so the
        arrival itself never has to move the timer).
        """
        at = self._next_bound()[0]
        if self._streaming and not self._body_started:
            at = min(at, now + self._timeouts.idle)
        self._watchdog = self.loop.call_at(at, self._check_deadline)

    def _next_bound(self) -> tuple[float, str]:
        """When the exchange breaks a bound if nothing arrives meanwhile, and which bound."""
        if self._streaming and self._body_started:
            at, bound = self._last_arrival + self._timeouts.idle, "idle"
        elif self._streaming or not self.head_done:
            at, bound = self._first_byte_at, "first_byte"
        else:  # a unary answer whose head arrived: only its total is left
            return self._total_at, "total"
        return (at, bound) if at < self._total_at else (self._total_at, "total")

    def _check_deadline(self) -> None:
        self._watchdog = None
        if self.complete or self.failure is not None:
            return
        now = self.loop.time()
        if self._paused:  # the reader is behind: the upstream is not the one being slow
            self._last_arrival = now
        at, bound = self._next_bound()
        if now < at:
            self._arm(now)
            return
        self._fail(ResponseTimeout(_broken_bound_message(bound, self._timeouts)))

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


class Response:
    """An upstream response whose status and headers arrived; read or iterate the body, then release."""

    def __init__(self, client: UpstreamClient, connection: _Connection) -> None:
        self._client = client
        self._connection: _Connection | None = connection
        self.status = connection.status
        self.headers = connection.headers

    @property
    def content_type(self) -> str:
        """The media type, without parameters, lower case ("" when absent)."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        """The whole body (within the request's deadline); releases the connection."""
        connection = self._connection
        if connection is None:
            return b""
        try:
            return await connection.read_all()
        finally:
            self.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body pieces as they arrive; the iterator ends when the body is complete."""
        connection = self._connection
        if connection is None:
            return
        while (chunk := await connection.next_chunk()) is not None:
            yield chunk

    def release(self) -> None:
        """Give the connection back (a complete, keep-alive exchange) or close it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._client.give_back(connection)


class UpstreamClient:
    """Pooled HTTP/1.1 keep-alive connections to upstream origins."""

    def __init__(
        self,
        *,
        max_connections: int,
        idle_seconds: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        proxies: ProxyRoutes | None = None,
    ) -> None:
        self._max = max_connections
        self._proxies = proxies if proxies is not None and proxies.active else None
        self._idle_seconds = idle_seconds
        self._ssl = ssl_context  # created on the first https connection when not given
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open = 0
        self._slot_freed: asyncio.Event | None = None
        self._targets: dict[str, _Target] = {}
        self._closed = False

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, timeouts: Timeouts, stream: bool
    ) -> Response:
        """POST ``body`` within ``timeouts``; the Response is returned once its headers arrived,
        and for a ``stream`` once the first byte of its body did too (so a first-byte timeout is
        raised here, before anything is relayed)."""
        target = self._target(url)
        request = _request_bytes(target, body, headers)
        loop = asyncio.get_running_loop()
        total_at = loop.time() + timeouts.total  # the total includes the time it takes to connect
        connection = await self._acquire(target, min(timeouts.connect, timeouts.total))
        try:
            connection.start(request, timeouts, total_at=total_at, stream=stream)
            await connection.wait_head()
            if stream:
                await connection.wait_body()
        except BaseException:
            connection.close()
            self._forget(connection)
            raise
        return Response(self, connection)

    def give_back(self, connection: _Connection) -> None:
        """Pool a reusable connection, close any other."""
        if connection.reusable and not self._closed:
            connection.idle_since = connection.loop.time()
            self._idle.setdefault(connection.origin, []).append(connection)
            self._notify()
            return
        connection.close()
        self._forget(connection)

    async def close(self) -> None:
        """Close every idle connection; later calls are refused."""
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
                self._open -= 1
        self._idle.clear()

    async def _acquire(self, target: _Target, connect_seconds: float) -> _Connection:
        origin = target.origin
        if self._closed:
            raise ConnectFailed("the upstream client is closed")
        loop = asyncio.get_running_loop()
        idle = self._idle.get(origin)
        now = loop.time()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self._idle_seconds:
                return connection
            connection.close()
            self._forget(connection)
        deadline = now + connect_seconds
        await self._slot(connect_seconds)
        self._open += 1
        try:
            return await asyncio.wait_for(self._connect(loop, target), max(deadline - loop.time(), 0.0))
        except BaseException as exc:
            self._open -= 1
            self._notify()
            if isinstance(exc, TimeoutError):
                raise ConnectTimeout(
                    f"could not connect to {origin[1]}:{origin[2]} within {_seconds(connect_seconds)} s"
                ) from exc
            if isinstance(exc, OSError):
                raise ConnectFailed(f"{exc.strerror or exc}") from exc
            raise

    async def _connect(self, loop: asyncio.AbstractEventLoop, target: _Target) -> _Connection:
        origin = target.origin
        scheme, host, port = origin
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        proxy = target.proxy
        if proxy is None:
            _, connection = await loop.create_connection(
                lambda: _Connection(loop, origin), host, port, ssl=context
            )
        elif context is None:  # plain HTTP: the proxy forwards each absolute-form request
            _, connection = await loop.create_connection(
                lambda: _Connection(loop, origin), proxy.host, proxy.port
            )
        else:  # HTTPS: TLS with the upstream itself, inside a tunnel through the proxy
            sock = await open_tunnel(proxy, host, port)
            try:
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, origin), sock=sock, ssl=context, server_hostname=host
                )
            except BaseException:
                sock.close()
                raise
        return connection

    async def _slot(self, wait_seconds: float) -> None:
        """Wait for room under ``max_connections``, closing an idle connection elsewhere if need be."""
        deadline = time.monotonic() + wait_seconds
        while self._open >= self._max:
            victim = next((pool.pop(0) for pool in self._idle.values() if pool), None)
            if victim is not None:
                victim.close()
                self._forget(victim)
                continue
            self._slot_freed = self._slot_freed or asyncio.Event()
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._slot_freed.wait(), max(remaining, 0.0))
            except TimeoutError as exc:
                raise ConnectFailed(f"no free upstream connection within {wait_seconds:g} s") from exc

    def _forget(self, connection: _Connection) -> None:
        self._open -= 1
        self._notify()

    def _notify(self) -> None:
        if self._slot_freed is not None:
            self._slot_freed.set()
            self._slot_freed = None

    def _target(self, url: str) -> _Target:
        known = self._targets.get(url)
        if known is not None:
            return known
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectFailed(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = (host if default else f"{host}:{port}").encode("idna")
        proxy = self._proxies.proxy_for(parts.scheme, parts.hostname, port) if self._proxies else None
        if proxy is not None and parts.scheme == "http":
            path = f"http://{authority.decode()}{path}"
            line = b"proxy-authorization: " + proxy.authorization + b"\r\n" if proxy.authorization else b""
            target = _Target((parts.scheme, parts.hostname, port), path, authority, proxy, line)
        else:
            target = _Target((parts.scheme, parts.hostname, port), path, authority, proxy)
        if len(self._targets) >= _URL_CACHE_SIZE:
            self._targets.clear()
        self._targets[url] = target
        return target


def _request_bytes(target: _Target, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The request line, headers and body, ready for one write."""
    lines = [b"POST ", target.path.encode("latin-1"), b" HTTP/1.1\r\nhost: ", target.host_header, b"\r\n"]
    if target.proxy_header:
        lines.append(target.proxy_header)
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise InvalidRequest(f"header {name!r} contains a line break")
        lines += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
    if "user-agent" not in headers:
        lines.append(b"user-agent: " + USER_AGENT.encode() + b"\r\n")
    lines += [b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body]
    return b"".join(lines)


_NO_TIMEOUTS = Timeouts(connect=0.0, first_byte=0.0, idle=0.0, total=0.0)  # an idle connection's


def _broken_bound_message(bound: str, timeouts: Timeouts) -> str:
    """What the upstream did wrong, naming the bound and its value."""
    if bound == "first_byte":
        return f"upstream did not send a first byte within {_seconds(timeouts.first_byte)} s"
    if bound == "idle":
        return f"upstream stream idle for more than {_seconds(timeouts.idle)} s"
    return f"upstream exchange exceeded its total timeout of {_seconds(timeouts.total)} s"


def _seconds(value: float) -> str:
    """A bound for a message: one decimal ("2.0"), or as many as it needs ("0.25")."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"
