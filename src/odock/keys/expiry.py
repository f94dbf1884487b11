"""An API key's expiry as given by an operator: an instant, or a wall-clock time in the key's zone.

Spec §3.3: a key's ``timezone`` interprets its expiry. An expiry with a UTC offset is already an
instant; one without is read as local time in the key's zone (``2026-12-31T23:59:59`` in
``Europe/Paris`` ends the key at 22:59:59 UTC). A local time that occurs twice (the hour a DST
change repeats) means its first occurrence; one that never occurs (the hour skipped) is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from odock.errors import UnprocessableEntity


def expiry_instant(value: datetime | None, zone: str) -> datetime | None:
    """The expiry ``value`` as an aware UTC instant, reading a naive value as wall-clock time in ``zone``."""
    if value is None:
        return None
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnprocessableEntity(f"unknown timezone '{zone}'", param="timezone") from exc
    local = value.replace(tzinfo=tz, fold=0)
    instant = local.astimezone(UTC)
    # A skipped wall-clock time does not survive the round trip back to the zone.
    if instant.astimezone(tz).replace(tzinfo=None) != value.replace(fold=0):
        raise UnprocessableEntity(
            f"expires_at {value.isoformat()} does not exist in {zone} (a daylight-saving gap)",
            param="expires_at",
        )
    return instant
