"""UserService: the user rules hold whoever calls (the API, the CLI, the declarative apply)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.cache.bus import LocalInvalidationBus
from odock.errors import Conflict, Forbidden, NotFound, UnprocessableEntity
from odock.identity.actors import issue_admin_token
from odock.identity.passwords import Passwords
from odock.identity.tables import AdminToken
from odock.tenancy.service import TenancyService
from odock.tenancy.tables import Role, UserStatus
from odock.tenancy.user_service import UserService

CHEAP = Passwords(time_cost=1, memory_kib=1024)


async def test_the_control_plane_cannot_demote_the_last_super_admin(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The CLI and declarative path (ControlPlane.update_user) keeps the API's last-super-admin guard."""
    control = ControlPlane(sessions, LocalInvalidationBus(), None)
    root = await control.users.create_user("root@example.test", role=Role.SUPER_ADMIN)
    with pytest.raises(Conflict, match="last active super admin"):
        await control.users.update_user(root.id, role=Role.USER)
    assert (await control.users.user_by_email("root@example.test")).role is Role.SUPER_ADMIN


async def test_only_a_super_admin_changes_a_super_admin(users: UserService) -> None:
    """A change to a super admin by anyone else is 403, even when another super admin exists."""
    root = await users.create_user("root@example.test", role=Role.SUPER_ADMIN)
    await users.create_user("second@example.test", role=Role.SUPER_ADMIN)
    with pytest.raises(Forbidden, match="only a super admin changes a super admin"):
        await users.update_user(root.id, name="Root", by_super_admin=False)
    changed = await users.update_user(root.id, role=Role.USER)
    assert changed.role is Role.USER


async def test_revoking_a_user_ends_their_admin_tokens(
    users: UserService, tenancy: TenancyService, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A status change to REVOKED revokes every admin token of the user in the same commit."""
    org = await tenancy.create_organisation("acme")
    ann = await users.create_user("ann@acme.test", organisation_id=org.id, role=Role.ORG_ADMIN)
    await issue_admin_token(sessions, ann.id, "ci")
    await users.update_user(ann.id, status=UserStatus.REVOKED)
    async with sessions() as session:
        tokens = list(
            (await session.execute(select(AdminToken).where(AdminToken.user_id == ann.id))).scalars()
        )
    assert [t.revoked_at is not None for t in tokens] == [True]


async def test_moving_a_user_needs_an_existing_organisation(
    users: UserService, tenancy: TenancyService
) -> None:
    """A move to an unknown organisation is 422; ``None`` takes the user out of every organisation."""
    org = await tenancy.create_organisation("acme")
    ann = await users.create_user("ann@acme.test", organisation_id=org.id)
    with pytest.raises(UnprocessableEntity, match="no such organisation"):
        await users.update_user(ann.id, organisation_id="ghost")
    assert (await users.update_user(ann.id, organisation_id=None)).organisation_id is None
    assert (await users.update_user(ann.id, name="Ann")).organisation_id is None


async def test_only_pending_users_are_approved_or_declined(users: UserService) -> None:
    """Approving an ACTIVE user is 409; an unknown one 404."""
    ann = await users.create_user("ann@example.test")
    with pytest.raises(Conflict, match="the user is ACTIVE, not PENDING"):
        await users.decide(ann.id, UserStatus.ACTIVE)
    with pytest.raises(NotFound, match="user not found"):
        await users.decide("ghost", UserStatus.ACTIVE)


async def test_the_last_super_admin_is_not_deleted(users: UserService) -> None:
    """Deleting the only active super admin is 409; any other user goes."""
    root = await users.create_user("root@example.test", role=Role.SUPER_ADMIN)
    ann = await users.create_user("ann@example.test", role=Role.SUPER_ADMIN)
    await users.delete_user(ann.id)
    with pytest.raises(Conflict, match="last active super admin"):
        await users.delete_user(root.id)
    assert [u.email for u in await users.list_users()] == ["root@example.test"]


async def test_password_users_belong_to_an_existing_organisation(
    users: UserService, tenancy: TenancyService
) -> None:
    """A password user other than a super admin needs an organisation that exists (422 otherwise)."""
    email, password = "ann@example.test", "correct horse battery staple"
    with pytest.raises(UnprocessableEntity, match="organisation_id is required"):
        await users.create_password_user(
            CHEAP, role=Role.USER, organisation_id=None, email=email, password=password
        )
    with pytest.raises(UnprocessableEntity, match="no such organisation"):
        await users.create_password_user(
            CHEAP, role=Role.USER, organisation_id="ghost", email=email, password=password
        )
    org = await tenancy.create_organisation("acme")
    ann = await users.create_password_user(
        CHEAP, role=Role.USER, organisation_id=org.id, email=email, password=password
    )
    assert (ann.status, ann.password_hash is not None) == (UserStatus.ACTIVE, True)


async def test_a_declared_null_name_clears_it(users: UserService) -> None:
    """The declarative apply's ``name: null`` empties a user's name; leaving it out keeps it."""
    ann = await users.create_user("ann@example.test", name="Ann")
    assert (await users.update_user(ann.id, role=Role.MANAGER)).name == "Ann"
    assert (await users.update_user(ann.id, name=None)).name is None
