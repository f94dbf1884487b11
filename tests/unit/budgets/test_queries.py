"""Budget and quota reads: where a meter sits, and pages narrowed to the caller's reach."""

from __future__ import annotations

from odock.admin.control import ControlPlane
from odock.budgets.queries import MeterFilters
from odock.budgets.tables import Budget, OwnerType, Quota, QuotaMetric
from odock.db.keyset import KeysetPage
from odock.keys.tables import ApiKeyType
from odock.rbac.grant import ListScope, Target


async def test_a_users_page_holds_their_meters_and_their_keys_meters(control: ControlPlane) -> None:
    """A user's reach covers budgets of their own and of their keys; filters narrow by currency."""
    org = await control.tenancy.create_organisation("acme")
    ann = await control.users.create_user("ann@acme.io", organisation_id=org.id)
    bob = await control.users.create_user("bob@acme.io", organisation_id=org.id)
    key = (await control.keys.create(org.id, "k", type=ApiKeyType.USER, user_id=ann.id)).key
    budgets = control.budgets
    own = await budgets.create_budget(
        org.id, "own", amount_nanos_usd=1, owner_type=OwnerType.USER, owner_id=ann.id
    )
    keys = await budgets.create_budget(
        org.id, "key", amount_nanos_usd=1, currency="EUR", owner_type=OwnerType.APIKEY, owner_id=key.id
    )
    await budgets.create_budget(org.id, "bob", amount_nanos_usd=1, owner_type=OwnerType.USER, owner_id=bob.id)
    await budgets.create_budget(org.id, "org", amount_nanos_usd=1)
    scope = ListScope(org.id, team_ids=frozenset(), user_id=ann.id)
    page = await budgets.budget_page(scope, MeterFilters(), KeysetPage())
    assert {b.id for b in page} == {own.id, keys.id}
    euros = await budgets.budget_page(scope, MeterFilters(currency="EUR"), KeysetPage())
    assert [b.id for b in euros] == [keys.id]
    assert await budgets.placement(Budget, keys.id) == Target(org.id, team_id=None, user_id=ann.id)
    assert await budgets.placement(Quota, keys.id) is None


async def test_quota_pages_filter_by_metric_across_organisations(control: ControlPlane) -> None:
    """The super admin's page (no organisation in the scope) covers every organisation."""
    acme = await control.tenancy.create_organisation("acme")
    other = await control.tenancy.create_organisation("other")
    tokens = await control.budgets.create_quota(acme.id, "t", metric=QuotaMetric.TOKENS, limit=5)
    theirs = await control.budgets.create_quota(other.id, "t", metric=QuotaMetric.TOKENS, limit=5)
    await control.budgets.create_quota(acme.id, "r", metric=QuotaMetric.REQUESTS, limit=5)
    page = await control.budgets.quota_page(
        ListScope(None), MeterFilters(metric=QuotaMetric.TOKENS), KeysetPage(descending=False)
    )
    assert [q.id for q in page] == [tokens.id, theirs.id]
