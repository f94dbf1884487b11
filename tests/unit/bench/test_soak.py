"""The soak's usage-backlog report: served versus stored over time."""

from __future__ import annotations

from bench.report import _soak_lines
from bench.soak import BacklogSample, SoakResult


def test_the_soak_report_shows_served_stored_and_backlog_per_sample() -> None:
    """Each backlog sample becomes a row: served, stored, and their difference (never negative)."""
    soak = SoakResult(60.0, 130.0, 140.0, 5.0, chat_concurrency=64)
    soak.backlog = [BacklogSample(0, 0, 0), BacklogSample(10, 1774, 855), BacklogSample(62, 7283, 7597)]
    lines = _soak_lines(soak)
    assert "(chat x64, " in lines[1]
    table = lines[lines.index("| t s | served | stored | backlog |") + 2 :]
    assert table == ["| 0 | 0 | 0 | 0 |", "| 10 | 1,774 | 855 | 919 |", "| 62 | 7,283 | 7,597 | 0 |"]
