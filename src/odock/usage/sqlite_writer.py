"""The embedded mode's usage writer: SQLite's own driver, on the event loop's thread.

The ORM writer this replaces (SQLAlchemy over aiosqlite) cost about 230 µs of CPU per record
on the event loop, and aiosqlite's worker thread starves while
the gateway keeps its core busy: every hand-back waits for the GIL (up to the 5 ms switch
interval) and ``sqlite3`` gives the GIL up around every row. Measured on a saturated gateway,
that writer stored about 50 records a second while 1,400 a second arrived; the journal grew
until the load stopped. SQLite itself is fast: this writer binds each row once through the
columns' own SQLAlchemy processors (so values are stored exactly as the ORM stores them) and
runs a few ``executemany`` calls per batch (about 50-100 µs of CPU per record on the benchmark
machine, most of it SQLite maintaining the usage table's indexes). A batch is one transaction
written in statements of 16 records, each about a millisecond of work, with a turn of the event
loop after each (or after an eighth of a big batch), so a small batch never stalls the gateway for
more than about a millisecond.

The writer does not wait for SQLite's write lock (waiting would block the event loop):
``BEGIN IMMEDIATE`` with a zero busy timeout fails at once, as :class:`StoreBusy`, when another
connection (the control plane's, on aiosqlite threads; another process on the same file) holds
it, and the recorder tries again shortly. While a batch holds the lock between steps, those
other connections wait on their own threads, never on the event loop.

A batch SQLite refuses (a constraint; a value it cannot bind, such as an integer past 64 bits)
is rolled back and raised as :class:`~odock.usage.bulk.RecordsRefused`, which the recorder
answers by isolating the record and writing it with :meth:`SqliteUsageWriter.insert_dead_letter`.

Same contract as :mod:`odock.usage.postgres_writer` (tests/contract/test_usage_store.py and
test_budget_ledger.py run over both): ids stored once, settlements applied once each (the
insert's ``RETURNING`` names the ones that were new), thresholds reported once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite

from odock.aio import WorkSlices
from odock.budgets.ledger import (
    THRESHOLD_COLUMNS,
    BatchSettlements,
    ThresholdCrossing,
    threshold_crossings,
    window_row,
)
from odock.budgets.tables import MeterSettlement, MeterWindow
from odock.db.base import utcnow
from odock.usage.bulk import (
    DEAD_LETTER_COLUMNS,
    RecordsRefused,
    RowBinder,
    batch_settlements,
    dead_letter_row,
    json_text,
    quoted,
    sqlite_instant,
)
from odock.usage.record import UsageEvent
from odock.usage.tables import UsageDeadLetter, UsageRecord

log = logging.getLogger(__name__)

_DIALECT = sqlite.dialect()
# Records per statement (one executemany, or one multi-row INSERT of settlements). A statement
# of usage records is about a millisecond of work, so it is the smallest slice: after each one the
# event loop serves requests, unless the batch is big (a writer that is behind reads bigger ones),
# which is written in at most _TURNS turns of the loop (see odock.aio.WorkSlices): a writer doing
# one statement per turn whatever its backlog fell further behind a sustained load.
_STEP = 16
_SLICE_SECONDS = 0.0
_TURNS = 8
# SQLite checkpoints its write-ahead log in the connection that commits, which here is the event
# loop's thread (10 ms and more of copying pages): the writer turns that off and checkpoints on a
# worker thread after this many records, where the page copying runs without the GIL. The writer
# starts no transaction while a checkpoint runs: a checkpoint that overlaps writes never copies
# the log's last frames, so the log is never started over and grows without bound (measured:
# 12 GB in a 5-minute soak, its index mapped into the process and counted in its RSS).
_CHECKPOINT_EVERY = 2000
# Once a checkpoint lets the log start over, its file is cut back to this size.
_WAL_SIZE_LIMIT = 16 * 1024 * 1024
# What SQLite raises for a batch it refuses (a constraint; a value it cannot bind: OverflowError
# for an integer past 64 bits): the same batch fails the same way every time.
_REFUSALS = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    OverflowError,
)


class StoreBusy(Exception):
    """Another connection holds the database's write lock: nothing was written, try again soon."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether the error means another connection holds the write lock."""
    return "locked" in str(exc) or "busy" in str(exc)


