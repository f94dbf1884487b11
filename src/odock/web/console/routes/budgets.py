"""Pages: budgets and quotas — the lists (filters, cursor paging), the create wizard, a detail page.

A budget limits money per window, a quota a usage metric per window; both have their own API
routes, so the pages keep them apart too (``/budgets/{id}`` and ``/budgets/quotas/{id}``). The
detail's consumption card shows one window (the current one unless another is asked for) with
what was used, what requests in flight hold (reserved) and what remains, straight from the API's
window routes, and a projection of the current window's use to its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from odock.budgets.queries import MeterFilters
from odock.budgets.tables import OwnerType, QuotaMetric
from odock.budgets.windows import Period
from odock.rbac.grant import Grant
from odock.rbac.permissions import Action, Reach, Resource, reach_of
from odock.web.api.deps import Permit
from odock.web.api.paging import PageParams, page_params
from odock.web.api.routes import budgets as budget_routes
from odock.web.api.routes.budget_shapes import WindowView
from odock.web.api.services import Budgets, TenancyQueriesDep
from odock.web.console.pages import render
from odock.web.console.routes.lookups import (
    choice,
    flag,
    identifier,
    owner_names,
    paging_limit,
    query_string,
    search,
    timezones,
)
from odock.web.console.routes.reuse import api_route

router = APIRouter(include_in_schema=False)

Paging = Annotated[PageParams, Depends(page_params)]
BUDGETS = "/o/{organisation_id}/budgets"
WINDOWS = PageParams(limit=200)
MIN_ELAPSED_SHARE = 0.05  # of a window, before its use is projected to the end


@dataclass(frozen=True)
class Projection:
    """Where the current window's use is heading if it goes on at the pace so far."""

    used: int
    elapsed_share: float  # of the window, 0..1
    projected: int
    over: bool


def projection(window: WindowView, now: datetime) -> Projection | None:
    """The use projected to the end of ``window`` (None unless ``now`` is inside it, 5% or more in)."""
    total = (window.end - window.start).total_seconds()
    elapsed = (now - window.start).total_seconds()
    # Too early in a window, a few requests would project to absurd amounts.
    if total <= 0 or not total * MIN_ELAPSED_SHARE <= elapsed < total:
        return None
    consumed = window.used + window.reserved
    projected = round(consumed * total / elapsed)
    return Projection(consumed, elapsed / total, projected, projected > window.limit)


