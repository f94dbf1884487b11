"""What ``record_model_call`` and the HTTP recorders count for exchanges the integration tests cannot
cheaply produce: routes that end without an answer, clients that leave, answers never sent.

Values are read from this process's registry before and after (the metric objects are shared).
"""

from __future__ import annotations

import time

from odock.errors import BudgetExceeded, UpstreamCoolingDown, UpstreamTimeout
from odock.llm.upstream import Endpoint, Usage
from odock.pipeline.exchange import Exchange
from odock.providers.catalog import Deployment, ResolvedModel
from odock.routing.route import FAILED, REFUSED, SKIPPED, Route
from odock.telemetry import metrics
from tests.support.metrics import counted
from tests.support.stages import exchange, provider_target, resolved_model

ATTEMPTS = "gateway_provider_requests_total"
DECISIONS = "gateway_routing_decisions_total"
STREAMS = "gateway_stream_sessions_total"


def mock_model() -> ResolvedModel:
    """A chat model on the mock provider (label ``mock``)."""
    return resolved_model(provider=provider_target(type="MOCK"))


def routed(model: ResolvedModel) -> tuple[Exchange, Route, Deployment]:
    """A routed exchange for ``model`` and the one deployment of its route."""
    route = Route(model, "failover", [model], frozenset({"5xx"}), max_attempts=2, delay_seconds=0)
    deployment = Deployment(id="d1", provider=model.provider, provider_key=None, slug=model.slug)
    return exchange(model=model, routing=route), route, deployment


def finished(ex: Exchange) -> Exchange:
    """The exchange as the runner leaves it for the ``after`` hooks."""
    ex.timings.finished = time.perf_counter()
    return ex


def test_a_route_whose_targets_all_cool_down_is_counted_cooling_down() -> None:
    """Every circuit open: a ``cooling_down`` decision, a skipped attempt, no upstream attempt."""
    ex, route, deployment = routed(mock_model())
    route.note(ex.model, deployment, SKIPPED, reason="circuit_open")  # type: ignore[arg-type]
    ex.fail(UpstreamCoolingDown())
    before = (
        counted(DECISIONS, decision="cooling_down"),
        counted("gateway_routing_attempts_total", outcome="skipped"),
    )
    called = counted(ATTEMPTS, provider="mock", endpoint="chat", outcome="error")
    metrics.record_model_call(finished(ex))
    after = (
        counted(DECISIONS, decision="cooling_down"),
        counted("gateway_routing_attempts_total", outcome="skipped"),
    )
    assert after == (before[0] + 1, before[1] + 1)
    assert counted(ATTEMPTS, provider="mock", endpoint="chat", outcome="error") == called


def test_a_route_whose_every_attempt_failed_or_was_refused_is_exhausted() -> None:
    """A failed call then a refused candidate: ``exhausted``, one failed upstream attempt with its code."""
    model = mock_model()
    ex, route, deployment = routed(model)
    route.begin()
    route.note(model, deployment, FAILED, UpstreamTimeout())
    route.note(model, deployment, REFUSED, UpstreamTimeout())
    ex.fail(UpstreamTimeout())
    exhausted = counted(DECISIONS, decision="exhausted")
    failed = counted(ATTEMPTS, provider="mock", endpoint="chat", outcome="error")
    timeouts = counted("gateway_provider_errors_total", provider="mock", code="upstream_timeout")
    metrics.record_model_call(finished(ex))
    assert counted(DECISIONS, decision="exhausted") == exhausted + 1
    assert counted(ATTEMPTS, provider="mock", endpoint="chat", outcome="error") == failed + 1
    assert counted("gateway_provider_errors_total", provider="mock", code="upstream_timeout") == timeouts + 1


