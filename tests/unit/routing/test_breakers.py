"""Breakers: the in-process mirror of the shared breakers, its refresh, and failing open."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

from odock.errors import RoutingStateUnavailable
from odock.routing.breakers import Breakers
from odock.routing.store import CLOSED, BreakerState, MemoryRoutingStore


class FakeClock:
    """A wall clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingStore(MemoryRoutingStore):
    """The in-process store, noting every call made to it (name and deployments)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    async def next_turn(self, key: str) -> int:
        self.calls.append(("next_turn", (key,)))
        return await super().next_turn(key)

    async def breakers(self, deployments: Sequence[str]) -> dict[str, BreakerState]:
        self.calls.append(("breakers", tuple(deployments)))
        return await super().breakers(deployments)

    async def record_failure(
        self,
        deployment: str,
        *,
        threshold: int,
        window_seconds: float,
        cooldown_seconds: float,
        retry_after: float | None,
    ) -> BreakerState:
        self.calls.append(("record_failure", (deployment,)))
        return await super().record_failure(
            deployment,
            threshold=threshold,
            window_seconds=window_seconds,
            cooldown_seconds=cooldown_seconds,
            retry_after=retry_after,
        )

    async def record_success(self, deployment: str) -> None:
        self.calls.append(("record_success", (deployment,)))
        await super().record_success(deployment)

    async def claim_probe(self, deployment: str, *, lease_seconds: float) -> bool:
        self.calls.append(("claim_probe", (deployment,)))
        return await super().claim_probe(deployment, lease_seconds=lease_seconds)


class UnreachableStore:
    """A store whose every operation fails as an unreachable Redis does."""

    async def next_turn(self, key: str) -> int:
        raise RoutingStateUnavailable("down")

    async def breakers(self, deployments: Sequence[str]) -> dict[str, BreakerState]:
        raise RoutingStateUnavailable("down")

    async def record_failure(
        self,
        deployment: str,
        *,
        threshold: int,
        window_seconds: float,
        cooldown_seconds: float,
        retry_after: float | None,
    ) -> BreakerState:
        raise RoutingStateUnavailable("down")

    async def record_success(self, deployment: str) -> None:
        raise RoutingStateUnavailable("down")

    async def claim_probe(self, deployment: str, *, lease_seconds: float) -> bool:
        raise RoutingStateUnavailable("down")


@pytest.fixture
def clock() -> FakeClock:
    """The test's clock, shared by the store and the breakers."""
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> CountingStore:
    """An in-process store that counts the calls made to it."""
    return CountingStore(clock)


def breakers_on(
    store: CountingStore | UnreachableStore, clock: FakeClock, refresh: float = 5.0, **options: Any
) -> Breakers:
    """Breakers that open on the second failure for 30 s (Retry-After capped at 300 s)."""
    settings: dict[str, Any] = {
        "threshold": 2,
        "window_seconds": 60.0,
        "cooldown_seconds": 30.0,
        "max_cooldown_seconds": 300.0,
        "refresh_seconds": refresh,
        "probe_lease_seconds": 10.0,
        **options,
    }
    return Breakers(store, clock=clock, **settings)


async def test_fresh_entries_cost_no_store_call(store: CountingStore, clock: FakeClock) -> None:
    """The first usable() reads every deployment in one call; a second within refresh_seconds reads none."""
    breakers = breakers_on(store, clock)
    assert await breakers.usable(["a", "b"]) == {"a": "closed", "b": "closed"}
    assert store.calls == [("breakers", ("a", "b"))]
    clock.now += 4.0
    await breakers.usable(["a", "b"])
    assert store.calls == [("breakers", ("a", "b"))]


async def test_only_stale_entries_are_reread_in_one_call(store: CountingStore, clock: FakeClock) -> None:
    """Entries older than refresh_seconds, and ones never read, are re-read together; fresh ones are not."""
    breakers = breakers_on(store, clock)
    await breakers.usable(["a"])
    clock.now += 3.0
    await breakers.usable(["b"])
    clock.now += 2.0  # "a" is 5 s old, "b" 2 s
    store.calls.clear()
    await breakers.usable(["a", "b", "c"])
    assert store.calls == [("breakers", ("a", "c"))]


async def test_refresh_zero_reads_every_time(store: CountingStore, clock: FakeClock) -> None:
    """With refresh_seconds 0 the mirror is never trusted: each usable() reads all its deployments."""
    breakers = breakers_on(store, clock, refresh=0.0)
    await breakers.usable(["a", "b"])
    await breakers.usable(["a", "b"])
    assert store.calls == [("breakers", ("a", "b"))] * 2


async def test_another_replicas_failures_show_after_refresh(store: CountingStore, clock: FakeClock) -> None:
    """A breaker opened elsewhere reads "open" once the mirror's entry is refreshed."""
    breakers = breakers_on(store, clock)
    await breakers.usable(["a"])
    elsewhere = breakers_on(store, clock)
    await elsewhere.failed("a", None)
    await elsewhere.failed("a", None)
    assert await breakers.usable(["a"]) == {"a": "closed"}  # still fresh
    clock.now += 5.0
    assert await breakers.usable(["a"]) == {"a": "open"}


async def test_failed_updates_the_mirror_and_opens(store: CountingStore, clock: FakeClock) -> None:
    """failed() counts in the store and mirrors the answer: the second failure makes it "open" at once."""
    breakers = breakers_on(store, clock)
    assert await breakers.failed("a", None) == BreakerState(1, None)
    state = await breakers.failed("a", None)
    assert state == BreakerState(2, clock.now + 30.0)
    assert breakers.view("a") == state
    store.calls.clear()
    assert await breakers.usable(["a"]) == {"a": "open"}
    assert store.calls == []


