"""The audit log through the API: who changed what, from where, before and after, per organisation."""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from odock.tenancy.tables import Role
from tests.integration.test_cli import cli_for
from tests.support.api import Caller, ControlPlaneUnderTest


def events_of(caller: Caller, path: str, **filters: str) -> list[dict[str, Any]]:
    """The events a list route answers with ``filters`` (one page, newest first)."""
    response = caller.get(path, params=filters)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def new_team(control_plane: ControlPlaneUnderTest, organisation_id: str, name: str) -> str:
    """A team created through the service layer; its id."""
    team = control_plane.gateway.run(
        control_plane.gateway.runtime.control.tenancy.create_team(organisation_id, name)
    )
    return str(team.id)


def test_api_change_is_recorded_with_actor_ip_and_request(control_plane: ControlPlaneUnderTest) -> None:
    """Renaming a team through the API records one update naming the caller, their IP and request id."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    team = new_team(control_plane, org, "red")
    response = admin.patch(
        f"/api/organisations/{org}/teams/{team}",
        json={"name": "blue"},
        headers={"x-request-id": "audit-req-1"},
    )
    assert response.status_code == 200, response.text

    [event] = events_of(admin, f"/api/organisations/{org}/audit", resource_type="teams", action="update")
    assert event["actor"] == {"kind": "token", "label": admin.email, "user_id": admin.user_id}
    assert event["ip"] == "127.0.0.1"
    assert event["request_id"] == "audit-req-1"
    assert (event["organisation_id"], event["resource_id"]) == (org, team)
    assert event["before"] == {"id": team, "name": "red"}
    assert event["after"] == {"id": team, "name": "blue"}

    detail = admin.get(f"/api/organisations/{org}/audit/{event['id']}")
    assert detail.status_code == 200
    assert detail.json() == event


def test_created_key_is_recorded_with_its_secret_masked(control_plane: ControlPlaneUnderTest) -> None:
    """Creating an API key records the row with its hash masked; the secret appears in no event."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    created = admin.post(f"/api/organisations/{org}/apikeys", json={"name": "ci"})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]

    [event] = events_of(admin, f"/api/organisations/{org}/audit", resource_type="api_keys")
    assert event["action"] == "create"
    assert event["before"] is None
    assert event["after"]["key_hash"] == "***"
    assert event["after"]["name"] == "ci"
    assert event["actor"]["label"] == admin.email
    everything = admin.get(f"/api/organisations/{org}/audit", params={"limit": 200}).content
    assert secret.encode() not in everything


def test_filters_and_cursor_pages(control_plane: ControlPlaneUnderTest) -> None:
    """Events filter by actor, resource and time, and page by cursor without gaps or repeats."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    teams = [new_team(control_plane, org, f"t{i}") for i in range(5)]
    for team in teams:
        assert (
            admin.patch(f"/api/organisations/{org}/teams/{team}", json={"name": f"{team}-x"}).status_code
            == 200
        )
    path = f"/api/organisations/{org}/audit"

    by_actor = events_of(admin, path, actor=admin.user_id)
    assert {e["resource_id"] for e in by_actor} == set(teams)
    assert events_of(admin, path, actor=admin.email) == by_actor
    assert [e["resource_id"] for e in events_of(admin, path, resource_id=teams[0])] == [teams[0]] * 2
    assert events_of(admin, path, action="delete") == []

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", "resource_type": "teams", **({"cursor": cursor} if cursor else {})}
        page = admin.get(path, params=params).json()
        seen.extend(e["id"] for e in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 10
    newest = by_actor[0]["at"]
    assert events_of(admin, path, **{"from": newest, "resource_type": "teams"})[0]["at"] == newest
    assert all(e["at"] < newest for e in events_of(admin, path, to=newest))


def test_organisation_admins_see_only_their_organisation(control_plane: ControlPlaneUnderTest) -> None:
    """An org admin's audit list holds only their organisation's events; another's event is 404."""
    mine, theirs = control_plane.organisation(), control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, mine)
    new_team(control_plane, mine, "ours")
    new_team(control_plane, theirs, "theirs")
    listed = events_of(admin, f"/api/organisations/{mine}/audit", limit="200")
    assert listed
    assert {e["organisation_id"] for e in listed} == {mine}

    [foreign] = events_of(
        control_plane.admin, "/api/admin/audit", organisation_id=theirs, resource_type="teams"
    )
    assert admin.get(f"/api/organisations/{mine}/audit/{foreign['id']}").status_code == 404
    assert admin.get(f"/api/organisations/{theirs}/audit").status_code == 403
    assert admin.get("/api/admin/audit").status_code == 403
    assert control_plane.admin.get(f"/api/admin/audit/{foreign['id']}").json() == foreign


