"""Personal admin tokens as their owners and super admins manage them: issue, list, revoke.

A token acts with its owner's current rights (see :mod:`odock.identity.actors`, which resolves it
on every request); here it is only made, listed and ended. The secret exists in the answer to
:meth:`AdminTokens.issue` alone; the database keeps its SHA-256 hash.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.db.base import utcnow
from odock.db.seek import Seek
from odock.errors import NotFound
from odock.identity.actors import issue_admin_token
from odock.identity.tables import AdminToken


class AdminTokens:
    """Admin tokens in the database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def issue(self, user_id: str, name: str, expires_at: datetime | None) -> tuple[AdminToken, str]:
        """A new token of ``user_id`` and its secret (shown this once)."""
        issued = await issue_admin_token(self._sessions, user_id, name, expires_at)
        async with self._sessions() as session:
            row = await session.get(AdminToken, issued.id)
        assert row is not None  # just committed
        return row, issued.token

    async def page(self, user_id: str, seek: Seek, *, active: bool | None) -> list[AdminToken]:
        """One page of a user's tokens: unrevoked ones (``active``), revoked ones (``not active``), or all."""
        query = select(AdminToken).where(AdminToken.user_id == user_id)
        if active is True:
            query = query.where(AdminToken.revoked_at.is_(None))
        elif active is False:
            query = query.where(AdminToken.revoked_at.is_not(None))
        async with self._sessions() as session:
            return list((await session.execute(seek(query, AdminToken.created_at, AdminToken.id))).scalars())

    async def revoke(self, token_id: str, *, owner_id: str) -> None:
        """End one token of ``owner_id`` at once (404 for anyone else's; idempotent)."""
        async with self._sessions() as session:
            row = await session.get(AdminToken, token_id)
            if row is None or row.user_id != owner_id:
                raise NotFound("admin token not found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                await session.commit()
