"""Spreading load: round robin per key, the weighted strategy, key pools (weighted and least busy)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import openai
import pytest

from odock.errors import UnprocessableEntity
from tests.conftest import Gateway
from tests.fakes.scripted_upstream import ScriptedUpstream, fail, ok, stall_before_headers
from tests.support.routing import RoutingTenant, routing_tenant

MODELS = {"a": ("main", 1.0), "b": ("backup", 1.0)}


def served_by(tenant: RoutingTenant, model: str, calls: int) -> list[str]:
    """The model that answered each of ``calls`` calls for ``model``."""
    return [tenant.chat(model).headers["x-odock-route-model"] for _ in range(calls)]


def test_round_robin_alternates_per_key(routing_gateway: Gateway, upstream: ScriptedUpstream) -> None:
    """Each key's calls alternate between the candidates, whatever the other key does."""
    policy = {"strategy": "round_robin", "candidates": [{"modelName": "a"}, {"modelName": "b"}]}
    tenant = routing_tenant(routing_gateway, upstream.base_url + "/v1", MODELS, policy=policy)
    first = served_by(tenant, "a", 6)
    assert first in (["a", "b"] * 3, ["b", "a"] * 3)
    other = routing_tenant(routing_gateway, upstream.base_url + "/v1", MODELS, policy=policy)
    assert Counter(served_by(other, "a", 4)) == {"a": 2, "b": 2}


def test_weighted_split_follows_the_weights(routing_gateway: Gateway, upstream: ScriptedUpstream) -> None:
    """Weights 3:1 send about three calls in four to the first candidate."""
    policy = {
        "strategy": "weighted",
        "candidates": [{"modelName": "a", "weight": 3}, {"modelName": "b", "weight": 1}],
    }
    tenant = routing_tenant(routing_gateway, upstream.base_url + "/v1", MODELS, policy=policy)
    split = Counter(served_by(tenant, "a", 200))
    # Binomial(200, 0.75): the standard deviation is 6.1 calls; 30 is about five of them.
    assert abs(split["a"] - 150) <= 30, split
    print(f"weighted 3:1 over 200 calls: {dict(split)}")


