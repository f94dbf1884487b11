"""Search for list routes: the ``q`` query parameter and the case-insensitive substring match.

The match itself is :func:`odock.db.search.matches` (the services build the queries).
Paging (and the check that a cursor belongs to the sort in use) is :mod:`odock.web.api.paging`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from odock.db.search import matches

SearchQuery = Annotated[
    str | None,
    Query(
        min_length=1, max_length=200, pattern=r"^[^\x00]+$", description="case-insensitive substring search"
    ),
]

__all__ = ["SearchQuery", "matches"]
