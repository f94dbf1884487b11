"""What the gateway recorded of its own latency, read back from its usage records by time window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bench.backends import prepared
from bench.cases import CHAT_ROUTE
from bench.drivers import Window
from sqlalchemy import insert

from odock.db.engine import create_engine
from odock.db.migrate import prepare_schema
from odock.usage.tables import UsageRecord

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def _record(n: int, at: datetime, latency: float, upstream: float | None, **extra: Any) -> dict[str, Any]:
    """A usage record of a non-streaming chat request received ``at`` (overhead = latency - upstream)."""
    return {
        "id": f"{n:032x}",
        "request_id": f"req-{n}",
        "timestamp": at,
        "endpoint": CHAT_ROUTE,
        "stream": False,
        "status": "ok",
        "http_status": 200,
        "latency_ms": latency,
        "upstream_latency_ms": upstream,
        "gateway_overhead_ms": latency - (upstream or 0.0),
        "time_to_first_token_ms": None,  # every row names every column (one executemany)
        **extra,
    }


async def test_usage_latency_takes_the_windows_chat_records(tmp_path: Path) -> None:
    """Each window gets its chat records' percentiles and count, streams apart; not other routes or times."""
    ms = timedelta(milliseconds=1)
    first = Window(T0, T0 + 1000 * ms)
    second = Window(T0 + 2000 * ms, T0 + 3000 * ms)
    rows = [
        _record(1, first.start, 1.0, 0.5),  # the edges are inside
        _record(2, T0 + 500 * ms, 2.0, 1.5),
        _record(3, first.end, 3.0, None),  # never reached the upstream
        _record(4, T0 + 500 * ms, 90.0, 80.0, stream=True, time_to_first_token_ms=85.0),
        _record(5, T0 + 500 * ms, 91.0, 81.0, endpoint="/v1/embeddings"),
        _record(6, first.start - ms, 92.0, 82.0),
        _record(7, T0 + 1500 * ms, 93.0, 83.0),  # between the windows
        _record(8, T0 + 2500 * ms, 10.0, 6.0),
    ]
    async with prepared("embedded", tmp_path) as backend:
        engine = create_engine(backend.settings.resolved_database_url)
        try:
            await prepare_schema(engine, backend.settings)  # the gateway's own schema, as it migrates it
            async with engine.begin() as conn:
                await conn.execute(insert(UsageRecord), rows)
        finally:
            await engine.dispose()
        inside_first, inside_second, streams = await backend.usage_latency(
            [(first, False), (second, False), (first, True)], CHAT_ROUTE
        )
        stored = [
            await backend.usage_stored_within(window, stream, CHAT_ROUTE)
            for window, stream in ((first, False), (second, False), (first, True))
        ]
    assert stored == [3, 1, 1]  # what the bench counts as stored when a phase's load stops
    assert (inside_first["latency"].samples, inside_first["latency"].max) == (3, 3.0)
    assert (inside_first["latency"].p50, inside_first["overhead"].p50) == (2.0, 0.5)
    assert inside_first["upstream"].samples == 2
    assert inside_first["upstream"].max == pytest.approx(1.5)
    assert (inside_second["latency"].samples, inside_second["latency"].p99) == (1, 10.0)
    assert (inside_second["overhead"].p50, inside_second["upstream"].p50) == (4.0, 6.0)
    assert inside_first["ttft"].samples == 0  # non-streaming requests have no first token
    assert (streams["latency"].samples, streams["ttft"].p50, streams["upstream"].p50) == (1, 85.0, 80.0)
