"""The RBAC matrix, generated: every route x every role x (own organisation, another one).

The cases come from the routes themselves: each route's ``Permit`` dependency names the
``(resource, action)`` it needs, and the permission table (``odock.rbac.permissions``) says how
far each role reaches. For every route and role the test calls the route on a row of the
caller's organisation (world A) and of another one (world B), with an empty JSON body, and
checks the answer against what the table allows:

* reach NONE, or another organisation's path below reach ALL → 403;
* a row outside the reach in the own organisation → 403; on ``/api/auth/*`` (one's own
  sessions and tokens) a row that is not one's own → 404;
* allowed → anything but 401/403/404 (a 422 for the empty body is fine) and never a 5xx.

Item routes whose role reaches SELF or TEAM are called on a row inside the reach (the user's
own key) and one outside it (the organisation's key). Writes that are allowed run on a world
of their own, so that what they change or delete does not disturb the other cases.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from odock.app import create_app
from odock.rbac.permissions import PERMISSIONS, Action, Reach, Resource
from odock.tenancy.tables import Role, TeamMemberRole
from odock.web.api.app import create_api
from odock.web.api.deps import Permit
from odock.web.api.openapi import permits_of
from odock.web.console.paths import is_page
from tests.conftest import BACKEND, settings_factory
from tests.support.server import ThreadedServer
from tests.support.world import CALLERS, TEAMS, USERS, WorldServer, build_world, owner_of, teams_of

PUBLIC: dict[tuple[str, str], str] = {
    ("POST", "/api/auth/login"): "sign-in",
    ("POST", "/api/auth/welcome"): "the first-start link is the credential (only while no user exists)",
    ("POST", "/api/auth/logout"): "any signed-in caller ends their own session",
    ("GET", "/api/auth/session"): "any signed-in caller reads their own session",
    ("GET", "/api/auth/oauth/providers"): "the sign-in page lists the sign-in providers",
    ("GET", "/api/auth/oauth/{provider}/login"): "starts an OAuth / OpenID Connect sign-in",
    ("GET", "/api/auth/oauth/{provider}/callback"): "the OAuth provider's redirect back (state-checked)",
    ("GET", "/api/mcp-catalogue"): "any signed-in caller reads the shipped MCP catalogue",
    ("GET", "/api/invitations/{token}"): "the invitation link is the credential",
    ("POST", "/api/invitations/{token}/accept"): "the invitation link is the credential",
    ("GET", "/invite/{token}"): "the invitation link is the credential",
    ("GET", "/welcome/{token}"): "the first-start link's page (only while no user exists)",
    # Console pages without a Permit (tests/integration/console/test_page_rbac.py covers the pages).
    ("GET", "/"): "the console's front door: sends the caller to sign-in or their workspace",
    ("GET", "/sign-in"): "the sign-in page",
    ("GET", "/password"): "the password page reads the caller's own credential itself",
}
"""Routes without a Permit, and why (every other route must declare one)."""

NARROWED: dict[tuple[str, str], tuple[frozenset[Role], str]] = {
    ("POST", "/api/organisations/{organisation_id}/users/{user_id}/approve"): (
        frozenset({Role.MANAGER, Role.USER}),
        "user:update reaches one's own user, but nobody approves themselves: org admins only",
    ),
    ("POST", "/api/organisations/{organisation_id}/users/{user_id}/decline"): (
        frozenset({Role.MANAGER, Role.USER}),
        "user:update reaches one's own user, but nobody declines themselves: org admins only",
    ),
    # Console pages hidden from a role's navigation refuse it too (odock.web.console.routes.reuse.nav_guard).
    ("GET", "/o/{organisation_id}/users"): (
        frozenset({Role.USER}),
        "the Users page needs user:read at ORG reach (a USER sees themselves on /profile)",
    ),
    ("GET", "/o/{organisation_id}/users/{user_id}"): (
        frozenset({Role.USER}),
        "the Users pages need user:read at ORG reach (a USER sees themselves on /profile)",
    ),
    ("GET", "/o/{organisation_id}/teams"): (
        frozenset({Role.USER}),
        "the Teams pages need team:update at TEAM reach (managers and admins)",
    ),
    ("GET", "/o/{organisation_id}/teams/{team_id}"): (
        frozenset({Role.USER}),
        "the Teams pages need team:update at TEAM reach (managers and admins)",
    ),
}
"""Routes whose handler refuses (403) roles the table would let through, and why (keep this short)."""

UNROUTED: dict[tuple[Resource, Action], str] = {
    (Resource.AUDIT, Action.CREATE): "events are written by the recorder, never through the API",
    (Resource.AUDIT, Action.UPDATE): "the audit log is immutable",
    (Resource.AUDIT, Action.DELETE): "the audit log is immutable",
    (Resource.USAGE, Action.CREATE): "usage is recorded by the gateway",
    (Resource.USAGE, Action.UPDATE): "usage records are immutable",
    (Resource.USAGE, Action.DELETE): "usage records are kept for billing",
    (Resource.USAGE_DEAD_LETTER, Action.CREATE): "the usage writer keeps them, never the API",
    (Resource.USAGE_DEAD_LETTER, Action.UPDATE): "replayed by `odock usage replay-dead-letters` only",
    (Resource.USAGE_DEAD_LETTER, Action.DELETE): "removed by the replay command once stored",
    (Resource.INVITATION, Action.DELETE): "invitations are revoked (an update), keeping their history",
    (Resource.API_KEY, Action.DELETE): "keys are revoked (an update): usage keeps naming them",
    (Resource.ADMIN_TOKEN, Action.UPDATE): "a token cannot change; it is revoked (delete) and reissued",
    (Resource.MCP_STDIO_COMMAND, Action.UPDATE): "an allowlist entry is added or removed, never changed",
    (Resource.GATEWAY_HEALTH, Action.CREATE): "the health report is read, nothing in it is written",
    (Resource.GATEWAY_HEALTH, Action.UPDATE): "the health report is read, nothing in it is written",
    (Resource.GATEWAY_HEALTH, Action.DELETE): "the health report is read, nothing in it is written",
}
"""Cells of the permission table that no route exercises, and why."""

# The path parameter that names a resource's own row.
RESOURCE_PARAMS: dict[Resource, tuple[str, ...]] = {
    Resource.ORGANISATION: ("organisation_id",),
    Resource.INVITATION: ("invitation_id",),
    Resource.USER: ("user_id",),
    Resource.TEAM: ("team_id",),
    Resource.PROVIDER: ("provider_id",),
    Resource.PROVIDER_KEY: ("provider_key_id",),
    Resource.MODEL: ("model_id",),
    Resource.API_KEY: ("api_key_id",),
    Resource.BUDGET: ("budget_id", "quota_id"),
    Resource.USAGE: ("record_id",),
    Resource.USAGE_DEAD_LETTER: ("dead_letter_id",),
    Resource.AUDIT: ("event_id",),
    Resource.ADMIN_TOKEN: ("token_id",),
    Resource.MCP_SERVER: ("mcp_server_id",),
    Resource.MCP_STDIO_COMMAND: ("command_id",),
    Resource.GATEWAY_HEALTH: (),  # one report, no row
}
OWNED_ROWS: dict[str, tuple[str, ...]] = {
    "team_id": ("team:T", "team:T2"),
    "api_key_id": ("key:user", "key:team", "key:org", "key:team2"),
    "budget_id": ("budget:user", "budget:team", "budget:org"),
    "quota_id": ("quota:user", "quota:team", "quota:org"),
    "record_id": ("record:user", "record:team", "record:org"),
}
SINGLE_ROWS: dict[str, str] = {
    "organisation_id": "org",
    "provider_id": "provider",
    "provider_key_id": "provider_key",
    "model_id": "model",
    "invitation_id": "invitation",
    "event_id": "event",
    "mcp_server_id": "mcp_server",
    "command_id": "mcp_stdio_command",
}
_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")


class Outcome(enum.StrEnum):
    """What the permission table says a call must answer."""

    ALLOWED = "allowed"
    FORBIDDEN = "403"
    MISSING = "404"


@dataclass(frozen=True)
class Route:
    """One method of one API route, with the permission it declares."""

    method: str
    path: str
    permits: tuple[Permit, ...]

    @property
    def params(self) -> list[str]:
        """Path parameters, in order."""
        return _PARAM.findall(self.path)

    @property
    def permit(self) -> Permit:
        """The route's one Permit."""
        return self.permits[0]


