"""Policy envelopes on every scope through the control-plane API, validated and enforced at once."""

from __future__ import annotations

from typing import Any

from odock.tenancy.tables import Role, TeamMemberRole
from tests.integration.api.test_api_keys import catalogue, chat, create_key, error
from tests.support.api import ControlPlaneUnderTest

LIMITS: dict[str, Any] = {
    "ip": {"allowlist": ["10.0.0.1/8", "127.0.0.1"], "blocklist": []},
    "ratelimit": {"requests": {"per_minute": 100, "burst": 0}, "payload": {"max_tokens": 4096}},
}


def test_organisation_policy_round_trip_keeps_the_routing_switch(
    control_plane: ControlPlaneUnderTest,
) -> None:
    """PUT replaces the organisation's envelope (normalised) and leaves its routing switch alone."""
    cat = catalogue(control_plane)
    runtime = control_plane.gateway.runtime
    control_plane.gateway.run(
        runtime.control.tenancy.update_organisation(
            cat.organisation_id, policies={"routing": {"enabled": True}}
        )
    )
    path = f"/api/organisations/{cat.organisation_id}/policies"
    empty = control_plane.admin.get(path).json()
    assert empty["scope"] == "organisation"
    assert empty["ip"] == {"allowlist": [], "blocklist": []}
    assert empty["ratelimit"]["requests"]["per_minute"] is None

    put = control_plane.admin.put(path, json=LIMITS)
    assert put.status_code == 200, put.text
    view = control_plane.admin.get(path).json()
    assert view["ip"]["allowlist"] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert view["ratelimit"]["requests"] == {"per_second": None, "per_minute": 100, "burst": None}
    assert view["ratelimit"]["payload"]["max_tokens"] == 4096
    stored = control_plane.gateway.run(runtime.control.tenancy.organisation(cat.organisation_id)).policies
    assert stored["routing"] == {"enabled": True}

    assert control_plane.admin.put(path, json={}).status_code == 200
    stored = control_plane.gateway.run(runtime.control.tenancy.organisation(cat.organisation_id)).policies
    assert stored == {"routing": {"enabled": True}}


def test_invalid_policies_are_refused_with_the_field(control_plane: ControlPlaneUnderTest) -> None:
    """A bad envelope is 422 invalid_policy naming the bad field, and nothing is stored."""
    cat = catalogue(control_plane)
    path = f"/api/organisations/{cat.organisation_id}/policies"
    cases = {
        "ratelimit.requests.per_minute": {"ratelimit": {"requests": {"per_minute": -1}}},
        "ratelimit.requests.per_minit": {"ratelimit": {"requests": {"per_minit": 5}}},
        "ip.allowlist": {"ip": {"allowlist": ["not-an-ip"]}},
        "routing": {"routing": {"enabled": False}},
        "policies.routing": {"policies": {"routing": {"enabled": False}}},
        "shadow": {"shadow": "yes"},
    }
    for field, body in cases.items():
        response = control_plane.admin.put(path, json=body)
        assert error(response) == (422, "invalid_policy"), (field, response.text)
        assert response.json()["error"]["param"].startswith(field), response.text
    assert control_plane.admin.put(path, json=["not", "an", "object"]).status_code == 422
    assert control_plane.admin.get(path).json()["ratelimit"]["requests"]["per_minute"] is None


