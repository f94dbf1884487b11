"""Teams and members through the API: CRUD, paging, search, reach of managers and users, isolation."""

from __future__ import annotations

import secrets
from typing import Any

from odock.keys.tables import ApiKey, ApiKeyType
from odock.tenancy.tables import Role, TeamMemberRole
from tests.support.api import Caller, ControlPlaneUnderTest
from tests.support.paging import walk


def _team(caller: Caller, org: str, name: str | None = None) -> dict[str, Any]:
    response = caller.post(
        f"/api/organisations/{org}/teams", json={"name": name or f"team-{secrets.token_hex(4)}"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _api_key(control_plane: ControlPlaneUnderTest, org: str, **owner: Any) -> ApiKey:
    issued = control_plane.gateway.run(control_plane.gateway.runtime.control.keys.create(org, "k", **owner))
    key: ApiKey = issued.key
    return key


def test_team_crud(control_plane: ControlPlaneUnderTest) -> None:
    """An organisation admin creates, reads, renames, lists and deletes a team."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    team = _team(admin, org, "Research")
    assert team["organisation_id"] == org
    path = f"/api/organisations/{org}/teams/{team['id']}"
    assert admin.get(path).json() == team
    renamed = admin.patch(path, json={"name": "Research & Development"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Research & Development"
    listed = admin.get(f"/api/organisations/{org}/teams").json()["items"]
    assert [t["name"] for t in listed] == ["Research & Development"]
    assert admin.delete(path).status_code == 204
    assert admin.get(path).status_code == 404


def test_team_names_are_unique_per_organisation(control_plane: ControlPlaneUnderTest) -> None:
    """A duplicate team name is 409 in one organisation and fine in another; renaming onto one is 409."""
    org, other = control_plane.organisation(), control_plane.organisation()
    admin = control_plane.admin
    _team(admin, org, "Ops")
    assert admin.post(f"/api/organisations/{org}/teams", json={"name": "Ops"}).status_code == 409
    _team(admin, other, "Ops")
    second = _team(admin, org, "Ops 2")
    clash = admin.patch(f"/api/organisations/{org}/teams/{second['id']}", json={"name": "Ops"})
    assert clash.status_code == 409


def test_invalid_team_bodies_are_field_errors(control_plane: ControlPlaneUnderTest) -> None:
    """Bad names, unknown fields and bad member roles are 422 naming the field."""
    org = control_plane.organisation()
    admin = control_plane.admin
    for body, field in [({"name": ""}, "name"), ({"name": "a", "x": 1}, "x"), ({}, "name")]:
        response = admin.post(f"/api/organisations/{org}/teams", json=body)
        assert response.status_code == 422
        assert field in [f["field"] for f in response.json()["error"]["fields"]]
    team = _team(admin, org)
    user = control_plane.caller(Role.USER, org)
    bad_role = admin.post(
        f"/api/organisations/{org}/teams/{team['id']}/members", json={"user_id": user.user_id, "role": "BOSS"}
    )
    assert bad_role.status_code == 422
    assert bad_role.json()["error"]["fields"][0]["field"] == "role"


def test_team_list_pages_searches_and_filters_by_member(control_plane: ControlPlaneUnderTest) -> None:
    """Paging walks every team once; q searches names; user_id keeps the teams a user belongs to."""
    org = control_plane.organisation()
    admin = control_plane.admin
    teams = [_team(admin, org, f"squad-{i:02d}") for i in range(7)]
    _team(admin, org, "other")
    items, pages = walk(admin, f"/api/organisations/{org}/teams", limit=3, q="SQUAD", order="asc")
    assert [t["id"] for t in items] == [t["id"] for t in teams]
    assert pages == 3
    by_name = walk(admin, f"/api/organisations/{org}/teams", limit=3, sort="name", order="desc")[0]
    assert [t["name"] for t in by_name] == sorted((t["name"] for t in by_name), reverse=True)
    assert len(by_name) == 8
    user = control_plane.caller(Role.USER, org)
    for team in teams[2:4]:
        member = {"user_id": user.user_id}
        assert (
            admin.post(f"/api/organisations/{org}/teams/{team['id']}/members", json=member).status_code == 201
        )
    of_user = admin.get(f"/api/organisations/{org}/teams", params={"user_id": user.user_id}).json()["items"]
    assert {t["id"] for t in of_user} == {teams[2]["id"], teams[3]["id"]}
    assert admin.get(f"/api/organisations/{org}/teams", params={"q": "100%"}).json()["items"] == []


def test_members_are_added_listed_changed_and_removed(control_plane: ControlPlaneUnderTest) -> None:
    """Members join with a role, are listed (filter by role, search e-mail), change role and leave."""
    org = control_plane.organisation()
    admin = control_plane.caller(Role.ORG_ADMIN, org)
    team = _team(admin, org)
    base = f"/api/organisations/{org}/teams/{team['id']}/members"
    alice = control_plane.caller(Role.USER, org, email=f"alice-{secrets.token_hex(3)}@example.test")
    bob = control_plane.caller(Role.USER, org)
    added = admin.post(base, json={"user_id": alice.user_id, "role": "MANAGER"})
    assert added.status_code == 201
    assert added.json()["email"] == alice.email
    assert added.json()["role"] == "MANAGER"
    assert admin.post(base, json={"user_id": bob.user_id}).json()["role"] == "MEMBER"
    assert admin.post(base, json={"user_id": bob.user_id}).status_code == 409
    assert {m["user_id"] for m in admin.get(base).json()["items"]} == {alice.user_id, bob.user_id}
    managers = admin.get(base, params={"role": "MANAGER"}).json()["items"]
    assert [m["user_id"] for m in managers] == [alice.user_id]
    assert [m["user_id"] for m in admin.get(base, params={"q": "ALICE-"}).json()["items"]] == [alice.user_id]
    changed = admin.patch(f"{base}/{alice.user_id}", json={"role": "MEMBER"})
    assert changed.json()["role"] == "MEMBER"
    assert admin.get(f"{base}/{alice.user_id}").json()["role"] == "MEMBER"
    assert admin.delete(f"{base}/{alice.user_id}").status_code == 204
    assert admin.get(f"{base}/{alice.user_id}").status_code == 404
    assert admin.delete(f"{base}/{alice.user_id}").status_code == 404
    assert admin.patch(f"{base}/{alice.user_id}", json={"role": "MEMBER"}).status_code == 404


def test_member_list_pages(control_plane: ControlPlaneUnderTest) -> None:
    """Walking members 2 at a time returns each of 5 members once."""
    org = control_plane.organisation()
    team = _team(control_plane.admin, org)
    base = f"/api/organisations/{org}/teams/{team['id']}/members"
    users = {control_plane.caller(Role.USER, org).user_id for _ in range(5)}
    for user_id in users:
        assert control_plane.admin.post(base, json={"user_id": user_id}).status_code == 201
    items, pages = walk(control_plane.admin, base, limit=2)
    assert sorted(m["user_id"] for m in items) == sorted(users)
    assert pages == 3


def test_only_users_of_the_organisation_can_join(control_plane: ControlPlaneUnderTest) -> None:
    """Adding a user of another organisation, or an unknown user, is the same 422 on user_id."""
    org, other = control_plane.organisation(), control_plane.organisation()
    team = _team(control_plane.admin, org)
    stranger = control_plane.caller(Role.USER, other)
    base = f"/api/organisations/{org}/teams/{team['id']}/members"
    for user_id in (stranger.user_id, "nosuchuser"):
        refused = control_plane.admin.post(base, json={"user_id": user_id})
        assert refused.status_code == 422
        assert refused.json()["error"]["param"] == "user_id"
        assert refused.json()["error"]["message"] == "no such user in this organisation"


def test_removing_a_member_keeps_their_keys(control_plane: ControlPlaneUnderTest) -> None:
    """A member taken out of a team keeps their own API key, unrevoked (spec §11.4)."""
    org = control_plane.organisation()
    team = _team(control_plane.admin, org)
    user = control_plane.caller(Role.USER, org)
    base = f"/api/organisations/{org}/teams/{team['id']}/members"
    control_plane.admin.post(base, json={"user_id": user.user_id})
    key = _api_key(control_plane, org, type=ApiKeyType.USER, user_id=user.user_id)
    assert control_plane.admin.delete(f"{base}/{user.user_id}").status_code == 204
    after = control_plane.gateway.run(control_plane.gateway.runtime.control.keys.get(key.id))
    assert after.revoked is False


def test_team_owning_keys_cannot_be_deleted(control_plane: ControlPlaneUnderTest) -> None:
    """Deleting a team with an API key is 409 naming what it owns; a team with only members is deleted."""
    org = control_plane.organisation()
    admin = control_plane.admin
    keyed, plain = _team(admin, org), _team(admin, org)
    _api_key(control_plane, org, type=ApiKeyType.TEAM, team_id=keyed["id"])
    refused = admin.delete(f"/api/organisations/{org}/teams/{keyed['id']}")
    assert refused.status_code == 409
    assert "1 API keys" in refused.json()["error"]["message"]
    user = control_plane.caller(Role.USER, org)
    admin.post(f"/api/organisations/{org}/teams/{plain['id']}/members", json={"user_id": user.user_id})
    assert admin.delete(f"/api/organisations/{org}/teams/{plain['id']}").status_code == 204
    assert (
        admin.get(f"/api/organisations/{org}/teams", params={"user_id": user.user_id}).json()["items"] == []
    )


def test_manager_reaches_only_the_teams_they_manage(control_plane: ControlPlaneUnderTest) -> None:
    """A team MANAGER renames their team and manages its members; other teams and creation are 403."""
    org = control_plane.organisation()
    admin = control_plane.admin
    managed, other = _team(admin, org), _team(admin, org)
    manager = control_plane.caller(Role.MANAGER, org, teams={managed["id"]: TeamMemberRole.MANAGER})
    user = control_plane.caller(Role.USER, org)
    mine = f"/api/organisations/{org}/teams/{managed['id']}"
    theirs = f"/api/organisations/{org}/teams/{other['id']}"
    assert manager.patch(mine, json={"name": "mine renamed"}).status_code == 200
    assert manager.post(f"{mine}/members", json={"user_id": user.user_id}).status_code == 201
    assert manager.patch(f"{mine}/members/{user.user_id}", json={"role": "MANAGER"}).status_code == 200
    assert manager.delete(f"{mine}/members/{user.user_id}").status_code == 204
    assert manager.patch(theirs, json={"name": "taken over"}).status_code == 403
    assert manager.post(f"{theirs}/members", json={"user_id": user.user_id}).status_code == 403
    assert manager.get(theirs).status_code == 200  # managers read every team of the organisation
    assert manager.post(f"/api/organisations/{org}/teams", json={"name": "new"}).status_code == 403
    assert manager.delete(mine).status_code == 403


def test_user_reads_only_own_teams(control_plane: ControlPlaneUnderTest) -> None:
    """A USER lists and reads the teams they belong to, sees their members, and changes nothing."""
    org = control_plane.organisation()
    admin = control_plane.admin
    own, other = _team(admin, org), _team(admin, org)
    user = control_plane.caller(Role.USER, org, teams={own["id"]: TeamMemberRole.MEMBER})
    listed = user.get(f"/api/organisations/{org}/teams").json()["items"]
    assert [t["id"] for t in listed] == [own["id"]]
    assert user.get(f"/api/organisations/{org}/teams/{own['id']}").status_code == 200
    assert user.get(f"/api/organisations/{org}/teams/{own['id']}/members").status_code == 200
    assert user.get(f"/api/organisations/{org}/teams/{other['id']}").status_code == 403
    assert user.patch(f"/api/organisations/{org}/teams/{own['id']}", json={"name": "x"}).status_code == 403
    assert user.post(f"/api/organisations/{org}/teams", json={"name": "x"}).status_code == 403


def test_teams_are_isolated_between_organisations(control_plane: ControlPlaneUnderTest) -> None:
    """Org A's admin gets 403 on org B's paths and 404 for org B's team under org A's path."""
    org_a, org_b = control_plane.organisation(), control_plane.organisation()
    team_b = _team(control_plane.admin, org_b)
    admin_a = control_plane.caller(Role.ORG_ADMIN, org_a)
    assert admin_a.get(f"/api/organisations/{org_b}/teams").status_code == 403
    assert admin_a.post(f"/api/organisations/{org_b}/teams", json={"name": "x"}).status_code == 403
    under_a = f"/api/organisations/{org_a}/teams/{team_b['id']}"
    assert admin_a.get(under_a).status_code == 404
    assert admin_a.patch(under_a, json={"name": "x"}).status_code == 404
    assert admin_a.delete(under_a).status_code == 404
    assert admin_a.get(f"{under_a}/members").status_code == 404
    assert admin_a.get(f"/api/organisations/{org_a}/teams/nosuchteam").status_code == 404


def test_admin_team_list_spans_organisations(control_plane: ControlPlaneUnderTest) -> None:
    """The super admin lists teams of every organisation, filtered by organisation; others get 403."""
    org_a, org_b = control_plane.organisation(), control_plane.organisation()
    team_a, team_b = _team(control_plane.admin, org_a), _team(control_plane.admin, org_b)
    everything = {t["id"] for t in walk(control_plane.admin, "/api/admin/teams", limit=200)[0]}
    assert {team_a["id"], team_b["id"]} <= everything
    only_b = control_plane.admin.get("/api/admin/teams", params={"organisation_id": org_b}).json()["items"]
    assert [t["id"] for t in only_b] == [team_b["id"]]
    assert control_plane.caller(Role.ORG_ADMIN, org_a).get("/api/admin/teams").status_code == 403


def test_cursor_of_another_sort_is_refused(control_plane: ControlPlaneUnderTest) -> None:
    """A cursor made under sort=name replayed under sort=created_at (or forged) is 422, not a server error."""
    org = control_plane.organisation()
    for i in range(3):
        _team(control_plane.admin, org, f"t{i}")
    base = f"/api/organisations/{org}/teams"
    cursor = control_plane.admin.get(base, params={"limit": 1, "sort": "name"}).json()["next_cursor"]
    assert cursor
    replayed = control_plane.admin.get(base, params={"limit": 1, "cursor": cursor})
    assert replayed.status_code == 422
    assert replayed.json()["error"]["param"] == "cursor"
    assert control_plane.admin.get(base, params={"cursor": "not-a-cursor"}).status_code == 422
