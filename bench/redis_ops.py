"""What one governed request costs Redis: the commands it executes and the CPU they take.

Starts a private ``redis-server`` (a free port, no persistence, stopped at exit) and sends it N
simulated governed requests through the real :class:`RedisRateLimiter` and
:class:`RedisMeterStore`, over one :class:`RedisLink` as the gateway does, shaped like the
benchmark tenant (``bench/tenant.py``: the never-denying policy on the organisation, the key and
the chat model; an organisation budget and a key REQUESTS quota). One request is::

    early gate   admit: burst, RPM and concurrency of the organisation and the key
    budgets      reserve the budget and the quota
    final gate   admit: burst, RPM and concurrency of the model, TPM of all three scopes
    post-flight  finish (release every lease, reconcile TPM), settle the budget and the quota

Per request it prints the commands Redis executed (``INFO commandstats`` deltas, which count
the commands scripts call as well as the ``EVALSHA`` calls themselves), by command, and Redis's
CPU time (``INFO cpu`` user + system delta, and the ``EVALSHA`` usec_per_call of the run). CPU
time on a shared machine is noisy, so when ``perf`` can count hardware events it also prints
the instructions redis-server retired per request (user + kernel), which barely vary between
runs. Requests run one after another, so the figures are per request, not under contention.

    .venv/bin/python bench/redis_ops.py [--requests N] [--redis-server PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python bench/redis_ops.py): make the repository root importable for `bench.*`.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.exceptions import RedisError

from bench.processes import free_port
from bench.tenant import NEVER_DENYING_POLICY
from odock.budgets.meters import MeterLine
from odock.budgets.redis_meters import RedisMeterStore
from odock.cache.redis_link import RedisLink
from odock.ids import new_request_id
from odock.limits.limiter import RedisRateLimiter
from odock.limits.plan import CheckPlanner
from odock.limits.policy import Scope, ScopePolicy, parse_policy

WARM_UP = 50
ESTIMATED_TOKENS, ACTUAL_TOKENS = 40, 24  # a short chat prompt with max_tokens 16, as bench/cases.py
BUDGET = MeterLine("budget:bench:v1:w0", 40_000, 10**18)  # estimated cost, nanos USD
QUOTA = MeterLine("quota:bench:v1:w0", 1, 10**12)  # one request
RESERVATION_TTL = 900.0  # settings.budget_reservation_ttl_seconds
IGNORED = frozenset({"info", "config", "ping"})  # the measurement's own commands


@dataclass(frozen=True)
class Snapshot:
    """Redis's counters at one moment: calls and µs per command, and CPU seconds."""

    calls: dict[str, int]
    usec: dict[str, int]
    cpu_seconds: float


@dataclass(frozen=True)
class Cost:
    """What ``requests`` requests cost Redis, per request."""

    requests: int
    commands: dict[str, float]  # command → calls per request, most frequent first
    cpu_us: float  # used_cpu_user + used_cpu_sys per request
    evalsha_us: float  # EVALSHA usec_per_call over the run
    instructions: float | None = None  # retired by redis-server per request, when perf can count

    @property
    def total(self) -> float:
        """Every command per request, EVALSHA included."""
        return sum(self.commands.values())

    def report(self) -> str:
        """The human-readable figures."""
        scripted = self.total - self.commands.get("evalsha", 0.0)
        lines = [
            f"{self.requests} governed requests",
            f"commands per request: {self.total:.2f} (evalsha {self.commands.get('evalsha', 0.0):.2f}, "
            f"called from scripts {scripted:.2f})",
            *(f"  {name:18} {calls:6.2f}" for name, calls in self.commands.items()),
            f"Redis CPU per request: {self.cpu_us:.1f} µs (INFO cpu used_cpu_user + used_cpu_sys)",
            f"EVALSHA: {self.evalsha_us:.2f} µs per call (INFO commandstats usec_per_call)",
        ]
        if self.instructions is not None:
            lines.append(f"redis-server instructions per request: {self.instructions:,.0f} (perf stat)")
        return "\n".join(lines)


def info_fields(text: str) -> dict[str, str]:
    """The ``name:value`` lines of an ``INFO`` reply (section headers and blank lines skipped)."""
    fields = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and not line.startswith("#"):
            fields[name] = value
    return fields


