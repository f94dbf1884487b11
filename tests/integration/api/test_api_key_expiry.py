"""An expiry given without a UTC offset is read in the key's time zone (spec §3.3; issue #17 defect 9)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.integration.api.test_api_keys import catalogue, create_key
from tests.support.api import ControlPlaneUnderTest

PARIS_NEW_YEAR = "2030-01-01T00:00:00"  # midnight in Paris is 23:00 UTC the day before
PARIS_NEW_YEAR_UTC = datetime(2029, 12, 31, 23, 0, tzinfo=UTC)


def instant(text: str) -> datetime:
    """An ISO instant from the API."""
    return datetime.fromisoformat(text).astimezone(UTC)


def test_create_reads_a_naive_expiry_in_the_given_zone(control_plane: ControlPlaneUnderTest) -> None:
    """Creating a key with a naive expiry and a zone stores the zone's instant; without a zone, UTC's."""
    cat = catalogue(control_plane)
    paris = create_key(control_plane.admin, cat, expires_at=PARIS_NEW_YEAR, timezone="Europe/Paris")
    assert instant(paris["expires_at"]) == PARIS_NEW_YEAR_UTC
    plain = create_key(control_plane.admin, cat, expires_at=PARIS_NEW_YEAR)
    assert instant(plain["expires_at"]) == datetime(2030, 1, 1, tzinfo=UTC)


def test_update_and_rotate_read_a_naive_expiry_in_the_keys_zone(control_plane: ControlPlaneUnderTest) -> None:
    """A naive expiry in a change or rotation is read in the key's zone (or the zone changed with it)."""
    cat = catalogue(control_plane)
    admin = control_plane.admin
    key = create_key(admin, cat, timezone="Europe/Paris")
    path = f"{cat.keys_path}/{key['id']}"
    updated = admin.patch(path, json={"expires_at": PARIS_NEW_YEAR})
    assert updated.status_code == 200, updated.text
    assert instant(updated.json()["expires_at"]) == PARIS_NEW_YEAR_UTC
    rotated = admin.post(path + "/rotate", json={"expires_at": "2031-07-01T12:00:00"})
    assert rotated.status_code == 200, rotated.text
    assert instant(rotated.json()["expires_at"]) == datetime(2031, 7, 1, 10, 0, tzinfo=UTC)
    moved = admin.patch(path, json={"expires_at": PARIS_NEW_YEAR, "timezone": "Asia/Tokyo"})
    assert moved.status_code == 200, moved.text
    assert instant(moved.json()["expires_at"]) == datetime(2029, 12, 31, 15, 0, tzinfo=UTC)


def test_a_naive_expiry_in_the_past_or_a_skipped_hour_is_refused(
    control_plane: ControlPlaneUnderTest,
) -> None:
    """A naive expiry is still refused when it is past in the key's zone, or never happens there."""
    cat = catalogue(control_plane)
    for body in ({"expires_at": "2001-01-01T00:00:00"}, {"expires_at": "2030-03-31T02:30:00"}):
        response = control_plane.admin.post(
            cat.keys_path, json={"name": "k", "timezone": "Europe/Paris", **body}
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["param"] == "expires_at"
