"""Control-plane operations added for the CLI and declarative config: lookups, updates, pinned secrets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from odock.admin.control import ControlPlane
from odock.cache.bus import Invalidation
from odock.errors import Conflict, InvalidPolicy, NotFound, UnprocessableEntity
from odock.keys.secrets import hash_secret
from odock.keys.tables import ApiKeyType
from odock.providers.service import ProviderChanges
from odock.providers.tables import ProviderType

PINNED = "sk_pinned_" + "c" * 40


async def test_pinned_secret_is_stored_as_its_hash(control: ControlPlane) -> None:
    """A pinned secret is returned once and only its hash is kept."""
    org = await control.tenancy.create_organisation("acme")
    issued = await control.keys.create(org.id, "ci", secret=PINNED)
    assert issued.secret == PINNED
    assert issued.key.key_hash == hash_secret(PINNED)
    assert PINNED not in issued.key.key_preview


async def test_reused_pinned_secret_is_a_conflict(control: ControlPlane) -> None:
    """A second key with the same pinned secret is refused with Conflict, not a database error."""
    org = await control.tenancy.create_organisation("acme")
    first = await control.keys.create(org.id, "one", secret=PINNED)
    with pytest.raises(Conflict, match="already in use"):
        await control.keys.create(org.id, "two", secret=PINNED)
    other = await control.keys.create(org.id, "three")
    with pytest.raises(Conflict, match="already in use"):
        await control.keys.rotate(other.key.id, secret=PINNED)
    assert (await control.keys.get(first.key.id)).key_hash == hash_secret(PINNED)


async def test_update_api_key_enforces_ownership(
    control: ControlPlane, published: list[Invalidation]
) -> None:
    """Moving a key to a team needs a team of the same organisation, and the cached key is invalidated."""
    org = await control.tenancy.create_organisation("acme")
    other = await control.tenancy.create_organisation("other")
    foreign = await control.tenancy.create_team(other.id, "theirs")
    team = await control.tenancy.create_team(org.id, "ours")
    key = (await control.keys.create(org.id, "k")).key
    with pytest.raises(UnprocessableEntity, match="a TEAM key needs a team"):
        await control.keys.update(key.id, type=ApiKeyType.TEAM)
    with pytest.raises(UnprocessableEntity, match="another organisation"):
        await control.keys.update(key.id, type=ApiKeyType.TEAM, team_id=foreign.id)
    published.clear()
    moved = await control.keys.update(key.id, type=ApiKeyType.TEAM, team_id=team.id)
    assert (moved.type, moved.team_id) == (ApiKeyType.TEAM, team.id)
    assert published == [Invalidation("api_key", organisation_id=org.id, key_hash=key.key_hash)]


async def test_update_provider_publishes_and_validates(
    control: ControlPlane, published: list[Invalidation]
) -> None:
    """A provider update is checked, stored and announced to its organisation's caches."""
    org = await control.tenancy.create_organisation("acme")
    provider = await control.providers.create(org.id, "p", ProviderType.MOCK)
    with pytest.raises(UnprocessableEntity, match="timeout_ms must be positive"):
        await control.providers.update(provider.id, ProviderChanges(timeout_ms=0, set_timeout_ms=True))
    with pytest.raises(UnprocessableEntity, match="unknown provider fields: colour"):
        await control.providers.update(provider.id, ProviderChanges.of({"colour": "red"}))
    published.clear()
    await control.providers.update(
        provider.id, ProviderChanges.of({"base_url": "http://upstream.invalid", "timeout_ms": 500})
    )
    stored = await control.providers.named(org.id, "p")
    assert (stored.base_url, stored.timeout_ms) == ("http://upstream.invalid", 500)
    assert published == [Invalidation("organisation", organisation_id=org.id)]


