"""The MCP gateway's HTTP side: the Streamable HTTP transport, served to clients (spec §1.1, §10).

    POST   /v1/mcp/{slug|id}[/…]  JSON-RPC messages for one server (a sub-path is accepted and
                                  names the same server); ``initialize`` opens a session
    GET    /v1/mcp/{slug|id}      the session's server stream (SSE)
    DELETE /v1/mcp/{slug|id}      ends the session
    POST   /v1/mcp                the aggregate endpoint: every server the key may use as one
                                  MCP server, tools named ``{server slug}__{tool}``
    DELETE /v1/mcp                ends an aggregate session

A POST is read, authenticated (the key never goes upstream), parsed, its server resolved and
admitted (odock.mcp.access), its session found (``Mcp-Session-Id``, shared by every replica:
odock.mcp.sessions), then governed and forwarded by :class:`~odock.mcp.stage.McpGovernor`.
Replies stream back as SSE when the client accepts it (the ``mcp`` SDK does), else as one JSON
body. Every refusal is a JSON-RPC error with Odock's ``code`` and ``status`` in ``error.data``,
sent with the refusal's HTTP status before anything else was sent, else as an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import orjson

from odock.db.engine import request_scope
from odock.errors import (
    InvalidMcpMessage,
    McpNotFound,
    McpSessionNotFound,
    McpUpstreamError,
    MethodNotAllowed,
    OdockError,
)
from odock.ids import accept_request_id, new_request_id
from odock.keys.directory import KeyDirectory
from odock.keys.principal import KeyPrincipal
from odock.keys.stage import authenticate
from odock.mcp import access
from odock.mcp.exchange import McpExchange
from odock.mcp.jsonrpc import (
    INITIALIZE,
    METHOD_NOT_FOUND,
    TOOLS_CALL,
    TOOLS_LIST,
    error_reply,
    is_request,
    is_response,
    parse_body,
    result_reply,
)
from odock.mcp.link import Binding, JsonRpc, Transport
from odock.mcp.resolved import McpServerLookup, ResolvedMcpServer
from odock.mcp.sessions import AGGREGATE, McpSession, McpSessionStore
from odock.mcp.stage import McpGovernor
from odock.pipeline.exchange import Timings
from odock.telemetry.context import RequestTag, current_request
from odock.web.asgi import (
    CLIENT_CONNECTION,
    JSON_HEADERS,
    ClientConnection,
    ClientGone,
    Receive,
    Scope,
    Send,
    encode_headers,
    read_body,
    send_bytes,
    stamped,
)
from odock.web.client_ip import Network, client_ip

log = logging.getLogger(__name__)

MCP_PREFIX = "/v1/mcp"
SESSION_HEADER = "mcp-session-id"
CANCELLED = "notifications/cancelled"
DISCOVER = "server/discover"  # the 2026-07-28 probe, answered "method not found"
NAMESPACE = "__"  # the aggregate endpoint's tool names: {server slug}__{tool}
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
STREAM_PROBE_SECONDS = 0.5  # how long a GET waits to learn whether a forwarded server has a stream
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
AGGREGATE_INFO = {"name": "odock", "title": "Odock MCP gateway", "version": "1"}
AGGREGATE_INSTRUCTIONS = (
    "Every MCP server this API key may use, as one server: tools are named '{server}__{tool}'."
)
# What the aggregate endpoint answers itself for the capabilities it does not offer.
AGGREGATE_EMPTY: dict[str, dict[str, list[Any]]] = {
    "resources/list": {"resources": []},
    "resources/templates/list": {"resourceTemplates": []},
    "prompts/list": {"prompts": []},
}


def is_mcp_path(path: str) -> bool:
    """True for the MCP gateway's paths."""
    return path == MCP_PREFIX or path.startswith("/v1/mcp/")


