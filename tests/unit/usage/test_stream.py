"""The Redis usage stream's own behaviour: hand-off between replicas, the length bound, bad entries.

These run against the real Redis (skipped with a notice when it is not reachable).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from odock.cache.redis_link import RedisLink
from odock.usage.journal import JournalQueue
from odock.usage.record import UsageEvent
from odock.usage.stream import FIELD, GROUP, RedisStreamQueue
from tests.support import services

StreamFactory = Callable[..., RedisStreamQueue]


def event(n: int = 0) -> UsageEvent:
    """A minimal usage event."""
    return UsageEvent(
        id=secrets.token_hex(16),
        request_id=f"req-{n}",
        timestamp=datetime.now(UTC),
        endpoint="/v1/chat/completions",
        status="success",
        http_status=200,
    )


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A client of the test Redis."""
    services.require_services()
    client = Redis.from_url(services.REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def streams(redis: Redis, tmp_path: Path) -> AsyncIterator[StreamFactory]:
    """Stream queues on one fresh prefix, each with its own journal; all closed at the end."""
    prefix = services.unique_name("odock_test_usage_stream") + ":"
    made: list[RedisStreamQueue] = []

    def make(**options: Any) -> RedisStreamQueue:
        values: dict[str, Any] = {"prefix": prefix, "max_length": 100_000, "claim_idle_seconds": 60}
        values.update(options)
        queue = RedisStreamQueue(redis, JournalQueue(tmp_path / f"spool-{len(made)}"), **values)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()
    await services.delete_redis_prefix(prefix)


async def until(condition: Callable[[], Any], what: str, deadline: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` at the deadline."""
    give_up = time.monotonic() + deadline
    while not await condition():
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # poll interval; the deadline bounds the wait


async def test_appends_reach_the_stream_without_a_reader(streams: StreamFactory, redis: Redis) -> None:
    """The pump pushes appended events to the stream on its own, without waiting for a read."""
    queue = streams()
    await queue.open()
    for n in range(3):
        queue.append(event(n))

    async def pushed() -> bool:
        # The pump drops its journal lines once XADD answered: wait for that too, not just XLEN.
        return int(await redis.xlen(queue.stream)) == 3 and queue.pending == 0

    await until(pushed, "the pump to push")
    assert queue.pending == 0  # nothing left in the local journal, nothing delivered yet


async def test_pushes_over_the_pipelined_link_reach_the_stream(streams: StreamFactory, redis: Redis) -> None:
    """With the process's RedisLink, the pump pushes over it and reads still find every record."""
    link = RedisLink(services.REDIS_URL, timeout=10, connect_timeout=10)
    queue = streams(link=link)
    await queue.open()
    for n in range(5):
        queue.append(event(n))

    async def pushed() -> bool:
        return int(await redis.xlen(queue.stream)) == 5 and queue.pending == 0

    await until(pushed, "the pump to push over the link")
    delivered = await queue.read(10)
    await queue.ack(delivered)
    await queue.close()
    await link.close()
    assert sorted(d.event.request_id for d in delivered) == sorted(event(n).request_id for n in range(5))


async def test_a_replica_is_settled_once_a_peer_took_its_records(streams: StreamFactory) -> None:
    """A replica whose records a live peer took is settled: at shutdown it need not drain the peer's share."""
    leaving, peer = streams(), streams()
    await leaving.open()
    await peer.open()
    leaving.append(event())
    assert not leaving.settled
    taken = []
    give_up = time.monotonic() + 10
    while not taken and time.monotonic() < give_up:
        taken = await peer.read(10)
    assert len(taken) == 1
    assert await leaving.read(10) == []
    assert leaving.settled
    assert not peer.settled
    await peer.ack(taken)
    assert peer.settled


async def test_the_length_bound_holds_records_back_in_the_journal(
    streams: StreamFactory, redis: Redis
) -> None:
    """Past 90% of max_length the pump stops pushing; the journal keeps the rest and none is lost."""
    queue = streams(max_length=10, batch_size=5)
    await queue.open()
    events = [event(n) for n in range(30)]
    for e in events:
        queue.append(e)

    async def throttled() -> bool:
        return int(await redis.xlen(queue.stream)) == 10 and queue.pending == 20

    await until(throttled, "the pump to stop at the bound")
    got: list[UsageEvent] = []
    give_up = time.monotonic() + 10
    while len(got) < 30 and time.monotonic() < give_up:
        batch = await queue.read(5)
        await queue.ack(batch)
        got.extend(d.event for d in batch)
    assert [e.id for e in got] == [e.id for e in events]


async def test_a_corrupt_entry_is_dropped_not_redelivered(streams: StreamFactory, redis: Redis) -> None:
    """An undecodable stream entry is acknowledged away; the good entries around it are delivered."""
    queue = streams()
    await queue.open()
    await redis.xadd(queue.stream, {FIELD: b"not json"})
    good = event()
    queue.append(good)
    assert [d.event for d in await queue.read(10)] == [good]
    assert int(await redis.xlen(queue.stream)) == 1  # only the good one, until it is acknowledged


async def test_a_deleted_stream_is_recreated(streams: StreamFactory, redis: Redis) -> None:
    """If the stream and its group vanish (FLUSHDB, a new Redis), the queue recreates them and carries on."""
    queue = streams()
    await queue.open()
    await redis.delete(queue.stream)
    kept = event()
    queue.append(kept)
    batch = await queue.read(10)
    assert [d.event for d in batch] == [kept]
    await queue.ack(batch)


async def test_claiming_never_takes_back_a_batch_being_written(streams: StreamFactory, redis: Redis) -> None:
    """A consumer's own unacknowledged batch is not claimed again by its own recovery pass."""
    queue = streams(claim_idle_seconds=0.001)
    await queue.open()
    queue.append(event())
    batch = await queue.read(10)

    async def idle() -> bool:
        pending = await redis.xpending_range(queue.stream, GROUP, min="-", max="+", count=10)
        return len(pending) == 1 and int(pending[0]["time_since_delivered"]) > 5

    await until(idle, "the entry to be pending past claim_idle")
    await queue.recover()
    assert await queue.read(10) == []
    await queue.ack(batch)


async def test_own_entries_come_back_as_the_events_appended_and_a_peer_decodes_them(
    streams: StreamFactory, redis: Redis, tmp_path: Path
) -> None:
    """With a hand-over, the entries a replica pushed are read back as its own event objects.

    The lines still go through the journal and the stream: a peer reading them decodes them,
    and what a replica holds for entries a peer took is bounded by its hand-over.
    """
    prefix = services.unique_name("odock_test_usage_hand_over") + ":"
    writer = RedisStreamQueue(
        redis,
        JournalQueue(tmp_path / "own", hand_over=3),
        prefix=prefix,
        max_length=1000,
        claim_idle_seconds=60,
        hand_over=3,
    )
    peer = RedisStreamQueue(
        redis, JournalQueue(tmp_path / "peer"), prefix=prefix, max_length=1000, claim_idle_seconds=60
    )
    try:
        await writer.open()
        await peer.open()
        mine = [event(n) for n in range(2)]
        for e in mine:
            writer.append(e)
        got = await writer.read(10)
        assert [d.event is e for d, e in zip(got, mine, strict=True)] == [True, True]
        await writer.ack(got)
        theirs = [event(n) for n in range(10, 16)]
        for e in theirs:
            writer.append(e)
        await writer._push()  # push now, as the pump would
        taken = await peer.read(10)
        assert [d.event for d in taken] == theirs
        assert not any(d.event is e for d, e in zip(taken, theirs, strict=True))
        await peer.ack(taken)
        assert len(writer._pushed_events) <= 3
    finally:
        await writer.close()
        await peer.close()
        await services.delete_redis_prefix(prefix)


async def test_no_push_runs_while_the_group_is_read(
    streams: StreamFactory, redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry pushed during a read comes back as the appended object, never decoded.

    XREADGROUP and XADD travel over different connections, so a push overlapping the read could
    land an entry the read returns before the push's reply hands its event over.
    """
    prefix = services.unique_name("odock_test_usage_read_lock") + ":"
    link = RedisLink(services.REDIS_URL, timeout=5, connect_timeout=5)
    queue = RedisStreamQueue(
        redis,
        JournalQueue(tmp_path / "own", hand_over=10),
        prefix=prefix,
        max_length=1000,
        claim_idle_seconds=60,
        link=link,
        hand_over=10,
    )
    late = event(1)
    pushes_during_reads: list[bool] = []
    real_read = redis.xreadgroup

    async def read_while_appending(*args: Any, **kwargs: Any) -> Any:
        queue.append(late)  # wakes the pump
        pushes_during_reads.append(not queue._push_lock.locked())
        return await real_read(*args, **kwargs)

    decoded: list[bytes] = []
    real_decode = UsageEvent.from_json

    def counting_decode(data: bytes) -> UsageEvent:
        decoded.append(data)
        return real_decode(data)

    try:
        await queue.open()
        monkeypatch.setattr(redis, "xreadgroup", read_while_appending)
        monkeypatch.setattr(UsageEvent, "from_json", staticmethod(counting_decode))
        first = await queue.read(10)
        monkeypatch.setattr(redis, "xreadgroup", real_read)
        await queue.ack(first)
        again = await queue.read(10)
        assert [d.event for d in again] == [late]
        assert again[0].event is late
        assert pushes_during_reads == [False]
        assert decoded == []
        await queue.ack(again)
    finally:
        await queue.close()
        await link.close()
        await services.delete_redis_prefix(prefix)


async def test_a_reader_gets_a_turn_while_appends_never_stop(streams: StreamFactory) -> None:
    """Under sustained load the pump pushes batch after batch, and a read still gets in between.

    The pump used to hold the push lock until the journal ran dry; with requests journaling
    lines while each push waited for Redis, that was as long as the load lasted, and no usage
    record was stored until it stopped. Here a task appends an event on every turn of the
    event loop (the journal never runs dry while the pump pushes), and the read must return
    before that task gives up.
    """
    queue = streams(batch_size=8)
    await queue.open()
    appended = 0
    read_done = asyncio.Event()

    async def load() -> None:
        nonlocal appended
        while not read_done.is_set() and appended < 20_000:
            queue.append(event(appended))
            appended += 1
            await asyncio.sleep(0)  # one event per turn of the loop, like a steady request rate

    async with asyncio.TaskGroup() as group:
        group.create_task(load())
        await asyncio.sleep(0)  # the load is running before the read starts
        try:
            got = await queue.read(100)
            appended_by_then = appended
        finally:
            read_done.set()
    assert got, "the read returned nothing"
    assert appended_by_then < 20_000, "the read waited for the load to stop"
    await queue.ack(got)
