"""Fixtures for unit tests of the control-plane services: a ControlPlane on a fresh SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.cache.bus import Invalidation, LocalInvalidationBus
from odock.db import migrate
from odock.db.engine import create_engine, session_factory
from odock.providers.crypto import EnvelopeDecrypter, KeyPair, generate_key_pair


@pytest.fixture(scope="session")
def keypair() -> KeyPair:
    """One provider-key encryption pair for the run (RSA generation is slow)."""
    return generate_key_pair("unit-test-pair", bits=2048)


@pytest.fixture
def published() -> list[Invalidation]:
    """Every invalidation the control plane publishes, in order."""
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
def control(
    sessions: async_sessionmaker[AsyncSession], keypair: KeyPair, published: list[Invalidation]
) -> ControlPlane:
    """A control plane on the test's database, recording its invalidations."""
    bus = LocalInvalidationBus()
    bus.subscribe(published.append)
    return ControlPlane(sessions, bus, EnvelopeDecrypter(keypair.key_id, keypair.private_pem))
