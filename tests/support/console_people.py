"""Helpers of the Users and Teams console tests: pending users, confirm dialogs, API look-ups."""

from __future__ import annotations

import secrets

from selenium.webdriver.support import expected_conditions as ec

from odock.tenancy.tables import User, UserStatus
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page


def pending_user(cp: ControlPlaneUnderTest, organisation_id: str) -> tuple[str, str]:
    """A user of the organisation waiting for approval (as an OAuth sign-up is); its id and e-mail."""
    email = f"pending-{secrets.token_hex(4)}@example.test"

    async def create() -> str:
        user = await cp.gateway.runtime.control.users.create_user(email, organisation_id=organisation_id)
        async with cp.gateway.runtime.sessions() as session:
            row = await session.get(User, user.id)
            assert row is not None
            row.status = UserStatus.PENDING
            await session.commit()
        return str(user.id)

    return str(cp.gateway.run(create())), email


def accept_confirm(page: Page) -> str:
    """Wait for the page's confirm dialog, accept it, and return its text."""
    alert = page.until(ec.alert_is_present(), "a confirm dialog")
    text = str(alert.text)
    alert.accept()
    return text


def row_text(page: Page, css: str, text: str) -> str:
    """Wait until the element ``css`` shows ``text`` and return all of its text."""
    return page.wait_text(text, css).text


def submit_and_reload(page: Page, form: str) -> None:
    """Submit the form ``form`` (CSS) whose success reloads the page, and wait for the new page."""
    element = page.find(form)
    page.submit(form)
    page.until(ec.staleness_of(element), f"the page to reload after {form}")
    page.until(lambda d: d.execute_script("return document.readyState") == "complete")
