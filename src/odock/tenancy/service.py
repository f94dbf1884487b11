"""Organisations, teams and team members: their rules, their writes and the lookups callers need.

The CLI, the declarative apply, demo seeding and the control-plane API all change tenancy here.
Each change commits first and then publishes the ``organisation`` invalidation when the
gateway's caches hold what changed (an organisation's policies, status, routing switch or
``strict_provider_family``, a team's policies, a deleted organisation or team), so every replica
sees it at once.

The routing switch lives in ``organisation.policies["routing"]["enabled"]`` (spec §3.2, §9.1),
next to the governance envelope (``ip``, ``ratelimit``, …), which a switch change leaves as it is.
An organisation is deleted in two steps: set its status to ``DISABLED``, then delete it; the
delete removes everything the organisation owns (teams, providers, models, keys, budgets).
Deleting a team is refused (409) while the team still owns API keys, budgets or quotas: those
are revoked, moved or deleted first, on purpose, so no key disappears as a side effect. Removing
a member never touches API keys (spec §11.4: the member's own keys keep working).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from odock.budgets.tables import Budget, Quota
from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.rows import commit_or_conflict, get_row
from odock.errors import Conflict, NotFound, UnprocessableEntity
from odock.ids import new_id
from odock.keys.tables import ApiKey
from odock.rules import only_fields, valid_name, validate_policies
from odock.tenancy.tables import Organisation, Team, TeamMember, TeamMemberRole, User

OrganisationStatus = Literal["ACTIVE", "DISABLED"]
_STATUSES = frozenset(get_args(OrganisationStatus))
_ORGANISATION_FIELDS = {"name", "contact", "status", "policies", "strict_provider_family"}
_TEAM_FIELDS = {"name", "policies"}
_Row = TypeVar("_Row")


def routing_enabled(organisation: Organisation) -> bool:
    """Whether the organisation's routing switch is on (off when never set)."""
    routing = (organisation.policies or {}).get("routing")
    return isinstance(routing, dict) and routing.get("enabled") is True


