"""Routes: organisations (super admin list/create/delete), settings and the routing switch.

Deleting takes two steps: ``PATCH {"status": "DISABLED"}``, then ``DELETE``; the delete removes
everything the organisation owns. Only a super admin changes ``status``.
``strict_provider_family`` (off by default) makes native endpoints refuse models of another API
family with 400 ``provider_not_allowed`` instead of translating.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from odock.errors import Forbidden
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.tenancy.queries import SortBy
from odock.tenancy.service import OrganisationStatus, routing_enabled
from odock.tenancy.tables import Organisation
from odock.web.api.deps import Permit, row_locator
from odock.web.api.fields import PRINTABLE, Name
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.search import SearchQuery
from odock.web.api.services import TenancyDep, TenancyQueriesDep

router = APIRouter(tags=["organisations"])

_locate = row_locator(Organisation, "organisation_id", lambda org: Target(org.id))
Contact = Annotated[str, StringConstraints(min_length=1, max_length=320, pattern=PRINTABLE)]


class OrganisationOut(BaseModel):
    """An organisation's settings (spec §11.4 Settings)."""

    id: str
    name: str
    contact: str | None
    status: str
    routing_enabled: bool
    strict_provider_family: bool
    created_at: datetime
    updated_at: datetime


class OrganisationCreate(BaseModel):
    """A new organisation."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    contact: Contact | None = None
    strict_provider_family: bool = False


class OrganisationUpdate(BaseModel):
    """Changes to an organisation's settings; ``contact: null`` clears it; ``status`` is super admin only."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    contact: Contact | None = None
    status: OrganisationStatus | None = None
    strict_provider_family: bool | None = None


class RoutingSwitch(BaseModel):
    """The organisation routing switch (spec §9.1): routing runs only when it is on."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool


def render(org: Organisation) -> OrganisationOut:
    """The API view of an organisation."""
    return OrganisationOut(
        id=org.id,
        name=org.name,
        contact=org.contact,
        status=org.status,
        routing_enabled=routing_enabled(org),
        strict_provider_family=org.strict_provider_family,
        created_at=org.created_at,
        updated_at=org.updated_at,
    )


@router.get("/admin/organisations", response_model=Page[OrganisationOut])
async def list_organisations(
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    status: Annotated[OrganisationStatus | None, Query()] = None,
    sort: Annotated[SortBy, Query()] = "created_at",
) -> Page[OrganisationOut]:
    """Every organisation (super admin), searchable by name and contact, filterable by status."""
    rows = await queries.organisations(partial(keyset, params=page), q=q, status=status, sort=sort)
    return make_page(rows, page, render, lambda o: (getattr(o, sort), o.id))


@router.post("/admin/organisations", status_code=201, response_model=OrganisationOut)
async def create_organisation(
    body: OrganisationCreate,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.CREATE))],
) -> OrganisationOut:
    """Create an organisation (super admin)."""
    org = await tenancy.create_organisation(
        body.name, contact=body.contact, strict_provider_family=body.strict_provider_family
    )
    return render(org)


@router.delete("/admin/organisations/{organisation_id}", status_code=204, response_class=Response)
async def delete_organisation(
    organisation_id: str,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.DELETE, locate=_locate))],
) -> Response:
    """Delete a DISABLED organisation and everything it owns (409 while ACTIVE)."""
    await tenancy.delete_organisation(organisation_id)
    return Response(status_code=204)


@router.get("/organisations/{organisation_id}", response_model=OrganisationOut)
async def get_organisation(
    organisation_id: str,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.READ, locate=_locate))],
) -> OrganisationOut:
    """An organisation's settings."""
    return render(await tenancy.organisation(organisation_id))


@router.patch("/organisations/{organisation_id}", response_model=OrganisationOut)
async def update_organisation(
    organisation_id: str,
    body: OrganisationUpdate,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.UPDATE, locate=_locate))],
) -> OrganisationOut:
    """Rename, change the contact or the provider-family strictness, or (super admin) the status."""
    if body.status is not None and not grant.actor.is_super_admin:
        raise Forbidden("only a super admin changes an organisation's status")
    changes = body.model_dump(include={"name", "status", "strict_provider_family"}, exclude_none=True)
    if "contact" in body.model_fields_set:  # null clears it
        changes["contact"] = body.contact
    return render(await tenancy.update_organisation(organisation_id, **changes))


@router.get("/organisations/{organisation_id}/routing", response_model=RoutingSwitch)
async def get_routing(
    organisation_id: str,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.READ, locate=_locate))],
) -> RoutingSwitch:
    """The organisation routing switch."""
    return RoutingSwitch(enabled=routing_enabled(await tenancy.organisation(organisation_id)))


@router.patch("/organisations/{organisation_id}/routing", response_model=RoutingSwitch)
async def set_routing(
    organisation_id: str,
    body: RoutingSwitch,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.UPDATE, locate=_locate))],
) -> RoutingSwitch:
    """Switch routing on or off for the whole organisation (the gateway sees it at once)."""
    org = await tenancy.set_routing(organisation_id, body.enabled)
    return RoutingSwitch(enabled=routing_enabled(org))
