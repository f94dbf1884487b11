"""The hot-path counters of budget and quota windows: reserve → settle → release.

Each window counter (string key, e.g. ``budget:<id>:<window index>``) holds ``used``,
``reserved`` and its ``limit`` as integers (nanos USD for budgets, metric units for quotas).
The lifecycle of one request, all of it idempotent by request id:

1. ``reserve``: for every line, ``used + reserved + amount <= limit`` or nothing changes
   (all-or-nothing). A missing counter is *cold*: nothing is reserved, the caller rebuilds it
   from the durable ledger with ``prime`` (set-if-absent) and retries.
2. ``settle``: the reservation leaves ``reserved`` and the actual amount joins ``used``, even
   past the limit (the truth is recorded). Without a reservation only the actual is added.
3. ``release``: the reservation leaves ``reserved``; nothing is used.
4. ``expired``: reservations past their time to live, for the reconciliation worker.

Counters are a cache of the durable ledger, never the ledger itself. This module holds the
contract, its value types and the in-process twin; ``redis_meters`` holds the production store
and ``errors`` the 503 raised when the store is unreachable.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, NamedTuple, Protocol

from odock.ids import RequestId

MAX_AMOUNT = 2**63 - 1  # Redis integers are signed 64-bit
DEFAULT_REMEMBER_SECONDS = 3600.0
_SWEEP_FLOOR = 10_000


class MeterLine(NamedTuple):
    """One window a request must fit in: its counter key, the amount to hold and the limit."""

    key: str
    amount: int
    limit: int


class MeterReading(NamedTuple):
    """A counter's state: settled use, outstanding reservations and the limit."""

    used: int
    reserved: int
    limit: int


@dataclass(frozen=True)
class Shortfall:
    """The first line that did not fit, with the counter's state at the time."""

    key: str
    limit: int
    used: int
    reserved: int
    requested: int


class ReserveOutcome(StrEnum):
    """What a reserve did."""

    RESERVED = "reserved"  # every line is held
    REJECTED = "rejected"  # a line did not fit; nothing is held
    COLD = "cold"  # counters are missing; prime them and retry
    CLOSED = "closed"  # the request id was already settled without a reservation here


@dataclass(frozen=True)
class ReserveResult:
    """The outcome of a reserve; ``replayed`` when it repeats an earlier call's outcome."""

    outcome: ReserveOutcome
    shortfall: Shortfall | None = None
    cold_keys: tuple[str, ...] = ()
    replayed: bool = False

    @property
    def admitted(self) -> bool:
        """True when the request holds its reservation and may proceed."""
        return self.outcome is ReserveOutcome.RESERVED


class SettleOutcome(StrEnum):
    """What a settle did."""

    SETTLED = "settled"  # the reservation moved into used
    UNRESERVED = "unreserved"  # no live reservation: only the actual was added
    DUPLICATE = "duplicate"  # already settled: nothing changed


class ReleaseOutcome(StrEnum):
    """What a release did."""

    RELEASED = "released"
    NOTHING = "nothing"  # no live reservation (never made, already settled or released)


class MeterStore(Protocol):
    """Budget and quota window counters with atomic, idempotent reservations.

    ``reserve``, ``settle`` and ``release`` return an awaitable of the outcome; the Redis store
    sends its command when they are called (see :mod:`odock.limits.limiter` for why).
    """

    def reserve(
        self, request_id: RequestId, lines: Sequence[MeterLine], ttl_seconds: float
    ) -> Awaitable[ReserveResult]:
        """Hold every line's amount, or nothing; a repeat returns the first outcome."""

    def settle(self, request_id: RequestId, actuals: Mapping[str, int]) -> Awaitable[SettleOutcome]:
        """Replace the request's reservation by its actual amounts."""

    def release(self, request_id: RequestId) -> Awaitable[ReleaseOutcome]:
        """Drop the request's reservation."""

    async def prime(
        self, key: str, used: int, reserved: int, limit: int, *, ttl_seconds: float | None = None
    ) -> bool:
        """Create a cold counter from the ledger; False when it already exists."""

    async def expired(self, now: datetime | None = None, limit: int = 100) -> list[RequestId]:
        """Request ids whose reservations outlived their time to live, oldest first."""

    async def snapshot(self, keys: Iterable[str]) -> dict[str, MeterReading]:
        """The state of the given counters (cold ones are absent)."""


def check_lines(lines: Sequence[MeterLine], ttl_seconds: float) -> None:
    """Reject malformed reserve input before it reaches a store."""
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    keys = [line.key for line in lines]
    if len(set(keys)) != len(keys):
        raise ValueError("a reservation names the same counter twice")
    for line in lines:
        check_amount(line.amount, "amount")
        check_amount(line.limit, "limit")


def check_amount(value: int, name: str) -> None:
    """Amounts are non-negative integers that fit a Redis integer."""
    if not 0 <= value <= MAX_AMOUNT:
        raise ValueError(f"{name} must be between 0 and {MAX_AMOUNT}, not {value}")


