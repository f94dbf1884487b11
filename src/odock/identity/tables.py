"""Tables of control-plane identity: sessions, personal admin tokens, invitations, external sign-ins.

Secrets (session tokens, admin tokens, invitation tokens) are stored only as SHA-256 hashes; the
raw value exists in the cookie, the ``Authorization`` header or the invitation link.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from odock.db.base import Base, IdType, utcnow
from odock.tenancy.tables import Role


class AuthSession(Base):
    """A server-side login session; the cookie carries the raw token, the row its hash."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token_hash: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class AdminToken(Base):
    """A personal admin API token for automation: acts with its owner's rights, revocable."""

    __tablename__ = "admin_tokens"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_preview: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class InvitationStatus(enum.StrEnum):
    """Where an invitation stands (spec §3.1)."""

    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"


class InvitationType(enum.StrEnum):
    """What accepting the invitation does."""

    JOIN_ORGANISATION = "JOIN_ORGANISATION"
    CREATE_ORGANISATION = "CREATE_ORGANISATION"
    # The first-start sign-in link of an empty install (odock.identity.welcome): never an
    # organisation invitation, so the invitation routes do not see it.
    FIRST_ADMIN = "FIRST_ADMIN"


class Invitation(Base):
    """An invitation to join an organisation with a role; the link carries the raw token."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_org_created", "organisation_id", "created_at"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    organisation_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320), index=True)
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    type: Mapped[InvitationType] = mapped_column(
        Enum(InvitationType, native_enum=False, length=30), default=InvitationType.JOIN_ORGANISATION
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[InvitationStatus] = mapped_column(
        Enum(InvitationStatus, native_enum=False, length=20), default=InvitationStatus.PENDING
    )
    expires_at: Mapped[datetime] = mapped_column()
    invited_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    accepted_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExternalIdentity(Base):
    """A user's account at an external sign-in provider (GitHub, an OpenID Connect issuer)."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
