"""The soak: mixed load through the gateway for minutes, with the gateway's RSS sampled every second.

Mix (bounded, closed-loop): 8 connections of non-streaming chat, 2 of embeddings and 8 of
streaming chat (16 chunks, 5 ms apart). Memory is reported at idle (before any traffic), after
the warm-up, at the steady-state start (20% into the soak), at the end, at its peak, and after a
recovery pause with no traffic. Growth is end versus steady-state start, and the least-squares
slope of RSS over the soak after the steady-state start, per minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from bench.cases import Endpoints, StreamCase
from bench.drivers import run_http_load, run_streams
from bench.processes import MIB, rss_bytes

SOAK_STREAM = StreamCase(concurrency=8, streams=10**9, chunks=16, pacing_ms=5.0)
STEADY_START_FRACTION = 0.2


@dataclass
class SoakResult:
    """Memory over the soak, and what the load achieved."""

    seconds: float
    idle_rss_mib: float
    post_warmup_rss_mib: float
    steady_start_rss_mib: float = 0.0
    end_rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    recovered_rss_mib: float = 0.0
    growth_percent: float = 0.0
    growth_mib_per_minute: float = 0.0
    completed: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[float, float]] = field(default_factory=list)


async def _sample(pid: int, samples: list[tuple[float, float]], started: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append((time.monotonic() - started, rss_bytes(pid) / MIB))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def run_soak(
    endpoints: Endpoints, pid: int, seconds: float, recovery_seconds: float, idle_mib: float, warm_mib: float
) -> SoakResult:
    """Drive the mixed load for ``seconds``, then watch memory for ``recovery_seconds``."""
    result = SoakResult(seconds=seconds, idle_rss_mib=idle_mib, post_warmup_rss_mib=warm_mib)
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()
    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        group.create_task(_sample(pid, samples, started, stop))
        chat = group.create_task(run_http_load(endpoints.chat("gateway"), 8, seconds=seconds))
        embed = group.create_task(run_http_load(endpoints.embeddings("gateway"), 2, seconds=seconds))
        streams = group.create_task(
            run_streams(
                endpoints.chat("gateway", stream=SOAK_STREAM),
                SOAK_STREAM.concurrency,
                SOAK_STREAM.streams,
                SOAK_STREAM.chunks,
                include_usage=True,
                seconds=seconds,
            )
        )
        await asyncio.gather(chat, embed, streams)
        load_samples = len(samples)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), recovery_seconds)  # the recovery pause: no traffic
        stop.set()
    result.completed = {
        "chat": chat.result().ok,
        "embeddings": embed.result().ok,
        "streams": streams.result().complete,
    }
    for name, task_errors in (
        ("chat", chat.result().errors),
        ("embeddings", embed.result().errors),
        ("streams", streams.result().errors),
    ):
        for kind, count in task_errors.items():
            result.errors[f"{name}: {kind}"] = count
    _summarise(result, samples, load_samples)
    return result


def _summarise(result: SoakResult, samples: list[tuple[float, float]], load_samples: int) -> None:
    result.samples = [(round(t, 2), round(m, 2)) for t, m in samples]
    during = samples[:load_samples] or samples
    steady = [s for s in during if s[0] >= STEADY_START_FRACTION * result.seconds] or during
    result.steady_start_rss_mib = steady[0][1]
    result.end_rss_mib = during[-1][1]
    result.peak_rss_mib = max(m for _, m in samples)
    result.recovered_rss_mib = samples[-1][1]
    result.growth_percent = (
        100 * (result.end_rss_mib - result.steady_start_rss_mib) / result.steady_start_rss_mib
    )
    result.growth_mib_per_minute = 60 * _slope(steady)


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y) points (0 with fewer than two)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / var
