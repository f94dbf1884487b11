"""Applying declared resources: idempotent create/update, secrets from the environment, dry runs."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from odock.admin.control import ControlPlane
from odock.admin.declarative import DeclarationError, parse_declarations
from odock.admin.reconcile import ApplyReport, apply_declarations
from odock.budgets.tables import OwnerType, QuotaMetric
from odock.budgets.windows import Period
from odock.cache.bus import Invalidation
from odock.keys.secrets import hash_secret
from odock.providers.service import ProviderChanges

ENV = {"OPENAI_KEY": "sk-upstream-one", "CI_SECRET": "sk_ci_" + "a" * 40}

BASE: dict[str, Any] = {
    "organisations": [
        {
            "name": "acme",
            "contact": "ops@acme.io",
            "teams": ["platform"],
            "users": [{"email": "ann@acme.io", "role": "MANAGER"}],
        }
    ],
    "providers": [
        {"org": "acme", "name": "mock", "type": "MOCK"},
        {
            "org": "acme",
            "name": "openai",
            "type": "OPENAI",
            "base_url": "http://127.0.0.1:9/v1",
            "keys": [{"name": "primary", "from_env": "OPENAI_KEY"}],
        },
    ],
    "models": [
        {
            "org": "acme",
            "name": "mock-gpt",
            "provider": "mock",
            "pricing_per_million": {"input": 0.5, "output": 1.5},
        },
        {
            "org": "acme",
            "name": "gpt-4.1",
            "provider": "openai",
            "provider_key": "primary",
            "slug": "gpt-4.1",
        },
    ],
    "api_keys": [
        {
            "org": "acme",
            "name": "ci",
            "team": "platform",
            "models": ["mock-gpt"],
            "secret_from_env": "CI_SECRET",
        },
        {
            "org": "acme",
            "name": "batch",
            "models": ["mock-gpt", "gpt-4.1"],
            "expires_at": "2030-01-01T00:00:00Z",
        },
    ],
}


def declared(**changes: Any) -> Any:
    """BASE with top-level sections replaced, parsed."""
    data = copy.deepcopy(BASE)
    data.update(changes)
    return parse_declarations(data)


async def apply(
    control: ControlPlane, data: Any, env: dict[str, str] | None = None, **kw: Any
) -> ApplyReport:
    """Apply ``data`` with ``ENV`` (or ``env``)."""
    return await apply_declarations(control, data, environ=env if env is not None else ENV, **kw)


def actions(report: ApplyReport) -> dict[str, str]:
    """``kind name`` → action, for precise assertions."""
    return {f"{c.kind} {c.name}": c.action for c in report.changes}


async def test_first_apply_creates_everything(control: ControlPlane) -> None:
    """Every declared resource is created once, and only the unpinned key's secret is issued."""
    report = await apply(control, declared())
    assert report.counts() == {"created": 10}
    assert [issued.name for issued in report.issued] == ["acme/batch"]
    org = await control.tenancy.organisation_by_name("acme")
    model = await control.models.named(org.id, "mock-gpt")
    assert model.pricing["output"]["text_cost_per_1k_tokens"] == 0.0015
    batch = (await control.keys.named(org.id, "batch"))[0]
    assert sorted(await control.keys.grants(batch.id)) == ["gpt-4.1", "mock-gpt"]


async def test_several_providers_of_one_type_are_declared_by_name(control: ControlPlane) -> None:
    """Two OpenAI accounts in one organisation are two providers, each with its own key and models."""
    providers = [
        *BASE["providers"],
        {
            "org": "acme",
            "name": "openai-research",
            "type": "OPENAI",
            "base_url": "http://127.0.0.1:9/research/v1",
            "keys": [{"name": "primary", "from_env": "OPENAI_KEY"}],
        },
    ]
    models = [
        *BASE["models"],
        {"org": "acme", "name": "o3", "provider": "openai-research", "provider_key": "primary"},
    ]
    report = await apply(control, declared(providers=providers, models=models))
    assert actions(report)["provider acme/openai-research"] == "created"
    org = await control.tenancy.organisation_by_name("acme")
    research = await control.providers.named(org.id, "openai-research")
    assert {p.name for p in await control.providers.listed(org.id) if p.type == research.type} == {
        "openai",
        "openai-research",
    }
    assert (await control.models.named(org.id, "o3")).provider_id == research.id
    assert (await apply(control, declared(providers=providers, models=models))).counts() == {"unchanged": 13}


