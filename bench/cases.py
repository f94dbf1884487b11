"""The measured cases, and how one case is measured: the direct baseline, then the gateway path.

Both paths of a case run back to back in the same run, against the same mock upstream, with the
same driver, so "added latency" (gateway percentile - direct percentile) compares like with like.

A case's ``api`` says what the client speaks and what the upstream answers::

    openai      OpenAI chat body → /v1/chat/completions, OpenAI model  (direct: the mock's chat route)
    anthropic   Anthropic body → /v1/messages, Anthropic model, passed through
                                                                       (direct: the mock's /v1/messages)
    translated  OpenAI chat body → /v1/chat/completions, Anthropic model, translated both ways
                                                                       (direct: the mock's /v1/messages)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import orjson

from bench.drivers import (
    LoadResult,
    Percentiles,
    StreamResult,
    Target,
    Window,
    run_http_load,
    run_streams,
    run_wrk,
    utc_now,
)
from bench.processes import PhaseMeter, metered, wait_for_quiet
from bench.tenant import BenchTenant

Path_ = Literal["direct", "gateway"]
Api = Literal["openai", "anthropic", "translated"]
UPSTREAM_CHAT_SLUG = "mock-chat"
UPSTREAM_EMBEDDING_SLUG = "mock-embedding"
UPSTREAM_ANTHROPIC_SLUG = "mock-anthropic"
CHAT_ROUTE = "/v1/chat/completions"
MESSAGES_ROUTE = "/v1/messages"
ANTHROPIC_VERSION = "2023-06-01"
_LABEL_PREFIX: dict[Api, str] = {"openai": "", "anthropic": "anthropic ", "translated": "translated "}


def gateway_route(api: Api) -> str:
    """The gateway route a case's client calls (where its usage records are filed)."""
    return MESSAGES_ROUTE if api == "anthropic" else CHAT_ROUTE


# A core busier than this before a phase means another process is running on the machine.
QUIET_THRESHOLD_PERCENT = 10.0


@dataclass(frozen=True)
class ChatCase:
    """Non-streaming chat completions at one concurrency, for a duration or a request count."""

    concurrency: int
    seconds: float | None = None
    requests: int | None = None
    api: Api = "openai"

    @property
    def label(self) -> str:
        """How the report names the case."""
        return f"{_LABEL_PREFIX[self.api] or 'chat '}c={self.concurrency}"


@dataclass(frozen=True)
class StreamCase:
    """``streams`` streaming chat completions, ``concurrency`` at a time.

    ``spread_seconds`` 0: the first ``concurrency`` streams open in the same instant (a burst).
    Otherwise their openings are spread evenly over ``spread_seconds`` (one stream's duration), so
    that ``concurrency`` streams are held in flight with openings arriving steadily.
    """

    concurrency: int
    streams: int
    chunks: int
    pacing_ms: float
    spread_seconds: float = 0.0
    api: Api = "openai"

    @property
    def label(self) -> str:
        """How the report names the case."""
        held = " held" if self.spread_seconds else ""
        return f"{_LABEL_PREFIX[self.api]}stream c={self.concurrency}{held}"


@dataclass(frozen=True)
class Plan:
    """Durations and cases of one kind of run."""

    name: str
    chat: tuple[ChatCase, ...]
    streams: tuple[StreamCase, ...]
    warmup_seconds: float
    use_wrk: bool = True
    core_probe_seconds: float = 3.0  # the busy-spin on the gateway core before each backend's cases


