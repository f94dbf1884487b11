"""Field types of request bodies and queries that every backend can store.

PostgreSQL refuses NUL characters in text and in JSON strings; names and ids are printable, and a
JSON object may hold no NUL anywhere, so such input is a 422 instead of a database error.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, StringConstraints

PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
ID_PATTERN = r"^[0-9A-Za-z_-]+$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=PRINTABLE)]
"""A display name: 1-200 printable characters."""

RowId = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=ID_PATTERN)]
"""The id of a configuration row named in a body."""

IdQuery = Annotated[str | None, Query(min_length=1, max_length=32, pattern=ID_PATTERN)]
"""An optional id filter in the query string."""


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
