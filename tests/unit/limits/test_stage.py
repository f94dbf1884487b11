"""The rate-limit gates: what each admits or refuses, what it takes, and what ``after`` gives back.

Driven with the in-process limiter on a clock that moves only when told to; the fail modes with
a Redis limiter whose server cannot be reached (a real client, a refused connection).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from odock.errors import (
    ConcurrencyExceeded,
    IpBlocked,
    IpNotAllowed,
    MaxTokensExceeded,
    PayloadTooLarge,
    RateLimiterUnavailable,
    RpmExceeded,
    TpmExceeded,
)
from odock.keys.principal import KeyPrincipal
from odock.limits.decision import Receipt
from odock.limits.limiter import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from odock.limits.policy import PolicyResolver, parse_policy
from odock.limits.stage import EarlyGate, FinalGate, PreAuthGate
from odock.llm.upstream import Usage
from odock.pipeline.exchange import Exchange
from odock.surfaces.stage import estimate
from tests.support.metrics import counted
from tests.support.stages import exchange, principal, refusal, resolved_model

DEFAULT_OUTPUT = 50
DECISIONS = "gateway_ratelimit_decisions_total"
PROMPT_TOKENS = 6  # the estimate for the default body's one "hello" message


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limiter() -> MemoryRateLimiter:
    """The in-process limiter on a still clock."""
    return MemoryRateLimiter(Clock())


@pytest.fixture
async def unreachable() -> AsyncIterator[RedisRateLimiter]:
    """A Redis limiter whose server refuses connections: every call is RateLimiterUnavailable."""
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        yield RedisRateLimiter(client, "odock-unreachable:")
    finally:
        await client.aclose()


def ratelimit(**sections: Any) -> dict[str, Any]:
    """A policy envelope with the given ``ratelimit`` sections."""
    return {"ratelimit": sections}


def early(limiter: RateLimiter, *, fail_open: bool = False) -> EarlyGate:
    """The early gate with no global policy."""
    return EarlyGate(limiter, PolicyResolver(), fail_open=fail_open)


def final(limiter: RateLimiter, *, fail_open: bool = False) -> FinalGate:
    """The final gate with no global policy."""
    return FinalGate(limiter, PolicyResolver(), fail_open=fail_open)


def pre_auth(limiter: RateLimiter, policy: dict[str, Any], *, fail_open: bool = False) -> PreAuthGate:
    """The pre-auth gate under a global ``policy``."""
    return PreAuthGate(limiter, PolicyResolver(parse_policy(policy)), fail_open=fail_open)


def authenticated(key: KeyPrincipal, **fields: Any) -> Exchange:
    """An exchange past authentication with ``key``."""
    return exchange(principal=key, **fields)


def resolved(key: KeyPrincipal, *, max_tokens: int | None = None, model_policies: Any = None) -> Exchange:
    """An exchange past model resolution, asking for ``max_tokens`` output tokens if given."""
    payload: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    ex = exchange(principal=key, payload=payload, model=resolved_model(policies=model_policies or {}))
    estimate(ex, DEFAULT_OUTPUT)  # what EstimateTokens does before the final gate
    return ex


# --- PreAuthGate -------------------------------------------------------------------------------


async def test_without_a_global_policy_nothing_is_taken(limiter: MemoryRateLimiter) -> None:
    """An empty global policy admits without calling the limiter."""
    ex = exchange()
    await pre_auth(limiter, {}).before(ex)
    assert ex.limit_receipts == {}
    assert limiter.held_counters() == 0


async def test_a_globally_blocked_address_is_refused_before_authentication(
    limiter: MemoryRateLimiter,
) -> None:
    """An address on the global blocklist is 403 ip_blocked, with no key looked at yet."""
    gate = pre_auth(limiter, {"ip": {"blocklist": ["10.0.0.0/8"]}})
    error = await refusal(gate, exchange(client_ip="10.1.2.3"))
    assert type(error) is IpBlocked
    assert (error.code, error.http_status, error.extra["scope"]) == ("ip_blocked", 403, "global")


async def test_the_global_request_limit_counts_every_caller(limiter: MemoryRateLimiter) -> None:
    """Past the global per-minute limit the next request is 429 rpm_exceeded with a Retry-After."""
    gate = pre_auth(limiter, ratelimit(requests={"per_minute": 2}))
    for _ in range(2):
        ex = exchange()
        await gate.before(ex)
        assert ex.limit_receipts["pre_auth"] is not None
    error = await refusal(gate, exchange())
    assert type(error) is RpmExceeded
    assert error.http_status == 429
    assert int(error.headers["Retry-After"]) >= 1


async def test_pre_auth_after_releases_its_concurrency_lease(limiter: MemoryRateLimiter) -> None:
    """A global concurrency lease is held until the gate's ``after`` and free again then."""
    gate = pre_auth(limiter, ratelimit(concurrency={"max": 1}))
    first = exchange()
    await gate.before(first)
    assert type(await refusal(gate, exchange())) is ConcurrencyExceeded
    await gate.after(first)
    await gate.before(exchange())


