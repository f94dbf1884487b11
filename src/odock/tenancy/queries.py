"""Reading tenancy for the control plane: pages of organisations, teams, members and users.

Each list applies its filters and the caller's reach, then hands the query to a :data:`Seek`
(the page the caller asked for: sort, cursor, limit). Users come with their team memberships,
loaded for the whole page in one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.db.search import matches
from odock.db.seek import Seek
from odock.errors import NotFound
from odock.identity.directory import Membership, memberships
from odock.rbac.grant import ListScope
from odock.tenancy.tables import Organisation, Role, Team, TeamMember, TeamMemberRole, User, UserStatus

SortBy = Literal["created_at", "name"]


@dataclass(frozen=True)
class TeamFilter:
    """Which teams to list; ``None`` leaves a field unfiltered."""

    organisation_id: str | None = None
    team_ids: frozenset[str] | None = None  # the teams the caller may see (from the grant)
    q: str | None = None
    member_id: str | None = None  # only the teams this user belongs to


@dataclass(frozen=True)
class UserFilter:
    """Which users to list; ``None`` leaves a field unfiltered."""

    q: str | None = None  # in e-mail and name
    role: Role | None = None
    status: UserStatus | None = None
    organisation_id: str | None = None
    no_organisation: bool = False  # only users without an organisation (new sign-ups)


@dataclass(frozen=True)
class UserWithTeams:
    """A user and the teams they belong to."""

    user: User
    teams: list[Membership]


class TenancyQueries:
    """The read side of tenancy: keyset pages and the user detail."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def organisations(
        self, seek: Seek, *, q: str | None, status: str | None, sort: SortBy
    ) -> list[Organisation]:
        """Organisations, searched by name and contact, optionally of one status."""
        query = select(Organisation)
        if q:
            query = query.where(matches(q, Organisation.name, Organisation.contact))
        if status:
            query = query.where(Organisation.status == status)
        column = Organisation.name if sort == "name" else Organisation.created_at
        return await self._scalars(seek(query, column, Organisation.id))

    async def teams(self, seek: Seek, wanted: TeamFilter, *, sort: SortBy) -> list[Team]:
        """Teams matching ``wanted``."""
        query = select(Team)
        if wanted.organisation_id is not None:
            query = query.where(Team.organisation_id == wanted.organisation_id)
        if wanted.team_ids is not None:
            query = query.where(Team.id.in_(wanted.team_ids))
        if wanted.q:
            query = query.where(matches(wanted.q, Team.name))
        if wanted.member_id:
            members = select(TeamMember.team_id).where(TeamMember.user_id == wanted.member_id)
            query = query.where(Team.id.in_(members))
        column = Team.name if sort == "name" else Team.created_at
        return await self._scalars(seek(query, column, Team.id))

    async def members(
        self, team_id: str, seek: Seek, *, q: str | None, role: TeamMemberRole | None
    ) -> list[tuple[TeamMember, User]]:
        """A team's memberships with their users, searched by e-mail and name."""
        query: Select[*tuple[Any, ...]] = (
            select(TeamMember, User)
            .join(User, User.id == TeamMember.user_id)
            .where(TeamMember.team_id == team_id)
        )
        if q:
            query = query.where(matches(q, User.email, User.name))
        if role:
            query = query.where(TeamMember.role == role)
        async with self._sessions() as session:
            statement = seek(query, TeamMember.created_at, TeamMember.user_id)
            rows: list[tuple[TeamMember, User]] = [(m, u) for m, u in await session.execute(statement)]
        return rows

    async def users(
        self, seek: Seek, wanted: UserFilter, scope: ListScope | None = None
    ) -> list[UserWithTeams]:
        """Users matching ``wanted`` (within ``scope``: an organisation, or one user), with their teams."""
        query = _user_query(wanted, scope)
        async with self._sessions() as session:
            rows = list((await session.execute(seek(query, User.created_at, User.id))).scalars())
            teams = await memberships(session, [r.id for r in rows])
        return [UserWithTeams(r, teams[r.id]) for r in rows]

    async def user(self, user_id: str) -> UserWithTeams:
        """One user with their teams (404 when absent)."""
        async with self._sessions() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("user not found")
            teams = await memberships(session, [user.id])
        return UserWithTeams(user, teams[user.id])

    async def teams_of(self, user: User) -> UserWithTeams:
        """``user`` (already loaded) with their teams."""
        async with self._sessions() as session:
            teams = await memberships(session, [user.id])
        return UserWithTeams(user, teams[user.id])

    async def _scalars(self, query: Select[Any]) -> list[Any]:
        async with self._sessions() as session:
            return list((await session.execute(query)).scalars())


def _user_query(wanted: UserFilter, scope: ListScope | None) -> Select[Any]:
    query = select(User)
    if scope is not None:
        query = query.where(User.organisation_id == scope.organisation_id)
        if scope.user_id is not None:
            query = query.where(User.id == scope.user_id)
    if wanted.organisation_id is not None:
        query = query.where(User.organisation_id == wanted.organisation_id)
    if wanted.no_organisation:
        query = query.where(User.organisation_id.is_(None))
    if wanted.q:
        # e-mails are stored lower-cased; names are not
        pattern = f"%{wanted.q.lower()}%"
        query = query.where(or_(User.email.like(pattern), User.name.ilike(pattern)))
    if wanted.role is not None:
        query = query.where(User.role == wanted.role)
    if wanted.status is not None:
        query = query.where(User.status == wanted.status)
    return query
