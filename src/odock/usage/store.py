"""Persistence of usage records: idempotent batch inserts (a re-flush inserts nothing twice).

A record the database refuses on its own is kept as a dead letter (:meth:`UsageStore.dead_letter`)
instead; the recorder decides when (:mod:`odock.usage.recorder`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.ledger import ThresholdCrossing
from odock.usage.postgres_writer import PostgresUsageWriter
from odock.usage.record import UsageEvent
from odock.usage.sqlite_writer import SqliteUsageWriter
from odock.usage.tables import UsageDeadLetter, UsageRecord


class UsageStore:
    """Writes and reads usage records."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        on_thresholds: Callable[[list[ThresholdCrossing]], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._on_thresholds = on_thresholds
        # Batches are written at the driver level (odock.usage.bulk says why): SQLite's own driver
        # on the event loop's thread, or asyncpg; reads go through the sessions.
        engine = sessions.kw["bind"]
        url = make_url(str(engine.url))
        self._writer: SqliteUsageWriter | PostgresUsageWriter
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:"):
                raise ValueError("the usage store needs a SQLite database file")
            self._writer = SqliteUsageWriter(Path(str(url.database)))
        else:
            self._writer = PostgresUsageWriter(engine)

    async def close(self) -> None:
        """Release the writer's own resources."""
        await self._writer.close()

    async def insert_many(self, events: Sequence[UsageEvent]) -> int:
        """Insert events, skipping ids already stored; return how many rows were new."""
        if not events:
            return 0
        inserted, crossings = await self._writer.insert_many(events)
        if crossings and self._on_thresholds is not None:
            self._on_thresholds(crossings)
        return inserted

    async def dead_letter(self, event: UsageEvent, error: str) -> None:
        """Keep an event the database refused, with its reason (stored once per event id)."""
        await self._writer.insert_dead_letter(event, error)

    async def dead_letters(self) -> list[UsageDeadLetter]:
        """Every dead letter, oldest first."""
        async with self._sessions() as session:
            query = select(UsageDeadLetter).order_by(UsageDeadLetter.created_at, UsageDeadLetter.id)
            return list((await session.execute(query)).scalars())

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
