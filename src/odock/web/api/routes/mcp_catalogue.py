"""Routes: the trusted catalogue of MCP servers shipped with the gateway (read-only, any signed-in user).

The catalogue holds no organisation data and no secrets (environment variable *names* only), so
every signed-in, active caller may read it; adding a server from it goes through the MCP server
routes and their permission.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from odock.mcp.catalogue import TAG_PATTERN, CatalogueServer, trusted_catalogue
from odock.mcp.link import Transport
from odock.web.api.deps import ActorDep
from odock.web.api.search import SearchQuery

router = APIRouter(tags=["mcp"])


class McpCatalogueOut(BaseModel):
    """The catalogue's entries that pass the filters, and every category it has."""

    updated: str
    categories: list[str]
    items: list[CatalogueServer]


@router.get("/mcp-catalogue", response_model=McpCatalogueOut)
async def mcp_catalogue_list(
    actor: ActorDep,
    q: SearchQuery = None,
    transport: Annotated[Transport | None, Query(description="STDIO, SSE or STREAMABLE_HTTP")] = None,
    category: Annotated[str | None, Query(pattern=TAG_PATTERN, description="one category")] = None,
) -> McpCatalogueOut:
    """The trusted MCP servers (``q``: part of the name, slug, description or a tag), in catalogue order."""
    catalogue = trusted_catalogue()
    return McpCatalogueOut(
        updated=catalogue.updated,
        categories=catalogue.categories,
        items=[s for s in catalogue.servers if s.matches(q, transport, category)],
    )
