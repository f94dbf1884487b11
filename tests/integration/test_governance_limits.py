"""Rate limits, shadow mode, client IP and /v1/keys/self on a real gateway (active backend).

The client-IP proofs run against ``odock serve`` itself: the HTTP server's own configuration
(forwarded-header handling) is part of what they prove.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from odock.budgets.tables import QuotaMetric
from odock.budgets.windows import Period
from odock.settings import Settings
from odock.usage.tables import UsageRecord
from tests.conftest import Gateway, SettingsFactory, Tenant, provision
from tests.support.governance import (
    MOCK_CONFIG,
    PRICING,
    REQUEST_COST,
    Ledger,
    Served,
    bearer,
    chat_body,
    error_of,
    fire,
    http_client,
    key_self,
    meter_entry,
    on_gateway,
    operator,
    serve_gateways,
)

FIRED = 80
PER_MINUTE = 8


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that can hold a whole storm's connections at once."""
    async with http_client(FIRED + 10) as http:
        yield http


async def limited_tenant(
    gateway: Gateway, *, key: dict[str, Any] | None = None, org: dict[str, Any] | None = None
) -> Tenant:
    """A priced mock tenant whose key and organisation carry the given policy envelopes."""
    tenant = provision(gateway, provider_config=MOCK_CONFIG, pricing=PRICING)
    control = gateway.runtime.control
    if key is not None:
        await on_gateway(gateway, control.keys.update(tenant.key_id, policies=key))
    if org is not None:
        await on_gateway(gateway, control.tenancy.update_organisation(tenant.organisation_id, policies=org))
    return tenant


def per_minute(limit: int, **extra: Any) -> dict[str, Any]:
    """A policy envelope with a requests-per-minute limit."""
    return {"ratelimit": {"requests": {"per_minute": limit}}, **extra}


async def call(
    client: httpx.AsyncClient, gateway: Gateway, secret: str, model: str, **headers: str
) -> httpx.Response:
    """One chat completion."""
    url = gateway.base_url + "/v1/chat/completions"
    return await client.post(url, json=chat_body(model), headers={**bearer(secret), **headers})


def refused(record: UsageRecord) -> bool:
    """True for the usage record of a request refused before the upstream call."""
    return record.http_status != 200 and record.upstream_latency_ms is None


async def test_rpm_storm_admits_exactly_the_limit(gateway: Gateway, client: httpx.AsyncClient) -> None:
    """N ≫ K requests at once on a per-minute limit of K: K admitted, each with its own remaining count."""
    tenant = await limited_tenant(gateway, key=per_minute(PER_MINUTE))
    replies = await fire(client, [gateway.base_url], tenant.secret, tenant.model, FIRED)
    admitted = [r for r in replies if r.status_code == 200]
    denied = [r for r in replies if r.status_code != 200]
    assert len(admitted) == PER_MINUTE
    # Each admission took one slot atomically: the remaining counts are K-1 … 0, each exactly once.
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in admitted) == list(range(PER_MINUTE))
    assert {r.headers["x-ratelimit-limit"] for r in admitted} == {str(PER_MINUTE)}
    assert all(1 <= int(r.headers["x-ratelimit-reset"]) <= 60 for r in admitted)
    for reply in denied:
        error = error_of(reply)
        assert (reply.status_code, error["code"]) == (429, "rpm_exceeded")
        assert (error["scope"], error["limit"], error["type"]) == (
            "api_key",
            "requests_per_minute",
            "rate_limit_error",
        )
        assert isinstance(error["retry_after"], int)
        assert 1 <= error["retry_after"] <= 60
        assert reply.headers["retry-after"] == str(error["retry_after"])
    records = await Ledger.of(gateway).records(tenant.key_id, FIRED)
    assert len(records) == FIRED
    assert sum(refused(r) for r in records) == len(denied)
    assert {r.error_code for r in records if refused(r)} == {"rpm_exceeded"}
    print(f"rpm storm: fired {FIRED}, admitted {len(admitted)} (limit {PER_MINUTE})")