async def test_second_apply_changes_nothing(control: ControlPlane, published: list[Invalidation]) -> None:
    """Applying the same file twice creates, updates and publishes nothing the second time."""
    await apply(control, declared())
    before = len(published)
    report = await apply(control, declared())
    assert report.counts() == {"unchanged": 10}
    assert report.issued == []
    assert len(published) == before
    org = await control.tenancy.organisation_by_name("acme")
    assert len(await control.keys.named(org.id, "batch")) == 1


async def test_pricing_change_is_applied_and_invalidates(
    control: ControlPlane, published: list[Invalidation]
) -> None:
    """A new price updates the model in place and tells the caches of its organisation."""
    await apply(control, declared())
    org = await control.tenancy.organisation_by_name("acme")
    models = copy.deepcopy(BASE["models"])
    models[0]["pricing_per_million"] = {"input": 2, "output": 8}
    published.clear()
    report = await apply(control, declared(models=models))
    assert actions(report)["model acme/mock-gpt"] == "updated"
    assert report.counts() == {"updated": 1, "unchanged": 9}
    model = await control.models.named(org.id, "mock-gpt")
    assert model.pricing["input"]["text_cost_per_1k_tokens"] == 0.002
    assert model.pricing["output"]["text_cost_per_1k_tokens"] == 0.008
    assert Invalidation("organisation", organisation_id=org.id) in published


async def test_undeclared_fields_are_left_alone(control: ControlPlane) -> None:
    """A provider disabled outside the file stays disabled until the file declares ``enabled``."""
    await apply(control, declared())
    org = await control.tenancy.organisation_by_name("acme")
    mock = await control.providers.named(org.id, "mock")
    await control.providers.update(mock.id, ProviderChanges(enabled=False))
    assert (await apply(control, declared())).counts() == {"unchanged": 10}
    assert not (await control.providers.named(org.id, "mock")).enabled

    providers = copy.deepcopy(BASE["providers"])
    providers[0]["enabled"] = True
    report = await apply(control, declared(providers=providers))
    assert actions(report)["provider acme/mock"] == "updated"
    assert (await control.providers.named(org.id, "mock")).enabled


async def test_strict_provider_family_follows_the_file_when_declared(
    control: ControlPlane, published: list[Invalidation]
) -> None:
    """Declared on creation it is stored; left out it stays; a declared change updates and invalidates."""
    organisations = copy.deepcopy(BASE["organisations"])
    organisations[0]["strict_provider_family"] = True
    await apply(control, declared(organisations=organisations))
    org = await control.tenancy.organisation_by_name("acme")
    assert org.strict_provider_family is True
    assert (await apply(control, declared())).counts() == {"unchanged": 10}
    assert (await control.tenancy.organisation(org.id)).strict_provider_family is True

    organisations[0]["strict_provider_family"] = False
    published.clear()
    report = await apply(control, declared(organisations=organisations))
    assert actions(report)["organisation acme"] == "updated"
    assert report.counts() == {"updated": 1, "unchanged": 9}
    assert (await control.tenancy.organisation(org.id)).strict_provider_family is False
    assert published == [Invalidation("organisation", organisation_id=org.id)]


async def test_provider_key_follows_its_environment_variable(control: ControlPlane) -> None:
    """A changed secret in the environment re-encrypts the stored key; the same secret is left alone."""
    await apply(control, declared())
    org = await control.tenancy.organisation_by_name("acme")
    provider = await control.providers.named(org.id, "openai")
    key = await control.provider_keys.named(provider.id, "primary")
    assert key.key.startswith("{")
    assert "sk-upstream-one" not in key.key
    assert control.provider_keys.holds(key, "sk-upstream-one")

    report = await apply(control, declared(), env={**ENV, "OPENAI_KEY": "sk-upstream-two"})
    assert actions(report)["provider key acme/openai/primary"] == "updated"
    updated = await control.provider_keys.named(provider.id, "primary")
    assert updated.id == key.id
    assert control.provider_keys.holds(updated, "sk-upstream-two")
    assert updated.updated_at > key.updated_at


async def test_declared_header_values_are_stored_encrypted_and_compared_opened(
    control: ControlPlane, published: list[Invalidation]
) -> None:
    """Declared header values are stored as envelopes; the same file is unchanged, a new value updates."""
    providers = copy.deepcopy(BASE["providers"])
    providers[1]["config"] = {"headers": {"x-proxy-key": "proxy-secret-1"}}
    await apply(control, declared(providers=providers))
    org = await control.tenancy.organisation_by_name("acme")
    stored = await control.providers.named(org.id, "openai")
    assert "proxy-secret-1" not in str(stored.config)
    assert control.providers.config_holds(stored, {"headers": {"x-proxy-key": "proxy-secret-1"}})
    published.clear()
    assert (await apply(control, declared(providers=providers))).counts() == {"unchanged": 10}
    assert published == []

    providers[1]["config"] = {"headers": {"x-proxy-key": "proxy-secret-2"}}
    report = await apply(control, declared(providers=providers))
    assert actions(report)["provider acme/openai"] == "updated"
    updated = await control.providers.named(org.id, "openai")
    assert control.providers.config_holds(updated, {"headers": {"x-proxy-key": "proxy-secret-2"}})


