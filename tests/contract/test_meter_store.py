"""The MeterStore contract, run against the in-process store and the Redis store.

The Redis parameter uses a real Redis with a key prefix unique to each test (deleted at the
end); it skips with a notice when Redis is absent, and fails instead in CI.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from odock.budgets.meters import (
    MemoryMeterStore,
    MeterLine,
    MeterReading,
    MeterStore,
    ReleaseOutcome,
    ReserveOutcome,
    SettleOutcome,
    Shortfall,
)
from odock.budgets.redis_meters import RedisMeterStore
from odock.cache.redis_link import RedisLink
from odock.errors import MeterStoreUnavailable
from odock.ids import RequestId, new_request_id
from tests.support import services


class FakeClock:
    """A settable wall clock (epoch seconds) for the in-process store."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class MeterHarness:
    """One store under test plus the means to simulate the world around it."""

    kind = "abstract"

    def __init__(self, store: MeterStore) -> None:
        self.store = store

    async def open_store(self) -> MeterStore:
        """Another handle on the same counters (another gateway process, for Redis)."""
        raise NotImplementedError

    async def wipe(self) -> MeterStore:
        """Lose every counter and record (FLUSHDB, or an embedded restart); the store to use next."""
        raise NotImplementedError

    def advance(self, seconds: float) -> None:
        """Move the store's clock forward, when the test controls it."""

    async def close(self) -> None:
        """Release what the harness opened."""


class MemoryHarness(MeterHarness):
    """The in-process store on a settable clock."""

    kind = "memory"

    def __init__(self) -> None:
        self.clock = FakeClock()
        super().__init__(MemoryMeterStore(self.clock))

    async def open_store(self) -> MeterStore:
        return self.store  # one process, one store

    async def wipe(self) -> MeterStore:
        self.store = MemoryMeterStore(self.clock)  # a restart loses everything
        return self.store

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds


class RedisHarness(MeterHarness):
    """The Redis store under a key prefix owned by one test."""

    kind = "redis"

    def __init__(self) -> None:
        services.require_services()
        self.prefix = services.unique_name("odock_meter_test") + ":"
        self.clients: list[Redis] = []
        self.links: list[RedisLink] = []
        super().__init__(self._open())

    def _open(self) -> RedisMeterStore:
        # Its own pool, as another process would have; a blocking pool queues a burst instead
        # of failing it once every connection is busy (the default pool raises past 100).
        pool = BlockingConnectionPool.from_url(services.REDIS_URL, max_connections=32, timeout=10)
        client = Redis.from_pool(pool)
        self.clients.append(client)
        return RedisMeterStore(client, self.prefix)

    async def open_store(self) -> MeterStore:
        return self._open()

    async def wipe(self) -> MeterStore:
        await services.delete_redis_prefix(self.prefix)  # every key of this store, and only those
        return self.store

    async def close(self) -> None:
        await services.delete_redis_prefix(self.prefix)
        for client in self.clients:
            await client.aclose()


class LinkHarness(RedisHarness):
    """The Redis store through the gateway's own client: one pipelined connection per process."""

    kind = "redis"

    def _open(self) -> RedisMeterStore:
        link = RedisLink(services.REDIS_URL, timeout=10, connect_timeout=10)
        self.links.append(link)
        return RedisMeterStore(link, self.prefix)

    async def close(self) -> None:
        await super().close()
        for link in self.links:
            await link.close()


@pytest.fixture(params=["memory", "redis", "link"])
async def meters(request: pytest.FixtureRequest) -> AsyncIterator[MeterHarness]:
    """A fresh, empty meter store of each implementation (Redis through redis-py and the gateway's link)."""
    kinds: dict[str, Callable[[], MeterHarness]] = {
        "memory": MemoryHarness,
        "redis": RedisHarness,
        "link": LinkHarness,
    }
    harness = kinds[str(request.param)]()
    yield harness
    await harness.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Poll ``check`` until it holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


async def reading(store: MeterStore, key: str) -> MeterReading:
    """The counter's state, which must exist."""
    return (await store.snapshot([key]))[key]


# --- reserving ---------------------------------------------------------------------------


