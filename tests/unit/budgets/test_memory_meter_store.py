"""The in-process meter store forgets finished requests once their idempotency time is up."""

from __future__ import annotations

from odock.budgets.meters import MemoryMeterStore, MeterLine, SettleOutcome
from odock.ids import RequestId


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_finished_requests_are_remembered_for_the_window_then_forgotten() -> None:
    """A settled request is a duplicate within ``remember_seconds``; after it, the record is gone."""
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
    clock.now += 2
    await store.reserve(RequestId("later"), [line], ttl_seconds=30)  # any operation may sweep
    assert store.remembered_requests() == 1  # only the live reservation
    assert await store.settle(RequestId("r1"), {"budget:k": 1}) is SettleOutcome.UNRESERVED
