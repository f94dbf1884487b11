"""Awaitables for work that starts when it is called, not when it is awaited."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


async def ready(value: T) -> T:
    """An awaitable of a value already known (the immediate answer of a call that sends nothing)."""
    return value
