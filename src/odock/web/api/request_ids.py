"""The outermost frame of the control-plane API: a request id on every answer, and a JSON 500.

Like the gateway, the API honours a well-formed inbound ``X-Request-Id`` (else makes one) and
answers it on every response, success or error, so an operator can match a caller's report to
the log and to the audit event (routes read it from ``request.state.request_id``). A bug raised
in a route is answered here as the JSON ``internal_error`` with that id, then re-raised so the
outermost handler logs its traceback once; Starlette's own 500 would be plain text without one.
"""

from __future__ import annotations

from typing import Any

from odock.errors import OdockError
from odock.ids import accept_request_id
from odock.telemetry.context import current_request
from odock.web.asgi import JSON_HEADERS, Message, Receive, Scope, Send

ASGIApp = Any
API_PREFIX = "/api"  # where the API's routers are served (the console's pages have no prefix)
REQUEST_ID_HEADER = b"x-request-id"


class RequestIds:
    """Pure ASGI middleware: ``X-Request-Id`` on every answer; an unhandled error becomes a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_request_id(_inbound(scope))
        scope.setdefault("state", {})["request_id"] = request_id
        header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                if not any(name.lower() == REQUEST_ID_HEADER for name, _ in headers):
                    message = {**message, "headers": [*headers, header]}
            await send(message)

        logged_as = current_request.set(ApiRequest(request_id, scope))
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not started:
                await _internal_error(send, header)
            raise  # the outermost handler logs the traceback
        finally:
            current_request.reset(logged_as)


class ApiRequest:
    """What a log record names of a control-plane request: read from its ASGI scope when emitted,
    so the route template and the path's organisation are known once the router matched."""

    __slots__ = ("_scope", "request_id")

    def __init__(self, request_id: str, scope: Scope) -> None:
        self.request_id = request_id
        self._scope = scope

    @property
    def route(self) -> str:
        """The matched route's template (``/api/organisations/{organisation_id}/…``), else the path."""
        path = str(self._scope["path"])
        template = getattr(self._scope.get("route"), "path", None)
        if not isinstance(template, str):
            return path
        # A route keeps its template as declared in its router, without the prefix it is served under.
        if path.startswith(API_PREFIX + "/") and not template.startswith(API_PREFIX + "/"):
            return API_PREFIX + template
        return template

    @property
    def organisation_id(self) -> str | None:
        """The organisation the path names, if it names one."""
        value = (self._scope.get("path_params") or {}).get("organisation_id")
        return value if isinstance(value, str) else None


def _inbound(scope: Scope) -> str | None:
    found: bytes | None = None
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            found = value  # the last one wins, as in the gateway's header map
    return None if found is None else found.decode("latin-1")


async def _internal_error(send: Send, header: tuple[bytes, bytes]) -> None:
    await send({"type": "http.response.start", "status": 500, "headers": [*JSON_HEADERS, header]})
    await send({"type": "http.response.body", "body": OdockError().body()})
