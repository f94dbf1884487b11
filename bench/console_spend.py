"""How fast the console's spend pages render over a million usage records (server time, HTTP).

Reuses the usage bench's world (:mod:`bench.control_plane_usage`: an organisation with teams,
users and keys, ``--rows`` records over the last 90 days, bulk loaded), starts a real
``odock serve`` and times each page as a browser would fetch it (the full HTML answer), median
of ``--runs``. The list pages (usage records, audit log) must stay within 300 ms; the dashboard,
analytics and invoices aggregate a range and are reported beside them.

Usage::

    .venv/bin/python -m bench.console_spend                          # 1,000,000 rows, both backends
    .venv/bin/python -m bench.console_spend --rows 100000 --backends embedded
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import httpx

from bench.backends import BACKENDS, BackendName, prepared
from bench.control_plane_usage import World, load, provision, sample
from bench.processes import ManagedProcess, free_port, wait_until_ready
from odock.audit.recorder import audited_session_factory
from odock.db import migrate
from odock.db.engine import create_engine

LIST_TARGET_MS = 300.0


def pages(world: World, next_page: str) -> list[tuple[str, str, bool]]:
    """(name, path, is a list page) of every measured page."""
    org = world.organisation_id
    key = world.keys[1][0]
    return [
        ("usage records", f"/o/{org}/usage", True),
        ("usage records, page 2", next_page, True),
        ("usage records, model filter", f"/o/{org}/usage?model=claude-haiku", True),
        ("usage records, errors", f"/o/{org}/usage?status=error", True),
        ("usage records, one key", f"/o/{org}/usage?api_key_id={key}", True),
        ("usage records, request id search", f"/o/{org}/usage?q={world.sample_request_id[:10]}", True),
        ("usage record detail", f"/o/{org}/usage/{world.sample_record_id}", True),
        ("audit log", f"/o/{org}/audit", True),
        ("dashboard, 24 h", f"/o/{org}", False),
        ("dashboard, 7 d", f"/o/{org}?range=7d", False),
        ("dashboard, 30 d", f"/o/{org}?range=30d", False),
        ("analytics, 30 d", f"/o/{org}/analytics?range=30d", False),
        ("invoices, this month", f"/o/{org}/invoices", False),
        ("invoices, last 30 days", f"/o/{org}/invoices?preset=last_30_days", False),
    ]


async def timed(client: httpx.AsyncClient, path: str, runs: int) -> float:
    """The median time of ``runs`` GETs of ``path`` (after one warm-up), in ms; fails unless 200."""
    times = []
    for attempt in range(runs + 1):
        began = time.perf_counter()
        answer = await client.get(path)
        elapsed = (time.perf_counter() - began) * 1000
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")
        if attempt:
            times.append(elapsed)
    times.sort()
    return times[len(times) // 2]


async def measure(name: BackendName, rows: int, runs: int, work_dir: Path) -> list[str]:
    """Load the records, serve, time every page; the report's lines for one backend."""
    async with prepared(name, work_dir) as backend:
        engine = create_engine(backend.settings.resolved_database_url)
        try:
            await migrate.upgrade(engine)
            world = await provision(audited_session_factory(engine))
            print(f"[{name}] loading {rows:,} rows…", file=sys.stderr)
            rate = await load(engine, world, rows)
            await sample(engine, world)
        finally:
            await engine.dispose()
        port = free_port()
        argv = [
            str(Path(sys.executable).parent / "odock"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        process = ManagedProcess.start(
            "odock", argv, backend.environment(dict(os.environ)), work_dir / "serve.log"
        )
        lines = [
            f"\n### {name}: {rows:,} usage records (loaded at {rate:,.0f} rows/s); median of {runs} runs\n",
            "| page | kind | server answer |",
            "|---|---|---:|",
        ]
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_until_ready(url + "/v1/healthz", process, 120)
            headers = {"Authorization": f"Bearer {world.admin_token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
                first = await client.get(f"/o/{world.organisation_id}/usage")
                found = re.search(r'href="(\?cursor=[^"]+)" rel="next"', first.text)
                if found is None:
                    raise RuntimeError("the usage page has no next page")
                next_page = f"/o/{world.organisation_id}/usage" + found.group(1).replace("&amp;", "&")
                for title, path, is_list in pages(world, next_page):
                    ms = await timed(client, path, runs)
                    verdict = ("ok" if ms <= LIST_TARGET_MS else "OVER") if is_list else ""
                    lines.append(
                        f"| {title} | {'list ' + verdict if is_list else 'aggregate'} | {ms:,.1f} ms |"
                    )
                    print(f"[{name}] {title}: {ms:.1f} ms", file=sys.stderr)
        finally:
            process.stop()
        return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Time the console's spend pages over many usage records.")
    parser.add_argument("--rows", type=int, default=1_000_000, help="usage records to generate")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per page (median reported)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="embedded,production")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> str:
    """Measure every requested backend."""
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="odock-bench-console-") as work:
        for name in args.backends.split(","):
            lines += await measure(cast(BackendName, name), args.rows, args.runs, Path(work))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    print(asyncio.run(run(parse_args(argv))))


if __name__ == "__main__":
    main()