# --- EarlyGate ---------------------------------------------------------------------------------


async def test_a_key_without_policies_passes_untouched(limiter: MemoryRateLimiter) -> None:
    """A key whose organisation, team and key scopes limit nothing takes nothing."""
    ex = authenticated(principal())
    await early(limiter).before(ex)
    assert ex.limit_receipts == {}


async def test_an_address_outside_the_keys_allowlist_is_refused(limiter: MemoryRateLimiter) -> None:
    """A key's IP allowlist refuses other addresses with 403 ip_not_allowed on the key scope."""
    key = principal(policies={"ip": {"allowlist": ["192.168.0.0/16"]}})
    error = await refusal(early(limiter), authenticated(key, client_ip="10.0.0.1"))
    assert type(error) is IpNotAllowed
    assert error.extra["scope"] == "api_key"
    await early(limiter).before(authenticated(key, client_ip="192.168.1.1"))


async def test_a_body_over_the_organisations_payload_limit_is_refused(limiter: MemoryRateLimiter) -> None:
    """The organisation's max_request_bytes refuses a larger body with 413 payload_too_large."""
    key = principal(organisation_policies=ratelimit(payload={"max_request_bytes": 10}))
    error = await refusal(early(limiter), authenticated(key, body=b"x" * 11))
    assert type(error) is PayloadTooLarge
    assert (error.http_status, error.extra["scope"]) == (413, "organisation")
    await early(limiter).before(authenticated(key, body=b"x" * 10))


async def test_the_tightest_request_limit_is_advertised(limiter: MemoryRateLimiter) -> None:
    """An admitted request carries X-RateLimit-* headers of the limit with the least remaining."""
    key = principal(
        organisation_policies=ratelimit(requests={"per_minute": 100}),
        policies=ratelimit(requests={"per_minute": 3}),
    )
    ex = authenticated(key)
    await early(limiter).before(ex)
    assert ex.response_headers["x-ratelimit-limit"] == "3"
    assert ex.response_headers["x-ratelimit-remaining"] == "2"


async def test_the_organisation_limit_is_shared_by_its_keys(limiter: MemoryRateLimiter) -> None:
    """Two keys of one organisation draw on the organisation's one per-minute limit."""
    org_limit = ratelimit(requests={"per_minute": 1})
    first = principal(organisation_policies=org_limit)
    second = principal(key_id="key2", key_hash="g" * 64, organisation_policies=org_limit)
    gate = early(limiter)
    await gate.before(authenticated(first))
    error = await refusal(gate, authenticated(second))
    assert type(error) is RpmExceeded
    assert error.extra["scope"] == "organisation"


