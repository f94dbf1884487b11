"""The benchmark tenant: provisioned through the gateway's own ControlPlane, before the gateway starts.

An organisation, an OPENAI-type provider pointing at the mock upstream with a provider key
(stored encrypted, decrypted by the gateway's vault), a chat model and an embedding model with
pricing; an ANTHROPIC-type provider on the same mock (its root URL: the gateway adds
``/v1/messages``) with its own key and a chat model priced alike; and an API key granted the three
models. :class:`GovernanceHook` objects then attach
whatever further governance the gateway supports (rate limits, budgets, …) and name it, so the
report always says which governance features were active during the measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from odock.budgets.tables import OwnerType, QuotaMetric
from odock.providers.tables import ProviderType
from odock.runtime import Runtime, open_runtime
from odock.settings import Settings

CHAT_MODEL = "bench-chat"
EMBEDDING_MODEL = "bench-embed"
ANTHROPIC_MODEL = "bench-anthropic"
ANTHROPIC_SLUG = "mock-anthropic"
UPSTREAM_SECRET = "sk-bench-upstream-key"
ANTHROPIC_SECRET = "sk-ant-bench-upstream-key"  # the mock does not check it
PRICING = {
    "input": {"text_cost_per_1k_tokens": 0.0005},
    "output": {"text_cost_per_1k_tokens": 0.0015},
    "embeddings_cost_per_1k_tokens": 0.0001,
}
# What every gateway request goes through today; hooks add to this list.
BASELINE_FEATURES = (
    "API-key authentication (hash lookup, cached principal)",
    "model access grant check",
    "provider resolution and provider key decrypted from its envelope (vault cache)",
    "request decoding and field validation",
    "usage event with cost in integer nano-dollars, recorded in batches off the request path",
)


@dataclass(frozen=True)
class BenchTenant:
    """What the drivers need to call the gateway as this tenant."""

    organisation_id: str
    provider_id: str
    key_id: str
    secret: str
    chat_model: str = CHAT_MODEL
    embedding_model: str = EMBEDDING_MODEL
    anthropic_model: str = ANTHROPIC_MODEL


class GovernanceHook(Protocol):
    """Attaches one governance feature (a policy, a budget, a limit) to the benchmark tenant."""

    async def attach(self, runtime: Runtime, tenant: BenchTenant) -> str:
        """Configure the feature; return its name for the report."""
        ...


# Limits high enough never to deny during a benchmark, so every check runs and none refuses.
NEVER_DENYING_POLICY = {
    "ratelimit": {
        "requests": {"per_second": 1_000_000, "per_minute": 100_000_000, "burst": 1_000_000},
        "tokens": {"per_minute": 10**12},
        "concurrency": {"max": 100_000},
    }
}


class RateLimitPolicies:
    """A never-denying rate-limit policy on the organisation, the key and both chat models."""

    async def attach(self, runtime: Runtime, tenant: BenchTenant) -> str:
        """Attach the policy to the organisation, the key and each chat model."""
        control = runtime.control
        await control.tenancy.update_organisation(tenant.organisation_id, policies=NEVER_DENYING_POLICY)
        await control.keys.update(tenant.key_id, policies=NEVER_DENYING_POLICY)
        for name in (tenant.chat_model, tenant.anthropic_model):
            model = await control.models.named(tenant.organisation_id, name)
            await control.models.update(model.id, policies=NEVER_DENYING_POLICY)
        return "rate limits on organisation, key and model (burst, RPS, RPM, TPM, concurrency leases)"


class BudgetAndQuota:
    """An organisation budget and a key request quota, reserved and settled on every request."""

    async def attach(self, runtime: Runtime, tenant: BenchTenant) -> str:
        """Create the budget and the quota."""
        budgets = runtime.budgets
        await budgets.create_budget(tenant.organisation_id, "bench budget", amount_nanos_usd=10**18)
        await budgets.create_quota(
            tenant.organisation_id,
            "bench quota",
            metric=QuotaMetric.REQUESTS,
            limit=10**12,
            owner_type=OwnerType.APIKEY,
            owner_id=tenant.key_id,
        )
        return "a monthly organisation budget and a key REQUESTS quota (reserve + settle per request)"


class FailoverRouting:
    """The organisation's routing switch on and a failover policy for chat: every chat call is
    planned (a Route, its model limits in a receipt of their own) and answered by its first target."""

    async def attach(self, runtime: Runtime, tenant: BenchTenant) -> str:
        """Add a backup chat model on the same provider and route the key's chat calls to it on failure."""
        control = runtime.control
        primary = await control.models.named(tenant.organisation_id, tenant.chat_model)
        await control.models.create(
            tenant.organisation_id,
            ROUTING_BACKUP_MODEL,
            slug=primary.slug,
            provider_id=primary.provider_id,
            provider_key_id=primary.provider_api_key_id,
            pricing=PRICING,
            policies=primary.policies,
        )
        await control.keys.grant(tenant.key_id, [ROUTING_BACKUP_MODEL])
        await control.tenancy.set_routing(tenant.organisation_id, True)
        policy = {
            "strategy": "failover",
            "candidates": [{"modelName": tenant.chat_model}, {"modelName": ROUTING_BACKUP_MODEL}],
            "maxRetries": 1,
        }
        await control.keys.set_routing(tenant.key_id, {"chat": policy})
        route = f"{tenant.chat_model} → {ROUTING_BACKUP_MODEL}"
        return f"a failover routing policy on chat ({route}), organisation switch on"


