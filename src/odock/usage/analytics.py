"""Usage analytics: totals, a zero-filled time series, a breakdown and status classes.

:meth:`UsageAnalytics.analyse` runs a few aggregate queries over the rows of one
:func:`~odock.usage.queries.usage_conditions` clause (an index range on organisation and time):

1. one ``GROUP BY (bucket, http_status)`` — counts, token and cost sums, latency and overhead
   sums — folded in Python into the totals, the zero-filled time series and the statuses (and
   their classes: 2xx, 4xx, …). Buckets are ``date_trunc`` of the local time on PostgreSQL and
   a prefix of the stored UTC text on SQLite; for another zone than UTC SQLite groups by
   15-minute UTC slots (every zone's offset is a multiple of 15 minutes) that Python folds
   into local buckets;
2. the latency percentiles: on PostgreSQL ``percentile_cont(ARRAY[.5,.95,.99]) WITHIN GROUP
   (ORDER BY latency_ms)``; on SQLite one ranking query — ``row_number() OVER (ORDER BY
   latency_ms)`` sorts in the database and only the rows at the ranks the interpolation needs
   (at most ten) come back to Python, so a million values never cross into the process;
3. the breakdown — one ``GROUP BY`` the chosen dimension, top N by the chosen metric, the rest
   summed as one "other" entry (the MCP server and MCP tool dimensions group MCP records only);
4. the MCP top tools — one ``GROUP BY (server, tool or method)`` over the MCP records (skipped
   when the filter keeps model calls only).

Every aggregate also carries the split between model calls (AI) and MCP calls (records with
``provider = "mcp"``): requests and cost of each, and the MCP tool calls.

Percentiles are linear interpolation between the closest ranks, as PostgreSQL's
``percentile_cont`` (R's type 7): position ``p * (n - 1)`` in the sorted values.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import ColumnElement, DateTime, Float, Integer, String, case, cast, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.billing import usd
from odock.errors import UnprocessableEntity
from odock.usage.queries import (
    COLUMNS,
    MCP_PROVIDER,
    Owner,
    UsageFilter,
    UsageKind,
    UsageReach,
    dialect_of,
    is_success,
    kind_condition,
    mcp_operation,
    names_of,
    usage_conditions,
)

PERCENTILES = (0.5, 0.95, 0.99)
OVERHEAD_PERCENTILE = 0.95
MAX_BUCKETS = 10_000


class Granularity(enum.StrEnum):
    """The width of a time-series bucket (in the requested time zone)."""

    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


class Dimension(enum.StrEnum):
    """What the breakdown groups by."""

    MODEL = "model"
    PROVIDER = "provider"
    TEAM = "team"
    USER = "user"
    API_KEY = "api_key"
    STATUS = "status"
    MCP_SERVER = "mcp_server"
    MCP_TOOL = "mcp_tool"


class Metric(enum.StrEnum):
    """What ranks the breakdown's top entries."""

    REQUESTS = "requests"
    ERRORS = "errors"
    COST = "cost"
    TOTAL_TOKENS = "total_tokens"
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    CACHED_TOKENS = "cached_tokens"
    REASONING_TOKENS = "reasoning_tokens"
    TOOL_CALLS = "tool_calls"


def _is_mcp() -> ColumnElement[bool]:
    return COLUMNS.provider == MCP_PROVIDER


def _mcp_tool_key() -> ColumnElement[Any]:
    """``{server} / {tool or method}`` (the breakdown key and label of an MCP tool)."""
    server = func.coalesce(COLUMNS.mcp_server, COLUMNS.mcp_server_id, "?")
    return server.concat(" / ").concat(func.coalesce(mcp_operation(), "?"))


_DIMENSION_COLUMNS: dict[Dimension, ColumnElement[Any]] = {
    Dimension.MODEL: COLUMNS.model,
    Dimension.PROVIDER: COLUMNS.provider,
    Dimension.TEAM: COLUMNS.team_id,
    Dimension.USER: COLUMNS.user_id,
    Dimension.API_KEY: COLUMNS.api_key_id,
    Dimension.STATUS: COLUMNS.http_status,
    Dimension.MCP_SERVER: COLUMNS.mcp_server_id,
}
_MCP_DIMENSIONS = frozenset({Dimension.MCP_SERVER, Dimension.MCP_TOOL})
_DIMENSION_OWNERS = {Dimension.TEAM: Owner.TEAM, Dimension.USER: Owner.USER, Dimension.API_KEY: Owner.API_KEY}


