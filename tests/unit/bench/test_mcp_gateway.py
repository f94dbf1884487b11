"""The MCP gateway bench, on tiny counts: every series is timed, the gateway's own figures are
read back from its usage records, and the STDIO burst succeeds."""

from __future__ import annotations

import re

from bench import mcp_gateway


def test_the_bench_reports_every_series_and_the_pool() -> None:
    report = mcp_gateway.main(["--calls", "3", "--sessions", "4", "--per-session", "2"])
    lines = report.splitlines()
    timed = [line for line in lines if re.match(r"\| (Streamable|legacy|STDIO)", line)]
    assert len(timed) == 5  # direct, three through Odock, the STDIO burst
    for row in timed:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(re.fullmatch(r"\d+\.\d\d", cell) for cell in cells[2:]), row
    inside = {line.split("|")[1].strip() for line in lines if re.match(r"\| (http|sse|time) \|", line)}
    assert inside == {"http", "sse", "time"}  # the gateway's own figures, from its usage records
    assert "STDIO, 4 sessions at once | 8 |" in report
    assert "0 sessions failed" in report
    assert re.search(r"Added by the gateway \(Streamable HTTP, same run\): p50 [+-]\d", report)
