"""Password accounts: creating them, the bootstrap admin, and ending a user's credentials."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.db.base import utcnow
from odock.errors import Conflict
from odock.identity.passwords import Passwords, check_password_rules
from odock.identity.sessions import revoke_user_sessions, revoke_user_tokens
from odock.ids import new_id
from odock.settings import Settings
from odock.tenancy.tables import Role, User, UserStatus

log = logging.getLogger(__name__)


def normalise_email(email: str) -> str:
    """E-mail addresses are compared trimmed and lower-cased."""
    return email.strip().lower()


def passwords_for(settings: Settings) -> Passwords:
    """The password hasher with the configured argon2id cost."""
    return Passwords(time_cost=settings.password_hash_time_cost, memory_kib=settings.password_hash_memory_kib)


async def revoke_credentials(session: AsyncSession, user_id: str) -> None:
    """End every session and admin token of ``user_id`` (in the caller's transaction)."""
    await revoke_user_sessions(session, user_id)
    await revoke_user_tokens(session, user_id)


async def active_super_admins(session: AsyncSession) -> int:
    """How many active super admins exist."""
    query = (
        select(func.count())
        .select_from(User)
        .where(User.role == Role.SUPER_ADMIN, User.status == UserStatus.ACTIVE)
    )
    return int((await session.execute(query)).scalar_one())


async def create_password_user(
    sessions: async_sessionmaker[AsyncSession],
    passwords: Passwords,
    *,
    email: str,
    password: str,
    role: Role,
    organisation_id: str | None,
    name: str | None = None,
    must_change_password: bool = False,
) -> User:
    """Create an active user who signs in with ``password`` (409 when the e-mail is taken)."""
    check_password_rules(password)
    user = User(
        id=new_id(),
        email=normalise_email(email),
        name=name,
        role=role,
        status=UserStatus.ACTIVE,
        organisation_id=organisation_id,
        password_hash=await passwords.hash(password),
        must_change_password=must_change_password,
        password_changed_at=None if must_change_password else utcnow(),
    )
    async with sessions() as session:
        session.add(user)
        try:
            await session.commit()
        except IntegrityError as exc:
            raise Conflict(f"a user with e-mail '{user.email}' already exists") from exc
    return user


async def ensure_bootstrap_admin(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> User | None:
    """Create the configured bootstrap super admin when no super admin exists yet (else nothing)."""
    if settings.bootstrap_admin_email is None or settings.bootstrap_admin_password is None:
        return None
    async with sessions() as session:
        existing = await session.execute(select(User.id).where(User.role == Role.SUPER_ADMIN).limit(1))
        if existing.first() is not None:
            return None
        taken = await session.execute(
            select(User.id).where(User.email == normalise_email(settings.bootstrap_admin_email))
        )
        if taken.first() is not None:
            log.warning("bootstrap admin not created: a user with that e-mail already exists")
            return None
    try:
        user = await create_password_user(
            sessions,
            passwords_for(settings),
            email=settings.bootstrap_admin_email,
            password=settings.bootstrap_admin_password.get_secret_value(),
            role=Role.SUPER_ADMIN,
            organisation_id=None,
            name="Administrator",
            must_change_password=settings.bootstrap_admin_must_change_password,
        )
    except Conflict:
        return None  # another replica starting at the same moment created it
    log.info(
        "bootstrap super admin %s created%s",
        user.email,
        " (must change the password at first sign-in)" if user.must_change_password else "",
    )
    return user
