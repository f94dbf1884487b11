"""Pages: API keys — the list (filters, search, cursor paging), the create wizard, a key's page.

Every view calls the API route it mirrors, with the same ``Permit``: the lists are the API's
keyset pages within the caller's reach, so a USER sees their own keys only. Changes (create,
rotate, revoke, grants, policies) are made by the browser through the REST API; the secret of a
new or rotated key is in that API answer only and is shown once by ``static/keys.js``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from odock.budgets.queries import MeterFilters
from odock.budgets.tables import OwnerType
from odock.keys.queries import KeyFilters
from odock.keys.tables import ApiKeyType
from odock.providers.model_service import ModelFilters
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Reach, Resource, reach_of
from odock.usage.queries import UsageFilter, UsageSort
from odock.web.api.deps import Permit
from odock.web.api.paging import PageParams, page_params
from odock.web.api.routes import api_keys, budgets, models, policies
from odock.web.api.routes.usage import list_usage_records
from odock.web.api.services import Budgets, Envelopes, Keys, Models, Records, TenancyDep, TenancyQueriesDep
from odock.web.console.pages import render
from odock.web.console.routes import mcp_servers
from odock.web.console.routes.lookups import (
    choice,
    flag,
    identifier,
    local_time,
    owner_names,
    paging_limit,
    permitted,
    query_string,
    search,
    timezones,
)
from odock.web.console.routes.reuse import api_route
from odock.web.console.routes.routing import key_routing_card

router = APIRouter(include_in_schema=False)

Paging = Annotated[PageParams, Depends(page_params)]
KEYS = "/o/{organisation_id}/keys"
RECENT = PageParams(limit=10)
MANY = PageParams(limit=200, order="asc")


@router.get(KEYS)
async def key_list(
    request: Request,
    organisation_id: str,
    keys: Keys,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ))],
    page: Paging,
    type: Annotated[str, Query(max_length=20)] = "",
    revoked: Annotated[str, Query(max_length=5)] = "",
    team_id: Annotated[str, Query(max_length=64)] = "",
    user_id: Annotated[str, Query(max_length=64)] = "",
    expired: Annotated[str, Query(max_length=5)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The organisation's keys within the caller's reach, filtered and searched, newest first."""
    filters = KeyFilters(
        type=choice(ApiKeyType, type, "type"),
        revoked=flag(revoked, "revoked"),
        team_id=identifier(team_id, "team_id"),
        user_id=identifier(user_id, "user_id"),
        expired=flag(expired, "expired"),
        q=search(q),
    )
    listed = await api_route(api_keys.router, "list_keys")(
        service=keys, grant=grant, params=page, organisation_id=organisation_id, filters=filters
    )
    teams, users = await owner_names(request, grant.actor, organisation_id, queries)
    wanted = {
        "type": type, "revoked": revoked, "expired": expired, "team_id": team_id, "user_id": user_id, "q": q,
    }  # fmt: skip
    return render(
        request,
        "keys/list.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        page=listed,
        wanted=wanted,
        query=query_string({**wanted, "limit": paging_limit(page)}),
        filtered=any(wanted.values()),
        teams=teams,
        users=users,
        types=[t.value for t in ApiKeyType],
    )


@router.get(KEYS + "/new")
async def new_key(
    request: Request,
    organisation_id: str,
    queries: TenancyQueriesDep,
    models_service: Models,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.CREATE))],
    team_id: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """The create wizard: type and owner, name, expiry with its time zone, model grants."""
    actor = grant.actor
    reach = reach_of(actor.role, Resource.API_KEY, Action.CREATE)
    # The types offered follow the role's reach; the API decides on the actual owner.
    types = [ApiKeyType.USER.value]
    if reach >= Reach.TEAM:
        types.insert(0, ApiKeyType.TEAM.value)
    if reach >= Reach.ORG:
        types.insert(0, ApiKeyType.ORGANISATION.value)
    preselect = identifier(team_id, "team_id")
    teams, users = await owner_names(request, actor, organisation_id, queries)
    if reach < Reach.ORG:
        teams = {k: v for k, v in teams.items() if k in actor.managed_team_ids}
        users = {actor.user_id: actor.email}
    model_grant = await permitted(request, actor, Resource.MODEL, Action.READ)
    offered = []
    if model_grant is not None:
        offered = (
            await api_route(models.router, "list_models")(
                service=models_service,
                grant=model_grant,
                params=MANY,
                organisation_id=organisation_id,
                filters=ModelFilters(sort="name"),
                sort="name",
            )
        ).items
    return render(
        request,
        "keys/new.html",
        actor=actor,
        organisation_id=organisation_id,
        types=types,
        selected_type=ApiKeyType.TEAM.value if preselect and ApiKeyType.TEAM.value in types else types[0],
        team_id=preselect or "",
        teams=teams,
        users=users,
        models=offered,
        timezones=timezones(),
    )


