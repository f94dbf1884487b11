"""Routes: MCP servers, which keys may use them (and which tools), and the STDIO allowlist.

A server's secrets (``auth_config`` token / password / client_secret, every ``headers`` and
``stdio_env`` value) are stored encrypted and always shown as ``"***"``; sending ``"***"`` back in
a PATCH keeps the stored value. Servers are managed by organisation admins (``mcp_server``); a
key's own MCP grants are part of the key (``api_key`` update, like its model grants), so a team
manager grants the servers of the organisation to the keys they manage. The STDIO allowlist is
the super admin's (``mcp_stdio_command``): a STDIO server runs its command where the gateway runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from odock.keys.tables import ApiKey, ApiKeyType
from odock.mcp.grant_service import McpGrants, ServerGrant, WantedGrant
from odock.mcp.link import AuthType, Transport
from odock.mcp.secrets import shown_auth, shown_values
from odock.mcp.service import AllowedCommand, McpServerFilters, McpServerService
from odock.mcp.tables import ApiKeyMcpAccess, McpServer, McpStdioCommand
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit, get_runtime, row_locator
from odock.web.api.fields import PRINTABLE, Id, IdQuery, JsonObject, Name
from odock.web.api.lists import ListRoute, TwinLists, add_list_routes, paged
from odock.web.api.paging import Page, PageParams, page_params
from odock.web.api.routes.api_keys import locate_key
from odock.web.api.search import SearchQuery

router = APIRouter(tags=["MCP servers"])


def mcp_servers_of(request: Request) -> McpServerService:
    """The MCP server service."""
    return get_runtime(request).control.mcp_servers


def mcp_grants_of(request: Request) -> McpGrants:
    """The keys' MCP grants."""
    return get_runtime(request).control.mcp_grants


Servers = Annotated[McpServerService, Depends(mcp_servers_of)]
Grants = Annotated[McpGrants, Depends(mcp_grants_of)]

_locate = row_locator(McpServer, "mcp_server_id", lambda s: Target(s.organisation_id))


_locate_command = row_locator(McpStdioCommand, "command_id", lambda _row: Target(None))


Text = Annotated[str, Field(max_length=10_000)]
Slug = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
Url = Annotated[str, Field(min_length=1, max_length=2000, pattern=PRINTABLE)]
Command = Annotated[str, Field(min_length=1, max_length=500, pattern=PRINTABLE)]
Tool = Annotated[str, Field(min_length=1, max_length=200, pattern=PRINTABLE)]
Values = Annotated[dict[str, str], Field(max_length=200)]
Tools = Annotated[list[Tool], Field(max_length=1000)]


class McpServerOut(BaseModel):
    """An MCP server; every secret is shown as ``***``."""

    id: str
    organisation_id: str
    name: str
    slug: str
    description: str | None
    transport: Transport
    endpoint_url: str | None
    stdio_command: str | None
    stdio_args: list[str]
    stdio_env: dict[str, str] = Field(description="values are always '***'")
    auth_type: AuthType
    auth_config: dict[str, Any] = Field(description="token, password and client_secret are always '***'")
    headers: dict[str, str] = Field(description="values are always '***'")
    enabled: bool
    is_public: bool
    oauth_required: bool
    team_id: str | None
    api_key_id: str | None
    allowed_tools: list[str]
    blocked_tools: list[str]
    semantic_filter: dict[str, Any]
    metadata: dict[str, Any]
    pricing: dict[str, int] = Field(description="call_nanos_usd, input_byte_nanos_usd, output_byte_nanos_usd")
    policies: dict[str, Any]
    path: str = Field(description="where clients reach it through the gateway")
    created_at: datetime
    updated_at: datetime


class _ServerFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Text | None = None
    endpoint_url: Url | None = None
    stdio_command: Command | None = None
    stdio_args: Annotated[list[str], Field(max_length=1000)] | None = None
    stdio_env: Values | None = Field(default=None, description="values stored encrypted; '***' keeps one")
    auth_config: dict[str, str] | None = Field(
        default=None,
        description="BEARER {token}; BASIC {username, password}; "
        "OAUTH2 {token_url, client_id, client_secret, scope?, audience?}; '***' keeps a stored secret",
    )
    headers: Values | None = Field(default=None, description="values stored encrypted; '***' keeps one")
    enabled: bool | None = None
    is_public: bool | None = None
    oauth_required: bool | None = None
    team_id: Id | None = Field(default=None, description="team scope: only keys of this team")
    api_key_id: Id | None = Field(default=None, description="key scope: only this key")
    allowed_tools: Tools | None = None
    blocked_tools: Tools | None = None
    semantic_filter: JsonObject | None = Field(default=None, description='{"blocked_keywords": [...]}')
    metadata: JsonObject | None = None
    pricing: JsonObject | None = Field(
        default=None,
        description="integer nanos-USD {call_nanos_usd, input_byte_nanos_usd, output_byte_nanos_usd}, "
        "or USD per million {call_usd_per_1m, input_usd_per_1m_bytes, output_usd_per_1m_bytes}",
    )
    policies: JsonObject | None = None


