"""Signing in and out in a real browser: the form, redirects, the forced password change, the nav by role."""

from __future__ import annotations

from odock.tenancy.tables import Role
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.identity import Account, password_account


def test_a_page_asks_for_sign_in_and_returns_to_it(page: Page, org_admin: tuple[str, Account]) -> None:
    org_id, account = org_admin
    page.open(f"/o/{org_id}")
    assert page.path == f"/sign-in?next=%2Fo%2F{org_id}"
    page.fill({"email": account.email, "password": "not the password"}).submit()
    page.wait_text("e-mail or password", "[data-form-error]")
    page.fill({"password": account.password}).submit()
    assert page.wait_path(lambda p: p == f"/o/{org_id}") == f"/o/{org_id}"
    page.wait_text("Dashboard", "h1")
    nav = page.find("nav#sidebar").text
    for entry in ("API keys", "Providers", "Models", "Users", "Budgets", "Invoices", "Audit log"):
        assert entry in nav


def test_sign_out_ends_the_session(page: Page, sign_in: SignIn, org_admin: tuple[str, Account]) -> None:
    org_id, account = org_admin
    sign_in(account).open(f"/o/{org_id}")
    page.click("[data-sign-out]")
    page.wait_path(lambda p: p.startswith("/sign-in"))
    page.open(f"/o/{org_id}")
    assert page.path.startswith("/sign-in?next=")


def test_a_forced_password_change_comes_first(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest
) -> None:
    org = console.admin.post("/api/admin/organisations", json={"name": "forced-change"}).json()
    account = password_account(console, Role.ORG_ADMIN, org["id"], must_change_password=True)
    sign_in(account).open(f"/o/{org['id']}")
    assert page.path == "/password"
    page.fill({"current_password": account.password, "new_password": "short"}).submit()
    assert page.error_for("new_password")
    page.fill({"new_password": "a much longer new password"}).submit()
    page.wait_path(lambda p: p == f"/o/{org['id']}")
    page.wait_text("Dashboard", "h1")


def test_a_user_sees_self_service_pages_only(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    org_id, _ = org_admin
    user = password_account(console, Role.USER, org_id)
    sign_in(user).open(f"/o/{org_id}")
    nav = page.find("nav#sidebar").text
    for shown in ("Playground", "Usage", "API keys"):
        assert shown in nav
    for hidden in ("Providers", "Users", "Settings", "Audit log", "Teams"):
        assert hidden not in nav
    page.open("/admin")
    page.wait_text("Not allowed", "h1")
    assert "forbidden" in page.body_text()


def test_an_unknown_page_is_a_page_not_json(page: Page) -> None:
    page.open("/o/nothing-here/no-such-page")
    page.wait_text("Not found", "h1")


def test_the_console_fits_a_phone(page: Page, sign_in: SignIn, org_admin: tuple[str, Account]) -> None:
    org_id, account = org_admin
    sign_in(account).open(f"/o/{org_id}")
    page.driver.set_window_size(390, 844)
    assert not page.find("nav#sidebar").is_displayed() if page.all("nav#sidebar.open") else True
    page.click("[data-nav-toggle]")
    page.find("nav#sidebar.open")
    width = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390 + 1, f"the page is {width}px wide at phone width"