FULL = Plan(
    "full",
    chat=(
        ChatCase(1, seconds=15),
        ChatCase(16, seconds=10),
        ChatCase(64, seconds=10),
        ChatCase(1, seconds=15, api="anthropic"),
        ChatCase(16, seconds=10, api="anthropic"),
        ChatCase(1, seconds=15, api="translated"),
        ChatCase(16, seconds=10, api="translated"),
    ),
    streams=(
        StreamCase(1, 400, 16, 1.0),
        StreamCase(64, 384, 16, 20.0),
        StreamCase(512, 1024, 16, 20.0),
        StreamCase(512, 2048, 32, 50.0, spread_seconds=1.6),
        StreamCase(16, 192, 16, 20.0, api="anthropic"),
        StreamCase(16, 192, 16, 20.0, api="translated"),
    ),
    warmup_seconds=3,
)
QUICK = Plan(
    "quick",
    chat=(
        ChatCase(1, seconds=3),
        ChatCase(16, seconds=3),
        ChatCase(64, seconds=3),
        ChatCase(1, seconds=3, api="anthropic"),
        ChatCase(16, seconds=3, api="anthropic"),
        ChatCase(1, seconds=3, api="translated"),
        ChatCase(16, seconds=3, api="translated"),
    ),
    streams=(
        StreamCase(1, 100, 16, 1.0),
        StreamCase(64, 128, 16, 20.0),
        StreamCase(512, 512, 16, 20.0),
        StreamCase(512, 1024, 32, 50.0, spread_seconds=1.6),
        StreamCase(16, 64, 16, 20.0, api="anthropic"),
        StreamCase(16, 64, 16, 20.0, api="translated"),
    ),
    warmup_seconds=1,
)
SMOKE = Plan(
    "smoke",
    chat=(
        ChatCase(1, requests=150),
        ChatCase(16, requests=200),
        ChatCase(16, requests=100, api="anthropic"),
        ChatCase(16, requests=100, api="translated"),
    ),
    streams=(
        StreamCase(1, 10, 8, 1.0),
        StreamCase(16, 32, 8, 5.0),
        StreamCase(16, 32, 8, 5.0, api="anthropic"),
        StreamCase(16, 32, 8, 5.0, api="translated"),
    ),
    warmup_seconds=0.5,
    use_wrk=False,
    core_probe_seconds=1.0,
)


@dataclass(frozen=True)
class Endpoints:
    """The two paths to the same mock: straight to it, or through the gateway as the tenant."""

    mock_url: str
    gateway_url: str
    tenant: BenchTenant

    def chat(self, path: Path_, *, stream: StreamCase | None = None, api: Api = "openai") -> Target:
        """The request of an ``api`` case on ``path`` (streaming when ``stream`` is given).

        A translated case's direct path is the Anthropic call the gateway makes for it.
        """
        if api == "anthropic" or (api == "translated" and path == "direct"):
            return self._messages(path, stream)
        model = self.tenant.anthropic_model if api == "translated" else self.tenant.chat_model
        body: dict[str, object] = {
            "model": UPSTREAM_CHAT_SLUG if path == "direct" else model,
            "messages": [{"role": "user", "content": "Hello, benchmark."}],
            "max_tokens": 16,
        }
        if stream is not None:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
            if api == "translated":  # the gateway carries ``user`` to Anthropic's metadata.user_id
                body["user"] = _overrides(stream)
            else:
                body["metadata"] = {
                    "bench_chunks": str(stream.chunks),
                    "bench_pacing_ms": str(stream.pacing_ms),
                }
        return self._target(path, CHAT_ROUTE, body)

    def _messages(self, path: Path_, stream: StreamCase | None) -> Target:
        """An Anthropic Messages request, as the ``anthropic`` SDK sends it (key in ``x-api-key``)."""
        body: dict[str, object] = {
            "model": UPSTREAM_ANTHROPIC_SLUG if path == "direct" else self.tenant.anthropic_model,
            "messages": [{"role": "user", "content": "Hello, benchmark."}],
            "max_tokens": 16,
        }
        if stream is not None:
            body["stream"] = True
            body["metadata"] = {"user_id": _overrides(stream)}
        headers = {
            "Content-Type": "application/json",
            "x-api-key": self.tenant.secret,
            "anthropic-version": ANTHROPIC_VERSION,
        }
        base = self.mock_url if path == "direct" else self.gateway_url
        return Target(base + MESSAGES_ROUTE, orjson.dumps(body), headers, "anthropic")

    def embeddings(self, path: Path_) -> Target:
        """An embeddings request on ``path``."""
        model = UPSTREAM_EMBEDDING_SLUG if path == "direct" else self.tenant.embedding_model
        return self._target(path, "/v1/embeddings", {"model": model, "input": ["benchmark", "input"]})

    def _target(self, path: Path_, route: str, body: dict[str, object]) -> Target:
        base = self.mock_url if path == "direct" else self.gateway_url
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.tenant.secret}"}
        return Target(base + route, orjson.dumps(body), headers)


