"""Pages: MCP servers — the list (search, filters, paging), add by hand, edit, and a server's page.

Each view declares the ``Permit`` of the API route it mirrors and calls that route (or its
service): the list is ``list_mcp_servers``, the page ``get_mcp_server`` and ``mcp_server_keys``.
Secrets come from the API's rendering, so they are ``***`` here too and never reach a page; the
edit form sends ``***`` back for a secret left alone, which the API reads as "keep it". Prices are
shown and typed in USD per 1M calls / bytes (the API converts to its integer nanos per call or
byte). Changes (create, edit, switch, delete, key and tool grants) go through the REST API.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from odock.keys.queries import KeyFilters
from odock.mcp.catalogue import trusted_catalogue
from odock.mcp.link import AuthType, Transport
from odock.mcp.queries import McpUsageQueries, McpUsageRow
from odock.rbac.grant import Actor, Grant
from odock.rbac.permissions import Action, Resource
from odock.usage.queries import UsageReach
from odock.web.api.deps import Permit, get_runtime
from odock.web.api.lists import paged
from odock.web.api.paging import PageParams, page_params
from odock.web.api.routes import mcp_servers as api
from odock.web.api.routes.api_keys import ApiKeyView
from odock.web.api.services import Keys, TenancyQueriesDep
from odock.web.console.pages import can, render
from odock.web.console.routes.lookups import (
    FormText,
    choice,
    flag,
    owner_names,
    paging_limit,
    permitted,
    query_string,
    search,
)
from odock.web.console.routes.reuse import api_route

router = APIRouter(include_in_schema=False)

SERVERS = "/o/{organisation_id}/mcp-servers"
KEY_CHOICES = 100
USAGE_ROWS = 20
PRICES = (
    ("call_nanos_usd", "call_usd_per_1m", "USD per 1M calls"),
    ("input_byte_nanos_usd", "input_usd_per_1m_bytes", "USD per 1M bytes in"),
    ("output_byte_nanos_usd", "output_usd_per_1m_bytes", "USD per 1M bytes out"),
)


def mcp_usage_of(request: Request) -> McpUsageQueries:
    """The MCP server usage read."""
    return McpUsageQueries(get_runtime(request).sessions)


Usage = Annotated[McpUsageQueries, Depends(mcp_usage_of)]


def per_million(nanos: int | None) -> str:
    """Integer nanos-USD per call or byte as USD per million ("" for none): 1 nano → "0.001"."""
    if not nanos:
        return ""
    text = f"{Decimal(nanos) / Decimal(1000):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def prices_of(server: api.McpServerOut) -> list[tuple[str, str, str]]:
    """The server's prices as (field of the per-1M body, label, value in USD per 1M)."""
    return [(field, label, per_million(server.pricing.get(nanos))) for nanos, field, label in PRICES]


async def key_choices(
    request: Request, actor: Actor, organisation_id: str, keys: Keys, q: str
) -> list[ApiKeyView]:
    """Active keys the actor may change (the grant routes' own check), newest first."""
    grant = await permitted(request, actor, Resource.API_KEY, Action.UPDATE)
    if grant is None:
        return []
    listed = await paged(
        lambda bound: keys.page(grant.scope(), KeyFilters(q=search(q), revoked=False), bound),
        PageParams(limit=KEY_CHOICES),
        ApiKeyView.of,
        lambda k: (k.created_at, k.id),
    )
    return listed.items


@router.get(SERVERS)
async def servers_page(
    request: Request,
    organisation_id: str,
    servers: api.Servers,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: FormText = "",
    transport: FormText = "",
    enabled: FormText = "",
) -> Response:
    """The organisation's MCP servers, searched and filtered, newest first."""
    listed = await api_route(api.router, "list_mcp_servers")(
        service=servers,
        grant=grant,
        params=page,
        organisation_id=organisation_id,
        q=search(q),
        transport=choice(Transport, transport, "transport"),
        enabled=flag(enabled, "enabled"),
        team_id=None,
        sort="created_at",
    )
    wanted = {"q": q, "transport": transport, "enabled": enabled}
    return render(
        request,
        "mcp_servers/list.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        listed=listed,
        wanted=wanted,
        filtered=any(wanted.values()),
        query=query_string({**wanted, "limit": paging_limit(page)}),
        transports=[t.value for t in Transport],
    )


async def _form_context(
    request: Request, actor: Actor, organisation_id: str, queries: TenancyQueriesDep, servers: api.Servers
) -> dict[str, Any]:
    teams, _users = await owner_names(request, actor, organisation_id, queries)
    commands: list[str] = []
    if can(actor, Resource.MCP_STDIO_COMMAND, Action.READ):
        commands = [entry.command for entry in await servers.allowlist()]
    return {
        "teams": teams,
        "commands": commands,
        "transports": [t.value for t in Transport],
        "auth_types": [a.value for a in AuthType],
    }


