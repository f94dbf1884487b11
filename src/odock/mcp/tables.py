"""Tables of the MCP gateway: servers and the STDIO allowlist (the per-key server and tool grants
are in :mod:`odock.keys.tables`).

Secret values (``auth_config`` secrets, ``headers`` values, ``stdio_env`` values) are stored as
provider-key envelopes (:mod:`odock.providers.crypto`) and never returned by the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from odock.db.base import Base, IdType, JsonType, utcnow

# The per-key grants live with the keys (like model grants); named here too for the MCP code.
from odock.keys.tables import ApiKeyMcpAccess, ApiKeyMcpToolGrant

__all__ = ["ApiKeyMcpAccess", "ApiKeyMcpToolGrant", "McpServer", "McpStdioCommand"]


class McpServer(Base):
    """An upstream MCP server of an organisation, reached at ``/v1/mcp/{slug|id}`` (spec §3.8)."""

    __tablename__ = "mcp_servers"
    __table_args__ = (UniqueConstraint("organisation_id", "slug"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    transport: Mapped[str] = mapped_column(String(20))  # odock.mcp.link.Transport
    endpoint_url: Mapped[str | None] = mapped_column(String(2000))
    stdio_command: Mapped[str | None] = mapped_column(String(500))
    stdio_args: Mapped[list[str]] = mapped_column(JsonType, default=list)
    stdio_env: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)  # values are envelopes
    auth_type: Mapped[str] = mapped_column(String(20), default="NONE")  # odock.mcp.link.AuthType
    auth_config: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)  # secrets are envelopes
    headers: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)  # values are envelopes
    enabled: Mapped[bool] = mapped_column(default=True)
    is_public: Mapped[bool] = mapped_column(default=False)
    oauth_required: Mapped[bool] = mapped_column(default=False)
    # Scope: when set, only keys of this team (or this one key) may use the server.
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), index=True)
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), index=True)
    allowed_tools: Mapped[list[str]] = mapped_column(JsonType, default=list)
    blocked_tools: Mapped[list[str]] = mapped_column(JsonType, default=list)
    semantic_filter: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    # {"call_nanos_usd", "input_byte_nanos_usd", "output_byte_nanos_usd"}: integer nanos-USD
    pricing: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    policies: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class McpStdioCommand(Base):
    """An executable SUPER_ADMIN added to the STDIO allowlist (besides ``mcp_stdio_allowed_commands``)."""

    __tablename__ = "mcp_stdio_commands"
    __table_args__ = (UniqueConstraint("command"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    command: Mapped[str] = mapped_column(String(500))
    note: Mapped[str | None] = mapped_column(String(500))
    added_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
