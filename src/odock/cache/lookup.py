"""A two-tier cached lookup: in-process first, then the shared tier, then the loader (DB).

A miss that reaches the loader is stored in both tiers; an absent value is cached too
(negative caching) for its own, shorter time to live. A value loaded while an invalidation
arrived is returned but not kept, so a slow load cannot resurrect stale data.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from redis.exceptions import RedisError

from odock.cache.bus import InvalidationBus
from odock.cache.local import TtlCache
from odock.cache.shared import SharedCache

log = logging.getLogger(__name__)

V = TypeVar("V")
_ABSENT = b""


class _Absent:
    """Marks a cached negative answer in the in-process tier."""


ABSENT = _Absent()


class TieredLookup(Generic[V]):
    """Look values up by string key through both cache tiers."""

    def __init__(
        self,
        name: str,
        *,
        local: TtlCache[str, V | _Absent],
        shared: SharedCache,
        bus: InvalidationBus,
        loader: Callable[[str], Awaitable[V | None]],
        encode: Callable[[V], bytes],
        decode: Callable[[bytes], V],
        ttl: float,
        negative_ttl: float,
    ) -> None:
        self._name = name
        self._local = local
        self._shared = shared
        self._bus = bus
        self._loader = loader
        self._encode = encode
        self._decode = decode
        self._ttl = ttl
        self._negative_ttl = negative_ttl

    @property
    def local(self) -> TtlCache[str, V | _Absent]:
        """The in-process tier (for targeted eviction)."""
        return self._local

    async def get(self, key: str) -> V | None:
        """The value for ``key`` or None when it does not exist."""
        hit = self._local.get(key)
        if hit is not None:
            return None if isinstance(hit, _Absent) else hit
        generation = self._bus.generation
        shared_key = f"{self._name}:g{generation}:{key}"
        value = await self._from_shared(shared_key)
        if value is None:
            loaded = await self._loader(key)
            value = ABSENT if loaded is None else loaded
            await self._to_shared(shared_key, value)
        if self._bus.generation == generation:
            ttl = self._negative_ttl if isinstance(value, _Absent) else self._ttl
            self._local.set(key, value, ttl)
        return None if isinstance(value, _Absent) else value

    async def _from_shared(self, key: str) -> V | _Absent | None:
        try:
            raw = await self._shared.get(key)
        except (RedisError, OSError) as exc:
            log.warning("shared cache read failed (%s); falling back to the database", exc)
            return None
        if raw is None:
            return None
        if raw == _ABSENT:
            return ABSENT
        try:
            return self._decode(raw)
        except (ValueError, TypeError, KeyError) as exc:
            # Entries written by another version of the gateway (a rolling upgrade) may not
            # decode: treat them as a miss and let the loader overwrite them.
            log.warning("undecodable %s entry in the shared cache (%s); reloading", self._name, exc)
            return None

    async def _to_shared(self, key: str, value: V | _Absent) -> None:
        raw = _ABSENT if isinstance(value, _Absent) else self._encode(value)
        ttl = self._negative_ttl if isinstance(value, _Absent) else self._ttl
        try:
            await self._shared.set(key, raw, ttl)
        except (RedisError, OSError) as exc:
            log.warning("shared cache write failed (%s)", exc)
