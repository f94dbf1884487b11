"""The control-plane API's frame: ``X-Request-Id`` on every answer, ``Allow`` on 405, a named bad body."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

import httpx
import pytest

from odock.tenancy.tables import Role
from tests.support.api import ControlPlaneUnderTest

FRESH_ID = re.compile(r"[0-9a-f]{32}")

# Each case: (the status it answers, how to make the request).
Request = Callable[[ControlPlaneUnderTest, dict[str, str]], httpx.Response]


def _list(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    return cp.admin.get("/api/admin/organisations", headers=headers)


def _create(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    return cp.admin.post(
        "/api/admin/organisations", json={"name": f"o-{secrets.token_hex(4)}"}, headers=headers
    )


def _delete(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    teams = f"/api/organisations/{cp.organisation()}/teams"
    team = cp.admin.post(teams, json={"name": "t"}).json()["id"]
    return cp.admin.delete(f"{teams}/{team}", headers=headers)


def _unauthenticated(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    return cp.client().get("/api/admin/organisations", headers=headers)


def _forbidden(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    return cp.caller(Role.USER, cp.organisation()).get("/api/admin/organisations", headers=headers)


def _unknown_route(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    return cp.admin.get("/api/no-such-route", headers=headers)


def _wrong_method(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    return cp.admin.put("/api/admin/organisations", headers=headers)


def _duplicate(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    name = f"dup-{secrets.token_hex(4)}"
    assert cp.admin.post("/api/admin/organisations", json={"name": name}).status_code == 201
    return cp.admin.post("/api/admin/organisations", json={"name": name}, headers=headers)


def _invalid(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    return cp.admin.post("/api/admin/organisations", json={"name": ""}, headers=headers)


def _refused_by_the_guard(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    return cp.admin.post("/api/admin/organisations", json={"name": "a\u0000b"}, headers=headers)


def _invitation_link(cp: ControlPlaneUnderTest, headers: dict[str, str]) -> httpx.Response:
    return cp.client().get("/invite/no-such-token", headers=headers)


CASES: dict[str, tuple[int, Request]] = {
    "200 list": (200, _list),
    "201 create": (201, _create),
    "204 delete": (204, _delete),
    "401 no credentials": (401, _unauthenticated),
    "403 forbidden": (403, _forbidden),
    "404 unknown route": (404, _unknown_route),
    "405 wrong method": (405, _wrong_method),
    "409 conflict": (409, _duplicate),
    "422 validation": (422, _invalid),
    "422 request guard": (422, _refused_by_the_guard),
    "404 invitation link": (404, _invitation_link),
}


@pytest.mark.parametrize("case", list(CASES))
def test_inbound_request_id_is_answered(control_plane: ControlPlaneUnderTest, case: str) -> None:
    """A well-formed X-Request-Id the caller sent comes back on the answer, whatever its status."""
    status, request = CASES[case]
    sent = f"caller-{secrets.token_hex(6)}"
    response = request(control_plane, {"X-Request-Id": sent})
    assert response.status_code == status, response.text
    assert response.headers.get_list("x-request-id") == [sent]


@pytest.mark.parametrize("case", list(CASES))
def test_request_id_is_made_when_none_is_sent(control_plane: ControlPlaneUnderTest, case: str) -> None:
    """Without an X-Request-Id the answer carries a fresh one, whatever its status."""
    status, request = CASES[case]
    response = request(control_plane, {})
    assert response.status_code == status, response.text
    assert FRESH_ID.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize("sent", ["has space", "x" * 129, "-leading-dash", "semi;colon"])
def test_malformed_request_id_is_replaced(control_plane: ControlPlaneUnderTest, sent: str) -> None:
    """An inbound X-Request-Id the gateway would not accept is replaced by a fresh one."""
    response = control_plane.admin.get("/api/admin/organisations", headers={"X-Request-Id": sent})
    assert response.status_code == 200
    assert FRESH_ID.fullmatch(response.headers["x-request-id"])


def test_audit_event_records_the_answered_request_id(control_plane: ControlPlaneUnderTest) -> None:
    """The audit event of a change carries the same request id as the answer that made it."""
    created = control_plane.admin.post("/api/admin/organisations", json={"name": f"o-{secrets.token_hex(4)}"})
    assert created.status_code == 201
    org = created.json()["id"]
    events = control_plane.admin.get(f"/api/organisations/{org}/audit").json()["items"]
    made = [e for e in events if e["action"] == "create" and e["resource_type"] == "organisations"]
    assert [e["request_id"] for e in made] == [created.headers["x-request-id"]]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/admin/organisations", {"GET", "POST"}),
        ("POST", "/api/organisations/{org}", {"GET", "PATCH"}),
        ("DELETE", "/api/organisations/{org}/apikeys", {"GET", "POST"}),
        ("GET", "/api/admin/organisations/{org}", {"DELETE"}),
    ],
)
def test_405_lists_every_allowed_method(
    control_plane: ControlPlaneUnderTest, method: str, path: str, allowed: set[str]
) -> None:
    """A 405 names, in Allow, every method the path serves (across the routes sharing it)."""
    response = control_plane.admin.request(method, path.format(org=control_plane.organisation()))
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert set(response.headers["allow"].split(", ")) == allowed


@pytest.mark.parametrize("body", [b"{", b'{"name": "x",}', b"not json", b'{"name": "\xff"}'])
def test_malformed_json_names_the_body(control_plane: ControlPlaneUnderTest, body: bytes) -> None:
    """A body that is not JSON is a 422 naming ``body`` (not a character offset) with a clear message."""
    response = control_plane.admin.post(
        "/api/admin/organisations", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["param"] == "body"
    assert [f["field"] for f in error["fields"]] == ["body"]
    assert "not valid JSON" in error["message"]
