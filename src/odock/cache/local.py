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


class IdentityMemo(Generic[V]):
    """Values derived from objects, remembered by the objects' identity (bounded, oldest dropped first).

    For derivations from immutable snapshots that a cache hands out again and again (a principal,
    a resolved model): the memo keeps each source alive alongside its value, so an ``id()`` is
    never reused while its entry exists, and a reloaded snapshot (a new object) is derived anew.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._data: dict[tuple[int, ...], tuple[tuple[object, ...], V]] = {}

    def get(self, *sources: object) -> V | None:
        """The value remembered for exactly these source objects, or None."""
        entry = self._data.get(tuple(map(id, sources)))
        if entry is None:
            return None
        return entry[1]

    def put(self, value: V, *sources: object) -> V:
        """Remember ``value`` for these source objects; return it."""
        if len(self._data) >= self._max:
            del self._data[next(iter(self._data))]
        self._data[tuple(map(id, sources))] = (sources, value)
        return value

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