class McpServerCreate(_ServerFields):
    """A new MCP server (``slug`` defaults to one made from the name)."""

    name: Name
    slug: Slug | None = None
    transport: Transport
    auth_type: AuthType = AuthType.NONE


class McpServerUpdate(_ServerFields):
    """Changes to an MCP server: only the fields sent change (``null`` clears a nullable one)."""

    name: Name | None = None
    slug: Slug | None = None
    transport: Transport | None = None
    auth_type: AuthType | None = None


class McpKeyIds(BaseModel):
    """API keys by id."""

    model_config = ConfigDict(extra="forbid")

    api_key_ids: Annotated[list[Id], Field(min_length=1, max_length=500)]


class McpAccessOut(BaseModel):
    """A key that may use the server, with the tools it is limited to (``null``: the server decides)."""

    api_key_id: str
    name: str
    type: ApiKeyType
    team_id: str | None
    user_id: str | None
    key_preview: str
    revoked: bool
    tools: list[str] | None
    granted_at: datetime


class McpGrantIn(BaseModel):
    """A server (slug or id) and, optionally, the only tools the key may call on it."""

    model_config = ConfigDict(extra="forbid")

    server: Annotated[str, Field(min_length=1, max_length=100, pattern=PRINTABLE)]
    tools: Tools | None = Field(default=None, description="null: every tool the server allows")


class McpGrantsIn(BaseModel):
    """MCP grants of a key."""

    model_config = ConfigDict(extra="forbid")

    grants: Annotated[list[McpGrantIn], Field(max_length=500)]


class McpGrantOut(BaseModel):
    """A server the key may use."""

    mcp_server_id: str
    slug: str
    name: str
    transport: Transport
    enabled: bool
    tools: list[str] | None = Field(description="null: every tool the server allows")
    granted_at: datetime


class McpGrantList(BaseModel):
    """Every MCP server a key may use, by slug."""

    items: list[McpGrantOut]


class StdioCommandIn(BaseModel):
    """A command the gateway may run for STDIO servers: an executable name or absolute path."""

    model_config = ConfigDict(extra="forbid")

    command: Command
    note: Annotated[str, Field(max_length=500, pattern=PRINTABLE)] | None = None


class StdioCommandOut(BaseModel):
    """An entry of the STDIO allowlist (``origin: settings`` entries cannot be removed here)."""

    id: str | None
    command: str
    origin: Literal["settings", "database"]
    note: str | None
    added_by: str | None


class StdioCommandList(BaseModel):
    """The STDIO allowlist."""

    items: list[StdioCommandOut]


def render(server: McpServer) -> McpServerOut:
    """The API view of a server (secrets masked)."""
    return McpServerOut(
        id=server.id,
        organisation_id=server.organisation_id,
        name=server.name,
        slug=server.slug,
        description=server.description,
        transport=Transport(server.transport),
        endpoint_url=server.endpoint_url,
        stdio_command=server.stdio_command,
        stdio_args=list(server.stdio_args or []),
        stdio_env=shown_values(server.stdio_env),
        auth_type=AuthType(server.auth_type),
        auth_config=shown_auth(server.auth_config),
        headers=shown_values(server.headers),
        enabled=server.enabled,
        is_public=server.is_public,
        oauth_required=server.oauth_required,
        team_id=server.team_id,
        api_key_id=server.api_key_id,
        allowed_tools=list(server.allowed_tools or []),
        blocked_tools=list(server.blocked_tools or []),
        semantic_filter=dict(server.semantic_filter or {}),
        metadata=dict(server.metadata_ or {}),
        pricing=dict(server.pricing or {}),
        policies=dict(server.policies or {}),
        path=f"/v1/mcp/{server.slug}",
        created_at=server.created_at,
        updated_at=server.updated_at,
    )