async def test_reserve_holds_the_amount_on_every_line(meters: MeterHarness) -> None:
    """An admitted reservation adds its amount to each line's reserved and records the limit."""
    store = meters.store
    await store.prime("org", used=10, reserved=0, limit=50)
    await store.prime("key", used=0, reserved=5, limit=40)
    result = await store.reserve(new_request_id(), [MeterLine("org", 7, 100), MeterLine("key", 7, 40)], 60)
    assert result.admitted
    assert not result.replayed
    assert await store.snapshot(["org", "key"]) == {
        "org": MeterReading(10, 7, 100),
        "key": MeterReading(0, 12, 40),
    }


async def test_reserve_is_all_or_nothing_across_lines(meters: MeterHarness) -> None:
    """When the key budget is exhausted, the org budget that had room is not touched."""
    store = meters.store
    await store.prime("org", used=0, reserved=0, limit=1_000)
    await store.prime("key", used=95, reserved=3, limit=100)
    lines = [MeterLine("org", 5, 1_000), MeterLine("key", 5, 100)]
    result = await store.reserve(new_request_id(), lines, 60)
    assert result.outcome is ReserveOutcome.REJECTED
    assert result.shortfall == Shortfall("key", limit=100, used=95, reserved=3, requested=5)
    assert await reading(store, "org") == MeterReading(0, 0, 1_000)
    assert await reading(store, "key") == MeterReading(95, 3, 100)


async def test_shortfall_names_the_first_failing_line(meters: MeterHarness) -> None:
    """When several lines are short, the rejection reports the first in request order."""
    store = meters.store
    await store.prime("team", used=9, reserved=0, limit=10)
    await store.prime("user", used=10, reserved=0, limit=10)
    result = await store.reserve(new_request_id(), [MeterLine("user", 2, 10), MeterLine("team", 2, 10)], 60)
    assert result.shortfall is not None
    assert result.shortfall.key == "user"


async def test_exactly_k_of_many_concurrent_reserves_fit(meters: MeterHarness) -> None:
    """With room for exactly K, N >> K concurrent reserves admit K, and settling them keeps used <= limit."""
    store, k, n, estimate = meters.store, 7, 200, 1_000_000_000
    await store.prime("budget", used=0, reserved=0, limit=k * estimate)
    ids = [new_request_id() for _ in range(n)]
    line = MeterLine("budget", estimate, k * estimate)
    results = await asyncio.gather(*(store.reserve(rid, [line], 60) for rid in ids))
    admitted = [rid for rid, result in zip(ids, results, strict=True) if result.admitted]
    assert len(admitted) == k
    assert all(r.outcome is ReserveOutcome.REJECTED for r in results if not r.admitted)
    actuals = [random.randint(1, estimate) for _ in admitted]
    settles = (store.settle(rid, {"budget": a}) for rid, a in zip(admitted, actuals, strict=True))
    assert set(await asyncio.gather(*settles)) == {SettleOutcome.SETTLED}
    final = await reading(store, "budget")
    assert final == MeterReading(sum(actuals), 0, k * estimate)
    assert final.used <= final.limit


async def test_two_redis_stores_on_separate_connections_admit_exactly_k() -> None:
    """Two gateway processes sharing one Redis admit exactly K reservations between them."""
    harness = RedisHarness()
    try:
        first, second = harness.store, await harness.open_store()
        k, n = 5, 160
        await first.prime("shared", used=0, reserved=0, limit=k * 3)
        calls = [
            (first if i % 2 else second).reserve(new_request_id(), [MeterLine("shared", 3, k * 3)], 60)
            for i in range(n)
        ]
        results = await asyncio.gather(*calls)
        assert sum(result.admitted for result in results) == k
        assert await reading(second, "shared") == MeterReading(0, k * 3, k * 3)
    finally:
        await harness.close()


async def test_amounts_beyond_double_precision_compare_exactly(meters: MeterHarness) -> None:
    """Limits above 2^53 nanos are enforced to the unit (Lua doubles would round them)."""
    store, limit = meters.store, 2**62
    await store.prime("big", used=limit - 5, reserved=0, limit=limit)
    assert (await store.reserve(new_request_id(), [MeterLine("big", 5, limit)], 60)).admitted
    over = await store.reserve(new_request_id(), [MeterLine("big", 1, limit)], 60)
    assert over.outcome is ReserveOutcome.REJECTED
    assert await reading(store, "big") == MeterReading(limit - 5, 5, limit)