async def test_header_values_from_the_environment_join_the_config(control: ControlPlane) -> None:
    """headers_from_env values are read at apply time, stored encrypted, and follow their variable."""
    providers = copy.deepcopy(BASE["providers"])
    providers[1]["config"] = {"api_version": "v1", "headers": {"x-team": "platform"}}
    providers[1]["headers_from_env"] = {"x-proxy-key": "PROXY_KEY"}
    env = {**ENV, "PROXY_KEY": "proxy-secret-1"}
    await apply(control, declared(providers=providers), env=env)
    org = await control.tenancy.organisation_by_name("acme")
    stored = await control.providers.named(org.id, "openai")
    assert "proxy-secret-1" not in str(stored.config)
    expected = {"api_version": "v1", "headers": {"x-team": "platform", "x-proxy-key": "proxy-secret-1"}}
    assert control.providers.config_holds(stored, expected)
    assert actions(await apply(control, declared(providers=providers), env=env))["provider acme/openai"] == (
        "unchanged"
    )

    report = await apply(control, declared(providers=providers), env={**env, "PROXY_KEY": "proxy-secret-2"})
    assert actions(report)["provider acme/openai"] == "updated"
    updated = await control.providers.named(org.id, "openai")
    assert control.providers.config_holds(
        updated, {**expected, "headers": {"x-team": "platform", "x-proxy-key": "proxy-secret-2"}}
    )


async def test_header_values_from_the_environment_are_set_and_declared_once(control: ControlPlane) -> None:
    """A missing variable names its path; a header in both config.headers and headers_from_env is refused."""
    providers = copy.deepcopy(BASE["providers"])
    providers[1]["headers_from_env"] = {"x-proxy-key": "PROXY_KEY"}
    with pytest.raises(DeclarationError, match=r"providers\[1\]\.headers_from_env\.x-proxy-key"):
        await apply(control, declared(providers=providers))
    providers[1]["config"] = {"headers": {"X-Proxy-Key": "plain"}}
    with pytest.raises(DeclarationError, match=r"both config\.headers and headers_from_env"):
        parse_declarations(declared(providers=providers))


async def test_pinned_secret_is_hashed_and_rotated_when_changed(control: ControlPlane) -> None:
    """secret_from_env stores only the hash; a new value rotates the key in place, keeping history."""
    await apply(control, declared())
    org = await control.tenancy.organisation_by_name("acme")
    ci = (await control.keys.named(org.id, "ci"))[0]
    assert ci.key_hash == hash_secret(ENV["CI_SECRET"])

    new_secret = "sk_ci_" + "b" * 40
    report = await apply(control, declared(), env={**ENV, "CI_SECRET": new_secret})
    assert actions(report)["API key acme/ci"] == "updated"
    rotated = await control.keys.get(ci.id)
    assert rotated.key_hash == hash_secret(new_secret)
    assert rotated.rotation_count == 1
    assert [r.rotated_by for r in await control.keys.rotations(ci.id)] == ["declarative config"]


async def test_weak_pinned_secret_is_refused(control: ControlPlane) -> None:
    """A pinned secret shorter than 32 characters is refused, naming the key's path."""
    with pytest.raises(DeclarationError, match=r"api_keys\[0\]: a pinned API key secret needs at least 32"):
        await apply(control, declared(), env={**ENV, "CI_SECRET": "short"})


async def test_grants_expiry_and_revocation_follow_the_file(control: ControlPlane) -> None:
    """Declared grants are the exact set; a new expiry and ``revoked: true`` are applied."""
    await apply(control, declared())
    keys = copy.deepcopy(BASE["api_keys"])
    keys[1].update(models=["gpt-4.1"], expires_at="2031-06-01T12:00:00+02:00", revoked=True)
    report = await apply(control, declared(api_keys=keys))
    assert actions(report)["API key acme/batch"] == "updated"
    org = await control.tenancy.organisation_by_name("acme")
    batch = (await control.keys.named(org.id, "batch"))[0]
    assert await control.keys.grants(batch.id) == ["gpt-4.1"]
    assert batch.expires_at is not None
    assert batch.expires_at.isoformat() == "2031-06-01T10:00:00+00:00"
    assert batch.revoked


