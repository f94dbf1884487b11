"""Fixtures for identity services: a fresh SQLite database with one organisation and its admin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.db import migrate
from odock.db.engine import create_engine, session_factory


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a migrated SQLite file of the test's own."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'odock.db'}")
    await migrate.upgrade(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()
