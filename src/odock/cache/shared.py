"""The shared cache tier: bytes by key with a time to live, visible to every replica.

Production uses Redis; the embedded mode uses the in-process twin. Both pass the same
contract suite (tests/contract/test_shared_cache.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, cast

from redis.asyncio import Redis


class SharedCache(Protocol):
    """Bytes by key, with expiry."""

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds."""

    async def delete(self, *keys: str) -> None:
        """Remove the keys (absent keys are ignored)."""


class MemorySharedCache:
    """The in-process shared tier for the embedded mode."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[float, bytes]] = {}

    async def get(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._data[key]
            return None
        return entry[1]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._data[key] = (self._clock() + ttl, value)
        if len(self._data) > 200_000:  # bound memory: drop expired entries
            now = self._clock()
            for k in [k for k, (exp, _) in self._data.items() if exp <= now]:
                del self._data[k]

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)


class RedisSharedCache:
    """The Redis shared tier; every key is namespaced with the configured prefix."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the shared cache stores bytes: use a Redis client without decode_responses")
        self._redis = redis
        self._prefix = prefix + "cache:"

    async def get(self, key: str) -> bytes | None:
        return cast("bytes | None", await self._redis.get(self._prefix + key))

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._redis.set(self._prefix + key, value, px=max(1, int(ttl * 1000)))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._redis.delete(*(self._prefix + k for k in keys))
