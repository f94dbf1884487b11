"""Rate limiters: admit a request against every scope at once, then release and reconcile.

Flow for one request (each step one await)::

    decision = await limiter.admit(request_id, checks_for(scopes))        # early / final gates
    decision.raise_if_denied()                                            # 429 with Retry-After
    ... upstream call ...
    await limiter.reconcile_tokens(decision.receipt, actual_tokens)      # post-flight
    await limiter.release(decision.receipt)                               # post-flight

``admit`` is all-or-nothing: if any enforced check refuses, nothing is taken from any scope.
Production uses :class:`RedisRateLimiter` (one Lua script call per operation); the embedded
mode uses :class:`MemoryRateLimiter`. Both pass tests/contract/test_rate_limiter.py.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from odock.errors import RateLimiterUnavailable
from odock.limits import lua
from odock.limits.decision import Decision, Receipt, lease_member
from odock.limits.plan import (
    WINDOW_SECONDS,
    LimitCheck,
    LimitKind,
    Verdict,
    admission,
    storage_keys,
)

RECONCILED_TTL_SECONDS = 2 * WINDOW_SECONDS  # after that the reserved buckets have left the window


class RateLimiter(Protocol):
    """Request and token limits shared by every process that uses the same store."""

    async def admit(self, request_id: str, checks: Sequence[LimitCheck]) -> Decision:
        """Take every check's amount if all enforced checks pass, else take nothing."""

    async def reconcile_tokens(self, receipt: Receipt, actual_tokens: int) -> None:
        """Adjust the receipt's TPM reservations to the actual usage (once; later calls do nothing)."""

    async def release(self, receipt: Receipt) -> None:
        """Free the receipt's concurrency leases (idempotent)."""


class MemoryRateLimiter:
    """The in-process limiter: atomic because no await happens between checking and taking."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sweep_every: int = 10_000) -> None:
        self._clock = clock
        self._sweep_every = sweep_every  # admissions between sweeps of idle state
        self._arrivals: dict[str, float] = {}  # token bucket: theoretical arrival time
        self._windows: dict[str, dict[int, int]] = {}  # second → count
        self._leases: dict[str, dict[str, float]] = {}  # lease member → expiry
        self._reconciled: dict[str, float] = {}  # receipt token → marker expiry
        self._admissions = 0

    async def admit(self, request_id: str, checks: Sequence[LimitCheck]) -> Decision:
        """Take every check's amount if all enforced checks pass, else take nothing."""
        if not checks:
            return Decision(receipt=Receipt(request_id, ""))
        keys = storage_keys("", checks)
        now = self._clock()
        verdicts = [self._evaluate(check, key, now) for check, key in zip(checks, keys, strict=True)]
        token = secrets.token_hex(8)
        decision = admission(request_id, token, checks, keys, verdicts, math.floor(now))
        if decision.allowed:
            member = lease_member(request_id, token)
            for check, key in zip(checks, keys, strict=True):
                self._take(check, key, now, member)
        self._admissions += 1
        if self._admissions % self._sweep_every == 0:
            self._sweep(now)
        return decision

    async def reconcile_tokens(self, receipt: Receipt, actual_tokens: int) -> None:
        """Adjust the receipt's TPM reservations to the actual usage (once; later calls do nothing)."""
        now = self._clock()
        if not receipt.reservations or self._reconciled.get(receipt.token, 0.0) > now:
            return
        self._reconciled[receipt.token] = now + RECONCILED_TTL_SECONDS
        for reservation in receipt.reservations:
            buckets = self._live_buckets(reservation.key, now)
            if reservation.bucket in buckets:
                delta = max(actual_tokens, 0) - reservation.amount
                buckets[reservation.bucket] = max(0, buckets[reservation.bucket] + delta)

    async def release(self, receipt: Receipt) -> None:
        """Free the receipt's concurrency leases (idempotent)."""
        for key in receipt.leases:
            self._leases.get(key, {}).pop(receipt.lease_member, None)

    def held_counters(self) -> int:
        """How many counters (buckets, windows, lease sets) are held in memory."""
        return len(self._arrivals) + len(self._windows) + len(self._leases)

    def _evaluate(self, check: LimitCheck, key: str, now: float) -> Verdict:
        if check.kind is LimitKind.RATE:
            return _bucket_verdict(check, self._arrivals.get(key, now), now)
        if check.kind is LimitKind.LEASES:
            leases = self._leases.get(key, {})
            if len(leases) >= check.limit:  # only a full set needs its expired leases swept
                for member in [m for m, expiry in leases.items() if expiry <= now]:
                    del leases[member]
            if len(leases) < check.limit:
                return Verdict(True, check.limit - len(leases) - 1, 0.0)
            return Verdict(False, 0, 1.0)
        return _window_verdict(check, self._live_buckets(key, now), now)

    def _take(self, check: LimitCheck, key: str, now: float, member: str) -> None:
        if check.kind is LimitKind.RATE:
            self._arrivals[key] = max(self._arrivals.get(key, now), now) + 1 / check.rate
        elif check.kind is LimitKind.LEASES:
            self._leases.setdefault(key, {})[member] = now + check.lease_ttl
        else:
            buckets = self._windows.setdefault(key, {})
            second = math.floor(now)
            buckets[second] = buckets.get(second, 0) + check.amount

    def _live_buckets(self, key: str, now: float) -> dict[int, int]:
        buckets = self._windows.get(key, {})
        cutoff = math.floor(now) - WINDOW_SECONDS
        for second in [s for s in buckets if s <= cutoff]:
            del buckets[second]
        return buckets

    def _sweep(self, now: float) -> None:
        # Bound memory: forget state that no longer limits anything.
        self._arrivals = {k: tat for k, tat in self._arrivals.items() if tat > now}
        self._windows = {k: b for k in list(self._windows) if (b := self._live_buckets(k, now))}
        self._leases = {k: {m: e for m, e in v.items() if e > now} for k, v in self._leases.items()}
        self._leases = {k: v for k, v in self._leases.items() if v}
        self._reconciled = {t: e for t, e in self._reconciled.items() if e > now}


