"""Tables of API keys: the keys, their model grants and their rotation history.

Only a SHA-256 hash of a key's secret is stored; the secret is shown once at creation or
rotation. ``key_preview`` keeps a masked form (``sk_ab12…9f3e``) for display.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from odock.db.base import Base, IdType, JsonType, utcnow


class ApiKeyType(enum.StrEnum):
    """Who an API key belongs to (spec §3.3)."""

    ORGANISATION = "ORGANISATION"
    TEAM = "TEAM"
    USER = "USER"


class ApiKey(Base):
    """A virtual API key that applications present instead of provider keys."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_org_created", "organisation_id", "created_at"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    type: Mapped[ApiKeyType] = mapped_column(Enum(ApiKeyType, native_enum=False, length=20))
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_preview: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[datetime | None] = mapped_column()
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    revoked: Mapped[bool] = mapped_column(default=False)
    revoked_at: Mapped[datetime | None] = mapped_column()
    rotation_count: Mapped[int] = mapped_column(Integer, default=0)
    policies: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKeyModelAccess(Base):
    """An explicit grant: this key may call this model. No grant, no call."""

    __tablename__ = "api_key_model_access"

    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKeyRotation(Base):
    """One in-place rotation of a key: new secret, same id."""

    __tablename__ = "api_key_rotations"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    rotated_at: Mapped[datetime] = mapped_column(default=utcnow)
    previous_key_preview: Mapped[str] = mapped_column(String(40))
    previous_expires_at: Mapped[datetime | None] = mapped_column()
    new_expires_at: Mapped[datetime | None] = mapped_column()
    rotated_by: Mapped[str | None] = mapped_column(String(200))


class ApiKeyMcpAccess(Base):
    """An explicit grant: this key may use this MCP server. No grant, no access."""

    __tablename__ = "api_key_mcp_access"

    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    mcp_server_id: Mapped[str] = mapped_column(
        ForeignKey("mcp_servers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKeyMcpToolGrant(Base):
    """A tool a key may call on a server. A key with any tool grant for a server may call only
    the tools granted (deny by default); a key with none is limited by the server's rules alone."""

    __tablename__ = "api_key_mcp_tool_grants"

    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    mcp_server_id: Mapped[str] = mapped_column(
        ForeignKey("mcp_servers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    tool: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
