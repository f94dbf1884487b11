"""The durable usage queue between the request path and the usage writer.

The pipeline appends one event per request; the writer reads a batch, stores it, then
acknowledges it. Whatever was appended and not acknowledged survives the process: a new
instance (a restart, or another replica) recovers it and delivers it again. Delivery is
at-least-once, which is safe because the store inserts idempotently by event id.

Flow::

    append(event)  ─► durable queue  ─► read(n) ─► UsageStore.insert_many ─► ack(batch)
                          ▲
    recover() ────────────┘  entries left by a process that died

Two implementations share this contract (tests/contract/test_usage_queue.py):
:class:`odock.usage.journal.JournalQueue` (embedded: an append-only file in the data directory)
and :class:`odock.usage.stream.RedisStreamQueue` (production: a Redis Stream with a consumer
group, fed through a local journal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from odock.usage.intent import UsageIntent
from odock.usage.record import UsageEvent, UsageEventDecodeError

log = logging.getLogger(__name__)

# Decoding costs ~15 µs an event; yielding between slices keeps a 500-event batch from holding
# the event loop (and the requests on it) for several milliseconds at once.
_DECODE_SLICE = 64


class UsageQueueError(Exception):
    """The queue's backing service refused an operation; the caller keeps its batch and retries."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event read from a queue, with the receipt that acknowledges it."""

    event: UsageEvent
    receipt: str


class UsageQueue(Protocol):
    """Durable, at-least-once queue of usage events."""

    @property
    def pending(self) -> int:
        """Events this process appended or was handed that are not yet acknowledged."""

    @property
    def settled(self) -> bool:
        """True when nothing this instance appended or recovered still waits for a reader."""

    @property
    def backlog(self) -> int:
        """Events waiting to be stored that this instance can see (its own; production: the stream's too)."""

    @property
    def dropped(self) -> int:
        """Events lost because neither the queue nor its in-memory fallback could take them."""

    async def open(self) -> None:
        """Prepare the queue and recover what dead processes left behind."""

    def append(self, event: UsageEvent) -> None:
        """Add an event; cheap, never blocks on I/O beyond a local append, never raises."""

    def append_intent(self, intent: UsageIntent) -> None:
        """Keep an intent until the event with its id is acknowledged (see :mod:`odock.usage.intent`).

        Never delivered itself while the process that appended it lives; once that process is
        gone, an intent whose event never came is delivered as an ``interrupted`` event.
        """

    async def read(self, limit: int) -> list[Delivery]:
        """Up to ``limit`` entries not yet delivered to this instance, oldest first."""

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Mark delivered entries as stored: they are never delivered again."""

    async def recover(self) -> int:
        """Take over un-acknowledged entries of processes that are gone; return how many sources."""

    async def close(self) -> None:
        """Release this instance; un-acknowledged entries stay durable for the next one."""


async def decode_entries(
    entries: Sequence[tuple[str, bytes]], known: dict[str, UsageEvent] | None = None
) -> tuple[list[Delivery], list[str]]:
    """Decode (receipt, JSON) entries; return the deliveries and the receipts of corrupt ones.

    ``known`` maps receipts to events already in memory: those are taken from it (and removed)
    instead of decoded.
    """
    deliveries: list[Delivery] = []
    corrupt: list[str] = []
    decoded = 0
    for receipt, data in entries:
        if known and (event := known.pop(receipt, None)) is not None:
            deliveries.append(Delivery(event, receipt))
            continue
        # Only decoding costs time: a batch handed over from memory is taken in one go (a turn
        # of the loop per 64 entries, decoded or not, made a 1,024-record read wait 16 turns of
        # a busy loop, which is most of what kept the writer behind a sustained load).
        if decoded and decoded % _DECODE_SLICE == 0:
            await asyncio.sleep(0)
        decoded += 1
        try:
            deliveries.append(Delivery(UsageEvent.from_json(data), receipt))
        except UsageEventDecodeError as exc:
            log.error("usage queue entry %s is corrupt and dropped: %s", receipt, exc)
            corrupt.append(receipt)
    return deliveries, corrupt
