"""Pages: the organisation's teams and a team's detail (members, policies, API keys, budgets).

An organisation admin manages every team; a team's MANAGER renames it, manages its members and
its policies; other managers read. A USER has no Teams page (the navigation's rule, applied by
:func:`~odock.web.console.routes.reuse.nav_guard`). Changes go through the REST API.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from odock.budgets.tables import OwnerType
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.tenancy.tables import TeamMemberRole, UserStatus
from odock.web.api.deps import Permit
from odock.web.api.paging import PageParams, page_params
from odock.web.api.routes import policies
from odock.web.api.routes.teams import get_team, list_members, list_teams
from odock.web.api.routes.users import list_users, user_filters
from odock.web.api.services import (
    TenancyDep,
    TenancyQueriesDep,
    envelopes_of,
)
from odock.web.console.pages import render
from odock.web.console.routes.reuse import TextQuery, api_route, may, nav_guard, owner_activity

router = APIRouter(include_in_schema=False)

Shown = Depends(nav_guard("/teams"))
MEMBER_ROLES = [(TeamMemberRole.MEMBER.value, "Team member"), (TeamMemberRole.MANAGER.value, "Team manager")]


@router.get("/o/{organisation_id}/teams", dependencies=[Shown])
async def teams(
    request: Request,
    organisation_id: str,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: TextQuery = None,
) -> Response:
    """The teams: search by name, cursor paging, and the "New team" form for organisation admins."""
    listed = await list_teams(
        organisation_id, queries, grant, page, q=q or None, user_id=None, sort="created_at"
    )
    return render(
        request,
        "teams/index.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        page=listed,
        q=q or "",
        managed=grant.actor.managed_team_ids,
    )


@router.get("/o/{organisation_id}/teams/{team_id}", dependencies=[Shown])
async def team_detail(
    request: Request,
    organisation_id: str,
    team_id: str,
    tenancy: TenancyDep,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ, locate=policies.locate_team))],
    users_grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.READ))],
    keys_grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ))],
    budgets_grant: Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.READ))],
    usage_grant: Annotated[Grant, Depends(Permit(Resource.USAGE, Action.READ))],
    members_page: Annotated[PageParams, Depends(page_params)],
) -> Response:
    """One team: rename, delete, members, the policies card, its API keys, usage, budgets and quotas."""
    actor = grant.actor
    team = await get_team(team_id, tenancy, grant)
    here = Target(organisation_id, team_id=team_id)
    manage = may(actor, Resource.TEAM, Action.UPDATE, here)
    members = await list_members(team_id, queries, grant, members_page, q=None, role=None)
    context: dict[str, Any] = {
        "team": team,
        "members": members,
        "manage": manage,
        "deletable": may(actor, Resource.TEAM, Action.DELETE, here),
        "new_key": may(actor, Resource.API_KEY, Action.CREATE, here),
        "member_roles": MEMBER_ROLES,
        "policy": await api_route(policies.router, "get_team_policy")(
            team_id=team_id, envelopes=envelopes_of(request), grant=grant
        ),
        **await owner_activity(
            request,
            organisation_id,
            OwnerType.TEAM,
            team_id,
            keys_grant=keys_grant,
            usage_grant=usage_grant,
            budgets_grant=budgets_grant,
        ),
        "candidates": await _candidates(queries, users_grant, {m.user_id for m in members.items})
        if manage
        else [],
    }
    return render(request, "teams/detail.html", actor=actor, organisation_id=organisation_id, **context)


async def _candidates(queries: TenancyQueriesDep, grant: Grant, members: set[str]) -> list[tuple[str, str]]:
    """Users who could join (a first page of the organisation's active users, not yet members)."""
    listed = await list_users(
        queries, grant, PageParams(limit=200), user_filters(q=None, role=None, status=UserStatus.ACTIVE)
    )
    return [(u.id, _label(u.name, u.email)) for u in listed.items if u.id not in members]


def _label(name: str | None, email: str) -> str:
    return f"{name} <{email}>" if name else email
