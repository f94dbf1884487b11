"""Gateway health, for the super admin (``GET /api/admin/health`` and the console's health page).

One process's view of what it depends on, each part ``ok`` or ``degraded`` with the reason::

    database      reachable (SELECT 1, its round trip), schema revision at the chain's head
    shared cache  embedded (in-process) or Redis: reachable (PING, its round trip)
    usage queue   records this process queued and has not stored, the backlog against its bound
                  (ODOCK_USAGE_BACKLOG_MAX), backlogged, the oldest record the writer holds
    dead letters  usage records the database refused (every organisation's), the newest one's time

plus the version, start time and uptime, the components served and the worker count. The whole is
``degraded`` when any part is. The probes run at once, each bounded by a timeout, so a dependency
that does not answer makes its part degraded instead of holding the page. With several workers
or replicas, the queue figures are those of the process that answered.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from odock import __version__
from odock.db import migrate
from odock.settings import Settings
from odock.usage.dead_letters import DeadLetters
from odock.usage.recorder import UsageRecorder

Status = Literal["ok", "degraded"]
PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ProcessHealth:
    """The answering process: what it runs and since when."""

    version: str
    started_at: datetime
    uptime_seconds: float
    components: str  # all | gateway | control-plane
    workers: int  # ODOCK_WORKERS: processes serving this address
    pid: int


@dataclass(frozen=True)
class DatabaseHealth:
    """The database: reachable, how fast, and whether its schema is the code's."""

    status: Status
    backend: str  # sqlite | postgresql
    reachable: bool
    round_trip_ms: float | None
    revision: str | None  # the database's schema revision
    head: str  # the newest revision this code knows
    at_head: bool | None  # None when the database could not be read
    problem: str | None


@dataclass(frozen=True)
class CacheHealth:
    """The shared cache tier: in-process (embedded) or Redis, and whether Redis answers."""

    status: Status
    mode: Literal["embedded", "redis"]
    reachable: bool
    ping_ms: float | None
    problem: str | None


@dataclass(frozen=True)
class UsageQueueHealth:
    """This process's usage queue: what waits to be stored, against the bound that refuses requests."""

    status: Status
    queued: int  # records this process queued (or took over) and has not stored yet
    backlog: int  # records waiting that this process can see (production: the shared stream's too)
    backlog_max: int  # ODOCK_USAGE_BACKLOG_MAX (0: no bound)
    backlogged: bool  # past the bound: model calls are refused with 503 usage_backlog
    oldest_queued_age_seconds: float | None  # the oldest record the writer holds, while it holds one
    written: int  # records stored by this process since it started
    flush_errors: int  # failed writes since it started (each retried)
    dropped: int  # records lost: the journal and its memory fallback both refused them
    problem: str | None


@dataclass(frozen=True)
class DeadLetterHealth:
    """Usage records the database refused, waiting for ``odock usage replay-dead-letters``."""

    status: Status
    count: int | None  # None when the database could not be read
    newest_at: datetime | None
    problem: str | None


@dataclass(frozen=True)
class GatewayHealth:
    """Everything the health page shows; ``status`` is degraded when any part is."""

    status: Status
    checked_at: datetime
    process: ProcessHealth
    database: DatabaseHealth
    cache: CacheHealth
    usage_queue: UsageQueueHealth
    dead_letters: DeadLetterHealth


class HealthCheck:
    """Probes the process's dependencies (one check per call; nothing is cached)."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis | None,
        recorder: UsageRecorder,
        started_at: datetime,
        *,
        timeout: float = PROBE_TIMEOUT_SECONDS,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._dead_letters = DeadLetters(sessions)
        self._redis = redis
        self._recorder = recorder
        self._started_at = started_at
        self._timeout = timeout

    async def check(self) -> GatewayHealth:
        """Probe every part at once and report."""
        database, cache, dead_letters = await asyncio.gather(
            self._database(), self._cache(), self._dead_letter_count()
        )
        queue = self._usage_queue()
        parts = (database.status, cache.status, queue.status, dead_letters.status)
        now = datetime.now(UTC)
        return GatewayHealth(
            status="ok" if all(part == "ok" for part in parts) else "degraded",
            checked_at=now,
            process=self._process(now),
            database=database,
            cache=cache,
            usage_queue=queue,
            dead_letters=dead_letters,
        )

    def _process(self, now: datetime) -> ProcessHealth:
        settings = self._settings
        return ProcessHealth(
            version=__version__,
            started_at=self._started_at,
            uptime_seconds=round((now - self._started_at).total_seconds(), 1),
            components=settings.components,
            workers=settings.workers,
            pid=os.getpid(),
        )

    async def _database(self) -> DatabaseHealth:
        backend, head = self._engine.dialect.name, migrate.head_revision()
        try:
            round_trip = await self._timed(self._select_one)
            schema = await asyncio.wait_for(migrate.status(self._engine), self._timeout)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            return DatabaseHealth("degraded", backend, False, None, None, head, None, _unreachable(exc))
        at_head = schema.current == head
        problem = None if at_head else f"schema at {schema.current or 'no revision'}, not at {head}"
        status: Status = "ok" if at_head else "degraded"
        return DatabaseHealth(status, backend, True, round_trip, schema.current, head, at_head, problem)

    async def _select_one(self) -> None:
        async with self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def _cache(self) -> CacheHealth:
        redis = self._redis
        if redis is None:
            return CacheHealth("ok", "embedded", True, None, None)
        try:
            ping = await self._timed(redis.ping)
        except (RedisError, OSError, TimeoutError) as exc:
            return CacheHealth("degraded", "redis", False, None, _unreachable(exc))
        return CacheHealth("ok", "redis", True, ping, None)

    def _usage_queue(self) -> UsageQueueHealth:
        recorder = self._recorder
        oldest = recorder.oldest_pending_at
        age = round((datetime.now(UTC) - oldest).total_seconds(), 1) if oldest else None
        problem = None
        if recorder.backlogged:
            problem = "backlog past its bound: model calls are refused until the writer catches up"
        elif recorder.dropped:
            problem = f"{recorder.dropped} records lost (journal and memory fallback both refused them)"
        return UsageQueueHealth(
            status="ok" if problem is None else "degraded",
            queued=recorder.pending,
            backlog=recorder.backlog,
            backlog_max=recorder.backlog_max,
            backlogged=recorder.backlogged,
            oldest_queued_age_seconds=age,
            written=recorder.written,
            flush_errors=recorder.flush_errors,
            dropped=recorder.dropped,
            problem=problem,
        )

    async def _dead_letter_count(self) -> DeadLetterHealth:
        try:
            summary = await asyncio.wait_for(self._dead_letters.summary(), self._timeout)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            return DeadLetterHealth("degraded", None, None, _unreachable(exc))
        if summary.count:
            problem = f"{summary.count} usage records refused by the database wait for a replay"
            return DeadLetterHealth("degraded", summary.count, summary.newest_at, problem)
        return DeadLetterHealth("ok", 0, None, None)

    async def _timed(self, probe: Callable[[], Awaitable[object]]) -> float:
        """Run ``probe`` within the timeout; its round trip in milliseconds."""
        started = time.perf_counter()
        await asyncio.wait_for(probe(), self._timeout)
        return round((time.perf_counter() - started) * 1000, 2)


def _unreachable(exc: BaseException) -> str:
    # The exception's class only: driver messages can carry connection details.
    return f"unreachable ({type(exc).__name__})"
