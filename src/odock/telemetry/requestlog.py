"""The request log: one line per model call, written as the request's last step (``RecordUsage``).

``ODOCK_LOG_REQUESTS``:

    errors (default)  rejections and failures: INFO for a 4xx (499: the client left), WARNING for a 5xx
    all               every model call (successes at INFO too)
    off               none

The line (logger ``odock.requests``, ``event=request``) names the request, never its content:
request id, organisation, key id (never the secret), route, endpoint, model, provider type,
status, ``decision`` (``allow``, or the refusal's error code such as ``rpm_exceeded``,
``budget_exceeded`` or ``upstream_timeout``), stream, duration and tokens in and out. A request
that is not logged costs a comparison or two: the fields are built only for a line that is
written.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from odock.pipeline.exchange import Exchange

LogRequests = Literal["errors", "all", "off"]

log = logging.getLogger("odock.requests")

_MODEL_CHARS = 200  # a requested model name that resolved to nothing is the client's text: cut it


def log_request(ex: Exchange, mode: LogRequests) -> None:
    """Write the request line of a finished model call if ``mode`` and the log level ask for it."""
    status = ex.http_status
    if mode == "off" or (mode == "errors" and status < 400):
        return
    level = logging.WARNING if status >= 500 else logging.INFO
    if not log.isEnabledFor(level):
        return
    fields = request_fields(ex)
    log.log(level, "%s %s %s", ex.route, status, fields["decision"], extra={"fields": fields})


def decision(ex: Exchange) -> str:
    """``allow``, or why the request was not served: its error code (or ``client_disconnected``)."""
    if ex.error is not None:
        return ex.error.code
    return "client_disconnected" if ex.outcome == "client_disconnected" else "allow"


def request_fields(ex: Exchange) -> dict[str, Any]:
    """The request line's fields: who, what, how it ended, how long, how many tokens."""
    principal, model, usage = ex.principal, ex.model, ex.measured_usage()
    provider = ex.provider
    requested = ex.payload.get("model")
    finished = ex.timings.finished or time.perf_counter()
    return {
        "event": "request",
        "request_id": ex.request_id,
        "organisation_id": principal.organisation_id if principal else None,
        "key_id": principal.key_id if principal else None,
        "route": ex.route,
        "endpoint": ex.endpoint.value,
        "model": model.name if model else requested[:_MODEL_CHARS] if isinstance(requested, str) else None,
        "provider": provider.type.lower() if provider else None,
        "status": ex.http_status,
        "decision": decision(ex),
        "stream": ex.stream,
        "duration_ms": round((finished - ex.timings.received) * 1000, 1),
        "tokens_in": usage.prompt_tokens if usage else None,
        "tokens_out": usage.completion_tokens if usage else None,
    }
