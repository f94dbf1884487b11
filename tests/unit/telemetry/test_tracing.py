"""Tracing settings, the exporter's URL, the resource, and the console's trace links."""

from __future__ import annotations

import socket

import pytest

from odock.settings import SettingsError, load_settings, parse_pairs
from odock.telemetry.links import TraceLinks
from odock.telemetry.tracing import http_traces_url, resource


def test_pairs_are_split_trimmed_and_percent_decoded() -> None:
    """``k=v,k2=v2`` becomes a mapping; values are percent-decoded (OTEL_EXPORTER_OTLP_HEADERS form)."""
    assert parse_pairs(" authorization=Bearer%20abc , x-scope = team-1,,") == {
        "authorization": "Bearer abc",
        "x-scope": "team-1",
    }


def test_a_malformed_header_is_refused_without_repeating_it() -> None:
    """An entry without ``=`` stops startup; the message names the setting and position, not the text."""
    with pytest.raises(SettingsError) as refused:
        load_settings(otel_headers="authorization=ok,secret-token-value")
    message = str(refused.value)
    assert "otel_headers" in message
    assert "entry 2" in message
    assert "secret-token-value" not in message


def test_the_trace_url_template_must_name_the_trace_id() -> None:
    """A template without ``{trace_id}`` could never link to a trace: refused at startup."""
    with pytest.raises(SettingsError, match="trace_url_template"):
        load_settings(trace_url_template="http://jaeger:16686/search")
    assert load_settings(trace_url_template="").trace_url_template is None


def test_tracing_is_off_by_default() -> None:
    """The exporter defaults to none, the sample rate to 0.1 and the service name to odock."""
    settings = load_settings()
    assert (settings.otel_traces_exporter, settings.otel_sample_rate, settings.otel_service_name) == (
        "none",
        0.1,
        "odock",
    )


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        (None, "http://localhost:4318/v1/traces"),
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otlp.example.com/v1/traces", "https://otlp.example.com/v1/traces"),
    ],
)
def test_the_http_exporter_posts_to_v1_traces(endpoint: str | None, url: str) -> None:
    """The SDK's traces path is appended to the endpoint, unless it is already there."""
    assert http_traces_url(endpoint) == url


def test_the_resource_names_the_service_its_instance_and_environment() -> None:
    """Extra attributes are kept; the service's own ones win; the instance defaults to the host name."""
    settings = load_settings(
        otel_service_name="gateway-eu",
        otel_deployment_environment="staging",
        otel_resource_attributes="k8s.cluster.name=eu-1,service.name=ignored",
    )
    attributes = dict(resource(settings).attributes)
    assert attributes["service.name"] == "gateway-eu"
    assert attributes["service.instance.id"] == socket.gethostname()
    assert attributes["deployment.environment.name"] == "staging"
    assert attributes["k8s.cluster.name"] == "eu-1"
    assert attributes["service.version"]
    named = load_settings(otel_service_instance_id="pod-7")
    assert resource(named).attributes["service.instance.id"] == "pod-7"


def test_trace_links_need_a_template_and_a_trace_id() -> None:
    """The link puts the trace id in the template; without either there is none."""
    links = TraceLinks("http://localhost:16686/trace/{trace_id}")
    assert links.url("4bf92f3577b34da6a3ce929d0e0e4736") == (
        "http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert links.url(None) is None
    assert TraceLinks(None).url("4bf92f3577b34da6a3ce929d0e0e4736") is None
