"""A lean, auto-pipelined Redis connection for the hot path's script calls.

Every governed request runs several short Lua scripts (rate-limit admission and release, budget
reserve and settle). Through redis-py each call checks a connection out of the pool, arms a
timeout, packs and parses in Python and checks the connection back in: hundreds of
microseconds of CPU per call, more than the script itself costs Redis. :class:`RedisLink`
keeps one connection per process and multiplexes every caller over it:

    caller ── script(keys, args) ──► pack (hiredis, C) ──► write buffer ─┐  one write per
    caller ── script(keys, args) ──► pack ──────────────► write buffer ─┤  loop iteration
                                                                          ▼
                                           Redis answers in order ──► hiredis Reader
    caller ◄── future resolved ◄── FIFO of waiters ◄────────────────────┘

A command joins the write buffer when it is submitted (``submit``; calling a script does the
same), not when its reply is awaited, so a caller can send to two stores before waiting on either.

Redis answers the commands of one connection in the order it received them, so a FIFO of
futures pairs replies with callers: commands from concurrent requests are pipelined for free
and a cancelled caller's reply is still consumed in turn. A watchdog fails every waiter (and
drops the connection) when the oldest reply is overdue; a lost connection fails the waiters
and the next call reconnects. Failures are redis-py's exception types (``ConnectionError``,
``TimeoutError``, ``ResponseError``), so callers translate them exactly as before. Blocking
commands (``XREADGROUP BLOCK``, ``SUBSCRIBE``) must not use the link: they would hold every
other caller's reply behind them; they stay on the redis-py client.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | int | float | bytes
_INCOMPLETE = object()  # the reader's answer while a reply is still partial


class _Protocol(asyncio.Protocol):
    """The connection: writes coalesced per loop iteration, replies matched to waiters in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._reader = hiredis.Reader(replyError=ResponseError, notEnoughData=_INCOMPLETE)
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._outgoing: list[bytes] = []
        self._transport: asyncio.WriteTransport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.lost: BaseException | None = None

    @property
    def usable(self) -> bool:
        """True while the connection can carry commands."""
        return self._transport is not None and self.lost is None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not register with asyncio's ABCs: no isinstance check here.
        self._transport = cast(asyncio.WriteTransport, transport)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; the future resolves with its reply."""
        if self.lost is not None:
            raise RedisConnectionError(f"redis connection lost: {self.lost}")
        future: asyncio.Future[Any] = self._loop.create_future()
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(packed)
        self._waiters.append((future, self._loop.time() + self._timeout))
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self._waiters[0][1], self._check_overdue)
        return future

    def _flush(self) -> None:
        if self._transport is None or not self._outgoing:
            return
        data = b"".join(self._outgoing) if len(self._outgoing) > 1 else self._outgoing[0]
        self._outgoing = []
        self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiters = self._waiters
        while (reply := reader.gets()) is not _INCOMPLETE:
            if not waiters:
                self._fail(RedisConnectionError("redis sent a reply nobody asked for"))
                return
            future, _ = waiters.popleft()
            if future.done():  # the caller was cancelled; its reply is consumed all the same
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def _check_overdue(self) -> None:
        self._watchdog = None
        if not self._waiters:
            return
        deadline = self._waiters[0][1]
        if deadline <= self._loop.time():
            self._fail(RedisTimeoutError(f"no reply from redis within {self._timeout:g} s"))
            return
        self._watchdog = self._loop.call_at(deadline, self._check_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"redis connection closed: {exc or 'by the server'}"))

    def _fail(self, error: Exception) -> None:
        """Fail every waiter and drop the connection (the next call reconnects)."""
        if self.lost is None:
            self.lost = error
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._outgoing = []
        while self._waiters:
            future, _ = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()

    def close(self) -> None:
        """Drop the connection, failing whatever still waits."""
        self._fail(RedisConnectionError("redis link closed"))


class RedisLink:
    """One multiplexed connection to Redis for short, non-blocking commands and scripts."""

    def __init__(self, url: str, *, timeout: float, connect_timeout: float) -> None:
        self._options: dict[str, Any] = dict(parse_url(url))
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    def register_script(self, source: str) -> LinkScript:
        """A callable running ``source`` with EVALSHA (the same shape as redis-py's ``register_script``)."""
        return LinkScript(self, source)

    def submit(self, *args: Arg) -> Awaitable[Any]:
        """Send one command now (or once connected); the awaitable gives its reply.

        Commands submitted in the same turn of the event loop leave in one write, so a caller
        can submit several and await them afterwards: one round trip for all of them.
        """
        protocol = self._protocol
        if protocol is not None and protocol.usable:
            return protocol.send(_pack(args))
        return self._send_when_connected(args)

    async def execute(self, *args: Arg) -> Any:
        """Run one command and return its reply (raises redis-py's exception types)."""
        return await self.submit(*args)

    async def _send_when_connected(self, args: tuple[Arg, ...]) -> Any:
        protocol = await self._connect()
        return await protocol.send(_pack(args))

    async def pipeline(self, commands: Sequence[tuple[Arg, ...]]) -> list[Any]:
        """Send ``commands`` together and return their replies in order (raises the first failure)."""
        protocol = self._protocol
        if protocol is None or not protocol.usable:
            protocol = await self._connect()
        futures = [protocol.send(_pack(command)) for command in commands]
        replies = await asyncio.gather(*futures, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    async def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

    async def _connect(self) -> _Protocol:
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        connecting = self._connecting = loop.create_future()
        protocol = _Protocol(loop, self._timeout)
        try:
            await asyncio.wait_for(self._open(loop, protocol), self._connect_timeout)
        except BaseException as exc:
            protocol.close()
            error = RedisConnectionError(f"cannot connect to redis: {exc!r}")
            connecting.set_exception(error)
            connecting.exception()  # marked as retrieved: only concurrent callers re-raise it
            self._connecting = None
            if isinstance(exc, OSError | TimeoutError | ResponseError | RedisConnectionError):
                raise error from exc
            raise
        self._protocol = protocol
        connecting.set_result(protocol)
        self._connecting = None
        return protocol

    async def _open(self, loop: asyncio.AbstractEventLoop, protocol: _Protocol) -> None:
        options = self._options
        kind = options.get("connection_class")
        if kind is UnixDomainSocketConnection:
            await loop.create_unix_connection(lambda: protocol, options["path"])
        else:
            context = _tls_context(options) if kind is SSLConnection else None
            host, port = options.get("host", "localhost"), int(options.get("port", 6379))
            await loop.create_connection(lambda: protocol, host, port, ssl=context)
        handshake: list[tuple[Arg, ...]] = []
        if options.get("password") is not None:
            user = options.get("username")
            handshake.append(("AUTH", user, options["password"]) if user else ("AUTH", options["password"]))
        if int(options.get("db") or 0):
            handshake.append(("SELECT", int(options["db"])))
        for command in handshake:
            await protocol.send(_pack(command))


class LinkScript:
    """A Lua script run through a :class:`RedisLink` by SHA, sent whole once if Redis lacks it."""

    def __init__(self, link: RedisLink, source: str) -> None:
        self._link = link
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Awaitable[Any]:
        """Send the script with ``keys`` and ``args`` now (as :meth:`RedisLink.submit`); await its reply."""
        return self._reply(self._link.submit("EVALSHA", self.sha, len(keys), *keys, *args), keys, args)

    async def _reply(self, sent: Awaitable[Any], keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await sent
        except ResponseError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
        # EVAL runs the script and caches it, so every later call finds it by SHA.
        return await self._link.execute("EVAL", self._source, len(keys), *keys, *args)


def _pack(command: tuple[Arg, ...]) -> bytes:
    """One command in RESP (packed in C by hiredis)."""
    pack: Any = hiredis.pack_command  # its stub declares a one-element tuple
    return cast(bytes, pack(command))


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if str(options.get("ssl_cert_reqs", "required")).lower() in ("none", "cert_none"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
