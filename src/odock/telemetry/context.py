"""The request a log record belongs to: one ContextVar, set once per request by the web layer.

Setting it is the only per-request cost: the value is the request's own object (the pipeline's
:class:`~odock.pipeline.exchange.Exchange`, the MCP exchange, the control plane's ASGI scope, or
a :class:`RequestTag`), and its fields are read only when a record is actually emitted, so a
record written after the key was authenticated names the organisation too::

    web layer ── current_request.set(ex) ──► stages log as usual ──► context_fields() on emit:
                                                                      request_id, organisation_id,
                                                                      route, trace_id, span_id

Trace ids come from OpenTelemetry's current span, and only when ``opentelemetry.trace`` has
already been imported by the process (tracing is on): logging never imports it.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

_OTEL_TRACE = "opentelemetry.trace"


class RequestInScope(Protocol):
    """What a log record reads of the request being handled."""

    @property
    def request_id(self) -> str:
        """The request's id (answered as ``X-Request-Id``)."""

    @property
    def route(self) -> str:
        """The route template (``/v1/mcp/{server}``) or, without one, the path."""

    @property
    def organisation_id(self) -> str | None:
        """The caller's organisation, once known."""


current_request: ContextVar[RequestInScope | None] = ContextVar("odock_current_request", default=None)


@dataclass(slots=True)
class RequestTag:
    """A request known by its id and route only (the gateway's routes outside the pipeline)."""

    request_id: str
    route: str
    organisation_id: str | None = None


def context_fields() -> dict[str, str]:
    """The context of a record emitted now: request id, organisation, route, trace and span ids."""
    fields: dict[str, str] = {}
    request = current_request.get()
    if request is not None:
        fields["request_id"] = request.request_id
        organisation_id = request.organisation_id
        if organisation_id is not None:
            fields["organisation_id"] = organisation_id
        fields["route"] = request.route
    trace = sys.modules.get(_OTEL_TRACE)
    if trace is not None:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            fields["trace_id"] = format(span_context.trace_id, "032x")
            fields["span_id"] = format(span_context.span_id, "016x")
    return fields
