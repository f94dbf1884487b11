"""The pure parts of the key and budget pages: the window projection and the lenient filter parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from odock.budgets.tables import OwnerType
from odock.errors import UnprocessableEntity
from odock.web.api.routes.budget_shapes import WindowView
from odock.web.console.routes.budgets import projection
from odock.web.console.routes.lookups import choice, flag, identifier, query_string, search, timezones

START = datetime(2026, 3, 1, tzinfo=UTC)


def window(used: int, reserved: int = 0, limit: int = 1000) -> WindowView:
    """A one-day window starting at START."""
    return WindowView(
        index=3, start=START, end=START + timedelta(days=1), limit=limit, used=used, reserved=reserved,
        remaining=max(0, limit - used - reserved),
    )  # fmt: skip


def test_the_projection_extends_the_pace_so_far_to_the_window_end() -> None:
    """A quarter of the way through with 200 used (and 50 held) heads for 1,000: exactly the limit."""
    ahead = projection(window(200, 50), START + timedelta(hours=6))
    assert ahead is not None
    assert (ahead.used, ahead.projected, ahead.elapsed_share, ahead.over) == (250, 1000, 0.25, False)
    over = projection(window(300), START + timedelta(hours=6))
    assert over is not None
    assert (over.projected, over.over) == (1200, True)


def test_no_projection_outside_the_window_or_at_its_first_instant() -> None:
    """A past window, a future one, and the first 5% of one have no projection."""
    assert projection(window(10), START) is None
    assert projection(window(10), START + timedelta(hours=1)) is None
    assert projection(window(10), START - timedelta(hours=1)) is None
    assert projection(window(10), START + timedelta(days=2)) is None


def test_empty_filters_mean_no_filter_and_bad_ones_are_the_apis_422() -> None:
    """A filter form's empty fields filter nothing; a value that is not one is refused, naming it."""
    assert choice(OwnerType, "", "owner_type") is None
    assert choice(OwnerType, "TEAM", "owner_type") is OwnerType.TEAM
    assert (flag("", "active"), flag("true", "active"), flag("false", "active")) == (None, True, False)
    assert identifier("", "team_id") is None
    assert search("  ") is None
    for bad in (
        lambda: choice(OwnerType, "BOSS", "owner_type"),
        lambda: flag("yes", "active"),
        lambda: identifier("a b", "team_id"),
        lambda: search("a\x00b"),
    ):
        with pytest.raises(UnprocessableEntity):
            bad()


def test_the_pager_keeps_the_filters_given_and_time_zones_start_with_utc() -> None:
    """Empty filters are left out of the pager's links; the zone list is UTC then IANA names."""
    assert query_string({"type": "TEAM", "q": "", "revoked": "false"}) == "type=TEAM&revoked=false"
    zones = timezones()
    assert zones[0] == "UTC"
    assert "Asia/Tokyo" in zones
    assert "Europe/Paris" in zones
