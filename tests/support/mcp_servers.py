"""Real MCP servers for tests, built with the official SDK (``mcp.server.mcpserver.MCPServer``).

:class:`McpTestServer` serves one SDK server on a free localhost port, with uvicorn on its own
event loop in a background thread, over Streamable HTTP (``/mcp``) or the legacy HTTP+SSE
transport (``/sse``, messages POSTed to ``/messages/``). Every server has the same tools:

    echo(text)          → the text
    add(a, b)           → a + b
    big(size)           → a text of ``size`` characters
    slow_count(n)       reports progress 1..n (``ctx.report_progress``), then returns "counted n"
    wait_forever()      reports progress once, then blocks until cancelled (each cancellation
                        bumps ``state.cancelled``)
    announce()          sends ``notifications/tools/list_changed`` on the server stream
    cancelled_count()   → how many ``wait_forever`` calls were cancelled so far
    fail()              raises: the result has ``isError: true``

plus the resource ``res://greeting`` and the prompt ``greet(name)``. ``bearer_token`` makes the
server refuse (401) any request without ``Authorization: Bearer <token>``; ``token_check`` takes
any predicate over the ``Authorization`` value instead (how a server behind the OAuth2 fake
accepts the tokens it issued). ``basic=(user, password)`` requires HTTP basic auth;
``json_response`` answers POSTs with JSON instead of SSE; ``stateless`` issues no sessions.
:meth:`McpTestServer.drop_streams` ends the open GET streams (a dropped SSE channel).

Use them through :func:`start_mcp_server` (a context manager) or the session-scoped fixtures of
the link tests (``tests/support/mcp_links.py``). STDIO servers: :func:`time_server_command` runs
``mcp-server-time``; :func:`crashing_server_command` runs ``tests/support/mcp_crashing_server.py``
(tools ``echo``, ``pid``, ``pause``, and ``crash``, which exits the process with code 3).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer

START_TIMEOUT_SECONDS = 30.0

HttpTransport = Literal["streamable_http", "sse"]


@dataclass
class ServerState:
    """What a test can observe of a server's tools (touched from the server's thread)."""

    cancelled: int = 0
    waiting: int = 0  # wait_forever calls currently blocked
    calls: int = 0  # tools/call handled
    streams: int = 0  # GET streams opened (SSE channels, listen streams)
    authorizations: list[str] = field(default_factory=list)  # Authorization headers seen
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    def bump(self, name: str, delta: int = 1) -> None:
        """Add ``delta`` to counter ``name`` and wake the waiters."""
        with self._changed:
            setattr(self, name, getattr(self, name) + delta)
            self._changed.notify_all()

    def wait_for(self, condition: Callable[[ServerState], bool], timeout: float = 10.0) -> None:
        """Block until ``condition(self)`` holds (fail after ``timeout`` seconds)."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self), timeout=timeout):
                raise AssertionError(f"MCP test server: condition not met within {timeout} s")

    async def wait_for_async(self, condition: Callable[[ServerState], bool], within: float = 10.0) -> None:
        """:meth:`wait_for` from an event loop (runs in a worker thread)."""
        await asyncio.to_thread(self.wait_for, condition, within)


