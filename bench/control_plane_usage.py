"""How fast the control plane reads a million usage records: service layer and HTTP routes.

For each backend (a fresh SQLite file; a fresh, uniquely named PostgreSQL database that is
dropped at the end) the run:

1. migrates the schema and provisions an organisation (teams, users, API keys, a super admin
   with a personal admin token) through the service layer;
2. generates ``--rows`` usage records spread over the last 90 days, oldest first as traffic
   arrives (several models, providers, teams, users, keys, statuses, streamed or not), and bulk
   inserts them — SQLAlchemy Core ``executemany`` in chunks on SQLite, ``COPY`` on PostgreSQL —
   then ``ANALYZE``; 1 % of the rows belong to a second organisation;
3. times each case ``--runs`` times (median) by calling the read services directly, then again
   through the HTTP API of a real ``odock serve`` process;
4. prints one Markdown table per backend, and the ``EXPLAIN`` plan of the list queries.

Usage::

    .venv/bin/python -m bench.control_plane_usage                 # 1,000,000 rows, both backends
    .venv/bin/python -m bench.control_plane_usage --rows 100000 --backends embedded
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.backends import BACKENDS, Backend, BackendName, prepared
from bench.processes import ManagedProcess, free_port, wait_until_ready
from odock.admin.control import ControlPlane
from odock.audit.recorder import audited_session_factory
from odock.cache.bus import LocalInvalidationBus
from odock.db import migrate
from odock.db.engine import create_engine
from odock.identity.actors import issue_admin_token
from odock.keys.tables import ApiKeyType
from odock.tenancy.tables import Role
from odock.usage.analytics import AnalyticsRequest, Dimension, UsageAnalytics
from odock.usage.invoices import Invoices
from odock.usage.queries import PageRequest, UsageFilter, UsageReach, UsageRecords, UsageSort
from odock.usage.tables import UsageRecord
from odock.web.api.paging import encode_cursor

DAYS = 90
CHUNK = 20_000
MODELS = [  # (model, provider, share, input $/1K, output $/1K)
    ("gpt-4o", "openai", 0.35, 0.0025, 0.01),
    ("gpt-4o-mini", "openai", 0.25, 0.00015, 0.0006),
    ("claude-sonnet", "anthropic", 0.15, 0.003, 0.015),
    ("claude-haiku", "anthropic", 0.1, 0.0008, 0.004),
    ("gemini-flash", "gemini", 0.1, 0.0001, 0.0004),
    ("text-embedding-3-small", "openai", 0.05, 0.00002, 0.0),
]
STATUSES = [(200, 0.92), (429, 0.03), (502, 0.015), (500, 0.005), (400, 0.02), (499, 0.01)]


@dataclass
class World:
    """What the generated records point at."""

    organisation_id: str
    other_organisation_id: str
    team_ids: list[str]
    user_ids: list[str]
    keys: list[tuple[str, str | None, str | None]]  # (api key id, team id, user id)
    model_ids: dict[str, str]
    admin_token: str = ""
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    end: datetime = field(default_factory=lambda: datetime.now(UTC))
    sample_record_id: str = ""
    sample_request_id: str = ""


async def provision(sessions: async_sessionmaker[AsyncSession]) -> World:
    """An organisation with 8 teams, 20 users and 40 keys, a second organisation, a super admin."""
    control = ControlPlane(sessions, LocalInvalidationBus(), None)
    tag = secrets.token_hex(3)
    org = await control.tenancy.create_organisation(f"bench-{tag}")
    other = await control.tenancy.create_organisation(f"bench-other-{tag}")
    teams = [(await control.tenancy.create_team(org.id, f"team-{i}")).id for i in range(8)]
    users = [
        (await control.users.create_user(f"user{i}-{tag}@bench.test", organisation_id=org.id)).id
        for i in range(20)
    ]
    keys: list[tuple[str, str | None, str | None]] = []
    for i in range(40):
        if i % 4 == 0:
            issued = await control.keys.create(org.id, f"key-{i}")
            keys.append((issued.key.id, None, None))
        elif i % 4 in (1, 2):
            team = teams[i % len(teams)]
            issued = await control.keys.create(org.id, f"key-{i}", type=ApiKeyType.TEAM, team_id=team)
            keys.append((issued.key.id, team, None))
        else:
            user = users[i % len(users)]
            issued = await control.keys.create(org.id, f"key-{i}", type=ApiKeyType.USER, user_id=user)
            keys.append((issued.key.id, None, user))
    admin = await control.users.create_user(f"admin-{tag}@bench.test", role=Role.SUPER_ADMIN)
    token = (await issue_admin_token(sessions, admin.id, "bench")).token
    world = World(org.id, other.id, teams, users, keys, {m[0]: secrets.token_hex(13) for m in MODELS})
    world.admin_token = token
    return world


def records(world: World, count: int, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    """``count`` usage rows, oldest first over the last :data:`DAYS` days, in chunks."""
    rng = random.Random(seed)
    world.end = datetime.now(UTC).replace(microsecond=0)
    world.start = world.end - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / count
    model_weights = [m[2] for m in MODELS]
    status_codes, status_weights = zip(*STATUSES, strict=True)
    chunk: list[dict[str, Any]] = []
    for i in range(count):
        model, provider, _, input_rate, output_rate = rng.choices(MODELS, model_weights)[0]
        status = rng.choices(status_codes, status_weights)[0]
        key_id, team_id, user_id = world.keys[rng.randrange(len(world.keys))]
        ok = status == 200
        prompt = rng.randint(20, 4000) if status != 400 else 0
        completion = rng.randint(5, 1500) if ok and "embedding" not in model else 0
        cached = prompt // 4 if rng.random() < 0.2 else 0
        input_cost = round(prompt * input_rate * 1e6)
        output_cost = round(completion * output_rate * 1e6)
        latency = rng.lognormvariate(6.2, 0.7)
        overhead = rng.lognormvariate(0.3, 0.5)
        organisation = world.other_organisation_id if i % 100 == 99 else world.organisation_id
        chunk.append(
            {
                "id": f"{rng.getrandbits(128):032x}",
                "request_id": f"{rng.getrandbits(128):032x}",
                "timestamp": world.start + i * step + timedelta(milliseconds=rng.randrange(1000)),
                "organisation_id": organisation,
                "team_id": team_id,
                "user_id": user_id,
                "api_key_id": key_id,
                "model_id": world.model_ids[model],
                "model": model,
                "provider_id": None,
                "provider": provider,
                "endpoint": "/v1/embeddings" if "embedding" in model else "/v1/chat/completions",
                "stream": rng.random() < 0.3,
                "status": "success" if ok else "error",
                "http_status": status,
                "error_code": None if ok else "upstream_error",
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cached_tokens": cached,
                "reasoning_tokens": 0,
                "total_tokens": prompt + completion,
                "billable_tokens": prompt + completion,
                "total_cost_nanos_usd": input_cost + output_cost,
                "latency_ms": latency,
                "time_to_first_token_ms": None,
                "upstream_latency_ms": max(latency - overhead, 0.0),
                "gateway_overhead_ms": overhead,
                "provider_request_id": f"req_{rng.getrandbits(64):016x}",
                "trace_id": None,
                "tokens": {"prompt_tokens": prompt, "completion_tokens": completion, "cached_tokens": cached},
                "billing": {
                    "input_cost_nanos_usd": input_cost,
                    "output_cost_nanos_usd": output_cost,
                    "total_cost_nanos_usd": input_cost + output_cost,
                    "pricing": {
                        "input": {"text_cost_per_1k_tokens": input_rate},
                        "output": {"text_cost_per_1k_tokens": output_rate},
                    },
                },
                "provider_usage": {"prompt_tokens": prompt, "completion_tokens": completion},
                "routing": {},
                "metadata": {"schema_version": "usage_metadata_v1", "route": "/v1/chat/completions"},
                "bytes_in": rng.randint(200, 20_000),
                "bytes_out": rng.randint(200, 20_000),
                **NO_MCP,
            }
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


NO_MCP = {
    "mcp_server_id": None,
    "mcp_server": None,
    "mcp_transport": None,
    "mcp_method": None,
    "mcp_tool": None,
    "mcp_tool_calls": 0,
}  # model calls: the MCP columns stay empty
JSON_COLUMNS = frozenset({"tokens", "billing", "provider_usage", "routing", "metadata"})
SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime on SQLite (naive UTC)


async def load(engine: AsyncEngine, world: World, count: int) -> float:
    """Insert ``count`` generated rows (COPY on PostgreSQL, executemany on SQLite); rows per second."""
    began = time.perf_counter()
    columns = [c.name for c in cast(Table, UsageRecord.__table__).columns]
    if engine.dialect.name == "postgresql":
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(url)
        try:
            for chunk in records(world, count):
                rows = [
                    tuple(json.dumps(r[c]) if c in JSON_COLUMNS else r[c] for c in columns) for r in chunk
                ]
                await conn.copy_records_to_table("usage_records", records=rows, columns=columns)
            await conn.execute("VACUUM ANALYZE usage_records")
        finally:
            await conn.close()
    else:
        # The stdlib driver on the same file, values in SQLAlchemy's storage forms: the Core
        # insert's per-row type processing would triple the load time of a million rows.
        database = engine.url.database
        assert database is not None
        marks = ", ".join("?" for _ in columns)
        statement = f"INSERT INTO usage_records ({', '.join(columns)}) VALUES ({marks})"
        with sqlite3.connect(database) as conn:
            for chunk in records(world, count):
                conn.executemany(statement, [_sqlite_row(r, columns) for r in chunk])
                conn.commit()
            conn.execute("ANALYZE")
    return count / (time.perf_counter() - began)


def _sqlite_row(row: dict[str, Any], columns: Sequence[str]) -> tuple[Any, ...]:
    values = []
    for column in columns:
        value = row[column]
        if column in JSON_COLUMNS:
            value = json.dumps(value)
        elif column == "timestamp":
            value = value.astimezone(UTC).strftime(SQLITE_TIMESTAMP)
        values.append(value)
    return tuple(values)


async def sample(engine: AsyncEngine, world: World) -> None:
    """Pick a record in the middle of the range for the detail and search cases."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT id, request_id FROM usage_records WHERE organisation_id = :o AND timestamp >= :t "
                    "ORDER BY timestamp LIMIT 1"
                ),
                {"o": world.organisation_id, "t": world.start + timedelta(days=45)},
            )
        ).one()
    world.sample_record_id, world.sample_request_id = row.id, row.request_id


