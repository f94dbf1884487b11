"""The production usage writer: batches into PostgreSQL through asyncpg, one statement per table.

SQLAlchemy's ORM bulk path built and compiled five statements per batch and bound every value
through its own machinery: at concurrency 1, where batches are small, the usage writer took as
much of the event loop as the requests themselves. Here each table gets one statement whose
text never changes, whatever the batch size: the rows travel as one array per column and
``unnest`` turns them back into rows, so asyncpg prepares each statement once per connection.

Same contract as the SQLite writer (tests/contract/test_usage_store.py and test_budget_ledger.py
run over both): ids stored once (``RETURNING`` counts the rows that were new), settlements
applied once each (the settlement insert returns the ones that were new, and only those are
added to their windows), thresholds reported once (the window row is locked while checked).
Window rows are created and updated in key order, so two replicas settling into the same
windows cannot deadlock.

The writer keeps one asyncpg connection of its own (opened on the first batch, with the
engine's connection arguments) instead of checking one out of the engine's pool per batch: a
checkout went through SQLAlchemy's greenlet adaptation and a pre-ping round trip, and was the
longest stretch of event-loop time a batch took (the production gateway's c=1 tail).

A batch the database refuses (SQLSTATE class 22, data exception, or 23, integrity constraint
violation; or a value asyncpg cannot encode) is rolled back and raised as
:class:`~odock.usage.bulk.RecordsRefused`, keeping the connection: the recorder isolates the
record and writes it with :meth:`PostgresUsageWriter.insert_dead_letter`. Any other driver error
drops the connection (the next batch opens a new one) and is raised as :class:`WriteFailed`,
which the recorder retries like any other write error.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Sequence
from typing import Any, cast

import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine

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
    aware_instant,
    batch_settlements,
    dead_letter_row,
    json_text,
    quoted,
)
from odock.usage.record import UsageEvent
from odock.usage.tables import UsageDeadLetter, UsageRecord

_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
# Binding costs microseconds a record on the event loop, so a batch is bound in slices (see
# odock.aio.WorkSlices) with a turn of the loop between them: at least this much time each, and
# a batch in at most BIND_TURNS turns; a catch-up batch of a thousand records in one go would
# stall the requests on the loop for milliseconds.
BIND_SLICE_SECONDS = 0.001
BIND_TURNS = 4
# Rows per INSERT statement: asyncpg encodes a statement's arguments in one go, which for the
# 1,024 records of a catch-up batch held the event loop for 8 ms (128: about 1 ms). A batch is still
# one transaction; a big one takes a round trip per 128 records.
INSERT_ROWS = 128
# What a broken or refused write raises from the driver (OSError: the server cannot be reached).
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# Options of SQLAlchemy's asyncpg adapter that asyncpg.connect does not take.
_ADAPTER_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn")


# SQLSTATE classes of a refusal that the same batch meets again on every retry: 22 data exception
# (a value too long, out of range, invalid JSON), 23 integrity constraint violation. Others (08
# connection, 40 serialization failure or deadlock, 53 insufficient resources, 57 operator
# intervention) pass with time.
_REFUSED_CLASSES = ("22", "23")


class WriteFailed(Exception):
    """The database could not be reached or failed the batch for now: nothing was written, try again."""


def _refusal(exc: BaseException) -> RecordsRefused | None:
    """The driver error as :class:`RecordsRefused` when the same rows would be refused again."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        if sqlstate[:2] in _REFUSED_CLASSES:
            return RecordsRefused(f"{sqlstate} {type(exc).__name__}: {exc}")
    elif isinstance(exc, asyncpg.DataError):  # asyncpg could not encode an argument
        return RecordsRefused(f"{type(exc).__name__}: {exc}")
    return None


def _unnest_insert(table: Table, columns: Sequence[str], conflict: str, returning: str) -> str:
    """``INSERT … SELECT * FROM unnest($1::type[], …) ON CONFLICT (…) DO NOTHING RETURNING …``."""
    arrays = ", ".join(
        f"${i}::{table.c[name].type.compile(dialect=_DIALECT)}[]" for i, name in enumerate(columns, start=1)
    )
    return (
        f"INSERT INTO {table.name} ({quoted(columns)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {returning}"
    )


