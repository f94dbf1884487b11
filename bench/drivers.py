"""Load drivers: closed-loop HTTP load (wrk, or aiohttp when wrk is missing) and a streaming driver.

Every driver keeps ``concurrency`` requests in flight on ``concurrency`` keep-alive connections
and reports latency percentiles in milliseconds, requests per second and errors by kind
(non-2xx statuses, timeouts, connection failures, and for streams: chunks missing or out of
order, no ``[DONE]`` (OpenAI) or ``message_stop`` (Anthropic), a usage chunk missing or unasked
for). A :class:`Target` says which of the two stream formats its answer speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import aiohttp
import orjson

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
REQUEST_TIMEOUT_SECONDS = 30.0
_WRK_MARKER = "BENCH_JSON "
StreamFormat = Literal["openai", "anthropic"]


@dataclass(frozen=True)
class Target:
    """Where and what to send: one URL, one JSON body, the headers (API key), the stream format."""

    url: str
    body: bytes
    headers: dict[str, str]
    stream_format: StreamFormat = "openai"


@dataclass
class Percentiles:
    """Latency percentiles in milliseconds (``None`` when there were no samples)."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None
    mean: float | None = None
    max: float | None = None
    samples: int = 0

    @classmethod
    def of(cls, values_ms: list[float]) -> Percentiles:
        """Nearest-rank percentiles of ``values_ms``."""
        if not values_ms:
            return cls()
        ordered = sorted(values_ms)
        p50, p90, p99, p999 = (_nearest_rank(ordered, p) for p in PERCENTILES)
        return cls(p50, p90, p99, p999, sum(ordered) / len(ordered), ordered[-1], len(ordered))


def _nearest_rank(ordered: list[float], percentile: float) -> float:
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Window:
    """A wall-clock interval in UTC: when a load ran (to find what the gateway recorded meanwhile)."""

    start: datetime
    end: datetime

    @classmethod
    def since(cls, start: datetime) -> Window:
        """From ``start`` until now."""
        return cls(start, utc_now())


def utc_now() -> datetime:
    """The current wall-clock time, timezone-aware UTC (the clock of the gateway's usage records)."""
    return datetime.now(UTC)


@dataclass
class LoadResult:
    """Outcome of one closed-loop run."""

    driver: str
    concurrency: int
    requests: int
    ok: int
    duration: float
    latency: Percentiles
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return self.ok / self.duration if self.duration > 0 else 0.0

    @property
    def error_count(self) -> int:
        """Every failed request, whatever the kind."""
        return sum(self.errors.values())


def wrk_available() -> bool:
    """True when the ``wrk`` binary is on PATH."""
    return shutil.which("wrk") is not None


def _wrk_script(target: Target) -> str:
    headers = "\n".join(f'wrk.headers["{k}"] = {_lua_string(v)}' for k, v in target.headers.items())
    points = ", ".join(f'"{p}":%.1f' for p in PERCENTILES)
    args = ", ".join(f"latency:percentile({p})" for p in PERCENTILES)
    return f"""
wrk.method = "POST"
wrk.body = {_lua_string(target.body.decode())}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{_WRK_MARKER}{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,'
    .. '"timeout":%d,"mean":%.1f,"max":%.1f,"percentiles_us":{{{points}}}}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, {args}))
end
"""


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


