"""Governance under faults: a flushed Redis, a gateway SIGKILLed mid-request, an unreachable Redis.

The ledger in the database is the source of truth and the hot counters are a cache of it, so
none of these faults may reset spend or leave capacity reserved; when the counters cannot be
reached at all, the documented fail mode decides (closed by default: 503).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from odock.budgets.windows import Period
from odock.settings import Settings
from tests.conftest import BACKEND, GatewayFactory, SettingsFactory, Tenant, provision
from tests.support import services
from tests.support.governance import (
    MOCK_CONFIG,
    PRICING,
    REQUEST_COST,
    Ledger,
    Operator,
    Served,
    bearer,
    chat_body,
    error_of,
    eventually,
    http_client,
    key_self,
    meter_entry,
    on_gateway,
    operator,
    private_redis,
    serve_gateways,
    start_served,
)

# Reservations expire quickly and are swept often, so a crash is reconciled within seconds.
FAST_RECONCILE = {
    "ODOCK_BUDGET_RESERVATION_TTL_SECONDS": "2",
    "ODOCK_BUDGET_RECONCILE_INTERVAL_SECONDS": "0.5",
}


def production_only() -> None:
    """Skip unless the integration suite runs on PostgreSQL + Redis."""
    if BACKEND != "production":
        pytest.skip("needs the production backend (Redis)")
    services.require_services()


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """Settings of one deployment (made outside any event loop: the services fixture runs its own)."""
    return make_settings()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that can hold a whole storm's connections at once."""
    async with http_client() as http:
        yield http


async def chat(
    client: httpx.AsyncClient, url: str, tenant: Tenant, model: str | None = None
) -> httpx.Response:
    """One chat completion on the gateway at ``url``."""
    body = chat_body(model or tenant.model)
    return await client.post(url + "/v1/chat/completions", json=body, headers=bearer(tenant.secret))


# --- Redis flushed -----------------------------------------------------------------------------


async def prefix_keys(settings: Settings, pattern: str = "*") -> list[bytes]:
    """The Redis keys under this deployment's prefix."""
    assert settings.redis_url
    redis = Redis.from_url(settings.redis_url)
    try:
        return [key async for key in redis.scan_iter(match=settings.redis_prefix + pattern, count=1000)]
    finally:
        await redis.aclose()


async def test_spend_survives_a_redis_flush(
    settings: Settings, gateway_factory: GatewayFactory, client: httpx.AsyncClient
) -> None:
    """After every key of the deployment is deleted from Redis, an exhausted budget still refuses (402)."""
    production_only()
    gateway = gateway_factory(settings)
    tenant = provision(gateway, provider_config=MOCK_CONFIG, pricing=PRICING)
    budget = await on_gateway(
        gateway,
        gateway.runtime.budgets.create_budget(
            tenant.organisation_id, "flushed", amount_nanos_usd=2 * REQUEST_COST, period=Period.DAILY
        ),
    )
    assert [(await chat(client, gateway.base_url, tenant)).status_code for _ in range(3)] == [200, 200, 402]
    ledger = Ledger.of(gateway)
    await ledger.records(tenant.key_id, 3)
    (window,) = await ledger.windows(budget.id)
    assert window.used == 2 * REQUEST_COST
    counters = await prefix_keys(settings, "meter:c:*")
    assert counters, "positive control: the budget's counter lives in Redis"

    await services.delete_redis_prefix(settings.redis_prefix)
    # Everything is gone, except that the running gateway's usage reader may already have
    # recreated its (empty) stream: it does so whenever it finds its consumer group missing.
    assert [key for key in await prefix_keys(settings) if not key.endswith(b":usage:stream")] == []

    refused = await chat(client, gateway.base_url, tenant)
    assert (refused.status_code, error_of(refused)["code"]) == (402, "budget_exceeded")
    assert error_of(refused)["used"] == 2 * REQUEST_COST
    assert await prefix_keys(settings, "meter:c:*") == counters  # rebuilt from the ledger
    entry = meter_entry(await key_self(client, gateway.base_url, tenant.secret), budget.id)
    assert (entry["used"], entry["reserved"], entry["remaining"]) == (2 * REQUEST_COST, 0, 0)
    # The usage pipeline lives under the same prefix and must survive the flush too.
    records = await ledger.records(tenant.key_id, 4)
    assert sorted(r.http_status for r in records) == [200, 200, 402, 402]


# --- a gateway killed between reserve and settle ------------------------------------------------


async def slow_tenant(admin: Operator) -> tuple[Tenant, str]:
    """A tenant with a fast and a slow (60 s) model, and the id of a budget fitting exactly one request."""
    tenant = await admin.tenant()
    slow = {"latency_ms": 60_000}
    await admin.control.models.create(
        tenant.organisation_id, "slow-model", provider_id=tenant.provider_id, pricing=PRICING, config=slow
    )
    await admin.control.keys.grant(tenant.key_id, ["slow-model"])
    budget = await admin.budgets.create_budget(
        tenant.organisation_id, "one", amount_nanos_usd=REQUEST_COST, period=Period.DAILY
    )
    return tenant, budget.id


async def reserved(client: httpx.AsyncClient, served: Served, tenant: Tenant) -> int:
    """The reservations held on the tenant's budget, as a gateway reports them."""
    (budget,) = (await key_self(client, served.base_url, tenant.secret))["budgets"]
    return int(budget["reserved"])


