"""Invitations: create (link once), list, resend (old link dies), revoke, accept by password or session."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from odock.tenancy.tables import Role
from tests.conftest import GatewayFactory, SettingsFactory
from tests.integration.api.conftest import ModuleGatewayFactory
from tests.support.api import ControlPlaneUnderTest
from tests.support.identity import CHEAP_HASHING, PASSWORD, sign_in


@pytest.fixture(scope="module")
def cp(module_gateway_factory: ModuleGatewayFactory) -> Iterator[ControlPlaneUnderTest]:
    """A control plane with cheap password hashing and a public URL for links."""
    plane = ControlPlaneUnderTest(
        module_gateway_factory(public_url="https://console.example.test", **CHEAP_HASHING)
    )
    yield plane
    plane.close()


def _invite(
    cp: ControlPlaneUnderTest, org: str, email: str | None = None, role: str = "USER"
) -> dict[str, Any]:
    email = email or f"invitee-{secrets.token_hex(4)}@example.test"
    admin = cp.caller(Role.ORG_ADMIN, org)
    response = admin.post(f"/api/organisations/{org}/invitations", json={"email": email, "role": role})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_create_returns_link_once_and_details_are_public(cp: ControlPlaneUnderTest) -> None:
    """The create answer holds the link; the list never does; /invite/{token} shows the offer publicly."""
    org = cp.organisation("Acme")
    invited = _invite(cp, org, role="MANAGER")
    assert invited["invite_url"] == f"https://console.example.test/invite/{invited['token']}"
    listed = cp.admin.get(f"/api/organisations/{org}/invitations").json()["items"]
    assert invited["token"] not in str(listed)
    details = cp.client().get(f"/invite/{invited['token']}")
    assert details.status_code == 200
    assert details.json() | {"expires_at": None} == {
        "type": "JOIN_ORGANISATION",
        "email": invited["email"],
        "role": "MANAGER",
        "organisation_id": org,
        "organisation_name": "Acme",
        "status": "PENDING",
        "expires_at": None,
    }
    assert cp.client().get("/invite/not-a-token").json()["error"]["code"] == "invitation_invalid"


def test_org_admin_cannot_invite_a_super_admin(cp: ControlPlaneUnderTest) -> None:
    """SUPER_ADMIN is not an invitable role (422); managers and users cannot invite at all (403)."""
    org = cp.organisation()
    admin = cp.caller(Role.ORG_ADMIN, org)
    refused = admin.post(
        f"/api/organisations/{org}/invitations", json={"email": "x@example.test", "role": "SUPER_ADMIN"}
    )
    assert refused.status_code == 422
    manager = cp.caller(Role.MANAGER, org)
    assert (
        manager.post(f"/api/organisations/{org}/invitations", json={"email": "y@example.test"}).status_code
        == 403
    )


def test_other_organisation_cannot_see_invitations(cp: ControlPlaneUnderTest) -> None:
    """An org admin of another organisation gets 403 on the list and 404 on the item."""
    org, other = cp.organisation(), cp.organisation()
    invited = _invite(cp, org)
    stranger = cp.caller(Role.ORG_ADMIN, other)
    assert stranger.get(f"/api/organisations/{org}/invitations").status_code == 403
    assert stranger.post(f"/api/organisations/{other}/invitations/{invited['id']}/revoke").status_code == 404


def test_accept_with_password_creates_active_user_and_signs_in(cp: ControlPlaneUnderTest) -> None:
    """Accepting with a name and password makes an ACTIVE user with the invited role, signed in."""
    org = cp.organisation()
    invited = _invite(cp, org, role="MANAGER")
    browser = cp.client()
    accepted = browser.post(
        f"/api/invitations/{invited['token']}/accept", json={"name": "New", "password": PASSWORD}
    )
    assert accepted.status_code == 200, accepted.text
    user = accepted.json()["user"]
    assert (user["status"], user["role"], user["organisation_id"], user["name"]) == (
        "ACTIVE",
        "MANAGER",
        org,
        "New",
    )
    assert browser.get("/api/auth/session").json()["user"]["id"] == user["id"]
    again = cp.client().post(f"/api/invitations/{invited['token']}/accept", json={"password": PASSWORD})
    assert again.status_code == 410
    assert again.json()["error"]["code"] == "invitation_closed"
    sign_in(cp, invited["email"])


def test_accept_needs_a_long_enough_password(cp: ControlPlaneUnderTest) -> None:
    """A short password is 422 and the invitation stays open."""
    invited = _invite(cp, cp.organisation())
    short = cp.client().post(f"/api/invitations/{invited['token']}/accept", json={"password": "short"})
    assert short.status_code == 422
    assert cp.client().get(f"/invite/{invited['token']}").json()["status"] == "PENDING"


def test_resend_replaces_the_link(cp: ControlPlaneUnderTest) -> None:
    """After a resend the old link is invalid and the new one works."""
    org = cp.organisation()
    invited = _invite(cp, org)
    resent = cp.admin.post(f"/api/organisations/{org}/invitations/{invited['id']}/resend")
    assert resent.status_code == 200
    assert resent.json()["token"] != invited["token"]
    assert cp.client().get(f"/invite/{invited['token']}").status_code == 404
    assert cp.client().get(f"/invite/{resent.json()['token']}").json()["status"] == "PENDING"


def test_revoke_closes_the_link(cp: ControlPlaneUnderTest) -> None:
    """A revoked invitation cannot be accepted (410) and is listed as REVOKED."""
    org = cp.organisation()
    invited = _invite(cp, org)
    revoked = cp.admin.post(f"/api/organisations/{org}/invitations/{invited['id']}/revoke")
    assert revoked.json()["status"] == "REVOKED"
    refused = cp.client().post(f"/api/invitations/{invited['token']}/accept", json={"password": PASSWORD})
    assert refused.status_code == 410
    listed = cp.admin.get(f"/api/organisations/{org}/invitations", params={"status": "REVOKED"}).json()[
        "items"
    ]
    assert [i["id"] for i in listed] == [invited["id"]]


def test_expired_invitation(gateway_factory: GatewayFactory, make_settings: SettingsFactory) -> None:
    """Past its expiry an invitation reads EXPIRED, cannot be accepted, and a resend reopens it."""
    plane = ControlPlaneUnderTest(
        gateway_factory(make_settings(invitation_ttl_seconds=0.001, **CHEAP_HASHING))
    )
    try:
        org = plane.organisation()
        invited = _invite(plane, org)
        assert plane.client().get(f"/invite/{invited['token']}").json()["status"] == "EXPIRED"
        refused = plane.client().post(
            f"/api/invitations/{invited['token']}/accept", json={"password": PASSWORD}
        )
        assert refused.status_code == 410
        listed = plane.admin.get(f"/api/organisations/{org}/invitations", params={"status": "EXPIRED"}).json()
        assert [i["id"] for i in listed["items"]] == [invited["id"]]
    finally:
        plane.close()


def test_duplicate_open_invitation_is_a_conflict(cp: ControlPlaneUnderTest) -> None:
    """A second invitation for an address with an open one is 409."""
    org = cp.organisation()
    invited = _invite(cp, org)
    again = cp.admin.post(f"/api/organisations/{org}/invitations", json={"email": invited["email"]})
    assert again.status_code == 409
