"""How much a usage writer does between two turns of the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


async def most_bound_between_turns(
    binder: Any, monkeypatch: pytest.MonkeyPatch, write: Callable[[], Awaitable[T]]
) -> tuple[T, int]:
    """Run ``write`` while another task takes every turn of the loop it gets.

    Returns what ``write`` returned and the most rows ``binder.bind`` bound between two of
    those turns: how long the writer held the event loop, in records.
    """
    since_turn = 0
    most = 0
    bind = binder.bind

    def counting_bind(values: Any) -> Any:
        nonlocal since_turn, most
        since_turn += 1
        most = max(most, since_turn)
        return bind(values)

    monkeypatch.setattr(binder, "bind", counting_bind)
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
