"""Users: list with search and filters, detail with teams, edits under RBAC, approve/decline, admin create."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from odock.tenancy.tables import Role, TeamMemberRole, User, UserStatus
from tests.conftest import GatewayFactory, SettingsFactory
from tests.integration.api.conftest import ModuleGatewayFactory
from tests.support.api import ControlPlaneUnderTest
from tests.support.identity import CHEAP_HASHING, PASSWORD, sign_in


@pytest.fixture(scope="module")
def cp(module_gateway_factory: ModuleGatewayFactory) -> Iterator[ControlPlaneUnderTest]:
    """A control plane with cheap password hashing."""
    plane = ControlPlaneUnderTest(module_gateway_factory(**CHEAP_HASHING))
    yield plane
    plane.close()


def _pending_user(cp: ControlPlaneUnderTest, org: str | None) -> str:
    async def create() -> str:
        user = await cp.gateway.runtime.control.users.create_user(
            f"pending-{org}@example.test", organisation_id=org
        )
        async with cp.gateway.runtime.sessions() as session:
            row = await session.get(User, user.id)
            assert row is not None
            row.status = UserStatus.PENDING
            await session.commit()
        return str(user.id)

    return str(cp.gateway.run(create()))


def test_list_search_filter_and_page(cp: ControlPlaneUnderTest) -> None:
    """The user list searches e-mail, filters by role, and pages with a cursor."""
    org = cp.organisation()
    admin = cp.caller(Role.ORG_ADMIN, org)
    for _ in range(3):
        cp.caller(Role.USER, org)
    findme = f"findme-{secrets.token_hex(4)}@example.test"
    cp.caller(Role.MANAGER, org, email=findme)
    found = admin.get(f"/api/organisations/{org}/users", params={"q": findme.upper()}).json()["items"]
    assert [u["email"] for u in found] == [findme]
    users = admin.get(f"/api/organisations/{org}/users", params={"role": "USER"}).json()["items"]
    assert len(users) == 3
    first = admin.get(f"/api/organisations/{org}/users", params={"limit": 2}).json()
    second = admin.get(
        f"/api/organisations/{org}/users", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    seen = [u["id"] for u in first["items"] + second["items"]]
    assert len(seen) == len(set(seen)) == 4
    assert second["next_cursor"] is not None


def test_user_sees_only_themselves(cp: ControlPlaneUnderTest) -> None:
    """A USER's list holds only their own row; another user's detail is 403."""
    org = cp.organisation()
    me, other = cp.caller(Role.USER, org), cp.caller(Role.USER, org)
    assert [u["id"] for u in me.get(f"/api/organisations/{org}/users").json()["items"]] == [me.user_id]
    assert me.get(f"/api/organisations/{org}/users/{other.user_id}").status_code == 403


def test_detail_has_team_memberships(cp: ControlPlaneUnderTest) -> None:
    """A user's detail lists their teams and roles in them."""
    org = cp.organisation()
    team = cp.gateway.run(cp.gateway.runtime.control.tenancy.create_team(org, "Platform"))
    member = cp.caller(Role.MANAGER, org, teams={team.id: TeamMemberRole.MANAGER})
    detail = cp.admin.get(f"/api/organisations/{org}/users/{member.user_id}").json()
    assert detail["teams"] == [{"team_id": team.id, "team_name": "Platform", "role": "MANAGER"}]


def test_user_edits_own_name_only(cp: ControlPlaneUnderTest) -> None:
    """A USER may rename themselves but not change their role; another user's row is 403."""
    org = cp.organisation()
    me, other = cp.caller(Role.USER, org), cp.caller(Role.USER, org)
    path = f"/api/organisations/{org}/users/{me.user_id}"
    assert me.patch(path, json={"name": "Me"}).json()["name"] == "Me"
    assert me.patch(path, json={"role": "ORG_ADMIN"}).status_code == 403
    assert me.patch(f"/api/organisations/{org}/users/{other.user_id}", json={"name": "x"}).status_code == 403


def test_org_admin_cannot_grant_super_admin(cp: ControlPlaneUnderTest) -> None:
    """An ORG_ADMIN promoting someone to SUPER_ADMIN is 403; to MANAGER works."""
    org = cp.organisation()
    admin, user = cp.caller(Role.ORG_ADMIN, org), cp.caller(Role.USER, org)
    path = f"/api/organisations/{org}/users/{user.user_id}"
    assert admin.patch(path, json={"role": "SUPER_ADMIN"}).status_code == 403
    assert admin.patch(path, json={"role": "MANAGER"}).json()["role"] == "MANAGER"