def _report_checkpoint(done: asyncio.Future[None]) -> None:
    """Log a checkpoint that failed (the next one tries again)."""
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.warning("usage database checkpoint failed: %r", exc)


@functools.cache
def _settlements_sql(rows: int) -> str:
    """``rows`` settlements in one INSERT that returns the ones that were new."""
    return (
        'INSERT INTO meter_settlements ("request_key", "window_key", "amount", "settled_at") VALUES '
        + ", ".join([_placeholders(4)] * rows)
        + ' ON CONFLICT ("request_key", "window_key") DO NOTHING RETURNING "window_key", "amount"'
    )


def _placeholders(count: int) -> str:
    return "(" + ", ".join("?" * count) + ")"


class SqliteUsageWriter:
    """Writes usage batches (and their settlements) into one SQLite file."""

    def __init__(self, path: Path, *, checkpoint_every: int = _CHECKPOINT_EVERY) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._checkpoint_every = checkpoint_every
        self._since_checkpoint = 0
        self._checkpoint: asyncio.Future[None] | None = None
        # One thread and one connection for every checkpoint: a fresh connection (and its page
        # cache) per checkpoint, on whichever pool thread, left the process's RSS creeping up.
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint_connection: sqlite3.Connection | None = None
        usage = cast(Table, UsageRecord.__table__)
        self._usage = RowBinder(usage, [c.name for c in usage.columns], _DIALECT, sqlite_instant)
        # Event fields are named like the columns (the ORM attribute "metadata_" aside).
        self._usage_values = operator.attrgetter(*self._usage.columns)
        self._usage_sql = (
            f"INSERT INTO usage_records ({quoted(self._usage.columns)}) "
            f"VALUES {_placeholders(len(self._usage.columns))} ON CONFLICT (id) DO NOTHING"
        )
        windows = cast(Table, MeterWindow.__table__)
        self._windows = RowBinder(windows, [c.name for c in windows.columns], _DIALECT, sqlite_instant)
        self._windows_sql = (
            f"INSERT INTO meter_windows ({quoted(self._windows.columns)}) "
            f"VALUES {_placeholders(len(self._windows.columns))} ON CONFLICT (key) DO NOTHING"
        )
        settlements = cast(Table, MeterSettlement.__table__)
        self._settlements = RowBinder(
            settlements, ["request_key", "window_key", "amount", "settled_at"], _DIALECT, sqlite_instant
        )
        self._instant = self._windows.processor("updated_at")
        letters = cast(Table, UsageDeadLetter.__table__)
        self._letters = RowBinder(letters, DEAD_LETTER_COLUMNS, _DIALECT, sqlite_instant)
        self._letters_sql = (
            f"INSERT INTO usage_dead_letters ({quoted(DEAD_LETTER_COLUMNS)}) "
            f"VALUES {_placeholders(len(DEAD_LETTER_COLUMNS))} ON CONFLICT (id) DO NOTHING"
        )

    async def close(self) -> None:
        """Finish a running checkpoint and close the connection (reopened on the next batch)."""
        await self._checkpoint_done()
        if self._checkpointer is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._checkpointer, self._close_checkpoint_connection
            )
            self._checkpointer.shutdown()
            self._checkpointer = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def insert_many(self, events: Sequence[UsageEvent]) -> tuple[int, list[ThresholdCrossing]]:
        """Store the events and apply their settlements in one transaction.

        Returns how many records were new and the thresholds this batch crossed; raises
        :class:`StoreBusy` (try again soon) or :class:`RecordsRefused` when nothing was written.
        """
        settlements = batch_settlements(events)
        await self._checkpoint_done()  # no write may overlap a checkpoint (see _CHECKPOINT_EVERY)
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise StoreBusy(str(exc)) from exc
            raise
        try:
            inserted = 0
            # One budget of turns for the records and their settlements together: a catch-up
            # batch with two settlements a record took twice the turns of the loop otherwise.
            slices = WorkSlices(_SLICE_SECONDS, len(events) + len(settlements.rows), _TURNS)
            for start in range(0, len(events), _STEP):
                rows = [self._usage.bind(self._usage_values(e)) for e in events[start : start + _STEP]]
                before = connection.total_changes
                connection.executemany(self._usage_sql, rows)
                inserted += connection.total_changes - before
                if slices.due(len(rows)):
                    await slices.pause()
            crossings = await self._settle(connection, settlements, slices) if settlements.rows else []
            connection.execute("COMMIT")
        except BaseException as exc:
            connection.execute("ROLLBACK")
            if isinstance(exc, _REFUSALS):
                raise RecordsRefused(f"{type(exc).__name__}: {exc}") from exc
            raise
        self._since_checkpoint += len(events)
        if self._since_checkpoint >= self._checkpoint_every:
            self._since_checkpoint = 0
            if self._checkpointer is None:
                self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="odock-sqlite-checkpoint")
            loop = asyncio.get_running_loop()
            self._checkpoint = loop.run_in_executor(self._checkpointer, self._checkpoint_now)
            self._checkpoint.add_done_callback(_report_checkpoint)
        return inserted, crossings

    async def insert_dead_letter(self, event: UsageEvent, error: str) -> None:
        """Keep a refused event in usage_dead_letters (once per id); :class:`StoreBusy` when locked."""
        row = self._letters.bind(dead_letter_row(event, error, utcnow()))
        await self._checkpoint_done()
        try:
            self._connect().execute(self._letters_sql, row)  # autocommit: its own transaction
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise StoreBusy(str(exc)) from exc
            raise
        except _REFUSALS as exc:
            raise RecordsRefused(f"{type(exc).__name__}: {exc}") from exc

    async def _checkpoint_done(self) -> None:
        """Wait for a running checkpoint to end (a failure was logged by _report_checkpoint)."""
        if self._checkpoint is not None:
            await asyncio.wait({self._checkpoint})
            self._checkpoint = None

    def _checkpoint_now(self) -> None:
        """Copy the write-ahead log into the database (on the checkpoint thread; never blocks writers)."""
        if self._checkpoint_connection is None:
            connection = sqlite3.connect(self._path, timeout=5, check_same_thread=False)
            connection.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            self._checkpoint_connection = connection
        self._checkpoint_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _close_checkpoint_connection(self) -> None:
        if self._checkpoint_connection is not None:
            self._checkpoint_connection.close()
            self._checkpoint_connection = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            # Autocommit mode: the transaction is the explicit BEGIN IMMEDIATE … COMMIT above.
            connection = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA wal_autocheckpoint=0")
            connection.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            self._connection = connection
        return self._connection

    async def _settle(
        self, connection: sqlite3.Connection, settlements: BatchSettlements, slices: WorkSlices
    ) -> list[ThresholdCrossing]:
        """Create missing windows, record new settlements, add them to their windows, check thresholds."""
        now = utcnow()
        connection.executemany(
            self._windows_sql,
            [
                self._windows.bind_mapping(
                    {
                        **window_row(s.window_key, s.meter_kind, s.meter_id, s.version, s.window, s.limit),
                        "updated_at": now,
                    }
                )
                for s in settlements.windows
            ],
        )
        deltas: dict[str, int] = {}
        # Statements of at most _STEP rows, so at most _STEP distinct texts reach the driver's
        # statement cache (one per length).
        rows = settlements.rows
        for start in range(0, len(rows), _STEP):
            chunk = rows[start : start + _STEP]
            params: list[Any] = []
            for request_key, window_key, amount in chunk:
                params += self._settlements.bind((request_key, window_key, amount, now))
            for key, amount in connection.execute(_settlements_sql(len(chunk)), params).fetchall():
                deltas[key] = deltas.get(key, 0) + amount
            if slices.due(len(chunk)):
                await slices.pause()
        stamp = self._instant(now)
        touched = [(delta, stamp, key) for key, delta in deltas.items() if delta]
        connection.executemany(
            'UPDATE meter_windows SET "used" = "used" + ?, "updated_at" = ? WHERE "key" = ?', touched
        )
        thresholds = settlements.thresholds
        crossings: list[ThresholdCrossing] = []
        for _, _, key in touched:
            if key not in thresholds:
                continue
            row = connection.execute(
                f'SELECT {THRESHOLD_COLUMNS} FROM meter_windows WHERE "key" = ?', (key,)
            ).fetchone()
            if row is None:
                continue
            crossed, reached = threshold_crossings(key, thresholds[key], row)
            if crossed is not None:
                connection.execute(
                    'UPDATE meter_windows SET "thresholds_crossed" = ? WHERE "key" = ?',
                    (json_text(crossed), key),
                )
                crossings += reached
        return crossings
