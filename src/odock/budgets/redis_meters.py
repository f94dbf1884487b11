"""The production counter store: budget and quota windows in Redis, shared by every replica.

Every operation is one Lua script call (``meter_scripts``), so reserve's check-and-hold across
all lines is atomic against every other gateway process. Expiry clocks use Redis' own ``TIME``
so replicas with skewed clocks agree. Any failure to talk to Redis becomes
``MeterStoreUnavailable``; the caller decides whether that fails closed (the default) or open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from odock.budgets import meter_scripts
from odock.budgets.meters import (
    DEFAULT_REMEMBER_SECONDS,
    MeterLine,
    MeterReading,
    ReleaseOutcome,
    ReserveOutcome,
    ReserveResult,
    SettleOutcome,
    Shortfall,
    check_amount,
    check_lines,
)
from odock.cache.redis_link import RedisLink
from odock.errors import MeterStoreUnavailable
from odock.ids import RequestId

T = TypeVar("T")


class RedisMeterStore:
    """Window counters in Redis; every key lives under ``<prefix>meter:``."""

    def __init__(
        self, redis: Redis | RedisLink, prefix: str, *, remember_seconds: float = DEFAULT_REMEMBER_SECONDS
    ) -> None:
        self._prefix = prefix + "meter:"
        self._counter_prefix = self._prefix + "c:"
        self._index = self._prefix + "expiry"
        self._remember_ms = _ms(remember_seconds)
        self._reserve = redis.register_script(meter_scripts.RESERVE)
        self._settle = redis.register_script(meter_scripts.SETTLE)
        self._release = redis.register_script(meter_scripts.RELEASE)
        self._prime = redis.register_script(meter_scripts.PRIME)
        self._expired = redis.register_script(meter_scripts.EXPIRED)
        self._snapshot = redis.register_script(meter_scripts.SNAPSHOT)

    def reserve(
        self, request_id: RequestId, lines: Sequence[MeterLine], ttl_seconds: float
    ) -> Awaitable[ReserveResult]:
        """Hold every line's amount, or nothing; a repeat returns the first outcome (sent now)."""
        check_lines(lines, ttl_seconds)
        ttl = _ms(ttl_seconds)
        args: list[str | int] = [self._counter_prefix, ttl, ttl, request_id]
        for line in lines:
            args.extend((line.key, line.amount, line.limit))
        sent = self._reserve(keys=[self._record(request_id), self._index], args=args)
        return _answer(sent, lambda reply: _reserve_result([_text(part) for part in reply]))

    def settle(self, request_id: RequestId, actuals: Mapping[str, int]) -> Awaitable[SettleOutcome]:
        """Replace the request's reservation by its actual amounts (sent now)."""
        args: list[str | int] = [self._counter_prefix, self._remember_ms, request_id]
        for key, amount in actuals.items():
            check_amount(amount, "actual")
            args.extend((key, amount))
        sent = self._settle(keys=[self._record(request_id), self._index], args=args)
        return _answer(sent, lambda reply: SettleOutcome(_text(reply)))

    def release(self, request_id: RequestId) -> Awaitable[ReleaseOutcome]:
        """Drop the request's reservation (sent now)."""
        args: list[str | int] = [self._counter_prefix, self._remember_ms, request_id]
        sent = self._release(keys=[self._record(request_id), self._index], args=args)
        return _answer(sent, lambda reply: ReleaseOutcome(_text(reply)))

    async def prime(
        self, key: str, used: int, reserved: int, limit: int, *, ttl_seconds: float | None = None
    ) -> bool:
        """Create a cold counter from the ledger; False when it already exists."""
        for value, name in ((used, "used"), (reserved, "reserved"), (limit, "limit")):
            check_amount(value, name)
        ttl: str | int = "" if ttl_seconds is None else _ms(ttl_seconds)
        async with _translated():
            reply = await self._prime(keys=[self._counter_prefix + key], args=[used, reserved, limit, ttl])
        return bool(reply)

    async def expired(self, now: datetime | None = None, limit: int = 100) -> list[RequestId]:
        """Request ids whose reservations outlived their time to live, oldest first."""
        cutoff = "" if now is None else int(now.timestamp() * 1000)
        async with _translated():
            reply = await self._expired(keys=[self._index], args=[cutoff, limit])
        return [RequestId(_text(member)) for member in reply]

    async def snapshot(self, keys: Iterable[str]) -> dict[str, MeterReading]:
        """The state of the given counters (cold ones are absent)."""
        names = list(keys)
        if not names:
            return {}
        async with _translated():
            reply = await self._snapshot(keys=[self._counter_prefix + name for name in names])
        readings = {}
        for name, (used, reserved, limit) in zip(names, reply, strict=True):
            if used is not None:
                readings[name] = MeterReading(int(used), int(reserved), int(limit))
        return readings

    def _record(self, request_id: str) -> str:
        return self._prefix + "r:" + request_id


def _reserve_result(reply: list[str]) -> ReserveResult:
    """Decode the reserve script's reply (see ``meter_scripts.RESERVE``)."""
    status, rest = reply[0], reply[1:]
    if status == "reserved":
        return ReserveResult(ReserveOutcome.RESERVED)
    if status == "cold":
        return ReserveResult(ReserveOutcome.COLD, cold_keys=tuple(rest))
    if status == "rejected":
        return ReserveResult(ReserveOutcome.REJECTED, _shortfall(rest))
    first, fields = rest[0], rest[1:]
    if first == "rejected":
        return ReserveResult(ReserveOutcome.REJECTED, _shortfall(fields), replayed=True)
    if first == "reserved":
        return ReserveResult(ReserveOutcome.RESERVED, replayed=True)
    return ReserveResult(ReserveOutcome.CLOSED, replayed=True)


def _shortfall(fields: list[str]) -> Shortfall:
    key, limit, used, reserved, requested = fields
    return Shortfall(key, int(limit), int(used), int(reserved), int(requested))


def _text(value: Any) -> str:
    """A reply element as text, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


async def _answer(sent: Awaitable[Any], decode: Callable[[Any], T]) -> T:
    """A script's reply, decoded; a failure to reach Redis is ``MeterStoreUnavailable``."""
    async with _translated():
        reply = await sent
    return decode(reply)


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """Turn any failure to reach Redis into ``MeterStoreUnavailable``."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise MeterStoreUnavailable(f"meter store unreachable: {type(exc).__name__}") from exc
