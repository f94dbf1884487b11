"""The playground: a prompt sent as one of the caller's keys streams back through the gateway's pipeline."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from selenium.webdriver.common.keys import Keys

from odock.billing import usd
from odock.tenancy.tables import Role
from tests.conftest import Tenant
from tests.fakes.openai_server import REPLY, USAGE, FakeOpenAI
from tests.integration.conftest import only_usage_record, openai_tenant
from tests.integration.console.conftest import SignIn
from tests.support.api import Caller, ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.identity import password_account

PRICING = {"input": {"text_cost_per_1k_tokens": 0.002}, "output": {"text_cost_per_1k_tokens": 0.008}}
SLOW = "fake-slow-stream"


@pytest.fixture
def tenant(console: ControlPlaneUnderTest, fake_openai: FakeOpenAI) -> Tenant:
    """An organisation served by the fake OpenAI; its key may call a priced model and the slow stream."""
    tenant = openai_tenant(console.gateway, fake_openai, pricing=PRICING)
    org = tenant.organisation_id
    model = console.admin.get(f"/api/organisations/{org}/models/{tenant.model_id}").json()
    console.admin.post(
        f"/api/organisations/{org}/models",
        json={"name": SLOW, "provider_id": tenant.provider_id, "provider_key_id": model["provider_key_id"]},
    ).raise_for_status()
    console.admin.post(
        f"/api/organisations/{tenant.organisation_id}/apikeys/{tenant.key_id}/models", json={"models": [SLOW]}
    ).raise_for_status()
    return tenant


def _chat(caller: Caller, org: str, key_id: str, **body: Any) -> httpx.Response:
    payload = {"model": "test-model", "messages": [{"role": "user", "content": "Say hello."}], **body}
    return caller.post(f"/api/organisations/{org}/apikeys/{key_id}/playground", json=payload)


def test_an_answer_streams_in_and_its_usage_record_is_a_normal_one(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, tenant: Tenant, fake_openai: FakeOpenAI
) -> None:
    """The answer appears while the call runs; the request id shown names the key's usage record."""
    admin = password_account(console, Role.ORG_ADMIN, tenant.organisation_id)
    sign_in(admin).open(f"/o/{tenant.organisation_id}/playground")
    page.wait_text("Playground", "h1")
    assert page.find("#f-key").get_attribute("value") == tenant.key_id

    # A slow stream: text is on the page while the call is still running (Send stays disabled).
    fake_openai.drip_chunks, fake_openai.chunk_delay_seconds = 30, 0.1
    page.fill({"model": SLOW, "prompt": "Count slowly."}, "form[data-playground]")
    page.click("form[data-playground] [data-send]")
    page.until(
        lambda d: (
            "tok tok" in page.find("[data-answer]").text
            and not page.find("form[data-playground] [data-send]").is_enabled()
        ),
        "part of the answer while the stream runs",
    )
    page.until(lambda d: page.find("[data-answer]").text.count("tok") == 30, "the whole answer")
    page.find("[data-call][data-recorded]")

    # A normal answer: the text, the request id, then the usage record's tokens and cost.
    page.fill({"model": tenant.model, "prompt": "Say hello."}, "form[data-playground]")
    page.click("form[data-playground] [data-send]")
    page.wait_text(REPLY, "[data-answer]")
    page.until(lambda d: page.find("[data-record-link] a").text != "", "the usage record link")
    request_id = page.find("[data-request-id]").text
    record = only_usage_record(console.gateway, request_id)
    assert record.api_key_id == tenant.key_id
    assert record.organisation_id == tenant.organisation_id
    assert record.stream is True
    assert record.http_status == 200
    assert record.prompt_tokens == USAGE["prompt_tokens"]
    assert record.total_cost_nanos_usd
    assert page.find("[data-cost]").text == "$" + usd(record.total_cost_nanos_usd)
    assert f"{record.total_tokens} total" in page.find("[data-tokens]").text
    assert page.find("[data-record-link] a").get_attribute("href").endswith(f"/usage/{record.id}")
    call = fake_openai.requests[-1]
    assert call.headers["authorization"] == "Bearer sk-fake-upstream"  # the provider key, not the session


def test_a_user_uses_own_keys_only(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, tenant: Tenant
) -> None:
    """A USER is offered and may use only their own keys; another's key, or the organisation's, is 403."""
    org = tenant.organisation_id
    account = password_account(console, Role.USER, org)
    other = password_account(console, Role.USER, org)
    keys = {}
    for owner in (account, other):
        made = console.admin.post(
            f"/api/organisations/{org}/apikeys",
            json={
                "name": f"key of {owner.email}",
                "type": "USER",
                "user_id": owner.user_id,
                "models": ["test-model"],
            },
        )
        keys[owner.user_id] = made.json()["id"]

    sign_in(account).open(f"/o/{org}/playground")
    offered = [o.get_attribute("value") for o in page.all("#f-key option")]
    assert offered == [keys[account.user_id]]
    page.driver.set_window_size(390, 844)
    page.fill({"prompt": "Say hello."}, "form[data-playground]")
    page.click("form[data-playground] [data-send]")
    page.wait_text(REPLY, "[data-answer]")
    width = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 391, f"the playground is {width}px wide at phone width"
    record = only_usage_record(console.gateway, page.find("[data-request-id]").text)
    assert record.api_key_id == keys[account.user_id]
    assert record.user_id == account.user_id

    # Typed in directly: the page refuses another's key; the API refuses to use it.
    page.open(f"/o/{org}/playground?key={keys[other.user_id]}")
    page.wait_text("Not allowed", "h1")
    user = console.caller(Role.USER, org)
    assert _chat(user, org, keys[other.user_id]).status_code == 403
    assert _chat(user, org, tenant.key_id).status_code == 403
    assert _chat(console.admin, org, keys[other.user_id]).status_code == 200