@router.get(BUDGETS)
async def meter_list(
    request: Request,
    organisation_id: str,
    service: Budgets,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.READ))],
    page: Paging,
    kind: Annotated[str, Query(pattern="^(budgets|quotas)$")] = "budgets",
    owner_type: Annotated[str, Query(max_length=10)] = "",
    period: Annotated[str, Query(max_length=10)] = "",
    active: Annotated[str, Query(max_length=5)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The organisation's budgets or quotas within the caller's reach, filtered, newest first."""
    filters = MeterFilters(
        owner_type=choice(OwnerType, owner_type, "owner_type"),
        period=choice(Period, period, "period"),
        active=flag(active, "active"),
        q=search(q),
    )
    extra: dict[str, Any] = {"currency": None} if kind == "budgets" else {"metric": None}
    listed = await api_route(budget_routes.router, f"list_{kind}")(
        service=service, grant=grant, params=page, organisation_id=organisation_id, filters=filters, **extra
    )
    teams, users = await owner_names(request, grant.actor, organisation_id, queries)
    wanted = {"owner_type": owner_type, "period": period, "active": active, "q": q}
    return render(
        request,
        "budgets/list.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        kind=kind,
        page=listed,
        wanted=wanted,
        query=query_string({"kind": kind, **wanted, "limit": paging_limit(page)}),
        filtered=any(wanted.values()),
        teams=teams,
        users=users,
        owner_types=[o.value for o in OwnerType],
        periods=[p.value for p in Period],
    )


@router.get(BUDGETS + "/new")
async def new_meter(
    request: Request,
    organisation_id: str,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.CREATE))],
    owner_type: Annotated[str, Query(max_length=10)] = "",
    owner_id: Annotated[str, Query(max_length=64)] = "",
    kind: Annotated[str, Query(pattern="^(budget|quota|)$")] = "",
) -> Response:
    """The create wizard: owner → schedule → limits → review."""
    preset = choice(OwnerType, owner_type, "owner_type")
    teams, users = await owner_names(request, grant.actor, organisation_id, queries)
    return render(
        request,
        "budgets/new.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        owner_type=(preset or OwnerType.ORG).value,
        owner_id=identifier(owner_id, "owner_id") or "",
        kind=kind or "budget",
        teams=teams,
        users=users,
        periods=[p.value for p in Period],
        metrics=[m.value for m in QuotaMetric],
        timezones=timezones(),
    )


async def _detail(
    request: Request,
    organisation_id: str,
    kind: str,
    row_id: str,
    service: Budgets,
    queries: TenancyQueriesDep,
    grant: Grant,
    window: int | None,
    history_cursor: str | None,
) -> Response:
    """A budget or quota: its consumption card for one window, window history, edit, switch, delete."""
    param = f"{kind}_id"
    detail = await api_route(budget_routes.router, f"get_{kind}")(
        **{param: row_id}, budgets=service, grant=grant
    )
    windows = (
        await api_route(budget_routes.router, f"list_{kind}_windows")(
            **{param: row_id}, budgets=service, grant=grant, params=WINDOWS
        )
    ).items
    history = await api_route(budget_routes.router, f"list_{kind}_windows")(
        **{param: row_id}, budgets=service, grant=grant, params=PageParams(limit=12, cursor=history_cursor)
    )
    current = detail.current_window
    shown = current if window is None else next((w for w in windows if w.index == window), None)
    if shown is None and window is None and windows:
        shown = windows[0]
    older = [w for w in windows if shown is not None and w.index < shown.index]
    newer = [w for w in windows if shown is not None and w.index > shown.index]
    now = datetime.now(UTC)
    teams, users = await owner_names(request, grant.actor, organisation_id, queries)
    return render(
        request,
        "budgets/detail.html",
        actor=grant.actor,
        organisation_id=organisation_id,
        kind=kind,
        meter=detail,
        shown=shown,
        asked=window,
        previous=older[0] if older else None,
        following=newer[-1] if newer else None,
        is_current=shown is not None and current is not None and shown.index == current.index,
        projection=projection(shown, now) if shown is not None else None,
        history=history,
        teams=teams,
        users=users,
        can_update=reach_of(grant.actor.role, Resource.BUDGET, Action.UPDATE) is not Reach.NONE,
        can_delete=reach_of(grant.actor.role, Resource.BUDGET, Action.DELETE) is not Reach.NONE,
    )


WindowQuery = Annotated[int | None, Query(ge=0, lt=2**31, description="the window index to show")]
HistoryCursor = Annotated[str | None, Query(max_length=500)]


@router.get(BUDGETS + "/quotas/{quota_id}")
async def quota_page(
    request: Request,
    organisation_id: str,
    quota_id: str,
    service: Budgets,
    queries: TenancyQueriesDep,
    grant: Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.READ, locate=budget_routes.locate_quota))],
    window: WindowQuery = None,
    history: HistoryCursor = None,
) -> Response:
    """A quota with its consumption card."""
    return await _detail(
        request, organisation_id, "quota", quota_id, service, queries, grant, window, history
    )


@router.get(BUDGETS + "/{budget_id}")
async def budget_page(
    request: Request,
    organisation_id: str,
    budget_id: str,
    service: Budgets,
    queries: TenancyQueriesDep,
    grant: Annotated[
        Grant, Depends(Permit(Resource.BUDGET, Action.READ, locate=budget_routes.locate_budget))
    ],
    window: WindowQuery = None,
    history: HistoryCursor = None,
) -> Response:
    """A budget with its consumption card."""
    return await _detail(
        request, organisation_id, "budget", budget_id, service, queries, grant, window, history
    )
