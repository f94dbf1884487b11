"""The bridging machinery the SSE and STDIO links share: a *channel* is one gateway-initialized
upstream session (an SSE stream, a server process) that many client sessions use at once.

Client request ids are rewritten to ids unique on the channel (and back on the way out);
``progressToken`` too, so progress reaches the exchange that asked for it. Responses and
progress are routed to the waiting exchange; every other server message goes to the listeners
(``listen``). Closing an exchange early sends ``notifications/cancelled`` upstream for its open
requests. When the transport drops, :meth:`Channel.fail` fails the waiting exchanges and the
listeners end; the owning pool replaces the channel on next use.

A concrete channel implements :meth:`Channel._write` and calls :meth:`Channel.deliver` for every
message it reads and :meth:`Channel.fail` once when it stops.
"""

from __future__ import annotations

import abc
import asyncio
import copy
import itertools
import logging
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from odock.errors import McpUpstreamError
from odock.mcp.link import GATEWAY_CLIENT_INFO, HANDSHAKE_VERSION, Binding, JsonRpc, UpstreamTarget
from odock.mcp.links.wire import is_request, is_response, progress_token

logger = logging.getLogger("odock.mcp.links")

LEGACY_VERSION = "2024-11-05"
_DONE = object()  # queued to an exchange whose request the client cancelled


@dataclass(eq=False)
class _Waiter:
    """One exchange waiting on the channel: its queue and the ids it rewrote."""

    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    ids: dict[int, Any] = field(default_factory=dict)  # upstream id → client id
    tokens: dict[str, Any] = field(default_factory=dict)  # upstream progress token → client's


