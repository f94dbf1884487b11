"""The first-start sign-in link: how the first super admin of an empty install gets in.

On startup, when no user exists at all and no bootstrap admin is configured, the server issues a
one-time link ``/welcome/{token}`` and prints it (next to the demo key). Whoever opens it chooses
an e-mail address, a name and a password and becomes the first SUPER_ADMIN, signed in at once.

The link is an :class:`~odock.identity.tables.Invitation` row of type ``FIRST_ADMIN`` (no
organisation, role SUPER_ADMIN); like every invitation only the token's hash is stored. It works
once and only while no user exists: a restart while still no user exists revokes the open link and
issues a new one, and once any user exists no link is issued and an old one is refused.
The invitation routes never see this row (:func:`odock.identity.invitations.invitation_by_token`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.audit.context import AuditActor, set_actor
from odock.db.base import utcnow
from odock.errors import Conflict, NotFound
from odock.identity.accounts import normalise_email
from odock.identity.passwords import Passwords, check_password_rules
from odock.identity.secrets import new_secret, secret_hash
from odock.identity.tables import Invitation, InvitationStatus, InvitationType
from odock.ids import new_id
from odock.tenancy.tables import Role, User, UserStatus

log = logging.getLogger(__name__)

WELCOME_PATH = "/welcome/"
# The link is meant for the person who just started the server; a day is plenty.
WELCOME_TTL_SECONDS = 24 * 3600


class WelcomeLinkInvalid(NotFound):
    """The link is unknown, was used or replaced, has expired, or an account already exists."""

    default_message = "this sign-in link is not valid: it was used or replaced, or an account already exists"


async def _any_user(session: AsyncSession) -> bool:
    return (await session.execute(select(User.id).limit(1))).first() is not None


def _open_links() -> tuple[ColumnElement[bool], ...]:
    return (
        Invitation.type == InvitationType.FIRST_ADMIN,
        Invitation.status == InvitationStatus.PENDING,
    )


async def issue_welcome_link(
    sessions: async_sessionmaker[AsyncSession], ttl_seconds: float = WELCOME_TTL_SECONDS
) -> str | None:
    """A new one-time token when no user exists (an older open link is revoked), else ``None``."""
    async with sessions() as session:
        if await _any_user(session):
            return None
        await session.execute(
            update(Invitation).where(*_open_links()).values(status=InvitationStatus.REVOKED)
        )
        token = new_secret()
        session.add(
            Invitation(
                id=new_id(),
                organisation_id=None,
                email="",  # chosen by whoever opens the link
                role=Role.SUPER_ADMIN,
                type=InvitationType.FIRST_ADMIN,
                token_hash=secret_hash(token),
                status=InvitationStatus.PENDING,
                expires_at=utcnow() + timedelta(seconds=ttl_seconds),
            )
        )
        await session.commit()
    return token


async def _open_link(session: AsyncSession, token: str) -> Invitation:
    row = (
        await session.execute(
            select(Invitation).where(Invitation.token_hash == secret_hash(token), *_open_links())
        )
    ).scalar_one_or_none()
    if row is None or row.expires_at <= utcnow() or await _any_user(session):
        raise WelcomeLinkInvalid()
    return row


async def check_welcome_link(sessions: async_sessionmaker[AsyncSession], token: str) -> None:
    """Nothing when the link can still be used (404 :class:`WelcomeLinkInvalid` otherwise)."""
    async with sessions() as session:
        await _open_link(session, token)


async def accept_welcome_link(
    sessions: async_sessionmaker[AsyncSession],
    passwords: Passwords,
    token: str,
    *,
    email: str,
    name: str | None,
    password: str,
    ip: str | None,
) -> User:
    """Create the first SUPER_ADMIN (no organisation) with ``password``; the link is used up."""
    check_password_rules(password)
    address = normalise_email(email)
    password_hash = await passwords.hash(password)
    async with sessions() as session:
        row = await _open_link(session, token)
        # Nobody is signed in yet: the new account is the link holder's own doing.
        set_actor(AuditActor(kind="first-start link", label=address, ip=ip))
        # Claim the link first: of two requests racing with it, the second matches no row.
        claimed = await session.execute(
            update(Invitation)
            .where(Invitation.id == row.id, Invitation.status == InvitationStatus.PENDING)
            .values(status=InvitationStatus.ACCEPTED)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            raise WelcomeLinkInvalid()
        user = User(
            id=new_id(),
            email=address,
            name=name,
            role=Role.SUPER_ADMIN,
            status=UserStatus.ACTIVE,
            organisation_id=None,
            password_hash=password_hash,
            password_changed_at=utcnow(),
        )
        session.add(user)
        try:
            await session.flush()
            await session.execute(
                update(Invitation).where(Invitation.id == row.id).values(accepted_by_id=user.id)
            )
            await session.commit()
        except IntegrityError as exc:  # pragma: no cover - no user existed a moment ago
            raise Conflict(f"a user with e-mail '{address}' already exists") from exc
    log.info("first super admin %s created through the first-start link", user.id)
    return user