class Replies:
    """Writes an exchange's replies: SSE events as they come, or one JSON body at the end."""

    def __init__(self, send: Send, stream: bool, headers: dict[str, str]) -> None:
        self._send = send
        self._stream = stream
        self._headers = headers
        self._held: list[JsonRpc] = []
        self.started = False
        self.answered: set[object] = set()  # request ids that got their response

    async def open(self) -> None:
        """Start the SSE response (the first reply does, when nothing did before)."""
        self.started = True
        headers = SSE_HEADERS + encode_headers(self._headers)
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})

    async def __call__(self, reply: JsonRpc, data: bytes) -> None:
        if is_response(reply):
            self.answered.add(reply["id"])
        if not self._stream:
            self._held.append(reply)
            return
        if not self.started:
            await self.open()
        event = b"event: message\ndata: " + data + b"\n\n"
        await self._send({"type": "http.response.body", "body": event, "more_body": True})

    async def finish(self, batch: bool) -> None:
        """End the answer: close the stream, or send the held responses (202 when there are none)."""
        if self.started:
            await self._send({"type": "http.response.body", "body": b""})
            return
        responses = [reply for reply in self._held if is_response(reply)]
        if not responses:
            await send_bytes(self._send, 202, b"", encode_headers(self._headers))
            return
        body = orjson.dumps(responses if batch else responses[-1])
        await send_bytes(self._send, 200, body, JSON_HEADERS + encode_headers(self._headers))

    async def error(self, message_id: object, error: OdockError) -> None:
        """Answer one request with ``error`` (a JSON-RPC error reply)."""
        reply = error_reply(message_id, error)
        await self(reply, orjson.dumps(reply))

    async def fail(self, error: OdockError, requests: list[JsonRpc]) -> None:
        """Answer every unanswered request with ``error``: as events once the stream began, else
        with the error's status (one JSON-RPC error, or an array of them for a batch)."""
        pending = [m["id"] for m in requests if m["id"] not in self.answered]
        if self.started:
            for message_id in pending:
                await self.error(message_id, error)
            await self._send({"type": "http.response.body", "body": b""})
            return
        replies = [error_reply(i, error) for i in pending] or [error_reply(None, error)]
        body = orjson.dumps(replies[0] if len(replies) == 1 else replies)
        headers = JSON_HEADERS + encode_headers({**error.headers, **self._headers})
        await send_bytes(self._send, error.http_status, body, headers)


