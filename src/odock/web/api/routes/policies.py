"""Routes: the governance envelope (spec §4.1) on every scope — organisation, team, API key, model.

``GET`` answers the envelope in force at the scope (every limit, ``null`` = none); ``PUT``
replaces it. The envelope shares its JSON column with other capabilities' settings (the routing
switch of an organisation, the routing policy of a key): those are kept as they are. An invalid
envelope is 422 ``invalid_policy`` with ``param`` naming the bad field. The global policy comes
from settings (``ODOCK_RATELIMIT_GLOBAL_POLICY``) and is read-only here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel

from odock.limits.policy import RateLimitPolicy, parse_policy
from odock.limits.service import PolicyEnvelopes, PolicyScope, envelope_of
from odock.providers.tables import Model
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.tenancy.tables import Team
from odock.web.api.deps import Locator, Permit, row_locator
from odock.web.api.made import add_made_route, param
from odock.web.api.routes.api_keys import locate_key
from odock.web.api.services import GlobalPolicy, envelopes_of

router = APIRouter(tags=["Policies"])

ScopeName = Literal["global", "organisation", "team", "api_key", "model"]
_EXAMPLE = {
    "ip": {"allowlist": ["10.0.0.0/8"], "blocklist": ["203.0.113.0/24"]},
    "ratelimit": {
        "requests": {"per_second": 20, "per_minute": 1200, "burst": 50},
        "tokens": {"per_minute": 120000},
        "concurrency": {"max": 40, "lease_ttl_seconds": 30},
        "payload": {"max_request_bytes": 2097152, "max_tokens": 8192},
    },
    "shadow": False,
}
EnvelopeBody = Annotated[
    dict[str, Any],
    Body(
        description="The policy envelope: ip, ratelimit, shadow (bare, or nested under 'policies'); "
        "omitted or 0 limits mean no limit",
        openapi_examples={"limits": {"value": _EXAMPLE}},
    ),
]


class IpLists(BaseModel):
    """Client addresses refused (blocklist) or the only ones admitted (allowlist), as CIDRs."""

    allowlist: list[str]
    blocklist: list[str]


class PolicyView(BaseModel):
    """The governance envelope in force at one scope."""

    scope: ScopeName
    scope_id: str
    ip: IpLists
    ratelimit: RateLimitPolicy
    shadow: bool


def _view(scope: ScopeName, scope_id: str, stored: Mapping[str, object] | None) -> PolicyView:
    policy = parse_policy(envelope_of(stored))
    return PolicyView(
        scope=scope,
        scope_id=scope_id,
        ip=IpLists(
            allowlist=[str(n) for n in policy.ip.allowlist], blocklist=[str(n) for n in policy.ip.blocklist]
        ),
        ratelimit=policy.ratelimit,
        shadow=policy.shadow,
    )


ORG = "/organisations/{organisation_id}"
locate_team = row_locator(Team, "team_id", lambda t: Target(t.organisation_id, team_id=t.id))
locate_model = row_locator(Model, "model_id", lambda m: Target(m.organisation_id))


@router.get("/admin/policies/global", response_model=PolicyView)
async def get_global_policy(
    policy: GlobalPolicy,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.READ))],
) -> PolicyView:
    """The global policy (from settings; applies to every request before authentication)."""
    return _view("global", "*", policy)


@dataclass(frozen=True)
class ScopeRoutes:
    """The GET and PUT routes of one scope's envelope: where it is, who may touch it, the wording."""

    scope: PolicyScope
    path: str
    param: str
    resource: Resource
    locate: Locator | None
    name: str
    read_doc: str
    write_doc: str


def _read(routes: ScopeRoutes) -> Callable[..., Awaitable[PolicyView]]:
    async def read(envelopes: PolicyEnvelopes, **path: str) -> PolicyView:
        row_id = path[routes.param]
        return _view(routes.scope.value, row_id, await envelopes.stored(routes.scope, row_id))

    return read


def _write(routes: ScopeRoutes) -> Callable[..., Awaitable[PolicyView]]:
    async def write(envelopes: PolicyEnvelopes, body: dict[str, Any], **path: str) -> PolicyView:
        row_id = path[routes.param]
        return _view(routes.scope.value, row_id, await envelopes.replace(routes.scope, row_id, body))

    return write


def add_scope_routes(routes: ScopeRoutes) -> None:
    """Register the GET and PUT of one scope's envelope (one definition for the four scopes)."""
    for action, call, method, doc in (
        (Action.READ, _read(routes), "GET", routes.read_doc),
        (Action.UPDATE, _write(routes), "PUT", routes.write_doc),
    ):
        parameters = [param(routes.param, str)]
        if action is Action.UPDATE:
            parameters.append(param("body", EnvelopeBody))
        permit = Permit(routes.resource, action, locate=routes.locate)
        parameters += [
            param("envelopes", Annotated[PolicyEnvelopes, Depends(envelopes_of)]),
            param("grant", Annotated[Grant, Depends(permit)]),
        ]
        verb = "get" if method == "GET" else "put"
        add_made_route(
            router,
            method,
            routes.path,
            name=f"{verb}_{routes.name}_policy",
            doc=doc,
            call=call,
            parameters=parameters,
            response_model=PolicyView,
        )


for _routes in (
    ScopeRoutes(
        PolicyScope.ORGANISATION, ORG + "/policies", "organisation_id", Resource.ORGANISATION, None,
        "organisation", "The organisation's envelope (applies to every key of the organisation).",
        "Replace the organisation's envelope (its routing switch is kept).",
    ),
    ScopeRoutes(
        PolicyScope.TEAM, ORG + "/teams/{team_id}/policies", "team_id", Resource.TEAM, locate_team,
        "team", "The team's envelope (applies to the team's keys).", "Replace the team's envelope.",
    ),
    ScopeRoutes(
        PolicyScope.API_KEY, ORG + "/apikeys/{api_key_id}/policies", "api_key_id", Resource.API_KEY,
        locate_key, "key", "The key's own envelope.",
        "Replace the key's envelope (its routing policy is kept).",
    ),
    ScopeRoutes(
        PolicyScope.MODEL, ORG + "/models/{model_id}/policies", "model_id", Resource.MODEL, locate_model,
        "model", "The model's envelope (applies to every call of the model).",
        "Replace the model's envelope.",
    ),
):  # fmt: skip
    add_scope_routes(_routes)
