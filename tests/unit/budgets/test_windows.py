"""Period windows: anchoring, month-end clamping, DST gaps and overlaps, end_at, O(1) lookup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odock.budgets.windows import Period, Schedule, Window

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def start(schedule: Schedule, index: int) -> datetime:
    """The start of window ``index``, which must exist."""
    window = schedule.window(index)
    assert window is not None
    return window.start


def local_starts(schedule: Schedule, count: int, zone: ZoneInfo) -> list[datetime]:
    """The local wall-clock starts of the first ``count`` windows."""
    starts = []
    for index in range(count):
        window = schedule.window(index)
        assert window is not None
        starts.append(window.start.astimezone(zone).replace(tzinfo=None))
    return starts


# --- explicit cases ----------------------------------------------------------------------


def test_monthly_windows_clamp_to_month_end_but_keep_the_anchor_day() -> None:
    """A monthly schedule from Jan 31 starts on Feb 28, then Mar 31 and Apr 30, at 10:00 local."""
    schedule = Schedule(Period.MONTHLY, datetime(2026, 1, 31, 10, tzinfo=PARIS), "Europe/Paris")
    assert local_starts(schedule, 4, PARIS) == [
        datetime(2026, 1, 31, 10),
        datetime(2026, 2, 28, 10),
        datetime(2026, 3, 31, 10),
        datetime(2026, 4, 30, 10),
    ]
    assert schedule.window(1) == Window(utc(2026, 2, 28, 9), utc(2026, 3, 31, 8), 1)


def test_monthly_windows_land_on_february_29_in_leap_years() -> None:
    """A monthly schedule anchored on the 31st or 29th uses Feb 29 in leap years and Feb 28 otherwise."""
    from_31st = Schedule(Period.MONTHLY, utc(2024, 1, 31, 0))
    assert [start(from_31st, i) for i in (1, 13)] == [utc(2024, 2, 29), utc(2025, 2, 28)]
    from_29th = Schedule(Period.MONTHLY, utc(2024, 2, 29, 12))
    assert [start(from_29th, i) for i in (1, 12, 48)] == [
        utc(2024, 3, 29, 12),
        utc(2025, 2, 28, 12),
        utc(2028, 2, 29, 12),
    ]


def test_quarterly_windows_step_three_months_with_clamping() -> None:
    """A quarterly schedule from Nov 30 starts on Feb 29 (leap year), then May 30."""
    schedule = Schedule(Period.QUARTERLY, utc(2023, 11, 30, 6))
    assert [start(schedule, i) for i in range(3)] == [
        utc(2023, 11, 30, 6),
        utc(2024, 2, 29, 6),
        utc(2024, 5, 30, 6),
    ]


@pytest.mark.parametrize(
    ("zone_name", "first_day", "transition_day", "hours"),
    [
        ("Europe/Paris", datetime(2026, 3, 27, 10), datetime(2026, 3, 29, 10), 23),
        ("Europe/Paris", datetime(2026, 10, 23, 10), datetime(2026, 10, 25, 10), 25),
        ("America/New_York", datetime(2026, 3, 6, 10), datetime(2026, 3, 8, 10), 23),
        ("America/New_York", datetime(2026, 10, 30, 10), datetime(2026, 11, 1, 10), 25),
    ],
)
def test_daily_window_spanning_a_dst_change_keeps_local_start_time(
    zone_name: str, first_day: datetime, transition_day: datetime, hours: int
) -> None:
    """The daily window containing a DST change is 23 or 25 hours long and starts stay at 10:00 local."""
    zone = ZoneInfo(zone_name)
    schedule = Schedule(Period.DAILY, first_day.replace(tzinfo=zone), zone_name)
    noon_before = (transition_day - timedelta(hours=22)).replace(tzinfo=zone)
    window = schedule.window_at(noon_before)
    assert window is not None
    assert window.end - window.start == timedelta(hours=hours)
    assert window.start.astimezone(zone).hour == 10
    assert window.end.astimezone(zone).replace(tzinfo=None) == transition_day


def test_weekly_window_across_spring_forward_is_167_hours() -> None:
    """A weekly New York window containing the March change lasts 167 hours and both ends are 09:00."""
    schedule = Schedule(Period.WEEKLY, datetime(2026, 3, 2, 9, tzinfo=NEW_YORK), "America/New_York")
    window = schedule.window(0)
    assert window is not None
    assert window.end - window.start == timedelta(hours=167)
    assert window.end.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2026, 3, 9, 9)


@pytest.mark.parametrize(
    ("zone_name", "anchor", "gap_day", "expected_start"),
    [
        ("Europe/Paris", datetime(2026, 3, 27, 2, 30), 2, utc(2026, 3, 29, 1, 30)),
        ("America/New_York", datetime(2026, 3, 6, 2, 30), 2, utc(2026, 3, 8, 7, 30)),
    ],
)
def test_start_in_a_spring_forward_gap_moves_forward_by_the_gap(
    zone_name: str, anchor: datetime, gap_day: int, expected_start: datetime
) -> None:
    """A nonexistent 02:30 local start resolves to 03:30 daylight time (offset before the gap)."""
    zone = ZoneInfo(zone_name)
    schedule = Schedule(Period.DAILY, anchor.replace(tzinfo=zone), zone_name)
    window = schedule.window(gap_day)
    assert window is not None
    assert window.start == expected_start
    assert window.start.astimezone(zone).replace(tzinfo=None) == anchor + timedelta(days=gap_day, hours=1)
    assert window.end - window.start == timedelta(hours=23)


@pytest.mark.parametrize(
    ("zone_name", "anchor", "overlap_day", "expected_start"),
    [
        ("Europe/Paris", datetime(2026, 10, 23, 2, 30), 2, utc(2026, 10, 25, 0, 30)),
        ("America/New_York", datetime(2026, 10, 30, 1, 30), 2, utc(2026, 11, 1, 5, 30)),
    ],
)
def test_start_in_a_fall_back_overlap_uses_the_first_occurrence(
    zone_name: str, anchor: datetime, overlap_day: int, expected_start: datetime
) -> None:
    """An ambiguous local start resolves to its first (daylight time) occurrence."""
    zone = ZoneInfo(zone_name)
    schedule = Schedule(Period.DAILY, anchor.replace(tzinfo=zone), zone_name)
    window = schedule.window(overlap_day)
    assert window is not None
    assert window.start == expected_start
    assert window.end - window.start == timedelta(hours=25)


def test_window_zero_starts_at_start_at_even_on_the_second_occurrence() -> None:
    """When start_at is the second 02:30 of a fall-back night, window 0 still starts exactly there."""
    start_at = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS)
    schedule = Schedule(Period.DAILY, start_at, "Europe/Paris")
    assert schedule.window_at(utc(2026, 10, 25, 1, 30)) == Window(
        utc(2026, 10, 25, 1, 30), utc(2026, 10, 26, 1, 30), 0
    )
    assert schedule.window_at(utc(2026, 10, 25, 0, 45)) is None


def test_end_at_truncates_the_last_window_and_nothing_exists_outside() -> None:
    """Instants before start_at or at/after end_at have no window; the last window ends at end_at."""
    schedule = Schedule(Period.DAILY, utc(2026, 1, 1, 0), end_at=utc(2026, 1, 3, 12))
    assert schedule.window_at(utc(2025, 12, 31, 23, 59)) is None
    assert schedule.window_at(utc(2026, 1, 3, 12)) is None
    assert schedule.window_at(utc(2026, 1, 3, 11, 59)) == Window(utc(2026, 1, 3, 0), utc(2026, 1, 3, 12), 2)
    assert schedule.window(3) is None
    assert schedule.window(-1) is None


def test_a_skipped_local_day_gives_an_empty_window_that_is_never_returned() -> None:
    """Samoa skipped 2011-12-30: that daily window is empty and the lookup goes to the next one."""
    apia = ZoneInfo("Pacific/Apia")
    schedule = Schedule(Period.DAILY, datetime(2011, 12, 29, 10, tzinfo=apia), "Pacific/Apia")
    empty = schedule.window(1)
    assert empty is not None
    assert empty.start == empty.end
    found = schedule.window_at(empty.start)
    assert found is not None
    assert found.index == 2


def test_far_future_lookup_uses_arithmetic_not_iteration() -> None:
    """An instant 500 years after start_at maps to the right daily index (182,621 windows later)."""
    schedule = Schedule(Period.DAILY, utc(2026, 1, 1, 6))
    window = schedule.window_at(utc(2526, 1, 1, 5))
    assert window is not None
    assert window.index == (datetime(2526, 1, 1) - datetime(2026, 1, 1)).days - 1
    assert window.start == utc(2525, 12, 31, 6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start_at": datetime(2026, 1, 1)},
        {"start_at": utc(2026, 1, 1), "timezone": "Mars/Olympus_Mons"},
        {"start_at": utc(2026, 1, 1), "end_at": utc(2026, 1, 1)},
    ],
)
def test_invalid_schedules_are_rejected(kwargs: dict[str, object]) -> None:
    """A naive start, an unknown zone or an end not after the start raise ValueError."""
    with pytest.raises(ValueError, match=r"aware|zone|end_at"):
        Schedule(Period.DAILY, **kwargs)  # type: ignore[arg-type]


def test_naive_instant_is_rejected() -> None:
    """Looking up a naive datetime raises ValueError rather than guessing its zone."""
    with pytest.raises(ValueError, match="aware"):
        Schedule(Period.DAILY, utc(2026, 1, 1)).window_at(datetime(2026, 1, 2))


# --- properties --------------------------------------------------------------------------

ZONES = st.one_of(
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia"]),
    st.timezone_keys(),
)
INSTANTS = st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))


@st.composite
def schedules(draw: st.DrawFn, periods: list[Period] | None = None) -> Schedule:
    """A schedule with any period, zone and start, sometimes with an end."""
    period = draw(st.sampled_from(periods or list(Period)))
    start_at = draw(INSTANTS)
    end_at = None
    if draw(st.booleans()):
        end_at = start_at + draw(st.timedeltas(timedelta(seconds=1), timedelta(days=3650)))
    return Schedule(period, start_at, draw(ZONES), end_at)


OFFSETS = st.timedeltas(timedelta(0), timedelta(days=3650))


def _exists(local: datetime, zone: ZoneInfo) -> bool:
    """True when the naive local time occurs in the zone (is not in a gap)."""
    return local.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local


@settings(max_examples=300, deadline=None)
@given(schedules(), OFFSETS)
def test_every_instant_falls_in_exactly_one_window(schedule: Schedule, offset: timedelta) -> None:
    """The window found contains the instant; its predecessor ends by then and its successor starts later."""
    instant = schedule.start_at + offset
    window = schedule.window_at(instant)
    if schedule.end_at is not None and instant >= schedule.end_at:
        assert window is None
        return
    assert window is not None
    assert window.contains(instant)
    assert schedule.window(window.index) == window
    previous = schedule.window(window.index - 1)
    assert previous is None or previous.end <= instant
    following = schedule.window(window.index + 1)
    assert following is None or following.start > instant or following.start == following.end


@settings(max_examples=200, deadline=None)
@given(schedules(), OFFSETS)
def test_windows_are_contiguous_and_non_overlapping(schedule: Schedule, offset: timedelta) -> None:
    """Each window starts exactly where the previous one ended, and starts never go backwards."""
    window = schedule.window_at(schedule.start_at + offset) or schedule.window(0)
    assert window is not None
    for _ in range(6):
        following = schedule.window(window.index + 1)
        if following is None:
            assert window.end == schedule.end_at
            return
        assert following.start == window.end
        assert following.start <= following.end
        window = following


@settings(max_examples=200, deadline=None)
@given(schedules([Period.DAILY, Period.WEEKLY]), OFFSETS, st.integers(0, 8))
def test_daily_and_weekly_starts_keep_the_local_time_of_day(
    schedule: Schedule, offset: timedelta, extra: int
) -> None:
    """Every later window starts at start_at's local wall time, unless that time falls in a gap."""
    zone = ZoneInfo(schedule.timezone)
    first = schedule.window_at(schedule.start_at + offset)
    index = (first.index if first else 0) + extra
    window = schedule.window(index)
    if window is None or index == 0:
        return
    anchor = schedule.start_at.astimezone(zone).replace(tzinfo=None)
    expected = anchor + timedelta(days=index * (1 if schedule.period is Period.DAILY else 7))
    if _exists(expected, zone):
        first_occurrence = expected.replace(tzinfo=zone, fold=0).astimezone(UTC)
        assert window.start == first_occurrence
        assert window.start.astimezone(zone).replace(tzinfo=None) == expected
    else:
        assert window.start.astimezone(zone).replace(tzinfo=None) > expected


@settings(max_examples=200, deadline=None)
@given(schedules([Period.MONTHLY, Period.QUARTERLY]), st.integers(1, 1200))
def test_monthly_starts_use_the_anchor_day_clamped_to_month_end(schedule: Schedule, index: int) -> None:
    """Window k starts k months (or quarters) on, on the anchor day or the month's last day."""
    zone = ZoneInfo(schedule.timezone)
    window = schedule.window(index)
    if window is None:
        return
    anchor = schedule.start_at.astimezone(zone).replace(tzinfo=None)
    months = anchor.month - 1 + index * (1 if schedule.period is Period.MONTHLY else 3)
    year, month = anchor.year + months // 12, months % 12 + 1
    day = anchor.day
    while True:
        try:
            expected = anchor.replace(year=year, month=month, day=day)
            break
        except ValueError:
            day -= 1
    assert window.start == expected.replace(tzinfo=zone, fold=0).astimezone(UTC)
