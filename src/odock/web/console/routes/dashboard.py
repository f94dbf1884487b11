"""Page: the organisation dashboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit
from odock.web.console.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/o/{organisation_id}")
async def dashboard(
    request: Request,
    organisation_id: str,
    grant: Annotated[Grant, Depends(Permit(Resource.USAGE, Action.READ))],
) -> Response:
    """Requests, cost, errors and latency of the organisation (or the part of it the actor sees)."""
    return render(request, "dashboard/index.html", actor=grant.actor, organisation_id=organisation_id)
