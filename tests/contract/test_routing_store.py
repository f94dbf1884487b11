"""The RoutingStore contract, run against the in-process store and the Redis store.

Time-dependent behaviour runs on the memory store's settable clock; against Redis (clocked by its
own ``TIME``) the same tests use short windows and poll with a deadline. The Redis parameters use
a key prefix unique to each test (deleted at the end) and skip when Redis is absent (fail in CI).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from odock.cache.redis_link import RedisLink
from odock.errors import RoutingStateUnavailable
from odock.routing.redis_store import RedisRoutingStore
from odock.routing.store import CLOSED, BreakerState, MemoryRoutingStore, RoutingStore
from tests.support import services

DEPLOYMENT = "prov-1/key-1/gpt-4o"


class FakeClock:
    """A settable wall clock (epoch seconds) for the in-process store."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Harness:
    """One store under test, plus the means to let time pass for it and to open a second handle."""

    def __init__(self, store: RoutingStore) -> None:
        self.store = store

    def now(self) -> float:
        """The store's clock, as a caller would read it."""
        return time.time()

    async def eventually(self, check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
        """Poll ``check`` until it holds (real time passes), failing after ``within`` seconds."""
        deadline = time.monotonic() + within
        while not await check():
            assert time.monotonic() < deadline, "condition not met before the deadline"
            await asyncio.sleep(0.01)

    def peer(self) -> RoutingStore:
        """Another handle on the same state (another gateway process, for Redis)."""
        return self.store

    async def close(self) -> None:
        """Release what the harness opened."""


class MemoryHarness(Harness):
    """The in-process store on a settable clock: waiting is stepping the clock."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        super().__init__(MemoryRoutingStore(self.clock))

    def now(self) -> float:
        return self.clock.now

    async def eventually(self, check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
        stepped = 0.0
        while not await check():
            assert stepped < within, "condition not met before the deadline"
            self.clock.now += 0.05
            stepped += 0.05


class RedisHarness(Harness):
    """The Redis store through redis-py, under a key prefix owned by one test."""

    def __init__(self) -> None:
        services.require_services()
        self.prefix = services.unique_name("odock_route_test") + ":"
        self.clients: list[Redis | RedisLink] = []
        super().__init__(self.peer())

    def client(self) -> Redis | RedisLink:
        """A client with its own bounded, blocking pool, as another process would have."""
        pool = BlockingConnectionPool.from_url(services.REDIS_URL, max_connections=32, timeout=10)
        return Redis.from_pool(pool)

    def peer(self) -> RoutingStore:
        client = self.client()
        self.clients.append(client)
        return RedisRoutingStore(client, self.prefix)

    async def close(self) -> None:
        await services.delete_redis_prefix(self.prefix)
        for client in self.clients:
            if isinstance(client, RedisLink):
                await client.close()
            else:
                await client.aclose()


class LinkHarness(RedisHarness):
    """The Redis store through the gateway's own client: one pipelined connection per process."""

    def client(self) -> Redis | RedisLink:
        return RedisLink(services.REDIS_URL, timeout=10, connect_timeout=10)


@pytest.fixture(params=["memory", "redis", "link"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A fresh, empty routing store of each implementation."""
    kinds: dict[str, Callable[[], Harness]] = {
        "memory": MemoryHarness,
        "redis": RedisHarness,
        "link": LinkHarness,
    }
    built = kinds[str(request.param)]()
    yield built
    await built.close()


async def fail(
    store: RoutingStore,
    deployment: str = DEPLOYMENT,
    *,
    threshold: int = 3,
    window: float = 60.0,
    cooldown: float = 30.0,
    retry_after: float | None = None,
) -> BreakerState:
    """Record one failure with the given breaker settings."""
    return await store.record_failure(
        deployment,
        threshold=threshold,
        window_seconds=window,
        cooldown_seconds=cooldown,
        retry_after=retry_after,
    )


async def breaker(store: RoutingStore, deployment: str = DEPLOYMENT) -> BreakerState:
    """The deployment's breaker as the store reads it."""
    return (await store.breakers([deployment]))[deployment]


async def half_opened(harness: Harness, deployment: str = DEPLOYMENT) -> None:
    """Open the deployment's breaker with no cooldown, so it is half-open at once."""
    state = await fail(harness.store, deployment, threshold=1, cooldown=0.0)
    assert state.half_open(harness.now())


# --- turns ------------------------------------------------------------------------------------


async def test_turns_count_up_per_key_independently(harness: Harness) -> None:
    """Each key has its own counter starting at 0; one key's turns do not move another's."""
    store = harness.store
    assert [await store.next_turn("key-a") for _ in range(3)] == [0, 1, 2]
    assert await store.next_turn("key-b") == 0
    assert await store.next_turn("key-a") == 3


async def test_concurrent_turns_are_all_distinct(harness: Harness) -> None:
    """Twenty concurrent callers (across two handles) get the turns 0..19, each exactly once."""
    first, second = harness.store, harness.peer()
    turns = await asyncio.gather(*(store.next_turn("shared") for store in [first, second] * 10))
    assert sorted(turns) == list(range(20))


# --- opening ----------------------------------------------------------------------------------


async def test_unknown_deployments_are_closed(harness: Harness) -> None:
    """breakers() answers CLOSED for deployments never seen, and nothing for an empty list."""
    assert await harness.store.breakers(["a", "b"]) == {"a": CLOSED, "b": CLOSED}
    assert await harness.store.breakers([]) == {}


async def test_failures_below_the_threshold_stay_closed(harness: Harness) -> None:
    """Two failures against a threshold of three are counted but do not open the breaker."""
    await fail(harness.store)
    assert await fail(harness.store) == BreakerState(2, None)
    assert await breaker(harness.store) == BreakerState(2, None)


async def test_reaching_the_threshold_opens_for_the_cooldown(harness: Harness) -> None:
    """The third consecutive failure opens the breaker until about now + cooldown."""
    for _ in range(2):
        await fail(harness.store)
    before = harness.now()
    state = await fail(harness.store)
    assert state.failures == 3
    assert state.is_open(harness.now())
    assert state.open_until == pytest.approx(before + 30.0, abs=1.0)
    assert await breaker(harness.store) == state


async def test_the_count_lapses_a_window_after_the_last_failure(harness: Harness) -> None:
    """A failure older than the window no longer counts: the next one starts again from one."""
    await fail(harness.store, threshold=2, window=0.2)

    async def lapsed() -> bool:
        return (await breaker(harness.store)).failures == 0

    await harness.eventually(lapsed)
    assert await fail(harness.store, threshold=2, window=0.2) == BreakerState(1, None)


async def test_retry_after_opens_at_once_for_at_least_that_long(harness: Harness) -> None:
    """Retry-After opens the breaker on the first failure, for the longer of it and the cooldown."""
    before = harness.now()
    state = await fail(harness.store, threshold=5, cooldown=10.0, retry_after=120.0)
    assert state.failures == 1
    assert state.open_until is not None
    assert state.open_until >= before + 119.0
    assert state.is_open(harness.now())


async def test_open_until_never_moves_earlier(harness: Harness) -> None:
    """Failures with a shorter cooldown while open leave a later end where it was."""
    opened = await fail(harness.store, cooldown=10.0, retry_after=300.0)
    for _ in range(4):
        state = await fail(harness.store, threshold=1, cooldown=10.0)
        assert state.open_until == opened.open_until
    assert (await breaker(harness.store)).open_until == opened.open_until


async def test_a_later_retry_after_extends_an_open_breaker(harness: Harness) -> None:
    """A longer Retry-After while open moves the end later."""
    opened = await fail(harness.store, retry_after=60.0)
    extended = await fail(harness.store, retry_after=600.0)
    assert opened.open_until is not None
    assert extended.open_until is not None
    assert extended.open_until >= opened.open_until + 500.0


async def test_breakers_are_per_deployment(harness: Harness) -> None:
    """Opening one deployment's breaker leaves the others closed."""
    await fail(harness.store, "a", threshold=1)
    states = await harness.store.breakers(["a", "b"])
    assert states["a"].is_open(harness.now())
    assert states["b"] == CLOSED


# --- half-open ----------------------------------------------------------------------------


async def test_the_cooldown_ends_in_half_open(harness: Harness) -> None:
    """Once open_until passes, the breaker reads as half-open (still not closed)."""
    await fail(harness.store, threshold=1, cooldown=0.2)

    async def half_open() -> bool:
        return (await breaker(harness.store)).half_open(harness.now())

    await harness.eventually(half_open)
    assert (await breaker(harness.store)).open_until is not None


async def test_exactly_one_concurrent_caller_claims_the_probe(harness: Harness) -> None:
    """Ten concurrent claims on a half-open breaker (from two handles): exactly one wins."""
    await half_opened(harness)
    first, second = harness.store, harness.peer()
    claims = await asyncio.gather(
        *(store.claim_probe(DEPLOYMENT, lease_seconds=60.0) for store in [first, second] * 5)
    )
    assert claims.count(True) == 1


async def test_the_probe_is_claimable_again_after_its_lease(harness: Harness) -> None:
    """A probe whose caller never reported back can be claimed again once its lease lapses."""
    await half_opened(harness)
    assert await harness.store.claim_probe(DEPLOYMENT, lease_seconds=0.2)

    async def claimed() -> bool:
        return await harness.store.claim_probe(DEPLOYMENT, lease_seconds=60.0)

    await harness.eventually(claimed)
    assert not await harness.store.claim_probe(DEPLOYMENT, lease_seconds=60.0)


async def test_no_probe_while_closed_or_open(harness: Harness) -> None:
    """claim_probe is False for a closed breaker and for one still cooling down."""
    assert not await harness.store.claim_probe(DEPLOYMENT, lease_seconds=60.0)
    await fail(harness.store, threshold=1, cooldown=60.0)
    assert not await harness.store.claim_probe(DEPLOYMENT, lease_seconds=60.0)


async def test_a_failed_probe_reopens_the_breaker(harness: Harness) -> None:
    """A failure while half-open opens again for the cooldown, whatever the count."""
    await half_opened(harness)
    assert await harness.store.claim_probe(DEPLOYMENT, lease_seconds=60.0)
    state = await fail(harness.store, threshold=100, cooldown=60.0)
    assert state.is_open(harness.now())
    assert not await harness.store.claim_probe(DEPLOYMENT, lease_seconds=60.0)


async def test_reopening_drops_the_probe_lease(harness: Harness) -> None:
    """After a failed probe's new cooldown ends, a probe can be claimed at once (the old lease is gone)."""
    await half_opened(harness)
    assert await harness.store.claim_probe(DEPLOYMENT, lease_seconds=600.0)
    await fail(harness.store, threshold=100, cooldown=0.0)  # reopened, half-open again at once
    assert await harness.store.claim_probe(DEPLOYMENT, lease_seconds=600.0)


# --- closing ------------------------------------------------------------------------------


async def test_success_closes_and_resets(harness: Harness) -> None:
    """A success closes an open breaker, clears its count and drops its probe lease."""
    await half_opened(harness)
    assert await harness.store.claim_probe(DEPLOYMENT, lease_seconds=600.0)
    await harness.store.record_success(DEPLOYMENT)
    assert await breaker(harness.store) == CLOSED
    assert await fail(harness.store, threshold=2) == BreakerState(1, None)

    await harness.store.record_success(DEPLOYMENT)
    await half_opened(harness)
    assert await harness.store.claim_probe(DEPLOYMENT, lease_seconds=600.0)


async def test_success_on_an_unknown_deployment_is_harmless(harness: Harness) -> None:
    """Closing a breaker never seen leaves it closed."""
    await harness.store.record_success("never-seen")
    assert await breaker(harness.store, "never-seen") == CLOSED


async def test_state_is_shared_between_handles(harness: Harness) -> None:
    """A breaker opened through one handle reads open through another (another replica, for Redis)."""
    await fail(harness.store, threshold=1)
    assert (await breaker(harness.peer())).is_open(harness.now())


# --- implementation specifics ------------------------------------------------------------


async def test_memory_store_forgets_idle_entries() -> None:
    """The in-process store drops turns and breakers once idle past their memory (bounded memory)."""
    clock = FakeClock()
    store = MemoryRoutingStore(clock, sweep_every=1)
    await store.next_turn("key")
    await fail(store, "a", threshold=1, cooldown=10.0)
    await fail(store, "b", window=5.0)
    assert store.held_entries() == 3
    clock.now += 10.0
    await store.next_turn("other")
    assert store.held_entries() == 3  # "b" lapsed, "other" arrived; "a" is half-open
    clock.now += 86_401.0
    await store.record_success("nothing")
    assert store.held_entries() == 0
    assert await store.next_turn("key") == 0


async def test_redis_keys_live_under_the_prefix_and_expire() -> None:
    """Turn and breaker keys sit under ``<prefix>route:`` and carry a time to live."""
    async with services.redis_with_prefix("odock_route_keys") as (client, prefix):
        store = RedisRoutingStore(client, prefix)
        await store.next_turn("key")
        await fail(store, "dep", threshold=1, cooldown=10.0)
        await fail(store, "counted", window=5.0)
        keys = sorted([key.decode() async for key in client.scan_iter(match=prefix + "*")])
        assert keys == [prefix + "route:cb:counted", prefix + "route:cb:dep", prefix + "route:turn:key"]
        assert 86_000_000 < await client.pttl(prefix + "route:turn:key") <= 86_400_000
        assert 86_400_000 < await client.pttl(prefix + "route:cb:dep") <= 86_410_000
        assert 0 < await client.pttl(prefix + "route:cb:counted") <= 5_000
        await store.record_success("dep")
        assert not await client.exists(prefix + "route:cb:dep")


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _every_operation_unavailable(store: RedisRoutingStore) -> None:
    """Each operation raises RoutingStateUnavailable (a 503 with its stable code)."""
    with pytest.raises(RoutingStateUnavailable) as caught:
        await store.next_turn("key")
    assert caught.value.status == 503
    assert caught.value.code == "routing_state_unavailable"
    with pytest.raises(RoutingStateUnavailable):
        await store.breakers(["dep"])
    with pytest.raises(RoutingStateUnavailable):
        await fail(store)
    with pytest.raises(RoutingStateUnavailable):
        await store.record_success("dep")
    with pytest.raises(RoutingStateUnavailable):
        await store.claim_probe("dep", lease_seconds=1.0)


async def test_unreachable_redis_raises_routing_state_unavailable() -> None:
    """When Redis cannot be reached, every operation raises RoutingStateUnavailable."""
    client = Redis(
        host="127.0.0.1", port=closed_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        await _every_operation_unavailable(RedisRoutingStore(client, "unreachable:"))
    finally:
        await client.aclose()


async def test_unreachable_redis_link_raises_routing_state_unavailable() -> None:
    """Through the gateway's pipelined link too, an unreachable Redis is RoutingStateUnavailable."""
    link = RedisLink(f"redis://127.0.0.1:{closed_port()}/0", timeout=1, connect_timeout=1)
    try:
        await _every_operation_unavailable(RedisRoutingStore(link, "unreachable:"))
    finally:
        await link.close()
