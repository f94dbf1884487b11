"""The policy envelope and the scopes a request is limited by.

A policy is stored on an organisation, team, API key, model or MCP server (the global one
comes from settings), either nested as ``{"policies": {...}}`` or bare::

    {"ip": {"allowlist": ["10.0.0.0/8"], "blocklist": ["203.0.113.0/24"]},
     "ratelimit": {"requests": {"per_second": 20, "per_minute": 1200, "burst": 50},
                   "tokens": {"per_minute": 120000},
                   "concurrency": {"max": 40, "lease_ttl_seconds": 30},
                   "payload": {"max_request_bytes": 2097152, "max_tokens": 8192}},
     "shadow": false}

Every number is an integer ≥ 0. An omitted field and ``0`` both mean "no limit": the original
gateway is written in Go, where the two cannot be told apart, and stored envelopes keep that
meaning. To stop a caller entirely, revoke or disable it instead. Keys other than ``ip``,
``ratelimit`` and ``shadow`` (``routing``, ...) belong to other capabilities and are ignored;
unknown keys *inside* ``ip`` and ``ratelimit`` are errors, so a typo cannot silently lift a limit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.functional_validators import PlainValidator

from odock.cache.local import IdentityMemo
from odock.errors import InvalidPolicy
from odock.keys.principal import KeyPrincipal

DEFAULT_LEASE_TTL_SECONDS = 30.0
GLOBAL_SCOPE_ID = "*"


class Scope(StrEnum):
    """Where a policy is attached, broadest first."""

    GLOBAL = "global"
    ORGANISATION = "organisation"
    TEAM = "team"
    API_KEY = "api_key"
    MODEL = "model"
    MCP_SERVER = "mcp_server"


def _zero_is_unlimited(value: int) -> int | None:
    return value or None


Limit = Annotated[int, Field(ge=0, strict=True), AfterValidator(_zero_is_unlimited)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _network(value: object) -> IPv4Network | IPv6Network:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an IP address or CIDR string")
    try:
        # strict=False: "10.0.0.1/8" means 10.0.0.0/8; a bare address is a /32 or /128.
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as error:
        raise ValueError(f"not an IP address or CIDR: {value!r}") from error


def _lines(value: object) -> object:
    # The UI enters one address per line; accept that text as well as a list.
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip()]
    return value


Network = Annotated[IPv4Network | IPv6Network, PlainValidator(_network)]
Networks = Annotated[tuple[Network, ...], BeforeValidator(_lines)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IpPolicy(_Section):
    """Client addresses that are refused (blocklist) or the only ones admitted (allowlist)."""

    allowlist: Networks = ()
    blocklist: Networks = ()


class RequestLimits(_Section):
    """Request rate: a token bucket (``per_second`` refill, ``burst`` capacity) and a minute window."""

    per_second: Limit | None = None
    per_minute: Limit | None = None
    burst: Limit | None = None


class TokenLimits(_Section):
    """Model tokens (input + output) per minute."""

    per_minute: Limit | None = None


class ConcurrencyLimits(_Section):
    """Requests in flight at once; a lease not released within its TTL frees itself."""

    max: Limit | None = None
    lease_ttl_seconds: Seconds | None = None

    @property
    def lease_ttl(self) -> float:
        """The lease lifetime in seconds (0 or omitted means the default, 30 s)."""
        return self.lease_ttl_seconds or DEFAULT_LEASE_TTL_SECONDS


class PayloadLimits(_Section):
    """Request size and requested output tokens."""

    max_request_bytes: Limit | None = None
    max_tokens: Limit | None = None


class RateLimitPolicy(_Section):
    """The ``ratelimit`` section of the envelope."""

    requests: RequestLimits = RequestLimits()
    tokens: TokenLimits = TokenLimits()
    concurrency: ConcurrencyLimits = ConcurrencyLimits()
    payload: PayloadLimits = PayloadLimits()


class Policy(BaseModel):
    """One scope's policy envelope; ``shadow`` reports denials without enforcing them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ip: IpPolicy = IpPolicy()
    ratelimit: RateLimitPolicy = RateLimitPolicy()
    shadow: bool = Field(default=False, strict=True)

    @property
    def is_empty(self) -> bool:
        """True when the policy limits nothing."""
        return self.ip == _NO_IP and self.ratelimit == _NO_RATELIMIT


_NO_IP = IpPolicy()
_NO_RATELIMIT = RateLimitPolicy()
EMPTY_POLICY = Policy()