def test_team_key_and_model_scopes(control_plane: ControlPlaneUnderTest) -> None:
    """Each scope stores its own envelope; ids of another organisation are 404."""
    cat, elsewhere = catalogue(control_plane), catalogue(control_plane)
    admin = control_plane.admin
    key = create_key(admin, cat)
    org = f"/api/organisations/{cat.organisation_id}"
    paths = {
        "team": f"{org}/teams/{cat.team_id}/policies",
        "api_key": f"{org}/apikeys/{key['id']}/policies",
        "model": f"{org}/models/{cat.model_ids['m1']}/policies",
    }
    for scope, path in paths.items():
        body = {"ratelimit": {"tokens": {"per_minute": 1000 + len(scope)}}}
        assert admin.put(path, json=body).status_code == 200, scope
        view = admin.get(path).json()
        assert (view["scope"], view["ratelimit"]["tokens"]["per_minute"]) == (scope, 1000 + len(scope))
    foreign = [
        f"{org}/teams/{elsewhere.team_id}/policies",
        f"{org}/models/{elsewhere.model_ids['m1']}/policies",
        f"{org}/apikeys/{create_key(admin, elsewhere)['id']}/policies",
    ]
    for path in foreign:
        assert error(admin.get(path)) == (404, "not_found"), path
        assert error(admin.put(path, json={})) == (404, "not_found"), path


def test_reach_of_each_role(control_plane: ControlPlaneUnderTest) -> None:
    """Members read the organisation's policy; only admins change it; managers change their teams' only."""
    cat = catalogue(control_plane)
    org = f"/api/organisations/{cat.organisation_id}"
    manager = control_plane.caller(
        Role.MANAGER, cat.organisation_id, teams={cat.team_id: TeamMemberRole.MANAGER}
    )
    user = control_plane.caller(Role.USER, cat.organisation_id)
    outsider = control_plane.caller(Role.ORG_ADMIN, catalogue(control_plane).organisation_id)
    assert user.get(f"{org}/policies").status_code == 200
    assert manager.get(f"{org}/policies").status_code == 200
    assert user.put(f"{org}/policies", json={}).status_code == 403
    assert manager.put(f"{org}/policies", json={}).status_code == 403
    assert outsider.get(f"{org}/policies").status_code == 403
    assert manager.put(f"{org}/teams/{cat.team_id}/policies", json={}).status_code == 200
    assert manager.put(f"{org}/teams/{cat.other_team_id}/policies", json={}).status_code == 403
    assert user.put(f"{org}/models/{cat.model_ids['m1']}/policies", json={}).status_code == 403
    assert user.get("/api/admin/policies/global").status_code == 403


def test_global_policy_is_read_only_from_settings(control_plane: ControlPlaneUnderTest) -> None:
    """The super admin reads the global policy of settings; there is no route to change it."""
    response = control_plane.admin.get("/api/admin/policies/global")
    assert response.status_code == 200
    assert response.json()["scope"] == "global"
    assert response.json()["scope_id"] == "*"
    assert control_plane.admin.put("/api/admin/policies/global", json={}).status_code == 405


def test_key_policy_set_through_the_api_is_enforced_at_once(control_plane: ControlPlaneUnderTest) -> None:
    """An RPM limit of 1 put on a cached key makes its second call 429; lifting it admits calls again."""
    cat = catalogue(control_plane)
    key = create_key(control_plane.admin, cat)
    assert chat(control_plane, key["secret"]).status_code == 200  # the key is now cached
    path = f"{cat.keys_path}/{key['id']}/policies"
    assert (
        control_plane.admin.put(path, json={"ratelimit": {"requests": {"per_minute": 1}}}).status_code == 200
    )
    assert chat(control_plane, key["secret"]).status_code == 200
    limited = chat(control_plane, key["secret"])
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rpm_exceeded"

    assert control_plane.admin.put(path, json={}).status_code == 200
    assert chat(control_plane, key["secret"]).status_code == 200


def test_organisation_ip_policy_is_enforced_at_once(control_plane: ControlPlaneUnderTest) -> None:
    """An organisation allowlist that excludes the caller refuses the next call with 403 ip_not_allowed."""
    cat = catalogue(control_plane)
    key = create_key(control_plane.admin, cat)
    assert chat(control_plane, key["secret"]).status_code == 200
    path = f"/api/organisations/{cat.organisation_id}/policies"
    assert control_plane.admin.put(path, json={"ip": {"allowlist": ["203.0.113.0/24"]}}).status_code == 200
    assert error(chat(control_plane, key["secret"])) == (403, "ip_not_allowed")
