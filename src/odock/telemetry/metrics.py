"""Prometheus metrics: the catalogue of docs/observability.md#metrics, and the functions that record it.

Who records what::

    OdockApp._http       http_request_started / http_request_answered   every HTTP request
    RecordUsage.after    record_model_call(ex)    every model call, once, from the finished exchange:
                         upstream attempts (a routed request's from its evidence), tokens, cost,
                         stream outcome and times, the routing decision
    rate-limit gates     ratelimit_decision        one per gate that evaluated limits
    BudgetGate           budget_decision           one per reservation (model calls and MCP)
    UsageRecorder        usage_* functions         batch writes, records stored, dead letters, queue depth
    runtime wiring       invalidation_applied (a bus listener), provider_key_decrypted (the vault's hook)

The metric objects are module-level singletons, one set per process (Prometheus metrics are
process-wide by nature, and a counter only goes up): several apps in one process (the tests)
share them, so tests read deltas. Labelled children are bound once and kept in small dicts keyed
by their label values, which are all bounded (route templates, provider types, error codes), so
the request path pays a dict lookup per series instead of ``labels()``. With ``odock serve
--workers N`` prometheus_client's multi-process mode keeps every value in a per-process file
(see :mod:`odock.telemetry.exposition`); nothing here depends on the mode.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from odock import __version__
from odock.errors import ServerShuttingDown, UpstreamCoolingDown, UpstreamError, UpstreamStreamInterrupted
from odock.llm.upstream import Endpoint
from odock.routing.route import FAILED, SUCCESS, Route
from odock.telemetry.genai import operation_name

if TYPE_CHECKING:
    from odock.pipeline.exchange import Exchange

# The exposition carries no ``*_created`` series (the multi-process mode has none either).
disable_created_metrics()  # type: ignore[no-untyped-call]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)

# The route label of a request no route claimed (a 404), and of a request nothing was answered to.
OTHER_ROUTE = "other"
CLIENT_CLOSED = 499

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("gateway_requests", "HTTP requests answered", ["route", "status_class"], registry=REGISTRY)
REQUEST_DURATION = Histogram(
    "gateway_request_duration_seconds",
    "HTTP request received to answer finished (streams: last byte)",
    ["route"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "gateway_requests_in_flight",
    "HTTP requests being handled now (scrapes of /metrics aside)",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
PROVIDER_REQUESTS = Counter(
    "gateway_provider_requests",
    "Upstream attempts",
    ["provider", "endpoint", "outcome"],
    registry=REGISTRY,
)
PROVIDER_ERRORS = Counter(
    "gateway_provider_errors",
    "Failed upstream attempts by error code",
    ["provider", "code"],
    registry=REGISTRY,
)
OPERATION_DURATION = Histogram(
    "gen_ai_client_operation_duration_seconds",
    "One upstream attempt (unary: the full answer; stream: to the first chunk)",
    ["gen_ai_provider_name", "gen_ai_operation_name"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "gen_ai_server_time_to_first_token_seconds",
    "Streams: request received to first token sent to the client",
    ["gen_ai_provider_name"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
TOKEN_USAGE = Histogram(
    "gen_ai_client_token_usage",
    "Tokens per request",
    ["gen_ai_provider_name", "gen_ai_operation_name", "gen_ai_token_type"],
    buckets=TOKEN_BUCKETS,
    registry=REGISTRY,
)
TOKENS = Counter("gateway_tokens", "Tokens by class", ["provider", "token_type"], registry=REGISTRY)
COST = Counter("gateway_cost_usd", "Priced cost of answered requests, USD", ["provider"], registry=REGISTRY)
RATELIMIT_DECISIONS = Counter(
    "gateway_ratelimit_decisions",
    "Rate-limit gate decisions",
    ["ratelimit_stage", "decision"],
    registry=REGISTRY,
)
BUDGET_DECISIONS = Counter(
    "gateway_budget_decisions", "Budget and quota reservations", ["decision"], registry=REGISTRY
)
ROUTING_DECISIONS = Counter(
    "gateway_routing_decisions", "Routed requests by how their route ended", ["decision"], registry=REGISTRY
)
ROUTING_ATTEMPTS = Counter(
    "gateway_routing_attempts", "Attempts of routed requests", ["outcome"], registry=REGISTRY
)
STREAM_SESSIONS = Counter(
    "gateway_stream_sessions", "Streamed model calls", ["provider", "outcome"], registry=REGISTRY
)
STREAM_DURATION = Histogram(
    "gateway_stream_duration_seconds",
    "Streamed model calls, first byte to last byte",
    ["provider"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
USAGE_QUEUE_DEPTH = Gauge(
    "gateway_usage_queue_depth",
    "Usage records queued, not yet stored",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
USAGE_FLUSHES = Counter(
    "gateway_usage_flushes", "Batch writes of usage records", ["outcome"], registry=REGISTRY
)
USAGE_FLUSHED = Counter("gateway_usage_flushed", "Usage records stored", registry=REGISTRY)
USAGE_DEAD_LETTERS = Counter(
    "gateway_usage_dead_letters",
    "Usage records the database refused, kept as dead letters",
    registry=REGISTRY,
)
CACHE_INVALIDATIONS = Counter(
    "gateway_cache_invalidations", "Cache invalidations applied (local or from the bus)", registry=REGISTRY
)
PROVIDER_KEY_DECRYPTIONS = Counter(
    "gateway_provider_key_decryptions", "Provider keys decrypted into memory", registry=REGISTRY
)
BUILD_INFO = Gauge(
    "gateway_build_info", "Always 1", ["version"], multiprocess_mode="livemax", registry=REGISTRY
)

RATELIMIT_STAGES = ("pre_auth", "early", "final")
DECISIONS = ("allow", "reject", "fail_open")
ROUTING_OUTCOMES = ("first_choice", "rerouted", "exhausted", "cooling_down")
ATTEMPT_OUTCOMES = ("success", "failed", "refused", "skipped")
STREAM_OUTCOMES = ("completed", "interrupted", "client_closed", "error")

# The small label sets are bound up front: their series exist (at 0) from the first scrape on.
_RATELIMIT = {(s, d): RATELIMIT_DECISIONS.labels(s, d) for s in RATELIMIT_STAGES for d in DECISIONS}
_BUDGET = {d: BUDGET_DECISIONS.labels(d) for d in DECISIONS}
_ROUTING = {d: ROUTING_DECISIONS.labels(d) for d in ROUTING_OUTCOMES}
_ATTEMPTS = {o: ROUTING_ATTEMPTS.labels(o) for o in ATTEMPT_OUTCOMES}
_FLUSH_OK = USAGE_FLUSHES.labels("ok")
_FLUSH_ERROR = USAGE_FLUSHES.labels("error")


# --- HTTP requests --------------------------------------------------------------------------
_HTTP: dict[tuple[str, int], tuple[Counter, Histogram]] = {}


def http_request_started() -> float:
    """Count a request in flight; return its start instant for :func:`http_request_answered`."""
    IN_FLIGHT.inc()
    return time.perf_counter()


def http_request_answered(route: str, status: int, started: float, *, in_flight: bool = True) -> None:
    """Record a finished HTTP request (``status`` 0: nothing was answered, recorded as 499)."""
    bound = _HTTP.get((route, status))
    if bound is None:
        code = status or CLIENT_CLOSED
        bound = _HTTP[(route, status)] = (
            REQUESTS.labels(route, f"{code // 100}xx"),
            REQUEST_DURATION.labels(route),
        )
    bound[0].inc()
    bound[1].observe(time.perf_counter() - started)
    if in_flight:  # last: a scrape that reads none in flight finds every earlier request counted
        IN_FLIGHT.dec()


# --- model calls ----------------------------------------------------------------------------
class _CallSeries:
    """The series one provider type records a model call's metrics into, bound once."""

    __slots__ = (
        "_errors",
        "_provider",
        "attempt_failed",
        "attempt_ok",
        "cached",
        "cost",
        "duration",
        "input",
        "output",
        "reasoning",
        "stream_duration",
        "streams",
        "tokens_in",
        "tokens_out",
        "ttft",
    )

    def __init__(self, provider: str, endpoint: str, operation: str) -> None:
        self._provider = provider
        self.attempt_ok = PROVIDER_REQUESTS.labels(provider, endpoint, "success")
        self.attempt_failed = PROVIDER_REQUESTS.labels(provider, endpoint, "error")
        self.duration = OPERATION_DURATION.labels(provider, operation)
        self.tokens_in = TOKEN_USAGE.labels(provider, operation, "input")
        self.tokens_out = TOKEN_USAGE.labels(provider, operation, "output")
        self.input = TOKENS.labels(provider, "input")
        self.output = TOKENS.labels(provider, "output")
        self.cached = TOKENS.labels(provider, "cached")
        self.reasoning = TOKENS.labels(provider, "reasoning")
        self.cost = COST.labels(provider)
        self.ttft = TIME_TO_FIRST_TOKEN.labels(provider)
        self.stream_duration = STREAM_DURATION.labels(provider)
        self.streams = {outcome: STREAM_SESSIONS.labels(provider, outcome) for outcome in STREAM_OUTCOMES}
        self._errors: dict[str, Counter] = {}

    def attempted(self, seconds: float, error_code: str | None) -> None:
        """One upstream attempt that took ``seconds`` and failed with ``error_code`` (None: succeeded)."""
        self.duration.observe(seconds)
        if error_code is None:
            self.attempt_ok.inc()
            return
        self.attempt_failed.inc()
        errors = self._errors.get(error_code)
        if errors is None:
            errors = self._errors[error_code] = PROVIDER_ERRORS.labels(self._provider, error_code)
        errors.inc()


