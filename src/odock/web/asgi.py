"""Minimal ASGI plumbing for the gateway's hot path: read the request, write responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from odock.errors import OdockError, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
# Scope key under which Odock's HTTP protocol offers its connection (a ClientConnection).
CLIENT_CONNECTION = "odock.client_connection"
# Scope key naming the API key (by its hash) a model call acts as, instead of a presented secret.
# Only the control plane's playground sets it, on a scope it builds itself for a caller it has
# authorised to use that key; a server builds a client's scope from the request line and headers
# alone, so no client can set it. Its cost on the hot path is one dict lookup per model call.
ACTING_KEY_HASH = "odock.acting_key_hash"
# Scope key where the dispatcher names the route a request took, as a bounded template (the
# ``route`` label of the HTTP metrics: odock.telemetry.metrics); unset for a path no route claims.
METRICS_ROUTE = "odock.metrics_route"


class ClientConnection(Protocol):
    """The client's connection, as the server offers it: a cheaper watch than a receive() task."""

    def watch_client(self, on_lost: Callable[[], None] | None) -> None:
        """Call ``on_lost`` once if the connection is (or gets) lost; None stops watching."""


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers as a dict of lower-case names (the last value of a repeated header wins)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole request body; 413 as soon as it is known to exceed ``limit``."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class ClientGone(Exception):
    """The client disconnected before the request was read."""


def encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """ASGI header list from a dict."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a complete response."""
    await send({"type": "http.response.start", "status": status, "headers": headers or JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, error: OdockError, extra_headers: dict[str, str] | None = None, body: bytes | None = None
) -> None:
    """Send an Odock error as a JSON response (``body``: the error in a dialect's own shape)."""
    headers = JSON_HEADERS + encode_headers({**error.headers, **(extra_headers or {})})
    await send_bytes(send, error.http_status, body if body is not None else error.body(), headers)


def stamped(send: Send, request_id: str) -> Send:
    """``send`` that adds ``x-request-id`` to the response it starts (for answers built without it)."""
    header = (b"x-request-id", request_id.encode("latin-1"))

    async def stamped_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), header]
        await send(message)

    return stamped_send