@router.get(KEYS + "/{api_key_id}")
async def key_page(
    request: Request,
    organisation_id: str,
    api_key_id: str,
    keys: Keys,
    envelopes: Envelopes,
    records: Records,
    budget_control: Budgets,
    models_service: Models,
    queries: TenancyQueriesDep,
    tenancy: TenancyDep,
    grant: Annotated[Grant, Depends(Permit(Resource.API_KEY, Action.READ, locate=api_keys.locate_key))],
) -> Response:
    """A key: details, rotate, revoke, rotation history, policies, routing, model access, usage, budgets."""
    actor = grant.actor
    key = await api_keys.get_key(api_key_id, keys, grant)
    rotations = await api_keys.list_rotations(api_key_id, keys, grant, RECENT)
    grants = await api_keys.list_grants(api_key_id, keys, grant, MANY, q=None)
    policy = await api_route(policies.router, "get_key_policy")(
        api_key_id=api_key_id, envelopes=envelopes, grant=grant
    )
    usage = None
    usage_grant = await permitted(request, actor, Resource.USAGE, Action.READ)
    if usage_grant is not None:
        usage = await list_usage_records(
            organisation_id,
            usage_grant,
            records,
            UsageFilter(api_key_ids=(api_key_id,)),
            RECENT,
            UsageSort.TIMESTAMP,
        )
    meters: dict[str, object] = {}
    budget_grant = await permitted(request, actor, Resource.BUDGET, Action.READ)
    if budget_grant is not None:
        owned = MeterFilters(owner_type=OwnerType.APIKEY, owner_id=api_key_id)
        for kind in ("budget", "quota"):
            meters[kind] = (
                await api_route(budgets.router, f"list_{kind}s")(
                    service=budget_control,
                    grant=budget_grant,
                    params=RECENT,
                    organisation_id=organisation_id,
                    filters=owned,
                    **({"currency": None} if kind == "budget" else {"metric": None}),
                )
            ).items
    offered = []
    model_grant = await permitted(request, actor, Resource.MODEL, Action.READ)
    if model_grant is not None:
        granted = {m.id for m in grants.items}
        listed = await api_route(models.router, "list_models")(
            service=models_service,
            grant=model_grant,
            params=MANY,
            organisation_id=organisation_id,
            filters=ModelFilters(sort="name"),
            sort="name",
        )
        offered = [m for m in listed.items if m.id not in granted]
    teams, users = await owner_names(request, actor, organisation_id, queries)
    mcp = await mcp_servers.key_mcp_card(request, grant, organisation_id, api_key_id)
    routing = await key_routing_card(grant, organisation_id, api_key_id, keys, tenancy, grants.items)
    return render(
        request,
        "keys/detail.html",
        mcp=mcp,
        routing=routing,
        expires_local=local_time(key.expires_at, key.timezone),
        actor=actor,
        organisation_id=organisation_id,
        key=key,
        rotations=rotations,
        grants=grants.items,
        offered=offered,
        policy=policy,
        usage=usage,
        budgets=meters.get("budget"),
        quotas=meters.get("quota"),
        teams=teams,
        users=users,
        timezones=timezones(),
        can_update=reach_of(actor.role, Resource.API_KEY, Action.UPDATE) is not Reach.NONE,
        can_budget=reach_of(actor.role, Resource.BUDGET, Action.CREATE) is not Reach.NONE,
    )
