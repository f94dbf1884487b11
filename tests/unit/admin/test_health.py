"""The gateway health check: each part ok or degraded, on real engines and an unreachable Redis."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from odock.admin.health import HealthCheck
from odock.db.engine import create_engine, session_factory
from odock.db.migrate import head_revision
from odock.settings import load_settings
from odock.usage.record import UsageEvent
from odock.usage.recorder import UsageRecorder
from odock.usage.store import UsageStore
from tests.support.server import free_port


class QueueView:
    """The figures a usage queue reports (the health check reads nothing else of it)."""

    def __init__(self, pending: int = 0, backlog: int = 0, dropped: int = 0) -> None:
        self.pending, self.backlog, self.dropped = pending, backlog, dropped


def recorder(engine: AsyncEngine, queue: QueueView | None = None, backlog_max: int = 0) -> UsageRecorder:
    """A recorder over ``queue`` (never started: only its figures are read)."""
    view: Any = queue or QueueView()
    store = UsageStore(session_factory(engine))
    return UsageRecorder(store, view, batch_size=10, interval=1, backlog_max=backlog_max)


@pytest.fixture
async def migrated(migrated_sqlite: Path, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a copy of the migrated SQLite file."""
    path = tmp_path / "odock.db"
    shutil.copyfile(migrated_sqlite, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    yield engine
    await engine.dispose()


def check(engine: AsyncEngine, rec: UsageRecorder, redis: Redis | None = None) -> HealthCheck:
    """A health check of a process that started an hour ago."""
    started = datetime.now(UTC) - timedelta(hours=1)
    values = load_settings(demo=False)
    return HealthCheck(values, engine, session_factory(engine), redis, rec, started, timeout=2)


async def test_a_migrated_embedded_gateway_is_ok(migrated: AsyncEngine) -> None:
    """Database at head and reachable, embedded cache, empty queue, no dead letters: everything ok."""
    report = await check(migrated, recorder(migrated)).check()
    assert report.status == "ok"
    db = report.database
    assert (db.backend, db.reachable, db.revision, db.at_head) == ("sqlite", True, head_revision(), True)
    assert db.round_trip_ms is not None
    assert db.round_trip_ms >= 0
    assert (report.cache.mode, report.cache.status) == ("embedded", "ok")
    assert (report.usage_queue.status, report.usage_queue.queued) == ("ok", 0)
    assert (report.dead_letters.count, report.dead_letters.newest_at) == (0, None)
    assert 3500 < report.process.uptime_seconds < 3700


async def test_a_dead_letter_makes_its_part_degraded_with_its_time(migrated: AsyncEngine) -> None:
    """One refused record: count 1, the newest time, degraded (and so the whole)."""
    store = UsageStore(session_factory(migrated))
    event = UsageEvent(
        id=secrets.token_hex(16),
        request_id="req-1",
        timestamp=datetime.now(UTC),
        endpoint="/v1/chat/completions",
        status="success",
        http_status=200,
        organisation_id="org-1",
    )
    await store.dead_letter(event, "23514 refused")
    report = await check(migrated, recorder(migrated)).check()
    letters = report.dead_letters
    assert (report.status, letters.status, letters.count) == ("degraded", "degraded", 1)
    assert report.dead_letters.newest_at is not None


async def test_a_backlog_past_its_bound_is_degraded(migrated: AsyncEngine) -> None:
    """More waiting than ODOCK_USAGE_BACKLOG_MAX: degraded, saying that calls are refused."""
    report = await check(migrated, recorder(migrated, QueueView(pending=3, backlog=3), backlog_max=2)).check()
    queue = report.usage_queue
    assert (queue.status, queue.backlogged, queue.queued, queue.backlog_max) == ("degraded", True, 3, 2)
    assert "refused" in str(queue.problem)


async def test_a_schema_behind_the_code_is_degraded(tmp_path: Path) -> None:
    """A reachable database without the migrations: reachable, not at head, degraded."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        report = await check(engine, recorder(engine)).check()
    finally:
        await engine.dispose()
    db = report.database
    assert (db.status, db.reachable, db.revision, db.at_head) == ("degraded", True, None, False)


async def test_unreachable_database_and_redis_are_degraded_not_errors(migrated: AsyncEngine) -> None:
    """Nothing listening: both parts degraded with the reason's class, and the check still answers."""
    port = free_port()
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none", pool_size=1)
    redis = Redis.from_url(f"redis://127.0.0.1:{port}", socket_connect_timeout=1)
    try:
        report = await check(engine, recorder(migrated), redis).check()
    finally:
        await redis.aclose()
        await engine.dispose()
    assert (report.database.reachable, report.database.status) == (False, "degraded")
    assert str(report.database.problem).startswith("unreachable (")
    assert (report.cache.mode, report.cache.reachable, report.cache.status) == ("redis", False, "degraded")
    assert report.dead_letters.count is None
    assert report.status == "degraded"
