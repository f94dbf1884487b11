"""Usage dead letters: the records the database refused, listed for operators and replayed on demand.

The writer keeps a record the database refuses on its own in ``usage_dead_letters``
(:mod:`odock.usage.recorder`). Once the cause is fixed, :meth:`DeadLetters.replay` sends each
through the normal store path again::

    dead letter ─► UsageEvent.from_json(event) ─► UsageStore.insert_many (idempotent)
                       │ stored (or already there) ─► the dead letter is deleted
                       └ refused again / undecodable ─► kept, with the new reason
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.usage.bulk import RecordsRefused
from odock.usage.record import UsageEvent, UsageEventDecodeError
from odock.usage.sqlite_writer import StoreBusy
from odock.usage.store import UsageStore
from odock.usage.tables import UsageDeadLetter

_REASON_CHARS = 2000  # the error column's length
_BUSY_ATTEMPTS = 20
_BUSY_PAUSE = 0.05


@dataclass(frozen=True)
class DeadLetterSummary:
    """How many dead letters wait for a replay, and when the newest was kept."""

    count: int
    newest_at: datetime | None


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did: ids stored (and deleted as dead letters), ids kept with their new reason."""

    stored: tuple[str, ...]
    kept: dict[str, str]


class DeadLetters:
    """Reads and replays the usage dead letters."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def page(
        self,
        organisation_id: str | None,
        *,
        limit: int,
        descending: bool = True,
        after: tuple[datetime, str] | None = None,
    ) -> list[UsageDeadLetter]:
        """Up to ``limit`` + 1 dead letters (of one organisation, or all) in (created_at, id) order."""
        query = select(UsageDeadLetter)
        if organisation_id is not None:
            query = query.where(UsageDeadLetter.organisation_id == organisation_id)
        created, row_id = UsageDeadLetter.created_at, UsageDeadLetter.id
        if after is not None:
            at, last = after
            if descending:
                query = query.where(created <= at, or_(created < at, row_id < last))
            else:
                query = query.where(created >= at, or_(created > at, row_id > last))
        order = (created.desc(), row_id.desc()) if descending else (created.asc(), row_id.asc())
        async with self._sessions() as session:
            return list((await session.execute(query.order_by(*order).limit(limit + 1))).scalars())

    async def summary(self) -> DeadLetterSummary:
        """Every organisation's dead letters: their count and the newest one's time."""
        query = select(func.count(), func.max(UsageDeadLetter.created_at))
        async with self._sessions() as session:
            count, newest = (await session.execute(query)).one()
        return DeadLetterSummary(int(count), newest)

    async def select(self, organisation_id: str | None, ids: Sequence[str]) -> list[UsageDeadLetter]:
        """The dead letters to replay: of one organisation and/or with the given ids (all if neither)."""
        query = select(UsageDeadLetter).order_by(UsageDeadLetter.created_at, UsageDeadLetter.id)
        if organisation_id is not None:
            query = query.where(UsageDeadLetter.organisation_id == organisation_id)
        if ids:
            query = query.where(UsageDeadLetter.id.in_(ids))
        async with self._sessions() as session:
            return list((await session.execute(query)).scalars())

    async def replay(
        self, store: UsageStore, organisation_id: str | None = None, ids: Sequence[str] = ()
    ) -> ReplayReport:
        """Store each selected dead letter again; delete the stored ones, keep the others with the reason."""
        stored: list[str] = []
        kept: dict[str, str] = {}
        for letter in await self.select(organisation_id, ids):
            reason = await _store_again(store, letter)
            if reason is None:
                stored.append(letter.id)
            else:
                kept[letter.id] = reason[:_REASON_CHARS]
        async with self._sessions() as session:
            if stored:
                await session.execute(delete(UsageDeadLetter).where(UsageDeadLetter.id.in_(stored)))
            for letter_id, reason in kept.items():
                await session.execute(
                    update(UsageDeadLetter).where(UsageDeadLetter.id == letter_id).values(error=reason)
                )
            await session.commit()
        return ReplayReport(tuple(stored), kept)


async def _store_again(store: UsageStore, letter: UsageDeadLetter) -> str | None:
    """Write a dead letter's record; None when stored (or already there), else the reason it was not."""
    try:
        event = UsageEvent.from_json(letter.event.encode())
    except UsageEventDecodeError as exc:
        return f"not replayable: {exc}"
    for attempt in range(1, _BUSY_ATTEMPTS + 1):
        try:
            await store.insert_many([event])
            return None
        except RecordsRefused as exc:
            return str(exc)
        except StoreBusy:
            # A gateway on the same SQLite file holds the write lock for a moment.
            if attempt == _BUSY_ATTEMPTS:
                raise
            await asyncio.sleep(_BUSY_PAUSE * attempt)
    return None  # unreachable: the last attempt returns or raises
