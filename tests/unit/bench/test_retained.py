"""The retained-memory measurement: simulated load through the in-process governance state."""

from __future__ import annotations

import tracemalloc

from bench.retained import held_bytes


async def test_state_held_is_bounded_by_the_remembered_minute() -> None:
    """After more than a minute of load, only the last minute of finished requests is remembered."""
    tracemalloc.start()
    try:
        held, counters, remembered = await held_bytes(50, 70, lambda: tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert 50 * 60 <= remembered <= 50 * 61 + 1  # a minute, plus at most a second of grouping
    assert counters == 12  # four kinds of limit on three scopes; nothing per request
    assert 0 < held < remembered * 1_000
