"""Teams and their members: rename, delete, add, change role, remove.

Removing a member never touches API keys (spec §11.4: the member's own keys keep working).
Deleting a team is refused (409) while the team still owns API keys, budgets or quotas: those
are revoked, moved or deleted first, on purpose, so no key disappears as a side effect. Its
memberships go with it.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from odock.admin.rows import commit_or_conflict, get_row
from odock.admin.rules import valid_name
from odock.budgets.tables import Budget, Quota
from odock.cache.bus import Invalidation, InvalidationBus
from odock.errors import Conflict, NotFound, UnprocessableEntity
from odock.keys.tables import ApiKey
from odock.tenancy.tables import Team, TeamMember, TeamMemberRole, User


class TeamAdmin:
    """Changes to teams and memberships."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: InvalidationBus) -> None:
        self._sessions = sessions
        self._bus = bus

    async def rename(self, team_id: str, name: str) -> Team:
        """Give a team a new name (unique in its organisation)."""
        async with self._sessions() as session:
            team = await get_row(session, Team, team_id)
            team.name = valid_name(name)
            await commit_or_conflict(session, f"team '{name}' already exists")
        return team

    async def delete(self, team_id: str) -> None:
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
        await self._bus.publish(Invalidation("organisation", organisation_id=team.organisation_id))

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
            raise NotFound(f"user '{user_id}' is not a member of this team")
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
                raise NotFound(f"user '{user_id}' is not a member of this team")
            member.role = role
            await session.commit()
            user = await get_row(session, User, user_id)
        return member, user

    async def remove_member(self, team_id: str, user_id: str) -> None:
        """Take a user out of a team (their API keys are not touched)."""
        async with self._sessions() as session:
            member = await session.get(TeamMember, (team_id, user_id))
            if member is None:
                raise NotFound(f"user '{user_id}' is not a member of this team")
            await session.delete(member)
            await session.commit()


async def _count(session: AsyncSession, column: InstrumentedAttribute[str | None], value: str) -> int:
    return int((await session.execute(select(func.count()).where(column == value))).scalar_one())
