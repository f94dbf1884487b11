"""Period windows of a budget or quota schedule.

A schedule yields consecutive windows ``[start, end)`` numbered from 0. Window 0 starts at
``start_at`` itself; window ``k`` starts at the *local wall-clock* time of ``start_at`` in the
schedule's IANA time zone, ``k`` periods later:

- DAILY / WEEKLY: the same local time, 1 / 7 calendar days later per window. Across a daylight
  saving change the local time stays put, so that window lasts 23 or 25 hours.
- MONTHLY / QUARTERLY: the same local time and day of month, 1 / 3 months later per window; the
  day is clamped to the month's last day, but the anchor day is kept for later months
  (Jan 31 → Feb 28 → Mar 31 → Apr 30).

A local start time that does not exist or exists twice is resolved as RFC 5545 (iCalendar) and
java.time do, with the UTC offset in force *before* the transition:

- in a spring-forward gap the time moves forward by the gap's length (02:30 in Paris on the
  night clocks jump 02:00 → 03:00 becomes 03:30 CEST);
- in a fall-back overlap the first occurrence wins (02:30 in Paris on the night clocks go back
  03:00 → 02:00 is 02:30 CEST, not CET).

Python's ``fold=0`` implements exactly this rule. A zone that skipped a whole local day (Samoa on
2011-12-30) yields an empty window for it, which :meth:`Schedule.window_at` never returns.
``end_at`` truncates the last window; instants before ``start_at`` or at/after ``end_at`` belong to
no window.

All computation is arithmetic on the window index (calendar days or months), corrected by at
most a step or two around offset changes, so finding the window for any instant is O(1).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Period(StrEnum):
    """How long one window of a budget or quota lasts (``BudgetPeriod`` in the spec)."""

    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"


_DAYS_PER_STEP = {Period.DAILY: 1, Period.WEEKLY: 7}
_MONTHS_PER_STEP = {Period.MONTHLY: 1, Period.QUARTERLY: 3}


@dataclass(frozen=True)
class Window:
    """One window ``[start, end)`` of a schedule, in UTC, with its sequence number."""

    start: datetime
    end: datetime
    index: int

    def contains(self, instant: datetime) -> bool:
        """True when ``instant`` lies in ``[start, end)``."""
        return self.start <= instant < self.end


@dataclass(frozen=True)
class Schedule:
    """A budget's or quota's schedule: period, anchor instant, time zone and optional end."""

    period: Period
    start_at: datetime
    timezone: str = "UTC"
    end_at: datetime | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _anchor: datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_aware(self.start_at, "start_at")
        if self.end_at is not None:
            _require_aware(self.end_at, "end_at")
            if self.end_at <= self.start_at:
                raise ValueError("end_at must be after start_at")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        # Normalise to UTC: aware datetimes sharing one tzinfo compare by wall clock, ignoring
        # fold, which would misorder the two occurrences of an ambiguous local time.
        object.__setattr__(self, "start_at", self.start_at.astimezone(UTC))
        if self.end_at is not None:
            object.__setattr__(self, "end_at", self.end_at.astimezone(UTC))
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_anchor", self.start_at.astimezone(zone).replace(tzinfo=None))

    def window_at(self, instant: datetime) -> Window | None:
        """The window containing ``instant``, or None before ``start_at`` or at/after ``end_at``."""
        _require_aware(instant, "instant")
        instant = instant.astimezone(UTC)
        if instant < self.start_at or (self.end_at is not None and instant >= self.end_at):
            return None
        index = max(0, self._estimate_index(instant))
        # The wall-clock estimate is off by at most one step next to an offset change; a
        # skipped local day gives an empty window that the second loop steps over.
        while index > 0 and self._start(index) > instant:
            index -= 1
        while self._start(index + 1) <= instant:
            index += 1
        return self._window(index)

    def window(self, index: int) -> Window | None:
        """The window numbered ``index``, or None when it would start at/after ``end_at``."""
        if index < 0:
            return None
        start = self._start(index)
        if self.end_at is not None and start >= self.end_at:
            return None
        return self._window(index)

    def _window(self, index: int) -> Window:
        end = self._start(index + 1)
        if self.end_at is not None:
            end = min(end, self.end_at)
        return Window(start=self._start(index), end=end, index=index)

    def _start(self, index: int) -> datetime:
        if index == 0:
            return self.start_at
        local = self._local_start(index)
        return local.replace(tzinfo=self._zone, fold=0).astimezone(UTC)

    def _local_start(self, index: int) -> datetime:
        """The naive local wall-clock start of window ``index`` (may not exist in the zone)."""
        anchor = self._anchor
        days = _DAYS_PER_STEP.get(self.period)
        if days is not None:
            return anchor + timedelta(days=days * index)
        months = anchor.month - 1 + _MONTHS_PER_STEP[self.period] * index
        year, month = anchor.year + months // 12, months % 12 + 1
        day = min(anchor.day, calendar.monthrange(year, month)[1])
        return anchor.replace(year=year, month=month, day=day)

    def _estimate_index(self, instant: datetime) -> int:
        local = instant.astimezone(self._zone).replace(tzinfo=None)
        days = _DAYS_PER_STEP.get(self.period)
        if days is not None:
            return (local - self._anchor) // timedelta(days=days)
        months = (local.year - self._anchor.year) * 12 + local.month - self._anchor.month
        return months // _MONTHS_PER_STEP[self.period]


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