def api_routes() -> list[Route]:
    """Every method of every API route of the control-plane app."""
    routes = []
    for context in iter_route_contexts(create_api(None).routes):
        original = context.original_route
        if not isinstance(original, APIRoute):
            continue
        for method in sorted(context.methods or ()):
            routes.append(Route(method, str(context.path), tuple(permits_of(original))))
    return routes


ROUTES = api_routes()


# --- the oracle -------------------------------------------------------------------------------


def candidates(param: str, caller: str, org: str) -> list[str]:
    """The world rows a parameter may name, the caller's own first."""
    if param in SINGLE_ROWS:
        return [SINGLE_ROWS[param]]
    if param in OWNED_ROWS:
        return list(OWNED_ROWS[param])
    prefix = {"user_id": "user", "token_id": "token", "session_id": "session"}.get(param)
    if prefix is None:
        raise AssertionError(
            f"path parameter {{{param}}} is unknown to the RBAC world: teach tests/support/world.py"
        )
    own = [caller] if org == "A" else []
    users = ["U", "M", "OA", "W", "SA"] if prefix == "user" else ["OA", "U"]
    return [f"{prefix}:{u}" for u in dict.fromkeys([*own, *users])]


def primary_param(route: Route) -> str | None:
    """The parameter naming the row the permission is checked on (``None``: no row)."""
    params = route.params
    for param in RESOURCE_PARAMS[route.permit.resource]:
        if param in params:
            return param
    rows = [p for p in params if p != "organisation_id"]
    return rows[-1] if rows else None


