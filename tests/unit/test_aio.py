"""Work slices: how long a batch job holds the event loop before letting requests run."""

from __future__ import annotations

import pytest

from odock.aio import WorkSlices


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A clock the test moves by hand (WorkSlices reads it through its ``clock``)."""
    now = [0.0]
    monkeypatch.setattr(WorkSlices, "clock", staticmethod(lambda: now[0]))
    return now


async def test_a_slice_lasts_its_time_then_starts_again_after_the_pause(clock: list[float]) -> None:
    slices = WorkSlices(0.001, items=10, turns=10)
    clock[0] = 0.0009
    assert not slices.due()
    clock[0] = 0.001
    assert slices.due()
    await slices.pause()
    clock[0] = 0.0015
    assert not slices.due()  # the new slice runs from the pause: until 0.002
    clock[0] = 0.002
    assert slices.due()


async def test_a_big_batch_gets_slices_of_its_share_of_the_turns(clock: list[float]) -> None:
    """With 100 items in at most 4 turns, a slice is 25 items even once its time is up."""
    slices = WorkSlices(0.001, items=100, turns=4)
    clock[0] = 1.0  # long past the slice's time
    assert not slices.due(24)
    assert slices.due(1)
    await slices.pause()
    clock[0] = 2.0
    assert not slices.due(10)
    assert slices.due(15)
