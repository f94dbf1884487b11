"""Fixtures for audit-log tests: a control plane on a fresh SQLite database, and its audit events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.audit.recorder import audited_session_factory
from odock.audit.tables import AuditEvent
from odock.cache.bus import LocalInvalidationBus
from odock.db import migrate
from odock.db.engine import create_engine
from odock.providers.crypto import EnvelopeDecrypter, KeyPair, generate_key_pair

Events = Callable[..., Awaitable[list[AuditEvent]]]


@pytest.fixture(scope="session")
def keypair() -> KeyPair:
    """One provider-key encryption pair for the run (RSA generation is slow)."""
    return generate_key_pair("audit-test-pair", bits=2048)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a migrated SQLite file of the test's own."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'odock.db'}")
    await migrate.upgrade(engine)
    try:
        yield audited_session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def control(sessions: async_sessionmaker[AsyncSession], keypair: KeyPair) -> ControlPlane:
    """A control plane on the test's database."""
    return ControlPlane(
        sessions, LocalInvalidationBus(), EnvelopeDecrypter(keypair.key_id, keypair.private_pem)
    )


@pytest.fixture
def events(sessions: async_sessionmaker[AsyncSession]) -> Events:
    """The audit events recorded so far, oldest first (optionally of one resource type)."""

    async def load(resource_type: str | None = None) -> list[AuditEvent]:
        query = select(AuditEvent).order_by(AuditEvent.at, AuditEvent.id)
        if resource_type is not None:
            query = query.where(AuditEvent.resource_type == resource_type)
        async with sessions() as session:
            return list((await session.execute(query)).scalars())

    return load
