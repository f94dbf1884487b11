"""The production usage queue: a Redis Stream shared by every replica, fed through a local journal.

Flow::

    append ─► local journal (JournalQueue: os.write, survives the process being killed)
                 │  pump task: pushes what was appended at once, batches of lines per
                 │  pipelined round trip of XADD ... MAXLEN ~ max_length
                 ▼
    {prefix}usage:stream ─► XREADGROUP (group odock-usage-writers, one consumer per process)
                 ▲                 │
                 │                 ▼
                 │         UsageStore.insert_many ─► XACK + XDEL
                 └── XAUTOCLAIM: entries pending longer than claim_idle with a consumer that died
                     after reading them are taken over and written by another replica

Why a local journal in front of the stream: an XADD costs a network round trip the request path
must not wait for, and an in-memory buffer in front of it would lose whatever it holds when the
process is killed. The journal append is as cheap as a buffer and survives the kill: a restart
on the same data directory replays the journal into the stream. Once in the stream, a record
survives the host too; any replica reads it, or claims it from a dead consumer.

Remaining window: losing the whole host (or its disk) loses lines journaled but not yet pushed,
normally one round trip's worth, since the pump pushes as soon as anything is appended. The
``MAXLEN`` bound trims the oldest entries whether stored or not, so the pump stops pushing while
the stream is above 90% of it (the database has been down a long time) and the local journal
holds the backlog instead; acknowledged entries are deleted at once, so the stream's length is
the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from odock.cache.redis_link import RedisLink
from odock.usage.intent import UsageIntent
from odock.usage.journal import JournalQueue
from odock.usage.queue import Delivery, UsageQueueError, decode_entries
from odock.usage.record import UsageEvent

log = logging.getLogger(__name__)

STREAM_KEY = "usage:stream"
GROUP = "odock-usage-writers"
FIELD = b"event"
HIGH_WATER = 0.9
# Lines per push (one pipelined round trip of XADDs) and entries per claim. Not the database
# writer's batch size: under load each round trip waits a turn of a busy event loop (milliseconds),
# and pushes of 16 lines (the PostgreSQL batch) fell behind 3,000 records a second, leaving the
# backlog in the local journal. Bounded so one push (about 2 KB a line) does not hold up the
# rate-limit scripts queued behind it on the shared link for long.
PUSH_LINES = 256
_BACKOFF_MAX = 5.0


@contextlib.contextmanager
def _redis_errors(action: str) -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise UsageQueueError(f"redis {action} failed: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry_id(raw: bytes | str) -> tuple[int, int]:
    """A stream entry id ``<ms>-<seq>`` as a comparable pair."""
    ms, _, seq = _text(raw).partition("-")
    return int(ms), int(seq or 0)


class RedisStreamQueue:
    """Usage events in a Redis Stream consumed by a group (the production :class:`UsageQueue`)."""

    def __init__(
        self,
        redis: Redis,
        spool: JournalQueue,
        *,
        prefix: str,
        max_length: int,
        claim_idle_seconds: float,
        batch_size: int = PUSH_LINES,
        link: RedisLink | None = None,
        hand_over: int = 0,
    ) -> None:
        self._redis = redis
        self._link = link  # pushes go over the process's pipelined link when there is one
        self._spool = spool
        self.stream = prefix + STREAM_KEY
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._max_length = max_length
        self._claim_idle_ms = max(1, round(claim_idle_seconds * 1000))
        self._batch_size = batch_size
        self._unpushed: list[tuple[str, bytes]] = []  # read from the spool, XADD not yet confirmed
        # Entry id → the event this process pushed as it (from the spool's hand-over), so reading
        # our own entries back needs no decoding; oldest forgotten first (a peer may read them).
        self._pushed_events: dict[str, UsageEvent] = {}
        self._hand_over = hand_over
        self._claimed: deque[Delivery] = deque()
        self._in_flight: set[str] = set()  # delivered to this consumer, not acknowledged
        self._push_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._pushed_upto: tuple[int, int] = (0, 0)  # newest entry id this process added
        self._read_upto: tuple[int, int] = (0, 0)  # the group has delivered every entry up to here
        self._length = 0  # stream length after the last push
        self._throttled = False
        self.pushed = 0
        self.claimed = 0

    # --- UsageQueue -----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Events not yet in the stream, plus those this consumer holds unacknowledged."""
        return self._spool.pending + len(self._claimed) + len(self._in_flight)

    @property
    def backlog(self) -> int:
        """Events not yet in the stream, plus the stream's length as last seen (all replicas')."""
        return self._spool.pending + self._length

    @property
    def settled(self) -> bool:
        """True when all this process pushed was delivered to some consumer and its own reads are acked.

        Entries delivered to a live peer are that peer's to store, so a replica shutting down
        under load stops here instead of draining a stream its peers keep filling.
        """
        handed_over = not self._unpushed and self._spool.settled and self._read_upto >= self._pushed_upto
        return handed_over and not self._claimed and not self._in_flight

    @property
    def dropped(self) -> int:
        """Events lost because the local journal failed and its memory fallback was full."""
        return self._spool.dropped

    async def open(self) -> None:
        """Open the spool, create the consumer group, start the pump, claim abandoned entries."""
        await self._spool.open()
        with _redis_errors("XGROUP CREATE"):
            await self._ensure_group()
        self._stopping.clear()
        self._pump_task = asyncio.get_running_loop().create_task(self._pump(), name="odock-usage-pump")
        self._wake.set()  # push whatever the spool recovered
        await self.recover()

    def append(self, event: UsageEvent) -> None:
        """Journal the event locally; the pump pushes it to the stream right away."""
        self._spool.append(event)
        self._wake.set()

    def append_intent(self, intent: UsageIntent) -> None:
        """Journal the intent locally only: the spool retires it with its event, or replays it."""
        self._spool.append_intent(intent)

    async def read(self, limit: int) -> list[Delivery]:
        """Claimed entries first, then new stream entries (after pushing this process's own)."""
        out: list[Delivery] = []
        # No push may run while the group is read: XREADGROUP goes over another connection than
        # XADD, so it could return an entry whose push reply (and its event's hand-over) is still
        # on the way, and that entry would be decoded back from JSON. One batch of this process's
        # own lines is pushed first; the pump pushes the rest.
        async with self._push_lock:
            await self._push_batch()
            while self._claimed and len(out) < limit:
                out.append(self._claimed.popleft())
            if len(out) < limit:
                with _redis_errors("XREADGROUP"):
                    fresh = await self._read_new(limit - len(out))
                # XREADGROUP ">" delivers in id order: an empty answer means everything pushed so
                # far has gone to some consumer.
                newest = _entry_id(fresh[-1].receipt) if fresh else self._pushed_upto
                self._read_upto = max(self._read_upto, newest)
                out.extend(fresh)
                if not out and self._length:
                    await self._refresh_length()
        self._in_flight.update(d.receipt for d in out)
        return out

    async def _refresh_length(self) -> None:
        """Read the stream's length (the shared backlog) when nothing else told it lately.

        Pushes and acks keep it current; an idle reader learns from the stream how far the other
        replicas' stores shortened it (a replica shedding its load for the backlog pushes nothing).
        """
        with _redis_errors("XLEN"):
            self._length = int(await self._redis.xlen(self.stream))

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """XACK and delete stored entries."""
        await self._ack_ids([d.receipt for d in deliveries])

    async def recover(self) -> int:
        """Adopt dead processes' journals (pushed next), claim dead consumers' entries."""
        adopted = await self._spool.recover()
        if adopted:
            self._wake.set()
        with _redis_errors("XAUTOCLAIM"):
            claimed = await self._claim()
            await self._forget_idle_consumers()
        return adopted + claimed

    async def close(self) -> None:
        """Stop the pump and push what is left; what cannot be pushed stays in the journal."""
        self._stopping.set()
        self._wake.set()
        if self._pump_task is not None:
            await self._pump_task
            self._pump_task = None
        try:
            await self._push()
        except UsageQueueError as exc:
            log.error("usage records stay in the local journal for the next start: %s", exc)
        # Claimed or delivered entries not acknowledged stay pending under this consumer and
        # are claimed by another replica after claim_idle.
        await self._spool.close()

    # --- pushing --------------------------------------------------------------------------
    async def _pump(self) -> None:
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                complete = await self._push()
                backoff = 0.05
                if complete:
                    continue
                delay = 1.0  # the stream is full: try again later, the journal holds the rest
            except UsageQueueError as exc:
                log.warning(
                    "usage push to redis failed (%s); %d records wait in the local journal",
                    exc,
                    self._spool.pending,
                )
                delay, backoff = backoff, min(backoff * 2, _BACKOFF_MAX)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            self._wake.set()

    async def _push(self) -> bool:
        """Push every journaled line to the stream; False when stopped by the length bound.

        The push lock is taken per batch, not for the whole backlog: under sustained load lines
        are journaled as fast as they are pushed, so a push holding the lock until the journal
        ran dry held it for as long as the load lasted, and the reader, which takes the lock
        too, stored nothing until the load stopped (measured: no usage record written during a
        30-second run at concurrency 64, then the backlog). A waiting reader gets the lock
        between two batches (asyncio's lock serves waiters first come, first served).
        """
        while True:
            async with self._push_lock:
                pushed = await self._push_batch()
            if pushed is None:
                return False
            if not pushed:
                return True

    async def _push_batch(self) -> int | None:
        """Push the next batch of journaled lines (the caller holds the push lock).

        Returns how many lines were pushed (0: none was waiting), or None when the stream is
        past its length bound.
        """
        if not self._unpushed:
            self._unpushed = self._spool.read_lines(self._batch_size)
        if not self._unpushed:
            return 0
        if self._length >= self._max_length * HIGH_WATER and not await self._has_room():
            return None
        with _redis_errors("XADD"):
            results = await self._push_lines([line for _, line in self._unpushed])
        # A retry after a partial failure may add a line twice; the store is idempotent.
        self._remember_pushed(results[:-1])
        self._length = int(results[-1])
        self._pushed_upto = max(self._pushed_upto, _entry_id(results[-2]))
        self._spool.ack_receipts([receipt for receipt, _ in self._unpushed])
        pushed = len(self._unpushed)
        self.pushed += pushed
        self._unpushed = []
        return pushed

    def _remember_pushed(self, entry_ids: Sequence[Any]) -> None:
        """Keep the spool's event objects of the lines just pushed, by their new entry ids."""
        if not self._hand_over:
            return
        pushed = self._pushed_events
        for (receipt, _), entry_id in zip(self._unpushed, entry_ids, strict=True):
            event = self._spool.take_appended(receipt)
            if event is not None:
                pushed[_text(entry_id)] = event
        while len(pushed) > self._hand_over:
            del pushed[next(iter(pushed))]

    async def _push_lines(self, lines: list[bytes]) -> list[Any]:
        """XADD each line, then XLEN, in one round trip; the replies in order."""
        if self._link is not None:
            commands: list[tuple[str | int | bytes, ...]] = [
                ("XADD", self.stream, "MAXLEN", "~", self._max_length, "*", FIELD, line) for line in lines
            ]
            return await self._link.pipeline([*commands, ("XLEN", self.stream)])
        pipe = self._redis.pipeline(transaction=False)
        for line in lines:
            pipe.xadd(self.stream, {FIELD: line}, maxlen=self._max_length, approximate=True)
        pipe.xlen(self.stream)
        return list(await pipe.execute())

    async def _has_room(self) -> bool:
        with _redis_errors("XLEN"):
            self._length = int(await self._redis.xlen(self.stream))
        full = self._length >= self._max_length * HIGH_WATER
        if full and not self._throttled:
            log.error(
                "usage stream %s holds %d entries (bound %d): is the database down? "
                "new records wait in the local journal",
                self.stream,
                self._length,
                self._max_length,
            )
        self._throttled = full
        return not full

    # --- reading --------------------------------------------------------------------------
    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read_new(self, count: int) -> list[Delivery]:
        try:
            reply: Any = await self._redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=count)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_group()  # the stream was deleted (e.g. FLUSHDB): start over
            reply = await self._redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=count)
        entries: list[Any] = []
        if isinstance(reply, dict):  # RESP3: {stream: [[(id, fields), ...]]}
            for batches in reply.values():
                for batch in batches:
                    entries.extend(batch)
        else:  # RESP2: [[stream, [(id, fields), ...]]]
            for _, batch in reply or []:
                entries.extend(batch)
        return await self._decode(entries)

    async def _decode(self, entries: Sequence[Any]) -> list[Delivery]:
        raw = [(_text(entry_id), (fields or {}).get(FIELD, b"")) for entry_id, fields in entries]
        deliveries, corrupt = await decode_entries(raw, self._pushed_events)
        if corrupt:
            await self._ack_ids(corrupt)
        return deliveries

    async def _ack_ids(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.xack(self.stream, GROUP, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.xlen(self.stream)
        with _redis_errors("XACK"):
            self._length = int((await pipe.execute())[-1])
        self._in_flight.difference_update(ids)

    async def _claim(self) -> int:
        """Take over entries that sat unacknowledged with some consumer for claim_idle."""
        start: Any = "0-0"
        total = 0
        while len(self._claimed) < self._batch_size * 4:
            try:
                reply = await self._redis.xautoclaim(
                    self.stream,
                    GROUP,
                    self.consumer,
                    self._claim_idle_ms,
                    start_id=start,
                    count=self._batch_size,
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group()
                return total
            start, entries = reply[0], reply[1]
            if len(reply) > 2 and reply[2]:
                log.error(
                    "%d usage records were trimmed from %s before being stored", len(reply[2]), self.stream
                )
            held = self._in_flight | {d.receipt for d in self._claimed}
            for delivery in await self._decode(entries):
                if delivery.receipt not in held:  # not a batch of ours still being written
                    self._claimed.append(delivery)
                    total += 1
            if start in (b"0-0", "0-0"):
                break
        if total:
            self.claimed += total
            log.warning("claimed %d usage records abandoned by a consumer that stopped", total)
        return total

    async def _forget_idle_consumers(self) -> None:
        """Remove consumers that hold nothing and have been silent for claim_idle."""
        try:
            consumers = await self._redis.xinfo_consumers(self.stream, GROUP)
        except ResponseError:
            return  # no group yet
        for info in consumers:
            name = _text(info.get("name") or "")
            silent = int(info.get("idle", 0)) > self._claim_idle_ms
            if name != self.consumer and not info.get("pending") and silent:
                await self._redis.xgroup_delconsumer(self.stream, GROUP, name)
