"""The usage stages: an intent before the upstream call, the usage record after every request.

``RecordIntent`` journals what an admitted request is about to spend, so a process killed while
it is in flight still leaves a record (see :mod:`odock.usage.intent`); ``RecordUsage`` builds the
record of every authenticated request and queues it, which retires the intent. Unauthenticated
rejections carry no organisation and are only counted in logs and metrics, so a flood of bad
keys cannot turn into a flood of database writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from odock.errors import UsageBacklog
from odock.llm.upstream import Endpoint
from odock.pipeline.exchange import Exchange
from odock.telemetry import metrics
from odock.telemetry.requestlog import LogRequests, log_request
from odock.usage.intent import UsageIntent
from odock.usage.record import USAGE_METADATA_SCHEMA, UsageEvent
from odock.usage.recorder import UsageRecorder


def request_metadata(ex: Exchange) -> dict[str, Any]:
    """What a usage record (or an intent) keeps of the request itself: route, method, client."""
    return {
        "schema_version": USAGE_METADATA_SCHEMA,
        "route": ex.route,
        "dialect": ex.surface.name,
        "method": ex.method,
        "streaming": ex.stream,
        "user_agent": ex.headers.get("user-agent"),
        "client_ip": ex.client_ip,
    }


def usage_event(ex: Exchange) -> UsageEvent:
    """The usage record of a finished exchange."""
    principal = ex.principal
    assert principal is not None
    now = ex.timings.finished or time.perf_counter()
    usage = ex.measured_usage()
    model = ex.model
    provider = ex.provider
    billing = ex.billing()
    requested = ex.payload.get("model")
    first = ex.timings.first_token
    upstream_ms = None
    if ex.timings.upstream_started is not None:
        upstream_end = ex.timings.upstream_answered if not ex.stream else now
        upstream_ms = ((upstream_end or now) - ex.timings.upstream_started) * 1000
    event = UsageEvent(
        id=ex.record_id,
        request_id=ex.request_id,
        timestamp=ex.received_at,
        endpoint=ex.route,
        status=ex.outcome,
        http_status=ex.http_status,
        stream=ex.stream,
        organisation_id=principal.organisation_id,
        team_id=principal.team_id,
        user_id=principal.user_id,
        api_key_id=principal.key_id,
        model_id=model.id if model else None,
        model=model.name if model else requested if isinstance(requested, str) else None,
        provider_id=provider.id if provider else None,
        provider=provider.type.lower() if provider else None,
        error_code=ex.error.code if ex.error else None,
        latency_ms=(now - ex.timings.received) * 1000,
        time_to_first_token_ms=(first - ex.timings.received) * 1000 if first else None,
        upstream_latency_ms=upstream_ms,
        gateway_overhead_ms=ex.timings.overhead_ms(now),
        provider_request_id=ex.provider_request_id,
        trace_id=ex.trace.trace_id if ex.trace is not None else None,
        bytes_in=len(ex.body),
        bytes_out=ex.bytes_out,
        billing=billing,
        metadata={
            **request_metadata(ex),
            "usage_estimated": bool(usage and usage.estimated),
            "error_message": ex.error.message if ex.error else None,
            **({"governance": notes} if (notes := ex.governance.to_json()) else {}),
        },
        settlements=ex.settlements,
    )
    if ex.routing is not None:
        event.routing = ex.routing.evidence()
    if usage is not None:
        event.prompt_tokens = usage.prompt_tokens
        event.completion_tokens = usage.completion_tokens
        event.cached_tokens = usage.cached_tokens
        event.reasoning_tokens = usage.reasoning_tokens
        event.total_tokens = usage.total_tokens
        event.billable_tokens = usage.prompt_tokens + usage.completion_tokens
        event.total_cost_nanos_usd = billing.get("total_cost_nanos_usd")
        event.provider_usage = usage.raw or {}
        event.tokens = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "output_details": {"reasoning": usage.reasoning_tokens},
        }
    return event


class RecordUsage:
    """Queues the usage record once everything else has unwound, and writes the request log line."""

    name = "record_usage"

    def __init__(self, recorder: UsageRecorder, log_requests: LogRequests = "errors") -> None:
        self._recorder = recorder
        self._log_requests = log_requests

    async def before(self, ex: Exchange) -> None:
        """Refuse new requests while the usage backlog is past its bound (503, retry in a second)."""
        if self._recorder.backlogged:
            raise UsageBacklog(headers={"Retry-After": "1"})

    async def after(self, ex: Exchange) -> None:
        """Queue the record of an authenticated request; record every request's metrics and log it."""
        if ex.principal is not None:
            self._recorder.submit(usage_event(ex))
        metrics.record_model_call(ex)
        log_request(ex, self._log_requests)


def usage_intent(ex: Exchange, settlements: list[dict[str, Any]]) -> UsageIntent:
    """The intent of an exchange about to call its upstream: who, what, and the reserved estimate."""
    principal, model, tokens = ex.principal, ex.model, ex.tokens
    assert principal is not None
    assert model is not None
    assert tokens is not None
    provider = ex.provider
    return UsageIntent(
        id=ex.record_id,
        request_id=ex.request_id,
        timestamp=ex.received_at,
        endpoint=ex.route,
        stream=ex.stream,
        organisation_id=principal.organisation_id,
        team_id=principal.team_id,
        user_id=principal.user_id,
        api_key_id=principal.key_id,
        model_id=model.id,
        model=model.name,
        provider_id=provider.id if provider else None,
        provider=provider.type.lower() if provider else None,
        prompt_tokens=tokens.input,
        completion_tokens=tokens.output,
        embeddings=ex.endpoint == Endpoint.EMBEDDINGS,
        pricing=model.pricing,
        settlements=settlements,
        metadata=request_metadata(ex),
        trace_id=ex.trace.trace_id if ex.trace is not None else None,
    )


class RecordIntent:
    """Journals the request's intent just before the upstream call; its usage record retires it."""

    name = "record_intent"

    def __init__(
        self,
        recorder: UsageRecorder,
        held_settlements: Callable[[Exchange], list[dict[str, Any]]],
    ) -> None:
        self._recorder = recorder
        self._held_settlements = held_settlements

    async def before(self, ex: Exchange) -> None:
        """Journal the intent of a request about to be sent upstream."""
        settlements = self._held_settlements(ex) if ex.meter_lines else []
        self._recorder.intend(usage_intent(ex, settlements))

    async def after(self, ex: Exchange) -> None:
        """Nothing: the usage record (RecordUsage) retires the intent."""