def _overrides(stream: StreamCase) -> str:
    """The stream's shape as the mock reads it from an Anthropic body's ``metadata.user_id``."""
    return f"bench_chunks={stream.chunks};bench_pacing_ms={stream.pacing_ms}"


@dataclass
class Side:
    """One path of a case: the driver's result and the gateway's CPU and memory meanwhile."""

    result: LoadResult | StreamResult
    gateway_cpu_percent: float | None
    gateway_peak_rss_mib: float | None
    core_busy_percent: dict[int, float]
    other_load_percent: float | None
    busy_before_percent: dict[int, float]
    window: Window | None = None  # wall-clock UTC, from just before the load started to just after it
    stolen_percent: float | None = None  # of the gateway's core, by the hypervisor (steal time)
    # Usage records of the phase's requests already stored when its load stopped (gateway phases).
    stored_at_end: int | None = None

    @classmethod
    def of(
        cls, result: LoadResult | StreamResult, meter: PhaseMeter, before: dict[int, float], window: Window
    ) -> Side:
        """Combine a driver result with its meter, how busy the cores were just before, and when it ran."""
        return cls(
            result,
            meter.cpu_percent,
            meter.peak_rss_mib,
            meter.core_busy_percent,
            meter.other_load_percent,
            before,
            window,
            meter.stolen_percent,
        )


@dataclass
class CaseOutcome:
    """A case measured on both paths, and what the gateway added."""

    kind: Literal["chat", "stream"]
    label: str
    concurrency: int
    direct: Side
    gateway: Side
    added: dict[str, float | None] = field(default_factory=dict)
    attempts: int = 1
    route: str = CHAT_ROUTE  # the gateway route of the case's requests
    # The gateway's own view of its phase, from its usage records
    # (``latency``, ``overhead``, ``upstream``, ``ttft`` → percentiles; ``latency.samples`` counts records).
    inside: dict[str, Percentiles] | None = None

    @property
    def noise(self) -> float:
        """Time other processes and the hypervisor took from the gateway's core in its phase (percent)."""
        return (self.gateway.other_load_percent or 0.0) + (self.gateway.stolen_percent or 0.0)


def _difference(gateway: Percentiles, direct: Percentiles, prefix: str = "") -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in ("p50", "p90", "p99"):
        g, d = getattr(gateway, name), getattr(direct, name)
        out[prefix + name] = None if g is None or d is None else g - d
    return out


