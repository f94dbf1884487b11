"""Rate limiters: admit a request against every scope at once, then release and reconcile.

Flow for one request (each step one await)::

    decision = await limiter.admit(request_id, checks_for(scopes))        # early / final gates
    decision.raise_if_denied()                                            # 429 with Retry-After
    ... upstream call ...
    await limiter.reconcile_tokens(decision.receipt, actual_tokens)      # post-flight
    await limiter.release(decision.receipt)                               # post-flight

``admit`` is all-or-nothing: if any enforced check refuses, nothing is taken from any scope.
Production uses :class:`RedisRateLimiter` (one Lua script call per operation, over the process's
:class:`~odock.cache.redis_link.RedisLink` or a redis-py client); the embedded
mode uses :class:`MemoryRateLimiter`. Both pass tests/contract/test_rate_limiter.py.

``admit`` and ``finish`` return an awaitable of the outcome. Over a link the Redis limiter sends
its command when they are called, so a caller can start another store's command before awaiting
either and both share one round trip (:class:`odock.pipeline.runner.Concurrently`); through a redis-py
client, and in process, the work happens when awaited.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from odock.aio import ready
from odock.cache.redis_link import RedisLink
from odock.errors import RateLimiterUnavailable
from odock.ids import fresh_hex_id
from odock.limits import lua
from odock.limits.decision import Decision, Receipt, lease_member
from odock.limits.plan import (
    LEASES,
    RATE,
    WINDOW_SECONDS,
    LimitCheck,
    Verdict,
    admission,
    storage_keys,
)

RECONCILED_TTL_SECONDS = 2 * WINDOW_SECONDS  # after that the reserved buckets have left the window


class RateLimiter(Protocol):
    """Request and token limits shared by every process that uses the same store."""

    def admit(self, request_id: str, checks: Sequence[LimitCheck]) -> Awaitable[Decision]:
        """Take every check's amount if all enforced checks pass, else take nothing."""

    async def reconcile_tokens(self, receipt: Receipt, actual_tokens: int) -> None:
        """Adjust the receipt's TPM reservations to the actual usage (once; later calls do nothing)."""

    async def release(self, receipt: Receipt) -> None:
        """Free the receipt's concurrency leases (idempotent)."""

    def finish(self, receipts: Sequence[Receipt], actual_tokens: int) -> Awaitable[None]:
        """Release every receipt's leases and reconcile its TPM reservations, as one operation."""


