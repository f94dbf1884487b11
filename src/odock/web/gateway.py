"""The gateway's HTTP surface (spec §1.1): routes → handlers, each a thin adapter.

Model calls go through the pipeline; the other routes authenticate and answer directly.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from odock.cache.bus import INVALIDATION_PATH, INVALIDATION_SECRET_HEADER, Invalidation
from odock.db.engine import request_scope
from odock.errors import (
    DependencyUnavailable,
    InvalidRequestBody,
    MethodNotAllowed,
    NotFound,
    OdockError,
    Unauthorized,
)
from odock.ids import accept_request_id, new_request_id
from odock.keys.principal import KeyPrincipal
from odock.keys.stage import authenticate, bearer_token
from odock.keys.standing import key_standing, key_view
from odock.pipeline.exchange import Exchange, Timings
from odock.runtime import Runtime
from odock.surfaces import anthropic_messages, gemini
from odock.surfaces.json_body import parse_json_object
from odock.surfaces.registry import ANTHROPIC_MESSAGES, GEMINI_GENERATE, gemini_route, model_call_route
from odock.surfaces.surface import Params, Surface
from odock.telemetry import exposition
from odock.telemetry.context import RequestTag, current_request
from odock.web.asgi import (
    ACTING_KEY_HASH,
    CLIENT_CONNECTION,
    METRICS_ROUTE,
    ClientGone,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
    send_bytes,
    send_error,
    stamped,
)
from odock.web.client_ip import client_ip, parse_networks
from odock.web.mcp import McpEndpoint, is_mcp_path
from odock.web.responder import AsgiResponder

log = logging.getLogger(__name__)

Handler = Callable[[Scope, Receive, Send, dict[str, str]], Awaitable[None]]

METRICS_PATH = "/metrics"
MCP_ROUTE = "/mcp"  # the route label of every MCP request (its paths name servers)


class Gateway:
    """Dispatches gateway routes; everything else is a JSON 404 or 405."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._trusted_proxies = parse_networks(runtime.settings.trusted_proxy_cidrs)
        self._mcp = McpEndpoint(
            runtime.keys,
            runtime.mcp_servers,
            runtime.mcp_sessions,
            runtime.mcp,
            max_request_bytes=runtime.settings.max_request_bytes,
            trusted_proxies=self._trusted_proxies,
        )
        # Model calls are routed by odock.surfaces.registry; these are the gateway's other routes.
        self._routes: dict[str, dict[str, Handler]] = {
            "/v1/models": {"GET": self._models},
            "/v1beta/models": {"GET": self._gemini_models},
            "/v1/messages/count_tokens": {"POST": self._anthropic_count_tokens},
            "/v1/keys/validate": {"POST": self._validate_key},
            "/v1/keys/self": {"GET": self._key_self},
            "/v1/health": {"GET": self._health},
            "/v1/healthz": {"GET": self._ready},
            INVALIDATION_PATH: {"POST": self._invalidate},
            METRICS_PATH: {"GET": self._metrics},
        }

    def handles(self, path: str) -> bool:
        """True for paths this gateway owns."""
        return path in self._routes or model_call_route(path) is not None or is_mcp_path(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        path, method = scope["path"], scope["method"]
        query = _query(scope, headers)
        call = model_call_route(path)
        if call is not None:
            surface, params = call
            scope[METRICS_ROUTE] = route = _route(path, params)
            if method == "POST":
                # The pipeline stamps its own request id.
                await self._model_call(surface, route, {**params, **query}, scope, receive, send, headers)
                return
        elif is_mcp_path(path):
            scope[METRICS_ROUTE] = MCP_ROUTE
            await self._mcp(scope, receive, send, headers)
            return
        request_id = accept_request_id(headers.get("x-request-id"))
        methods = self._routes.get(path)
        route = path
        if methods is None:
            methods = self._gemini_counting(path)
            route = _bounded(path)
        if methods:
            scope[METRICS_ROUTE] = route
        handler = methods.get(method)
        allowed = ["POST"] if call is not None else list(methods)
        if handler is not None:
            logged_as = current_request.set(RequestTag(request_id, route))
            try:
                await handler(scope, receive, stamped(send, request_id), headers)
            finally:
                current_request.reset(logged_as)
        elif allowed:
            allow = ", ".join(allowed)
            await send_error(
                send, MethodNotAllowed(f"use {allow}"), {"allow": allow, "x-request-id": request_id}
            )
        else:
            await send_error(send, NotFound(f"no route for {path}"), {"x-request-id": request_id})

    # --- model calls ---------------------------------------------------------------------
    async def _model_call(
        self,
        surface: Surface,
        route: str,
        params: Params,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
    ) -> None:
        started = time.perf_counter()
        inbound = headers.get("x-request-id")
        request_id = accept_request_id(inbound) if inbound else new_request_id()
        try:
            body = await read_body(receive, headers, self._rt.settings.max_request_bytes)
        except ClientGone:
            return
        except OdockError as error:
            await send_error(send, error, {"x-request-id": request_id}, surface.error_body(error))
            return
        client = scope.get("client")
        ex = Exchange(
            request_id=request_id,
            endpoint=surface.endpoint,
            route=route,
            method=scope["method"],
            headers=headers,
            client_ip=client_ip(client[0] if client else None, headers, self._trusted_proxies),
            body=body,
            received_at=datetime.now(UTC),
            timings=Timings(received=started),
            surface=surface,
            params=params,
            acting_key_hash=scope.get(ACTING_KEY_HASH),
        )
        logged_as = current_request.set(ex)
        try:
            await self._rt.pipeline.run(ex, AsgiResponder(send, receive, scope.get(CLIENT_CONNECTION)))
        finally:
            current_request.reset(logged_as)

    # --- key-authenticated routes ---------------------------------------------------------
    async def _authenticated(
        self, headers: dict[str, str], send: Send, surface: Surface | None = None
    ) -> KeyPrincipal | None:
        """Authenticate outside the pipeline (in a request scope, like the pipeline does); a
        refusal is sent in ``surface``'s error shape (Odock's own by default)."""
        token = request_scope.set(accept_request_id(headers.get("x-request-id")))
        try:
            return await authenticate(self._rt.keys, headers)
        except OdockError as error:
            await send_error(send, error, body=surface.error_body(error) if surface else None)
            return None
        finally:
            request_scope.reset(token)

    async def _models(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        """The models the key may call, in the caller's dialect: Anthropic's or Google's when its
        SDK's headers say so (``anthropic-version``; a Google key header or ``?key=``), else OpenAI's."""
        if "anthropic-version" in headers:
            await self._anthropic_models(scope, receive, send, headers)
        elif "x-goog-api-key" in headers:
            await self._gemini_models(scope, receive, send, headers)
        else:
            await self._openai_models(scope, receive, send, headers)

    async def _openai_models(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        principal = await self._authenticated(headers, send)
        if principal is None:
            return
        data = [
            {"id": m.name, "object": "model", "created": m.created, "owned_by": principal.organisation_id}
            for m in principal.granted
        ]
        await send_bytes(send, 200, orjson.dumps({"object": "list", "data": data}))

    async def _anthropic_models(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        principal = await self._authenticated(headers, send, ANTHROPIC_MESSAGES)
        if principal is not None:
            page = anthropic_messages.models_page([(m.name, m.created) for m in principal.granted])
            await send_bytes(send, 200, orjson.dumps(page))

    async def _gemini_models(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        principal = await self._authenticated(headers, send, GEMINI_GENERATE)
        if principal is not None:
            page = gemini.models_page([(m.name, m.type) for m in principal.granted])
            await send_bytes(send, 200, orjson.dumps(page))

    # --- token counting (Anthropic's and Gemini's endpoints) -----------------------------------
    def _gemini_counting(self, path: str) -> dict[str, Handler]:
        model, method = gemini_route(path)
        return {"POST": self._gemini_count_tokens} if model and method == "countTokens" else {}

    async def _anthropic_count_tokens(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        def checked(body: dict[str, Any]) -> dict[str, Any]:
            anthropic_messages.check_count_tokens_request(body)
            return body

        tokens = await self._counted(ANTHROPIC_MESSAGES, checked, scope, receive, send, headers)
        if tokens is not None:
            await send_bytes(send, 200, orjson.dumps(anthropic_messages.count_tokens_payload(tokens)))

    async def _gemini_count_tokens(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        model, _ = gemini_route(scope["path"])

        def checked(body: dict[str, Any]) -> dict[str, Any]:
            gemini.check_count_tokens_request(body)
            return {**gemini.normalize_request(body), "model": model}

        tokens = await self._counted(GEMINI_GENERATE, checked, scope, receive, send, headers)
        if tokens is not None:
            await send_bytes(send, 200, orjson.dumps(gemini.count_tokens_payload(tokens)))

    async def _counted(
        self,
        surface: Surface,
        checked: Callable[[dict[str, Any]], dict[str, Any]],
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
    ) -> int | None:
        """The input tokens of the body ``checked`` accepts; None once an error (in ``surface``'s
        shape) was sent or the client left."""
        principal = await self._authenticated(headers, send, surface)
        if principal is None:
            return None
        request_id = accept_request_id(headers.get("x-request-id"))
        try:
            body = checked(
                parse_json_object(await read_body(receive, headers, self._rt.settings.max_request_bytes))
            )
            return await self._rt.tokens.count(principal, surface, body, scope["path"], request_id)
        except ClientGone:
            return None
        except OdockError as error:
            await send_error(send, error, body=surface.error_body(error))
            return None

    async def _validate_key(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        principal = await self._authenticated(headers, send)
        if principal is None:
            return
        body = {
            "valid": True,
            "key": key_view(principal),
        }
        await send_bytes(send, 200, orjson.dumps(body))

    async def _key_self(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        principal = await self._authenticated(headers, send)
        if principal is None:
            return
        try:
            standing = await key_standing(principal, self._rt.governance, datetime.now(UTC))
        except OdockError as error:
            await send_error(send, error)
            return
        await send_bytes(send, 200, orjson.dumps(standing))

    # --- operational routes ---------------------------------------------------------------
    async def _health(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        await send_bytes(send, 200, b'{"status":"ok"}')

    async def _ready(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        checks: dict[str, str] = {}
        try:
            async with self._rt.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except (SQLAlchemyError, OSError) as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if self._rt.redis is not None:
            try:
                await self._rt.redis.ping()
                checks["redis"] = "ok"
            except (RedisError, OSError) as exc:
                checks["redis"] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        if ready:
            await send_bytes(send, 200, orjson.dumps({"status": "ready", "checks": checks}))
            return
        unavailable = DependencyUnavailable("a dependency is unavailable").payload()
        await send_bytes(send, 503, orjson.dumps({"status": "unavailable", "checks": checks, **unavailable}))

    async def _metrics(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        """The Prometheus exposition (docs/observability.md#metrics); 404 when metrics are off, 401
        without the configured bearer token."""
        settings = self._rt.settings
        if not settings.metrics_enabled:
            await send_error(send, NotFound("metrics are disabled (ODOCK_METRICS_ENABLED=false)"))
            return
        token = settings.metrics_token
        required = token.get_secret_value() if token is not None else ""
        presented = bearer_token(headers.get("authorization")) or ""
        if required and not hmac.compare_digest(presented.encode(), required.encode()):
            await send_error(
                send,
                Unauthorized("a scrape of /metrics needs the metrics bearer token"),
                {"www-authenticate": "Bearer"},
            )
            return
        body = await asyncio.to_thread(exposition.render)
        await send_bytes(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])

    async def _invalidate(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        secret = self._rt.settings.cache_invalidation_secret
        presented = headers.get(INVALIDATION_SECRET_HEADER, "")
        if secret is None or not hmac.compare_digest(presented.encode(), secret.get_secret_value().encode()):
            await send_error(send, Unauthorized("invalid or missing cache invalidation secret"))
            return
        try:
            body = await read_body(receive, headers, 64 * 1024)
            data = parse_json_object(body)
            invalidation = Invalidation.from_json(orjson.dumps(data))
        except ClientGone:
            return
        except ValueError as exc:
            await send_error(send, InvalidRequestBody(f"invalid invalidation command: {exc}"))
            return
        except OdockError as error:
            await send_error(send, error)
            return
        await self._rt.bus.publish(invalidation)
        await send_bytes(send, 202, orjson.dumps({"accepted": True, "generation": self._rt.bus.generation}))


def _query(scope: Scope, headers: dict[str, str]) -> dict[str, str]:
    """The query string's parameters; Gemini's ``?key=`` becomes the ``x-goog-api-key`` header.

    The key is taken out of the parameters, so it travels no further than authentication (the
    gateway writes no access log, and no parameter reaches a log or a usage record).
    """
    raw = scope.get("query_string")
    if not raw:
        return {}
    query = dict(parse_qsl(raw.decode("latin-1")))
    key = query.pop("key", None)
    if key and "x-goog-api-key" not in headers:
        headers["x-goog-api-key"] = key
    return query


def _bounded(path: str) -> str:
    """The route metrics and log context name for a gateway path ({model} in Gemini's paths)."""
    model, _ = gemini_route(path)
    return _route(path, {"model": model}) if model else path


def _route(path: str, params: Params) -> str:
    """The route a usage record names: the path, with a model named in it (Gemini) as ``{model}``."""
    model = params.get("model")
    return path.replace(f"/models/{model}:", "/models/{model}:") if model else path
