"""One gateway per module, with the traffic that makes its labelled metric series exist.

The gateway runs on the active backend with a scripted OpenAI upstream. :func:`drive_traffic`
makes, through the official OpenAI SDK, a routed chat whose first choice fails (a failed upstream
attempt, then the backup answers), a first-choice chat, a stream, a call every candidate fails
(502), a call the key's rate limit refuses (429), and a request to an unknown path (404); the
tenant has a budget, so budget reservations are decided too.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from odock.app import create_app
from tests.conftest import BACKEND, Gateway, settings_factory
from tests.fakes.scripted_upstream import ScriptedUpstream, fail
from tests.support.routing import MAX_TOKENS, MESSAGES, routing_tenant
from tests.support.server import ThreadedServer

POLICY = {
    "strategy": "failover",
    "candidates": [{"modelName": "primary"}, {"modelName": "backup"}],
    "failoverOn": ["5xx"],
    "maxRetries": 1,
}
MODELS = {"primary": ("main", 1.0), "backup": ("backup", 2.0)}
ADMITTED = 4
"""Model calls the key's rate limit admits in a minute: the traffic's fifth call is refused."""


@pytest.fixture(scope="module")
def observed_gateway(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Gateway]:
    """The module's gateway on the active backend."""
    app = create_app(settings_factory(BACKEND, tmp_path_factory, request)())
    gateway = Gateway(server=ThreadedServer(app).start(), app=app)
    yield gateway
    gateway.server.stop()


@pytest.fixture(scope="module")
def scripted_upstream() -> Iterator[ScriptedUpstream]:
    """The scripted OpenAI upstream the module's providers point at."""
    with ScriptedUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def busy_gateway(observed_gateway: Gateway, scripted_upstream: ScriptedUpstream) -> Gateway:
    """The module's gateway after :func:`drive_traffic`, its usage records stored."""
    drive_traffic(observed_gateway, scripted_upstream)
    observed_gateway.flush_usage()
    return observed_gateway


def drive_traffic(gateway: Gateway, upstream: ScriptedUpstream) -> None:
    """Unary, streamed, failed-over, failed and refused model calls, and an unknown path."""
    tenant = routing_tenant(
        gateway,
        upstream.base_url + "/v1",
        MODELS,
        policy=POLICY,
        key_policies={"ratelimit": {"requests": {"per_minute": ADMITTED}}},
    )
    client = tenant.client(timeout=30)
    upstream.script(tenant.slug("primary"), fail(500))
    assert tenant.chat("primary").headers["x-odock-route-model"] == "backup"
    assert tenant.chat("primary").headers["x-odock-route-model"] == "primary"
    stream = client.chat.completions.create(
        model="primary",
        messages=MESSAGES,
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert [chunk.usage for chunk in stream if chunk.usage is not None]
    upstream.script(tenant.slug("primary"), fail(500))
    upstream.script(tenant.slug("backup"), fail(502))
    with pytest.raises(openai.APIStatusError) as failed:
        tenant.chat("primary")
    assert (failed.value.status_code, failed.value.code) == (502, "upstream_error")
    with pytest.raises(openai.RateLimitError) as refused:
        tenant.chat("primary")
    assert refused.value.code == "rpm_exceeded"
    assert httpx.get(gateway.base_url + "/no/such/path").status_code == 404
