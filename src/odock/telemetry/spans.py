"""The spans of one model call, when tracing is on (docs/observability.md#traces).

    POST /v1/chat/completions          SERVER: the whole request, continuing the client's traceparent
      gateway.<stage>                  one per stage's ``before`` (a Concurrently group is one span)
        gateway.ratelimit.decision     event: allow or reject, per rate-limit gate
        gateway.budget.reserved        event: the budget and quota lines held
      gateway.call_upstream
        chat gpt-4o                    CLIENT: one per upstream attempt; its context goes upstream
        gateway.retry                  event: an attempt failed and the next target was taken
      gen_ai.first_token               event: the first streamed token went to the client
      gateway.budget.settled|released  event: the reservation's end, while the stages unwind

Nothing here changes what a stage does: the wrappers read the outcomes the stages already leave
on the exchange (an error raised, lines held, settlements made). The plain pipeline
(:class:`odock.pipeline.runner.Pipeline`) runs instead when tracing is off.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from urllib.parse import urlsplit

from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    format_trace_id,
    get_current_span,
    set_span_in_context,
    use_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from odock.errors import OdockError
from odock.llm.upstream import StreamChunk, StreamResult, Usage
from odock.pipeline.exchange import Exchange
from odock.pipeline.runner import Concurrently, Pipeline, Responder, SplitStage, Stage
from odock.providers.adapters.base import UpstreamCall
from odock.providers.provider_types import spec_of
from odock.telemetry.genai import operation_name, provider_name

RATELIMIT_GATES = frozenset({"ratelimit_pre_auth", "ratelimit_early", "ratelimit_final"})
BUDGETS = "budgets"


class RequestSpan:
    """One model call's SERVER span, and what its CLIENT spans share (the request's trace)."""

    __slots__ = ("_origin", "attempts", "failed", "recording", "span", "trace_id")

    def __init__(self, span: Span, origin: tuple[int, float]) -> None:
        self.span = span
        # Not sampled: the stages run without spans of their own (they would be dropped anyway).
        self.recording = span.is_recording()
        context = span.get_span_context()
        self.trace_id = format_trace_id(context.trace_id) if context.trace_flags.sampled else None
        self._origin = origin  # (time.time_ns(), time.perf_counter()) read together
        self.attempts = 0  # upstream attempts made
        self.failed: str | None = None  # the error code of the last attempt, when it failed

    def at(self, instant: float) -> int:
        """The wall-clock time (ns since the epoch) of a ``time.perf_counter`` instant."""
        wall, perf = self._origin
        return wall + int((instant - perf) * 1e9)

    def finish(self, ex: Exchange) -> None:
        """What the request came to, then the span's end."""
        span = self.span
        if span.is_recording():
            span.set_attributes(_outcome(ex))
            if ex.timings.first_token is not None:
                span.add_event("gen_ai.first_token", timestamp=self.at(ex.timings.first_token))
            if ex.http_status >= 500:
                span.set_status(Status(StatusCode.ERROR, ex.error.code if ex.error else None))
        span.end()


class TracedPipeline(Pipeline):
    """The pipeline with a SERVER span around each request and a span per stage."""

    def __init__(self, stages: Sequence[Stage], tracer: Tracer, propagator: TraceContextTextMapPropagator):
        self._tracer = tracer
        self._propagator = propagator
        super().__init__([traced_stage(stage, tracer) for stage in stages])

    async def run(self, ex: Exchange, responder: Responder) -> None:
        """Run the request inside its SERVER span (a child of the client's span, if it sent one)."""
        origin = time.time_ns(), time.perf_counter()
        span = self._tracer.start_span(
            f"{ex.method} {ex.route}",
            context=self._propagator.extract(ex.headers),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": ex.method,
                "http.route": ex.route,
                "gateway.request_id": ex.request_id,
                "gen_ai.operation.name": operation_name(ex.endpoint),
            },
            start_time=origin[0] - int((origin[1] - ex.timings.received) * 1e9),
        )
        request = RequestSpan(span, origin)
        ex.trace = request
        try:
            with use_span(span, record_exception=False, set_status_on_exception=False):
                await super().run(ex, responder)
        finally:
            request.finish(ex)


