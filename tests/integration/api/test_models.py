"""Models through the API: CRUD, filters, pricing in both units, grants, and the gateway seeing changes."""

from __future__ import annotations

from typing import Any

import httpx

from odock.keys.tables import ApiKeyType
from odock.tenancy.tables import Role, TeamMemberRole
from tests.conftest import Tenant, provision
from tests.integration.conftest import only_usage_record
from tests.support.api import Caller, ControlPlaneUnderTest
from tests.support.paging import walk

PER_1M = {
    "unit": "per_1m_tokens",
    "input": {"text": 2, "audio": "0.07"},
    "output": {"text": "8.000", "reasoning": 12.5},
    "cached_input_discount_percent": 50,
    "tools": {"definition": 0.1},
    "embeddings": "0.02",
}


def _provider(caller: Caller, org: str, type: str = "MOCK") -> dict[str, Any]:
    response = caller.post(f"/api/organisations/{org}/providers", json={"type": type})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _model(caller: Caller, org: str, **body: Any) -> dict[str, Any]:
    response = caller.post(f"/api/organisations/{org}/models", json=body)
    assert response.status_code == 201, response.text
    model: dict[str, Any] = response.json()
    return model


def _chat(control_plane: ControlPlaneUnderTest, tenant: Tenant) -> httpx.Response:
    return control_plane.client().post(
        "/v1/chat/completions",
        json={"model": tenant.model, "messages": [{"role": "user", "content": "hello there"}]},
        headers={"Authorization": f"Bearer {tenant.secret}"},
    )


def test_model_crud(control_plane: ControlPlaneUnderTest) -> None:
    """A model is created with provider and key, read, changed, and deleted."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    provider = _provider(admin, org, "OPENAI")
    key = admin.post(
        f"/api/organisations/{org}/providers/{provider['id']}/keys", json={"name": "k", "secret": "sk-x"}
    ).json()
    model = _model(
        admin,
        org,
        name="gpt-4.1-clientA",
        slug="gpt-4.1",
        type="chat",
        capabilities=["vision", "tool_use", "vision"],
        provider_id=provider["id"],
        provider_key_id=key["id"],
        config={"max_context": 128000},
    )
    assert model["slug"] == "gpt-4.1"
    assert model["capabilities"] == ["vision", "tool_use"]
    assert model["provider_key_id"] == key["id"]
    assert model["pricing"] is None
    assert model["pricing_per_1m"] is None
    assert model["enabled"] is True
    path = f"/api/organisations/{org}/models/{model['id']}"
    assert admin.get(path).json() == model
    changed = admin.patch(
        path, json={"name": "gpt-4.1-a", "type": "reasoning", "capabilities": ["reasoning"]}
    )
    assert changed.status_code == 200
    assert (changed.json()["name"], changed.json()["type"]) == ("gpt-4.1-a", "reasoning")
    detached = admin.patch(path, json={"provider_key_id": None}).json()
    assert detached["provider_key_id"] is None
    assert detached["provider_id"] == provider["id"]
    assert admin.delete(path).status_code == 204
    assert admin.get(path).status_code == 404
    default_slug = _model(admin, org, name="plain")
    assert (default_slug["slug"], default_slug["type"]) == ("plain", "chat")


def test_invalid_model_bodies_are_field_errors(control_plane: ControlPlaneUnderTest) -> None:
    """Bad types, capabilities, names and extra fields are 422 naming the field; duplicate names 409."""
    org = control_plane.organisation()
    admin = control_plane.admin
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "m", "type": "poetry"}, "type"),
        ({"name": "m", "capabilities": ["telepathy"]}, "capabilities.0"),
        ({"name": ""}, "name"),
        ({"name": "m", "pricing": {"input": {"text": 1}}}, "pricing.per_1k_tokens.input.text"),
        ({"name": "m", "secret": 1}, "secret"),
    ]
    for body, field in cases:
        response = admin.post(f"/api/organisations/{org}/models", json=body)
        assert response.status_code == 422, body
        assert field in [f["field"] for f in response.json()["error"]["fields"]], response.text
    _model(admin, org, name="taken")
    assert admin.post(f"/api/organisations/{org}/models", json={"name": "taken"}).status_code == 409
    other = _model(admin, org, name="other")
    clash = admin.patch(f"/api/organisations/{org}/models/{other['id']}", json={"name": "taken"})
    assert clash.status_code == 409


def test_model_references_stay_inside_the_organisation(control_plane: ControlPlaneUnderTest) -> None:
    """Another organisation's provider, an unknown one, or a key of another provider are the same 422."""
    org, other = control_plane.organisation(), control_plane.organisation()
    admin = control_plane.admin
    mine, theirs = _provider(admin, org, "OPENAI"), _provider(admin, other, "OPENAI")
    vllm = _provider(admin, org, "VLLM")
    vllm_key = admin.post(
        f"/api/organisations/{org}/providers/{vllm['id']}/keys", json={"name": "k", "secret": "s"}
    ).json()
    base = f"/api/organisations/{org}/models"
    for provider_id in (theirs["id"], "nosuchprovider"):
        refused = admin.post(base, json={"name": "m", "provider_id": provider_id})
        assert refused.status_code == 422
        assert refused.json()["error"]["message"] == "no such provider in this organisation"
    wrong_key = admin.post(
        base, json={"name": "m", "provider_id": mine["id"], "provider_key_id": vllm_key["id"]}
    )
    assert wrong_key.status_code == 422
    assert wrong_key.json()["error"]["param"] == "provider_key_id"
    model = _model(admin, org, name="m", provider_id=vllm["id"], provider_key_id=vllm_key["id"])
    moved = admin.patch(f"{base}/{model['id']}", json={"provider_id": mine["id"]})
    assert moved.status_code == 422  # the key would belong to another provider
    both = admin.patch(f"{base}/{model['id']}", json={"provider_id": mine["id"], "provider_key_id": None})
    assert both.status_code == 200