class MemoryRateLimiter:
    """The in-process limiter: atomic because no await happens between checking and taking."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sweep_every: int = 10_000) -> None:
        self._clock = clock
        self._sweep_every = sweep_every  # admissions between sweeps of idle state
        self._arrivals: dict[str, float] = {}  # token bucket: theoretical arrival time
        self._windows: dict[str, _Window] = {}
        self._leases: dict[str, dict[str, float]] = {}  # lease member → expiry
        # Receipts whose TPM reservations are still to be reconciled: token → admission second.
        # Reconciling removes the token, so a repeat finds nothing to do; the process remembers
        # only requests in flight, not every reconciled receipt for a minute (at thousands of
        # requests per second, markers were megabytes). A token left behind is swept once its
        # buckets have left the window, when reconciling it could not change anything.
        self._unreconciled: dict[str, int] = {}
        self._admissions = 0

    async def admit(self, request_id: str, checks: Sequence[LimitCheck]) -> Decision:
        """Take every check's amount if all enforced checks pass, else take nothing."""
        if not checks:
            return Decision(receipt=Receipt(request_id, ""))
        keys = storage_keys("", checks)
        now = self._clock()
        verdicts = [self._evaluate(check, key, now) for check, key in zip(checks, keys, strict=True)]
        token = fresh_hex_id(64)
        decision = admission(request_id, token, checks, keys, verdicts, math.floor(now))
        if decision.allowed:
            member = lease_member(request_id, token)
            for check, key in zip(checks, keys, strict=True):
                self._take(check, key, now, member)
            if decision.receipt is not None and decision.receipt.reservations:
                self._unreconciled[token] = math.floor(now)
        self._admissions += 1
        if self._admissions % self._sweep_every == 0:
            self._sweep(now)
        return decision

    async def reconcile_tokens(self, receipt: Receipt, actual_tokens: int) -> None:
        """Adjust the receipt's TPM reservations to the actual usage (once; later calls do nothing)."""
        if self._unreconciled.pop(receipt.token, None) is None:
            return
        now = self._clock()
        for reservation in receipt.reservations:
            window = self._live_window(reservation.key, now)
            if window is not None:
                window.adjust(reservation.bucket, max(actual_tokens, 0) - reservation.amount)

    async def release(self, receipt: Receipt) -> None:
        """Free the receipt's concurrency leases (idempotent)."""
        for key in receipt.leases:
            self._leases.get(key, {}).pop(receipt.lease_member, None)

    async def finish(self, receipts: Sequence[Receipt], actual_tokens: int) -> None:
        """Release every receipt's leases and reconcile its TPM reservations, as one operation."""
        for receipt in receipts:
            await self.release(receipt)
            await self.reconcile_tokens(receipt, actual_tokens)

    def held_counters(self) -> int:
        """How many counters (buckets, windows, lease sets) are held in memory."""
        return len(self._arrivals) + len(self._windows) + len(self._leases)

    def remembered_receipts(self) -> int:
        """How many admitted receipts still wait for their TPM reconcile."""
        return len(self._unreconciled)

    def _evaluate(self, check: LimitCheck, key: str, now: float) -> Verdict:
        kind = check.kind
        if kind is RATE:
            return _bucket_verdict(check, self._arrivals.get(key, now), now)
        if kind is LEASES:
            leases = self._leases.get(key, {})
            if len(leases) >= check.limit:  # only a full set needs its expired leases swept
                for member in [m for m, expiry in leases.items() if expiry <= now]:
                    del leases[member]
            if len(leases) < check.limit:
                return Verdict(True, check.limit - len(leases) - 1, 0.0)
            return Verdict(False, 0, 1.0)
        return _window_verdict(check, self._live_window(key, now), now)

    def _take(self, check: LimitCheck, key: str, now: float, member: str) -> None:
        kind = check.kind
        if kind is RATE:
            self._arrivals[key] = max(self._arrivals.get(key, now), now) + 1 / check.rate
        elif kind is LEASES:
            self._leases.setdefault(key, {})[member] = now + check.lease_ttl
        else:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window()
            window.add(math.floor(now), check.amount)

    def _live_window(self, key: str, now: float) -> _Window | None:
        window = self._windows.get(key)
        if window is not None:
            window.expire(math.floor(now) - WINDOW_SECONDS)
        return window

    def _sweep(self, now: float) -> None:
        # Bound memory: forget state that no longer limits anything.
        self._arrivals = {k: tat for k, tat in self._arrivals.items() if tat > now}
        self._windows = {k: w for k in list(self._windows) if (w := self._live_window(k, now)) and w.buckets}
        self._leases = {k: {m: e for m, e in v.items() if e > now} for k, v in self._leases.items()}
        self._leases = {k: v for k, v in self._leases.items() if v}
        cutoff = math.floor(now) - WINDOW_SECONDS
        self._unreconciled = {t: second for t, second in self._unreconciled.items() if second > cutoff}


