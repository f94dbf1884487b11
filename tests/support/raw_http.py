"""Raw HTTP/1.1 over a socket: for requests no HTTP client would send, and for half-sent ones."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class RawResponse:
    """A response as read off the socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, parsed."""
        return orjson.loads(self.body)


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    """A connection to the local server on ``port``; every read waits at most ``timeout``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_to_close(sock: socket.socket, deadline: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (fails past ``deadline``)."""
    give_up = time.monotonic() + deadline
    received = bytearray()
    while True:
        assert time.monotonic() < give_up, f"the server kept the connection open; got {bytes(received)!r}"
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return bytes(received)
        if not piece:
            return bytes(received)
        received += piece


def parse(raw: bytes) -> RawResponse:
    """One complete response (status line, headers, body of the declared length)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return RawResponse(int(status_line.split(" ")[1]), headers, body[:length])


def send_raw(port: int, data: bytes, deadline: float = 10.0) -> RawResponse:
    """Send ``data`` on a new connection and read the answer until the server closes."""
    with connect(port, deadline) as sock:
        sock.sendall(data)
        raw = read_to_close(sock, deadline)
    assert raw, "the server closed the connection without answering"
    return parse(raw)