def test_model_list_filters_and_pages(control_plane: ControlPlaneUnderTest) -> None:
    """Models page without gaps and filter by provider, type, capability, switch and name/slug search."""
    org = control_plane.organisation()
    admin = control_plane.admin
    mock, openai = _provider(admin, org, "MOCK"), _provider(admin, org, "OPENAI")
    made = [_model(admin, org, name=f"chat-{i}", provider_id=mock["id"]) for i in range(5)]
    vision = _model(
        admin, org, name="eyes", slug="vision-pro", capabilities=["vision"], provider_id=openai["id"]
    )
    embed = _model(admin, org, name="embedder", type="embeddings", enabled=False)
    base = f"/api/organisations/{org}/models"
    items, pages = walk(admin, base, limit=3, order="asc")
    assert [m["id"] for m in items] == [m["id"] for m in [*made, vision, embed]]
    assert pages == 3

    def ids(**params: Any) -> list[str]:
        return [m["id"] for m in admin.get(base, params=dict(params, order="asc")).json()["items"]]

    assert ids(provider_id=mock["id"]) == [m["id"] for m in made]
    assert ids(type="embeddings") == [embed["id"]]
    assert ids(capability="vision") == [vision["id"]]
    assert ids(capability="tool_use") == []
    assert ids(enabled="false") == [embed["id"]]
    assert ids(q="VISION-") == [vision["id"]]
    assert ids(q="chat-3") == [made[3]["id"]]
    assert admin.get(base, params={"capability": "smell"}).status_code == 422
    names = [m["name"] for m in walk(admin, base, limit=2, sort="name", order="asc")[0]]
    assert names == sorted(names)
    admin_list = admin.get("/api/admin/models", params={"organisation_id": org, "type": "embeddings"}).json()
    assert [m["id"] for m in admin_list["items"]] == [embed["id"]]


