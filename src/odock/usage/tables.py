"""The usage record table: one lossless row per gateway request (spec §3.10).

``id`` is the gateway's own 32-hex id and the idempotency key of the write (a re-flush after a
crash inserts nothing twice). ``request_id`` is the correlation id returned to the client in
``X-Request-Id``; a client may reuse one, so it is indexed, not unique.

``usage_dead_letters`` holds the records the database refused on their own (see
:mod:`odock.usage.recorder`), in their queue form, so no record is lost and none holds back the
ones after it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from odock.db.base import Base, JsonType, Money


class UsageRecord(Base):
    """What one request used, cost and took."""

    __tablename__ = "usage_records"
    # The control plane's reads (odock.usage.queries): the organisation's newest page in
    # (timestamp, id) keyset order, and the model / team / user filters (and MANAGER / USER
    # reach) inside a time range. A key's id is unique across organisations. (Migration 0004
    # rebuilds ix_usage_records_request_id with text_pattern_ops on PostgreSQL, so the request-id
    # prefix search uses it whatever the database collation; equality still does too.)
    __table_args__ = (
        Index("ix_usage_records_org_ts_id", "organisation_id", "timestamp", "id"),
        Index("ix_usage_records_org_model_ts", "organisation_id", "model", "timestamp"),
        Index("ix_usage_records_org_team_ts", "organisation_id", "team_id", "timestamp"),
        Index("ix_usage_records_org_user_ts", "organisation_id", "user_id", "timestamp"),
        Index("ix_usage_records_key_ts", "api_key_id", "timestamp"),
        # Partial: model calls (no server) do not pay for an index they never use.
        Index(
            "ix_usage_records_mcp_server_ts",
            "mcp_server_id",
            "timestamp",
            sqlite_where=text("mcp_server_id IS NOT NULL"),
            postgresql_where=text("mcp_server_id IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    timestamp: Mapped[datetime] = mapped_column(index=True)
    organisation_id: Mapped[str | None] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(32))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    model_id: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    provider_id: Mapped[str | None] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(40))
    endpoint: Mapped[str] = mapped_column(String(200))
    stream: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    billable_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_cost_nanos_usd: Mapped[int | None] = mapped_column(Money)
    latency_ms: Mapped[float] = mapped_column(default=0.0)
    time_to_first_token_ms: Mapped[float | None] = mapped_column()
    upstream_latency_ms: Mapped[float | None] = mapped_column()
    gateway_overhead_ms: Mapped[float] = mapped_column(default=0.0)
    provider_request_id: Mapped[str | None] = mapped_column(String(200))
    # The W3C trace id (32 hex) of a request that tracing sampled (docs/observability.md#traces).
    trace_id: Mapped[str | None] = mapped_column(String(32))
    tokens: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    billing: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    provider_usage: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    routing: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    # MCP calls (provider "mcp"): the server, its transport, the JSON-RPC method, the tool called
    # and how many tool calls the message carried (spec §10.6).
    mcp_server_id: Mapped[str | None] = mapped_column(String(32))
    mcp_server: Mapped[str | None] = mapped_column(String(100))
    mcp_transport: Mapped[str | None] = mapped_column(String(20))
    mcp_method: Mapped[str | None] = mapped_column(String(100))
    mcp_tool: Mapped[str | None] = mapped_column(String(200))
    mcp_tool_calls: Mapped[int] = mapped_column(Integer, default=0)


class UsageDeadLetter(Base):
    """A usage record the database refused on its own, kept whole with the database's reason.

    The organisation and request ids may be empty and nothing refers to another table (the
    record's organisation may be gone), so the dead letter itself is not refused. ``event``
    is the queue form (:meth:`UsageEvent.to_json`) as text, not JSON: PostgreSQL's JSONB refuses
    some of what the queue form holds (an escaped NUL), and the text is what replays the record.
    """

    __tablename__ = "usage_dead_letters"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the usage record's id
    organisation_id: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str] = mapped_column(String(2000))  # the database's message, cut to fit
    event: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
