"""How fast the console renders its list pages: 100,000 keys and 1,000,000 usage records in one org.

Flow, for one backend (embedded SQLite by default; ``--backend production`` for PostgreSQL + Redis)::

    set the backend up (bench.backends.prepared), start the app (uvicorn in a thread)
    provision an organisation: teams, users, an ORG_ADMIN who signs in with a password
    bulk-insert --keys API keys into it (one transaction, Core executemany: setup, not an API path)
    bulk-insert --records usage records (bench.control_plane_usage: COPY on PostgreSQL), ANALYZE
    sign in as the ORG_ADMIN (POST /api/auth/login: a session cookie, as a browser)
    for each list page of the organisation workspace: GET it once (a page that is not 200 is
    reported as missing: other pages land on other branches), then --renders more times
    print a Markdown table: p50 / p95 / max of the server's answer time, against the 300 ms target

The time is the wall time of ``GET`` on localhost: the server's render, with its queries, plus a
loopback round trip (well under a millisecond).

    .venv/bin/python -m bench.console_pages                       # 100,000 keys, 1,000,000 records
    .venv/bin/python -m bench.console_pages --backend production
    .venv/bin/python -m bench.console_pages --keys 1000 --records 10000 --renders 5   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import insert, text
from tests.support.server import ThreadedServer

from bench.backends import BACKENDS, BackendName, prepared
from bench.control_plane_usage import MODELS, World, load
from odock.app import create_app
from odock.identity.accounts import create_password_user
from odock.identity.passwords import Passwords
from odock.ids import new_id
from odock.keys.tables import ApiKey, ApiKeyType
from odock.runtime import Runtime
from odock.tenancy.tables import Role

TARGET_MS = 300.0
BATCH = 10_000
PASSWORD = "bench console password"
# The organisation workspace's list pages (spec §11.4), below /o/{organisation_id}.
PAGES: tuple[tuple[str, str], ...] = (
    ("Dashboard", ""),
    ("API keys", "/keys"),
    ("Usage records", "/usage"),
    ("Analytics", "/analytics"),
    ("Invoices", "/invoices"),
    ("Budgets & quotas", "/budgets"),
    ("Users", "/users"),
    ("Teams", "/teams"),
    ("Models", "/models"),
    ("Providers", "/providers"),
    ("Audit log", "/audit"),
    ("Playground", "/playground"),
    ("Dashboard, 7 d", "?range=7d"),
    ("Dashboard, 30 d", "?range=30d"),
    ("Analytics, 30 d", "/analytics?range=30d"),
    ("Invoices, last 30 days", "/invoices?preset=last_30_days"),
    ("Usage records, errors only", "/usage?status=error"),
    ("API keys, a search matching nothing", "/keys?q=no-such-key"),
    ("API keys, the create form", "/keys/new"),
    ("Users, enrollment", "/users/enrollment"),
)
# Pages also timed as a USER, whose reach narrows the lists to their own rows (about 1/60 of them).
USER_PAGES: tuple[tuple[str, str], ...] = (
    ("Usage records (USER)", "/usage"),
    ("API keys (USER)", "/keys"),
    ("Playground (USER)", "/playground"),
)


@dataclass
class Seeded:
    """The organisation the pages show, and who signs in to see them."""

    organisation_id: str
    email: str  # the ORG_ADMIN's
    user_email: str  # a USER's, who owns 1/60 of the keys and 1/20 of their usage
    seconds: float


async def seed(runtime: Runtime, keys: int, records: int) -> Seeded:
    """An organisation with ``keys`` API keys and ``records`` usage records, and its ORG_ADMIN."""
    began = time.perf_counter()
    control = runtime.control
    tag = secrets.token_hex(3)
    org = await control.tenancy.create_organisation(f"bench-console-{tag}")
    other = await control.tenancy.create_organisation(f"bench-console-other-{tag}")
    teams = [(await control.tenancy.create_team(org.id, f"team-{i}")).id for i in range(8)]
    settings = runtime.settings
    passwords = Passwords(
        time_cost=settings.password_hash_time_cost, memory_kib=settings.password_hash_memory_kib
    )
    email, user_email = f"admin-{tag}@bench.test", f"user0-{tag}@bench.test"

    async def person(address: str, role: Role) -> str:
        made = await create_password_user(
            runtime.sessions, passwords, email=address, password=PASSWORD, role=role, organisation_id=org.id
        )
        return str(made.id)

    await person(email, Role.ORG_ADMIN)
    users = [await person(user_email, Role.USER)] + [
        (await control.users.create_user(f"user{i}-{tag}@bench.test", organisation_id=org.id)).id
        for i in range(1, 20)
    ]
    owners = await insert_keys(runtime, org.id, teams, users, keys)
    world = World(org.id, other.id, teams, users, owners[:40], {m[0]: new_id() for m in MODELS})
    if records:
        await load(runtime.engine, world, records)
    async with runtime.engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    return Seeded(org.id, email, user_email, time.perf_counter() - began)


async def insert_keys(
    runtime: Runtime, organisation_id: str, teams: list[str], users: list[str], count: int
) -> list[tuple[str, str | None, str | None]]:
    """Bulk-insert ``count`` keys (a third each organisation, team and user keys; 10 % revoked)."""
    owners: list[tuple[str, str | None, str | None]] = []
    start = datetime.now(UTC) - timedelta(days=365)
    async with runtime.sessions() as session:
        for first in range(0, count, BATCH):
            rows: list[dict[str, Any]] = []
            for i in range(first, min(first + BATCH, count)):
                kind = (ApiKeyType.ORGANISATION, ApiKeyType.TEAM, ApiKeyType.USER)[i % 3]
                team = teams[i % len(teams)] if kind is ApiKeyType.TEAM else None
                user = users[i % len(users)] if kind is ApiKeyType.USER else None
                digest = hashlib.sha256(f"{organisation_id}:{i}".encode()).hexdigest()
                key_id = new_id()
                owners.append((key_id, team, user))
                created = start + timedelta(seconds=i * 300)
                rows.append(
                    {
                        "id": key_id,
                        "organisation_id": organisation_id,
                        "team_id": team,
                        "user_id": user,
                        "type": kind,
                        "name": f"key-{i:06d}",
                        "key_hash": digest,
                        "key_preview": f"sk_{digest[:4]}…{digest[-4:]}",
                        "timezone": "UTC",
                        "revoked": i % 10 == 0,
                        "rotation_count": 0,
                        "policies": {},
                        "created_at": created,
                        "updated_at": created,
                    }
                )
            await session.execute(insert(ApiKey), rows)
        await session.commit()
    return owners


@dataclass
class Timing:
    """The answer times of one page (``status`` when it did not answer 200)."""

    page: str
    path: str
    status: int
    times_ms: list[float]

    @property
    def row(self) -> list[str]:
        """The page's table row."""
        if self.status != 200:
            return [self.page, f"`{self.path}`", f"missing ({self.status})", "", "", ""]
        ordered = sorted(self.times_ms)
        p50 = statistics.median(ordered)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        verdict = "ok" if p95 <= TARGET_MS else "SLOW"
        return [self.page, f"`{self.path}`", f"{p50:.1f}", f"{p95:.1f}", f"{ordered[-1]:.1f}", verdict]