@dataclass(frozen=True)
class AnalyticsRequest:
    """The shape of an analytics answer (the rows come from a :class:`UsageFilter` with a time range)."""

    granularity: Granularity = Granularity.DAY
    group_by: Dimension = Dimension.MODEL
    metric: Metric = Metric.REQUESTS
    top: int = 10
    timezone: str = "UTC"


class UsageMetrics(BaseModel):
    """Aggregates over a set of usage records."""

    requests: int
    errors: int
    success_rate: float | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_nanos_usd: int
    cost_usd: str
    average_latency_ms: float | None
    average_overhead_ms: float | None
    llm_requests: int
    mcp_requests: int
    llm_cost_nanos_usd: int
    llm_cost_usd: str
    mcp_cost_nanos_usd: int
    mcp_cost_usd: str
    tool_calls: int


class LatencyPercentiles(BaseModel):
    """Latency percentiles (linear interpolation) and the gateway overhead's p95, in ms."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    overhead_p95_ms: float | None


class AnalyticsTotals(UsageMetrics):
    """The totals of the whole range."""

    latency: LatencyPercentiles


class SeriesBucket(UsageMetrics):
    """One time-series bucket, starting at ``start`` (in the requested zone)."""

    start: datetime


class BreakdownEntry(UsageMetrics):
    """One value of the breakdown dimension (``other``: every value past the top N, summed)."""

    key: str | None
    label: str | None
    other: bool = False


class StatusCount(BaseModel):
    """Requests answered with one HTTP status."""

    http_status: int
    requests: int


class StatusClassCount(BaseModel):
    """Requests per status class (``2xx``, ``4xx``, …)."""

    status_class: str
    requests: int


class McpToolUsage(BaseModel):
    """One MCP tool (or JSON-RPC method, for calls that are not ``tools/call``) of one server."""

    server_id: str | None
    server: str | None
    tool: str | None
    label: str
    requests: int
    tool_calls: int
    errors: int
    average_latency_ms: float | None
    bytes_in: int
    bytes_out: int
    cost_nanos_usd: int
    cost_usd: str


class UsageBreakdown(BaseModel):
    """One breakdown on its own (a second dimension beside a full report, at the cost of one scan)."""

    start: datetime
    end: datetime
    group_by: Dimension
    metric: Metric
    entries: list[BreakdownEntry]


class UsageAnalyticsReport(BaseModel):
    """Everything the usage analytics card and the traffic analytics KPIs draw."""

    start: datetime
    end: datetime
    timezone: str
    granularity: Granularity
    group_by: Dimension
    metric: Metric
    totals: AnalyticsTotals
    series: list[SeriesBucket]
    breakdown: list[BreakdownEntry]
    statuses: list[StatusCount]
    status_classes: list[StatusClassCount]
    mcp_top_tools: list[McpToolUsage]


@dataclass
class _Sums:
    """Additive aggregates (averages are derived at the end, so buckets can be folded)."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost: int = 0
    latency_sum: float = 0.0
    overhead_sum: float = 0.0
    mcp_requests: int = 0
    mcp_cost: int = 0
    tool_calls: int = 0

    @classmethod
    def of(cls, row: Any) -> _Sums:
        """Read the :func:`_aggregates` columns of a result row (PostgreSQL sums are Decimals)."""
        values = row._mapping
        sums = cls()
        for f in fields(cls):
            raw = values[f.name] or 0
            setattr(sums, f.name, float(raw) if f.type == "float" else int(raw))
        return sums

    def add(self, other: _Sums) -> None:
        """Fold ``other`` into this."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def metric(self, metric: Metric) -> int:
        """The value that ranks a breakdown entry."""
        return int(getattr(self, "cost" if metric is Metric.COST else metric.value))

    def metrics(self) -> dict[str, Any]:
        """The :class:`UsageMetrics` fields."""
        n = self.requests
        return {
            "requests": n,
            "errors": self.errors,
            "success_rate": (n - self.errors) / n if n else None,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total_tokens,
            "cost_nanos_usd": self.cost,
            "cost_usd": usd(self.cost),
            "average_latency_ms": self.latency_sum / n if n else None,
            "average_overhead_ms": self.overhead_sum / n if n else None,
            "llm_requests": n - self.mcp_requests,
            "mcp_requests": self.mcp_requests,
            "llm_cost_nanos_usd": self.cost - self.mcp_cost,
            "llm_cost_usd": usd(self.cost - self.mcp_cost),
            "mcp_cost_nanos_usd": self.mcp_cost,
            "mcp_cost_usd": usd(self.mcp_cost),
            "tool_calls": self.tool_calls,
        }


def _aggregates() -> tuple[ColumnElement[Any], ...]:
    def total(column: ColumnElement[Any], name: str) -> ColumnElement[Any]:
        return func.coalesce(func.sum(column), 0).label(name)

    return (
        func.count().label("requests"),
        total(case((is_success(), 0), else_=1), "errors"),
        total(COLUMNS.prompt_tokens, "input_tokens"),
        total(COLUMNS.completion_tokens, "output_tokens"),
        total(COLUMNS.cached_tokens, "cached_tokens"),
        total(COLUMNS.reasoning_tokens, "reasoning_tokens"),
        total(COLUMNS.total_tokens, "total_tokens"),
        total(COLUMNS.total_cost_nanos_usd, "cost"),
        total(COLUMNS.latency_ms, "latency_sum"),
        total(COLUMNS.gateway_overhead_ms, "overhead_sum"),
        total(case((_is_mcp(), 1), else_=0), "mcp_requests"),
        total(case((_is_mcp(), COLUMNS.total_cost_nanos_usd), else_=0), "mcp_cost"),
        total(COLUMNS.mcp_tool_calls, "tool_calls"),
    )


def interpolate(ranked: dict[int, float], count: int, fraction: float) -> float | None:
    """The ``fraction`` percentile of ``count`` sorted values, given the values at the needed ranks."""
    if count == 0:
        return None
    position = fraction * (count - 1)
    low, high = math.floor(position), math.ceil(position)
    return ranked[low] + (ranked[high] - ranked[low]) * (position - low)


def ranks_for(count: int, fractions: Sequence[float]) -> set[int]:
    """The 0-based ranks :func:`interpolate` reads for ``fractions`` of ``count`` values."""
    if count == 0:
        return set()
    positions = [f * (count - 1) for f in fractions]
    return {math.floor(p) for p in positions} | {math.ceil(p) for p in positions}


# --- time buckets --------------------------------------------------------------------------


def truncate(moment: datetime, granularity: Granularity) -> datetime:
    """The start of the bucket holding the naive local time ``moment``."""
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if granularity is Granularity.HOUR:
        return moment
    moment = moment.replace(hour=0)
    return moment if granularity is Granularity.DAY else moment.replace(day=1)


def next_bucket(start: datetime, granularity: Granularity) -> datetime:
    """The start of the bucket after ``start`` (naive local time: calendar steps)."""
    if granularity is Granularity.HOUR:
        return start + timedelta(hours=1)
    if granularity is Granularity.DAY:
        return start + timedelta(days=1)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def bucket_starts(start: datetime, end: datetime, granularity: Granularity, zone: ZoneInfo) -> list[datetime]:
    """Every bucket start (naive local time) of ``[start, end)``; 422 past :data:`MAX_BUCKETS`."""
    span = {Granularity.HOUR: 3600, Granularity.DAY: 86400, Granularity.MONTH: 28 * 86400}[granularity]
    if (end - start).total_seconds() / span > MAX_BUCKETS:
        raise UnprocessableEntity(
            f"more than {MAX_BUCKETS} {granularity.value} buckets: "
            "narrow the range or coarsen the granularity",
            param="granularity",
        )
    last = end.astimezone(zone).replace(tzinfo=None)
    bucket = truncate(start.astimezone(zone).replace(tzinfo=None), granularity)
    starts = []
    while bucket < last:
        starts.append(bucket)
        bucket = next_bucket(bucket, granularity)
    return starts


# SQLite keeps a timestamp as text, "YYYY-MM-DD HH:MM:SS.ffffff" in UTC (odock.db.base): a
# bucket is a prefix of it, which is much cheaper to cut than strftime() is to compute.
_SQLITE_PREFIXES = {Granularity.HOUR: (13, ":00"), Granularity.DAY: (10, ""), Granularity.MONTH: (7, "-01")}


@dataclass(frozen=True)
class _Bucketing:
    """How one dialect groups rows into buckets, and how Python reads a group's key back."""

    expression: ColumnElement[Any]
    zone: ZoneInfo
    granularity: Granularity
    utc_slots: bool = field(default=False)  # keys are UTC 15-minute slots, to fold in Python

    @classmethod
    def for_dialect(cls, dialect: str, granularity: Granularity, zone: ZoneInfo) -> _Bucketing:
        """``date_trunc`` of local time on PostgreSQL; a prefix of the UTC text (or UTC slots) on SQLite."""
        if dialect == "postgresql":
            local = func.timezone(zone.key, COLUMNS.timestamp, type_=DateTime())
            return cls(func.date_trunc(granularity.value, local, type_=DateTime()), zone, granularity)
        if zone.key == "UTC":
            length, suffix = _SQLITE_PREFIXES[granularity]
            prefix = func.substr(COLUMNS.timestamp, 1, length, type_=String())
            return cls(prefix.concat(suffix) if suffix else prefix, zone, granularity)
        quarter = cast(func.substr(COLUMNS.timestamp, 15, 2), Integer) / 15 * 15
        slot = func.substr(COLUMNS.timestamp, 1, 14, type_=String()).concat(func.printf("%02d", quarter))
        return cls(slot, zone, granularity, utc_slots=True)

    def local_start(self, key: object) -> datetime:
        """The naive local bucket start of a group key."""
        moment = key if isinstance(key, datetime) else datetime.fromisoformat(str(key))
        if self.utc_slots:
            moment = moment.replace(tzinfo=ZoneInfo("UTC")).astimezone(self.zone).replace(tzinfo=None)
        return truncate(moment, self.granularity)