@router.get(SERVERS + "/new")
async def new_server(
    request: Request,
    organisation_id: str,
    servers: api.Servers,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.CREATE))],
) -> Response:
    """Add an MCP server by hand: identity, transport, security, governance, pricing, policies."""
    return render(
        request,
        "mcp_servers/new.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        server=None,
        prices=[(field, label, "") for _nanos, field, label in PRICES],
        **await _form_context(request, grant.actor, organisation_id, queries, servers),
    )


@router.get(SERVERS + "/catalogue")
async def catalogue_page(
    request: Request,
    organisation_id: str,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.CREATE))],
    q: FormText = "",
    transport: FormText = "",
    category: FormText = "",
    pick: Annotated[list[str], Query(max_length=50)] = [],  # noqa: B006 (FastAPI copies defaults)
) -> Response:
    """Trusted servers to pick (search, transport and category filters), then each picked one to configure."""
    catalogue = trusted_catalogue()
    wanted = choice(Transport, transport, "transport")
    shown = [e for e in catalogue.servers if e.matches(search(q), wanted, category or None)]
    picked = [e for e in catalogue.servers if e.slug in set(pick)]
    teams, _users = await owner_names(request, grant.actor, organisation_id, queries)
    return render(
        request,
        "mcp_servers/catalogue.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        catalogue=catalogue,
        shown=shown,
        picked=picked,
        wanted={"q": q, "transport": transport, "category": category},
        transports=[t.value for t in Transport],
        teams=teams,
    )


@router.get(SERVERS + "/{mcp_server_id}/edit")
async def edit_server(
    request: Request,
    organisation_id: str,
    mcp_server_id: str,
    servers: api.Servers,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.UPDATE, locate=api._locate))],
) -> Response:
    """The same form, filled with the server (secrets as ``***``: left alone, they are kept)."""
    server = await api.get_mcp_server(mcp_server_id, servers, grant)
    return render(
        request,
        "mcp_servers/new.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        server=server,
        prices=prices_of(server),
        **await _form_context(request, grant.actor, organisation_id, queries, servers),
    )


@router.get(SERVERS + "/{mcp_server_id}")
async def server_page(
    request: Request,
    organisation_id: str,
    mcp_server_id: str,
    servers: api.Servers,
    grants: api.Grants,
    keys: Keys,
    usage: Usage,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MCP_SERVER, Action.READ, locate=api._locate))],
    page: Annotated[PageParams, Depends(page_params)],
    key_q: FormText = "",
) -> Response:
    """A server: transport, security, governance, pricing, policies, key access, recent usage."""
    actor = grant.actor
    server = await api.get_mcp_server(mcp_server_id, servers, grant)
    access = await api.mcp_server_keys(organisation_id, mcp_server_id, grants, grant, page, q=None)
    granted = {a.api_key_id for a in access.items}
    choices: list[ApiKeyView] = []
    if can(actor, Resource.MCP_SERVER, Action.UPDATE):
        choices = [
            k for k in await key_choices(request, actor, organisation_id, keys, key_q) if k.id not in granted
        ]
    records: list[McpUsageRow] | None = None
    usage_grant = await permitted(request, actor, Resource.USAGE, Action.READ)
    if usage_grant is not None:
        records = await usage.recent(server.id, UsageReach.of(usage_grant), USAGE_ROWS)
    teams, _users = await owner_names(request, actor, organisation_id, queries)
    return render(
        request,
        "mcp_servers/detail.html",
        actor=actor,
        organisation_id=organisation_id,
        server=server,
        access=access,
        key_choices=choices,
        key_q=key_q,
        key_names={a.api_key_id: a.name for a in access.items},
        records=records,
        prices=prices_of(server),
        teams=teams,
    )


@dataclass(frozen=True)
class KeyMcpCard:
    """The "MCP access" card of a key's page: its servers with tool grants, and servers to add."""

    grants: list[api.McpGrantOut]
    offered: list[api.McpServerOut]


async def key_mcp_card(
    request: Request, key_grant: Grant, organisation_id: str, api_key_id: str
) -> KeyMcpCard:
    """What ``key_mcp_access`` answers for the key, and the servers the actor may see that it lacks."""
    access = await api.key_mcp_access(api_key_id, api.mcp_grants_of(request), key_grant)
    offered: list[api.McpServerOut] = []
    server_grant = await permitted(request, key_grant.actor, Resource.MCP_SERVER, Action.READ)
    if server_grant is not None:
        granted = {g.mcp_server_id for g in access.items}
        listed = await api_route(api.router, "list_mcp_servers")(
            service=api.mcp_servers_of(request),
            grant=server_grant,
            params=PageParams(limit=200, order="asc"),
            organisation_id=organisation_id,
            q=None,
            transport=None,
            enabled=None,
            team_id=None,
            sort="name",
        )
        offered = [s for s in listed.items if s.id not in granted]
    return KeyMcpCard(grants=access.items, offered=offered)
