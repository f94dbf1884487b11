"""What a request refused by a budget or quota keeps of its rate limits (issue #17, defect 10).

The decision (docs/governance.md): request limits (burst, per second, per minute) count every
request admitted past the early gate, refused later or not, so a key that hit its quota cannot
retry in a loop for free; tokens per minute count tokens used, so a refused request's TPM
reservation is returned. Run on both backends (``ODOCK_TEST_BACKEND``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from odock.budgets.tables import QuotaMetric
from odock.budgets.windows import Period
from tests.conftest import Gateway, provision
from tests.support.governance import (
    MOCK_CONFIG,
    PRICING,
    REQUEST_TOKENS,
    Ledger,
    bearer,
    chat_body,
    error_of,
    http_client,
    on_gateway,
)

PER_MINUTE = 3
TOKENS_PER_MINUTE = 3 * REQUEST_TOKENS - 1  # two requests' estimates fit, a third does not


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client."""
    async with http_client() as http:
        yield http


async def test_a_quota_refusal_keeps_its_request_slot_and_returns_its_tokens(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    """Past a one-request quota, refusals use up the per-minute limit, but never the token limit."""
    tenant = provision(gateway, provider_config=MOCK_CONFIG, pricing=PRICING)
    policy = {
        "ratelimit": {"requests": {"per_minute": PER_MINUTE}, "tokens": {"per_minute": TOKENS_PER_MINUTE}}
    }
    await on_gateway(gateway, gateway.runtime.control.keys.update(tenant.key_id, policies=policy))
    await on_gateway(
        gateway,
        gateway.runtime.budgets.create_quota(
            tenant.organisation_id, "one call", metric=QuotaMetric.REQUESTS, limit=1, period=Period.DAILY
        ),
    )
    url = gateway.base_url + "/v1/chat/completions"
    replies = [
        await client.post(url, json=chat_body(tenant.model), headers=bearer(tenant.secret)) for _ in range(4)
    ]
    outcomes = [(r.status_code, None if r.status_code == 200 else error_of(r)["code"]) for r in replies]
    # The third request fits the token limit only because the second's reservation was returned;
    # the fourth finds the per-minute limit used up by one success and two refusals.
    assert outcomes == [(200, None), (429, "quota_exceeded"), (429, "quota_exceeded"), (429, "rpm_exceeded")]
    records = await Ledger(gateway.runtime.sessions, gateway).records(tenant.key_id, 4)
    assert sorted(str(r.error_code) for r in records) == [
        "None",
        "quota_exceeded",
        "quota_exceeded",
        "rpm_exceeded",
    ]
