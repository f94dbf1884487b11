"""Page: the organisation's settings — its fields, status, switches and the policies card.

Read through the API's route functions (``GET /api/organisations/{id}``, its routing switch and its
policy envelope); every change is a form posted to the API (``PATCH`` the organisation or the
routing switch, ``PUT`` the envelope), whose field errors the page shows beside each field.
The page asks for the same permission as the ``PATCH`` (organisation: update).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from odock.limits.service import PolicyEnvelopes
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.tenancy.tables import Organisation
from odock.web.api.deps import Permit, row_locator
from odock.web.api.routes import policies
from odock.web.api.routes.organisations import get_organisation
from odock.web.api.services import TenancyDep, envelopes_of
from odock.web.console.pages import render

router = APIRouter(include_in_schema=False)

# The PATCH route's permission, row check included (an organisation outside the grant: 403/404).
_locate = row_locator(Organisation, "organisation_id", lambda org: Target(org.id))


async def organisation_policy(envelopes: PolicyEnvelopes, organisation_id: str) -> policies.PolicyView:
    """The organisation's envelope, read by the API route itself (``GET …/policies``)."""
    route = next(r for r in policies.router.routes if getattr(r, "name", "") == "get_organisation_policy")
    view: policies.PolicyView = await route.endpoint(  # type: ignore[attr-defined]
        envelopes=envelopes, organisation_id=organisation_id
    )
    return view


@router.get("/o/{organisation_id}/settings")
async def settings(
    request: Request,
    organisation_id: str,
    tenancy: TenancyDep,
    envelopes: Annotated[PolicyEnvelopes, Depends(envelopes_of)],
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.UPDATE, locate=_locate))],
) -> Response:
    """The organisation's fields and policies, each editable (status: super admin only)."""
    org = await get_organisation(organisation_id, tenancy, grant)
    policy = await organisation_policy(envelopes, organisation_id)
    return render(
        request,
        "settings/index.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        org=org,
        policy=policy,
    )
