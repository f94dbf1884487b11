"""Stateless gates: client IP allow/block lists and payload limits, across scopes."""

from __future__ import annotations

from typing import Any

import pytest

from odock.limits.checks import check_ip, check_max_tokens, check_payload, client_address
from odock.limits.decision import DenyCode, LimitName
from odock.limits.policy import Scope, ScopePolicy, parse_policy


def scope(kind: Scope = Scope.ORGANISATION, shadow: bool = False, **sections: Any) -> ScopePolicy:
    """A scope with the given top-level policy sections."""
    return ScopePolicy(kind, f"{kind}-id", parse_policy({**sections, "shadow": shadow}))


def ip_scope(kind: Scope = Scope.ORGANISATION, **lists: list[str]) -> ScopePolicy:
    """A scope with only IP lists."""
    return scope(kind, ip=lists)


def payload_scope(kind: Scope = Scope.API_KEY, **limits: int) -> ScopePolicy:
    """A scope with only payload limits."""
    return scope(kind, ratelimit={"payload": limits})


@pytest.mark.parametrize(
    ("client", "code"),
    [
        ("10.1.2.3", None),
        ("203.0.113.9", DenyCode.IP_BLOCKED),
        ("192.0.2.1", DenyCode.IP_NOT_ALLOWED),
        ("2001:db8::1", None),
        ("2001:db8:ffff::1", DenyCode.IP_BLOCKED),
        ("2001:db9::1", DenyCode.IP_NOT_ALLOWED),
        ("::ffff:10.1.2.3", None),
        (None, DenyCode.IP_NOT_ALLOWED),
        ("not an address", DenyCode.IP_NOT_ALLOWED),
    ],
)
def test_allowlist_and_blocklist_for_ipv4_and_ipv6(client: str | None, code: DenyCode | None) -> None:
    """Blocklists refuse, allowlists admit only their members, in both IP versions; unknown is outside."""
    lists = ip_scope(
        allowlist=["10.0.0.0/8", "203.0.113.0/24", "2001:db8::/32"],
        blocklist=["203.0.113.0/24", "2001:db8:ffff::/48"],
    )
    decision = check_ip([lists], client)
    assert (decision.denial.code if decision.denial else None) == code


def test_blocklist_without_allowlist_admits_everyone_else() -> None:
    """With only a blocklist, other and unknown addresses pass."""
    lists = ip_scope(blocklist=["203.0.113.0/24"])
    assert check_ip([lists], "198.51.100.1").allowed
    assert check_ip([lists], None).allowed


def test_every_scope_allowlist_must_admit() -> None:
    """A narrower scope's allowlist restricts further: the key scope denies what the org allows."""
    scopes = [ip_scope(allowlist=["10.0.0.0/8"]), ip_scope(Scope.API_KEY, allowlist=["10.9.0.0/16"])]
    denial = check_ip(scopes, "10.1.2.3").denial
    assert denial is not None
    assert (denial.scope, denial.limit) == (Scope.API_KEY, LimitName.IP_ALLOWLIST)
    assert check_ip(scopes, "10.9.0.1").allowed


def test_shadow_ip_denial_is_reported_not_enforced() -> None:
    """A shadow scope's IP denial appears in shadow_denials and the request passes."""
    decision = check_ip([scope(shadow=True, ip={"blocklist": ["203.0.113.0/24"]})], "203.0.113.5")
    assert decision.allowed
    assert [d.code for d in decision.shadow_denials] == [DenyCode.IP_BLOCKED]


def test_ipv4_mapped_ipv6_is_compared_as_ipv4() -> None:
    """A dual-stack socket's ::ffff:a.b.c.d is matched against IPv4 lists."""
    assert str(client_address("::ffff:203.0.113.5")) == "203.0.113.5"
    assert not check_ip([ip_scope(blocklist=["203.0.113.0/24"])], "::ffff:203.0.113.5").allowed


@pytest.mark.parametrize(
    ("length", "code"),
    [(1024, None), (1025, DenyCode.PAYLOAD_TOO_LARGE), (None, DenyCode.PAYLOAD_SIZE_UNKNOWN)],
)
def test_request_size_limit(length: int | None, code: DenyCode | None) -> None:
    """Bodies up to max_request_bytes pass; larger or undeclared sizes are refused."""
    decision = check_payload([payload_scope(max_request_bytes=1024)], length)
    assert (decision.denial.code if decision.denial else None) == code
    if decision.denial:
        assert (decision.denial.limit, decision.denial.retry_after) == (LimitName.MAX_REQUEST_BYTES, None)


def test_no_size_limit_accepts_unknown_size() -> None:
    """Without max_request_bytes an unknown length is fine."""
    assert check_payload([payload_scope(max_tokens=5)], None).allowed


def test_smallest_size_limit_across_scopes_applies() -> None:
    """The organisation allows 4 KiB but the key 1 KiB: 2 KiB is refused at the key scope."""
    scopes = [
        payload_scope(Scope.ORGANISATION, max_request_bytes=4096),
        payload_scope(max_request_bytes=1024),
    ]
    denial = check_payload(scopes, 2048).denial
    assert denial is not None
    assert denial.scope is Scope.API_KEY


@pytest.mark.parametrize(("requested", "allowed"), [(None, True), (8192, True), (8193, False)])
def test_max_tokens_limit(requested: int | None, allowed: bool) -> None:
    """A requested max_tokens above the policy is refused; an unknown value passes."""
    decision = check_max_tokens([payload_scope(max_tokens=8192)], requested)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.denial is not None
        assert (decision.denial.code, decision.denial.limit) == (
            DenyCode.MAX_TOKENS_EXCEEDED,
            LimitName.MAX_TOKENS,
        )


def test_pure_checks_take_nothing() -> None:
    """Stateless gates never hand out a receipt."""
    assert check_payload([payload_scope(max_request_bytes=10)], 1).receipt is None
