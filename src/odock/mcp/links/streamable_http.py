"""The forwarding link: each client session gets an upstream Streamable HTTP session of its own.

``open`` POSTs the client's ``initialize`` (under an id of the gateway's), keeps the
``Mcp-Session-Id`` and sends ``notifications/initialized``; ``exchange`` POSTs the client's
messages and relays the JSON or SSE answer message by message as it arrives; an upstream that
forgot the session (404) gets a new one, opened with the client's initialize parameters, and the
exchange is retried once. Closing an exchange early sends ``notifications/cancelled`` upstream for
the requests it still waited on (a dropped connection is not a cancellation in MCP).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Coroutine
from typing import Any

import aiohttp

from odock.errors import McpUpstreamError
from odock.mcp.link import Binding, JsonRpc, UpstreamTarget
from odock.mcp.links.auth import UpstreamAuth
from odock.mcp.links.wire import (
    dumps,
    is_request,
    is_response,
    parse_messages,
    raise_for_status,
    sse_messages,
)

logger = logging.getLogger("odock.mcp.links")

ACCEPT = "application/json, text/event-stream"
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
NO_BATCH_VERSION = "2025-06-18"  # the first protocol revision without JSON-RPC batches


class StreamableHttpLink:
    """The :class:`~odock.mcp.link.Link` of STREAMABLE_HTTP servers (one aiohttp session, owned)."""

    def __init__(self, auth: UpstreamAuth) -> None:
        self._auth = auth
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the Link contract ------------------------------------------------------------------
    async def open(self, target: UpstreamTarget, client_params: dict[str, Any]) -> Binding:
        """Forward the client's initialize; keep the upstream session id."""
        request_id = f"odock-init-{uuid.uuid4().hex}"
        initialize = {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": client_params}
        session_id: str | None = None
        result: dict[str, Any] | None = None
        async with self._post(target, None, None, [initialize], "initialize") as response:
            session_id = response.headers.get(SESSION_HEADER)
            async for message in self._answers(target, response):
                if message.get("id") == request_id and is_response(message):
                    if "error" in message:
                        error = message["error"] if isinstance(message["error"], dict) else {}
                        raise McpUpstreamError(
                            f"MCP server {target.slug} refused initialize: {error.get('message', error)}"
                        )
                    result = message.get("result")
                    break
        if not isinstance(result, dict):
            raise McpUpstreamError(f"MCP server {target.slug} sent no answer to initialize")
        version = str(result.get("protocolVersion") or client_params.get("protocolVersion") or "")
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        async with self._post(target, session_id, version, [initialized], "notifications/initialized"):
            pass
        return Binding(version, result, session_id, dict(client_params))

    async def exchange(
        self, target: UpstreamTarget, binding: Binding, messages: list[JsonRpc]
    ) -> AsyncGenerator[JsonRpc, None]:
        """POST the messages; yield the answers as they arrive (see the Link contract).

        Several messages go as one JSON-RPC batch to upstreams of protocol revisions that have
        batches (before 2025-06-18), otherwise as concurrent POSTs whose answers are merged.
        """
        if len(messages) > 1 and binding.protocol_version >= NO_BATCH_VERSION:
            async for message in self._merged(target, binding, messages):
                yield message
            return
        async for message in self._exchange(target, binding, messages):
            yield message

    async def _merged(
        self, target: UpstreamTarget, binding: Binding, messages: list[JsonRpc]
    ) -> AsyncGenerator[JsonRpc, None]:
        """One POST per message, concurrently; their answers in arrival order."""
        queue: asyncio.Queue[JsonRpc | BaseException | None] = asyncio.Queue()

        async def pump(message: JsonRpc) -> None:
            try:
                async for answer in self._exchange(target, binding, [message]):
                    queue.put_nowait(answer)
            except Exception as exc:  # handed to the consumer, which raises it
                queue.put_nowait(exc)
            finally:
                queue.put_nowait(None)

        loop = asyncio.get_running_loop()
        pumps = [loop.create_task(pump(message)) for message in messages]
        try:
            running = len(pumps)
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _exchange(
        self, target: UpstreamTarget, binding: Binding, messages: list[JsonRpc]
    ) -> AsyncGenerator[JsonRpc, None]:
        """One POST of ``messages``, retried once on a new session if the upstream forgot it."""
        waiting = {message["id"] for message in messages if is_request(message)}
        try:
            for attempt in (1, 2):
                async with self._post(
                    target,
                    binding.upstream_session_id,
                    binding.protocol_version,
                    messages,
                    "message",
                    session_retry=attempt == 1,
                ) as response:
                    if response.status == 404:
                        await self._reopen(target, binding, response.request_info.headers.get(SESSION_HEADER))
                        continue
                    if not waiting:
                        return
                    async for message in self._answers(target, response):
                        if is_response(message):
                            waiting.discard(message.get("id"))
                        yield message
                        if not waiting:
                            return
                    if waiting:
                        raise McpUpstreamError(
                            f"MCP server {target.slug} ended its answer without responding to "
                            f"{len(waiting)} request(s)"
                        )
                    return
        finally:
            if waiting:
                self._spawn(self._cancel(target, binding, sorted(waiting, key=str)))

    async def listen(self, target: UpstreamTarget, binding: Binding) -> AsyncGenerator[JsonRpc, None]:
        """GET the session's server stream; an upstream without one (405) ends it at once."""
        headers = await self._headers(target, binding.upstream_session_id, binding.protocol_version)
        headers["Accept"] = "text/event-stream"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=target.timeout_seconds)
        url = self._url(target)
        try:
            async with self._session().get(url, headers=headers, timeout=timeout) as response:
                if response.status == 405:
                    return
                await self._check(target, response, "listen")
                async for message in sse_messages(response.content, target):
                    yield message
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(target, "listen", exc) from exc

    async def close(self, target: UpstreamTarget, binding: Binding) -> None:
        """DELETE the upstream session (404/405 are fine: gone already, or not deletable)."""
        if binding.upstream_session_id is None:
            return
        headers = await self._headers(target, binding.upstream_session_id, binding.protocol_version)
        timeout = aiohttp.ClientTimeout(total=target.timeout_seconds)
        try:
            async with self._session().delete(
                self._url(target), headers=headers, timeout=timeout
            ) as response:
                if response.status not in (404, 405):
                    await self._check(target, response, "close")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(target, "close", exc) from exc

    async def aclose(self) -> None:
        """Finish the pending cancellations and close the HTTP session."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- helpers ----------------------------------------------------------------------------
    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(auto_decompress=True)
        return self._http

    @staticmethod
    def _url(target: UpstreamTarget) -> str:
        if not target.endpoint_url:
            raise McpUpstreamError(f"MCP server {target.slug} has no endpoint URL")
        return target.endpoint_url

    async def _headers(
        self, target: UpstreamTarget, session_id: str | None, version: str | None
    ) -> dict[str, str]:
        headers = await self._auth.headers(target, self._session())
        if session_id:
            headers[SESSION_HEADER] = session_id
        if version:
            headers[VERSION_HEADER] = version
        return headers

    async def _check(self, target: UpstreamTarget, response: aiohttp.ClientResponse, what: str) -> None:
        if response.status in (401, 403):
            self._auth.forget(target)
        await raise_for_status(response, target, what)

    def _post(
        self,
        target: UpstreamTarget,
        session_id: str | None,
        version: str | None,
        messages: list[JsonRpc],
        what: str,
        *,
        session_retry: bool = False,
    ) -> _Post:
        return _Post(self, target, session_id, version, messages, what, session_retry)

    async def _answers(
        self, target: UpstreamTarget, response: aiohttp.ClientResponse
    ) -> AsyncGenerator[JsonRpc, None]:
        """The messages of a POST's answer: none (202), a JSON body, or an SSE stream."""
        if response.status == 202:
            return
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            if content_type == "text/event-stream":
                async for message in sse_messages(response.content, target):
                    yield message
                return
            raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(target, "answer", exc) from exc
        if raw.strip():
            for message in parse_messages(raw, target):
                yield message

    async def _reopen(self, target: UpstreamTarget, binding: Binding, forgotten: str | None) -> None:
        """The upstream forgot the session: open a new one and update ``binding`` in place
        (unless a concurrent exchange of the same binding did already)."""
        if binding.upstream_session_id != forgotten:
            return
        logger.info("MCP server %s forgot session; opening a new upstream session", target.slug)
        fresh = await self.open(target, binding.client_params)
        binding.protocol_version = fresh.protocol_version
        binding.initialize_result = fresh.initialize_result
        binding.upstream_session_id = fresh.upstream_session_id

    async def _cancel(self, target: UpstreamTarget, binding: Binding, request_ids: list[Any]) -> None:
        """Tell the upstream that the client gave up on these requests."""
        notes = [
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": request_id, "reason": "the client went away"},
            }
            for request_id in request_ids
        ]
        try:
            async with self._post(
                target, binding.upstream_session_id, binding.protocol_version, notes, "cancel"
            ):
                pass
        except McpUpstreamError as exc:
            logger.info("MCP server %s: could not cancel %d request(s): %s", target.slug, len(notes), exc)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Post:
    """``async with``: one POST of messages, its status checked (404 passes when a retry may follow)."""

    def __init__(
        self,
        link: StreamableHttpLink,
        target: UpstreamTarget,
        session_id: str | None,
        version: str | None,
        messages: list[JsonRpc],
        what: str,
        session_retry: bool,
    ) -> None:
        self.link, self.target, self.session_id, self.version = link, target, session_id, version
        self.messages, self.what, self.session_retry = messages, what, session_retry
        self.response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        link, target = self.link, self.target
        headers = await link._headers(target, self.session_id, self.version)
        headers["Accept"] = ACCEPT
        headers["Content-Type"] = "application/json"
        body = dumps(self.messages[0] if len(self.messages) == 1 else self.messages)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=target.timeout_seconds, sock_read=target.timeout_seconds
        )
        try:
            self.response = await link._session().post(
                link._url(target), data=body, headers=headers, timeout=timeout
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(target, self.what, exc) from exc
        response = self.response
        if response.status == 404 and self.session_retry and self.session_id:
            return response
        try:
            await link._check(target, response, self.what)
        except BaseException:
            response.release()
            raise
        return response

    async def __aexit__(self, *exc: object) -> None:
        if self.response is not None:
            self.response.release()


def _unreachable(target: UpstreamTarget, what: str, exc: BaseException) -> McpUpstreamError:
    if isinstance(exc, TimeoutError):
        return McpUpstreamError(
            f"MCP server {target.slug} did not answer within {target.timeout_seconds:g} s ({what})"
        )
    return McpUpstreamError(
        f"MCP server {target.slug} could not be reached ({what}): {type(exc).__name__}: {exc}"
    )
