"""The model catalogue through the API: listing it by provider type, and importing models from it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from odock.tenancy.tables import Role
from tests.support.api import Caller, ControlPlaneUnderTest


def _provider(caller: Caller, org: str, type: str) -> dict[str, Any]:
    response = caller.post(f"/api/organisations/{org}/providers", json={"type": type})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_catalogue_lists_a_provider_types_models_with_prices(
    control_plane: ControlPlaneUnderTest,
) -> None:
    """A provider type's catalogue holds only models it serves, priced per 1M tokens; a USER may read it."""
    org = control_plane.organisation()
    user = control_plane.caller(Role.USER, org)
    answer = user.get(f"/api/organisations/{org}/models/catalogue", params={"provider_type": "ANTHROPIC"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["items"]
    assert all("ANTHROPIC" in m["providers"] for m in body["items"])
    assert {"OPENAI", "AZURE_OPENAI", "ANTHROPIC", "GOOGLE", "MISTRAL"} <= set(body["provider_types"])
    sonnet = next(m for m in body["items"] if m["name"] == "claude-sonnet-4-5")
    assert Decimal(sonnet["input_per_1m"]) == 3
    assert Decimal(sonnet["output_per_1m"]) == 15
    assert Decimal(sonnet["cached_input_discount_percent"]) == 90
    searched = user.get(
        f"/api/organisations/{org}/models/catalogue", params={"q": "EMBED", "type": "embeddings"}
    )
    assert searched.json()["items"]
    assert all(m["type"] == "embeddings" for m in searched.json()["items"])


def test_import_creates_models_priced_from_the_catalogue(control_plane: ControlPlaneUnderTest) -> None:
    """Imported models carry the catalogue's prices; the modes create new ones and/or reprice others."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    provider = _provider(admin, org, "OPENAI")
    url = f"/api/organisations/{org}/models/import"
    names = ["gpt-4o", "text-embedding-3-small", "claude-sonnet-4-5"]
    answer = admin.post(url, json={"provider_id": provider["id"], "models": names})
    assert answer.status_code == 200, answer.text
    results = {r["name"]: r for r in answer.json()["items"]}
    assert [r["status"] for r in answer.json()["items"]] == ["created", "created", "failed"]
    assert "OPENAI" in results["claude-sonnet-4-5"]["message"]

    gpt = admin.get(f"/api/organisations/{org}/models/{results['gpt-4o']['model_id']}").json()
    assert gpt["provider_id"] == provider["id"]
    assert gpt["type"] == "chat"
    assert set(gpt["capabilities"]) == {"vision", "tool_use"}
    assert gpt["pricing_per_1m"]["input"]["text"] == 2.5
    assert gpt["pricing_per_1m"]["output"]["text"] == 10
    assert gpt["pricing"]["input"]["text_cost_per_1k_tokens"] == 0.0025
    assert gpt["pricing"]["cached_input_discount_percent"] == 50
    embed = admin.get(
        f"/api/organisations/{org}/models/{results['text-embedding-3-small']['model_id']}"
    ).json()
    assert embed["pricing_per_1m"]["embeddings"] == 0.02

    admin.put(f"/api/organisations/{org}/models/{gpt['id']}/pricing", json={})
    body = {"provider_id": provider["id"], "models": ["gpt-4o", "gpt-4o-mini"]}
    again = admin.post(url, json=body | {"mode": "existing_only"}).json()["items"]
    assert again == [
        {"name": "gpt-4o", "status": "updated", "model_id": gpt["id"], "message": None},
        {"name": "gpt-4o-mini", "status": "skipped", "model_id": None, "message": "not in the organisation"},
    ]
    assert (
        admin.get(f"/api/organisations/{org}/models/{gpt['id']}").json()["pricing_per_1m"]["input"]["text"]
        == 2.5
    )
    admin.put(f"/api/organisations/{org}/models/{gpt['id']}/pricing", json={})
    new_only = admin.post(url, json=body).json()["items"]
    assert [(r["name"], r["status"]) for r in new_only] == [("gpt-4o", "skipped"), ("gpt-4o-mini", "created")]
    assert admin.get(f"/api/organisations/{org}/models/{gpt['id']}").json()["pricing"] is None
    every = admin.post(url, json=body | {"mode": "all"}).json()["items"]
    assert [(r["name"], r["status"]) for r in every] == [("gpt-4o", "updated"), ("gpt-4o-mini", "updated")]
    assert (
        admin.get(f"/api/organisations/{org}/models/{gpt['id']}").json()["pricing_per_1m"]["input"]["text"]
        == 2.5
    )

    variant = admin.post(url, json=body | {"models": ["gpt-4o"], "name_suffix": "-eu"}).json()["items"][0]
    assert variant["status"] == "created"
    stored = admin.get(f"/api/organisations/{org}/models/{variant['model_id']}").json()
    assert (stored["name"], stored["slug"]) == ("gpt-4o-eu", "gpt-4o")


def test_import_refuses_another_organisations_provider_and_a_user(
    control_plane: ControlPlaneUnderTest,
) -> None:
    """Another organisation's provider and an unknown one are the same 422; a USER may not import (403)."""
    org, other = control_plane.organisation(), control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    foreign = _provider(control_plane.caller(Role.ORG_ADMIN, other), other, "OPENAI")
    answer = admin.post(
        f"/api/organisations/{org}/models/import", json={"provider_id": foreign["id"], "models": ["gpt-4o"]}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["param"] == "provider_id"
    unknown = admin.post(
        f"/api/organisations/{org}/models/import",
        json={"provider_id": "nosuchprovider", "models": ["gpt-4o"]},
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"] == answer.json()["error"]
    user = control_plane.caller(Role.USER, org)
    mine = _provider(admin, org, "OPENAI")
    refused = user.post(
        f"/api/organisations/{org}/models/import", json={"provider_id": mine["id"], "models": ["gpt-4o"]}
    )
    assert refused.status_code == 403
