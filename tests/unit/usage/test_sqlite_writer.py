"""The embedded usage writer: it never waits for SQLite's lock and lets the event loop run mid-batch."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from odock.db import migrate
from odock.db.engine import create_engine
from odock.usage.sqlite_writer import SqliteUsageWriter, StoreBusy
from tests.unit.usage.test_recorder import event
from tests.unit.usage.turns import most_bound_between_turns


@pytest.fixture
async def database(tmp_path: Path) -> Path:
    path = tmp_path / "usage.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate.upgrade(engine)
    await engine.dispose()
    return path


@pytest.fixture
async def writer(database: Path) -> AsyncIterator[SqliteUsageWriter]:
    writer = SqliteUsageWriter(database)
    yield writer
    await writer.close()


def stored(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return int(connection.execute("SELECT count(*) FROM usage_records").fetchone()[0])


async def test_a_write_lock_held_elsewhere_fails_at_once_and_writes_nothing(
    database: Path, writer: SqliteUsageWriter
) -> None:
    """Another connection's transaction fails the batch with StoreBusy; once it ends, the batch goes in."""
    batch = [event() for _ in range(3)]
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusy):
            await writer.insert_many(batch)
        other.execute("ROLLBACK")
    assert stored(database) == 0
    assert (await writer.insert_many(batch))[0] == 3
    assert stored(database) == 3


@pytest.mark.parametrize(("records", "most_per_turn"), [(64, 16), (1024, 128)])
async def test_a_batch_lets_the_event_loop_run_between_its_statements(
    writer: SqliteUsageWriter, monkeypatch: pytest.MonkeyPatch, records: int, most_per_turn: int
) -> None:
    """A batch is written 16 records per statement with a turn of the loop after each; a big one
    in at most 8 turns."""
    (inserted, _), most = await most_bound_between_turns(
        writer._usage,
        monkeypatch,
        lambda: writer.insert_many([event() for _ in range(records)]),
        2**-20,  # however cheap the records: a statement is a slice
    )
    assert inserted == records
    assert most == most_per_turn


async def test_a_failed_batch_is_rolled_back_whole(database: Path, writer: SqliteUsageWriter) -> None:
    """A bad record in a later step undoes the steps already written."""
    good = [event() for _ in range(20)]
    bad = event()
    bad.timestamp = datetime(2025, 1, 1)  # naive on purpose: refused
    with pytest.raises(Exception, match="naive datetime"):
        await writer.insert_many([*good, bad])
    assert stored(database) == 0
    assert (await writer.insert_many(good))[0] == 20


async def test_the_write_ahead_log_starts_over_instead_of_growing(database: Path) -> None:
    """Checkpoints between back-to-back batches let the log start over: its file stays one round's size.

    A checkpoint that overlaps the next batch never copies the log's last frames, so the log is
    never started over and its file grows with everything ever written.
    """
    writer = SqliteUsageWriter(database, checkpoint_every=200)
    wal = database.with_name(database.name + "-wal")
    try:
        sizes = []
        for _ in range(20):
            for _ in range(2):
                await writer.insert_many([event() for _ in range(100)])
            sizes.append(wal.stat().st_size)
    finally:
        await writer.close()
    assert stored(database) == 4000
    assert max(sizes[5:]) < 3 * sizes[1], sizes
