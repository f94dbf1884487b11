"""Server-side sign-in sessions: started at sign-in, resolved per request, revoked on demand.

The cookie carries a random token; the row keeps only its SHA-256 hash, and the hash of the
session's CSRF token (double-submit: the browser sends it back in ``X-CSRF-Token`` on writes). A
session ends at ``expires_at`` (``session_ttl_seconds`` after sign-in), after
``session_idle_timeout_seconds`` without use, or when revoked (logout, password change, the user
being disabled or deleted).

Ended sessions are deleted when a new one starts (up to :data:`PURGE_BATCH` per sign-in). Rows
are only ever added by a sign-in, so the table stays at the live sessions plus those ended since
the last sign-in, with no background task, and a sign-in (an argon2 hash already) pays for it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.db.base import utcnow
from odock.db.seek import Seek
from odock.errors import NotFound, Unauthorized
from odock.identity.secrets import new_secret, secret_hash
from odock.identity.tables import AdminToken, AuthSession
from odock.ids import new_id
from odock.tenancy.tables import User

SESSION_PREFIX = "odk_sess_"
TOUCH_INTERVAL = timedelta(seconds=60)  # last_seen_at is written at most once a minute per session
# Each sign-in adds one row and deletes up to this many ended ones: a backlog (an install from
# before sessions were purged) drains over a few sign-ins without one of them deleting it all.
PURGE_BATCH = 500


@dataclass(frozen=True)
class IssuedSession:
    """A new session: the raw token and CSRF token exist only here (and in the browser)."""

    id: str
    token: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class ResolvedSession:
    """The session a cookie names, with its user."""

    session: AuthSession
    user: User

    def csrf_matches(self, presented: str | None) -> bool:
        """Whether ``presented`` is this session's CSRF token (constant-time comparison)."""
        if not presented:
            return False
        return hmac.compare_digest(secret_hash(presented), self.session.csrf_token_hash)


class SessionStore:
    """Sessions in the database (shared by every replica)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl_seconds: float,
        idle_seconds: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._ttl = timedelta(seconds=ttl_seconds)
        self._idle = timedelta(seconds=idle_seconds)
        self._clock = clock

    async def start(self, user_id: str, *, ip: str | None, user_agent: str | None) -> IssuedSession:
        """Open a session for ``user_id``."""
        now = self._clock()
        raw, csrf = new_secret(SESSION_PREFIX), new_secret()
        row = AuthSession(
            id=new_id(),
            user_id=user_id,
            token_hash=secret_hash(raw),
            csrf_token_hash=secret_hash(csrf),
            ip=ip,
            user_agent=(user_agent or "")[:400] or None,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._ttl,
        )
        async with self._sessions() as session:
            session.add(row)
            await self._purge_ended(session, now)
            await session.commit()
        return IssuedSession(row.id, raw, csrf, row.expires_at)

    async def _purge_ended(self, session: AsyncSession, now: datetime) -> int:
        """Delete up to :data:`PURGE_BATCH` ended sessions (deleting one is not an audit event)."""
        ended = select(AuthSession.id).where(self._ended(now)).limit(PURGE_BATCH)
        ids = list((await session.execute(ended)).scalars())
        if ids:
            await session.execute(delete(AuthSession).where(AuthSession.id.in_(ids)))
        return len(ids)

    def _ended(self, now: datetime) -> ColumnElement[bool]:
        return or_(
            AuthSession.revoked_at.is_not(None),
            AuthSession.expires_at <= now,
            AuthSession.last_seen_at <= now - self._idle,
        )

    async def resolve(self, raw: str) -> ResolvedSession:
        """The live session for the cookie value ``raw``, or :class:`Unauthorized`."""
        now = self._clock()
        async with self._sessions() as session:
            row = (
                await session.execute(select(AuthSession).where(AuthSession.token_hash == secret_hash(raw)))
            ).scalar_one_or_none()
            if row is None or row.revoked_at is not None:
                raise Unauthorized("not signed in (the session has ended)")
            if row.expires_at <= now or row.last_seen_at + self._idle <= now:
                raise Unauthorized("the session has expired: sign in again")
            user = await session.get(User, row.user_id)
            if user is None:
                raise Unauthorized("not signed in (the session has ended)")
            if now - row.last_seen_at >= TOUCH_INTERVAL:
                row.last_seen_at = now
                await session.commit()
            return ResolvedSession(row, user)

    async def revoke(self, session_id: str) -> None:
        """End one session (idempotent)."""
        async with self._sessions() as session:
            row = await session.get(AuthSession, session_id)
            if row is not None and row.revoked_at is None:
                row.revoked_at = self._clock()
                await session.commit()

    def live(self, user_id: str) -> Select[AuthSession]:
        """A query for the user's sessions that have not ended."""
        now = self._clock()
        return select(AuthSession).where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
            AuthSession.last_seen_at > now - self._idle,
        )

    async def live_page(self, user_id: str, seek: Seek) -> list[AuthSession]:
        """One page of the user's sessions that have not ended."""
        async with self._sessions() as session:
            query = seek(self.live(user_id), AuthSession.created_at, AuthSession.id)
            return list((await session.execute(query)).scalars())

    async def revoke_own(self, session_id: str, user_id: str) -> None:
        """End one of ``user_id``'s own sessions (404 for anyone else's)."""
        async with self._sessions() as session:
            row = await session.get(AuthSession, session_id)
        if row is None or row.user_id != user_id:
            raise NotFound("session not found")
        await self.revoke(session_id)


async def revoke_user_sessions(session: AsyncSession, user_id: str, *, keep: str | None = None) -> int:
    """Revoke every live session of ``user_id`` except ``keep``, in the caller's transaction."""
    now = utcnow()
    query = select(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(AuthSession.id != keep)
    rows = list((await session.execute(query)).scalars())
    for row in rows:
        row.revoked_at = now
    return len(rows)


async def revoke_user_tokens(session: AsyncSession, user_id: str) -> int:
    """Revoke every personal admin token of ``user_id``, in the caller's transaction."""
    now = utcnow()
    query = select(AdminToken).where(AdminToken.user_id == user_id, AdminToken.revoked_at.is_(None))
    rows = list((await session.execute(query)).scalars())
    for row in rows:
        row.revoked_at = now
    return len(rows)
