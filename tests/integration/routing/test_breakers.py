"""The circuit breaker: it opens after consecutive failures, skips the deployment while open, lets
one probe through once the cooldown is over, and closes when the deployment has recovered."""

from __future__ import annotations

import time

import httpx

from tests.conftest import Gateway
from tests.fakes.scripted_upstream import ScriptedUpstream, fail, ok
from tests.integration.routing.conftest import BREAKER_FAILURES, COOLDOWN_SECONDS
from tests.support.governance import bearer
from tests.support.routing import MAX_TOKENS, MESSAGES, RoutingTenant, routing_tenant

POLICY = {
    "strategy": "failover",
    "candidates": [{"modelName": "primary"}, {"modelName": "backup"}],
    "maxRetries": 1,
}
MODELS = {"primary": ("main", 1.0), "backup": ("backup", 1.0)}


def outcomes(tenant: RoutingTenant, request_id: str) -> list[tuple[str, str]]:
    """(model, outcome) of each attempt of a request."""
    return [(a["model"], a["outcome"]) for a in tenant.record(request_id).routing["attempts"]]


def test_circuit_opens_after_failures_and_closes_after_recovery(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """Three failures open it; skipped while open; a probe after the cooldown closes it."""
    tenant = routing_tenant(routing_gateway, upstream.base_url + "/v1", MODELS, policy=POLICY)
    primary = tenant.slug("primary")
    upstream.otherwise(primary, fail(500))
    for _ in range(BREAKER_FAILURES):
        assert tenant.chat("primary").headers["x-odock-route-model"] == "backup"
    opened = time.monotonic()  # (just after: the third failure opened it)
    assert upstream.calls(primary) == BREAKER_FAILURES

    # Open: the primary is skipped without a call.
    raw = tenant.chat("primary")
    assert raw.headers["x-odock-route-model"] == "backup"
    assert outcomes(tenant, raw.headers["x-request-id"]) == [("primary", "skipped"), ("backup", "success")]
    assert upstream.calls(primary) == BREAKER_FAILURES

    # The primary recovers; once the cooldown is over one call probes it and closes the circuit.
    upstream.otherwise(primary, ok("primary is back"))
    deadline = opened + COOLDOWN_SECONDS + 10
    while tenant.chat("primary").headers["x-odock-route-model"] != "primary":
        assert time.monotonic() < deadline, "the circuit never let a probe through"
    recovered = time.monotonic() - opened
    assert recovered >= COOLDOWN_SECONDS * 0.9  # not before the cooldown
    raw = tenant.chat("primary")
    assert outcomes(tenant, raw.headers["x-request-id"]) == [("primary", "success")]
    print(f"circuit breaker: primary served again {recovered * 1000:.0f} ms after the circuit opened")


def test_retry_after_opens_the_circuit_at_once(routing_gateway: Gateway, upstream: ScriptedUpstream) -> None:
    """An upstream that says when to come back is not called before then."""
    policy = {**POLICY, "failoverOn": ["rate_limit"]}
    tenant = routing_tenant(routing_gateway, upstream.base_url + "/v1", MODELS, policy=policy)
    primary = tenant.slug("primary")
    upstream.script(primary, fail(429, retry_after=30))
    assert tenant.chat("primary").headers["x-odock-route-model"] == "backup"
    raw = tenant.chat("primary")
    assert outcomes(tenant, raw.headers["x-request-id"]) == [("primary", "skipped"), ("backup", "success")]
    assert upstream.calls(primary) == 1


def test_every_circuit_open_answers_at_once(routing_gateway: Gateway, upstream: ScriptedUpstream) -> None:
    """When every target is cooling down the client hears so at once, with the shortest wait."""
    policy = {**POLICY, "failoverOn": ["rate_limit"]}
    tenant = routing_tenant(routing_gateway, upstream.base_url + "/v1", MODELS, policy=policy)
    upstream.script(tenant.slug("primary"), fail(429, retry_after=30))
    upstream.script(tenant.slug("backup"), fail(429, retry_after=20))
    assert post(routing_gateway, tenant).status_code == 429  # both answered 429: the last one's error
    answer = post(routing_gateway, tenant)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "upstream_cooling_down"
    assert 1 <= int(answer.headers["retry-after"]) <= 20
    assert upstream.calls(tenant.slug("primary")) == 1
    assert upstream.calls(tenant.slug("backup")) == 1
    assert tenant.held() == 0


def post(gateway: Gateway, tenant: RoutingTenant) -> httpx.Response:
    """One chat call for ``primary``, as raw HTTP."""
    body = {"model": "primary", "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    return httpx.post(
        gateway.base_url + "/v1/chat/completions", json=body, headers=bearer(tenant.secret), timeout=30
    )