async def test_a_refused_admission_takes_nothing(limiter: MemoryRateLimiter) -> None:
    """When the key's limit refuses, the organisation's counter is not charged (all or nothing)."""
    key = principal(
        organisation_policies=ratelimit(requests={"per_minute": 2}),
        policies=ratelimit(requests={"per_minute": 1}),
    )
    other = principal(
        key_id="key2", key_hash="g" * 64, organisation_policies=ratelimit(requests={"per_minute": 2})
    )
    gate = early(limiter)
    await gate.before(authenticated(key))
    assert type(await refusal(gate, authenticated(key))) is RpmExceeded
    await gate.before(authenticated(other))  # the organisation's second request is still free


async def test_a_shadow_limit_reports_instead_of_refusing(limiter: MemoryRateLimiter) -> None:
    """Past a shadow limit the request is admitted and the denial is noted for the usage record."""
    key = principal(policies={**ratelimit(requests={"per_minute": 1}), "shadow": True})
    gate = early(limiter)
    await gate.before(authenticated(key))
    ex = authenticated(key)
    await gate.before(ex)
    assert ex.governance.shadow_denials == [
        {
            "stage": "ratelimit_early",
            "code": "rpm_exceeded",
            "scope": "api_key",
            "limit": "requests_per_minute",
        }
    ]


async def test_early_after_releases_the_keys_lease(limiter: MemoryRateLimiter) -> None:
    """The key's concurrency lease is refused to a second request until the first's ``after``."""
    key = principal(policies=ratelimit(concurrency={"max": 1}))
    gate = early(limiter)
    first = authenticated(key)
    await gate.before(first)
    error = await refusal(gate, authenticated(key))
    assert type(error) is ConcurrencyExceeded
    assert error.extra["limit"] == "max_concurrency"
    await gate.after(first)
    await gate.before(authenticated(key))


# --- FinalGate ---------------------------------------------------------------------------------


async def test_max_tokens_above_the_keys_limit_is_a_400(limiter: MemoryRateLimiter) -> None:
    """A requested max_tokens above a scope's payload.max_tokens is 400 naming ``max_tokens``."""
    key = principal(policies=ratelimit(payload={"max_tokens": 100}))
    error = await refusal(final(limiter), resolved(key, max_tokens=101))
    assert type(error) is MaxTokensExceeded
    assert (error.http_status, error.param) == (400, "max_tokens")
    await final(limiter).before(resolved(key, max_tokens=100))


async def test_the_model_request_limit_applies_to_every_key(limiter: MemoryRateLimiter) -> None:
    """The model's own per-minute limit refuses the next call, whichever key makes it."""
    model_limit = ratelimit(requests={"per_minute": 1})
    gate = final(limiter)
    await gate.before(resolved(principal(), model_policies=model_limit))
    other = principal(key_id="key2", key_hash="g" * 64)
    error = await refusal(gate, resolved(other, model_policies=model_limit))
    assert type(error) is RpmExceeded
    assert error.extra["scope"] == "model"


async def test_tokens_are_reserved_from_the_estimate(limiter: MemoryRateLimiter) -> None:
    """The TPM reservation is the estimated prompt plus the output asked for; past the limit, 429."""
    key = principal(policies=ratelimit(tokens={"per_minute": PROMPT_TOKENS + 40}))
    gate = final(limiter)
    ex = resolved(key, max_tokens=40)
    await gate.before(ex)
    assert ex.governance.tpm_estimate == PROMPT_TOKENS + 40
    error = await refusal(gate, resolved(key, max_tokens=1))
    assert type(error) is TpmExceeded
    assert error.extra["limit"] == "tokens_per_minute"


async def test_without_max_tokens_the_default_output_is_reserved(limiter: MemoryRateLimiter) -> None:
    """A request that names no output limit reserves the configured default output allowance."""
    ex = resolved(principal(policies=ratelimit(tokens={"per_minute": 1000})))
    await final(limiter).before(ex)
    assert ex.governance.tpm_estimate == PROMPT_TOKENS + DEFAULT_OUTPUT


