"""TenancyService: the rules of organisations, teams and memberships, and what each change publishes."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation
from odock.errors import Conflict, InvalidPolicy, NotFound, UnprocessableEntity
from odock.keys.tables import ApiKey, ApiKeyType
from odock.tenancy.service import TenancyService, routing_enabled
from odock.tenancy.tables import TeamMemberRole
from odock.tenancy.user_service import UserService

BAD_POLICY = {"ratelimit": {"requests": {"per_minutes": 5}}}


async def test_update_organisation_changes_the_fields_given_and_publishes(
    tenancy: TenancyService, published: list[Invalidation]
) -> None:
    """One update renames, clears the contact, disables and re-policies, then tells the caches."""
    org = await tenancy.create_organisation("acme", contact="ops@acme.test")
    published.clear()
    changed = await tenancy.update_organisation(
        org.id, name=" acme-2 ", contact=None, status="DISABLED", policies={"shadow": True}
    )
    assert (changed.name, changed.contact, changed.status, changed.policies) == (
        "acme-2",
        None,
        "DISABLED",
        {"shadow": True},
    )
    assert published == [Invalidation("organisation", organisation_id=org.id)]


async def test_update_organisation_refuses_what_it_cannot_store(tenancy: TenancyService) -> None:
    """A taken name is 409, an unknown field, a bad status or a bad policy 422, a missing row 404."""
    await tenancy.create_organisation("taken")
    org = await tenancy.create_organisation("acme")
    with pytest.raises(Conflict, match="organisation 'taken' already exists"):
        await tenancy.update_organisation(org.id, name="taken")
    with pytest.raises(UnprocessableEntity, match="unknown organisation fields: plan"):
        await tenancy.update_organisation(org.id, plan="gold")
    with pytest.raises(UnprocessableEntity, match="ACTIVE or DISABLED"):
        await tenancy.update_organisation(org.id, status="PAUSED")
    with pytest.raises(InvalidPolicy):
        await tenancy.update_organisation(org.id, policies=BAD_POLICY)
    with pytest.raises(NotFound, match="organisation 'ghost' does not exist"):
        await tenancy.update_organisation("ghost", contact="x")
    assert (await tenancy.organisation(org.id)).name == "acme"


async def test_strict_provider_family_is_off_by_default_and_its_change_publishes(
    tenancy: TenancyService, published: list[Invalidation]
) -> None:
    """A new organisation is not strict unless asked; switching it on or off tells the caches."""
    assert (await tenancy.create_organisation("lenient")).strict_provider_family is False
    org = await tenancy.create_organisation("acme", strict_provider_family=True)
    assert (await tenancy.organisation(org.id)).strict_provider_family is True
    published.clear()
    changed = await tenancy.update_organisation(org.id, strict_provider_family=False)
    assert changed.strict_provider_family is False
    assert (await tenancy.organisation(org.id)).strict_provider_family is False
    assert published == [Invalidation("organisation", organisation_id=org.id)]


async def test_strict_provider_family_must_be_a_boolean(tenancy: TenancyService) -> None:
    """A value that is not true or false is 422 naming the field, on create and on update."""
    with pytest.raises(UnprocessableEntity, match="strict_provider_family must be true or false") as created:
        await tenancy.create_organisation("acme", strict_provider_family="yes")  # type: ignore[arg-type]
    assert created.value.param == "strict_provider_family"
    org = await tenancy.create_organisation("acme")
    with pytest.raises(UnprocessableEntity, match="strict_provider_family") as updated:
        await tenancy.update_organisation(org.id, strict_provider_family=1)
    assert updated.value.param == "strict_provider_family"
    assert (await tenancy.organisation(org.id)).strict_provider_family is False


async def test_routing_switch_keeps_the_other_policies(
    tenancy: TenancyService, published: list[Invalidation]
) -> None:
    """Switching routing on keeps the governance envelope and the routing settings beside the switch."""
    org = await tenancy.create_organisation("acme", policies={"shadow": True, "routing": {"a": 1}})
    published.clear()
    switched = await tenancy.set_routing(org.id, True)
    assert routing_enabled(switched)
    assert switched.policies == {"shadow": True, "routing": {"a": 1, "enabled": True}}
    assert published == [Invalidation("organisation", organisation_id=org.id)]


async def test_an_organisation_is_deleted_only_once_disabled(
    tenancy: TenancyService, published: list[Invalidation]
) -> None:
    """An ACTIVE organisation is not deleted (409); a DISABLED one goes with its teams and is announced."""
    org = await tenancy.create_organisation("acme")
    await tenancy.create_team(org.id, "red")
    with pytest.raises(Conflict, match="disable the organisation"):
        await tenancy.delete_organisation(org.id)
    await tenancy.update_organisation(org.id, status="DISABLED")
    published.clear()
    await tenancy.delete_organisation(org.id)
    assert published == [Invalidation("organisation", organisation_id=org.id)]
    assert await tenancy.list_organisations() == []
    assert await tenancy.list_teams(org.id) == []


async def test_a_team_rename_publishes_nothing_but_its_policies_do(
    tenancy: TenancyService, published: list[Invalidation]
) -> None:
    """Only team policies reach the caches; a rename clashing in its organisation is 409."""
    org = await tenancy.create_organisation("acme")
    team = await tenancy.create_team(org.id, "red")
    await tenancy.create_team(org.id, "blue")
    published.clear()
    assert (await tenancy.update_team(team.id, name="green")).name == "green"
    assert published == []
    with pytest.raises(Conflict, match="team 'blue' already exists"):
        await tenancy.update_team(team.id, name="blue")
    with pytest.raises(UnprocessableEntity, match="unknown team fields: colour"):
        await tenancy.update_team(team.id, colour="red")
    await tenancy.update_team(team.id, policies={"shadow": True})
    assert published == [Invalidation("organisation", organisation_id=org.id)]
    assert (await tenancy.team_by_name(org.id, "green")).policies == {"shadow": True}


async def test_a_team_that_owns_keys_is_not_deleted(
    tenancy: TenancyService,
    users: UserService,
    sessions: async_sessionmaker[AsyncSession],
    published: list[Invalidation],
) -> None:
    """Deleting a team that owns an API key is 409 naming it; without one, the team and its members go."""
    org = await tenancy.create_organisation("acme")
    team = await tenancy.create_team(org.id, "red")
    ann = await users.create_user("ann@acme.test", organisation_id=org.id)
    await tenancy.add_member(team.id, ann.id, TeamMemberRole.MEMBER)
    key = ApiKey(
        id="k1",
        organisation_id=org.id,
        team_id=team.id,
        type=ApiKeyType.TEAM,
        name="k",
        key_hash="h" * 64,
        key_preview="sk_…",
    )
    async with sessions() as session:
        session.add(key)
        await session.commit()
    with pytest.raises(Conflict, match="the team still owns 1 API keys"):
        await tenancy.delete_team(team.id)
    async with sessions() as session:
        await session.delete(await session.get(ApiKey, "k1"))
        await session.commit()
    published.clear()
    await tenancy.delete_team(team.id)
    assert published == [Invalidation("organisation", organisation_id=org.id)]
    with pytest.raises(NotFound):
        await tenancy.member(team.id, ann.id)


async def test_members_come_from_the_team_organisation_once(
    tenancy: TenancyService, users: UserService
) -> None:
    """A user of another organisation is refused like an unknown one; a second add is 409; roles change."""
    org = await tenancy.create_organisation("acme")
    other = await tenancy.create_organisation("other")
    team = await tenancy.create_team(org.id, "red")
    ann = await users.create_user("ann@acme.test", organisation_id=org.id)
    bob = await users.create_user("bob@other.test", organisation_id=other.id)
    for user_id in (bob.id, "ghost"):
        with pytest.raises(UnprocessableEntity, match="no such user in this organisation"):
            await tenancy.add_member(team.id, user_id, TeamMemberRole.MEMBER)
    await tenancy.add_member(team.id, ann.id, TeamMemberRole.MEMBER)
    with pytest.raises(Conflict, match="already a member"):
        await tenancy.add_member(team.id, ann.id, TeamMemberRole.MANAGER)
    member, user = await tenancy.set_member_role(team.id, ann.id, TeamMemberRole.MANAGER)
    assert (member.role, user.email) == (TeamMemberRole.MANAGER, "ann@acme.test")
    await tenancy.remove_member(team.id, ann.id)
    with pytest.raises(NotFound, match="is not a member of this team"):
        await tenancy.remove_member(team.id, ann.id)
