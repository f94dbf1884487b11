"""The MCP servers of an organisation: creation, changes, deletion, lookups, lists, the STDIO allowlist.

A server is unique by slug within its organisation. Every write is checked as the whole row it
would leave (:mod:`odock.mcp.rules`), so a server without its endpoint or command, or a STDIO
command off the allowlist, can never be saved. Secrets (``auth_config`` secrets, ``headers`` and
``stdio_env`` values) are stored as envelopes and shown as ``"***"`` (:mod:`odock.mcp.secrets`);
an update that sends ``"***"`` keeps the stored secret. Every change commits through the audited
session, then publishes the organisation's invalidation so the gateway (``McpDirectory``) and the
keys that cache MCP grants see it at once.

The STDIO allowlist is the settings' ``mcp_stdio_allowed_commands`` plus the rows a super admin
adds; a command is allowed when it equals an entry exactly (an executable name or absolute path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.keyset import KeysetPage, fetch_rows, keyset
from odock.db.rows import commit_or_conflict, get_row, one_or_missing
from odock.db.search import matches
from odock.errors import Conflict, NotFound, UnprocessableEntity
from odock.ids import new_id
from odock.keys.tables import ApiKey
from odock.mcp.link import AuthType, Transport
from odock.mcp.rules import (
    PRICES,
    PRICES_PER_MILLION,
    auth_type_of,
    check_args,
    check_command,
    check_endpoint,
    check_object,
    check_semantic_filter,
    check_slug,
    check_tools,
    slug_of,
    transport_of,
)
from odock.mcp.secrets import check_auth, open_auth, open_values, sealed_auth, sealed_values
from odock.mcp.tables import ApiKeyMcpAccess, ApiKeyMcpToolGrant, McpServer, McpStdioCommand
from odock.providers.crypto import EnvelopeDecrypter, EnvelopeError
from odock.rbac.grant import ListScope
from odock.rules import same_org, usd_to_nanos, valid_name, validate_policies
from odock.tenancy.tables import Organisation, Team

FIELDS = frozenset(
    {
        "name", "slug", "description", "transport", "endpoint_url", "stdio_command", "stdio_args",
        "stdio_env", "auth_type", "auth_config", "headers", "enabled", "is_public", "oauth_required",
        "team_id", "api_key_id", "allowed_tools", "blocked_tools", "semantic_filter", "metadata",
        "pricing", "policies",
    }
)  # fmt: skip
_SECRET_FIELDS = ("auth_config", "headers", "stdio_env")
_DEFAULTS: Mapping[str, Any] = {
    "description": None,
    "endpoint_url": None,
    "stdio_command": None,
    "stdio_args": [],
    "stdio_env": {},
    "auth_type": AuthType.NONE.value,
    "auth_config": {},
    "headers": {},
    "enabled": True,
    "is_public": False,
    "oauth_required": False,
    "team_id": None,
    "api_key_id": None,
    "allowed_tools": [],
    "blocked_tools": [],
    "semantic_filter": {},
    "metadata": {},
    "pricing": {},
    "policies": {},
}


@dataclass(frozen=True)
class McpServerFilters:
    """The filters of MCP server lists; ``sort`` is ``created_at``, ``name`` or ``slug`` (then id)."""

    q: str | None = None
    transport: Transport | None = None
    enabled: bool | None = None
    team_id: str | None = None
    sort: str = "created_at"


@dataclass(frozen=True)
class AllowedCommand:
    """One entry of the STDIO allowlist: from the settings (``id`` None) or a database row."""

    command: str
    origin: str  # "settings" or "database"
    id: str | None = None
    note: str | None = None
    added_by: str | None = None


class McpServerService:
    """Create, change, delete, find and list MCP servers; read and change the STDIO allowlist."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: InvalidationBus,
        encrypter: EnvelopeDecrypter | None,
        stdio_allowed: Sequence[str] = (),
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._encrypter = encrypter
        self._settings_allowed = tuple(stdio_allowed)

    # --- servers -----------------------------------------------------------------------------
    async def create(self, organisation_id: str, fields: Mapping[str, Any]) -> McpServer:
        """Create a server from ``fields`` (``name`` and ``transport`` required; 409 on a taken slug)."""
        _only_known(fields)
        for required in ("name", "transport"):
            if fields.get(required) is None:
                raise UnprocessableEntity(f"{required} is required", param=required)
        state = dict(_DEFAULTS) | {k: v for k, v in fields.items() if k not in _SECRET_FIELDS}
        state.setdefault("slug", None)
        if state["slug"] is None:
            state["slug"] = slug_of(str(fields["name"]))
        async with self._sessions() as session:
            await get_row(session, Organisation, organisation_id)
            state = await self._checked(session, organisation_id, state)
            secrets = self._sealed(state, fields, None)
            server = McpServer(id=new_id(), organisation_id=organisation_id, **_columns(state | secrets))
            session.add(server)
            await commit_or_conflict(session, f"an MCP server with slug '{state['slug']}' already exists")
        await self._changed(organisation_id)
        return server

    async def update(self, server_id: str, changes: Mapping[str, Any]) -> McpServer:
        """Change the fields given (``None`` clears a nullable one); the row is checked as a whole."""
        _only_known(changes)
        async with self._sessions() as session:
            server = await get_row(session, McpServer, server_id)
            state = _state(server) | {k: v for k, v in changes.items() if k not in _SECRET_FIELDS}
            for name in ("name", "slug", "transport", "auth_type"):
                if state[name] is None:
                    raise UnprocessableEntity(f"{name} cannot be cleared", param=name)
            state = await self._checked(session, server.organisation_id, state, changes)
            secrets = self._sealed(state, changes, server)
            for column, value in _columns(state | secrets).items():
                if getattr(server, column) != value:
                    setattr(server, column, value)
            await commit_or_conflict(session, f"an MCP server with slug '{state['slug']}' already exists")
        await self._changed(server.organisation_id)
        return server

    async def delete(self, server_id: str) -> None:
        """Delete a server with its key and tool grants."""
        async with self._sessions() as session:
            server = await get_row(session, McpServer, server_id)
            await session.execute(
                delete(ApiKeyMcpToolGrant).where(ApiKeyMcpToolGrant.mcp_server_id == server_id)
            )
            await session.execute(delete(ApiKeyMcpAccess).where(ApiKeyMcpAccess.mcp_server_id == server_id))
            await session.delete(server)
            await session.commit()
        await self._changed(server.organisation_id)

    async def get(self, server_id: str) -> McpServer:
        """One server by id (404 when absent)."""
        async with self._sessions() as session:
            return await get_row(session, McpServer, server_id)

    async def find(self, organisation_id: str, ident: str) -> McpServer:
        """The organisation's server with this slug or id (404 when absent)."""
        query = select(McpServer).where(
            McpServer.organisation_id == organisation_id, or_(McpServer.slug == ident, McpServer.id == ident)
        )
        async with self._sessions() as session:
            rows = list((await session.execute(query)).scalars())
        if not rows:
            raise NotFound(f"MCP server '{ident}' does not exist")
        return next((r for r in rows if r.id == ident), rows[0])

    async def listed(self, organisation_id: str | None = None) -> Sequence[McpServer]:
        """Servers by organisation and slug (optionally of one organisation)."""
        query = select(McpServer).order_by(McpServer.organisation_id, McpServer.slug)
        if organisation_id:
            query = query.where(McpServer.organisation_id == organisation_id)
        return await fetch_rows(self._sessions, query)

    async def page(
        self, scope: ListScope, filters: McpServerFilters, page: KeysetPage
    ) -> Sequence[McpServer]:
        """One keyset page of the servers in ``scope`` (all organisations when it names none)."""
        query = select(McpServer)
        if scope.organisation_id is not None:
            query = query.where(McpServer.organisation_id == scope.organisation_id)
        if filters.q:
            query = query.where(
                matches(
                    filters.q, McpServer.name, McpServer.slug, McpServer.description, McpServer.endpoint_url
                )
            )
        if filters.transport is not None:
            query = query.where(McpServer.transport == filters.transport.value)
        if filters.enabled is not None:
            query = query.where(McpServer.enabled == filters.enabled)
        if filters.team_id is not None:
            query = query.where(McpServer.team_id == filters.team_id)
        column = {"name": McpServer.name, "slug": McpServer.slug}.get(filters.sort, McpServer.created_at)
        return await fetch_rows(self._sessions, keyset(query, column, McpServer.id, page))

    def holds(self, server: McpServer, fields: Mapping[str, Any]) -> bool:
        """True when ``server`` already is ``fields`` (secrets compared by opening the stored envelopes)."""
        state = _state(server)
        for name, value in fields.items():
            if name in _SECRET_FIELDS:
                continue
            wanted = value
            if name == "pricing":
                wanted = check_pricing(value or {})
            elif name == "semantic_filter":
                wanted = check_semantic_filter(value or {})
            elif name == "policies":
                wanted = validate_policies(value)
            elif name in ("transport", "auth_type") and value is not None:
                wanted = str(value)
            if state.get(name) != wanted:
                return False
        try:
            if "auth_config" in fields and open_auth(server.auth_config or {}, self._encrypter) != {
                k: str(v) for k, v in (fields["auth_config"] or {}).items()
            }:
                return False
            for name in ("headers", "stdio_env"):
                if name in fields and open_values(getattr(server, name) or {}, self._encrypter) != {
                    k: str(v) for k, v in (fields[name] or {}).items()
                }:
                    return False
        except EnvelopeError:
            return False
        return True

    # --- the STDIO allowlist -------------------------------------------------------------------
    async def allowlist(self) -> list[AllowedCommand]:
        """Every allowed command: the settings' first, then the database rows by command."""
        rows = await fetch_rows(self._sessions, select(McpStdioCommand).order_by(McpStdioCommand.command))
        return [AllowedCommand(c, "settings") for c in self._settings_allowed] + [
            AllowedCommand(r.command, "database", r.id, r.note, r.added_by) for r in rows
        ]

    async def allow(
        self, command: str, *, note: str | None = None, added_by: str | None = None
    ) -> McpStdioCommand:
        """Add a command to the allowlist (409 when it is there already)."""
        command = command.strip()
        if not command or len(command) > 500 or "\x00" in command or any(c.isspace() for c in command):
            raise UnprocessableEntity(
                "command must be one executable name or absolute path, without spaces", param="command"
            )
        if command in self._settings_allowed:
            raise Conflict(f"'{command}' is already allowed by the settings")
        row = McpStdioCommand(id=new_id(), command=command, note=note, added_by=added_by)
        async with self._sessions() as session:
            session.add(row)
            await commit_or_conflict(session, f"'{command}' is already on the STDIO allowlist")
        return row

    async def disallow(self, ref: str) -> None:
        """Remove a database entry (by id or command) from the allowlist; servers using it stay saved."""
        query = select(McpStdioCommand).where(or_(McpStdioCommand.id == ref, McpStdioCommand.command == ref))
        row = await one_or_missing(
            self._sessions, query, f"'{ref}' is not on the STDIO allowlist's database rows"
        )
        async with self._sessions() as session:
            await session.delete(await get_row(session, McpStdioCommand, row.id))
            await session.commit()

    # --- helpers ---------------------------------------------------------------------------------
    async def _allowed(self, session: AsyncSession) -> set[str]:
        rows = await session.execute(select(McpStdioCommand.command))
        return set(self._settings_allowed) | set(rows.scalars())

    async def _checked(
        self,
        session: AsyncSession,
        organisation_id: str,
        state: dict[str, Any],
        changes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``state`` validated and normalised (the whole row after the changes)."""
        state["name"] = valid_name(str(state["name"]))
        state["slug"] = check_slug(state["slug"])
        transport = transport_of(state["transport"])
        state["transport"] = transport.value
        state["auth_type"] = auth_type_of(state["auth_type"]).value
        check_endpoint(transport, state["endpoint_url"])
        if transport is Transport.STDIO and (
            changes is None or {"stdio_command", "transport"} & set(changes)
        ):
            # Only a new or changed command is checked: a server saved while its command was
            # allowed keeps its other settings editable after the entry is removed.
            check_command(transport, state["stdio_command"], await self._allowed(session))
        else:
            command = state["stdio_command"] or None
            check_command(transport, command, {command} if isinstance(command, str) else ())
        state["stdio_args"] = check_args(state["stdio_args"] or [])
        state["allowed_tools"] = check_tools(state["allowed_tools"] or [], "allowed_tools")
        state["blocked_tools"] = check_tools(state["blocked_tools"] or [], "blocked_tools")
        state["semantic_filter"] = check_semantic_filter(state["semantic_filter"] or {})
        state["pricing"] = check_pricing(state["pricing"] or {})
        state["policies"] = validate_policies(check_object(state["policies"] or {}, "policies"))
        state["metadata"] = dict(check_object(state["metadata"] or {}, "metadata"))
        for flag in ("enabled", "is_public", "oauth_required"):
            if not isinstance(state[flag], bool):
                raise UnprocessableEntity(f"{flag} must be true or false", param=flag)
        description = state["description"]
        if description is not None and (not isinstance(description, str) or len(description) > 10_000):
            raise UnprocessableEntity("description must be text", param="description")
        if state["team_id"]:
            team = await session.get(Team, state["team_id"])
            if team is None or team.organisation_id != organisation_id:
                raise UnprocessableEntity("team_id is not a team of this organisation", param="team_id")
        if state["api_key_id"]:
            key = await session.get(ApiKey, state["api_key_id"])
            if key is None or key.organisation_id != organisation_id:
                raise UnprocessableEntity("api_key_id is not a key of this organisation", param="api_key_id")
        return state

    def _sealed(
        self, state: Mapping[str, Any], given: Mapping[str, Any], server: McpServer | None
    ) -> dict[str, Any]:
        """The secret columns to store: given ones encrypted (``***`` keeps), others as stored."""
        auth_type = AuthType(state["auth_type"])
        sealed: dict[str, Any] = {}
        if "auth_config" in given:
            raw = given["auth_config"]
            config = check_object(raw if raw is not None else {}, "auth_config")
            stored = server.auth_config if server is not None else None
            sealed["auth_config"] = sealed_auth(config, stored, self._encrypter)
        elif server is None or auth_type is AuthType.NONE:
            sealed["auth_config"] = {}
        else:
            sealed["auth_config"] = dict(server.auth_config or {})  # the check below decides
        check_auth(auth_type, sealed["auth_config"])
        for name in ("headers", "stdio_env"):
            if name in given:
                raw = given[name]
                values = check_object(raw if raw is not None else {}, name)
                stored = getattr(server, name) if server is not None else None
                sealed[name] = sealed_values(values, stored, self._encrypter, name)
            else:
                sealed[name] = dict(getattr(server, name) or {}) if server is not None else {}
        return sealed

    async def _changed(self, organisation_id: str) -> None:
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))


def _only_known(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - FIELDS
    if unknown:
        raise UnprocessableEntity(f"unknown MCP server fields: {', '.join(sorted(unknown))}")


def _state(server: McpServer) -> dict[str, Any]:
    """The row's configurable fields, as the rules take them (secrets excluded)."""
    return {
        "name": server.name,
        "slug": server.slug,
        "description": server.description,
        "transport": server.transport,
        "endpoint_url": server.endpoint_url,
        "stdio_command": server.stdio_command,
        "stdio_args": list(server.stdio_args or []),
        "auth_type": server.auth_type,
        "enabled": server.enabled,
        "is_public": server.is_public,
        "oauth_required": server.oauth_required,
        "team_id": server.team_id,
        "api_key_id": server.api_key_id,
        "allowed_tools": list(server.allowed_tools or []),
        "blocked_tools": list(server.blocked_tools or []),
        "semantic_filter": dict(server.semantic_filter or {}),
        "metadata": dict(server.metadata_ or {}),
        "pricing": dict(server.pricing or {}),
        "policies": dict(server.policies or {}),
    }


def _columns(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` as the table's attributes (``metadata`` is ``metadata_``)."""
    columns = {k: v for k, v in state.items() if k in FIELDS}
    columns["metadata_"] = columns.pop("metadata")
    return columns


async def same_org_server(session: AsyncSession, server_id: str, organisation_id: str) -> McpServer:
    """The server, refused (422) when it belongs to another organisation."""
    server = await get_row(session, McpServer, server_id)
    same_org(server.organisation_id, organisation_id, "MCP server")
    return server


def check_pricing(value: object) -> dict[str, int]:
    """Integer nanos-USD ≥ 0 per call and per byte (or the USD-per-million form), or empty."""
    raw = check_object(value, "pricing")
    if not raw:
        return {}
    unknown = set(raw) - set(PRICES) - set(PRICES_PER_MILLION)
    if unknown:
        raise UnprocessableEntity(
            f"pricing has unknown fields: {', '.join(sorted(unknown))}", param="pricing"
        )
    prices = dict.fromkeys(PRICES, 0)
    for name, price in raw.items():
        if name in PRICES:
            if not isinstance(price, int) or isinstance(price, bool) or price < 0 or price >= 2**63:
                raise UnprocessableEntity(f"pricing.{name} must be an integer ≥ 0", param="pricing")
            prices[name] = price
            continue
        if isinstance(price, bool) or not isinstance(price, int | float | str):
            raise UnprocessableEntity(f"pricing.{name} must be a USD amount", param="pricing")
        per_million = usd_to_nanos(str(price), param="pricing")
        each, rest = divmod(per_million, 1_000_000)
        if rest:
            raise UnprocessableEntity(
                f"pricing.{name} is finer than 1 nano-USD per call or byte", param="pricing"
            )
        prices[PRICES_PER_MILLION[name]] = each
    return prices
