"""An API key's expiry: an instant as given, or wall-clock time read in the key's zone (spec §3.3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from odock.errors import UnprocessableEntity
from odock.keys.expiry import expiry_instant


def test_no_expiry_stays_none() -> None:
    """A key without an expiry keeps none."""
    assert expiry_instant(None, "Europe/Paris") is None


def test_an_instant_with_an_offset_is_kept_whatever_the_zone() -> None:
    """An expiry with a UTC offset is already an instant: the zone does not move it."""
    given = datetime(2026, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=5)))
    assert expiry_instant(given, "America/New_York") == datetime(2026, 12, 31, 18, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("local", "zone", "utc"),
    [
        (datetime(2026, 12, 31, 23, 59, 59), "Europe/Paris", datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC)),
        (datetime(2026, 7, 1, 12, 0), "Europe/Paris", datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),
        (datetime(2026, 7, 1, 12, 0), "America/New_York", datetime(2026, 7, 1, 16, 0, tzinfo=UTC)),
        (datetime(2026, 7, 1, 12, 0), "UTC", datetime(2026, 7, 1, 12, 0, tzinfo=UTC)),
    ],
)
def test_a_time_without_an_offset_is_read_in_the_keys_zone(local: datetime, zone: str, utc: datetime) -> None:
    """A naive expiry is wall-clock time in the key's zone, with that zone's offset on that date."""
    instant = expiry_instant(local, zone)
    assert instant == utc
    assert instant is not None
    assert instant.tzinfo == UTC


def test_a_repeated_hour_means_its_first_occurrence() -> None:
    """02:30 on the night Paris leaves summer time happens twice; the first (still +02:00) is meant."""
    assert expiry_instant(datetime(2026, 10, 25, 2, 30), "Europe/Paris") == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )


def test_a_skipped_hour_is_refused() -> None:
    """02:30 on the night Paris enters summer time never happens: a 422 naming expires_at."""
    with pytest.raises(UnprocessableEntity) as caught:
        expiry_instant(datetime(2026, 3, 29, 2, 30), "Europe/Paris")
    assert caught.value.param == "expires_at"


def test_an_unknown_zone_is_refused() -> None:
    """A naive expiry in an unknown zone is a 422 naming the timezone."""
    with pytest.raises(UnprocessableEntity) as caught:
        expiry_instant(datetime(2026, 7, 1, 12, 0), "Mars/Olympus")
    assert caught.value.param == "timezone"