# --- the service ---------------------------------------------------------------------------


class UsageAnalytics:
    """Aggregates over stored usage records."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def analyse(
        self, reach: UsageReach, wanted: UsageFilter, request: AnalyticsRequest
    ) -> UsageAnalyticsReport:
        """The analytics of ``wanted`` (which must carry a time range) inside ``reach``."""
        if wanted.start is None or wanted.end is None:
            raise ValueError("analytics need a time range")
        zone = ZoneInfo(request.timezone)
        starts = bucket_starts(wanted.start, wanted.end, request.granularity, zone)
        async with self._sessions() as session:
            dialect = dialect_of(session)
            conditions = usage_conditions(reach, wanted, dialect)
            bucketing = _Bucketing.for_dialect(dialect, request.granularity, zone)
            sums, series, statuses = await self._by_bucket_and_status(session, conditions, bucketing, starts)
            if dialect == "postgresql":
                percentiles = await self._sql_percentiles(session, conditions)
            else:
                percentiles = await self._ranked_percentiles(session, conditions, sums.requests)
            breakdown = await self._breakdown(session, conditions, request)
            tools = []
            if wanted.kind is not UsageKind.LLM:
                tools = await self._mcp_tools(session, conditions, request)
        classes: dict[str, int] = {}
        for status in statuses:
            name = f"{status.http_status // 100}xx"
            classes[name] = classes.get(name, 0) + status.requests
        return UsageAnalyticsReport(
            start=wanted.start,
            end=wanted.end,
            timezone=zone.key,
            granularity=request.granularity,
            group_by=request.group_by,
            metric=request.metric,
            totals=AnalyticsTotals(**sums.metrics(), latency=percentiles),
            series=series,
            breakdown=breakdown,
            statuses=statuses,
            status_classes=[StatusClassCount(status_class=k, requests=v) for k, v in sorted(classes.items())],
            mcp_top_tools=tools,
        )

    async def breakdown(
        self, reach: UsageReach, wanted: UsageFilter, request: AnalyticsRequest
    ) -> UsageBreakdown:
        """Only the breakdown of ``wanted`` (one ``GROUP BY``: no series, no percentiles)."""
        if wanted.start is None or wanted.end is None:
            raise ValueError("analytics need a time range")
        async with self._sessions() as session:
            conditions = usage_conditions(reach, wanted, dialect_of(session))
            entries = await self._breakdown(session, conditions, request)
        return UsageBreakdown(
            start=wanted.start,
            end=wanted.end,
            group_by=request.group_by,
            metric=request.metric,
            entries=entries,
        )

    async def _by_bucket_and_status(
        self,
        session: AsyncSession,
        conditions: list[ColumnElement[bool]],
        bucketing: _Bucketing,
        starts: list[datetime],
    ) -> tuple[_Sums, list[SeriesBucket], list[StatusCount]]:
        """One scan grouped by (bucket, HTTP status): the totals, the series and the statuses."""
        key = bucketing.expression.label("bucket")
        status = COLUMNS.http_status.label("http_status")
        query = select(key, status, *_aggregates()).where(*conditions).group_by(key, status)
        totals = _Sums()
        folded: dict[datetime, _Sums] = {start: _Sums() for start in starts}
        statuses: dict[int, int] = {}
        for row in (await session.execute(query)).all():
            sums = _Sums.of(row)
            totals.add(sums)
            statuses[row.http_status] = statuses.get(row.http_status, 0) + sums.requests
            start = bucketing.local_start(row.bucket)
            if start in folded:
                folded[start].add(sums)
        zone = bucketing.zone
        series = [
            SeriesBucket(start=start.replace(tzinfo=zone), **s.metrics()) for start, s in folded.items()
        ]
        counts = [StatusCount(http_status=code, requests=n) for code, n in sorted(statuses.items())]
        return totals, series, counts

    async def _sql_percentiles(
        self, session: AsyncSession, conditions: list[ColumnElement[bool]]
    ) -> LatencyPercentiles:
        """PostgreSQL: one ordered-set aggregate per column (one sort each)."""
        latency_column = (
            func.percentile_cont(array(PERCENTILES), type_=ARRAY(Float()))
            .within_group(COLUMNS.latency_ms)
            .label("latency")
        )
        overhead_column = (
            func.percentile_cont(OVERHEAD_PERCENTILE, type_=Float())
            .within_group(COLUMNS.gateway_overhead_ms)
            .label("overhead")
        )
        row = (await session.execute(select(latency_column, overhead_column).where(*conditions))).one()
        latency = row.latency or [None] * len(PERCENTILES)
        return LatencyPercentiles(
            p50_ms=latency[0], p95_ms=latency[1], p99_ms=latency[2], overhead_p95_ms=row.overhead
        )

    async def _ranked_percentiles(
        self, session: AsyncSession, conditions: list[ColumnElement[bool]], count: int
    ) -> LatencyPercentiles:
        latency_ranks = ranks_for(count, PERCENTILES)
        overhead_ranks = ranks_for(count, (OVERHEAD_PERCENTILE,))
        if not count:
            return LatencyPercentiles(p50_ms=None, p95_ms=None, p99_ms=None, overhead_p95_ms=None)
        ranked = (
            select(
                COLUMNS.latency_ms.label("latency"),
                COLUMNS.gateway_overhead_ms.label("overhead"),
                (func.row_number().over(order_by=COLUMNS.latency_ms) - 1).label("latency_rank"),
                (func.row_number().over(order_by=COLUMNS.gateway_overhead_ms) - 1).label("overhead_rank"),
            )
            .where(*conditions)
            .subquery()
        )
        query = select(ranked).where(
            or_(
                ranked.c.latency_rank.in_(sorted(latency_ranks)),
                ranked.c.overhead_rank.in_(sorted(overhead_ranks)),
            )
        )
        latency: dict[int, float] = {}
        overhead: dict[int, float] = {}
        for row in (await session.execute(query)).all():
            latency[row.latency_rank] = row.latency
            overhead[row.overhead_rank] = row.overhead
        p50, p95, p99 = (interpolate(latency, count, p) for p in PERCENTILES)
        return LatencyPercentiles(
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            overhead_p95_ms=interpolate(overhead, count, OVERHEAD_PERCENTILE),
        )

    async def _mcp_tools(
        self, session: AsyncSession, conditions: list[ColumnElement[bool]], request: AnalyticsRequest
    ) -> list[McpToolUsage]:
        """The MCP tools of the most calls (then requests), top N (no "other" entry)."""
        server_id, operation = COLUMNS.mcp_server_id.label("server_id"), mcp_operation().label("tool")
        query = (
            select(
                server_id,
                func.max(COLUMNS.mcp_server).label("server"),
                operation,
                func.count().label("requests"),
                func.coalesce(func.sum(COLUMNS.mcp_tool_calls), 0).label("tool_calls"),
                func.coalesce(func.sum(case((is_success(), 0), else_=1)), 0).label("errors"),
                func.avg(COLUMNS.latency_ms).label("latency"),
                func.coalesce(func.sum(COLUMNS.bytes_in), 0).label("bytes_in"),
                func.coalesce(func.sum(COLUMNS.bytes_out), 0).label("bytes_out"),
                func.coalesce(func.sum(COLUMNS.total_cost_nanos_usd), 0).label("cost"),
            )
            .where(*conditions, _is_mcp())
            .group_by(server_id, operation)
        )
        rows = list((await session.execute(query)).all())
        rows.sort(key=lambda r: (-int(r.tool_calls), -int(r.requests), r.server or "", r.tool or ""))
        return [
            McpToolUsage(
                server_id=row.server_id,
                server=row.server,
                tool=row.tool,
                label=f"{row.server or row.server_id or '?'} / {row.tool or '?'}",
                requests=int(row.requests),
                tool_calls=int(row.tool_calls),
                errors=int(row.errors),
                average_latency_ms=None if row.latency is None else float(row.latency),
                bytes_in=int(row.bytes_in),
                bytes_out=int(row.bytes_out),
                cost_nanos_usd=int(row.cost),
                cost_usd=usd(int(row.cost)),
            )
            for row in rows[: request.top]
        ]

    async def _breakdown(
        self, session: AsyncSession, conditions: list[ColumnElement[bool]], request: AnalyticsRequest
    ) -> list[BreakdownEntry]:
        dimension = request.group_by
        expression = _mcp_tool_key() if dimension is Dimension.MCP_TOOL else _DIMENSION_COLUMNS[dimension]
        column = expression.label("key")
        labels: list[ColumnElement[Any]] = []
        if dimension is Dimension.MCP_SERVER:  # the server's slug (the latest one, if renamed)
            labels.append(func.max(COLUMNS.mcp_server).label("server"))
        query = select(column, *labels, *_aggregates()).where(*conditions).group_by(column)
        if dimension in _MCP_DIMENSIONS:
            query = query.where(kind_condition(UsageKind.MCP))
        rows = (await session.execute(query)).all()
        groups = [(None if row.key is None else str(row.key), _Sums.of(row)) for row in rows]
        groups.sort(key=lambda group: (-group[1].metric(request.metric), group[0] or ""))
        top, rest = groups[: request.top], groups[request.top :]
        owner = _DIMENSION_OWNERS.get(dimension)
        names = await names_of(session, owner, [k for k, _ in top if k]) if owner else {}
        if dimension is Dimension.MCP_SERVER:
            names = {str(row.key): row.server for row in rows if row.key is not None and row.server}
        entries = [
            BreakdownEntry(key=key, label=names.get(key, key) if key else None, **sums.metrics())
            for key, sums in top
        ]
        if rest:
            other = _Sums()
            for _, sums in rest:
                other.add(sums)
            entries.append(BreakdownEntry(key=None, label="other", other=True, **other.metrics()))
        return entries
