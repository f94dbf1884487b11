"""The ASGI application: ``create_app(settings)`` and its lifespan.

Importing this module does no I/O and reads no environment. The lifespan opens the
:class:`odock.runtime.Runtime` on startup and closes it on shutdown, after the server has let
in-flight requests and streams finish (uvicorn's graceful shutdown on SIGTERM). Requests still
running when the grace period ends are cancelled by the server, which then starts the lifespan
shutdown at once: the runtime is closed only once those requests have unwound (leases released,
budgets settled, usage records submitted to the recorder that the close then flushes), for at most
``UNWIND_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

from odock.admin.demo import demo_banner, seed_demo, welcome_lines
from odock.admin.reconcile import apply_config_file
from odock.errors import NotFound, OdockError, ServerShuttingDown
from odock.identity.accounts import ensure_bootstrap_admin
from odock.identity.welcome import WELCOME_PATH, issue_welcome_link
from odock.ids import accept_request_id
from odock.runtime import Runtime, open_runtime
from odock.settings import Settings
from odock.telemetry import metrics
from odock.web.asgi import METRICS_ROUTE, Message, Receive, Scope, Send, header_map, send_error
from odock.web.console.paths import PAGE_PREFIXES
from odock.web.gateway import METRICS_PATH, Gateway

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)
demo_log = logging.getLogger("odock.demo")

# How long the shutdown waits for cancelled requests to unwind: their after() hooks are a store
# round trip or two each, so this bounds only a store that stopped answering.
UNWIND_SECONDS = 10.0


class OdockApp:
    """The gateway as an ASGI callable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self._gateway: Gateway | None = None
        self._api: FastAPI | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._in_flight = 0  # HTTP requests being handled
        self._unwound: asyncio.Event | None = None  # set once none is left, while shutting down
        # The first-start sign-in link printed at startup (odock.identity.welcome), if one was issued.
        self.welcome_url: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            self._in_flight += 1
            try:
                await self._http(scope, receive, send)
            finally:
                self._in_flight -= 1
                if not self._in_flight and self._unwound is not None:
                    self._unwound.set()
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self._gateway
        if gateway is None:
            raise RuntimeError("the app was not started (no lifespan)")
        status = 0  # the answer's, once its head went out

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path = scope["path"]
        # A scrape is not counted in flight: an idle gateway reads 0, not the scrape itself.
        counted = path != METRICS_PATH
        started = metrics.http_request_started() if counted else time.perf_counter()
        route = metrics.OTHER_ROUTE
        try:
            if self._api is not None and _is_control_plane(path):
                route = API_ROUTE if path == "/api" or path.startswith("/api/") else CONSOLE_ROUTE
                await self._api(scope, receive, tracking_send)
            elif self.settings.components == "control-plane" and path not in _ALWAYS_SERVED:
                await _not_served(tracking_send, _request_id(scope))
            else:
                await gateway(scope, receive, tracking_send)
        except asyncio.CancelledError:
            # The server cancelled the request (shutdown past its grace period). This is the
            # request's outermost frame: answer in JSON if nothing was sent yet (the server would
            # send a plain-text 500) and end the request here, the way the server meant.
            if not status:
                await send_error(tracking_send, ServerShuttingDown(), {"x-request-id": _request_id(scope)})
        except Exception:
            # The outermost handler: a bug must still produce a JSON 500, never a hang.
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not status:
                await send_error(tracking_send, OdockError(), {"x-request-id": _request_id(scope)})
        finally:
            route = scope.get(METRICS_ROUTE, route)
            metrics.http_request_answered(route, status, started, in_flight=counted)

    async def startup(self) -> None:
        """Open the runtime (also usable without an ASGI server, e.g. in tests)."""
        self._stack = contextlib.AsyncExitStack()
        self.runtime = await self._stack.enter_async_context(open_runtime(self.settings))
        self._gateway = Gateway(self.runtime)
        if self.settings.components != "gateway":
            from odock.web.api.app import create_api  # the gateway-only role never imports FastAPI

            self._api = create_api(self.runtime, self._gateway)
        try:
            # Rows written before header values were encrypted are encrypted now (spec: provider
            # secrets are encrypted at rest); replicas starting together do not conflict.
            await self.runtime.control.providers.encrypt_plaintext_headers()
            await self._apply_declarations(self.runtime)
            await ensure_bootstrap_admin(self.settings, self.runtime.sessions)
        except BaseException:
            await self.shutdown()
            raise
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::") else self.settings.host
        base_url = f"http://{host}:{self.settings.port}"
        await self._issue_welcome_link(self.runtime, base_url)
        issued = await seed_demo(self.runtime.control) if self.settings.should_seed_demo else None
        if issued is not None:
            demo_log.info(demo_banner(issued, base_url, self.welcome_url))
        elif self.welcome_url is not None:
            demo_log.info("\n%s", welcome_lines(self.welcome_url))

    async def _issue_welcome_link(self, runtime: Runtime, base_url: str) -> None:
        """On an empty install without a bootstrap admin: the one-time link to the first admin's account."""
        if self._api is None or self.settings.bootstrap_admin_email is not None:
            return  # no console in this process, or the bootstrap admin is the way in
        token = await issue_welcome_link(runtime.sessions)
        if token is not None:
            public = (self.settings.public_url or base_url).rstrip("/")
            self.welcome_url = f"{public}{WELCOME_PATH}{token}"

    async def _apply_declarations(self, runtime: Runtime) -> None:
        """Apply the resources the config file declares (before demo seeding, which needs an empty DB)."""
        # Secrets the config file names (from_env, secret_from_env) live in the process environment.
        report = await apply_config_file(self.settings, runtime.control, runtime.redis, os.environ)
        if report is None:
            return
        log.info("declared resources applied: %s", report.summary())
        for issued in report.issued:
            # A server log is no place for a secret: point the operator at a way to get one.
            log.warning(
                "API key %s (%s) was created from the config file; its secret is not logged: "
                "run 'odock keys rotate %s' to issue one, or pin it with secret_from_env",
                issued.name,
                issued.key_id,
                issued.key_id,
            )

    async def shutdown(self) -> None:
        """Close the runtime (flushes queued usage) once the requests still in flight have unwound."""
        await self._requests_unwound()
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._gateway = None
            self._api = None

    async def _requests_unwound(self) -> None:
        """Wait (at most UNWIND_SECONDS) until no request is being handled."""
        if not self._in_flight:
            return
        self._unwound = asyncio.Event()
        try:
            await asyncio.wait_for(self._unwound.wait(), UNWIND_SECONDS)
        except TimeoutError:
            log.warning("closing with %d request(s) still unwinding", self._in_flight)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    log.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