def test_last_super_admin_is_protected(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory, empty_database: dict[str, str]
) -> None:
    """The last active super admin cannot be demoted, disabled or deleted (409).

    On a database of its own: the run's shared production database holds a super admin of every
    control plane of the run, which this test would otherwise have to revoke (and restore) one by one,
    under the feet of the other worker's tests.
    """
    cp = ControlPlaneUnderTest(gateway_factory(make_settings(**empty_database, **CHEAP_HASHING)))

    async def super_admins() -> list[str]:
        users = await cp.gateway.runtime.control.users.list_users()
        return [u.id for u in users if u.role is Role.SUPER_ADMIN and u.status is UserStatus.ACTIVE]

    try:
        others = [u for u in cp.gateway.run(super_admins()) if u != cp.admin.user_id]
        for user_id in others:  # a bootstrap admin, if the start made one: leave one super admin
            revoked = cp.admin.patch(f"/api/admin/users/{user_id}", json={"status": "REVOKED"})
            assert revoked.status_code == 200
        me = f"/api/admin/users/{cp.admin.user_id}"
        assert cp.admin.patch(me, json={"role": "USER"}).status_code == 409
        assert cp.admin.patch(me, json={"status": "REVOKED"}).status_code == 409
        assert cp.admin.delete(me).status_code == 409
    finally:
        cp.close()


def test_disabling_a_user_ends_their_sessions(cp: ControlPlaneUnderTest) -> None:
    """Setting status REVOKED ends the user's sessions at once."""
    worker = f"worker-{secrets.token_hex(4)}@example.test"
    org = cp.organisation()
    created = cp.admin.post(
        "/api/admin/users",
        json={"email": worker, "role": "USER", "organisation_id": org, "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    browser = sign_in(cp, worker)
    assert browser.get("/api/auth/session").status_code == 200
    admin = cp.caller(Role.ORG_ADMIN, org)
    disabled = admin.patch(
        f"/api/organisations/{org}/users/{created.json()['id']}", json={"status": "REVOKED"}
    )
    assert disabled.json()["status"] == "REVOKED"
    assert browser.get("/api/auth/session").status_code == 401
    refused = cp.client().post("/api/auth/login", json={"email": worker, "password": PASSWORD})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "account_not_active"


def test_approve_pending_user(cp: ControlPlaneUnderTest) -> None:
    """Approve turns a PENDING user into ACTIVE; a second decision is 409."""
    org = cp.organisation()
    admin = cp.caller(Role.ORG_ADMIN, org)
    pending = _pending_user(cp, org)
    approved = admin.post(f"/api/organisations/{org}/users/{pending}/approve")
    assert approved.json()["status"] == "ACTIVE"
    assert admin.post(f"/api/organisations/{org}/users/{pending}/decline").status_code == 409


def test_decline_pending_user(cp: ControlPlaneUnderTest) -> None:
    """Decline turns a PENDING user into REVOKED; a MANAGER cannot decide (403)."""
    org = cp.organisation()
    pending = _pending_user(cp, org)
    manager = cp.caller(Role.MANAGER, org)
    assert manager.post(f"/api/organisations/{org}/users/{pending}/decline").status_code == 403
    declined = cp.caller(Role.ORG_ADMIN, org).post(f"/api/organisations/{org}/users/{pending}/decline")
    assert declined.json()["status"] == "REVOKED"


def test_admin_user_list_and_create(cp: ControlPlaneUnderTest) -> None:
    """Super admins list users across organisations and create users; an ORG_ADMIN cannot."""
    made = f"made-{secrets.token_hex(4)}@example.test"
    org = cp.organisation()
    created = cp.admin.post(
        "/api/admin/users",
        json={"email": made.title(), "role": "MANAGER", "organisation_id": org, "password": PASSWORD},
    )
    assert created.status_code == 201
    assert created.json()["email"] == made
    listed = cp.admin.get("/api/admin/users", params={"organisation_id": org}).json()["items"]
    assert [u["email"] for u in listed] == [made]
    duplicate = cp.admin.post(
        "/api/admin/users",
        json={"email": made, "role": "USER", "organisation_id": org, "password": PASSWORD},
    )
    assert duplicate.status_code == 409
    org_admin = cp.caller(Role.ORG_ADMIN, org)
    assert org_admin.get("/api/admin/users").status_code == 403
    body = {"email": "n@example.test", "role": "USER", "organisation_id": org, "password": PASSWORD}
    assert org_admin.post("/api/admin/users", json=body).status_code == 403
