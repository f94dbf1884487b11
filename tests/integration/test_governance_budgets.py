"""Budgets and quotas on a real gateway (active backend): storms, refusals, scopes, streams, windows.

Every price and token count is exact (see ``tests.support.governance``): a request costs
``REQUEST_COST`` nanos and ``REQUEST_TOKENS`` tokens, reserved and settled alike, so a limit of K
of them admits exactly K requests however many arrive at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from odock.budgets.tables import OwnerType, QuotaMetric
from odock.budgets.windows import Period
from tests.conftest import Gateway, Tenant, provision
from tests.support.governance import (
    COMPLETION_TOKENS,
    MOCK_CONFIG,
    NANOS_PER_TOKEN,
    PRICING,
    PROMPT_TOKENS,
    REQUEST_COST,
    REQUEST_TOKENS,
    Ledger,
    bearer,
    chat_body,
    cost_of,
    error_of,
    fire,
    http_client,
    key_self,
    meter_entry,
    on_gateway,
    prove_storm,
    tokens_of,
)

FIRED = 80
FITS = 8


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that can hold a whole storm's connections at once."""
    async with http_client(FIRED + 10) as http:
        yield http


def priced_tenant(gateway: Gateway, **provider_config: Any) -> Tenant:
    """A tenant whose mock model is priced at 1 USD per 1K tokens in and out."""
    return provision(gateway, provider_config={**MOCK_CONFIG, **provider_config}, pricing=PRICING)


async def add_budget(gateway: Gateway, tenant: Tenant, amount: int, **schedule: Any) -> str:
    """A daily budget of ``amount`` nanos on the tenant's organisation (unless ``owner_*`` say otherwise)."""
    schedule.setdefault("period", Period.DAILY)
    control = gateway.runtime.budgets
    row = await on_gateway(
        gateway, control.create_budget(tenant.organisation_id, "budget", amount_nanos_usd=amount, **schedule)
    )
    return row.id


async def add_quota(gateway: Gateway, tenant: Tenant, metric: QuotaMetric, limit: int) -> str:
    """A daily quota on the tenant's organisation."""
    control = gateway.runtime.budgets
    row = await on_gateway(
        gateway,
        control.create_quota(
            tenant.organisation_id, "quota", metric=metric, limit=limit, period=Period.DAILY
        ),
    )
    return row.id


# --- concurrency ------------------------------------------------------------------------------


async def test_budget_storm_admits_exactly_what_fits(gateway: Gateway, client: httpx.AsyncClient) -> None:
    """N ≫ K requests at once on a budget fitting K: K admitted, each settled, spend ≤ limit, 0 reserved."""
    tenant = priced_tenant(gateway)
    budget = await add_budget(gateway, tenant, FITS * REQUEST_COST)
    replies = await fire(client, [gateway.base_url], tenant.secret, tenant.model, FIRED)
    proof = await prove_storm(
        Ledger.of(gateway), client, gateway.base_url, tenant, budget, replies,
        denial=(402, "budget_exceeded"), measure=cost_of,
    )  # fmt: skip
    assert proof.admitted == FITS
    assert proof.used == FITS * REQUEST_COST == proof.limit
    print(
        f"budget storm: fired {proof.fired}, admitted {proof.admitted}, spent {proof.used} of {proof.limit}"
    )