@pytest.mark.parametrize(
    ("org_limit", "key_limit", "scope"), [(2, 10, "organisation"), (10, 2, "api_key")], ids=["org", "key"]
)
async def test_every_rate_scope_must_pass(
    gateway: Gateway, client: httpx.AsyncClient, org_limit: int, key_limit: int, scope: str
) -> None:
    """The tighter of the organisation and key per-minute limits refuses and is the one advertised."""
    tenant = await limited_tenant(gateway, key=per_minute(key_limit), org=per_minute(org_limit))
    allowed = [await call(client, gateway, tenant.secret, tenant.model) for _ in range(2)]
    assert [r.status_code for r in allowed] == [200, 200]
    assert [r.headers["x-ratelimit-limit"] for r in allowed] == ["2", "2"]
    assert [r.headers["x-ratelimit-remaining"] for r in allowed] == ["1", "0"]
    third = await call(client, gateway, tenant.secret, tenant.model)
    assert third.status_code == 429
    assert (error_of(third)["code"], error_of(third)["scope"]) == ("rpm_exceeded", scope)
    other = await on_gateway(
        gateway,
        gateway.runtime.control.keys.create(tenant.organisation_id, "other", models=[tenant.model]),
    )
    # Another key of the organisation is bound by the organisation's limit, not by the first key's.
    expected = 429 if scope == "organisation" else 200
    assert (await call(client, gateway, other.secret, tenant.model)).status_code == expected


async def test_shadow_mode_records_denials_but_denies_nothing(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    """A shadow scope admits past its limit, records each would-be denial, and enforces once switched off."""
    tenant = await limited_tenant(gateway, key=per_minute(1, shadow=True))
    replies = [await call(client, gateway, tenant.secret, tenant.model) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 200]
    records = await Ledger.of(gateway).records(tenant.key_id, 3)
    by_request = {r.request_id: r for r in records}
    denials = [by_request[r.headers["x-request-id"]].metadata_.get("governance", {}) for r in replies]
    assert "shadow_denials" not in denials[0]
    expected = {
        "stage": "ratelimit_early",
        "code": "rpm_exceeded",
        "scope": "api_key",
        "limit": "requests_per_minute",
    }
    assert [d.get("shadow_denials") for d in denials[1:]] == [[expected], [expected]]
    await on_gateway(gateway, gateway.runtime.control.keys.update(tenant.key_id, policies=per_minute(1)))
    enforced = await call(client, gateway, tenant.secret, tenant.model)
    assert (enforced.status_code, error_of(enforced)["code"]) == (429, "rpm_exceeded")


BLOCKED = "203.0.113.9"
ALLOWED = "198.51.100.7"


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """Settings of one deployment (made outside any event loop: the services fixture runs its own)."""
    return make_settings()


@contextlib.asynccontextmanager
async def served_with_ip_policy(
    settings: Settings, tmp_path: Path, policy: dict[str, Any], **env: str
) -> AsyncIterator[tuple[Served, Tenant, Ledger]]:
    """An ``odock serve`` process (the real HTTP server) and a tenant whose key has an IP policy."""
    async with (
        operator(settings) as admin,
        serve_gateways(settings, tmp_path, ["gateway"], **env) as (served,),
    ):
        yield served, await admin.tenant(policies=policy), Ledger(admin.sessions)


async def post(
    client: httpx.AsyncClient, served: Served, tenant: Tenant, forwarded_for: str
) -> httpx.Response:
    """One chat completion claiming to be forwarded for ``forwarded_for``."""
    headers = {**bearer(tenant.secret), "x-forwarded-for": forwarded_for}
    return await client.post(
        served.base_url + "/v1/chat/completions", json=chat_body(tenant.model), headers=headers
    )


async def test_forwarded_client_ip_is_used_behind_a_trusted_proxy(
    settings: Settings, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """Behind a trusted proxy the right-most untrusted X-Forwarded-For hop is the client IP."""
    policy = {"ip": {"blocklist": ["203.0.113.0/24"]}}
    trusted = {"ODOCK_TRUSTED_PROXY_CIDRS": '["127.0.0.1/32"]'}
    async with served_with_ip_policy(settings, tmp_path, policy, **trusted) as (
        served,
        tenant,
        ledger,
    ):
        blocked = await post(client, served, tenant, BLOCKED)
        assert (blocked.status_code, error_of(blocked)["code"]) == (403, "ip_blocked")
        # A client cannot hide behind a forged left-most hop: the proxy appends what it saw.
        forged = await post(client, served, tenant, f"{ALLOWED}, {BLOCKED}, 127.0.0.1")
        assert (forged.status_code, error_of(forged)["code"]) == (403, "ip_blocked")
        allowed = await post(client, served, tenant, ALLOWED)
        assert allowed.status_code == 200, allowed.text
        records = {r.request_id: r for r in await ledger.records(tenant.key_id, 3)}
    assert records[blocked.headers["x-request-id"]].metadata_["client_ip"] == BLOCKED
    assert records[allowed.headers["x-request-id"]].metadata_["client_ip"] == ALLOWED


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        ({"ip": {"blocklist": ["127.0.0.0/8"]}}, "ip_blocked"),
        ({"ip": {"allowlist": [ALLOWED]}}, "ip_not_allowed"),
    ],
    ids=["blocklist", "allowlist"],
)
async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    settings: Settings,
    tmp_path: Path,
    client: httpx.AsyncClient,
    policy: dict[str, Any],
    code: str,
) -> None:
    """Without trusted proxies X-Forwarded-For can neither dodge a blocklist nor satisfy an allowlist."""
    async with served_with_ip_policy(settings, tmp_path, policy) as (served, tenant, ledger):
        spoofed = await post(client, served, tenant, ALLOWED)
        (record,) = await ledger.records(tenant.key_id, 1)
    assert record.metadata_["client_ip"] == "127.0.0.1"
    assert (spoofed.status_code, error_of(spoofed)["code"]) == (403, code)


