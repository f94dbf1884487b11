"""The client's IP address: the socket peer, or forwarded headers from trusted proxies only.

``X-Forwarded-For`` is read right to left, skipping trusted proxies; the first address that is
not a trusted proxy is the client. A peer outside the trusted CIDRs cannot spoof its address:
its forwarded headers are ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network

Network = IPv4Network | IPv6Network


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """Parse trusted proxy CIDRs (a bare address is one host); raise ValueError when malformed."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(peer: str | None, headers: dict[str, str], trusted: Sequence[Network]) -> str | None:
    """The address limits and logs should attribute the request to."""
    if peer is None or not trusted or not _trusted(peer, trusted):
        return peer
    forwarded = headers.get("x-forwarded-for")
    if forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not _trusted(hop, trusted):
                return hop if _is_ip(hop) else peer
        return hops[0] if hops and _is_ip(hops[0]) else peer
    real = headers.get("x-real-ip", "").strip()
    return real if _is_ip(real) else peer


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
