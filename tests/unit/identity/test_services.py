"""The identity services the API calls: invitations, admin tokens and one's own sessions."""

from __future__ import annotations

from functools import partial

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import LocalInvalidationBus
from odock.errors import InvitationClosed, NotFound, UnprocessableEntity
from odock.identity.invitations import Invitations
from odock.identity.passwords import Passwords
from odock.identity.secrets import preview
from odock.identity.sessions import SessionStore
from odock.identity.tables import InvitationStatus
from odock.identity.tokens import AdminTokens
from odock.tenancy.service import TenancyService
from odock.tenancy.tables import Role, UserStatus
from odock.tenancy.user_service import UserService
from odock.web.api.paging import PageParams, keyset

CHEAP = Passwords(time_cost=1, memory_kib=1024)
FIRST_PAGE = partial(keyset, params=PageParams())


async def _organisation(sessions: async_sessionmaker[AsyncSession]) -> str:
    return (await TenancyService(sessions, LocalInvalidationBus()).create_organisation("acme")).id


async def test_invitations_list_by_effective_status(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A PENDING invitation past its expiry is listed as EXPIRED, and only there."""
    org = await _organisation(sessions)
    lapsed = Invitations(sessions, CHEAP, ttl_seconds=-1)
    current = Invitations(sessions, CHEAP, ttl_seconds=3600)
    old = (await lapsed.invite(org, "old@acme.test", Role.USER, None)).invitation
    new = (await current.invite(org, "new@acme.test", Role.USER, None)).invitation

    async def listed(status: InvitationStatus | None) -> list[str]:
        return [i.id for i in await current.page(org, FIRST_PAGE, status=status, q=None)]

    assert await listed(InvitationStatus.EXPIRED) == [old.id]
    assert await listed(InvitationStatus.PENDING) == [new.id]
    assert sorted(await listed(None)) == sorted([old.id, new.id])
    assert [i.id for i in await current.page(org, FIRST_PAGE, status=None, q="OLD@")] == [old.id]


async def test_an_invitation_needs_an_existing_organisation(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Inviting into an unknown organisation is 422 with the field named."""
    with pytest.raises(UnprocessableEntity, match="no such organisation") as caught:
        await Invitations(sessions, CHEAP, ttl_seconds=60).invite("ghost", "a@b.test", Role.USER, None)
    assert caught.value.param == "organisation_id"


async def test_a_new_account_accepts_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Accepting with a password makes an active member with the invited role; the link then closes."""
    org = await _organisation(sessions)
    invitations = Invitations(sessions, CHEAP, ttl_seconds=60)
    issued = await invitations.invite(org, "Ann@Acme.test", Role.MANAGER, None)
    user = await invitations.accept_new(
        issued.token, name="Ann", password="correct horse battery staple", ip=None
    )
    assert (user.email, user.role, user.status, user.organisation_id) == (
        "ann@acme.test",
        Role.MANAGER,
        UserStatus.ACTIVE,
        org,
    )
    with pytest.raises(InvitationClosed):
        await invitations.accept_new(
            issued.token, name=None, password="correct horse battery staple", ip=None
        )
    row, organisation = await invitations.link(issued.token)
    assert (row.status, organisation and organisation.name) == (InvitationStatus.ACCEPTED, "acme")


async def test_admin_tokens_are_revoked_only_by_their_owner(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Another user's token is 404; one's own is revoked once and listed among the revoked."""
    users = UserService(sessions)
    ann = await users.create_user("ann@example.test", role=Role.SUPER_ADMIN)
    bob = await users.create_user("bob@example.test", role=Role.SUPER_ADMIN)
    tokens = AdminTokens(sessions)
    row, secret = await tokens.issue(ann.id, "ci", None)
    assert (row.user_id, row.name, row.token_preview) == (ann.id, "ci", preview(secret))
    with pytest.raises(NotFound, match="admin token not found"):
        await tokens.revoke(row.id, owner_id=bob.id)
    assert [t.id for t in await tokens.page(ann.id, FIRST_PAGE, active=True)] == [row.id]
    await tokens.revoke(row.id, owner_id=ann.id)
    await tokens.revoke(row.id, owner_id=ann.id)
    assert await tokens.page(ann.id, FIRST_PAGE, active=True) == []
    assert [t.id for t in await tokens.page(ann.id, FIRST_PAGE, active=False)] == [row.id]


async def test_only_ones_own_session_is_ended(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Ending another user's session is 404 and leaves it live; one's own leaves the live list."""
    users = UserService(sessions)
    ann = await users.create_user("ann@example.test")
    bob = await users.create_user("bob@example.test")
    store = SessionStore(sessions, ttl_seconds=3600, idle_seconds=3600)
    issued = await store.start(ann.id, ip=None, user_agent=None)
    with pytest.raises(NotFound, match="session not found"):
        await store.revoke_own(issued.id, bob.id)
    assert [s.id for s in await store.live_page(ann.id, FIRST_PAGE)] == [issued.id]
    await store.revoke_own(issued.id, ann.id)
    assert await store.live_page(ann.id, FIRST_PAGE) == []
