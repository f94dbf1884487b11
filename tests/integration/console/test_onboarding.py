"""Getting in for the first time, in a real browser: the first-start link, bootstrap admin, invitations."""

from __future__ import annotations

import logging
import re
import secrets
from urllib.parse import urlsplit

import httpx
import pytest
from selenium.webdriver.remote.webdriver import WebDriver
from sqlalchemy import select

from odock.identity.accounts import create_password_user, passwords_for
from odock.tenancy.tables import Role, User, UserStatus
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.console_identity import EmptyInstall, browser_at
from tests.support.console_identity import empty_install as empty_install
from tests.support.identity import Account

GOOD_PASSWORD = "a long enough first password"


def _users(gateway: object) -> list[User]:
    async def read() -> list[User]:
        async with gateway.runtime.sessions() as session:  # type: ignore[attr-defined]
            return list((await session.execute(select(User))).scalars())

    return gateway.run(read())  # type: ignore[attr-defined,no-any-return]


def _link_path(url: str | None) -> str:
    assert url is not None, "no first-start link was issued"
    path = urlsplit(url).path
    assert re.fullmatch(r"/welcome/[A-Za-z0-9_-]{20,}", path), url
    return path


def test_the_first_start_link_makes_the_first_super_admin(
    chromium: WebDriver, empty_install: EmptyInstall, caplog: pytest.LogCaptureFixture
) -> None:
    """An empty install prints a one-time link beside the demo key; it leads to the admin workspace."""
    caplog.set_level(logging.INFO, logger="odock.demo")
    with empty_install(demo=True) as install:
        gateway = install.gateway
        link = _link_path(gateway.app.welcome_url)
        banner = "\n".join(r.getMessage() for r in caplog.records if r.name == "odock.demo")
        assert gateway.app.welcome_url in banner
        assert "Demo API key" in banner
        assert _users(gateway) == []

        # A restart while still no user exists replaces the link: the old one is a 404 page.
        gateway = install.restart()
        old, link = link, _link_path(gateway.app.welcome_url)
        assert old != link
        page = browser_at(chromium, gateway.base_url)
        page.open(old)
        page.wait_text("Not found", "h1")

        page.open(link)
        page.wait_text("Welcome to Odock", "h1")
        page.fill({"email": "First.Admin@Example.test", "name": "First Admin", "password": "too short"})
        page.submit()
        assert "at least 12" in page.error_for("password")
        page.fill({"password": GOOD_PASSWORD}).submit()
        page.wait_path(lambda p: p == "/admin")
        page.wait_text("Organisations", "h1")
        assert "first.admin@example.test" in page.find("[data-testid=who]").text
        assert "demo" in page.find("table").text  # the seeded demo organisation is there to open

        (admin,) = _users(gateway)
        assert (admin.email, admin.name, admin.role, admin.status, admin.organisation_id) == (
            "first.admin@example.test",
            "First Admin",
            Role.SUPER_ADMIN,
            UserStatus.ACTIVE,
            None,
        )
        # It worked once: the page is gone and the API refuses the token, in the API's error shape.
        page.open(link)
        page.wait_text("Not found", "h1")
        token = link.rsplit("/", 1)[1]
        with httpx.Client(base_url=gateway.base_url) as client:
            body = {"token": token, "email": "x@example.test", "password": GOOD_PASSWORD}
            again = client.post("/api/auth/welcome", json=body)
            assert again.status_code == 404, again.text
            assert again.json()["error"]["code"] == "not_found"
            signed_in = client.post("/api/auth/login", json={"email": admin.email, "password": GOOD_PASSWORD})
            assert signed_in.status_code == 200
        assert len(_users(gateway)) == 1

        # Once a user exists, a restart issues no link.
        assert install.restart().app.welcome_url is None


def test_guessing_at_the_first_start_link_is_throttled(empty_install: EmptyInstall) -> None:
    """Wrong tokens count like failed sign-ins: past the limit the API answers 429, even for the right one."""
    with empty_install(login_max_failures=3) as install:
        gateway = install.gateway
        token = _link_path(gateway.app.welcome_url).rsplit("/", 1)[1]
        body = {"email": "a@example.test", "password": GOOD_PASSWORD}
        with httpx.Client(base_url=gateway.base_url) as client:
            codes = [client.post("/api/auth/welcome", json={**body, "token": f"guess-{i}"}) for i in range(3)]
            assert [c.status_code for c in codes] == [404, 404, 404]
            refused = client.post("/api/auth/welcome", json={**body, "token": token})
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "login_throttled"
        assert _users(gateway) == []


