"""Writes the pipeline's answer to an ASGI client: a JSON body, or an SSE stream relayed chunk by chunk.

Streams are relayed as the upstream's own bytes (no re-encoding). Usage is tallied on the way;
the final usage-only chunk is forwarded only when the client asked for it
(``stream_options.include_usage``). While relaying, the client connection is watched: a
disconnect cancels the relay at once, so leases and reservations are released without waiting
for the next upstream chunk. The same watch runs while the pipeline waits for the upstream's
answer (:meth:`AsgiResponder.while_connected`): a lost connection cancels the request's own task,
so no second task carries the upstream call. The server's connection reports the loss by a
callback when it offers one (Odock's HTTP protocol does), else one ``receive()`` waiter does. A relay
whose request is cancelled (a shutdown past its grace) is cancelled and awaited before the stages
unwind and close the upstream stream.

Every response, answer or error, carries ``x-request-id`` and ``x-odock-overhead-ms`` (the time
spent in the gateway itself).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from odock.errors import OdockError
from odock.pipeline.exchange import ClientDisconnected, Exchange
from odock.surfaces.framing import Framer
from odock.web.asgi import JSON_HEADERS, ClientConnection, Receive, Send, encode_headers

STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class AsgiResponder:
    """The web side of :class:`odock.pipeline.runner.Responder`."""

    def __init__(self, send: Send, receive: Receive, connection: ClientConnection | None = None) -> None:
        self._send = send
        self._receive = receive
        self._connection = connection
        self._started = False
        self._finished = False  # the last body frame went out
        self._waiting: asyncio.Task[object] | None = None  # the request, while it waits upstream
        self._client_left = False
        self._framer: Framer | None = None  # the stream's, once it started

    @property
    def started(self) -> bool:
        return self._started

    @property
    def finished(self) -> bool:
        return self._finished

    def _headers(
        self, ex: Exchange, base: list[tuple[bytes, bytes]], extra: dict[str, str] | None = None
    ) -> list[tuple[bytes, bytes]]:
        now = time.perf_counter()
        ex.timings.first_byte_sent = now
        headers = {
            **(extra or {}),
            "x-request-id": ex.request_id,
            "x-odock-overhead-ms": f"{ex.timings.overhead_ms(now):.3f}",
            **ex.response_headers,
        }
        return base + encode_headers(headers)

    async def send_answer(self, ex: Exchange) -> None:
        if ex.unary is not None:
            body = ex.unary.body
            headers = self._headers(ex, JSON_HEADERS)
            self._started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})
            await self._send({"type": "http.response.body", "body": body})
            self._finished = True
            ex.bytes_out = len(body)
            return
        await self._relay_stream(ex)

    async def while_connected(self, upstream: Awaitable[None]) -> None:
        """Await ``upstream``; a client that leaves meanwhile cancels it (ClientDisconnected)."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting = task
        connection = self._connection
        watch = None
        if connection is not None:
            connection.watch_client(self._client_gone)
        else:
            watch = asyncio.get_running_loop().create_task(self._cancel_when_gone())
        try:
            await upstream
        except asyncio.CancelledError:
            if not self._client_left:
                raise  # the server's own cancellation, not ours
            task.uncancel()
            raise ClientDisconnected() from None
        finally:
            # Cleared before the watch can fire again: a disconnect seen from now on cancels nothing.
            self._waiting = None
            if watch is not None:
                watch.cancel()
            elif connection is not None:
                connection.watch_client(None)

    async def _cancel_when_gone(self) -> None:
        await self._wait_for_disconnect()
        self._client_gone()

    def _client_gone(self) -> None:
        if self._waiting is not None:
            self._client_left = True
            self._waiting.cancel()

    async def send_error(self, ex: Exchange, error: OdockError) -> None:
        if ex.outcome == "client_disconnected" or self._finished:
            return
        try:
            body = ex.surface.error_body(error)
            if self._started:
                # Headers are gone: report the failure in-band, never with the stream's end marker.
                assert self._framer is not None
                frame = self._framer.error(body)
                await self._send({"type": "http.response.body", "body": frame, "more_body": False})
                return
            self._started = True
            headers = self._headers(ex, JSON_HEADERS, error.headers)
            await self._send({"type": "http.response.start", "status": error.http_status, "headers": headers})
            await self._send({"type": "http.response.body", "body": body})
        except OSError:
            ex.disconnected()

    async def _relay_stream(self, ex: Exchange) -> None:
        loop = asyncio.get_running_loop()
        relay = loop.create_task(self._relay(ex))
        watch = loop.create_task(self._wait_for_disconnect())
        try:
            done, _ = await asyncio.wait({relay, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The request was cancelled: stop the relay before the stages unwind and close the
            # upstream stream it is still reading.
            await _stopped(relay)
            raise
        finally:
            watch.cancel()
        if relay not in done:
            if self._finished:
                # The server reports the end of the exchange once the last frame is handed over.
                await relay
                return
            await _stopped(relay)
            ex.disconnected()
            return
        relay.result()  # re-raises an upstream failure for the pipeline to report

    async def _relay(self, ex: Exchange) -> None:
        stream = ex.upstream_stream
        assert stream is not None
        send = self._send
        framer = self._framer = ex.surface.framer(ex.params)
        try:
            headers = self._headers(ex, [(b"content-type", framer.content_type), *STREAM_HEADERS])
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            self._started = True
            async for chunk in stream:
                if chunk.usage is not None:
                    ex.usage = chunk.usage
                if chunk.text_chars:
                    ex.streamed_chars += chunk.text_chars
                    ex.streamed_chunks += 1
                    if ex.timings.first_token is None:
                        ex.timings.first_token = time.perf_counter()
                if chunk.usage_only and not ex.include_usage:
                    continue
                frame = framer.frame(chunk)
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                ex.bytes_out += len(frame)
            self._finished = True
            end = framer.end()
            await send({"type": "http.response.body", "body": end, "more_body": False})
            ex.bytes_out += len(end)
        except OSError:  # the ASGI server reports a vanished client this way
            ex.disconnected()

    async def _wait_for_disconnect(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return


async def _stopped(relay: asyncio.Task[None]) -> None:
    """Cancel the relay and wait until it has stopped (whatever it was doing)."""
    relay.cancel()
    await asyncio.gather(relay, return_exceptions=True)
