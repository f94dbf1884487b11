"""Page: the organisation's audit log — who changed what, when, from where (filters, cursor paging)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from odock.audit.queries import AuditFilter
from odock.errors import UnprocessableEntity
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit
from odock.web.api.paging import PageParams, page_params
from odock.web.api.routes.audit import AuditAction, ResourceType, audit_filter, list_organisation_events
from odock.web.api.services import AuditLogDep
from odock.web.console.pages import render
from odock.web.console.spend import query_without

router = APIRouter(include_in_schema=False)

ACTIONS = [("", "Any"), *((a, a) for a in get_args(AuditAction))]
RESOURCES = [("", "Any"), *((r, r.replace("_", " ")) for r in get_args(ResourceType))]


def _day(value: str | None, name: str, after: int = 0) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise UnprocessableEntity("enter a date (YYYY-MM-DD)", param=name) from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=after)


@router.get("/o/{organisation_id}/audit")
async def audit_log(
    request: Request,
    organisation_id: str,
    log: AuditLogDep,
    grant: Annotated[Grant, Depends(Permit(Resource.AUDIT, Action.READ))],
    paging: Annotated[PageParams, Depends(page_params)],
    actor: Annotated[str | None, Query(max_length=320)] = None,
    action: Annotated[AuditAction | None, Query()] = None,
    resource_type: Annotated[ResourceType | None, Query()] = None,
    resource_id: Annotated[str | None, Query(max_length=200)] = None,
    first: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=40)] = None,
) -> Response:
    """Changes made in the organisation, newest first; the days are UTC, both inclusive."""
    values = {"actor": actor or "", "action": action or "", "resource_type": resource_type or "",
              "resource_id": resource_id or "", "from": first or "", "to": last or ""}  # fmt: skip
    context: dict[str, Any] = {
        "filters": values,
        "actions": ACTIONS,
        "resources": RESOURCES,
        "page": None,
        "error": None,
    }
    try:
        wanted: AuditFilter = audit_filter(
            actor or None,
            resource_type,
            resource_id or None,
            action,
            _day(first, "from"),
            _day(last, "to", 1),
        )
    except UnprocessableEntity as error:
        context["error"] = error
        return render(request, "audit/log.html", actor=grant.actor, organisation_id=organisation_id,
                      status_code=422, **context)  # fmt: skip
    context["page"] = await list_organisation_events(organisation_id, log, grant, wanted, paging)
    filtered = any(values.values())
    return render(
        request, "audit/log.html", actor=grant.actor, organisation_id=organisation_id,
        query=query_without(request.query_params), filtered=filtered, **context,
    )  # fmt: skip