class _Window:
    """One sliding minute: counts per second, oldest first, and their running total."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}  # second → count, in insertion (= time) order
        self.total = 0

    def add(self, second: int, amount: int) -> None:
        """Count ``amount`` at ``second``."""
        buckets = self.buckets
        if buckets and second not in buckets and second < next(reversed(buckets)):
            # Only a clock that went backwards gets here; keep the buckets in time order.
            buckets[second] = 0
            self.buckets = buckets = dict(sorted(buckets.items()))
        buckets[second] = buckets.get(second, 0) + amount
        self.total += amount

    def adjust(self, second: int, delta: int) -> None:
        """Move the count at ``second`` by ``delta`` (never below zero); gone seconds are ignored."""
        count = self.buckets.get(second)
        if count is not None:
            updated = max(0, count + delta)
            self.buckets[second] = updated
            self.total += updated - count

    def expire(self, cutoff: int) -> None:
        """Forget every second up to ``cutoff``."""
        buckets = self.buckets
        while buckets:
            oldest = next(iter(buckets))
            if oldest > cutoff:
                return
            self.total -= buckets.pop(oldest)


def _bucket_verdict(check: LimitCheck, arrival: float, now: float) -> Verdict:
    """GCRA: a request conforms if it arrives no earlier than ``capacity`` intervals before its TAT."""
    interval = 1 / check.rate
    new_arrival = max(arrival, now) + interval
    allow_at = new_arrival - check.limit * interval
    if allow_at > now + 1e-6:  # 1 µs of slack: sums of float intervals drift
        return Verdict(False, 0, allow_at - now)
    return Verdict(True, math.floor((now - allow_at) / interval + 1e-6), new_arrival - now)


def _window_verdict(check: LimitCheck, window: _Window | None, now: float) -> Verdict:
    """Sliding minute of one-second buckets: at most ``limit`` in the 60 buckets ending now."""
    buckets = window.buckets if window is not None else {}
    total = window.total if window is not None else 0
    if total + check.amount <= check.limit:
        oldest = next(iter(buckets), math.floor(now))
        return Verdict(True, check.limit - total - check.amount, oldest + WINDOW_SECONDS - now)
    if check.amount <= check.limit:
        excess = total + check.amount - check.limit
        for second in buckets:  # oldest first
            excess -= buckets[second]
            if excess <= 0:
                return Verdict(False, 0, second + WINDOW_SECONDS - now)
    return Verdict(False, 0, float(WINDOW_SECONDS))


class RedisRateLimiter:
    """The shared limiter: one Lua script call per operation, clocked by Redis ``TIME``."""

    def __init__(self, redis: Redis | RedisLink, prefix: str = "odock:") -> None:
        self._prefix = prefix
        # register_script sends EVALSHA and loads the script once on NOSCRIPT (both clients).
        self._admit = redis.register_script(lua.ADMIT)
        self._release = redis.register_script(lua.RELEASE)
        self._reconcile = redis.register_script(lua.RECONCILE)
        self._finish = redis.register_script(lua.FINISH)

    def admit(self, request_id: str, checks: Sequence[LimitCheck]) -> Awaitable[Decision]:
        """Take every check's amount if all enforced checks pass, else take nothing (sent now)."""
        if not checks:
            return ready(Decision(receipt=Receipt(request_id, "")))
        keys = storage_keys(self._prefix, checks)
        token = fresh_hex_id(64)
        args: list[str | int] = [lease_member(request_id, token)]
        for check in checks:
            # A kind is a str enum: it is packed as its value.
            ttl_ms = max(1, round(check.lease_ttl * 1000))
            args += (check.kind, check.limit, check.amount, repr(check.rate), ttl_ms, int(check.shadow))
        return self._decision(self._admit(keys=keys, args=args), request_id, token, checks, keys)

    @staticmethod
    async def _decision(
        sent: Awaitable[list[int]], request_id: str, token: str, checks: Sequence[LimitCheck], keys: list[str]
    ) -> Decision:
        raw = await _reply(sent)
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
        await _reply(self._reconcile(keys=keys, args=args))

    async def release(self, receipt: Receipt) -> None:
        """Free the receipt's concurrency leases (idempotent)."""
        if receipt.leases:
            await _reply(self._release(keys=list(receipt.leases), args=[receipt.lease_member]))

    def finish(self, receipts: Sequence[Receipt], actual_tokens: int) -> Awaitable[None]:
        """Release every receipt's leases and reconcile its TPM reservations, as one operation (sent now)."""
        lease_keys: list[str] = []
        members: list[str | int] = []
        group_keys: list[str] = []
        group_args: list[str | int] = []
        groups = 0
        for receipt in receipts:
            lease_keys += receipt.leases
            members += [receipt.lease_member] * len(receipt.leases)
            if receipt.reservations:
                groups += 1
                group_keys.append(f"{self._prefix}rl:receipt:{receipt.token}")
                group_args += [RECONCILED_TTL_SECONDS * 1000, len(receipt.reservations)]
                for reservation in receipt.reservations:
                    group_keys.append(reservation.key)
                    group_args += [reservation.bucket, max(actual_tokens, 0) - reservation.amount]
        if not lease_keys and not groups:
            return ready(None)
        args: list[str | int] = [len(lease_keys), groups, *members, *group_args]
        return _reply(self._finish(keys=lease_keys + group_keys, args=args))


async def _reply(sent: Awaitable[Any]) -> Any:
    """A script's reply; a store that cannot answer is ``RateLimiterUnavailable``."""
    try:
        return await sent
    except (RedisError, OSError) as error:
        raise RateLimiterUnavailable(f"rate-limit store failed: {type(error).__name__}") from error