class McpEndpoint:
    """Serves ``/v1/mcp`` and ``/v1/mcp/{server}`` (see the module docstring)."""

    def __init__(
        self,
        keys: KeyDirectory,
        servers: McpServerLookup,
        sessions: McpSessionStore,
        governor: McpGovernor,
        *,
        max_request_bytes: int,
        trusted_proxies: tuple[Network, ...],
    ) -> None:
        self._keys = keys
        self._servers = servers
        self._sessions = sessions
        self._governor = governor
        self._max_request_bytes = max_request_bytes
        self._trusted_proxies = trusted_proxies
        # Aggregate tool calls in flight on this replica, by (session, request id): where a client's
        # notifications/cancelled must go.
        self._aggregate_calls: dict[tuple[str, object], tuple[ResolvedMcpServer, Binding]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        inbound = headers.get("x-request-id")
        request_id = accept_request_id(inbound) if inbound else new_request_id()
        send = stamped(send, request_id)
        rest = scope["path"][len(MCP_PREFIX) :].strip("/")
        ident = rest.split("/", 1)[0] or None
        token = request_scope.set(request_id)
        logged_as = current_request.set(RequestTag(request_id, _route_of(ident)))
        try:
            method = scope["method"]
            if method == "POST":
                await self._post(scope, receive, send, headers, request_id, ident)
            elif method == "GET" and ident is not None:
                await self._listen(scope, receive, send, headers, ident)
            elif method == "DELETE":
                await self._end(send, headers, ident)
            else:
                allow = "POST, DELETE" if ident is None else "GET, POST, DELETE"
                await Replies(send, False, {"allow": allow}).fail(MethodNotAllowed(f"use {allow}"), [])
        finally:
            current_request.reset(logged_as)
            request_scope.reset(token)

    # --- POST -------------------------------------------------------------------------------
    async def _post(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        request_id: str,
        ident: str | None,
    ) -> None:
        client = scope.get("client")
        ex = McpExchange(
            request_id=request_id,
            route=_route_of(ident),
            headers=headers,
            client_ip=client_ip(client[0] if client else None, headers, self._trusted_proxies),
            received_at=datetime.now(UTC),
            timings=Timings(received=time.perf_counter()),
        )
        replies = Replies(send, replies_streamed(headers), {})
        requests: list[JsonRpc] = []
        logged_as = current_request.set(ex)  # log records name the organisation once authenticated
        try:
            self._governor.pre_auth(ex.client_ip)
            body = await read_body(receive, headers, self._max_request_bytes)
            ex.bytes_in = len(body)
            principal = await authenticate(self._keys, headers)
            messages, batch = parse_body(body)
            requests = [m for m in messages if is_request(m)]
            ex.principal, ex.messages, ex.batch = principal, messages, batch
            if messages[0].get("method") not in (INITIALIZE, DISCOVER):
                session_id = headers.get(SESSION_HEADER)
                if not session_id:
                    raise InvalidMcpMessage("missing Mcp-Session-Id header: send initialize first")
                ex.session_id = session_id
                replies = Replies(send, replies_streamed(headers), {SESSION_HEADER: session_id})
            if ident is None:
                await self._aggregate(scope, receive, send, ex, replies)
            else:
                await self._one_server(scope, receive, send, ex, ident, replies)
        except ClientGone:
            return
        except OdockError as error:
            with contextlib.suppress(ClientGone):
                await replies.fail(error, requests)
        finally:
            current_request.reset(logged_as)

    async def _one_server(
        self, scope: Scope, receive: Receive, send: Send, ex: McpExchange, ident: str, replies: Replies
    ) -> None:
        principal = ex.principal
        assert principal is not None
        server = await self._servers.resolve(principal.organisation_id, ident)
        grant = access.admitted(principal, server, ident)
        assert server is not None
        ex.server = server
        first = ex.messages[0]
        if first.get("method") == INITIALIZE:
            async with self._governor.limited(ex):
                binding = await self._governor.link(server.transport).open(server.target, _params(first))
            version = _negotiated(first, binding, server.transport)
            session = await self._sessions.open(
                principal.key_hash, server.id, version, _params(first), {server.id: binding}
            )
            await _answer(
                send,
                result_reply(first["id"], {**binding.initialize_result, "protocolVersion": version}),
                session,
            )
            return
        if first.get("method") == DISCOVER:
            await _answer(send, _no_discover(first), None)
            return
        found = await self._sessions.get(ex.session_id or "", principal.key_hash, server.id)
        if found is None or server.id not in found.bindings:
            raise McpSessionNotFound()
        session, binding = found, found.bindings[server.id]
        before = binding.upstream_session_id
        if not any(is_request(m) for m in ex.messages):
            # Notifications (initialized, cancelled, progress) and answers to the server's requests.
            link = self._governor.link(server.transport)
            async with contextlib.aclosing(link.exchange(server.target, binding, ex.messages)) as it:
                async for _ in it:
                    pass
            await replies.finish(ex.batch)
            return
        if await _watched(scope, receive, ex, self._governor.run(ex, grant, binding, replies)):
            await replies.finish(ex.batch)
        if binding.upstream_session_id != before:  # the upstream forgot the session; the link opened another
            await self._sessions.save(session)

    # --- the aggregate endpoint ---------------------------------------------------------------
    async def _aggregate(
        self, scope: Scope, receive: Receive, send: Send, ex: McpExchange, replies: Replies
    ) -> None:
        principal = ex.principal
        assert principal is not None
        first = ex.messages[0]
        if first.get("method") == INITIALIZE:
            requested = _params(first).get("protocolVersion")
            version = requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[-1]
            session = await self._sessions.open(principal.key_hash, AGGREGATE, version, _params(first))
            result = {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": AGGREGATE_INFO,
                "instructions": AGGREGATE_INSTRUCTIONS,
            }
            await _answer(send, result_reply(first["id"], result), session)
            return
        if first.get("method") == DISCOVER:
            await _answer(send, _no_discover(first), None)
            return
        found = await self._sessions.get(ex.session_id or "", principal.key_hash, AGGREGATE)
        if found is None:
            raise McpSessionNotFound()
        session = found
        for message in ex.messages:
            if message.get("method") == CANCELLED:
                await self._cancel_aggregate_call(session, message)
            if not is_request(message):
                continue  # other notifications and answers: nothing upstream waits for them here
            method = message["method"]
            if method == TOOLS_LIST:
                reply = result_reply(message["id"], {"tools": await self._all_tools(ex, session)})
            elif method == TOOLS_CALL:
                await self._aggregate_call(scope, receive, ex, session, message, replies)
                continue
            elif method == "ping":
                reply = result_reply(message["id"], {})
            elif method in AGGREGATE_EMPTY:
                reply = result_reply(message["id"], AGGREGATE_EMPTY[method])
            else:
                reply = {
                    "jsonrpc": "2.0",
                    "id": message["id"],
                    "error": {
                        "code": METHOD_NOT_FOUND,
                        "message": f"the aggregate endpoint has no '{method}'",
                    },
                }
            await replies(reply, orjson.dumps(reply))
        await replies.finish(ex.batch)

    async def _usable(self, principal: KeyPrincipal) -> list[ResolvedMcpServer]:
        servers = await self._servers.servers(principal.organisation_id)
        return [s for s in servers if access.usable(principal, s)]

    async def _binding(self, session: McpSession, server: ResolvedMcpServer) -> Binding:
        binding = session.bindings.get(server.id)
        if binding is None:
            binding = await self._governor.link(server.transport).open(server.target, session.client_params)
            session.bindings[server.id] = binding
            await self._sessions.save(session)
        return binding

    def _part(self, ex: McpExchange, server: ResolvedMcpServer, messages: list[JsonRpc]) -> McpExchange:
        """The governed exchange of the aggregate request's messages bound for ``server``."""
        return McpExchange(
            request_id=ex.request_id,
            route=MCP_PREFIX,
            headers=ex.headers,
            client_ip=ex.client_ip,
            received_at=ex.received_at,
            timings=Timings(received=time.perf_counter()),
            principal=ex.principal,
            server=server,
            session_id=ex.session_id,
            messages=messages,
            bytes_in=len(orjson.dumps(messages[0])),
        )

    async def _all_tools(self, ex: McpExchange, session: McpSession) -> list[dict[str, Any]]:
        """Every tool the key may call, on every server it may use, named ``{slug}__{tool}``."""
        principal = ex.principal
        assert principal is not None
        tools: list[dict[str, Any]] = []
        for server in await self._usable(principal):
            grant = principal.mcp_grant(server.id)
            assert grant is not None
            listed: list[JsonRpc] = []

            async def collect(reply: JsonRpc, data: bytes, into: list[JsonRpc] = listed) -> None:
                into.append(reply)

            try:
                binding = await self._binding(session, server)
                part = self._part(ex, server, [{"jsonrpc": "2.0", "id": 1, "method": TOOLS_LIST}])
                await self._governor.run(part, grant, binding, collect)
            except OdockError as error:
                # One server down or refused leaves the others listed; the log says which and why.
                log.warning("aggregate tools/list: MCP server %s skipped: %s", server.slug, error.message)
                continue
            for reply in listed:
                result = reply.get("result")
                if reply.get("id") == 1 and isinstance(result, dict):
                    for tool in result.get("tools") or []:
                        tools.append({**tool, "name": f"{server.slug}{NAMESPACE}{tool['name']}"})
        return tools

    async def _aggregate_call(
        self,
        scope: Scope,
        receive: Receive,
        ex: McpExchange,
        session: McpSession,
        message: JsonRpc,
        replies: Replies,
    ) -> None:
        principal = ex.principal
        assert principal is not None
        name = message["params"]["name"]
        slug, _, tool = name.partition(NAMESPACE)
        server = next((s for s in await self._usable(principal) if s.slug == slug), None)
        if server is None or not tool:
            refusal = McpNotFound(f"no tool '{name}': tools are named '{{server}}{NAMESPACE}{{tool}}'")
            await replies.error(message["id"], refusal)
            return
        grant = principal.mcp_grant(server.id)
        assert grant is not None
        call = {**message, "params": {**message["params"], "name": tool}}
        part = self._part(ex, server, [call])
        in_flight = (session.id, message["id"])
        try:
            binding = await self._binding(session, server)
            self._aggregate_calls[in_flight] = (server, binding)
            await _watched(scope, receive, part, self._governor.run(part, grant, binding, replies))
        except OdockError as error:
            await replies.error(message["id"], error)
        finally:
            self._aggregate_calls.pop(in_flight, None)

    async def _cancel_aggregate_call(self, session: McpSession, message: JsonRpc) -> None:
        """Pass a client's ``notifications/cancelled`` to the server whose call it names (when that
        call runs on this replica; elsewhere there is nothing here to cancel)."""
        request_id = _params(message).get("requestId")
        if not isinstance(request_id, str | int):
            return
        running = self._aggregate_calls.get((session.id, request_id))
        if running is None:
            return
        server, binding = running
        link = self._governor.link(server.transport)
        with contextlib.suppress(OdockError):
            async with contextlib.aclosing(link.exchange(server.target, binding, [message])) as replies:
                async for _ in replies:
                    pass

    # --- GET and DELETE ---------------------------------------------------------------------------
    async def _listen(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], ident: str
    ) -> None:
        try:
            principal = await authenticate(self._keys, headers)
            server = await self._servers.resolve(principal.organisation_id, ident)
            access.admitted(principal, server, ident)
            assert server is not None
            session = await self._session_of(headers, principal, server.id)
            binding = session.bindings[server.id]
        except OdockError as error:
            await Replies(send, False, {}).fail(error, [])
            return
        link = self._governor.link(server.transport)
        replies = Replies(send, True, {SESSION_HEADER: session.id})

        async def relay() -> None:
            async with contextlib.aclosing(link.listen(server.target, binding)) as stream:
                if server.transport is Transport.STREAMABLE_HTTP:
                    # A forwarded server without a stream of its own (405) ends the upstream GET
                    # at once: answer 405 then, or the client would reconnect forever to a stream
                    # that always ends. A quiet, healthy stream is opened after this short look.
                    first = asyncio.ensure_future(anext(stream))
                    try:
                        await asyncio.wait({first}, timeout=STREAM_PROBE_SECONDS)
                        if first.done() and isinstance(first.exception(), StopAsyncIteration):
                            refusal = MethodNotAllowed(f"MCP server '{server.slug}' offers no server stream")
                            await Replies(send, False, {"allow": "POST, DELETE"}).fail(refusal, [])
                            return
                        await replies.open()
                        message = await first
                    finally:
                        if not first.done():  # cancelled meanwhile: stop it before the stream closes
                            first.cancel()
                            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                                await first
                    await replies(message, orjson.dumps(message))
                else:
                    await replies.open()
                async for message in stream:
                    await replies(message, orjson.dumps(message))

        try:
            if await _watched(scope, receive, None, relay()) and replies.started:
                await replies.finish(False)
        except McpUpstreamError as error:
            await replies.fail(error, [])

    async def _end(self, send: Send, headers: dict[str, str], ident: str | None) -> None:
        try:
            principal = await authenticate(self._keys, headers)
            server_key = AGGREGATE
            if ident is not None:
                server = await self._servers.resolve(principal.organisation_id, ident)
                access.admitted(principal, server, ident)
                assert server is not None
                server_key = server.id
            session = await self._session_of(headers, principal, server_key)
        except OdockError as error:
            await Replies(send, False, {}).fail(error, [])
            return
        for server_id, binding in session.bindings.items():
            target = await self._servers.resolve(principal.organisation_id, server_id)
            if target is not None:
                with contextlib.suppress(OdockError):
                    await self._governor.link(target.transport).close(target.target, binding)
        await self._sessions.end(session)
        await send_bytes(send, 204, b"", [])

    async def _session_of(
        self, headers: dict[str, str], principal: KeyPrincipal, server_key: str
    ) -> McpSession:
        session_id = headers.get(SESSION_HEADER)
        if not session_id:
            raise InvalidMcpMessage("missing Mcp-Session-Id header")
        session = await self._sessions.get(session_id, principal.key_hash, server_key)
        if session is None or (server_key != AGGREGATE and server_key not in session.bindings):
            raise McpSessionNotFound()
        return session


