"""Run a real ASGI server (uvicorn) on a free local port in a background thread.

The server has its own event loop; ``run(coro)`` executes a coroutine on that loop, so tests can
provision data through the gateway's own runtime and inspect it (e.g. count SQL statements).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn

from odock.app import OdockApp
from odock.web.http_protocol import protocol_factory

T = TypeVar("T")


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server(uvicorn.Server):
    """uvicorn's server, stopped without its fixed pauses (test servers start and stop by the thousand).

    uvicorn notices ``should_exit`` at its next 0.1 s tick and then pauses 0.1 s for connections
    to close; every stop waited ~0.15 s idle. Here :meth:`request_exit` wakes the main loop at
    once, and shutdown waits for the open connections themselves (uvicorn's own wait, which polls
    while any remain) instead of a fixed pause first. The once-a-second tick work is unchanged.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    def request_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ask the server to exit now (from any thread)."""
        self.should_exit = True
        loop.call_soon_threadsafe(self._exit.set)

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0)  # let the connections that closed at once report it
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                await self._wait_tasks_to_complete()
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()


class ThreadedServer:
    """An ASGI app served by uvicorn in a thread."""

    def __init__(self, app: Any, port: int | None = None, *, graceful_timeout: int = 5) -> None:
        self.app = app
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            # As `odock serve`: Odock's protocol for Odock's app, plain httptools for the fakes.
            http=protocol_factory(app.settings) if isinstance(app, OdockApp) else "httptools",
            ws="none",
            lifespan="on",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=int(graceful_timeout),
            proxy_headers=False,  # as `odock serve`: the client IP is Odock's to decide
        )
        self._server = _Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name=f"server-{self.port}", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
        finally:
            self._ready.set()
            self._loop.close()

    async def _serve(self) -> None:
        serve = asyncio.ensure_future(self._server.serve())
        # uvicorn exposes readiness only as a flag, so poll it (bounded by start()'s deadline).
        while not self._server.started and not serve.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        self._ready.set()
        await serve

    def start(self) -> ThreadedServer:
        """Start and wait until the server accepts connections."""
        self._thread.start()
        if not self._ready.wait(timeout=60):
            raise RuntimeError("server did not start within 60 s")
        if self._error is not None or not self._server.started:
            raise RuntimeError(f"server failed to start: {self._error!r}")
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the server's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        """Ask the server to exit (graceful) and wait for it."""
        if self._loop is not None and self._thread.is_alive():
            self._server.request_exit(self._loop)
        else:
            self._server.should_exit = True
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            raise RuntimeError("server did not stop within 60 s")
