"""Every attempt is governed: a fallback model's own limits are admitted for it, and the key's
tokens per minute are counted once, for what the answering attempt used."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import Gateway
from tests.fakes.scripted_upstream import ScriptedUpstream, fail
from tests.support.routing import COMPLETION, PROMPT, routing_tenant

POLICY = {
    "strategy": "failover",
    "candidates": [{"modelName": "primary"}, {"modelName": "backup"}],
    "maxRetries": 1,
}
MODELS = {"primary": ("main", 1.0), "backup": ("backup", 1.0)}


def test_the_fallback_model_answers_to_its_own_request_limit(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """The backup allows one request a minute: the first failover uses it, the second is refused."""
    tenant = routing_tenant(
        routing_gateway,
        upstream.base_url + "/v1",
        MODELS,
        policy=POLICY,
        model_policies={"backup": {"ratelimit": {"requests": {"per_minute": 1}}}},
    )
    upstream.otherwise(tenant.slug("primary"), fail(500))
    assert tenant.chat("primary").headers["x-odock-route-model"] == "backup"
    with pytest.raises(openai.RateLimitError) as caught:
        tenant.chat("primary")
    error = caught.value.response.json()["error"]
    assert error["code"] == "rpm_exceeded"
    assert [(a["model"], a["outcome"]) for a in error["attempts"]] == [
        ("primary", "failed"),
        ("backup", "refused"),
    ]
    assert upstream.calls(tenant.slug("backup")) == 1
    assert tenant.held() == 0


def test_tokens_per_minute_count_the_answering_attempt_once(
    routing_gateway: Gateway, upstream: ScriptedUpstream
) -> None:
    """A key minute of two answers' tokens holds exactly two failed-over calls, then refuses."""
    per_call = PROMPT + COMPLETION
    tenant = routing_tenant(
        routing_gateway,
        upstream.base_url + "/v1",
        MODELS,
        policy=POLICY,
        key_policies={"ratelimit": {"tokens": {"per_minute": 2 * per_call}}},
    )
    upstream.otherwise(tenant.slug("primary"), fail(500))
    for _ in range(2):
        assert tenant.chat("primary").headers["x-odock-route-model"] == "backup"
    with pytest.raises(openai.RateLimitError) as caught:
        tenant.chat("primary")
    assert caught.value.code == "tpm_exceeded"
    assert upstream.calls(tenant.slug("primary")) == 2  # refused before any call
