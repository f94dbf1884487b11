"""GET /api/mcp-catalogue: the shipped trusted MCP servers, for any signed-in caller, with filters."""

from __future__ import annotations

from typing import Any

import pytest

from odock.mcp.catalogue import trusted_catalogue
from odock.tenancy.tables import Role
from tests.support.api import Caller, ControlPlaneUnderTest


def listed(caller: Caller, **params: Any) -> list[dict[str, Any]]:
    """The catalogue items (200) for ``params``."""
    response = caller.get("/api/mcp-catalogue", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_any_signed_in_user_reads_the_whole_catalogue(control_plane: ControlPlaneUnderTest) -> None:
    """A plain USER reads every entry in catalogue order; an anonymous caller is refused with 401."""
    user = control_plane.caller(Role.USER, control_plane.organisation())
    response = user.get("/api/mcp-catalogue")
    assert response.status_code == 200
    body = response.json()
    shipped = trusted_catalogue()
    assert [item["slug"] for item in body["items"]] == [s.slug for s in shipped.servers]
    assert body["categories"] == shipped.categories
    time = next(item for item in body["items"] if item["slug"] == "time")
    assert (time["transport"], time["command"], time["args"]) == ("STDIO", "uvx", ["mcp-server-time"])
    assert time["suggested_pricing"] == {
        "call_nanos_usd": 0,
        "input_byte_nanos_usd": 0,
        "output_byte_nanos_usd": 0,
    }
    assert control_plane.client().get("/api/mcp-catalogue").status_code == 401


def test_filters(control_plane: ControlPlaneUnderTest) -> None:
    """q (name, slug, description, tag), transport and category narrow the list; they combine."""
    admin = control_plane.admin
    remote = listed(admin, transport="STREAMABLE_HTTP")
    assert remote
    assert {item["transport"] for item in remote} == {"STREAMABLE_HTTP"}
    assert "huggingface" in {item["slug"] for item in remote}
    assert {item["slug"] for item in listed(admin, q="HUGGING")} == {"huggingface"}
    assert {item["slug"] for item in listed(admin, q="timezone")} == {"time", "time-python"}
    docs = listed(admin, category="documentation")
    assert docs
    assert {item["category"] for item in docs} == {"documentation"}
    assert listed(admin, category="documentation", transport="STDIO") == [
        item for item in docs if item["transport"] == "STDIO"
    ]
    assert listed(admin, q="no-such-server-anywhere") == []


@pytest.mark.parametrize("params", [{"transport": "PIGEON"}, {"category": "Not A Category"}, {"q": ""}])
def test_bad_filters_are_422(control_plane: ControlPlaneUnderTest, params: dict[str, str]) -> None:
    """An unknown transport, a malformed category or an empty q is refused with 422."""
    assert control_plane.admin.get("/api/mcp-catalogue", params=params).status_code == 422