def test_pricing_per_1m_is_converted_exactly(control_plane: ControlPlaneUnderTest) -> None:
    """Per-1M rates are stored per 1K (divided by exactly 1000) and shown back per 1M unchanged."""
    org = control_plane.organisation()
    admin = control_plane.admin
    model = _model(admin, org, name="priced")
    response = admin.put(f"/api/organisations/{org}/models/{model['id']}/pricing", json=PER_1M)
    assert response.status_code == 200, response.text
    body = response.json()
    stored = body["pricing"]
    assert stored["input"]["text_cost_per_1k_tokens"] == 0.002
    assert stored["input"]["audio_cost_per_1k_tokens"] == 0.00007
    assert stored["output"]["text_cost_per_1k_tokens"] == 0.008
    assert stored["output"]["reasoning_cost_per_1k_tokens"] == 0.0125
    assert stored["tools"]["definition_cost_per_1k_tokens"] == 0.0001
    assert stored["embeddings_cost_per_1k_tokens"] == 0.00002
    assert stored["cached_input_discount_percent"] == 50
    shown = body["pricing_per_1m"]
    assert shown["unit"] == "per_1m_tokens"
    assert shown["input"] == {"text": 2, "image": 0, "audio": 0.07, "video": 0, "reasoning": 0}
    assert shown["output"]["text"] == 8
    assert shown["output"]["reasoning"] == 12.5
    assert shown["tools"]["definition"] == 0.1
    assert shown["embeddings"] == 0.02
    assert shown["cached_input_discount_percent"] == 50
    # The stored shape is accepted as is, with or without its unit.
    per_1k = {"unit": "per_1k_tokens", "input": {"text_cost_per_1k_tokens": 0.005}}
    again = admin.put(f"/api/organisations/{org}/models/{model['id']}/pricing", json=per_1k).json()
    assert again["pricing_per_1m"]["input"]["text"] == 5
    created = _model(admin, org, name="priced at birth", pricing=PER_1M)
    assert created["pricing"] == stored
    cleared = admin.put(f"/api/organisations/{org}/models/{model['id']}/pricing", json={}).json()
    assert (cleared["pricing"], cleared["pricing_per_1m"]) == (None, None)


