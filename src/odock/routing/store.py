"""The shared routing state: a circuit breaker per deployment and round-robin turns per key.

A breaker's life, the same in every store::

    closed ──(failures ≥ threshold within the window, or Retry-After)──► open until T
    open ──(clock reaches T)──► half-open: one caller per lease claims the probe
    half-open ──(probe fails)──► open again        any state ──(success)──► closed

Every replica must see the same breakers and turns, so production keeps them in Redis
(:class:`~odock.routing.redis_store.RedisRoutingStore`); the embedded gateway is one process and
keeps them here (:class:`MemoryRoutingStore`). Both pass tests/contract/test_routing_store.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

TURN_MEMORY_SECONDS = 86_400.0  # a key's round-robin counter is kept a day after its last use
# A half-open breaker nobody probes is forgotten (becomes closed) a day after its cooldown ended.
BREAKER_MEMORY_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One deployment's breaker as the store last saw it."""

    failures: int  # consecutive failures recorded (count expires window_seconds after the last one)
    open_until: float | None  # unix seconds (store clock) until which it cools down; None = closed

    def is_open(self, now: float) -> bool:
        """True while the deployment cools down."""
        return self.open_until is not None and now < self.open_until

    def half_open(self, now: float) -> bool:
        """True once the cooldown ended and no success has closed the breaker yet."""
        return self.open_until is not None and now >= self.open_until


CLOSED = BreakerState(0, None)


class RoutingStore(Protocol):
    """Breakers and turns shared by every process that uses the same store."""

    async def next_turn(self, key: str) -> int:
        """A shared counter: 0, 1, 2, ... per key (kept a day after its last use)."""

    async def breakers(self, deployments: Sequence[str]) -> dict[str, BreakerState]:
        """Every named deployment's breaker, in one round trip (unknown ones are CLOSED)."""

    async def record_failure(
        self,
        deployment: str,
        *,
        threshold: int,
        window_seconds: float,
        cooldown_seconds: float,
        retry_after: float | None,
    ) -> BreakerState:
        """Count one failure atomically; open the breaker when due (see the module docstring)."""

    async def record_success(self, deployment: str) -> None:
        """Close the breaker: no failures, no cooldown, no probe lease."""

    async def claim_probe(self, deployment: str, *, lease_seconds: float) -> bool:
        """While half-open, True for exactly one caller per lease period; False otherwise."""


def opens(counted: BreakerState, now: float, threshold: int, retry_after: float | None) -> bool:
    """Whether a failure that brought the count to ``counted.failures`` (re)opens the breaker.

    It does when the count reaches the threshold, when the upstream asked us to wait, or when
    the failure was a half-open probe's.
    """
    return counted.failures >= threshold or retry_after is not None or counted.half_open(now)


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    failures_expire: float = 0.0
    open_until: float | None = None
    probe_until: float = 0.0

    def state(self, now: float) -> BreakerState:
        return BreakerState(self.failures if now < self.failures_expire else 0, self.open_until)

    def forget_at(self) -> float:
        if self.open_until is None:
            return self.failures_expire
        return max(self.failures_expire, self.open_until + BREAKER_MEMORY_SECONDS)


class MemoryRoutingStore:
    """The in-process store: atomic because no await happens between reading and writing."""

    def __init__(self, clock: Callable[[], float] = time.time, sweep_every: int = 1_000) -> None:
        self._clock = clock
        self._sweep_every = sweep_every  # operations between sweeps of idle entries
        self._operations = 0
        self._turns: dict[str, tuple[int, float]] = {}  # key → (next turn, forget at)
        self._breakers: dict[str, _Breaker] = {}

    async def next_turn(self, key: str) -> int:
        """A counter per key: 0, 1, 2, ... (forgotten a day after its last use)."""
        now = self._tick()
        turn, forget_at = self._turns.get(key, (0, now))
        if forget_at < now:
            turn = 0
        self._turns[key] = (turn + 1, now + TURN_MEMORY_SECONDS)
        return turn

    async def breakers(self, deployments: Sequence[str]) -> dict[str, BreakerState]:
        """Every named deployment's breaker (unknown or forgotten ones are CLOSED)."""
        now = self._clock()
        return {deployment: self._live(deployment, now).state(now) for deployment in deployments}

    async def record_failure(
        self,
        deployment: str,
        *,
        threshold: int,
        window_seconds: float,
        cooldown_seconds: float,
        retry_after: float | None,
    ) -> BreakerState:
        """Count one failure; open the breaker when due (see ``opens``)."""
        now = self._tick()
        breaker = self._live(deployment, now)
        counted = BreakerState(breaker.state(now).failures + 1, breaker.open_until)
        breaker.failures, breaker.failures_expire = counted.failures, now + window_seconds
        if opens(counted, now, threshold, retry_after):
            until = now + max(cooldown_seconds, retry_after or 0.0)
            # The end only moves later; a (re)opened breaker's next probe is a new one.
            breaker.open_until = until if breaker.open_until is None else max(breaker.open_until, until)
            breaker.probe_until = 0.0
        self._breakers[deployment] = breaker
        return breaker.state(now)

    async def record_success(self, deployment: str) -> None:
        """Close the breaker (forgetting it is closing it)."""
        self._tick()
        self._breakers.pop(deployment, None)

    async def claim_probe(self, deployment: str, *, lease_seconds: float) -> bool:
        """While half-open, True for the first caller of each lease period."""
        now = self._tick()
        breaker = self._live(deployment, now)
        if not breaker.state(now).half_open(now) or now < breaker.probe_until:
            return False
        breaker.probe_until = now + lease_seconds
        return True

    def held_entries(self) -> int:
        """How many turn counters and breakers are held in memory."""
        return len(self._turns) + len(self._breakers)

    def _live(self, deployment: str, now: float) -> _Breaker:
        """The deployment's breaker, a fresh one when it was never seen or has been forgotten."""
        breaker = self._breakers.get(deployment)
        if breaker is None or breaker.forget_at() <= now:
            return _Breaker()
        return breaker

    def _tick(self) -> float:
        """The current time; every ``sweep_every`` writes, idle entries are dropped first."""
        now = self._clock()
        self._operations += 1
        if self._operations % self._sweep_every == 0:
            self._turns = {key: turn for key, turn in self._turns.items() if turn[1] >= now}
            self._breakers = {name: b for name, b in self._breakers.items() if b.forget_at() > now}
        return now
