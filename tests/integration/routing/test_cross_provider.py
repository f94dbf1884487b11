"""A route may cross providers where the gateway translates: a client of the Anthropic Messages
API whose Claude model fails is answered by an OpenAI-served backup, in the Messages format."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from anthropic.types import MessageParam

from odock.providers.tables import ProviderType
from tests.conftest import Gateway
from tests.fakes.anthropic_server import FakeAnthropic, running_fake_anthropic
from tests.fakes.scripted_upstream import ScriptedUpstream, ok
from tests.support.routing import cost, routing_tenant


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    """The fake Anthropic API (any key)."""
    with running_fake_anthropic(api_key=None) as fake:
        yield fake


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_a_failing_claude_falls_back_to_an_openai_model(
    routing_gateway: Gateway, upstream: ScriptedUpstream, claude: FakeAnthropic, stream: bool
) -> None:
    """/v1/messages for a Claude model answering 500: the OpenAI backup answers, translated."""
    policy = {
        "strategy": "failover",
        "candidates": [{"modelName": "claude"}, {"modelName": "backup"}],
        "maxRetries": 1,
    }
    providers = {"anthropic": {"type": ProviderType.ANTHROPIC, "base_url": claude.base_url}, "backup": {}}
    tenant = routing_tenant(
        routing_gateway,
        upstream.base_url + "/v1",
        {"claude": ("anthropic", 1.0), "backup": ("backup", 2.0)},
        policy=policy,
        providers=providers,
        slugs={"claude": "fake-error-500"},
    )
    upstream.script(tenant.slug("backup"), ok("from the backup"))
    client = anthropic.Anthropic(base_url=routing_gateway.base_url, api_key=tenant.secret, max_retries=0)
    messages: list[MessageParam] = [{"role": "user", "content": "hi"}]
    if stream:
        with client.messages.stream(model="claude", max_tokens=5, messages=messages) as events:
            text = events.get_final_text()
            headers = events.response.headers
    else:
        raw = client.messages.with_raw_response.create(model="claude", max_tokens=5, messages=messages)
        headers = raw.headers
        text = "".join(block.text for block in raw.parse().content if block.type == "text")
    assert text == "from the backup"
    assert headers["x-odock-route-model"] == "backup"
    record = tenant.record(headers["x-request-id"])
    assert [(a["model"], a["outcome"]) for a in record.routing["attempts"]] == [
        ("claude", "failed"),
        ("backup", "success"),
    ]
    assert record.total_cost_nanos_usd == cost(2.0)
    assert tenant.held() == 0
