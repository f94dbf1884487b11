"""From scope policies to limit checks: which algorithm, capacity and name each limit gets."""

from __future__ import annotations

from typing import Any

from odock.limits.decision import LimitName
from odock.limits.plan import LimitCheck, LimitKind, Verdict, admission, checks_for, retry_seconds
from odock.limits.policy import Scope, ScopePolicy, parse_policy


def scope(shadow: bool = False, **ratelimit: Any) -> ScopePolicy:
    """An API-key scope with the given ratelimit sections."""
    return ScopePolicy(Scope.API_KEY, "k1", parse_policy({"ratelimit": ratelimit, "shadow": shadow}))


def only(checks: tuple[LimitCheck, ...]) -> LimitCheck:
    """The single check of a plan."""
    assert len(checks) == 1, checks
    return checks[0]


def test_per_second_alone_is_a_bucket_of_one_second() -> None:
    """per_second=N: refill N/s, capacity N, reported as requests_per_second."""
    check = only(checks_for([scope(requests={"per_second": 20})]))
    assert (check.kind, check.name, check.limit, check.rate) == (
        LimitKind.RATE,
        LimitName.REQUESTS_PER_SECOND,
        20,
        20,
    )


def test_burst_sets_the_bucket_capacity() -> None:
    """per_second with burst: refill per_second, capacity burst, reported as request_burst."""
    check = only(checks_for([scope(requests={"per_second": 20, "burst": 50})]))
    assert (check.name, check.limit, check.rate) == (LimitName.REQUEST_BURST, 50, 20)


def test_burst_without_per_second_refills_at_the_minute_rate() -> None:
    """burst with per_minute only refills at per_minute/60; burst alone refills at burst/s."""
    with_minute = checks_for([scope(requests={"per_minute": 120, "burst": 10})])
    assert [(c.name, c.limit, c.rate) for c in with_minute] == [
        (LimitName.REQUEST_BURST, 10, 2.0),
        (LimitName.REQUESTS_PER_MINUTE, 120, 0.0),
    ]
    alone = only(checks_for([scope(requests={"burst": 7})]))
    assert (alone.limit, alone.rate) == (7, 7)


def test_concurrency_carries_its_lease_ttl() -> None:
    """max_concurrency becomes a lease check with the policy's TTL."""
    check = only(checks_for([scope(concurrency={"max": 4, "lease_ttl_seconds": 12})]))
    assert (check.kind, check.limit, check.lease_ttl) == (LimitKind.LEASES, 4, 12.0)


def test_tokens_are_checked_only_when_an_estimate_is_given() -> None:
    """The TPM check joins the plan with the estimate as its amount (at least one token)."""
    tpm = scope(tokens={"per_minute": 1000}, requests={"per_minute": 5})
    assert [c.name for c in checks_for([tpm])] == [LimitName.REQUESTS_PER_MINUTE]
    final = only(checks_for([tpm], requests=False, tokens=0))
    assert (final.name, final.amount) == (LimitName.TOKENS_PER_MINUTE, 1)


def test_shadow_flag_and_storage_key_come_from_the_scope() -> None:
    """Each check is shadowed like its scope and keyed by scope, id, algorithm and layout version."""
    check = only(checks_for([scope(shadow=True, requests={"per_minute": 5})]))
    assert check.shadow
    assert check.key("odock:") == "odock:rl:api_key:k1:rpm.v2"
    rate = only(checks_for([scope(requests={"per_second": 5})]))
    assert rate.key("odock:") == "odock:rl:api_key:k1:rate"


def test_retry_seconds_is_a_whole_second_at_least_one() -> None:
    """Waits round up to whole seconds and never below one."""
    assert [retry_seconds(w) for w in (0.0, 0.01, 1.0, 1.2, 29.999)] == [1, 1, 1, 2, 30]


def test_the_advertised_request_limit_is_the_tightest() -> None:
    """Fewest remaining wins; on a tie the longer reset; leases and TPM are never advertised."""
    rps = LimitCheck(Scope.API_KEY, "k", LimitName.REQUESTS_PER_SECOND, 10, rate=10)
    rpm = LimitCheck(Scope.API_KEY, "k", LimitName.REQUESTS_PER_MINUTE, 100)
    org_rpm = LimitCheck(Scope.ORGANISATION, "o", LimitName.REQUESTS_PER_MINUTE, 500)
    leases = LimitCheck(Scope.API_KEY, "k", LimitName.MAX_CONCURRENCY, 1)
    tpm = LimitCheck(Scope.API_KEY, "k", LimitName.TOKENS_PER_MINUTE, 1000, amount=5)
    checks = (leases, rps, rpm, org_rpm, tpm)
    keys = [c.key("") for c in checks]

    def quota(*verdicts: Verdict) -> tuple[str, int, int, int]:
        receipt = admission("r", "t", checks, keys, verdicts, 0).receipt
        assert receipt is not None
        assert receipt.quota is not None
        q = receipt.quota
        return (q.limit_name, q.limit, q.remaining, q.reset_seconds)

    free = Verdict(True, 0, 0.0)  # leases and TPM: nothing left would win if they counted
    assert quota(free, Verdict(True, 4, 0.5), Verdict(True, 9, 30.0), Verdict(True, 2, 59.2), free) == (
        LimitName.REQUESTS_PER_MINUTE,
        500,
        2,
        60,
    )
    assert quota(free, Verdict(True, 2, 0.5), Verdict(True, 2, 30.0), Verdict(True, 7, 59.0), free) == (
        LimitName.REQUESTS_PER_MINUTE,
        100,
        2,
        30,
    )
    # A tie on both keeps the first seen.
    assert quota(free, Verdict(True, 3, 1.0), Verdict(True, 3, 1.0), Verdict(True, 3, 1.0), free)[:2] == (
        LimitName.REQUESTS_PER_SECOND,
        10,
    )
