"""Awaitables for work that starts when it is called, and slices for long work on the event loop."""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

T = TypeVar("T")


async def ready(value: T) -> T:
    """An awaitable of a value already known (the immediate answer of a call that sends nothing)."""
    return value


class WorkSlices:
    """Cuts a batch of work on the event loop (writing usage records) into slices.

    The worker calls :meth:`due` after each item and, when it says so, awaits :meth:`pause`: one
    turn of the event loop, so the requests waiting on it run. A slice is at least ``seconds``
    of work, so a small batch never stalls the loop for much longer than that; and at least
    ``1/turns`` of the batch's items, so a big batch (a writer that is behind reads bigger ones)
    is done in at most ``turns`` turns of the loop. Under load a turn takes milliseconds: a
    writer doing a fixed slice per turn, whatever its backlog, got a fixed share of the core and
    fell further behind the records arriving for as long as the load lasted.
    """

    __slots__ = ("_at_least", "_done", "_seconds", "_until")
    clock = staticmethod(time.perf_counter)

    def __init__(self, seconds: float, items: int, turns: int) -> None:
        self._seconds = seconds
        self._at_least = -(-items // turns)
        self._done = 0
        self._until = self.clock() + seconds

    def due(self, done: int = 1) -> bool:
        """Count ``done`` more items; whether this slice is used up."""
        self._done += done
        return self._done >= self._at_least and self.clock() >= self._until

    async def pause(self) -> None:
        """Let the event loop run once; the next slice starts when the work resumes."""
        await asyncio.sleep(0)
        self._done = 0
        self._until = self.clock() + self._seconds
