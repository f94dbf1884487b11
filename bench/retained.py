"""What the embedded mode's in-process governance state holds per request of sustained load.

The in-process rate limiter and meter store must remember a little about finished requests (a
reconcile or a settle may be repeated), so under sustained load they hold a plateau of memory
proportional to the request rate. This drives both through the benchmark's governance (the
policy of ``bench/tenant.py`` on organisation, key and model; an organisation budget and a key
quota) on a simulated clock at ``--rps`` for ``--seconds``, and prints the bytes they hold
(``tracemalloc``), in total and per request of one second's load. Deterministic: no timing.

    .venv/bin/python bench/retained.py [--rps 1800] [--seconds 90]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python bench/retained.py): make the repository root importable for `bench.*`.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.tenant import NEVER_DENYING_POLICY
from odock.budgets.meters import MemoryMeterStore, MeterLine
from odock.ids import RequestId, ordered_hex_id
from odock.limits.limiter import MemoryRateLimiter
from odock.limits.plan import checks_for
from odock.limits.policy import Scope, ScopePolicy, parse_policy


class SimulatedClock:
    """A clock the driver moves by one request's share of a second per request."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


async def one_request(limiter: MemoryRateLimiter, meters: MemoryMeterStore, plan: Plan) -> None:
    """The governance a request goes through: two admissions, a reserve, a settle and a finish."""
    early = await limiter.admit("req", plan.early)
    final = await limiter.admit("req", plan.final)
    record = RequestId(ordered_hex_id())
    await meters.reserve(record, plan.lines, ttl_seconds=600)
    await meters.settle(record, {line.key: 1 for line in plan.lines})
    receipts = [d.receipt for d in (early, final) if d.receipt is not None]
    await limiter.finish(receipts, 120)


class Plan:
    """The checks and meter lines of the benchmark tenant's requests."""

    def __init__(self) -> None:
        policy = parse_policy(NEVER_DENYING_POLICY)
        scopes = (Scope.ORGANISATION, Scope.API_KEY, Scope.MODEL)
        org, key, model = (ScopePolicy(scope, f"{scope}-1", policy) for scope in scopes)
        self.early = checks_for([org, key])
        self.final = checks_for([model]) + checks_for([org, key, model], requests=False, tokens=150)
        self.lines = [MeterLine("budget:b1:0", 1_000, 10**18), MeterLine("quota:q1:0", 1, 10**18)]


async def held_bytes(rps: int, seconds: int, measure: Callable[[], int]) -> tuple[int, int, int]:
    """Bytes held after ``seconds`` of ``rps`` requests (and the limiter's and store's table sizes)."""
    clock = SimulatedClock(1_000_000.0)
    limiter = MemoryRateLimiter(clock)
    meters = MemoryMeterStore(clock, remember_seconds=60)
    plan = Plan()
    for line in plan.lines:
        await meters.prime(line.key, 0, 0, line.limit)
    await one_request(limiter, meters, plan)
    gc.collect()
    base = measure()
    for _ in range(rps * seconds):
        clock.now += 1 / rps
        await one_request(limiter, meters, plan)
    gc.collect()
    return measure() - base, limiter.held_counters(), meters.remembered_requests()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rps", type=int, default=1800, help="simulated requests per second")
    parser.add_argument("--seconds", type=int, default=90, help="simulated seconds of load")
    args = parser.parse_args()
    tracemalloc.start()
    held, counters, remembered = asyncio.run(
        held_bytes(args.rps, args.seconds, lambda: tracemalloc.get_traced_memory()[0])
    )
    print(
        f"{args.rps} requests/s for {args.seconds} s: the limiter and the meter store hold "
        f"{held / 2**20:.1f} MiB ({held / args.rps:,.0f} bytes per request/s of load; "
        f"{counters} limiter counters, {remembered} remembered meter requests)"
    )


if __name__ == "__main__":
    main()