async def test_lookups_by_name_say_what_is_missing(control: ControlPlane) -> None:
    """Name lookups raise NotFound with a message an operator can read."""
    org = await control.tenancy.create_organisation("acme")
    with pytest.raises(NotFound, match="provider 'ghost' does not exist"):
        await control.providers.named(org.id, "ghost")
    with pytest.raises(NotFound, match="team 'ghost' does not exist"):
        await control.tenancy.team_by_name(org.id, "ghost")
    with pytest.raises(NotFound, match=r"user 'ghost@x\.io' does not exist"):
        await control.users.user_by_email("Ghost@X.io")
    with pytest.raises(NotFound, match="API key 'nope' does not exist"):
        await control.keys.get("nope")


BAD_POLICY = {"ratelimit": {"requests": {"per_minutes": 5}}}
GOOD_POLICY = {"policies": {"ratelimit": {"requests": {"per_minute": 5, "burst": 0}}, "routing": {"a": 1}}}
STORED_POLICY = {"ratelimit": {"requests": {"per_minute": 5}}, "routing": {"a": 1}}


async def test_every_policy_write_rejects_an_invalid_field(control: ControlPlane) -> None:
    """Organisation, team, model and API key policies are each refused with the bad field named."""
    org = await control.tenancy.create_organisation("acme")
    team = await control.tenancy.create_team(org.id, "platform")
    provider = await control.providers.create(org.id, "p", ProviderType.MOCK)
    model = await control.models.create(org.id, "m", provider_id=provider.id)
    key = (await control.keys.create(org.id, "k")).key
    writes: list[Callable[[], Awaitable[object]]] = [
        lambda: control.tenancy.create_organisation("other", policies=BAD_POLICY),
        lambda: control.tenancy.update_organisation(org.id, policies=BAD_POLICY),
        lambda: control.tenancy.create_team(org.id, "t2", policies=BAD_POLICY),
        lambda: control.tenancy.update_team(team.id, policies=BAD_POLICY),
        lambda: control.models.create(org.id, "m2", provider_id=provider.id, policies=BAD_POLICY),
        lambda: control.models.update(model.id, policies=BAD_POLICY),
        lambda: control.keys.create(org.id, "k2", policies=BAD_POLICY),
        lambda: control.keys.update(key.id, policies=BAD_POLICY),
    ]
    for write in writes:
        with pytest.raises(InvalidPolicy) as caught:
            await write()
        assert caught.value.param == "ratelimit.requests.per_minutes"
    assert [o.name for o in await control.tenancy.list_organisations()] == ["acme"]
    assert [t.name for t in await control.tenancy.list_teams(org.id)] == ["platform"]
    assert [m.name for m in await control.models.listed(org.id)] == ["m"]
    assert [k.name for k in await control.keys.listed(org.id)] == ["k"]
    assert (await control.tenancy.organisation(org.id)).policies == {}


async def test_every_policy_write_stores_the_bare_parsed_form(control: ControlPlane) -> None:
    """A nested envelope written anywhere is stored bare and normalised, other keys kept."""
    org = await control.tenancy.create_organisation("acme", policies=GOOD_POLICY)
    team = await control.tenancy.create_team(org.id, "platform", policies=GOOD_POLICY)
    provider = await control.providers.create(org.id, "p", ProviderType.MOCK)
    model = await control.models.create(org.id, "m", provider_id=provider.id, policies=GOOD_POLICY)
    key = (await control.keys.create(org.id, "k", policies=GOOD_POLICY)).key
    assert [org.policies, team.policies, model.policies, key.policies] == [STORED_POLICY] * 4

    await control.tenancy.update_organisation(org.id, policies={"shadow": True})
    await control.tenancy.update_team(team.id, policies={})
    await control.models.update(model.id, policies={"ip": {"blocklist": ["203.0.113.7"]}})
    await control.keys.update(key.id, policies=GOOD_POLICY)
    assert (await control.tenancy.organisation(org.id)).policies == {"shadow": True}
    assert (await control.tenancy.team_by_name(org.id, "platform")).policies == {}
    assert (await control.models.named(org.id, "m")).policies == {"ip": {"blocklist": ["203.0.113.7/32"]}}
    assert (await control.keys.get(key.id)).policies == STORED_POLICY
