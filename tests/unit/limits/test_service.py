"""Governance envelopes at each scope: replaced beside other settings, validated, announced."""

from __future__ import annotations

import pytest

from odock.admin.control import ControlPlane
from odock.cache.bus import Invalidation
from odock.errors import InvalidPolicy, NotFound
from odock.limits.service import PolicyScope

LIMITS = {"ratelimit": {"requests": {"per_minute": 60}}}


async def test_replacing_a_keys_envelope_keeps_its_routing_and_tells_the_key_cache(
    control: ControlPlane, published: list[Invalidation]
) -> None:
    """The API's replace swaps the envelope only, and publishes the key's invalidation by hash."""
    org = await control.tenancy.create_organisation("acme")
    await control.models.create(org.id, "gpt")
    key = (await control.keys.create(org.id, "k")).key
    await control.keys.set_routing(key.id, {"chat": {"candidates": [{"modelName": "gpt"}]}})
    published.clear()
    stored = await control.policies.replace(PolicyScope.API_KEY, key.id, LIMITS)
    assert set(stored) == {"routing", "ratelimit"}
    assert published == [Invalidation("api_key", organisation_id=org.id, key_hash=key.key_hash)]


async def test_an_envelope_names_only_its_own_sections(control: ControlPlane) -> None:
    """Another capability's section in an envelope is refused, naming it; nothing is stored."""
    org = await control.tenancy.create_organisation("acme")
    with pytest.raises(InvalidPolicy) as refused:
        await control.policies.replace(PolicyScope.ORGANISATION, org.id, {"policies": {"routing": {}}})
    assert refused.value.param == "policies.routing"
    assert await control.policies.stored(PolicyScope.ORGANISATION, org.id) == {}


async def test_the_cli_replaces_the_whole_document_of_a_team(
    control: ControlPlane, published: list[Invalidation]
) -> None:
    """replace_document stores the validated document as given and tells the organisation's caches."""
    org = await control.tenancy.create_organisation("acme")
    team = await control.tenancy.create_team(org.id, "platform", policies={"shadow": True})
    published.clear()
    stored = await control.policies.replace_document(PolicyScope.TEAM, team.id, LIMITS)
    assert stored == LIMITS
    assert published == [Invalidation("organisation", organisation_id=org.id)]
    with pytest.raises(NotFound):
        await control.policies.stored(PolicyScope.MODEL, "missing")