async def test_missing_secret_stops_before_any_change(control: ControlPlane) -> None:
    """An unset secret variable fails the apply before anything is written."""
    with pytest.raises(DeclarationError, match="OPENAI_KEY is not set"):
        await apply(control, declared(), env={"CI_SECRET": ENV["CI_SECRET"]})
    assert await control.tenancy.list_organisations() == []


async def test_dry_run_plans_without_writing(control: ControlPlane) -> None:
    """A dry run on an empty database reports every creation and writes nothing."""
    report = await apply(control, declared(), dry_run=True)
    assert report.counts() == {"created": 10}
    assert report.summary() == "dry run: would have 10 created, 0 updated, 0 unchanged"
    assert report.issued == []
    assert await control.tenancy.list_organisations() == []


async def test_dry_run_reports_updates(control: ControlPlane) -> None:
    """A dry run against applied state reports the one pending update and leaves it pending."""
    await apply(control, declared())
    orgs = copy.deepcopy(BASE["organisations"])
    orgs[0]["contact"] = "new@acme.io"
    report = await apply(control, declared(organisations=orgs), dry_run=True)
    assert report.counts() == {"updated": 1, "unchanged": 9}
    assert (await control.tenancy.organisation_by_name("acme")).contact == "ops@acme.io"


async def test_reference_to_unknown_provider_names_the_model(control: ControlPlane) -> None:
    """A model naming a provider that exists nowhere fails at that model's path."""
    models = [{"org": "acme", "name": "m", "provider": "nope"}]
    with pytest.raises(DeclarationError, match=r"models\[0\]: provider 'nope' does not exist"):
        await apply(control, declared(models=models, api_keys=[]))


async def test_ambiguous_key_name_is_refused_with_its_path(control: ControlPlane) -> None:
    """Two existing keys with the declared name stop the apply rather than guessing which one is meant."""
    await apply(control, declared())
    org = await control.tenancy.organisation_by_name("acme")
    await control.keys.create(org.id, "batch")
    with pytest.raises(DeclarationError, match=r"api_keys\[1\]: 2 API keys are named 'batch' in 'acme'"):
        await apply(control, declared())


async def test_user_of_another_organisation_is_refused(control: ControlPlane) -> None:
    """A declared user who already belongs to another organisation is not moved silently."""
    other = await control.tenancy.create_organisation("other")
    await control.users.create_user("ann@acme.io", organisation_id=other.id)
    with pytest.raises(DeclarationError, match=r"organisations\[0\]: user 'ann@acme.io' belongs to another"):
        await apply(control, declared())


BUDGETS: list[dict[str, Any]] = [
    {"org": "acme", "name": "monthly", "amount_usd": "12.50", "thresholds": [80, 50]},
    {
        "org": "acme",
        "name": "platform-daily",
        "owner": {"team": "platform"},
        "amount_nanos": 1_000_000,
        "period": "DAILY",
        "start_at": "2026-01-01T00:00:00+01:00",
        "timezone": "Europe/Paris",
    },
]
QUOTAS: list[dict[str, Any]] = [
    {"org": "acme", "name": "ci-requests", "owner": {"key": "ci"}, "metric": "REQUESTS", "limit": 100},
    {
        "org": "acme",
        "name": "ann-tokens",
        "owner": {"user": "Ann@acme.io"},
        "metric": "tokens",
        "limit": 5000,
    },
]


def metered(budgets: list[dict[str, Any]] | None = None, quotas: list[dict[str, Any]] | None = None) -> Any:
    """BASE with BUDGETS and QUOTAS (or the given variants), parsed."""
    return declared(
        budgets=copy.deepcopy(BUDGETS if budgets is None else budgets),
        quotas=copy.deepcopy(QUOTAS if quotas is None else quotas),
    )


async def test_budgets_and_quotas_are_created_once(
    control: ControlPlane, published: list[Invalidation]
) -> None:
    """Declared budgets and quotas are created with their owners; a second apply changes nothing."""
    report = await apply(control, metered())
    assert report.counts() == {"created": 14}
    org = await control.tenancy.organisation_by_name("acme")
    team = await control.tenancy.team_by_name(org.id, "platform")
    ci = (await control.keys.named(org.id, "ci"))[0]
    ann = await control.users.user_by_email("ann@acme.io")
    monthly, daily = await control.budgets.list_budgets(org.id)
    assert (monthly.amount_nanos_usd, monthly.owner_type, monthly.thresholds) == (
        12_500_000_000,
        OwnerType.ORG,
        [50, 80],
    )
    assert (daily.team_id, daily.period, daily.timezone) == (team.id, Period.DAILY, "Europe/Paris")
    assert daily.start_at == datetime(2025, 12, 31, 23, tzinfo=UTC)
    requests, tokens = await control.budgets.list_quotas(org.id)
    assert (requests.owner_type, requests.api_key_id, requests.metric) == (
        OwnerType.APIKEY,
        ci.id,
        QuotaMetric.REQUESTS,
    )
    assert (tokens.owner_type, tokens.user_id, tokens.limit) == (OwnerType.USER, ann.id, 5000)

    before = len(published)
    again = await apply(control, metered())
    assert again.counts() == {"unchanged": 14}
    assert len(published) == before
    assert len(await control.budgets.list(org.id)) == 4


