"""The OpenAPI document: each operation names its permission, and the document its security schemes.

Every operation of a route guarded by :class:`~odock.web.api.deps.Permit` carries
``x-odock-permission: "<resource>:<action>"`` (the cell of the permission table it needs, see
``docs/rbac.md``) and the two ways to authenticate; routes open to any signed-in caller say
``signed-in``; public operations (sign-in, invitation acceptance) declare no security.
``odock openapi --out docs/openapi.json`` writes the document that is checked in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from odock.web.api.deps import Permit, current_actor, current_credential

ADMIN_TOKEN_SCHEME = "adminToken"
SESSION_COOKIE_SCHEME = "sessionCookie"
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    ADMIN_TOKEN_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "odk_admin_…",
        "description": "A personal admin token (acts with its owner's rights).",
    },
    SESSION_COOKIE_SCHEME: {
        "type": "apiKey",
        "in": "cookie",
        "name": "odock_session",
        "description": "The browser session; cookie-authenticated writes also send X-CSRF-Token.",
    },
}
PERMISSION_EXTENSION = "x-odock-permission"
_PATH_PARAMETER = re.compile(r"{(\w+)(?::[^}]*)?}")
SIGNED_IN = "signed-in"
"""The permission of routes any signed-in caller may use (their own session, sign-out)."""


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


def permits_of(route: APIRoute) -> list[Permit]:
    """The :class:`Permit` dependencies of ``route`` (at any depth), in declaration order."""
    return [d.call for d in _dependencies(route.dependant) if isinstance(d.call, Permit)]


def authenticates(route: APIRoute) -> bool:
    """Whether ``route`` needs a signed-in caller (through a Permit or the actor dependencies)."""
    signed_in = (current_actor, current_credential)
    return any(isinstance(d.call, Permit) or d.call in signed_in for d in _dependencies(route.dependant))


def permission_label(permit: Permit) -> str:
    """``"<resource>:<action>"``, as the OpenAPI extension and the docs write a permission."""
    return f"{permit.resource.value}:{permit.action.value}"


def annotate_permissions(router: APIRouter) -> None:
    """Mark each operation of ``router`` with its permission and security (before it is included)."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        permits = permits_of(route)
        extra: dict[str, Any] = dict(route.openapi_extra or {})
        if permits:
            extra[PERMISSION_EXTENSION] = ", ".join(permission_label(p) for p in permits)
        elif authenticates(route):
            extra[PERMISSION_EXTENSION] = SIGNED_IN
        if PERMISSION_EXTENSION in extra:
            extra.setdefault("security", [{ADMIN_TOKEN_SCHEME: []}, {SESSION_COOKIE_SCHEME: []}])
        route.openapi_extra = extra or None


def declare_security_schemes(app: FastAPI) -> None:
    """Add the admin-token and session-cookie schemes to the app's OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        for name, scheme in SECURITY_SCHEMES.items():
            schemes.setdefault(name, scheme)
        declare_path_parameters(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def declare_path_parameters(document: dict[str, Any]) -> None:
    """Declare every ``{name}`` of each path that its operations leave undeclared.

    A handler need not take ``organisation_id`` when only its ``Permit`` reads it, but the
    document must still name the parameter for clients (and the fuzzer) to fill it.
    """
    for _method, path, operation in operations(document):
        declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"}
        missing = [name for name in _PATH_PARAMETER.findall(path) if name not in declared]
        if missing:
            operation["parameters"] = [*map(_path_parameter, missing), *operation.get("parameters", [])]


def _path_parameter(name: str) -> dict[str, Any]:
    title = name.replace("_", " ").title()
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "title": title}}


def render_document(document: dict[str, Any]) -> str:
    """The document as stable text: sorted keys, two-space indent, final newline."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n"


def openapi_document() -> str:
    """The control-plane API's OpenAPI document, as checked in at ``docs/openapi.json``."""
    from odock.web.api.app import create_api  # the app module imports this one

    return render_document(create_api(None).openapi())


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(method, path, operation)`` of every operation in an OpenAPI document."""
    methods: Sequence[str] = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
    for path, item in document.get("paths", {}).items():
        for method in methods:
            if method in item:
                yield method.upper(), path, item[method]
