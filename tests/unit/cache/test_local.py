"""TtlCache: the bounded, zero-I/O first tier, driven by an injected clock."""

from __future__ import annotations

import pytest

from odock.cache.local import TtlCache


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock."""
    return FakeClock()


def test_value_is_served_until_its_ttl(clock: FakeClock) -> None:
    """An entry is returned just before its TTL and gone (and removed) at the TTL."""
    cache: TtlCache[str, int] = TtlCache(10, clock=clock)
    cache.set("k", 1, ttl=5)
    clock.now += 4.999
    assert cache.get("k") == 1
    clock.now += 0.001
    assert cache.get("k") is None
    assert len(cache) == 0


def test_each_entry_has_its_own_ttl(clock: FakeClock) -> None:
    """A short-lived entry expires while a long-lived one set at the same time stays."""
    cache: TtlCache[str, str] = TtlCache(10, clock=clock)
    cache.set("short", "s", ttl=1)
    cache.set("long", "l", ttl=100)
    clock.now += 2
    assert cache.get("short") is None
    assert cache.get("long") == "l"


def test_setting_again_renews_the_ttl(clock: FakeClock) -> None:
    """Re-setting a key replaces its value and restarts its TTL."""
    cache: TtlCache[str, str] = TtlCache(10, clock=clock)
    cache.set("k", "old", ttl=5)
    clock.now += 4
    cache.set("k", "new", ttl=5)
    clock.now += 4
    assert cache.get("k") == "new"


def test_size_is_bounded_by_dropping_the_oldest(clock: FakeClock) -> None:
    """Past max_entries, the entry written longest ago is dropped and the size stays at the bound."""
    cache: TtlCache[int, int] = TtlCache(3, clock=clock)
    for key in range(5):
        cache.set(key, key, ttl=60)
    assert len(cache) == 3
    assert list(cache) == [2, 3, 4]
    assert cache.get(0) is None
    assert cache.get(1) is None


def test_rewriting_a_key_makes_it_the_newest(clock: FakeClock) -> None:
    """Updating a key neither evicts anything nor leaves it first in line for eviction."""
    cache: TtlCache[str, int] = TtlCache(2, clock=clock)
    cache.set("a", 1, ttl=60)
    cache.set("b", 2, ttl=60)
    cache.set("a", 10, ttl=60)
    assert len(cache) == 2
    cache.set("c", 3, ttl=60)
    assert cache.get("a") == 10
    assert cache.get("b") is None


def test_max_entries_must_be_positive() -> None:
    """A cache that can hold nothing is refused at construction."""
    with pytest.raises(ValueError, match="max_entries"):
        TtlCache(0)


def test_delete_and_clear(clock: FakeClock) -> None:
    """delete forgets one key (absent keys are fine) and clear forgets all."""
    cache: TtlCache[str, int] = TtlCache(10, clock=clock)
    cache.set("a", 1, ttl=60)
    cache.set("b", 2, ttl=60)
    cache.delete("a")
    cache.delete("never-set")
    assert cache.get("a") is None
    assert cache.get("b") == 2
    cache.clear()
    assert len(cache) == 0


def test_delete_where_removes_matches_and_counts_them(clock: FakeClock) -> None:
    """delete_where removes exactly the entries matching the predicate and says how many."""
    cache: TtlCache[str, int] = TtlCache(10, clock=clock)
    for key, value in {"org1/a": 1, "org1/b": 2, "org2/a": 3}.items():
        cache.set(key, value, ttl=60)
    assert cache.delete_where(lambda key, _value: key.startswith("org1/")) == 2
    assert list(cache) == ["org2/a"]
    assert cache.delete_where(lambda _key, value: value > 100) == 0
    assert cache.get("org2/a") == 3


def test_iteration_is_a_snapshot(clock: FakeClock) -> None:
    """Keys can be deleted while iterating over the cache."""
    cache: TtlCache[int, int] = TtlCache(10, clock=clock)
    for key in range(3):
        cache.set(key, key, ttl=60)
    for key in cache:
        cache.delete(key)
    assert len(cache) == 0
