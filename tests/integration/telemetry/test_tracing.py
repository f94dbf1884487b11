"""Traces through a real gateway: the official OpenAI SDK calls it, a real OTLP receiver collects.

One gateway for the module exports over OTLP/HTTP with every trace sampled; the gRPC exporter and
a sample rate of 0 get gateways of their own. The spans are read back decoded from the protobuf
the exporter sent (tests/fakes/otlp_collector.py), so what is asserted is what a collector sees.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from odock.app import create_app
from odock.providers.crypto import KeyPair
from tests.conftest import BACKEND, Gateway, GatewayFactory, SettingsFactory, Tenant, settings_factory
from tests.fakes.openai_server import USAGE, FakeOpenAI, running_fake_openai
from tests.fakes.otlp_collector import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    OtlpCollector,
    ReceivedSpan,
)
from tests.fakes.scripted_upstream import ScriptedUpstream, fail
from tests.integration.conftest import MESSAGES, UPSTREAM_KEY, only_usage_record, openai_tenant, sdk
from tests.support.api import ControlPlaneUnderTest
from tests.support.routing import routing_tenant
from tests.support.server import ThreadedServer

COLLECTOR_TOKEN = "Bearer collector-secret-7f3a"
SPANS_WITHIN_SECONDS = 10.0
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SRC = Path(__file__).resolve().parents[3] / "src"


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpCollector]:
    """The module's OTLP receiver (HTTP and gRPC)."""
    with OtlpCollector() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    """The fake OpenAI upstream of the module's tenants."""
    with running_fake_openai(api_key=UPSTREAM_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedUpstream]:
    """A scripted upstream for the routing scenario."""
    with ScriptedUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def module_settings(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, provider_keypair: KeyPair
) -> SettingsFactory:
    """Settings on the active backend that can store provider keys."""
    make = settings_factory(BACKEND, tmp_path_factory, request)

    def settings(**overrides: Any) -> Any:
        return make(
            provider_key_encryption_key_id=provider_keypair.key_id,
            provider_key_encryption_private_key=provider_keypair.private_pem,
            **overrides,
        )

    return settings


def tracing_on(collector: OtlpCollector, instance: str, **overrides: Any) -> dict[str, Any]:
    """Tracing settings exporting to ``collector`` over OTLP/HTTP, every trace sampled."""
    values: dict[str, Any] = {
        "otel_traces_exporter": "otlp_http",
        "otel_endpoint": collector.http_endpoint,
        "otel_headers": f"authorization={COLLECTOR_TOKEN}",
        "otel_sample_rate": 1.0,
        "otel_service_instance_id": instance,
        "otel_deployment_environment": "test",
        "otel_resource_attributes": "service.namespace=odock-tests,k8s.cluster.name=local",
    }
    values.update(overrides)
    return values


@pytest.fixture(scope="module")
def traced(module_settings: SettingsFactory, collector: OtlpCollector) -> Iterator[Gateway]:
    """The module's gateway, tracing everything to the collector over OTLP/HTTP."""
    app = create_app(module_settings(**tracing_on(collector, "traced-http")))
    gateway = Gateway(server=ThreadedServer(app).start(), app=app)
    yield gateway
    gateway.server.stop()


@pytest.fixture(scope="module")
def tenant(traced: Gateway, upstream: FakeOpenAI) -> Tenant:
    """A tenant whose model is served by the fake OpenAI upstream."""
    return openai_tenant(traced, upstream)


def new_request_id() -> str:
    """A request id no other test uses."""
    return "trace-test-" + secrets.token_hex(6)


def request_trace(
    gateway: Gateway,
    collector: OtlpCollector,
    request_id: str,
    complete: Callable[[list[ReceivedSpan]], bool] = lambda spans: True,
) -> list[ReceivedSpan]:
    """The spans of the trace of ``request_id`` once its SERVER span and ``complete(spans)`` are in."""
    tracing = gateway.runtime.tracing
    assert tracing is not None
    deadline = time.monotonic() + SPANS_WITHIN_SECONDS
    while True:
        # The SERVER span ends once the request has unwound, just after the client has its answer.
        assert tracing.flush(), "the span processor did not flush in time"
        server = [s for s in collector.spans() if s.attributes.get("gateway.request_id") == request_id]
        if server:
            spans = collector.spans(server[0].trace_id)
            if complete(spans):
                return spans
        if time.monotonic() > deadline:
            raise AssertionError(f"no complete trace of {request_id} within {SPANS_WITHIN_SECONDS} s")
        time.sleep(0.02)