def test_managers_and_users_cannot_read_the_audit_log(control_plane: ControlPlaneUnderTest) -> None:
    """The audit log is closed to managers and users (403)."""
    org = control_plane.organisation()
    for role in (Role.MANAGER, Role.USER):
        assert control_plane.caller(role, org).get(f"/api/organisations/{org}/audit").status_code == 403


def test_bad_filters_are_422(control_plane: ControlPlaneUnderTest) -> None:
    """Unknown resource types, actions, naive times and foreign cursors are rejected with 422."""
    path = "/api/admin/audit"
    for params in (
        {"resource_type": "usage_records"},
        {"action": "explode"},
        {"from": "2024-01-01T00:00:00"},
        {"cursor": "not-a-cursor"},
    ):
        response = control_plane.admin.get(path, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == "validation_error"


def test_cli_change_is_attributed_to_the_cli(control_plane: ControlPlaneUnderTest) -> None:
    """An organisation created with the ``odock`` CLI is recorded as the CLI's operating-system user."""
    name = f"cli-org-{secrets.token_hex(3)}"
    cli = cli_for(control_plane.gateway)
    cli.ok("orgs", "create", name, extra_env={"LOGNAME": "audit-operator", "USER": "audit-operator"})

    events = events_of(control_plane.admin, "/api/admin/audit", actor="audit-operator")
    [event] = [e for e in events if e["resource_type"] == "organisations"]
    assert event["actor"] == {"kind": "cli", "label": "audit-operator", "user_id": None}
    assert event["after"]["name"] == name
    assert event["ip"] is None


def test_events_are_json_with_iso_times(control_plane: ControlPlaneUnderTest) -> None:
    """Times inside before/after are ISO 8601 strings (the document is plain JSON)."""
    org = control_plane.organisation()
    [event] = events_of(control_plane.admin, "/api/admin/audit", resource_id=org)
    created_at = event["after"]["created_at"]
    assert isinstance(created_at, str)
    assert orjson.loads(orjson.dumps(event)) == event
    assert created_at[:4].isdigit()
    assert "T" in created_at


def test_accepting_an_invitation_is_attributed_to_the_invitee(control_plane: ControlPlaneUnderTest) -> None:
    """An account made by accepting an invitation is recorded as the invitee's doing, with their IP."""
    org = control_plane.organisation()
    email = f"invitee-{secrets.token_hex(3)}@example.test"
    invited = control_plane.admin.post(f"/api/organisations/{org}/invitations", json={"email": email})
    assert invited.status_code == 201, invited.text
    accepted = control_plane.client().post(
        f"/api/invitations/{invited.json()['token']}/accept",
        json={"name": "Invitee", "password": "a long enough passphrase"},
    )
    assert accepted.status_code == 200, accepted.text
    user_id = accepted.json()["user"]["id"]
    created = events_of(
        control_plane.admin, "/api/admin/audit", resource_type="users", resource_id=user_id, action="create"
    )
    assert len(created) == 1
    assert created[0]["actor"]["kind"] == "invitation"
    assert created[0]["actor"]["label"] == email
    assert created[0]["ip"] == "127.0.0.1"