def test_with_a_bootstrap_admin_the_first_visit_changes_its_password(
    chromium: WebDriver, empty_install: EmptyInstall
) -> None:
    """The configured bootstrap admin signs in and must choose a new password; no link is issued."""
    email, password = "boot@example.test", "bootstrap password 1"
    settings = {"bootstrap_admin_require_password_change": True}
    with empty_install(bootstrap_admin_email=email, bootstrap_admin_password=password, **settings) as install:
        gateway = install.gateway
        assert gateway.app.welcome_url is None
        page = browser_at(chromium, gateway.base_url)
        page.open("/admin")
        page.wait_path(lambda p: p.startswith("/sign-in"))
        page.fill({"email": email, "password": password}).submit()
        page.wait_path(lambda p: p == "/password")
        page.wait_text("Choose a new password", "h1")
        page.fill({"current_password": password, "new_password": "the new bootstrap password"}).submit()
        page.wait_path(lambda p: p == "/admin")
        page.wait_text("Organisations", "h1")
        (admin,) = _users(gateway)
        assert admin.role is Role.SUPER_ADMIN
        assert not admin.must_change_password


def _invite(console: ControlPlaneUnderTest, org_id: str, role: str = "MANAGER") -> dict[str, str]:
    email = f"invitee-{secrets.token_hex(4)}@example.test"
    body = {"email": email, "role": role}
    answer = console.admin.post(f"/api/organisations/{org_id}/invitations", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_an_invitation_is_accepted_in_the_browser(
    page: Page, console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """The link shows the offer; name and password make an active account, signed in, at the dashboard."""
    org_id, _ = org_admin
    org_name = console.admin.get(f"/api/organisations/{org_id}").json()["name"]
    invited = _invite(console, org_id)
    link = urlsplit(invited["invite_url"]).path
    page.open(link)
    page.wait_text("You are invited", "h1")
    offer = page.find("[data-testid=invitation]").text
    for shown in (invited["email"], org_name, "manager", "PENDING"):
        assert shown in offer
    page.fill({"name": "Ivy Invitee", "password": "short"}).submit()
    assert "at least 12" in page.error_for("password")
    page.fill({"password": GOOD_PASSWORD}).submit()
    page.wait_path(lambda p: p == f"/o/{org_id}")
    page.wait_text("Dashboard", "h1")
    assert invited["email"] in page.find("[data-testid=who]").text

    users = console.admin.get(f"/api/organisations/{org_id}/users", params={"q": invited["email"]}).json()
    (user,) = users["items"]
    assert (user["name"], user["role"], user["status"]) == ("Ivy Invitee", "MANAGER", "ACTIVE")
    # API clients still get JSON from the same link; a browser now sees that it was used.
    assert console.client().get(link).json()["status"] == "ACCEPTED"
    page.open(link)
    page.wait_text("This invitation is accepted", "h1")
    assert not page.all("form[data-api-form]")


def test_closed_and_unknown_invitation_links_say_so(page: Page, console: ControlPlaneUnderTest) -> None:
    """A revoked link shows its status and no form; an unknown one a clear 404 page."""
    org = console.admin.post("/api/admin/organisations", json={"name": f"inv-{secrets.token_hex(3)}"}).json()
    invited = _invite(console, org["id"], role="USER")
    revoked = console.admin.post(f"/api/organisations/{org['id']}/invitations/{invited['id']}/revoke")
    assert revoked.status_code == 200
    page.open(urlsplit(invited["invite_url"]).path)
    page.wait_text("This invitation is revoked", "h1")
    assert page.find("[data-testid=invitation-status]").text == "REVOKED"
    assert not page.all("form[data-api-form]")

    with httpx.Client(base_url=console.base_url) as client:
        answer = client.get("/invite/no-such-token", headers={"Accept": "text/html"})
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("text/html")
    page.open("/invite/no-such-token")
    page.wait_text("This invitation link does not work", "h1")


def test_a_signed_in_invitee_joins_without_a_password(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """An account that already holds the invited address (e.g. from GitHub sign-in) joins with one click."""
    org_id, _ = org_admin
    invited = _invite(console, org_id, role="USER")
    settings = console.gateway.runtime.settings
    console.gateway.run(
        create_password_user(
            console.gateway.runtime.sessions,
            passwords_for(settings),
            email=invited["email"],
            password=GOOD_PASSWORD,
            role=Role.USER,
            organisation_id=None,
        )
    )
    sign_in(Account("", invited["email"], GOOD_PASSWORD)).open(urlsplit(invited["invite_url"]).path)
    page.wait_text(f"signed in as {invited['email']}", "main")
    assert not page.all("[name=password]")
    page.submit()
    page.wait_path(lambda p: p == f"/o/{org_id}")
    page.wait_text("Dashboard", "h1")
    user = console.admin.get(f"/api/organisations/{org_id}/users", params={"q": invited["email"]}).json()
    assert [(u["organisation_id"], u["role"]) for u in user["items"]] == [(org_id, "USER")]