@dataclass(frozen=True)
class Case:
    """One measured read: a service call and the equivalent HTTP request."""

    name: str
    service: Callable[[], Awaitable[object]]
    path: str
    params: dict[str, Any]
    rows: int = 0  # for throughput cases: rows produced per run


async def median_ms(action: Callable[[], Awaitable[object]], runs: int) -> float:
    """The median wall time of ``action`` over ``runs`` runs, after one warm-up run."""
    await action()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        await action()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


async def deep_cursor(service: UsageRecords, reach: UsageReach, pages: int) -> tuple[Any, str]:
    """The ``(timestamp, id)`` the ``pages``-th page of 50 starts after."""
    after: tuple[Any, str] | None = None
    for _ in range(pages - 1):
        rows = await service.page(reach, UsageFilter(), PageRequest(after=after))
        after = (rows[49].timestamp, rows[49].id)
    assert after is not None
    return after


async def cases(sessions: async_sessionmaker[AsyncSession], world: World) -> list[Case]:
    """Every measured case."""
    org = world.organisation_id
    reach = UsageReach(org)
    records_service = UsageRecords(sessions)
    analytics = UsageAnalytics(sessions)
    invoices = Invoices(sessions)
    after = await deep_cursor(records_service, reach, 20)
    week = UsageFilter(start=world.end - timedelta(days=7), end=world.end, models=("claude-sonnet",))
    month_start = (world.end - timedelta(days=30)).replace(hour=0, minute=0, second=0)
    month = UsageFilter(start=month_start, end=month_start + timedelta(days=30))
    analytics_range = UsageFilter(start=world.end - timedelta(days=30), end=world.end)
    prefix = world.sample_request_id[:12]
    base = f"/api/organisations/{org}"

    def iso(moment: datetime | None) -> str:
        assert moment is not None
        return moment.isoformat()

    month_rows = await count_rows(sessions, reach, month)
    return [
        Case(
            "list: first page (50)",
            lambda: records_service.page(reach, UsageFilter(), PageRequest()),
            f"{base}/usage/records",
            {"limit": 50},
        ),
        Case(
            "list: page 20 (cursor)",
            lambda: records_service.page(reach, UsageFilter(), PageRequest(after=after)),
            f"{base}/usage/records",
            {"limit": 50, "cursor": encode_cursor(*after)},
        ),
        Case(
            "list: model + last 7 days",
            lambda: records_service.page(reach, week, PageRequest()),
            f"{base}/usage/records",
            {"model": "claude-sonnet", "from": iso(week.start), "to": iso(week.end)},
        ),
        Case(
            "list: request id prefix",
            lambda: records_service.page(reach, UsageFilter(request_id_prefix=prefix), PageRequest()),
            f"{base}/usage/records",
            {"q": prefix},
        ),
        Case(
            "list: by cost, last 7 days",
            lambda: records_service.page(
                reach, UsageFilter(start=week.start, end=week.end), PageRequest(UsageSort.TOTAL_COST)
            ),
            f"{base}/usage/records",
            {"sort": "total_cost", "from": iso(week.start), "to": iso(week.end)},
        ),
        Case(
            "list: by latency, all 90 days",
            lambda: records_service.page(reach, UsageFilter(), PageRequest(UsageSort.LATENCY_MS)),
            f"{base}/usage/records",
            {"sort": "latency_ms"},
        ),
        Case(
            "record detail",
            lambda: records_service.detail(world.sample_record_id),
            f"{base}/usage/records/{world.sample_record_id}",
            {},
        ),
        Case(
            "analytics: 30 days by day, by model",
            lambda: analytics.analyse(reach, analytics_range, AnalyticsRequest(group_by=Dimension.MODEL)),
            f"{base}/usage/analytics",
            {"from": iso(analytics_range.start), "to": iso(analytics_range.end), "group_by": "model"},
        ),
        Case(
            "invoice preview: 30 days",
            lambda: invoices.preview(reach, month),
            f"{base}/invoices/preview",
            {"from": iso(month.start), "to": iso(month.end)},
        ),
        Case(
            "CSV export: 30 days",
            lambda: drain(invoices, reach, month),
            f"{base}/invoices/export.csv",
            {"from": iso(month.start), "to": iso(month.end)},
            rows=month_rows,
        ),
    ]


