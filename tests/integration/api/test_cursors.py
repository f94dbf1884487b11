"""Forged ``?cursor=`` values on every list route: a 422 naming ``cursor``, never a 500."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.support.api import ControlPlaneUnderTest

# The ten list routes the review found answering a plain-text 500; ``{org}`` is filled in.
LIST_ROUTES = [
    "/api/organisations/{org}/apikeys",
    "/api/organisations/{org}/audit",
    "/api/organisations/{org}/budgets",
    "/api/organisations/{org}/invitations",
    "/api/organisations/{org}/models",
    "/api/admin/organisations",
    "/api/organisations/{org}/providers",
    "/api/organisations/{org}/quotas",
    "/api/organisations/{org}/teams",
    "/api/organisations/{org}/users",
]
# Routes that also sort by a string column (``sort=name``).
NAME_SORTED = [
    "/api/admin/organisations",
    "/api/organisations/{org}/models",
    "/api/organisations/{org}/providers",
    "/api/organisations/{org}/teams",
]
AT = "2026-01-01T00:00:00+00:00"
GOOD_ID = "01hzzzzzzzzzzzzzzzzzzzzzzz"


def forge(document: object) -> str:
    """A cursor holding ``document`` the way the API encodes its own (unpadded URL-safe base64)."""
    return base64.urlsafe_b64encode(orjson.dumps(document)).decode().rstrip("=")


FORGED = {
    "naive datetime": forge([{"t": "2026-01-01T00:00:00"}, "x"]),
    "date only": forge([{"t": "2026-01-01"}, GOOD_ID]),
    "not a datetime": forge([{"t": "yesterday"}, GOOD_ID]),
    "datetime of a number": forge([{"t": 20260101}, GOOD_ID]),
    "underflow to UTC": forge([{"t": "0001-01-01T00:00:00+05:00"}, GOOD_ID]),
    "overflow to UTC": forge([{"t": "9999-12-31T23:59:59-05:00"}, GOOD_ID]),
    "boolean": forge([True, GOOD_ID]),
    "null": forge([None, GOOD_ID]),
    "huge int": forge([18446744073709551615, GOOD_ID]),
    "huge float": forge([1.8446744073709552e19, GOOD_ID]),
    "nested garbage": forge([[{"t": [AT]}], {"x": [1]}]),
    "extra key": forge([{"t": AT, "u": 1}, GOOD_ID]),
    "three items": forge([{"t": AT}, GOOD_ID, 1]),
    "an object": forge({"t": AT}),
    "id not a string": forge([{"t": AT}, 12]),
    "id with NUL": forge([{"t": AT}, "01hzz\u0000zz"]),
    "id too long": forge([{"t": AT}, "a" * 300]),
    "id of odd characters": forge([{"t": AT}, "../../etc'--"]),
    "empty id": forge([{"t": AT}, ""]),
    "not base64": "!!!not-base64!!!",
    "not JSON": base64.urlsafe_b64encode(b"\xff\xfe{").decode().rstrip("="),
}
NAME_FORGED = {
    "name with NUL": forge(["acme\u0000", GOOD_ID]),
    "name of a datetime": forge([{"t": AT}, GOOD_ID]),
    "name of a number": forge([7, GOOD_ID]),
}


@pytest.fixture(scope="module")
def org(shared_control_plane: ControlPlaneUnderTest) -> str:
    """One organisation for the module's lists."""
    return shared_control_plane.organisation()


def assert_cursor_refused(response_status: int, body: dict[str, object], headers: dict[str, str]) -> None:
    """A JSON 422 ``validation_error`` naming ``cursor``, with a request id."""
    assert response_status == 422, body
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "validation_error"
    assert error["param"] == "cursor"
    assert headers.get("x-request-id")


@pytest.mark.parametrize("route", LIST_ROUTES)
@pytest.mark.parametrize("cursor", list(FORGED.values()), ids=list(FORGED))
def test_forged_cursor_is_a_422(
    control_plane: ControlPlaneUnderTest, org: str, route: str, cursor: str
) -> None:
    """A cursor the API did not make is refused with 422 naming ``cursor`` on every list route."""
    response = control_plane.admin.get(route.format(org=org), params={"cursor": cursor})
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert_cursor_refused(response.status_code, response.json(), dict(response.headers))


@pytest.mark.parametrize("route", NAME_SORTED)
@pytest.mark.parametrize("cursor", list(NAME_FORGED.values()), ids=list(NAME_FORGED))
def test_forged_cursor_on_a_name_sort_is_a_422(
    control_plane: ControlPlaneUnderTest, org: str, route: str, cursor: str
) -> None:
    """A name-sorted list refuses a cursor whose value is not a clean string."""
    response = control_plane.admin.get(route.format(org=org), params={"cursor": cursor, "sort": "name"})
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert_cursor_refused(response.status_code, response.json(), dict(response.headers))


@pytest.mark.parametrize("offset", ["+05:00", "-08:00", "Z"])
def test_an_aware_cursor_in_any_offset_is_accepted(
    control_plane: ControlPlaneUnderTest, org: str, offset: str
) -> None:
    """A cursor timestamp with any UTC offset is a valid position (compared as the same instant)."""
    cursor = forge([{"t": f"2026-01-01T00:00:00{offset}"}, GOOD_ID])
    response = control_plane.admin.get(f"/api/organisations/{org}/apikeys", params={"cursor": cursor})
    assert response.status_code == 200, response.text