# --- helpers -------------------------------------------------------------------------------------


def _route_of(ident: str | None) -> str:
    """The route a usage record and a log line name: the aggregate endpoint or one server's."""
    return MCP_PREFIX if ident is None else f"{MCP_PREFIX}/{{server}}"


def replies_streamed(headers: dict[str, str]) -> bool:
    """Whether the client takes replies as an SSE stream (else one JSON body)."""
    return "text/event-stream" in headers.get("accept", "")


def _params(message: JsonRpc) -> dict[str, Any]:
    params = message.get("params")
    return params if isinstance(params, dict) else {}


def _negotiated(message: JsonRpc, binding: Binding, transport: Transport) -> str:
    """The protocol revision the client's session speaks: the upstream's answer for a forwarded
    session; for a bridged one (whose upstream the gateway initialized), the client's, if known."""
    if transport is Transport.STREAMABLE_HTTP:
        return binding.protocol_version
    requested = _params(message).get("protocolVersion")
    return requested if requested in HANDSHAKE_VERSIONS else binding.protocol_version


def _no_discover(message: JsonRpc) -> JsonRpc:
    """The answer to the 2026 revision's ``server/discover`` probe: the gateway speaks the
    initialize handshake, so clients fall back to it."""
    return {
        "jsonrpc": "2.0",
        "id": message.get("id"),
        "error": {"code": METHOD_NOT_FOUND, "message": "use the initialize handshake"},
    }