@dataclass
class _Counter:
    used: int
    reserved: int
    limit: int
    expires_at: float | None


_State = Literal["reserved", "settled", "released", "rejected"]
_NO_LINES: Mapping[str, int] = MappingProxyType({})
_RESERVED = ReserveResult(ReserveOutcome.RESERVED)  # immutable: shared by every live reservation


@dataclass(slots=True)
class _Request:
    state: _State
    result: ReserveResult | None  # None when settled without ever reserving here
    lines: Mapping[str, int] = field(default_factory=lambda: _NO_LINES)  # held amounts while live
    forget_at: float | None = None  # a rejection's: when it is forgotten


# A finished request is remembered for idempotency only, and under sustained load those records
# are most of what the embedded store holds. So a request that finishes from a live reservation
# (or unknown) points at one of these shared records, and finished requests are kept in
# generations: one table per GENERATION_SECONDS of finishes, dropped whole once its newest
# member's time is up. One table of every finished request, with an entry deleted per request,
# is rebuilt by the interpreter whenever deletions have used up its free slots, sized for three
# times what it holds at that moment: under sustained load its memory stepped up and down by
# tens of MiB. A request finished twice (released, then settled) is found in its newest
# generation first.
_SETTLED = _Request("settled", _RESERVED)
_SETTLED_UNRESERVED = _Request("settled", None)
_RELEASED = _Request("released", _RESERVED)
GENERATION_SECONDS = 5.0
_REJECTION_GROUP_SECONDS = 1.0


