"""The Users pages in a real browser: enrollment (invite, resend, revoke), approval, roles, RBAC."""

from __future__ import annotations

import secrets

import httpx
from selenium.webdriver.common.by import By

from odock.tenancy.tables import Role
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.console_people import accept_confirm, pending_user
from tests.support.identity import Account, password_account
from tests.support.identity import sign_in as identity_sign_in
from tests.support.usage_records import seed, usage_row


def _user(console: ControlPlaneUnderTest, org_id: str, email: str) -> dict[str, object]:
    found = console.admin.get(f"/api/organisations/{org_id}/users", params={"q": email}).json()["items"]
    assert len(found) == 1, found
    return dict(found[0])


def test_invite_from_enrollment_and_the_invitee_joins(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """ "Add user" opens the invite form prefilled; the link is shown once; the invitee becomes ACTIVE."""
    org_id, admin = org_admin
    invitee = f"new-{secrets.token_hex(4)}@example.test"
    sign_in(admin).open(f"/o/{org_id}/users?q={invitee}")
    page.wait_text("No user matches", "[data-testid=empty]")
    page.click("[data-testid=add-user]")
    page.wait_path(lambda p: p.startswith(f"/o/{org_id}/users/enrollment"))
    assert page.field("email").get_attribute("value") == invitee
    page.fill({"role": "MANAGER"}).submit("form[data-shows-link]")
    link = page.find("#invite-link").text
    assert link.startswith(console.base_url + "/invite/")
    assert invitee in page.find("#invite-email").text
    page.click("#invite-result [data-copy]")
    page.wait_text("Copied", "#invite-result [data-copy]")
    page.click_text("Refresh the list", "a")
    page.wait_text("Pending", f"tr[data-invitation='{invitee}']")

    page.click("[data-sign-out]")
    page.wait_path(lambda p: p.startswith("/sign-in"))
    page.open(link[len(console.base_url) :])  # the link, in the same browser, signed out
    assert invitee in page.body_text()
    assert "PENDING" in page.body_text()
    token = link.rsplit("/", 1)[1]
    with httpx.Client(base_url=console.base_url) as client:  # the accept page belongs to another area
        accepted = client.post(
            f"/api/invitations/{token}/accept",
            json={"name": "New Manager", "password": "a long new password"},
        )
    assert accepted.status_code == 200, accepted.text

    sign_in(admin).open(f"/o/{org_id}/users?q={invitee}")
    row = page.wait_text("Active", f"tr[data-user='{invitee}']").text
    assert "New Manager" in row
    assert "Manager" in row
    assert _user(console, org_id, invitee)["status"] == "ACTIVE"
    page.open(f"/o/{org_id}/users/enrollment?status=ACCEPTED")
    page.wait_text("Accepted", f"tr[data-invitation='{invitee}']")


def test_resend_gives_a_fresh_link_and_revoke_closes_the_invitation(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """Resend shows a new link (the old one stops working); Revoke, once confirmed, closes it."""
    org_id, admin = org_admin
    email = f"resend-{secrets.token_hex(4)}@example.test"
    issued = console.admin.post(f"/api/organisations/{org_id}/invitations", json={"email": email}).json()
    sign_in(admin).open(f"/o/{org_id}/users/enrollment")
    page.fill({"email": admin.email}, "#invite").submit("#invite form")  # already has an account
    page.wait_text("already exists", "#invite [data-form-error]")
    assert page.all("#invite-result")[0].is_displayed() is False
    page.click(f"tr[data-invitation='{email}'] [aria-label='Resend to {email}']")
    fresh = page.find("#invite-link").text
    assert fresh.startswith(console.base_url + "/invite/")
    assert fresh != issued["invite_url"]
    assert console.admin.get(f"/api/invitations/{issued['token']}").status_code == 404
    assert console.admin.get(f"/api/invitations/{fresh.rsplit('/', 1)[1]}").json()["status"] == "PENDING"

    page.click(f"tr[data-invitation='{email}'] [aria-label='Revoke {email}']")
    assert email in accept_confirm(page)
    page.wait_text("Revoked", f"tr[data-invitation='{email}']")
    stored = console.admin.get(f"/api/organisations/{org_id}/invitations/{issued['id']}").json()
    assert stored["status"] == "REVOKED"


def test_an_admin_approves_a_pending_user(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """The PENDING filter lists the user waiting; Approve makes them ACTIVE."""
    org_id, admin = org_admin
    _, email = pending_user(console, org_id)
    _, declined = pending_user(console, org_id)
    sign_in(admin).open(f"/o/{org_id}/users")
    page.fill({"status": "PENDING"}).click("form[role=search] [type=submit]")
    page.wait_path(lambda p: "status=PENDING" in p)
    page.find(f"tr[data-user='{declined}']")
    assert {r.get_attribute("data-user") for r in page.all("tr[data-user]")} == {email, declined}
    page.click(f"[aria-label='Approve {email}']")
    page.until(lambda _: len(page.all("tr[data-user]")) == 1, "the approved user to leave the PENDING list")
    assert _user(console, org_id, email)["status"] == "ACTIVE"
    page.click(f"[aria-label='Decline {declined}']")
    assert declined in accept_confirm(page)
    page.wait_text("No user matches", "[data-testid=empty]")
    assert _user(console, org_id, declined)["status"] == "REVOKED"
    page.open(f"/o/{org_id}/users?status=ACTIVE")
    page.wait_text("Active", f"tr[data-user='{email}']")


def test_change_a_role_and_see_a_bad_value_beside_its_field(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """The edit form changes the role; a value the API refuses is shown next to the role field."""
    org_id, admin = org_admin
    user = password_account(console, Role.USER, org_id)
    team = console.admin.post(f"/api/organisations/{org_id}/teams", json={"name": "Research"}).json()
    key = console.admin.post(
        f"/api/organisations/{org_id}/apikeys",
        json={"name": "own key", "type": "USER", "user_id": user.user_id},
    ).json()
    budget = {"name": "personal", "amount_usd": "3", "owner_type": "USER", "owner_id": user.user_id}
    assert console.admin.post(f"/api/organisations/{org_id}/budgets", json=budget).status_code == 201
    seed(
        console.gateway, [usage_row(org_id, user_id=user.user_id, model="user-model-y", api_key_id=key["id"])]
    )
    sign_in(admin).open(f"/o/{org_id}/users/{user.user_id}")
    page.wait_text("User", "[data-testid=user-role]")
    assert key["preview"] in page.find("[data-testid=user-keys]").text
    assert "user-model-y" in page.find("[data-testid=user-usage]").text
    assert "personal" in page.find("[data-testid=user-budgets]").text
    page.fill({"role": "MANAGER", "name": "Rosa Role"}, "#user-edit").submit("#user-edit")
    page.wait_text("Manager", "[data-testid=user-role]")
    assert console.user_row(user.user_id).role is Role.MANAGER
    assert page.find("h1").text == "Rosa Role"

    # A value the form does not offer (a stale or forged page): the API's answer, beside the field.
    page.driver.execute_script(
        "const s = document.querySelector('#user-edit [name=role]');"
        "s.add(new Option('OWNER', 'OWNER', true, true));"
    )
    page.submit("#user-edit")
    assert page.error_for("role")
    assert page.find("#user-edit [name=role]").get_attribute("aria-invalid") == "true"
    assert console.user_row(user.user_id).role is Role.MANAGER

    # Teams: add the user to a team as its manager, from their page.
    page.wait_text("Not in any team", "[data-testid=no-teams]")
    page.fill({"team_id": team["id"], "role": "MANAGER"}, "#add-to-team").submit("#add-to-team")
    row = page.wait_text("Research", "[data-testid=user-teams]").text
    assert "Team manager" in row
    members = console.admin.get(f"/api/organisations/{org_id}/teams/{team['id']}/members").json()["items"]
    assert [(m["user_id"], m["role"]) for m in members] == [(user.user_id, "MANAGER")]


def test_a_manager_reads_users_without_managing_them(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A MANAGER sees the users table but no approve, invite or edit; Enrollment is refused."""
    org_id, _ = org_admin
    manager = password_account(console, Role.MANAGER, org_id)
    _, waiting = pending_user(console, org_id)
    sign_in(manager).open(f"/o/{org_id}/users")
    page.wait_text(waiting, f"tr[data-user='{waiting}']")
    assert not page.all("[data-testid=add-user]")
    assert not page.all("button[data-api-button]")
    assert "Enrollment" not in page.find("nav.tabs").text
    page.click(f"[aria-label='Open {waiting}']")
    page.wait_text(waiting, "[data-testid=user-fields]")
    assert not page.all("#user-edit")
    page.open(f"/o/{org_id}/users/enrollment")
    page.wait_text("Not allowed", "h1")


def test_a_user_has_no_users_or_teams_pages(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A USER's navigation hides Users and Teams, and typing their addresses gives the 403 page."""
    org_id, _ = org_admin
    user = password_account(console, Role.USER, org_id)
    sign_in(user).open(f"/o/{org_id}")
    nav = page.find("nav#sidebar").text
    assert "Users" not in nav
    assert "Teams" not in nav
    for path in ("/users", f"/users/{user.user_id}", "/users/enrollment", "/teams"):
        page.open(f"/o/{org_id}{path}")
        page.wait_text("Not allowed", "h1")
        assert "not allowed" in page.find("[data-testid=error-message]").text


def test_the_users_page_fits_a_phone(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """At 390 px the users table scrolls inside its frame and the filters stay reachable."""
    org_id, admin = org_admin
    pending_user(console, org_id)
    page.driver.set_window_size(390, 844)
    sign_in(admin).open(f"/o/{org_id}/users")
    page.find("table[data-testid=users]")
    width = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 391, f"the page is {width}px wide at phone width"
    search = page.driver.find_element(By.ID, "q")
    assert search.is_displayed()


def test_the_pages_answer_like_the_api_for_other_organisations_and_bad_filters(
    console: ControlPlaneUnderTest, org_admin: tuple[str, Account]
) -> None:
    """Blank filters list everything; a bad filter is a 422 page; another organisation's rows are 404."""
    org_id, admin = org_admin
    other_org = console.admin.post("/api/admin/organisations", json={"name": "elsewhere"}).json()["id"]
    stranger = password_account(console, Role.USER, other_org)
    their_team = console.admin.post(f"/api/organisations/{other_org}/teams", json={"name": "Theirs"}).json()
    browser = identity_sign_in(console, admin.email, admin.password)
    blank = browser.get(f"/o/{org_id}/users", params={"q": "", "role": "", "status": ""})
    assert blank.status_code == 200
    assert admin.email in blank.text
    assert browser.get(f"/o/{org_id}/users/enrollment", params={"status": "", "q": ""}).status_code == 200
    assert browser.get(f"/o/{org_id}/teams", params={"q": ""}).status_code == 200
    bad = browser.get(f"/o/{org_id}/users", params={"role": "OWNER"})
    assert bad.status_code == 422
    assert "text/html" in bad.headers["content-type"]
    assert browser.get(f"/o/{org_id}/users/{stranger.user_id}").status_code == 404
    assert browser.get(f"/o/{org_id}/teams/{their_team['id']}").status_code == 404
    assert browser.get(f"/o/{other_org}/users").status_code == 403
