"""The bridge to the legacy HTTP+SSE transport (protocol 2024-11-05).

A channel GETs ``endpoint_url`` (``text/event-stream``); the first event, ``endpoint``, names
where messages are POSTed (relative to ``endpoint_url``); answers arrive as ``message`` events on
the stream. The gateway initializes the channel itself and shares it among the client sessions
of the server (one channel per (server id, version); a new one when it drops; channels of an
older version close once their exchanges are done).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import urljoin

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from odock.errors import McpUpstreamError
from odock.mcp.link import JsonRpc, UpstreamTarget
from odock.mcp.links.auth import UpstreamAuth
from odock.mcp.links.channel import BridgedLink, Channel
from odock.mcp.links.wire import dumps, parse_messages, raise_for_status, sse_events

logger = logging.getLogger("odock.mcp.links")


class SseChannel(Channel):
    """One upstream HTTP+SSE session: the GET stream and its POST endpoint."""

    def __init__(self, target: UpstreamTarget, auth: UpstreamAuth, http: aiohttp.ClientSession) -> None:
        super().__init__(target, McpUpstreamError)
        self._auth = auth
        self._http = http
        self._response: aiohttp.ClientResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self.post_url = ""

    async def connect(self) -> None:
        """Open the stream, read the endpoint, start reading, initialize."""
        target = self.target
        if not target.endpoint_url:
            raise McpUpstreamError(f"MCP server {target.slug} has no endpoint URL")
        headers = await self._auth.headers(target, self._http)
        headers["Accept"] = "text/event-stream"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=target.timeout_seconds)
        try:
            response = await self._http.get(target.endpoint_url, headers=headers, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise McpUpstreamError(
                f"MCP server {target.slug} could not be reached (SSE stream): {type(exc).__name__}: {exc}"
            ) from exc
        self._response = response
        try:
            if response.status in (401, 403):
                self._auth.forget(target)
            await raise_for_status(response, target, "SSE stream")
            events = sse_events(response.content)
            try:
                event, data = await asyncio.wait_for(anext(events), target.timeout_seconds)
            except (StopAsyncIteration, aiohttp.ClientError, TimeoutError) as exc:
                raise McpUpstreamError(
                    f"MCP server {target.slug} sent no endpoint on its SSE stream"
                ) from exc
            if event != "endpoint" or not data.strip():
                raise McpUpstreamError(f"MCP server {target.slug} sent {event!r} before its endpoint")
            self.post_url = urljoin(target.endpoint_url, data.strip())
            self._reader = asyncio.get_running_loop().create_task(self._read(events))
            await self.handshake()
        except BaseException:
            await self.aclose()
            raise

    async def _read(self, events: AsyncIterator[tuple[str, str]]) -> None:
        reason = "the upstream closed it"
        try:
            async for event, data in events:
                if event == "message" and data.strip():
                    for message in parse_messages(data.encode(), self.target):
                        self.deliver(message)
        except (aiohttp.ClientError, HttpProcessingError, ValueError, TimeoutError, McpUpstreamError) as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
        finally:  # however reading ends, the channel's exchanges and listeners learn it
            logger.info("MCP server %s: SSE stream dropped (%s)", self.target.slug, reason)
            self.fail(McpUpstreamError(f"MCP server {self.target.slug}: the SSE stream dropped ({reason})"))

    async def _write(self, message: JsonRpc) -> None:
        target = self.target
        headers = await self._auth.headers(target, self._http)
        headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=target.timeout_seconds)
        try:
            async with self._http.post(
                self.post_url, data=dumps(message), headers=headers, timeout=timeout
            ) as r:
                if r.status in (401, 403):
                    self._auth.forget(target)
                await raise_for_status(r, target, "SSE message")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise McpUpstreamError(
                f"MCP server {target.slug} could not be reached (SSE message): {type(exc).__name__}: {exc}"
            ) from exc

    async def aclose(self) -> None:
        """Stop reading and close the stream."""
        await self.drain_tasks()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._response is not None:
            self._response.close()
        self.fail(McpUpstreamError(f"MCP server {self.target.slug}: the SSE channel was closed"))


class SseLink(BridgedLink):
    """The :class:`~odock.mcp.link.Link` of SSE servers: one shared channel per server."""

    def __init__(self, auth: UpstreamAuth) -> None:
        self._auth = auth
        self._http: aiohttp.ClientSession | None = None
        self._channels: dict[str, SseChannel] = {}  # server id → its current channel
        self._connecting: dict[str, asyncio.Future[SseChannel]] = {}
        self._retiring: set[SseChannel] = set()
        self._closers: set[asyncio.Task[None]] = set()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def _acquire(self, target: UpstreamTarget, load: int) -> Channel:
        while True:
            channel = self._channels.get(target.server_id)
            if channel is not None and channel.alive and channel.version == target.version:
                channel.load += load
                return channel
            if channel is not None:
                del self._channels[target.server_id]
                self._retire(channel)
            connecting = self._connecting.get(target.server_id)
            if connecting is None:
                connecting = asyncio.ensure_future(self._connect(target))
                self._connecting[target.server_id] = connecting
                connecting.add_done_callback(lambda _: self._connecting.pop(target.server_id, None))
            fresh = await asyncio.shield(connecting)
            self._channels.setdefault(target.server_id, fresh)

    async def _connect(self, target: UpstreamTarget) -> SseChannel:
        channel = SseChannel(target, self._auth, self._session())
        await channel.connect()
        return channel

    def _release(self, channel: Channel, load: int) -> None:
        channel.load -= load
        if channel in self._retiring and channel.load <= 0:
            self._retiring.discard(channel)
            self._close_later(channel)

    def _retire(self, channel: SseChannel) -> None:
        if channel.load <= 0 or not channel.alive:
            self._close_later(channel)
        else:
            self._retiring.add(channel)

    def _close_later(self, channel: Channel) -> None:
        assert isinstance(channel, SseChannel)
        task = asyncio.get_running_loop().create_task(channel.aclose())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    @property
    def channels(self) -> int:
        """Open channels (for measurements and tests)."""
        return sum(1 for channel in self._channels.values() if channel.alive)

    async def aclose(self) -> None:
        """Close every channel and the HTTP session."""
        channels = [*self._channels.values(), *self._retiring]
        self._channels.clear()
        self._retiring.clear()
        for channel in channels:
            await channel.aclose()
        if self._closers:
            await asyncio.wait(set(self._closers), timeout=5.0)
        if self._http is not None:
            await self._http.close()
            self._http = None
