"""The key directory: API key hash → :class:`KeyPrincipal`, served from the cache tiers.

The database is read only on a miss of both tiers; unknown hashes are cached negatively so a
flood of bad keys cannot reach the database.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.specs import load_meters
from odock.cache.bus import Invalidation, InvalidationBus
from odock.cache.local import TtlCache
from odock.cache.lookup import TieredLookup
from odock.cache.shared import SharedCache
from odock.errors import DependencyUnavailable
from odock.ids import ApiKeyId, ModelId, OrganisationId, TeamId, UserId
from odock.keys.principal import GrantedModel, KeyPrincipal, McpGrant
from odock.keys.tables import ApiKey, ApiKeyMcpAccess, ApiKeyMcpToolGrant, ApiKeyModelAccess
from odock.providers.tables import Model
from odock.tenancy.tables import Organisation, Team


class KeyDirectory:
    """Resolves presented key hashes to principals."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        shared: SharedCache,
        bus: InvalidationBus,
        *,
        ttl: float,
        negative_ttl: float,
        max_entries: int,
    ) -> None:
        self._sessions = sessions
        self._lookup: TieredLookup[KeyPrincipal] = TieredLookup(
            "key",
            local=TtlCache(max_entries),
            shared=shared,
            bus=bus,
            loader=self._load,
            encode=KeyPrincipal.to_json,
            decode=KeyPrincipal.from_json,
            ttl=ttl,
            negative_ttl=negative_ttl,
        )
        bus.subscribe(self._on_invalidation)

    async def principal(self, key_hash: str) -> KeyPrincipal | None:
        """The principal for a key hash, or None when no such key exists."""
        return await self._lookup.get(key_hash)

    def _on_invalidation(self, inv: Invalidation) -> None:
        local = self._lookup.local
        if inv.scope == "all":
            local.clear()
        elif inv.scope == "api_key" and inv.key_hash:
            local.delete(inv.key_hash)
        elif inv.scope == "organisation":
            # Negative entries carry no organisation; drop them too (a key may just have appeared).
            local.delete_where(
                lambda _k, v: not isinstance(v, KeyPrincipal) or v.organisation_id == inv.organisation_id
            )

    async def _load(self, key_hash: str) -> KeyPrincipal | None:
        try:
            async with self._sessions() as session:
                return await load_principal(session, key_hash)
        except SQLAlchemyError as exc:
            raise DependencyUnavailable("API key lookup unavailable") from exc


async def load_principal(session: AsyncSession, key_hash: str) -> KeyPrincipal | None:
    """Build a principal from the database (the cold path)."""
    key = (await session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash))).scalar_one_or_none()
    if key is None:
        return None
    org = await session.get(Organisation, key.organisation_id)
    team = await session.get(Team, key.team_id) if key.team_id else None
    rows = await session.execute(
        select(Model.id, Model.name, Model.created_at, Model.type)
        .join(ApiKeyModelAccess, ApiKeyModelAccess.model_id == Model.id)
        .where(ApiKeyModelAccess.api_key_id == key.id)
        .order_by(Model.name)
    )
    return KeyPrincipal(
        key_id=ApiKeyId(key.id),
        key_hash=key.key_hash,
        organisation_id=OrganisationId(key.organisation_id),
        team_id=TeamId(key.team_id) if key.team_id else None,
        user_id=UserId(key.user_id) if key.user_id else None,
        type=key.type.value,
        name=key.name,
        expires_at=key.expires_at,
        revoked=key.revoked,
        granted=tuple(
            GrantedModel(ModelId(mid), name, int(created.timestamp()), str(kind))
            for mid, name, created, kind in rows
        ),
        policies=dict(key.policies or {}),
        organisation_policies=dict(org.policies or {}) if org else {},
        team_policies=dict(team.policies or {}) if team else {},
        meters=await load_meters(session, key.organisation_id, key.team_id, key.user_id, key.id),
        organisation_active=org is None or org.status != "DISABLED",
        strict_provider_family=org is not None and org.strict_provider_family,
        mcp_grants=await load_mcp_grants(session, key.id),
    )


async def load_mcp_grants(session: AsyncSession, key_id: str) -> tuple[McpGrant, ...]:
    """The key's MCP server grants, each with its tool grants (None when it has none)."""
    servers = (
        await session.execute(
            select(ApiKeyMcpAccess.mcp_server_id)
            .where(ApiKeyMcpAccess.api_key_id == key_id)
            .order_by(ApiKeyMcpAccess.mcp_server_id)
        )
    ).scalars()
    tools: dict[str, set[str]] = {}
    for server_id, tool in await session.execute(
        select(ApiKeyMcpToolGrant.mcp_server_id, ApiKeyMcpToolGrant.tool).where(
            ApiKeyMcpToolGrant.api_key_id == key_id
        )
    ):
        tools.setdefault(server_id, set()).add(tool)
    return tuple(McpGrant(sid, frozenset(tools[sid]) if sid in tools else None) for sid in servers)
