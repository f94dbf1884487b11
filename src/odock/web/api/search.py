"""Search and sort for list routes: ``q`` substring search, and keyset paging on a chosen column.

A cursor carries the sort value of the row it points after; a cursor made under one sort (a
name) and replayed under another (a timestamp) would reach the database as a value of the wrong
type, so :func:`sorted_keyset` refuses it with 422 first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import ColumnElement, DateTime, Select, func, or_
from sqlalchemy.orm import InstrumentedAttribute

from odock.errors import UnprocessableEntity
from odock.web.api.paging import PageParams, decode_cursor, keyset

SearchQuery = Annotated[
    str | None,
    Query(
        min_length=1, max_length=200, pattern=r"^[^\x00]+$", description="case-insensitive substring search"
    ),
]


def matches(q: str, *columns: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
    """Rows where any of ``columns`` contains ``q`` (``%`` and ``_`` in ``q`` match literally)."""
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    return or_(*(func.lower(column).like(pattern, escape="\\") for column in columns))


def sorted_keyset(
    query: Select[Any],
    sort: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[Any],
    params: PageParams,
) -> Select[Any]:
    """:func:`~odock.web.api.paging.keyset`, after checking the cursor was made for this sort column."""
    if params.cursor:
        value, _row_id = decode_cursor(params.cursor)
        column_type = sort.type
        is_time = isinstance(column_type, DateTime) or isinstance(
            getattr(column_type, "impl", None), DateTime
        )
        expected = datetime if is_time else str
        if not isinstance(value, expected):
            raise UnprocessableEntity("the cursor belongs to another sort order", param="cursor")
    return keyset(query, sort, id_column, params)
