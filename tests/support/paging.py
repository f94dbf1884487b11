"""Walking a cursor-paginated list route to its end."""

from __future__ import annotations

from typing import Any

from tests.support.api import Caller

MAX_PAGES = 1000


def walk(caller: Caller, path: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list route, following ``next_cursor``; and the number of pages read."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for pages in range(1, MAX_PAGES + 1):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = caller.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
    raise AssertionError(f"{path} did not end within {MAX_PAGES} pages")
