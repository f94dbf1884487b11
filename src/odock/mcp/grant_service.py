"""Which keys may use which MCP servers, and which tools: per-key server grants and tool grants.

No grant, no access (a model grant never implies MCP access). A key with tool grants for a server
may call only those tools; one with none is limited by the server's own tool rules. A tool grant
exists only beside its server grant: removing the server grant removes the key's tool grants for
it. Keys and servers must be of the same organisation, and a key outside a scoped server's team
or key is refused (it could never use it). Every change invalidates the keys concerned (their
principals carry ``mcp_grants``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.keyset import KeysetPage, keyset
from odock.db.rows import get_row
from odock.db.search import matches
from odock.errors import NotFound, UnprocessableEntity
from odock.keys.tables import ApiKey
from odock.mcp.rules import check_tools
from odock.mcp.tables import ApiKeyMcpAccess, ApiKeyMcpToolGrant, McpServer
from odock.rbac.grant import ListScope


@dataclass(frozen=True)
class ServerGrant:
    """A key's grant for one server: ``tools`` None when it has no tool grants (the server decides)."""

    server: McpServer
    tools: tuple[str, ...] | None
    granted_at: datetime


@dataclass(frozen=True)
class WantedGrant:
    """A grant to give: the server (slug or id) and, optionally, the only tools the key may call."""

    server: str
    tools: Sequence[str] | None = None


