"""Users: created by an operator or a super admin, changed, approved or declined, deleted.

Rules kept here, whoever calls (the API, the CLI, the declarative apply): only a super admin
changes a super admin; nobody demotes, disables or deletes the last active super admin; a user
whose status becomes REVOKED loses every session and admin token at once
(:func:`odock.identity.directory.change_user`); a user of any role but SUPER_ADMIN created with a
password belongs to an organisation that exists. Everyone but a super admin joins through an
invitation or an external sign-in, not here.
"""

from __future__ import annotations

import enum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.db.rows import commit_or_conflict, get_row
from odock.errors import Conflict, Forbidden, NotFound, UnprocessableEntity
from odock.identity.accounts import active_super_admins, create_password_user, normalise_email
from odock.identity.directory import change_user
from odock.identity.passwords import Passwords
from odock.ids import new_id
from odock.tenancy.tables import Organisation, Role, User, UserStatus


class Keep(enum.Enum):
    """The value of an optional change that was not asked for (``None`` is a value of its own)."""

    KEEP = enum.auto()


KEEP = Keep.KEEP


class UserService:
    """Users: create, look up, change, approve or decline, delete."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create_user(
        self,
        email: str,
        *,
        organisation_id: str | None = None,
        role: Role = Role.USER,
        name: str | None = None,
    ) -> User:
        """Create a user without a password (they sign in through an external identity provider)."""
        user = User(
            id=new_id(), email=normalise_email(email), name=name, role=role, organisation_id=organisation_id
        )
        async with self._sessions() as session:
            if organisation_id:
                await get_row(session, Organisation, organisation_id)
            session.add(user)
            await commit_or_conflict(session, f"user '{email}' already exists")
        return user

    async def create_password_user(
        self,
        passwords: Passwords,
        *,
        email: str,
        password: str,
        role: Role,
        organisation_id: str | None,
        name: str | None = None,
        must_change_password: bool = False,
    ) -> User:
        """Create an active password user (409 when the e-mail is taken; 422 without an organisation)."""
        if role is not Role.SUPER_ADMIN and organisation_id is None:
            raise UnprocessableEntity("organisation_id is required for this role", param="organisation_id")
        if organisation_id is not None:
            async with self._sessions() as session:
                await _organisation_exists(session, organisation_id)
        return await create_password_user(
            self._sessions,
            passwords,
            email=email,
            password=password,
            role=role,
            organisation_id=organisation_id,
            name=name,
            must_change_password=must_change_password,
        )

    async def user(self, user_id: str) -> User:
        """One user by id (404 when absent)."""
        async with self._sessions() as session:
            return await _user(session, user_id)

    async def user_by_email(self, email: str) -> User:
        """Find a user by e-mail address (404 when absent)."""
        address = normalise_email(email)
        async with self._sessions() as session:
            user = (await session.execute(select(User).where(User.email == address))).scalar_one_or_none()
        if user is None:
            raise NotFound(f"user '{address}' does not exist")
        return user

    async def list_users(self, organisation_id: str | None = None) -> list[User]:
        """Users, by e-mail (optionally of one organisation)."""
        query = select(User).order_by(User.email)
        if organisation_id:
            query = query.where(User.organisation_id == organisation_id)
        async with self._sessions() as session:
            return list((await session.execute(query)).scalars())

    async def update_user(
        self,
        user_id: str,
        *,
        name: str | Keep | None = KEEP,
        role: Role | None = None,
        status: UserStatus | None = None,
        organisation_id: str | Keep | None = KEEP,
        by_super_admin: bool = True,
    ) -> User:
        """Change a user's name, role, status or organisation (a ``None`` name or organisation clears it)."""
        async with self._sessions() as session:
            user = await _user(session, user_id)
            if user.role is Role.SUPER_ADMIN and not by_super_admin:
                raise Forbidden("only a super admin changes a super admin")
            if organisation_id is not KEEP:
                if organisation_id is not None:
                    await _organisation_exists(session, organisation_id)
                user.organisation_id = organisation_id
            if name is not KEEP:
                user.name = name
            await change_user(session, user, role=role, status=status)
            await session.commit()
        return user

    async def decide(self, user_id: str, status: UserStatus) -> User:
        """Approve (ACTIVE) or decline (REVOKED) a PENDING user (409 for any other status)."""
        async with self._sessions() as session:
            user = await _user(session, user_id)
            if user.status is not UserStatus.PENDING:
                raise Conflict(f"the user is {user.status.value}, not PENDING")
            await change_user(session, user, status=status)
            await session.commit()
        return user

    async def delete_user(self, user_id: str) -> None:
        """Delete a user with their sessions and admin tokens; never the last active super admin."""
        async with self._sessions() as session:
            user = await _user(session, user_id)
            if (
                user.role is Role.SUPER_ADMIN
                and user.status is UserStatus.ACTIVE
                and await active_super_admins(session) <= 1
            ):
                raise Conflict("this is the last active super admin: it cannot be deleted")
            await session.delete(user)
            try:
                await session.commit()
            except IntegrityError as exc:
                raise Conflict(
                    "the user still owns resources (API keys, budgets): disable it instead"
                ) from exc


async def _user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    return user


async def _organisation_exists(session: AsyncSession, organisation_id: str) -> None:
    if await session.get(Organisation, organisation_id) is None:
        raise UnprocessableEntity("no such organisation", param="organisation_id")
