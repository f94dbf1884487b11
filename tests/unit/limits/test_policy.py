"""The policy envelope: parsing, validation errors that name the field, and scope resolution."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_network
from typing import Any

import pytest

from odock.errors import InvalidPolicy
from odock.ids import ApiKeyId, OrganisationId, TeamId
from odock.keys.principal import KeyPrincipal
from odock.limits.policy import (
    EMPTY_POLICY,
    GLOBAL_SCOPE_ID,
    Policy,
    PolicyResolver,
    Scope,
    ScopePolicy,
    parse_policy,
)

FULL = {
    "ip": {"allowlist": ["10.0.0.0/8"], "blocklist": ["203.0.113.0/24"]},
    "ratelimit": {
        "requests": {"per_second": 20, "per_minute": 1200, "burst": 50},
        "tokens": {"per_minute": 120000},
        "concurrency": {"max": 40, "lease_ttl_seconds": 30},
        "payload": {"max_request_bytes": 2097152, "max_tokens": 8192},
    },
}


def principal(
    org: dict[str, Any] | None = None, team: dict[str, Any] | None = None, key: dict[str, Any] | None = None
) -> KeyPrincipal:
    """A key principal with the given policies (team-scoped when ``team`` is given)."""
    return KeyPrincipal(
        key_id=ApiKeyId("key1"),
        key_hash="h",
        organisation_id=OrganisationId("org1"),
        team_id=TeamId("team1") if team is not None else None,
        user_id=None,
        type="standard",
        name="k",
        expires_at=None,
        revoked=False,
        granted=(),
        policies=key or {},
        organisation_policies=org or {},
        team_policies=team or {},
    )


def rpm(n: int) -> dict[str, Any]:
    """A policy with only a requests-per-minute limit."""
    return {"ratelimit": {"requests": {"per_minute": n}}}


def test_nested_and_bare_forms_parse_to_the_same_policy() -> None:
    """``{"policies": {...}}`` and the bare envelope give the same policy."""
    assert parse_policy({"policies": FULL}) == parse_policy(FULL)


def test_every_field_of_the_envelope_is_read() -> None:
    """All documented fields land in the model."""
    policy = parse_policy({"policies": FULL})
    limits = policy.ratelimit
    assert policy.ip.allowlist == (ip_network("10.0.0.0/8"),)
    assert policy.ip.blocklist == (ip_network("203.0.113.0/24"),)
    assert (limits.requests.per_second, limits.requests.per_minute, limits.requests.burst) == (20, 1200, 50)
    assert limits.tokens.per_minute == 120000
    assert (limits.concurrency.max, limits.concurrency.lease_ttl) == (40, 30.0)
    assert (limits.payload.max_request_bytes, limits.payload.max_tokens) == (2097152, 8192)


def test_omitted_and_zero_mean_no_limit() -> None:
    """An omitted field and 0 both mean "no limit"."""
    policy = parse_policy({"ratelimit": {"requests": {"per_minute": 0}}})
    assert policy.ratelimit.requests.per_minute is None
    assert policy.ratelimit.requests.per_second is None
    assert policy.is_empty


def test_empty_inputs_are_the_empty_policy() -> None:
    """None, {} and {"policies": null} limit nothing."""
    assert parse_policy(None) is EMPTY_POLICY
    assert parse_policy({}) is EMPTY_POLICY
    assert parse_policy({"policies": None}) is EMPTY_POLICY


def test_lease_ttl_defaults_to_thirty_seconds() -> None:
    """Without lease_ttl_seconds (or with 0) a lease lives 30 s."""
    assert parse_policy({"ratelimit": {"concurrency": {"max": 1}}}).ratelimit.concurrency.lease_ttl == 30.0
    zero = {"ratelimit": {"concurrency": {"max": 1, "lease_ttl_seconds": 0}}}
    assert parse_policy(zero).ratelimit.concurrency.lease_ttl == 30.0


def test_other_capabilities_keys_are_ignored() -> None:
    """Top-level keys such as ``routing`` belong to others and do not fail parsing."""
    assert parse_policy({"policies": {"routing": {"chat": {}}, **rpm(5)}}).ratelimit.requests.per_minute == 5


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"ratelimit": {"requests": {"per_minute": -1}}}, "ratelimit.requests.per_minute"),
        (
            {"policies": {"ratelimit": {"tokens": {"per_minute": 1.5}}}},
            "policies.ratelimit.tokens.per_minute",
        ),
        ({"ratelimit": {"requests": {"burst": True}}}, "ratelimit.requests.burst"),
        ({"ratelimit": {"requests": {"per_minutes": 5}}}, "ratelimit.requests.per_minutes"),
        (
            {"ratelimit": {"concurrency": {"lease_ttl_seconds": -3}}},
            "ratelimit.concurrency.lease_ttl_seconds",
        ),
        ({"ip": {"allowlist": ["10.0.0.0/8", "not-an-ip"]}}, "ip.allowlist.1"),
        ({"ip": {"blocklist": [42]}}, "ip.blocklist.0"),
        ({"shadow": "yes"}, "shadow"),
    ],
)
def test_invalid_policy_names_the_field(raw: dict[str, Any], field: str) -> None:
    """A bad value is refused with InvalidPolicy whose param and message name its dotted path."""
    with pytest.raises(InvalidPolicy) as caught:
        parse_policy(raw)
    assert caught.value.param == field
    assert caught.value.message.startswith(field + ": ")
    assert (caught.value.status, caught.value.code) == (422, "invalid_policy")


def test_ip_entries_accept_addresses_hosts_bits_and_lines() -> None:
    """A bare address is a single host, host bits are masked, and one-per-line text is accepted."""
    policy = parse_policy({"ip": {"allowlist": "192.0.2.7\n10.1.2.3/8\n\n2001:db8::/32"}})
    assert policy.ip.allowlist == (
        ip_network("192.0.2.7/32"),
        ip_network("10.0.0.0/8"),
        ip_network("2001:db8::/32"),
    )


def test_scope_policy_is_frozen() -> None:
    """A resolved scope cannot be changed by a later stage."""
    scope = ScopePolicy(Scope.API_KEY, "k", EMPTY_POLICY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scope.scope_id = "other"  # type: ignore[misc]


def test_resolver_orders_scopes_broadest_first() -> None:
    """global → organisation → team → api_key → model, each with its own id."""
    resolver = PolicyResolver(global_policy=parse_policy(rpm(1000)))
    model = resolver.resource_scope(Scope.MODEL, "m1", rpm(5))
    scopes = resolver.applicable(principal(org=rpm(100), team=rpm(50), key=rpm(10)), model)
    assert [(s.scope, s.scope_id) for s in scopes] == [
        (Scope.GLOBAL, GLOBAL_SCOPE_ID),
        (Scope.ORGANISATION, "org1"),
        (Scope.TEAM, "team1"),
        (Scope.API_KEY, "key1"),
        (Scope.MODEL, "m1"),
    ]
    assert [s.policy.ratelimit.requests.per_minute for s in scopes] == [1000, 100, 50, 10, 5]


def test_resolver_leaves_out_scopes_without_limits() -> None:
    """Scopes whose policy limits nothing (and the team of a non-team key) are not listed."""
    resolver = PolicyResolver()
    assert resolver.key_scopes(principal(key=rpm(10))) == (
        ScopePolicy(Scope.API_KEY, "key1", parse_policy(rpm(10))),
    )
    assert resolver.global_scopes() == ()


def test_resolver_refuses_a_non_resource_scope() -> None:
    """Only model and MCP-server scopes are resources."""
    with pytest.raises(ValueError, match="not a resource scope"):
        PolicyResolver().resource_scope(Scope.TEAM, "t", rpm(1))


def test_resolver_parses_each_distinct_envelope_once() -> None:
    """Equal envelopes (in any key order) share one parsed policy."""
    resolver = PolicyResolver()
    first = resolver.policy({"ratelimit": {"requests": {"per_minute": 3, "per_second": 1}}})
    second = resolver.policy({"ratelimit": {"requests": {"per_second": 1, "per_minute": 3}}})
    assert first is second
    assert isinstance(first, Policy)


def test_resolver_cache_is_bounded() -> None:
    """The parse cache evicts its oldest entry past its size."""
    resolver = PolicyResolver(cache_size=2)
    first = resolver.policy(rpm(1))
    resolver.policy(rpm(2))
    resolver.policy(rpm(3))
    assert resolver.policy(rpm(1)) is not first
