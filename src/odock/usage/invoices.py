"""Invoice previews and CSV exports, computed from stored usage records (spec §11.4 Invoices).

Nothing is persisted: an invoice is a read over ``usage_records`` for a period, inside the
caller's reach, optionally narrowed to teams and API keys. Money stays integer nanos; every
amount also comes as a USD string with 9 decimals (exact: the nano is the unit of account).

One scan builds a preview: ``GROUP BY (api_key_id, team_id, user_id, provider, model, MCP
server, MCP tool or method)`` with the request, token, cost, tool call and byte sums and the
per-class costs of each record's billing JSON. Python folds its few hundred rows into the lines
by API key, team and user and the direct organisation keys (no team, no user), the lines by
model (model calls only) and provider, the LLM / MCP split (MCP calls are recorded with
``provider = "mcp"`` and no model), the lines by MCP server and by MCP tool, and the cost by
category.

The CSV export streams every record of the same selection, a chunk of rows at a time
(:meth:`~odock.usage.queries.UsageRecords.chunks`), so a million rows never sit in memory.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import BigInteger, ColumnElement, Row, Select, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.billing import NANOS_PER_USD
from odock.db.base import utcnow
from odock.usage.queries import (
    COLUMNS,
    MCP_PROVIDER,
    SUMMARY_COLUMNS,
    Owner,
    UsageFilter,
    UsageReach,
    UsageRecords,
    dialect_of,
    mcp_operation,
    names_of,
    usage_conditions,
)

CATEGORIES = ("input", "cached_input", "output", "reasoning", "embeddings")  # odock.billing classes


def usd9(nanos: int) -> str:
    """Nanos as a USD amount with exactly 9 decimals (``5182000`` → ``"0.005182000"``)."""
    sign = "-" if nanos < 0 else ""
    whole, fraction = divmod(abs(nanos), NANOS_PER_USD)
    return f"{sign}{whole}.{fraction:09d}"


class KeyOwner(enum.StrEnum):
    """Who an API key belongs to, as its usage records show it."""

    ORGANISATION = "organisation"
    TEAM = "team"
    USER = "user"


class CostLine(BaseModel):
    """The usage and cost of one model, provider, team, user, API key or cost category."""

    key: str | None
    label: str | None
    requests: int
    total_tokens: int
    cost_nanos_usd: int
    cost_usd: str


class ApiKeyCostLine(CostLine):
    """The cost of one API key, with its owner."""

    owner: KeyOwner
    team_id: str | None
    user_id: str | None


class McpCostLine(CostLine):
    """The MCP calls of one server (``tool`` None) or of one tool of a server.

    ``key`` is the server id (by server) or ``{server id}/{tool}`` (by tool); ``label`` the server's
    slug, or ``{server} / {tool or method}``.
    """

    server_id: str | None
    server: str | None
    tool: str | None
    tool_calls: int
    bytes_in: int
    bytes_out: int


class CategoryCost(BaseModel):
    """The cost of one billing class (input, cached input, output, reasoning, embeddings)."""

    category: str
    cost_nanos_usd: int
    cost_usd: str


class InvoiceFilters(BaseModel):
    """The narrowing the invoice was computed with (empty: everything in reach)."""

    team_ids: list[str]
    api_key_ids: list[str]


class InvoiceTotals(BaseModel):
    """The invoice's totals: everything, then split into LLM and MCP cost."""

    requests: int
    total_tokens: int
    total_cost_nanos_usd: int
    total_cost_usd: str
    llm_cost_nanos_usd: int
    llm_cost_usd: str
    mcp_cost_nanos_usd: int
    mcp_cost_usd: str


class InvoicePreview(BaseModel):
    """An invoice computed on demand from usage records (nothing is stored)."""

    organisation_id: str | None
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    currency: str = "USD"
    filters: InvoiceFilters
    totals: InvoiceTotals
    by_category: list[CategoryCost]
    by_model: list[CostLine]
    by_provider: list[CostLine]
    by_team: list[CostLine]
    by_user: list[CostLine]
    by_api_key: list[ApiKeyCostLine]
    direct_organisation_keys: list[ApiKeyCostLine]
    by_mcp_server: list[McpCostLine]
    by_mcp_tool: list[McpCostLine]


