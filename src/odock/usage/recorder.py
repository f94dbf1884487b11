"""The usage recorder: the pipeline submits events; a background writer persists them in batches.

Submitting never blocks and never fails the client's request. The writer wakes when a batch
is full or the flush interval passes, inserts the batch idempotently, and on a database error
keeps the batch and retries with backoff. On shutdown the lifespan calls :meth:`close`, which
flushes everything still queued before returning.

Flow::

    pipeline ──submit()──► in-memory deque ──(batch | interval)──► UsageStore.insert_many
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from sqlalchemy.exc import SQLAlchemyError

from odock.usage.record import UsageEvent
from odock.usage.store import UsageStore

log = logging.getLogger(__name__)


class UsageRecorder:
    """Queues usage events and writes them off the request path."""

    def __init__(self, store: UsageStore, *, batch_size: int, interval: float, max_queued: int) -> None:
        self._store = store
        self._batch_size = batch_size
        self._interval = interval
        self._max_queued = max_queued
        self._queue: deque[UsageEvent] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.dropped = 0
        self.flush_errors = 0

    @property
    def pending(self) -> int:
        """Events submitted but not yet written."""
        return len(self._queue)

    def submit(self, event: UsageEvent) -> None:
        """Queue an event; never blocks, never raises."""
        if len(self._queue) >= self._max_queued:
            # Only reachable when the database has been down for a long time: keep memory bounded
            # and make the loss loud rather than silently growing without limit.
            self.dropped += 1
            log.error("usage queue full (%d); dropping usage record %s", self._max_queued, event.id)
            return
        self._queue.append(event)
        if len(self._queue) >= self._batch_size:
            self._wake.set()

    async def start(self) -> None:
        """Start the background writer."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="odock-usage-writer")

    async def close(self) -> None:
        """Stop the writer after flushing everything queued."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        """Write everything queued now (raises if the database refuses)."""
        while self._queue:
            await self._write_batch()

    async def _run(self) -> None:
        backoff = self._interval
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while self._queue and not self._closing:
                    await self._write_batch()
                backoff = self._interval
            except (SQLAlchemyError, OSError) as exc:
                self.flush_errors += 1
                log.error("usage flush failed (%s); %d records kept for retry", exc, len(self._queue))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _write_batch(self) -> None:
        batch = [self._queue[i] for i in range(min(self._batch_size, len(self._queue)))]
        await self._store.insert_many(batch)
        # Remove only after a successful write, so a failure keeps the batch queued.
        for _ in batch:
            self._queue.popleft()
        self.written += len(batch)
