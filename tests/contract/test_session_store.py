"""Sign-in sessions on SQLite and PostgreSQL: ended sessions are purged when a new one starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.db.engine import session_factory
from odock.errors import Unauthorized
from odock.identity.sessions import PURGE_BATCH, SessionStore
from odock.identity.tables import AuthSession
from odock.ids import new_id
from odock.tenancy.tables import Role, User, UserStatus
from tests.support import services

TTL = timedelta(days=7)
IDLE = timedelta(days=1)


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime

    def __call__(self) -> datetime:
        """The current (test) time."""
        return self.now


@dataclass
class Sessions:
    """A session store on a fresh database, its clock, and one user to sign in."""

    store: SessionStore
    clock: Clock
    sessions: async_sessionmaker[AsyncSession]
    user_id: str

    async def stored(self) -> set[str]:
        """The ids of every stored session row, ended or not."""
        async with self.sessions() as session:
            return set((await session.execute(select(AuthSession.id))).scalars())

    async def count(self) -> int:
        """How many session rows are stored."""
        async with self.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(AuthSession))).scalar_one())


@pytest.fixture(params=["sqlite", "postgresql"])
async def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sessions]:
    """A session store over a migrated database of the parametrized kind, with a clock at a fixed time."""
    async with services.migrated_engine(request.param, "odock_test_sessions", tmp_path) as engine:
        factory = session_factory(engine)
        user = User(id=new_id(), email=f"{new_id()}@example.test", role=Role.USER, status=UserStatus.ACTIVE)
        async with factory() as session:
            session.add(user)
            await session.commit()
        clock = Clock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
        store = SessionStore(
            factory, ttl_seconds=TTL.total_seconds(), idle_seconds=IDLE.total_seconds(), clock=clock
        )
        yield Sessions(store, clock, factory, user.id)


async def test_sign_in_purges_expired_idle_and_revoked_sessions(sessions: Sessions) -> None:
    """A new sign-in deletes every session that has ended (past its TTL, idle too long, or revoked)."""
    store, clock = sessions.store, sessions.clock
    expired = await store.start(sessions.user_id, ip=None, user_agent=None)
    clock.now += timedelta(hours=1)
    idle = await store.start(sessions.user_id, ip=None, user_agent=None)  # never used after sign-in
    clock.now += timedelta(hours=1)
    live = await store.start(sessions.user_id, ip=None, user_agent=None)
    revoked = await store.start(sessions.user_id, ip=None, user_agent=None)
    # Keep ``expired`` and ``live`` in use (never idle) until just before ``expired``'s TTL.
    for _ in range(8):
        clock.now += timedelta(hours=20)
        await store.resolve(expired.token)
        await store.resolve(live.token)
    await store.revoke(revoked.id)
    clock.now = expired.expires_at + timedelta(seconds=1)
    await store.resolve(live.token)
    assert await sessions.stored() == {expired.id, revoked.id, idle.id, live.id}

    newest = await store.start(sessions.user_id, ip=None, user_agent=None)

    assert await sessions.stored() == {live.id, newest.id}
    await store.resolve(live.token)  # the live one still works


async def test_live_sessions_are_kept(sessions: Sessions) -> None:
    """Sessions that have not ended survive any number of sign-ins."""
    first = await sessions.store.start(sessions.user_id, ip=None, user_agent=None)
    sessions.clock.now += IDLE - timedelta(seconds=1)
    second = await sessions.store.start(sessions.user_id, ip=None, user_agent=None)
    assert await sessions.stored() == {first.id, second.id}
    assert (await sessions.store.resolve(first.token)).session.id == first.id


async def test_a_purged_session_is_refused(sessions: Sessions) -> None:
    """A cookie of a purged session is refused like any ended session."""
    gone = await sessions.store.start(sessions.user_id, ip=None, user_agent=None)
    sessions.clock.now += TTL
    await sessions.store.start(sessions.user_id, ip=None, user_agent=None)
    assert gone.id not in await sessions.stored()
    with pytest.raises(Unauthorized):
        await sessions.store.resolve(gone.token)


async def test_a_backlog_drains_in_batches(sessions: Sessions) -> None:
    """A backlog of ended sessions drains PURGE_BATCH per sign-in, so no one sign-in deletes it all."""
    backlog = PURGE_BATCH + 20
    ended = sessions.clock.now - TTL
    async with sessions.sessions() as session:
        for index in range(backlog):
            session.add(
                AuthSession(
                    id=new_id(),
                    user_id=sessions.user_id,
                    token_hash=f"{index:064x}",
                    csrf_token_hash="0" * 64,
                    created_at=ended - TTL,
                    last_seen_at=ended,
                    expires_at=ended,
                )
            )
        await session.commit()
    await sessions.store.start(sessions.user_id, ip=None, user_agent=None)
    assert await sessions.count() == backlog - PURGE_BATCH + 1
    await sessions.store.start(sessions.user_id, ip=None, user_agent=None)
    assert await sessions.count() == 2
