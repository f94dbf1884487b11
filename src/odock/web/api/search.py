"""Search for list routes: the ``q`` query parameter and the case-insensitive substring match.

Paging (and the check that a cursor belongs to the sort in use) is :mod:`odock.web.api.paging`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import ColumnElement, func, or_
from sqlalchemy.orm import InstrumentedAttribute

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
