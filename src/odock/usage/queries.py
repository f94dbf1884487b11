"""Reading usage records for the control plane: filters, reach, keyset pages and one record.

Every read (the records table, analytics, invoices, the CSV export) narrows the table the same
way: :class:`UsageReach` is what the caller may see (from the RBAC grant), :class:`UsageFilter`
what they asked for; :func:`usage_conditions` turns both into one WHERE clause.

Pages are keyset-paginated on ``(sort value, id)`` with a sargable range bound
(``sort <= last AND (sort < last OR id < last_id)``), so page 1 and page 20,000 both cost one
index range scan on ``(organisation_id, timestamp, id)``. Sorting by latency or cost within a
time range sorts only the rows in range; unpriced records sort as the cheapest.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Row, Select, and_, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.billing import usd
from odock.keys.tables import ApiKey
from odock.rbac.grant import Grant
from odock.rbac.permissions import Reach
from odock.tenancy.tables import Team, User
from odock.usage.tables import UsageRecord

COLUMNS = UsageRecord.__table__.c
SUCCESS_STATUSES = (200, 399)  # spec §11.4: success rate counts 2xx and 3xx
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # the gateway accepts no others

MCP_PROVIDER = "mcp"  # the provider of every MCP usage record (its model is None)

Status = str | int  # "success", "error", or one exact HTTP status


class UsageKind(enum.StrEnum):
    """Which gateway a record came through: model calls or MCP calls (``provider = "mcp"``)."""

    LLM = "llm"
    MCP = "mcp"


@dataclass(frozen=True)
class UsageReach:
    """The usage rows a caller may read (``None`` fields: no narrowing on that column).

    Rows are kept when their user is ``user_id`` or their team is one of ``team_ids``; with
    ``team_rows_without_user`` (USER reach) a team row counts only when no user owns it, so a
    member reads their team's keys' usage but not another member's own keys.
    """

    organisation_id: str | None
    team_ids: frozenset[str] | None = None
    user_id: str | None = None
    team_rows_without_user: bool = False

    @classmethod
    def of(cls, grant: Grant) -> UsageReach:
        """The reach of a read grant on ``Resource.USAGE``."""
        scope = grant.scope()
        return cls(
            scope.organisation_id,
            scope.team_ids,
            scope.user_id,
            team_rows_without_user=grant.reach is Reach.SELF,
        )


@dataclass(frozen=True)
class UsageFilter:
    """What the caller asked for: a half-open time range ``[start, end)`` and column filters.

    Multi-valued filters keep rows matching any of their values; different filters all apply.
    """

    start: datetime | None = None
    end: datetime | None = None
    status: Status | None = None
    organisation_ids: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    model_ids: tuple[str, ...] = ()
    team_ids: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    api_key_ids: tuple[str, ...] = ()
    request_id_prefix: str | None = None
    stream: bool | None = None
    kind: UsageKind | None = None
    mcp_server_ids: tuple[str, ...] = ()
    mcp_tools: tuple[str, ...] = ()

    def within(self, start: datetime, end: datetime) -> UsageFilter:
        """This filter over another time range."""
        return replace(self, start=start, end=end)


def is_success() -> ColumnElement[bool]:
    """A 2xx or 3xx answer."""
    return UsageRecord.http_status.between(*SUCCESS_STATUSES)


def _reach_conditions(reach: UsageReach) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if reach.organisation_id is not None:
        conditions.append(UsageRecord.organisation_id == reach.organisation_id)
    if reach.team_ids is None and reach.user_id is None:
        return conditions
    alternatives: list[ColumnElement[bool]] = []
    if reach.user_id is not None:
        alternatives.append(UsageRecord.user_id == reach.user_id)
    if reach.team_ids:
        team_rows: ColumnElement[bool] = UsageRecord.team_id.in_(sorted(reach.team_ids))
        if reach.team_rows_without_user:
            team_rows = and_(team_rows, UsageRecord.user_id.is_(None))
        alternatives.append(team_rows)
    conditions.append(or_(*alternatives) if alternatives else false())
    return conditions


def _status_condition(status: Status) -> ColumnElement[bool]:
    if status == "success":
        return is_success()
    if status == "error":
        return ~is_success()
    return UsageRecord.http_status == int(status)


def kind_condition(kind: UsageKind) -> ColumnElement[bool]:
    """MCP records (``provider = "mcp"``) or every other record (a model call)."""
    if kind is UsageKind.MCP:
        return UsageRecord.provider == MCP_PROVIDER
    return or_(UsageRecord.provider.is_(None), UsageRecord.provider != MCP_PROVIDER)


def mcp_operation() -> ColumnElement[Any]:
    """What an MCP record did: the tool called, else the JSON-RPC method."""
    return func.coalesce(UsageRecord.mcp_tool, UsageRecord.mcp_method)


def _prefix_condition(prefix: str, dialect: str) -> ColumnElement[bool]:
    # A request id holds none of GLOB's wildcards (REQUEST_ID_PATTERN), but may hold LIKE's "_".
    # SQLite: GLOB is case-sensitive and uses the request_id index; LIKE would do neither.
    if dialect == "sqlite":
        return UsageRecord.request_id.op("GLOB")(prefix + "*")
    return UsageRecord.request_id.like(prefix.replace("_", "\\_") + "%", escape="\\")


def usage_conditions(reach: UsageReach, wanted: UsageFilter, dialect: str) -> list[ColumnElement[bool]]:
    """The WHERE clause (as a list of conjuncts) for ``wanted`` inside ``reach``."""
    conditions = _reach_conditions(reach)
    if wanted.start is not None:
        conditions.append(UsageRecord.timestamp >= wanted.start)
    if wanted.end is not None:
        conditions.append(UsageRecord.timestamp < wanted.end)
    if wanted.status is not None:
        conditions.append(_status_condition(wanted.status))
    for column, values in (
        (UsageRecord.organisation_id, wanted.organisation_ids),
        (UsageRecord.provider, wanted.providers),
        (UsageRecord.model, wanted.models),
        (UsageRecord.model_id, wanted.model_ids),
        (UsageRecord.team_id, wanted.team_ids),
        (UsageRecord.user_id, wanted.user_ids),
        (UsageRecord.api_key_id, wanted.api_key_ids),
        (UsageRecord.mcp_server_id, wanted.mcp_server_ids),
        (UsageRecord.mcp_tool, wanted.mcp_tools),
    ):
        if len(values) == 1:
            conditions.append(column == values[0])
        elif values:
            conditions.append(column.in_(values))
    if wanted.request_id_prefix is not None:
        conditions.append(_prefix_condition(wanted.request_id_prefix, dialect))
    if wanted.stream is not None:
        conditions.append(UsageRecord.stream.is_(wanted.stream))
    if wanted.kind is not None:
        conditions.append(kind_condition(wanted.kind))
    return conditions


def dialect_of(session: AsyncSession) -> str:
    """``sqlite`` or ``postgresql``."""
    return session.get_bind().dialect.name


class UsageSort(enum.StrEnum):
    """What a records page is ordered by (then by id, for a total order)."""

    TIMESTAMP = "timestamp"
    LATENCY_MS = "latency_ms"
    TOTAL_COST = "total_cost"

    def expression(self) -> ColumnElement[Any]:
        """The SQL sort expression (unpriced records sort as cost -1, below every priced one)."""
        if self is UsageSort.TIMESTAMP:
            return COLUMNS.timestamp
        if self is UsageSort.LATENCY_MS:
            return COLUMNS.latency_ms
        return func.coalesce(COLUMNS.total_cost_nanos_usd, -1)

    def value_of(self, record: UsageRecordSummary) -> datetime | float | int:
        """The sort value of a listed record (what a cursor after it carries)."""
        if self is UsageSort.TIMESTAMP:
            return record.timestamp
        if self is UsageSort.LATENCY_MS:
            return record.latency_ms
        return -1 if record.total_cost_nanos_usd is None else record.total_cost_nanos_usd

    def accepts(self, value: object) -> bool:
        """Whether a cursor's sort value has the type this sort needs."""
        if self is UsageSort.TIMESTAMP:
            return isinstance(value, datetime) and value.tzinfo is not None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self is UsageSort.LATENCY_MS:
            return math.isfinite(value) and abs(value) < 1e300
        return isinstance(value, int) and -(2**63) <= value < 2**63  # a 64-bit column


