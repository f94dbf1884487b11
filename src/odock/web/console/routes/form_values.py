"""Query values of the pages' GET forms (filters): an empty field means "no filter".

A filter form sends every field, so an unset select arrives as ``type=``. The API's query types
refuse an empty string (``min_length=1``), which is right for API clients; a page reads its
filters with these instead and hands the API's services ``None`` for an empty field. A value
that is not empty is checked as strictly as the API does (422 naming the parameter).
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, TypeVar

from fastapi import Query

from odock.errors import UnprocessableEntity
from odock.web.api.fields import ID_PATTERN

E = TypeVar("E", bound=enum.Enum)

FormText = Annotated[str, Query(max_length=200, pattern=r"^[^\x00]*$")]
"""A text field of a filter form (empty: no filter)."""


def text(value: str) -> str | None:
    """The search text, or ``None`` when the field is blank."""
    return value.strip() or None


def choice(kind: type[E], value: str, param: str) -> E | None:
    """The enum member a select chose, ``None`` for its empty option (422 for anything else)."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError as exc:
        raise UnprocessableEntity(f"{param}: not one of the choices", param=param) from exc


def row_id(value: str, param: str) -> str | None:
    """A row id a select chose, ``None`` for its empty option (422 when it is not an id)."""
    if not value:
        return None
    if len(value) > 32 or not re.fullmatch(ID_PATTERN, value):
        raise UnprocessableEntity(f"{param}: not an id", param=param)
    return value
