"""The authenticated caller as the hot path sees it: a frozen snapshot of one API key."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from odock.budgets.specs import MeterSpec
from odock.ids import ApiKeyId, ModelId, OrganisationId, TeamId, UserId


@dataclass(frozen=True, slots=True)
class GrantedModel:
    """A model the key may call."""

    id: ModelId
    name: str
    created: int = 0  # unix seconds, as /v1/models reports it
    type: str = "chat"  # the model's type (Gemini's model list names the methods it serves)


@dataclass(frozen=True, slots=True)
class McpGrant:
    """A key's grant for one MCP server (on ``KeyPrincipal.mcp_grants``)."""

    server_id: str
    # None: no tool grants, the server's rules alone decide; otherwise only these tools (deny by default).
    tools: frozenset[str] | None = None

    def may_call(self, tool: str) -> bool:
        """True when the key's own tool grants admit ``tool``."""
        return self.tools is None or tool in self.tools


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """Everything the pipeline needs to know about an API key, without a database."""

    key_id: ApiKeyId
    key_hash: str
    organisation_id: OrganisationId
    team_id: TeamId | None
    user_id: UserId | None
    type: str
    name: str
    expires_at: datetime | None
    revoked: bool
    granted: tuple[GrantedModel, ...]
    policies: dict[str, Any] = field(default_factory=dict)
    organisation_policies: dict[str, Any] = field(default_factory=dict)
    team_policies: dict[str, Any] = field(default_factory=dict)
    meters: tuple[MeterSpec, ...] = ()  # budgets and quotas along the key's chain
    organisation_active: bool = True  # a DISABLED organisation's keys are refused
    # The organisation's choice: native endpoints refuse models of another API family.
    strict_provider_family: bool = False
    mcp_grants: tuple[McpGrant, ...] = ()  # the MCP servers the key may use, and its tool grants

    def mcp_grant(self, server_id: str) -> McpGrant | None:
        """The key's grant for an MCP server, or None."""
        return next((g for g in self.mcp_grants if g.server_id == server_id), None)

    def is_expired(self, now: datetime) -> bool:
        """True once the key's expiry has passed."""
        return self.expires_at is not None and now >= self.expires_at

    def may_call(self, model_id: str) -> bool:
        """True when the key holds a grant for the model."""
        return any(g.id == model_id for g in self.granted)

    def to_json(self) -> bytes:
        """Serialise for the shared cache."""
        data = {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in ("meters", "mcp_grants")}
        data["meters"] = [m.to_dict() for m in self.meters]
        data["mcp_grants"] = [
            [g.server_id, sorted(g.tools) if g.tools is not None else None] for g in self.mcp_grants
        ]
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> KeyPrincipal:
        """Inverse of :meth:`to_json`."""
        data = orjson.loads(raw)
        expires = data["expires_at"]
        return cls(
            key_id=ApiKeyId(data["key_id"]),
            key_hash=data["key_hash"],
            organisation_id=OrganisationId(data["organisation_id"]),
            team_id=data["team_id"],
            user_id=data["user_id"],
            type=data["type"],
            name=data["name"],
            expires_at=datetime.fromisoformat(expires) if expires else None,
            revoked=data["revoked"],
            granted=tuple(
                GrantedModel(ModelId(g["id"]), g["name"], g["created"], g.get("type", "chat"))
                for g in data["granted"]
            ),
            policies=data["policies"],
            organisation_policies=data["organisation_policies"],
            team_policies=data["team_policies"],
            meters=tuple(MeterSpec.from_dict(m) for m in data.get("meters", ())),
            organisation_active=data.get("organisation_active", True),
            strict_provider_family=data.get("strict_provider_family", False),
            mcp_grants=tuple(
                McpGrant(server_id, frozenset(tools) if tools is not None else None)
                for server_id, tools in data.get("mcp_grants", ())
            ),
        )
