"""Contract of the durable usage queue, over the embedded journal and the Redis stream.

A crash is a real one: a child process appends, reads and acknowledges through the queue, then
SIGKILLs itself; a fresh instance on the same data directory / Redis prefix must deliver exactly
what was not acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from odock.usage.journal import JournalQueue
from odock.usage.queue import Delivery, UsageQueue
from odock.usage.record import UsageEvent
from odock.usage.stream import RedisStreamQueue
from tests.support import services

REPO = Path(__file__).resolve().parents[2]
SEGMENT_BYTES = 4096  # small, so a few dozen events span several segments
HAND_OVER = 5


@dataclass(frozen=True)
class Backing:
    """Where a queue keeps its entries; every instance built from one Backing shares them."""

    kind: str
    directory: str
    prefix: str = ""
    claim_idle_seconds: float = 0.2

    def build(self, redis: Redis | None, claim_idle_seconds: float | None = None) -> UsageQueue:
        """A new, unopened queue instance on this backing."""
        # "handing-journal": the embedded queue as the gateway builds it, handing the reader the
        # events it appended (a few, so lines beyond the hand-over are decoded from the file).
        # "redis" hands over as the gateway's stream queue does: its own entries are not decoded.
        hand_over = 0 if self.kind == "journal" else HAND_OVER
        journal = JournalQueue(Path(self.directory), segment_bytes=SEGMENT_BYTES, hand_over=hand_over)
        if self.kind != "redis":
            return journal
        assert redis is not None
        return RedisStreamQueue(
            redis,
            journal,
            prefix=self.prefix,
            max_length=100_000,
            claim_idle_seconds=claim_idle_seconds or self.claim_idle_seconds,
            hand_over=hand_over,
            batch_size=50,
        )


def make_event(n: int, event_id: str | None = None) -> UsageEvent:
    """A usage event with every kind of field filled."""
    return UsageEvent(
        id=event_id or secrets.token_hex(16),
        request_id=f"req-{n}",
        timestamp=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(milliseconds=n),
        endpoint="/v1/chat/completions",
        status="success",
        http_status=200,
        stream=n % 2 == 0,
        organisation_id="org",
        api_key_id="key",
        model="test-model",
        prompt_tokens=n,
        completion_tokens=2 * n,
        total_tokens=3 * n,
        total_cost_nanos_usd=2**40 + n,
        latency_ms=n / 3,
        billing={"total_cost_nanos_usd": 2**40 + n, "pricing": {"input": {"text_cost_per_1k_tokens": 0.002}}},
        metadata={"schema_version": "usage_metadata_v1", "note": "é ✓", "n": n},
    )


@dataclass
class QueueBench:
    """Builds queue instances on one backing and closes them at the end."""

    backing: Backing
    redis: Redis | None
    opened: list[UsageQueue]

    async def new(self, claim_idle_seconds: float | None = None) -> UsageQueue:
        """Open a new instance (as a new process would)."""
        queue = self.backing.build(self.redis, claim_idle_seconds)
        await queue.open()
        self.opened.append(queue)
        return queue

    def crash_child(self, ids: list[str], *, read: int, ack: int) -> None:
        """Run a child that appends ``ids``, reads ``read``, acknowledges ``ack``, then is killed."""
        spec = {"backing": asdict(self.backing), "ids": ids, "read": read, "ack": ack}
        code = "from tests.contract.test_usage_queue import crash_child_main; crash_child_main()"
        argv = [sys.executable, "-c", code, json.dumps(spec)]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=60, check=False)
        assert done.returncode == -signal.SIGKILL, done.stderr.decode()


@pytest.fixture(params=["journal", "handing-journal", "redis"])
async def bench(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueBench]:
    """A fresh backing of the parametrized kind (Redis: a unique prefix, removed afterwards)."""
    redis: Redis | None = None
    prefix = ""
    if request.param == "redis":
        services.require_services()
        redis = Redis.from_url(services.REDIS_URL)
        prefix = services.unique_name("odock_test_usage_queue") + ":"
    bench = QueueBench(Backing(request.param, str(tmp_path / "journal"), prefix), redis, [])
    try:
        yield bench
    finally:
        for queue in bench.opened:
            await queue.close()
        if redis is not None:
            await redis.aclose()
            await services.delete_redis_prefix(prefix)


async def collect(queue: UsageQueue, count: int, *, limit: int = 7) -> list[UsageEvent]:
    """Read and acknowledge until ``count`` events arrived or the deadline passed."""
    got: list[UsageEvent] = []
    deadline = time.monotonic() + 15
    while len(got) < count and time.monotonic() < deadline:
        batch = await queue.read(min(limit, count - len(got)))
        if not batch:
            await queue.recover()
            await asyncio.sleep(0.02)  # poll interval; the deadline bounds the wait
            continue
        await queue.ack(batch)
        got.extend(d.event for d in batch)
    return got


async def assert_nothing_more(queue: UsageQueue) -> None:
    """Even after a recovery pass, the queue has nothing left to deliver."""
    await queue.recover()
    assert await queue.read(100) == []


async def test_round_trip(bench: QueueBench) -> None:
    """Appended events come back intact from read, and acknowledging them empties the queue."""
    queue = await bench.new()
    events = [make_event(n) for n in range(3)]
    for event in events:
        queue.append(event)
    batch = await queue.read(10)
    assert [d.event for d in batch] == events
    assert queue.pending == 3
    await queue.ack(batch)
    assert queue.pending == 0
    assert await queue.read(10) == []


async def test_settled_only_once_everything_is_acknowledged(bench: QueueBench) -> None:
    """A queue is settled when empty, unsettled while an appended event is unread or unacknowledged."""
    queue = await bench.new()
    assert queue.settled
    queue.append(make_event(1))
    assert not queue.settled
    batch = await collect_unacked(queue, 1)
    assert not queue.settled
    await queue.ack(batch)
    assert queue.settled


async def collect_unacked(queue: UsageQueue, count: int) -> list[Delivery]:
    """Read (without acknowledging) until ``count`` deliveries arrived or the deadline passed."""
    got: list[Delivery] = []
    deadline = time.monotonic() + 15
    while len(got) < count and time.monotonic() < deadline:
        got.extend(await queue.read(count - len(got)))
    return got


async def test_order_is_kept_across_batches_and_segments(bench: QueueBench) -> None:
    """Events are delivered in append order, whatever the batch size, across segment rotations."""
    queue = await bench.new()
    events = [make_event(n) for n in range(40)]
    for event in events:
        queue.append(event)
    got = await collect(queue, 40, limit=7)
    assert [e.id for e in got] == [e.id for e in events]
    await assert_nothing_more(queue)


async def test_read_does_not_deliver_the_same_entry_twice(bench: QueueBench) -> None:
    """A delivered but not yet acknowledged entry is not handed out again by the same instance."""
    queue = await bench.new()
    for n in range(5):
        queue.append(make_event(n))
    first = await queue.read(3)
    second = await queue.read(10)
    assert len(first) == 3
    assert len(second) == 2
    assert {d.receipt for d in first}.isdisjoint(d.receipt for d in second)
    await queue.ack(first + second)


async def test_acknowledged_entries_are_never_redelivered(bench: QueueBench) -> None:
    """After a restart, only the entries that were not acknowledged are delivered again."""
    queue = await bench.new()
    events = [make_event(n) for n in range(10)]
    for event in events:
        queue.append(event)
    batch = await queue.read(10)
    acked: list[Delivery] = batch[:4] + batch[8:]  # out of order on purpose
    await queue.ack(acked)
    await queue.close()
    bench.opened.remove(queue)

    successor = await bench.new()
    got = await collect(successor, 4)
    assert sorted(e.id for e in got) == sorted(e.id for e in events[4:8])
    await assert_nothing_more(successor)


async def test_unacknowledged_entries_survive_a_crash(bench: QueueBench) -> None:
    """A killed process's read-but-unacknowledged and unread entries go to the next instance."""
    ids = [secrets.token_hex(16) for _ in range(20)]
    bench.crash_child(ids, read=12, ack=3)  # 3: part of a segment, so the acks must be logged

    successor = await bench.new()
    got = await collect(successor, 17)
    assert sorted(e.id for e in got) == sorted(ids[3:])
    await assert_nothing_more(successor)


