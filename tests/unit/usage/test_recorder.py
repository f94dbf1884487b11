"""The usage recorder: off-path batch writes from the durable queue, retries, and shutdown."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from odock.usage.bulk import RecordsRefused
from odock.usage.journal import JournalQueue
from odock.usage.postgres_writer import WriteFailed
from odock.usage.record import UsageEvent
from odock.usage.recorder import UsageRecorder
from odock.usage.sqlite_writer import StoreBusy


class FakeStore:
    """A UsageStore stand-in that records batches and can refuse the first ``failures`` writes.

    A batch holding one of the ``refused`` ids is refused (RecordsRefused) every time; dead
    letters are kept in ``letters`` once per id, after ``letter_failures`` transient failures.
    """

    def __init__(
        self,
        failures: int = 0,
        broken: bool = False,
        busy: int = 0,
        refused: frozenset[str] = frozenset(),
        letter_failures: int = 0,
        letter_busy: int = 0,
    ) -> None:
        self.batches: list[list[UsageEvent]] = []
        self.failures = failures
        self.broken = broken
        self.busy = busy
        self.refused = refused
        self.letters: dict[str, str] = {}
        self.letter_failures = letter_failures
        self.letter_busy = letter_busy
        self.attempts = 0
        self.closed = False

    async def insert_many(self, events: Sequence[UsageEvent]) -> int:
        self.attempts += 1
        if self.broken:
            raise RuntimeError("a bug in the store")
        if self.busy:
            self.busy -= 1
            raise StoreBusy("database is locked")
        if self.failures:
            self.failures -= 1
            raise OperationalError("INSERT", {}, ConnectionRefusedError("database is down"))
        if any(e.id in self.refused for e in events):
            raise RecordsRefused("23514 CheckViolationError: refused")
        self.batches.append(list(events))
        return len(events)

    async def dead_letter(self, event: UsageEvent, error: str) -> None:
        if self.letter_busy:
            self.letter_busy -= 1
            raise StoreBusy("database is locked")
        if self.letter_failures:
            self.letter_failures -= 1
            raise WriteFailed("connection lost")
        self.letters.setdefault(event.id, error)

    async def close(self) -> None:
        self.closed = True

    @property
    def ids(self) -> list[str]:
        return [e.id for batch in self.batches for e in batch]


def event() -> UsageEvent:
    """A minimal usage event."""
    return UsageEvent(
        id=secrets.token_hex(16),
        request_id="req",
        timestamp=datetime.now(UTC),
        endpoint="/v1/chat/completions",
        status="success",
        http_status=200,
    )


RecorderFactory = Callable[..., UsageRecorder]


@pytest.fixture
async def recorder_factory(tmp_path: Path) -> AsyncIterator[RecorderFactory]:
    """Recorders on one journal directory; any left running are closed at the end."""
    started: list[UsageRecorder] = []

    def make(store: FakeStore, **options: Any) -> UsageRecorder:
        values: dict[str, Any] = {"batch_size": 100, "interval": 3600.0, "recovery_interval": 3600.0}
        values.update(options)
        recorder = UsageRecorder(store, JournalQueue(tmp_path / "journal"), **values)  # type: ignore[arg-type]
        started.append(recorder)
        return recorder

    yield make
    for recorder in started:
        await recorder.close()


async def until(condition: Callable[[], bool], what: str, deadline: float = 10.0) -> None:
    """Poll ``condition`` on the running loop until it holds; fail naming ``what`` at the deadline."""
    give_up = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # poll interval; the deadline bounds the wait


async def test_submit_does_not_write_on_the_request_path(recorder_factory: RecorderFactory) -> None:
    """submit returns without touching the database; the background writer stores the batch."""
    store = FakeStore()
    recorder = recorder_factory(store, interval=0.02)
    await recorder.start()
    events = [event() for _ in range(3)]
    for e in events:
        recorder.submit(e)
    assert store.attempts == 0
    assert recorder.pending == 3
    await until(lambda: len(store.ids) == 3, "the writer")
    assert store.ids == [e.id for e in events]
    assert recorder.pending == 0
    assert recorder.written == 3


async def test_a_locked_database_is_retried_at_once_not_reported(recorder_factory: RecorderFactory) -> None:
    """StoreBusy (SQLite's write lock held elsewhere) is retried within the write, not logged as a failure."""
    store = FakeStore(busy=3)
    recorder = recorder_factory(store)
    events = [event() for _ in range(4)]
    for e in events:
        recorder.submit(e)
    await recorder.flush()
    assert store.ids == [e.id for e in events]
    assert (recorder.busy_retries, recorder.flush_errors) == (3, 0)
    await recorder.close()
    assert store.closed


async def test_a_writer_behind_reads_bigger_batches(recorder_factory: RecorderFactory) -> None:
    """Full batches double the next read (up to 1,024 records); the first partial one ends the catch-up."""
    store = FakeStore()
    recorder = recorder_factory(store, batch_size=4)
    backlog = [event() for _ in range(40)]
    for e in backlog:
        recorder.submit(e)
    await recorder.start()
    await until(lambda: len(store.ids) == 40, "the backlog written")
    assert [len(batch) for batch in store.batches] == [4, 8, 16, 12]
    assert store.ids == [e.id for e in backlog]


async def test_after_a_catch_up_the_read_size_comes_down_a_step_at_a_time(
    recorder_factory: RecorderFactory,
) -> None:
    """A partial batch halves the next read instead of going back to one batch.

    Under sustained load the next backlog follows at once; starting it again from one batch paid
    a batch's round trips for every doubling back up, and the writer stayed behind the load.
    """
    store = FakeStore()
    recorder = recorder_factory(store, batch_size=4)
    for e in [event() for _ in range(40)]:
        recorder.submit(e)
    await recorder.start()
    await until(lambda: len(store.ids) == 40, "the first backlog written")
    assert [len(batch) for batch in store.batches] == [4, 8, 16, 12]  # read size now 16 // 2
    for e in [event() for _ in range(20)]:
        recorder.submit(e)
    await until(lambda: len(store.ids) == 60, "the second backlog written")
    assert [len(batch) for batch in store.batches[4:]] == [8, 12]


async def test_a_full_batch_wakes_the_writer_before_the_interval(recorder_factory: RecorderFactory) -> None:
    """Reaching batch_size writes at once instead of waiting for the (hour-long) interval."""
    store = FakeStore()
    recorder = recorder_factory(store, batch_size=5)
    await recorder.start()
    for _ in range(5):
        recorder.submit(event())
    await until(lambda: len(store.ids) == 5, "a batch-size wake-up")
    assert len(store.batches) == 1


async def test_database_errors_are_retried_without_losing_or_duplicating(
    recorder_factory: RecorderFactory,
) -> None:
    """While the database refuses, the batch stays queued; once it accepts, every event is stored once."""
    store = FakeStore(failures=2)
    recorder = recorder_factory(store, interval=0.01)
    await recorder.start()
    events = [event() for _ in range(4)]
    for e in events:
        recorder.submit(e)
    await until(lambda: len(store.ids) == 4, "the retry to succeed")
    assert store.ids == [e.id for e in events]
    assert recorder.flush_errors == 2
    assert recorder.pending == 0


async def test_close_writes_everything_queued(recorder_factory: RecorderFactory) -> None:
    """Graceful shutdown stores every queued event even though the interval never elapsed."""
    store = FakeStore()
    recorder = recorder_factory(store)
    await recorder.start()
    events = [event() for _ in range(250)]
    for e in events:
        recorder.submit(e)
    await recorder.close()
    assert sorted(store.ids) == sorted(e.id for e in events)
    assert [len(b) for b in store.batches] == [100, 100, 50]


async def test_close_with_the_database_down_keeps_records_for_the_next_start(
    recorder_factory: RecorderFactory,
) -> None:
    """If the database refuses at shutdown, close does not raise and the next start stores the records."""
    down = FakeStore(failures=10**6)
    recorder = recorder_factory(down)
    await recorder.start()
    events = [event() for _ in range(3)]
    for e in events:
        recorder.submit(e)
    await recorder.close()
    assert down.ids == []

    up = FakeStore()
    successor = recorder_factory(up, interval=0.01)
    await successor.start()
    await until(lambda: len(up.ids) == 3, "the successor to store the leftovers")
    assert sorted(up.ids) == sorted(e.id for e in events)


async def test_flush_writes_now(recorder_factory: RecorderFactory) -> None:
    """flush() stores what is queued without waiting for the writer."""
    store = FakeStore()
    recorder = recorder_factory(store)
    await recorder.start()
    recorder.submit(event())
    await recorder.flush()
    assert len(store.ids) == 1


async def test_a_crashed_writer_is_reported_and_its_records_survive(
    recorder_factory: RecorderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error stops the writer loudly; the queue is still released and a restart stores all."""
    buggy = FakeStore(broken=True)
    recorder = recorder_factory(buggy, interval=0.01)
    await recorder.start()
    lost_if_not_durable = event()
    recorder.submit(lost_if_not_durable)
    await until(lambda: any(r.levelname == "CRITICAL" for r in caplog.records), "the crash to be reported")
    with pytest.raises(RuntimeError, match="a bug in the store"):
        await recorder.close()

    fixed = FakeStore()
    successor = recorder_factory(fixed, interval=0.01)
    await successor.start()
    await until(lambda: fixed.ids == [lost_if_not_durable.id], "the successor to store the record")


async def test_refused_records_are_isolated_by_halves_and_dead_lettered(
    recorder_factory: RecorderFactory,
) -> None:
    """The good records of a refused batch are stored, the refused ones dead-lettered, the batch acked."""
    events = [event() for _ in range(8)]
    refused = {events[2].id, events[3].id}
    store = FakeStore(refused=frozenset(refused))
    recorder = recorder_factory(store)
    await recorder.start()
    for e in events:
        recorder.submit(e)
    await recorder.flush()
    assert sorted(store.ids) == sorted(e.id for e in events if e.id not in refused)
    assert store.letters == dict.fromkeys(refused, "23514 CheckViolationError: refused")
    # 8 refused → first 4 refused → 2 stored, 2 refused → 1 refused + 1 refused; last 4 stored
    assert [len(b) for b in store.batches] == [2, 4]
    assert store.attempts == 7
    assert (recorder.pending, recorder.written, recorder.dead_lettered, recorder.flush_errors) == (0, 6, 2, 0)


async def test_a_dead_letter_that_cannot_be_written_keeps_the_batch_for_a_retry(
    recorder_factory: RecorderFactory,
) -> None:
    """A transient failure writing the dead letter keeps the whole batch queued; the retry completes it."""
    events = [event() for _ in range(4)]
    store = FakeStore(refused=frozenset({events[1].id}), letter_failures=1)
    recorder = recorder_factory(store, interval=0.01)
    await recorder.start()
    for e in events:
        recorder.submit(e)
    await until(lambda: recorder.pending == 0, "the retry to dead-letter the record")
    assert recorder.flush_errors == 1
    assert set(store.ids) == {events[0].id, events[2].id, events[3].id}  # re-written: idempotent
    assert list(store.letters) == [events[1].id]
    assert recorder.dead_lettered == 1


async def test_a_locked_database_while_dead_lettering_is_retried_at_once(
    recorder_factory: RecorderFactory,
) -> None:
    """StoreBusy on the dead letter's write is retried within the write, like a batch's."""
    refused = event()
    store = FakeStore(refused=frozenset({refused.id}), letter_busy=2)
    recorder = recorder_factory(store)
    recorder.submit(refused)
    await recorder.flush()
    assert list(store.letters) == [refused.id]
    assert (recorder.busy_retries, recorder.flush_errors, recorder.pending) == (2, 0, 0)


async def test_transient_errors_are_retried_never_dead_lettered(recorder_factory: RecorderFactory) -> None:
    """A database down (or locked past the quick retries) keeps the batch; nothing is dead-lettered."""
    store = FakeStore(failures=3, busy=20)
    recorder = recorder_factory(store, interval=0.01)
    await recorder.start()
    events = [event() for _ in range(3)]
    for e in events:
        recorder.submit(e)
    await until(lambda: len(store.ids) == 3, "the retries to succeed")
    assert store.letters == {}
    assert (recorder.dead_lettered, recorder.flush_errors) == (0, 4)
