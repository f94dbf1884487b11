"""The model service: references inside the organisation, deletion with grants, filtered pages."""

from __future__ import annotations

import pytest

from odock.admin.control import ControlPlane
from odock.cache.bus import Invalidation
from odock.db.keyset import KeysetPage
from odock.errors import UnprocessableEntity
from odock.providers.model_service import Capability, ModelFilters
from odock.providers.tables import ProviderType
from odock.rbac.grant import ListScope


async def test_references_must_stay_inside_the_organisation(control: ControlPlane) -> None:
    """Another organisation's provider, or another provider's key, is 422 on the field (create, update)."""
    org = await control.tenancy.create_organisation("acme")
    other = await control.tenancy.create_organisation("other")
    theirs = await control.providers.create(other.id, "theirs", ProviderType.MOCK)
    ours = await control.providers.create(org.id, "ours", ProviderType.MOCK)
    second = await control.providers.create(org.id, "second", ProviderType.MOCK)
    key = await control.provider_keys.add(second.id, "k", secret="sk-upstream")
    with pytest.raises(UnprocessableEntity, match="no such provider") as foreign:
        await control.models.create(org.id, "m", provider_id=theirs.id)
    assert foreign.value.param == "provider_id"
    with pytest.raises(UnprocessableEntity, match="belongs to another provider") as mismatched:
        await control.models.create(org.id, "m", provider_id=ours.id, provider_key_id=key.id)
    assert mismatched.value.param == "provider_key_id"
    model = await control.models.create(org.id, "m", provider_id=second.id, provider_key_id=key.id)
    with pytest.raises(UnprocessableEntity, match="belongs to another provider"):
        await control.models.update(model.id, provider_id=ours.id)
    with pytest.raises(UnprocessableEntity, match="no such provider") as unknown:
        await control.models.update(model.id, provider_id="nope", provider_api_key_id=None)
    assert unknown.value.param == "provider_id"
    assert (await control.models.get(model.id)).provider_id == second.id


async def test_deleting_a_model_drops_its_grants_and_is_announced(
    control: ControlPlane, published: list[Invalidation]
) -> None:
    """A deleted model's grants go with it, and the organisation's caches are told."""
    org = await control.tenancy.create_organisation("acme")
    model = await control.models.create(org.id, "m")
    key = (await control.keys.create(org.id, "k", models=["m"])).key
    published.clear()
    await control.models.delete(model.id)
    assert await control.keys.grants(key.id) == []
    assert published == [Invalidation("organisation", organisation_id=org.id)]


async def test_a_page_filters_by_capability_and_sorts_by_name(control: ControlPlane) -> None:
    """Model pages keep the organisation's models with the capability, in name order when asked."""
    org = await control.tenancy.create_organisation("acme")
    other = await control.tenancy.create_organisation("other")
    await control.models.create(org.id, "b-vision", capabilities=["vision"])
    await control.models.create(org.id, "a-vision", capabilities=["vision", "tool_use"])
    await control.models.create(org.id, "plain")
    await control.models.create(other.id, "c-vision", capabilities=["vision"])
    filters = ModelFilters(capability=Capability.VISION, sort="name")
    page = await control.models.page(ListScope(org.id), filters, KeysetPage(descending=False))
    assert [m.name for m in page] == ["a-vision", "b-vision"]
    everywhere = await control.models.page(ListScope(None), filters, KeysetPage(descending=False))
    assert [m.name for m in everywhere] == ["a-vision", "b-vision", "c-vision"]
