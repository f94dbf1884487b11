"""The process's view of the shared breakers: what the request path asks before and after an attempt.

Flow of one routed request::

    verdicts = await breakers.usable(candidates)   # "closed" | "open" | "probe", from the mirror
    ... try a "closed" or "probe" deployment ...
    await breakers.failed(deployment, retry_after)  # or: await breakers.succeeded(deployment)

``usable`` reads the store only for entries older than ``refresh_seconds`` (all of them in one
call), so a request with every entry fresh costs no round trip; a half-open deployment costs one
probe claim. ``succeeded`` writes only when this process saw something to close. The breakers are
an aid, not a gate: when the store cannot be reached, routing fails open (every deployment
"closed", turns from a local counter) and a warning is logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Literal

from odock.errors import RoutingStateUnavailable
from odock.routing.store import CLOSED, BreakerState, RoutingStore

log = logging.getLogger(__name__)

Usability = Literal["closed", "open", "probe"]
WARNING_INTERVAL_SECONDS = 60.0
LOCAL_TURN_KEYS = (
    10_000  # the fail-open turn counters (and error-rate windows) start over past this many keys
)


class Breakers:
    """Circuit breakers per deployment, mirrored in process and shared through a ``RoutingStore``."""

    def __init__(
        self,
        store: RoutingStore,
        *,
        threshold: int,
        window_seconds: float,
        cooldown_seconds: float,
        max_cooldown_seconds: float,
        refresh_seconds: float,
        probe_lease_seconds: float,
        error_rate: float = 1.0,
        min_calls: int = 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._threshold = threshold
        self._window = window_seconds
        self._cooldown = cooldown_seconds
        self._max_cooldown = max_cooldown_seconds
        self._refresh = refresh_seconds
        self._lease = probe_lease_seconds
        self._clock = clock
        self._mirror: dict[str, tuple[BreakerState, float]] = {}  # deployment → (state, read at)
        self._local_turns: dict[str, int] = {}
        self._error_rate = error_rate
        self._min_calls = min_calls
        # This process's calls per deployment in the current window: [window start, calls, failures].
        self._rates: dict[str, list[float]] = {}
        self._warned_at: float | None = None

    async def usable(self, deployments: Sequence[str]) -> dict[str, Usability]:
        """Each deployment's verdict; "probe" only for the caller that claimed the half-open probe."""
        now = self._clock()
        try:
            await self._refresh_stale(deployments, now)
            return await self._verdicts(deployments, now)
        except RoutingStateUnavailable as exc:
            self._warn(exc, now)
            return dict.fromkeys(deployments, "closed")

    async def failed(self, deployment: str, retry_after: float | None) -> BreakerState:
        """Record a failed attempt (Retry-After capped at ``max_cooldown_seconds``); the state after it."""
        if retry_after is not None:
            retry_after = min(retry_after, self._max_cooldown)
        now = self._clock()
        if self._counted(deployment, now, failed=True):
            # Too many of this process's calls failed lately, even if not in a row: open now.
            retry_after = max(retry_after or 0.0, self._cooldown)
        try:
            state = await self._store.record_failure(
                deployment,
                threshold=self._threshold,
                window_seconds=self._window,
                cooldown_seconds=self._cooldown,
                retry_after=retry_after,
            )
        except RoutingStateUnavailable as exc:
            self._warn(exc, now)
            return self.view(deployment) or CLOSED
        self._mirror[deployment] = (state, now)
        return state

    async def succeeded(self, deployment: str) -> None:
        """Record a successful attempt; the store is written only when the mirror has something to close."""
        if self._error_rate < 1.0:
            self._counted(deployment, self._clock(), failed=False)
        state = self.view(deployment)
        if state is None or state == CLOSED:
            return
        now = self._clock()
        try:
            await self._store.record_success(deployment)
        except RoutingStateUnavailable as exc:
            self._warn(exc, now)
            return
        self._mirror[deployment] = (CLOSED, now)

    def _counted(self, deployment: str, now: float, *, failed: bool) -> bool:
        """Count one call in this process's window; True when its failures reach the error rate
        (over at least ``min_calls`` calls), which then starts counting afresh."""
        if self._error_rate >= 1.0:
            return False
        entry = self._rates.get(deployment)
        if entry is None or now - entry[0] >= self._window:
            if len(self._rates) > LOCAL_TURN_KEYS:
                self._rates.clear()
            entry = self._rates[deployment] = [now, 0, 0]
        entry[1] += 1
        if not failed:
            return False
        entry[2] += 1
        if entry[1] >= self._min_calls and entry[2] >= self._error_rate * entry[1]:
            del self._rates[deployment]
            return True
        return False

    def view(self, deployment: str) -> BreakerState | None:
        """The mirror's state of the deployment (None if this process never saw it)."""
        entry = self._mirror.get(deployment)
        return None if entry is None else entry[0]

    async def next_turn(self, key: str) -> int:
        """The key's next round-robin turn, shared across replicas (a local counter when unreachable)."""
        try:
            return await self._store.next_turn(key)
        except RoutingStateUnavailable as exc:
            self._warn(exc, self._clock())
        if len(self._local_turns) >= LOCAL_TURN_KEYS and key not in self._local_turns:
            self._local_turns.clear()
        turn = self._local_turns.get(key, 0)
        self._local_turns[key] = turn + 1
        return turn

    async def _refresh_stale(self, deployments: Sequence[str], now: float) -> None:
        """Re-read, in one store call, every entry older than ``refresh_seconds`` (or never read)."""
        stale = [name for name in deployments if self._is_stale(name, now)]
        if stale:
            states = await self._store.breakers(stale)
            for name in stale:
                self._mirror[name] = (states.get(name, CLOSED), now)

    def _is_stale(self, deployment: str, now: float) -> bool:
        entry = self._mirror.get(deployment)
        return entry is None or self._refresh <= 0 or now - entry[1] >= self._refresh

    async def _verdicts(self, deployments: Sequence[str], now: float) -> dict[str, Usability]:
        """Closed or open from the mirror; the half-open ones claim their probe (concurrently)."""
        verdicts: dict[str, Usability] = {}
        half_open: list[str] = []
        for name in deployments:
            state = self._mirror[name][0]
            if state.half_open(now):
                half_open.append(name)
            verdicts[name] = "open" if state.is_open(now) else "closed"
        if not half_open:
            return verdicts
        claims = await asyncio.gather(
            *(self._store.claim_probe(name, lease_seconds=self._lease) for name in half_open)
        )
        for name, claimed in zip(half_open, claims, strict=True):
            verdicts[name] = "probe" if claimed else "open"
        return verdicts

    def _warn(self, exc: RoutingStateUnavailable, now: float) -> None:
        """Log that routing runs without shared state, at most once per ``WARNING_INTERVAL_SECONDS``."""
        if self._warned_at is None or now - self._warned_at >= WARNING_INTERVAL_SECONDS:
            self._warned_at = now
            log.warning("routing state unavailable (%s); routing without breakers or shared turns", exc)
