"""API keys through the control-plane API: ownership, secrets shown once, paging, reach, gateway effect."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from odock.keys.tables import ApiKey
from odock.providers.tables import ProviderType
from odock.tenancy.tables import Role, TeamMemberRole
from tests.support.api import Caller, ControlPlaneUnderTest


@dataclass
class Catalogue:
    """An organisation with two teams, a mock provider and two models."""

    organisation_id: str
    team_id: str
    other_team_id: str
    model_ids: dict[str, str]

    @property
    def keys_path(self) -> str:
        """The organisation's key collection."""
        return f"/api/organisations/{self.organisation_id}/apikeys"


def catalogue(
    cp: ControlPlaneUnderTest, *, pricing: dict[str, Any] | None = None, **provider: Any
) -> Catalogue:
    """A fresh organisation with teams ``red``/``blue``, a mock provider and models ``m1``/``m2``."""

    async def build() -> Catalogue:
        control = cp.gateway.runtime.control
        org = await control.tenancy.create_organisation("org-" + secrets.token_hex(4))
        red = await control.tenancy.create_team(org.id, "red")
        blue = await control.tenancy.create_team(org.id, "blue")
        mock = await control.providers.create(org.id, "mock", ProviderType.MOCK, config=provider)
        models = {}
        for name in ("m1", "m2"):
            models[name] = (
                await control.models.create(org.id, name, provider_id=mock.id, pricing=pricing)
            ).id
        return Catalogue(org.id, red.id, blue.id, models)

    result: Catalogue = cp.gateway.run(build())
    return result


def create_key(caller: Caller, cat: Catalogue, **body: Any) -> dict[str, Any]:
    """Create a key through the API (an ORGANISATION key granted m1 unless told otherwise)."""
    payload = {"name": "k-" + secrets.token_hex(3), "models": ["m1"], **body}
    response = caller.post(cat.keys_path, json=payload)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def chat(cp: ControlPlaneUnderTest, secret: str, model: str = "m1") -> httpx.Response:
    """One chat completion through the gateway with ``secret``."""
    return httpx.post(
        cp.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {secret}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        timeout=30,
    )


def walk(caller: Caller, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, following ``next_cursor`` page by page."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = caller.get(path, params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the list never ended")


def error(response: httpx.Response) -> tuple[int, str]:
    """The status and error code of an answer."""
    return response.status_code, response.json()["error"]["code"]


def future(days: int = 30) -> str:
    """An ISO instant ``days`` from now."""
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def test_create_shows_the_secret_once(control_plane: ControlPlaneUnderTest) -> None:
    """Create answers the secret; the list, the detail and the rotation history never contain it."""
    cat = catalogue(control_plane)
    admin = control_plane.admin
    created = create_key(admin, cat, expires_at=future(), timezone="Europe/Paris")
    secret = created["secret"]
    assert secret.startswith("sk_")
    assert created["preview"].endswith(secret[-4:])
    assert created["timezone"] == "Europe/Paris"
    assert created["type"] == "ORGANISATION"

    detail = admin.get(f"{cat.keys_path}/{created['id']}")
    listing = admin.get(cat.keys_path)
    rotated = admin.post(f"{cat.keys_path}/{created['id']}/rotate", json={})
    history = admin.get(f"{cat.keys_path}/{created['id']}/rotations")
    assert detail.status_code == listing.status_code == rotated.status_code == history.status_code == 200
    for response in (detail, listing, history):
        assert secret not in response.text
        assert "secret" not in response.json()
        assert rotated.json()["secret"] not in response.text
    assert history.json()["items"][0]["previous_preview"] == created["preview"]