async def test_changed_limit_is_applied_in_place(control: ControlPlane) -> None:
    """A new amount or limit updates the same row and bumps its version; nothing is duplicated."""
    await apply(control, metered())
    budgets, quotas = copy.deepcopy(BUDGETS), copy.deepcopy(QUOTAS)
    budgets[0]["amount_usd"] = "20"
    quotas[1]["limit"] = 6000
    report = await apply(control, metered(budgets, quotas))
    assert actions(report)["budget acme/monthly"] == "updated"
    assert actions(report)["quota acme/ann-tokens"] == "updated"
    assert report.counts() == {"updated": 2, "unchanged": 12}
    org = await control.tenancy.organisation_by_name("acme")
    monthly = (await control.budgets.list_budgets(org.id, "monthly"))[0]
    tokens = (await control.budgets.list_quotas(org.id, "ann-tokens"))[0]
    assert (monthly.amount_nanos_usd, monthly.version) == (20_000_000_000, 2)
    assert (tokens.limit, tokens.version) == (6000, 2)
    assert len(await control.budgets.list(org.id)) == 4


async def test_active_and_thresholds_follow_the_file_when_declared(control: ControlPlane) -> None:
    """A budget switched off outside the file stays off until the file declares ``active``."""
    await apply(control, metered())
    org = await control.tenancy.organisation_by_name("acme")
    monthly = (await control.budgets.list_budgets(org.id, "monthly"))[0]
    await control.budgets.set_active(monthly.id, False)
    assert (await apply(control, metered())).counts() == {"unchanged": 14}
    assert not (await control.budgets.budget(monthly.id)).active

    budgets = copy.deepcopy(BUDGETS)
    budgets[0].update(active=True, thresholds=[90])
    report = await apply(control, metered(budgets))
    assert actions(report)["budget acme/monthly"] == "updated"
    stored = await control.budgets.budget(monthly.id)
    assert (stored.active, stored.thresholds, stored.version) == (True, [90], 1)


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"period": "WEEKLY"}, "period"),
        ({"owner": {"team": "platform"}}, "owner"),
        ({"start_at": "2026-02-01T00:00:00Z", "rollover": True}, "start_at, rollover"),
    ],
)
async def test_schedule_or_owner_change_is_refused(
    control: ControlPlane, change: dict[str, Any], fields: str
) -> None:
    """A declared schedule or owner that differs from the stored budget stops the apply at its path."""
    await apply(control, metered())
    budgets = copy.deepcopy(BUDGETS)
    budgets[0].update(change)
    with pytest.raises(
        DeclarationError, match=rf"budgets\[0\]: budget 'acme/monthly' exists with a different {fields}"
    ):
        await apply(control, metered(budgets))


async def test_quota_metric_change_is_refused(control: ControlPlane) -> None:
    """A quota cannot change what it counts in place."""
    await apply(control, metered())
    quotas = copy.deepcopy(QUOTAS)
    quotas[0]["metric"] = "TOKENS"
    with pytest.raises(
        DeclarationError, match=r"quotas\[0\]: quota 'acme/ci-requests' exists with a different metric"
    ):
        await apply(control, metered(quotas=quotas))


async def test_dry_run_plans_budgets_of_planned_owners(control: ControlPlane) -> None:
    """On an empty database a dry run plans budgets whose organisation, team and key are also planned."""
    report = await apply(control, metered(), dry_run=True)
    assert report.counts() == {"created": 14}
    assert actions(report)["quota acme/ci-requests"] == "created"
    assert await control.tenancy.list_organisations() == []


async def test_unknown_budget_owner_is_named(control: ControlPlane) -> None:
    """A budget owned by a key that exists nowhere fails at the budget's path."""
    budgets = [{"org": "acme", "name": "b", "owner": {"key": "ghost"}, "amount_nanos": 1}]
    with pytest.raises(DeclarationError, match=r"budgets\[0\]: API key 'ghost' does not exist"):
        await apply(control, metered(budgets, []))
