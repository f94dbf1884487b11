"""How much a usage writer does between two turns of the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from odock.aio import WorkSlices

T = TypeVar("T")


async def most_bound_between_turns(
    binder: Any,
    monkeypatch: pytest.MonkeyPatch,
    write: Callable[[], Awaitable[T]],
    seconds_per_bind: float,
) -> tuple[T, int]:
    """Run ``write`` while another task takes every turn of the loop it gets.

    The writer's slices are timed by a clock that advances ``seconds_per_bind`` with each row
    ``binder.bind`` binds (and stands still otherwise), so how long a slice lasts is exact.
    Returns what ``write`` returned and the most rows bound between two of those turns: how long
    the writer held the event loop, in records.
    """
    since_turn = 0
    most = 0
    now = 0.0
    bind = binder.bind

    def counting_bind(values: Any) -> Any:
        nonlocal since_turn, most, now
        since_turn += 1
        most = max(most, since_turn)
        now += seconds_per_bind
        return bind(values)

    monkeypatch.setattr(binder, "bind", counting_bind)
    monkeypatch.setattr(WorkSlices, "clock", staticmethod(lambda: now))
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal since_turn
        while not done.is_set():
            since_turn = 0
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        group.create_task(ticker())
        await asyncio.sleep(0)
        result = await write()
        done.set()
    return result, most
