"""An ASGI guard in front of the control-plane API: body size, and no NUL characters anywhere.

PostgreSQL refuses NUL in text (a database error, i.e. a 500, deep inside a service) while SQLite
stores it; neither is a name anyone means. Rather than trusting every string field of every body
to forbid it, the guard refuses any request whose query or JSON body carries one with the
same 422 ``validation_error`` as any other bad field (a path holding one names nothing: 404).
Bodies are read whole (control-plane bodies are small) and refused past ``max_request_bytes``.
On a console page the refusal is the page error (HTML, same status), as for any page error.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from odock.errors import NotFound, OdockError, PayloadTooLarge, UnprocessableEntity
from odock.web.asgi import JSON_HEADERS, Message, Receive, Scope, Send
from odock.web.console.access import is_page, page_error

ASGIApp = Any


class RequestGuard:
    """Pure ASGI middleware: refuse oversized bodies and NUL characters before routing."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = 8 * 1024 * 1024) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:
            await _refuse(scope, send, NotFound("no such resource"))  # no id or route holds a NUL
            return
        if b"%00" in scope.get("query_string", b""):
            await _refuse(scope, send, UnprocessableEntity("NUL characters are not allowed", param="query"))
            return
        body, complete = await _read_body(receive, self.max_body_bytes)
        if not complete:
            await _refuse(scope, send, PayloadTooLarge(f"request body exceeds {self.max_body_bytes} bytes"))
            return
        field = _nul_field(body)
        if field is not None:
            await _refuse(
                scope, send, UnprocessableEntity(f"{field}: NUL characters are not allowed", param=field)
            )
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True  # disconnected: let the app see an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


async def _nothing() -> Message:
    return {"type": "http.disconnect"}  # a refusal reads no body


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _nul_field(body: bytes) -> str | None:
    """The dotted path of the first string holding a NUL in a JSON ``body`` (``None``: none)."""
    if b"\x00" in body:
        return "body"
    if b"\\u0000" not in body.lower():
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # not JSON: validation reports it
    return _find_nul(document, "")


def _find_nul(value: object, path: str) -> str | None:
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return child
            found = _find_nul(item, child)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_nul(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


async def _refuse(scope: Scope, send: Send, error: OdockError) -> None:
    if is_page(scope["path"]):
        # A console page is refused as a page (the error page, or the sign-in redirect), not JSON.
        await page_error(Request(scope), error)(scope, _nothing, send)
        return
    await send({"type": "http.response.start", "status": error.http_status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": error.body()})
