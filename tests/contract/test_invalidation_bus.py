"""The InvalidationBus contract, run against the in-process bus and the Redis bus.

The Redis-only tests start several bus instances on one prefix and channel, each standing for
a replica, and drive the listener from the outside: raw messages published by an admin client,
and the listener's own connection killed with ``CLIENT KILL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff

from odock.cache.bus import Invalidation, InvalidationBus, LocalInvalidationBus, RedisInvalidationBus
from tests.support import services

DELIVERY_DEADLINE = 5.0
REVOKE = Invalidation("api_key", organisation_id="org-1", key_hash="hash-1")


class Inbox:
    """A listener that queues what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[Invalidation] = asyncio.Queue()

    def __call__(self, invalidation: Invalidation) -> None:
        self.received.put_nowait(invalidation)

    async def next(self) -> Invalidation:
        """The next invalidation, failing if none arrives before the deadline."""
        return await asyncio.wait_for(self.received.get(), DELIVERY_DEADLINE)

    async def until(self, expected: Invalidation) -> None:
        """Consume invalidations until ``expected`` arrives (failing after the deadline)."""
        async with asyncio.timeout(DELIVERY_DEADLINE):
            while await self.received.get() != expected:
                pass

    def drain(self) -> list[Invalidation]:
        """Everything received so far."""
        items = []
        while not self.received.empty():
            items.append(self.received.get_nowait())
        return items


@dataclass
class RedisReplicas:
    """Redis buses sharing one prefix and channel, as replicas of one deployment do."""

    prefix: str
    channel: str
    admin: Redis
    clients: list[Redis] = field(default_factory=list)
    buses: list[RedisInvalidationBus] = field(default_factory=list)

    async def start(self, *, client: Redis | None = None) -> RedisInvalidationBus:
        """Start one more replica's bus (on its own client unless one is given)."""
        if client is None:
            client = Redis.from_url(services.REDIS_URL)
        self.clients.append(client)
        bus = RedisInvalidationBus(client, self.prefix, self.channel)
        self.buses.append(bus)
        await bus.start()
        return bus

    async def close(self) -> None:
        """Stop every bus and close every client."""
        for bus in self.buses:
            await bus.stop()
        for client in self.clients:
            await client.aclose()


@contextlib.asynccontextmanager
async def redis_replicas() -> AsyncIterator[RedisReplicas]:
    """A Redis namespace and channel of one's own (keys removed on exit)."""
    services.require_services()
    prefix = services.unique_name("odock_contract_bus") + ":"
    admin = Redis.from_url(services.REDIS_URL)
    group = RedisReplicas(prefix=prefix, channel=prefix + "invalidation", admin=admin)
    try:
        yield group
    finally:
        await group.close()
        await services.delete_redis_prefix(prefix)
        await admin.aclose()


@pytest.fixture
async def replicas() -> AsyncIterator[RedisReplicas]:
    """Redis buses of one deployment, in a namespace of this test's own."""
    async with redis_replicas() as group:
        yield group


BusFactory = Callable[[], Awaitable[InvalidationBus]]


