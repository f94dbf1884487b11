"""Production only: two ``odock serve`` replicas share one round-robin turn per key and one circuit
per deployment (both in Redis)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from odock.providers.tables import ProviderType
from odock.settings import Settings
from tests.conftest import BACKEND, SettingsFactory
from tests.fakes.scripted_upstream import ScriptedUpstream, fail
from tests.support import services
from tests.support.governance import Operator, bearer, http_client, operator, serve_gateways
from tests.support.routing import MAX_TOKENS, MESSAGES

FAILURES = 2  # the replicas' breaker threshold


@pytest.fixture(autouse=True)
def production_only() -> None:
    """Replicas share routing state only through Redis."""
    if BACKEND != "production":
        pytest.skip("two gateway processes share state only on the production backend")
    services.require_services()


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """Settings of one deployment: the run's database and a fresh Redis prefix."""
    return make_settings()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    """The scripted upstream both replicas call."""
    with ScriptedUpstream() as fake:
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for both replicas."""
    async with http_client(4) as http:
        yield http


@dataclass
class Routed:
    """A key whose chat calls route over models ``a`` and ``b`` (slugs tagged for this test)."""

    secret: str
    tag: str

    def slug(self, model: str) -> str:
        """The upstream slug of ``model``."""
        return f"{self.tag}-{model}"


async def routed_key(admin: Operator, base_url: str, policy: dict[str, object]) -> Routed:
    """An organisation with the switch on, keyless providers at ``base_url``, and a routed key."""
    control, tag = admin.control, secrets.token_hex(3)
    org = await control.tenancy.create_organisation(f"replicas-{tag}")
    await control.tenancy.set_routing(org.id, True)
    for model in ("a", "b"):
        provider = await control.providers.create(org.id, f"p-{model}", ProviderType.VLLM, base_url=base_url)
        await control.models.create(org.id, model, slug=f"{tag}-{model}", provider_id=provider.id)
    issued = await control.keys.create(org.id, "routed", models=["a", "b"])
    await control.keys.set_routing(issued.key.id, {"chat": policy})
    return Routed(issued.secret, tag)


async def served_model(client: httpx.AsyncClient, url: str, routed: Routed) -> str:
    """Which model answered one call for ``a`` on the replica at ``url``."""
    body = {"model": "a", "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    reply = await client.post(url + "/v1/chat/completions", json=body, headers=bearer(routed.secret))
    assert reply.status_code == 200, reply.text
    return reply.headers["x-odock-route-model"]


async def test_round_robin_alternates_across_replicas(
    settings: Settings, tmp_path: Path, client: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    """Calls sent to the replicas in turn still alternate between the candidates: one shared turn."""
    policy = {"strategy": "round_robin", "candidates": [{"modelName": "a"}, {"modelName": "b"}]}
    async with operator(settings) as admin, serve_gateways(settings, tmp_path, ["r1", "r2"]) as replicas:
        routed = await routed_key(admin, upstream.base_url + "/v1", policy)
        urls = [r.base_url for r in replicas]
        # Each replica alone would see a, a, a, ... if the turn were its own (it gets every other call).
        served = [await served_model(client, urls[i % 2], routed) for i in range(8)]
    assert served in (["a", "b"] * 4, ["b", "a"] * 4)
    assert upstream.calls(routed.slug("a")) == upstream.calls(routed.slug("b")) == 4


async def test_a_circuit_opened_on_one_replica_is_honoured_by_the_other(
    settings: Settings, tmp_path: Path, client: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    """Failures seen by both replicas add up; once open, neither calls the deployment."""
    policy = {"strategy": "failover", "candidates": [{"modelName": "a"}, {"modelName": "b"}], "maxRetries": 1}
    overrides = {
        "ODOCK_ROUTING_BREAKER_FAILURES": str(FAILURES),
        "ODOCK_ROUTING_BREAKER_REFRESH_SECONDS": "0",
        "ODOCK_ROUTING_BREAKER_COOLDOWN_SECONDS": "60",
    }
    async with (
        operator(settings) as admin,
        serve_gateways(settings, tmp_path, ["r1", "r2"], **overrides) as replicas,
    ):
        routed = await routed_key(admin, upstream.base_url + "/v1", policy)
        upstream.otherwise(routed.slug("a"), fail(500))
        urls = [r.base_url for r in replicas]
        served = [await served_model(client, urls[i % 2], routed) for i in range(2 * FAILURES)]
    assert served == ["b"] * (2 * FAILURES)
    assert upstream.calls(routed.slug("a")) == FAILURES  # one failure per replica opened it for both
