"""The runtime: every long-lived resource of a gateway process, opened and closed in pairs.

``open_runtime(settings)`` is the lifespan body: it opens the database engine, Redis (production
mode), the shared cache and invalidation bus, the upstream HTTP pool and the usage recorder, and
closes them in reverse order on exit (queued usage is flushed before the database closes). The
metrics (odock.telemetry) are wired here too: the bus and the vault report to them, and with
several workers each one keeps its process figures current for the scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiohttp
from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.audit.recorder import audited_session_factory
from odock.budgets.control import BudgetControl
from odock.budgets.meters import MemoryMeterStore
from odock.budgets.reconciler import BudgetReconciler
from odock.budgets.redis_meters import RedisMeterStore
from odock.budgets.stage import BudgetGate
from odock.budgets.thresholds import ThresholdNotifier
from odock.cache.bus import InvalidationBus, LocalInvalidationBus, RedisInvalidationBus
from odock.cache.redis_link import RedisLink
from odock.cache.shared import MemorySharedCache, RedisSharedCache, SharedCache
from odock.db.engine import create_engine
from odock.db.migrate import prepare_schema
from odock.keys.directory import KeyDirectory
from odock.limits.limiter import MemoryRateLimiter, RedisRateLimiter
from odock.limits.policy import PolicyResolver, parse_policy
from odock.mcp.directory import McpDirectory
from odock.mcp.links import Links, open_links
from odock.mcp.sessions import McpSessionStore
from odock.mcp.stage import McpGovernor
from odock.pipeline.order import Governance, build_pipeline
from odock.pipeline.runner import Pipeline
from odock.providers.adapters.anthropic import AnthropicAdapter
from odock.providers.adapters.base import Adapter, Timeouts
from odock.providers.adapters.gemini import GeminiAdapter
from odock.providers.adapters.mock import MockAdapter
from odock.providers.adapters.openai import OpenAICompatibleAdapter
from odock.providers.catalog import ModelCatalog
from odock.providers.keyring import load_decrypter
from odock.providers.provider_types import CATALOGUE
from odock.providers.proxy import ProxyRoutes
from odock.providers.token_service import TokenCounter
from odock.providers.upstream_client import UpstreamClient
from odock.providers.vault import ProviderKeyVault
from odock.routing.redis_store import RedisRoutingStore
from odock.routing.store import MemoryRoutingStore
from odock.settings import Settings
from odock.telemetry import metrics
from odock.telemetry.exposition import sampling_process_metrics
from odock.usage.journal import JournalQueue
from odock.usage.queue import UsageQueue
from odock.usage.recorder import UsageRecorder
from odock.usage.store import UsageStore
from odock.usage.stream import RedisStreamQueue

if TYPE_CHECKING:  # imported in open_runtime only when tracing is on (it imports OpenTelemetry)
    from odock.telemetry.tracing import Tracing

log = logging.getLogger(__name__)

USAGE_JOURNAL_DIR = "usage-journal"


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
    budgets: BudgetControl
    governance: Governance
    reconciler: BudgetReconciler
    recorder: UsageRecorder
    pipeline: Pipeline
    tokens: TokenCounter
    mcp_servers: McpDirectory  # the MCP gateway's lookup of servers (secrets opened in memory only)
    mcp_links: Links  # one link per upstream transport (the STDIO process pool among them)
    mcp_sessions: McpSessionStore
    mcp: McpGovernor  # the governed MCP exchange
    tracing: Tracing | None = None  # the tracer provider, when ODOCK_OTEL_TRACES_EXPORTER is not none
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # for the health page's uptime


def open_adapters(upstream: UpstreamClient) -> dict[str, Adapter]:
    """One adapter per transport of the provider registry, by provider type."""
    transports: dict[str, Adapter] = {
        "openai": OpenAICompatibleAdapter(upstream),
        "anthropic": AnthropicAdapter(upstream),
        "gemini": GeminiAdapter(upstream),
        "mock": MockAdapter(),
    }
    return {info.type.value: transports[info.transport] for info in CATALOGUE if info.transport is not None}


def open_governance(
    settings: Settings, redis: Redis | RedisLink | None, sessions: async_sessionmaker[AsyncSession]
) -> Governance:
    """Redis-backed counters in production, in-process twins in the embedded mode."""
    resolver = PolicyResolver(parse_policy(settings.ratelimit_global_policy))
    # A finished request id is only seen again by a reconciler racing the request's own settle
    # within one pass, so a few passes of memory suffice; an hour of ids at thousands of requests
    # per second was the largest growth of the process (in-process) or of Redis (~150 B each).
    remember = max(60.0, 3 * settings.budget_reconcile_interval_seconds)
    if redis is None:
        meters = MemoryMeterStore(remember_seconds=remember)
        return Governance(MemoryRateLimiter(), resolver, meters, sessions, MemoryRoutingStore())
    return Governance(
        RedisRateLimiter(redis, settings.redis_prefix),
        resolver,
        RedisMeterStore(redis, settings.redis_prefix, remember_seconds=remember),
        sessions,
        RedisRoutingStore(redis, settings.redis_prefix),
        remote=True,
    )


def proxies(settings: Settings) -> ProxyRoutes:
    """The outbound proxies upstream calls go through (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)."""
    https, http = settings.https_proxy, settings.http_proxy
    return ProxyRoutes(
        https=https.get_secret_value() if https else None,
        http=http.get_secret_value() if http else None,
        no_proxy=settings.no_proxy,
    )


# Usage events kept in memory for this process's own writer (see JournalQueue).
HAND_OVER_EVENTS = 4096


def usage_queue(settings: Settings, redis: Redis | None, link: RedisLink | None = None) -> UsageQueue:
    """The durable usage queue: the local journal (embedded) or a Redis Stream fed through it."""
    # The writer takes the events this process appended from memory instead of decoding them
    # back (the lines are still written and pushed first; a restart decodes them).
    journal = JournalQueue(
        settings.data_dir / USAGE_JOURNAL_DIR,
        segment_bytes=settings.usage_journal_segment_bytes,
        max_in_memory=settings.usage_queue_max,
        hand_over=HAND_OVER_EVENTS,
    )
    if redis is None:
        return journal
    return RedisStreamQueue(
        redis,
        journal,
        prefix=settings.redis_prefix,
        max_length=settings.usage_stream_max_length,
        claim_idle_seconds=settings.usage_claim_idle_seconds,
        link=link,
        hand_over=HAND_OVER_EVENTS,
    )


async def open_tracing(settings: Settings, stack: contextlib.AsyncExitStack) -> Tracing | None:
    """The tracer provider when tracing is on, shut down last (its queued spans exported); else None.

    OpenTelemetry is imported here, only then: with tracing off it is never loaded.
    """
    if settings.otel_traces_exporter == "none":
        return None
    from odock.telemetry import tracing

    opened = tracing.open_tracing(settings)
    # Shutting down exports what is queued, over the network: not on the event loop.
    stack.push_async_callback(asyncio.to_thread, opened.shutdown)
    return opened


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Open every resource; close them all, in reverse order, on exit."""
    async with contextlib.AsyncExitStack() as stack:
        tracing = await open_tracing(settings, stack)
        await stack.enter_async_context(sampling_process_metrics())
        engine = create_engine(settings.resolved_database_url, pool_size=settings.database_pool_size)
        stack.push_async_callback(engine.dispose)
        await prepare_schema(engine, settings)
        sessions = audited_session_factory(engine)

        redis: Redis | None = None
        shared: SharedCache
        bus: InvalidationBus
        if settings.redis_url:
            # A blocking pool waits for a free connection instead of failing past its size, and short
            # timeouts keep a Redis outage from stalling requests (limits then apply their fail mode).
            pool = BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=settings.redis_pool_size,
                timeout=5,
                socket_timeout=settings.redis_timeout_seconds,
                socket_connect_timeout=settings.redis_timeout_seconds,
            )
            redis = Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
            stack.push_async_callback(redis.aclose)
            await redis.ping()
            shared = RedisSharedCache(redis, settings.redis_prefix)
            bus = RedisInvalidationBus(redis, settings.redis_prefix, settings.cache_invalidation_channel)
        else:
            shared = MemorySharedCache()
            bus = LocalInvalidationBus()

        negative_ttl = settings.auth_negative_cache_ttl_seconds
        max_entries = settings.local_cache_max_entries
        keys = KeyDirectory(
            sessions,
            shared,
            bus,
            ttl=settings.auth_cache_ttl_seconds,
            negative_ttl=negative_ttl,
            max_entries=max_entries,
        )
        models = ModelCatalog(
            sessions,
            shared,
            bus,
            ttl=settings.model_cache_ttl_seconds,
            negative_ttl=negative_ttl,
            max_entries=max_entries,
        )
        decrypter = load_decrypter(settings)
        mcp_servers = McpDirectory(
            sessions,
            shared,
            bus,
            decrypter,
            ttl=settings.mcp_cache_ttl_seconds,
            negative_ttl=negative_ttl,
            max_entries=max_entries,
            timeout_seconds=settings.mcp_upstream_timeout_seconds,
        )
        bus.subscribe(metrics.invalidation_applied)
        await bus.start()
        stack.push_async_callback(bus.stop)

        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.upstream_max_connections, ttl_dns_cache=300),
            auto_decompress=False,
        )
        stack.push_async_callback(http.close)
        upstream = UpstreamClient(
            max_connections=settings.upstream_max_connections, proxies=proxies(settings)
        )
        stack.push_async_callback(upstream.close)
        adapters = open_adapters(upstream)
        vault = ProviderKeyVault(
            decrypter,
            settings.provider_key_decrypt_cache_ttl_seconds,
            on_decrypt=metrics.provider_key_decrypted,
        )

        link: RedisLink | None = None
        if settings.redis_url:
            # The per-request scripts (limits, budgets) and usage pushes share one pipelined connection;
            # it closes after the usage recorder has pushed what it holds.
            link = RedisLink(
                settings.redis_url,
                timeout=settings.redis_timeout_seconds,
                connect_timeout=settings.redis_timeout_seconds,
            )
            stack.push_async_callback(link.close)
        notifier = ThresholdNotifier(settings.budget_threshold_webhook_url, http)
        await notifier.start()
        stack.push_async_callback(notifier.stop)
        governance = open_governance(settings, link, sessions)
        recorder = UsageRecorder(
            UsageStore(sessions, on_thresholds=notifier),
            usage_queue(settings, redis, link),
            batch_size=settings.resolved_usage_batch_size,
            interval=settings.usage_flush_interval_seconds,
            recovery_interval=settings.usage_recovery_interval_seconds,
            close_timeout=settings.shutdown_grace_seconds,
            settle_interrupted=governance.meters.settle,
            backlog_max=settings.usage_backlog_max,
        )
        await recorder.start()
        stack.push_async_callback(recorder.close)

        control = ControlPlane(
            sessions, bus, decrypter, governance.meters, stdio_allowed=settings.mcp_stdio_allowed_commands
        )
        reconciler = BudgetReconciler(governance.meters, sessions, settings.budget_reconcile_interval_seconds)
        await reconciler.start()
        stack.push_async_callback(reconciler.stop)
        pipeline = build_pipeline(keys, models, adapters, vault, recorder, governance, settings, tracing)
        mcp_links = open_links(settings)
        stack.push_async_callback(mcp_links.aclose)
        mcp = McpGovernor(
            governance.limiter,
            governance.resolver,
            BudgetGate(
                governance.meters,
                sessions,
                fail_open=settings.governance_fail_open,
                reservation_ttl=settings.budget_reservation_ttl_seconds,
                unpriced_reservation_nanos=settings.unpriced_reservation_nanos,
            ),
            recorder,
            mcp_links,
            fail_open=settings.governance_fail_open,
            output_allowance=settings.mcp_output_bytes_reserved,
        )
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
            budgets=control.budgets,
            governance=governance,
            reconciler=reconciler,
            recorder=recorder,
            pipeline=pipeline,
            tokens=TokenCounter(models, adapters, vault, Timeouts.from_settings(settings)),
            mcp_servers=mcp_servers,
            mcp_links=mcp_links,
            mcp_sessions=McpSessionStore(shared, settings.mcp_session_ttl_seconds),
            mcp=mcp,
            tracing=tracing,
        )