async def test_retry_after_is_capped(store: CountingStore, clock: FakeClock) -> None:
    """An upstream's Retry-After longer than max_cooldown_seconds opens for the cap, not for the hint."""
    breakers = breakers_on(store, clock)
    state = await breakers.failed("a", 86_400.0)
    assert state.open_until == clock.now + 300.0


async def test_half_open_gives_the_probe_to_one_caller(store: CountingStore, clock: FakeClock) -> None:
    """After the cooldown, one caller gets "probe" and the others "open" until the lease lapses."""
    first, second = breakers_on(store, clock), breakers_on(store, clock)
    await first.failed("a", None)
    await first.failed("a", None)
    clock.now += 30.0
    assert await first.usable(["a", "b"]) == {"a": "probe", "b": "closed"}
    assert await second.usable(["a"]) == {"a": "open"}
    assert await first.usable(["a"]) == {"a": "open"}
    clock.now += 10.0  # the lease lapsed without a report
    assert await second.usable(["a"]) == {"a": "probe"}


async def test_a_successful_probe_closes(store: CountingStore, clock: FakeClock) -> None:
    """succeeded() after a probe closes the breaker in the store and the mirror."""
    breakers = breakers_on(store, clock)
    await breakers.failed("a", 120.0)
    clock.now += 120.0
    assert await breakers.usable(["a"]) == {"a": "probe"}
    await breakers.succeeded("a")
    assert breakers.view("a") == CLOSED
    assert (await store.breakers(["a"]))["a"] == CLOSED


async def test_succeeded_skips_the_store_when_nothing_is_known(
    store: CountingStore, clock: FakeClock
) -> None:
    """A success on a deployment never seen, or seen closed with no failures, writes nothing."""
    breakers = breakers_on(store, clock)
    await breakers.succeeded("never-seen")
    await breakers.usable(["a"])
    store.calls.clear()
    await breakers.succeeded("a")
    assert store.calls == []


async def test_succeeded_clears_counted_failures(store: CountingStore, clock: FakeClock) -> None:
    """A success after a failure below the threshold resets the count in the store."""
    breakers = breakers_on(store, clock)
    await breakers.failed("a", None)
    await breakers.succeeded("a")
    assert ("record_success", ("a",)) in store.calls
    assert await breakers.failed("a", None) == BreakerState(1, None)


async def test_an_unreachable_store_fails_open(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Every deployment is "closed" when the store is down; the warning is logged once per minute."""
    breakers = breakers_on(UnreachableStore(), clock)
    with caplog.at_level(logging.WARNING, logger="odock.routing.breakers"):
        assert await breakers.usable(["a", "b"]) == {"a": "closed", "b": "closed"}
        assert await breakers.failed("a", 30.0) == CLOSED
        await breakers.succeeded("a")
        clock.now += 59.0
        assert await breakers.usable(["a"]) == {"a": "closed"}
        assert len(caplog.records) == 1
        clock.now += 1.0
        await breakers.usable(["a"])
        assert len(caplog.records) == 2


async def test_a_failed_probe_claim_fails_open(store: CountingStore, clock: FakeClock) -> None:
    """When the store goes down between the read and the probe claim, the deployment counts as closed."""
    breakers = breakers_on(store, clock)
    await breakers.failed("a", 30.0)
    clock.now += 30.0

    async def unreachable(deployment: str, *, lease_seconds: float) -> bool:
        raise RoutingStateUnavailable("down")

    store.claim_probe = unreachable  # type: ignore[method-assign]
    assert await breakers.usable(["a"]) == {"a": "closed"}


async def test_turns_come_from_the_store(store: CountingStore, clock: FakeClock) -> None:
    """next_turn passes to the shared store."""
    breakers = breakers_on(store, clock)
    assert [await breakers.next_turn("k") for _ in range(3)] == [0, 1, 2]
    assert store.calls == [("next_turn", ("k",))] * 3


async def test_turns_fall_back_to_a_local_counter(clock: FakeClock) -> None:
    """With the store down, turns still rotate per key, counted in process."""
    breakers = breakers_on(UnreachableStore(), clock)
    assert [await breakers.next_turn("k") for _ in range(3)] == [0, 1, 2]
    assert await breakers.next_turn("other") == 0


def rated(store: CountingStore, clock: FakeClock) -> Breakers:
    """Breakers that never open on a run of failures, only on half of ten calls failing."""
    return breakers_on(store, clock, threshold=1_000, error_rate=0.5, min_calls=10)


async def test_a_flapping_deployment_opens_on_its_error_rate(store: CountingStore, clock: FakeClock) -> None:
    """Failures never in a row, but half of the calls: the circuit opens at the tenth call."""
    breakers = rated(store, clock)
    for _ in range(4):
        await breakers.succeeded("d")
        await breakers.failed("d", None)
    await breakers.succeeded("d")
    state = await breakers.failed("d", None)
    assert state.is_open(clock.now)
    assert state.open_until == clock.now + 30.0
    assert (await breakers.usable(["d"])) == {"d": "open"}


async def test_the_error_rate_needs_enough_calls_in_one_window(
    store: CountingStore, clock: FakeClock
) -> None:
    """Below the minimum of calls, or spread over windows, failures do not open it."""
    breakers = rated(store, clock)
    for _ in range(4):
        await breakers.failed("d", None)
    assert not (await breakers.failed("d", None)).is_open(clock.now)  # 5 calls, all failed
    clock.now += 61.0  # a new window: the count starts again
    for _ in range(4):
        await breakers.succeeded("d")
        assert not (await breakers.failed("d", None)).is_open(clock.now)
    await breakers.succeeded("d")
    await breakers.succeeded("d")
    assert not (await breakers.failed("d", None)).is_open(clock.now)  # 5 of 11 failed: below half