async def test_sums_near_a_limit_one_or_two_digits_longer_compare_exactly(meters: MeterHarness) -> None:
    """Two-digit terms against 100: 99 + 1 fits and 99 + 2 does not; one-digit terms always fit 100."""
    store = meters.store
    await store.prime("b", used=99, reserved=0, limit=100)
    over = await store.reserve(new_request_id(), [MeterLine("b", 2, 100)], 60)
    assert over.outcome is ReserveOutcome.REJECTED
    assert (await store.reserve(new_request_id(), [MeterLine("b", 1, 100)], 60)).admitted
    await store.prime("c", used=9, reserved=9, limit=100)
    assert (await store.reserve(new_request_id(), [MeterLine("c", 9, 100)], 60)).admitted
    assert await store.snapshot(["b", "c"]) == {"b": MeterReading(99, 1, 100), "c": MeterReading(9, 18, 100)}


async def test_invalid_input_is_rejected_before_touching_counters(meters: MeterHarness) -> None:
    """Negative amounts, a repeated counter or a non-positive TTL raise ValueError."""
    store = meters.store
    with pytest.raises(ValueError, match="amount"):
        await store.reserve(new_request_id(), [MeterLine("a", -1, 10)], 60)
    with pytest.raises(ValueError, match="twice"):
        await store.reserve(new_request_id(), [MeterLine("a", 1, 10), MeterLine("a", 1, 10)], 60)
    with pytest.raises(ValueError, match="ttl"):
        await store.reserve(new_request_id(), [MeterLine("a", 1, 10)], 0)


# --- idempotency -------------------------------------------------------------------------


async def test_repeated_reserve_returns_the_first_outcome_once(meters: MeterHarness) -> None:
    """Reserving twice (even concurrently) with one request id holds the amount once."""
    store, rid = meters.store, new_request_id()
    await store.prime("b", used=0, reserved=0, limit=100)
    first, second = await asyncio.gather(
        store.reserve(rid, [MeterLine("b", 30, 100)], 60), store.reserve(rid, [MeterLine("b", 30, 100)], 60)
    )
    assert first.admitted
    assert second.admitted
    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert await reading(store, "b") == MeterReading(0, 30, 100)


async def test_repeated_reserve_replays_a_rejection(meters: MeterHarness) -> None:
    """A request id that was rejected stays rejected, with the original shortfall, even if room appears."""
    store, rid = meters.store, new_request_id()
    await store.prime("b", used=90, reserved=0, limit=100)
    first = await store.reserve(rid, [MeterLine("b", 20, 100)], 60)
    again = await store.reserve(rid, [MeterLine("b", 20, 1_000)], 60)
    assert again.outcome is ReserveOutcome.REJECTED
    assert again.replayed
    assert again.shortfall == first.shortfall == Shortfall("b", 100, 90, 0, 20)
    assert await reading(store, "b") == MeterReading(90, 0, 100)


async def test_settle_moves_the_reservation_into_used_once(meters: MeterHarness) -> None:
    """Settle replaces the estimate by the actual (even past the limit); a second settle changes nothing."""
    store, rid = meters.store, new_request_id()
    await store.prime("b", used=60, reserved=0, limit=100)
    await store.reserve(rid, [MeterLine("b", 30, 100)], 60)
    assert await store.settle(rid, {"b": 55}) is SettleOutcome.SETTLED
    assert await store.settle(rid, {"b": 55}) is SettleOutcome.DUPLICATE
    assert await reading(store, "b") == MeterReading(115, 0, 100)
    assert (await store.reserve(rid, [MeterLine("b", 30, 100)], 60)).replayed


async def test_release_frees_the_reservation_once(meters: MeterHarness) -> None:
    """Release returns the held amount; repeating it, or releasing after a settle, changes nothing."""
    store, rid, other = meters.store, new_request_id(), new_request_id()
    await store.prime("b", used=0, reserved=0, limit=100)
    await store.reserve(rid, [MeterLine("b", 30, 100)], 60)
    await store.reserve(other, [MeterLine("b", 20, 100)], 60)
    assert await store.release(rid) is ReleaseOutcome.RELEASED
    assert await store.release(rid) is ReleaseOutcome.NOTHING
    await store.settle(other, {"b": 10})
    assert await store.release(other) is ReleaseOutcome.NOTHING
    assert await store.release(new_request_id()) is ReleaseOutcome.NOTHING
    assert await reading(store, "b") == MeterReading(10, 0, 100)


