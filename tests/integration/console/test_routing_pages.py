"""Routing in a real browser: a key's Routing card, a usage record's routing card, a model's deployments.

One organisation per module (two OpenAI providers with a key each, three chat models and an
embeddings model, a key granted all of them); each test works on its own key, record or model.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from odock.tenancy.tables import Role
from tests.integration.console.conftest import SignIn
from tests.support.api import ControlPlaneUnderTest
from tests.support.browser import Page
from tests.support.console_keys import accept_confirm
from tests.support.console_providers import api_provider, api_provider_key
from tests.support.identity import Account, password_account
from tests.support.usage_records import seed, usage_row

CHAT = ("primary-chat", "backup-chat", "third-chat")


@dataclass(frozen=True)
class Routed:
    """The module's organisation: its admin, providers and their keys, models and a granted key."""

    org: str
    admin: Account
    providers: list[dict[str, Any]]
    keys: list[dict[str, Any]]
    models: dict[str, dict[str, Any]]
    key_id: str

    def get(self, console: ControlPlaneUnderTest, path: str) -> Any:
        """The answer of ``GET /api/organisations/{org}{path}`` (as the super admin)."""
        return console.admin.get(f"/api/organisations/{self.org}{path}").json()


@pytest.fixture(scope="module")
def routed(console: ControlPlaneUnderTest) -> Routed:
    """An organisation with models of two types on two providers, and a key granted every model."""
    named = {"name": f"org-{secrets.token_hex(4)}"}
    org = console.admin.post("/api/admin/organisations", json=named).json()["id"]
    providers = [api_provider(console, org, type="OPENAI", name=n) for n in ("openai-main", "openai-backup")]
    keys = [api_provider_key(console, org, p["id"], f"sk-{p['name']}-secret") for p in providers]
    models = {}
    for name, type_ in [*((n, "chat") for n in CHAT), ("embedder", "embeddings")]:
        body = {"name": name, "slug": f"{name}-upstream", "type": type_, "provider_id": providers[0]["id"],
                "provider_key_id": keys[0]["id"], "config": {"context_length": 1000}}  # fmt: skip
        answer = console.admin.post(f"/api/organisations/{org}/models", json=body)
        assert answer.status_code == 201, answer.text
        models[name] = answer.json()
    key = console.admin.post(
        f"/api/organisations/{org}/apikeys", json={"name": "routed", "type": "ORGANISATION"}
    )
    assert key.status_code == 201, key.text
    granted = console.admin.post(
        f"/api/organisations/{org}/apikeys/{key.json()['id']}/models", json={"models": list(models)}
    )
    assert granted.status_code < 300, granted.text
    admin = password_account(console, Role.ORG_ADMIN, org)
    return Routed(org, admin, providers, keys, models, key.json()["id"])


def candidates(page: Page) -> list[str]:
    """The chat policy's candidate models, in the order the form shows them."""
    rows = page.all("[data-testid=routing-chat] [data-rows=candidates] select")
    return [Select(s).first_selected_option.get_attribute("value") or "" for s in rows]


def test_a_keys_routing_policy_is_edited_saved_refused_and_cleared(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, routed: Routed
) -> None:
    """Auto-detect, reorder, triggers and a fallback are stored; a bad priority is shown beside it; Clear."""
    sign_in(routed.admin).open(f"/o/{routed.org}/keys/{routed.key_id}")
    switch = page.find("[data-testid=routing-switch]").text
    assert "routing is off for this organisation; policies are kept but not applied" in switch.lower()
    assert page.all(f'[data-testid=key-routing] a[href="/o/{routed.org}/settings#routing-h"]')
    assert page.all("[data-testid=routing-none]")

    Select(page.find("#rt-add-type")).select_by_value("chat")
    page.click("[data-add-routing-type]")
    form = "[data-testid=routing-chat]"
    page.click(f"{form} [data-auto-detect]")
    page.until(lambda _: len(candidates(page)) == 3, "three candidates")
    assert candidates(page) == sorted(CHAT)  # every granted chat model (by name), not the embedder
    page.all(f"{form} [data-rows=candidates] tr")[2].find_element(By.CSS_SELECTOR, "[data-move='-1']").click()
    assert candidates(page) == ["backup-chat", "third-chat", "primary-chat"]
    Select(page.field("chat.strategy", form)).select_by_value("weighted")
    page.click(f'{form} input[name="chat.failoverOn"][value="rate_limit"]')
    page.fill({"chat.maxRetries": "2", "chat.candidates.2.weight": "5"}, form)
    page.click(f'{form} [data-add-row="openai"]')
    Select(page.field("chat.nativeFallback.openai.0", form)).select_by_value("backup-chat")
    page.submit(form)
    page.wait_text("Clear routing", form)
    chat = routed.get(console, f"/apikeys/{routed.key_id}/routing")["routing"]["chat"]
    assert chat["strategy"] == "weighted"
    assert [c["modelName"] for c in chat["candidates"]] == ["backup-chat", "third-chat", "primary-chat"]
    assert chat["candidates"][2]["weight"] == 5
    assert chat["failoverOn"] == ["5xx", "timeout", "rate_limit"]
    assert chat["maxRetries"] == 2
    assert chat["nativeFallback"] == {"openai": ["backup-chat"]}

    # The API's 422 names chat.candidates.1.priority: the message is beside that field.
    page.fill({"chat.candidates.1.priority": "-1"}, form).submit(form)
    assert "greater than or equal to 0" in page.error_for("chat.candidates.1.priority")
    assert page.field("chat.candidates.1.priority", form).get_attribute("aria-invalid") == "true"

    page.click_text("Clear routing", "button")
    accept_confirm(page)
    page.wait_text("No routing policy", "[data-testid=key-routing]")
    assert routed.get(console, f"/apikeys/{routed.key_id}/routing")["routing"] == {}


