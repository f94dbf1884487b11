"""The two shapes the gateway is measured in, each set up and torn down by the run.

``embedded``: a SQLite file and in-process state in a fresh data directory. ``production``: a
fresh, uniquely named PostgreSQL database and Redis key prefix (dropped and deleted at the end),
``migrate_on_start=true``, and a provider-key encryption pair generated for the run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.drivers import Percentiles, Window
from odock.db.engine import create_engine
from odock.providers.crypto import generate_key_pair
from odock.settings import ENV_PREFIX, Settings, load_settings
from odock.usage.tables import UsageRecord

BackendName = Literal["embedded", "production"]
BACKENDS: tuple[BackendName, ...] = ("embedded", "production")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# What the gateway measured of each request, by the name the report gives it.
INSIDE_COLUMNS = {
    "latency": UsageRecord.latency_ms,  # request received → response written
    "overhead": UsageRecord.gateway_overhead_ms,  # the latency without the upstream wait
    "upstream": UsageRecord.upstream_latency_ms,  # upstream call started → its answer read (streams: end)
    "ttft": UsageRecord.time_to_first_token_ms,  # streams: request received → first token relayed
}


@dataclass(frozen=True)
class Backend:
    """Settings of one backend: as ``ODOCK_*`` variables for the gateway, parsed for provisioning."""

    name: BackendName
    values: dict[str, Any]

    @property
    def settings(self) -> Settings:
        """The same values, parsed as the gateway will parse them."""
        return load_settings(**self.values)

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` without any inherited ``ODOCK_*`` variable, plus this backend's."""
        env = {k: v for k, v in base.items() if not k.startswith(ENV_PREFIX)}
        env.update(
            {
                ENV_PREFIX + k.upper(): str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in self.values.items()
            }
        )
        return env

    async def usage_rows(self) -> int:
        """Usage records written so far (proof that usage recording was on)."""
        engine = create_engine(self.settings.resolved_database_url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(text("SELECT count(*) FROM usage_records"))).scalar_one())
        finally:
            await engine.dispose()

    async def usage_stored_within(self, window: Window, stream: bool, endpoint: str) -> int:
        """How many usage records of requests on ``endpoint`` (streaming or not, as given) received
        within ``window`` are stored now.

        Asked as a load stops, it shows whether the gateway's usage writer keeps up with the load
        or only catches up once the load is over (a backlog the throughput does not pay for).
        """
        engine = create_engine(self.settings.resolved_database_url)
        try:
            async with engine.connect() as conn:
                query = select(func.count()).where(
                    UsageRecord.endpoint == endpoint,
                    UsageRecord.stream.is_(stream),
                    UsageRecord.timestamp >= window.start,
                    UsageRecord.timestamp <= window.end,
                )
                return int((await conn.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    async def usage_latency(
        self, windows: Sequence[tuple[Window, bool]], endpoint: str
    ) -> list[dict[str, Percentiles]]:
        """Per (window, stream): the gateway's own latency, overhead, upstream time and TTFT (ms).

        Taken from the usage records of the requests on ``endpoint`` (streaming or not, as given)
        the gateway received within the window; ``latency.samples`` is how many records there
        were. Query it once the gateway has stopped, so that every record is flushed.
        """
        engine = create_engine(self.settings.resolved_database_url)
        try:
            async with engine.connect() as conn:
                return [await _latency_within(conn, window, endpoint, stream) for window, stream in windows]
        finally:
            await engine.dispose()


async def _latency_within(
    conn: AsyncConnection, window: Window, endpoint: str, stream: bool
) -> dict[str, Percentiles]:
    query = select(*INSIDE_COLUMNS.values()).where(
        UsageRecord.endpoint == endpoint,
        UsageRecord.stream.is_(stream),
        UsageRecord.timestamp >= window.start,
        UsageRecord.timestamp <= window.end,
    )
    rows = (await conn.execute(query)).all()
    return {name: Percentiles.of(_present(row[i] for row in rows)) for i, name in enumerate(INSIDE_COLUMNS)}


def _present(values: Iterable[float | None]) -> list[float]:
    """The values that were recorded (a request that never reached the upstream has no upstream time)."""
    return [value for value in values if value is not None]


def _common(data_dir: Path) -> dict[str, Any]:
    return {"data_dir": data_dir, "demo": False, "log_level": "warning"}


@contextlib.asynccontextmanager
async def prepared(
    name: BackendName,
    work_dir: Path,
    postgres_url: str = DEFAULT_POSTGRES_URL,
    redis_url: str = DEFAULT_REDIS_URL,
    overrides: dict[str, Any] | None = None,
) -> AsyncIterator[Backend]:
    """A ready backend; a production one's database and Redis keys are removed on exit.

    ``overrides`` are extra gateway settings (``name → value``), for what-if measurements.
    """
    data_dir = work_dir / f"data-{name}"
    data_dir.mkdir(parents=True, exist_ok=True)
    common = {**_common(data_dir), **(overrides or {})}
    if name == "embedded":
        yield Backend(name, common)
        return
    unique = f"odock_bench_{os.getpid()}_{secrets.token_hex(4)}"
    pair = generate_key_pair(f"bench-{secrets.token_hex(4)}")
    prefix = f"{unique}:"
    database_url = await _create_database(postgres_url, unique)
    try:
        values = {
            **common,
            "database_url": database_url,
            "redis_url": redis_url,
            "redis_prefix": prefix,
            "cache_invalidation_channel": prefix + "invalidation",
            "migrate_on_start": True,
            "provider_key_encryption_key_id": pair.key_id,
            "provider_key_encryption_private_key": pair.private_pem,
        }
        yield Backend(name, values)
    finally:
        await _delete_redis_prefix(redis_url, prefix)
        await _drop_database(postgres_url, unique)


async def _create_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://{urlsplit(admin_url).netloc}/{name}"


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _delete_redis_prefix(redis_url: str, prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(match=prefix + "*", count=1000):
            await redis.delete(key)
    finally:
        await redis.aclose()
