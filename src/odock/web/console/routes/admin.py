"""Pages: the admin workspace (super admin): every organisation, and a way into each; the gateway's health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.tenancy.service import OrganisationStatus
from odock.web.api.deps import Permit
from odock.web.api.paging import PageParams, page_params
from odock.web.api.routes.health import HealthGrant, gateway_health
from odock.web.api.routes.organisations import list_organisations
from odock.web.api.services import HealthDep, TenancyQueriesDep
from odock.web.console.pages import render

router = APIRouter(include_in_schema=False)

# The admin workspace's navigation; later capabilities add their cross-organisation pages here.
ADMIN_NAV = [("Admin", [("Organisations", "/admin"), ("Gateway health", "/admin/health")])]


@router.get("/admin")
async def organisations(
    request: Request,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[OrganisationStatus | None, Query()] = None,
) -> Response:
    """Every organisation, searchable, with a way into its workspace (``/admin/*`` needs reach ALL)."""
    listed = await list_organisations(queries, grant, page, q=q, status=status, sort="created_at")
    return render(
        request, "admin/organisations.html", actor=grant.actor, admin_nav=ADMIN_NAV, page=listed, q=q or ""
    )


@router.get("/admin/health")
async def health(request: Request, checks: HealthDep, grant: HealthGrant) -> Response:
    """The gateway's database, shared cache, usage queue and dead letters, each ok or degraded."""
    report = await gateway_health(checks, grant)
    return render(request, "admin/health.html", actor=grant.actor, admin_nav=ADMIN_NAV, health=report)