async def test_entries_appended_just_before_a_crash_survive(bench: QueueBench) -> None:
    """Events appended the instant before SIGKILL (nothing read, nothing pushed) are recovered."""
    ids = [secrets.token_hex(16) for _ in range(20)]
    bench.crash_child(ids, read=0, ack=0)

    successor = await bench.new()
    got = await collect(successor, 20)
    assert sorted({e.id for e in got}) == sorted(ids)
    await assert_nothing_more(successor)


async def test_a_live_instance_keeps_its_entries(bench: QueueBench) -> None:
    """Recovery never takes over the entries of an instance that is still alive."""
    owner = await bench.new()
    for n in range(5):
        owner.append(make_event(n))
    if isinstance(owner, RedisStreamQueue):
        # Entries in the shared stream are for any consumer; what must stay put is the owner's
        # delivered batch, which is pending only with the owner until claim_idle passes.
        await owner.read(5)
    other = await bench.new(claim_idle_seconds=60)
    await other.recover()
    assert await other.read(10) == []
    assert owner.pending == 5


async def test_concurrent_appends_are_all_delivered_once(bench: QueueBench) -> None:
    """Many tasks on two instances appending while both consume: every event arrives exactly once."""
    queues = [await bench.new(), await bench.new()]
    per_task, tasks_per_queue = 25, 4
    appended: list[str] = []

    async def produce(queue: UsageQueue, task: int) -> None:
        for n in range(per_task):
            event = make_event(task * 1000 + n)
            appended.append(event.id)
            queue.append(event)
            await asyncio.sleep(0)

    received: list[str] = []
    total = per_task * tasks_per_queue * len(queues)

    async def consume(queue: UsageQueue) -> None:
        deadline = time.monotonic() + 20
        while len(received) < total and time.monotonic() < deadline:
            batch = await queue.read(10)
            if batch:
                await queue.ack(batch)
                received.extend(d.event.id for d in batch)
            else:
                await asyncio.sleep(0.005)  # poll interval; the deadline bounds the wait

    producers = [
        produce(q, i * tasks_per_queue + t) for i, q in enumerate(queues) for t in range(tasks_per_queue)
    ]
    await asyncio.gather(*producers, *(consume(q) for q in queues))
    assert len(received) == total
    assert sorted(received) == sorted(appended)
    for queue in queues:
        await assert_nothing_more(queue)


# --- the crashing child ---------------------------------------------------------------------


def crash_child_main() -> None:
    """Entry point of the child process of the crash tests (never returns: it is killed)."""
    spec = json.loads(sys.argv[1])
    asyncio.run(_crash_child(spec))


async def _crash_child(spec: dict[str, Any]) -> None:
    backing = Backing(**spec["backing"])
    redis = Redis.from_url(services.REDIS_URL) if backing.kind == "redis" else None
    queue = backing.build(redis)
    await queue.open()
    for n, event_id in enumerate(spec["ids"]):
        queue.append(make_event(n, event_id))
    delivered: list[Delivery] = []
    while len(delivered) < spec["read"]:
        delivered.extend(await queue.read(spec["read"] - len(delivered)))
    await queue.ack(delivered[: spec["ack"]])
    os.kill(os.getpid(), signal.SIGKILL)
