"""Cursor pagination, sorting and search for every list route.

Lists are keyset-paginated on ``(sort column, id)`` (the query itself: :mod:`odock.db.keyset`,
which the services use): a page costs one indexed range scan however deep it is, so listing
100,000 keys or a million usage records stays fast. The cursor is opaque (base64 of the last
row's sort value and id) and only valid with the same sort.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from odock.db.keyset import KeysetPage
from odock.db.keyset import keyset as keyset_query
from odock.errors import UnprocessableEntity

T = TypeVar("T")
_Row = TypeVar("_Row")

MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    """One page of a list: the items, and the cursor of the next page (``null`` on the last)."""

    items: list[T]
    next_cursor: str | None = None


class PageParams(BaseModel):
    """Query parameters every list route accepts."""

    limit: int = 50
    cursor: str | None = None
    order: Literal["asc", "desc"] = "desc"


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=500, description="next_cursor of the previous page")
    ] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="sort direction")] = "desc",
) -> PageParams:
    """The ``limit``/``cursor``/``order`` query parameters (use with ``Depends``)."""
    return PageParams(limit=limit, cursor=cursor, order=order)


def encode_cursor(value: object, row_id: str) -> str:
    """An opaque cursor for the row with sort ``value`` and ``row_id``."""
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    return base64.urlsafe_b64encode(orjson.dumps([value, row_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[object, str]:
    """The sort value and id a cursor points after; 422 when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = orjson.loads(base64.urlsafe_b64decode(padded))
        if isinstance(value, dict) and set(value) == {"t"}:
            value = datetime.fromisoformat(value["t"])
        if not isinstance(row_id, str):
            raise ValueError("bad id")
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise UnprocessableEntity("cursor is not valid", param="cursor") from exc
    return value, row_id


def keyset_page(params: PageParams) -> KeysetPage:
    """The keyset bound of the page the query parameters ask for (422 for a foreign cursor)."""
    after = decode_cursor(params.cursor) if params.cursor else None
    return KeysetPage(limit=params.limit, descending=params.order == "desc", after=after)


def keyset(
    query: Select[Any],
    sort: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[Any],
    params: PageParams,
) -> Select[Any]:
    """``query`` ordered by ``(sort, id)``, starting after ``params.cursor``, one row over the limit."""
    return keyset_query(query, sort, id_column, keyset_page(params))


def make_page(
    rows: Sequence[_Row],
    params: PageParams,
    render: Callable[[_Row], T],
    key: Callable[[_Row], tuple[object, str]],
) -> Page[T]:
    """The page for ``rows`` fetched by :func:`keyset` (which asked for one extra row)."""
    more = len(rows) > params.limit
    shown = rows[: params.limit]
    cursor = encode_cursor(*key(shown[-1])) if more and shown else None
    return Page[T](items=[render(r) for r in shown], next_cursor=cursor)
