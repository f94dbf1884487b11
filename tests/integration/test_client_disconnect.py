"""A client that leaves a non-streaming request frees it at once: the upstream call is cancelled.

The mock provider answers after a minute; the caller (the official OpenAI SDK) gives up first.
The key allows one request at a time, and a probe tells its state without holding anything: a
request for an unknown model passes the concurrency gate (then 400 ``model_not_found``) only when
no other request holds the key's lease, and is refused with 429 ``concurrency_exceeded`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

import httpx
import openai

from odock.budgets.windows import Period
from odock.usage.tables import UsageRecord
from tests.conftest import Gateway, Tenant, provision
from tests.support.governance import (
    MESSAGES,
    PRICING,
    REQUEST_COST,
    Ledger,
    bearer,
    chat_body,
    error_of,
    eventually,
    key_self,
    meter_entry,
    on_gateway,
)

ONE_AT_A_TIME = {"ratelimit": {"concurrency": {"max": 1, "lease_ttl_seconds": 120}}}


async def probe(client: httpx.AsyncClient, gateway: Gateway, tenant: Tenant) -> str:
    """The error code of a request for an unknown model with the tenant's key."""
    reply = await client.post(
        gateway.base_url + "/v1/chat/completions",
        json=chat_body("no-such-model"),
        headers=bearer(tenant.secret),
    )
    return str(error_of(reply)["code"])


async def abandoned_record(gateway: Gateway, tenant: Tenant) -> UsageRecord | None:
    """The usage record of the tenant's model call (not of a probe), once written."""
    records = await Ledger.of(gateway).usage(tenant.key_id)
    return next((r for r in records if r.model == tenant.model), None)


async def reserved(client: httpx.AsyncClient, gateway: Gateway, tenant: Tenant, budget_id: str) -> int:
    """What the tenant's budget holds reserved (a call in flight past the budget gate)."""
    return int(meter_entry(await key_self(client, gateway.base_url, tenant.secret), budget_id)["reserved"])


async def test_abandoned_unary_request_releases_its_lease_at_once_and_records_499(gateway: Gateway) -> None:
    """A unary caller that leaves cancels the upstream call: the key is free at once; the record says 499."""
    tenant = provision(gateway, provider_config={"latency_ms": 60_000}, pricing=PRICING)
    control = gateway.runtime
    await on_gateway(gateway, control.control.keys.update(tenant.key_id, policies=ONE_AT_A_TIME))
    budget = await on_gateway(
        gateway,
        control.budgets.create_budget(
            tenant.organisation_id, "budget", amount_nanos_usd=10**6 * REQUEST_COST, period=Period.DAILY
        ),
    )
    caller = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=tenant.secret, max_retries=0)
    call = asyncio.ensure_future(caller.chat.completions.create(model=tenant.model, messages=MESSAGES))
    async with httpx.AsyncClient(timeout=10) as client:
        in_flight = lambda: reserved(client, gateway, tenant, budget.id)  # noqa: E731
        await eventually(in_flight, "the call to wait for the provider")
        # Positive control: while it waits, the call holds the key's only lease.
        assert await probe(client, gateway, tenant) == "concurrency_exceeded"
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        await caller.close()  # the caller's connection is gone
        free = lambda: _is(probe(client, gateway, tenant), "model_not_found")  # noqa: E731
        await eventually(free, "the lease to be released", deadline=5)
        assert await reserved(client, gateway, tenant, budget.id) == 0
    record = await eventually(lambda: abandoned_record(gateway, tenant), "the abandoned call's usage record")
    assert (record.status, record.http_status, record.error_code) == ("client_disconnected", 499, None)
    assert record.latency_ms < 30_000


async def _is(code: Awaitable[str], expected: str) -> bool:
    return await code == expected