def test_routing_is_off_without_the_organisation_switch(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """A key's policy is kept but not applied while the organisation's switch is off."""
    policy = {"strategy": "failover", "candidates": [{"modelName": "a"}, {"modelName": "b"}], "maxRetries": 1}
    tenant = routing_tenant(
        routing_gateway, upstream.base_url + "/v1", MODELS, policy=policy, routing_on=False
    )
    upstream.script(tenant.slug("a"), fail(500))
    reply = tenant.client().chat.completions.with_raw_response
    with pytest.raises(openai.APIStatusError) as caught:
        reply.create(model="a", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert caught.value.status_code == 502
    assert upstream.calls(tenant.slug("b")) == 0


def test_candidates_the_key_may_not_call_are_left_out(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """Routing never widens access: an ungranted candidate is never called."""
    models = {**MODELS, "secret": ("backup", 1.0)}
    policy = {
        "strategy": "failover",
        "candidates": [{"modelName": "a"}, {"modelName": "secret"}],
        "maxRetries": 1,
    }
    tenant = routing_tenant(routing_gateway, upstream.base_url + "/v1", models, policy=policy)
    control = routing_gateway.runtime.control
    secret_model = routing_gateway.run(control.models.named(tenant.organisation_id, "secret"))
    routing_gateway.run(control.keys.remove_grant(tenant.key_id, secret_model.id))
    upstream.script(tenant.slug("a"), fail(500))
    with pytest.raises(openai.APIStatusError) as caught:
        tenant.chat("a")
    assert caught.value.status_code == 502
    assert upstream.calls(tenant.slug("secret")) == 0


def pool_tenant(
    gateway: Gateway, upstream: ScriptedUpstream, weight: int = 1, **config: Any
) -> tuple[RoutingTenant, str, str]:
    """Model ``pooled`` on provider ``main`` plus a deployment on ``backup`` with its own slug;
    returns the tenant and both slugs (own, pooled)."""
    tenant = routing_tenant(gateway, upstream.base_url + "/v1", {"pooled": ("main", 1.0)})
    control = gateway.runtime.control
    backup = tenant.providers["backup"]
    keys = gateway.run(control.provider_keys.listed(backup))
    other_slug = tenant.slug("pooled") + "-b"
    model = gateway.run(control.models.named(tenant.organisation_id, "pooled"))
    deployment = {
        "provider_id": backup,
        "provider_api_key_id": keys[0].id,
        "slug": other_slug,
        "weight": weight,
    }
    gateway.run(control.models.update(model.id, config={"deployments": [deployment], **config}))
    return tenant, tenant.slug("pooled"), other_slug


def test_a_pool_spreads_calls_over_its_deployments(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """Two deployments of weight 1: both serve, each with its own provider key."""
    tenant, own, pooled = pool_tenant(routing_gateway, upstream)
    providers = Counter(tenant.chat("pooled").headers["x-odock-route-provider"] for _ in range(60))
    assert set(providers) == {"main", "backup"}
    assert min(providers.values()) >= 15, providers  # Binomial(60, 1/2): 15 is 3.9 deviations off
    assert set(upstream.keys_used(own)) == {"sk-main"}
    assert set(upstream.keys_used(pooled)) == {"sk-backup"}


def test_a_pool_fails_over_to_its_other_deployment(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """Without any policy, a 5xx of one deployment moves the call to the other (weight 0: the
    pooled deployment is only ever second, so every call meets the failing one first)."""
    tenant, own, pooled = pool_tenant(routing_gateway, upstream, weight=0)
    upstream.otherwise(own, fail(500))
    upstream.otherwise(pooled, ok("from the pool"))
    for _ in range(2):
        raw = tenant.chat("pooled")
        assert raw.parse().choices[0].message.content == "from the pool"
        assert raw.headers["x-odock-route-attempts"] == "2"
    assert upstream.calls(own) == upstream.calls(pooled) == 2


def test_least_busy_sends_the_next_call_to_the_idle_deployment(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """While one deployment holds a call, the next goes to the other."""
    tenant, own, pooled = pool_tenant(routing_gateway, upstream, load_balancing="least_busy")
    upstream.otherwise(own, stall_before_headers())
    upstream.otherwise(pooled, stall_before_headers())
    held = threading.Thread(target=tenant.chat, args=("pooled",))
    held.start()
    try:
        upstream.wait_until(lambda fake: fake.calls(own) + fake.calls(pooled) == 1)
        busy = own if upstream.calls(own) else pooled
        idle = pooled if busy == own else own
        upstream.otherwise(idle, ok("idle"))
        raw = tenant.chat("pooled")
        assert raw.parse().choices[0].message.content == "idle"
    finally:
        upstream.release()
        held.join(30)


def test_deployments_are_validated(routing_gateway: Gateway, upstream: ScriptedUpstream) -> None:
    """A deployment naming another organisation's provider is refused, naming the field."""
    tenant = routing_tenant(routing_gateway, upstream.base_url + "/v1", {"pooled": ("main", 1.0)})
    other = routing_tenant(routing_gateway, upstream.base_url + "/v1", {"x": ("main", 1.0)})
    control = routing_gateway.runtime.control
    model = routing_gateway.run(control.models.named(tenant.organisation_id, "pooled"))
    foreign = {"deployments": [{"provider_id": other.providers["main"]}]}
    with pytest.raises(UnprocessableEntity) as caught:
        routing_gateway.run(control.models.update(model.id, config=foreign))
    assert caught.value.param == "config.deployments.0.provider_id"
    with pytest.raises(UnprocessableEntity) as bad_weight:
        routing_gateway.run(
            control.models.update(
                model.id, config={"deployments": [{"provider_id": tenant.providers["main"], "weight": -1}]}
            )
        )
    assert bad_weight.value.param == "config.deployments.0.weight"
