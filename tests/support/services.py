"""Real PostgreSQL and Redis for tests: detection, a fresh database per run, a Redis namespace.

``ODOCK_TEST_POSTGRES_URL`` / ``ODOCK_TEST_REDIS_URL`` locate the servers (defaults: the local
ones). When they are unreachable, production-backend tests skip with a visible notice, unless
``ODOCK_TEST_REQUIRE_SERVICES=1`` (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

POSTGRES_URL = os.environ.get("ODOCK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("ODOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("ODOCK_TEST_REQUIRE_SERVICES") == "1"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def services_available() -> bool:
    """True when both PostgreSQL and Redis answer on their ports."""
    return _reachable(POSTGRES_URL, 5432) and _reachable(REDIS_URL, 6379)


def require_services() -> None:
    """Skip (or, in CI, fail) the calling test when the services are absent."""
    if services_available():
        return
    message = f"PostgreSQL ({POSTGRES_URL}) and Redis ({REDIS_URL}) are not reachable"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and ODOCK_TEST_REQUIRE_SERVICES=1")
    pytest.skip(message + ": production-backend test skipped")


@dataclass(frozen=True)
class ProductionServices:
    """A database and a Redis namespace that belong to this test run only."""

    database_url: str  # SQLAlchemy asyncpg URL
    redis_url: str
    redis_prefix: str

    def fresh_prefix(self) -> str:
        """A Redis prefix unique to one test, inside this run's namespace."""
        return f"{self.redis_prefix}{secrets.token_hex(4)}:"


def _admin_dsn() -> str:
    return POSTGRES_URL


async def create_database(name: str) -> str:
    """Create database ``name``; return its SQLAlchemy URL."""
    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(POSTGRES_URL)
    return f"postgresql+asyncpg://{parts.netloc}/{name}"


async def drop_database(name: str) -> None:
    """Drop database ``name`` even if connections linger."""
    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def delete_redis_prefix(prefix: str) -> None:
    """Delete every Redis key under ``prefix``."""
    redis = Redis.from_url(REDIS_URL)
    try:
        async for key in redis.scan_iter(match=prefix + "*", count=1000):
            await redis.delete(key)
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def migrated_engine(kind: str, stem: str, sqlite_dir: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh, migrated database: ``kind`` "postgresql" (a uniquely named database
    starting with ``stem``, dropped after) or "sqlite" (a file in ``sqlite_dir``)."""
    from odock.db import migrate
    from odock.db.engine import create_engine

    database: str | None = None
    if kind == "postgresql":
        require_services()
        database = unique_name(stem)
        url = await create_database(database)
    else:
        url = f"sqlite+aiosqlite:///{sqlite_dir / f'{stem}.db'}"
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
        yield engine
    finally:
        await engine.dispose()
        if database is not None:
            await drop_database(database)


def unique_name(stem: str) -> str:
    """A name unique to this process and call."""
    return f"{stem}_{os.getpid()}_{secrets.token_hex(4)}"


def run(coro: object) -> object:
    """Run a coroutine to completion from synchronous fixture code."""
    return asyncio.run(coro)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def redis_with_prefix(label: str) -> AsyncIterator[tuple[Redis, str]]:
    """A client on the test Redis and a key prefix of the caller's own, deleted afterwards."""
    require_services()
    prefix = unique_name(label) + ":"
    client = Redis.from_url(REDIS_URL)
    try:
        yield client, prefix
    finally:
        await delete_redis_prefix(prefix)
        await client.aclose()