async def count_rows(
    sessions: async_sessionmaker[AsyncSession], reach: UsageReach, wanted: UsageFilter
) -> int:
    """How many records a filter selects (for throughput figures)."""
    report = await UsageAnalytics(sessions).analyse(reach, wanted, AnalyticsRequest())
    return report.totals.requests


async def drain(invoices: Invoices, reach: UsageReach, wanted: UsageFilter) -> int:
    """Produce the whole CSV export, discarding it; its size in bytes."""
    size = 0
    async for part in invoices.export_csv(reach, wanted):
        size += len(part)
    return size


def http_case(client: httpx.AsyncClient, case: Case) -> Callable[[], Awaitable[object]]:
    """The case as an HTTP request (streamed to the end for the CSV)."""

    async def call() -> object:
        async with client.stream("GET", case.path, params=case.params) as response:
            if response.status_code != 200:
                raise RuntimeError(f"{case.path}: {response.status_code} {(await response.aread())[:300]!r}")
            return sum([len(chunk) async for chunk in response.aiter_raw()])

    return call


@dataclass
class Measured:
    """One backend's table."""

    backend: str
    rows: int
    load_rate: float
    results: list[tuple[str, float, float, int]] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)


async def explain(engine: AsyncEngine, world: World) -> list[str]:
    """The query plans of the first page, the model filter and the request id search."""
    sessions = audited_session_factory(engine)
    dialect = engine.dialect.name
    from odock.usage.queries import page_query, usage_conditions

    reach = UsageReach(world.organisation_id)
    checks = {
        "first page": UsageFilter(),
        "model + 7 days": UsageFilter(
            start=world.end - timedelta(days=7), end=world.end, models=("claude-sonnet",)
        ),
        "request id prefix": UsageFilter(request_id_prefix=world.sample_request_id[:12]),
        "team filter": UsageFilter(team_ids=(next(team for _, team, _ in world.keys if team),)),
    }
    plans = []
    async with sessions() as session:
        for name, wanted in checks.items():
            query = page_query(usage_conditions(reach, wanted, dialect), PageRequest())
            compiled = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
            prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
            rows = (await session.execute(text(prefix + str(compiled)))).all()
            lines = [str(row[-1]).strip() for row in rows]
            # The access path: SQLite's lines, or PostgreSQL's scan nodes (and what sorts on top).
            shown = [
                line for line in lines if any(w in line for w in ("SEARCH", "SCAN", "Scan", "Sort", "TEMP"))
            ]
            plans.append(f"{name}: " + " | ".join(shown[:5]))
    return plans


