"""The hot path's view of an MCP server and of a key's MCP grants (no database, no decryption).

:class:`ResolvedMcpServer` is what ``McpDirectory`` returns for ``(organisation, slug or id)``:
the server's rules, pricing and policies, and its :class:`~odock.mcp.link.UpstreamTarget` with
secrets decrypted (kept in process memory only, like provider keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from odock.keys.principal import McpGrant
from odock.mcp.link import Transport, UpstreamTarget

__all__ = ["McpGrant", "McpPricing", "McpServerLookup", "ResolvedMcpServer"]


@dataclass(frozen=True, slots=True)
class McpPricing:
    """Integer nanos-USD per tool call and per byte in and out (spec §10.6)."""

    call_nanos_usd: int = 0
    input_byte_nanos_usd: int = 0
    output_byte_nanos_usd: int = 0

    @property
    def priced(self) -> bool:
        """True when any price is set."""
        return bool(self.call_nanos_usd or self.input_byte_nanos_usd or self.output_byte_nanos_usd)

    def cost(self, calls: int, bytes_in: int, bytes_out: int) -> int:
        """What ``calls`` tool calls moving these bytes cost, in nanos-USD."""
        return (
            calls * self.call_nanos_usd
            + bytes_in * self.input_byte_nanos_usd
            + bytes_out * self.output_byte_nanos_usd
        )

    def to_json(self) -> dict[str, int]:
        """The stored shape."""
        return {
            "call_nanos_usd": self.call_nanos_usd,
            "input_byte_nanos_usd": self.input_byte_nanos_usd,
            "output_byte_nanos_usd": self.output_byte_nanos_usd,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> McpPricing:
        """From the stored shape (missing prices are 0)."""
        data = data or {}
        return cls(
            int(data.get("call_nanos_usd") or 0),
            int(data.get("input_byte_nanos_usd") or 0),
            int(data.get("output_byte_nanos_usd") or 0),
        )


@dataclass(frozen=True, slots=True)
class ResolvedMcpServer:
    """One MCP server as the gateway enforces and reaches it."""

    id: str
    organisation_id: str
    slug: str
    name: str
    enabled: bool
    target: UpstreamTarget  # secrets in plaintext, in memory only
    team_id: str | None = None  # team scope: only keys of this team
    api_key_id: str | None = None  # key scope: only this key
    allowed_tools: frozenset[str] = frozenset()  # non-empty: only these tools
    blocked_tools: frozenset[str] = frozenset()  # always refused (block wins)
    blocked_keywords: tuple[str, ...] = ()  # semantic filter (case-insensitive)
    pricing: McpPricing = field(default_factory=McpPricing)
    policies: dict[str, Any] = field(default_factory=dict)  # the MCP-scope policy envelope

    @property
    def transport(self) -> Transport:
        """How the gateway reaches the server."""
        return self.target.transport

    def tool_permitted(self, tool: str) -> bool:
        """The server's own tool rules (allowed/blocked lists), before any key's tool grants."""
        if tool in self.blocked_tools:
            return False
        return not self.allowed_tools or tool in self.allowed_tools


class McpServerLookup(Protocol):
    """How the gateway finds servers (``odock.mcp.directory.McpDirectory``: cached, invalidated)."""

    async def resolve(self, organisation_id: str, ident: str) -> ResolvedMcpServer | None:
        """The server of the organisation whose slug or id is ``ident``, or None."""

    async def servers(self, organisation_id: str) -> list[ResolvedMcpServer]:
        """Every server of the organisation (what the aggregate endpoint offers from)."""
