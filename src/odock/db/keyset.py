"""Keyset pages of configuration rows: ``(sort column, id)`` ranges instead of offsets.

A page costs one indexed range scan however deep it is. The services build their query, narrow
it to what the caller may see, and pass it here with the page wanted (the web layer turns the
opaque cursor into :class:`KeysetPage.after`); one row over the limit is fetched so that the
caller can tell whether another page follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, Select, SmallInteger, or_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from odock.errors import UnprocessableEntity

# A bound column of another width overflows in the driver (asyncpg: int4 vs int8), a 500.
_INTEGER_BOUNDS: dict[type, int] = {SmallInteger: 2**15, Integer: 2**31, BigInteger: 2**63}


@dataclass(frozen=True, slots=True)
class KeysetPage:
    """Which page to read: at most ``limit`` rows after the ``(sort value, id)`` of ``after``."""

    limit: int = 50
    descending: bool = True
    after: tuple[object, str] | None = None


def keyset(
    query: Select[Any],
    sort: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[Any],
    page: KeysetPage,
) -> Select[Any]:
    """``query`` ordered by ``(sort, id)``, starting after ``page.after``, one row over the limit."""
    if page.after is not None:
        value, row_id = page.after
        check_cursor_type(value, sort)
        # "sort <= v AND (sort < v OR id < last)": the first conjunct is an index range, so a
        # deep page starts where the last one ended instead of scanning from the top.
        if page.descending:
            query = query.where(sort <= value, or_(sort < value, id_column < row_id))
        else:
            query = query.where(sort >= value, or_(sort > value, id_column > row_id))
    if page.descending:
        query = query.order_by(sort.desc(), id_column.desc())
    else:
        query = query.order_by(sort.asc(), id_column.asc())
    return query.limit(page.limit + 1)


async def fetch_rows(sessions: async_sessionmaker[AsyncSession], query: Select[Any]) -> Sequence[Any]:
    """The rows of a one-entity query (``select(Table)``), in one short session."""
    async with sessions() as session:
        return list((await session.execute(query)).scalars())


def check_cursor_type(value: object, sort: InstrumentedAttribute[Any]) -> None:
    """Refuse (422) a cursor value of another type than the sort column's."""
    # A cursor made for another sort (or forged) must be a 422, not a database type error.
    column_type = getattr(sort.type, "impl_instance", sort.type)  # a TypeDecorator's own type
    try:
        expected: type = column_type.python_type
    except NotImplementedError:
        return
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif expected is int:
        bound = _INTEGER_BOUNDS.get(type(column_type), 2**31)
        ok = isinstance(value, int) and not isinstance(value, bool) and -bound <= value < bound
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise UnprocessableEntity("cursor does not belong to this sort order", param="cursor")