_SERIES: dict[tuple[str, Endpoint], _CallSeries] = {}


def _series(provider_type: str, endpoint: Endpoint) -> _CallSeries:
    """The series of a provider type (as stored: ``OPENAI``) on ``endpoint``."""
    series = _SERIES.get((provider_type, endpoint))
    if series is None:
        series = _SERIES[(provider_type, endpoint)] = _CallSeries(
            provider_type.lower(), endpoint.value, operation_name(endpoint, provider_type)
        )
    return series


def record_model_call(ex: Exchange) -> None:
    """Record a finished model call: its upstream attempts, tokens, cost, stream and route."""
    route = ex.routing
    if route is not None:
        _record_route(ex, route)
    provider = ex.provider
    if provider is None:
        return  # refused before a model (and its provider) was known
    series = _series(provider.type, ex.endpoint)
    if route is None:
        _record_direct_attempt(ex, series)
    usage = ex.measured_usage()
    if usage is not None:
        _record_usage(ex, series, usage.prompt_tokens, usage.completion_tokens)
        if usage.cached_tokens:
            series.cached.inc(usage.cached_tokens)
        if usage.reasoning_tokens:
            series.reasoning.inc(usage.reasoning_tokens)
    if ex.stream and ex.upstream_stream is not None:
        _record_stream(ex, series)