async def run_wrk(target: Target, concurrency: int, seconds: float, pin: list[str]) -> LoadResult:
    """Run wrk (one thread, ``concurrency`` connections) for ``seconds``; ``pin`` prefixes the command."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_wrk_script(target))
    try:
        argv = [
            *pin,
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={int(REQUEST_TIMEOUT_SECONDS)}s",
            "--latency",
            "-s",
            script.name,
            target.url,
        ]
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
    finally:
        _remove(script.name)
    line = next((x for x in out.decode().splitlines() if x.startswith(_WRK_MARKER)), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({process.returncode}): {err.decode()[-2000:]} {out.decode()[-2000:]}"
        )
    data = orjson.loads(line[len(_WRK_MARKER) :])
    errors = {
        kind: int(data[kind]) for kind in ("connect", "read", "write", "status", "timeout") if data[kind]
    }
    if "status" in errors:
        errors["non-2xx"] = errors.pop("status")
    failed = sum(errors.get(kind, 0) for kind in ("non-2xx", "timeout"))
    p50, p90, p99, p999 = (data["percentiles_us"][f"{p}"] / 1000 for p in PERCENTILES)
    latency = Percentiles(
        p50, p90, p99, p999, mean=data["mean"] / 1000, max=data["max"] / 1000, samples=data["requests"]
    )
    return LoadResult(
        driver="wrk",
        concurrency=concurrency,
        requests=int(data["requests"]),
        ok=int(data["requests"]) - failed,
        duration=data["duration_us"] / 1e6,
        latency=latency,
        errors=errors,
    )


async def run_http_load(
    target: Target,
    concurrency: int,
    *,
    seconds: float | None = None,
    requests: int | None = None,
    answered: list[int] | None = None,
) -> LoadResult:
    """The aiohttp closed-loop driver: for ``seconds``, or until ``requests`` have been sent.

    ``answered``, when given, is a one-cell counter of the requests answered so far (the soak
    reads it while the load runs).
    """
    tally = answered if answered is not None else [0]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    remaining = [requests if requests is not None else -1]
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else math.inf

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline and remaining[0] != 0:
            remaining[0] -= 1
            sent = time.perf_counter()
            kind = await _post_once(session, target)
            tally[0] += 1
            if kind is None:
                latencies.append((time.perf_counter() - sent) * 1000)
            else:
                errors[kind] += 1

    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        asyncio.TaskGroup() as group,
    ):
        for _ in range(concurrency):
            group.create_task(worker(session))
    duration = time.perf_counter() - started
    return LoadResult(
        driver="aiohttp",
        concurrency=concurrency,
        requests=len(latencies) + sum(errors.values()),
        ok=len(latencies),
        duration=duration,
        latency=Percentiles.of(latencies),
        errors=dict(errors),
    )


async def _post_once(session: aiohttp.ClientSession, target: Target) -> str | None:
    """One request; ``None`` on a 2xx answer, else the kind of error."""
    try:
        async with session.post(target.url, data=target.body, headers=target.headers) as response:
            await response.read()
            return None if response.status < 300 else f"non-2xx ({response.status})"
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError as exc:
        return f"connection ({type(exc).__name__})"


@dataclass
class StreamResult:
    """Outcome of a streaming run: time to first token and full-stream time per stream."""

    concurrency: int
    streams: int
    complete: int
    duration: float
    ttft: Percentiles
    full: Percentiles
    chunks_per_stream: int
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        """Every stream that failed any check."""
        return sum(self.errors.values())

    @property
    def streams_per_second(self) -> float:
        """Complete streams per second."""
        return self.complete / self.duration if self.duration > 0 else 0.0


async def run_streams(
    target: Target,
    concurrency: int,
    streams: int,
    expected_chunks: int,
    *,
    include_usage: bool,
    seconds: float | None = None,
    spread_seconds: float = 0.0,
    pause_collector: bool = True,
    answered: list[int] | None = None,
) -> StreamResult:
    """Open ``streams`` streams (or as many as fit in ``seconds``), ``concurrency`` at a time.

    With ``spread_seconds`` 0 every worker opens its first stream at once (a burst of
    ``concurrency`` openings); otherwise worker i opens its first one i/concurrency of the way
    into ``spread_seconds``, so openings arrive evenly and ``concurrency`` streams stay in flight.
    Each stream is verified chunk by chunk. The driver's garbage collector is paused meanwhile
    unless ``pause_collector`` is false (a run of minutes, which measures memory, not latency).
    ``answered`` counts the streams finished so far, as in :func:`run_http_load`.
    """
    tally = answered if answered is not None else [0]
    ttfts: list[float] = []
    fulls: list[float] = []
    errors: Counter[str] = Counter()
    remaining = [streams]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=concurrency)
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else math.inf

    async def worker(session: aiohttp.ClientSession, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the arrivals, not waiting for anything
        while remaining[0] > 0 and time.perf_counter() < deadline:
            remaining[0] -= 1
            outcome = await _stream_once(session, target, expected_chunks, include_usage)
            tally[0] += 1
            if isinstance(outcome, str):
                errors[outcome] += 1
            else:
                ttfts.append(outcome[0])
                fulls.append(outcome[1])

    with _collector_paused() if pause_collector else contextlib.nullcontext():
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            asyncio.TaskGroup() as group,
        ):
            for index in range(concurrency):
                group.create_task(worker(session, spread_seconds * index / concurrency))
    return StreamResult(
        concurrency=concurrency,
        streams=len(fulls) + sum(errors.values()),
        complete=len(fulls),
        duration=time.perf_counter() - started,
        ttft=Percentiles.of(ttfts),
        full=Percentiles.of(fulls),
        chunks_per_stream=expected_chunks,
        errors=dict(errors),
    )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection in the driver while it measures: a pass over hundreds of open streams'
    objects is a pause of milliseconds that every stream in flight would count as latency."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _stream_once(
    session: aiohttp.ClientSession, target: Target, expected_chunks: int, include_usage: bool
) -> tuple[float, float] | str:
    """One verified stream: (ttft ms, full ms), or the kind of failure."""
    sent = time.perf_counter()
    try:
        async with session.post(target.url, data=target.body, headers=target.headers) as response:
            if response.status != 200:
                await response.read()
                return f"non-2xx ({response.status})"
            check: StreamCheck | AnthropicStreamCheck
            if target.stream_format == "anthropic":
                check = AnthropicStreamCheck(expected_chunks)
            else:
                check = StreamCheck(expected_chunks, include_usage)
            pending = b""
            async for piece in response.content.iter_any():  # lines split here: cheaper than readline
                *lines, pending = (pending + piece).split(b"\n")
                if any(check.feed(line) for line in lines):
                    break
            verdict = check.verdict()
            if verdict is not None:
                return verdict
            assert check.first_token is not None
            return (check.first_token - sent) * 1000, (time.perf_counter() - sent) * 1000
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError as exc:
        return f"connection ({type(exc).__name__})"


class StreamCheck:
    """Verifies one SSE stream line by line: chunks ``t0 ``, ``t1 ``… in order, usage, ``[DONE]``."""

    def __init__(self, expected_chunks: int, include_usage: bool) -> None:
        self.expected_chunks = expected_chunks
        self.include_usage = include_usage
        self.next_index = 0
        self.first_token: float | None = None
        self.usage_seen = False
        self.done = False
        self.problem: str | None = None

    def feed(self, line: bytes) -> bool:
        """Take one line; True once the stream is over (``[DONE]`` or a problem)."""
        if not line.startswith(b"data:"):
            return False
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return True
        event = orjson.loads(payload)
        if "error" in event:
            self.problem = "in-band error"
            return True
        choices = event.get("choices") or []
        if not choices:
            self.usage_seen = self.usage_seen or event.get("usage") is not None
            return False
        content = (choices[0].get("delta") or {}).get("content")
        if content:
            if self.first_token is None:
                self.first_token = time.perf_counter()
            if content != f"t{self.next_index} ":
                self.problem = "chunk out of order"
                return True
            self.next_index += 1
        return False

    def verdict(self) -> str | None:
        """``None`` when the stream was complete and correct, else what was wrong."""
        if self.problem is not None:
            return self.problem
        if not self.done:
            return "no [DONE]"
        if self.next_index != self.expected_chunks:
            return "chunks missing"
        if self.include_usage and not self.usage_seen:
            return "usage chunk missing"
        if not self.include_usage and self.usage_seen:
            return "usage chunk not asked for"
        return None


class AnthropicStreamCheck:
    """Verifies one Anthropic event stream: its named events in Anthropic's order, the text deltas
    ``t0 ``, ``t1 ``… in order, the output usage in message_delta, then ``message_stop``.

    ``event:`` lines are checked against the type of the ``data:`` line that follows them.
    """

    def __init__(self, expected_chunks: int) -> None:
        self.expected_chunks = expected_chunks
        self.next_index = 0
        self.first_token: float | None = None
        self.started = False
        self.usage_seen = False
        self.done = False
        self.problem: str | None = None
        self._event: bytes | None = None

    def feed(self, line: bytes) -> bool:
        """Take one line; True once the stream is over (``message_stop`` or a problem)."""
        if line.startswith(b"event:"):
            self._event = line[6:].strip()
            return False
        if not line.startswith(b"data:"):
            return False
        event = orjson.loads(line[5:])
        kind = event.get("type")
        if self._event is None or self._event.decode() != kind:
            self.problem = "event name does not match its data"
        elif kind == "error":
            self.problem = "in-band error"
        elif kind == "message_start":
            self.started = True
        elif not self.started:
            self.problem = "no message_start first"
        elif kind == "content_block_delta":
            self._text(event.get("delta") or {})
        elif kind == "message_delta":
            self.usage_seen = (event.get("usage") or {}).get("output_tokens") is not None
        elif kind == "message_stop":
            self.done = True
        self._event = None
        return self.done or self.problem is not None

    def _text(self, delta: dict[str, object]) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()
        if delta.get("type") != "text_delta" or delta.get("text") != f"t{self.next_index} ":
            self.problem = "chunk out of order"
            return
        self.next_index += 1

    def verdict(self) -> str | None:
        """``None`` when the stream was complete and correct, else what was wrong."""
        if self.problem is not None:
            return self.problem
        if not self.done:
            return "no message_stop"
        if self.next_index != self.expected_chunks:
            return "chunks missing"
        if not self.usage_seen:
            return "usage missing from message_delta"
        return None
