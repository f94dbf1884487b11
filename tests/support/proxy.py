"""A recording HTTP proxy for tests: CONNECT tunnels and absolute-form requests, on a thread of its own.

It forwards what it is asked to (a real proxy's two jobs) and records each request line with its
headers (:class:`ProxiedRequest`), so a test can tell that the gateway went through it and how.
With ``refuse`` set it answers every request with that status instead of forwarding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "proxy-authorization", "proxy-connection", "keep-alive"}


@dataclass(frozen=True)
class ProxiedRequest:
    """One request as the proxy received it: method, request target, headers (lower-case names)."""

    method: str
    target: str
    headers: dict[str, str]


class RecordingProxy:
    """An HTTP proxy on a free local port that records what passes through it."""

    def __init__(self, *, refuse: int | None = None) -> None:
        self.refuse = refuse
        self.port = 0
        self._seen: list[ProxiedRequest] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="recording-proxy", daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def seen(self) -> list[ProxiedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._seen)

    def start(self) -> RecordingProxy:
        """Listen on a free port; return once it accepts connections."""
        self._thread.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        serving = asyncio.start_server(self._handle, sock=sock)
        self._server = asyncio.run_coroutine_threadsafe(serving, self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then the loop."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        method, target, _version = request_line.split(" ")
        headers = dict((n.lower(), v) for n, _, v in (line.partition(": ") for line in lines))
        with self._lock:
            self._seen.append(ProxiedRequest(method, target, headers))
        if self.refuse is not None:
            writer.write(f"HTTP/1.1 {self.refuse} Refused\r\ncontent-length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()
        elif method == "CONNECT":
            await self._tunnel(target, reader, writer)
        else:
            await self._forward(method, target, headers, reader, writer)

    async def _tunnel(
        self, authority: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = authority.rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def _forward(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        # One request per connection: the answer ends with the upstream's end of connection.
        url = urlsplit(target)
        assert url.hostname is not None
        assert url.port is not None
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port)
        kept = "".join(f"{n}: {v}\r\n" for n, v in headers.items() if n not in _HOP_BY_HOP)
        path = url.path + (f"?{url.query}" if url.query else "")
        upstream_writer.write(f"{method} {path} HTTP/1.1\r\n{kept}connection: close\r\n\r\n".encode() + body)
        await upstream_writer.drain()
        await _pipe(upstream_reader, writer)
        upstream_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.contextmanager
def running_proxy(*, refuse: int | None = None) -> Iterator[RecordingProxy]:
    """A started :class:`RecordingProxy`, stopped on exit."""
    proxy = RecordingProxy(refuse=refuse).start()
    try:
        yield proxy
    finally:
        proxy.stop()