ROUTING_BACKUP_MODEL = "bench-chat-backup"
GOVERNANCE: tuple[GovernanceHook, ...] = (RateLimitPolicies(), BudgetAndQuota())


@dataclass(frozen=True)
class Provisioned:
    """The tenant and the governance features active on its requests."""

    tenant: BenchTenant
    features: tuple[str, ...]


async def provision(settings: Settings, mock_url: str, hooks: Sequence[GovernanceHook] = ()) -> Provisioned:
    """Create the tenant in the gateway's database (migrating it first, as the gateway would).

    ``mock_url`` is the mock upstream's root (``http://host:port``).
    """
    async with open_runtime(settings) as runtime:
        control = runtime.control
        org = await control.tenancy.create_organisation("bench")
        provider = await control.providers.create(
            org.id, "mock-upstream", ProviderType.OPENAI, base_url=mock_url + "/v1"
        )
        provider_key = await control.provider_keys.add(provider.id, "bench", secret=UPSTREAM_SECRET)
        for name, kind, model_type in (
            (CHAT_MODEL, "chat", "chat"),
            (EMBEDDING_MODEL, "embedding", "embeddings"),
        ):
            await control.models.create(
                org.id,
                name,
                slug=f"mock-{kind}",
                type=model_type,
                provider_id=provider.id,
                provider_key_id=provider_key.id,
                pricing=PRICING,
            )
        anthropic = await control.providers.create(
            org.id, "mock-anthropic", ProviderType.ANTHROPIC, base_url=mock_url
        )
        anthropic_key = await control.provider_keys.add(anthropic.id, "bench", secret=ANTHROPIC_SECRET)
        await control.models.create(
            org.id,
            ANTHROPIC_MODEL,
            slug=ANTHROPIC_SLUG,
            type="chat",
            provider_id=anthropic.id,
            provider_key_id=anthropic_key.id,
            pricing=PRICING,
        )
        issued = await control.keys.create(
            org.id, "bench key", models=[CHAT_MODEL, EMBEDDING_MODEL, ANTHROPIC_MODEL]
        )
        tenant = BenchTenant(org.id, provider.id, issued.key.id, issued.secret)
        features = [*BASELINE_FEATURES]
        for hook in hooks:
            features.append(await hook.attach(runtime, tenant))
    return Provisioned(tenant, tuple(features))
