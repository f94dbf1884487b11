"""What the MCP gateway adds to a tool call, and how its STDIO pool holds 64 concurrent sessions.

Flow, for one backend (embedded SQLite by default; ``--backend production`` for PostgreSQL + Redis)::

    start the SDK test server (Streamable HTTP with JSON answers, and legacy SSE;
    tests/support/mcp_servers.py)
    start the gateway (uvicorn in a thread); an organisation, a key, three MCP servers: the test
    server over Streamable HTTP and over SSE, and mcp-server-time over STDIO
    latency: --calls tools/call "echo" one at a time, alternating direct (the test server's own
    session) and through the gateway (one gateway session), JSON answers; the same for SSE and
    STDIO through the gateway (no direct twin: the gateway is the only HTTP face they have)
    pool: --sessions clients at once through the gateway to the STDIO server, each opening its
    session and calling get_current_time --per-session times; the pool's processes and peak

Every call is the whole HTTP round trip on localhost (the client's wall time). The added latency
of the gateway is the difference of the medians (and p95s) of the interleaved direct and gateway
calls of the same run.

    .venv/bin/python -m bench.mcp_gateway
    .venv/bin/python -m bench.mcp_gateway --backend production --calls 500
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select
from tests.support.mcp_gateway import McpTenant
from tests.support.mcp_servers import McpTestServer, time_server_command
from tests.support.server import ThreadedServer

from bench.backends import BACKENDS, BackendName, prepared
from odock.app import create_app
from odock.runtime import Runtime
from odock.usage.tables import UsageRecord

ids = itertools.count(1)
INIT_PARAMS = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "bench", "version": "1"},
}


@dataclass
class Series:
    """Wall times of one kind of call, in milliseconds."""

    label: str
    times: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def row(self) -> str:
        return (
            f"| {self.label} | {len(self.times)} | {statistics.median(self.times):.2f} | "
            f"{self.quantile(0.95):.2f} | {statistics.fmean(self.times):.2f} |"
        )


class RpcClient:
    """Raw JSON-RPC over HTTP, as any MCP client sends it (aiohttp; JSON answers preferred)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        self.http, self.url = http, url
        self.headers = {
            **headers,
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        self.session: str | None = None

    async def initialize(self) -> None:
        _, self.session = await self.post(
            {"jsonrpc": "2.0", "id": next(ids), "method": "initialize", "params": INIT_PARAMS}
        )
        await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def post(self, message: dict[str, Any]) -> tuple[bytes, str | None]:
        """The answer's body and session id."""
        headers = dict(self.headers)
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        async with self.http.post(self.url, headers=headers, data=json.dumps(message)) as reply:
            reply.raise_for_status()
            return await reply.read(), reply.headers.get("mcp-session-id")

    async def call(self, tool: str, arguments: dict[str, Any]) -> float:
        params = {"name": tool, "arguments": arguments}
        message = {"jsonrpc": "2.0", "id": next(ids), "method": "tools/call", "params": params}
        began = time.perf_counter()
        body, _ = await self.post(message)
        elapsed = (time.perf_counter() - began) * 1000
        if b'"result"' not in body:
            raise RuntimeError(f"tools/call failed: {body[:300]!r}")
        return elapsed


def provision(runtime: Runtime, server: ThreadedServer, http_url: str, sse_url: str) -> McpTenant:
    """An organisation with a key and the three servers, through the gateway's own control plane."""
    from tests.conftest import Gateway

    gateway = Gateway(server=server, app=server.app)
    tenant = McpTenant(gateway, _tenant(gateway), {})
    tenant.add_server("http", transport="STREAMABLE_HTTP", endpoint_url=http_url)
    tenant.add_server("sse", transport="SSE", endpoint_url=sse_url)
    command, args = time_server_command()
    tenant.add_server("time", transport="STDIO", stdio_command=command, stdio_args=list(args))
    return tenant


def _tenant(gateway: Any) -> Any:
    from tests.conftest import provision as provision_tenant

    return provision_tenant(gateway)


async def latency(base_url: str, secret: str, upstream_url: str, calls: int) -> list[Series]:
    """The latency series, driven from a process of their own (see :func:`pool`)."""
    times = await _driven(["latency", base_url, secret, upstream_url, str(calls)])
    labels = {
        "direct": "Streamable HTTP, direct to the server",
        "http": "Streamable HTTP, through Odock",
        "sse": "legacy SSE, through Odock (bridged)",
        "time": "STDIO mcp-server-time, through Odock (pooled process)",
    }
    return [Series(labels[name], times[name]) for name in labels]


async def drive_latency(base_url: str, secret: str, upstream_url: str, calls: int) -> dict[str, list[float]]:
    """Interleaved direct and gateway calls (Streamable HTTP), then SSE and STDIO through the gateway."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        direct = RpcClient(http, upstream_url, {})
        gateway = {
            name: RpcClient(http, f"{base_url}/v1/mcp/{name}", {"Authorization": f"Bearer {secret}"})
            for name in ("http", "sse", "time")
        }
        for client in (direct, *gateway.values()):
            await client.initialize()
        for _ in range(20):  # warm-up: connections, caches, the STDIO process
            await direct.call("echo", {"text": "warm"})
            await gateway["http"].call("echo", {"text": "warm"})
            await gateway["sse"].call("echo", {"text": "warm"})
            await gateway["time"].call("get_current_time", {"timezone": "UTC"})
        series = {name: Series(name, []) for name in ("direct", "http", "sse", "time")}
        for n in range(calls):
            text = {"text": f"call {n}"}
            series["direct"].times.append(await direct.call("echo", text))
            series["http"].times.append(await gateway["http"].call("echo", text))
            series["sse"].times.append(await gateway["sse"].call("echo", text))
            series["time"].times.append(await gateway["time"].call("get_current_time", {"timezone": "UTC"}))
    return {name: s.times for name, s in series.items()}


async def pool(base_url: str, secret: str, sessions: int, per_session: int) -> tuple[Series, float, int]:
    """``sessions`` clients at once on the STDIO server, driven from a process of their own (the
    gateway runs in a thread of this one: a client here would take its CPU); their call times,
    the wall time, failures."""
    result = await _driven(["pool", base_url, secret, str(sessions), str(per_session)])
    return Series(f"STDIO, {sessions} sessions at once", result["times"]), result["wall"], result["failures"]


async def _driven(arguments: list[str]) -> Any:
    """Run the driver process with ``arguments``; what it printed (JSON)."""
    command = [sys.executable, "-m", "bench.mcp_gateway", "--drive", *arguments]
    driver = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out, _ = await driver.communicate()
    if driver.returncode != 0:
        raise RuntimeError(f"the bench driver ({arguments[0]}) failed with code {driver.returncode}")
    return json.loads(out)


async def drive_pool(base_url: str, secret: str, sessions: int, per_session: int) -> dict[str, Any]:
    """The pool's load (run by the driver process, with aiohttp: the cheaper client, so the load
    generator takes less of the two cores the gateway and the server processes share)."""
    url = f"{base_url}/v1/mcp/time"
    auth = {"Authorization": f"Bearer {secret}", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=sessions + 10)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def post(headers: dict[str, str], message: dict[str, Any]) -> tuple[bytes, str | None]:
            async with http.post(url, headers=headers, data=json.dumps(message)) as reply:
                reply.raise_for_status()
                return await reply.read(), reply.headers.get("mcp-session-id")

        async def one() -> list[float]:
            init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT_PARAMS}
            _, session = await post({**auth, "Content-Type": "application/json"}, init)
            headers = {**auth, "Content-Type": "application/json", "Mcp-Session-Id": session or ""}
            await post(headers, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            times = []
            for n in range(per_session):
                arguments = {"timezone": "Europe/Paris"}
                params = {"name": "get_current_time", "arguments": arguments}
                message = {"jsonrpc": "2.0", "id": n + 1, "method": "tools/call", "params": params}
                began = time.perf_counter()
                body, _ = await post(headers, message)
                times.append((time.perf_counter() - began) * 1000)
                if b'"result"' not in body:
                    raise RuntimeError(body[:300].decode())
            return times

        began = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(sessions)), return_exceptions=True)
        wall = time.perf_counter() - began
    times = [t for r in results if isinstance(r, list) for t in r]
    failures = sum(1 for r in results if isinstance(r, BaseException))
    return {"times": times, "wall": wall, "failures": failures}


async def inside(runtime: Runtime) -> dict[str, tuple[list[float], list[float]]]:
    """Per server slug, the gateway's own latency and overhead (latency without the upstream
    wait) of every tools/call it recorded, in milliseconds."""
    await runtime.recorder.flush()
    query = select(UsageRecord.mcp_server, UsageRecord.latency_ms, UsageRecord.gateway_overhead_ms).where(
        UsageRecord.mcp_method == "tools/call"
    )
    found: dict[str, tuple[list[float], list[float]]] = {}
    async with runtime.sessions() as session:
        for server, latency_ms, overhead_ms in await session.execute(query):
            entry = found.setdefault(server, ([], []))
            entry[0].append(latency_ms)
            entry[1].append(overhead_ms)
    return found


async def run(name: BackendName, calls: int, sessions: int, per_session: int, work: Path) -> str:
    """Measure one backend; the Markdown report."""
    # JSON answers from the Streamable HTTP server: direct and forwarded calls read the same kind of
    # answer (the SDK server's SSE answers carry a stream lifecycle of its own).
    with (
        McpTestServer("streamable_http", json_response=True) as http_server,
        McpTestServer("sse") as sse_server,
    ):
        allow: dict[str, Any] = {"mcp_stdio_allowed_commands": [sys.executable]}
        async with prepared(name, work, overrides=allow) as backend:
            app = create_app(backend.settings)
            server = ThreadedServer(app).start()
            try:
                assert app.runtime is not None
                tenant = await asyncio.to_thread(
                    provision, app.runtime, server, http_server.url, sse_server.url
                )
                series = await latency(server.base_url, tenant.secret, http_server.url, calls)
                recorded = server.run(inside(app.runtime))
                burst, wall, failures = await pool(server.base_url, tenant.secret, sessions, per_session)
                stats = app.runtime.mcp_links.stdio.stats()
                settings = app.runtime.settings
            finally:
                server.stop()
    direct, through = series[0], series[1]
    added_p50 = statistics.median(through.times) - statistics.median(direct.times)
    added_p95 = through.quantile(0.95) - direct.quantile(0.95)
    pool_stats = next(iter(stats.values()), {"peak": 0})
    lines = [
        f"MCP gateway, {name} backend: {calls} tool calls per series, interleaved; wall time per call (ms)",
        "",
        "| series | calls | p50 | p95 | mean |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(s.row for s in series),
        "",
        f"Added by the gateway (Streamable HTTP, same run): p50 {added_p50:+.2f} ms, p95 {added_p95:+.2f} ms",
        "",
        "Inside the gateway (its usage records of the tools/call above, warm-up included): latency = request "
        "received → answer written; overhead = the latency without the upstream wait",
        "",
        "| server | records | latency p50 / p95 ms | overhead p50 / p95 ms |",
        "| --- | ---: | ---: | ---: |",
        *(_inside_row(slug, lat, over) for slug, (lat, over) in sorted(recorded.items())),
        "",
        f"STDIO pool: {sessions} sessions at once, {per_session} calls each, in {wall:.2f} s "
        f"({len(burst.times) / wall:.0f} calls/s); {failures} sessions failed; processes at peak "
        f"{pool_stats['peak']} (cap {settings.mcp_stdio_processes_per_server} per server, "
        f"{settings.mcp_stdio_requests_per_process} requests in flight per process before another starts)",
        "",
        "| series | calls | p50 | p95 | mean |",
        "| --- | ---: | ---: | ---: | ---: |",
        burst.row,
    ]
    return "\n".join(lines)


def _inside_row(slug: str, latency_ms: list[float], overhead_ms: list[float]) -> str:
    lat, over = Series(slug, latency_ms), Series(slug, overhead_ms)
    return (
        f"| {slug} | {len(latency_ms)} | {lat.quantile(0.5):.2f} / {lat.quantile(0.95):.2f} "
        f"| {over.quantile(0.5):.2f} / {over.quantile(0.95):.2f} |"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=BACKENDS, default="embedded")
    parser.add_argument("--calls", type=int, default=300, help="tool calls per latency series")
    parser.add_argument("--sessions", type=int, default=64, help="concurrent STDIO sessions")
    parser.add_argument("--per-session", type=int, default=5, help="calls per concurrent session")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    """Run, print the report and return it (or, as the pool's driver, its timings as JSON)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--drive"]:
        kind, base_url, secret, *rest = argv[1:]
        if kind == "latency":
            driven: Any = drive_latency(base_url, secret, rest[0], int(rest[1]))
        else:
            driven = drive_pool(base_url, secret, int(rest[0]), int(rest[1]))
        report = json.dumps(asyncio.run(driven))
        print(report)
        return report
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="odock-mcp-bench-") as work:
        report = asyncio.run(run(args.backend, args.calls, args.sessions, args.per_session, Path(work)))
    print(report)
    return report


if __name__ == "__main__":
    main()
