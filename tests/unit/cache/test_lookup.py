"""TieredLookup: local tier, then shared tier, then loader, with negative caching and invalidation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from odock.cache.bus import Invalidation, LocalInvalidationBus
from odock.cache.local import TtlCache
from odock.cache.lookup import TieredLookup, _Absent
from odock.cache.shared import MemorySharedCache

TTL = 60.0
NEGATIVE_TTL = 5.0


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SpyShared:
    """A MemorySharedCache that counts calls and can be made to fail."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = MemorySharedCache(clock=clock)
        self.gets = 0
        self.sets = 0
        self.error: Exception | None = None

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        if self.error:
            raise self.error
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self.sets += 1
        if self.error:
            raise self.error
        await self.inner.set(key, value, ttl)

    async def delete(self, *keys: str) -> None:
        await self.inner.delete(*keys)


@dataclass
class Source:
    """The database stand-in: values by key, and the keys it was asked for."""

    values: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    during_load: Callable[[], Awaitable[None]] | None = None

    async def load(self, key: str) -> str | None:
        self.calls.append(key)
        if self.during_load is not None:
            await self.during_load()
        return self.values.get(key)


@dataclass
class Replica:
    """One replica's lookup over a (possibly shared) shared tier and bus."""

    lookup: TieredLookup[str]
    source: Source
    shared: SpyShared
    bus: LocalInvalidationBus


@pytest.fixture
def clock() -> FakeClock:
    """The one clock both tiers run on."""
    return FakeClock()


def make_replica(
    clock: FakeClock, shared: SpyShared | None = None, bus: LocalInvalidationBus | None = None
) -> Replica:
    """A lookup with a spy shared tier, a fake source and a local bus that clears the local tier."""
    shared = shared or SpyShared(clock)
    bus = bus or LocalInvalidationBus()
    source = Source(values={"present": "value"})
    local: TtlCache[str, str | _Absent] = TtlCache(100, clock=clock)
    lookup: TieredLookup[str] = TieredLookup(
        "test",
        local=local,
        shared=shared,
        bus=bus,
        loader=source.load,
        encode=str.encode,
        decode=bytes.decode,
        ttl=TTL,
        negative_ttl=NEGATIVE_TTL,
    )
    bus.subscribe(lambda _inv: local.clear())
    return Replica(lookup, source, shared, bus)


async def test_miss_loads_once_then_local_hits_touch_nothing(clock: FakeClock) -> None:
    """The first get reaches the loader; later gets are served locally without shared or loader calls."""
    replica = make_replica(clock)
    assert await replica.lookup.get("present") == "value"
    assert replica.source.calls == ["present"]
    gets, sets = replica.shared.gets, replica.shared.sets
    assert (gets, sets) == (1, 1)
    for _ in range(10):
        assert await replica.lookup.get("present") == "value"
    assert replica.source.calls == ["present"]
    assert (replica.shared.gets, replica.shared.sets) == (gets, sets)


async def test_absent_values_are_cached_negatively(clock: FakeClock) -> None:
    """A key the loader does not know is answered None from cache on later gets."""
    replica = make_replica(clock)
    assert await replica.lookup.get("unknown") is None
    assert await replica.lookup.get("unknown") is None
    assert replica.source.calls == ["unknown"]
    assert replica.shared.gets == 1


async def test_negative_entries_expire_sooner(clock: FakeClock) -> None:
    """After the negative TTL an absent key is asked again, while a present one is still cached."""
    replica = make_replica(clock)
    await replica.lookup.get("unknown")
    await replica.lookup.get("present")
    replica.source.values["unknown"] = "appeared"
    clock.now += NEGATIVE_TTL
    assert await replica.lookup.get("unknown") == "appeared"
    assert await replica.lookup.get("present") == "value"
    assert replica.source.calls == ["unknown", "present", "unknown"]


async def test_shared_tier_hit_skips_the_loader(clock: FakeClock) -> None:
    """A second replica finds a value (or an absence) another replica loaded in the shared tier."""
    first = make_replica(clock)
    await first.lookup.get("present")
    await first.lookup.get("unknown")
    second = make_replica(clock, shared=first.shared, bus=first.bus)
    assert await second.lookup.get("present") == "value"
    assert await second.lookup.get("unknown") is None
    assert second.source.calls == []


async def test_value_loaded_during_an_invalidation_is_returned_but_not_kept(clock: FakeClock) -> None:
    """A load that overlaps an invalidation answers the caller, yet the next get loads afresh."""
    replica = make_replica(clock)

    async def admin_change() -> None:
        replica.source.during_load = None
        await replica.bus.publish(Invalidation("all"))

    replica.source.during_load = admin_change
    assert await replica.lookup.get("present") == "value"
    replica.source.values["present"] = "changed"
    # Neither tier kept the racing value: the shared entry was written under the old generation.
    assert await replica.lookup.get("present") == "changed"
    assert replica.source.calls == ["present", "present"]


async def test_invalidation_retires_the_shared_tier(clock: FakeClock) -> None:
    """After a publish, shared entries of the previous generation are no longer served."""
    first = make_replica(clock)
    await first.lookup.get("present")
    await first.bus.publish(Invalidation("api_key", key_hash="present"))
    first.source.values["present"] = "revoked"
    assert await first.lookup.get("present") == "revoked"
    assert first.source.calls == ["present", "present"]


@pytest.mark.parametrize("error", [RedisConnectionError("redis down"), OSError("network down")])
async def test_shared_tier_errors_fall_back_to_the_loader(clock: FakeClock, error: Exception) -> None:
    """When the shared tier fails on read and write, the loader answers and the local tier still caches."""
    replica = make_replica(clock)
    replica.shared.error = error
    assert await replica.lookup.get("present") == "value"
    assert await replica.lookup.get("unknown") is None
    assert replica.shared.sets == 2  # the writes were attempted, and their failure swallowed
    assert await replica.lookup.get("present") == "value"
    assert replica.source.calls == ["present", "unknown"]


async def test_undecodable_shared_entry_is_reloaded(clock: FakeClock) -> None:
    """A shared entry that does not decode (another version's format) is treated as a miss and replaced."""
    replica = make_replica(clock)
    await replica.shared.inner.set(f"test:g{replica.bus.generation}:present", b"\xff\xfe", TTL)
    assert await replica.lookup.get("present") == "value"
    assert replica.source.calls == ["present"]
    assert await replica.shared.inner.get(f"test:g{replica.bus.generation}:present") == b"value"


async def test_loader_errors_propagate_and_cache_nothing(clock: FakeClock) -> None:
    """A failing loader fails the get, and the next get tries the loader again."""
    replica = make_replica(clock)

    async def broken() -> None:
        raise RuntimeError("database down")

    replica.source.during_load = broken
    with pytest.raises(RuntimeError, match="database down"):
        await replica.lookup.get("present")
    replica.source.during_load = None
    assert await replica.lookup.get("present") == "value"
    assert replica.source.calls == ["present", "present"]
