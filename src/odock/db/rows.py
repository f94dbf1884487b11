"""Loading and committing configuration rows with the control plane's errors (404, 409).

Shared by every feature's service, so none of them needs the admin layer for it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.errors import Conflict, NotFound

_Row = TypeVar("_Row")
_LABELS = {
    "ApiKey": "API key",
    "ProviderApiKey": "provider key",
    "Organisation": "organisation",
    "Team": "team",
    "User": "user",
    "Provider": "provider",
    "Model": "model",
}


def label(table: type[object]) -> str:
    """What a table's rows are called in messages (``ProviderApiKey`` → ``provider key``)."""
    return _LABELS.get(table.__name__, table.__name__)


async def get_row(session: AsyncSession, table: type[_Row], row_id: str) -> _Row:
    """The row of ``table`` with ``row_id``, or :class:`NotFound`."""
    row = await session.get(table, row_id)
    if row is None:
        raise NotFound(f"{label(table)} '{row_id}' does not exist")
    return row


async def commit_or_conflict(session: AsyncSession, conflict_message: str) -> None:
    """Commit; a unique-constraint violation becomes :class:`Conflict` (409)."""
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(conflict_message) from exc


async def one_or_missing(
    sessions: async_sessionmaker[AsyncSession], query: Select[_Row], missing: str
) -> _Row:
    """The one row ``query`` finds, or :class:`NotFound` with the message ``missing``."""
    async with sessions() as session:
        row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFound(missing)
    return row


async def exists(sessions: async_sessionmaker[AsyncSession], table: type[Any], row_id: str) -> None:
    """Refuse (404) a reference to a row of ``table`` that does not exist."""
    async with sessions() as session:
        await get_row(session, table, row_id)