def _record_direct_attempt(ex: Exchange, series: _CallSeries) -> None:
    """The one attempt of a call without a route: answered, or failed by the upstream."""
    timings = ex.timings
    started = timings.upstream_started
    if started is None:
        return
    error = ex.error
    if timings.upstream_answered is not None:
        # A stream counts to its first chunk (the first token relayed), unary calls to the answer.
        answered = (
            (timings.first_token or timings.upstream_answered) if ex.stream else timings.upstream_answered
        )
        failed = error.code if isinstance(error, UpstreamError) else None
        series.attempted(answered - started, failed)
    elif isinstance(error, UpstreamError):
        series.attempted((timings.finished or time.perf_counter()) - started, error.code)
    # Otherwise the client left (or the server stopped) before the upstream answered: no outcome.


def _record_usage(ex: Exchange, series: _CallSeries, tokens_in: int, tokens_out: int) -> None:
    series.tokens_in.observe(tokens_in)
    series.tokens_out.observe(tokens_out)
    if tokens_in:
        series.input.inc(tokens_in)
    if tokens_out:
        series.output.inc(tokens_out)
    cost = ex.billing().get("total_cost_nanos_usd")
    if cost:
        series.cost.inc(cost / 1e9)


def _record_stream(ex: Exchange, series: _CallSeries) -> None:
    timings = ex.timings
    error = ex.error
    if ex.outcome == "client_disconnected":
        outcome = "client_closed"
    elif error is None:
        outcome = "completed"
    elif isinstance(error, UpstreamStreamInterrupted | ServerShuttingDown):
        outcome = "interrupted"
    else:
        outcome = "error"
    series.streams[outcome].inc()
    if timings.first_byte_sent is not None and timings.finished is not None:
        series.stream_duration.observe(timings.finished - timings.first_byte_sent)
    if timings.first_token is not None:
        series.ttft.observe(timings.first_token - timings.received)


