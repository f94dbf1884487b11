"""Usage records, a record's detail, analytics and the audit log in a real browser, after real calls."""

from __future__ import annotations

from decimal import Decimal

from odock.tenancy.tables import Role
from odock.web.console.pages import usd
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.console_spend import Billed
from tests.support.console_spend import billed as billed  # the module's billed organisation
from tests.support.identity import password_account


def test_the_usage_table_shows_each_call_and_opens_its_detail_by_request_id(
    page: Page, sign_in: SignIn, billed: Billed
) -> None:
    """Each governed call is a row (status, model, cost); searching its request id leads to every field."""
    records = {r["request_id"]: r for r in billed.records()}
    first = billed.request_ids[0]
    sign_in(billed.admin).open(f"/o/{billed.org}/usage")
    for request_id in billed.request_ids:
        row = page.find(f'tr[data-request-id="{request_id}"]')
        assert billed.tenant.model in row.text
        assert "200" in row.text
        assert usd(records[request_id]["total_cost_nanos_usd"]) in row.text
    assert records[first]["total_cost_nanos_usd"] > 0

    page.fill({"q": first[:12]}).click('form[role="search"] [type="submit"]')
    page.wait_path(lambda p: "q=" in p)
    rows = page.all("table[data-testid=usage-table] tbody tr")
    assert [r.get_attribute("data-request-id") for r in rows] == [first]

    page.click(f'tr[data-request-id="{first}"] a.mono')
    page.wait_path(lambda p: p == f"/o/{billed.org}/usage/{records[first]['id']}")
    page.wait_text(first, "[data-testid=request-id]")
    fields = page.find("[data-testid=record-fields]").text
    detail = billed.api.get(f"/api/organisations/{billed.org}/usage/records/{records[first]['id']}").json()
    for value in (detail["id"], billed.tenant.key_id, billed.org, detail["provider_request_id"] or "—"):
        assert value in fields
    assert page.find("[data-testid=record-cost]").text.startswith(usd(detail["total_cost_nanos_usd"]))
    for card in ("token_details", "billing", "provider_usage", "routing", "metadata"):
        assert bool(page.all(f'[data-card="{card}"]')) == bool(detail[card]), card
    assert int(Decimal(detail["billing"]["input_cost_nanos_usd"])) > 0


def test_filters_narrow_the_table_and_say_when_nothing_matches(
    page: Page, sign_in: SignIn, billed: Billed
) -> None:
    """The status filter, a key link and the empty state of a filter that matches nothing."""
    sign_in(billed.admin).open(f"/o/{billed.org}/usage?status=error")
    page.wait_text("No usage record matches", "[data-testid=empty]")
    page.click_text("Clear filters", "a")
    page.find("table[data-testid=usage-table]")
    page.click(f'a[href="?api_key_id={billed.tenant.key_id}"]')
    page.wait_path(lambda p: "api_key_id=" in p)
    shown = {r.get_attribute("data-request-id") for r in page.all("tbody tr")}
    assert set(billed.request_ids) <= shown


def test_analytics_counts_the_calls_and_breaks_them_down(page: Page, sign_in: SignIn, billed: Billed) -> None:
    """KPI cards match the records; a breakdown by model and cost shows the model's total cost."""
    records = billed.records()
    total = sum(r["total_cost_nanos_usd"] for r in records)
    sign_in(billed.admin).open(f"/o/{billed.org}/analytics?range=7d")
    assert page.find("[data-testid=kpi-requests] .value").text == str(len(records))
    assert page.find("[data-testid=kpi-cost] .value").text == usd(total)
    assert page.all("figure.chart svg[role=img] title")
    page.fill({"metric": "cost", "group_by": "model"}).click('form[aria-label="Breakdown"] [type="submit"]')
    page.wait_path(lambda p: "metric=cost" in p)
    row = page.find("table[data-testid=breakdown] tbody tr")
    assert billed.tenant.model in row.text
    assert usd(total) in row.text


def test_the_audit_log_shows_the_key_creation(page: Page, sign_in: SignIn, billed: Billed) -> None:
    """A key created through the API is an audit event, found again with the filters."""
    created = billed.api.post(f"/api/organisations/{billed.org}/apikeys", json={"name": "audited key"})
    assert created.status_code == 201, created.text
    key_id = created.json()["id"]
    sign_in(billed.admin).open(f"/o/{billed.org}/audit")
    page.find("table[data-testid=audit-table]")
    rows = [r for r in page.all("tbody tr") if key_id in r.text and "api keys" in r.text]
    assert len(rows) == 1
    assert "create" in rows[0].text
    assert billed.api.email in rows[0].text
    page.fill({"action": "create", "resource_type": "api_keys", "resource_id": key_id}).submit(
        'form[role="search"]'
    )
    page.wait_path(lambda p: "resource_type=api_keys" in p)
    rows = page.all("table[data-testid=audit-table] tbody tr")
    assert len(rows) == 1
    assert key_id in rows[0].text
    page.fill({"action": "delete"}).submit('form[role="search"]')
    page.wait_text("No change matches", "[data-testid=empty]")


def test_a_bad_request_id_is_refused_beside_its_field(page: Page, sign_in: SignIn, billed: Billed) -> None:
    """A request id with characters no request id has: the error shows next to the search field."""
    sign_in(billed.admin).open(f"/o/{billed.org}/usage?q=not%20an%20id")
    assert "letters, digits" in page.error_for("q")
    assert not page.all("table[data-testid=usage-table]")


def test_a_user_reads_only_their_own_usage_and_no_audit_log(
    page: Page, sign_in: SignIn, billed: Billed, console: ControlPlaneUnderTest
) -> None:
    """A USER sees none of the organisation key's records, and the audit log is refused as a page."""
    user = password_account(console, Role.USER, billed.org)
    sign_in(user).open(f"/o/{billed.org}/usage")
    page.wait_text("No usage yet", "[data-testid=empty]")
    page.open(f"/o/{billed.org}/audit")
    page.wait_text("Not allowed", "h1")


def test_filtered_records_lead_to_their_analytics(page: Page, sign_in: SignIn, billed: Billed) -> None:
    """From records filtered by a key, the analytics link keeps the filter, across a new breakdown too."""
    count = len(billed.records())
    sign_in(billed.admin).open(f"/o/{billed.org}/usage?api_key_id={billed.tenant.key_id}&status=")
    page.click_text("Analytics of these records →", "a")
    page.wait_path(lambda p: p.startswith(f"/o/{billed.org}/analytics?"))
    assert billed.tenant.key_id in page.find("[data-testid=analytics-filters]").text
    assert page.find("[data-testid=kpi-requests] .value").text == str(count)
    page.fill({"group_by": "api_key"}).click('form[aria-label="Breakdown"] [type="submit"]')
    page.wait_path(lambda p: "group_by=api_key" in p)
    assert f"api_key_id={billed.tenant.key_id}" in page.path
    page.open(f"/o/{billed.org}/analytics?model=no-such-model")
    assert page.find("[data-testid=kpi-requests] .value").text == "0"
