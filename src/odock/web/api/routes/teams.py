"""Routes: teams and their members.

Organisation admins manage every team; a team's MANAGER renames it and manages its members;
everyone reads the teams they may see (users: their own). Removing a member does not revoke
their keys; deleting a team is refused while it still owns API keys, budgets or quotas.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict

from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.tenancy.queries import SortBy, TeamFilter
from odock.tenancy.tables import Team, TeamMember, TeamMemberRole, User
from odock.web.api.deps import Permit, row_locator
from odock.web.api.fields import IdQuery, Name, RowId
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.search import SearchQuery
from odock.web.api.services import TenancyDep, TenancyQueriesDep

router = APIRouter(tags=["teams"])

_locate = row_locator(Team, "team_id", lambda team: Target(team.organisation_id, team_id=team.id))
Sort = Annotated[SortBy, Query()]


class TeamOut(BaseModel):
    """A team."""

    id: str
    organisation_id: str
    name: str
    created_at: datetime
    updated_at: datetime


class TeamCreate(BaseModel):
    """A new team."""

    model_config = ConfigDict(extra="forbid")

    name: Name


class TeamUpdate(BaseModel):
    """A team's new name."""

    model_config = ConfigDict(extra="forbid")

    name: Name


class MemberOut(BaseModel):
    """A user's membership of a team."""

    team_id: str
    user_id: str
    email: str
    name: str | None
    role: TeamMemberRole
    created_at: datetime


class MemberAdd(BaseModel):
    """A user of the organisation to add to the team."""

    model_config = ConfigDict(extra="forbid")

    user_id: RowId
    role: TeamMemberRole = TeamMemberRole.MEMBER


class MemberUpdate(BaseModel):
    """A member's new role in the team."""

    model_config = ConfigDict(extra="forbid")

    role: TeamMemberRole


def render(team: Team) -> TeamOut:
    """The API view of a team."""
    return TeamOut(
        id=team.id,
        organisation_id=team.organisation_id,
        name=team.name,
        created_at=team.created_at,
        updated_at=team.updated_at,
    )


def render_member(member: TeamMember, user: User) -> MemberOut:
    """The API view of a membership."""
    return MemberOut(
        team_id=member.team_id,
        user_id=member.user_id,
        email=user.email,
        name=user.name,
        role=member.role,
        created_at=member.created_at,
    )


async def _team_page(
    queries: TenancyQueriesDep, wanted: TeamFilter, page: PageParams, sort: SortBy
) -> Page[TeamOut]:
    rows = await queries.teams(partial(keyset, params=page), wanted, sort=sort)
    return make_page(rows, page, render, lambda t: (getattr(t, sort), t.id))


@router.get("/admin/teams", response_model=Page[TeamOut])
async def list_all_teams(
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    organisation_id: IdQuery = None,
    user_id: IdQuery = None,
    sort: Sort = "created_at",
) -> Page[TeamOut]:
    """Teams of every organisation (super admin)."""
    wanted = TeamFilter(organisation_id=organisation_id or None, q=q, member_id=user_id)
    return await _team_page(queries, wanted, page, sort)


@router.get("/organisations/{organisation_id}/teams", response_model=Page[TeamOut])
async def list_teams(
    organisation_id: str,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    user_id: IdQuery = None,
    sort: Sort = "created_at",
) -> Page[TeamOut]:
    """The organisation's teams the caller may see (a user: the teams they belong to)."""
    scope = grant.scope()
    wanted = TeamFilter(
        organisation_id=scope.organisation_id, team_ids=scope.team_ids, q=q, member_id=user_id
    )
    return await _team_page(queries, wanted, page, sort)


@router.post("/organisations/{organisation_id}/teams", status_code=201, response_model=TeamOut)
async def create_team(
    organisation_id: str,
    body: TeamCreate,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.CREATE))],
) -> TeamOut:
    """Create a team."""
    grant.check(Target(organisation_id))
    return render(await tenancy.create_team(organisation_id, body.name))


@router.get("/organisations/{organisation_id}/teams/{team_id}", response_model=TeamOut)
async def get_team(
    team_id: str,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ, locate=_locate))],
) -> TeamOut:
    """One team."""
    return render(await tenancy.team(team_id))


@router.patch("/organisations/{organisation_id}/teams/{team_id}", response_model=TeamOut)
async def update_team(
    team_id: str,
    body: TeamUpdate,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.UPDATE, locate=_locate))],
) -> TeamOut:
    """Rename a team (its organisation admins and its managers)."""
    return render(await tenancy.update_team(team_id, name=body.name))


@router.delete("/organisations/{organisation_id}/teams/{team_id}", status_code=204, response_class=Response)
async def delete_team(
    team_id: str,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.DELETE, locate=_locate))],
) -> Response:
    """Delete a team that owns no API keys, budgets or quotas (409 otherwise)."""
    await tenancy.delete_team(team_id)
    return Response(status_code=204)


@router.get("/organisations/{organisation_id}/teams/{team_id}/members", response_model=Page[MemberOut])
async def list_members(
    team_id: str,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ, locate=_locate))],
    page: Annotated[PageParams, Depends(page_params)],
    q: Annotated[
        str | None, Query(min_length=1, max_length=200, description="search e-mail and name")
    ] = None,
    role: Annotated[TeamMemberRole | None, Query()] = None,
) -> Page[MemberOut]:
    """A team's members, newest first by default."""
    rows = await queries.members(team_id, partial(keyset, params=page), q=q, role=role)
    return make_page(rows, page, lambda r: render_member(*r), lambda r: (r[0].created_at, r[0].user_id))


@router.post(
    "/organisations/{organisation_id}/teams/{team_id}/members", status_code=201, response_model=MemberOut
)
async def add_member(
    team_id: str,
    body: MemberAdd,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.UPDATE, locate=_locate))],
) -> MemberOut:
    """Add a user of the organisation to the team (409 when already a member)."""
    return render_member(*await tenancy.add_member(team_id, body.user_id, body.role))


@router.get("/organisations/{organisation_id}/teams/{team_id}/members/{user_id}", response_model=MemberOut)
async def get_member(
    team_id: str,
    user_id: str,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ, locate=_locate))],
) -> MemberOut:
    """One membership."""
    return render_member(*await tenancy.member(team_id, user_id))


@router.patch("/organisations/{organisation_id}/teams/{team_id}/members/{user_id}", response_model=MemberOut)
async def update_member(
    team_id: str,
    user_id: str,
    body: MemberUpdate,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.UPDATE, locate=_locate))],
) -> MemberOut:
    """Make a member a MANAGER or a MEMBER of the team."""
    return render_member(*await tenancy.set_member_role(team_id, user_id, body.role))


@router.delete(
    "/organisations/{organisation_id}/teams/{team_id}/members/{user_id}",
    status_code=204,
    response_class=Response,
)
async def remove_member(
    team_id: str,
    user_id: str,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.UPDATE, locate=_locate))],
) -> Response:
    """Take a user out of the team; the user's API keys keep working."""
    await tenancy.remove_member(team_id, user_id)
    return Response(status_code=204)
