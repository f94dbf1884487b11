"""The providers pages in a real browser: the catalogue, activation, settings, and a browser-encrypted key."""

from __future__ import annotations

import json

import openai

from odock.providers.crypto import EnvelopeDecrypter, KeyPair
from odock.tenancy.tables import Role
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import PHONE, Page
from tests.support.console_providers import api_provider, api_provider_key, sent_requests, spy_on_requests
from tests.support.identity import Account, password_account

UPSTREAM_SECRET = "sk-fake-upstream"


def test_activate_openai_with_a_browser_encrypted_key_and_call_it(
    page: Page,
    sign_in: SignIn,
    org_admin: tuple[str, Account],
    console: ControlPlaneUnderTest,
    fake_openai: FakeOpenAI,
    provider_keypair: KeyPair,
) -> None:
    """The key form posts only an envelope the gateway opens; an SDK call through the gateway uses the key."""
    org, admin = org_admin
    sign_in(admin).open(f"/o/{org}/providers")
    page.wait_text("No provider is activated yet")
    page.click('[data-type="OPENAI"] a.button')
    assert page.field("base_url").get_attribute("value") == "https://api.openai.com/v1/"
    page.fill(
        {"name": "openai-main", "base_url": fake_openai.base_url + "/v1", "timeout_ms": "20000"}, "#activate"
    )
    page.submit("#activate form")
    path = page.wait_path(lambda p: p.startswith(f"/o/{org}/providers/") and "?" not in p)
    provider_id = path.rsplit("/", 1)[1]
    page.wait_text("openai-main", "h1")
    page.wait_text("No provider key yet")

    spy_on_requests(page)
    page.fill({"name": "production", "secret": UPSTREAM_SECRET}, "#add-provider-key")
    page.submit("#add-provider-key")
    row = page.wait_text("production", "[data-testid=provider-keys]")
    assert "encrypted" in row.text

    posted = [r for r in sent_requests(page) if r["method"] == "POST" and r["url"].endswith("/keys")]
    assert len(posted) == 1
    body_text = posted[0]["body"]
    assert UPSTREAM_SECRET not in body_text
    body = json.loads(body_text)
    assert set(body) == {"name", "envelope"}
    envelope = body["envelope"]
    assert envelope["alg"] == "RSA-OAEP-256/A256GCM"
    assert envelope["keyId"] == provider_keypair.key_id
    decrypter = EnvelopeDecrypter(provider_keypair.key_id, provider_keypair.private_pem)
    assert decrypter.open(envelope) == UPSTREAM_SECRET  # the browser's envelope is the server's format

    keys = console.admin.get(f"/api/organisations/{org}/providers/{provider_id}/keys").json()["items"]
    assert [(k["name"], k["encrypted"], k["revoked"]) for k in keys] == [("production", True, False)]
    provider = console.admin.get(f"/api/organisations/{org}/providers/{provider_id}").json()
    assert provider["base_url"] == fake_openai.base_url + "/v1"
    assert provider["timeout_ms"] == 20000

    model = console.admin.post(
        f"/api/organisations/{org}/models",
        json={"name": "gpt-4o", "provider_id": provider_id, "provider_key_id": keys[0]["id"]},
    ).json()
    issued = console.admin.post(
        f"/api/organisations/{org}/apikeys", json={"name": "sdk", "models": [model["id"]]}
    ).json()
    client = openai.OpenAI(base_url=console.base_url + "/v1", api_key=issued["secret"], max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    assert fake_openai.last_request().headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"


def test_provider_settings_show_field_errors_and_a_key_is_revoked(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """Bad JSON and a bad timeout are shown beside their fields; a valid change is saved; a key is revoked."""
    org, admin = org_admin
    provider = api_provider(console, org, type="ANTHROPIC", name="claude")
    api_provider_key(console, org, provider["id"], "sk-ant-secret-value")
    sign_in(admin).open(f"/o/{org}/providers/{provider['id']}")
    form = "#provider-settings"
    page.fill({"config": "{not json"}, form).submit(form)
    assert "not valid JSON" in page.error_for("config")
    page.fill({"config": "{}", "timeout_ms": "99999999"}, form).submit(form)
    assert page.error_for("timeout_ms")
    page.fill({"timeout_ms": "45000"}, form).submit(form)
    page.until(
        lambda _: (
            console.admin.get(f"/api/organisations/{org}/providers/{provider['id']}").json()["timeout_ms"]
            == 45000
        )
    )

    page.open(f"/o/{org}/providers/{provider['id']}")
    table = page.find("[data-testid=provider-keys]").text
    assert "sk-ant-secret-value" not in page.driver.page_source
    assert "Active" in table
    page.driver.execute_script("window.confirm = () => true;")
    page.click_text("Revoke", "button")
    page.wait_text("Revoked", "[data-testid=provider-keys]")
    keys = console.admin.get(f"/api/organisations/{org}/providers/{provider['id']}/keys").json()["items"]
    assert keys[0]["revoked"] is True


def test_the_catalogue_filters_and_configures_and_fits_a_phone(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """Activated types offer Configure, the filter narrows the cards, and the page fits 390 px."""
    org, admin = org_admin
    provider = api_provider(console, org, type="MISTRAL")
    sign_in(admin).open(f"/o/{org}/providers")
    page.fill({"show": "active"}, "form[role=search]").click_text(
        "Filter", "button"
    )  # the search stays empty
    page.wait_path(lambda p: "show=active" in p)
    cards = page.all("[data-testid=catalogue] li")
    assert [c.get_attribute("data-type") for c in cards] == ["MISTRAL"]
    page.click_text("Configure", "a")
    page.wait_path(lambda p: p == f"/o/{org}/providers/{provider['id']}")
    page.open(f"/o/{org}/providers?q=anthro")
    assert [c.get_attribute("data-type") for c in page.all("[data-testid=catalogue] li")] == ["ANTHROPIC"]
    page.driver.set_window_size(*PHONE)
    page.open(f"/o/{org}/providers")
    width = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0] + 1, f"the page is {width}px wide at phone width"


def test_a_user_is_refused_the_providers_pages(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A USER has no reach on providers: the page is a 403 page, not the catalogue."""
    org, _ = org_admin
    provider = api_provider(console, org, type="OPENAI")
    user = password_account(console, Role.USER, org)
    sign_in(user).open(f"/o/{org}/providers")
    page.wait_text("Not allowed", "h1")
    page.open(f"/o/{org}/providers/{provider['id']}")
    page.wait_text("Not allowed", "h1")
    assert "Activate" not in page.body_text()


def test_a_provider_in_use_is_not_deleted_until_its_models_are_gone(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """Deleting a provider a model uses shows the API's refusal on the page; once free it is deleted."""
    org, admin = org_admin
    provider = api_provider(console, org, type="GOOGLE", name="gemini")
    model = console.admin.post(
        f"/api/organisations/{org}/models", json={"name": "gemini-2.5-flash", "provider_id": provider["id"]}
    ).json()
    sign_in(admin).open(f"/o/{org}/providers/{provider['id']}")
    page.driver.execute_script("window.confirm = () => true;")
    page.click_text("Delete provider", "button")
    refusal = page.find(".danger-zone [data-form-error]")
    assert "model" in refusal.text.lower()
    assert console.admin.get(f"/api/organisations/{org}/providers/{provider['id']}").status_code == 200

    console.admin.delete(f"/api/organisations/{org}/models/{model['id']}")
    page.click_text("Delete provider", "button")
    page.wait_path(lambda p: p.startswith(f"/o/{org}/providers") and provider["id"] not in p)
    assert console.admin.get(f"/api/organisations/{org}/providers/{provider['id']}").status_code == 404
