"""What the pages share: lenient parsing of filter forms, owner names, time zones.

A filter form sends every field, empty ones as ``""``; the API's typed query parameters would
refuse those, so the pages read them as text and turn ``""`` into "no filter" here, refusing
anything else that is not a valid value with the API's own 422.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import Annotated, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fastapi import Query, Request

from odock.errors import Forbidden, UnprocessableEntity
from odock.rbac.grant import Actor, Grant
from odock.rbac.permissions import Action, Resource
from odock.tenancy.queries import TenancyQueries
from odock.web.api.deps import Permit
from odock.web.api.fields import ID_PATTERN
from odock.web.api.paging import PageParams
from odock.web.api.routes.teams import list_teams
from odock.web.api.routes.users import UserFilters, list_users
from odock.web.console.pages import can

E = TypeVar("E", bound=Enum)
_ID = re.compile(ID_PATTERN)
OWNERS = PageParams(limit=200, order="asc")

FormText = Annotated[str, Query(max_length=200, pattern=r"^[^\x00]*$")]
"""A text field of a filter form (empty: no filter)."""


def choice(kind: type[E], value: str, name: str) -> E | None:
    """An enum filter value (``""``: no filter)."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        raise UnprocessableEntity(f"{name}: {value[:40]!r} is not valid", param=name) from None


def flag(value: str, name: str) -> bool | None:
    """A yes/no filter value (``""``: no filter)."""
    if not value:
        return None
    if value in ("true", "false"):
        return value == "true"
    raise UnprocessableEntity(f"{name} must be true or false", param=name)


def identifier(value: str, name: str) -> str | None:
    """An id filter value (``""``: no filter)."""
    if not value:
        return None
    if len(value) > 32 or not _ID.fullmatch(value):
        raise UnprocessableEntity(f"{name} is not a valid id", param=name)
    return value


def search(value: str) -> str | None:
    """A search text (``""``: none)."""
    value = value.strip()
    if "\x00" in value:
        raise UnprocessableEntity("q may not contain NUL characters", param="q")
    return value or None


def query_string(values: Mapping[str, str]) -> str:
    """The filters given, as a query string for the pager's links."""
    return urlencode({k: v for k, v in values.items() if v})


def paging_limit(page: PageParams) -> str:
    """The page size to keep in the pager's links ("" for the default)."""
    return "" if page.limit == PageParams().limit else str(page.limit)


def local_time(instant: datetime | None, zone: str) -> str | None:
    """``instant`` as wall-clock time in ``zone`` (None without an instant or a known zone)."""
    if instant is None:
        return None
    try:
        return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=1)
def timezones() -> list[str]:
    """Every IANA time zone this machine knows, UTC first."""
    return ["UTC", *sorted(z for z in available_timezones() if z != "UTC" and "/" in z)]


async def permitted(request: Request, actor: Actor, resource: Resource, action: Action) -> Grant | None:
    """The grant the API would give ``actor`` for ``(resource, action)`` here, or None when refused."""
    if not can(actor, resource, action):
        return None
    try:
        return await Permit(resource, action)(request, actor)
    except Forbidden:
        return None


async def owner_names(
    request: Request, actor: Actor, organisation_id: str, queries: TenancyQueries
) -> tuple[dict[str, str], dict[str, str]]:
    """Team names and user e-mails by id, as far as the actor may list them (the first 200 of each)."""
    teams: dict[str, str] = {}
    users: dict[str, str] = {}
    team_grant = await permitted(request, actor, Resource.TEAM, Action.READ)
    if team_grant is not None:
        listed = await list_teams(
            organisation_id, queries, team_grant, OWNERS, q=None, user_id=None, sort="name"
        )
        teams = {t.id: t.name for t in listed.items}
    user_grant = await permitted(request, actor, Resource.USER, Action.READ)
    if user_grant is not None:
        people = await list_users(queries, user_grant, OWNERS, UserFilters())
        users = {u.id: u.email for u in people.items}
    users.setdefault(actor.user_id, actor.email)
    return teams, users