def _outcome(ex: Exchange) -> dict[str, AttributeValue]:
    """The SERVER span's attributes known once the request has ended."""
    attributes: dict[str, AttributeValue] = {
        "http.response.status_code": ex.http_status,
        "gateway.stream": ex.stream,
    }
    requested = ex.payload.get("model") or ex.params.get("model")
    if isinstance(requested, str):
        attributes["gen_ai.request.model"] = requested
    if ex.principal is not None:
        attributes["organization.id"] = ex.principal.organisation_id
    if ex.model is not None:
        attributes["gateway.model"] = ex.model.name
    if ex.call is not None:
        attributes["gen_ai.provider.name"] = provider_name(ex.call.provider.type)
    usage = ex.measured_usage()
    if usage is not None:
        attributes.update(_usage(usage))
    if ex.error is not None:
        attributes["error.type"] = ex.error.code
    elif ex.outcome != "success":
        attributes["error.type"] = ex.outcome  # client_disconnected
    return attributes


def _usage(usage: Usage) -> dict[str, AttributeValue]:
    return {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }


def _failed(span: Span, error: OdockError) -> None:
    span.set_attribute("error.type", error.code)
    span.set_status(Status(StatusCode.ERROR, error.code))


# --- stages -------------------------------------------------------------------------------------
class Observer:
    """Events a stage's outcome makes (none by default)."""

    def before(self, ex: Exchange, error: OdockError | None) -> None:
        """``before`` ended, admitting the request (``error`` None) or refusing it."""

    def held(self, ex: Exchange) -> int:
        """What ``after`` is about to undo (read before it runs)."""
        return 0

    def after(self, ex: Exchange, held: int) -> None:
        """``after`` ended."""


class RateLimitDecision(Observer):
    """``gateway.ratelimit.decision``: the gate admitted the request or refused it."""

    def __init__(self, gate: str) -> None:
        self._gate = gate

    def before(self, ex: Exchange, error: OdockError | None) -> None:
        attributes: dict[str, AttributeValue] = {
            "gateway.ratelimit.stage": self._gate,
            "gateway.decision": "allow" if error is None else "reject",
        }
        if error is not None:
            attributes["error.type"] = error.code
        get_current_span().add_event("gateway.ratelimit.decision", attributes)


class BudgetEvents(Observer):
    """``gateway.budget.reserved`` on the way in; ``.settled`` or ``.released`` on the way out."""

    def before(self, ex: Exchange, error: OdockError | None) -> None:
        if error is None and ex.meter_lines:
            get_current_span().add_event(
                "gateway.budget.reserved", {"gateway.budget.lines": len(ex.meter_lines)}
            )

    def held(self, ex: Exchange) -> int:
        return len(ex.meter_lines)

    def after(self, ex: Exchange, held: int) -> None:
        if held:
            # The stage settles what the upstream was called for and releases the rest.
            name = "gateway.budget.settled" if ex.settlements else "gateway.budget.released"
            get_current_span().add_event(name, {"gateway.budget.lines": held})


def observer(name: str) -> Observer:
    """The events of the stage called ``name``."""
    if name in RATELIMIT_GATES:
        return RateLimitDecision(name)
    if name == BUDGETS:
        return BudgetEvents()
    return Observer()


def traced_stage(stage: Stage, tracer: Tracer) -> Stage:
    """``stage`` with a span around its ``before`` and the events of its outcome."""
    if isinstance(stage, Concurrently):
        inner: Stage = Concurrently(*(ObservedSplit(s) for s in stage.stages))
        return TracedStage(inner, tracer, Observer())
    return TracedStage(stage, tracer, observer(stage.name))


