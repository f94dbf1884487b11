"""Personal admin tokens: issue (secret once), list, current rights of the owner, expiry, revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from odock.identity.tables import AdminToken
from odock.tenancy.tables import Role
from tests.support.api import ControlPlaneUnderTest


def test_token_lifecycle(control_plane: ControlPlaneUnderTest) -> None:
    """A new token works at once, is listed without its secret, and stops working when revoked."""
    org = control_plane.organisation()
    owner = control_plane.caller(Role.ORG_ADMIN, org)
    created = owner.post("/api/auth/tokens", json={"name": "ci"})
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    assert secret.startswith("odk_admin_")
    listed = owner.get("/api/auth/tokens").json()["items"]
    assert "token" not in listed[0]
    assert secret not in str(listed)
    client = control_plane.client(headers={"Authorization": f"Bearer {secret}"})
    assert client.get(f"/api/organisations/{org}/users").status_code == 200
    assert owner.delete(f"/api/auth/tokens/{created.json()['id']}").status_code == 204
    refused = client.get(f"/api/organisations/{org}/users")
    assert refused.status_code == 401


def test_token_follows_the_owners_current_role(control_plane: ControlPlaneUnderTest) -> None:
    """Demoting the owner narrows what their token may do at once."""
    org = control_plane.organisation()
    owner = control_plane.caller(Role.ORG_ADMIN, org)
    assert owner.get(f"/api/organisations/{org}/invitations").status_code == 200
    demoted = control_plane.admin.patch(
        f"/api/organisations/{org}/users/{owner.user_id}", json={"role": "USER"}
    )
    assert demoted.status_code == 200, demoted.text
    assert owner.get(f"/api/organisations/{org}/invitations").status_code == 403


def test_expired_token_is_refused(control_plane: ControlPlaneUnderTest) -> None:
    """A token past its expiry answers 401."""
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = control_plane.admin.post("/api/auth/tokens", json={"name": "short", "expires_at": soon}).json()

    async def expire() -> None:
        async with control_plane.gateway.runtime.sessions() as session:
            row = await session.get(AdminToken, created["id"])
            assert row is not None
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
            await session.commit()

    control_plane.gateway.run(expire())
    client = control_plane.client(headers={"Authorization": f"Bearer {created['token']}"})
    assert client.get("/api/auth/tokens").status_code == 401


def test_past_expiry_is_a_validation_error(control_plane: ControlPlaneUnderTest) -> None:
    """An expiry in the past is 422 naming expires_at."""
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    response = control_plane.admin.post("/api/auth/tokens", json={"name": "x", "expires_at": past})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "expires_at"


def test_tokens_stop_when_the_user_is_disabled(control_plane: ControlPlaneUnderTest) -> None:
    """Disabling a user revokes their admin tokens."""
    org = control_plane.organisation()
    user = control_plane.caller(Role.USER, org)
    assert user.get("/api/auth/tokens").status_code == 200
    disabled = control_plane.admin.patch(
        f"/api/organisations/{org}/users/{user.user_id}", json={"status": "REVOKED"}
    )
    assert disabled.status_code == 200
    assert user.get("/api/auth/tokens").status_code == 401


def test_cannot_revoke_another_users_token(control_plane: ControlPlaneUnderTest) -> None:
    """Someone else's token id is 404 on the personal route; a super admin revokes it on the admin route."""
    org = control_plane.organisation()
    one, two = control_plane.caller(Role.USER, org), control_plane.caller(Role.USER, org)
    token_id = two.get("/api/auth/tokens").json()["items"][0]["id"]
    assert one.delete(f"/api/auth/tokens/{token_id}").status_code == 404
    assert one.get(f"/api/admin/users/{two.user_id}/tokens").status_code == 403
    listed = control_plane.admin.get(f"/api/admin/users/{two.user_id}/tokens").json()["items"]
    assert [t["id"] for t in listed] == [token_id]
    assert control_plane.admin.delete(f"/api/admin/users/{two.user_id}/tokens/{token_id}").status_code == 204
    assert two.get("/api/auth/tokens").status_code == 401
