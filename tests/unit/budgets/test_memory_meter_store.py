"""The in-process meter store forgets finished requests once their idempotency time is up."""

from __future__ import annotations

from odock.budgets.meters import GENERATION_SECONDS, MemoryMeterStore, MeterLine, SettleOutcome
from odock.ids import RequestId


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_finished_requests_are_remembered_for_the_window_then_forgotten() -> None:
    """A settled request is a duplicate within ``remember_seconds``; a generation later it is forgotten."""
    clock = Clock()
    store = MemoryMeterStore(clock, remember_seconds=60)
    await store.prime("budget:k", used=0, reserved=0, limit=10**9)
    line = MeterLine("budget:k", 1, 10**9)
    for n in range(100):
        await store.reserve(RequestId(f"r{n}"), [line], ttl_seconds=30)
        assert await store.settle(RequestId(f"r{n}"), {"budget:k": 1}) is SettleOutcome.SETTLED
    clock.now += 59
    assert await store.settle(RequestId("r0"), {"budget:k": 1}) is SettleOutcome.DUPLICATE
    assert store.remembered_requests() == 100
    clock.now += 1 + GENERATION_SECONDS
    await store.reserve(RequestId("later"), [line], ttl_seconds=30)  # any operation may sweep
    assert store.remembered_requests() == 1  # only the live reservation
    assert await store.settle(RequestId("r1"), {"budget:k": 1}) is SettleOutcome.UNRESERVED


async def test_a_request_finished_twice_is_remembered_from_its_second_finish() -> None:
    """Released, then settled later: the settle is a duplicate for a whole ``remember_seconds`` after it."""
    clock = Clock()
    store = MemoryMeterStore(clock, remember_seconds=60)
    await store.prime("budget:k", used=0, reserved=0, limit=10**9)
    line = MeterLine("budget:k", 5, 10**9)
    await store.reserve(RequestId("r"), [line], ttl_seconds=30)
    await store.release(RequestId("r"))
    clock.now += 30
    assert await store.settle(RequestId("r"), {"budget:k": 3}) is SettleOutcome.UNRESERVED
    clock.now += 45  # past the release's memory, within the settle's
    assert await store.settle(RequestId("r"), {"budget:k": 3}) is SettleOutcome.DUPLICATE
    replay = await store.reserve(RequestId("r"), [line], ttl_seconds=30)
    assert replay.replayed
    assert replay.admitted  # the first outcome, still
    assert (await store.snapshot(["budget:k"]))["budget:k"].used == 3
    clock.now += 16 + GENERATION_SECONDS
    await store.release(RequestId("other"))  # any operation may sweep
    assert store.remembered_requests() == 0


async def test_a_remembered_rejection_does_not_hold_back_forgetting_the_rest() -> None:
    """A rejection is remembered for the reservation's time to live; requests settled after it, for 60 s."""
    clock = Clock()
    store = MemoryMeterStore(clock, remember_seconds=60)
    await store.prime("budget:k", used=0, reserved=0, limit=10)
    rejected = await store.reserve(RequestId("big"), [MeterLine("budget:k", 11, 10)], ttl_seconds=600)
    assert not rejected.admitted
    for n in range(50):
        await store.reserve(RequestId(f"r{n}"), [MeterLine("budget:k", 0, 10)], ttl_seconds=600)
        await store.settle(RequestId(f"r{n}"), {"budget:k": 0})
    clock.now += 60 + GENERATION_SECONDS
    await store.release(RequestId("other"))  # any operation may sweep
    assert store.remembered_requests() == 1
    assert (await store.reserve(RequestId("big"), [MeterLine("budget:k", 1, 10)], ttl_seconds=600)).replayed


async def test_a_rejected_request_settled_later_is_then_known_as_settled() -> None:
    """Settling a rejected request counts once; a repeated reserve still replays the rejection."""
    store = MemoryMeterStore(Clock(), remember_seconds=60)
    await store.prime("budget:k", used=0, reserved=0, limit=10)
    big = [MeterLine("budget:k", 11, 10)]
    assert not (await store.reserve(RequestId("big"), big, ttl_seconds=600)).admitted
    assert await store.settle(RequestId("big"), {"budget:k": 2}) is SettleOutcome.UNRESERVED
    assert await store.settle(RequestId("big"), {"budget:k": 2}) is SettleOutcome.DUPLICATE
    replay = await store.reserve(RequestId("big"), big, ttl_seconds=600)
    assert replay.replayed
    assert not replay.admitted
    assert (await store.snapshot(["budget:k"]))["budget:k"].used == 2
    assert store.remembered_requests() == 1
