"""Contract of the dead-letter path, over SQLite and a fresh PostgreSQL database.

A record the database refuses on its own is kept in ``usage_dead_letters`` and the rest of its
batch is stored and acknowledged; an error that passes with time is retried, never dead-lettered.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from odock.db.engine import create_engine, session_factory
from odock.usage.journal import JournalQueue
from odock.usage.record import UsageEvent
from odock.usage.recorder import UsageRecorder
from odock.usage.store import UsageStore
from tests.contract.test_usage_store import event
from tests.support import services
from tests.unit.usage.test_recorder import until

REFUSED_STATUS = 599  # the http_status the installed constraint refuses
CONSTRAINT = "ck_test_refused"


@dataclass
class Backend:
    """A migrated database of one kind, its store, and a journal directory for recorders."""

    kind: str
    engine: AsyncEngine
    store: UsageStore
    journal: Path

    def recorder(self, **options: Any) -> UsageRecorder:
        """A recorder writing into this backend's store from a journal queue."""
        values: dict[str, Any] = {"batch_size": 100, "interval": 3600.0, "recovery_interval": 3600.0}
        values.update(options)
        return UsageRecorder(self.store, JournalQueue(self.journal), **values)

    async def refuse_status(self, status: int) -> None:
        """Make the database itself refuse usage records with this ``http_status``."""
        if self.kind == "postgresql":
            statement = (
                f"ALTER TABLE usage_records ADD CONSTRAINT {CONSTRAINT} CHECK (http_status <> {status})"
            )
        else:  # SQLite cannot add a CHECK to a table: a trigger aborts the insert as a constraint does
            statement = (
                f"CREATE TRIGGER {CONSTRAINT} BEFORE INSERT ON usage_records WHEN NEW.http_status = {status} "
                f"BEGIN SELECT RAISE(ABORT, '{CONSTRAINT}'); END"
            )
        async with self.engine.begin() as connection:
            await connection.execute(text(statement))


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A migrated, empty database of the parametrized kind."""
    async with services.migrated_engine(request.param, "odock_test_dead_letters", tmp_path) as engine:
        store = UsageStore(session_factory(engine))
        yield Backend(request.param, engine, store, tmp_path / "journal")
        await store.close()


# How a record gets refused: a value no column of either database holds, a value the writers
# refuse to bind, and a constraint of the database itself; with a pattern its reason matches.
REFUSALS: dict[str, tuple[Callable[[], UsageEvent], str]] = {
    "integer past 64 bits": (lambda: event(prompt_tokens=2**63), "too large|out of .*range"),
    "naive timestamp": (lambda: event(timestamp=datetime(2025, 1, 1)), "naive datetime"),  # naive on purpose
    "constraint": (lambda: event(http_status=REFUSED_STATUS), CONSTRAINT),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
async def test_a_refused_record_is_dead_lettered_and_the_rest_of_its_batch_is_stored(
    backend: Backend, refusal: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In a batch of 10 with one refused record, 9 are stored, 1 is a dead letter, the batch is acked."""
    await backend.refuse_status(REFUSED_STATUS)
    make_refused, reason = REFUSALS[refusal]
    refused = make_refused()
    batch = [event() for _ in range(9)]
    batch.insert(4, refused)
    recorder = backend.recorder()
    await recorder.start()
    for e in batch:
        recorder.submit(e)
    with caplog.at_level(logging.ERROR, logger="odock.usage.recorder"):
        await recorder.flush()
    assert await backend.store.count() == 9
    for stored in (e for e in batch if e is not refused):
        assert [r.id for r in await backend.store.by_request_id(stored.request_id)] == [stored.id]
    [letter] = await backend.store.dead_letters()
    assert (letter.id, letter.organisation_id, letter.request_id) == (refused.id, None, refused.request_id)
    assert re.search(reason, letter.error)
    assert UsageEvent.from_json(letter.event.encode()) == refused  # the queue form: replayable as it was
    assert (recorder.pending, recorder.written, recorder.dead_lettered, recorder.flush_errors) == (0, 9, 1, 0)
    assert [r.getMessage() for r in caplog.records] == [
        f"usage record {refused.id} refused by the database, kept as a dead letter: {letter.error}"
    ]

    later = [event() for _ in range(3)]  # no stall: the next batch is written as usual
    for e in later:
        recorder.submit(e)
    await recorder.flush()
    assert await backend.store.count() == 12
    await recorder.close()
    queue = JournalQueue(backend.journal)
    await queue.open()
    assert await queue.read(100) == []  # everything was acknowledged
    await queue.close()


async def test_several_refused_records_in_one_batch_are_each_dead_lettered(backend: Backend) -> None:
    """Bisection isolates every refused record of a batch, wherever it sits, and stores the others."""
    batch = [event() for _ in range(20)]
    refused = [batch[0], batch[7], batch[8], batch[19]]
    for e in refused:
        e.prompt_tokens = 2**63
    recorder = backend.recorder()
    await recorder.start()
    for e in batch:
        recorder.submit(e)
    await recorder.flush()
    assert await backend.store.count() == 16
    assert sorted(letter.id for letter in await backend.store.dead_letters()) == sorted(e.id for e in refused)
    assert (recorder.pending, recorder.dead_lettered) == (0, 4)
    await recorder.close()


async def test_a_dead_letter_is_kept_once_per_record(backend: Backend) -> None:
    """A redelivered refused record (a crash before the ack) does not make a second dead letter."""
    refused = event(prompt_tokens=2**63, organisation_id="gone-org")
    await backend.store.dead_letter(refused, "first reason")
    await backend.store.dead_letter(refused, "second reason")
    [letter] = await backend.store.dead_letters()
    assert (letter.id, letter.organisation_id, letter.error) == (refused.id, "gone-org", "first reason")


@pytest.fixture(params=["sqlite", "postgresql"])
async def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UsageStore]:
    """A store whose database cannot be reached: a SQLite path that is a directory, a closed port."""
    if request.param == "sqlite":
        (tmp_path / "a-directory").mkdir()
        url = f"sqlite+aiosqlite:///{tmp_path / 'a-directory'}"
    else:
        url = "postgresql+asyncpg://postgres@127.0.0.1:1/odock"
    engine = create_engine(url)
    try:
        yield UsageStore(session_factory(engine))
    finally:
        await engine.dispose()


async def test_an_unreachable_database_is_retried_never_dead_lettered(
    unreachable: UsageStore, tmp_path: Path
) -> None:
    """An error that passes with time keeps the batch queued for retries with backoff."""
    recorder = UsageRecorder(
        unreachable, JournalQueue(tmp_path / "journal"), batch_size=100, interval=0.01, close_timeout=0.5
    )
    await recorder.start()
    for _ in range(3):
        recorder.submit(event())
    await until(lambda: recorder.flush_errors >= 3, "three failed attempts")
    assert (recorder.pending, recorder.written, recorder.dead_lettered) == (3, 0, 0)
    await recorder.close()
