"""The API's request guard: NUL characters and oversized bodies are refused before any handler."""

from __future__ import annotations

import pytest

from tests.conftest import GatewayFactory, SettingsFactory
from tests.support.api import ControlPlaneUnderTest


def test_nul_in_a_json_string_is_a_field_level_422(control_plane: ControlPlaneUnderTest) -> None:
    """A body string holding NUL is refused with 422 naming the field, on every backend alike."""
    response = control_plane.admin.post("/api/admin/organisations", json={"name": "acme\u0000corp"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["param"] == "name"


def test_nul_nested_in_a_list_names_its_path(control_plane: ControlPlaneUnderTest) -> None:
    """The refused field is named down to its list index."""
    org = control_plane.organisation()
    response = control_plane.admin.post(
        f"/api/organisations/{org}/apikeys", json={"name": "k", "models": ["ok", "bad\u0000"]}
    )
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "models.1"


def test_escaped_backslash_u0000_text_is_not_refused(control_plane: ControlPlaneUnderTest) -> None:
    """The six characters \\u0000 written as text (an escaped backslash) are an ordinary string."""
    response = control_plane.admin.post("/api/admin/organisations", json={"name": "literal \\u0000 text"})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", ["/api/admin/organisations?q=a%00b", "/api/admin/users?q=%00"])
def test_nul_in_the_query_is_a_422(control_plane: ControlPlaneUnderTest, path: str) -> None:
    """A query parameter holding NUL is refused, not sent to the database."""
    response = control_plane.admin.get(path)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_nul_in_the_path_is_a_404(control_plane: ControlPlaneUnderTest) -> None:
    """A path holding NUL names nothing: 404, and no query reaches the database."""
    org = control_plane.organisation()
    response = control_plane.admin.get(f"/api/organisations/{org}/teams/bad%00id")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_oversized_body_is_a_413(gateway_factory: GatewayFactory, make_settings: SettingsFactory) -> None:
    """A body past max_request_bytes is refused with 413 payload_too_large."""
    cp = ControlPlaneUnderTest(gateway_factory(make_settings(max_request_bytes=1024)))
    try:
        response = cp.admin.post("/api/admin/organisations", json={"name": "x" * 2000})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
    finally:
        cp.close()
