"""The generic paged list: the page asked for becomes a keyset bound, one extra row a next cursor."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from odock.db.keyset import KeysetPage
from odock.errors import UnprocessableEntity
from odock.web.api.lists import paged
from odock.web.api.paging import PageParams, decode_cursor, encode_cursor, keyset_page


def test_the_cursor_becomes_the_keyset_bound() -> None:
    """limit, order and cursor of the query string become the service's KeysetPage."""
    params = PageParams(limit=2, order="asc", cursor=encode_cursor("b", "id-b"))
    assert keyset_page(params) == KeysetPage(limit=2, descending=False, after=("b", "id-b"))
    assert keyset_page(PageParams()) == KeysetPage(limit=50, descending=True, after=None)
    with pytest.raises(UnprocessableEntity):
        keyset_page(PageParams(cursor="not-a-cursor!"))


async def test_a_page_with_one_row_over_the_limit_has_a_next_cursor() -> None:
    """The extra row is not shown; the cursor points after the last row shown."""
    asked: list[KeysetPage] = []

    async def fetch(page: KeysetPage) -> Sequence[str]:
        asked.append(page)
        return ["a", "b", "c"]

    page = await paged(fetch, PageParams(limit=2), str.upper, lambda row: (row, f"id-{row}"))
    assert page.items == ["A", "B"]
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor) == ("b", "id-b")
    assert asked == [KeysetPage(limit=2)]
    last = await paged(fetch, PageParams(limit=3), str.upper, lambda row: (row, f"id-{row}"))
    assert (last.items, last.next_cursor) == (["A", "B", "C"], None)
