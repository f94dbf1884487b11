"""The dashboard in a real browser: traffic and cost after real calls, budgets near their threshold."""

from __future__ import annotations

from odock.tenancy.tables import Role
from odock.web.console.pages import usd
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import PHONE, Page
from tests.support.console_spend import Billed
from tests.support.console_spend import billed as billed  # the module's billed organisation
from tests.support.identity import Account, password_account


def test_the_dashboard_shows_the_calls_and_their_cost(page: Page, sign_in: SignIn, billed: Billed) -> None:
    """Requests, cost, error rate and the top model and key match the recorded calls, on each tab."""
    records = billed.records()
    total = sum(r["total_cost_nanos_usd"] for r in records)
    sign_in(billed.admin).open(f"/o/{billed.org}")
    assert page.find("[data-testid=kpi-requests] .value").text == str(len(records))
    assert page.find("[data-testid=kpi-cost] .value").text == usd(total)
    assert page.find("[data-testid=kpi-errors] .value").text == "0.0%"
    assert "ms" in page.find("[data-testid=kpi-latency] .value").text
    top_model = page.find("table[data-testid=top-models] tbody tr").text
    assert billed.tenant.model in top_model
    assert usd(total) in top_model
    assert f"{len(records)}" in page.find("table[data-testid=top-keys] tbody tr").text
    charts = page.all("figure.chart svg[role=img]")
    assert len(charts) == 4
    assert all(c.get_attribute("aria-labelledby") for c in charts)
    page.click_text("Last 30 days", "a")
    page.wait_path(lambda p: p.endswith("range=30d"))
    assert page.find("[data-testid=kpi-requests] .value").text == str(len(records))


def test_a_budget_past_its_threshold_is_listed(
    page: Page, sign_in: SignIn, billed: Billed, console: ControlPlaneUnderTest
) -> None:
    """A budget whose window passed its alert threshold appears with its share; others do not."""
    cost = billed.records()[0]["total_cost_nanos_usd"]
    near = billed.api.post(
        f"/api/organisations/{billed.org}/budgets",
        json={"name": "nearly spent", "amount_nanos": cost * 20, "thresholds": [5]},
    )
    far = billed.api.post(
        f"/api/organisations/{billed.org}/budgets",
        json={"name": "plenty left", "amount_nanos": cost * 1000, "thresholds": [90]},
    )
    assert near.status_code == far.status_code == 201, near.text + far.text
    billed.call(2)  # both budgets meter these: 2 of 20 calls' worth (10%) and 2 of 1000
    sign_in(billed.admin).open(f"/o/{billed.org}")
    listed = page.find("[data-testid=near-budgets]").text
    assert "nearly spent" in listed
    assert "10% used" in listed
    assert "threshold 5%" in listed
    assert "plenty left" not in listed
    meter = page.find("[data-testid=near-budgets] [role=meter]")
    assert meter.get_attribute("aria-valuenow") == "10"


def test_a_new_organisation_is_told_how_to_start(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account]
) -> None:
    """Without any request the dashboard says to create a key and make a call, and fits a phone."""
    org_id, account = org_admin
    sign_in(account).open(f"/o/{org_id}")
    empty = page.wait_text("Make your first call", "[data-testid=empty]")
    assert "Create an API key" in empty.text
    page.find("[data-testid=no-near-budgets]")
    page.driver.set_window_size(*PHONE)
    width = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0] + 1


def test_a_user_sees_only_their_own_traffic(
    page: Page, sign_in: SignIn, billed: Billed, console: ControlPlaneUnderTest
) -> None:
    """A USER of the organisation (who made no call) sees none of the organisation key's traffic."""
    user = password_account(console, Role.USER, billed.org)
    sign_in(user).open(f"/o/{billed.org}")
    page.wait_text("Make your first call", "[data-testid=empty]")
    assert not page.all("[data-testid=kpi-requests]")