def parse_policy(raw: Mapping[str, object] | None) -> Policy:
    """Validate a stored envelope (nested ``{"policies": ...}`` or bare); InvalidPolicy names the field."""
    if not raw:
        return EMPTY_POLICY
    prefix = ""
    body: object = raw
    if "policies" in raw:
        prefix, body = "policies.", raw["policies"]
        if body is None:
            return EMPTY_POLICY
    try:
        return Policy.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = prefix + ".".join(str(part) for part in first["loc"])
        raise InvalidPolicy(f"{field or 'policies'}: {first['msg']}", param=field or None) from error


@dataclass(frozen=True, slots=True)
class ScopePolicy:
    """The policy in force at one scope for one request (e.g. API key ``k1``)."""

    scope: Scope
    scope_id: str
    policy: Policy


class PolicyResolver:
    """Builds the ordered scope list for a request, parsing each distinct envelope only once.

    The principal and the resolved model are immutable snapshots that their caches hand out
    again and again, so their scope lists are built once per snapshot (remembered by identity)
    and every request of that key reuses the same tuples: no fingerprinting, no parsing, no
    allocation on the hot path. A reloaded snapshot is a new object and gets a fresh list.
    """

    def __init__(self, global_policy: Policy = EMPTY_POLICY, cache_size: int = 4096) -> None:
        self._global = global_policy
        self._global_scopes = _non_empty([ScopePolicy(Scope.GLOBAL, GLOBAL_SCOPE_ID, global_policy)])
        self._cache: dict[bytes, Policy] = {}
        self._cache_size = cache_size
        self._key_scopes: IdentityMemo[tuple[ScopePolicy, ...]] = IdentityMemo(cache_size)
        self._resources: IdentityMemo[tuple[Scope, str, tuple[ScopePolicy, ...]]] = IdentityMemo(cache_size)
        self._applicable: IdentityMemo[tuple[ScopePolicy, ...]] = IdentityMemo(cache_size)

    def policy(self, raw: Mapping[str, object] | None) -> Policy:
        """The parsed policy of a stored envelope (cached by content)."""
        if not raw:
            return EMPTY_POLICY
        fingerprint = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        cached = self._cache.get(fingerprint)
        if cached is None:
            cached = parse_policy(raw)
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))  # evict the oldest entry
            self._cache[fingerprint] = cached
        return cached

    def global_scopes(self) -> tuple[ScopePolicy, ...]:
        """The global scope alone (the pre-auth gate), or nothing when it limits nothing."""
        return self._global_scopes

    def key_scopes(self, principal: KeyPrincipal) -> tuple[ScopePolicy, ...]:
        """Organisation → team (team keys only) → API key; scopes without limits are left out."""
        known = self._key_scopes.get(principal)
        if known is not None:
            return known
        organisation = self.policy(principal.organisation_policies)
        scopes = [ScopePolicy(Scope.ORGANISATION, principal.organisation_id, organisation)]
        if principal.team_id is not None:
            scopes.append(ScopePolicy(Scope.TEAM, principal.team_id, self.policy(principal.team_policies)))
        scopes.append(ScopePolicy(Scope.API_KEY, principal.key_id, self.policy(principal.policies)))
        return self._key_scopes.put(_non_empty(scopes), principal)

    def resource_scope(
        self, scope: Scope, resource_id: str, raw: Mapping[str, object] | None
    ) -> tuple[ScopePolicy, ...]:
        """The model or MCP-server scope, known only after resolution (empty when it limits nothing)."""
        if scope not in (Scope.MODEL, Scope.MCP_SERVER):
            raise ValueError(f"{scope} is not a resource scope")
        known = self._resources.get(raw)
        if known is not None and known[0] is scope and known[1] == resource_id:
            return known[2]
        resolved = _non_empty([ScopePolicy(scope, resource_id, self.policy(raw))])
        if raw is not None:  # None is a shared singleton: nothing to remember
            self._resources.put((scope, resource_id, resolved), raw)
        return resolved

    def applicable(
        self, principal: KeyPrincipal, resource: tuple[ScopePolicy, ...] = ()
    ) -> tuple[ScopePolicy, ...]:
        """Every applicable scope, broadest first: global → organisation → team → key → resource.

        The same (principal, resource) pair yields the same tuple object, so callers may
        remember what they derive from it by identity.
        """
        known = self._applicable.get(principal, resource)
        if known is not None:
            return known
        everything = self.global_scopes() + self.key_scopes(principal) + resource
        return self._applicable.put(everything, principal, resource)


def _non_empty(scopes: list[ScopePolicy]) -> tuple[ScopePolicy, ...]:
    return tuple(s for s in scopes if not s.policy.is_empty)