def _grant_out(grant: ServerGrant) -> McpGrantOut:
    server = grant.server
    return McpGrantOut(
        mcp_server_id=server.id,
        slug=server.slug,
        name=server.name,
        transport=Transport(server.transport),
        enabled=server.enabled,
        tools=list(grant.tools) if grant.tools is not None else None,
        granted_at=grant.granted_at,
    )


def _command_out(entry: AllowedCommand) -> StdioCommandOut:
    origin: Literal["settings", "database"] = "settings" if entry.origin == "settings" else "database"
    return StdioCommandOut(
        id=entry.id, command=entry.command, origin=origin, note=entry.note, added_by=entry.added_by
    )


def server_filters(
    q: SearchQuery = None,
    organisation_id: IdQuery = None,
    transport: Annotated[Transport | None, Query()] = None,
    enabled: Annotated[bool | None, Query()] = None,
    team_id: IdQuery = None,
    sort: Annotated[Literal["created_at", "name", "slug"], Query()] = "created_at",
) -> McpServerFilters:
    """The filters of the server lists (``organisation_id``: the admin list's, see :mod:`lists`)."""
    return McpServerFilters(q=q, transport=transport, enabled=enabled, team_id=team_id, sort=sort)


SERVERS = "/organisations/{organisation_id}/mcp-servers"
SERVER = SERVERS + "/{mcp_server_id}"
ACCESS = "/organisations/{organisation_id}/apikeys/{api_key_id}/mcp-access"

add_list_routes(
    router,
    TwinLists(
        resource=Resource.MCP_SERVER,
        service=mcp_servers_of,
        wanted=server_filters,
        fetch=McpServerService.page,
        render=render,
        key=lambda s, wanted: (getattr(s, wanted.sort), s.id),
        item=McpServerOut,
        everywhere=ListRoute(
            "/admin/mcp-servers", "list_all_mcp_servers", "MCP servers of every organisation (super admin)."
        ),
        organisation=ListRoute(SERVERS, "list_mcp_servers", "The organisation's MCP servers."),
    ),
)


@router.post(SERVERS, status_code=201, response_model=McpServerOut)
async def create_mcp_server(
    organisation_id: str,
    body: McpServerCreate,
    servers: Servers,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.CREATE))],
) -> McpServerOut:
    """Add an MCP server (409 when the slug is taken; a STDIO command must be on the allowlist)."""
    grant.check(Target(organisation_id))
    fields = body.model_dump(exclude_none=True)
    return render(await servers.create(organisation_id, fields))


@router.get(SERVER, response_model=McpServerOut)
async def get_mcp_server(
    mcp_server_id: str,
    servers: Servers,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.READ, locate=_locate))],
) -> McpServerOut:
    """One MCP server (secrets masked)."""
    return render(await servers.get(mcp_server_id))


