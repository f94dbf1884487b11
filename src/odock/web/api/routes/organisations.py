"""Routes: organisations (super admin list/create/delete), settings and the routing switch.

Deleting takes two steps: ``PATCH {"status": "DISABLED"}``, then ``DELETE``; the delete removes
everything the organisation owns. Only a super admin changes ``status``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import select

from odock.admin.organisations import OrganisationStatus, routing_enabled
from odock.errors import Forbidden
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.tenancy.tables import Organisation
from odock.web.api.deps import Permit, RuntimeDep, row_locator
from odock.web.api.fields import PRINTABLE, Name
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.search import SearchQuery, matches

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
    created_at: datetime
    updated_at: datetime


class OrganisationCreate(BaseModel):
    """A new organisation."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    contact: Contact | None = None


class OrganisationUpdate(BaseModel):
    """Changes to an organisation's settings; ``contact: null`` clears it; ``status`` is super admin only."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    contact: Contact | None = None
    status: OrganisationStatus | None = None


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
        created_at=org.created_at,
        updated_at=org.updated_at,
    )


@router.get("/admin/organisations", response_model=Page[OrganisationOut])
async def list_organisations(
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    status: Annotated[OrganisationStatus | None, Query()] = None,
    sort: Annotated[Literal["created_at", "name"], Query()] = "created_at",
) -> Page[OrganisationOut]:
    """Every organisation (super admin), searchable by name and contact, filterable by status."""
    query = select(Organisation)
    if q:
        query = query.where(matches(q, Organisation.name, Organisation.contact))
    if status:
        query = query.where(Organisation.status == status)
    column = Organisation.name if sort == "name" else Organisation.created_at
    async with runtime.sessions() as session:
        rows = list((await session.execute(keyset(query, column, Organisation.id, page))).scalars())
    return make_page(rows, page, render, lambda o: (getattr(o, sort), o.id))


@router.post("/admin/organisations", status_code=201, response_model=OrganisationOut)
async def create_organisation(
    body: OrganisationCreate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.CREATE))],
) -> OrganisationOut:
    """Create an organisation (super admin)."""
    return render(await runtime.control.create_organisation(body.name, contact=body.contact))


@router.delete("/admin/organisations/{organisation_id}", status_code=204, response_class=Response)
async def delete_organisation(
    organisation_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.DELETE, locate=_locate))],
) -> Response:
    """Delete a DISABLED organisation and everything it owns (409 while ACTIVE)."""
    await runtime.control.organisations.delete(organisation_id)
    return Response(status_code=204)


@router.get("/organisations/{organisation_id}", response_model=OrganisationOut)
async def get_organisation(
    organisation_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.READ, locate=_locate))],
) -> OrganisationOut:
    """An organisation's settings."""
    return render(await runtime.control.organisation_by_id(organisation_id))


@router.patch("/organisations/{organisation_id}", response_model=OrganisationOut)
async def update_organisation(
    organisation_id: str,
    body: OrganisationUpdate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.UPDATE, locate=_locate))],
) -> OrganisationOut:
    """Rename, change the contact, or (super admin) the status."""
    if body.status is not None and not grant.actor.is_super_admin:
        raise Forbidden("only a super admin changes an organisation's status")
    org = await runtime.control.organisations.update(
        organisation_id,
        name=body.name,
        contact=body.contact,
        clear_contact="contact" in body.model_fields_set and body.contact is None,
        status=body.status,
    )
    return render(org)


@router.get("/organisations/{organisation_id}/routing", response_model=RoutingSwitch)
async def get_routing(
    organisation_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.READ, locate=_locate))],
) -> RoutingSwitch:
    """The organisation routing switch."""
    return RoutingSwitch(enabled=routing_enabled(await runtime.control.organisation_by_id(organisation_id)))


@router.patch("/organisations/{organisation_id}/routing", response_model=RoutingSwitch)
async def set_routing(
    organisation_id: str,
    body: RoutingSwitch,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.UPDATE, locate=_locate))],
) -> RoutingSwitch:
    """Switch routing on or off for the whole organisation (the gateway sees it at once)."""
    org = await runtime.control.organisations.set_routing(organisation_id, body.enabled)
    return RoutingSwitch(enabled=routing_enabled(org))