@dataclass(frozen=True)
class PageRequest:
    """One page of records: its order, its size and the ``(sort value, id)`` it starts after."""

    sort: UsageSort = UsageSort.TIMESTAMP
    descending: bool = True
    limit: int = 50
    after: tuple[object, str] | None = None


class TokenCounts(BaseModel):
    """A record's normalised token counts."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    total_tokens: int
    billable_tokens: int


class UsageRecordSummary(BaseModel):
    """A row of the usage records table (no JSON documents)."""

    id: str
    request_id: str
    timestamp: datetime
    organisation_id: str | None
    team_id: str | None
    user_id: str | None
    api_key_id: str | None
    provider_id: str | None
    provider: str | None
    model_id: str | None
    model: str | None
    endpoint: str
    stream: bool
    status: str
    http_status: int
    error_code: str | None
    tokens: TokenCounts
    total_cost_nanos_usd: int | None
    total_cost_usd: str | None
    latency_ms: float
    gateway_overhead_ms: float
    mcp_server_id: str | None
    mcp_server: str | None
    mcp_method: str | None
    mcp_tool: str | None
    mcp_tool_calls: int
    trace_id: str | None  # the request's trace (32 hex) when tracing sampled it


class UsageRecordDetail(UsageRecordSummary):
    """Every stored field of one record (spec §3.10), with its JSON documents."""

    time_to_first_token_ms: float | None
    upstream_latency_ms: float | None
    provider_request_id: str | None
    bytes_in: int
    bytes_out: int
    rerouted: bool
    mcp_transport: str | None
    token_details: dict[str, Any]
    billing: dict[str, Any]
    provider_usage: dict[str, Any]
    routing: dict[str, Any]
    metadata: dict[str, Any]


SUMMARY_COLUMNS = (
    UsageRecord.id,
    UsageRecord.request_id,
    UsageRecord.timestamp,
    UsageRecord.organisation_id,
    UsageRecord.team_id,
    UsageRecord.user_id,
    UsageRecord.api_key_id,
    UsageRecord.provider_id,
    UsageRecord.provider,
    UsageRecord.model_id,
    UsageRecord.model,
    UsageRecord.endpoint,
    UsageRecord.stream,
    UsageRecord.status,
    UsageRecord.http_status,
    UsageRecord.error_code,
    UsageRecord.prompt_tokens,
    UsageRecord.completion_tokens,
    UsageRecord.cached_tokens,
    UsageRecord.reasoning_tokens,
    UsageRecord.total_tokens,
    UsageRecord.billable_tokens,
    UsageRecord.total_cost_nanos_usd,
    UsageRecord.latency_ms,
    UsageRecord.gateway_overhead_ms,
    UsageRecord.mcp_server_id,
    UsageRecord.mcp_server,
    UsageRecord.mcp_method,
    UsageRecord.mcp_tool,
    UsageRecord.mcp_tool_calls,
    UsageRecord.trace_id,
)
_TOKEN_FIELDS = frozenset(TokenCounts.model_fields)


def _summary_fields(values: dict[str, Any]) -> dict[str, Any]:
    tokens = TokenCounts(**{name: values.pop(name) for name in _TOKEN_FIELDS})
    cost = values["total_cost_nanos_usd"]
    return {**values, "tokens": tokens, "total_cost_usd": None if cost is None else usd(cost)}


def summary_of(row: Row[Any]) -> UsageRecordSummary:
    """The table row of a selected :data:`SUMMARY_COLUMNS` row."""
    return UsageRecordSummary(**_summary_fields(dict(row._mapping)))


def _trace_id(metadata: dict[str, Any]) -> str | None:
    nested = metadata.get("odock")
    candidate = metadata.get("trace_id") or (nested.get("trace_id") if isinstance(nested, dict) else None)
    return candidate if isinstance(candidate, str) else None


def detail_of(record: UsageRecord) -> UsageRecordDetail:
    """The detail view of a loaded record."""
    routing = record.routing or {}
    summary = _summary_fields({c.key: getattr(record, c.key) for c in SUMMARY_COLUMNS})
    # Recorded by the gateway's tracing; else one a client put in the metadata, if any.
    summary["trace_id"] = record.trace_id or _trace_id(record.metadata_ or {})
    return UsageRecordDetail(
        **summary,
        time_to_first_token_ms=record.time_to_first_token_ms,
        upstream_latency_ms=record.upstream_latency_ms,
        provider_request_id=record.provider_request_id,
        bytes_in=record.bytes_in,
        bytes_out=record.bytes_out,
        rerouted=bool(routing.get("rerouted")),
        mcp_transport=record.mcp_transport,
        token_details=record.tokens or {},
        billing=record.billing or {},
        provider_usage=record.provider_usage or {},
        routing=routing,
        metadata=record.metadata_ or {},
    )


def _after(sort: ColumnElement[Any], value: object, row_id: str, descending: bool) -> ColumnElement[bool]:
    # The outer bound makes the condition an index range; the OR breaks ties on the id.
    if descending:
        return and_(sort <= value, or_(sort < value, UsageRecord.id < row_id))
    return and_(sort >= value, or_(sort > value, UsageRecord.id > row_id))


def page_query(conditions: Sequence[ColumnElement[bool]], page: PageRequest) -> Select[*tuple[Any, ...]]:
    """The keyset query of one page (one row over the limit, to tell whether more follow)."""
    sort = page.sort.expression()
    query = select(*SUMMARY_COLUMNS).where(*conditions)
    if page.after is not None:
        query = query.where(_after(sort, page.after[0], page.after[1], page.descending))
    if page.descending:
        query = query.order_by(sort.desc(), UsageRecord.id.desc())
    else:
        query = query.order_by(sort.asc(), UsageRecord.id.asc())
    return query.limit(page.limit + 1)


class UsageRecords:
    """Read-only queries over stored usage records."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def page(
        self, reach: UsageReach, wanted: UsageFilter, page: PageRequest
    ) -> list[UsageRecordSummary]:
        """Up to ``page.limit + 1`` records after ``page.after`` (the extra one signals a next page)."""
        async with self._sessions() as session:
            conditions = usage_conditions(reach, wanted, dialect_of(session))
            rows = (await session.execute(page_query(conditions, page))).all()
        return [summary_of(row) for row in rows]

    async def detail(self, record_id: str) -> UsageRecordDetail | None:
        """One record with all its fields, or ``None``."""
        async with self._sessions() as session:
            record = await session.get(UsageRecord, record_id)
        return None if record is None else detail_of(record)

    async def chunks(
        self, reach: UsageReach, wanted: UsageFilter, size: int = 5000
    ) -> AsyncIterator[Sequence[Row[Any]]]:
        """Every matching record's :data:`SUMMARY_COLUMNS`, oldest first, ``size`` rows at a time.

        Each chunk is its own short keyset query, so memory stays bounded and no connection or
        cursor is held open while the caller consumes a chunk (a slow download blocks nobody).
        """
        after: tuple[object, str] | None = None
        while True:
            page = PageRequest(UsageSort.TIMESTAMP, descending=False, limit=size - 1, after=after)
            async with self._sessions() as session:
                conditions = usage_conditions(reach, wanted, dialect_of(session))
                rows = (await session.execute(page_query(conditions, page))).all()
            if rows:
                yield rows
            if len(rows) < size:
                return
            last = rows[-1]._mapping
            after = (last["timestamp"], last["id"])


class Owner(enum.StrEnum):
    """A kind of row a usage record points at, for display names."""

    TEAM = "team"
    USER = "user"
    API_KEY = "api_key"


async def names_of(session: AsyncSession, owner: Owner, ids: Sequence[str]) -> dict[str, str]:
    """Display names of the given teams (name), users (email) or API keys (name)."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    id_column, label = {
        Owner.TEAM: (Team.id, Team.name),
        Owner.USER: (User.id, User.email),
        Owner.API_KEY: (ApiKey.id, ApiKey.name),
    }[owner]
    rows = await session.execute(select(id_column, label).where(id_column.in_(wanted)))
    return {row_id: name for row_id, name in rows.all()}