class Channel(abc.ABC):
    """One upstream session shared by client sessions, with JSON-RPC ids mapped."""

    def __init__(self, target: UpstreamTarget, error: Callable[[str], McpUpstreamError]) -> None:
        self.target = target
        self.version = target.version
        self.error = error  # builds the link's error class (McpUpstreamError, McpStdioError)
        self.initialize_result: dict[str, Any] = {}
        self.protocol_version = HANDSHAKE_VERSION
        self.load = 0  # requests in flight (reserved by the pool before the exchange runs)
        self.failure: McpUpstreamError | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Waiter] = {}
        self._progress: dict[str, _Waiter] = {}
        self._owners: dict[tuple[str | None, Any], int] = {}  # (client session tag, client id) → upstream id
        self._listeners: set[asyncio.Queue[Any]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsent = 0  # requests registered whose exchange is still writing them
        self.on_sent: Callable[[], None] = lambda: None  # called once an exchange's messages are out

    # --- what a concrete channel provides -----------------------------------------------------
    @abc.abstractmethod
    async def _write(self, message: JsonRpc) -> None:
        """Send one message upstream."""

    @property
    def alive(self) -> bool:
        """False once the transport dropped."""
        return self.failure is None

    def deliver(self, message: JsonRpc) -> None:
        """Route one message the upstream sent."""
        if is_response(message):
            waiter = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
            if waiter is None:
                return  # answered after its exchange went away
            upstream_id = message["id"]
            out = dict(message)
            out["id"] = waiter.ids.pop(upstream_id)
            self._forget_owner(upstream_id)
            waiter.queue.put_nowait(out)
            return
        if message.get("method") == "notifications/progress":
            params = message.get("params")
            token = params.get("progressToken") if isinstance(params, dict) else None
            waiter = self._progress.get(token) if isinstance(token, str) else None
            if waiter is not None and isinstance(params, dict):
                out = dict(message)
                out["params"] = {**params, "progressToken": waiter.tokens[str(token)]}
                waiter.queue.put_nowait(out)
                return
        for listener in self._listeners:
            listener.put_nowait(message)

    def fail(self, error: McpUpstreamError) -> None:
        """The transport stopped: fail every waiting exchange and end the listeners."""
        if self.failure is not None:
            return
        self.failure = error
        for waiter in {id(w): w for w in self._pending.values()}.values():
            waiter.queue.put_nowait(error)
        self._pending.clear()
        self._progress.clear()
        self._owners.clear()
        for listener in self._listeners:
            listener.put_nowait(error)

    # --- the handshake ----------------------------------------------------------------------------
    async def handshake(self) -> None:
        """Initialize the upstream session as the gateway (the legacy version if the first is refused)."""
        for version in (HANDSHAKE_VERSION, LEGACY_VERSION):
            params = {"protocolVersion": version, "capabilities": {}, "clientInfo": dict(GATEWAY_CLIENT_INFO)}
            request = {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": params}
            answer = None
            async for message in self.exchange(None, [request]):
                answer = message
            if answer is not None and isinstance(answer.get("result"), dict):
                self.initialize_result = answer["result"]
                self.protocol_version = str(answer["result"].get("protocolVersion") or version)
                await self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
                return
        raise self.error(f"MCP server {self.target.slug} refused initialize: {answer}")

    # --- exchanges and listeners ------------------------------------------------------------------
    async def exchange(self, tag: str | None, messages: list[JsonRpc]) -> AsyncGenerator[JsonRpc, None]:
        """Send ``messages`` (client ids) and yield what comes back for them (client ids)."""
        if self.failure is not None:
            raise self.failure
        waiter = _Waiter()
        outgoing: list[JsonRpc] = []
        for message in messages:
            if is_request(message):
                outgoing.append(self._register(tag, waiter, message))
            elif message.get("method") == "notifications/cancelled":
                cancelled = self._cancelled_by_client(tag, message)
                if cancelled is not None:
                    outgoing.append(cancelled)
            else:
                outgoing.append(message)
        remaining = len(waiter.ids)  # responses (or client cancellations) still to come
        self._unsent += remaining
        try:
            try:
                for message in outgoing:
                    await self._write(message)
            finally:
                self._unsent -= remaining
            self.on_sent()
            while remaining:
                try:
                    item = await asyncio.wait_for(waiter.queue.get(), self.target.timeout_seconds)
                except TimeoutError:
                    raise self.error(
                        f"MCP server {self.target.slug} did not answer within "
                        f"{self.target.timeout_seconds:g} s"
                    ) from None
                if isinstance(item, McpUpstreamError):
                    raise item
                if item is _DONE or is_response(item):
                    remaining -= 1
                if item is not _DONE:
                    yield item
        finally:
            self._abandon(waiter)

    async def listen(self) -> AsyncGenerator[JsonRpc, None]:
        """Server messages that belong to no exchange, until the channel drops."""
        if self.failure is not None:
            return
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._listeners.add(queue)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, McpUpstreamError):
                    return
                yield item
        finally:
            self._listeners.discard(queue)

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._pending) - self._unsent

    # --- helpers ------------------------------------------------------------------------------------
    def _register(self, tag: str | None, waiter: _Waiter, message: JsonRpc) -> JsonRpc:
        """Give a client's request an id (and progress token) unique on the channel; route its answers
        to ``waiter``; return the request as sent upstream."""
        upstream_id = next(self._ids)
        waiter.ids[upstream_id] = message["id"]
        self._pending[upstream_id] = waiter
        self._owners[(tag, message["id"])] = upstream_id
        rewritten = dict(message)
        rewritten["id"] = upstream_id
        token = progress_token(message)
        if token is not None:
            upstream_token = f"odock-{upstream_id}"
            waiter.tokens[upstream_token] = token
            self._progress[upstream_token] = waiter
            rewritten["params"] = copy.copy(message["params"])
            rewritten["params"]["_meta"] = {**message["params"]["_meta"], "progressToken": upstream_token}
        return rewritten

    # --- routing helpers ---------------------------------------------------------------------------
    def _cancelled_by_client(self, tag: str | None, message: JsonRpc) -> JsonRpc | None:
        """The client's ``notifications/cancelled`` with the upstream id (None: nothing to cancel)."""
        params = message.get("params")
        if not isinstance(params, dict):
            return None
        upstream_id = self._owners.pop((tag, params.get("requestId")), None)
        if upstream_id is None:
            return None
        waiter = self._pending.pop(upstream_id, None)
        if waiter is not None:
            waiter.ids.pop(upstream_id, None)
            waiter.queue.put_nowait(_DONE)
        return {**message, "params": {**params, "requestId": upstream_id}}

    def _forget_owner(self, upstream_id: int) -> None:
        for key, value in list(self._owners.items()):
            if value == upstream_id:
                del self._owners[key]
                return

    def _abandon(self, waiter: _Waiter) -> None:
        """The exchange ended: unregister it, and cancel upstream what it still waited on."""
        for token in waiter.tokens:
            self._progress.pop(token, None)
        open_ids = list(waiter.ids)
        for upstream_id in open_ids:
            self._pending.pop(upstream_id, None)
            self._forget_owner(upstream_id)
        waiter.ids.clear()
        if open_ids and self.failure is None:
            task = asyncio.get_running_loop().create_task(self._cancel(open_ids))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _cancel(self, upstream_ids: list[int]) -> None:
        for upstream_id in upstream_ids:
            note = {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": upstream_id, "reason": "the client went away"},
            }
            try:
                await self._write(note)
            except McpUpstreamError as exc:
                logger.info("MCP server %s: could not cancel a request: %s", self.target.slug, exc)
                return

    async def drain_tasks(self) -> None:
        """Wait (briefly) for the cancellations still being sent."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)


class BridgedLink(abc.ABC):
    """A :class:`~odock.mcp.link.Link` over pooled channels (SSE, STDIO); subclasses pool them.

    Each client session is tagged with a gateway-made id, kept in ``Binding.upstream_session_id``
    (bridged sessions have no upstream session id of their own), so a client's
    ``notifications/cancelled`` finds its own request among all sessions on a channel.
    """

    @abc.abstractmethod
    async def _acquire(self, target: UpstreamTarget, load: int) -> Channel:
        """A live channel for ``target`` with ``load`` requests reserved on it."""

    @abc.abstractmethod
    def _release(self, channel: Channel, load: int) -> None:
        """The exchange that reserved ``load`` on ``channel`` ended."""

    async def open(self, target: UpstreamTarget, client_params: dict[str, Any]) -> Binding:
        """Make sure a channel is up; the client gets its initialize answer."""
        channel = await self._acquire(target, 0)
        self._release(channel, 0)
        return Binding(
            channel.protocol_version,
            dict(channel.initialize_result),
            f"odock-{uuid.uuid4().hex}",
            dict(client_params),
        )

    async def exchange(
        self, target: UpstreamTarget, binding: Binding, messages: list[JsonRpc]
    ) -> AsyncGenerator[JsonRpc, None]:
        """Send over a pooled channel; yield the answers with the client's ids."""
        load = sum(1 for message in messages if is_request(message))
        channel = await self._acquire(target, load)
        try:
            async for message in channel.exchange(binding.upstream_session_id, messages):
                yield message
        finally:
            self._release(channel, load)

    async def listen(self, target: UpstreamTarget, binding: Binding) -> AsyncGenerator[JsonRpc, None]:
        """The messages a channel's upstream sends unprompted, until that channel drops."""
        channel = await self._acquire(target, 0)
        self._release(channel, 0)
        async for message in channel.listen():
            yield message

    async def close(self, target: UpstreamTarget, binding: Binding) -> None:  # noqa: B027
        """Nothing upstream to end: channels are shared, and stop when idle or at shutdown."""
