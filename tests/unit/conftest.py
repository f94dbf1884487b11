"""Fixtures shared by the unit tests: the run's migrated SQLite file (``migrated_sqlite``, from
tests/conftest.py) copied for each test, and a ControlPlane on such a copy for the tests of the
control-plane services."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.audit.recorder import audited_session_factory
from odock.cache.bus import Invalidation, LocalInvalidationBus
from odock.db.engine import create_engine
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
async def sessions(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Audited sessions on a copy of the migrated SQLite file, the test's own."""
    path = tmp_path / "odock.db"
    shutil.copyfile(migrated_sqlite, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        yield audited_session_factory(engine)
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
