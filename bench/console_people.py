"""How fast the Users and Teams console pages render over a million usage records.

Per backend: the organisation of :mod:`bench.control_plane_usage` (teams, users, keys, a super
admin token) and ``--rows`` usage records, then a real ``odock serve`` process; each page is
fetched ``--runs`` times with the admin token and the median server round trip is reported
(the pages' target: 300 ms). The user and team pages read that user's and team's recent usage,
keys, budgets and quotas through the same API routes as the REST API.

Usage::

    .venv/bin/python -m bench.console_people --rows 1000000 --backends embedded,production
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import httpx

from bench.backends import BACKENDS, BackendName, prepared
from bench.control_plane_usage import World, load, provision
from bench.processes import ManagedProcess, free_port, wait_until_ready
from odock.audit.recorder import audited_session_factory
from odock.db import migrate
from odock.db.engine import create_engine


def pages(world: World) -> list[tuple[str, str]]:
    """The pages timed: (name, path)."""
    org = f"/o/{world.organisation_id}"
    return [
        ("users", f"{org}/users"),
        ("users, search", f"{org}/users?q=user1"),
        ("enrollment", f"{org}/users/enrollment"),
        ("user detail", f"{org}/users/{world.user_ids[3]}"),
        ("teams", f"{org}/teams"),
        ("team detail", f"{org}/teams/{world.team_ids[1]}"),
    ]


async def time_pages(base_url: str, world: World, runs: int) -> list[tuple[str, float]]:
    """The median milliseconds of each page."""
    headers = {"Authorization": f"Bearer {world.admin_token}"}
    results = []
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
        for name, path in pages(world):
            times = []
            for _ in range(runs + 1):  # the first run warms the template cache
                started = time.perf_counter()
                answer = await client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:300]}")
            results.append((name, statistics.median(times[1:])))
    return results


async def measure(name: BackendName, rows: int, runs: int, work: Path) -> list[tuple[str, float]]:
    """Load one backend, serve it, time the pages."""
    async with prepared(name, work) as backend:
        engine = create_engine(backend.settings.resolved_database_url)
        try:
            await migrate.upgrade(engine)
            world = await provision(audited_session_factory(engine))
            print(f"[{name}] loading {rows:,} usage records…", file=sys.stderr)
            await load(engine, world, rows)
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
            "odock", argv, backend.environment(dict(os.environ)), work / "serve.log"
        )
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_until_ready(url + "/v1/healthz", process, 120)
            return await time_pages(url, world, runs)
        finally:
            process.stop()


async def run(args: argparse.Namespace) -> str:
    """Every backend's table."""
    out = []
    with tempfile.TemporaryDirectory(prefix="odock-bench-people-") as work:
        for name in args.backends.split(","):
            timed = await measure(cast(BackendName, name), args.rows, args.runs, Path(work))
            out.append(f"\n### {name}: {args.rows:,} usage records; median of {args.runs} runs\n")
            out.append("| page | server round trip |\n|---|---:|")
            out.extend(f"| {page} | {ms:,.1f} ms |" for page, ms in timed)
    return "\n".join(out)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description="Time the Users and Teams console pages.")
    parser.add_argument("--rows", type=int, default=1_000_000, help="usage records to generate")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per page (median reported)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="embedded,production")
    print(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
