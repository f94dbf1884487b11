"""Persistence of usage records: idempotent batch inserts (a re-flush inserts nothing twice)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.ledger import Settlement, ThresholdCrossing, apply_settlements
from odock.db.base import insert_ignoring_duplicates
from odock.usage.record import UsageEvent
from odock.usage.sqlite_writer import SqliteUsageWriter
from odock.usage.tables import UsageRecord


class UsageStore:
    """Writes and reads usage records."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        on_thresholds: Callable[[list[ThresholdCrossing]], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._on_thresholds = on_thresholds
        # On a SQLite file, batches are written by SQLite's own driver on the event loop's thread
        # (see odock.usage.sqlite_writer for why); reads still go through the sessions.
        self._sqlite: SqliteUsageWriter | None = None
        bind = sessions.kw.get("bind")
        url = make_url(str(bind.url)) if bind is not None else None
        database = url.database if url is not None and url.get_backend_name() == "sqlite" else None
        if database not in (None, "", ":memory:"):
            self._sqlite = SqliteUsageWriter(Path(str(database)))

    async def close(self) -> None:
        """Release the writer's own connection, if it has one."""
        if self._sqlite is not None:
            await self._sqlite.close()

    async def insert_many(self, events: Sequence[UsageEvent]) -> int:
        """Insert events, skipping ids already stored; return how many rows were new."""
        if not events:
            return 0
        if self._sqlite is not None:
            inserted, crossings = await self._sqlite.insert_many(events)
        else:
            inserted, crossings = await self._insert_with_sessions(events)
        if crossings and self._on_thresholds is not None:
            self._on_thresholds(crossings)
        return inserted

    async def _insert_with_sessions(
        self, events: Sequence[UsageEvent]
    ) -> tuple[int, list[ThresholdCrossing]]:
        table = cast(Table, UsageRecord.__table__)
        # Core rows are keyed by column name ("metadata"), not the ORM attribute ("metadata_").
        rows = [{**e.to_row(), "metadata": e.metadata} for e in events]
        for row in rows:
            del row["metadata_"]
        async with self._sessions() as session:
            # RETURNING yields only the rows actually inserted, on both backends; rowcount of an
            # executemany is not reliable across drivers.
            stmt = insert_ignoring_duplicates(session, table, "id").returning(table.c.id)
            result = await session.execute(stmt, rows)
            inserted = len(result.all())
            settlements = [Settlement.from_dict(s) for e in events for s in e.settlements]
            crossings = await apply_settlements(session, settlements)
            await session.commit()
        return inserted, crossings

    async def count(self) -> int:
        """How many usage records exist."""
        async with self._sessions() as session:
            return int((await session.execute(select(func.count()).select_from(UsageRecord))).scalar_one())

    async def by_request_id(self, request_id: str) -> list[UsageRecord]:
        """Records carrying this correlation id, oldest first."""
        async with self._sessions() as session:
            query = select(UsageRecord).where(UsageRecord.request_id == request_id)
            result = await session.execute(query.order_by(UsageRecord.timestamp))
            return list(result.scalars())