async def _answer(send: Send, reply: JsonRpc, session: McpSession | None) -> None:
    headers = {SESSION_HEADER: session.id} if session is not None else {}
    await send_bytes(send, 200, orjson.dumps(reply), JSON_HEADERS + encode_headers(headers))


async def _watched(scope: Scope, receive: Receive, ex: McpExchange | None, work: Awaitable[None]) -> bool:
    """Await ``work``; a client that leaves meanwhile cancels it (its exchange says so). False then."""
    task = asyncio.current_task()
    assert task is not None
    state = {"waiting": True, "left": False}

    def gone() -> None:
        if state["waiting"]:
            state["left"] = True
            if ex is not None and ex.outcome == "success":
                ex.outcome, ex.http_status = "client_disconnected", 499
            task.cancel()

    connection: ClientConnection | None = scope.get(CLIENT_CONNECTION)
    watch: asyncio.Task[None] | None = None
    if connection is not None:
        connection.watch_client(gone)
    else:

        async def wait() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone()

        watch = asyncio.get_running_loop().create_task(wait())
    try:
        await work
        return True
    except asyncio.CancelledError:
        if not state["left"]:
            raise
        task.uncancel()
        return False
    finally:
        state["waiting"] = False
        if watch is not None:
            watch.cancel()
        elif connection is not None:
            connection.watch_client(None)