class McpGrants:
    """Give, take and read the MCP grants of API keys."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: InvalidationBus) -> None:
        self._sessions = sessions
        self._bus = bus

    # --- a key's grants ----------------------------------------------------------------------------
    async def of_key(self, key_id: str) -> list[ServerGrant]:
        """Every server the key may use (by slug), each with its tool grants."""
        async with self._sessions() as session:
            await get_row(session, ApiKey, key_id)
            return await _grants_of(session, key_id)

    async def grant(
        self, key_id: str, wanted: Sequence[WantedGrant], *, replace: bool = False
    ) -> list[ServerGrant]:
        """Give the key these grants (tool grants of a named server replaced); ``replace``: only these."""
        async with self._sessions() as session:
            key = await get_row(session, ApiKey, key_id)
            servers = await _servers(session, key, [w.server for w in wanted])
            if replace:
                await session.execute(
                    delete(ApiKeyMcpToolGrant).where(ApiKeyMcpToolGrant.api_key_id == key.id)
                )
                await session.execute(delete(ApiKeyMcpAccess).where(ApiKeyMcpAccess.api_key_id == key.id))
                await session.flush()
            held = set(
                (
                    await session.execute(
                        select(ApiKeyMcpAccess.mcp_server_id).where(ApiKeyMcpAccess.api_key_id == key.id)
                    )
                ).scalars()
            )
            for want, server in zip(wanted, servers, strict=True):
                if server.id not in held:
                    session.add(ApiKeyMcpAccess(api_key_id=key.id, mcp_server_id=server.id))
                    held.add(server.id)
                    await session.flush()
                if not replace:
                    await session.execute(
                        delete(ApiKeyMcpToolGrant).where(
                            ApiKeyMcpToolGrant.api_key_id == key.id,
                            ApiKeyMcpToolGrant.mcp_server_id == server.id,
                        )
                    )
                for tool in check_tools(list(want.tools), "tools") if want.tools is not None else []:
                    session.add(ApiKeyMcpToolGrant(api_key_id=key.id, mcp_server_id=server.id, tool=tool))
                await session.flush()
            await session.commit()
            grants = await _grants_of(session, key.id)
        await self._changed([key])
        return grants

    async def revoke(self, key_id: str, server_ref: str) -> None:
        """The key may no longer use this server (404 when it had no grant); its tool grants go too."""
        async with self._sessions() as session:
            key = await get_row(session, ApiKey, key_id)
            server = (await _servers(session, key, [server_ref], check_scope=False))[0]
            access = await session.get(ApiKeyMcpAccess, (key.id, server.id))
            if access is None:
                raise NotFound("the key has no grant for this MCP server")
            await _remove(session, key.id, server.id)
            await session.commit()
        await self._changed([key])

    # --- a server's keys ---------------------------------------------------------------------------
    async def add_keys(self, server_id: str, key_ids: Sequence[str]) -> None:
        """These keys may use the server too (existing grants and their tool grants stay)."""
        async with self._sessions() as session:
            server = await get_row(session, McpServer, server_id)
            keys = await _keys(session, server, key_ids)
            held = set(
                (
                    await session.execute(
                        select(ApiKeyMcpAccess.api_key_id).where(ApiKeyMcpAccess.mcp_server_id == server.id)
                    )
                ).scalars()
            )
            session.add_all(
                ApiKeyMcpAccess(api_key_id=key.id, mcp_server_id=server.id)
                for key in keys
                if key.id not in held
            )
            await session.commit()
        await self._changed(keys)

    async def remove_key(self, server_id: str, key_id: str) -> None:
        """The key may no longer use the server (404 when it had no grant)."""
        async with self._sessions() as session:
            server = await get_row(session, McpServer, server_id)
            key = None if "\x00" in key_id else await session.get(ApiKey, key_id)
            access = await session.get(ApiKeyMcpAccess, (key_id, server.id)) if key is not None else None
            if key is None or access is None:
                raise NotFound("the key has no grant for this MCP server")
            await _remove(session, key_id, server.id)
            await session.commit()
        await self._changed([key])

    async def keys_page(
        self, server_id: str, keys: ListScope, q: str | None, page: KeysetPage
    ) -> list[tuple[ApiKey, ApiKeyMcpAccess]]:
        """One page of the keys granted the server that ``keys`` (the caller's key reach) covers."""
        query: Select[*tuple[Any, ...]] = (
            select(ApiKey, ApiKeyMcpAccess)
            .join(ApiKeyMcpAccess, ApiKeyMcpAccess.api_key_id == ApiKey.id)
            .where(ApiKeyMcpAccess.mcp_server_id == server_id, ApiKey.organisation_id == keys.organisation_id)
        )
        if keys.team_ids is not None or keys.user_id is not None:
            mine = [ApiKey.user_id == keys.user_id] if keys.user_id else []
            teams = ApiKey.team_id.in_(keys.team_ids) if keys.team_ids else false()
            query = query.where(or_(teams, *mine))
        if q:
            query = query.where(matches(q, ApiKey.name))
        async with self._sessions() as session:
            statement = keyset(query, ApiKeyMcpAccess.created_at, ApiKey.id, page)
            return [(k, a) for k, a in await session.execute(statement)]

    async def tools_of(self, server_id: str) -> dict[str, list[str]]:
        """Per key id, the tools granted on the server (keys without tool grants absent)."""
        query = select(ApiKeyMcpToolGrant.api_key_id, ApiKeyMcpToolGrant.tool).where(
            ApiKeyMcpToolGrant.mcp_server_id == server_id
        )
        tools: dict[str, list[str]] = {}
        async with self._sessions() as session:
            for key_id, tool in await session.execute(query.order_by(ApiKeyMcpToolGrant.tool)):
                tools.setdefault(key_id, []).append(tool)
        return tools

    async def _changed(self, keys: Sequence[ApiKey]) -> None:
        for key in keys:
            await self._bus.publish(
                Invalidation("api_key", organisation_id=key.organisation_id, key_hash=key.key_hash)
            )


async def _remove(session: AsyncSession, key_id: str, server_id: str) -> None:
    await session.execute(
        delete(ApiKeyMcpToolGrant).where(
            ApiKeyMcpToolGrant.api_key_id == key_id, ApiKeyMcpToolGrant.mcp_server_id == server_id
        )
    )
    await session.execute(
        delete(ApiKeyMcpAccess).where(
            ApiKeyMcpAccess.api_key_id == key_id, ApiKeyMcpAccess.mcp_server_id == server_id
        )
    )


async def _grants_of(session: AsyncSession, key_id: str) -> list[ServerGrant]:
    rows = await session.execute(
        select(McpServer, ApiKeyMcpAccess.created_at)
        .join(ApiKeyMcpAccess, ApiKeyMcpAccess.mcp_server_id == McpServer.id)
        .where(ApiKeyMcpAccess.api_key_id == key_id)
        .order_by(McpServer.slug)
    )
    tools: dict[str, list[str]] = {}
    for server_id, tool in await session.execute(
        select(ApiKeyMcpToolGrant.mcp_server_id, ApiKeyMcpToolGrant.tool)
        .where(ApiKeyMcpToolGrant.api_key_id == key_id)
        .order_by(ApiKeyMcpToolGrant.tool)
    ):
        tools.setdefault(server_id, []).append(tool)
    return [
        ServerGrant(server, tuple(tools[server.id]) if server.id in tools else None, granted_at)
        for server, granted_at in rows
    ]


async def _servers(
    session: AsyncSession, key: ApiKey, refs: Sequence[str], *, check_scope: bool = True
) -> list[McpServer]:
    """The key's organisation's servers named by ``refs`` (slugs or ids), in order; 422 for others."""
    wanted = list(dict.fromkeys(refs))
    if len(wanted) != len(refs):
        raise UnprocessableEntity("a server is named twice", param="servers")
    odd = [ref for ref in wanted if "\x00" in ref]  # PostgreSQL refuses NUL in a query's text
    if odd:
        raise UnprocessableEntity("unknown MCP server", param="servers")
    found: list[McpServer] = []
    if wanted:
        rows = await session.execute(
            select(McpServer).where(
                McpServer.organisation_id == key.organisation_id,
                or_(McpServer.slug.in_(wanted), McpServer.id.in_(wanted)),
            )
        )
        found = list(rows.scalars())
    by_id = {s.id: s for s in found}
    by_slug = {s.slug: s for s in found}
    servers: list[McpServer] = []
    for ref in wanted:
        server = by_id.get(ref) or by_slug.get(ref)
        if server is None:
            raise UnprocessableEntity(f"unknown MCP server: {ref}", param="servers")
        if check_scope:
            _in_scope(server, key)
        servers.append(server)
    return servers


async def _keys(session: AsyncSession, server: McpServer, key_ids: Sequence[str]) -> list[ApiKey]:
    wanted = list(dict.fromkeys(key_ids))
    keys: list[ApiKey] = []
    if wanted:
        rows = await session.execute(
            select(ApiKey).where(ApiKey.organisation_id == server.organisation_id, ApiKey.id.in_(wanted))
        )
        keys = list(rows.scalars())
    missing = sorted(set(wanted) - {k.id for k in keys})
    if missing:
        raise UnprocessableEntity(f"unknown API keys: {', '.join(missing[:10])}", param="api_key_ids")
    for key in keys:
        _in_scope(server, key)
    return keys


def _in_scope(server: McpServer, key: ApiKey) -> None:
    if server.team_id is not None and key.team_id != server.team_id:
        raise UnprocessableEntity(
            f"MCP server '{server.slug}' is scoped to a team this key is not of", param="servers"
        )
    if server.api_key_id is not None and key.id != server.api_key_id:
        raise UnprocessableEntity(f"MCP server '{server.slug}' is scoped to another API key", param="servers")
