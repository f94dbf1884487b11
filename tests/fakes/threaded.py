"""The lifecycle the fake vendor servers share: an aiohttp app on a free local port, served by its
own event loop in a background thread, recording every request it receives.

A fake subclasses :class:`ThreadedFake`, names its ``vendor``, adds its routes in
:meth:`ThreadedFake._add_routes` and calls :meth:`ThreadedFake._record` first in every handler.
Tests start it (:meth:`~ThreadedFake.start`, or ``with fake:``), read ``requests``,
``last_request()`` and ``wait_until`` from their own thread, and stop it. Handlers run on the
server's thread, so state both sides touch is guarded by ``self._lock``.
"""

from __future__ import annotations

import abc
import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self

from aiohttp import web
from aiohttp.typedefs import Middleware

START_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as a fake server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # the parsed JSON body, or None when it was not JSON


async def serve_on_free_port(
    app: web.Application, tls: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a free local port of the running loop; return its runner and the port.

    Handlers are cancelled when their caller goes away (how a slow answer notices that the
    gateway gave up); ``runner.cleanup()`` stops serving.
    """
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock, ssl_context=tls).start()
    return runner, int(sock.getsockname()[1])


class ThreadedFake(abc.ABC):
    """A fake vendor server in a background thread; subclasses add routes and their own state."""

    vendor: ClassVar[str]  # "OpenAI", …: names the thread and the failures
    middlewares: ClassVar[tuple[Middleware, ...]] = ()

    def __init__(self, *, api_key: str | None, tls: ssl.SSLContext | None = None) -> None:
        self.api_key = api_key  # None accepts any (or no) key
        self.tls = tls  # serve HTTPS with this server context
        self.port = 0
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @abc.abstractmethod
    def _add_routes(self, app: web.Application) -> None:
        """Route the vendor's endpoints of ``app`` to this fake's handlers."""

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:<port>``: the server root (clients add their version prefix)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Serve on a free local port in a background thread; return once it accepts connections."""
        self._thread = threading.Thread(target=self._main, name=f"fake-{self.vendor.lower()}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=START_TIMEOUT_SECONDS):
            raise RuntimeError(f"fake {self.vendor} server did not start within {START_TIMEOUT_SECONDS} s")
        if self._error is not None:
            raise RuntimeError(f"fake {self.vendor} server failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Stop serving (open handlers are cancelled) and join the thread."""
        loop, runner, thread = self._loop, self._runner, self._thread
        if loop is None or thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _main(self) -> None:
        """The thread: start serving, tell :meth:`start` how that went, then run the loop until stopped."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=self.middlewares)
        self._add_routes(app)
        self._runner, self.port = await serve_on_free_port(app, self.tls)

    # --- recording ------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> ReceivedRequest:
        """Read ``request``'s body (JSON, or None when it is not), record the request and return it."""
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in request.headers.items()}
        received = ReceivedRequest(request.method, request.path, dict(request.query), headers, body)
        with self._lock:
            self._received.append(received)
        return received

    # --- what tests read --------------------------------------------------------------------
    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._received)

    def last_request(self) -> ReceivedRequest:
        """The most recent request (fails when there was none)."""
        received = self.requests
        assert received, f"the fake {self.vendor} server received no request"
        return received[-1]

    def wait_until(self, condition: Callable[[Self], bool], timeout: float = 10.0) -> None:
        """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"fake {self.vendor} server: condition not met within {timeout} s")
            time.sleep(0.01)


__all__ = ["ReceivedRequest", "ThreadedFake", "serve_on_free_port"]
