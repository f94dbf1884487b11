"""From scope policies to the individual limit checks a limiter admits, and back to a decision.

A gate turns its scopes into :class:`LimitCheck` values with :func:`checks_for`; a limiter
evaluates every check against one instant, producing one :class:`Verdict` each, and
:func:`admission` turns the verdicts into the :class:`~odock.limits.decision.Decision`. Both
limiter implementations share this module, so they cannot disagree on codes, names or receipts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from odock.limits.decision import (
    Decision,
    Denial,
    DenyCode,
    LimitName,
    Receipt,
    RequestQuota,
    TokenReservation,
    decide,
)
from odock.limits.policy import DEFAULT_LEASE_TTL_SECONDS, Scope, ScopePolicy

WINDOW_SECONDS = 60  # the per-minute windows: 60 one-second buckets


class LimitKind(StrEnum):
    """The algorithm behind a check; also the last part of its storage key."""

    RATE = "rate"  # token bucket (GCRA): refill ``rate``/s, capacity ``limit``
    REQUESTS = "rpm"  # sliding minute window of request counts
    TOKENS = "tpm"  # sliding minute window of token amounts
    LEASES = "conc"  # set of concurrency leases scored by expiry


_KIND: dict[LimitName, LimitKind] = {
    LimitName.REQUESTS_PER_SECOND: LimitKind.RATE,
    LimitName.REQUEST_BURST: LimitKind.RATE,
    LimitName.REQUESTS_PER_MINUTE: LimitKind.REQUESTS,
    LimitName.TOKENS_PER_MINUTE: LimitKind.TOKENS,
    LimitName.MAX_CONCURRENCY: LimitKind.LEASES,
}

_CODE: dict[LimitName, DenyCode] = {
    LimitName.REQUESTS_PER_SECOND: DenyCode.RPS_EXCEEDED,
    LimitName.REQUEST_BURST: DenyCode.BURST_EXCEEDED,
    LimitName.REQUESTS_PER_MINUTE: DenyCode.RPM_EXCEEDED,
    LimitName.TOKENS_PER_MINUTE: DenyCode.TPM_EXCEEDED,
    LimitName.MAX_CONCURRENCY: DenyCode.CONCURRENCY_EXCEEDED,
}


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """One limit to enforce at one scope: ``amount`` of it is taken if every check passes."""

    scope: Scope
    scope_id: str
    name: LimitName
    limit: int  # bucket capacity, window maximum, or number of leases
    amount: int = 1  # requests (1) or estimated tokens
    rate: float = 0.0  # token-bucket refill per second (RATE only)
    lease_ttl: float = DEFAULT_LEASE_TTL_SECONDS  # seconds (LEASES only)
    shadow: bool = False

    @property
    def kind(self) -> LimitKind:
        """Which algorithm enforces this check."""
        return _KIND[self.name]

    def key(self, prefix: str) -> str:
        """The storage key of this scope's counter for this kind of limit."""
        return f"{prefix}rl:{self.scope}:{self.scope_id}:{self.kind}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A limiter's answer for one check at one instant."""

    allowed: bool
    remaining: int  # what is left after this request (allowed) or 0
    wait: float  # seconds: until it could pass (denied) or until fully reset (allowed)


def checks_for(
    scopes: Sequence[ScopePolicy], *, requests: bool = True, tokens: int | None = None
) -> tuple[LimitCheck, ...]:
    """The checks for ``scopes``: request rate, minute and concurrency limits, and/or a TPM reservation."""
    checks: list[LimitCheck] = []
    for scope in scopes:
        if requests:
            checks.extend(_request_checks(scope))
        per_minute = scope.policy.ratelimit.tokens.per_minute
        if tokens is not None and per_minute is not None:
            # Reserve at least one token so an exhausted window refuses even a zero estimate.
            checks.append(_check(scope, LimitName.TOKENS_PER_MINUTE, per_minute, amount=max(tokens, 1)))
    return tuple(checks)


def _check(
    scope: ScopePolicy,
    name: LimitName,
    limit: int,
    *,
    amount: int = 1,
    rate: float = 0.0,
    lease_ttl: float = DEFAULT_LEASE_TTL_SECONDS,
) -> LimitCheck:
    return LimitCheck(scope.scope, scope.scope_id, name, limit, amount, rate, lease_ttl, scope.policy.shadow)


def _request_checks(scope: ScopePolicy) -> list[LimitCheck]:
    limits = scope.policy.ratelimit
    requests = limits.requests
    checks: list[LimitCheck] = []
    # Burst without a per-second rate refills at the per-minute rate, or else at ``burst``/s.
    rate = requests.per_second or (requests.per_minute / WINDOW_SECONDS if requests.per_minute else None)
    capacity = requests.burst or requests.per_second
    if capacity is not None:
        name = LimitName.REQUEST_BURST if requests.burst else LimitName.REQUESTS_PER_SECOND
        checks.append(_check(scope, name, capacity, rate=rate or capacity))
    if requests.per_minute is not None:
        checks.append(_check(scope, LimitName.REQUESTS_PER_MINUTE, requests.per_minute))
    if limits.concurrency.max is not None:
        ttl = limits.concurrency.lease_ttl
        checks.append(_check(scope, LimitName.MAX_CONCURRENCY, limits.concurrency.max, lease_ttl=ttl))
    return checks


def storage_keys(prefix: str, checks: Sequence[LimitCheck]) -> list[str]:
    """The storage key of each check; a key may appear once per admission."""
    keys = [check.key(prefix) for check in checks]
    if len(set(keys)) != len(keys):
        raise ValueError("each scope and kind of limit may be checked once per admission")
    return keys


def retry_seconds(wait: float) -> int:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(wait - 1e-9))


def admission(
    request_id: str,
    token: str,
    checks: Sequence[LimitCheck],
    keys: Sequence[str],
    verdicts: Sequence[Verdict],
    bucket: int,
) -> Decision:
    """The decision for an admission whose checks got ``verdicts`` (token buckets at second ``bucket``)."""
    denials = [
        (Denial(_CODE[c.name], c.scope, c.scope_id, c.name, retry_seconds(v.wait)), c.shadow)
        for c, v in zip(checks, verdicts, strict=True)
        if not v.allowed
    ]
    decision = decide(denials)
    if not decision.allowed:
        return decision
    leases = tuple(k for c, k in zip(checks, keys, strict=True) if c.kind is LimitKind.LEASES)
    reservations = tuple(
        TokenReservation(k, bucket, c.amount)
        for c, k in zip(checks, keys, strict=True)
        if c.kind is LimitKind.TOKENS
    )
    receipt = Receipt(request_id, token, leases, reservations, _most_restrictive(checks, verdicts))
    return replace(decision, receipt=receipt)


def _most_restrictive(checks: Sequence[LimitCheck], verdicts: Sequence[Verdict]) -> RequestQuota | None:
    quotas = [
        RequestQuota(c.name, c.limit, max(0, v.remaining), max(0, math.ceil(v.wait - 1e-9)))
        for c, v in zip(checks, verdicts, strict=True)
        if c.kind in (LimitKind.RATE, LimitKind.REQUESTS)
    ]
    return min(quotas, key=lambda q: (q.remaining, -q.reset_seconds), default=None)