def build_server(state: ServerState, name: str = "odock-test") -> MCPServer[Any]:
    """The SDK server with the test tools, resource and prompt."""
    server: MCPServer[Any] = MCPServer(name=name, version="1.0", log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text."""
        state.bump("calls")
        return text

    @server.tool()
    def big(size: int) -> str:
        """A text of ``size`` characters (answers larger than any line buffer)."""
        state.bump("calls")
        return "x" * size

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        state.bump("calls")
        return a + b

    _add_session_tools(server, state)

    @server.resource("res://greeting")
    def greeting() -> str:
        """A greeting."""
        return "hello from the test server"

    @server.prompt()
    def greet(name: str) -> str:
        """Greet someone."""
        return f"Please greet {name} warmly."

    return server


def _add_session_tools(server: MCPServer[Any], state: ServerState) -> None:
    """The tools that talk back on the session: progress, notifications, cancellation."""

    @server.tool()
    async def slow_count(n: int, ctx: Context) -> str:
        """Report progress n times, then return."""
        state.bump("calls")
        for i in range(1, n + 1):
            await ctx.report_progress(i, n, f"step {i}")
        return f"counted {n}"

    @server.tool()
    async def wait_forever(ctx: Context) -> str:
        """Report progress once, then block until cancelled."""
        state.bump("calls")
        await ctx.report_progress(0, None, "waiting")
        state.bump("waiting")
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            state.bump("cancelled")
            raise
        finally:
            state.bump("waiting", -1)
        return "unreachable"

    @server.tool()
    async def announce(ctx: Context) -> str:
        """Send ``notifications/tools/list_changed`` (unprompted: on the session's server stream)."""
        await ctx.session.send_tool_list_changed()
        return "announced"

    @server.tool()
    def cancelled_count() -> int:
        """How many wait_forever calls were cancelled."""
        return state.cancelled

    @server.tool()
    def fail() -> str:
        """Always fail."""
        state.bump("calls")
        raise RuntimeError("the fail tool failed, as asked")


class _AuthGate:
    """ASGI middleware: records the Authorization header and refuses requests that fail the check."""

    def __init__(self, app: Any, state: ServerState, check: Callable[[str], bool] | None) -> None:
        self.app = app
        self.state = state
        self.check = check
        # open GET streams (the loop serving each, and the event that ends it)
        self.streams: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] | None = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            authorization = headers.get("authorization", "")
            with self.state._lock:
                self.state.authorizations.append(authorization)
            if self.check is not None and not self.check(authorization):
                body = b'{"error":"unauthorized"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(body)),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        if scope["type"] == "http" and scope["method"] == "GET" and self.streams is not None:
            await self._droppable(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _droppable(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve a GET stream that :meth:`McpTestServer.drop_streams` can end from the test's thread."""
        assert self.streams is not None
        drop = asyncio.Event()
        entry = (asyncio.get_running_loop(), drop)
        self.streams.add(entry)
        self.state.bump("streams")
        started = dropped = False

        async def tracked_send(message: Any) -> None:
            nonlocal started
            if dropped:
                return  # the server side goes on, unaware, as it would behind a dropped connection
            started = started or message["type"] == "http.response.start"
            await send(message)

        serving = asyncio.ensure_future(self.app(scope, receive, tracked_send))
        dropping = asyncio.ensure_future(drop.wait())
        try:
            await asyncio.wait({serving, dropping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.streams.discard(entry)
            dropping.cancel()
        if not serving.done():
            dropped = True
            if started:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        with contextlib.suppress(Exception):
            await serving


class _Server(uvicorn.Server):
    """uvicorn that tells a threading event once it is serving (or failed)."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


class McpTestServer:
    """One SDK server served by uvicorn in a background thread, on a free localhost port."""

    def __init__(
        self,
        transport: HttpTransport = "streamable_http",
        *,
        bearer_token: str | None = None,
        basic: tuple[str, str] | None = None,
        token_check: Callable[[str], bool] | None = None,
        json_response: bool = False,
        stateless: bool = False,
    ) -> None:
        self.transport = transport
        self.state = ServerState()
        self.mcp = build_server(self.state)
        self.port = 0
        check = token_check
        if bearer_token is not None:
            expected = f"Bearer {bearer_token}"
            check = lambda value: value == expected  # noqa: E731
        elif basic is not None:
            expected_basic = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            check = lambda value: value == expected_basic  # noqa: E731
        if transport == "streamable_http":
            inner = self.mcp.streamable_http_app(json_response=json_response, stateless_http=stateless)
        else:
            inner = self.mcp.sse_app()
        self._app = _AuthGate(inner, self.state, check)
        self._ready = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint a link is configured with (``/mcp`` or ``/sse``)."""
        path = "/mcp" if self.transport == "streamable_http" else "/sse"
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> McpTestServer:
        """Serve in a background thread; return once it accepts connections."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(self._app, log_level="warning", lifespan="auto", timeout_graceful_shutdown=1)
        self._server = _Server(config, self._ready)
        server = self._server
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name=f"mcp-{self.transport}",
            daemon=True,
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_SECONDS) or not server.started:
            raise RuntimeError(f"MCP test server ({self.transport}) did not start")
        return self

    def drop_streams(self) -> int:
        """End every open GET stream (an SSE channel, a listen stream) as a network drop would;
        return how many were open."""
        streams = list(self._app.streams or ())
        for loop, event in streams:
            loop.call_soon_threadsafe(event.set)
        return len(streams)

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)

    def __enter__(self) -> McpTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def start_mcp_server(transport: HttpTransport = "streamable_http", **options: Any) -> Iterator[McpTestServer]:
    """Serve a fresh test server for the ``with`` block."""
    server = McpTestServer(transport, **options).start()
    try:
        yield server
    finally:
        server.stop()


SUPPORT_DIR = Path(__file__).resolve().parent


def time_server_command() -> tuple[str, tuple[str, ...]]:
    """``(command, args)`` that run ``mcp-server-time`` over STDIO with this interpreter."""
    return sys.executable, ("-m", "mcp_server_time", "--local-timezone", "UTC")


def crashing_server_command() -> tuple[str, tuple[str, ...]]:
    """``(command, args)`` of the crashing STDIO test server (tool ``crash`` exits with code 3)."""
    return sys.executable, (str(SUPPORT_DIR / "mcp_crashing_server.py"),)


__all__ = [
    "McpTestServer",
    "ServerState",
    "build_server",
    "crashing_server_command",
    "start_mcp_server",
    "time_server_command",
]
