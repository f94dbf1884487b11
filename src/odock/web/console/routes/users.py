"""Pages: the organisation's users (table, approve/decline), enrollment (invitations) and a user's detail.

Each view declares the ``Permit`` of the API route it mirrors, calls that route's function and
renders the answer; every change is posted by the browser to the REST API. A USER has no Users
page: the navigation hides it and :func:`~odock.web.console.routes.reuse.nav_guard` refuses it.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from odock.budgets.tables import OwnerType
from odock.identity.invitations import INVITABLE_ROLES
from odock.identity.tables import InvitationStatus
from odock.rbac.grant import Actor, Grant, Target
from odock.rbac.permissions import Action, Reach, Resource, reach_of
from odock.tenancy.queries import SortBy
from odock.tenancy.tables import Role, TeamMemberRole, UserStatus
from odock.web.api.deps import Permit
from odock.web.api.paging import PageParams, page_params
from odock.web.api.routes.invitations import list_invitations
from odock.web.api.routes.teams import list_teams
from odock.web.api.routes.users import ReadUser, UserFilters, get_user, list_users, user_filters
from odock.web.api.services import InvitationsDep, TenancyQueriesDep
from odock.web.console.pages import render
from odock.web.console.routes.reuse import Blank, TextQuery, may, nav_guard, owner_activity

router = APIRouter(include_in_schema=False)

Shown = Depends(nav_guard("/users"))
ROLES = [(role.value, role.value.replace("_", " ").title()) for role in Role if role in INVITABLE_ROLES]
STATUSES = [(status.value, status.value.title()) for status in UserStatus]


def _manages_users(actor: Actor) -> bool:
    """Whether the actor changes roles and statuses (organisation reach on USER update)."""
    return reach_of(actor.role, Resource.USER, Action.UPDATE) >= Reach.ORG


def page_user_filters(
    q: TextQuery = None,
    role: Annotated[Role | Blank | None, Query()] = None,
    status: Annotated[UserStatus | Blank | None, Query()] = None,
) -> UserFilters:
    """The API's user filters from the page's search form (empty fields: not filtered)."""
    return user_filters(q=q or None, role=role or None, status=status or None)


def _query(**values: str | None) -> str:
    return urlencode({k: v for k, v in values.items() if v})


@router.get("/o/{organisation_id}/users", dependencies=[Shown])
async def users(
    request: Request,
    organisation_id: str,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.USER, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    filters: Annotated[UserFilters, Depends(page_user_filters)],
) -> Response:
    """The Users tab: search by name or e-mail, filter by role and status, approve or decline."""
    listed = await list_users(queries, grant, page, filters)
    role = filters.role.value if filters.role else None
    status = filters.status.value if filters.status else None
    return render(
        request,
        "users/index.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        page=listed,
        filters={"q": filters.q or "", "role": role, "status": status},
        query=_query(q=filters.q, role=role, status=status),
        roles=[(r.value, r.value.replace("_", " ").title()) for r in Role],
        statuses=STATUSES,
        manage=_manages_users(grant.actor),
        invite_query=_query(email=filters.q if filters.q and "@" in filters.q else None, role=role),
    )


@router.get("/o/{organisation_id}/users/enrollment", dependencies=[Shown])
async def enrollment(
    request: Request,
    organisation_id: str,
    invitations: InvitationsDep,
    grant: Annotated[Grant, Depends(Permit(Resource.INVITATION, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    status: Annotated[InvitationStatus | Blank | None, Query()] = None,
    q: TextQuery = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    role: Annotated[Role | Blank | None, Query()] = None,
) -> Response:
    """The Enrollment tab: the invite form (prefilled from "Add user") and the invitations."""
    status = status or None
    listed = await list_invitations(invitations, grant, page, status=status, q=q or None)
    return render(
        request,
        "users/enrollment.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        page=listed,
        filters={"q": q or "", "status": status.value if status else None},
        query=_query(q=q, status=status.value if status else None),
        statuses=[(s.value, s.value.title()) for s in InvitationStatus],
        roles=ROLES,
        prefill={
            "email": email or "",
            "role": role.value if isinstance(role, Role) and role in INVITABLE_ROLES else "USER",
        },
    )


@router.get("/o/{organisation_id}/users/{user_id}", dependencies=[Shown])
async def user_detail(
    request: Request,
    organisation_id: str,
    user_id: str,
    queries: TenancyQueriesDep,
    grant: ReadUser,
    teams_grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ))],
    keys_grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ))],
    usage_grant: Annotated[Grant, Depends(Permit(Resource.USAGE, Action.READ))],
    budgets_grant: Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.READ))],
) -> Response:
    """One user: fields, edit, teams, API keys, recent usage, budgets and quotas."""
    actor = grant.actor
    user = await get_user(user_id, queries, grant)
    context: dict[str, Any] = {
        "user": user,
        "manage": _manages_users(actor),
        "roles": [(r.value, r.value.replace("_", " ").title()) for r in _grantable(actor)],
        "member_roles": [(r.value, r.value.title()) for r in TeamMemberRole],
        **await owner_activity(
            request,
            organisation_id,
            OwnerType.USER,
            user_id,
            keys_grant=keys_grant,
            usage_grant=usage_grant,
            budgets_grant=budgets_grant,
        ),
        "removable": {
            t.team_id
            for t in user.teams
            if may(actor, Resource.TEAM, Action.UPDATE, _team(organisation_id, t.team_id))
        },
        "joinable": await _joinable(queries, teams_grant, organisation_id, {t.team_id for t in user.teams}),
    }
    return render(request, "users/detail.html", actor=actor, organisation_id=organisation_id, **context)


def _grantable(actor: Actor) -> list[Role]:
    """The roles offered in the edit form (SUPER_ADMIN only to a super admin; the API decides)."""
    return [r for r in Role if r is not Role.SUPER_ADMIN or actor.is_super_admin]


def _team(organisation_id: str, team_id: str) -> Target:
    return Target(organisation_id, team_id=team_id)


async def _joinable(
    queries: TenancyQueriesDep, grant: Grant, organisation_id: str, joined: set[str]
) -> list[tuple[str, str]]:
    """Teams (a first page, by name) the actor may add members to, the user is not in yet."""
    sort: SortBy = "name"
    listed = await list_teams(
        organisation_id, queries, grant, PageParams(limit=200, order="asc"), q=None, user_id=None, sort=sort
    )
    return [
        (t.id, t.name)
        for t in listed.items
        if t.id not in joined and may(grant.actor, Resource.TEAM, Action.UPDATE, _team(organisation_id, t.id))
    ]
