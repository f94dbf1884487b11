"""How fast the console's key and budget pages render when one organisation holds 100,000 keys.

Flow, per backend (embedded SQLite; production PostgreSQL + Redis)::

    seed N keys in one organisation (bench.control_plane_keys.seed: bulk insert, ANALYZE)
    then over HTTP as a super admin (personal admin token), each page's full server answer:
        /o/{org}/keys                 first page (50 rows, owner names, filters)
        /o/{org}/keys?cursor=…        the 21st page (cursor from walking the API's pages)
        /o/{org}/keys?type=TEAM&revoked=false, ?q=<one name>, ?q=<nothing>
        /o/{org}/keys/new             the wizard (models, time zones)
        /o/{org}/keys/{id}            a key's page (grants, policies, rotations, usage, budgets)
        /o/{org}/budgets              budgets list
    print a Markdown table (median of REPEATS requests; the target is ≤ 300 ms per page)

    .venv/bin/python bench/console_keys.py [--keys 100000] [--backends embedded,production]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from tests.support.server import ThreadedServer

from bench.backends import BACKENDS, BackendName, prepared
from bench.control_plane_keys import REPEATS, median_ms, seed
from odock.app import create_app

DEEP_PAGES = 20


def measure(base_url: str, org: str, token: str, count: int) -> dict[str, str]:
    """Each page's median render time, formatted."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:

        def page(path: str, **params: Any) -> httpx.Response:
            answer = http.get(path, params=params)
            assert answer.headers["content-type"].startswith("text/html"), answer.text[:200]
            return answer

        keys = f"/o/{org}/keys"
        cursor = None
        for _ in range(DEEP_PAGES):
            wanted = {"cursor": cursor} if cursor else {}
            listed = http.get(f"/api/organisations/{org}/apikeys", params=wanted)
            cursor = listed.json()["next_cursor"]
        one = listed.json()["items"][0]["id"]
        middle = f"key-{count // 2:06d}"
        hit = page(keys, q=middle)
        assert middle in hit.text
        timings = {
            "keys: first page": median_ms(lambda: page(keys)),
            f"keys: page {DEEP_PAGES + 1} (cursor)": median_ms(lambda: page(keys, cursor=cursor)),
            "keys: type=TEAM&revoked=false": median_ms(lambda: page(keys, type="TEAM", revoked="false")),
            "keys: search (hit)": median_ms(lambda: page(keys, q=middle)),
            "keys: search (nothing, scans all)": median_ms(lambda: page(keys, q="no-such-key")),
            "keys/new (wizard)": median_ms(lambda: page(keys + "/new")),
            "keys/{id} (key page)": median_ms(lambda: page(f"{keys}/{one}")),
            "budgets (list)": median_ms(lambda: page(f"/o/{org}/budgets")),
        }
        return {name: f"{ms:.1f} ms" for name, ms in timings.items()}


async def _run_backend(name: BackendName, count: int, work: Path) -> dict[str, str]:
    async with prepared(name, work) as backend:
        app = create_app(backend.settings)
        server = ThreadedServer(app).start()
        try:
            assert app.runtime is not None
            org, token = server.run(seed(app.runtime, count), timeout=3600)
            return await asyncio.to_thread(measure, server.base_url, org, token, count)
        finally:
            server.stop()


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
    with tempfile.TemporaryDirectory(prefix="odock-console-bench-") as work:
        for name in names:
            columns[name] = asyncio.run(_run_backend(name, args.keys, Path(work)))
    rows = list(next(iter(columns.values())))
    print(f"Console key pages, {args.keys:,} keys in one organisation (median of {REPEATS} renders)\n")
    print("| page | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---:" for _ in names) + " |")
    for row in rows:
        print(f"| {row} | " + " | ".join(columns[n][row] for n in names) + " |")


if __name__ == "__main__":
    main()
