"""The MCP gateway bench, on tiny counts: every series is timed and the STDIO burst succeeds."""

from __future__ import annotations

import re

from bench import mcp_gateway


def test_the_bench_reports_every_series_and_the_pool() -> None:
    report = mcp_gateway.main(["--calls", "3", "--sessions", "4", "--per-session", "2"])
    rows = [
        line
        for line in report.splitlines()
        if line.startswith("| ") and "---" not in line and "series" not in line
    ]
    assert len(rows) == 5  # direct, three through Odock, the STDIO burst
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(re.fullmatch(r"\d+\.\d\d", cell) for cell in cells[2:]), row
    assert "STDIO, 4 sessions at once | 8 |" in report
    assert "0 sessions failed" in report
    assert re.search(r"Added by the gateway \(Streamable HTTP, same run\): p50 [+-]\d", report)
