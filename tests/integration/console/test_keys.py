"""API key pages in a real browser: the wizard's secret used by the OpenAI SDK, rotate, revoke, RBAC."""

from __future__ import annotations

import openai
import pytest

from odock.tenancy.tables import Role
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.conftest import MESSAGES, assert_error_response, sdk
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.console_keys import accept_confirm, fits_phone, priced_openai_tenant, set_value
from tests.support.identity import Account, password_account


def chat(console: ControlPlaneUnderTest, secret: str, model: str) -> str:
    """One governed chat call with ``secret``; the answer's text."""
    answer = sdk(console.gateway, secret).chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=10
    )
    return answer.choices[0].message.content or ""


def test_a_key_made_in_the_wizard_calls_its_granted_model_with_the_sdk(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, fake_openai: FakeOpenAI
) -> None:
    """The wizard issues a key with a model grant; its secret, shown once, works with the OpenAI SDK."""
    tenant, admin = priced_openai_tenant(console, fake_openai)
    org = tenant.organisation_id
    sign_in(admin).open(f"/o/{org}/keys/new")
    page.fill({"name": "billing service"})
    page.click(f'input[name="models"][value="{tenant.model}"]')
    page.submit()
    panel = page.find("#new-secret")
    assert "shown only once" in panel.text
    secret = page.find('[data-testid="secret"]').text.strip()
    assert secret
    assert "…" not in secret
    page.find("#new-secret [data-copy]")

    assert chat(console, secret, tenant.model)  # the secret from the page is a working key

    page.click_text("Open the key's page", "a")
    page.wait_path(lambda p: p.startswith(f"/o/{org}/keys/") and not p.endswith("/new"))
    key_id = page.path.rsplit("/", 1)[1]
    page.wait_text("billing service", "h1")
    assert tenant.model in page.find('[data-testid="grants"]').text
    assert secret not in page.body_text()  # never shown again
    granted = console.admin.get(f"/api/organisations/{org}/apikeys/{key_id}/models").json()["items"]
    assert [m["name"] for m in granted] == [tenant.model]
    # The key's usage card lists the call just made, and links to the usage page.
    page.open(f"/o/{org}/keys/{key_id}")
    assert tenant.model in page.find('[data-testid="usage"]').text
    assert page.all(f'a[href="/o/{org}/usage?api_key_id={key_id}"]')


def test_rotate_replaces_the_secret_and_revoke_refuses_it(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, fake_openai: FakeOpenAI
) -> None:
    """Rotating shows a new secret once (the old one stops); revoked, the SDK gets 401 api_key_revoked."""
    tenant, admin = priced_openai_tenant(console, fake_openai)
    org = tenant.organisation_id
    old = tenant.secret
    assert chat(console, old, tenant.model)
    sign_in(admin).open(f"/o/{org}/keys/{tenant.key_id}")
    page.submit("form[data-rotate]")
    page.find("#rotated-secret")
    new = page.find("#rotated-secret [data-secret]").text.strip()
    assert new
    assert new != old

    with pytest.raises(openai.AuthenticationError) as refused:
        chat(console, old, tenant.model)
    assert refused.value.status_code == 401
    assert chat(console, new, tenant.model)

    page.click_text("Done: show the rotation history", "a")
    page.wait_text("1", '[data-testid="rotations"] tbody')
    assert admin.email in page.find('[data-testid="rotations"]').text

    page.click_text("Revoke", "button")
    accept_confirm(page)
    page.wait_text("revoked", "h1")
    with pytest.raises(openai.AuthenticationError) as revoked:
        chat(console, new, tenant.model)
    assert_error_response(revoked.value, status=401, code="api_key_revoked")
    assert console.admin.get(f"/api/organisations/{org}/apikeys/{tenant.key_id}").json()["revoked"] is True

    page.click_text("Unrevoke", "button")
    page.wait_text("active", "h1")
    assert chat(console, new, tenant.model)