def measure(base_url: str, seeded: Seeded, renders: int) -> list[Timing]:
    """Sign in and time every page (as the ORG_ADMIN, then some as a USER)."""
    return time_pages(base_url, seeded, seeded.email, PAGES, renders) + time_pages(
        base_url, seeded, seeded.user_email, USER_PAGES, renders
    )


def time_pages(
    base_url: str, seeded: Seeded, email: str, pages: Sequence[tuple[str, str]], renders: int
) -> list[Timing]:
    """Sign in as ``email`` and time ``pages``."""
    timings = []
    with httpx.Client(base_url=base_url, timeout=120, follow_redirects=False) as http:
        http.post("/api/auth/login", json={"email": email, "password": PASSWORD}).raise_for_status()
        for label, below in pages:
            path = f"/o/{seeded.organisation_id}{below}"
            first = http.get(path)  # also warms the template cache
            times: list[float] = []
            if first.status_code == 200:
                for _ in range(renders):
                    began = time.perf_counter()
                    answer = http.get(path)
                    times.append((time.perf_counter() - began) * 1000)
                    answer.raise_for_status()
            timings.append(Timing(label, below or "/", first.status_code, times))
    return timings


async def run_backend(
    name: BackendName, keys: int, records: int, renders: int, work: Path
) -> tuple[Seeded, list[Timing]]:
    """Seed one backend and time its pages."""
    async with prepared(name, work) as backend:
        app = create_app(backend.settings)
        server = ThreadedServer(app).start()
        try:
            assert app.runtime is not None
            seeded: Seeded = server.run(seed(app.runtime, keys, records), timeout=7200)
            timings = await asyncio.to_thread(measure, server.base_url, seeded, renders)
        finally:
            server.stop()
    return seeded, timings


def render(name: str, keys: int, records: int, renders: int, seeded: Seeded, timings: list[Timing]) -> str:
    """The Markdown report."""
    lines = [
        f"Console pages, {name}: {keys:,} API keys and {records:,} usage records in one organisation "
        f"(seeded in {seeded.seconds:.0f} s); {renders} renders per page, signed in as its ORG_ADMIN "
        f"(and as a USER where marked); "
        f"target p95 ≤ {TARGET_MS:.0f} ms",
        "",
        "| page | path below /o/{org} | p50 ms | p95 ms | max ms | target |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    lines += ["| " + " | ".join(t.row) + " |" for t in timings]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--renders", type=int, default=20, help="timed renders per page (after one warm-up)")
    parser.add_argument("--backend", choices=BACKENDS, default="embedded")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    """Run the bench; print and return the report."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="odock-console-bench-") as work:
        seeded, timings = asyncio.run(
            run_backend(args.backend, args.keys, args.records, args.renders, Path(work))
        )
    report = render(args.backend, args.keys, args.records, args.renders, seeded, timings)
    print(report)
    return report


if __name__ == "__main__":
    main()
