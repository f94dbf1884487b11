"""Integers a client sends can never overflow the gateway's counters (issue #17, defect 1).

Each reproduction of the review goes through the gateway with the official OpenAI client: a huge
``max_tokens`` on a key under a budget, a TOKENS quota or a TPM limit is a 400 naming the field
(never a 500), the refused request still has its usage record, and a large but valid allowance
at a high price is refused by the budget instead of overflowing its 64-bit counter.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from odock.budgets.tables import QuotaMetric
from odock.budgets.windows import Period
from tests.conftest import Gateway, Tenant, provision
from tests.integration.conftest import MESSAGES, assert_error_response, only_usage_record, sdk
from tests.support.governance import MOCK_CONFIG, PRICING

MAX_TOKEN_COUNT = 2**31 - 1


def governed_tenant(gateway: Gateway, pricing: dict[str, Any] = PRICING) -> Tenant:
    """A priced mock tenant."""
    return provision(gateway, provider_config=MOCK_CONFIG, pricing=pricing)


def add_budget(gateway: Gateway, tenant: Tenant, nanos: int) -> None:
    """A daily budget on the tenant's organisation."""
    control = gateway.runtime.budgets
    gateway.run(
        control.create_budget(tenant.organisation_id, "budget", amount_nanos_usd=nanos, period=Period.DAILY)
    )


def add_token_quota(gateway: Gateway, tenant: Tenant, limit: int) -> None:
    """A daily TOKENS quota on the tenant's organisation."""
    control = gateway.runtime.budgets
    gateway.run(
        control.create_quota(
            tenant.organisation_id, "quota", metric=QuotaMetric.TOKENS, limit=limit, period=Period.DAILY
        )
    )


def refused_max_tokens(gateway: Gateway, tenant: Tenant, max_tokens: int) -> openai.BadRequestError:
    """Ask for ``max_tokens`` and return the 400 that names it."""
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway, tenant.secret).chat.completions.create(
            model=tenant.model, messages=MESSAGES, max_tokens=max_tokens
        )
    error = assert_error_response(caught.value, status=400, code="invalid_request_body")
    assert error["param"] == "max_tokens"
    return caught.value


def test_a_huge_max_tokens_under_a_budget_is_a_400(gateway: Gateway) -> None:
    """``max_tokens`` 2^53+1 on a key with a budget is a 400 naming the field, not a 500."""
    tenant = governed_tenant(gateway)
    add_budget(gateway, tenant, 10**12)
    refused_max_tokens(gateway, tenant, 9_007_199_254_740_993)


def test_a_huge_max_tokens_under_a_token_quota_is_a_400(gateway: Gateway) -> None:
    """``max_tokens`` 2^63-1 on a key with a TOKENS quota is a 400 naming the field, not a 500."""
    tenant = governed_tenant(gateway)
    add_token_quota(gateway, tenant, 10**9)
    refused_max_tokens(gateway, tenant, 2**63 - 1)


def test_a_huge_max_tokens_under_a_tpm_limit_is_a_400_with_its_usage_record(gateway: Gateway) -> None:
    """``max_tokens`` 2^64-1 under a TPM limit is a 400, and its usage record is written."""
    tenant = governed_tenant(gateway)
    policy = {"ratelimit": {"tokens": {"per_minute": 100_000}}}
    gateway.run(gateway.runtime.control.keys.update(tenant.key_id, policies=policy))
    error = refused_max_tokens(gateway, tenant, 2**64 - 1)
    record = only_usage_record(gateway, error.response.headers["x-request-id"])
    assert (record.http_status, record.error_code) == (400, "invalid_request_body")


def test_the_largest_allowance_at_a_huge_price_is_refused_by_the_budget(gateway: Gateway) -> None:
    """A valid ``max_tokens`` whose cost estimate passes 2^63 nanos is a 402 and leaves nothing reserved."""
    per_1k = 10_000_000.0  # USD per 1K output tokens: 2^31 tokens cost about 2 * 10^19 nanos
    tenant = governed_tenant(gateway, {"input": {"text_cost_per_1k_tokens": 1.0},
                                       "output": {"text_cost_per_1k_tokens": per_1k}})  # fmt: skip
    add_budget(gateway, tenant, 10**12)
    client = sdk(gateway, tenant.secret)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=tenant.model, messages=MESSAGES, max_tokens=MAX_TOKEN_COUNT)
    assert (caught.value.status_code, caught.value.code) == (402, "budget_exceeded")
    assert caught.value.response.json()["error"]["requested"] == 2**63 - 1
    record = only_usage_record(gateway, caught.value.response.headers["x-request-id"])
    assert record.error_code == "budget_exceeded"
    standing = client.get("/keys/self", cast_to=object)
    assert isinstance(standing, dict)
    assert [(b["reserved"], b["used"]) for b in standing["budgets"]] == [(0, 0)]