@router.patch(SERVER, response_model=McpServerOut)
async def update_mcp_server(
    mcp_server_id: str,
    body: McpServerUpdate,
    servers: Servers,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.UPDATE, locate=_locate))],
) -> McpServerOut:
    """Change an MCP server (the gateway sees it at once); ``***`` keeps a stored secret."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    return render(await servers.update(mcp_server_id, changes))


@router.delete(SERVER, status_code=204, response_class=Response)
async def delete_mcp_server(
    mcp_server_id: str,
    servers: Servers,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.DELETE, locate=_locate))],
) -> Response:
    """Delete an MCP server with its key and tool grants (its slug answers mcp_not_found at once)."""
    await servers.delete(mcp_server_id)
    return Response(status_code=204)


@router.get(SERVER + "/keys", response_model=Page[McpAccessOut])
async def mcp_server_keys(
    organisation_id: str,
    mcp_server_id: str,
    grants: Grants,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.READ, locate=_locate))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
) -> Page[McpAccessOut]:
    """The API keys that may use this server and that the caller may see, with their tool grants."""
    keys = Grant.for_actor(grant.actor, Resource.API_KEY, Action.READ, organisation_id).scope()
    tools = await grants.tools_of(mcp_server_id)

    def row(item: tuple[ApiKey, ApiKeyMcpAccess]) -> McpAccessOut:
        key, access = item
        return McpAccessOut(
            api_key_id=key.id,
            name=key.name,
            type=key.type,
            team_id=key.team_id,
            user_id=key.user_id,
            key_preview=key.key_preview,
            revoked=key.revoked,
            tools=tools.get(key.id),
            granted_at=access.created_at,
        )

    return await paged(
        lambda bound: grants.keys_page(mcp_server_id, keys, q, bound),
        page,
        row,
        lambda r: (r[1].created_at, r[0].id),
    )


@router.post(SERVER + "/keys", status_code=204, response_class=Response)
async def add_mcp_server_keys(
    mcp_server_id: str,
    body: McpKeyIds,
    grants: Grants,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.UPDATE, locate=_locate))],
) -> Response:
    """These keys may use the server too (existing grants stay)."""
    await grants.add_keys(mcp_server_id, body.api_key_ids)
    return Response(status_code=204)


@router.delete(SERVER + "/keys/{api_key_id}", status_code=204, response_class=Response)
async def remove_mcp_server_key(
    mcp_server_id: str,
    api_key_id: str,
    grants: Grants,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.UPDATE, locate=_locate))],
) -> Response:
    """The key may no longer use the server (its tool grants there go too)."""
    await grants.remove_key(mcp_server_id, api_key_id)
    return Response(status_code=204)


# --- a key's MCP grants -----------------------------------------------------------------------
@router.get(ACCESS, response_model=McpGrantList)
async def key_mcp_access(
    api_key_id: str,
    grants: Grants,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=locate_key))],
) -> McpGrantList:
    """Every MCP server the key may use, with its tool grants."""
    return McpGrantList(items=[_grant_out(g) for g in await grants.of_key(api_key_id)])


async def _granting(grants: McpGrants, api_key_id: str, body: McpGrantsIn, *, replace: bool) -> McpGrantList:
    wanted = [WantedGrant(g.server, g.tools) for g in body.grants]
    granted = await grants.grant(api_key_id, wanted, replace=replace)
    return McpGrantList(items=[_grant_out(g) for g in granted])


@router.put(ACCESS, response_model=McpGrantList)
async def replace_key_mcp_access(
    api_key_id: str,
    body: McpGrantsIn,
    grants: Grants,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> McpGrantList:
    """The key may use exactly these servers (with these tool grants) from now on."""
    return await _granting(grants, api_key_id, body, replace=True)


@router.post(ACCESS, response_model=McpGrantList)
async def add_key_mcp_access(
    api_key_id: str,
    body: McpGrantsIn,
    grants: Grants,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> McpGrantList:
    """The key may also use these servers; the tool grants of each server named are replaced."""
    return await _granting(grants, api_key_id, body, replace=False)


@router.delete(ACCESS + "/{mcp_server_id}", status_code=204, response_class=Response)
async def remove_key_mcp_access(
    api_key_id: str,
    mcp_server_id: str,
    grants: Grants,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> Response:
    """The key may no longer use this server (slug or id); its tool grants there go too."""
    await grants.revoke(api_key_id, mcp_server_id)
    return Response(status_code=204)


# --- the STDIO allowlist (super admin) -----------------------------------------------------------
@router.get("/admin/mcp-stdio-commands", response_model=StdioCommandList)
async def list_stdio_commands(
    servers: Servers,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_STDIO_COMMAND, Action.READ))],
) -> StdioCommandList:
    """The commands STDIO servers may run: the settings' (ODOCK_MCP_STDIO_ALLOWED_COMMANDS) and added ones."""
    return StdioCommandList(items=[_command_out(e) for e in await servers.allowlist()])


@router.post("/admin/mcp-stdio-commands", status_code=201, response_model=StdioCommandOut)
async def add_stdio_command(
    body: StdioCommandIn,
    servers: Servers,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_STDIO_COMMAND, Action.CREATE))],
) -> StdioCommandOut:
    """Allow a command for STDIO servers. It runs where the gateway runs, with its rights: add with care."""
    row = await servers.allow(body.command, note=body.note, added_by=grant.actor.email)
    return StdioCommandOut(
        id=row.id, command=row.command, origin="database", note=row.note, added_by=row.added_by
    )


@router.delete("/admin/mcp-stdio-commands/{command_id}", status_code=204, response_class=Response)
async def remove_stdio_command(
    command_id: str,
    servers: Servers,
    grant: Annotated[
        Grant, Depends(Permit(Resource.MCP_STDIO_COMMAND, Action.DELETE, locate=_locate_command))
    ],
) -> Response:
    """Remove an added command (servers already saved with it stay; new ones cannot use it)."""
    await servers.disallow(command_id)
    return Response(status_code=204)