async def test_token_quota_storm_admits_exactly_what_fits(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    """N ≫ K requests at once on a TOKENS quota fitting K: K admitted, each settled, use ≤ limit."""
    tenant = priced_tenant(gateway)
    quota = await add_quota(gateway, tenant, QuotaMetric.TOKENS, FITS * REQUEST_TOKENS)
    replies = await fire(client, [gateway.base_url], tenant.secret, tenant.model, FIRED)
    proof = await prove_storm(
        Ledger.of(gateway), client, gateway.base_url, tenant, quota, replies,
        denial=(429, "quota_exceeded"), measure=tokens_of,
    )  # fmt: skip
    assert proof.admitted == FITS
    assert proof.used == FITS * REQUEST_TOKENS == proof.limit
    print(
        f"token quota storm: fired {proof.fired}, admitted {proof.admitted}, used {proof.used}/{proof.limit}"
    )


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"), [("budget", 402, "budget_exceeded"), ("quota", 429, "quota_exceeded")]
)
async def test_refusal_names_owner_scope_and_window(
    gateway: Gateway, client: httpx.AsyncClient, kind: str, status: int, code: str
) -> None:
    """An exhausted budget (402) or quota (429) refuses before the upstream, naming owner and window."""
    tenant = priced_tenant(gateway)
    if kind == "budget":
        meter = await add_budget(gateway, tenant, REQUEST_COST)
    else:
        meter = await add_quota(gateway, tenant, QuotaMetric.REQUESTS, 1)
    (first,) = await fire(client, [gateway.base_url], tenant.secret, tenant.model, 1)
    assert first.status_code == 200, first.text
    (refused,) = await fire(client, [gateway.base_url], tenant.secret, tenant.model, 1)
    assert refused.status_code == status
    error = error_of(refused)
    entry = meter_entry(await key_self(client, gateway.base_url, tenant.secret), meter)
    assert error["code"] == code
    assert (error["scope"], error["owner_id"], error[f"{kind}_id"]) == ("org", tenant.organisation_id, meter)
    assert error["window"] == entry["window"]
    assert (error["limit"], error["requested"]) == (entry["limit"], entry["limit"])
    assert error["used"] + error["reserved"] == entry["limit"]
    records = await Ledger.of(gateway).records(tenant.key_id, 2)
    (record,) = [r for r in records if r.http_status == status]
    assert record.error_code == code
    assert record.upstream_latency_ms is None
    assert record.provider_request_id is None