async def test_settle_after_release_adds_only_the_actual(meters: MeterHarness) -> None:
    """A late settle after the reservation was released records the actual without double-freeing."""
    store, rid = meters.store, new_request_id()
    await store.prime("b", used=0, reserved=0, limit=100)
    await store.reserve(rid, [MeterLine("b", 40, 100)], 60)
    await store.release(rid)
    assert await store.settle(rid, {"b": 25}) is SettleOutcome.UNRESERVED
    assert await store.settle(rid, {"b": 25}) is SettleOutcome.DUPLICATE
    assert await reading(store, "b") == MeterReading(25, 0, 100)


async def test_settle_without_any_reservation_closes_the_request_id(meters: MeterHarness) -> None:
    """Settling an unknown request adds its actual; a later reserve with that id holds nothing."""
    store, rid = meters.store, new_request_id()
    await store.prime("b", used=0, reserved=0, limit=100)
    assert await store.settle(rid, {"b": 7, "cold": 3}) is SettleOutcome.UNRESERVED
    late = await store.reserve(rid, [MeterLine("b", 50, 100)], 60)
    assert late.outcome is ReserveOutcome.CLOSED
    assert await store.snapshot(["b", "cold"]) == {"b": MeterReading(7, 0, 100)}


# --- cold counters -----------------------------------------------------------------------


async def test_cold_counters_are_reported_then_primed_and_retried(meters: MeterHarness) -> None:
    """Reserving on a missing counter reserves nothing and names it; after prime the retry succeeds."""
    store, rid = meters.store, new_request_id()
    await store.prime("warm", used=0, reserved=0, limit=100)
    lines = [MeterLine("warm", 10, 100), MeterLine("cold", 10, 100)]
    first = await store.reserve(rid, lines, 60)
    assert first.outcome is ReserveOutcome.COLD
    assert first.cold_keys == ("cold",)
    assert await store.snapshot(["warm", "cold"]) == {"warm": MeterReading(0, 0, 100)}
    assert await store.prime("cold", used=85, reserved=0, limit=100)
    retry = await store.reserve(rid, lines, 60)
    assert retry.admitted
    assert not retry.replayed
    assert await reading(store, "cold") == MeterReading(85, 10, 100)


async def test_prime_only_sets_a_missing_counter_even_under_concurrency(meters: MeterHarness) -> None:
    """Of many concurrent primes of one key exactly one wins, and later primes never overwrite it."""
    store = meters.store
    wins = await asyncio.gather(*(store.prime("k", used=u, reserved=0, limit=1_000) for u in range(1, 31)))
    assert sum(wins) == 1
    winner = wins.index(True) + 1
    assert await reading(store, "k") == MeterReading(winner, 0, 1_000)
    assert not await store.prime("k", used=999, reserved=0, limit=5)
    assert await reading(store, "k") == MeterReading(winner, 0, 1_000)


async def test_spend_is_still_enforced_after_the_counters_are_flushed(meters: MeterHarness) -> None:
    """After FLUSHDB (or a restart) counters go cold, are primed from the ledger, and limits hold again."""
    store, rid = meters.store, new_request_id()
    await store.prime("b", used=0, reserved=0, limit=100)
    await store.reserve(rid, [MeterLine("b", 80, 100)], 60)
    await store.settle(rid, {"b": 80})
    store = await meters.wipe()
    cold = await store.reserve(new_request_id(), [MeterLine("b", 30, 100)], 60)
    assert cold.outcome is ReserveOutcome.COLD
    assert await store.prime("b", used=80, reserved=0, limit=100)  # the ledger's total
    over = await store.reserve(new_request_id(), [MeterLine("b", 30, 100)], 60)
    assert over.outcome is ReserveOutcome.REJECTED
    assert (await store.reserve(new_request_id(), [MeterLine("b", 20, 100)], 60)).admitted


async def test_settle_after_a_flush_only_adds_to_counters_that_exist(meters: MeterHarness) -> None:
    """Without its reservation record, settle adds the actual to a re-primed counter and creates none."""
    store, rid = meters.store, new_request_id()
    await store.prime("a", used=0, reserved=0, limit=100)
    await store.prime("b", used=0, reserved=0, limit=100)
    await store.reserve(rid, [MeterLine("a", 10, 100), MeterLine("b", 10, 100)], 60)
    store = await meters.wipe()
    await store.prime("a", used=50, reserved=0, limit=100)
    assert await store.settle(rid, {"a": 9, "b": 9}) is SettleOutcome.UNRESERVED
    assert await store.snapshot(["a", "b"]) == {"a": MeterReading(59, 0, 100)}


