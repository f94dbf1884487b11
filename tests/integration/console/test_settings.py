"""One's profile and the organisation's settings, in a real browser."""

from __future__ import annotations

import httpx
from selenium.webdriver.support import expected_conditions as ec

from odock.tenancy.tables import Role
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.identity import Account, password_account


def _confirm(page: Page) -> None:
    page.until(ec.alert_is_present(), "the confirmation dialog").accept()


def _submitted_and_reloaded(page: Page, form: str) -> None:
    """Submit ``form`` and wait until the page reloaded (the form of the old page is gone)."""
    old = page.find(form)
    page.submit(form)
    page.until(ec.staleness_of(old), "the page to reload")
    page.until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_profile_shows_the_account_and_edits_the_name(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """The profile shows e-mail, role and organisation; the name is saved through the API."""
    org_id, account = org_admin
    org_name = console.admin.get(f"/api/organisations/{org_id}").json()["name"]
    sign_in(account).open("/profile")
    facts = page.find("[data-testid=me]").text
    for shown in (account.email, "org admin", org_name):
        assert shown in facts
    page.fill({"name": "Olga Admin"}, "form[data-method=PATCH]").submit("form[data-method=PATCH]")
    page.wait_text("Olga Admin", "[data-testid=me]")  # reloaded with the saved value
    assert page.field("name", "form[data-method=PATCH]").get_attribute("value") == "Olga Admin"
    user = console.admin.get(f"/api/organisations/{org_id}/users/{account.user_id}").json()
    assert user["name"] == "Olga Admin"


def test_an_admin_token_is_created_shown_once_used_and_revoked(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """The secret is shown once with a copy button, works as a bearer token, and stops when revoked."""
    _, account = org_admin
    sign_in(account).open("/profile")
    page.wait_text("No admin token yet", "[data-testid=empty]")
    assert not page.all("#new-token")[0].is_displayed()  # no secret box before a token is made
    page.fill({"name": "CI deploy"}, "#token-form").submit("#token-form")
    secret = page.find("[data-testid=token-secret]").text
    assert secret.startswith("odk_admin_"), secret
    page.find("#new-token [data-copy]")
    with httpx.Client(base_url=console.base_url, headers={"Authorization": f"Bearer {secret}"}) as client:
        assert client.get("/api/auth/session").json()["user"]["email"] == account.email
        page.open("/profile")  # the list, reloaded: the token, never its secret
        assert secret not in page.body_text()
        (row,) = page.all("[data-testid=token-row]")
        assert "CI deploy" in row.text
        assert "active" in row.text
        page.click("[data-testid=token-row] button.danger")
        _confirm(page)
        page.wait_text("revoked", "[data-testid=token-row]")
        assert client.get("/api/auth/session").status_code == 401


def test_another_session_is_ended_from_the_profile(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """Two live sessions are listed; ending the other one signs that browser out."""
    _, account = org_admin
    with httpx.Client(base_url=console.base_url) as other:
        login = other.post("/api/auth/login", json={"email": account.email, "password": account.password})
        assert login.status_code == 200
        sign_in(account).open("/profile")
        assert len(page.all("[data-testid=session-row]")) == 2
        assert len(page.all("[data-testid=session-row] .badge.ok")) == 1  # this browser
        page.click("[data-testid=session-row] button[data-method=DELETE]")
        _confirm(page)
        page.until(lambda _: len(page.all("[data-testid=session-row]")) == 1, "one session left")
        assert other.get("/api/auth/session").status_code == 401


def test_settings_edit_the_organisation_and_its_policies(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """Fields and policies are saved through the API; a bad CIDR is shown beside its field."""
    org_id, account = org_admin
    sign_in(account).open(f"/o/{org_id}/settings")
    page.wait_text("Settings", "h1")
    assert org_id in page.find("[data-testid=org-facts]").text
    assert not page.all("#org-form [name=status]")  # status: super admin only
    page.fill({"name": "Renamed Org", "contact": "ops@example.test"}, "#org-form")
    page.click("#f-strict_provider_family")
    _submitted_and_reloaded(page, "#org-form")
    assert page.field("name", "#org-form").get_attribute("value") == "Renamed Org"
    assert page.find("#f-strict_provider_family").is_selected()
    org = console.admin.get(f"/api/organisations/{org_id}").json()
    assert (org["name"], org["contact"], org["strict_provider_family"]) == (
        "Renamed Org",
        "ops@example.test",
        True,
    )

    form = "#policies-form"
    page.fill({"ip.allowlist": "10.0.0.0/8\n10.0.0.300/8", "ratelimit.requests.per_minute": "120"}, form)
    page.submit(form)
    assert "10.0.0.300" in page.error_for("ip.allowlist")
    assert console.admin.get(f"/api/organisations/{org_id}/policies").json()["ip"]["allowlist"] == []
    page.fill({"ip.allowlist": "10.0.0.0/8\n192.168.1.0/24"}, form)
    _submitted_and_reloaded(page, form)
    assert page.field("ip.allowlist", form).get_attribute("value") == "10.0.0.0/8\n192.168.1.0/24"
    assert page.field("ratelimit.requests.per_minute", form).get_attribute("value") == "120"
    policy = console.admin.get(f"/api/organisations/{org_id}/policies").json()
    assert policy["ip"]["allowlist"] == ["10.0.0.0/8", "192.168.1.0/24"]
    assert policy["ratelimit"]["requests"]["per_minute"] == 120


def test_a_super_admin_changes_the_status(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """Only a super admin sees the status; disabling is saved and shown."""
    org_id, _ = org_admin
    admin = password_account(console, Role.SUPER_ADMIN)
    sign_in(admin).open(f"/o/{org_id}/settings")
    page.fill({"status": "DISABLED"}, "#org-form").submit("#org-form")
    page.wait_text("DISABLED", "[data-testid=org-status]")
    assert console.admin.get(f"/api/organisations/{org_id}").json()["status"] == "DISABLED"


def test_managers_and_users_cannot_open_settings(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """The page asks for the PATCH's permission: a MANAGER or a USER gets the 403 page."""
    org_id, _ = org_admin
    for role in (Role.MANAGER, Role.USER):
        page.driver.delete_all_cookies()
        sign_in(password_account(console, role, org_id)).open(f"/o/{org_id}/settings")
        page.wait_text("Not allowed", "h1")
        assert "Settings" not in page.find("nav#sidebar").text


def test_profile_and_settings_fit_a_phone(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """At 390 px nothing is wider than the screen (tables scroll inside their own box)."""
    org_id, account = org_admin
    sign_in(account)
    page.driver.set_window_size(390, 844)
    for path, heading in (("/profile", "Profile"), (f"/o/{org_id}/settings", "Settings")):
        page.open(path).wait_text(heading, "h1")
        width = page.driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390 + 1, f"{path} is {width}px wide at phone width"
