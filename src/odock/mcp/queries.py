"""The control plane's read of one MCP server's recent usage (its console page's "MCP Usage" card).

The usage records of a server are those the usage pages' own filter (``mcp_server_ids``) selects,
narrowed to what the caller may read exactly as the usage pages narrow
(:func:`odock.usage.queries.usage_conditions` over the caller's
:class:`~odock.usage.queries.UsageReach`). Unlike the usage list's summary, a row here carries
the bytes each way, which MCP calls are priced on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.usage.queries import UsageFilter, UsageReach, dialect_of, usage_conditions
from odock.usage.tables import UsageRecord


@dataclass(frozen=True)
class McpUsageRow:
    """One MCP usage record as the server's page lists it."""

    id: str
    request_id: str
    timestamp: datetime
    api_key_id: str | None
    method: str | None
    tool: str | None
    status: str
    http_status: int
    error_code: str | None
    latency_ms: float
    bytes_in: int
    bytes_out: int
    total_cost_nanos_usd: int | None


class McpUsageQueries:
    """Recent usage records of one MCP server, within the caller's reach."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def recent(self, server_id: str, reach: UsageReach, limit: int = 20) -> list[McpUsageRow]:
        """The newest ``limit`` records of ``server_id`` that ``reach`` lets the caller read."""
        async with self._sessions() as session:
            wanted = UsageFilter(mcp_server_ids=(server_id,))
            conditions = usage_conditions(reach, wanted, dialect_of(session))
            query = (
                select(
                    UsageRecord.id,
                    UsageRecord.request_id,
                    UsageRecord.timestamp,
                    UsageRecord.api_key_id,
                    UsageRecord.mcp_method,
                    UsageRecord.mcp_tool,
                    UsageRecord.status,
                    UsageRecord.http_status,
                    UsageRecord.error_code,
                    UsageRecord.latency_ms,
                    UsageRecord.bytes_in,
                    UsageRecord.bytes_out,
                    UsageRecord.total_cost_nanos_usd,
                )
                .where(*conditions)
                .order_by(UsageRecord.timestamp.desc(), UsageRecord.id.desc())
                .limit(limit)
            )
            rows = (await session.execute(query)).all()
        return [
            McpUsageRow(
                id=row.id,
                request_id=row.request_id,
                timestamp=row.timestamp,
                api_key_id=row.api_key_id,
                method=row.mcp_method,
                tool=row.mcp_tool,
                status=row.status,
                http_status=row.http_status,
                error_code=row.error_code,
                latency_ms=row.latency_ms,
                bytes_in=row.bytes_in,
                bytes_out=row.bytes_out,
                total_cost_nanos_usd=row.total_cost_nanos_usd,
            )
            for row in rows
        ]
