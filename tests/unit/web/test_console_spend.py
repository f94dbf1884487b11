"""The spend pages' own logic: budgets near their threshold and the invoice period presets."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from odock.budgets.control import WindowUsage
from odock.errors import UnprocessableEntity
from odock.web.console.routes.invoices import period_of
from odock.web.console.spend import near_threshold

START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


def window(used: int, limit: int = 100, reserved: int = 0) -> WindowUsage:
    """A current window with ``used`` (and ``reserved``) of ``limit``."""
    return WindowUsage(START, END, used=used, limit=limit, reserved=reserved)


def test_a_budget_is_near_from_its_lowest_threshold_counting_what_is_reserved() -> None:
    """The lowest threshold counts (80% without any), reserved money counts; fullest first."""
    budgets = [("a", "a", [90, 50]), ("b", "b", []), ("c", "c", [50]), ("d", "d", [10]), ("e", "e", [10])]
    windows = {"a": window(50), "b": window(79), "c": window(30, reserved=25), "d": window(100), "e": None}
    near = near_threshold(budgets, windows)
    assert [(b.id, b.percent, b.threshold) for b in near] == [("d", 100, 10), ("c", 55, 50), ("a", 50, 50)]
    assert near_threshold([("x", "x", [])], {"x": window(80)})[0].threshold == 80
    assert near_threshold([("z", "z", [1])], {"z": window(5, limit=0)})[0].percent == 100


def test_only_the_fullest_few_are_listed() -> None:
    """``top`` caps the list."""
    budgets = [(str(i), str(i), [1]) for i in range(9)]
    assert len(near_threshold(budgets, {str(i): window(50 + i) for i in range(9)}, top=5)) == 5


TODAY = date(2026, 3, 15)


@pytest.mark.parametrize(
    ("preset", "start", "end"),
    [
        ("this_month", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        ("last_month", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
        ("last_30_days", datetime(2026, 2, 14, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC)),
    ],
)
def test_presets_name_whole_utc_days(preset: str, start: datetime, end: datetime) -> None:
    """Each preset is a range of whole UTC days, end exclusive (last 30 days includes today)."""
    period = period_of(preset, None, None, TODAY)  # type: ignore[arg-type]
    assert (period.start, period.end) == (start, end)


def test_last_month_in_january_is_december() -> None:
    """The previous month crosses the year."""
    period = period_of("last_month", None, None, date(2026, 1, 5))
    assert (period.first_day, period.last_day) == ("2025-12-01", "2025-12-31")


def test_a_custom_period_includes_both_days_and_is_checked_per_field() -> None:
    """From and to are inclusive days; a missing or reversed day is a 422 naming its field."""
    period = period_of("custom", "2026-01-01", "2026-01-31", TODAY)
    assert (period.start, period.end) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    with pytest.raises(UnprocessableEntity) as missing:
        period_of("custom", "2026-01-01", "", TODAY)
    assert missing.value.param == "to"
    with pytest.raises(UnprocessableEntity) as reversed_:
        period_of("custom", "2026-02-01", "2026-01-01", TODAY)
    assert reversed_.value.param == "from"
