"""The runtime's choices: the pipeline's stage order, the governance backends, the schema check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.meters import MemoryMeterStore
from odock.budgets.redis_meters import RedisMeterStore
from odock.cache.bus import LocalInvalidationBus
from odock.cache.shared import MemorySharedCache
from odock.db.engine import create_engine
from odock.db.migrate import SchemaBehind, prepare_schema
from odock.keys.directory import KeyDirectory
from odock.limits.limiter import MemoryRateLimiter, RedisRateLimiter
from odock.limits.policy import Scope
from odock.pipeline.order import Governance, build_pipeline
from odock.pipeline.runner import Pipeline
from odock.providers.adapters.mock import MockAdapter
from odock.providers.catalog import ModelCatalog
from odock.providers.vault import ProviderKeyVault
from odock.runtime import open_governance, usage_queue
from odock.settings import Settings, load_settings
from odock.usage.recorder import UsageRecorder
from odock.usage.store import UsageStore
from tests.support.stages import copied_database

BEFORE_THE_GATES = ["record_usage", "ratelimit_pre_auth", "authenticate", "ratelimit_early", "decode_request"]
RESOLUTION = ["resolve_model", "plan_route", "resolve_provider", "estimate_tokens"]
UPSTREAM = ["record_intent", "call_upstream"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded settings in the test's own directory."""
    return load_settings(data_dir=tmp_path, demo=False, log_level="warning")


@pytest.fixture
async def sessions(migrated_sqlite: Path, tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a copy of a migrated SQLite file."""
    async with copied_database(migrated_sqlite, tmp_path) as made:
        yield made


@pytest.fixture
def redis() -> Redis:
    """A Redis client that is never connected: building the Redis backends sends nothing."""
    return Redis.from_url("redis://127.0.0.1:1/0")


def pipeline(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], governance: Governance
) -> Pipeline:
    """The pipeline built over real, unopened parts."""
    shared, bus = MemorySharedCache(), LocalInvalidationBus()
    cache = {"ttl": 60.0, "negative_ttl": 60.0, "max_entries": 100}
    recorder = UsageRecorder(UsageStore(sessions), usage_queue(settings, None), batch_size=16, interval=1.0)
    return build_pipeline(
        KeyDirectory(sessions, shared, bus, **cache),
        ModelCatalog(sessions, shared, bus, **cache),
        {"MOCK": MockAdapter()},
        ProviderKeyVault(None, ttl=60),
        recorder,
        governance,
        settings,
    )


def test_embedded_pipeline_runs_the_gates_in_turn(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """In-process, the final rate-limit gate and the budget gate run one after the other."""
    governance = open_governance(settings, None, sessions)
    names = pipeline(settings, sessions, governance).stage_names()
    assert names == [*BEFORE_THE_GATES, *RESOLUTION, "ratelimit_final", "budgets", *UPSTREAM]


def test_with_redis_the_last_gates_share_one_round_trip(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: Redis
) -> None:
    """Over Redis, the final rate-limit gate and the budget gate are one Concurrently group."""
    governance = open_governance(settings, redis, sessions)
    names = pipeline(settings, sessions, governance).stage_names()
    assert names == [*BEFORE_THE_GATES, *RESOLUTION, "ratelimit_final+budgets", *UPSTREAM]


def test_embedded_governance_is_in_process(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Without Redis, limits and meters are the in-process twins and nothing is remote."""
    governance = open_governance(settings, None, sessions)
    assert isinstance(governance.limiter, MemoryRateLimiter)
    assert isinstance(governance.meters, MemoryMeterStore)
    assert governance.remote is False


def test_production_governance_is_in_redis(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: Redis
) -> None:
    """With Redis, limits and meters live there and every operation counts as a round trip."""
    governance = open_governance(settings, redis, sessions)
    assert isinstance(governance.limiter, RedisRateLimiter)
    assert isinstance(governance.meters, RedisMeterStore)
    assert governance.remote is True


def test_the_global_policy_comes_from_settings(
    tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """``ratelimit_global_policy`` becomes the resolver's global scope."""
    settings = load_settings(
        data_dir=tmp_path, demo=False, ratelimit_global_policy={"ratelimit": {"requests": {"per_minute": 5}}}
    )
    [scope] = open_governance(settings, None, sessions).resolver.global_scopes()
    assert scope.scope is Scope.GLOBAL
    assert scope.policy.ratelimit.requests.per_minute == 5


async def test_a_schema_behind_is_refused_when_migrating_on_start_is_off(tmp_path: Path) -> None:
    """An unmigrated database with ``migrate_on_start=false`` refuses to serve, naming the fix."""
    settings = load_settings(data_dir=tmp_path, demo=False, migrate_on_start=False)
    engine = create_engine(settings.resolved_database_url)
    try:
        with pytest.raises(SchemaBehind, match="odock migrate upgrade"):
            await prepare_schema(engine, settings)
    finally:
        await engine.dispose()


async def test_an_embedded_database_is_migrated_on_start(tmp_path: Path) -> None:
    """By default an embedded database is brought to the head on start, after which it is accepted."""
    settings = load_settings(data_dir=tmp_path, demo=False)
    engine = create_engine(settings.resolved_database_url)
    try:
        await prepare_schema(engine, settings)
        strict = load_settings(data_dir=tmp_path, demo=False, migrate_on_start=False)
        await prepare_schema(engine, strict)
    finally:
        await engine.dispose()
