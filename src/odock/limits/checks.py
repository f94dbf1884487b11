"""Stateless gates: client IP lists, request size and requested ``max_tokens``.

Each function looks at every scope (all must pass; narrower scopes only add restrictions) and
answers with the same :class:`~odock.limits.decision.Decision` a limiter gives, without a receipt
because nothing is taken. Deny codes: ``ip_blocked`` (the address is in some scope's blocklist;
a blocklist wins over an allowlist), ``ip_not_allowed`` (some scope has an allowlist and the
address is outside it, or the address is unknown), ``payload_size_unknown``,
``payload_too_large`` and ``max_tokens_exceeded``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from odock.limits.decision import Decision, Denial, DenyCode, LimitName, decide
from odock.limits.policy import ScopePolicy

_ADMITTED = Decision()  # immutable: shared by every check that finds nothing to refuse


def client_address(client_ip: str | None) -> IPv4Address | IPv6Address | None:
    """The parsed client address (IPv4-mapped IPv6 as IPv4), or None when absent or malformed."""
    if not client_ip:
        return None
    try:
        address = ipaddress.ip_address(client_ip.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPv4Address | IPv6Address, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    # ``in`` is False across IP versions, so mixed lists need no special case.
    return any(address in network for network in networks)


def check_ip(scopes: Sequence[ScopePolicy], client_ip: str | None) -> Decision:
    """Refuse an address in any blocklist, or outside any scope's allowlist."""
    if not any(s.policy.ip.allowlist or s.policy.ip.blocklist for s in scopes):
        return _ADMITTED
    address = client_address(client_ip)
    denials: list[tuple[Denial, bool]] = []
    for scope in scopes:
        lists = scope.policy.ip
        if address is not None and _within(address, lists.blocklist):
            denial = Denial(DenyCode.IP_BLOCKED, scope.scope, scope.scope_id, LimitName.IP_BLOCKLIST)
        elif lists.allowlist and (address is None or not _within(address, lists.allowlist)):
            denial = Denial(DenyCode.IP_NOT_ALLOWED, scope.scope, scope.scope_id, LimitName.IP_ALLOWLIST)
        else:
            continue
        denials.append((denial, scope.policy.shadow))
    return decide(denials)


def check_payload(scopes: Sequence[ScopePolicy], content_length: int | None) -> Decision:
    """Refuse a body larger than any scope's ``max_request_bytes``, or of unknown size when one applies."""
    denials: list[tuple[Denial, bool]] = []
    for scope in scopes:
        limit = scope.policy.ratelimit.payload.max_request_bytes
        if limit is None:
            continue
        if content_length is None:
            code = DenyCode.PAYLOAD_SIZE_UNKNOWN
        elif content_length > limit:
            code = DenyCode.PAYLOAD_TOO_LARGE
        else:
            continue
        denial = Denial(code, scope.scope, scope.scope_id, LimitName.MAX_REQUEST_BYTES)
        denials.append((denial, scope.policy.shadow))
    return decide(denials)


def check_max_tokens(scopes: Sequence[ScopePolicy], max_tokens: int | None) -> Decision:
    """Refuse a requested ``max_tokens`` above any scope's limit (an unknown value passes)."""
    denials: list[tuple[Denial, bool]] = []
    if max_tokens is None:
        return Decision()
    for scope in scopes:
        limit = scope.policy.ratelimit.payload.max_tokens
        if limit is not None and max_tokens > limit:
            denial = Denial(DenyCode.MAX_TOKENS_EXCEEDED, scope.scope, scope.scope_id, LimitName.MAX_TOKENS)
            denials.append((denial, scope.policy.shadow))
    return decide(denials)
