"""The SharedCache contract, run against the in-process twin and Redis.

Each test gets a factory of caches: every call makes a cache in a namespace of its own (for
Redis, a unique key prefix removed at teardown). Expiry is driven by a fake clock for the
in-process twin and observed by polling with a deadline for Redis.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from odock.cache.shared import MemorySharedCache, RedisSharedCache, SharedCache
from tests.support import services


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@dataclass
class CacheBackend:
    """Makes caches of one backend and lets their entries expire."""

    name: str
    make: Callable[[], SharedCache]
    short_ttl: float
    clock: FakeClock | None = None

    async def wait_until_absent(self, cache: SharedCache, key: str, deadline: float = 5.0) -> None:
        """Let ``short_ttl`` pass and check ``key`` is gone (Redis: polled, failing after ``deadline``)."""
        if self.clock is not None:
            self.clock.advance(self.short_ttl)
            assert await cache.get(key) is None
            return
        started = time.monotonic()
        while await cache.get(key) is not None:
            assert time.monotonic() - started < deadline, f"{key} outlived its TTL by more than {deadline}s"


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[CacheBackend]:
    """A factory of shared caches on one backend; Redis namespaces are removed afterwards."""
    if request.param == "memory":
        clock = FakeClock()
        yield CacheBackend("memory", lambda: MemorySharedCache(clock=clock), short_ttl=5.0, clock=clock)
        return
    services.require_services()
    redis = Redis.from_url(services.REDIS_URL)
    prefixes: list[str] = []

    def make() -> SharedCache:
        prefix = services.unique_name("odock_contract_cache") + ":"
        prefixes.append(prefix)
        return RedisSharedCache(redis, prefix)

    try:
        yield CacheBackend("redis", make, short_ttl=0.05)
    finally:
        for prefix in prefixes:
            await services.delete_redis_prefix(prefix)
        await redis.aclose()


async def test_set_then_get_returns_the_value(backend: CacheBackend) -> None:
    """A stored value is returned by get."""
    cache = backend.make()
    await cache.set("k", b"value", 60)
    assert await cache.get("k") == b"value"


async def test_missing_key_is_none(backend: CacheBackend) -> None:
    """A key never stored reads as None."""
    cache = backend.make()
    assert await cache.get("never-set") is None


async def test_set_overwrites(backend: CacheBackend) -> None:
    """Setting a key again replaces its value."""
    cache = backend.make()
    await cache.set("k", b"first", 60)
    await cache.set("k", b"second", 60)
    assert await cache.get("k") == b"second"


async def test_delete_removes_only_the_named_keys(backend: CacheBackend) -> None:
    """delete removes the given keys (several at once) and leaves the others."""
    cache = backend.make()
    for key in ("a", "b", "c"):
        await cache.set(key, key.encode(), 60)
    await cache.delete("a", "b")
    assert await cache.get("a") is None
    assert await cache.get("b") is None
    assert await cache.get("c") == b"c"


async def test_delete_of_absent_keys_is_a_no_op(backend: CacheBackend) -> None:
    """Deleting keys that do not exist, or no keys at all, neither fails nor touches other keys."""
    cache = backend.make()
    await cache.set("kept", b"v", 60)
    await cache.delete("absent")
    await cache.delete("absent", "also-absent")
    await cache.delete()
    assert await cache.get("kept") == b"v"


@pytest.mark.parametrize(
    "value",
    [bytes(range(256)), b"\x00", b"\xff\xfe\x00\x80", b"", b"x" * (1024 * 1024)],
    ids=["all-bytes", "nul", "invalid-utf8", "empty", "1MiB"],
)
async def test_binary_values_round_trip(backend: CacheBackend, value: bytes) -> None:
    """Arbitrary bytes (NUL, non-UTF-8, empty, large) come back byte for byte."""
    cache = backend.make()
    await cache.set("bin", value, 60)
    assert await cache.get("bin") == value


async def test_entry_expires_after_its_ttl(backend: CacheBackend) -> None:
    """An entry disappears once its TTL has passed, while a longer-lived one stays."""
    cache = backend.make()
    await cache.set("long", b"stays", 3600)
    await cache.set("short", b"goes", backend.short_ttl)
    await backend.wait_until_absent(cache, "short")
    assert await cache.get("long") == b"stays"


async def test_overwrite_resets_the_ttl(backend: CacheBackend) -> None:
    """Re-setting a short-lived key with a long TTL keeps it past the first TTL."""
    cache = backend.make()
    await cache.set("k", b"old", backend.short_ttl)
    await cache.set("k", b"new", 3600)
    await cache.set("probe", b"p", backend.short_ttl)
    await backend.wait_until_absent(cache, "probe")
    assert await cache.get("k") == b"new"


async def test_namespaces_are_isolated(backend: CacheBackend) -> None:
    """Two caches with different prefixes never see (or delete) each other's keys."""
    first, second = backend.make(), backend.make()
    await first.set("same-key", b"first", 60)
    assert await second.get("same-key") is None
    await second.set("same-key", b"second", 60)
    await second.delete("same-key")
    assert await first.get("same-key") == b"first"


async def test_memory_expiry_is_exact_with_an_injected_clock() -> None:
    """The in-process twin keeps an entry until just before its TTL and drops it at the TTL."""
    clock = FakeClock()
    cache = MemorySharedCache(clock=clock)
    await cache.set("k", b"v", 10)
    clock.advance(9.999)
    assert await cache.get("k") == b"v"
    clock.advance(0.001)
    assert await cache.get("k") is None


async def test_redis_keys_carry_the_prefix_and_a_millisecond_ttl() -> None:
    """Redis entries live under '<prefix>cache:' with a PX expiry (never without one)."""
    services.require_services()
    redis = Redis.from_url(services.REDIS_URL)
    prefix = services.unique_name("odock_contract_cache") + ":"
    try:
        cache = RedisSharedCache(redis, prefix)
        await cache.set("k", b"v", 2.5)
        await cache.set("tiny", b"v", 0.0001)  # rounds up to 1 ms rather than to "no expiry"
        ttl_ms = await redis.pttl(prefix + "cache:k")
        assert 0 < ttl_ms <= 2500
        deadline = time.monotonic() + 5
        while await redis.exists(prefix + "cache:tiny"):
            assert time.monotonic() < deadline, "a sub-millisecond TTL must still expire"
    finally:
        await services.delete_redis_prefix(prefix)
        await redis.aclose()


async def test_redis_cache_refuses_a_decoding_client() -> None:
    """A Redis client that decodes responses to str is rejected, since values are bytes."""
    redis = Redis.from_url(services.REDIS_URL, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisSharedCache(redis, "unused:")
    finally:
        await redis.aclose()
