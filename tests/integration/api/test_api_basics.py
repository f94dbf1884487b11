"""The control-plane API's frame: OpenAPI document, authentication, error shapes, RBAC fast-fail."""

from __future__ import annotations

from odock.tenancy.tables import Role
from tests.support.api import ControlPlaneUnderTest


def test_openapi_document_is_served(control_plane: ControlPlaneUnderTest) -> None:
    """The OpenAPI document is published at /api/openapi.json."""
    response = control_plane.client().get("/api/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Odock control plane API"


def test_unknown_api_route_is_a_json_404(control_plane: ControlPlaneUnderTest) -> None:
    """An unknown /api route answers 404 not_found in the error shape."""
    response = control_plane.admin.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_gateway_routes_still_served(control_plane: ControlPlaneUnderTest) -> None:
    """The gateway answers /v1/healthz in the same process."""
    assert control_plane.client().get("/v1/healthz").status_code == 200


def test_caller_factory_makes_users_of_each_role(control_plane: ControlPlaneUnderTest) -> None:
    """Callers of every role exist with the given organisation."""
    org = control_plane.organisation()
    for role in Role:
        caller = control_plane.caller(role, None if role is Role.SUPER_ADMIN else org)
        row = control_plane.user_row(caller.user_id)
        assert row.role is role
