"""The control-plane API application: routers, error rendering, the OpenAPI document.

Errors keep the one shape of :mod:`odock.errors` (``{"error": {"code", "message", …}}``):
validation failures are 422 ``validation_error`` with a ``fields`` list naming each bad field
(a body that is not JSON at all is the field ``body``); unknown routes 404 ``not_found``; wrong
methods 405 ``method_not_allowed`` with ``Allow``; a bug 500 ``internal_error``. Every answer
carries ``X-Request-Id`` (:mod:`odock.web.api.request_ids`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from odock import __version__
from odock.errors import MethodNotAllowed, NotFound, OdockError, UnprocessableEntity
from odock.identity.service import Identity
from odock.runtime import Runtime
from odock.web.api.guard import RequestGuard
from odock.web.api.openapi import annotate_permissions, declare_security_schemes
from odock.web.api.request_ids import API_PREFIX, RequestIds
from odock.web.api.routes import ROUTERS
from odock.web.client_ip import parse_networks
from odock.web.console.access import is_page, not_found_page, page_error
from odock.web.console.pages import STATIC
from odock.web.console.routes import PAGE_ROUTERS

if TYPE_CHECKING:
    from odock.web.gateway import Gateway

OPENAPI_URL = "/api/openapi.json"


def create_api(runtime: Runtime | None, gateway: Gateway | None = None) -> FastAPI:
    """The control-plane API bound to ``runtime`` (``None`` only to render the OpenAPI document).

    ``gateway``: the process's gateway, through which the playground's calls go.
    """
    app = FastAPI(
        title="Odock control plane API",
        version=__version__,
        description="Manage organisations, teams, users, providers, models, API keys, policies, "
        "budgets, quotas, usage and invoices. See docs/control-plane.md.",
        openapi_url=OPENAPI_URL,
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.identity = (
        Identity.open(runtime.settings, runtime.sessions, runtime.redis, runtime.shared) if runtime else None
    )
    app.state.trusted_proxies = parse_networks(runtime.settings.trusted_proxy_cidrs) if runtime else ()
    app.state.gateway = gateway
    for router in ROUTERS:
        annotate_permissions(router)
        app.include_router(router, prefix=API_PREFIX)
    for pages in PAGE_ROUTERS:
        app.include_router(pages)  # the web console and the invitation link, same origin (odock.web.console)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    declare_security_schemes(app)
    max_body = runtime.settings.max_request_bytes if runtime else 8 * 1024 * 1024
    app.add_middleware(RequestGuard, max_body_bytes=max_body)
    app.add_middleware(RequestIds)  # added last: outermost, so the guard's refusals carry the id too
    app.add_exception_handler(OdockError, _odock_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    return app


def _render(error: OdockError) -> JSONResponse:
    return JSONResponse(error.payload(), status_code=error.http_status, headers=error.headers or None)


async def _odock_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OdockError)
    if is_page(request.url.path):
        return page_error(request, exc)
    return _render(exc)


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "pricing", "input") -> "pricing.input"; ("query", "limit") -> "limit"
    parts = [str(p) for p in location]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _problem(error: dict[str, Any]) -> dict[str, str]:
    """One entry of ``fields``: the field and what is wrong with it."""
    if error.get("type") == "json_invalid":
        # Its location is ("body", character offset): the body as a whole is what is wrong.
        reason = (error.get("ctx") or {}).get("error", "malformed")
        offset = error.get("loc", ("body", "?"))[-1]
        return {"field": "body", "message": f"the body is not valid JSON ({reason} at character {offset})"}
    return {"field": _field(error.get("loc", ())), "message": str(error.get("msg", "invalid"))}


_NOT_UTF8 = "the body is not valid JSON (it could not be decoded as UTF-8)"


def _invalid(fields: list[dict[str, str]]) -> UnprocessableEntity:
    first = fields[0] if fields else {"field": "body", "message": "invalid"}
    return UnprocessableEntity(
        f"{first['field']}: {first['message']}", param=first["field"], extra={"fields": fields}
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = _invalid([_problem(e) for e in exc.errors()])
    if is_page(request.url.path):
        return page_error(request, error)  # a page's bad query string: the page says which field
    return _render(error)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and is_page(request.url.path):
        return not_found_page(request)
    if exc.status_code == 404:
        return _render(NotFound("no such route"))
    if exc.status_code == 405:
        allow = _allowed_methods(request)
        return _render(MethodNotAllowed(f"use {allow}", headers={"Allow": allow}))
    if exc.status_code == 400:
        # FastAPI's answer to a JSON body it cannot decode (invalid UTF-8): a bad body, like bad JSON.
        return _render(_invalid([{"field": "body", "message": _NOT_UTF8}]))
    return JSONResponse(
        OdockError(str(exc.detail)).payload(), status_code=exc.status_code, headers=exc.headers
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on this path (Starlette names only the first route's)."""
    path = request.scope["path"]
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        pattern = getattr(route, "path_regex", None)
        if pattern is not None and pattern.match(path):
            methods.update(route.methods or ())
    return ", ".join(sorted(methods))
