"""Routes: the governance envelope (spec §4.1) on every scope — organisation, team, API key, model.

``GET`` answers the envelope in force at the scope (every limit, ``null`` = none); ``PUT``
replaces it. The envelope shares its JSON column with other capabilities' settings (the routing
switch of an organisation, the routing policy of a key): those are kept as they are. An invalid
envelope is 422 ``invalid_policy`` with ``param`` naming the bad field. The global policy comes
from settings (``ODOCK_RATELIMIT_GLOBAL_POLICY``) and is read-only here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel

from odock.admin.rules import POLICY_SECTIONS, validate_policies
from odock.errors import InvalidPolicy, NotFound
from odock.keys.tables import ApiKey
from odock.limits.policy import RateLimitPolicy, parse_policy
from odock.providers.tables import Model
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.runtime import Runtime
from odock.tenancy.tables import Team
from odock.web.api.deps import Permit, RuntimeDep, row_locator
from odock.web.api.routes.api_keys import locate_key

router = APIRouter(tags=["Policies"])
_Row = TypeVar("_Row")

ScopeName = Literal["global", "organisation", "team", "api_key", "model"]
_ACCEPTED = POLICY_SECTIONS | {"policies"}
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
    policy = parse_policy({k: v for k, v in (stored or {}).items() if k in _ACCEPTED})
    return PolicyView(
        scope=scope,
        scope_id=scope_id,
        ip=IpLists(
            allowlist=[str(n) for n in policy.ip.allowlist], blocklist=[str(n) for n in policy.ip.blocklist]
        ),
        ratelimit=policy.ratelimit,
        shadow=policy.shadow,
    )


def with_envelope(stored: Mapping[str, Any] | None, envelope: Mapping[str, Any]) -> dict[str, Any]:
    """``stored`` with its governance envelope replaced by ``envelope`` (validated); other keys kept."""
    nested = envelope.get("policies")
    inner = sorted(set(nested) - POLICY_SECTIONS) if isinstance(nested, Mapping) else []
    unknown = sorted(set(envelope) - _ACCEPTED) or [f"policies.{k}" for k in inner]
    if unknown:
        raise InvalidPolicy(
            f"'{unknown[0]}' is not part of the policy envelope (ip, ratelimit, shadow)", param=unknown[0]
        )
    others = {k: v for k, v in (stored or {}).items() if k not in _ACCEPTED}
    return others | validate_policies(envelope)


async def _load(runtime: Runtime, table: type[_Row], row_id: str) -> _Row:
    async with runtime.sessions() as session:
        row = await session.get(table, row_id)
    if row is None:  # deleted since Permit located it
        raise NotFound(f"{table.__name__.lower()} not found")
    return row


ORG = "/organisations/{organisation_id}"
locate_team = row_locator(Team, "team_id", lambda t: Target(t.organisation_id, team_id=t.id))
locate_model = row_locator(Model, "model_id", lambda m: Target(m.organisation_id))


@router.get("/admin/policies/global", response_model=PolicyView)
async def get_global_policy(
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.READ))],
) -> PolicyView:
    """The global policy (from settings; applies to every request before authentication)."""
    return _view("global", "*", runtime.settings.ratelimit_global_policy)


@router.get(ORG + "/policies", response_model=PolicyView)
async def get_organisation_policy(
    organisation_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.READ))],
) -> PolicyView:
    """The organisation's envelope (applies to every key of the organisation)."""
    org = await runtime.control.organisation_by_id(organisation_id)
    return _view("organisation", org.id, org.policies)


@router.put(ORG + "/policies", response_model=PolicyView)
async def put_organisation_policy(
    organisation_id: str,
    body: EnvelopeBody,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.ORGANISATION, Action.UPDATE))],
) -> PolicyView:
    """Replace the organisation's envelope (its routing switch is kept)."""
    org = await runtime.control.organisation_by_id(organisation_id)
    org = await runtime.control.update_organisation(org.id, policies=with_envelope(org.policies, body))
    return _view("organisation", org.id, org.policies)


@router.get(ORG + "/teams/{team_id}/policies", response_model=PolicyView)
async def get_team_policy(
    team_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.READ, locate=locate_team))],
) -> PolicyView:
    """The team's envelope (applies to the team's keys)."""
    team = await _load(runtime, Team, team_id)
    return _view("team", team.id, team.policies)


@router.put(ORG + "/teams/{team_id}/policies", response_model=PolicyView)
async def put_team_policy(
    team_id: str,
    body: EnvelopeBody,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.TEAM, Action.UPDATE, locate=locate_team))],
) -> PolicyView:
    """Replace the team's envelope."""
    team = await _load(runtime, Team, team_id)
    team = await runtime.control.update_team(team.id, policies=with_envelope(team.policies, body))
    return _view("team", team.id, team.policies)


@router.get(ORG + "/apikeys/{api_key_id}/policies", response_model=PolicyView)
async def get_key_policy(
    api_key_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=locate_key))],
) -> PolicyView:
    """The key's own envelope."""
    key: ApiKey = await runtime.control.api_key(api_key_id)
    return _view("api_key", key.id, key.policies)


@router.put(ORG + "/apikeys/{api_key_id}/policies", response_model=PolicyView)
async def put_key_policy(
    api_key_id: str,
    body: EnvelopeBody,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.UPDATE, locate=locate_key))],
) -> PolicyView:
    """Replace the key's envelope (its routing policy is kept)."""
    key = await runtime.control.api_key(api_key_id)
    key = await runtime.control.update_api_key(key.id, policies=with_envelope(key.policies, body))
    return _view("api_key", key.id, key.policies)


@router.get(ORG + "/models/{model_id}/policies", response_model=PolicyView)
async def get_model_policy(
    model_id: str,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.READ, locate=locate_model))],
) -> PolicyView:
    """The model's envelope (applies to every call of the model)."""
    model = await _load(runtime, Model, model_id)
    return _view("model", model.id, model.policies)


@router.put(ORG + "/models/{model_id}/policies", response_model=PolicyView)
async def put_model_policy(
    model_id: str,
    body: EnvelopeBody,
    runtime: RuntimeDep,
    grant: Annotated[Grant, Depends(Permit(Resource.MODEL, Action.UPDATE, locate=locate_model))],
) -> PolicyView:
    """Replace the model's envelope."""
    model = await _load(runtime, Model, model_id)
    model = await runtime.control.update_model(model.id, policies=with_envelope(model.policies, body))
    return _view("model", model.id, model.policies)