def expected(route: Route, role: Role, org: str, symbol: str | None) -> Outcome:
    """The answer the permission table and the reach rules give for this call."""
    permit = route.permit
    reach = PERMISSIONS[role][permit.resource][permit.action]
    caller = CALLERS[role]
    if reach is Reach.NONE:
        return Outcome.FORBIDDEN
    owner = owner_of(symbol) if symbol else None
    if permit.personal:
        # /api/auth/*: one's own sessions and tokens only; anyone else's do not exist for the caller.
        if owner is None or (org == "A" and owner.user == caller):
            return Outcome.ALLOWED
        return Outcome.MISSING
    if reach is not Reach.ALL and ("organisation_id" not in route.params or org != "A"):
        return Outcome.FORBIDDEN
    if owner is None or reach >= Reach.ORG:
        return Outcome.ALLOWED
    if owner.user is not None and owner.user == caller:
        return Outcome.ALLOWED
    teams = dict(teams_of(caller))
    if reach is Reach.TEAM:
        managed = owner.team is not None and teams.get(owner.team) is TeamMemberRole.MANAGER
        return Outcome.ALLOWED if managed else Outcome.FORBIDDEN
    readable = permit.action is Action.READ and owner.user is None and owner.team in teams
    return Outcome.ALLOWED if readable else Outcome.FORBIDDEN


def narrowed(route: Route, role: Role, outcome: Outcome) -> Outcome:
    """``outcome``, or 403 where the route's handler is stricter than the table (see NARROWED)."""
    roles, _reason = NARROWED.get((route.method, route.path), (frozenset(), ""))
    return Outcome.FORBIDDEN if outcome is Outcome.ALLOWED and role in roles else outcome


def fill(route: Route, primary: str | None, symbol: str | None, caller: str, org: str) -> dict[str, str]:
    """Symbols for every path parameter, consistent with the primary row."""
    values: dict[str, str] = {}
    owner = owner_of(symbol) if symbol else None
    for param in route.params:
        if param == primary and symbol is not None:
            values[param] = symbol
        elif param == "user_id" and primary == "team_id" and symbol:
            values[param] = "user:" + list(TEAMS[symbol.removeprefix("team:")])[-1]
        elif param == "user_id" and owner is not None and owner.user is not None:
            values[param] = f"user:{owner.user}"
        elif param == "team_id" and owner is not None and owner.team is not None:
            values[param] = f"team:{owner.team}"
        else:
            values[param] = candidates(param, caller, org)[0]
    return values


@dataclass(frozen=True)
class Case:
    """One call of the matrix: a route, a role, which organisation's row, and the expected answer."""

    route: Route
    role: Role
    org: str  # "A": the caller's organisation; "B": another one
    symbols: tuple[tuple[str, str], ...]
    primary: str | None
    expected: Outcome

    @property
    def id(self) -> str:
        """A readable test id: ``GET /path | ROLE | A:key:user -> allowed``."""
        where = self.org if "organisation_id" in self.route.params or self.primary else "-"
        if self.primary:
            where += ":" + dict(self.symbols)[self.primary]
        return f"{self.route.method} {self.route.path} | {self.role.value} | {where} -> {self.expected.value}"

    @property
    def writes(self) -> bool:
        """Whether the call may change what it touches (an allowed write)."""
        return self.route.method != "GET" and self.expected is Outcome.ALLOWED