async def test_primed_counter_with_a_time_to_live_goes_cold_again(meters: MeterHarness) -> None:
    """A counter primed with a TTL disappears after it, so the next reserve reports it cold."""
    store = meters.store
    await store.prime("short", used=0, reserved=0, limit=10, ttl_seconds=0.05)
    meters.advance(1)

    async def gone() -> bool:
        return await store.snapshot(["short"]) == {}

    await eventually(gone)
    result = await store.reserve(new_request_id(), [MeterLine("short", 1, 10)], 60)
    assert result.cold_keys == ("short",)


# --- reconciliation ----------------------------------------------------------------------


async def test_reservations_past_their_ttl_are_listed_for_reconciliation(meters: MeterHarness) -> None:
    """A reservation is listed by expired() after its TTL, a long-lived one is not, and release unlists it."""
    store, short, long = meters.store, new_request_id(), new_request_id()
    await store.prime("b", used=0, reserved=0, limit=100)
    await store.reserve(long, [MeterLine("b", 1, 100)], 3600)
    await store.reserve(short, [MeterLine("b", 1, 100)], 0.05)
    meters.advance(1)

    async def listed() -> bool:
        return short in await store.expired()

    await eventually(listed)
    assert long not in await store.expired()
    assert await store.release(short) is ReleaseOutcome.RELEASED
    assert short not in await store.expired()
    assert await store.settle(short, {"b": 4}) is SettleOutcome.UNRESERVED
    assert await reading(store, "b") == MeterReading(4, 1, 100)


async def test_expired_honours_an_explicit_now_and_a_limit_oldest_first(meters: MeterHarness) -> None:
    """expired(now, limit) lists at most ``limit`` ids due at ``now``, earliest expiry first."""
    store = meters.store
    await store.prime("b", used=0, reserved=0, limit=100)
    ids: list[RequestId] = []
    for ttl in (300, 100, 200):
        rid = new_request_id()
        ids.append(rid)
        await store.reserve(rid, [MeterLine("b", 1, 100)], ttl)
    later = datetime.now(UTC) + timedelta(seconds=250)
    assert await store.expired(later, limit=10) == [ids[1], ids[2]]
    assert await store.expired(later, limit=1) == [ids[1]]
    assert await store.expired(datetime.now(UTC) - timedelta(seconds=60)) == []


async def test_snapshot_omits_cold_counters(meters: MeterHarness) -> None:
    """snapshot() returns only counters that exist."""
    store = meters.store
    await store.prime("here", used=1, reserved=2, limit=3)
    assert await store.snapshot(["here", "absent"]) == {"here": MeterReading(1, 2, 3)}
    assert await store.snapshot([]) == {}


async def test_unreachable_redis_raises_meter_store_unavailable() -> None:
    """When Redis cannot be reached, every operation raises MeterStoreUnavailable (503)."""
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    store = RedisMeterStore(client, "unreachable:")
    try:
        with pytest.raises(MeterStoreUnavailable) as caught:
            await store.reserve(new_request_id(), [MeterLine("b", 1, 10)], 60)
        assert caught.value.status == 503
        assert caught.value.code == "budget_enforcement_unavailable"
        with pytest.raises(MeterStoreUnavailable):
            await store.settle(new_request_id(), {"b": 1})
    finally:
        await client.aclose()


async def test_unreachable_redis_link_raises_meter_store_unavailable() -> None:
    """Through the gateway's pipelined link too, an unreachable Redis is a MeterStoreUnavailable."""
    link = RedisLink("redis://127.0.0.1:1/0", timeout=0.5, connect_timeout=0.5)
    store = RedisMeterStore(link, "unreachable:")
    try:
        with pytest.raises(MeterStoreUnavailable):
            await store.reserve(new_request_id(), [MeterLine("b", 1, 10)], 60)
        with pytest.raises(MeterStoreUnavailable):
            await store.settle(new_request_id(), {"b": 1})
    finally:
        await link.close()
