"""Traces: the OpenTelemetry tracer provider of one gateway process (docs/observability.md#traces).

Only imported when ``ODOCK_OTEL_TRACES_EXPORTER`` is not ``none``: the runtime opens it in its
lifespan and shuts it down last (the batch span processor exports what it still holds). With
tracing off this module, and OpenTelemetry with it, is never imported, and the request path runs
the plain pipeline.

    settings ─► Resource (service.*, deployment.environment.name, extra attributes)
             ─► sampler: parent-based (a client's traceparent decides) over a ratio for new traces
             ─► BatchSpanProcessor ─► OTLP exporter (HTTP protobuf, or gRPC) ─► the collector
    pipeline ─► TracedPipeline (odock.telemetry.spans): the request's spans

The provider is the process's own: it is not installed as OpenTelemetry's global provider, so
several gateways in one process (the tests) each keep their own.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from odock import __version__
from odock.pipeline.runner import Pipeline, Stage
from odock.settings import Settings, parse_pairs
from odock.telemetry.spans import TracedCall, TracedPipeline

DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"
DEFAULT_GRPC_ENDPOINT = "localhost:4317"
HTTP_TRACES_PATH = "/v1/traces"
INSTRUMENTATION = "odock"


class Tracing:
    """The process's tracer provider, and the traced variants of the pipeline's parts."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION, __version__)
        self.propagator = TraceContextTextMapPropagator()  # W3C traceparent and tracestate

    def pipeline(self, stages: Sequence[Stage]) -> Pipeline:
        """The pipeline of ``stages`` with a SERVER span per request and a span per stage."""
        return TracedPipeline(stages, self.tracer, self.propagator)

    def upstream(self, call: Stage) -> Stage:
        """``call`` (the upstream call) with a CLIENT span per attempt, its context sent upstream."""
        return TracedCall(call, self.tracer, self.propagator)

    def flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span now (blocking); False if that did not finish in time."""
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Export what is still queued and stop the exporter (blocking: run it off the event loop)."""
        self.provider.shutdown()


def open_tracing(settings: Settings) -> Tracing:
    """The tracer provider the settings describe (the exporter connects lazily, on first export)."""
    rate = settings.otel_sample_rate
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(rate)), resource=resource(settings))
    provider.add_span_processor(BatchSpanProcessor(exporter(settings)))
    return Tracing(provider)


def resource(settings: Settings) -> Resource:
    """What every span of this process is about: the service, its version, instance, environment."""
    attributes: dict[str, str] = {
        **(parse_pairs(settings.otel_resource_attributes) if settings.otel_resource_attributes else {}),
        "service.name": settings.otel_service_name,
        "service.version": __version__,
        # In Kubernetes a pod's host name is its name.
        "service.instance.id": settings.otel_service_instance_id or socket.gethostname(),
    }
    if settings.otel_deployment_environment:
        attributes["deployment.environment.name"] = settings.otel_deployment_environment
    return Resource(attributes)


def exporter(settings: Settings) -> SpanExporter:
    """The OTLP exporter of the chosen protocol, pointed at the endpoint with the headers."""
    headers = parse_pairs(settings.otel_headers.get_secret_value()) if settings.otel_headers else {}
    if settings.otel_traces_exporter == "otlp_grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        endpoint = settings.otel_endpoint or DEFAULT_GRPC_ENDPOINT
        # Plain text unless the endpoint says https (a bare host:port is a local collector).
        secure = endpoint.startswith("https://")
        return GrpcExporter(endpoint=endpoint, insecure=not secure, headers=headers)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=http_traces_url(settings.otel_endpoint), headers=headers)


def http_traces_url(endpoint: str | None) -> str:
    """The URL spans are POSTed to: the endpoint with ``/v1/traces`` appended (unless already there)."""
    base = (endpoint or DEFAULT_HTTP_ENDPOINT).rstrip("/")
    return base if base.endswith(HTTP_TRACES_PATH) else base + HTTP_TRACES_PATH
