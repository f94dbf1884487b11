"""Keyset cursors of the control-plane lists: round trip and rejection of foreign cursors."""

from __future__ import annotations

from datetime import UTC, datetime

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