async def test_key_self_shows_limits_budgets_quotas_and_window_usage(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    """GET /v1/keys/self lists the key's policies per scope and each budget's and quota's window use."""
    key_policy, org_policy = per_minute(50), {"ratelimit": {"tokens": {"per_minute": 100000}}}
    tenant = await limited_tenant(gateway, key=key_policy, org=org_policy)
    control = gateway.runtime.budgets
    budget = await on_gateway(
        gateway,
        control.create_budget(
            tenant.organisation_id, "daily", amount_nanos_usd=10 * REQUEST_COST, period=Period.DAILY
        ),
    )
    quota = await on_gateway(
        gateway,
        control.create_quota(
            tenant.organisation_id, "calls", metric=QuotaMetric.REQUESTS, limit=5, period=Period.WEEKLY
        ),
    )
    assert [(await call(client, gateway, tenant.secret, tenant.model)).status_code for _ in range(2)] == [
        200,
        200,
    ]
    await Ledger.of(gateway).records(tenant.key_id, 2)  # both settled: their after() hooks have run
    standing = await key_self(client, gateway.base_url, tenant.secret)
    assert standing["key"]["id"] == tenant.key_id
    assert standing["key"]["models"] == [tenant.model]
    assert standing["policies"] == {"organisation": org_policy, "team": None, "api_key": key_policy}
    spent = meter_entry(standing, budget.id)
    assert (spent["name"], spent["scope"], spent["period"], spent["unit"]) == (
        "daily",
        "org",
        "DAILY",
        "nanos_usd",
    )
    assert (spent["limit"], spent["used"], spent["reserved"]) == (10 * REQUEST_COST, 2 * REQUEST_COST, 0)
    assert spent["remaining"] == 8 * REQUEST_COST
    calls = meter_entry(standing, quota.id)
    assert (calls["metric"], calls["period"], calls["limit"], calls["used"], calls["remaining"]) == (
        "REQUESTS", "WEEKLY", 5, 2, 3,
    )  # fmt: skip
    assert set(calls["window"]) == {"start", "end"}
