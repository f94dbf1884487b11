"""The runtime: every long-lived resource of a gateway process, opened and closed in pairs.

``open_runtime(settings)`` is the lifespan body: it opens the database engine, Redis (production
mode), the shared cache and invalidation bus, the upstream HTTP pool and the usage recorder, and
closes them in reverse order on exit (queued usage is flushed before the database closes).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.cache.bus import InvalidationBus, LocalInvalidationBus, RedisInvalidationBus
from odock.cache.shared import MemorySharedCache, RedisSharedCache, SharedCache
from odock.db import migrate
from odock.db.engine import create_engine, session_factory
from odock.keys.directory import KeyDirectory
from odock.keys.stage import Authenticate
from odock.pipeline import Pipeline
from odock.providers.adapters.base import Adapter
from odock.providers.adapters.mock import MockAdapter
from odock.providers.adapters.openai import OpenAICompatibleAdapter
from odock.providers.catalog import ModelCatalog
from odock.providers.keyring import load_decrypter
from odock.providers.stage import CallUpstream, ResolveModel, ResolveProvider
from odock.providers.vault import ProviderKeyVault
from odock.settings import Settings
from odock.usage.recorder import UsageRecorder
from odock.usage.stage import RecordUsage
from odock.usage.store import UsageStore
from odock.web.decode import DecodeRequest

log = logging.getLogger(__name__)


class SchemaBehind(RuntimeError):
    """The database schema is older than this code and migrating on start is off."""


@dataclass
class Runtime:
    """The resources one gateway process serves with."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis | None
    shared: SharedCache
    bus: InvalidationBus
    keys: KeyDirectory
    models: ModelCatalog
    vault: ProviderKeyVault
    control: ControlPlane
    recorder: UsageRecorder
    pipeline: Pipeline


def build_pipeline(
    keys: KeyDirectory,
    models: ModelCatalog,
    adapters: dict[str, Adapter],
    vault: ProviderKeyVault,
    recorder: UsageRecorder,
    settings: Settings,
) -> Pipeline:
    """The lifecycle of a model call, in order (see :mod:`odock.pipeline`)."""
    return Pipeline(
        [
            RecordUsage(recorder),
            Authenticate(keys),
            DecodeRequest(),
            ResolveModel(models),
            ResolveProvider(adapters, vault, settings.upstream_default_timeout_seconds),
            CallUpstream(),
        ]
    )


async def prepare_schema(engine: AsyncEngine, settings: Settings) -> None:
    """Migrate on start, or refuse to serve on a schema that is behind."""
    if settings.should_migrate_on_start:
        await migrate.upgrade(engine)
        return
    state = await migrate.status(engine)
    if not state.is_current:
        raise SchemaBehind(
            f"database schema is at {state.current or 'empty'}, code needs {state.head}: "
            "run 'odock migrate upgrade' or set ODOCK_MIGRATE_ON_START=true"
        )


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Open every resource; close them all, in reverse order, on exit."""
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(settings.resolved_database_url, pool_size=settings.database_pool_size)
        stack.push_async_callback(engine.dispose)
        await prepare_schema(engine, settings)
        sessions = session_factory(engine)

        redis: Redis | None = None
        shared: SharedCache
        bus: InvalidationBus
        if settings.redis_url:
            redis = Redis.from_url(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            await redis.ping()
            shared = RedisSharedCache(redis, settings.redis_prefix)
            bus = RedisInvalidationBus(redis, settings.redis_prefix, settings.cache_invalidation_channel)
        else:
            shared = MemorySharedCache()
            bus = LocalInvalidationBus()

        cache_args = {
            "negative_ttl": settings.auth_negative_cache_ttl_seconds,
            "max_entries": settings.local_cache_max_entries,
        }
        keys = KeyDirectory(sessions, shared, bus, ttl=settings.auth_cache_ttl_seconds, **cache_args)
        models = ModelCatalog(sessions, shared, bus, ttl=settings.model_cache_ttl_seconds, **cache_args)
        await bus.start()
        stack.push_async_callback(bus.stop)

        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.upstream_max_connections, ttl_dns_cache=300),
            auto_decompress=False,
        )
        stack.push_async_callback(http.close)
        openai = OpenAICompatibleAdapter(http, settings.upstream_connect_timeout_seconds)
        adapters: dict[str, Adapter] = {t: openai for t in ("OPENAI", "AZURE_OPENAI", "VLLM", "CUSTOM", "MISTRAL")}
        adapters["MOCK"] = MockAdapter()
        decrypter = load_decrypter(settings)
        vault = ProviderKeyVault(decrypter, settings.provider_key_decrypt_cache_ttl_seconds)
        control = ControlPlane(sessions, bus, decrypter)

        recorder = UsageRecorder(
            UsageStore(sessions),
            batch_size=settings.usage_batch_size,
            interval=settings.usage_flush_interval_seconds,
            max_queued=settings.usage_queue_max,
        )
        await recorder.start()
        stack.push_async_callback(recorder.close)

        pipeline = build_pipeline(keys, models, adapters, vault, recorder, settings)
        yield Runtime(
            settings=settings,
            engine=engine,
            sessions=sessions,
            redis=redis,
            shared=shared,
            bus=bus,
            keys=keys,
            models=models,
            vault=vault,
            control=control,
            recorder=recorder,
            pipeline=pipeline,
        )
