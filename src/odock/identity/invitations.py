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

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.audit.context import AuditActor, set_actor
from odock.db.base import utcnow
from odock.db.search import matches
from odock.db.seek import Seek
from odock.errors import (
    Conflict,
    InvitationClosed,
    InvitationEmailMismatch,
    InvitationInvalid,
    NotFound,
    UnprocessableEntity,
)
from odock.identity.accounts import normalise_email
from odock.identity.passwords import Passwords, check_password_rules
from odock.identity.secrets import new_secret, secret_hash
from odock.identity.tables import Invitation, InvitationStatus, InvitationType
from odock.ids import new_id
from odock.tenancy.tables import Organisation, Role, User, UserStatus

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
    """The invitation a link names, whatever its status (404 ``invitation_invalid`` when none).

    The first-start link (type FIRST_ADMIN, :mod:`odock.identity.welcome`) is not an invitation.
    """
    query = select(Invitation).where(
        Invitation.token_hash == secret_hash(token), Invitation.type != InvitationType.FIRST_ADMIN
    )
    row = (await session.execute(query)).scalar_one_or_none()
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


class Invitations:
    """The invitations of organisations as admins and invitees see them (the API's one entry point)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], passwords: Passwords, *, ttl_seconds: float
    ) -> None:
        self._sessions = sessions
        self._passwords = passwords
        self._ttl = ttl_seconds

    async def page(
        self, organisation_id: str | None, seek: Seek, *, status: InvitationStatus | None, q: str | None
    ) -> list[Invitation]:
        """One page of an organisation's invitations, by effective status, searched by e-mail."""
        query = select(Invitation).where(Invitation.organisation_id == organisation_id)
        if status is not None:
            query = query.where(_with_status(status, utcnow()))
        if q:
            query = query.where(matches(q, Invitation.email))
        async with self._sessions() as session:
            return list((await session.execute(seek(query, Invitation.created_at, Invitation.id))).scalars())

    async def invite(
        self, organisation_id: str, email: str, role: Role, invited_by_id: str | None
    ) -> IssuedInvitation:
        """Invite ``email`` to an existing organisation (422 when there is none)."""
        async with self._sessions() as session:
            if await session.get(Organisation, organisation_id) is None:
                raise UnprocessableEntity("no such organisation", param="organisation_id")
        return await create_invitation(
            self._sessions,
            organisation_id=organisation_id,
            email=email,
            role=role,
            invited_by_id=invited_by_id,
            ttl_seconds=self._ttl,
        )

    async def get(self, invitation_id: str) -> Invitation:
        """One invitation (404 when absent)."""
        async with self._sessions() as session:
            return await _get(session, invitation_id)

    async def resend(self, invitation_id: str) -> IssuedInvitation:
        """A new link and expiry (:func:`resend_invitation`)."""
        return await resend_invitation(self._sessions, invitation_id, ttl_seconds=self._ttl)

    async def revoke(self, invitation_id: str) -> Invitation:
        """Close the invitation (:func:`revoke_invitation`)."""
        return await revoke_invitation(self._sessions, invitation_id)

    async def link(self, token: str) -> tuple[Invitation, Organisation | None]:
        """The invitation a link names (any status) and the organisation it is to."""
        async with self._sessions() as session:
            row = await invitation_by_token(session, token)
            org = await session.get(Organisation, row.organisation_id) if row.organisation_id else None
        return row, org

    async def accept_as(self, token: str, user_id: str, *, name: str | None) -> User:
        """Accept as the signed-in account ``user_id``, which must hold the invited e-mail address."""
        async with self._sessions() as session:
            invitation = await open_invitation(session, token)
            user = await session.get(User, user_id)
            assert user is not None  # the caller's credential was just resolved
            accept_into(invitation, user, name=name)
            await session.commit()
        return user

    async def accept_new(self, token: str, *, name: str | None, password: str, ip: str | None) -> User:
        """Accept as a new password account of the invited e-mail address (409 when it exists)."""
        check_password_rules(password)
        async with self._sessions() as session:
            invitation = await open_invitation(session, token)
            # Nobody is signed in yet: the new account is the invitee's own doing.
            set_actor(AuditActor(kind="invitation", label=invitation.email, ip=ip))
            user = User(
                id=new_id(),
                email=normalise_email(invitation.email),
                name=name,
                role=Role.USER,
                status=UserStatus.PENDING,
                password_hash=await self._passwords.hash(password),
                password_changed_at=utcnow(),
            )
            session.add(user)
            try:
                await session.flush()  # the user row first: the invitation references it
                accept_into(invitation, user, name=name)
                await session.commit()
            except IntegrityError as exc:
                raise Conflict(
                    "an account with this e-mail exists: sign in and accept without a password"
                ) from exc
        return user


def _with_status(status: InvitationStatus, now: datetime) -> ColumnElement[bool]:
    # PENDING past its expiry reads as EXPIRED (see effective_status).
    if status is InvitationStatus.EXPIRED:
        return (Invitation.status == InvitationStatus.EXPIRED) | (
            (Invitation.status == InvitationStatus.PENDING) & (Invitation.expires_at <= now)
        )
    if status is InvitationStatus.PENDING:
        return (Invitation.status == InvitationStatus.PENDING) & (Invitation.expires_at > now)
    return Invitation.status == status


async def _get(session: AsyncSession, invitation_id: str) -> Invitation:
    row = await session.get(Invitation, invitation_id)
    if row is None:
        raise NotFound("invitation not found")
    return row