def snapshot(commandstats: str, cpu: str) -> Snapshot:
    """Counters from ``INFO commandstats`` and ``INFO cpu`` replies."""
    calls, usec = {}, {}
    for name, value in info_fields(commandstats).items():
        if not name.startswith("cmdstat_"):
            continue
        stats = dict(part.split("=", 1) for part in value.split(","))
        command = name.removeprefix("cmdstat_")
        calls[command], usec[command] = int(stats["calls"]), int(stats["usec"])
    fields = info_fields(cpu)
    return Snapshot(calls, usec, float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"]))


def cost(before: Snapshot, after: Snapshot, requests: int) -> Cost:
    """The per-request difference between two snapshots (the measurement's own commands left out)."""
    deltas = {
        name: after.calls[name] - before.calls.get(name, 0) for name in after.calls if name not in IGNORED
    }
    commands = {name: n / requests for name, n in sorted(deltas.items(), key=lambda kv: (-kv[1], kv[0])) if n}
    evals = deltas.get("evalsha", 0)
    evalsha_usec = after.usec.get("evalsha", 0) - before.usec.get("evalsha", 0)
    return Cost(
        requests,
        commands,
        cpu_us=(after.cpu_seconds - before.cpu_seconds) * 1e6 / requests,
        evalsha_us=evalsha_usec / evals if evals else 0.0,
    )


def perf_instructions(output: str) -> int | None:
    """The instruction count in ``perf stat -x,`` output (None when perf could not count it)."""
    for line in output.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("instructions") and fields[0].isdigit():
            return int(fields[0])
    return None


class InstructionCounter:
    """``perf stat`` attached to a process from :meth:`start` to :meth:`stop`."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._perf: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Attach perf (nothing happens when perf is not installed)."""
        perf = shutil.which("perf")
        if perf is None:
            return
        argv = [perf, "stat", "-x,", "-e", "instructions", "-p", str(self._pid)]
        self._perf = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        await asyncio.sleep(0.3)  # perf attaches asynchronously; an idle Redis retires next to nothing

    async def stop(self) -> int | None:
        """Detach; the instructions retired meanwhile, or None when perf could not count them."""
        if self._perf is None:
            return None
        self._perf.send_signal(signal.SIGINT)
        _, errors = await asyncio.wait_for(self._perf.communicate(), 10)
        return perf_instructions(errors.decode())


@dataclass(frozen=True)
class PrivateRedis:
    """A throwaway redis-server."""

    url: str
    pid: int


@contextlib.contextmanager
def private_redis(binary: str) -> Iterator[PrivateRedis]:
    """A redis-server on a free port without persistence; stopped (killed if it lingers) at exit."""
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield PrivateRedis(f"redis://127.0.0.1:{port}/0", process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def _ready(link: RedisLink, deadline_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            await link.execute("PING")
            return
        except RedisError as error:  # refused until the server listens
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from error
            await asyncio.sleep(0.02)


async def _snapshot(link: RedisLink) -> Snapshot:
    commandstats, cpu = await link.pipeline([("INFO", "commandstats"), ("INFO", "cpu")])
    return snapshot(commandstats.decode(), cpu.decode())


class GovernedRequests:
    """The benchmark tenant's Redis traffic: two gates, a reservation, and the post-flight."""

    def __init__(self, link: RedisLink) -> None:
        self.limiter = RedisRateLimiter(link, "odock:")
        self.meters = RedisMeterStore(link, "odock:")
        policy = parse_policy(NEVER_DENYING_POLICY)
        org, key, model = (
            ScopePolicy(scope, scope_id, policy)
            for scope, scope_id in (
                (Scope.ORGANISATION, "org"),
                (Scope.API_KEY, "key"),
                (Scope.MODEL, "model"),
            )
        )
        planner = CheckPlanner()
        self.early = planner.requests((org, key))
        self.final = planner.requests((model,)) + planner.tokens((org, key, model), ESTIMATED_TOKENS)

    async def prime(self) -> None:
        """Warm the budget and quota counters, as the budget stage does from the ledger."""
        for line in (BUDGET, QUOTA):
            await self.meters.prime(line.key, 0, 0, line.limit)

    async def one(self) -> None:
        """One governed request's Redis calls, in the pipeline's order."""
        request_id = new_request_id()
        early = await self.limiter.admit(request_id, self.early)
        reserved = await self.meters.reserve(request_id, [BUDGET, QUOTA], RESERVATION_TTL)
        final = await self.limiter.admit(request_id, self.final)
        assert reserved.admitted
        assert early.receipt is not None
        assert final.receipt is not None
        await self.limiter.finish([final.receipt, early.receipt], ACTUAL_TOKENS)
        await self.meters.settle(request_id, {BUDGET.key: 30_000, QUOTA.key: 1})


async def measure(redis: PrivateRedis, requests: int) -> Cost:
    """Run ``requests`` governed requests (after a warm-up) against ``redis``."""
    link = RedisLink(redis.url, timeout=10, connect_timeout=10)
    counter = InstructionCounter(redis.pid)
    try:
        await _ready(link)
        traffic = GovernedRequests(link)
        await traffic.prime()
        for _ in range(WARM_UP):
            await traffic.one()
        await counter.start()
        before = await _snapshot(link)
        for _ in range(requests):
            await traffic.one()
        after = await _snapshot(link)
    finally:
        instructions = await counter.stop()
        await link.close()
    measured = cost(before, after, requests)
    if instructions is None:
        return measured
    return replace(measured, instructions=instructions / requests)


def main() -> None:
    """Parse the command line, measure on a private Redis, print the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="governed requests to measure (default 2000)"
    )
    parser.add_argument("--redis-server", default="/usr/bin/redis-server", help="the redis-server binary")
    args = parser.parse_args()
    with private_redis(args.redis_server) as redis:
        print(asyncio.run(measure(redis, args.requests)).report())


if __name__ == "__main__":
    main()
