"""Field types of request bodies and queries that every backend can store.

PostgreSQL refuses NUL characters in text and in JSON strings; names and ids are printable, and a
JSON object may hold no NUL anywhere, so such input is a 422 instead of a database error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, AwareDatetime, StringConstraints

PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
ID_PATTERN = r"^[0-9A-Za-z_-]+$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)]
"""A display name: 1-200 printable characters."""

RowId = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=ID_PATTERN)]
"""The id of a configuration row named in a body."""

IdQuery = Annotated[str | None, Query(min_length=1, max_length=32, pattern=ID_PATTERN)]
"""An optional id filter in the query string."""

Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
"""An id given in a body or a query (owner ids, filters)."""

ModelRef = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)]
"""A model named by its name or its id."""

Timezone = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$")]
"""An IANA time zone name (checked against the zone database by the services)."""

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _instant(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("date out of range") from exc
    if not _EARLIEST <= utc < _LATEST:
        raise ValueError("date must be between 1970 and 9000")
    return utc


Instant = Annotated[AwareDatetime, AfterValidator(_instant)]
"""An instant with a UTC offset (ISO 8601), normalised to UTC."""


def _expiry(value: datetime) -> datetime:
    if value.tzinfo is not None:
        return _instant(value)
    if not _EARLIEST.replace(tzinfo=None) <= value < _LATEST.replace(tzinfo=None):
        raise ValueError("date must be between 1970 and 9000")
    return value


Expiry = Annotated[datetime, AfterValidator(_expiry)]
"""An expiry: an instant with a UTC offset (normalised to UTC), or a wall-clock time without one
that the key's time zone interprets (:func:`odock.keys.expiry.expiry_instant`)."""


def _without_nul(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("JSON nested deeper than 32 levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("JSON strings may not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _without_nul(key, depth + 1)
            _without_nul(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _without_nul(item, depth + 1)


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    _without_nul(value)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_storable)]
"""A free-form JSON object (provider or model ``config``) that every backend can store."""
