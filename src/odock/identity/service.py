"""The identity services of one process, and password sign-in and password change.

Password sign-in, in order::

    throttle.reserve(email, ip)          429 login_throttled past the limit (before any hashing)
    user = by e-mail                     unknown → verify against a dummy hash (same time, same 401)
    passwords.verify(hash, password)     wrong → 401 invalid_credentials (the same answer)
    user must be ACTIVE                  403 account_not_active (only once the password is proven)
    throttle.succeeded, rehash if due, last_login_at, new session
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.shared import SharedCache
from odock.db.base import utcnow
from odock.errors import AccountNotActive, InvalidCredentials, NotFound, SignInFailed, UnprocessableEntity
from odock.identity.accounts import normalise_email, passwords_for
from odock.identity.invitations import Invitations
from odock.identity.oauth import ExternalAccount, SignInFlows, configured_providers, resolve_account
from odock.identity.passwords import Passwords, check_password_rules
from odock.identity.sessions import IssuedSession, SessionStore, revoke_user_sessions
from odock.identity.throttle import LoginThrottle, MemoryFailureCounters, RedisFailureCounters
from odock.identity.tokens import AdminTokens
from odock.settings import Settings
from odock.tenancy.tables import User, UserStatus

log = logging.getLogger(__name__)


@dataclass
class Identity:
    """The identity services of one process: sign-in, sessions, throttle, admin tokens, invitations."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    passwords: Passwords
    store: SessionStore
    throttle: LoginThrottle
    flows: SignInFlows
    tokens: AdminTokens
    invitations: Invitations

    @classmethod
    def open(
        cls,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis | None,
        shared: SharedCache,
    ) -> Identity:
        """Identity services over the database, the shared cache and (production) Redis."""
        counters = (
            MemoryFailureCounters() if redis is None else RedisFailureCounters(redis, settings.redis_prefix)
        )
        passwords = passwords_for(settings)
        return cls(
            settings=settings,
            sessions=sessions,
            passwords=passwords,
            store=SessionStore(
                sessions,
                ttl_seconds=settings.session_ttl_seconds,
                idle_seconds=settings.session_idle_timeout_seconds,
            ),
            throttle=LoginThrottle(
                counters,
                max_failures=settings.login_max_failures,
                window_seconds=settings.login_failure_window_seconds,
            ),
            flows=SignInFlows(configured_providers(settings), shared),
            tokens=AdminTokens(sessions),
            invitations=Invitations(sessions, passwords, ttl_seconds=settings.invitation_ttl_seconds),
        )

    async def sign_in(
        self, email: str, password: str, *, ip: str | None, user_agent: str | None
    ) -> tuple[User, IssuedSession]:
        """Check the password and open a session (see the module docstring for the order)."""
        address = normalise_email(email)
        await self.throttle.reserve(address, ip)
        async with self.sessions() as session:
            user = (await session.execute(select(User).where(User.email == address))).scalar_one_or_none()
            stored = user.password_hash if user is not None else None
            result = await self.passwords.verify(stored, password)
            if user is None or not result.ok:
                log.info("sign-in refused: invalid credentials")
                raise InvalidCredentials()
            if user.status is not UserStatus.ACTIVE:
                raise AccountNotActive()
            await self.throttle.succeeded(address, ip)
            if result.new_hash is not None:
                user.password_hash = result.new_hash
            user.last_login_at = utcnow()
            await session.commit()
        issued = await self.store.start(user.id, ip=ip, user_agent=user_agent)
        log.info("user %s signed in (session %s)", user.id, issued.id)
        return user, issued

    async def sign_in_external(self, account: ExternalAccount, invite: str | None) -> User:
        """The user an external account signs in as, created or joined to an invitation as needed."""
        async with self.sessions() as session:
            user = await resolve_account(session, account, invite)
            try:
                await session.commit()
            except IntegrityError as exc:  # the same account signing in twice at once
                raise SignInFailed("the sign-in raced with another one: try again") from exc
        return user

    async def change_password(self, user_id: str, current: str, new: str, *, ip: str | None) -> None:
        """Replace the password after checking the current one; every session of the user is revoked.

        The caller opens a fresh session for the browser that asked (the old one is rotated).
        A wrong current password counts as a failed sign-in for the throttle.
        """
        check_password_rules(new, "new_password")
        async with self.sessions() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise NotFound("user not found")
            await self.throttle.reserve(user.email, ip)
            result = await self.passwords.verify(user.password_hash, current)
            if not result.ok:
                raise InvalidCredentials("the current password is wrong")
            await self.throttle.succeeded(user.email, ip)
            if current == new:
                raise UnprocessableEntity(
                    "new_password must differ from the current one", param="new_password"
                )
            user.password_hash = await self.passwords.hash(new)
            user.must_change_password = False
            user.password_changed_at = utcnow()
            await revoke_user_sessions(session, user.id)
            await session.commit()