def test_ownership_and_expiry_rules(control_plane: ControlPlaneUnderTest) -> None:
    """Spec §3.3 ownership, same-organisation owners, future expiries and IANA zones are enforced."""
    cat, elsewhere = catalogue(control_plane), catalogue(control_plane)
    admin = control_plane.admin
    user = control_plane.caller(Role.USER, cat.organisation_id)
    stranger = control_plane.caller(Role.USER, elsewhere.organisation_id)
    refused: list[dict[str, Any]] = [
        {"type": "ORGANISATION", "team_id": cat.team_id},
        {"type": "TEAM"},
        {"type": "TEAM", "team_id": cat.team_id, "user_id": user.user_id},
        {"type": "USER", "team_id": cat.team_id},
        {"type": "TEAM", "team_id": elsewhere.team_id},
        {"type": "USER", "user_id": stranger.user_id},
        {"expires_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
        {"timezone": "Mars/Olympus"},
        {"models": ["no-such-model"]},
        {"models": [elsewhere.model_ids["m1"]]},
        {"name": ""},
        {"unknown": 1},
    ]
    for body in refused:
        response = admin.post(cat.keys_path, json={"name": "k", **body})
        assert response.status_code == 422, (body, response.text)
    team_key = create_key(admin, cat, type="TEAM", team_id=cat.team_id, models=[cat.model_ids["m2"], "m1"])
    user_key = create_key(admin, cat, type="USER", user_id=user.user_id, models=[])
    assert (team_key["team_id"], user_key["user_id"]) == (cat.team_id, user.user_id)
    grants = admin.get(f"{cat.keys_path}/{team_key['id']}/models").json()["items"]
    assert [g["name"] for g in grants] == ["m2", "m1"]  # newest-first order is by name, descending


def test_paging_walks_every_key_once_in_order(control_plane: ControlPlaneUnderTest) -> None:
    """Walking the list by cursor yields every key exactly once, newest first (or oldest with order=asc)."""
    cat = catalogue(control_plane)
    made = [create_key(control_plane.admin, cat)["id"] for _ in range(7)]
    newest_first = [k["id"] for k in walk(control_plane.admin, cat.keys_path, limit=3)]
    oldest_first = [k["id"] for k in walk(control_plane.admin, cat.keys_path, limit=2, order="asc")]
    assert newest_first == made[::-1]
    assert oldest_first == made
    bad = control_plane.admin.get(cat.keys_path, params={"cursor": "not-a-cursor"})
    assert error(bad) == (422, "validation_error")


def test_filters_and_search(control_plane: ControlPlaneUnderTest) -> None:
    """type, revoked, team_id, user_id, expired and q narrow the list."""
    cat = catalogue(control_plane)
    admin = control_plane.admin
    user = control_plane.caller(Role.USER, cat.organisation_id)
    org_key = create_key(admin, cat, name="billing-service")
    team_key = create_key(admin, cat, type="TEAM", team_id=cat.team_id, name="red pipeline")
    user_key = create_key(admin, cat, type="USER", user_id=user.user_id, expires_at=future(1))
    assert admin.post(f"{cat.keys_path}/{team_key['id']}/revoke").json()["revoked"] is True

    async def expire() -> None:
        async with control_plane.gateway.runtime.sessions() as session:
            row = await session.get(ApiKey, user_key["id"])
            assert row is not None
            row.expires_at = datetime.now(UTC) - timedelta(hours=1)
            await session.commit()

    control_plane.gateway.run(expire())

    def ids(**params: Any) -> set[str]:
        return {k["id"] for k in walk(admin, cat.keys_path, **params)}

    assert ids(type="TEAM") == {team_key["id"]}
    assert ids(revoked="true") == {team_key["id"]}
    assert ids(revoked="false") == {org_key["id"], user_key["id"]}
    assert ids(team_id=cat.team_id) == {team_key["id"]}
    assert ids(user_id=user.user_id) == {user_key["id"]}
    assert ids(expired="true") == {user_key["id"]}
    assert ids(expired="false") == {org_key["id"], team_key["id"]}
    assert ids(q="BILLING") == {org_key["id"]}
    assert ids(q=team_key["preview"][:7]) >= {team_key["id"]}
    assert ids(q=user_key["id"]) == {user_key["id"]}
    assert ids(q="100%_") == set()
    assert admin.get(cat.keys_path, params={"type": "NOPE"}).status_code == 422


def test_update_rotate_revoke_and_history(control_plane: ControlPlaneUnderTest) -> None:
    """PATCH renames and re-dates; rotate refuses past dates and revoked keys; history names the rotator."""
    cat = catalogue(control_plane)
    admin = control_plane.admin
    key = create_key(admin, cat)
    path = f"{cat.keys_path}/{key['id']}"
    renamed = admin.patch(path, json={"name": "renamed", "expires_at": future(5), "timezone": "Asia/Tokyo"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "renamed"
    assert renamed.json()["timezone"] == "Asia/Tokyo"
    assert admin.patch(path, json={"expires_at": None}).json()["expires_at"] is None
    assert admin.patch(path, json={"expires_at": "2001-01-01T00:00:00Z"}).status_code == 422
    assert admin.patch(path, json={"type": "TEAM"}).status_code == 422

    past = admin.post(path + "/rotate", json={"expires_at": "2001-01-01T00:00:00+00:00"})
    assert past.status_code == 422
    assert past.json()["error"]["param"] == "expires_at"
    new_expiry = future(90)
    rotated = admin.post(path + "/rotate", json={"expires_at": new_expiry})
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != key["secret"]
    assert rotated.json()["rotation_count"] == 1
    history = admin.get(path + "/rotations").json()["items"]
    assert len(history) == 1
    assert history[0]["rotated_by"] == admin.email
    assert history[0]["previous_expires_at"] is None
    assert datetime.fromisoformat(history[0]["new_expires_at"]) == datetime.fromisoformat(new_expiry)
    assert "…" in history[0]["previous_preview"]

    assert admin.post(path + "/revoke").json()["revoked"] is True
    assert admin.post(path + "/revoke").json()["revoked"] is True  # repeating is harmless
    assert error(admin.post(path + "/rotate")) == (409, "conflict")
    assert admin.post(path + "/unrevoke").json()["revoked"] is False
    assert admin.post(path + "/rotate").status_code == 200


def test_grants_by_id_or_name(control_plane: ControlPlaneUnderTest) -> None:
    """PUT replaces, POST adds and DELETE removes model grants, by id or name, inside the organisation."""
    cat, elsewhere = catalogue(control_plane), catalogue(control_plane)
    admin = control_plane.admin
    key = create_key(admin, cat, models=[])
    models = f"{cat.keys_path}/{key['id']}/models"

    def names(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [m["name"] for m in response.json()["items"]]

    assert names(admin.put(models, json={"models": [cat.model_ids["m2"]]})) == ["m2"]
    assert names(admin.post(models, json={"models": ["m1", "m2"]})) == ["m1", "m2"]
    assert names(admin.get(models, params={"q": "1"})) == ["m1"]
    assert [m["name"] for m in walk(admin, models, limit=1, order="asc")] == ["m1", "m2"]
    assert admin.delete(f"{models}/{cat.model_ids['m1']}").status_code == 204
    assert error(admin.delete(f"{models}/{cat.model_ids['m1']}")) == (404, "not_found")
    assert names(admin.get(models)) == ["m2"]
    assert admin.put(models, json={"models": [elsewhere.model_ids["m1"]]}).status_code == 422
    assert names(admin.put(models, json={"models": []})) == []


def test_routing_policy_is_validated_and_kept_beside_the_envelope(
    control_plane: ControlPlaneUnderTest,
) -> None:
    """PATCH routing validates the §9.2 shape and candidates; PUT policies keeps routing and vice versa."""
    cat = catalogue(control_plane)
    admin = control_plane.admin
    key = create_key(admin, cat, models=["m1", "m2"])
    path = f"{cat.keys_path}/{key['id']}"
    chat_policy = {
        "strategy": "priority",
        "candidates": [{"modelName": "m1", "priority": 1}, {"modelName": "m2", "priority": 2}],
        "failoverOn": ["5xx", "rate_limit"],
        "maxRetries": 1,
        "nativeFallback": {"openai": ["m2"]},
    }
    assert admin.get(path + "/routing").json() == {"routing": {}}
    set_ = admin.patch(path + "/routing", json={"chat": chat_policy})
    assert set_.status_code == 200, set_.text
    assert set_.json()["routing"]["chat"]["candidates"][1]["modelName"] == "m2"
    assert (
        admin.put(path + "/policies", json={"ratelimit": {"requests": {"per_minute": 60}}}).status_code == 200
    )
    routing = admin.get(path + "/routing").json()["routing"]
    assert routing["chat"]["strategy"] == "priority"
    assert routing["chat"]["maxRetries"] == 1
    assert admin.patch(path + "/routing", json={"embeddings": {"candidates": []}}).status_code == 200
    policy = admin.get(path + "/policies").json()
    assert policy["ratelimit"]["requests"]["per_minute"] == 60

    bad_policies: tuple[dict[str, Any], ...] = (
        {"chat": {"strategy": "random"}},
        {"chat": {"candidates": [{"modelName": "ghost"}]}},
        {"chat": {"maxRetries": -1}},
        {"video": {}},
    )
    for bad in bad_policies:
        assert admin.patch(path + "/routing", json=bad).status_code == 422, bad
    cleared = admin.patch(path + "/routing", json={"chat": None})
    assert set(cleared.json()["routing"]) == {"embeddings"}


def test_reach_of_each_role(control_plane: ControlPlaneUnderTest) -> None:
    """Admins reach every key; managers their teams' keys and their own; users only their own user keys."""
    cat = catalogue(control_plane)
    admin = control_plane.admin
    org_admin = control_plane.caller(Role.ORG_ADMIN, cat.organisation_id)
    manager = control_plane.caller(
        Role.MANAGER, cat.organisation_id, teams={cat.team_id: TeamMemberRole.MANAGER}
    )
    user = control_plane.caller(Role.USER, cat.organisation_id)
    other_user = control_plane.caller(Role.USER, cat.organisation_id)
    org_key = create_key(org_admin, cat)
    red_key = create_key(manager, cat, type="TEAM", team_id=cat.team_id)
    blue_key = create_key(admin, cat, type="TEAM", team_id=cat.other_team_id)
    manager_key = create_key(manager, cat, type="USER", user_id=manager.user_id)
    user_key = create_key(user, cat, type="USER", user_id=user.user_id)
    other_key = create_key(admin, cat, type="USER", user_id=other_user.user_id)

    def visible(caller: Caller) -> set[str]:
        return {k["id"] for k in walk(caller, cat.keys_path)}

    everything = {k["id"] for k in (org_key, red_key, blue_key, manager_key, user_key, other_key)}
    assert visible(org_admin) == everything
    assert visible(manager) == {red_key["id"], manager_key["id"]}
    assert visible(user) == {user_key["id"]}

    refusals: list[tuple[Caller, dict[str, Any]]] = [
        (manager, {"type": "ORGANISATION"}),
        (manager, {"type": "TEAM", "team_id": cat.other_team_id}),
        (manager, {"type": "USER", "user_id": user.user_id}),
        (user, {"type": "ORGANISATION"}),
        (user, {"type": "TEAM", "team_id": cat.team_id}),
        (user, {"type": "USER", "user_id": other_user.user_id}),
    ]
    for caller, body in refusals:
        assert error(caller.post(cat.keys_path, json={"name": "x", **body})) == (403, "forbidden"), body
    for caller, key in ((manager, blue_key), (manager, org_key), (user, other_key), (user, red_key)):
        path = f"{cat.keys_path}/{key['id']}"
        assert caller.get(path).status_code == 403
        assert caller.post(path + "/revoke").status_code == 403
    assert manager.post(f"{cat.keys_path}/{red_key['id']}/rotate").status_code == 200
    assert user.post(f"{cat.keys_path}/{user_key['id']}/revoke").status_code == 200
    assert org_admin.get("/api/admin/apikeys").status_code == 403


def test_other_organisations_are_invisible(control_plane: ControlPlaneUnderTest) -> None:
    """An organisation admin gets 403 on another organisation's paths and 404 for its key ids."""
    mine, theirs = catalogue(control_plane), catalogue(control_plane)
    their_key = create_key(control_plane.admin, theirs)
    org_admin = control_plane.caller(Role.ORG_ADMIN, mine.organisation_id)
    assert org_admin.get(theirs.keys_path).status_code == 403
    assert org_admin.get(f"{theirs.keys_path}/{their_key['id']}").status_code == 403
    for method, suffix in (("GET", ""), ("POST", "/revoke"), ("GET", "/rotations"), ("GET", "/models")):
        response = org_admin.request(method, f"{mine.keys_path}/{their_key['id']}{suffix}")
        assert error(response) == (404, "not_found"), suffix
    assert error(org_admin.get(f"{mine.keys_path}/no-such-key")) == (404, "not_found")


def test_admin_list_spans_organisations(control_plane: ControlPlaneUnderTest) -> None:
    """The super admin list covers every organisation and filters by organisation_id."""
    first, second = catalogue(control_plane), catalogue(control_plane)
    a = create_key(control_plane.admin, first)
    b = create_key(control_plane.admin, second)
    everything = {k["id"] for k in walk(control_plane.admin, "/api/admin/apikeys")}
    only_first = walk(control_plane.admin, "/api/admin/apikeys", organisation_id=first.organisation_id)
    assert {a["id"], b["id"]} <= everything
    assert [k["id"] for k in only_first] == [a["id"]]


def test_gateway_sees_revocation_rotation_and_grants_at_once(control_plane: ControlPlaneUnderTest) -> None:
    """A revoked or rotated secret is refused on the gateway's very next request; grants apply at once."""
    cat = catalogue(control_plane)
    admin = control_plane.admin
    key = create_key(admin, cat)
    path = f"{cat.keys_path}/{key['id']}"
    client = openai.OpenAI(base_url=control_plane.base_url + "/v1", api_key=key["secret"], max_retries=0)
    reply = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content  # the key is now cached by the gateway

    assert admin.post(path + "/revoke").status_code == 200
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "api_key_revoked"

    assert admin.post(path + "/unrevoke").status_code == 200
    assert chat(control_plane, key["secret"]).status_code == 200
    assert error(chat(control_plane, key["secret"], "m2")) == (403, "model_not_allowed")
    assert admin.post(path + "/models", json={"models": ["m2"]}).status_code == 200
    assert chat(control_plane, key["secret"], "m2").status_code == 200

    new_secret = admin.post(path + "/rotate").json()["secret"]
    assert chat(control_plane, key["secret"]).status_code == 401
    assert chat(control_plane, new_secret).status_code == 200
