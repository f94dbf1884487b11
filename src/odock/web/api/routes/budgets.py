"""Routes: budgets (money per window) and quotas (a metric per window), with their windows.

A budget's amounts are integer nanos USD with an exact USD string beside each; a quota's are in
its metric's units (bodies and views: :mod:`odock.web.api.routes.budget_shapes`). Each window
shows ``used`` (settled), ``reserved`` (held by requests in flight, from the live counters) and
``remaining``. Changes reach the gateway at once (:class:`odock.budgets.control.BudgetControl`
publishes the invalidation).

Reach: organisation admins manage every budget and quota; a team manager reads those of the
teams they manage (and their own and their keys'), a user their own.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from odock.budgets.control import BudgetControl, WindowUsage
from odock.budgets.queries import Meter, MeterFilters
from odock.budgets.tables import Budget, OwnerType, Quota, QuotaMetric
from odock.budgets.windows import Period
from odock.errors import UnprocessableEntity
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.runtime import Runtime
from odock.web.api.deps import Locator, Permit
from odock.web.api.fields import Id
from odock.web.api.lists import ListRoute, TwinLists, add_list_routes
from odock.web.api.made import add_made_route, param
from odock.web.api.paging import Page, PageParams, decode_cursor, encode_cursor, page_params
from odock.web.api.routes.budget_shapes import (
    BudgetCreate,
    BudgetDetail,
    BudgetUpdate,
    BudgetView,
    BudgetWindowView,
    Currency,
    QuotaCreate,
    QuotaDetail,
    QuotaUpdate,
    QuotaView,
    WindowView,
)
from odock.web.api.search import SearchQuery
from odock.web.api.services import Budgets, budgets_of

router = APIRouter(tags=["Budgets and quotas"])


# --- helpers -------------------------------------------------------------------------------
def _locate(table: Meter, param: str) -> Locator:
    """A locator placing a budget or quota where its owner sits (an API key's owner for APIKEY)."""

    async def locate(runtime: Runtime, params: Mapping[str, str]) -> Target | None:
        return await runtime.control.budgets.placement(table, params[param])

    return locate


locate_budget = _locate(Budget, "budget_id")
locate_quota = _locate(Quota, "quota_id")


def meter_filters(
    owner_type: Annotated[OwnerType | None, Query()] = None,
    owner_id: Annotated[Id | None, Query(description="team, user or API key id")] = None,
    period: Annotated[Period | None, Query()] = None,
    active: Annotated[bool | None, Query()] = None,
    q: SearchQuery = None,
) -> MeterFilters:
    """The filter query parameters shared by budget and quota lists (``q`` searches names)."""
    return MeterFilters(owner_type=owner_type, owner_id=owner_id, period=period, active=active, q=q)


async def _windows(
    budgets: BudgetControl, row: Budget | Quota
) -> tuple[WindowUsage | None, list[WindowUsage]]:
    """The current window (None outside the schedule) and the most recent earlier ones."""
    current = (await budgets.current_windows([row], live=True))[row.id]
    before = current.index if current is not None else None
    if before == 0:
        return current, []
    recent, _ = await budgets.window_history(row, before=before, count=RECENT_WINDOWS, live=True)
    return current, recent


async def _history(
    budgets: BudgetControl, row: Budget | Quota, params: PageParams
) -> tuple[list[WindowUsage], str | None]:
    before = None
    if params.cursor:
        value, _ = decode_cursor(params.cursor)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
            raise UnprocessableEntity("cursor is not valid", param="cursor")
        before = value
    windows, more = await budgets.window_history(row, before=before, count=params.limit, live=True)
    cursor = encode_cursor(windows[-1].index, str(windows[-1].index)) if more and windows else None
    return windows, cursor


RECENT_WINDOWS = 6
ORG = "/organisations/{organisation_id}"
Paging = Annotated[PageParams, Depends(page_params)]
Filters = Annotated[MeterFilters, Depends(meter_filters)]
OrganisationQuery = Annotated[Id | None, Query()]


def budget_list(
    filters: Filters,
    currency: Annotated[Currency | None, Query()] = None,
    organisation_id: OrganisationQuery = None,
) -> MeterFilters:
    """The budget-list filters (``organisation_id``: the admin list's, see :mod:`odock.web.api.lists`)."""
    return replace(filters, currency=currency)


def quota_list(
    filters: Filters,
    metric: Annotated[QuotaMetric | None, Query()] = None,
    organisation_id: OrganisationQuery = None,
) -> MeterFilters:
    """The quota-list filters (``organisation_id``: the admin list's, see :mod:`odock.web.api.lists`)."""
    return replace(filters, metric=metric)


def _created(row: Budget | Quota, _wanted: MeterFilters) -> tuple[object, str]:
    return row.created_at, row.id


for _kind, _wanted, _fetch, _view in (
    ("budget", budget_list, BudgetControl.budget_page, BudgetView),
    ("quota", quota_list, BudgetControl.quota_page, QuotaView),
):
    add_list_routes(
        router,
        TwinLists(
            resource=Resource.BUDGET,
            service=budgets_of,
            wanted=_wanted,
            fetch=_fetch,
            render=_view.of,
            key=_created,
            item=_view,
            everywhere=ListRoute(
                f"/admin/{_kind}s",
                f"list_all_{_kind}s",
                f"Every organisation's {_kind}s, newest first (super admin).",
            ),
            organisation=ListRoute(
                f"{ORG}/{_kind}s",
                f"list_{_kind}s",
                f"The organisation's {_kind}s within the caller's reach, newest first.",
            ),
        ),
    )


# --- budgets and quotas: one definition, two kinds ----------------------------------------
@dataclass(frozen=True)
class MeterKind:
    """What tells the budget routes from the quota routes: names, bodies, views and the service calls."""

    name: str
    param: str
    locate: Locator
    create_body: type[BudgetCreate] | type[QuotaCreate]
    update_body: type[BudgetUpdate] | type[QuotaUpdate]
    view: type[BudgetView] | type[QuotaView]
    detail: type[BudgetDetail] | type[QuotaDetail]
    window: type[BudgetWindowView] | type[WindowView]
    lookup: Callable[[BudgetControl, str], Awaitable[Budget | Quota]]
    create: Callable[[BudgetControl, str, Any], Awaitable[Budget | Quota]]
    docs: Mapping[str, str]

    def render(self, row: Budget | Quota) -> BudgetView | QuotaView:
        """The view of a row of this kind."""
        return self.view.of(row)  # type: ignore[arg-type]


async def _create_budget(budgets: BudgetControl, organisation_id: str, body: BudgetCreate) -> Budget:
    return await budgets.create_budget(
        organisation_id, body.name, amount_nanos_usd=body.nanos(), currency=body.currency, **body.schedule()
    )


async def _create_quota(budgets: BudgetControl, organisation_id: str, body: QuotaCreate) -> Quota:
    return await budgets.create_quota(
        organisation_id, body.name, metric=body.metric, limit=body.limit, **body.schedule()
    )


Made = tuple[str, str, str, Callable[..., Awaitable[Any]], list[inspect.Parameter], dict[str, Any]]


def add_meter_routes(kind: MeterKind) -> None:
    """Register create, detail, windows, update and delete of one kind of meter."""
    many, row_id, service = f"{ORG}/{kind.name}s", param(kind.param, str), param("budgets", Budgets)
    org_id = param("organisation_id", str)

    def grant(action: Action, locate: Locator | None = kind.locate) -> inspect.Parameter:
        return param("grant", Annotated[Grant, Depends(Permit(Resource.BUDGET, action, locate=locate))])

    one = f"{many}/{{{kind.param}}}"
    routes: list[Made] = [
        ("POST", many, f"create_{kind.name}", _creator(kind),
         [org_id, param("body", kind.create_body), service, grant(Action.CREATE, None)],
         {"status_code": 201, "response_model": kind.view}),
        ("GET", one, f"get_{kind.name}", _detailer(kind), [row_id, service, grant(Action.READ)],
         {"response_model": kind.detail}),
        ("GET", one + "/windows", f"list_{kind.name}_windows", _windows_lister(kind),
         [row_id, service, grant(Action.READ), param("params", Paging)],
         {"response_model": Page[kind.window]}),  # type: ignore[name-defined]
        ("PATCH", one, f"update_{kind.name}", _updater(kind),
         [row_id, param("body", kind.update_body), service, grant(Action.UPDATE)],
         {"response_model": kind.view}),
        ("DELETE", one, f"delete_{kind.name}", _deleter(kind), [row_id, service, grant(Action.DELETE)],
         {"status_code": 204, "response_class": Response}),
    ]  # fmt: skip
    for method, path, name, call, parameters, options in routes:
        doc = kind.docs[name.split("_")[0]]
        add_made_route(router, method, path, name=name, doc=doc, call=call, parameters=parameters, **options)


def _creator(kind: MeterKind) -> Callable[..., Awaitable[BudgetView | QuotaView]]:
    async def create(
        budgets: BudgetControl, organisation_id: str, body: Any, **_: Any
    ) -> BudgetView | QuotaView:
        return kind.render(await kind.create(budgets, organisation_id, body))

    return create


def _detailer(kind: MeterKind) -> Callable[..., Awaitable[BudgetDetail | QuotaDetail]]:
    async def detail(budgets: BudgetControl, **values: Any) -> BudgetDetail | QuotaDetail:
        row = await kind.lookup(budgets, values[kind.param])
        current, recent = await _windows(budgets, row)
        return kind.detail(
            **kind.render(row).model_dump(),
            current_window=kind.window.of(current) if current else None,
            recent_windows=[kind.window.of(w) for w in recent],
        )

    return detail


def _windows_lister(kind: MeterKind) -> Callable[..., Awaitable[Page[Any]]]:
    async def windows(budgets: BudgetControl, params: PageParams, **values: Any) -> Page[Any]:
        history, cursor = await _history(budgets, await kind.lookup(budgets, values[kind.param]), params)
        return Page[kind.window](items=[kind.window.of(w) for w in history], next_cursor=cursor)  # type: ignore[name-defined]

    return windows


def _updater(kind: MeterKind) -> Callable[..., Awaitable[BudgetView | QuotaView]]:
    async def update(
        budgets: BudgetControl, body: BudgetUpdate | QuotaUpdate, **values: Any
    ) -> BudgetView | QuotaView:
        return kind.render(await budgets.update(values[kind.param], body.changes()))

    return update


def _deleter(kind: MeterKind) -> Callable[..., Awaitable[Response]]:
    async def delete(budgets: BudgetControl, **values: Any) -> Response:
        await budgets.delete(values[kind.param])
        return Response(status_code=204)

    return delete


add_meter_routes(
    MeterKind(
        name="budget", param="budget_id", locate=locate_budget, create_body=BudgetCreate,
        update_body=BudgetUpdate, view=BudgetView, detail=BudgetDetail, window=BudgetWindowView,
        lookup=BudgetControl.budget, create=_create_budget,
        docs={
            "create": "Create a budget; the gateway enforces it from the next request on.",
            "get": "A budget with its current window and recent windows (used, reserved, remaining).",
            "list": "A budget's windows, newest first: the current one, then every earlier one that saw use.",
            "update": "Change a budget (name, amount, currency, thresholds, end, switch).",
            "delete": "Delete a budget.",
        },
    )
)  # fmt: skip
add_meter_routes(
    MeterKind(
        name="quota", param="quota_id", locate=locate_quota, create_body=QuotaCreate,
        update_body=QuotaUpdate, view=QuotaView, detail=QuotaDetail, window=WindowView,
        lookup=BudgetControl.quota, create=_create_quota,
        docs={
            "create": "Create a quota; the gateway enforces it from the next request on.",
            "get": "A quota with its current window and recent windows (used, reserved, remaining).",
            "list": "A quota's windows, newest first: the current one, then every earlier one that saw use.",
            "update": "Change a quota (name, limit, thresholds, end, switch).",
            "delete": "Delete a quota.",
        },
    )
)  # fmt: skip
