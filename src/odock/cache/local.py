"""A bounded in-process cache with per-entry time to live (the first, zero-I/O tier)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A dict with expiry; when full, the entry written longest ago is dropped first."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._clock = clock
        self._data: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        """The live value for ``key``, or None."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._data.pop(key, None)
            return None
        return entry[1]

    def set(self, key: K, value: V, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds."""
        # Re-inserting moves the key to the end, so eviction order follows the latest write.
        if key in self._data:
            del self._data[key]
        elif len(self._data) >= self._max:
            del self._data[next(iter(self._data))]
        self._data[key] = (self._clock() + ttl, value)

    def delete(self, key: K) -> None:
        """Forget ``key``."""
        self._data.pop(key, None)

    def delete_where(self, predicate: Callable[[K, V], bool]) -> int:
        """Forget every entry matching ``predicate``; return how many."""
        doomed = [k for k, (_, v) in self._data.items() if predicate(k, v)]
        for key in doomed:
            del self._data[key]
        return len(doomed)

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))
