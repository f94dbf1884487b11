"""A real OTLP trace receiver for the tests: what an OpenTelemetry Collector's ``otlp`` receiver takes.

Two doors, one store of spans:

    HTTP  POST /v1/traces     protobuf ExportTraceServiceRequest (gzip or plain), answered with an
                              empty ExportTraceServiceResponse (aiohttp, on its own thread)
    gRPC  TraceService/Export the same request over gRPC (grpcio's server, its own threads)

Each request is decoded into :class:`ReceivedSpan` values (ids as hex, attributes and events as
plain Python values, the resource's attributes beside them) and kept for assertions; the headers
of every export are kept too (a collector's authentication). Nothing here is the gateway's code:
the decoding uses ``opentelemetry-proto``'s generated messages only.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.fakes.threaded import ThreadedFake

SPAN_KIND_SERVER = 2  # opentelemetry.proto.trace.v1.Span.SpanKind
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.StatusCode


@dataclass(frozen=True)
class SpanEvent:
    """An event of a span."""

    name: str
    attributes: dict[str, Any]
    time_unix_nano: int


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector received it."""

    name: str
    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    parent_span_id: str | None
    kind: int
    attributes: dict[str, Any]
    events: list[SpanEvent]
    status_code: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    resource: dict[str, Any] = field(default_factory=dict)
    door: str = "http"  # http | grpc

    def event(self, name: str) -> SpanEvent:
        """The span's only event called ``name`` (fails on none or several)."""
        found = [e for e in self.events if e.name == name]
        assert len(found) == 1, f"span {self.name}: {len(found)} events {name!r} in {self.events}"
        return found[0]


def value_of(value: AnyValue) -> Any:
    """An OTLP attribute value as Python."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_of(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP key-values as a dict."""
    return {pair.key: value_of(pair.value) for pair in pairs}


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest, door: str) -> list[ReceivedSpan]:
    """Every span of an export request."""
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        kind=span.kind,
                        attributes=attributes_of(span.attributes),
                        events=[
                            SpanEvent(e.name, attributes_of(e.attributes), e.time_unix_nano)
                            for e in span.events
                        ],
                        status_code=span.status.code,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        resource=resource,
                        door=door,
                    )
                )
    return spans


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """The gRPC door: hands each export to the collector."""

    def __init__(self, collector: OtlpCollector) -> None:
        self._collector = collector

    def Export(  # the generated service's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        headers = {key: value for key, value in context.invocation_metadata()}
        self._collector.keep(spans_of(request, "grpc"), "grpc", headers)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpCollector(ThreadedFake):
    """An OTLP/HTTP and OTLP/gRPC trace receiver on free local ports, keeping every span."""

    vendor = "OTLP"

    def __init__(self) -> None:
        super().__init__(api_key=None)
        self._spans: list[ReceivedSpan] = []
        self._export_headers: list[tuple[str, dict[str, str]]] = []
        self._grpc: grpc.Server | None = None
        self.grpc_port = 0
        self._store = threading.Lock()

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self._http_export)

    @property
    def http_endpoint(self) -> str:
        """What ``ODOCK_OTEL_ENDPOINT`` names for OTLP/HTTP (the exporter appends /v1/traces)."""
        return self.base_url

    @property
    def grpc_endpoint(self) -> str:
        """What ``ODOCK_OTEL_ENDPOINT`` names for OTLP/gRPC."""
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> OtlpCollector:
        """Serve both doors."""
        super().start()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
        self.grpc_port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._grpc = server
        return self

    def stop(self) -> None:
        """Stop both doors."""
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(timeout=10)
        super().stop()

    async def _http_export(self, request: web.Request) -> web.Response:
        received = await self._record(request)
        body = await request.read()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        message = trace_service_pb2.ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.keep(spans_of(message, "http"), "http", received.headers)
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type="application/x-protobuf")

    def keep(self, spans: list[ReceivedSpan], door: str, headers: dict[str, str]) -> None:
        """Store an export's spans and headers (either door's thread)."""
        with self._store:
            self._spans.extend(spans)
            self._export_headers.append((door, headers))

    # --- what tests read ----------------------------------------------------------------------
    def spans(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        """Every span received so far (of ``trace_id`` only, when given), in arrival order."""
        with self._store:
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]

    def export_headers(self, door: str) -> list[dict[str, str]]:
        """The headers of every export through ``door`` (http | grpc: the call's metadata), oldest first."""
        with self._store:
            return [headers for through, headers in self._export_headers if through == door]

    def wait_for_spans(
        self,
        condition: Callable[[list[ReceivedSpan]], bool],
        *,
        trace_id: str | None = None,
        timeout: float = 10.0,
    ) -> list[ReceivedSpan]:
        """The spans (of ``trace_id``) once ``condition`` holds for them; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(trace_id)
            if condition(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted(s.name for s in spans)
                raise AssertionError(f"OTLP collector: condition not met within {timeout} s; spans: {names}")
            time.sleep(0.01)
