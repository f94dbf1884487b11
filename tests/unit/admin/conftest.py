"""Fixtures for control-plane tests: a ControlPlane on a fresh SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
async def control(
    tmp_path: Path, keypair: KeyPair, published: list[Invalidation]
) -> AsyncIterator[ControlPlane]:
    """A control plane on a migrated SQLite file, recording its invalidations."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'odock.db'}")
    await migrate.upgrade(engine)
    bus = LocalInvalidationBus()
    bus.subscribe(published.append)
    try:
        yield ControlPlane(
            session_factory(engine), bus, EnvelopeDecrypter(keypair.key_id, keypair.private_pem)
        )
    finally:
        await engine.dispose()
