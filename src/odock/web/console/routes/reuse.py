"""What the organisation pages share: the guard of a page that the navigation hides, and the API's routes.

A page hidden from a role's navigation is refused to it as well (typing the address gives the 403
page): :func:`nav_guard` reads the same :data:`~odock.web.console.pages.NAVIGATION` entry, so the
menu and the page cannot disagree. :func:`may` asks the permission table whether to *offer* an
action on one row (the API route the button calls decides). :func:`api_route` finds a route the
API made from one definition (twin lists, policy scopes) so a page calls it like any other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.routing import APIRoute

from odock.budgets.queries import MeterFilters
from odock.budgets.tables import OwnerType
from odock.errors import Forbidden, NotFound
from odock.keys.queries import KeyFilters
from odock.rbac.grant import Actor, Grant, Target
from odock.rbac.permissions import Action, Resource, reach_of
from odock.telemetry.links import TraceLinks
from odock.usage.queries import UsageFilter, UsageSort
from odock.web.api.deps import ActorDep, get_runtime
from odock.web.api.paging import PageParams
from odock.web.api.routes import api_keys, budgets
from odock.web.api.routes.usage import list_usage_records
from odock.web.api.services import budgets_of, keys_of, usage_records_of
from odock.web.console.pages import NAVIGATION

# A plain GET form sends its empty fields ("?q=&role="): a page reads them as "not filtered".
Blank = Literal[""]
TextQuery = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]


def trace_links_of(request: Request) -> TraceLinks:
    """Links from usage records to their traces (``ODOCK_TRACE_URL_TEMPLATE``; none when unset)."""
    return TraceLinks(get_runtime(request).settings.trace_url_template)


TraceLinksDep = Annotated[TraceLinks, Depends(trace_links_of)]


def nav_guard(path: str) -> Callable[[Actor], Awaitable[Actor]]:
    """A dependency refusing (403) an actor whose navigation does not show the entry at ``path``."""
    item = next(entry for entry in NAVIGATION if entry.path == path)

    async def guard(actor: ActorDep) -> Actor:
        if reach_of(actor.role, item.resource, item.action) < item.reach:
            raise Forbidden("you are not allowed to do this")
        return actor

    return guard


def may(actor: Actor, resource: Resource, action: Action, target: Target) -> bool:
    """Whether the permission table lets ``actor`` do ``action`` on the row at ``target`` (to offer it)."""
    try:
        Grant.for_actor(actor, resource, action, target.organisation_id).check(target)
    except (Forbidden, NotFound):
        return False
    return True


def api_route(router: APIRouter, name: str) -> Callable[..., Awaitable[Any]]:
    """The endpoint of the API route called ``name`` (its parameters are keywords)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.name == name:
            endpoint: Callable[..., Awaitable[Any]] = route.endpoint
            return endpoint
    raise LookupError(f"no API route named {name!r}")


RECENT = PageParams(limit=10)
"""How many of an owner's keys, usage records, budgets and quotas its page shows (links lead to all)."""


async def owner_activity(
    request: Request,
    organisation_id: str,
    owner: OwnerType,
    owner_id: str,
    *,
    keys_grant: Grant,
    usage_grant: Grant,
    budgets_grant: Grant,
) -> dict[str, Any]:
    """A team's or user's cards: its recent API keys and usage records, its budgets and quotas."""
    team = owner is OwnerType.TEAM
    owned = {
        "organisation_id": organisation_id,
        "grant": budgets_grant,
        "params": RECENT,
        "service": budgets_of(request),
        "filters": MeterFilters(owner_type=owner, owner_id=owner_id),
    }
    return {
        "keys": await api_route(api_keys.router, "list_keys")(
            service=keys_of(request),
            grant=keys_grant,
            params=RECENT,
            filters=KeyFilters(team_id=owner_id) if team else KeyFilters(user_id=owner_id),
            organisation_id=organisation_id,
        ),
        "usage": await list_usage_records(
            organisation_id,
            usage_grant,
            usage_records_of(request),
            UsageFilter(team_ids=(owner_id,)) if team else UsageFilter(user_ids=(owner_id,)),
            RECENT,
            UsageSort.TIMESTAMP,
        ),
        "budgets": await api_route(budgets.router, "list_budgets")(currency=None, **owned),
        "quotas": await api_route(budgets.router, "list_quotas")(metric=None, **owned),
    }
