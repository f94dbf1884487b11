"""Loading and committing configuration rows with the control plane's errors (404, 409)."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

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
