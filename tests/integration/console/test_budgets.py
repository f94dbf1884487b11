"""Budget and quota pages in a real browser: the wizard, a budget denying the SDK, the consumption card."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import openai
from selenium.webdriver.common.keys import Keys

from odock.budgets.tables import MeterWindow
from odock.tenancy.tables import Role
from odock.web.console.pages import usd
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.conftest import MESSAGES, sdk
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.console_keys import (
    accept_confirm,
    fits_phone,
    priced_openai_tenant,
    set_value,
    unlabelled_fields,
)
from tests.support.identity import Account, password_account

MAX_CALLS = 12


def next_step(page: Page, step: str) -> None:
    """Press the wizard's Next button of ``step`` and wait for the following step."""
    page.click(f'[data-step="{step}"] [data-next]')


def test_a_budget_set_on_a_key_in_the_wizard_denies_the_sdk_and_the_card_shows_the_use(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, fake_openai: FakeOpenAI
) -> None:
    """Owner (the key) → schedule → limits → review creates a budget; calls go on until it denies."""
    tenant, admin = priced_openai_tenant(console, fake_openai)
    org = tenant.organisation_id
    sign_in(admin).open(f"/o/{org}/keys/{tenant.key_id}")
    page.click_text("Add a budget or quota", "a")
    page.wait_path(lambda p: p.startswith(f"/o/{org}/budgets/new"))
    assert page.find('input[name="owner_type"][value="APIKEY"]').is_selected()
    assert page.find("#o-key").get_attribute("value") == tenant.key_id
    assert not page.driver.find_element("css selector", "#f-name").is_displayed()  # one step at a time
    next_step(page, "owner")
    page.fill({"period": "DAILY", "timezone": "UTC"}, '[data-step="schedule"]')
    # Daily windows from a day and a half ago: the current one is half gone, so it has a projection.
    began = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=36)
    set_value(page, "start_at", began.strftime("%Y-%m-%dT%H:%M"))
    next_step(page, "schedule")
    page.fill({"name": "key pocket money", "amount_usd": "0.10", "thresholds": "50, 100"})
    next_step(page, "limits")
    review = page.find("[data-review]").text
    assert "key pocket money" in review
    assert "$0.10" in review
    assert tenant.key_id in review
    page.submit()
    page.wait_path(lambda p: p.startswith(f"/o/{org}/budgets/") and "/new" not in p)
    budget_id = page.path.rsplit("/", 1)[1]
    page.wait_text("key pocket money", "h1")
    assert page.find('[data-testid="used"]').text == "$0.00"
    stored = console.admin.get(f"/api/organisations/{org}/budgets/{budget_id}").json()
    assert (stored["owner_type"], stored["api_key_id"], stored["amount_usd"]) == (
        "APIKEY",
        tenant.key_id,
        "0.1",
    )
    assert stored["thresholds"] == [50, 100]
    assert stored["period"] == "DAILY"
    assert datetime.fromisoformat(stored["start_at"]) == began

    client = sdk(console.gateway, tenant.secret)
    served = 0
    denied: openai.APIStatusError | None = None
    for _ in range(MAX_CALLS):
        try:
            client.chat.completions.create(model=tenant.model, messages=MESSAGES, max_tokens=10)
            served += 1
        except openai.APIStatusError as error:
            denied = error
            break
    assert denied is not None, f"{MAX_CALLS} calls and the budget never denied"
    assert served >= 1
    assert (denied.status_code, denied.code) == (402, "budget_exceeded")
    assert denied.response.json()["error"]["budget_id"] == budget_id

    window = console.admin.get(f"/api/organisations/{org}/budgets/{budget_id}").json()["current_window"]
    assert window["used"] > 0
    page.open(f"/o/{org}/budgets/{budget_id}")
    assert page.find('[data-testid="used"]').text == usd(window["used"])
    assert page.find('[data-testid="remaining"]').text == usd(window["remaining"])
    assert page.find('[data-testid="limit"]').text == "$0.10"
    assert "over the limit" in page.find('[data-testid="projection"]').text
    assert usd(window["used"]) in page.find('[data-testid="windows"]').text
    # The key's page lists the budget.
    page.open(f"/o/{org}/keys/{tenant.key_id}")
    assert "key pocket money" in page.find('[data-testid="key-budgets"]').text