# A control-plane-only process still answers health probes and metric scrapes.
_ALWAYS_SERVED = frozenset({"/v1/health", "/v1/healthz", METRICS_PATH})
# The route label of the control plane's requests: the REST API, and the console's pages.
API_ROUTE = "/api"
CONSOLE_ROUTE = "/console"


async def _not_served(send: Send, request_id: str) -> None:
    error = NotFound("this process serves the control plane only (ODOCK_COMPONENTS=control-plane)")
    await send_error(send, error, {"x-request-id": request_id})


def _request_id(scope: Scope) -> str:
    """The request's id for an answer the app writes itself: the client's valid one, or a new one."""
    return accept_request_id(header_map(scope).get("x-request-id"))


# The API, the invitation link and the console's pages; every other path is the gateway's.
_CONTROL_PLANE_PREFIXES = ("/api/", "/invite/", *PAGE_PREFIXES)
_CONTROL_PLANE_PATHS = frozenset({"/api", "/"})


def _is_control_plane(path: str) -> bool:
    return path.startswith(_CONTROL_PLANE_PREFIXES) or path in _CONTROL_PLANE_PATHS


def create_app(settings: Settings) -> OdockApp:
    """Build the ASGI application for ``settings``."""
    return OdockApp(settings)


def app_from_environment() -> OdockApp:
    """Factory for worker processes: settings from the environment and ODOCK_CONFIG."""
    from odock.settings import load_settings
    from odock.telemetry.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