async def test_after_reconciles_the_reservation_to_the_tokens_used(limiter: MemoryRateLimiter) -> None:
    """Once the request used fewer tokens than reserved, the difference is free for the next one."""
    key = principal(policies=ratelimit(tokens={"per_minute": 100}))
    gate = final(limiter)
    first = resolved(key, max_tokens=60)  # reserves 66 of 100
    await gate.before(first)
    assert type(await refusal(gate, resolved(key, max_tokens=60))) is TpmExceeded
    first.usage = Usage(PROMPT_TOKENS, 4, PROMPT_TOKENS + 4)
    await gate.after(first)  # 66 becomes 10
    await gate.before(resolved(key, max_tokens=60))


async def test_a_request_that_used_nothing_gives_its_whole_reservation_back(
    limiter: MemoryRateLimiter,
) -> None:
    """A request refused before its upstream call (no usage) reconciles its reservation to zero."""
    key = principal(policies=ratelimit(tokens={"per_minute": 100}))
    gate = final(limiter)
    first = resolved(key, max_tokens=90)
    await gate.before(first)
    await gate.after(first)
    await gate.before(resolved(key, max_tokens=90))


async def test_final_after_releases_the_earlier_gates_leases_in_one_call(limiter: MemoryRateLimiter) -> None:
    """The final gate's ``after`` frees the early gate's lease too, leaving the early ``after`` nothing."""
    key = principal(policies=ratelimit(concurrency={"max": 1}))
    early_gate, final_gate = early(limiter), final(limiter)
    first = resolved(key)
    await early_gate.before(first)
    await final_gate.before(first)
    await final_gate.after(first)
    assert first.limit_receipts == {}
    await early_gate.after(first)
    await early_gate.before(resolved(key))


# --- fail modes --------------------------------------------------------------------------------


@pytest.mark.parametrize("gate_kind", ["pre_auth", "early", "final"])
async def test_fail_closed_refuses_when_the_store_is_unreachable(
    unreachable: RedisRateLimiter, gate_kind: str
) -> None:
    """With fail_open off, an unreachable limiter store is 503 ratelimit_unavailable at every gate."""
    limited = ratelimit(requests={"per_minute": 10})
    key = principal(policies=limited)
    gates = {
        "pre_auth": pre_auth(unreachable, limited),
        "early": early(unreachable),
        "final": final(unreachable),
    }
    rejected = counted(DECISIONS, ratelimit_stage=gate_kind, decision="reject")
    error = await refusal(gates[gate_kind], resolved(key, model_policies=limited))
    assert type(error) is RateLimiterUnavailable
    assert (error.code, error.http_status) == ("ratelimit_unavailable", 503)
    assert counted(DECISIONS, ratelimit_stage=gate_kind, decision="reject") == rejected + 1


@pytest.mark.parametrize("gate_kind", ["pre_auth", "early", "final"])
async def test_fail_open_admits_and_marks_the_request(unreachable: RedisRateLimiter, gate_kind: str) -> None:
    """With fail_open on, an unreachable store admits the request and marks it for the usage record."""
    limited = ratelimit(requests={"per_minute": 10})
    key = principal(policies=limited)
    gates = {
        "pre_auth": pre_auth(unreachable, limited, fail_open=True),
        "early": early(unreachable, fail_open=True),
        "final": final(unreachable, fail_open=True),
    }
    ex = resolved(key, model_policies=limited)
    admitted = counted(DECISIONS, ratelimit_stage=gate_kind, decision="fail_open")
    await gates[gate_kind].before(ex)
    assert ex.governance.ratelimit_unavailable is True
    assert ex.limit_receipts == {}
    assert counted(DECISIONS, ratelimit_stage=gate_kind, decision="fail_open") == admitted + 1


async def test_after_survives_an_unreachable_store(unreachable: RedisRateLimiter) -> None:
    """Releasing leases on a store that went away logs and returns: the leases expire by their TTL."""
    ex = resolved(principal())
    held = Receipt(ex.request_id, "t1", leases=("odock-unreachable:rl:api_key:key1:conc",))
    ex.limit_receipts.update(early=held, pre_auth=held)
    await early(unreachable).after(ex)
    await final(unreachable).after(ex)
    assert ex.limit_receipts == {}
