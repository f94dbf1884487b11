"""Odock's benchmark: the gateway against a direct baseline, on each backend, in one command.

Flow of a run::

    pin this driver process to the load core (CPU 1); start the mock upstream there
    for each backend (embedded, production):
        set it up (fresh data dir; or fresh PostgreSQL database + Redis prefix)
        provision the tenant through a ControlPlane on the gateway's database
        busy-spin on the gateway core: how much of it other processes and the host take
        start `odock serve` pinned to the gateway core (CPU 0); sample its idle RSS
        warm up both paths; then per case: direct baseline, then through the gateway
        [--profile N: py-spy on the gateway under load, --profile-concurrency C]
        stop the gateway; count the usage records it wrote; from them, the gateway's
        own latency (or, for streams, time to first token) percentiles of each case
        [--soak: a fresh gateway, idle → warm-up → mixed-load warm-up → mixed load → recovery,
         RSS each second]
        tear the backend down
    print the Markdown report; write it and a JSON file of raw numbers to bench/results/

    .venv/bin/python bench/run.py [--quick | --smoke] [--soak [--soak-seconds N]]
                                  [--backends embedded,production] [--out bench/results/x.md]

(every option: ``--help``, or bench/options.py). See docs/performance.md for the method and the
latest results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

if __package__ in (None, ""):
    # Run as a script (python bench/run.py): make the repository root importable for `bench.*`.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backends import Backend, BackendName, prepared
from bench.cases import (
    FULL,
    QUICK,
    SMOKE,
    CaseOutcome,
    ChatCase,
    Endpoints,
    Measurer,
    Plan,
    StreamCase,
)
from bench.drivers import Target, run_http_load, run_wrk, wrk_available
from bench.mock_upstream import IMPLS, Impl
from bench.options import parse_args
from bench.processes import (
    MIB,
    CoreLayout,
    ManagedProcess,
    every_core,
    free_port,
    install_tools,
    probe_core,
    rss_bytes,
    wait_for_quiet,
    wait_until_ready,
    worker_processes,
)
from bench.profile import py_spy_binary, record, summarise
from bench.report import BackendReport, RunReport, machine, write
from bench.scheduling import CpuQuota, pin_services, raise_priority, renice_services
from bench.soak import run_soak
from bench.tenant import GOVERNANCE, FailoverRouting, GovernanceHook, provision

ROOT = Path(__file__).resolve().parent.parent
CaseT = TypeVar("CaseT", ChatCase, StreamCase)
RESULTS = ROOT / "bench" / "results"
# "--governance on" attaches these; "off" leaves the tenant with authentication, grant check and
# usage recording only (those always run). The report names what was attached.
GOVERNANCE_HOOKS: Sequence[GovernanceHook] = GOVERNANCE
ROUTING_HOOKS: dict[str, Sequence[GovernanceHook]] = {"on": (FailoverRouting(),), "off": ()}
IDLE_SETTLE_SECONDS = 1.0


@dataclass
class Context:
    """What every phase of the run needs."""

    args: argparse.Namespace
    plan: Plan
    layout: CoreLayout
    work: Path
    mock_url: str
    use_wrk: bool
    out: Path

    def selected(self, cases: Sequence[CaseT]) -> list[CaseT]:
        """The cases chosen with --case (all when none was named)."""
        wanted = set(self.args.case)
        return [c for c in cases if not wanted or c.label in wanted]

    def measurer(self, endpoints: Endpoints, gateway_pid: int, backend: Backend | None = None) -> Measurer:
        """A measurer for the gateway process ``gateway_pid`` (counting ``backend``'s stored usage)."""
        return Measurer(
            endpoints,
            gateway_pid,
            self.layout.gateway,
            self.wrk_pin,
            self.use_wrk,
            quiet_wait_seconds=self.args.wait_quiet,
            noisy_retries=self.args.noisy_retries,
            stored_within=None if backend is None else backend.usage_stored_within,
        )

    @property
    def wrk_pin(self) -> list[str]:
        """Prefix that puts a helper process (wrk, py-spy) on the load core."""
        return self.layout.pin(self.layout.load, [])


@contextlib.asynccontextmanager
async def mock_upstream(
    layout: CoreLayout, work: Path, impl: Impl, core: int | None, latency_ms: float = 0.0
) -> AsyncIterator[str]:
    """The mock upstream, pinned to ``core``; yields its base URL."""
    port = free_port()
    argv = [
        sys.executable,
        str(ROOT / "bench" / "mock_upstream.py"),
        "--port",
        str(port),
        "--impl",
        impl,
        "--latency-ms",
        str(latency_ms),
    ]
    process = ManagedProcess.start(
        f"mock-{impl}", layout.pin(core, argv), os.environ, work / f"mock-{impl}.log"
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_until_ready(url + "/", process)
        yield url
    finally:
        process.stop()


@dataclass(frozen=True)
class RunningGateway:
    """A started `odock serve` and its base URL."""

    process: ManagedProcess
    url: str

    @property
    def pid(self) -> int:
        """The gateway's process id."""
        return self.process.pid


@contextlib.asynccontextmanager
async def gateway(ctx: Context, backend: Backend) -> AsyncIterator[RunningGateway]:
    """`odock serve` on the gateway core, ready to serve."""
    port = free_port()
    argv = [str(Path(sys.executable).parent / "odock"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    workers = ctx.args.gateway_workers
    if workers > 1:
        argv += ["--workers", str(workers)]
    env = backend.environment(dict(os.environ))
    share = ctx.args.core_share
    # Several workers get every core (this driver process is pinned to the load core, and a child
    # would inherit that); one, or workers with a core share each, are pinned to the gateway core.
    if workers == 1 or share is not None:
        pinned = ctx.layout.pin(ctx.layout.gateway, argv)
    else:
        pinned = every_core(argv)
    process = ManagedProcess.start(
        "gateway",
        pinned,
        env,
        ctx.work / f"gateway-{backend.name}-{port}.log",
    )
    quotas: list[CpuQuota] = []
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_until_ready(url + "/v1/health", process)
        if share is not None:
            for index, pid in enumerate(await worker_processes(process.pid, workers)):
                quotas.append(CpuQuota.create(f"odock-bench-{port}-{index}", share))
                quotas[-1].add(pid)
        yield RunningGateway(process, url)
    finally:
        code = process.stop()
        for quota in quotas:
            quota.remove()
        if code not in (0, None):
            print(f"gateway exited with {code}:\n{process.log_tail()}", file=sys.stderr)


async def _idle_rss_mib(pid: int) -> float:
    await asyncio.sleep(IDLE_SETTLE_SECONDS)  # let start-up garbage settle before the idle sample
    return rss_bytes(pid) / MIB


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_cases(ctx: Context, backend: Backend, endpoints: Endpoints, report: BackendReport) -> None:
    """Probe the gateway core; cases (and the profile) on one gateway process; then read its usage."""
    report.core_probe = await probe_core(ctx.layout, ctx.layout.gateway, ctx.plan.core_probe_seconds)
    _say(
        f"[{backend.name}] gateway core: {report.core_probe.lost_percent:.2f}% lost "
        f"in {report.core_probe.gaps} gaps over {report.core_probe.seconds:.1f} s"
    )
    async with gateway(ctx, backend) as process:
        endpoints = Endpoints(endpoints.mock_url, process.url, endpoints.tenant)
        report.idle_rss_mib = await _idle_rss_mib(process.pid)
        measurer = ctx.measurer(endpoints, process.pid, backend)
        report.gateway_answered += await measurer.warm_up(ctx.plan.warmup_seconds)
        report.post_warmup_rss_mib = rss_bytes(process.pid) / MIB
        if not ctx.args.skip_cases:
            for chat_case in ctx.selected(ctx.plan.chat):
                outcome = await measurer.chat(chat_case)
                report.cases.append(outcome)
                _progress(backend.name, outcome.label, outcome.added)
            for stream_case in ctx.selected(ctx.plan.streams):
                outcome = await measurer.stream(stream_case)
                report.cases.append(outcome)
                _progress(backend.name, outcome.label, outcome.added)
            report.gateway_answered += measurer.answered
        if ctx.args.profile > 0:
            report.gateway_answered += await profile_gateway(
                ctx, backend.name, endpoints.chat("gateway"), process, report
            )
    report.usage_rows = await backend.usage_rows()
    await attach_inside(backend, report.cases)


async def attach_inside(backend: Backend, cases: Sequence[CaseOutcome]) -> None:
    """Give each case the gateway's own latency percentiles of its gateway phase.

    From the usage records of the case's route (so call it once the gateway has stopped); with
    --noisy-retries, the phase is the kept attempt's.
    """
    measured = [(case, case.gateway.window) for case in cases if case.gateway.window is not None]
    for route in sorted({case.route for case, _ in measured}):
        on_route = [(case, window) for case, window in measured if case.route == route]
        windows = [(window, case.kind == "stream") for case, window in on_route]
        for (case, _), inside in zip(on_route, await backend.usage_latency(windows, route), strict=True):
            case.inside = inside


def _progress(backend: str, label: str, added: dict[str, float | None]) -> None:
    shown = ", ".join(f"{k} {v:+.3f} ms" for k, v in added.items() if v is not None)
    _say(f"[{backend}] {label}: added {shown}")


async def profile_gateway(
    ctx: Context, backend: str, target: Target, process: RunningGateway, report: BackendReport
) -> int:
    """py-spy the gateway under non-streaming load; return the requests answered."""
    binary = py_spy_binary()
    if binary is None:
        _say("py-spy not found (pip install py-spy, or --install-tools): no profile")
        return 0
    seconds = ctx.args.profile
    raw = ctx.out.with_name(f"{ctx.out.stem}-profile-{backend}.txt")
    raw.parent.mkdir(parents=True, exist_ok=True)
    async with asyncio.TaskGroup() as group:
        if ctx.use_wrk:
            load = group.create_task(run_wrk(target, ctx.args.profile_concurrency, seconds + 2, ctx.wrk_pin))
        else:
            load = group.create_task(run_http_load(target, ctx.args.profile_concurrency, seconds=seconds + 2))
        group.create_task(record(binary, process.pid, seconds, raw, ctx.wrk_pin))
    report.profile = summarise(raw)
    return load.result().ok


async def run_soak_phase(ctx: Context, backend: Backend, endpoints: Endpoints, report: BackendReport) -> None:
    """A fresh gateway: idle, warm-up, the soak, recovery."""
    async with gateway(ctx, backend) as process:
        endpoints = Endpoints(endpoints.mock_url, process.url, endpoints.tenant)
        idle = await _idle_rss_mib(process.pid)
        measurer = ctx.measurer(endpoints, process.pid)
        await measurer.warm_up(ctx.plan.warmup_seconds)
        warm = rss_bytes(process.pid) / MIB
        recovery = 10.0 if ctx.args.soak_seconds >= 60 else 3.0
        soak_warmup = ctx.args.soak_warmup_seconds
        _say(f"[{backend.name}] soak: {soak_warmup:.0f} s of warm-up, then {ctx.args.soak_seconds:.0f} s …")
        report.soak = await run_soak(
            endpoints,
            process.pid,
            ctx.args.soak_seconds,
            recovery,
            idle,
            warm,
            soak_warmup,
            stored_count=backend.usage_rows,
            chat_concurrency=ctx.args.soak_chat_concurrency,
        )
        if ctx.args.skip_cases and ctx.args.profile <= 0:
            report.idle_rss_mib, report.post_warmup_rss_mib = idle, warm


async def run_backend(ctx: Context, name: BackendName) -> BackendReport:
    """Everything measured on one backend, which is created and removed here."""
    async with prepared(
        name, ctx.work, ctx.args.postgres_url, ctx.args.redis_url, overrides=ctx.args.settings
    ) as backend:
        hooks = [*(GOVERNANCE_HOOKS if ctx.args.governance == "on" else ()), *ROUTING_HOOKS[ctx.args.routing]]
        provisioned = await provision(backend.settings, ctx.mock_url, hooks)
        _say(f"[{name}] provisioned tenant; governance: {'; '.join(provisioned.features)}")
        endpoints = Endpoints(ctx.mock_url, "", provisioned.tenant)
        report = BackendReport(name, list(provisioned.features), 0.0, 0.0)
        if not ctx.args.skip_cases or ctx.args.profile > 0:
            await run_cases(ctx, backend, endpoints, report)
        if ctx.args.soak:
            await run_soak_phase(ctx, backend, endpoints, report)
        return report


async def compare_mocks(ctx: Context) -> list[dict[str, object]]:
    """Each mock implementation alone on the gateway core, driven at c=64 from the load core."""
    rows: list[dict[str, object]] = []
    for impl in IMPLS:
        async with mock_upstream(ctx.layout, ctx.work, impl, ctx.layout.gateway) as url:
            target = Target(
                url + "/v1/chat/completions",
                b'{"model":"mock-chat","messages":[{"role":"user","content":"hi"}]}',
                {"Content-Type": "application/json"},
            )
            seconds = 3.0 if ctx.plan is not FULL else 8.0
            await run_http_load(target, 8, requests=200)
            if ctx.use_wrk:
                result = await run_wrk(target, 64, seconds, ctx.wrk_pin)
            else:
                result = await run_http_load(target, 64, seconds=seconds)
        rows.append(
            {
                "impl": impl,
                "rps": result.rps,
                "p50": result.latency.p50,
                "p99": result.latency.p99,
                "errors": result.error_count,
                "driver": result.driver,
            }
        )
        _say(f"mock {impl}: {result.rps:,.0f} rps at c=64")
    return rows


async def run(args: argparse.Namespace) -> RunReport:
    """The whole benchmark run."""
    notes = install_tools(args.profile > 0) if args.install_tools else []
    main_task = asyncio.current_task()
    assert main_task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Cancel rather than die, so that every process, database and Redis key of the run is cleaned up.
        asyncio.get_running_loop().add_signal_handler(sig, main_task.cancel)
    layout = CoreLayout.detect()
    layout.pin_self()
    undo: list[Callable[[], None]] = []
    services_here = _local(args.redis_url) and _local(args.postgres_url)
    if args.nice:
        undo.append(raise_priority(args.nice))
        if "production" in args.backend_names and services_here:
            undo.append(renice_services(args.nice))
            notes.append(f"this machine's Redis and PostgreSQL processes ran at nice {args.nice} too")
    if args.pin_services and "production" in args.backend_names and services_here and layout.load is not None:
        undo.append(pin_services(layout.load))
        notes.append(f"this machine's Redis and PostgreSQL ran on CPU {layout.load}, the load core")
    if args.settings:
        notes.append(
            "gateway settings changed for this run: "
            + ", ".join(f"{k}={v}" for k, v in args.settings.items())
        )
    if args.nice:
        notes.append(f"every benchmark process ran at nice {args.nice} (its autogroup too), others unchanged")
    if args.core_share is not None:
        notes.append(
            f"gateway: odock serve --workers {args.gateway_workers} pinned to the gateway core, each worker "
            f"capped at {args.core_share:g} of it by a cgroup CPU quota (standing for "
            f"{args.gateway_workers} core(s) of {args.core_share:g}); gateway CPU and RSS summed over "
            "its processes"
        )
    elif args.gateway_workers > 1:
        notes.append(
            f"gateway: odock serve --workers {args.gateway_workers}, not pinned (its workers share every "
            "core with the mock and the driver); gateway CPU and RSS are summed over its processes"
        )
    try:
        return await _measure(args, layout, notes)
    finally:
        for restore in reversed(undo):
            restore()


def _local(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


async def _measure(args: argparse.Namespace, layout: CoreLayout, notes: list[str]) -> RunReport:
    """Every measurement of the run, and the report."""
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    use_wrk = plan.use_wrk and not args.no_wrk and wrk_available()
    if plan.use_wrk and not use_wrk and not args.no_wrk:
        notes.append(
            "wrk not found (apt-get install -y wrk, or --install-tools): aiohttp driver used instead"
        )
    stamp = datetime.now(UTC)
    out = args.out or RESULTS / f"bench-{plan.name}-{stamp:%Y%m%dT%H%M%SZ}.md"
    driver = _wrk_version() if use_wrk else "aiohttp closed-loop driver (Python)"
    report = RunReport(
        command=shlex.join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
        plan=plan.name + (f" + soak {args.soak_seconds:.0f} s" if args.soak else ""),
        started_at=f"{stamp:%Y-%m-%d %H:%M} UTC",
        machine=machine(),
        layout=layout.describe(),
        driver=f"{driver} for non-streaming, aiohttp for streaming",
        mock=f"{args.mock_impl} implementation, {args.upstream_latency_ms:g} ms fixed latency",
        governance_off=f"governance {args.governance} (compare a run with --governance on to one with off)",
        notes=notes,
        gateway_workers=args.gateway_workers,
        core_share=args.core_share,
    )
    background = await wait_for_quiet(0.0, 0.0, window=0.5 if args.smoke else 2.0)
    report.notes.append(
        "background load before the run (other processes): "
        + ", ".join(f"CPU {core} {busy:.0f}%" for core, busy in sorted(background.items()))
    )
    with tempfile.TemporaryDirectory(prefix="odock-bench-") as work_dir:
        work = Path(work_dir)
        async with mock_upstream(
            layout, work, args.mock_impl, layout.load, args.upstream_latency_ms
        ) as mock_url:
            ctx = Context(args, plan, layout, work, mock_url, use_wrk, out)
            if args.compare_mock:
                report.mock_compare = await compare_mocks(ctx)
            for name in args.backend_names:
                started = time.monotonic()
                report.backends.append(await run_backend(ctx, name))
                _say(f"[{name}] done in {time.monotonic() - started:.0f} s")
    text, json_path = write(report, out)
    print(text)
    _say(f"report: {out}\nraw numbers: {json_path}")
    return report


def _wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args))
        return
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