@pytest.fixture(params=["local", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Start buses of one backend (Redis buses share a namespace); all are stopped afterwards."""
    if request.param == "redis":
        async with redis_replicas() as group:

            async def make_redis() -> InvalidationBus:
                return await group.start()

            yield make_redis
        return
    local: list[LocalInvalidationBus] = []

    async def make_local() -> InvalidationBus:
        bus = LocalInvalidationBus()
        await bus.start()
        local.append(bus)
        return bus

    yield make_local
    for bus in local:
        await bus.stop()


# --- both backends --------------------------------------------------------------------------


async def test_publish_reaches_every_subscriber_before_it_returns(make_bus: BusFactory) -> None:
    """Every listener of the publishing bus has the invalidation by the time publish returns."""
    bus = await make_bus()
    first, second = Inbox(), Inbox()
    bus.subscribe(first)
    bus.subscribe(second)
    await bus.publish(REVOKE)
    assert first.drain()[:1] == [REVOKE]
    assert second.drain()[:1] == [REVOKE]


async def test_generation_increases_with_every_publish(make_bus: BusFactory) -> None:
    """Each publish moves the generation strictly forward."""
    bus = await make_bus()
    seen = [bus.generation]
    for _ in range(5):
        await bus.publish(Invalidation("all"))
        seen.append(bus.generation)
    assert all(later > earlier for earlier, later in itertools.pairwise(seen))


async def test_failing_listener_does_not_stop_the_others(make_bus: BusFactory) -> None:
    """A listener that raises is isolated: later listeners still receive the invalidation."""
    bus = await make_bus()

    def broken(_inv: Invalidation) -> None:
        raise RuntimeError("listener bug")

    inbox = Inbox()
    bus.subscribe(broken)
    bus.subscribe(inbox)
    await bus.publish(REVOKE)
    assert inbox.drain()[:1] == [REVOKE]


# --- Redis: several replicas ----------------------------------------------------------------


async def test_other_replica_receives_the_invalidation_and_the_generation(replicas: RedisReplicas) -> None:
    """A second bus on the same channel receives the invalidation and adopts the new generation."""
    publisher = await replicas.start()
    other = await replicas.start()
    inbox = Inbox()
    other.subscribe(inbox)
    before = other.generation
    await publisher.publish(REVOKE)
    assert await inbox.next() == REVOKE
    assert other.generation == publisher.generation > before


async def test_generations_converge_and_never_go_back(replicas: RedisReplicas) -> None:
    """Interleaved publishers leave every replica on the highest generation, even if messages reorder."""
    a, b = await replicas.start(), await replicas.start()
    inbox_a, inbox_b = Inbox(), Inbox()
    a.subscribe(inbox_a)
    b.subscribe(inbox_b)
    await asyncio.gather(*(bus.publish(Invalidation("all")) for bus in (a, b, a, b, a)))
    stored = int(await replicas.admin.get(replicas.prefix + "cache:generation") or 0)
    for bus, inbox in ((a, inbox_a), (b, inbox_b)):
        while bus.generation != stored:  # listeners run after the generation is applied
            await inbox.next()
    # A late message with an old generation is still applied, but cannot move the generation back.
    stale = {"generation": 1, "invalidation": {"scope": "organisation", "organisation_id": "org-9"}}
    await replicas.admin.publish(replicas.channel, orjson.dumps(stale))
    await inbox_b.until(Invalidation("organisation", organisation_id="org-9"))
    assert b.generation == stored


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json",
        b"[]",
        b"42",
        b'"text"',
        b"{}",
        b'{"generation": 1000000}',
        b'{"generation": 1000000, "invalidation": {"scope": "bogus"}}',
        b'{"generation": 1000000, "invalidation": {"scope": "api_key"}}',
        b'{"generation": 1000000, "invalidation": {"scope": "api_key", "key_hash": 5}}',
        b'{"generation": "many", "invalidation": {"scope": "all"}}',
        b'{"generation": null, "invalidation": {"scope": "all"}}',
        b'{"generation": 1000000, "invalidation": "all"}',
        b"\xff\xfe",
    ],
)
async def test_malformed_messages_are_ignored(replicas: RedisReplicas, garbage: bytes) -> None:
    """A malformed message neither reaches listeners, nor moves the generation, nor stops the listener."""
    bus = await replicas.start()
    inbox = Inbox()
    bus.subscribe(inbox)
    await replicas.admin.publish(replicas.channel, garbage)
    valid = {"generation": 3, "invalidation": {"scope": "api_key", "key_hash": "after-garbage"}}
    await replicas.admin.publish(replicas.channel, orjson.dumps(valid))
    # Redis delivers in order: the first thing received must be the valid message.
    assert await inbox.next() == Invalidation("api_key", key_hash="after-garbage")
    assert bus.generation == 3


@pytest.mark.parametrize("retries", [0, 3], ids=["plain-client", "retrying-client"])
async def test_listener_recovers_from_a_killed_connection(replicas: RedisReplicas, retries: int) -> None:
    """A listener whose connection is killed resubscribes, resyncs the generation and clears all."""
    name = services.unique_name("odock_bus_listener")
    # With retries, redis-py reconnects and re-subscribes by itself, without raising.
    client = Redis.from_url(services.REDIS_URL, client_name=name, retry=Retry(ConstantBackoff(0.01), retries))
    bus = await replicas.start(client=client)
    inbox = Inbox()
    bus.subscribe(inbox)
    # Changes this replica will miss: the generation moves on without a message.
    missed = int(await replicas.admin.incrby(replicas.prefix + "cache:generation", 7))
    assert bus.generation < missed
    assert await _kill_pubsub_connections(replicas.admin, name) == 1
    assert await inbox.next() == Invalidation("all")
    assert bus.generation == missed
    # The subscription is back: a publish by another replica reaches this one again.
    other = await replicas.start()
    await other.publish(REVOKE)
    assert await inbox.next() == REVOKE
    assert bus.generation == other.generation


async def _kill_pubsub_connections(admin: Redis, client_name: str) -> int:
    """Kill the pub/sub connections named ``client_name`` (other tests' listeners are left alone)."""
    killed = 0
    for client in await admin.client_list(_type="pubsub"):
        if client.get("name") == client_name:
            await admin.client_kill_filter(_id=client["id"])
            killed += 1
    return killed