@dataclass
class Measurer:
    """Runs cases on both paths with the chosen driver, metering the gateway process."""

    endpoints: Endpoints
    gateway_pid: int
    gateway_core: int | None
    wrk_pin: list[str]
    use_wrk: bool
    quiet_wait_seconds: float = 0.0
    noisy_retries: int = 0
    answered: int = 0  # gateway requests answered, over every attempt (the usage records to expect)
    # Counts the usage records of a gateway phase on a route stored so far (asked as its load stops).
    stored_within: Callable[[Window, bool, str], Awaitable[int]] | None = None

    async def _settle(self) -> dict[int, float]:
        """Before a phase: wait (bounded) for other processes to leave the cores quiet."""
        return await wait_for_quiet(QUIET_THRESHOLD_PERCENT, self.quiet_wait_seconds, window=0.5)

    async def _least_noisy(self, measure: Callable[[], Awaitable[CaseOutcome]]) -> CaseOutcome:
        """Measure; repeat (up to ``noisy_retries`` times) while other processes loaded the gateway core."""
        best: CaseOutcome | None = None
        for attempt in range(1, self.noisy_retries + 2):
            outcome = await measure()
            outcome.attempts = attempt
            if best is None or outcome.noise < best.noise:
                best = outcome
            if outcome.noise <= QUIET_THRESHOLD_PERCENT:
                break
        assert best is not None
        return best

    async def chat(self, case: ChatCase) -> CaseOutcome:
        """Measure a non-streaming case: direct, then through the gateway (the least noisy attempt)."""
        return await self._least_noisy(lambda: self._chat_once(case))

    async def stream(self, case: StreamCase) -> CaseOutcome:
        """Measure a streaming case: direct, then through the gateway (the least noisy attempt)."""
        return await self._least_noisy(lambda: self._stream_once(case))

    async def _chat_once(self, case: ChatCase) -> CaseOutcome:
        sides = {}
        for path in ("direct", "gateway"):
            target = self.endpoints.chat(path, api=case.api)
            before = await self._settle()
            async with metered(self.gateway_pid, self.gateway_core) as meter:
                started = utc_now()
                result = await self._load(target, case)
                window = Window.since(started)
            sides[path] = Side.of(result, meter, before, window)
            if path == "gateway":
                self.answered += result.ok
                sides[path].stored_at_end = await self._stored(window, gateway_route(case.api), stream=False)
        outcome = CaseOutcome(
            "chat",
            case.label,
            case.concurrency,
            sides["direct"],
            sides["gateway"],
            route=gateway_route(case.api),
        )
        assert isinstance(outcome.gateway.result, LoadResult)
        assert isinstance(outcome.direct.result, LoadResult)
        outcome.added = _difference(outcome.gateway.result.latency, outcome.direct.result.latency)
        return outcome

    async def _stored(self, window: Window, route: str, *, stream: bool) -> int | None:
        return None if self.stored_within is None else await self.stored_within(window, stream, route)

    async def _load(self, target: Target, case: ChatCase) -> LoadResult:
        if self.use_wrk and case.seconds is not None:
            return await run_wrk(target, case.concurrency, case.seconds, self.wrk_pin)
        return await run_http_load(target, case.concurrency, seconds=case.seconds, requests=case.requests)

    async def _stream_once(self, case: StreamCase) -> CaseOutcome:
        sides = {}
        for path in ("direct", "gateway"):
            target = self.endpoints.chat(path, stream=case, api=case.api)
            before = await self._settle()
            async with metered(self.gateway_pid, self.gateway_core) as meter:
                started = utc_now()
                result = await run_streams(
                    target,
                    case.concurrency,
                    case.streams,
                    case.chunks,
                    include_usage=True,
                    spread_seconds=case.spread_seconds,
                )
                window = Window.since(started)
            sides[path] = Side.of(result, meter, before, window)
            if path == "gateway":
                self.answered += result.complete
                sides[path].stored_at_end = await self._stored(window, gateway_route(case.api), stream=True)
        outcome = CaseOutcome(
            "stream",
            case.label,
            case.concurrency,
            sides["direct"],
            sides["gateway"],
            route=gateway_route(case.api),
        )
        gateway, direct = outcome.gateway.result, outcome.direct.result
        assert isinstance(gateway, StreamResult)
        assert isinstance(direct, StreamResult)
        outcome.added = {
            **_difference(gateway.ttft, direct.ttft, "ttft_"),
            **_difference(gateway.full, direct.full, "full_"),
        }
        return outcome

    async def warm_up(self, seconds: float) -> int:
        """Fill the gateway's caches and connection pools on both paths; the gateway requests answered.

        Anthropic and translated requests warm the Anthropic provider's pool and the codecs.
        """
        answered = 0
        warm = StreamCase(8, 32, 4, 0.0)
        for path in ("direct", "gateway"):
            chat = await run_http_load(self.endpoints.chat(path), 16, seconds=seconds)
            embeddings = await run_http_load(self.endpoints.embeddings(path), 4, requests=50)
            streams = await run_streams(self.endpoints.chat(path, stream=warm), 8, 32, 4, include_usage=True)
            results: list[LoadResult | StreamResult] = [chat, embeddings, streams]
            for api in ("anthropic", "translated"):
                results.append(await run_http_load(self.endpoints.chat(path, api=api), 8, requests=50))
            for result in results:
                if result.error_count:
                    raise RuntimeError(f"warm-up on the {path} path failed: {result.errors}")
            if path == "gateway":
                answered = sum(r.complete if isinstance(r, StreamResult) else r.ok for r in results)
        return answered