async def measure(name: BackendName, rows: int, runs: int, work_dir: Path) -> Measured:
    """Load, then time every case on one backend."""
    async with prepared(name, work_dir) as backend:
        settings = backend.settings
        engine = create_engine(settings.resolved_database_url)
        try:
            await migrate.upgrade(engine)
            sessions = audited_session_factory(engine)
            world = await provision(sessions)
            print(f"[{name}] loading {rows:,} rows…", file=sys.stderr)
            rate = await load(engine, world, rows)
            print(f"[{name}] loaded at {rate:,.0f} rows/s", file=sys.stderr)
            await sample(engine, world)
            measured = Measured(name, rows, rate, plans=await explain(engine, world))
            all_cases = await cases(sessions, world)
            service_times = {}
            for case in all_cases:
                found = await case.service()
                if isinstance(found, list) and not found:
                    raise RuntimeError(f"{case.name}: no rows (the generated data does not exercise it)")
                service_times[case.name] = await median_ms(case.service, 1 if case.rows else runs)
                print(f"[{name}] service {case.name}: {service_times[case.name]:.1f} ms", file=sys.stderr)
        finally:
            await engine.dispose()
        await http_measure(backend, world, all_cases, service_times, runs, work_dir, measured)
        return measured


async def http_measure(
    backend: Backend,
    world: World,
    all_cases: Sequence[Case],
    service_times: dict[str, float],
    runs: int,
    work_dir: Path,
    measured: Measured,
) -> None:
    """Time every case through a real ``odock serve`` process."""
    port = free_port()
    argv = [str(Path(sys.executable).parent / "odock"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = ManagedProcess.start(
        "odock", argv, backend.environment(dict(os.environ)), work_dir / "serve.log"
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_until_ready(url + "/v1/healthz", process, 120)
        headers = {"Authorization": f"Bearer {world.admin_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
            for case in all_cases:
                http_ms = await median_ms(http_case(client, case), 1 if case.rows else runs)
                measured.results.append((case.name, service_times[case.name], http_ms, case.rows))
                print(f"[{backend.name}] http {case.name}: {http_ms:.1f} ms", file=sys.stderr)
    finally:
        process.stop()


def render(measured: Sequence[Measured], runs: int) -> str:
    """The Markdown report."""
    out = []
    for m in measured:
        out.append(
            f"\n### {m.backend}: {m.rows:,} usage records (bulk load {m.load_rate:,.0f} rows/s); "
            f"median of {runs} runs\n"
        )
        out.append("| case | service layer | HTTP route |")
        out.append("|---|---:|---:|")
        for name, service_ms, http_ms, rows in m.results:
            if rows:
                out.append(
                    f"| {name} ({rows:,} rows) | {rows / service_ms * 1000:,.0f} rows/s "
                    f"| {rows / http_ms * 1000:,.0f} rows/s |"
                )
            else:
                out.append(f"| {name} | {service_ms:,.1f} ms | {http_ms:,.1f} ms |")
        out.append("\nPlans:\n")
        out.extend(f"- {plan}" for plan in m.plans)
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Time control-plane usage reads over many usage records.")
    parser.add_argument("--rows", type=int, default=1_000_000, help="usage records to generate")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (median reported)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="embedded,production")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> str:
    """Measure every requested backend."""
    results = []
    with tempfile.TemporaryDirectory(prefix="odock-bench-usage-") as work:
        for name in args.backends.split(","):
            results.append(await measure(cast(BackendName, name), args.rows, args.runs, Path(work)))
    return render(results, args.runs)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    print(asyncio.run(run(parse_args(argv))))


if __name__ == "__main__":
    main()
