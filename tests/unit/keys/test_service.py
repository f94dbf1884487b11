"""The API key service: the admin API's stricter entry points, grants by name or id, routing, reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from odock.admin.control import ControlPlane
from odock.cache.bus import Invalidation
from odock.db.keyset import KeysetPage
from odock.errors import Conflict, NotFound, UnprocessableEntity
from odock.keys.queries import KeyFilters
from odock.keys.tables import ApiKeyType
from odock.rbac.grant import ListScope
from odock.tenancy.tables import Organisation


async def _org_with_model(control: ControlPlane) -> tuple[Organisation, str]:
    org = await control.tenancy.create_organisation("acme")
    model = await control.models.create(org.id, "gpt")
    return org, model.id


async def test_issue_refuses_an_expiry_in_the_past(control: ControlPlane) -> None:
    """The API's issue refuses a key born expired; nothing is stored."""
    org, _ = await _org_with_model(control)
    with pytest.raises(UnprocessableEntity, match="expires_at must be in the future"):
        await control.keys.issue(org.id, "old", expires_at=datetime.now(UTC) - timedelta(minutes=1))
    assert await control.keys.listed(org.id) == []


async def test_rotating_a_revoked_key_is_a_conflict_and_rotation_retires_the_old_hash(
    control: ControlPlane, published: list[Invalidation]
) -> None:
    """rotate_live refuses a revoked key (409); a rotation publishes the old and the new hash."""
    org, _ = await _org_with_model(control)
    key = (await control.keys.create(org.id, "k")).key
    published.clear()
    rotated = await control.keys.rotate_live(key.id, expires_at=None, rotated_by="ann@acme.io")
    assert published == [
        Invalidation("api_key", organisation_id=org.id, key_hash=key.key_hash),
        Invalidation("api_key", organisation_id=org.id, key_hash=rotated.key.key_hash),
    ]
    await control.keys.set_revoked(key.id, True)
    with pytest.raises(Conflict, match="revoked key cannot be rotated"):
        await control.keys.rotate_live(key.id, expires_at=None, rotated_by="ann@acme.io")


async def test_revoking_twice_keeps_the_first_revocation_time(control: ControlPlane) -> None:
    """set_revoked is idempotent: a repeated revocation changes nothing."""
    org, _ = await _org_with_model(control)
    key = (await control.keys.create(org.id, "k")).key
    first = await control.keys.set_revoked(key.id, True)
    again = await control.keys.set_revoked(key.id, True)
    assert first.revoked_at is not None
    assert again.revoked_at == first.revoked_at
    assert (await control.keys.set_revoked(key.id, False)).revoked_at is None


async def test_grants_take_names_or_ids_and_refuse_unknown_models(control: ControlPlane) -> None:
    """A model is granted by name or id; an unknown one is 422 on models; removing no grant is 404."""
    org, model_id = await _org_with_model(control)
    await control.models.create(org.id, "embed", type="embeddings")
    key = (await control.keys.create(org.id, "k", models=[model_id])).key
    await control.keys.grant(key.id, ["embed"])
    assert await control.keys.grants(key.id) == ["embed", "gpt"]
    with pytest.raises(UnprocessableEntity, match="unknown models: nope") as refused:
        await control.keys.set_grants(key.id, ["gpt", "nope"])
    assert refused.value.param == "models"
    await control.keys.remove_grant(key.id, model_id)
    assert await control.keys.grants(key.id) == ["embed"]
    with pytest.raises(NotFound):
        await control.keys.remove_grant(key.id, model_id)


async def test_routing_is_stored_beside_the_governance_envelope(control: ControlPlane) -> None:
    """Setting a routing policy keeps the key's rate limits; clearing it leaves only them."""
    org, _ = await _org_with_model(control)
    envelope = {"ratelimit": {"requests": {"per_minute": 60}}}
    key = (await control.keys.create(org.id, "k", policies=envelope)).key
    routing = {"chat": {"strategy": "failover", "candidates": [{"modelName": "gpt"}]}}
    stored = await control.keys.set_routing(key.id, routing)
    assert stored["chat"]["candidates"][0]["modelName"] == "gpt"
    assert (await control.keys.get(key.id)).policies["ratelimit"] == {"requests": {"per_minute": 60}}
    with pytest.raises(UnprocessableEntity, match="unknown models: other"):
        await control.keys.set_routing(key.id, {"chat": {"candidates": [{"modelName": "other"}]}})
    assert await control.keys.set_routing(key.id, {"chat": None}) == {}
    assert set((await control.keys.get(key.id)).policies) == {"ratelimit"}


async def test_a_page_keeps_to_the_scope_of_the_caller(control: ControlPlane) -> None:
    """A user's scope lists their own keys and their teams' keys, never another member's."""
    org, _ = await _org_with_model(control)
    team = await control.tenancy.create_team(org.id, "platform")
    ann = await control.users.create_user("ann@acme.io", organisation_id=org.id)
    bob = await control.users.create_user("bob@acme.io", organisation_id=org.id)
    mine = (await control.keys.create(org.id, "mine", type=ApiKeyType.USER, user_id=ann.id)).key
    teams = (await control.keys.create(org.id, "team", type=ApiKeyType.TEAM, team_id=team.id)).key
    await control.keys.create(org.id, "bob's", type=ApiKeyType.USER, user_id=bob.id)
    await control.keys.create(org.id, "org-wide")
    scope = ListScope(org.id, team_ids=frozenset({team.id}), user_id=ann.id)
    page = await control.keys.page(scope, KeyFilters(), KeysetPage(limit=10))
    assert {k.id for k in page} == {mine.id, teams.id}
    everything = await control.keys.page(ListScope(org.id), KeyFilters(q="team"), KeysetPage(limit=10))
    assert [k.id for k in everything] == [teams.id]


async def test_moving_a_key_to_an_unknown_team_is_not_found(control: ControlPlane) -> None:
    """An unknown team is 404 and the key stays as it was (no database error from a premature flush)."""
    org, _ = await _org_with_model(control)
    key = (await control.keys.create(org.id, "k")).key
    with pytest.raises(NotFound, match="team 'nope' does not exist"):
        await control.keys.update(key.id, type=ApiKeyType.TEAM, team_id="nope")
    assert (await control.keys.get(key.id)).type == ApiKeyType.ORGANISATION
