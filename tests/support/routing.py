"""Routing tenants: an organisation with the routing switch on, providers served by one scripted
upstream, priced models with slugs of their own, a key granted them all, a routing policy and a
budget whose reservations the tests read back.

Every model's slug carries the tenant's tag, so tests sharing one scripted upstream (and one
gateway) never see each other's scripts. The scripted upstream answers with ``PROMPT`` input and
``COMPLETION`` output tokens unless told otherwise, so a call's cost is ``PROMPT x input price +
COMPLETION x output price`` of the model that answered.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from odock.budgets.windows import Period
from odock.providers.tables import ProviderType
from odock.usage.tables import UsageRecord
from tests.conftest import Gateway
from tests.integration.conftest import only_usage_record, sdk
from tests.support.governance import bearer, meter_entry

PROMPT = 10
COMPLETION = 5
MAX_TOKENS = 5  # every call asks for it: the reservation's output allowance
NANOS_PER_USD = 1_000_000_000
BUDGET_NANOS = 1_000 * NANOS_PER_USD
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


def pricing(usd_per_1k: float) -> dict[str, Any]:
    """The same price per 1K tokens in and out."""
    return {
        "input": {"text_cost_per_1k_tokens": usd_per_1k},
        "output": {"text_cost_per_1k_tokens": usd_per_1k},
    }


def cost(usd_per_1k: float, prompt: int = PROMPT, completion: int = COMPLETION) -> int:
    """What ``prompt`` + ``completion`` tokens cost at ``usd_per_1k``, in nanos."""
    return round((prompt + completion) * usd_per_1k * NANOS_PER_USD / 1000)


@dataclass
class RoutingTenant:
    """One organisation's routing set-up on a shared gateway and scripted upstream."""

    gateway: Gateway
    organisation_id: str
    key_id: str
    secret: str
    budget_id: str
    tag: str
    slugs: dict[str, str] = field(default_factory=dict)  # model name → upstream slug
    providers: dict[str, str] = field(default_factory=dict)  # provider name → id

    def slug(self, model: str) -> str:
        """The upstream slug of ``model`` (what the scripted upstream is scripted by)."""
        return self.slugs[model]

    def client(self, **options: Any) -> openai.OpenAI:
        """The official OpenAI SDK, calling the gateway as this tenant's key."""
        return sdk(self.gateway, self.secret, **options)

    def chat(self, model: str, **options: Any) -> Any:
        """A unary chat call through the SDK's raw response (headers and parsed body)."""
        return self.client(timeout=30).chat.completions.with_raw_response.create(
            model=model, messages=MESSAGES, max_tokens=MAX_TOKENS, **options
        )

    def set_policy(self, policy: dict[str, Any] | None, model_type: str = "chat") -> None:
        """Replace the key's routing policy for ``model_type`` (None clears it)."""
        self.gateway.run(self.gateway.runtime.control.keys.set_routing(self.key_id, {model_type: policy}))

    def record(self, request_id: str) -> UsageRecord:
        """The usage record of one request."""
        return only_usage_record(self.gateway, request_id)

    def held(self) -> int:
        """What the tenant's budget holds reserved right now (0 once every request has ended)."""
        reply = httpx.get(self.gateway.base_url + "/v1/keys/self", headers=bearer(self.secret))
        assert reply.status_code == 200, reply.text
        return int(meter_entry(reply.json(), self.budget_id)["reserved"])

    def used(self) -> int:
        """What the tenant's budget has settled in its current window."""
        reply = httpx.get(self.gateway.base_url + "/v1/keys/self", headers=bearer(self.secret))
        return int(meter_entry(reply.json(), self.budget_id)["used"])


def routing_tenant(
    gateway: Gateway,
    base_url: str,
    models: dict[str, tuple[str, float]],
    *,
    policy: dict[str, Any] | None = None,
    providers: dict[str, dict[str, Any]] | None = None,
    budget_nanos: int = BUDGET_NANOS,
    model_configs: dict[str, dict[str, Any]] | None = None,
    model_policies: dict[str, dict[str, Any]] | None = None,
    key_policies: dict[str, Any] | None = None,
    slugs: dict[str, str] | None = None,
    routing_on: bool = True,
) -> RoutingTenant:
    """A tenant whose ``models`` (name → (provider name, USD per 1K tokens)) are served through
    ``providers`` (name → create options, ``type`` among them, OPENAI by default; default:
    ``main`` and ``backup`` at ``base_url``); ``slugs`` names a model's upstream id (default: tagged)."""
    tag = secrets.token_hex(3)
    slugs_given = slugs
    provider_options = providers or {"main": {}, "backup": {}}

    async def build() -> RoutingTenant:
        control = gateway.runtime.control
        org = await control.tenancy.create_organisation(f"routing-{tag}")
        if routing_on:
            await control.tenancy.set_routing(org.id, True)
        provider_ids, key_ids = {}, {}
        for name, options in provider_options.items():
            options = {"base_url": base_url, **options}
            kind = options.pop("type", ProviderType.OPENAI)
            provider = await control.providers.create(org.id, name, kind, **options)
            provider_ids[name] = provider.id
            key_ids[name] = (await control.provider_keys.add(provider.id, "key", secret=f"sk-{name}")).id
        slugs = {}
        for name, (provider_name, price) in models.items():
            slugs[name] = (slugs_given or {}).get(name, f"{tag}-{name}")
            await control.models.create(
                org.id,
                name,
                slug=slugs[name],
                provider_id=provider_ids[provider_name],
                provider_key_id=key_ids[provider_name],
                pricing=pricing(price),
                config=(model_configs or {}).get(name, {}),
                policies=(model_policies or {}).get(name),
            )
        issued = await control.keys.create(org.id, "routed", models=list(models), policies=key_policies)
        if policy is not None:
            await control.keys.set_routing(issued.key.id, {"chat": policy})
        budget = await control.budgets.create_budget(
            org.id, "spend", amount_nanos_usd=budget_nanos, period=Period.DAILY
        )
        return RoutingTenant(
            gateway, org.id, issued.key.id, issued.secret, budget.id, tag, slugs, provider_ids
        )

    tenant: RoutingTenant = gateway.run(build())
    return tenant


def request_id_of(raw: Any) -> str:
    """The gateway's request id of a raw SDK response."""
    return str(raw.headers["x-request-id"])
