"""Search for list routes: the ``q`` query parameter (the match itself is :mod:`odock.db.search`).

Paging (and the check that a cursor belongs to the sort in use) is :mod:`odock.web.api.paging`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from odock.db.search import matches

__all__ = ["SearchQuery", "matches"]

SearchQuery = Annotated[
    str | None,
    Query(
        min_length=1, max_length=200, pattern=r"^[^\x00]+$", description="case-insensitive substring search"
    ),
]
