"""Who is calling: the user behind an admin token or a session cookie, and their :class:`Actor`.

A token or session always acts with its user's *current* role, organisation and team
memberships (read on every request), so a role change applies at once; it stops working when
revoked, expired, or when the user is no longer ACTIVE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.db.base import utcnow
from odock.errors import AccountNotActive, Unauthorized
from odock.identity.secrets import ADMIN_TOKEN_PREFIX, new_secret, preview, secret_hash
from odock.identity.tables import AdminToken, AuthSession
from odock.ids import new_id
from odock.rbac.grant import Actor
from odock.tenancy.tables import TeamMember, TeamMemberRole, User, UserStatus


@dataclass(frozen=True)
class IssuedAdminToken:
    """A newly issued admin token: the secret is shown once."""

    id: str
    name: str
    token: str
    preview: str
    expires_at: datetime | None


async def issue_admin_token(
    sessions: async_sessionmaker[AsyncSession], user_id: str, name: str, expires_at: datetime | None = None
) -> IssuedAdminToken:
    """Create a personal admin token for ``user_id``; its secret is returned once, stored hashed."""
    raw = new_secret(ADMIN_TOKEN_PREFIX)
    row = AdminToken(
        id=new_id(),
        user_id=user_id,
        name=name,
        token_hash=secret_hash(raw),
        token_preview=preview(raw),
        expires_at=expires_at,
    )
    async with sessions() as session:
        session.add(row)
        await session.commit()
    return IssuedAdminToken(row.id, name, raw, row.token_preview, expires_at)


async def actor_for_user(session: AsyncSession, user: User, **via: str | None) -> Actor:
    """The actor for an active ``user`` with their team memberships (403 when not active)."""
    if user.status is not UserStatus.ACTIVE:
        raise AccountNotActive()
    rows = (await session.execute(select(TeamMember).where(TeamMember.user_id == user.id))).scalars()
    members = list(rows)
    return Actor(
        user_id=user.id,
        email=user.email,
        role=user.role,
        organisation_id=user.organisation_id,
        managed_team_ids=frozenset(m.team_id for m in members if m.role is TeamMemberRole.MANAGER),
        member_team_ids=frozenset(m.team_id for m in members),
        session_id=via.get("session_id"),
        token_id=via.get("token_id"),
    )


@dataclass(frozen=True)
class Credential:
    """What authenticated a request: the user, and the session or admin token it came with."""

    user: User
    session: AuthSession | None = None
    token_id: str | None = None

    @property
    def via(self) -> dict[str, str | None]:
        """The ``session_id`` / ``token_id`` for :func:`actor_for_user`."""
        return {"session_id": self.session.id if self.session else None, "token_id": self.token_id}


async def user_from_admin_token(sessions: async_sessionmaker[AsyncSession], raw: str) -> Credential:
    """The user a bearer admin token speaks for, or :class:`Unauthorized`."""
    async with sessions() as session:
        token = (
            await session.execute(select(AdminToken).where(AdminToken.token_hash == secret_hash(raw)))
        ).scalar_one_or_none()
        now = utcnow()
        if token is None or token.revoked_at is not None:
            raise Unauthorized("invalid admin token")
        if token.expires_at is not None and token.expires_at <= now:
            raise Unauthorized("admin token expired")
        user = await session.get(User, token.user_id)
        if user is None:
            raise Unauthorized("invalid admin token")
        return Credential(user, token_id=token.id)


async def actor_from_admin_token(sessions: async_sessionmaker[AsyncSession], raw: str) -> Actor:
    """The actor a bearer admin token speaks for, or :class:`Unauthorized`."""
    credential = await user_from_admin_token(sessions, raw)
    async with sessions() as session:
        return await actor_for_user(session, credential.user, token_id=credential.token_id)