async def test_every_scope_must_pass_and_narrower_scopes_add_limits(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    """A key budget refuses its key while the organisation has room; the org budget binds every key."""
    tenant = priced_tenant(gateway)
    org_budget = await add_budget(gateway, tenant, 3 * REQUEST_COST)
    key_budget = await add_budget(
        gateway, tenant, REQUEST_COST, owner_type=OwnerType.APIKEY, owner_id=tenant.key_id
    )
    other = await on_gateway(
        gateway,
        gateway.runtime.control.keys.create(tenant.organisation_id, "other", models=[tenant.model]),
    )

    async def call(secret: str) -> httpx.Response:
        (reply,) = await fire(client, [gateway.base_url], secret, tenant.model, 1)
        return reply

    assert (await call(tenant.secret)).status_code == 200
    narrow = await call(tenant.secret)
    assert narrow.status_code == 402
    assert (error_of(narrow)["scope"], error_of(narrow)["budget_id"]) == ("apikey", key_budget)
    assert error_of(narrow)["owner_id"] == tenant.key_id
    assert [(await call(other.secret)).status_code for _ in range(2)] == [200, 200]
    broad = await call(other.secret)
    assert broad.status_code == 402
    assert (error_of(broad)["scope"], error_of(broad)["budget_id"]) == ("org", org_budget)
    standing = await key_self(client, gateway.base_url, tenant.secret)
    assert meter_entry(standing, org_budget)["used"] == 3 * REQUEST_COST
    assert meter_entry(standing, key_budget)["used"] == REQUEST_COST


# --- streams ------------------------------------------------------------------------------------


def content_of(line: str) -> str:
    """The text delta of one SSE data line ('' for role, finish and usage chunks)."""
    choices = orjson.loads(line.removeprefix("data: "))["choices"]
    return str(choices[0]["delta"].get("content") or "") if choices else ""


async def test_streamed_request_settles_the_cost_of_what_was_streamed(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    """A stream read to the end settles exactly the cost of its prompt and the words it streamed."""
    tenant = priced_tenant(gateway, chunk_delay_ms=5)
    budget = await add_budget(gateway, tenant, 100 * REQUEST_COST)
    body = chat_body(tenant.model, stream=True)
    words = 0
    async with client.stream(
        "POST", gateway.base_url + "/v1/chat/completions", json=body, headers=bearer(tenant.secret)
    ) as reply:
        assert reply.status_code == 200
        lines = [line async for line in reply.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    words = len("".join(content_of(line) for line in lines[:-1]).split())
    assert words == COMPLETION_TOKENS
    (record,) = await Ledger.of(gateway).records(tenant.key_id, 1)
    (window,) = await Ledger.of(gateway).windows(budget)
    streamed_cost = (PROMPT_TOKENS + words) * NANOS_PER_TOKEN
    assert record.total_cost_nanos_usd == streamed_cost
    assert await Ledger.of(gateway).settlements(window.key) == {record.id: streamed_cost}
    entry = meter_entry(await key_self(client, gateway.base_url, tenant.secret), budget)
    assert (entry["used"], entry["reserved"]) == (streamed_cost, 0)


async def test_client_disconnect_mid_stream_releases_the_lease_and_settles_partial_usage(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    """A client leaving mid-stream frees its concurrency lease and settles only the partial usage."""
    full = 400
    tenant = priced_tenant(gateway, completion_tokens=full, chunk_delay_ms=10)
    policy = {"ratelimit": {"concurrency": {"max": 1, "lease_ttl_seconds": 120}}}
    await on_gateway(gateway, gateway.runtime.control.keys.update(tenant.key_id, policies=policy))
    budget = await add_budget(gateway, tenant, 10 * full * NANOS_PER_TOKEN)
    body = chat_body(tenant.model, stream=True, max_tokens=full)
    received = 0
    async with client.stream(
        "POST", gateway.base_url + "/v1/chat/completions", json=body, headers=bearer(tenant.secret)
    ) as reply:
        assert reply.status_code == 200
        async for line in reply.aiter_lines():
            if line and content_of(line):
                received += 1
            if received == 5:
                break
        # Positive control: the open stream holds the key's only lease.
        (busy,) = await fire(client, [gateway.base_url], tenant.secret, tenant.model, 1)
        assert (busy.status_code, error_of(busy)["code"]) == (429, "concurrency_exceeded")
    # Leaving the block closes the connection mid-stream.
    ledger = Ledger.of(gateway)
    records = await ledger.records(tenant.key_id, 2)
    (record,) = [r for r in records if r.stream]
    assert record.status == "client_disconnected"
    assert received <= record.completion_tokens < full
    assert record.metadata_["usage_estimated"] is True
    partial = (PROMPT_TOKENS + record.completion_tokens) * NANOS_PER_TOKEN
    assert record.total_cost_nanos_usd == partial
    (window,) = await ledger.windows(budget)
    assert await ledger.settlements(window.key) == {record.id: partial}
    entry = meter_entry(await key_self(client, gateway.base_url, tenant.secret), budget)
    assert (entry["used"], entry["reserved"]) == (partial, 0)
    (after,) = await fire(client, [gateway.base_url], tenant.secret, tenant.model, 1)
    assert after.status_code == 200, after.text


# --- windows ------------------------------------------------------------------------------------

PARIS = ZoneInfo("Europe/Paris")


def paris_midnight(day: date) -> datetime:
    """Local midnight of ``day`` in Paris, as a UTC instant."""
    return datetime.combine(day, clock(), PARIS).astimezone(UTC)


def anchor_across_dst(today: date) -> date:
    """A day at least 100 days back whose Paris midnight has another UTC offset than today's."""
    offset: Callable[[date], timedelta | None] = lambda d: datetime.combine(d, clock(), PARIS).utcoffset()  # noqa: E731
    return next(
        today - timedelta(days=n)
        for n in range(100, 500)
        if offset(today - timedelta(days=n)) != offset(today)
    )


async def test_daily_window_in_paris_follows_local_midnight_across_dst(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    """A daily Europe/Paris budget anchored across a DST change has today's local-midnight window."""
    tenant = priced_tenant(gateway)
    before = datetime.now(PARIS).date()
    anchor = anchor_across_dst(before)
    budget = await add_budget(
        gateway,
        tenant,
        REQUEST_COST,
        start_at=datetime.combine(anchor, clock(), PARIS),
        timezone="Europe/Paris",
    )
    assert (await fire(client, [gateway.base_url], tenant.secret, tenant.model, 1))[0].status_code == 200
    (refused,) = await fire(client, [gateway.base_url], tenant.secret, tenant.model, 1)
    entry = meter_entry(await key_self(client, gateway.base_url, tenant.secret), budget)
    after = datetime.now(PARIS).date()
    window = {k: datetime.fromisoformat(v) for k, v in entry["window"].items()}
    # The test may straddle Paris midnight; the window must then be one of the two days'.
    expected = [
        {"start": paris_midnight(d), "end": paris_midnight(d + timedelta(days=1))} for d in {before, after}
    ]
    assert window in expected, f"window {entry['window']} is not a Paris day (anchor {anchor})"
    assert entry["timezone"] == "Europe/Paris"
    assert refused.status_code == 402
    assert error_of(refused)["window"] == entry["window"]