def test_a_route_refused_before_its_first_call_has_no_decision() -> None:
    """A request refused by a gate before the routed call: no routing decision (the route never ran)."""
    ex, _route, _deployment = routed(mock_model())
    ex.fail(BudgetExceeded())
    before = [counted(DECISIONS, decision=d) for d in metrics.ROUTING_OUTCOMES]
    metrics.record_model_call(finished(ex))
    assert [counted(DECISIONS, decision=d) for d in metrics.ROUTING_OUTCOMES] == before


def test_a_client_that_left_before_the_answer_is_no_upstream_outcome() -> None:
    """The upstream was called but the client left first: neither a success nor an error upstream."""
    ex = exchange(model=mock_model())
    ex.timings.upstream_started = time.perf_counter()
    ex.disconnected()
    outcomes = [counted(ATTEMPTS, provider="mock", endpoint="chat", outcome=o) for o in ("success", "error")]
    metrics.record_model_call(finished(ex))
    assert [
        counted(ATTEMPTS, provider="mock", endpoint="chat", outcome=o) for o in ("success", "error")
    ] == outcomes


def test_a_stream_the_client_left_is_client_closed_with_its_usage() -> None:
    """A stream relayed until the client left: ``client_closed``, its attempt answered, its tokens counted."""
    ex = exchange(model=mock_model(), stream=True)
    now = time.perf_counter()
    ex.timings.upstream_started = ex.timings.upstream_answered = ex.timings.first_byte_sent = now
    ex.upstream_stream = object()  # type: ignore[assignment]
    ex.usage = Usage(7, 3, 10)
    ex.disconnected()
    closed = counted(STREAMS, provider="mock", outcome="client_closed")
    answered = counted(ATTEMPTS, provider="mock", endpoint="chat", outcome="success")
    tokens = counted("gateway_tokens_total", provider="mock", token_type="output")
    metrics.record_model_call(finished(ex))
    assert counted(STREAMS, provider="mock", outcome="client_closed") == closed + 1
    assert counted(ATTEMPTS, provider="mock", endpoint="chat", outcome="success") == answered + 1
    assert counted("gateway_tokens_total", provider="mock", token_type="output") == tokens + 3


def test_an_unknown_key_is_only_an_http_request() -> None:
    """Refused before a model was resolved: nothing of a model call is counted (and nothing fails)."""
    ex = exchange()
    ex.fail(UpstreamTimeout())  # any error: no model, no provider
    metrics.record_model_call(finished(ex))


def test_embeddings_and_gemini_generations_have_their_operation_names() -> None:
    """OpenTelemetry's GenAI operation names: embeddings, generate_content (Gemini), chat."""
    for provider, endpoint, operation in [
        ("OPENAI", Endpoint.EMBEDDINGS, "embeddings"),
        ("GOOGLE", Endpoint.CHAT, "generate_content"),
        ("ANTHROPIC", Endpoint.CHAT, "chat"),
        ("OPENAI", Endpoint.RESPONSES, "chat"),
    ]:
        ex = exchange(endpoint=endpoint, model=resolved_model(provider=provider_target(type=provider)))
        ex.timings.upstream_started = ex.timings.upstream_answered = time.perf_counter()
        labels = {"gen_ai_provider_name": provider.lower(), "gen_ai_operation_name": operation}
        before = counted("gen_ai_client_operation_duration_seconds_count", **labels)
        metrics.record_model_call(finished(ex))
        assert counted("gen_ai_client_operation_duration_seconds_count", **labels) == before + 1


def test_a_request_answered_nothing_counts_as_a_4xx() -> None:
    """Status 0 (the client left before any answer) is recorded as 499, a 4xx; in flight goes back."""
    before = counted("gateway_requests_total", route="other", status_class="4xx")
    in_flight = counted("gateway_requests_in_flight")
    started = metrics.http_request_started()
    assert counted("gateway_requests_in_flight") == in_flight + 1
    metrics.http_request_answered("other", 0, started)
    assert counted("gateway_requests_total", route="other", status_class="4xx") == before + 1
    assert counted("gateway_requests_in_flight") == in_flight
