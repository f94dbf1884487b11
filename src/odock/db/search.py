"""Search of list queries: the case-insensitive substring match behind every ``q`` parameter."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, or_
from sqlalchemy.orm import InstrumentedAttribute


def matches(q: str, *columns: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
    """Rows where any of ``columns`` contains ``q`` (``%`` and ``_`` in ``q`` match literally)."""
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    return or_(*(func.lower(column).like(pattern, escape="\\") for column in columns))
