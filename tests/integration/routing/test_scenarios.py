"""The failover scenarios: one upstream behaviour each, the client outcome expected, in bounded time.

A failover policy sends ``primary`` (1 USD per 1K tokens, on provider ``main`` whose first-byte and
idle timeouts are half a second) to ``backup`` (2 USD per 1K, on provider ``backup``). For every
scenario the client's answer, the usage record's attempts and its cost (what the upstream that
answered charged) are checked, and the budget must hold nothing once the call has ended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Gateway
from tests.fakes.scripted_upstream import (
    ScriptedUpstream,
    Step,
    cut_after_chunks,
    cut_before_first_chunk,
    fail,
    malformed_json,
    ok,
    refused_port,
    slow_first_byte,
    stall_after_headers,
    stall_before_headers,
)
from tests.support.governance import bearer
from tests.support.routing import MAX_TOKENS, MESSAGES, RoutingTenant, cost, request_id_of, routing_tenant

PRIMARY_PRICE, BACKUP_PRICE = 1.0, 2.0
BOUND_MS = 500  # the main provider's first-byte and idle timeouts
TIMEOUTS = {"first_byte_timeout_ms": BOUND_MS, "idle_timeout_ms": BOUND_MS}
SETTLED_WITHIN_SECONDS = 8.0  # any scenario, stalls included, ends well within this
POLICY: dict[str, Any] = {
    "strategy": "failover",
    "candidates": [{"modelName": "primary"}, {"modelName": "backup"}],
    "failoverOn": ["5xx", "timeout"],
    "maxRetries": 1,
}


def tenant_for(
    gateway: Gateway, upstream: ScriptedUpstream, *, policy: dict[str, Any] = POLICY, **main: Any
) -> RoutingTenant:
    """Primary on ``main`` (with ``main``'s create options), backup on ``backup``."""
    providers = {"main": {"config": dict(TIMEOUTS), "timeout_ms": 5_000, **main}, "backup": {}}
    models = {"primary": ("main", PRIMARY_PRICE), "backup": ("backup", BACKUP_PRICE)}
    return routing_tenant(gateway, upstream.base_url + "/v1", models, policy=policy, providers=providers)


@dataclass(frozen=True)
class Scenario:
    """What the primary does, and whether the call streams."""

    name: str
    primary: Callable[[], Step]
    stream: bool
    main: dict[str, Any] | None = None  # provider options replacing the defaults (a dead address)


FAILOVERS = [
    Scenario("500 then the backup", lambda: fail(500), stream=False),
    Scenario("503 then the backup, streamed", lambda: fail(503), stream=True),
    Scenario("stall before headers", stall_before_headers, stream=False),
    Scenario("stall before headers, streamed", stall_before_headers, stream=True),
    Scenario("stall after headers, streamed", stall_after_headers, stream=True),
    Scenario("stream cut before the first chunk", cut_before_first_chunk, stream=True),
    Scenario("first byte beyond the timeout", lambda: slow_first_byte(2.0), stream=True),
    Scenario("malformed JSON", malformed_json, stream=False),
    Scenario("malformed JSON, streamed", malformed_json, stream=True),
]


def call(tenant: RoutingTenant, *, stream: bool) -> tuple[str, str, httpx.Headers]:
    """One call for ``primary``: (answer text, request id, response headers)."""
    client = tenant.client(timeout=30)
    if not stream:
        raw = client.chat.completions.with_raw_response.create(
            model="primary", messages=MESSAGES, max_tokens=MAX_TOKENS
        )
        answer = raw.parse()
        return answer.choices[0].message.content or "", request_id_of(raw), raw.headers
    with client.chat.completions.with_streaming_response.create(
        model="primary",
        messages=MESSAGES,
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)
        return text, request_id_of(response), response.headers


@pytest.mark.parametrize("scenario", FAILOVERS, ids=lambda s: s.name)
def test_failover_serves_from_the_backup(
    routing_gateway: Gateway, upstream: ScriptedUpstream, scenario: Scenario
) -> None:
    """The primary fails its way; the backup answers, in bounded time, billed at its price."""
    tenant = tenant_for(routing_gateway, upstream, **(scenario.main or {}))
    upstream.script(tenant.slug("primary"), scenario.primary())
    upstream.script(tenant.slug("backup"), ok("from the backup"))
    started = time.monotonic()
    text, request_id, headers = call(tenant, stream=scenario.stream)
    elapsed = time.monotonic() - started
    assert text == "from the backup"
    assert elapsed < SETTLED_WITHIN_SECONDS
    assert headers["x-odock-route-model"] == "backup"
    assert headers["x-odock-route-provider"] == "backup"
    assert headers["x-odock-route-attempts"] == "2"
    record = tenant.record(request_id)
    routing = record.routing
    assert routing["rerouted"] is True
    assert [(a["model"], a["outcome"]) for a in routing["attempts"]] == [
        ("primary", "failed"),
        ("backup", "success"),
    ]
    assert routing["final"] == {"model": "backup", "provider": "backup"}
    assert record.model == "backup"
    assert record.status == "success"
    assert record.total_cost_nanos_usd == cost(BACKUP_PRICE)
    assert tenant.held() == 0
    assert tenant.used() == cost(BACKUP_PRICE)
    print(f"routing scenario '{scenario.name}': answered by the backup in {elapsed * 1000:.0f} ms")


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_connect_refused_fails_over(
    routing_gateway: Gateway, upstream: ScriptedUpstream, stream: bool
) -> None:
    """A primary nobody listens for is passed at once."""
    tenant = tenant_for(routing_gateway, upstream, base_url=f"http://127.0.0.1:{refused_port()}/v1")
    upstream.script(tenant.slug("backup"), ok("from the backup"))
    started = time.monotonic()
    text, request_id, _ = call(tenant, stream=stream)
    elapsed_ms = (time.monotonic() - started) * 1000
    assert text == "from the backup"
    kind = "stream" if stream else "unary"
    print(f"routing scenario 'connect refused' ({kind}): answered by the backup in {elapsed_ms:.0f} ms")
    attempts = tenant.record(request_id).routing["attempts"]
    assert attempts[0]["error"]["code"] == "upstream_unavailable"
    assert tenant.held() == 0


def test_tls_failure_fails_over(
    routing_gateway: Gateway, upstream: ScriptedUpstream, tls_upstream: ScriptedUpstream
) -> None:
    """A primary whose certificate the gateway cannot verify is passed like an unreachable one."""
    https = tls_upstream.base_url.replace("http://", "https://") + "/v1"
    tenant = tenant_for(routing_gateway, upstream, base_url=https)
    upstream.script(tenant.slug("backup"), ok("from the backup"))
    started = time.monotonic()
    text, request_id, _ = call(tenant, stream=False)
    elapsed_ms = (time.monotonic() - started) * 1000
    assert text == "from the backup"
    print(f"routing scenario 'TLS failure': answered by the backup in {elapsed_ms:.0f} ms")
    assert tls_upstream.calls(tenant.slug("primary")) == 0  # the handshake never completed
    assert tenant.record(request_id).routing["attempts"][0]["error"]["code"] == "upstream_unavailable"


def test_first_byte_within_the_timeout_is_not_rerouted(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """A slow but timely first byte is waited for: the primary answers."""
    tenant = tenant_for(routing_gateway, upstream)
    upstream.script(tenant.slug("primary"), slow_first_byte(0.1))
    text, request_id, headers = call(tenant, stream=True)
    assert text == "Hello from the scripted upstream."
    assert headers["x-odock-route-attempts"] == "1"
    record = tenant.record(request_id)
    assert record.routing["rerouted"] is False
    assert record.total_cost_nanos_usd == cost(PRIMARY_PRICE)
    assert upstream.calls(tenant.slug("backup")) == 0


def test_a_stream_cut_after_its_first_chunk_ends_in_band(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """Once a chunk reached the client there is no failover: an in-band error, no [DONE]."""
    tenant = tenant_for(routing_gateway, upstream)
    upstream.script(tenant.slug("primary"), cut_after_chunks(2))
    body = {"model": "primary", "messages": MESSAGES, "max_tokens": MAX_TOKENS, "stream": True}
    with httpx.stream(
        "POST",
        routing_gateway.base_url + "/v1/chat/completions",
        json=body,
        headers=bearer(tenant.secret),
        timeout=30,
    ) as reply:
        assert reply.status_code == 200
        events = [line.removeprefix("data: ") for line in reply.iter_lines() if line.startswith("data: ")]
        request_id = reply.headers["x-request-id"]
    assert "[DONE]" not in events
    assert '"upstream_stream_interrupted"' in events[-1]
    chunks = [json.loads(event) for event in events[:-1]]
    assert "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
    )  # some text went out
    assert upstream.calls(tenant.slug("backup")) == 0
    record = tenant.record(request_id)
    assert record.status == "error"
    assert record.error_code == "upstream_stream_interrupted"
    assert [a["outcome"] for a in record.routing["attempts"]] == ["success"]
    assert tenant.held() == 0


def test_a_trigger_not_listed_is_not_failed_over(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """A 429 without the rate_limit trigger reaches the client, Retry-After and all."""
    tenant = tenant_for(routing_gateway, upstream)
    upstream.script(tenant.slug("primary"), fail(429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        call(tenant, stream=False)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "upstream_rate_limited"
    assert upstream.calls(tenant.slug("backup")) == 0
    assert tenant.held() == 0


def test_rate_limit_trigger_fails_over(routing_gateway: Gateway, upstream: ScriptedUpstream) -> None:
    """With ``rate_limit`` listed, an upstream 429 moves to the backup."""
    policy = {**POLICY, "failoverOn": ["rate_limit"]}
    tenant = tenant_for(routing_gateway, upstream, policy=policy)
    upstream.script(tenant.slug("primary"), fail(429, retry_after=7))
    text, _, headers = call(tenant, stream=False)
    assert text == "Hello from the scripted upstream."
    assert headers["x-odock-route-model"] == "backup"


def test_last_429_is_relayed_with_its_retry_after(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """When every candidate answered 429, the client gets the last one's Retry-After."""
    policy = {**POLICY, "failoverOn": ["rate_limit"]}
    tenant = tenant_for(routing_gateway, upstream, policy=policy)
    upstream.script(tenant.slug("primary"), fail(429, retry_after=7))
    upstream.script(tenant.slug("backup"), fail(429, retry_after=3))
    with pytest.raises(openai.RateLimitError) as caught:
        call(tenant, stream=False)
    assert caught.value.response.headers["retry-after"] == "3"
    body = caught.value.response.json()["error"]
    assert "primary via main: failed" in body["message"]
    assert "backup via backup: failed" in body["message"]
    assert tenant.held() == 0


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_all_candidates_down_lists_the_attempts(
    routing_gateway: Gateway, upstream: ScriptedUpstream, stream: bool
) -> None:
    """Nothing answers: an honest 502 naming every attempt, nothing billed, nothing held."""
    tenant = tenant_for(routing_gateway, upstream)
    upstream.script(tenant.slug("primary"), fail(500))
    upstream.script(tenant.slug("backup"), fail(502))
    body = {"model": "primary", "messages": MESSAGES, "max_tokens": MAX_TOKENS, "stream": stream}
    reply = httpx.post(
        routing_gateway.base_url + "/v1/chat/completions",
        json=body,
        headers=bearer(tenant.secret),
        timeout=30,
    )
    assert reply.status_code == 502
    error = reply.json()["error"]
    assert error["code"] == "upstream_error"
    assert [(a["model"], a["error"]["status"]) for a in error["attempts"]] == [
        ("primary", 500),
        ("backup", 502),
    ]
    record = tenant.record(reply.headers["x-request-id"])
    assert record.status == "error"
    assert record.routing["final"] is None
    assert (record.total_cost_nanos_usd or 0) == 0
    assert tenant.held() == 0
    assert tenant.used() == 0


def test_a_pricier_fallback_beyond_the_budget_is_refused(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """The backup's estimate does not fit what is left: refused with the reason, never called."""
    models = {"primary": ("main", PRIMARY_PRICE), "backup": ("backup", 50.0)}
    estimate_primary = cost(
        PRIMARY_PRICE, prompt=20, completion=MAX_TOKENS
    )  # generous: the estimate is smaller
    tenant = routing_tenant(
        routing_gateway, upstream.base_url + "/v1", models, policy=POLICY, budget_nanos=estimate_primary
    )
    upstream.script(tenant.slug("primary"), fail(500))
    with pytest.raises(openai.APIStatusError) as caught:
        call(tenant, stream=False)
    assert caught.value.status_code == 402
    error = caught.value.response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "backup via backup: refused (budget_exceeded" in error["message"]
    assert upstream.calls(tenant.slug("backup")) == 0
    assert tenant.held() == 0
    assert tenant.used() == 0


def test_a_pricier_fallback_that_fits_is_billed_at_its_price(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """The difference is held while the backup runs; the settlement is what the backup charged."""
    models = {"primary": ("main", PRIMARY_PRICE), "backup": ("backup", 50.0)}
    tenant = routing_tenant(routing_gateway, upstream.base_url + "/v1", models, policy=POLICY)
    upstream.script(tenant.slug("primary"), fail(500))
    text, request_id, _ = call(tenant, stream=False)
    assert text == "Hello from the scripted upstream."
    assert tenant.record(request_id).total_cost_nanos_usd == cost(50.0)
    assert tenant.held() == 0
    assert tenant.used() == cost(50.0)