def test_bad_pricing_is_refused(control_plane: ControlPlaneUnderTest) -> None:
    """Negative, NaN, infinite, over-precise rates, unknown units and discounts over 100 are 422."""
    org = control_plane.organisation()
    model = _model(control_plane.admin, org, name="m")
    path = f"/api/organisations/{org}/models/{model['id']}/pricing"
    bodies: list[dict[str, Any]] = [
        {"unit": "per_1m_tokens", "input": {"text": -1}},
        {"unit": "per_1m_tokens", "input": {"text": "1.0000000000001"}},
        {"unit": "per_1m_tokens", "input": {"text": "12345678901234567"}},
        {"unit": "per_1m_tokens", "cached_input_discount_percent": 101},
        {"unit": "per_1b_tokens"},
        {"input": {"text_cost_per_1k_tokens": -0.1}},
        {"input": {"text_cost_per_1k_tokens": "abc"}},
    ]
    for body in bodies:
        assert control_plane.admin.put(path, json=body).status_code == 422, body
    for literal in ("NaN", "Infinity", "-Infinity"):
        raw = '{"unit": "per_1m_tokens", "input": {"text": ' + literal + "}}"
        response = control_plane.admin.put(path, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, literal
    assert control_plane.admin.get(f"/api/organisations/{org}/models/{model['id']}").json()["pricing"] is None


def test_access_lists_granted_keys_within_reach(control_plane: ControlPlaneUnderTest) -> None:
    """…/access lists the keys granted the model; a user sees only their own and their teams' keys."""
    gateway = control_plane.gateway
    control = gateway.runtime.control
    tenant = provision(gateway)
    org = tenant.organisation_id
    team = control_plane.admin.post(f"/api/organisations/{org}/teams", json={"name": "t"}).json()
    user = control_plane.caller(Role.USER, org, teams={team["id"]: TeamMemberRole.MEMBER})
    loner = control_plane.caller(Role.USER, org)
    own = gateway.run(
        control.keys.create(org, "mine", type=ApiKeyType.USER, user_id=user.user_id, models=[tenant.model])
    )
    team_key = gateway.run(
        control.keys.create(org, "team", type=ApiKeyType.TEAM, team_id=team["id"], models=[tenant.model])
    )
    gateway.run(control.keys.create(org, "ungranted"))
    path = f"/api/organisations/{org}/models/{tenant.model_id}/access"
    everything = {a["api_key_id"] for a in walk(control_plane.admin, path, limit=2)[0]}
    assert everything == {tenant.key_id, own.key.id, team_key.key.id}
    assert {a["api_key_id"] for a in user.get(path).json()["items"]} == {own.key.id, team_key.key.id}
    assert loner.get(path).json()["items"] == []
    only_team = control_plane.admin.get(path, params={"type": "TEAM"}).json()["items"]
    assert [a["name"] for a in only_team] == ["team"]
    assert all("secret" not in a and a["key_preview"] for a in only_team)


def test_models_are_isolated_between_organisations(control_plane: ControlPlaneUnderTest) -> None:
    """Org A's admin gets 403 on org B's paths and 404 for org B's model under org A; users only read."""
    org_a, org_b = control_plane.organisation(), control_plane.organisation()
    model_b = _model(control_plane.admin, org_b, name="b")
    admin_a = control_plane.caller(Role.ORG_ADMIN, org_a)
    assert admin_a.get(f"/api/organisations/{org_b}/models").status_code == 403
    under_a = f"/api/organisations/{org_a}/models/{model_b['id']}"
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {"json": {"enabled": False}} if method == "PATCH" else {}
        assert admin_a.request(method, under_a, **kwargs).status_code == 404, method
    assert admin_a.put(f"{under_a}/pricing", json={}).status_code == 404
    assert admin_a.get(f"{under_a}/access").status_code == 404
    assert admin_a.get("/api/admin/models").status_code == 403
    user_b = control_plane.caller(Role.USER, org_b)
    assert user_b.get(f"/api/organisations/{org_b}/models/{model_b['id']}").status_code == 200
    assert user_b.post(f"/api/organisations/{org_b}/models", json={"name": "x"}).status_code == 403
    assert (
        user_b.patch(
            f"/api/organisations/{org_b}/models/{model_b['id']}", json={"enabled": False}
        ).status_code
        == 403
    )


def test_gateway_sees_disable_reprice_and_delete_at_once(control_plane: ControlPlaneUnderTest) -> None:
    """A model disabled, repriced or deleted through the API changes the very next gateway call."""
    gateway = control_plane.gateway
    tenant = provision(gateway, pricing={"input": {"text_cost_per_1k_tokens": 0.001}})
    org = tenant.organisation_id
    path = f"/api/organisations/{org}/models/{tenant.model_id}"
    admin = control_plane.admin
    first = _chat(control_plane, tenant)
    assert first.status_code == 200
    assert admin.patch(path, json={"enabled": False}).status_code == 200
    disabled = _chat(control_plane, tenant)
    assert disabled.status_code == 403
    assert disabled.json()["error"]["code"] == "model_disabled"
    assert admin.patch(path, json={"enabled": True}).status_code == 200
    cheap = _chat(control_plane, tenant)
    assert cheap.status_code == 200
    repriced = admin.put(f"{path}/pricing", json={"unit": "per_1m_tokens", "input": {"text": 1000}})
    assert repriced.status_code == 200
    dear = _chat(control_plane, tenant)
    assert dear.status_code == 200
    costs = _costs(control_plane, [cheap.headers["x-request-id"], dear.headers["x-request-id"]])
    assert costs[1] == costs[0] * 1000 > 0
    assert admin.delete(path).status_code == 204
    gone = _chat(control_plane, tenant)
    assert gone.status_code == 400
    assert gone.json()["error"]["code"] == "model_not_found"


def _costs(control_plane: ControlPlaneUnderTest, request_ids: list[str]) -> list[int]:
    """Each request's billed cost, once its usage record is stored.

    The client has its answer before the gateway's after-hooks queue the record (in production
    they first settle with Redis), so one flush right after the call may come too early.
    """
    records = [only_usage_record(control_plane.gateway, request_id) for request_id in request_ids]
    return [int(record.total_cost_nanos_usd or 0) for record in records]
