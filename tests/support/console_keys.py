"""Helpers of the key and budget console tests: a priced tenant on the fake OpenAI, browser chores."""

from __future__ import annotations

from typing import Any

from selenium.webdriver.support import expected_conditions as ec

from odock.tenancy.tables import Role
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.conftest import openai_tenant
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.governance import PRICING
from tests.support.identity import Account, password_account


def priced_openai_tenant(console: ControlPlaneUnderTest, fake: FakeOpenAI) -> tuple[Any, Account]:
    """A tenant whose model (1 USD per 1K tokens) is served by the fake OpenAI, and its ORG_ADMIN."""
    tenant = openai_tenant(console.gateway, fake, pricing=PRICING)
    return tenant, password_account(console, Role.ORG_ADMIN, tenant.organisation_id)


def set_value(page: Page, name: str, value: str, scope: str = "") -> None:
    """Set a field's value as a person picking it would (date pickers take no typing in headless Chrome)."""
    element = page.field(name, scope)
    page.driver.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
        "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
        element,
        value,
    )


def accept_confirm(page: Page) -> None:
    """Accept the confirmation dialog the last click opened."""
    page.until(ec.alert_is_present(), "a confirmation dialog").accept()


def fits_phone(page: Page) -> None:
    """The page has no horizontal scroll at phone width (tables scroll inside their own box)."""
    page.driver.set_window_size(390, 844)
    width = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 391, f"the page is {width}px wide at phone width"
    page.driver.set_window_size(1280, 900)


UNLABELLED = """
const bad = [];
for (const el of document.querySelectorAll("main input:not([type=hidden]), main select, main textarea")) {
  const named = el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
  if ((el.labels && el.labels.length) || named) continue;
  bad.push(el.name || el.id || el.outerHTML.slice(0, 80));
}
const ids = Array.from(document.querySelectorAll("[id]"), (el) => el.id);
return bad.concat(ids.filter((id, i) => ids.indexOf(id) !== i).map((id) => "duplicate id " + id));
"""


def unlabelled_fields(page: Page) -> list[str]:
    """The form fields of the page's main part that have no label (or share an id, so lose theirs)."""
    return list(page.driver.execute_script(UNLABELLED))
