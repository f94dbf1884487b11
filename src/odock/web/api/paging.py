"""Cursor pagination, sorting and search for every list route.

Lists are keyset-paginated on ``(sort column, id)`` (the query itself: :mod:`odock.db.keyset`,
which the services use): a page costs one indexed range scan however deep it is, so listing
100,000 keys or a million usage records stays fast. The cursor is opaque (base64 of the last
row's sort value and id) and only valid with the same sort.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
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


# Our ids (26-character ULIDs, 32-hex record ids, window indexes) and nothing a database would choke on.
_CURSOR_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def decode_cursor(cursor: str) -> tuple[object, str]:
    """The sort value and id a cursor points after; 422 when it is not one of ours.

    The value comes back as one of the types a sort column holds (an aware UTC datetime, a string
    without NUL, a 64-bit integer or a finite float) and the id in the shape of our ids, so a
    forged cursor is refused here rather than by the database (a 500).
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        document = orjson.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, orjson.JSONDecodeError) as exc:  # binascii.Error is a ValueError
        raise _invalid_cursor() from exc
    if not isinstance(document, list) or len(document) != 2:
        raise _invalid_cursor()
    value, row_id = document
    if not isinstance(row_id, str) or not _CURSOR_ID.fullmatch(row_id):
        raise _invalid_cursor()
    return _sort_value(value), row_id


def _sort_value(value: object) -> object:
    if isinstance(value, dict):
        return _instant(value)
    if isinstance(value, str) and "\x00" not in value:
        return value  # PostgreSQL refuses NUL in text: a database error, not a miss
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    if isinstance(value, float):
        return value  # orjson never yields NaN or infinity
    raise _invalid_cursor()


def _instant(value: dict[object, object]) -> datetime:
    text = value.get("t")
    if set(value) != {"t"} or not isinstance(text, str):
        raise _invalid_cursor()
    try:
        instant = datetime.fromisoformat(text)
        if instant.tzinfo is None:
            raise ValueError("no UTC offset")  # every timestamp column is UTC: a naive one is forged
        return instant.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: past year 1 or 9999 in UTC
        raise _invalid_cursor() from exc


def _invalid_cursor() -> UnprocessableEntity:
    return UnprocessableEntity("cursor is not valid: pass the next_cursor of a previous page", param="cursor")


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
