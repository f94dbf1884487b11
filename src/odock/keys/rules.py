"""Rules of API keys: who may own which type of key (spec §3.3), pinned secrets and expiries."""

from __future__ import annotations

from datetime import UTC, datetime

from odock.errors import UnprocessableEntity
from odock.keys.tables import ApiKeyType

MIN_PINNED_SECRET_LENGTH = 32


def check_ownership(type: ApiKeyType, team_id: str | None, user_id: str | None) -> None:
    """Spec §3.3: ORGANISATION keys have no owner; TEAM keys a team only; USER keys a user only."""
    if type == ApiKeyType.ORGANISATION and (team_id or user_id):
        raise UnprocessableEntity("an ORGANISATION key has no team or user")
    if type == ApiKeyType.TEAM and (not team_id or user_id):
        raise UnprocessableEntity("a TEAM key needs a team and no user")
    if type == ApiKeyType.USER and (not user_id or team_id):
        raise UnprocessableEntity("a USER key needs a user and no team")


def pinned_secret(secret: str) -> str:
    """A caller-chosen API key secret, if it is long enough to be unguessable."""
    # A pinned secret is as strong as the operator makes it: refuse the obviously guessable.
    if len(secret) < MIN_PINNED_SECRET_LENGTH or any(c.isspace() for c in secret):
        raise UnprocessableEntity(
            f"a pinned API key secret needs at least {MIN_PINNED_SECRET_LENGTH} characters and no whitespace",
            param="secret",
        )
    return secret


def check_future(expires_at: datetime | None, now: datetime | None = None) -> None:
    """Refuse an expiry that is not in the future (a key that is born expired is a mistake)."""
    if expires_at is not None and expires_at <= (now or datetime.now(UTC)):
        raise UnprocessableEntity("expires_at must be in the future", param="expires_at")