def cases_of(route: Route) -> Iterator[Case]:
    """The cases of one route: per role, the own organisation (inside and outside the reach) and another."""
    primary = primary_param(route)
    has_org = "organisation_id" in route.params or primary is not None
    for role in CALLERS:
        caller = CALLERS[role]
        for org in ("A", "B") if has_org else ("A",):
            options = candidates(primary, caller, org) if primary else [None]
            if org == "B":
                options = options[:1]
            seen: set[Outcome] = set()
            for symbol in options:
                outcome = narrowed(route, role, expected(route, role, org, symbol))
                if outcome in seen:
                    continue
                seen.add(outcome)
                symbols = fill(route, primary, symbol, caller, org)
                yield Case(route, role, org, tuple(symbols.items()), primary, outcome)


CASES = [case for route in ROUTES if route.permits for case in cases_of(route)]


# --- the server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[WorldServer]:
    """One server for the module, with world A (the callers' organisation) and world B."""
    settings = settings_factory(BACKEND, tmp_path_factory, request)()
    app = create_app(settings)
    server = ThreadedServer(app).start()
    try:
        runtime = app.runtime
        assert runtime is not None
        a = server.run(build_world(runtime, "a"), 60)
        b = server.run(build_world(runtime, "b"), 60)
        yield WorldServer(server, app, a, b)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(worlds: WorldServer) -> Iterator[httpx.Client]:
    """An HTTP client for the module's server (callers send their own token)."""
    with httpx.Client(base_url=worlds.server.base_url, timeout=30) as http:
        yield http


# --- the tests -------------------------------------------------------------------------------


def test_every_route_declares_a_permission_or_is_public() -> None:
    """Every API route has exactly one Permit or is in the public allowlist (which names real routes)."""
    bare = [r for r in ROUTES if not r.permits]
    undeclared = [f"{r.method} {r.path}" for r in bare if (r.method, r.path) not in PUBLIC]
    assert undeclared == [], f"routes without Permit(...) and not in PUBLIC: {undeclared}"
    # A console page may show several resources (the profile: the user and their admin tokens);
    # an API route acts on one.
    doubled = [f"{r.method} {r.path}" for r in ROUTES if len(r.permits) > 1 and not is_page(r.path)]
    assert doubled == [], "API routes with more than one Permit"
    stale = set(PUBLIC) - {(r.method, r.path) for r in bare}
    assert stale == set(), "PUBLIC names routes that do not exist or now declare a Permit"
    assert set(NARROWED) <= {(r.method, r.path) for r in ROUTES if r.permits}, "NARROWED names unknown routes"


def test_every_cell_of_the_table_is_exercised() -> None:
    """Each (resource, action) of the permission table is needed by some route, unless excused in UNROUTED."""
    routed = {(r.permit.resource, r.permit.action) for r in ROUTES if r.permits}
    missing = [f"{res.value}:{act.value}" for res in Resource for act in Action if (res, act) not in routed]
    unexcused = [
        cell for cell in missing if (Resource(cell.split(":")[0]), Action(cell.split(":")[1])) not in UNROUTED
    ]
    assert unexcused == [], f"permission-table cells with no route: {unexcused}"
    now_routed = [f"{res.value}:{act.value}" for res, act in UNROUTED if (res, act) in routed]
    assert now_routed == [], "UNROUTED excuses cells that a route now exercises"


def test_the_matrix_has_inside_and_outside_cases() -> None:
    """The generated matrix calls every role, both organisations, and rows inside and outside a reach."""
    assert {c.role for c in CASES} == set(CALLERS)
    assert {c.org for c in CASES} == {"A", "B"}
    assert {c.expected for c in CASES} == set(Outcome)
    assert set(USERS) >= set(CALLERS.values())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_route_answers_as_the_table_says(case: Case, worlds: WorldServer, client: httpx.Client) -> None:
    """The route answers this role on this row as the permission table and reach rules require."""
    if case.writes:
        target = worlds.build("w")
        acting = target if case.org == "A" else worlds.a
    else:
        target = worlds.a if case.org == "A" else worlds.b
        acting = worlds.a
    values = {
        param: target.organisation_id if symbol == "org" else target.id(symbol)
        for param, symbol in case.symbols
    }
    path = _PARAM.sub(lambda m: values[m.group(1)], case.route.path)
    response = client.request(
        case.route.method,
        path,
        headers=acting.auth(CALLERS[case.role]),
        json=None if case.route.method == "GET" else {},
    )
    status = response.status_code
    detail = f"{case.id}: {case.route.method} {path} answered {status} {response.text[:300]}"
    assert status < 500, detail
    if case.expected is Outcome.ALLOWED:
        assert status not in (401, 403, 404), detail
    else:
        assert status == int(case.expected.value), detail
