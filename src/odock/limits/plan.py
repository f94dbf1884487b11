"""From scope policies to the individual limit checks a limiter admits, and back to a decision.

A gate turns its scopes into :class:`LimitCheck` values with :func:`checks_for`; a limiter
evaluates every check against one instant, producing one :class:`Verdict` each, and
:func:`admission` turns the verdicts into the :class:`~odock.limits.decision.Decision`. Both
limiter implementations share this module, so they cannot disagree on codes, names or receipts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from odock.cache.local import IdentityMemo
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

# Storage layouts changed since release, by kind: the suffix keeps old and new replicas apart.
_LAYOUT_VERSION: dict[LimitKind, str] = {LimitKind.REQUESTS: ".v2", LimitKind.TOKENS: ".v2"}

# The kinds as plain module names: on Python 3.11 every ``LimitKind.X`` lookup goes through the
# enum's descriptor, a cost the limiters' per-check loops would pay on every request.
RATE, REQUESTS, TOKENS, LEASES = LimitKind.RATE, LimitKind.REQUESTS, LimitKind.TOKENS, LimitKind.LEASES

_CODE: dict[LimitName, DenyCode] = {
    LimitName.REQUESTS_PER_SECOND: DenyCode.RPS_EXCEEDED,
    LimitName.REQUEST_BURST: DenyCode.BURST_EXCEEDED,
    LimitName.REQUESTS_PER_MINUTE: DenyCode.RPM_EXCEEDED,
    LimitName.TOKENS_PER_MINUTE: DenyCode.TPM_EXCEEDED,
    LimitName.MAX_CONCURRENCY: DenyCode.CONCURRENCY_EXCEEDED,
}


@dataclass(slots=True)  # TPM checks are built per request: not frozen, see odock.limits.decision
class LimitCheck:
    """One limit to enforce at one scope: ``amount`` of it is taken if every check passes.

    Request checks are built once per scope list and shared by every request that uses it:
    never change one.
    """

    scope: Scope
    scope_id: str
    name: LimitName
    limit: int  # bucket capacity, window maximum, or number of leases
    amount: int = 1  # requests (1) or estimated tokens
    rate: float = 0.0  # token-bucket refill per second (RATE only)
    lease_ttl: float = DEFAULT_LEASE_TTL_SECONDS  # seconds (LEASES only)
    shadow: bool = False
    # Derived once at construction (checks are built once per scope list and reused).
    kind: LimitKind = field(init=False, compare=False, repr=False)
    key_suffix: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        kind = self.kind = _KIND[self.name]
        self.key_suffix = f"rl:{self.scope}:{self.scope_id}:{kind}{_LAYOUT_VERSION.get(kind, '')}"

    def key(self, prefix: str) -> str:
        """The storage key of this scope's counter for this kind of limit."""
        return prefix + self.key_suffix


@dataclass(slots=True)  # one per check and admission: not frozen, see odock.limits.decision
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
    keys = [prefix + check.key_suffix for check in checks]
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
    denials: list[tuple[Denial, bool]] = []
    leases: list[str] = []
    reservations: list[TokenReservation] = []
    # The most restrictive request limit: the least remaining, then the longest reset.
    tightest: tuple[int, int, LimitCheck] | None = None
    for check, key, verdict in zip(checks, keys, verdicts, strict=True):
        kind = check.kind
        if not verdict.allowed:
            code = _CODE[check.name]
            denial = Denial(code, check.scope, check.scope_id, check.name, retry_seconds(verdict.wait))
            denials.append((denial, check.shadow))
        if kind is LEASES:
            leases.append(key)
        elif kind is TOKENS:
            reservations.append(TokenReservation(key, bucket, check.amount))
        else:
            remaining = max(0, verdict.remaining)
            reset = max(0, math.ceil(verdict.wait - 1e-9))
            if tightest is None or (remaining, -reset) < (tightest[0], -tightest[1]):
                tightest = (remaining, reset, check)
    if denials:
        decision = decide(denials)
        if not decision.allowed:
            return decision
        shadow = decision.shadow_denials
    else:
        shadow = ()
    quota = None
    if tightest is not None:
        remaining, reset, check = tightest
        quota = RequestQuota(check.name, check.limit, remaining, reset)
    receipt = Receipt(request_id, token, tuple(leases), tuple(reservations), quota)
    return Decision(shadow_denials=shadow, receipt=receipt)


class CheckPlanner:
    """The checks of the scope lists a :class:`PolicyResolver` hands out, built once per list.

    The resolver returns the same tuple for the same principal and model, so request checks
    are remembered by the tuple's identity; only the TPM checks, whose amount is the request's
    own estimate, are built per request.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._requests: IdentityMemo[tuple[LimitCheck, ...]] = IdentityMemo(max_entries)
        self._token_scopes: IdentityMemo[tuple[tuple[ScopePolicy, int], ...]] = IdentityMemo(max_entries)

    def requests(self, scopes: tuple[ScopePolicy, ...]) -> tuple[LimitCheck, ...]:
        """Request rate, minute and concurrency checks of ``scopes`` (as :func:`checks_for`)."""
        known = self._requests.get(scopes)
        if known is None:
            known = self._requests.put(checks_for(scopes), scopes)
        return known

    def tokens(self, scopes: tuple[ScopePolicy, ...], estimate: int) -> tuple[LimitCheck, ...]:
        """TPM reservations of ``estimate`` tokens on ``scopes`` (as ``checks_for(tokens=...)``)."""
        limited = self._token_scopes.get(scopes)
        if limited is None:
            pairs = tuple(
                (scope, per_minute)
                for scope in scopes
                if (per_minute := scope.policy.ratelimit.tokens.per_minute) is not None
            )
            limited = self._token_scopes.put(pairs, scopes)
        amount = max(estimate, 1)
        return tuple(_check(scope, LimitName.TOKENS_PER_MINUTE, pm, amount=amount) for scope, pm in limited)
