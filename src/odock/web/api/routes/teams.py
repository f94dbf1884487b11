"""Routes: teams and their members.

Organisation admins manage every team; a team's MANAGER renames it and manages its members;
everyone reads the teams they may see (users: their own). Removing a member does not revoke
their keys; deleting a team is refused while it still owns API keys, budgets or quotas.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, select

from odock.rbac.grant import Grant, ListScope, Target
from odock.rbac.permissions import Action, Resource
from odock.runtime import Runtime
from odock.tenancy.tables import Team, TeamMember, TeamMemberRole, User
from odock.web.api.deps import Permit, RuntimeDep, row_locator
from odock.web.api.fields import IdQuery, Name, RowId
from odock.web.api.paging import Page, PageParams, keyset, make_page, page_params
from odock.web.api.search import SearchQuery, matches

router = APIRouter(tags=["teams"])

_locate = row_locator(Team, "team_id", lambda team: Target(team.organisation_id, team_id=team.id))
Sort = Annotated[Literal["created_at", "name"], Query()]


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


def _scoped(query: Select[Team], scope: ListScope) -> Select[Team]:
    if scope.organisation_id is not None:
        query = query.where(Team.organisation_id == scope.organisation_id)
    if scope.team_ids is not None:
        query = query.where(Team.id.in_(scope.team_ids))
    return query


async def _team_page(
    runtime: Runtime,
    query: Select[Team],
    page: PageParams,
    sort: str,
    *,
    q: str | None,
    user_id: str | None,
) -> Page[TeamOut]:
    if q:
        query = query.where(matches(q, Team.name))
    if user_id:
        query = query.where(Team.id.in_(select(TeamMember.team_id).where(TeamMember.user_id == user_id)))
    column = Team.name if sort == "name" else Team.created_at
    async with runtime.sessions() as session:
        rows = list((await session.execute(keyset(query, column, Team.id, page))).scalars())
    return make_page(rows, page, render, lambda t: (getattr(t, sort), t.id))


@router.get("/admin/teams", response_model=Page[TeamOut])
async def list_all_teams(
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    organisation_id: IdQuery = None,
    user_id: IdQuery = None,
    sort: Sort = "created_at",
) -> Page[TeamOut]:
    """Teams of every organisation (super admin)."""
    query = select(Team)
    if organisation_id:
        query = query.where(Team.organisation_id == organisation_id)
    return await _team_page(runtime, query, page, sort, q=q, user_id=user_id)


@router.get("/organisations/{organisation_id}/teams", response_model=Page[TeamOut])
async def list_teams(
    organisation_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ))],
    page: Annotated[PageParams, Depends(page_params)],
    q: SearchQuery = None,
    user_id: IdQuery = None,
    sort: Sort = "created_at",
) -> Page[TeamOut]:
    """The organisation's teams the caller may see (a user: the teams they belong to)."""
    query = _scoped(select(Team), grant.scope())
    return await _team_page(runtime, query, page, sort, q=q, user_id=user_id)


@router.post("/organisations/{organisation_id}/teams", status_code=201, response_model=TeamOut)
async def create_team(
    organisation_id: str,
    body: TeamCreate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.CREATE))],
) -> TeamOut:
    """Create a team."""
    grant.check(Target(organisation_id))
    return render(await runtime.control.create_team(organisation_id, body.name))


@router.get("/organisations/{organisation_id}/teams/{team_id}", response_model=TeamOut)
async def get_team(
    team_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ, locate=_locate))],
) -> TeamOut:
    """One team."""
    async with runtime.sessions() as session:
        team = await session.get(Team, team_id)
    assert team is not None  # located by Permit
    return render(team)


@router.patch("/organisations/{organisation_id}/teams/{team_id}", response_model=TeamOut)
async def update_team(
    team_id: str,
    body: TeamUpdate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.UPDATE, locate=_locate))],
) -> TeamOut:
    """Rename a team (its organisation admins and its managers)."""
    return render(await runtime.control.teams.rename(team_id, body.name))


@router.delete("/organisations/{organisation_id}/teams/{team_id}", status_code=204, response_class=Response)
async def delete_team(
    team_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.DELETE, locate=_locate))],
) -> Response:
    """Delete a team that owns no API keys, budgets or quotas (409 otherwise)."""
    await runtime.control.teams.delete(team_id)
    return Response(status_code=204)


@router.get("/organisations/{organisation_id}/teams/{team_id}/members", response_model=Page[MemberOut])
async def list_members(
    team_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ, locate=_locate))],
    page: Annotated[PageParams, Depends(page_params)],
    q: Annotated[
        str | None, Query(min_length=1, max_length=200, description="search e-mail and name")
    ] = None,
    role: Annotated[TeamMemberRole | None, Query()] = None,
) -> Page[MemberOut]:
    """A team's members, newest first by default."""
    query: Select[*tuple[Any, ...]] = (
        select(TeamMember, User)
        .join(User, User.id == TeamMember.user_id)
        .where(TeamMember.team_id == team_id)
    )
    if q:
        query = query.where(matches(q, User.email, User.name))
    if role:
        query = query.where(TeamMember.role == role)
    async with runtime.sessions() as session:
        statement = keyset(query, TeamMember.created_at, TeamMember.user_id, page)
        rows: list[tuple[TeamMember, User]] = [(m, u) for m, u in await session.execute(statement)]
    return make_page(rows, page, lambda r: render_member(*r), lambda r: (r[0].created_at, r[0].user_id))


@router.post(
    "/organisations/{organisation_id}/teams/{team_id}/members", status_code=201, response_model=MemberOut
)
async def add_member(
    team_id: str,
    body: MemberAdd,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.UPDATE, locate=_locate))],
) -> MemberOut:
    """Add a user of the organisation to the team (409 when already a member)."""
    return render_member(*await runtime.control.teams.add_member(team_id, body.user_id, body.role))


@router.get("/organisations/{organisation_id}/teams/{team_id}/members/{user_id}", response_model=MemberOut)
async def get_member(
    team_id: str,
    user_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ, locate=_locate))],
) -> MemberOut:
    """One membership."""
    return render_member(*await runtime.control.teams.member(team_id, user_id))


@router.patch("/organisations/{organisation_id}/teams/{team_id}/members/{user_id}", response_model=MemberOut)
async def update_member(
    team_id: str,
    user_id: str,
    body: MemberUpdate,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.UPDATE, locate=_locate))],
) -> MemberOut:
    """Make a member a MANAGER or a MEMBER of the team."""
    return render_member(*await runtime.control.teams.set_member_role(team_id, user_id, body.role))


@router.delete(
    "/organisations/{organisation_id}/teams/{team_id}/members/{user_id}",
    status_code=204,
    response_class=Response,
)
async def remove_member(
    team_id: str,
    user_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.UPDATE, locate=_locate))],
) -> Response:
    """Take a user out of the team; the user's API keys keep working."""
    await runtime.control.teams.remove_member(team_id, user_id)
    return Response(status_code=204)