def _bucket_verdict(check: LimitCheck, arrival: float, now: float) -> Verdict:
    """GCRA: a request conforms if it arrives no earlier than ``capacity`` intervals before its TAT."""
    interval = 1 / check.rate
    new_arrival = max(arrival, now) + interval
    allow_at = new_arrival - check.limit * interval
    if allow_at > now + 1e-6:  # 1 µs of slack: sums of float intervals drift
        return Verdict(False, 0, allow_at - now)
    return Verdict(True, math.floor((now - allow_at) / interval + 1e-6), new_arrival - now)


def _window_verdict(check: LimitCheck, buckets: dict[int, int], now: float) -> Verdict:
    """Sliding minute of one-second buckets: at most ``limit`` in the 60 buckets ending now."""
    total = sum(buckets.values())
    if total + check.amount <= check.limit:
        oldest = min(buckets, default=math.floor(now))
        return Verdict(True, check.limit - total - check.amount, oldest + WINDOW_SECONDS - now)
    if check.amount <= check.limit:
        excess = total + check.amount - check.limit
        for second in sorted(buckets):
            excess -= buckets[second]
            if excess <= 0:
                return Verdict(False, 0, second + WINDOW_SECONDS - now)
    return Verdict(False, 0, float(WINDOW_SECONDS))


class RedisRateLimiter:
    """The shared limiter: one Lua script call per operation, clocked by Redis ``TIME``."""

    def __init__(self, redis: Redis, prefix: str = "odock:") -> None:
        self._prefix = prefix
        # register_script sends EVALSHA and loads the script once on NOSCRIPT.
        self._admit = redis.register_script(lua.ADMIT)
        self._release = redis.register_script(lua.RELEASE)
        self._reconcile = redis.register_script(lua.RECONCILE)

    async def admit(self, request_id: str, checks: Sequence[LimitCheck]) -> Decision:
        """Take every check's amount if all enforced checks pass, else take nothing."""
        if not checks:
            return Decision(receipt=Receipt(request_id, ""))
        keys = storage_keys(self._prefix, checks)
        token = secrets.token_hex(8)
        args: list[str | int] = [lease_member(request_id, token)]
        for check in checks:
            ttl_ms = max(1, round(check.lease_ttl * 1000))
            args += [check.kind.value, check.limit, check.amount, repr(check.rate), ttl_ms, int(check.shadow)]
        raw = await self._run(self._admit, keys, args)
        verdicts = [
            Verdict(bool(raw[i]), int(raw[i + 1]), int(raw[i + 2]) / 1000) for i in range(2, len(raw), 3)
        ]
        return admission(request_id, token, checks, keys, verdicts, int(raw[0]))

    async def reconcile_tokens(self, receipt: Receipt, actual_tokens: int) -> None:
        """Adjust the receipt's TPM reservations to the actual usage (once; later calls do nothing)."""
        if not receipt.reservations:
            return
        keys = [f"{self._prefix}rl:receipt:{receipt.token}"]
        args: list[str | int] = [RECONCILED_TTL_SECONDS * 1000]
        for reservation in receipt.reservations:
            keys.append(reservation.key)
            args += [reservation.bucket, max(actual_tokens, 0) - reservation.amount]
        await self._run(self._reconcile, keys, args)

    async def release(self, receipt: Receipt) -> None:
        """Free the receipt's concurrency leases (idempotent)."""
        if receipt.leases:
            await self._run(self._release, list(receipt.leases), [receipt.lease_member])

    @staticmethod
    async def _run(script: AsyncScript, keys: list[str], args: list[str | int]) -> list[int]:
        try:
            result: list[int] = await script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            raise RateLimiterUnavailable(f"rate-limit store failed: {type(error).__name__}") from error
        return result