def _columns(rows: list[list[Any]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (the arrays ``unnest`` reads)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class PostgresUsageWriter:
    """Writes usage batches (and their settlements) into PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        args, options = engine.dialect.create_connect_args(engine.url)
        self._connect_args: tuple[Any, ...] = tuple(args)
        self._connect_options = {k: v for k, v in options.items() if k not in _ADAPTER_OPTIONS}
        self._connection: asyncpg.Connection | None = None
        usage = cast(Table, UsageRecord.__table__)
        self._usage = RowBinder(usage, [c.name for c in usage.columns], _DIALECT, aware_instant)
        # Event fields are named like the columns (the ORM attribute "metadata_" aside).
        self._usage_values = operator.attrgetter(*self._usage.columns)
        self._usage_sql = _unnest_insert(usage, self._usage.columns, '"id"', '"id"')
        windows = cast(Table, MeterWindow.__table__)
        self._windows = RowBinder(windows, [c.name for c in windows.columns], _DIALECT, aware_instant)
        self._windows_sql = _unnest_insert(windows, self._windows.columns, '"key"', '"key"')
        settlements = cast(Table, MeterSettlement.__table__)
        columns = ["request_key", "window_key", "amount", "settled_at"]
        self._settlements = RowBinder(settlements, columns, _DIALECT, aware_instant)
        self._settlements_sql = _unnest_insert(
            settlements, columns, '"request_key", "window_key"', '"window_key", "amount"'
        )
        letters = cast(Table, UsageDeadLetter.__table__)
        self._letters = RowBinder(letters, DEAD_LETTER_COLUMNS, _DIALECT, aware_instant)
        placeholders = ", ".join(f"${i}" for i in range(1, len(DEAD_LETTER_COLUMNS) + 1))
        self._letters_sql = (
            f"INSERT INTO usage_dead_letters ({quoted(DEAD_LETTER_COLUMNS)}) "
            f"VALUES ({placeholders}) ON CONFLICT (id) DO NOTHING"
        )

    async def close(self) -> None:
        """Close the writer's connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await connection.close(timeout=5)

    async def insert_many(self, events: Sequence[UsageEvent]) -> tuple[int, list[ThresholdCrossing]]:
        """Store the events and apply their settlements in one transaction.

        Returns how many records were new and the thresholds this batch crossed; raises
        :class:`WriteFailed` (try again) or :class:`RecordsRefused` when nothing was written.
        """
        rows: list[list[Any]] = []
        settlements = batch_settlements(events)
        slices = WorkSlices(BIND_SLICE_SECONDS, len(events), BIND_TURNS)
        for e in events:
            rows.append(self._usage.bind(self._usage_values(e)))
            if slices.due():
                await slices.pause()
        try:
            connection = await self._connected()
            async with connection.transaction():
                inserted = 0
                for start in range(0, len(rows), INSERT_ROWS):
                    chunk = rows[start : start + INSERT_ROWS]
                    inserted += len(
                        await connection.fetch(self._usage_sql, *_columns(chunk, len(self._usage.columns)))
                    )
                crossings = await self._settle(connection, settlements) if settlements.rows else []
        except _DRIVER_ERRORS as exc:
            if (refused := _refusal(exc)) is not None:
                raise refused from exc  # rolled back by the transaction block: the connection is fine
            self._discard()
            raise WriteFailed(f"usage batch not written: {exc!r}") from exc
        return inserted, crossings

    async def insert_dead_letter(self, event: UsageEvent, error: str) -> None:
        """Keep a refused event in usage_dead_letters (once per id); :class:`WriteFailed` if not stored."""
        row = self._letters.bind(dead_letter_row(event, error, utcnow()))
        try:
            connection = await self._connected()
            await connection.execute(self._letters_sql, *row)
        except _DRIVER_ERRORS as exc:
            if (refused := _refusal(exc)) is not None:
                raise refused from exc
            self._discard()
            raise WriteFailed(f"usage dead letter not written: {exc!r}") from exc

    async def _connected(self) -> asyncpg.Connection:
        """The writer's connection, opened when there is none (or it was closed under it)."""
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(*self._connect_args, **self._connect_options)
        return self._connection

    def _discard(self) -> None:
        """Drop the connection after an error: it may be broken, or left inside a transaction."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def _settle(self, raw: Any, settlements: BatchSettlements) -> list[ThresholdCrossing]:
        """Create missing windows, record new settlements, add them to their windows, check thresholds."""
        now = utcnow()
        window_rows = [
            self._windows.bind_mapping(
                {
                    **window_row(s.window_key, s.meter_kind, s.meter_id, s.version, s.window, s.limit),
                    "updated_at": now,
                }
            )
            for s in settlements.windows
        ]
        await raw.fetch(self._windows_sql, *_columns(window_rows, len(self._windows.columns)))
        rows = [self._settlements.bind((*row, now)) for row in settlements.rows]
        deltas: dict[str, int] = {}
        for key, amount in await raw.fetch(self._settlements_sql, *_columns(rows, 4)):
            deltas[key] = deltas.get(key, 0) + amount
        touched = sorted(key for key, delta in deltas.items() if delta)
        await raw.executemany(
            'UPDATE meter_windows SET "used" = "used" + $1, "updated_at" = $2 WHERE "key" = $3',
            [(deltas[key], now, key) for key in touched],
        )
        thresholds = settlements.thresholds
        crossings: list[ThresholdCrossing] = []
        for key in touched:
            if key not in thresholds:
                continue
            row = await raw.fetchrow(
                f'SELECT {THRESHOLD_COLUMNS} FROM meter_windows WHERE "key" = $1 FOR UPDATE', key
            )
            if row is None:
                continue
            crossed, reached = threshold_crossings(key, thresholds[key], tuple(row))
            if crossed is not None:
                await raw.execute(
                    'UPDATE meter_windows SET "thresholds_crossed" = $1 WHERE "key" = $2',
                    json_text(crossed),
                    key,
                )
                crossings += reached
        return crossings
