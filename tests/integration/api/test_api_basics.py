"""The control-plane API's frame: OpenAPI document, authentication, error shapes, RBAC fast-fail."""

from __future__ import annotations

import httpx

from odock.tenancy.tables import Role
from tests.conftest import GatewayFactory, SettingsFactory
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


def test_gateway_only_process_does_not_serve_the_api(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory
) -> None:
    """With components=gateway, /api is not served (404) while the gateway answers."""
    gateway = gateway_factory(make_settings(components="gateway"))
    with httpx.Client(base_url=gateway.base_url) as client:
        assert client.get("/api/openapi.json").status_code == 404
        assert client.get("/v1/healthz").status_code == 200


def test_control_plane_only_process_does_not_serve_inference(
    gateway_factory: GatewayFactory, make_settings: SettingsFactory
) -> None:
    """With components=control-plane, /v1 inference routes are 404 while /api and health answer."""
    gateway = gateway_factory(make_settings(components="control-plane"))
    with httpx.Client(base_url=gateway.base_url) as client:
        refused = client.post("/v1/chat/completions", json={"model": "m", "messages": []})
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "not_found"
        assert client.get("/api/openapi.json").status_code == 200
        assert client.get("/v1/healthz").status_code == 200
