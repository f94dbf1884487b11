"""Routes: the audit log — every configuration change, who made it, from where, before and after.

Organisation admins read their organisation's events; the super admin reads every event
(``/api/admin/audit``, optionally of one organisation). Events are never written or changed
through the API: the recorder (:mod:`odock.audit.recorder`) adds them with each change.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel

from odock.audit.queries import AuditFilter
from odock.audit.tables import AuditEvent
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.web.api.deps import Permit, row_locator
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.services import AuditLogDep

router = APIRouter(tags=["audit"])

ResourceType = Literal[
    "admin_tokens",
    "api_key_mcp_access",
    "api_key_mcp_tool_grants",
    "api_key_model_access",
    "api_keys",
    "auth_sessions",
    "budgets",
    "external_identities",
    "invitations",
    "mcp_servers",
    "mcp_stdio_commands",
    "models",
    "organisations",
    "provider_api_keys",
    "providers",
    "quotas",
    "team_members",
    "teams",
    "users",
]
"""The audited tables (``odock.audit.recorder.CONFIGURATION_TABLES``; a unit test keeps them equal)."""

AUDITED_TABLES = frozenset(get_args(ResourceType))
AuditAction = Literal["create", "update", "delete", "login", "logout"]

_locate = row_locator(AuditEvent, "event_id", lambda event: Target(event.organisation_id))


class AuditActorOut(BaseModel):
    """Who made a change: a user (by session or admin token), the CLI, the config file or the system."""

    kind: str
    label: str
    user_id: str | None


class AuditEventOut(BaseModel):
    """One recorded change of one row; secrets in ``before``/``after`` are masked as ``***``."""

    id: str
    at: datetime
    actor: AuditActorOut
    ip: str | None
    request_id: str | None
    organisation_id: str | None
    action: str
    resource_type: str
    resource_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def audit_filter(
    actor: Annotated[
        str | None,
        Query(min_length=1, max_length=320, description="acting user id or actor label"),
    ] = None,
    resource_type: Annotated[ResourceType | None, Query(description="the changed table")] = None,
    resource_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    action: Annotated[AuditAction | None, Query()] = None,
    since: Annotated[AwareDatetime | None, Query(alias="from", description="inclusive, ISO 8601")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to", description="exclusive, ISO 8601")] = None,
) -> AuditFilter:
    """The filters of an audit list (use with ``Depends``)."""
    return AuditFilter(
        actor=actor,
        resource_type=resource_type,
        resource_id=resource_id,
        action=action,
        since=since,
        until=until,
    )


Filters = Annotated[AuditFilter, Depends(audit_filter)]
Paging = Annotated[PageParams, Depends(page_params)]


def render(event: AuditEvent) -> AuditEventOut:
    """The API shape of an audit event."""
    return AuditEventOut(
        id=event.id,
        at=event.at,
        actor=AuditActorOut(kind=event.actor_kind, label=event.actor, user_id=event.actor_user_id),
        ip=event.ip,
        request_id=event.request_id,
        organisation_id=event.organisation_id,
        action=event.action,
        resource_type=event.resource_type,
        resource_id=event.resource_id,
        before=event.before,
        after=event.after,
    )


async def _page(log: AuditLogDep, wanted: AuditFilter, paging: PageParams) -> Page[AuditEventOut]:
    rows = await log.page(wanted, partial(keyset, params=paging))
    return make_page(rows, paging, render, lambda e: (e.at, e.id))


@router.get("/organisations/{organisation_id}/audit", summary="List the organisation's audit events")
async def list_organisation_events(
    organisation_id: str,
    log: AuditLogDep,
    grant: Annotated[Grant, Depends(Permit(Resource.AUDIT, Action.READ))],
    wanted: Filters,
    paging: Paging,
) -> Page[AuditEventOut]:
    """Changes made in one organisation, newest first (filter by actor, resource, action, time)."""
    scoped = dataclasses.replace(wanted, organisation_id=grant.scope().organisation_id)
    return await _page(log, scoped, paging)


@router.get("/organisations/{organisation_id}/audit/{event_id}", summary="Get an audit event")
async def get_organisation_event(
    organisation_id: str,
    event_id: str,
    log: AuditLogDep,
    grant: Annotated[Grant, Depends(Permit(Resource.AUDIT, Action.READ, locate=_locate))],
) -> AuditEventOut:
    """One change of the organisation, with its before and after."""
    return render(await log.event(event_id))


@router.get("/admin/audit", summary="List audit events of every organisation")
async def list_events(
    log: AuditLogDep,
    grant: Annotated[Grant, Depends(Permit(Resource.AUDIT, Action.READ))],
    wanted: Filters,
    paging: Paging,
    organisation_id: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
) -> Page[AuditEventOut]:
    """Every recorded change (optionally of one organisation), newest first."""
    scoped = dataclasses.replace(wanted, organisation_id=organisation_id)
    return await _page(log, scoped, paging)


@router.get("/admin/audit/{event_id}", summary="Get any audit event")
async def get_event(
    event_id: str,
    log: AuditLogDep,
    grant: Annotated[Grant, Depends(Permit(Resource.AUDIT, Action.READ, locate=_locate))],
) -> AuditEventOut:
    """One change, of any organisation or of none (sign-ins of the super admin, system changes)."""
    return render(await log.event(event_id))
