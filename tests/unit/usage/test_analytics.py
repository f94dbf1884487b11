"""Percentile interpolation and time buckets of the usage analytics."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from odock.errors import UnprocessableEntity
from odock.usage.analytics import Granularity, bucket_starts, interpolate, next_bucket, ranks_for, truncate


@pytest.mark.parametrize("count", [1, 2, 3, 10, 101, 997])
def test_interpolation_matches_the_inclusive_method(count: int) -> None:
    """Percentiles read at the chosen ranks equal Python's inclusive quantiles (percentile_cont)."""
    values = sorted(random.Random(count).uniform(0, 1000) for _ in range(count))
    fractions = (0.5, 0.95, 0.99)
    ranks = ranks_for(count, fractions)
    assert len(ranks) <= 2 * len(fractions)
    at_ranks = {rank: values[rank] for rank in ranks}
    if count == 1:
        assert [interpolate(at_ranks, count, f) for f in fractions] == [values[0]] * 3
        return
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    expected = (cuts[49], cuts[94], cuts[98])
    assert tuple(interpolate(at_ranks, count, f) for f in fractions) == pytest.approx(expected)


def test_no_values_have_no_percentile() -> None:
    """An empty set has no ranks to read and no percentile."""
    assert ranks_for(0, (0.5,)) == set()
    assert interpolate({}, 0, 0.5) is None


def test_truncate_and_step_through_calendar_units() -> None:
    """Buckets start on the hour, day or first of the month, and months roll over the year."""
    moment = datetime(2026, 12, 31, 17, 45, 12, 5)
    assert truncate(moment, Granularity.HOUR) == datetime(2026, 12, 31, 17)
    assert truncate(moment, Granularity.DAY) == datetime(2026, 12, 31)
    assert truncate(moment, Granularity.MONTH) == datetime(2026, 12, 1)
    assert next_bucket(datetime(2026, 12, 1), Granularity.MONTH) == datetime(2027, 1, 1)
    assert next_bucket(datetime(2026, 1, 31), Granularity.DAY) == datetime(2026, 2, 1)


def test_buckets_cover_the_range_in_the_zone() -> None:
    """Day buckets of a UTC range start at local midnights, the first one before the range starts."""
    start = datetime(2026, 3, 28, 12, tzinfo=UTC)
    end = datetime(2026, 3, 31, tzinfo=UTC)
    starts = bucket_starts(start, end, Granularity.DAY, ZoneInfo("Europe/Paris"))
    assert starts == [datetime(2026, 3, d) for d in (28, 29, 30, 31)]  # 31 March 00:00 UTC is 02:00 Paris
    utc = bucket_starts(start, end, Granularity.DAY, ZoneInfo("UTC"))
    assert utc == [datetime(2026, 3, d) for d in (28, 29, 30)]


def test_too_many_buckets_is_refused() -> None:
    """A range with more buckets than the cap is a 422 on the granularity."""
    with pytest.raises(UnprocessableEntity) as caught:
        bucket_starts(
            datetime(2000, 1, 1, tzinfo=UTC),
            datetime(2100, 1, 1, tzinfo=UTC),
            Granularity.HOUR,
            ZoneInfo("UTC"),
        )
    assert caught.value.param == "granularity"
