"""Fixtures for tenancy tests: the services on a fresh SQLite database, recording invalidations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation, LocalInvalidationBus
from odock.db import migrate
from odock.db.engine import create_engine, session_factory
from odock.tenancy.service import TenancyService
from odock.tenancy.user_service import UserService


@pytest.fixture
def published() -> list[Invalidation]:
    """Every invalidation the services publish, in order."""
    return []


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a migrated SQLite file of the test's own."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'odock.db'}")
    await migrate.upgrade(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def tenancy(sessions: async_sessionmaker[AsyncSession], published: list[Invalidation]) -> TenancyService:
    """The tenancy service on the test's database."""
    bus = LocalInvalidationBus()
    bus.subscribe(published.append)
    return TenancyService(sessions, bus)


@pytest.fixture
def users(sessions: async_sessionmaker[AsyncSession]) -> UserService:
    """The user service on the test's database."""
    return UserService(sessions)
