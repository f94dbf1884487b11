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
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from odock.budgets.ledger import (
    THRESHOLD_COLUMNS,
    Settlement,
    ThresholdCrossing,
    threshold_crossings,
    window_row,
)
from odock.budgets.tables import MeterSettlement, MeterWindow
from odock.db.base import utcnow
from odock.usage.bulk import RowBinder, aware_instant, json_text, quoted
from odock.usage.record import UsageEvent
from odock.usage.tables import UsageRecord

_DIALECT = asyncpg.dialect()  # type: ignore[no-untyped-call]
# Records bound per slice: binding costs tens of microseconds a record on the event loop, so a
# batch is bound in slices with a yield between them; a 64-record batch (or a catch-up batch of
# a thousand) in one go was a stall of milliseconds (tens of them) for the requests on the loop.
BIND_STEP = 16


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
        self._engine = engine
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

    async def close(self) -> None:
        """Nothing of its own to release (connections belong to the engine's pool)."""

    async def insert_many(self, events: Sequence[UsageEvent]) -> tuple[int, list[ThresholdCrossing]]:
        """Store the events and apply their settlements in one transaction.

        Returns how many records were new and the thresholds this batch crossed.
        """
        rows: list[list[Any]] = []
        for start in range(0, len(events), BIND_STEP):
            if start:
                await asyncio.sleep(0)  # let requests run between slices (see BIND_STEP)
            rows += [self._usage.bind(self._usage_values(e)) for e in events[start : start + BIND_STEP]]
        settlements = [Settlement.from_dict(s) for e in events for s in e.settlements]
        async with self._engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert raw is not None
            async with raw.transaction():
                inserted = await raw.fetch(self._usage_sql, *_columns(rows, len(self._usage.columns)))
                crossings = await self._settle(raw, settlements) if settlements else []
        return len(inserted), crossings

    async def _settle(self, raw: Any, settlements: list[Settlement]) -> list[ThresholdCrossing]:
        """Create missing windows, record new settlements, add them to their windows, check thresholds."""
        now = utcnow()
        windows = sorted({s.window_key: s for s in settlements}.values(), key=lambda s: s.window_key)
        window_rows = [
            self._windows.bind_mapping(
                {
                    **window_row(s.window_key, s.meter_kind, s.meter_id, s.version, s.window, s.limit),
                    "updated_at": now,
                }
            )
            for s in windows
        ]
        await raw.fetch(self._windows_sql, *_columns(window_rows, len(self._windows.columns)))
        rows = [self._settlements.bind((s.request_key, s.window_key, s.amount, now)) for s in settlements]
        deltas: dict[str, int] = {}
        for key, amount in await raw.fetch(self._settlements_sql, *_columns(rows, 4)):
            deltas[key] = deltas.get(key, 0) + amount
        touched = sorted(key for key, delta in deltas.items() if delta)
        await raw.executemany(
            'UPDATE meter_windows SET "used" = "used" + $1, "updated_at" = $2 WHERE "key" = $3',
            [(deltas[key], now, key) for key in touched],
        )
        thresholds = {s.window_key: s.thresholds for s in settlements if s.thresholds}
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