def test_a_quota_from_the_wizard_is_listed_filtered_deactivated_and_deleted(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A quota's schedule dates are read in its time zone; the list filters it; the switch and delete work."""
    org, admin = org_admin
    sign_in(admin).open(f"/o/{org}/budgets?kind=quotas")
    page.wait_text("No quota yet", '[data-testid="empty"]')
    page.click_text("Create a quota", "a")
    page.wait_path(lambda p: p.startswith(f"/o/{org}/budgets/new"))
    next_step(page, "owner")  # the organisation
    page.fill({"period": "WEEKLY", "timezone": "Asia/Tokyo"}, '[data-step="schedule"]')
    set_value(page, "start_at", "2026-01-01T00:00")
    next_step(page, "schedule")
    assert page.find('input[name="kind"][value="quota"]').is_selected()
    page.fill({"name": "weekly tokens", "metric": "TOKENS", "limit": "50000"})
    next_step(page, "limits")
    page.submit()
    page.wait_path(lambda p: p.startswith(f"/o/{org}/budgets/quotas/"))
    quota_id = page.path.rsplit("/", 1)[1]
    page.wait_text("weekly tokens", "h1")
    assert page.find('[data-testid="limit"]').text == "50,000"
    stored = console.admin.get(f"/api/organisations/{org}/quotas/{quota_id}").json()
    assert stored["start_at"].startswith("2025-12-31T15:00:00")  # midnight in Tokyo
    assert (stored["metric"], stored["limit"], stored["timezone"]) == ("TOKENS", 50000, "Asia/Tokyo")

    page.open(f"/o/{org}/budgets?kind=quotas")
    assert "weekly tokens" in page.find('[data-testid="meters"]').text
    page.open(f"/o/{org}/budgets?kind=quotas&period=DAILY")
    page.wait_text("Nothing matches", '[data-testid="empty"]')
    page.open(f"/o/{org}/budgets?kind=quotas&period=WEEKLY&active=true")
    assert "weekly tokens" in page.find('[data-testid="meters"]').text
    fits_phone(page)

    page.open(f"/o/{org}/budgets/quotas/{quota_id}")
    page.click_text("Deactivate", "button")
    accept_confirm(page)
    page.wait_text("inactive", "h1")
    assert console.admin.get(f"/api/organisations/{org}/quotas/{quota_id}").json()["active"] is False
    page.click_text("Delete", "button")
    accept_confirm(page)
    page.wait_path(lambda p: p == f"/o/{org}/budgets?kind=quotas")
    assert console.admin.get(f"/api/organisations/{org}/quotas/{quota_id}").status_code == 404


def test_an_error_of_an_earlier_step_brings_that_step_back(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """The API's field error is shown beside its field, on the step that holds it; the fix is accepted."""
    org, admin = org_admin
    sign_in(admin).open(f"/o/{org}/budgets/new")
    next_step(page, "owner")
    next_step(page, "schedule")
    page.fill({"name": "too vague", "amount_usd": "a lot"})
    next_step(page, "limits")
    page.submit()
    assert page.error_for("amount_usd")
    assert page.find("#f-amount_usd").is_displayed()  # back on the limits step
    page.fill({"amount_usd": "25"})
    next_step(page, "limits")
    page.submit()
    page.wait_path(lambda p: p.startswith(f"/o/{org}/budgets/") and "/new" not in p)
    page.wait_text("$25.00", '[data-testid="limit"]')
    # Edit on the detail page: a new amount is saved through the API.
    page.fill({"amount_usd": "30"}, 'form[data-method="PATCH"]').submit('form[data-method="PATCH"]')
    page.wait_text("$30.00", '[data-testid="limit"]')


def test_a_user_reads_budgets_but_is_offered_no_change(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A USER sees the budgets that limit them, without create, edit or delete; the wizard is refused."""
    org, _ = org_admin
    user = password_account(console, Role.USER, org)
    mine = console.admin.post(
        f"/api/organisations/{org}/budgets",
        json={"name": "my allowance", "owner_type": "USER", "owner_id": user.user_id, "amount_usd": "5"},
    ).json()
    console.admin.post(f"/api/organisations/{org}/budgets", json={"name": "the org's", "amount_usd": "500"})
    sign_in(user).open(f"/o/{org}/budgets")
    assert [a.text for a in page.all('[data-testid="meters"] tbody td:first-child a')] == ["my allowance"]
    assert not page.all('a[href$="/budgets/new"]')
    page.open(f"/o/{org}/budgets/{mine['id']}")
    page.wait_text("my allowance", "h1")
    assert not page.all("[data-api-button]")
    assert not page.all("form[data-api-form]")
    page.open(f"/o/{org}/budgets/new")
    page.wait_text("Not allowed", "h1")


def test_every_field_is_labelled_and_the_wizard_moves_on_with_the_keyboard(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, fake_openai: FakeOpenAI
) -> None:
    """The key and budget pages label every field; Enter on a focused Next button opens the next step."""
    tenant, admin = priced_openai_tenant(console, fake_openai)
    org = tenant.organisation_id
    budget = console.admin.post(
        f"/api/organisations/{org}/budgets", json={"name": "org money", "amount_usd": "100"}
    ).json()
    sign_in(admin)
    for path in (
        f"/o/{org}/keys",
        f"/o/{org}/keys/new",
        f"/o/{org}/keys/{tenant.key_id}",
        f"/o/{org}/budgets",
        f"/o/{org}/budgets/new",
        f"/o/{org}/budgets/{budget['id']}",
    ):
        page.open(path)
        assert unlabelled_fields(page) == [], path

    page.open(f"/o/{org}/budgets/new")
    focused = page.driver.switch_to.active_element
    assert focused.get_attribute("name") == "owner_type"  # the wizard starts on its first choice
    focused.send_keys(Keys.TAB)
    assert page.driver.switch_to.active_element.get_attribute("data-next") is not None
    page.driver.switch_to.active_element.send_keys(Keys.ENTER)
    page.until(lambda _: page.find("#f-period").is_displayed(), "the schedule step")
    assert page.driver.switch_to.active_element.get_attribute("name") == "period"


def test_the_consumption_card_moves_between_windows(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """Previous and next walk the windows that saw use; each shows its own used and remaining."""
    org, admin = org_admin
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3, hours=1)
    quota = console.admin.post(
        f"/api/organisations/{org}/quotas",
        json={
            "name": "daily requests", "metric": "REQUESTS", "limit": 10, "period": "DAILY",
            "start_at": start.isoformat(),
        },
    ).json()  # fmt: skip

    async def used_windows() -> None:  # the ledger's durable copy of two past windows
        async with console.gateway.runtime.sessions() as session:
            for index, used in ((0, 4), (1, 7)):
                begin = start + timedelta(days=index)
                session.add(
                    MeterWindow(
                        key=f"quota:{quota['id']}:v1:w{index}", meter_kind="quota", meter_id=quota["id"],
                        version=1, window_index=index, start=begin, end=begin + timedelta(days=1),
                        limit=10, used=used,
                    )
                )  # fmt: skip
            await session.commit()

    console.gateway.run(used_windows())
    here = f"/o/{org}/budgets/quotas/{quota['id']}"
    sign_in(admin).open(here)
    page.wait_text("Current window", "h2#h-window")
    assert page.find('[data-testid="used"]').text == "0"
    assert len(page.all('[data-testid="windows"] tbody tr')) == 3
    page.click('a[rel="prev"]')
    page.wait_path(lambda p: p == here + "?window=1")
    assert (page.find('[data-testid="used"]').text, page.find('[data-testid="remaining"]').text) == ("7", "3")
    assert not page.all('[data-testid="projection"]')  # a past window has no projection
    page.click('a[rel="prev"]')
    page.wait_path(lambda p: p == here + "?window=0")
    assert page.find('[data-testid="used"]').text == "4"
    assert not page.all('a[rel="prev"]')
    page.click('a[rel="next"]')
    page.wait_path(lambda p: p == here + "?window=1")
    page.click_text("Current window", "a")
    page.wait_path(lambda p: p == here)
    assert page.find('[data-testid="used"]').text == "0"
