"""The OpenAPI document: checked in, complete, and the same one the server publishes."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from odock.cli.main import main
from odock.rbac.permissions import Action, Resource
from odock.web.api.app import create_api
from odock.web.api.openapi import (
    ADMIN_TOKEN_SCHEME,
    PERMISSION_EXTENSION,
    SESSION_COOKIE_SCHEME,
    SIGNED_IN,
    openapi_document,
    operations,
    render_document,
)
from tests.support.api import ControlPlaneUnderTest

CHECKED_IN = Path(__file__).parents[3] / "docs" / "openapi.json"
REGENERATE = "regenerate it with: odock openapi --out docs/openapi.json"
PERMISSIONS = {f"{r.value}:{a.value}" for r in Resource for a in Action}


@functools.cache
def document() -> dict[str, Any]:
    """The document as the code generates it (generated once: it takes seconds)."""
    generated: dict[str, Any] = create_api(None).openapi()
    return generated


@functools.cache
def rendered() -> str:
    """The document as ``odock openapi`` writes it."""
    return render_document(document())


def test_checked_in_document_matches_the_code() -> None:
    """docs/openapi.json is exactly what ``odock openapi`` generates from the code."""
    assert CHECKED_IN.read_text(encoding="utf-8") == rendered(), f"docs/openapi.json is stale: {REGENERATE}"


def test_generation_is_stable() -> None:
    """The text is the document with sorted keys, so regenerating an unchanged API changes no byte."""
    assert rendered() == render_document(orjson.loads(rendered()))
    assert openapi_document() == rendered()


def test_cli_writes_the_document(tmp_path: Path) -> None:
    """``odock openapi --out FILE`` writes the document; without --out it prints it."""
    out = tmp_path / "openapi.json"
    result = CliRunner().invoke(main, ["openapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == rendered()
    printed = CliRunner().invoke(main, ["openapi"])
    assert printed.exit_code == 0
    assert printed.output == rendered()


def _responds_with_a_model(operation: dict[str, Any]) -> bool:
    for status, response in operation.get("responses", {}).items():
        if status in ("204", "302", "303", "307"):
            return True
        if status.startswith("2"):
            content = response.get("content", {})
            json_schema = content.get("application/json", {}).get("schema")
            if json_schema or any(kind.startswith("text/") for kind in content):
                return True
            if content.get("application/pdf", {}).get("schema", {}).get("format") == "binary":
                return True  # a document download (the PDF invoice)
    return False


def test_every_operation_is_documented() -> None:
    """Every operation has a summary and a response model (or a no-content / redirect / text / PDF answer)."""
    undocumented = [
        f"{method} {path}"
        for method, path, op in operations(document())
        if not op.get("summary") or not _responds_with_a_model(op)
    ]
    assert undocumented == []


def test_every_guarded_operation_names_its_permission_and_security() -> None:
    """Operations carry x-odock-permission (a table cell or signed-in) with both security schemes."""
    doc = document()
    schemes = doc["components"]["securitySchemes"]
    assert schemes[ADMIN_TOKEN_SCHEME]["scheme"] == "bearer"
    assert schemes[SESSION_COOKIE_SCHEME]["in"] == "cookie"
    guarded = 0
    for method, path, op in operations(doc):
        permission = op.get(PERMISSION_EXTENSION)
        if permission is None:
            assert "security" not in op, f"{method} {path}: security without a permission"
            continue
        guarded += 1
        assert permission in PERMISSIONS | {SIGNED_IN}, f"{method} {path}: unknown permission {permission}"
        assert op["security"] == [{ADMIN_TOKEN_SCHEME: []}, {SESSION_COOKIE_SCHEME: []}]
    assert guarded > 0


def test_admin_and_organisation_routes_all_need_a_permission() -> None:
    """Every /api/admin and /api/organisations operation names a permission-table cell."""
    scoped = ("/api/admin/", "/api/organisations/")
    open_routes = [
        f"{method} {path}"
        for method, path, op in operations(document())
        if path.startswith(scoped) and op.get(PERMISSION_EXTENSION) in (None, SIGNED_IN)
    ]
    assert open_routes == []


def test_server_publishes_the_same_document(control_plane: ControlPlaneUnderTest) -> None:
    """GET /api/openapi.json on a live server answers the checked-in document's content."""
    response = control_plane.client().get("/api/openapi.json")
    assert response.status_code == 200
    assert orjson.loads(response.content) == document()