def named(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    """The only span called ``name``."""
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans {name!r} among {sorted(s.name for s in spans)}"
    return found[0]


def server_span(spans: list[ReceivedSpan]) -> ReceivedSpan:
    """The trace's SERVER span."""
    (found,) = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    return found


def chat(gateway: Gateway, secret: str, model: str, request_id: str, **options: Any) -> Any:
    """A chat completion through the official SDK with our own request id."""
    headers = {"x-request-id": request_id, **options.pop("extra_headers", {})}
    return sdk(gateway, secret).chat.completions.create(
        model=model, messages=MESSAGES, extra_headers=headers, **options
    )


def parent_of(traceparent: str) -> tuple[str, str, bool]:
    """(trace id, parent span id, sampled) of a W3C traceparent (other flags, e.g. random, aside)."""
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    return trace_id, span_id, bool(int(flags, 16) & 1)


def ended(spans: list[ReceivedSpan], *names: str) -> bool:
    """Whether every span named is in."""
    return {*names} <= {s.name for s in spans}


# --- the span tree ----------------------------------------------------------------------------
def test_a_chat_call_is_a_server_span_with_a_span_per_stage_and_a_client_span_upstream(
    traced: Gateway, tenant: Tenant, collector: OtlpCollector, upstream: FakeOpenAI
) -> None:
    """The SERVER span carries the HTTP and gen_ai attributes; stages are its children; the upstream
    attempt is a CLIENT span under the upstream stage, and its context reached the upstream."""
    request_id = new_request_id()
    chat(traced, tenant.secret, tenant.model, request_id)
    spans = request_trace(traced, collector, request_id, lambda s: any(x.kind == SPAN_KIND_CLIENT for x in s))

    server = server_span(spans)
    assert server.name == "POST /v1/chat/completions"
    assert server.parent_span_id is None
    assert server.attributes == {
        "http.request.method": "POST",
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "gateway.request_id": request_id,
        "gateway.stream": False,
        "gateway.model": tenant.model,
        "organization.id": tenant.organisation_id,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": tenant.model,
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": USAGE["prompt_tokens"],
        "gen_ai.usage.output_tokens": USAGE["completion_tokens"],
    }
    assert server.status_code != STATUS_ERROR
    stages = [s for s in spans if s.parent_span_id == server.span_id]
    names = [s.name for s in sorted(stages, key=lambda s: s.start_time_unix_nano)]
    assert names[:4] == [
        "gateway.record_usage",
        "gateway.ratelimit_pre_auth",
        "gateway.authenticate",
        "gateway.ratelimit_early",
    ]
    assert names[-2:] == ["gateway.record_intent", "gateway.call_upstream"]
    assert {"gateway.decode_request", "gateway.resolve_model", "gateway.resolve_provider"} <= set(names)
    early = named(spans, "gateway.ratelimit_early").event("gateway.ratelimit.decision")
    assert early.attributes == {"gateway.ratelimit.stage": "ratelimit_early", "gateway.decision": "allow"}

    client = named(spans, f"chat {tenant.model}")
    assert client.kind == SPAN_KIND_CLIENT
    assert client.parent_span_id == named(spans, "gateway.call_upstream").span_id
    assert client.attributes["gen_ai.provider.name"] == "openai"
    assert client.attributes["gen_ai.request.model"] == tenant.model
    assert client.attributes["server.address"] == "127.0.0.1"
    assert client.attributes["server.port"] == upstream.port
    assert client.attributes["gen_ai.usage.input_tokens"] == USAGE["prompt_tokens"]
    sent = [r for r in upstream.requests if r.headers.get("x-request-id") == request_id]
    assert len(sent) == 1
    assert parent_of(sent[0].headers["traceparent"]) == (server.trace_id, client.span_id, True)

    assert server.resource["service.name"] == "odock"
    assert server.resource["service.instance.id"] == "traced-http"
    assert server.resource["deployment.environment.name"] == "test"
    assert server.resource["service.namespace"] == "odock-tests"
    assert server.resource["k8s.cluster.name"] == "local"
    assert server.resource["service.version"]
    exports = collector.export_headers("http")
    assert [h.get("authorization") for h in exports] == [COLLECTOR_TOKEN] * len(exports)


def test_the_usage_record_carries_the_trace_id(
    traced: Gateway, tenant: Tenant, collector: OtlpCollector
) -> None:
    """The sampled request's trace id is on its usage record, as the control-plane API shows it."""
    request_id = new_request_id()
    chat(traced, tenant.secret, tenant.model, request_id)
    trace_id = server_span(request_trace(traced, collector, request_id)).trace_id
    record = only_usage_record(traced, request_id)
    assert record.trace_id == trace_id
    control_plane = ControlPlaneUnderTest(traced)
    try:
        path = f"/api/organisations/{tenant.organisation_id}/usage/records"
        detail = control_plane.admin.get(f"{path}/{record.id}").json()
        listed = control_plane.admin.get(path, params={"q": request_id}).json()["items"]
    finally:
        control_plane.close()
    assert detail["trace_id"] == trace_id
    assert [row["trace_id"] for row in listed] == [trace_id]


def test_a_client_traceparent_is_continued_and_its_tracestate_sent_upstream(
    traced: Gateway, tenant: Tenant, collector: OtlpCollector, upstream: FakeOpenAI
) -> None:
    """The request span is a child of the client's span in the client's trace; the upstream gets
    the same trace (and the client's tracestate) with the gateway's CLIENT span as parent."""
    request_id = new_request_id()
    parent = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01", "tracestate": "vendor=abc"}
    chat(traced, tenant.secret, tenant.model, request_id, extra_headers=parent)
    spans = request_trace(traced, collector, request_id, lambda s: any(x.kind == SPAN_KIND_CLIENT for x in s))
    server = server_span(spans)
    assert (server.trace_id, server.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    client = named(spans, f"chat {tenant.model}")
    (sent,) = [r for r in upstream.requests if r.headers.get("x-request-id") == request_id]
    assert parent_of(sent.headers["traceparent"]) == (CLIENT_TRACE, client.span_id, True)
    assert sent.headers["tracestate"] == "vendor=abc"
    assert only_usage_record(traced, request_id).trace_id == CLIENT_TRACE


def test_a_stream_records_its_first_token(traced: Gateway, tenant: Tenant, collector: OtlpCollector) -> None:
    """A streamed answer's SERVER span has a gen_ai.first_token event within the request's time."""
    request_id = new_request_id()
    stream = chat(traced, tenant.secret, tenant.model, request_id, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    spans = request_trace(traced, collector, request_id, lambda s: ended(s, f"chat {tenant.model}"))
    server = server_span(spans)
    first = server.event("gen_ai.first_token")
    assert server.start_time_unix_nano < first.time_unix_nano < server.end_time_unix_nano
    assert server.attributes["gateway.stream"] is True
    client = named(spans, f"chat {tenant.model}")
    assert client.start_time_unix_nano < first.time_unix_nano


def test_a_rate_limit_rejection_is_an_event_and_the_status_of_its_stage(
    traced: Gateway, collector: OtlpCollector, upstream: FakeOpenAI
) -> None:
    """A request over the key's per-minute limit: the early gate's span says reject, the SERVER
    span has the 429 and its code, and no upstream span exists."""
    limited = openai_tenant(traced, upstream)
    policy = {"ratelimit": {"requests": {"per_minute": 1}}}
    traced.run(traced.runtime.control.keys.update(limited.key_id, policies=policy))
    chat(traced, limited.secret, limited.model, new_request_id())
    request_id = new_request_id()
    with pytest.raises(openai.RateLimitError) as refused:
        chat(traced, limited.secret, limited.model, request_id)
    spans = request_trace(traced, collector, request_id)
    server = server_span(spans)
    assert server.attributes["http.response.status_code"] == 429
    assert server.attributes["error.type"] == refused.value.code
    assert server.status_code != STATUS_ERROR  # a client error is not the server's failure
    gate = named(spans, "gateway.ratelimit_early")
    assert gate.status_code == STATUS_ERROR
    assert gate.event("gateway.ratelimit.decision").attributes == {
        "gateway.ratelimit.stage": "ratelimit_early",
        "gateway.decision": "reject",
        "error.type": refused.value.code,
    }
    assert not [s for s in spans if s.kind == SPAN_KIND_CLIENT or s.name == "gateway.call_upstream"]


def test_a_routed_retry_is_an_event_between_two_client_spans_and_the_budget_is_traced(
    traced: Gateway, collector: OtlpCollector, scripted: ScriptedUpstream
) -> None:
    """A failover after a 503: two CLIENT spans (the first failed), a gateway.retry event with the
    failure's code, and the budget reserved on the way in and settled on the way out."""
    policy = {
        "strategy": "failover",
        "candidates": [{"modelName": "primary"}, {"modelName": "backup"}],
        "failoverOn": ["5xx"],
        "maxRetries": 1,
    }
    routed = routing_tenant(
        traced,
        scripted.base_url + "/v1",
        {"primary": ("main", 1.0), "backup": ("backup", 2.0)},
        policy=policy,
    )
    scripted.script(routed.slug("primary"), fail(503))
    request_id = new_request_id()
    answer = routed.client().chat.completions.create(
        model="primary", messages=MESSAGES, max_tokens=5, extra_headers={"x-request-id": request_id}
    )
    assert answer.choices[0].message.content
    primary, backup = f"chat {routed.slug('primary')}", f"chat {routed.slug('backup')}"
    spans = request_trace(traced, collector, request_id, lambda s: ended(s, primary, backup))

    failed, answered = named(spans, primary), named(spans, backup)
    assert failed.status_code == STATUS_ERROR
    assert answered.status_code != STATUS_ERROR
    attempts = only_usage_record(traced, request_id).routing["attempts"]
    code = attempts[0]["error"]["code"]
    assert failed.attributes["error.type"] == code
    call = named(spans, "gateway.call_upstream")
    assert failed.parent_span_id == answered.parent_span_id == call.span_id
    retry = call.event("gateway.retry")
    assert retry.attributes == {
        "error.type": code,
        "gateway.retry_count": 1,
        "gen_ai.request.model": routed.slug("backup"),
    }
    assert failed.end_time_unix_nano <= retry.time_unix_nano <= answered.start_time_unix_nano
    # The upstream saw each attempt in this trace, each a child of its own CLIENT span.
    trace_id = server_span(spans).trace_id
    parents = [
        parent_of(r.headers["traceparent"])
        for r in scripted.requests
        if trace_id in r.headers.get("traceparent", "")
    ]
    assert parents == [(trace_id, failed.span_id, True), (trace_id, answered.span_id, True)]

    # Embedded: the budget stage has its span; with Redis it shares one with the final rate-limit gate.
    (budgets,) = [s for s in spans if s.name.startswith("gateway.") and "budgets" in s.name]
    assert budgets.event("gateway.budget.reserved").attributes == {"gateway.budget.lines": 1}
    assert server_span(spans).event("gateway.budget.settled").attributes == {"gateway.budget.lines": 1}


# --- other exporters and sampling ------------------------------------------------------------
def test_the_grpc_exporter_delivers_the_same_spans(
    gateway_factory: GatewayFactory,
    module_settings: SettingsFactory,
    collector: OtlpCollector,
    upstream: FakeOpenAI,
) -> None:
    """With otlp_grpc the spans reach the collector's gRPC door, with the configured headers."""
    settings = tracing_on(
        collector, "traced-grpc", otel_traces_exporter="otlp_grpc", otel_endpoint=collector.grpc_endpoint
    )
    gateway = gateway_factory(module_settings(**settings))
    tenant = openai_tenant(gateway, upstream)
    request_id = new_request_id()
    chat(gateway, tenant.secret, tenant.model, request_id)
    spans = request_trace(gateway, collector, request_id, lambda s: ended(s, f"chat {tenant.model}"))
    assert {s.door for s in spans} == {"grpc"}
    assert server_span(spans).resource["service.instance.id"] == "traced-grpc"
    exports = collector.export_headers("grpc")
    assert exports
    assert [h.get("authorization") for h in exports] == [COLLECTOR_TOKEN] * len(exports)


def test_a_sample_rate_of_zero_exports_nothing_unless_the_client_sampled(
    gateway_factory: GatewayFactory,
    module_settings: SettingsFactory,
    collector: OtlpCollector,
    upstream: FakeOpenAI,
) -> None:
    """At rate 0 a request of its own is neither exported nor linked from its usage record; a
    client's sampled traceparent is still honoured (parent-based sampling)."""
    gateway = gateway_factory(module_settings(**tracing_on(collector, "unsampled", otel_sample_rate=0.0)))
    tenant = openai_tenant(gateway, upstream)
    dropped = new_request_id()
    chat(gateway, tenant.secret, tenant.model, dropped)
    kept = new_request_id()
    trace = secrets.token_hex(16)
    chat(
        gateway,
        tenant.secret,
        tenant.model,
        kept,
        extra_headers={"traceparent": f"00-{trace}-{CLIENT_SPAN}-01"},
    )
    spans = request_trace(gateway, collector, kept, lambda s: ended(s, f"chat {tenant.model}"))
    assert server_span(spans).trace_id == trace
    # Everything this gateway exported belongs to the client's sampled trace.
    exported = {s.trace_id for s in collector.spans() if s.resource.get("service.instance.id") == "unsampled"}
    assert exported == {trace}
    assert only_usage_record(gateway, dropped).trace_id is None
    assert only_usage_record(gateway, kept).trace_id == trace


# --- tracing off --------------------------------------------------------------------------------
OFF_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from odock.app import create_app
    from odock.providers.tables import ProviderType
    from odock.settings import load_settings

    async def main():
        app = create_app(load_settings(data_dir=sys.argv[1], demo=False))
        await app.startup()
        control = app.runtime.control
        org = await control.tenancy.create_organisation("off")
        provider = await control.providers.create(org.id, "mock", ProviderType.MOCK)
        await control.models.create(org.id, "m", provider_id=provider.id)
        issued = await control.keys.create(org.id, "k", models=["m"])
        sent = []

        body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'

        async def receive():
            return {"type": "http.request", "body": body}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
            "headers": [(b"authorization", b"Bearer " + issued.secret.encode()),
                        (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
        }
        await app(scope, receive, send)
        await app.shutdown()
        status = sent[0]["status"]
        loaded = sorted(m for m in sys.modules if m.startswith(TRACING_MODULES))
        print(status, *loaded)

    asyncio.run(main())
    """
)
# What tracing would load: Odock's tracing modules, OpenTelemetry's trace SDK and its exporters.
# ("opentelemetry" alone is not the measure: when it is installed, redis-py imports its API and
# metrics SDK, and FastAPI its propagators, whatever Odock does.)
TRACING_MODULES = (
    "odock.telemetry.tracing",
    "odock.telemetry.spans",
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter",
)


def run_off_script(data_dir: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    """Run a request through an app in a fresh interpreter: (HTTP status, tracing modules loaded)."""
    data_dir.mkdir()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("ODOCK_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", f"TRACING_MODULES = {TRACING_MODULES!r}\n{OFF_SCRIPT}", str(data_dir)],
        env={**inherited, "PYTHONPATH": str(SRC), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status, *loaded = done.stdout.split()
    return int(status), loaded


def test_with_tracing_off_opentelemetry_tracing_is_never_imported(
    tmp_path: Path, collector: OtlpCollector
) -> None:
    """A gateway started with the defaults serves a model call without loading Odock's tracing or
    OpenTelemetry's trace SDK, exporters and propagator (the same check sees them once tracing is on)."""
    assert run_off_script(tmp_path / "off", {}) == (200, [])
    on = {"ODOCK_OTEL_TRACES_EXPORTER": "otlp_http", "ODOCK_OTEL_ENDPOINT": collector.http_endpoint}
    status, loaded = run_off_script(tmp_path / "on", on)
    assert status == 200
    assert "odock.telemetry.spans" in loaded
    assert "opentelemetry.sdk.trace" in loaded
