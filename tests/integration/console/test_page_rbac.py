"""Every console page, generated from the app's routes: signed out, each role, and garbage input.

The pages are found the way the RBAC matrix finds API routes (``tests/integration/api/
test_rbac_matrix.py``): every GET route of the app whose path is a console page
(:func:`odock.web.console.paths.is_page`), so pages added later are covered without listing them.
Each page declares the ``Permit`` of the API route it mirrors; the cases and their expected answers
come from the matrix's oracle (the permission table and the reach rules) on the same two worlds:

* signed out → a redirect to the sign-in page that comes back to the page;
* a role the table refuses (or another organisation's page) → the 403 page, never the content;
* a role it allows → the page itself (200, HTML, no error);
* garbage in any path or query parameter → never a 5xx, and always a page (HTML), not JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from odock.web.api.app import create_api
from odock.web.api.openapi import permits_of
from odock.web.console.paths import is_page
from tests.integration.api.test_rbac_matrix import Case, Outcome, Route, cases_of
from tests.integration.api.test_rbac_matrix import worlds as worlds
from tests.support.world import CALLERS, World, WorldServer

PUBLIC_PAGES: dict[str, str] = {
    "/": "the front door: sends the caller to sign-in or their workspace",
    "/sign-in": "the sign-in form",
    "/password": "reads the caller's own credential itself (signed out: the sign-in page)",
    "/welcome/{token}": "the first-start link is the credential (only while no user exists)",
}
"""Pages without a Permit, and why (every other page must declare the Permit of its API route)."""

ERROR_MARK = 'data-testid="error-message"'  # templates/errors/page.html
_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")

# Percent-encoded as they go on the wire: a NUL, a byte that is not UTF-8, a traversal, markup,
# SQL, a right-to-left override, huge and negative numbers, a very long id.
GARBAGE = (
    "x",
    "%00",
    "%FF",
    "..%2F..%2Fetc",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "1%27%20OR%20%271%27%3D%271",
    "%E2%80%AE",
    "-1",
    "9" * 40,
    "1e309",
    "A" * 400,
)


def page_routes() -> list[tuple[Route, APIRoute]]:
    """Every GET page route of the app, with the permission it declares."""
    found = []
    for context in iter_route_contexts(create_api(None).routes):
        original = context.original_route
        path = str(context.path)
        if isinstance(original, APIRoute) and "GET" in (context.methods or ()) and is_page(path):
            found.append((Route("GET", path, tuple(permits_of(original))), original))
    return found


PAGES = page_routes()
GUARDED = [route for route, _ in PAGES if route.permits]
PAGE_CASES = [case for route in GUARDED for case in cases_of(route)]


def _path(route: Route, values: dict[str, str]) -> str:
    return _PARAM.sub(lambda m: values[m.group(1)], route.path)


def _values(case: Case, world: World) -> dict[str, str]:
    return {p: world.organisation_id if s == "org" else world.id(s) for p, s in case.symbols}


def _query_params(original: APIRoute) -> list[str]:
    """The query parameters a page reads (its own and its dependencies')."""
    names: set[str] = set()

    def walk(dependant: Dependant) -> None:
        names.update(param.alias for param in dependant.query_params)
        for sub in dependant.dependencies:
            walk(sub)

    walk(original.dependant)
    return sorted(names)


@pytest.fixture(scope="module")
def client(worlds: WorldServer) -> Iterator[httpx.Client]:
    """A client that does not follow redirects (the test looks at them)."""
    with httpx.Client(base_url=worlds.server.base_url, timeout=30, follow_redirects=False) as http:
        yield http


def test_every_page_is_guarded_or_public() -> None:
    """Each page declares a Permit (the profile two: user, tokens), or is public with a reason."""
    bare = [route.path for route, _ in PAGES if not route.permits]
    assert sorted(bare) == sorted(PUBLIC_PAGES), f"pages without Permit(...): {bare}"
    assert all(route.permits for route in GUARDED)
    assert any(route.path == "/o/{organisation_id}/playground" for route in GUARDED)


@pytest.mark.parametrize("route", GUARDED, ids=[r.path for r in GUARDED])
def test_signed_out_is_sent_to_sign_in(route: Route, worlds: WorldServer, client: httpx.Client) -> None:
    """A guarded page asks a signed-out visitor to sign in, and comes back to it afterwards."""
    case = next(iter(cases_of(route)))
    path = _path(route, _values(case, worlds.a))
    answer = client.get(path + "?cursor=abc")
    assert answer.status_code == 303, f"{path}: {answer.status_code}"
    assert answer.headers["location"] == "/sign-in?next=" + quote(path + "?cursor=abc", safe="")


@pytest.mark.parametrize("case", PAGE_CASES, ids=[c.id for c in PAGE_CASES])
def test_page_answers_as_the_table_says(case: Case, worlds: WorldServer, client: httpx.Client) -> None:
    """The page shows its content to a role the table allows and the 403 page to one it refuses."""
    target = worlds.a if case.org == "A" else worlds.b
    path = _path(case.route, _values(case, target))
    answer = client.get(path, headers=worlds.a.auth(CALLERS[case.role]))
    detail = f"{case.id}: GET {path} answered {answer.status_code} {answer.text[:300]}"
    assert answer.headers["content-type"].startswith("text/html"), detail
    if case.expected is Outcome.ALLOWED:
        assert answer.status_code == 200, detail
        assert ERROR_MARK not in answer.text, detail
    else:
        assert answer.status_code == int(case.expected.value), detail
        assert ERROR_MARK in answer.text, detail
        # The error page is all there is: no table, no form of the page refused.
        assert "<table" not in answer.text, detail
        assert "<form" not in answer.text.split("<main", 1)[-1], detail


@pytest.mark.parametrize("route", [r for r, _ in PAGES], ids=[r.path for r, _ in PAGES])
def test_garbage_never_breaks_a_page(route: Route, worlds: WorldServer, client: httpx.Client) -> None:
    """Garbage in each path and query parameter is answered as a page (4xx or the page), never a 5xx."""
    original = dict((r.path, o) for r, o in PAGES)[route.path]
    headers = worlds.a.auth(CALLERS[next(iter(CALLERS))])  # the super admin reaches every page
    good = {p: worlds.a.organisation_id if p == "organisation_id" else "x" for p in route.params}
    attempts = []
    for param in route.params:
        attempts += [_path(route, {**good, param: value}) for value in GARBAGE]
    base = _path(route, good)
    for name in _query_params(original):
        attempts += [f"{base}?{name}={value}" for value in GARBAGE]
    attempts.append(base + "?" + "&".join(f"{n}=%00" for n in _query_params(original)))
    for path in attempts:
        answer = client.get(path, headers=headers)
        detail = f"GET {path[:200]} answered {answer.status_code} {answer.text[:300]}"
        assert answer.status_code < 500, detail
        if answer.status_code not in (301, 302, 303, 307):
            assert answer.headers["content-type"].startswith("text/html"), detail