def test_the_gateway_decides_each_call(console: ControlPlaneUnderTest, tenant: Tenant) -> None:
    """The call is governed like any client's: grants, revocation and the body's fields are checked."""
    org, admin = tenant.organisation_id, console.admin
    answer = _chat(admin, org, tenant.key_id, stream=False)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == REPLY
    record = only_usage_record(console.gateway, answer.headers["x-request-id"])
    assert record.api_key_id == tenant.key_id
    assert record.stream is False

    admin.post(f"/api/organisations/{org}/models", json={"name": "not-granted"}).raise_for_status()
    denied = _chat(admin, org, tenant.key_id, model="not-granted")
    assert denied.status_code == 403, denied.text
    assert denied.json()["error"]["param"] == "model"
    invalid = _chat(admin, org, tenant.key_id, messages=[])
    assert invalid.status_code == 422
    assert invalid.json()["error"]["fields"][0]["field"] == "messages"
    assert _chat(admin, org, "no-such-key").status_code == 404

    admin.post(f"/api/organisations/{org}/apikeys/{tenant.key_id}/revoke").raise_for_status()
    revoked = _chat(admin, org, tenant.key_id)
    assert revoked.status_code == 401
    assert revoked.json()["error"]["code"] == "api_key_revoked"


def test_no_usable_key_says_what_to_do(page: Page, sign_in: SignIn, org_admin: tuple[str, Any]) -> None:
    """An organisation without keys gets an empty state that leads to creating one."""
    org_id, account = org_admin
    sign_in(account).open(f"/o/{org_id}/playground")
    page.wait_text("no API key you can use", "[data-testid=empty]")
    page.click("[data-testid=empty] a.button")
    page.wait_path(lambda p: p.startswith(f"/o/{org_id}/keys/new"))


def test_stop_ends_the_governed_call(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, tenant: Tenant, fake_openai: FakeOpenAI
) -> None:
    """Stop leaves the stream like any client that goes away: the upstream call ends and is recorded so."""
    fake_openai.drip_chunks, fake_openai.chunk_delay_seconds = 400, 0.05  # 20 s unless stopped
    abandoned = fake_openai.streams_abandoned
    admin = password_account(console, Role.ORG_ADMIN, tenant.organisation_id)
    sign_in(admin).open(f"/o/{tenant.organisation_id}/playground")
    page.fill({"model": SLOW, "prompt": "Go on for a while."}, "form[data-playground]")
    page.click("form[data-playground] [data-send]")
    page.until(lambda d: "tok tok" in page.find("[data-answer]").text, "the stream to start")
    page.click("form[data-playground] [data-stop]")
    page.wait_text("stopped", "[data-status]")
    assert page.find("form[data-playground] [data-send]").is_enabled()
    assert not page.all("form[data-playground] [data-stop]:not([hidden])")
    record = only_usage_record(console.gateway, page.find("[data-request-id]").text)
    assert record.http_status == 499
    assert record.api_key_id == tenant.key_id
    page.until(lambda d: fake_openai.streams_abandoned > abandoned, "the upstream stream to be abandoned")


def test_a_key_is_found_by_name(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, tenant: Tenant
) -> None:
    """The key search narrows the keys offered; a search that finds none says how to get back."""
    org = tenant.organisation_id
    made = console.admin.post(
        f"/api/organisations/{org}/apikeys", json={"name": "notebook key", "models": ["test-model"]}
    ).json()
    sign_in(password_account(console, Role.ORG_ADMIN, org)).open(f"/o/{org}/playground")
    assert {o.get_attribute("value") for o in page.all("#f-key option")} == {tenant.key_id, made["id"]}
    page.fill({"q": "notebook"}, "form[role=search]").submit("form[role=search]")
    page.wait_path(lambda p: "q=notebook" in p)
    assert [o.get_attribute("value") for o in page.all("#f-key option")] == [made["id"]]
    page.fill({"q": "no such key"}, "form[role=search]").submit("form[role=search]")
    page.wait_text("No usable key matches", "[data-testid=empty]")
    page.click_text("Show all keys")
    page.wait_path(lambda p: p == f"/o/{org}/playground")


def test_a_refused_call_is_shown_and_the_page_works_from_the_keyboard(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, tenant: Tenant
) -> None:
    """Sent from the keyboard; the gateway's refusal (the key revoked meanwhile) is shown in the form."""
    org = tenant.organisation_id
    sign_in(password_account(console, Role.ORG_ADMIN, org)).open(f"/o/{org}/playground")
    console.admin.post(f"/api/organisations/{org}/apikeys/{tenant.key_id}/revoke").raise_for_status()
    prompt = page.field("prompt", "form[data-playground]")
    prompt.send_keys("Say hello.")
    for _ in range(3):  # prompt → max tokens → stream → Send
        page.driver.switch_to.active_element.send_keys(Keys.TAB)
    focused = page.driver.switch_to.active_element
    assert focused.get_attribute("data-send") is not None, focused.get_attribute("outerHTML")
    focused.send_keys(Keys.ENTER)
    page.wait_text("revoked", "form[data-playground] [data-form-error]")
    assert page.find("[data-status]").text == "401"
    assert page.find("[data-answer]").text == ""
