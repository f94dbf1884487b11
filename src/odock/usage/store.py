"""Persistence of usage records: idempotent batch inserts (a re-flush inserts nothing twice)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.usage.record import UsageEvent
from odock.usage.tables import UsageRecord


class UsageStore:
    """Writes and reads usage records."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def insert_many(self, events: Sequence[UsageEvent]) -> int:
        """Insert events, skipping ids already stored; return how many rows were new."""
        if not events:
            return 0
        rows = [e.to_row() for e in events]
        async with self._sessions() as session:
            dialect = session.bind.dialect.name if session.bind else "sqlite"
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            stmt = insert(UsageRecord).on_conflict_do_nothing(index_elements=[UsageRecord.id])
            result = await session.execute(stmt, rows)
            await session.commit()
        inserted = result.rowcount  # type: ignore[attr-defined]
        return inserted if isinstance(inserted, int) and inserted >= 0 else len(rows)

    async def count(self) -> int:
        """How many usage records exist."""
        async with self._sessions() as session:
            return int((await session.execute(select(func.count()).select_from(UsageRecord))).scalar_one())

    async def by_request_id(self, request_id: str) -> list[UsageRecord]:
        """Records carrying this correlation id, oldest first."""
        async with self._sessions() as session:
            result = await session.execute(
                select(UsageRecord).where(UsageRecord.request_id == request_id).order_by(UsageRecord.timestamp)
            )
            return list(result.scalars())