class _Tally:
    """Requests, tokens and cost added up under one key."""

    __slots__ = ("cost", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = 0
        self.tokens = 0
        self.cost = 0

    def add(self, requests: int, tokens: int, cost: int) -> None:
        """Add one group's figures."""
        self.requests += requests
        self.tokens += tokens
        self.cost += cost

    def line(self, key: str | None, label: str | None) -> CostLine:
        """This tally as an invoice line."""
        return CostLine(
            key=key,
            label=label,
            requests=self.requests,
            total_tokens=self.tokens,
            cost_nanos_usd=self.cost,
            cost_usd=usd9(self.cost),
        )


def _figures() -> tuple[ColumnElement[Any], ...]:
    return (
        func.count().label("requests"),
        func.coalesce(func.sum(COLUMNS.total_tokens), 0).label("tokens"),
        func.coalesce(func.sum(COLUMNS.total_cost_nanos_usd), 0).label("cost"),
    )


def _lines(tallies: dict[str | None, _Tally], names: dict[str, str] | None = None) -> list[CostLine]:
    """Lines by descending cost, then key."""
    ordered = sorted(tallies.items(), key=lambda item: (-item[1].cost, item[0] or ""))
    return [tally.line(key, (names or {}).get(key or "", key)) for key, tally in ordered]


CSV_COLUMNS = (*(column.key for column in SUMMARY_COLUMNS), "total_cost_usd")
_TIMESTAMP = CSV_COLUMNS.index("timestamp")
_COST = CSV_COLUMNS.index("total_cost_nanos_usd")


def csv_text(rows: Sequence[Row[Any]] | None) -> str:
    """CSV lines for usage rows of :data:`SUMMARY_COLUMNS` (``None``: the header line)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if rows is None:
        writer.writerow(CSV_COLUMNS)
        return buffer.getvalue()
    for row in rows:
        values = list(row)
        values[_TIMESTAMP] = values[_TIMESTAMP].isoformat()
        cost = values[_COST]
        values.append("" if cost is None else usd9(cost))
        writer.writerow(values)
    return buffer.getvalue()


class Invoices:
    """Invoice previews and exports over stored usage records."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def preview(self, reach: UsageReach, wanted: UsageFilter) -> InvoicePreview:
        """The invoice of ``wanted`` (a filter with a time range) inside ``reach``."""
        if wanted.start is None or wanted.end is None:
            raise ValueError("an invoice needs a period")
        async with self._sessions() as session:
            conditions = usage_conditions(reach, wanted, dialect_of(session))
            rows = (await session.execute(_grouped(conditions))).all()
            by_owner = await self._by_owner(session, rows)
        return InvoicePreview(
            organisation_id=reach.organisation_id,
            period_start=wanted.start,
            period_end=wanted.end,
            generated_at=utcnow(),
            filters=InvoiceFilters(team_ids=list(wanted.team_ids), api_key_ids=list(wanted.api_key_ids)),
            by_category=_by_category(rows),
            **_by_model(rows),
            **_by_mcp(rows),
            **by_owner,
        )

    async def _by_owner(self, session: AsyncSession, rows: Sequence[Row[Any]]) -> dict[str, Any]:
        owners: dict[tuple[str | None, str | None, str | None], _Tally] = {}
        for row in rows:
            owners.setdefault((row.api_key_id, row.team_id, row.user_id), _Tally()).add(*_figures_of(row))
        key_names = await names_of(session, Owner.API_KEY, [key for key, _, _ in owners if key])
        team_names = await names_of(session, Owner.TEAM, [team for _, team, _ in owners if team])
        user_names = await names_of(session, Owner.USER, [user for _, _, user in owners if user])
        teams: dict[str | None, _Tally] = {}
        users: dict[str | None, _Tally] = {}
        keys: list[ApiKeyCostLine] = []
        for (key_id, team_id, user_id), tally in owners.items():
            if team_id is not None:
                teams.setdefault(team_id, _Tally()).add(tally.requests, tally.tokens, tally.cost)
            if user_id is not None:
                users.setdefault(user_id, _Tally()).add(tally.requests, tally.tokens, tally.cost)
            kind = KeyOwner.TEAM if team_id else KeyOwner.USER if user_id else KeyOwner.ORGANISATION
            line = tally.line(key_id, key_names.get(key_id or "", key_id))
            keys.append(ApiKeyCostLine(**line.model_dump(), owner=kind, team_id=team_id, user_id=user_id))
        keys.sort(key=lambda line: (-line.cost_nanos_usd, line.key or ""))
        return {
            "by_team": _lines(teams, team_names),
            "by_user": _lines(users, user_names),
            "by_api_key": keys,
            "direct_organisation_keys": [k for k in keys if k.owner is KeyOwner.ORGANISATION],
        }

    async def export_csv(self, reach: UsageReach, wanted: UsageFilter) -> AsyncIterator[str]:
        """The CSV of every record of ``wanted`` in ``reach``: a header line, then chunks of rows."""
        yield csv_text(None)
        async for rows in UsageRecords(self._sessions).chunks(reach, wanted):
            yield csv_text(rows)


def _grouped(conditions: list[ColumnElement[bool]]) -> Select[*tuple[Any, ...]]:
    """One scan for the whole invoice: figures and per-class costs by (key, team, user, provider, model)."""
    groups = (
        COLUMNS.api_key_id,
        COLUMNS.team_id,
        COLUMNS.user_id,
        COLUMNS.provider,
        COLUMNS.model,
        COLUMNS.mcp_server_id,
        COLUMNS.mcp_server,
        mcp_operation().label("mcp_operation"),
    )

    def class_cost(name: str) -> ColumnElement[Any]:
        extracted = cast(COLUMNS.billing[f"{name}_cost_nanos_usd"].as_string(), BigInteger)
        return func.coalesce(func.sum(extracted), 0).label(name)

    categories = (class_cost(name) for name in CATEGORIES)
    mcp = (
        func.coalesce(func.sum(COLUMNS.mcp_tool_calls), 0).label("tool_calls"),
        func.coalesce(func.sum(COLUMNS.bytes_in), 0).label("bytes_in"),
        func.coalesce(func.sum(COLUMNS.bytes_out), 0).label("bytes_out"),
    )
    return select(*groups, *_figures(), *categories, *mcp).where(*conditions).group_by(*groups)


def _figures_of(row: Row[Any]) -> tuple[int, int, int]:
    return int(row.requests), int(row.tokens), int(row.cost)


def _by_model(rows: Sequence[Row[Any]]) -> dict[str, Any]:
    """Totals (split into LLM and MCP cost), and lines by model and by provider."""
    models: dict[str | None, _Tally] = {}
    providers: dict[str | None, _Tally] = {}
    total, mcp = _Tally(), _Tally()
    for row in rows:
        figures = _figures_of(row)
        providers.setdefault(row.provider, _Tally()).add(*figures)
        total.add(*figures)
        if row.provider == MCP_PROVIDER:
            mcp.add(*figures)
        else:
            models.setdefault(row.model, _Tally()).add(*figures)
    llm_cost = total.cost - mcp.cost
    totals = InvoiceTotals(
        requests=total.requests,
        total_tokens=total.tokens,
        total_cost_nanos_usd=total.cost,
        total_cost_usd=usd9(total.cost),
        llm_cost_nanos_usd=llm_cost,
        llm_cost_usd=usd9(llm_cost),
        mcp_cost_nanos_usd=mcp.cost,
        mcp_cost_usd=usd9(mcp.cost),
    )
    return {"totals": totals, "by_model": _lines(models), "by_provider": _lines(providers)}


class _McpTally(_Tally):
    """A :class:`_Tally` with the tool calls and bytes of MCP records, and the server's slug."""

    __slots__ = ("bytes_in", "bytes_out", "server", "tool_calls")

    def __init__(self) -> None:
        super().__init__()
        self.tool_calls = self.bytes_in = self.bytes_out = 0
        self.server: str | None = None

    def add_row(self, row: Row[Any]) -> None:
        """Add one group's figures, tool calls and bytes."""
        self.add(*_figures_of(row))
        self.tool_calls += int(row.tool_calls)
        self.bytes_in += int(row.bytes_in)
        self.bytes_out += int(row.bytes_out)
        self.server = self.server or row.mcp_server

    def mcp_line(
        self, key: str | None, label: str | None, server_id: str | None, tool: str | None
    ) -> McpCostLine:
        """This tally as an MCP invoice line."""
        return McpCostLine(
            **self.line(key, label).model_dump(),
            server_id=server_id,
            server=self.server,
            tool=tool,
            tool_calls=self.tool_calls,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
        )


def _by_mcp(rows: Sequence[Row[Any]]) -> dict[str, list[McpCostLine]]:
    """The MCP records' lines by server and by (server, tool or method), by descending cost."""
    servers: dict[str | None, _McpTally] = {}
    tools: dict[tuple[str | None, str | None], _McpTally] = {}
    for row in rows:
        if row.provider != MCP_PROVIDER:
            continue
        servers.setdefault(row.mcp_server_id, _McpTally()).add_row(row)
        tools.setdefault((row.mcp_server_id, row.mcp_operation), _McpTally()).add_row(row)
    by_server = [
        tally.mcp_line(server_id, tally.server or server_id, server_id, None)
        for server_id, tally in servers.items()
    ]
    by_tool = [
        tally.mcp_line(
            f"{server_id or ''}/{tool or ''}",
            f"{tally.server or server_id or '?'} / {tool or '?'}",
            server_id,
            tool,
        )
        for (server_id, tool), tally in tools.items()
    ]
    for lines in (by_server, by_tool):
        lines.sort(key=lambda line: (-line.cost_nanos_usd, line.key or ""))
    return {"by_mcp_server": by_server, "by_mcp_tool": by_tool}


def _by_category(rows: Sequence[Row[Any]]) -> list[CategoryCost]:
    """The cost per billing class, from each record's billing breakdown."""
    costs = {name: sum(int(row._mapping[name]) for row in rows) for name in CATEGORIES}
    return [CategoryCost(category=k, cost_nanos_usd=v, cost_usd=usd9(v)) for k, v in costs.items()]