async def test_reservation_of_a_killed_gateway_is_reconciled(
    settings: Settings, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """A gateway SIGKILLed while its request holds a reservation leaves nothing reserved, and bills the
    killed request at its estimate where its journal is replayed (embedded), or lets it lapse."""
    names = ["doomed", "survivor"] if BACKEND == "production" else ["doomed"]
    async with (
        operator(settings) as admin,
        serve_gateways(settings, tmp_path, names, **FAST_RECONCILE) as replicas,
        asyncio.TaskGroup() as tasks,
    ):
        tenant, budget = await slow_tenant(admin)
        doomed, observer = replicas[0], replicas[-1]

        async def slow_call() -> httpx.Response | httpx.TransportError:
            try:
                return await chat(client, doomed.base_url, tenant, "slow-model")
            except httpx.TransportError as exc:
                return exc

        in_flight = tasks.create_task(slow_call())
        await eventually(lambda: reserved(client, observer, tenant), "the slow request's reservation")
        held = await chat(client, observer.base_url, tenant)
        assert (held.status_code, error_of(held)["code"]) == (402, "budget_exceeded")
        # Its usage record is queued only after the answer went out: let it land before the crash.
        ledger = Ledger(admin.sessions)
        await ledger.records(tenant.key_id, 1)

        await doomed.kill()
        killed_at = time.monotonic()
        assert isinstance(await in_flight, httpx.TransportError)
        if BACKEND != "production":
            # Embedded: the counters died with the process; its restart (same data directory, so
            # its usage journal is replayed) rebuilds them from the ledger.
            observer = await start_served("restarted", settings, tmp_path, home=doomed.name, **FAST_RECONCILE)
            replicas.append(observer)

        async def released() -> bool:
            return await reserved(client, observer, tenant) == 0

        await eventually(released, "the killed request's reservation to be reconciled")
        elapsed = time.monotonic() - killed_at
        after = await chat(client, observer.base_url, tenant)
        records = await ledger.records(tenant.key_id, 3 if BACKEND != "production" else 2)
        (window,) = await ledger.windows(budget)
    if BACKEND != "production":
        # The restart replayed the killed request's intent from the journal: an `interrupted`
        # record billed at the reservation's estimate, which spends the budget.
        assert (after.status_code, error_of(after)["code"]) == (402, "budget_exceeded")
        assert sorted(r.status for r in records) == ["error", "error", "interrupted"]
    else:
        # Another host's journal is not this replica's to replay: the reservation lapses (its TTL)
        # and the killed request is not billed, so the budget admits again.
        assert after.status_code == 200, after.text
        assert sorted(r.http_status for r in records) == [200, 402]
    assert window.used == REQUEST_COST
    print(f"SIGKILL between reserve and settle ({BACKEND}): reservation gone {elapsed:.2f}s after the kill")


# --- Redis unreachable --------------------------------------------------------------------------


RPM_POLICY = {"ratelimit": {"requests": {"per_minute": 1000}}}
OUTAGE_CODES = {"rpm": "ratelimit_unavailable", "budget": "budget_enforcement_unavailable"}
UNAVAILABLE_MARKS = {"rpm": "ratelimit_unavailable", "budget": "budgets_unavailable"}


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
async def test_unreachable_redis_follows_the_fail_mode(
    settings: Settings,
    make_settings: SettingsFactory,
    gateway_factory: GatewayFactory,
    tmp_path: Path,
    client: httpx.AsyncClient,
    fail_open: bool,
) -> None:
    """Redis gone: limited requests get 503 (closed, the default) or pass marked (open); others pass."""
    production_only()
    async with private_redis(tmp_path) as redis:
        gateway = gateway_factory(make_settings(redis_url=redis.url, governance_fail_open=fail_open))
        names = ("rpm", "budget", "free")
        tenants = {name: provision(gateway, provider_config=MOCK_CONFIG, pricing=PRICING) for name in names}
        runtime = gateway.runtime
        await on_gateway(gateway, runtime.control.keys.update(tenants["rpm"].key_id, policies=RPM_POLICY))
        budget_org = tenants["budget"].organisation_id
        await on_gateway(
            gateway,
            runtime.budgets.create_budget(
                budget_org, "b", amount_nanos_usd=100 * REQUEST_COST, period=Period.DAILY
            ),
        )
        for tenant in tenants.values():  # warm: keys and models are served from the local cache
            assert (await chat(client, gateway.base_url, tenant)).status_code == 200
        ledger = Ledger.of(gateway)
        for tenant in tenants.values():
            # Stored before the outage: this Redis keeps no data, so its stream entries die with it.
            await ledger.records(tenant.key_id, 1)

        await redis.kill()
        started = time.monotonic()
        replies = {name: await chat(client, gateway.base_url, tenant) for name, tenant in tenants.items()}
        took = time.monotonic() - started
        assert replies["free"].status_code == 200, replies["free"].text
        for name, code in OUTAGE_CODES.items():
            reply = replies[name]
            if fail_open:
                assert reply.status_code == 200, reply.text
            else:
                assert (reply.status_code, error_of(reply)["code"]) == (503, code)

        await redis.start()  # empty, on the same port: the journaled usage records drain to the database
        records = {name: await ledger.records(t.key_id, 2, deadline=30) for name, t in tenants.items()}
        gateway.server.stop()  # while its Redis is up
    for name, mark in UNAVAILABLE_MARKS.items():
        (outage,) = [r for r in records[name] if r.request_id == replies[name].headers["x-request-id"]]
        if fail_open:
            assert outage.metadata_["governance"][mark] is True
            assert outage.status == "success"
        else:
            assert (outage.http_status, outage.error_code) == (503, OUTAGE_CODES[name])
            assert outage.upstream_latency_ms is None
    print(f"Redis outage ({'open' if fail_open else 'closed'}): 3 requests answered in {took:.2f}s")