def _record_route(ex: Exchange, route: Route) -> None:
    """A routed request: each attempt (called ones are upstream attempts too) and its decision."""
    answered: dict[str, Any] | None = None
    called = False
    for attempt in route.attempts:
        outcome = attempt["outcome"]
        _ATTEMPTS[outcome].inc()
        if outcome not in (SUCCESS, FAILED) or attempt["provider_type"] is None:
            continue
        called = True
        series = _series(attempt["provider_type"], ex.endpoint)
        seconds = (attempt["latency_ms"] or 0.0) / 1000
        if outcome == FAILED:
            series.attempted(seconds, attempt["error"]["code"])
            continue
        answered = attempt
        # The answering attempt still fails if its stream breaks after the first chunk.
        series.attempted(seconds, ex.error.code if isinstance(ex.error, UpstreamError) else None)
    decision = _routing_decision(ex, route, answered, called)
    if decision is not None:
        _ROUTING[decision].inc()


def _routing_decision(
    ex: Exchange, route: Route, answered: dict[str, Any] | None, called: bool
) -> str | None:
    """How the route ended; None when the request ended for another reason before it did."""
    if answered is not None:
        return "first_choice" if answered is route.attempts[0] else "rerouted"
    if isinstance(ex.error, UpstreamCoolingDown):
        return "cooling_down"
    if ex.error is not None and (called or route.refusal is not None):
        return "exhausted"
    return None


# --- governance -----------------------------------------------------------------------------
def ratelimit_decision(stage: str, decision: str) -> None:
    """One rate-limit gate's decision (``stage``: pre_auth | early | final)."""
    _RATELIMIT[(stage, decision)].inc()


def budget_decision(decision: str) -> None:
    """One budget and quota reservation's decision."""
    _BUDGET[decision].inc()


# --- usage pipeline, caches, provider keys --------------------------------------------------
def usage_flushed(stored: int, dead_lettered: int) -> None:
    """A batch of usage records was written: ``stored`` stored, ``dead_lettered`` kept as dead letters."""
    _FLUSH_OK.inc()
    if stored:
        USAGE_FLUSHED.inc(stored)
    if dead_lettered:
        USAGE_DEAD_LETTERS.inc(dead_lettered)


def usage_flush_failed() -> None:
    """A batch write of usage records failed (the batch is kept for a retry)."""
    _FLUSH_ERROR.inc()


def usage_queue_depth(pending: int) -> None:
    """Usage records this process holds, not yet stored."""
    USAGE_QUEUE_DEPTH.set(pending)


def invalidation_applied(_invalidation: object) -> None:
    """A cache invalidation was applied here (an invalidation bus listener)."""
    CACHE_INVALIDATIONS.inc()


def provider_key_decrypted() -> None:
    """A provider key was decrypted into memory (the vault's hook)."""
    PROVIDER_KEY_DECRYPTIONS.inc()


def announce_build() -> None:
    """Set ``gateway_build_info{version}`` to 1."""
    BUILD_INFO.labels(__version__).set(1)
