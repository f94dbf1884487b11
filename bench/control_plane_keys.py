"""How fast the control plane lists API keys when one organisation holds 100,000 of them.

Flow, per backend (embedded SQLite; production PostgreSQL + Redis)::

    set the backend up (bench.backends.prepared), start the app (uvicorn in a thread)
    bulk-insert N keys into one organisation in one transaction (test setup, not an API path)
    ANALYZE; then through the HTTP API, as a super admin with a personal admin token:
        first page        GET /api/organisations/{org}/apikeys?limit=50
        deep page         follow next_cursor 20 times (time per page, and of the 20th)
        filtered          ?type=TEAM&revoked=false
        search (hit)      ?q=<a name in the middle of the table>
        search (miss)     ?q=<nothing matches>: the worst case, every row of the organisation is read
    print a Markdown table (median of REPEATS for each single request)

    .venv/bin/python bench/control_plane_keys.py [--keys 100000] [--backends embedded,production]
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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import insert, text
from tests.support.server import ThreadedServer

from bench.backends import BACKENDS, BackendName, prepared
from odock.app import create_app
from odock.identity.actors import issue_admin_token
from odock.ids import new_id
from odock.keys.tables import ApiKey, ApiKeyType
from odock.runtime import Runtime
from odock.tenancy.tables import Role

REPEATS = 15
DEEP_PAGES = 20
BATCH = 10_000


async def seed(runtime: Runtime, count: int) -> tuple[str, str]:
    """An organisation with ``count`` keys, and a super admin token; returns (organisation id, token)."""
    control = runtime.control
    org = await control.tenancy.create_organisation("bench-" + secrets.token_hex(4))
    team = await control.tenancy.create_team(org.id, "team")
    user = await control.users.create_user(f"u-{secrets.token_hex(4)}@bench.test", organisation_id=org.id)
    admin = await control.users.create_user(f"a-{secrets.token_hex(4)}@bench.test", role=Role.SUPER_ADMIN)
    token = (await issue_admin_token(runtime.sessions, admin.id, "bench")).token
    start = datetime.now(UTC) - timedelta(days=365)
    async with runtime.sessions() as session:
        for first in range(0, count, BATCH):
            rows: list[dict[str, Any]] = []
            for i in range(first, min(first + BATCH, count)):
                kind = (ApiKeyType.ORGANISATION, ApiKeyType.TEAM, ApiKeyType.USER)[i % 3]
                digest = hashlib.sha256(f"{org.id}:{i}".encode()).hexdigest()
                rows.append(
                    {
                        "id": new_id(),
                        "organisation_id": org.id,
                        "team_id": team.id if kind is ApiKeyType.TEAM else None,
                        "user_id": user.id if kind is ApiKeyType.USER else None,
                        "type": kind,
                        "name": f"key-{i:06d}",
                        "key_hash": digest,
                        "key_preview": f"sk_{digest[:4]}…{digest[-4:]}",
                        "timezone": "UTC",
                        "revoked": i % 10 == 0,
                        "rotation_count": 0,
                        "policies": {},
                        "created_at": start + timedelta(seconds=i * 300),
                        "updated_at": start + timedelta(seconds=i * 300),
                    }
                )
            await session.execute(insert(ApiKey), rows)
        await session.commit()
    async with runtime.engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    return org.id, token


def median_ms(call: Callable[[], httpx.Response]) -> float:
    """The median wall time of ``call`` over REPEATS runs, in milliseconds (after one warm-up)."""
    call().raise_for_status()
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        call().raise_for_status()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def measure(base_url: str, org: str, token: str, count: int) -> dict[str, str]:
    """Each measurement, formatted."""
    path = f"/api/organisations/{org}/apikeys"
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:

        def get(**params: Any) -> httpx.Response:
            return http.get(path, params={"limit": 50, **params})

        first = median_ms(get)
        cursor, per_page, last = None, [], 0.0
        for _ in range(DEEP_PAGES):
            began = time.perf_counter()
            page = get(**({"cursor": cursor} if cursor else {}))
            page.raise_for_status()
            per_page.append((time.perf_counter() - began) * 1000)
            cursor = page.json()["next_cursor"]
        last = median_ms(lambda: get(cursor=cursor))
        middle = f"key-{count // 2:06d}"
        hit = get(q=middle).json()["items"]
        assert [k["name"] for k in hit] == [middle], hit
        return {
            "first page (limit=50)": f"{first:.1f} ms",
            f"walk {DEEP_PAGES} pages by cursor (total)": f"{sum(per_page):.1f} ms",
            f"page {DEEP_PAGES + 1} alone": f"{last:.1f} ms",
            "filter type=TEAM&revoked=false": f"{median_ms(lambda: get(type='TEAM', revoked=False)):.1f} ms",
            "search q=<one name> (hit)": f"{median_ms(lambda: get(q=middle)):.1f} ms",
            "search q=<nothing> (scans all)": f"{median_ms(lambda: get(q='no-such-key')):.1f} ms",
        }


async def _run_backend(name: BackendName, count: int, work: Path) -> tuple[dict[str, str], float]:
    async with prepared(name, work) as backend:
        app = create_app(backend.settings)
        server = ThreadedServer(app).start()
        try:
            assert app.runtime is not None
            began = time.perf_counter()
            org, token = server.run(seed(app.runtime, count), timeout=3600)
            seeded = time.perf_counter() - began
            results = await asyncio.to_thread(measure, server.base_url, org, token, count)
        finally:
            server.stop()
    return results, seeded


def main() -> None:
    """Run the measurement and print the Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    names: list[BackendName] = [n for n in BACKENDS if n in args.backends.split(",")]
    columns: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="odock-keys-bench-") as work:
        for name in names:
            results, seeded = asyncio.run(_run_backend(name, args.keys, Path(work)))
            columns[name] = {f"seed {args.keys:,} keys (bulk insert)": f"{seeded:.1f} s", **results}
    rows = list(next(iter(columns.values())))
    print(f"API key list, {args.keys:,} keys in one organisation (median of {REPEATS} requests over HTTP)\n")
    print("| measurement | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---:" for _ in names) + " |")
    for row in rows:
        print(f"| {row} | " + " | ".join(columns[n][row] for n in names) + " |")


if __name__ == "__main__":
    main()