class TenancyService:
    """Organisations, teams and memberships: create, look up, change and delete."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: InvalidationBus) -> None:
        self._sessions = sessions
        self._bus = bus

    # --- organisations -----------------------------------------------------------------------
    async def create_organisation(
        self,
        name: str,
        *,
        contact: str | None = None,
        policies: dict[str, Any] | None = None,
        strict_provider_family: bool = False,
    ) -> Organisation:
        """Create an organisation (409 when the name is taken)."""
        org = Organisation(
            id=new_id(),
            name=valid_name(name),
            contact=contact,
            policies=validate_policies(policies),
            strict_provider_family=_valid_strict_flag(strict_provider_family),
        )
        async with self._sessions() as session:
            session.add(org)
            await commit_or_conflict(session, f"organisation '{name}' already exists")
        return org

    async def organisation(self, organisation_id: str) -> Organisation:
        """One organisation by id (404 when absent)."""
        async with self._sessions() as session:
            return await get_row(session, Organisation, organisation_id)

    async def organisation_by_name(self, name: str) -> Organisation:
        """Find an organisation by name (404 when absent)."""
        query = select(Organisation).where(Organisation.name == name)
        return await self._one(query, f"organisation '{name}' does not exist")

    async def list_organisations(self) -> list[Organisation]:
        """Every organisation, by name."""
        return await self._all(select(Organisation).order_by(Organisation.name))

    async def update_organisation(self, organisation_id: str, **changes: Any) -> Organisation:
        """Change an organisation's name, contact (``None`` clears it), status, policies or strictness."""
        only_fields(changes, _ORGANISATION_FIELDS, "organisation")
        if "name" in changes:
            changes["name"] = valid_name(changes["name"])
        if "status" in changes and changes["status"] not in _STATUSES:
            raise UnprocessableEntity("status must be ACTIVE or DISABLED", param="status")
        if "policies" in changes:
            changes["policies"] = validate_policies(changes["policies"])
        if "strict_provider_family" in changes:
            _valid_strict_flag(changes["strict_provider_family"])
        async with self._sessions() as session:
            org = await get_row(session, Organisation, organisation_id)
            for field, value in changes.items():
                setattr(org, field, value)
            await commit_or_conflict(session, f"organisation '{changes.get('name')}' already exists")
        await self._organisation_changed(organisation_id)
        return org

    async def set_routing(self, organisation_id: str, enabled: bool) -> Organisation:
        """Switch routing on or off, keeping the rest of the organisation's policies."""
        async with self._sessions() as session:
            org = await get_row(session, Organisation, organisation_id)
            policies: dict[str, Any] = dict(org.policies or {})
            current = policies.get("routing")
            routing = dict(current) if isinstance(current, dict) else {}
            routing["enabled"] = enabled
            policies["routing"] = routing
            org.policies = policies  # a new dict: JSON columns track assignment, not mutation
            await session.commit()
        await self._organisation_changed(organisation_id)
        return org

    async def delete_organisation(self, organisation_id: str) -> None:
        """Delete a DISABLED organisation and everything it owns (409 while it is ACTIVE)."""
        async with self._sessions() as session:
            org = await get_row(session, Organisation, organisation_id)
            if org.status != "DISABLED":
                raise Conflict("disable the organisation (status DISABLED) before deleting it")
            await session.delete(org)
            await session.commit()
        await self._organisation_changed(organisation_id)

    # --- teams -------------------------------------------------------------------------------
    async def create_team(
        self, organisation_id: str, name: str, *, policies: dict[str, Any] | None = None
    ) -> Team:
        """Create a team in an organisation (409 when the name is taken there)."""
        stored = validate_policies(policies)
        team = Team(id=new_id(), organisation_id=organisation_id, name=valid_name(name), policies=stored)
        async with self._sessions() as session:
            await get_row(session, Organisation, organisation_id)
            session.add(team)
            await commit_or_conflict(session, f"team '{name}' already exists")
        return team

    async def team(self, team_id: str) -> Team:
        """One team by id (404 when absent)."""
        async with self._sessions() as session:
            return await get_row(session, Team, team_id)

    async def team_by_name(self, organisation_id: str, name: str) -> Team:
        """Find a team of an organisation by name (404 when absent)."""
        query = select(Team).where(Team.organisation_id == organisation_id, Team.name == name)
        return await self._one(query, f"team '{name}' does not exist")

    async def list_teams(self, organisation_id: str) -> list[Team]:
        """The teams of an organisation, by name."""
        return await self._all(
            select(Team).where(Team.organisation_id == organisation_id).order_by(Team.name)
        )

    async def update_team(self, team_id: str, **changes: Any) -> Team:
        """Rename a team or replace its policies (keys of the team see new policies at once)."""
        only_fields(changes, _TEAM_FIELDS, "team")
        if "name" in changes:
            changes["name"] = valid_name(changes["name"])
        if "policies" in changes:
            changes["policies"] = validate_policies(changes["policies"])
        async with self._sessions() as session:
            team = await get_row(session, Team, team_id)
            for field, value in changes.items():
                setattr(team, field, value)
            await commit_or_conflict(session, f"team '{changes.get('name')}' already exists")
        if "policies" in changes:  # a name is not on the hot path: only policies reach the caches
            await self._organisation_changed(team.organisation_id)
        return team

    async def delete_team(self, team_id: str) -> None:
        """Delete a team that owns no API keys, budgets or quotas, with its memberships."""
        async with self._sessions() as session:
            team = await get_row(session, Team, team_id)
            owned = {
                "API keys": await _count(session, ApiKey.team_id, team_id),
                "budgets": await _count(session, Budget.team_id, team_id),
                "quotas": await _count(session, Quota.team_id, team_id),
            }
            held = [f"{n} {what}" for what, n in owned.items() if n]
            if held:
                raise Conflict(f"the team still owns {', '.join(held)}: delete or move them first")
            members = await session.execute(select(TeamMember).where(TeamMember.team_id == team_id))
            for member in members.scalars():
                await session.delete(member)
            await session.flush()
            await session.delete(team)
            await session.commit()
        await self._organisation_changed(team.organisation_id)

    # --- members -----------------------------------------------------------------------------
    async def member(self, team_id: str, user_id: str) -> tuple[TeamMember, User]:
        """One membership with its user (404 when the user is not in the team)."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(TeamMember, User)
                    .join(User, User.id == TeamMember.user_id)
                    .where(TeamMember.team_id == team_id, TeamMember.user_id == user_id)
                )
            ).one_or_none()
        if row is None:
            raise _not_member(user_id)
        return row[0], row[1]

    async def add_member(self, team_id: str, user_id: str, role: TeamMemberRole) -> tuple[TeamMember, User]:
        """Add a user of the team's organisation to the team (409 when already a member)."""
        async with self._sessions() as session:
            team = await get_row(session, Team, team_id)
            user = await session.get(User, user_id)
            # Same answer for an unknown user and one of another organisation: nothing leaks.
            if user is None or user.organisation_id != team.organisation_id:
                raise UnprocessableEntity("no such user in this organisation", param="user_id")
            member = TeamMember(team_id=team_id, user_id=user_id, role=role)
            session.add(member)
            await commit_or_conflict(session, "the user is already a member of this team")
        return member, user

    async def set_member_role(
        self, team_id: str, user_id: str, role: TeamMemberRole
    ) -> tuple[TeamMember, User]:
        """Make a member a MANAGER or MEMBER of the team."""
        async with self._sessions() as session:
            member = await session.get(TeamMember, (team_id, user_id))
            if member is None:
                raise _not_member(user_id)
            member.role = role
            await session.commit()
            user = await get_row(session, User, user_id)
        return member, user

    async def remove_member(self, team_id: str, user_id: str) -> None:
        """Take a user out of a team (their API keys are not touched)."""
        async with self._sessions() as session:
            member = await session.get(TeamMember, (team_id, user_id))
            if member is None:
                raise _not_member(user_id)
            await session.delete(member)
            await session.commit()

    # --- helpers -----------------------------------------------------------------------------
    async def _organisation_changed(self, organisation_id: str) -> None:
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))

    async def _one(self, query: Select[_Row], missing: str) -> _Row:
        async with self._sessions() as session:
            row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound(missing)
        return row

    async def _all(self, query: Select[_Row]) -> list[_Row]:
        async with self._sessions() as session:
            return list((await session.execute(query)).scalars())


def _valid_strict_flag(value: object) -> bool:
    """``strict_provider_family`` as given, when it is a boolean (422 otherwise)."""
    if not isinstance(value, bool):
        field = "strict_provider_family"
        raise UnprocessableEntity(f"{field} must be true or false", param=field)
    return value


def _not_member(user_id: str) -> NotFound:
    return NotFound(f"user '{user_id}' is not a member of this team")


async def _count(session: AsyncSession, column: InstrumentedAttribute[str | None], value: str) -> int:
    return int((await session.execute(select(func.count()).where(column == value))).scalar_one())
