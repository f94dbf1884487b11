"""The admin workspace's gateway-health page, in a real browser."""

from __future__ import annotations

from odock.tenancy.tables import Role
from tests.conftest import BACKEND
from tests.integration.api.test_dead_letters import dead_letter, refused_event
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.identity import Account, password_account


def test_a_super_admin_sees_the_database_cache_queue_and_dead_letters(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest
) -> None:
    """From the admin workspace's navigation: each part with its state; a new dead letter is counted."""
    admin = password_account(console, Role.SUPER_ADMIN)
    sign_in(admin).open("/admin")
    page.click_text("Gateway health", "a")
    page.wait_path(lambda path: path == "/admin/health")
    assert page.find("[data-testid=status-database]").text == "OK"
    assert "at head" in page.find("[data-testid=database]").text
    cache = page.find("[data-testid=cache]").text
    assert ("Redis" if BACKEND == "production" else "embedded (in-process)") in cache
    assert page.find("[data-testid=status-cache]").text == "OK"
    assert page.find("[data-testid=queued]").text.isdigit()
    assert "Backlogged\nno" in page.find("[data-testid=usage-queue]").text
    before = int(page.find("[data-testid=dead-letter-count]").text.replace(",", ""))

    dead_letter(console, refused_event(console.organisation()))
    page.click_text("Check again", "a")
    page.wait_text(f"{before + 1:,}", "[data-testid=dead-letter-count]")
    assert page.find("[data-testid=status-dead-letters]").text == "Degraded"
    assert page.find("[data-testid=status-overall]").text == "Degraded"
    assert "wait for a replay" in page.find("[data-testid=dead-letters]").text


def test_an_org_admin_has_no_link_and_is_refused_the_page(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account]
) -> None:
    """No admin workspace link in an org admin's console, and the typed-in URL is the 403 page."""
    org_id, account = org_admin
    sign_in(account).open(f"/o/{org_id}")
    assert not page.all('a[href="/admin"]')
    assert not page.all('a[href="/admin/health"]')
    page.open("/admin/health")
    page.wait_text("Not allowed", "h1")
    assert "forbidden" in page.body_text()
    assert not page.all("[data-testid=database]")
