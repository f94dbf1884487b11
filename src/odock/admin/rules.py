"""Validation rules of configuration, shared by the control plane and declarative parsing.

Ownership of API keys (spec §3.3), the stored pricing shape (spec §3.7), names, expiries with
offsets, IANA timezones and pinned secrets. Each rule raises :class:`UnprocessableEntity`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from odock.errors import UnprocessableEntity
from odock.keys.tables import ApiKeyType
from odock.usage.billing import Pricing

MIN_PINNED_SECRET_LENGTH = 32


def validate_pricing(pricing: dict[str, Any] | None) -> dict[str, Any]:
    """Check pricing against the stored shape; return it normalised (empty = no pricing)."""
    if not pricing:
        return {}
    try:
        return Pricing.model_validate(pricing).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UnprocessableEntity(f"invalid pricing at '{where}': {first['msg']}", param="pricing") from exc


def check_ownership(type: ApiKeyType, team_id: str | None, user_id: str | None) -> None:
    """Spec §3.3: ORGANISATION keys have no owner; TEAM keys a team only; USER keys a user only."""
    if type == ApiKeyType.ORGANISATION and (team_id or user_id):
        raise UnprocessableEntity("an ORGANISATION key has no team or user")
    if type == ApiKeyType.TEAM and (not team_id or user_id):
        raise UnprocessableEntity("a TEAM key needs a team and no user")
    if type == ApiKeyType.USER and (not user_id or team_id):
        raise UnprocessableEntity("a USER key needs a user and no team")


def only_fields(changes: dict[str, Any], allowed: set[str], what: str) -> None:
    """Refuse changes to fields outside ``allowed``."""
    unknown = set(changes) - allowed
    if unknown:
        raise UnprocessableEntity(f"unknown {what} fields: {', '.join(sorted(unknown))}")


def pinned_secret(secret: str) -> str:
    """A caller-chosen API key secret, if it is long enough to be unguessable."""
    # A pinned secret is as strong as the operator makes it: refuse the obviously guessable.
    if len(secret) < MIN_PINNED_SECRET_LENGTH or any(c.isspace() for c in secret):
        raise UnprocessableEntity(
            f"a pinned API key secret needs at least {MIN_PINNED_SECRET_LENGTH} characters and no whitespace",
            param="secret",
        )
    return secret


def check_timezone(name: str) -> None:
    """Refuse an unknown IANA timezone."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnprocessableEntity(f"unknown timezone '{name}'", param="timezone") from exc


def aware(value: datetime | None) -> datetime | None:
    """Refuse an expiry without a UTC offset (its instant would be ambiguous)."""
    if value is not None and value.tzinfo is None:
        raise UnprocessableEntity("expiry must carry a timezone offset", param="expires_at")
    return value


def same_org(actual: str | None, expected: str, what: str) -> None:
    """Refuse a reference to another organisation's row."""
    if actual != expected:
        raise UnprocessableEntity(f"the {what} belongs to another organisation")


def valid_name(value: str) -> str:
    """A stripped name of 1-200 characters."""
    name = value.strip()
    if not name or len(name) > 200:
        raise UnprocessableEntity("names must be 1-200 characters", param="name")
    return name
