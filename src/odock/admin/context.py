"""The admin context: what one-shot admin work (the CLI, ``odock apply``) opens and closes.

A command runs against the same database, key pair and caches as the gateways it manages::

    settings ─► engine ─► schema check (migrate on SQLite; refuse when behind otherwise)
             ─► invalidation publisher ─► ControlPlane (keyring: the gateway's own pair)
                                            └─ .budgets: BudgetControl (budgets and quotas)

The publisher decides whether running gateways see a change at once:

* production (``redis_url`` set): the Redis bus, publish-only (no listener is started), so every
  gateway process drops the affected cache entries immediately;
* embedded with ``cache_invalidation_secret`` set: the local gateway's internal invalidation
  endpoint (``/v1/internal/cache/invalidate``) is called; no gateway listening is not an error;
* embedded otherwise: nothing to tell; a running gateway sees changes when its caches expire
  (``auth_cache_ttl_seconds``, ``model_cache_ttl_seconds``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from redis.asyncio import Redis

from odock.admin.control import ControlPlane
from odock.audit.recorder import audited_session_factory
from odock.budgets.control import BudgetControl
from odock.budgets.redis_meters import RedisMeterStore
from odock.cache.bus import (
    INVALIDATION_PATH,
    INVALIDATION_SECRET_HEADER,
    Invalidation,
    InvalidationBus,
    Listener,
    LocalInvalidationBus,
    RedisInvalidationBus,
)
from odock.db.engine import create_engine
from odock.db.migrate import prepare_schema
from odock.providers.keyring import load_decrypter
from odock.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdminContext:
    """An open admin session: settings, the control planes and (in production) Redis."""

    settings: Settings
    control: ControlPlane
    budgets: BudgetControl
    redis: Redis | None


@contextlib.asynccontextmanager
async def open_admin(settings: Settings) -> AsyncIterator[AdminContext]:
    """Open the database, the invalidation publisher and the control plane; close them on exit."""
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(settings.resolved_database_url, pool_size=2)
        stack.push_async_callback(engine.dispose)
        await prepare_schema(engine, settings)

        redis: Redis | None = None
        bus: InvalidationBus
        if settings.redis_url:
            redis = Redis.from_url(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            await redis.ping()
            # Publish-only: a one-shot command has no caches of its own to keep fresh.
            bus = RedisInvalidationBus(redis, settings.redis_prefix, settings.cache_invalidation_channel)
        elif settings.cache_invalidation_secret is not None:
            http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
            stack.push_async_callback(http.close)
            bus = LocalGatewayNotifier(http, settings)
        else:
            bus = LocalInvalidationBus()

        # Beside production gateways their counters are in Redis: a limit change carries what they
        # settled beyond the ledger. An embedded gateway's counters live in its own process.
        meters = RedisMeterStore(redis, settings.redis_prefix) if redis is not None else None
        control = ControlPlane(
            audited_session_factory(engine),
            bus,
            load_decrypter(settings),
            meters,
            stdio_allowed=settings.mcp_stdio_allowed_commands,
        )
        yield AdminContext(settings=settings, control=control, budgets=control.budgets, redis=redis)


class LocalGatewayNotifier:
    """Tells the embedded gateway on this host (``settings.host:port``) to drop cached entries."""

    def __init__(self, http: aiohttp.ClientSession, settings: Settings) -> None:
        assert settings.cache_invalidation_secret is not None
        self._http = http
        self._secret = settings.cache_invalidation_secret.get_secret_value()
        host = (
            "127.0.0.1"
            if settings.host in ("0.0.0.0", "")
            else "::1"
            if settings.host == "::"
            else settings.host
        )
        authority = f"[{host}]" if ":" in host else host
        self._url = f"http://{authority}:{settings.port}{INVALIDATION_PATH}"
        self._generation = 0

    @property
    def generation(self) -> int:
        """Changes published by this command (there is no shared tier to version)."""
        return self._generation

    def subscribe(self, listener: Listener) -> None:
        """Nothing in a one-shot command listens."""

    async def publish(self, invalidation: Invalidation) -> None:
        """POST the invalidation to the local gateway; a gateway that is not running needs none."""
        self._generation += 1
        headers = {INVALIDATION_SECRET_HEADER: self._secret, "content-type": "application/json"}
        try:
            async with self._http.post(self._url, data=invalidation.to_json(), headers=headers) as response:
                if response.status != 202:
                    log.warning(
                        "the gateway at %s refused the cache invalidation (HTTP %s); it will see the change "
                        "when its caches expire",
                        self._url,
                        response.status,
                    )
        except (aiohttp.ClientConnectionError, TimeoutError):
            log.debug("no gateway listening at %s; nothing to invalidate", self._url)

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""
