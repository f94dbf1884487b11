"""Invitations: an organisation admin invites an e-mail address with a role; the invitee accepts.

Lifecycle (spec §11.3)::

    create   → PENDING, a random token (the link /invite/{token} carries it; the row its hash)
    resend   → a new token and expiry (the old link stops working); EXPIRED becomes PENDING again
    revoke   → REVOKED (the link stops working)
    accept   → ACCEPTED: the invitee is an ACTIVE user of the organisation with the invited role
               (by password, or signed in through OAuth with the invited e-mail address)
    PENDING past ``expires_at`` reads as EXPIRED.

No e-mail is sent: create and resend return the link for the admin to pass on. An e-mail sender
would hook in where :func:`create_invitation` and :func:`resend_invitation` return.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.db.base import utcnow
from odock.errors import Conflict, InvitationClosed, InvitationEmailMismatch, InvitationInvalid, NotFound
from odock.identity.accounts import normalise_email
from odock.identity.secrets import new_secret, secret_hash
from odock.identity.tables import Invitation, InvitationStatus
from odock.ids import new_id
from odock.tenancy.tables import Role, User, UserStatus

INVITABLE_ROLES = frozenset({Role.ORG_ADMIN, Role.MANAGER, Role.USER})


def effective_status(invitation: Invitation, now: datetime | None = None) -> InvitationStatus:
    """The status as the invitee sees it: a PENDING invitation past its expiry is EXPIRED."""
    if invitation.status is InvitationStatus.PENDING and invitation.expires_at <= (now or utcnow()):
        return InvitationStatus.EXPIRED
    return invitation.status


@dataclass(frozen=True)
class IssuedInvitation:
    """An invitation and the raw token of its link (shown once, to the inviting admin)."""

    invitation: Invitation
    token: str


async def create_invitation(
    sessions: async_sessionmaker[AsyncSession],
    *,
    organisation_id: str,
    email: str,
    role: Role,
    invited_by_id: str | None,
    ttl_seconds: float,
) -> IssuedInvitation:
    """Invite ``email`` to the organisation (409 when the address has an account or an open invitation)."""
    address = normalise_email(email)
    now = utcnow()
    token = new_secret()
    async with sessions() as session:
        if (await session.execute(select(User.id).where(User.email == address))).first() is not None:
            raise Conflict(f"a user with e-mail '{address}' already exists")
        open_ones = await session.execute(
            select(Invitation.id).where(
                Invitation.organisation_id == organisation_id,
                Invitation.email == address,
                Invitation.status == InvitationStatus.PENDING,
                Invitation.expires_at > now,
            )
        )
        if open_ones.first() is not None:
            raise Conflict(f"'{address}' already has an open invitation: resend it instead")
        row = Invitation(
            id=new_id(),
            organisation_id=organisation_id,
            email=address,
            role=role,
            token_hash=secret_hash(token),
            status=InvitationStatus.PENDING,
            expires_at=now + timedelta(seconds=ttl_seconds),
            invited_by_id=invited_by_id,
        )
        session.add(row)
        await session.commit()
    return IssuedInvitation(row, token)


async def resend_invitation(
    sessions: async_sessionmaker[AsyncSession], invitation_id: str, *, ttl_seconds: float
) -> IssuedInvitation:
    """A fresh token and expiry; the old link stops working (409 once accepted or revoked)."""
    token = new_secret()
    async with sessions() as session:
        row = await _get(session, invitation_id)
        if row.status in (InvitationStatus.ACCEPTED, InvitationStatus.REVOKED):
            raise Conflict(f"the invitation is {row.status.value}: create a new one")
        row.token_hash = secret_hash(token)
        row.status = InvitationStatus.PENDING
        row.expires_at = utcnow() + timedelta(seconds=ttl_seconds)
        await session.commit()
    return IssuedInvitation(row, token)


async def revoke_invitation(sessions: async_sessionmaker[AsyncSession], invitation_id: str) -> Invitation:
    """Close the invitation (409 once accepted); its link stops working."""
    async with sessions() as session:
        row = await _get(session, invitation_id)
        if row.status is InvitationStatus.ACCEPTED:
            raise Conflict("the invitation was already accepted")
        row.status = InvitationStatus.REVOKED
        await session.commit()
    return row


async def invitation_by_token(session: AsyncSession, token: str) -> Invitation:
    """The invitation a link names, whatever its status (404 ``invitation_invalid`` when none)."""
    row = (
        await session.execute(select(Invitation).where(Invitation.token_hash == secret_hash(token)))
    ).scalar_one_or_none()
    if row is None:
        raise InvitationInvalid()
    return row


async def open_invitation(session: AsyncSession, token: str) -> Invitation:
    """The invitation a link names, if it can still be accepted (410 ``invitation_closed`` otherwise)."""
    row = await invitation_by_token(session, token)
    status = effective_status(row)
    if status is not InvitationStatus.PENDING:
        raise InvitationClosed(f"the invitation is {status.value}")
    return row


def accept_into(invitation: Invitation, user: User, *, name: str | None = None) -> None:
    """Make ``user`` an active member of the invitation's organisation with its role; close it.

    The caller checked that ``user`` holds the invited e-mail address (no other account may
    take an invitation: an OAuth account is never linked to a user by e-mail alone).
    """
    if normalise_email(user.email) != invitation.email:
        raise InvitationEmailMismatch()
    if user.role is Role.SUPER_ADMIN:
        raise Conflict("a super admin cannot accept an organisation invitation")
    user.organisation_id = invitation.organisation_id
    user.role = invitation.role
    user.status = UserStatus.ACTIVE
    if name:
        user.name = name
    invitation.status = InvitationStatus.ACCEPTED
    invitation.accepted_by_id = user.id


async def _get(session: AsyncSession, invitation_id: str) -> Invitation:
    row = await session.get(Invitation, invitation_id)
    if row is None:
        raise NotFound("invitation not found")
    return row