def test_a_rerouted_usage_record_shows_its_attempts(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, routed: Routed
) -> None:
    """The routing card: Rerouted badge, strategy, final target and each attempt; absent for a direct call."""
    routing = {
        "rerouted": True, "strategy": "failover", "requested_model": "primary-chat",
        "attempts": [
            {"model": "primary-chat", "provider": "openai-main", "provider_type": "openai",
             "deployment": "p/-/s", "outcome": "failed", "latency_ms": 12.3,
             "error": {"code": "upstream_error", "status": 500, "message": "boom"}},
            {"model": "backup-chat", "provider": "openai-backup", "provider_type": "openai",
             "deployment": "q/-/s", "outcome": "success", "error": None, "latency_ms": 40.1},
        ],
        "final": {"model": "backup-chat", "provider": "openai-backup"},
    }  # fmt: skip
    rerouted, direct = usage_row(routed.org, routing=routing), usage_row(routed.org)
    seed(console.gateway, [rerouted, direct])
    sign_in(routed.admin).open(f"/o/{routed.org}/usage/{rerouted['id']}")
    card = page.find("[data-testid=routing-card]")
    assert page.find("[data-testid=routing-badge]").text == "Rerouted"
    assert "failover" in card.text
    assert page.find("[data-testid=routing-attempts]").text == "2"
    assert page.find("[data-testid=routing-final]").text == "backup-chat on openai-backup"
    rows = [r.text for r in page.all("[data-testid=routing-attempts-table] tbody tr")]
    assert rows[0].startswith("1 primary-chat openai-main")
    assert "failed upstream_error (500): boom 12 ms" in rows[0]
    assert "success — 40 ms" in rows[1]

    page.open(f"/o/{routed.org}/usage/{direct['id']}")
    page.find("[data-testid=record-fields]")
    assert not page.all("[data-card=routing]")


def test_a_models_deployments_are_added_balanced_and_removed(
    page: Page, sign_in: SignIn, console: ControlPlaneUnderTest, routed: Routed
) -> None:
    """A deployment on the second provider's key joins the primary; balancing is set; it is removed."""
    model = routed.models["third-chat"]
    backup, backup_key = routed.providers[1], routed.keys[1]
    sign_in(routed.admin).open(f"/o/{routed.org}/models/{model['id']}")
    table = "[data-testid=deployments-table]"
    primary = page.find(f"{table} tr[data-primary]").text
    assert "openai-main" in primary
    assert "third-chat-upstream" in primary

    Select(page.field("config.deployments.0.provider_id", "#deployment-form")).select_by_value(backup["id"])
    offered = Select(page.find("#deployment-form #f-dep-key"))
    page.until(lambda _: offered.first_selected_option.get_attribute("value") == backup_key["id"], "its key")
    # The new deployment's fields are named as the API's 422 params are: errors land beside them.
    page.fill({"config.deployments.0.weight": "three"}, "#deployment-form").submit("#deployment-form")
    assert page.error_for("config.deployments.0.weight") == "enter a whole number"
    page.fill(
        {"config.deployments.0.slug": "gpt-backup", "config.deployments.0.weight": "3"}, "#deployment-form"
    )
    page.submit("#deployment-form")
    page.wait_text("openai-backup", table)
    added = {
        "provider_id": backup["id"],
        "provider_api_key_id": backup_key["id"],
        "slug": "gpt-backup",
        "weight": 3,
    }
    config = routed.get(console, f"/models/{model['id']}")["config"]
    assert config == {"context_length": 1000, "deployments": [added]}
    assert "gpt-backup" in page.all(f"{table} tbody tr")[1].text

    Select(page.field("config.load_balancing", "#balancing-form")).select_by_value("least_busy")
    page.submit("#balancing-form")
    # The select offers "to the least busy" on the old page too: the sentence above it is the evidence.
    page.wait_text("to the least busy", "[data-testid=balancing]")
    assert routed.get(console, f"/models/{model['id']}")["config"]["load_balancing"] == "least_busy"

    page.click('[aria-label="Remove deployment 1"]')
    accept_confirm(page)
    page.until(lambda _: len(page.all(f"{table} tbody tr")) == 1, "the primary alone")
    config = routed.get(console, f"/models/{model['id']}")["config"]
    assert config == {"context_length": 1000, "deployments": [], "load_balancing": "least_busy", "weight": 1}
