"""The Teams pages in a real browser: create, members, policies, rename and delete, a manager's view."""

from __future__ import annotations

from selenium.webdriver.common.keys import Keys

from odock.tenancy.tables import Role
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.console_people import accept_confirm, submit_and_reload
from tests.support.identity import Account, password_account
from tests.support.usage_records import seed, usage_row


def _members(console: ControlPlaneUnderTest, org_id: str, team_id: str) -> list[tuple[str, str]]:
    answer = console.admin.get(f"/api/organisations/{org_id}/teams/{team_id}/members").json()
    return [(m["user_id"], m["role"]) for m in answer["items"]]


def test_create_a_team_add_a_member_and_set_a_rate_limit(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """New team → its page; a member is added with a role; a bad limit is shown beside its field."""
    org_id, admin = org_admin
    member = password_account(console, Role.USER, org_id)
    sign_in(admin).open(f"/o/{org_id}/teams")
    page.wait_text("No team yet", "[data-testid=empty]")
    page.fill({"name": "Platform"}, "#new-team")
    page.field("name", "#new-team").send_keys(Keys.ENTER)  # the keyboard submits the form
    path = page.wait_path(lambda p: p.startswith(f"/o/{org_id}/teams/") and p != f"/o/{org_id}/teams/")
    team_id = path.rsplit("/", 1)[1]
    page.wait_text("Platform", "[data-testid=team-name]")
    assert "no member yet" in page.find("[data-testid=empty]").text

    page.fill({"user_id": member.user_id, "role": "MEMBER"}, "#add-member").submit("#add-member")
    page.wait_text(member.email, f"tr[data-member='{member.email}']")
    assert _members(console, org_id, team_id) == [(member.user_id, "MEMBER")]

    page.fill({"ratelimit.requests.per_second": "-3"}, "#team-policy").submit("#team-policy")
    assert page.error_for("ratelimit.requests.per_second")
    page.fill({"ratelimit.requests.per_second": "5", "ratelimit.requests.per_minute": "120"}, "#team-policy")
    submit_and_reload(page, "#team-policy")
    assert page.field("ratelimit.requests.per_second", "#team-policy").get_attribute("value") == "5"
    assert page.all("[data-error-for='ratelimit.requests.per_second']")[0].text == ""
    stored = console.admin.get(f"/api/organisations/{org_id}/teams/{team_id}/policies").json()
    assert stored["ratelimit"]["requests"]["per_second"] == 5
    assert stored["ratelimit"]["requests"]["per_minute"] == 120

    # What the team owns: its keys, its recent usage, its budgets.
    key = console.admin.post(
        f"/api/organisations/{org_id}/apikeys",
        json={"name": "platform key", "type": "TEAM", "team_id": team_id},
    ).json()
    budget = {"name": "platform monthly", "amount_usd": "25", "owner_type": "TEAM", "owner_id": team_id}
    assert console.admin.post(f"/api/organisations/{org_id}/budgets", json=budget).status_code == 201
    seed(console.gateway, [usage_row(org_id, team_id=team_id, model="team-model-x", api_key_id=key["id"])])
    page.open(f"/o/{org_id}/teams/{team_id}")
    assert key["preview"] in page.find("[data-testid=team-keys]").text
    assert "team-model-x" in page.find("[data-testid=team-usage]").text
    assert "$25.00" in page.find("[data-testid=team-budgets]").text
    assert page.find("a[href$='/keys/new?team_id=" + team_id + "']").text == "Create team key"

    page.open(f"/o/{org_id}/teams?q=platf")
    page.wait_text("Platform", "tr[data-team='Platform']")
    page.open(f"/o/{org_id}/teams?q=nothing-like-it")
    page.wait_text("No team matches", "[data-testid=empty]")


def test_rename_remove_a_member_and_delete_a_team(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """Rename shows the new name; removing a member keeps their keys (and says so); delete leaves the list."""
    org_id, admin = org_admin
    member = password_account(console, Role.USER, org_id)
    team = console.admin.post(f"/api/organisations/{org_id}/teams", json={"name": "Old name"}).json()
    console.admin.post(
        f"/api/organisations/{org_id}/teams/{team['id']}/members", json={"user_id": member.user_id}
    )
    key = console.admin.post(
        f"/api/organisations/{org_id}/apikeys",
        json={"name": "member key", "type": "USER", "user_id": member.user_id},
    )
    assert key.status_code == 201, key.text
    sign_in(admin).open(f"/o/{org_id}/teams/{team['id']}")
    page.fill({"name": "New name"}, "#team-rename").submit("#team-rename")
    page.wait_text("New name", "[data-testid=team-name]")

    page.click(f"[aria-label='Remove {member.email}']")
    assert "keys keep working" in accept_confirm(page)
    page.wait_text("no member yet", "[data-testid=empty]")
    assert _members(console, org_id, team["id"]) == []
    still = console.admin.get(f"/api/organisations/{org_id}/apikeys/{key.json()['id']}").json()
    assert still["revoked"] is False

    page.click_text("Delete team", "button")
    accept_confirm(page)
    page.wait_path(lambda p: p == f"/o/{org_id}/teams")
    assert console.admin.get(f"/api/organisations/{org_id}/teams/{team['id']}").status_code == 404


def test_a_manager_manages_only_the_teams_they_manage(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A MANAGER renames and sets policies of their team; another team is read-only; no "New team"."""
    org_id, _ = org_admin
    manager = password_account(console, Role.MANAGER, org_id)
    teams = console.admin
    mine = teams.post(f"/api/organisations/{org_id}/teams", json={"name": "Mine"}).json()
    other = teams.post(f"/api/organisations/{org_id}/teams", json={"name": "Other"}).json()
    teams.post(
        f"/api/organisations/{org_id}/teams/{mine['id']}/members",
        json={"user_id": manager.user_id, "role": "MANAGER"},
    )
    sign_in(manager).open(f"/o/{org_id}/teams")
    assert "you manage it" in page.wait_text("Mine", "tr[data-team='Mine']").text
    assert "you manage it" not in page.find("tr[data-team='Other']").text
    assert not page.all("#new-team")

    page.open(f"/o/{org_id}/teams/{other['id']}")
    page.wait_text("Other", "[data-testid=team-name]")
    assert not page.all("#team-rename")
    assert not page.all("#team-policy")
    assert "No limit" in page.find("[data-testid=team-policy]").text

    page.open(f"/o/{org_id}/teams/{mine['id']}")
    assert not page.all("button.danger")  # deleting teams is for organisation admins
    page.fill({"ratelimit.tokens.per_minute": "1000"}, "#team-policy")
    submit_and_reload(page, "#team-policy")
    assert page.field("ratelimit.tokens.per_minute", "#team-policy").get_attribute("value") == "1000"
    stored = console.admin.get(f"/api/organisations/{org_id}/teams/{mine['id']}/policies").json()
    assert stored["ratelimit"]["tokens"]["per_minute"] == 1000
    page.fill({"name": "Mine, renamed"}, "#team-rename").submit("#team-rename")
    page.wait_text("Mine, renamed", "[data-testid=team-name]")


def test_the_team_page_fits_a_phone(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """At 390 px the team page (members, the policies form) has no sideways scroll."""
    org_id, admin = org_admin
    member = password_account(console, Role.USER, org_id)
    team = console.admin.post(f"/api/organisations/{org_id}/teams", json={"name": "Phone"}).json()
    console.admin.post(
        f"/api/organisations/{org_id}/teams/{team['id']}/members", json={"user_id": member.user_id}
    )
    page.driver.set_window_size(390, 844)
    sign_in(admin).open(f"/o/{org_id}/teams/{team['id']}")
    page.find("#team-policy")
    width = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 391, f"the page is {width}px wide at phone width"
    assert page.find(f"tr[data-member='{member.email}']").is_displayed()
