"""The models pages in a real browser: import from the catalogue, add by hand, pricing per 1M, access."""

from __future__ import annotations

from odock.tenancy.tables import Role
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import PHONE, Page
from tests.support.console_providers import api_provider, api_provider_key
from tests.support.identity import Account, password_account


def test_import_a_model_from_the_catalogue_and_change_its_pricing(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A catalogue model is imported at list prices with the provider's key; its pricing is edited per 1M."""
    org, admin = org_admin
    provider = api_provider(console, org, type="OPENAI", name="openai")
    key = api_provider_key(console, org, provider["id"], "sk-upstream-secret")
    sign_in(admin).open(f"/o/{org}/models")
    page.wait_text("No model yet", "[data-testid=empty]")
    page.fill({"catalogue_provider": provider["id"], "catalogue_q": "gpt-4o"}, "#catalogue")
    page.click_text("Show models", "button")
    rows = page.find("[data-testid=catalogue-models]").text
    assert "gpt-4o-mini" in rows
    assert "claude" not in rows
    assert "$2.50" in rows  # gpt-4o input per 1M
    page.click_text("gpt-4o", "label")
    assert page.field("provider_key_id", "#import-form").get_attribute("value") == key["id"]
    page.submit("#import-form")
    page.wait_text("Created", "[data-import-results]")
    page.click_text("gpt-4o", "a")
    page.wait_text("gpt-4o", "h1")
    card = page.find("[data-testid=pricing]")
    assert card.find_element("css selector", "[data-price=input]").text == "$2.50"
    assert card.find_element("css selector", "[data-price=output]").text == "$10.00"
    assert card.find_element("css selector", "[data-price=cached]").text == "$1.25 (50 % off)"
    model_id = page.path.rsplit("/", 1)[1]
    stored = console.admin.get(f"/api/organisations/{org}/models/{model_id}").json()
    assert stored["provider_key_id"] == key["id"]
    assert stored["pricing"]["input"]["text_cost_per_1k_tokens"] == 0.0025

    page.click_text("Change pricing", "summary")
    page.fill({"input.text": "3", "output.text": "12.5"}, "#pricing-form").submit("#pricing-form")
    page.wait_text("$12.50", "[data-price=output]")
    assert page.find("[data-price=input]").text == "$3.00"
    stored = console.admin.get(f"/api/organisations/{org}/models/{model_id}").json()
    assert stored["pricing_per_1m"]["output"]["text"] == 12.5
    assert stored["pricing"]["output"]["text_cost_per_1k_tokens"] == 0.0125

    page.open(f"/o/{org}/providers/{provider['id']}")
    assert "gpt-4o" in page.find("[data-testid=provider-models]").text
    page.click_text("Update pricing of existing models", "a")
    page.fill({"catalogue_q": "gpt-4o"}, "#catalogue").click_text("Show models", "button")
    assert page.find('#import-form input[value="existing_only"]').is_selected()
    page.click_text("gpt-4o", "label")
    page.click_text("gpt-4o-mini", "label")
    page.submit("#import-form")
    page.wait_text("Pricing updated", "[data-import-results]")
    results = page.find("[data-import-results]").text
    assert "gpt-4o-mini" in results
    assert "Skipped" in results  # gpt-4o-mini is not in the organisation: not created
    assert (
        console.admin.get(f"/api/organisations/{org}/models/{model_id}").json()["pricing_per_1m"]["output"][
            "text"
        ]
        == 10
    )
    names = [m["name"] for m in console.admin.get(f"/api/organisations/{org}/models").json()["items"]]
    assert names == ["gpt-4o"]


def test_add_a_model_by_hand_with_a_field_error(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A negative price is shown beside its field; fixed, the model is created with its pricing and listed."""
    org, admin = org_admin
    provider = api_provider(console, org, type="MISTRAL", name="mistral")
    key = api_provider_key(console, org, provider["id"], "mistral-secret-key")
    sign_in(admin).open(f"/o/{org}/models")
    form = "#add-model-form"
    page.fill({"name": "house-model", "slug": "mistral-small-latest", "provider_id": provider["id"]}, form)
    page.until(
        lambda _: page.field("provider_key_id", form).get_attribute("value") == key["id"], "the key offered"
    )
    page.fill({"pricing.input.text": "-1", "pricing.output.text": "0.3"}, form)
    page.click('#add-model-form input[value="tool_use"]')
    page.submit(form)
    assert "greater than or equal to 0" in page.error_for("pricing.per_1m_tokens.input.text")
    page.fill({"pricing.input.text": "0.1"}, form).submit(form)
    page.wait_path(lambda p: p.startswith(f"/o/{org}/models/"))
    page.wait_text("house-model", "h1")
    assert page.find("[data-price=input]").text == "$0.10"
    model = console.admin.get(f"/api/organisations/{org}/models/{page.path.rsplit('/', 1)[1]}").json()
    assert model["slug"] == "mistral-small-latest"
    assert model["provider_id"] == provider["id"]
    assert model["provider_key_id"] == key["id"]
    assert model["capabilities"] == ["tool_use"]
    assert model["pricing_per_1m"]["output"]["text"] == 0.3

    console.admin.post(f"/api/organisations/{org}/models", json={"name": "other-model", "type": "embeddings"})
    page.open(f"/o/{org}/models")
    page.fill({"q": "house"}, "form[role=search]").click_text("Filter", "button")  # the selects stay "Any"
    page.wait_path(lambda p: "q=house" in p)
    assert "house-model" in page.find("[data-testid=models]").text
    assert "other-model" not in page.find("[data-testid=models]").text
    page.fill({"q": "", "type": "embeddings"}, "form[role=search]").click_text("Filter", "button")
    page.wait_path(lambda p: "type=embeddings" in p)
    assert "other-model" in page.find("[data-testid=models]").text
    assert "house-model" not in page.find("[data-testid=models]").text
    page.fill({"q": "nothing-like-it"}, "form[role=search]").click_text("Filter", "button")
    page.wait_text("No model matches these filters", "[data-testid=empty]")


def test_grant_and_revoke_a_keys_access_and_disable_the_model(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """The access card grants a key the model and revokes it; the switch disables the model."""
    org, admin = org_admin
    model = console.admin.post(f"/api/organisations/{org}/models", json={"name": "granted-model"}).json()
    issued = console.admin.post(f"/api/organisations/{org}/apikeys", json={"name": "team-bot"}).json()
    sign_in(admin).open(f"/o/{org}/models/{model['id']}")
    page.wait_text("No API key may call this model yet", "[data-testid=empty]")
    assert page.find("[data-testid=no-pricing]")
    page.fill({"key": issued["id"]}, "#grant-form").submit("#grant-form")
    page.wait_text("team-bot", "[data-testid=access]")
    grants = console.admin.get(f"/api/organisations/{org}/apikeys/{issued['id']}/models").json()["items"]
    assert [g["id"] for g in grants] == [model["id"]]

    page.driver.execute_script("window.confirm = () => true;")
    page.click_text("Revoke access", "button")
    page.wait_text("No API key may call this model yet", "[data-testid=empty]")
    assert console.admin.get(f"/api/organisations/{org}/apikeys/{issued['id']}/models").json()["items"] == []

    page.click_text("Disable", "button")
    page.wait_text("Disabled", "[data-testid=status]")
    assert console.admin.get(f"/api/organisations/{org}/models/{model['id']}").json()["enabled"] is False


def test_a_user_reads_models_without_changing_them_on_a_phone(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A USER sees the list and a model's pricing but no add, edit or delete, and the page fits 390 px."""
    org, _ = org_admin
    model = console.admin.post(
        f"/api/organisations/{org}/models",
        json={
            "name": "readable",
            "pricing": {"unit": "per_1m_tokens", "input": {"text": 1}, "output": {"text": 2}},
        },
    ).json()
    user = password_account(console, Role.USER, org)
    sign_in(user)
    page.driver.set_window_size(*PHONE)
    page.open(f"/o/{org}/models")
    assert "readable" in page.find("[data-testid=models]").text
    assert not page.all("#add-model-form")
    assert not page.all("#catalogue")
    width = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0] + 1, f"the page is {width}px wide at phone width"
    page.open(f"/o/{org}/models/{model['id']}")
    assert page.find("[data-price=output]").text == "$2.00"
    assert not page.all("#model-form")
    assert not page.all("#pricing-form")
    assert "Delete model" not in page.body_text()


def test_edit_page_through_and_delete_models(
    page: Page, sign_in: SignIn, org_admin: tuple[str, Account], console: ControlPlaneUnderTest
) -> None:
    """A model is renamed and its capabilities cleared; the list pages by cursor; a deleted model is gone."""
    org, admin = org_admin
    for name in ("first", "second", "third"):
        body = {"name": name, "capabilities": ["vision"]}
        model = console.admin.post(f"/api/organisations/{org}/models", json=body).json()
    sign_in(admin).open(f"/o/{org}/models?limit=2")
    assert "third" in page.find("[data-testid=models]").text
    assert "first" not in page.find("[data-testid=models]").text
    page.click("a[rel=next]")
    page.wait_text("first", "[data-testid=models]")
    assert "third" not in page.find("[data-testid=models]").text

    page.open(f"/o/{org}/models/{model['id']}")
    page.click('#model-form input[value="vision"]')
    page.fill({"name": "third-renamed"}, "#model-form").submit("#model-form")
    page.wait_text("third-renamed", "h1")
    stored = console.admin.get(f"/api/organisations/{org}/models/{model['id']}").json()
    assert stored["name"] == "third-renamed"
    assert stored["capabilities"] == []

    page.driver.execute_script("window.confirm = () => true;")
    page.click_text("Delete model", "button")
    page.wait_path(lambda p: p == f"/o/{org}/models")
    assert console.admin.get(f"/api/organisations/{org}/models/{model['id']}").status_code == 404
    assert "third-renamed" not in page.find("[data-testid=models]").text
