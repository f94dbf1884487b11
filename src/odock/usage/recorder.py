"""The usage recorder: the pipeline submits events; a background writer stores them in batches.

Submitting appends the event to a durable :class:`~odock.usage.queue.UsageQueue` (a local
journal, or a Redis Stream fed through one): it never blocks on the network and never fails the
client's request. The writer wakes when a batch is full or the flush interval passes, reads a
batch from the queue, inserts it idempotently and only then acknowledges it; on an error that
passes with time (the database or the queue unreachable, a lock, a timeout) it keeps the batch and
retries with backoff. When the database refuses the batch itself (:class:`RecordsRefused`: a
constraint, a value it cannot store), retrying would fail the same way forever and hold back
every record after it: the writer splits the batch in halves and writes each, down to the single
records still refused, which go to the ``usage_dead_letters`` table with the database's reason;
then the batch is acknowledged. Every ``recovery_interval`` it asks the queue to take over
what dead processes left. On shutdown the lifespan calls :meth:`close`, which writes until the
queue is settled (everything this process queued is stored, or in production read by a live
peer) or the grace period ends; whatever is not written by then stays queued for the next
start.

Flow::

    pipeline ──submit()──► UsageQueue.append ··· read(batch) ──► UsageStore.insert_many ──► ack
                                                                   │ RecordsRefused
                                                                   ▼
                                       halves, each written the same way; a single record still
                                       refused ──► UsageStore.dead_letter
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from odock.errors import MeterStoreUnavailable
from odock.ids import RequestId
from odock.telemetry import metrics
from odock.usage.bulk import RecordsRefused
from odock.usage.intent import INTERRUPTED, UsageIntent
from odock.usage.postgres_writer import WriteFailed
from odock.usage.queue import Delivery, UsageQueue, UsageQueueError
from odock.usage.record import UsageEvent
from odock.usage.sqlite_writer import StoreBusy
from odock.usage.store import UsageStore

log = logging.getLogger(__name__)

# Errors that keep the batch for a retry with backoff. sqlite3.OperationalError: SQLite cannot
# open or write the file for now (a missing directory, a full disk). RecordsRefused only gets here
# when a dead letter itself is refused, which nothing the recorder writes should make happen.
_WRITE_ERRORS = (
    SQLAlchemyError,
    OSError,
    sqlite3.OperationalError,
    UsageQueueError,
    StoreBusy,
    WriteFailed,
    RecordsRefused,
)
_BACKOFF_MAX = 10.0
# A writer that is behind reads up to this many records at once (its batch size doubling while
# it reads full batches): each batch costs a few round trips, which take milliseconds each on a
# busy event loop, so big batches are what lets the writer keep up with a sustained load.
_MAX_READ = 1024
# The embedded store does not wait for SQLite's write lock (that would block the event loop):
# when another connection holds it, the batch is tried again after a short pause, a few times.
_BUSY_ATTEMPTS = 20
_BUSY_PAUSE = 0.005

# Settles a request's budget reservation at the given amounts (``MeterStore.settle``).
SettleReservation = Callable[[RequestId, Mapping[str, int]], Awaitable[object]]


class UsageRecorder:
    """Queues usage events durably and writes them off the request path."""

    def __init__(
        self,
        store: UsageStore,
        queue: UsageQueue,
        *,
        batch_size: int,
        interval: float,
        recovery_interval: float = 15.0,
        close_timeout: float = 30.0,
        settle_interrupted: SettleReservation | None = None,
        backlog_max: int = 0,
    ) -> None:
        self._backlog_max = backlog_max
        self._store = store
        self._settle_interrupted = settle_interrupted
        self._queue = queue
        self._batch_size = batch_size
        self._read_size = batch_size
        self._interval = interval
        self._recovery_interval = recovery_interval
        self._close_timeout = close_timeout
        self._in_flight: list[Delivery] = []
        self._write_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._since_wake = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.flush_errors = 0
        self.busy_retries = 0
        self.dead_lettered = 0

    @property
    def pending(self) -> int:
        """Events submitted here (or taken over) and not yet written."""
        return self._queue.pending

    @property
    def backlog(self) -> int:
        """Events waiting to be stored that this process can see (production: the shared stream's too)."""
        return self._queue.backlog

    @property
    def backlog_max(self) -> int:
        """The backlog past which new requests are refused (0: no bound)."""
        return self._backlog_max

    @property
    def oldest_pending_at(self) -> datetime | None:
        """When the oldest record the writer holds was made, while a batch waits to be stored.

        The writer reads the oldest records first and keeps a batch it could not store for its
        retry, so during an outage this is the oldest record waiting; between writes it is None.
        """
        held = self._in_flight
        return min(d.event.timestamp for d in held) if held else None

    @property
    def backlogged(self) -> bool:
        """True when more events wait to be stored than ``backlog_max`` (never when it is 0)."""
        return 0 < self._backlog_max < self._queue.backlog

    @property
    def dropped(self) -> int:
        """Events lost because the queue and its memory fallback were both unavailable."""
        return self._queue.dropped

    def submit(self, event: UsageEvent) -> None:
        """Queue an event; never blocks, never raises."""
        self._queue.append(event)
        metrics.usage_queue_depth(self._queue.pending)
        self._since_wake += 1
        if self._since_wake >= self._batch_size:
            self._since_wake = 0
            self._wake.set()

    def intend(self, intent: UsageIntent) -> None:
        """Journal what an admitted request is about to spend; never blocks, never raises."""
        self._queue.append_intent(intent)

    async def start(self) -> None:
        """Open the queue (recovering leftovers) and start the background writer."""
        await self._queue.open()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="odock-usage-writer")
        self._task.add_done_callback(_report_crash)

    async def close(self) -> None:
        """Stop the writer, write everything queued, release the queue."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.wait({self._task})  # a crashed writer was reported by _report_crash
            self._task = None
        try:
            await asyncio.wait_for(self._drain(), self._close_timeout)
        except (*_WRITE_ERRORS, TimeoutError) as exc:
            metrics.usage_flush_failed()
            log.error("usage records not written at shutdown stay queued for the next start: %r", exc)
        finally:
            await self._queue.close()
            await self._store.close()

    async def flush(self) -> None:
        """Write everything queued now (raises if the database or the queue refuses)."""
        while await self._write_batch():
            pass

    async def _drain(self) -> None:
        """Write until everything this process queued is stored or handed to a live peer."""
        while not self._queue.settled and await self._write_batch():
            pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_recovery = loop.time() + self._recovery_interval
        backoff = self._interval
        while not self._closing:
            try:
                # Write while full batches come back; a partial one means the queue is drained for
                # now, so wait for the interval (or a full batch) instead of writing every record
                # as it trickles in, in batches of one or two at the cost of a whole batch each.
                while not self._closing and await self._write_batch() >= self._read_size:
                    # Behind (the queue held a full batch): read more at once next time, so the
                    # writer catches up under sustained load instead of falling further behind.
                    self._read_size = min(self._read_size * 2, max(self._batch_size, _MAX_READ))
                else:
                    # Drained for now. The size comes down one step at a time: under sustained
                    # load the next read finds an interval's worth of records plus what arrived
                    # while this batch was written, and starting again from one batch paid a
                    # batch's round trips (tens of milliseconds on a busy loop) on each step
                    # back up, which kept the writer behind the load for as long as it lasted.
                    self._read_size = max(self._batch_size, self._read_size // 2)
                backoff = self._interval
                if loop.time() >= next_recovery:
                    next_recovery = loop.time() + self._recovery_interval
                    await self._queue.recover()
                await self._pause(self._interval)
            except _WRITE_ERRORS as exc:
                self.flush_errors += 1
                metrics.usage_flush_failed()
                log.error("usage flush failed (%s); %d records kept for retry", exc, self.pending)
                await self._pause(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _pause(self, seconds: float) -> None:
        """Sleep until the interval passes, a batch fills up, or close() is called."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _write_batch(self) -> int:
        """Store and acknowledge one batch; return its size (0 when the queue had nothing to give)."""
        async with self._write_lock:
            if not self._in_flight:
                self._in_flight = await self._queue.read(self._read_size)
                if not self._in_flight:
                    return 0
            events = [d.event for d in self._in_flight]
            dead_lettered = await self._insert(events)
            await self._settle_reservations(events)
            # Acknowledge only after the write: a failure here keeps the batch for a retry,
            # and a crash before it re-delivers the batch, which the idempotent inserts (of records
            # and of dead letters) absorb.
            await self._queue.ack(self._in_flight)
            read = len(self._in_flight)
            self.written += read - dead_lettered
            self._in_flight = []
            metrics.usage_flushed(read - dead_lettered, dead_lettered)
            metrics.usage_queue_depth(self._queue.pending)
            return read

    async def _settle_reservations(self, events: list[UsageEvent]) -> None:
        """Settle the budget reservations that interrupted requests (their process died) still hold.

        At the amounts their records settled in the ledger. Settling is idempotent; if the store
        is unreachable now, the reconciliation worker settles them from the ledger later.
        """
        if self._settle_interrupted is None:
            return
        for event in events:
            if event.status != INTERRUPTED or not event.settlements:
                continue
            amounts = {s["window_key"]: s["amount"] for s in event.settlements}
            try:
                await self._settle_interrupted(RequestId(event.id), amounts)
            except MeterStoreUnavailable as exc:
                log.warning("reservation of interrupted request %s not settled now (%s)", event.id, exc)

    async def _insert(self, events: list[UsageEvent]) -> int:
        """Store the events, dead-lettering the ones the database refuses; return how many were."""
        try:
            await self._unless_busy(lambda: self._store.insert_many(events))
            return 0
        except RecordsRefused as exc:
            reason = str(exc)
        if len(events) > 1:
            # Halving finds k refused records among n in about 2·k·log2(n) writes, storing the
            # good ones on the way; a good half is never written twice.
            half = len(events) // 2
            return await self._insert(events[:half]) + await self._insert(events[half:])
        refused = events[0]
        await self._unless_busy(lambda: self._store.dead_letter(refused, reason))
        self.dead_lettered += 1
        log.error("usage record %s refused by the database, kept as a dead letter: %s", refused.id, reason)
        return 1

    async def _unless_busy(self, write: Callable[[], Awaitable[object]]) -> None:
        """Run a write, trying again shortly while SQLite's write lock is held elsewhere."""
        for attempt in range(1, _BUSY_ATTEMPTS + 1):
            try:
                await write()
                return
            except StoreBusy:
                self.busy_retries += 1
                if attempt == _BUSY_ATTEMPTS:
                    raise
                await asyncio.sleep(_BUSY_PAUSE * attempt)


def _report_crash(task: asyncio.Task[None]) -> None:
    """Log a writer that died of an unexpected error; its records stay queued for the next start."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.critical("the usage writer stopped; records stay queued until the next start", exc_info=exc)