def test_expiry_is_read_in_its_time_zone_and_a_past_one_is_refused_beside_the_field(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A past expiry is the API's error next to the field; a future one is converted from its time zone."""
    org, admin = org_admin
    sign_in(admin).open(f"/o/{org}/keys/new")
    page.fill({"name": "expiring", "timezone": "Asia/Tokyo"})
    set_value(page, "expires_at", "2020-01-01T09:00")
    page.submit()
    assert "past" in page.error_for("expires_at") or "future" in page.error_for("expires_at")
    assert page.find("form[data-key-wizard]").is_displayed()

    set_value(page, "expires_at", "2031-06-01T09:00")
    page.submit()
    page.find("#new-secret")
    keys = console.admin.get(f"/api/organisations/{org}/apikeys", params={"q": "expiring"}).json()["items"]
    assert len(keys) == 1
    assert keys[0]["expires_at"].startswith("2031-06-01T00:00:00")  # 09:00 in Tokyo is 00:00 UTC
    assert keys[0]["timezone"] == "Asia/Tokyo"
    page.open(f"/o/{org}/keys/{keys[0]['id']}")
    shown = page.find('[data-testid="expires"]').text
    assert "2031-06-01 09:00 JST" in shown
    assert "2031-06-01 00:00 UTC" in shown


def test_the_list_filters_searches_and_pages_with_cursors(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """The key table shows what the API lists: search, the revoked filter, and next-page links."""
    org, admin = org_admin
    sign_in(admin).open(f"/o/{org}/keys")
    page.wait_text("No API key yet", '[data-testid="empty"]')
    made = [
        console.admin.post(f"/api/organisations/{org}/apikeys", json={"name": f"service {n}"}).json()
        for n in range(3)
    ]
    console.admin.post(f"/api/organisations/{org}/apikeys/{made[0]['id']}/revoke")
    page.open(f"/o/{org}/keys?limit=2")
    rows = page.all('[data-testid="keys"] tbody tr')
    assert [r.find_element("css selector", "a").text for r in rows] == ["service 2", "service 1"]
    assert made[2]["preview"] in rows[0].text
    assert made[2]["secret"] not in page.body_text()
    page.click('a[rel="next"]')
    page.wait_text("service 0", '[data-testid="keys"]')
    assert "revoked" in page.find('[data-testid="keys"]').text
    assert not page.all('a[rel="next"]')

    page.open(f"/o/{org}/keys")
    page.fill({"revoked": "true"}).click('form[role="search"] [type="submit"]')
    page.wait_path(lambda p: "revoked=true" in p)
    assert [r.find_element("css selector", "a").text for r in page.all('[data-testid="keys"] tbody tr')] == [
        "service 0"
    ]
    page.open(f"/o/{org}/keys?expired=false&revoked=false")
    assert len(page.all('[data-testid="keys"] tbody tr')) == 2
    page.open(f"/o/{org}/keys?q=service+1")
    assert len(page.all('[data-testid="keys"] tbody tr')) == 1
    page.open(f"/o/{org}/keys?q=nothing-like-it")
    page.wait_text("No key matches", '[data-testid="empty"]')
    page.open(f"/o/{org}/keys")
    fits_phone(page)


def test_a_user_creates_and_sees_only_their_own_keys(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A USER is offered user keys for themselves only, and lists and opens only their own keys."""
    org, _ = org_admin
    user = password_account(console, Role.USER, org)
    other = password_account(console, Role.USER, org)
    theirs = console.admin.post(
        f"/api/organisations/{org}/apikeys",
        json={"name": "someone else's", "type": "USER", "user_id": other.user_id},
    ).json()
    console.admin.post(f"/api/organisations/{org}/apikeys", json={"name": "the organisation's"})

    sign_in(user).open(f"/o/{org}/keys/new")
    assert [r.get_attribute("value") for r in page.all('input[name="type"]')] == ["USER"]
    page.fill({"name": "my laptop"}).submit()
    page.find("#new-secret")

    page.open(f"/o/{org}/keys")
    names = [r.find_element("css selector", "a").text for r in page.all('[data-testid="keys"] tbody tr')]
    assert names == ["my laptop"]
    mine = console.admin.get(f"/api/organisations/{org}/apikeys", params={"q": "my laptop"}).json()["items"]
    assert mine[0]["user_id"] == user.user_id
    assert mine[0]["type"] == "USER"

    page.open(f"/o/{org}/keys/{theirs['id']}")
    page.wait_text("Not allowed", "h1")


def test_a_manager_creates_a_team_key_for_the_team_preselected(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """``?team_id=`` preselects the team; a manager is offered team and own user keys only."""
    org, _ = org_admin
    manager = password_account(console, Role.MANAGER, org)
    team = console.admin.post(f"/api/organisations/{org}/teams", json={"name": "research"}).json()
    console.admin.post(
        f"/api/organisations/{org}/teams/{team['id']}/members",
        json={"user_id": manager.user_id, "role": "MANAGER"},
    ).raise_for_status()
    sign_in(manager).open(f"/o/{org}/keys/new?team_id={team['id']}")
    assert [r.get_attribute("value") for r in page.all('input[name="type"]')] == ["TEAM", "USER"]
    assert page.find('input[name="type"][value="TEAM"]').is_selected()
    assert page.find("#f-team_id").get_attribute("value") == team["id"]
    assert not page.find('[data-owner="TEAM"]').get_attribute("hidden")
    page.fill({"name": "research pipeline"}).submit()
    page.find("#new-secret")
    made = console.admin.get(f"/api/organisations/{org}/apikeys", params={"q": "research pipeline"}).json()
    assert [(k["type"], k["team_id"]) for k in made["items"]] == [("TEAM", team["id"])]
    page.open(f"/o/{org}/keys?team_id={team['id']}")
    assert "team research" in page.find('[data-testid="keys"]').text


def test_policies_and_model_access_are_changed_on_the_key_page(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, fake_openai: FakeOpenAI
) -> None:
    """The key's limits are saved through the API (a bad one shown beside its field); grants come and go."""
    tenant, admin = priced_openai_tenant(console, fake_openai)
    org = tenant.organisation_id
    api = f"/api/organisations/{org}/apikeys/{tenant.key_id}"
    sign_in(admin).open(f"/o/{org}/keys/{tenant.key_id}")
    form = "form[data-policy-form]"
    page.fill({"ratelimit.requests.per_minute": "120", "ip.allowlist": "not-a-network"}, form)
    page.submit(form)
    assert page.error_for("ip.allowlist")
    page.fill({"ip.allowlist": "", "ip.blocklist": "203.0.113.0/24"}, form).submit(form)
    page.until(
        lambda _: console.admin.get(api + "/policies").json()["ratelimit"]["requests"]["per_minute"] == 120
    )
    assert console.admin.get(api + "/policies").json()["ip"]["blocklist"] == ["203.0.113.0/24"]
    page.open(f"/o/{org}/keys/{tenant.key_id}")
    assert page.field("ratelimit.requests.per_minute", form).get_attribute("value") == "120"

    page.click(f'[data-testid="grants"] button[aria-label="Remove {tenant.model}"]')
    accept_confirm(page)
    page.wait_text("may call no model yet", '[data-testid="empty"]')
    assert console.admin.get(api + "/models").json()["items"] == []
    with pytest.raises(openai.APIStatusError):
        chat(console, tenant.secret, tenant.model)
    page.click(f'input[name="models"][value="{tenant.model}"]').click_text("Grant", "button")
    page.wait_text(tenant.model, '[data-testid="grants"]')
    assert chat(console, tenant.secret, tenant.model)