class TracedStage:
    """A stage whose ``before`` runs in a span of its own, ``gateway.<name>``."""

    def __init__(self, inner: Stage, tracer: Tracer, events: Observer) -> None:
        self.name = inner.name
        self._inner = inner
        self._tracer = tracer
        self._events = events
        self._span_name = f"gateway.{inner.name}"

    async def before(self, ex: Exchange) -> None:
        """The stage's ``before``, in its span (an error sets the span's status)."""
        if not _recording(ex):
            await self._inner.before(ex)
            return
        with self._tracer.start_as_current_span(
            self._span_name, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                await self._inner.before(ex)
            except OdockError as error:
                _failed(span, error)
                self._events.before(ex, error)
                raise
            self._events.before(ex, None)

    async def after(self, ex: Exchange) -> None:
        """The stage's ``after`` (in the request's span: unwinding has no spans of its own)."""
        if not _recording(ex):
            await self._inner.after(ex)
            return
        held = self._events.held(ex)
        await self._inner.after(ex)
        self._events.after(ex, held)


def _recording(ex: Exchange) -> bool:
    """Whether the request's trace is sampled (its spans and events are kept)."""
    request = ex.trace
    return isinstance(request, RequestSpan) and request.recording


class ObservedSplit(SplitStage):
    """A stage of a Concurrently group, with its events (the group has the span)."""

    def __init__(self, inner: SplitStage) -> None:
        self.name = inner.name
        self._inner = inner
        self._events = observer(inner.name)

    def start_before(self, ex: Exchange) -> Awaitable[None]:
        """Start the stage's ``before`` now (its command sent), as the group expects."""
        try:
            sent = self._inner.start_before(ex)
        except OdockError as error:
            self._events.before(ex, error)
            raise
        return self._judged(ex, sent)

    async def _judged(self, ex: Exchange, sent: Awaitable[None]) -> None:
        try:
            await sent
        except OdockError as error:
            self._events.before(ex, error)
            raise
        self._events.before(ex, None)

    def start_after(self, ex: Exchange) -> Awaitable[None]:
        """Start the stage's ``after`` now."""
        held = self._events.held(ex)
        return self._ended(ex, self._inner.start_after(ex), held)

    async def _ended(self, ex: Exchange, sent: Awaitable[None], held: int) -> None:
        await sent
        self._events.after(ex, held)


# --- the upstream call --------------------------------------------------------------------------
class TracedCall:
    """The upstream call with a CLIENT span per attempt, whose context is sent upstream
    (``traceparent``); a failed attempt followed by another makes a ``gateway.retry`` event."""

    name = "call_upstream"

    def __init__(self, inner: Stage, tracer: Tracer, propagator: TraceContextTextMapPropagator) -> None:
        self._inner = inner
        self._tracer = tracer
        self._propagator = propagator

    async def before(self, ex: Exchange) -> None:
        """Make the attempt in its CLIENT span (a stream's span lasts until the stream ends)."""
        request, call = ex.trace, ex.call
        if not isinstance(request, RequestSpan) or call is None:
            await self._inner.before(ex)
            return
        if request.failed is not None:
            get_current_span().add_event(
                "gateway.retry",
                {
                    "error.type": request.failed,
                    "gateway.retry_count": request.attempts,
                    "gen_ai.request.model": call.model,
                },
            )
            request.failed = None
        request.attempts += 1
        span = self._tracer.start_span(
            f"{operation_name(call.endpoint, call.provider.type)} {call.model}",
            kind=SpanKind.CLIENT,
            attributes=_client(call),
        )
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=set_span_in_context(span))
        call.headers = {**call.headers, **carrier}  # a new mapping: the vault's stays as it was
        try:
            await self._inner.before(ex)
        except OdockError as error:
            request.failed = error.code
            _failed(span, error)
            span.end()
            raise
        except BaseException:  # cancelled: the client left or the server is stopping
            span.end()
            raise
        if ex.upstream_stream is not None and request.recording:
            ex.upstream_stream = TracedStream(ex.upstream_stream, span, request)
        else:
            if ex.usage is not None:
                span.set_attributes(_usage(ex.usage))
            span.end()

    async def after(self, ex: Exchange) -> None:
        """The call's own ``after`` (closing a stream ends its span)."""
        await self._inner.after(ex)


def _client(call: UpstreamCall) -> dict[str, AttributeValue]:
    """The CLIENT span's attributes: what is asked of whom."""
    provider = call.provider
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation_name(call.endpoint, provider.type),
        "gen_ai.request.model": call.model,
        "gen_ai.provider.name": provider_name(provider.type),
        "gateway.provider": provider.name,
    }
    spec = spec_of(provider.type)
    base = provider.base_url or (spec.default_base_url if spec is not None else None)
    if base:
        url = urlsplit(base)
        if url.hostname:
            attributes["server.address"] = url.hostname
            attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
    return attributes


class TracedStream:
    """An upstream stream whose CLIENT span ends with it (read to the end, failed, or closed)."""

    def __init__(self, inner: StreamResult, span: Span, request: RequestSpan) -> None:
        self._inner = inner
        self._span = span
        self._request = request
        self._usage: Usage | None = None
        self._ended = False
        self.provider_request_id = inner.provider_request_id

    async def __aiter__(self) -> AsyncIterator[StreamChunk]:
        try:
            async for chunk in self._inner:
                if chunk.usage is not None:
                    self._usage = chunk.usage
                yield chunk
        except OdockError as error:
            self._request.failed = error.code
            _failed(self._span, error)
            self._end()
            raise
        self._end()

    async def aclose(self) -> None:
        """Close the upstream stream; the span ends if it had not."""
        await self._inner.aclose()
        self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            if self._usage is not None:
                self._span.set_attributes(_usage(self._usage))
            self._span.end()
