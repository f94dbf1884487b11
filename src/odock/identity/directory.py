"""Users as the control plane shows and changes them: team memberships, status changes, guards.

Rules kept here (whoever calls): nobody demotes or disables the last active super admin; a user
whose status becomes REVOKED loses every session and admin token at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from odock.errors import Conflict
from odock.identity.accounts import active_super_admins, revoke_credentials
from odock.tenancy.tables import Role, Team, TeamMember, TeamMemberRole, User, UserStatus


@dataclass(frozen=True)
class Membership:
    """One team a user belongs to."""

    team_id: str
    team_name: str
    role: TeamMemberRole


async def memberships(session: AsyncSession, user_ids: Iterable[str]) -> dict[str, list[Membership]]:
    """The team memberships of each user in ``user_ids`` (one query)."""
    ids = list(set(user_ids))
    found: dict[str, list[Membership]] = {user_id: [] for user_id in ids}
    if not ids:
        return found
    rows = await session.execute(
        select(TeamMember.user_id, Team.id, Team.name, TeamMember.role)
        .join(Team, Team.id == TeamMember.team_id)
        .where(TeamMember.user_id.in_(ids))
        .order_by(Team.name)
    )
    for user_id, team_id, team_name, role in rows:
        found[user_id].append(Membership(team_id, team_name, role))
    return found


async def change_user(
    session: AsyncSession,
    user: User,
    *,
    name: str | None = None,
    role: Role | None = None,
    status: UserStatus | None = None,
) -> None:
    """Apply changes to ``user`` in the caller's transaction, keeping the guards above."""
    leaves_super_admin = user.role is Role.SUPER_ADMIN and user.status is UserStatus.ACTIVE
    demoted = role is not None and role is not Role.SUPER_ADMIN
    disabled = status is not None and status is not UserStatus.ACTIVE
    if leaves_super_admin and (demoted or disabled) and await active_super_admins(session) <= 1:
        raise Conflict("this is the last active super admin: it cannot be demoted or disabled")
    if name is not None:
        user.name = name
    if role is not None:
        user.role = role
    if status is not None and status is not user.status:
        user.status = status
        if status is UserStatus.REVOKED:
            await revoke_credentials(session, user.id)
