"""The soak: mixed load through the gateway for minutes, with the gateway's RSS sampled every second.

Mix (bounded, closed-loop): 8 connections of non-streaming chat, 2 of embeddings and 8 of
streaming chat (16 chunks, 5 ms apart). The soak starts with a warm-up of the same mixed load
(90 s by default: longer than the one-minute windows the gateway's bounded tables hold, so that
they are full before the post-warm-up level is taken). Memory is reported at idle (before any
traffic), after the few-second warm-up of the cases, after the mixed-load warm-up, at 20% into
the soak, at the end, at its peak, and after a recovery pause with no traffic. Growth is end
versus post-warm-up (the issue's bar) and end versus the 20% point, and the least-squares slope
of RSS over the soak after the 20% point, per minute.

The usage backlog is sampled every ten seconds through the soak and its recovery pause: the
requests answered since the soak began (counted by the load drivers) against the usage records
stored since then (a count of the database's rows). A writer that keeps up holds the difference
flat, at about a batch; one that falls behind lets it grow for as long as the load lasts (the
recovery pause then shows it draining). ``--soak-chat-concurrency`` raises the chat connections
to run the soak at the gateway's peak (e.g. 64) instead of the default mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.cases import Endpoints, StreamCase
from bench.drivers import LoadResult, StreamResult, run_http_load, run_streams
from bench.processes import MIB, rss_bytes

SOAK_STREAM = StreamCase(concurrency=8, streams=10**9, chunks=16, pacing_ms=5.0)
STEADY_START_FRACTION = 0.2
WARMUP_SECONDS = 90.0
CHAT_CONCURRENCY = 8
BACKLOG_EVERY_SECONDS = 10.0

StoredCount = Callable[[], Awaitable[int]]  # usage records in the database now


@dataclass(frozen=True)
class BacklogSample:
    """Served versus stored usage since the soak began, at ``t`` seconds into it."""

    t: float
    served: int
    stored: int

    @property
    def backlog(self) -> int:
        """Records answered but not stored yet (never below zero: the warm-up's may land first)."""
        return max(0, self.served - self.stored)


@dataclass
class SoakResult:
    """Memory over the soak, and what the load achieved."""

    seconds: float
    idle_rss_mib: float
    case_warmup_rss_mib: float  # after the cases' few-second warm-up
    warmup_seconds: float = 0.0
    post_warmup_rss_mib: float = 0.0  # after the mixed-load warm-up: the reference of the growth bar
    steady_start_rss_mib: float = 0.0
    end_rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    recovered_rss_mib: float = 0.0
    growth_percent: float = 0.0  # end versus post-warm-up
    growth_from_steady_percent: float = 0.0  # end versus the 20% point
    growth_mib_per_minute: float = 0.0
    completed: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[float, float]] = field(default_factory=list)
    chat_concurrency: int = CHAT_CONCURRENCY
    backlog: list[BacklogSample] = field(default_factory=list)


async def _sample(pid: int, samples: list[tuple[float, float]], started: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append((time.monotonic() - started, rss_bytes(pid) / MIB))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _sample_backlog(
    stored_count: StoredCount, answered: list[int], into: list[BacklogSample], stop: asyncio.Event
) -> None:
    """Every BACKLOG_EVERY_SECONDS: requests answered and records stored since this began."""
    started, stored_before = time.monotonic(), await stored_count()
    while True:
        into.append(
            BacklogSample(
                round(time.monotonic() - started, 1), answered[0], await stored_count() - stored_before
            )
        )
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), BACKLOG_EVERY_SECONDS)


async def run_soak(
    endpoints: Endpoints,
    pid: int,
    seconds: float,
    recovery_seconds: float,
    idle_mib: float,
    case_warm_mib: float,
    warmup_seconds: float = WARMUP_SECONDS,
    *,
    stored_count: StoredCount | None = None,
    chat_concurrency: int = CHAT_CONCURRENCY,
) -> SoakResult:
    """Warm up with the mixed load, drive it for ``seconds``, then watch memory for ``recovery_seconds``."""
    result = SoakResult(seconds, idle_mib, case_warm_mib, warmup_seconds, chat_concurrency=chat_concurrency)
    if warmup_seconds > 0:
        warm_up = await _mixed_load(endpoints, warmup_seconds, chat_concurrency)
        failed = {f"{name}: {kind}": n for name, load in warm_up.items() for kind, n in load.errors.items()}
        if failed:
            raise RuntimeError(f"the soak's warm-up failed: {failed}")
    result.post_warmup_rss_mib = rss_bytes(pid) / MIB
    samples: list[tuple[float, float]] = []
    answered = [0]
    stop = asyncio.Event()
    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        group.create_task(_sample(pid, samples, started, stop))
        if stored_count is not None:
            group.create_task(_sample_backlog(stored_count, answered, result.backlog, stop))
        loads = await _mixed_load(endpoints, seconds, chat_concurrency, answered)
        load_samples = len(samples)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), recovery_seconds)  # the recovery pause: no traffic
        stop.set()
    chat, embed, streams = loads["chat"], loads["embeddings"], loads["streams"]
    assert isinstance(chat, LoadResult)
    assert isinstance(embed, LoadResult)
    assert isinstance(streams, StreamResult)
    result.completed = {"chat": chat.ok, "embeddings": embed.ok, "streams": streams.complete}
    for name, load in loads.items():
        for kind, count in load.errors.items():
            result.errors[f"{name}: {kind}"] = count
    _summarise(result, samples, load_samples)
    return result


async def _mixed_load(
    endpoints: Endpoints, seconds: float, chat_concurrency: int, answered: list[int] | None = None
) -> dict[str, LoadResult | StreamResult]:
    """The soak's mix through the gateway for ``seconds``: chat (x8 by default), embeddings x2, streams x8."""
    async with asyncio.TaskGroup() as group:
        chat = group.create_task(
            run_http_load(endpoints.chat("gateway"), chat_concurrency, seconds=seconds, answered=answered)
        )
        embed = group.create_task(
            run_http_load(endpoints.embeddings("gateway"), 2, seconds=seconds, answered=answered)
        )
        streams = group.create_task(
            run_streams(
                endpoints.chat("gateway", stream=SOAK_STREAM),
                SOAK_STREAM.concurrency,
                SOAK_STREAM.streams,
                SOAK_STREAM.chunks,
                include_usage=True,
                seconds=seconds,
                pause_collector=False,
                answered=answered,
            )
        )
    return {"chat": chat.result(), "embeddings": embed.result(), "streams": streams.result()}


def _summarise(result: SoakResult, samples: list[tuple[float, float]], load_samples: int) -> None:
    result.samples = [(round(t, 2), round(m, 2)) for t, m in samples]
    during = samples[:load_samples] or samples
    steady = [s for s in during if s[0] >= STEADY_START_FRACTION * result.seconds] or during
    result.steady_start_rss_mib = steady[0][1]
    result.end_rss_mib = during[-1][1]
    result.peak_rss_mib = max(m for _, m in samples)
    result.recovered_rss_mib = samples[-1][1]
    result.growth_percent = _percent(result.end_rss_mib, result.post_warmup_rss_mib)
    result.growth_from_steady_percent = _percent(result.end_rss_mib, result.steady_start_rss_mib)
    result.growth_mib_per_minute = 60 * _slope(steady)


def _percent(value: float, reference: float) -> float:
    return 100 * (value - reference) / reference


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
