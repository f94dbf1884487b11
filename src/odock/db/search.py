"""The case-insensitive substring match behind every list's ``q`` search.

On PostgreSQL the searched API-key columns carry trigram indexes (migration 0006), which this
``lower(column) LIKE '%q%'`` shape uses; elsewhere it is a scan of the already-filtered rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, or_
from sqlalchemy.orm import InstrumentedAttribute


def matches(q: str, *columns: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
    """Rows where any of ``columns`` contains ``q`` (``%`` and ``_`` in ``q`` match literally)."""
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    return or_(*(func.lower(column).like(pattern, escape="\\") for column in columns))
