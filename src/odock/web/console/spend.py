"""What the spend pages draw, computed from the API's answers (no query, no rule of its own).

The pages call the REST API's route functions; this module turns their answers into chart data,
date ranges and the query strings the pages link with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.datastructures import QueryParams

from odock.budgets.control import WindowUsage
from odock.usage.analytics import BreakdownEntry, Granularity, Metric, SeriesBucket, StatusClassCount
from odock.web.console.charts import Datum, bar_chart, donut_chart, line_chart
from odock.web.console.pages import number, usd

DEFAULT_ALERT_PERCENT = 80  # a budget without thresholds is "near" from this share of its limit


@dataclass(frozen=True)
class Range:
    """A named span ending now (a dashboard tab or an analytics range)."""

    name: str
    label: str
    span: timedelta
    granularity: Granularity

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """``[now - span, now)``."""
        return now - self.span, now


DASHBOARD_RANGES = {
    r.name: r
    for r in (
        Range("24h", "Last 24 hours", timedelta(hours=24), Granularity.HOUR),
        Range("7d", "Last 7 days", timedelta(days=7), Granularity.DAY),
        Range("30d", "Last 30 days", timedelta(days=30), Granularity.DAY),
    )
}
ANALYTICS_RANGES = {
    r.name: r
    for r in (
        Range("7d", "Last 7 days", timedelta(days=7), Granularity.DAY),
        Range("30d", "Last 30 days", timedelta(days=30), Granularity.DAY),
        Range("90d", "Last 90 days", timedelta(days=90), Granularity.DAY),
    )
}


def shown(metric: Metric, value: int) -> str:
    """A metric's value as a person reads it (money as USD)."""
    return usd(value) if metric is Metric.COST else number(value)


def metric_value(entry: BreakdownEntry | SeriesBucket, metric: Metric) -> int:
    """The value of ``metric`` in a bucket or a breakdown entry."""
    return int(getattr(entry, "cost_nanos_usd" if metric is Metric.COST else metric.value))


def series_chart(
    series: Sequence[SeriesBucket], metric: Metric, granularity: Granularity, title: str
) -> Markup:
    """A line of ``metric`` per bucket."""
    fmt = "%H:%M" if granularity is Granularity.HOUR else "%d %b"
    points = [
        Datum(b.start.strftime(fmt), metric_value(b, metric), shown(metric, metric_value(b, metric)))
        for b in series
    ]
    return line_chart(points, title=title)


def breakdown_chart(entries: Iterable[BreakdownEntry], metric: Metric, title: str) -> Markup:
    """Bars of ``metric`` per breakdown entry."""
    bars = [
        Datum(e.label or e.key or "(none)", metric_value(e, metric), shown(metric, metric_value(e, metric)))
        for e in entries
    ]
    return bar_chart(bars, title=title)


def status_chart(classes: Sequence[StatusClassCount], title: str) -> Markup:
    """A donut of requests per HTTP status class."""
    return donut_chart([Datum(c.status_class, c.requests, number(c.requests)) for c in classes], title=title)


@dataclass(frozen=True)
class NearBudget:
    """A budget whose current window has reached its first alert threshold."""

    id: str
    name: str
    window: WindowUsage
    threshold: int

    @property
    def percent(self) -> int:
        """Used and reserved, as a share of the limit (in percent, rounded down)."""
        return (
            (self.window.used + self.window.reserved) * 100 // self.window.limit if self.window.limit else 100
        )

    @property
    def meter(self) -> int:
        """The share for a meter bar (at most 100)."""
        return min(self.percent, 100)


def near_threshold(
    budgets: Iterable[tuple[str, str, Sequence[int]]], windows: dict[str, WindowUsage | None], top: int = 5
) -> list[NearBudget]:
    """The budgets (id, name, thresholds) whose window reached their lowest threshold, fullest first."""
    near = []
    for budget_id, name, thresholds in budgets:
        window = windows.get(budget_id)
        if window is None:
            continue
        threshold = min(thresholds, default=DEFAULT_ALERT_PERCENT)
        candidate = NearBudget(budget_id, name, window, threshold)
        if candidate.percent >= threshold:
            near.append(candidate)
    near.sort(key=lambda b: (-b.percent, b.name))
    return near[:top]


def query_without(params: QueryParams, *names: str) -> str:
    """The page's query string without ``names``, the cursor and empty values (for links)."""
    kept = [(k, v) for k, v in params.multi_items() if v and k not in names and k != "cursor"]
    return urlencode(kept)
