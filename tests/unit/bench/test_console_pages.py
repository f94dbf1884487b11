"""The console page bench, on tiny data: it seeds, signs in, times the pages that exist, names the rest."""

from __future__ import annotations

import re

from bench import console_pages


def test_the_bench_times_the_pages_that_answer_and_reports_the_missing() -> None:
    """Each workspace page gets one row: timed (p50/p95/max and a verdict) or reported missing."""
    report = console_pages.main(["--keys", "30", "--records", "200", "--renders", "2"])
    rows = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(console_pages.PAGES) + len(console_pages.USER_PAGES)
    timed = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2].startswith("missing (") or re.fullmatch(r"\d+\.\d", cells[2]), row
        if not cells[2].startswith("missing"):
            timed[cells[0]] = cells
    assert {"Dashboard", "Playground", "Playground (USER)"} <= set(timed)
    assert all(cells[5] in ("ok", "SLOW") for cells in timed.values())
    assert "30 API keys and 200 usage records" in report