class MemoryMeterStore:
    """The in-process counter store of the embedded mode.

    Each operation runs without awaiting, so on one event loop it is atomic. It enforces
    limits for this process only; several gateway replicas need the Redis store.
    """

    def __init__(
        self, clock: Callable[[], float] = time.time, remember_seconds: float = DEFAULT_REMEMBER_SECONDS
    ) -> None:
        self._clock = clock
        self._remember = remember_seconds
        self._counters: dict[str, _Counter] = {}
        self._requests: dict[str, _Request] = {}  # live reservations and rejections
        self._expiry: dict[str, float] = {}  # request id -> reservation expiry, live ones only
        # Finished requests (settled, released), by generation (see GENERATION_SECONDS), oldest
        # first: (when the generation is forgotten, its records).
        self._finished: deque[tuple[float, dict[str, _Request]]] = deque()
        # Rejections are remembered for the reservation's time to live instead, in groups of a
        # second (the ids in a list), each group forgotten once its members' time is up.
        self._rejected: _Forgetting = deque()
        self._sweep_above = _SWEEP_FLOOR

    async def reserve(
        self, request_id: RequestId, lines: Sequence[MeterLine], ttl_seconds: float
    ) -> ReserveResult:
        """Hold every line's amount, or nothing; a repeat returns the first outcome."""
        check_lines(lines, ttl_seconds)
        now = self._clock()
        self._sweep(now)
        known = self._known(request_id)
        if known is not None:
            return _replay(known)
        counters = [(line, self._counter(line.key, now)) for line in lines]
        cold = tuple(line.key for line, counter in counters if counter is None)
        if cold:
            return ReserveResult(ReserveOutcome.COLD, cold_keys=cold)
        warm = [(line, counter) for line, counter in counters if counter is not None]
        for line, counter in warm:
            if counter.used + counter.reserved + line.amount > line.limit:
                shortfall = Shortfall(line.key, line.limit, counter.used, counter.reserved, line.amount)
                result = ReserveResult(ReserveOutcome.REJECTED, shortfall)
                self._requests[request_id] = _Request("rejected", result, forget_at=now + ttl_seconds)
                _forget_later(self._rejected, request_id, now + ttl_seconds)
                return result
        for line, counter in warm:
            counter.reserved += line.amount
            counter.limit = line.limit
        result = _RESERVED
        self._requests[request_id] = _Request("reserved", result, {ln.key: ln.amount for ln in lines})
        self._expiry[request_id] = now + ttl_seconds
        return result

    async def settle(self, request_id: RequestId, actuals: Mapping[str, int]) -> SettleOutcome:
        """Replace the request's reservation by its actual amounts."""
        for amount in actuals.values():
            check_amount(amount, "actual")
        now = self._clock()
        self._sweep(now)
        known = self._known(request_id)
        if known is not None and known.state == "settled":
            return SettleOutcome.DUPLICATE
        outcome = SettleOutcome.UNRESERVED
        if known is not None and known.state == "reserved":
            self._unreserve(known, now)
            outcome = SettleOutcome.SETTLED
        for key, amount in actuals.items():
            counter = self._counter(key, now)
            if counter is not None:  # a cold counter is primed from the ledger, which has it
                counter.used += amount
        if known is None:
            finished = _SETTLED_UNRESERVED
        elif known.state == "reserved":
            finished = _SETTLED
        else:  # released or rejected before: a repeated reserve still replays the first outcome
            finished = _Request("settled", known.result)
        self._finish(request_id, finished, now)
        self._expiry.pop(request_id, None)
        return outcome

    async def release(self, request_id: RequestId) -> ReleaseOutcome:
        """Drop the request's reservation."""
        now = self._clock()
        self._sweep(now)
        known = self._known(request_id)
        self._expiry.pop(request_id, None)
        if known is None or known.state != "reserved":
            return ReleaseOutcome.NOTHING
        self._unreserve(known, now)
        self._finish(request_id, _RELEASED, now)
        return ReleaseOutcome.RELEASED

    async def prime(
        self, key: str, used: int, reserved: int, limit: int, *, ttl_seconds: float | None = None
    ) -> bool:
        """Create a cold counter from the ledger; False when it already exists."""
        for value, name in ((used, "used"), (reserved, "reserved"), (limit, "limit")):
            check_amount(value, name)
        now = self._clock()
        if self._counter(key, now) is not None:
            return False
        expires_at = None if ttl_seconds is None else now + ttl_seconds
        self._counters[key] = _Counter(used, reserved, limit, expires_at)
        return True

    def remembered_requests(self) -> int:
        """How many request records are held (live reservations, rejections, finished requests)."""
        return len(self._requests) + sum(len(records) for _, records in self._finished)

    async def expired(self, now: datetime | None = None, limit: int = 100) -> list[RequestId]:
        """Request ids whose reservations outlived their time to live, oldest first."""
        cutoff = self._clock() if now is None else now.timestamp()
        due = sorted((at, rid) for rid, at in self._expiry.items() if at <= cutoff)
        return [RequestId(rid) for _, rid in due[:limit]]

    async def snapshot(self, keys: Iterable[str]) -> dict[str, MeterReading]:
        """The state of the given counters (cold ones are absent)."""
        now = self._clock()
        readings = {}
        for key in keys:
            counter = self._counter(key, now)
            if counter is not None:
                readings[key] = MeterReading(counter.used, counter.reserved, counter.limit)
        return readings

    def _counter(self, key: str, now: float) -> _Counter | None:
        counter = self._counters.get(key)
        if counter is not None and _lapsed(counter.expires_at, now):
            del self._counters[key]
            return None
        return counter

    def _known(self, request_id: str) -> _Request | None:
        """What the store knows of a request: live or rejected, else its latest finish, else None."""
        known = self._requests.get(request_id)
        if known is None:
            for _, records in reversed(self._finished):
                known = records.get(request_id)
                if known is not None:
                    break
        return known

    def _finish(self, request_id: str, record: _Request, now: float) -> None:
        """Remember a finished request for ``remember_seconds`` (up to a generation longer)."""
        self._requests.pop(request_id, None)
        finished = self._finished
        if not finished or finished[-1][0] < now + self._remember:
            finished.append((now + self._remember + GENERATION_SECONDS, {}))
        finished[-1][1][request_id] = record

    def _sweep(self, now: float) -> None:
        """Forget finished requests whose time is up; lapsed counters once the table has doubled."""
        finished = self._finished
        while finished and finished[0][0] <= now:
            finished.popleft()
        rejected, requests = self._rejected, self._requests
        while rejected and rejected[0][0] <= now:
            for rid in rejected.popleft()[1]:
                record = requests.get(rid)
                if record is not None and record.forget_at is not None and record.forget_at <= now:
                    del requests[rid]
        if len(self._counters) <= self._sweep_above:
            return
        for key in [key for key, counter in self._counters.items() if _lapsed(counter.expires_at, now)]:
            del self._counters[key]
        self._sweep_above = max(_SWEEP_FLOOR, 2 * len(self._counters))

    def _unreserve(self, record: _Request, now: float) -> None:
        for key, amount in record.lines.items():
            counter = self._counter(key, now)
            if counter is not None:  # a re-primed counter may not hold this reservation
                counter.reserved = max(0, counter.reserved - amount)


_Forgetting = deque[tuple[float, list[str]]]  # (when to forget, request ids), in time order


def _forget_later(queue: _Forgetting, request_id: str, forget_at: float) -> None:
    """Forget ``request_id`` at ``forget_at``, or up to a second later: with the group it joins."""
    if queue and forget_at <= queue[-1][0]:
        queue[-1][1].append(request_id)
    else:  # a group is forgotten a second after its first member's time
        queue.append((forget_at + _REJECTION_GROUP_SECONDS, [request_id]))


def _replay(record: _Request) -> ReserveResult:
    """A repeated reserve's answer: the first outcome, or CLOSED if there was none."""
    if record.result is None:
        return ReserveResult(ReserveOutcome.CLOSED, replayed=True)
    return ReserveResult(record.result.outcome, record.result.shortfall, replayed=True)


def _lapsed(deadline: float | None, now: float) -> bool:
    return deadline is not None and deadline <= now
