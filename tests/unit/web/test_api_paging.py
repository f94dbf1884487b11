"""Keyset cursors of the control-plane lists: round trip and rejection of foreign cursors."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import select

from odock.errors import UnprocessableEntity
from odock.keys.tables import ApiKey
from odock.web.api.paging import PageParams, decode_cursor, encode_cursor, keyset


def test_cursor_round_trips_a_timestamp_and_id() -> None:
    """A cursor decodes to the timestamp and id it was made from."""
    at = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    assert decode_cursor(encode_cursor(at, "abc")) == (at, "abc")


@pytest.mark.parametrize("cursor", ["not-base64!", "e30", encode_cursor(5, "x")[:-2] + "!!"])
def test_garbage_cursor_is_a_422(cursor: str) -> None:
    """A cursor that is not one of ours is a validation error, not a crash."""
    with pytest.raises(UnprocessableEntity):
        decode_cursor(cursor)


@pytest.mark.parametrize("value", ["yesterday", 12, True])
def test_cursor_of_the_wrong_type_for_the_sort_is_a_422(value: object) -> None:
    """A cursor whose value cannot compare with the sort column is refused before any query."""
    params = PageParams(cursor=encode_cursor(value, "id"))
    with pytest.raises(UnprocessableEntity):
        keyset(select(ApiKey), ApiKey.created_at, ApiKey.id, params)


def test_cursor_of_the_right_type_narrows_the_query() -> None:
    """A timestamp cursor adds the keyset condition and asks for one row over the limit."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    query = keyset(
        select(ApiKey), ApiKey.created_at, ApiKey.id, PageParams(limit=10, cursor=encode_cursor(at, "k"))
    )
    sql = str(query)
    assert "api_keys.created_at <" in sql
    assert query._limit_clause is not None


def _forged(document: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(document)).decode().rstrip("=")


@pytest.mark.parametrize(
    "document",
    [
        [{"t": "2026-01-01T00:00:00"}, "x"],  # naive: the database layer would raise ValueError
        [{"t": "0001-01-01T00:00:00+05:00"}, "x"],  # before year 1 once in UTC
        [{"t": "2026-01-01T00:00:00+00:00"}, "a\u0000b"],
        [{"t": "2026-01-01T00:00:00+00:00"}, "x" * 65],
        ["acme\u0000", "x"],
        [18446744073709551615, "x"],
        [None, "x"],
        [[1], "x"],
        [{"t": "2026-01-01T00:00:00+00:00"}, "x", "y"],
    ],
)
def test_forged_cursor_is_refused_at_decode(document: object) -> None:
    """A cursor the database could not bind (naive time, NUL, overflow, wrong shape) is a 422 naming it."""
    with pytest.raises(UnprocessableEntity) as refused:
        decode_cursor(_forged(document))
    assert refused.value.param == "cursor"


def test_cursor_time_in_another_offset_is_the_same_instant_in_utc() -> None:
    """A cursor timestamp with an offset decodes to that instant, in UTC."""
    value, _ = decode_cursor(_forged([{"t": "2026-01-01T05:30:00+05:30"}, "x"]))
    assert value == datetime(2026, 1, 1, tzinfo=UTC)
    assert isinstance(value, datetime)
    assert value.tzinfo is UTC


@pytest.mark.parametrize(("value", "ok"), [(2**31 - 1, True), (2**31, False), (-(2**31) - 1, False)])
def test_integer_cursor_must_fit_the_sort_column(value: int, ok: bool) -> None:
    """An integer cursor past a 32-bit column's range is refused before the driver overflows."""
    params = PageParams(cursor=encode_cursor(value, "id"))
    if ok:
        keyset(select(ApiKey), ApiKey.rotation_count, ApiKey.id, params)
    else:
        with pytest.raises(UnprocessableEntity):
            keyset(select(ApiKey), ApiKey.rotation_count, ApiKey.id, params)
