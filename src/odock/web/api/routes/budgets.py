"""Routes: budgets (money per window) and quotas (a metric per window), with their windows.

A budget's amounts are integer nanos USD with an exact USD string beside each; a quota's are in
its metric's units. Each window shows ``used`` (settled), ``reserved`` (held by requests in
flight, from the live counters) and ``remaining``. Changes reach the gateway at once
(:class:`odock.budgets.control.BudgetControl` publishes the invalidation).

Reach: organisation admins manage every budget and quota; a team manager reads those of the
teams they manage (and their own and their keys'), a user their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from odock.budgets.control import MAX_THRESHOLD_PERCENT, BudgetControl, MeterChanges, WindowUsage
from odock.budgets.queries import Meter, MeterFilters
from odock.budgets.tables import Budget, OwnerType, Quota, QuotaMetric
from odock.budgets.windows import Period
from odock.errors import UnprocessableEntity
from odock.rbac.grant import Grant, Target
from odock.rbac.permissions import Action, Resource
from odock.rules import MAX_NANOS, nanos_to_usd, usd_to_nanos
from odock.runtime import Runtime
from odock.web.api.deps import Locator, Permit
from odock.web.api.fields import Id, Instant, Name, Timezone
from odock.web.api.lists import ListRoute, TwinLists, add_list_routes
from odock.web.api.paging import Page, PageParams, decode_cursor, encode_cursor, page_params
from odock.web.api.search import SearchQuery
from odock.web.api.services import Budgets, budgets_of

router = APIRouter(tags=["Budgets and quotas"])

Currency = Literal["USD", "EUR", "LBS"]
Threshold = Annotated[int, Field(ge=1, le=MAX_THRESHOLD_PERCENT)]
Amount = Annotated[int, Field(ge=0, le=MAX_NANOS)]
UsdAmount = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^\s*\d+(\.\d+)?\s*$")]


# --- views ---------------------------------------------------------------------------------
class WindowView(BaseModel):
    """One window of a quota, in the quota's metric units."""

    index: int
    start: datetime
    end: datetime
    limit: int
    used: int
    reserved: int
    remaining: int

    @classmethod
    def of(cls, window: WindowUsage) -> WindowView:
        """The view of a window."""
        return cls(
            index=window.index,
            start=window.start,
            end=window.end,
            limit=window.limit,
            used=window.used,
            reserved=window.reserved,
            remaining=window.remaining,
        )


class BudgetWindowView(WindowView):
    """One window of a budget: amounts in nanos USD, each with its exact USD string."""

    limit_usd: str
    used_usd: str
    reserved_usd: str
    remaining_usd: str

    @classmethod
    def of(cls, window: WindowUsage) -> BudgetWindowView:
        """The view of a window."""
        base = WindowView.of(window)
        return cls(
            **base.model_dump(),
            limit_usd=nanos_to_usd(base.limit),
            used_usd=nanos_to_usd(base.used),
            reserved_usd=nanos_to_usd(base.reserved),
            remaining_usd=nanos_to_usd(base.remaining),
        )


class MeterView(BaseModel):
    """What budgets and quotas share: owner, schedule, thresholds, switch."""

    id: str
    organisation_id: str
    name: str
    owner_type: OwnerType
    owner_id: str
    team_id: str | None
    user_id: str | None
    api_key_id: str | None
    period: Period
    start_at: datetime
    end_at: datetime | None
    timezone: str
    rollover: bool
    thresholds: list[int]
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime


def _meter_fields(row: Budget | Quota) -> dict[str, Any]:
    owner = {
        OwnerType.ORG: row.organisation_id,
        OwnerType.TEAM: row.team_id,
        OwnerType.USER: row.user_id,
        OwnerType.APIKEY: row.api_key_id,
    }[row.owner_type]
    return {
        "id": row.id,
        "organisation_id": row.organisation_id,
        "name": row.name,
        "owner_type": row.owner_type,
        "owner_id": owner or row.organisation_id,
        "team_id": row.team_id,
        "user_id": row.user_id,
        "api_key_id": row.api_key_id,
        "period": row.period,
        "start_at": row.start_at,
        "end_at": row.end_at,
        "timezone": row.timezone,
        "rollover": row.rollover,
        "thresholds": list(row.thresholds or ()),
        "active": row.active,
        "version": row.version,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


class BudgetView(MeterView):
    """A budget: an amount of money per window (``currency`` is for display; amounts are USD)."""

    currency: str
    amount_nanos: int
    amount_usd: str

    @classmethod
    def of(cls, row: Budget) -> BudgetView:
        """The view of a budget."""
        return cls(
            **_meter_fields(row),
            currency=row.currency,
            amount_nanos=row.amount_nanos_usd,
            amount_usd=nanos_to_usd(row.amount_nanos_usd),
        )


class BudgetDetail(BudgetView):
    """A budget with its current window and the most recent earlier ones."""

    current_window: BudgetWindowView | None
    recent_windows: list[BudgetWindowView]


class QuotaView(MeterView):
    """A quota: a limit on a usage metric per window."""

    metric: QuotaMetric
    limit: int

    @classmethod
    def of(cls, row: Quota) -> QuotaView:
        """The view of a quota."""
        return cls(**_meter_fields(row), metric=row.metric, limit=row.limit)


class QuotaDetail(QuotaView):
    """A quota with its current window and the most recent earlier ones."""

    current_window: WindowView | None
    recent_windows: list[WindowView]


# --- bodies --------------------------------------------------------------------------------
class _MeterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    owner_type: OwnerType = OwnerType.ORG
    owner_id: Id | None = Field(default=None, description="the team, user or API key (not for ORG)")
    period: Period = Period.MONTHLY
    start_at: Instant | None = Field(default=None, description="first window's start (default: now)")
    timezone: Timezone = "UTC"
    end_at: Instant | None = None
    rollover: bool = False
    thresholds: list[Threshold] = Field(default_factory=list, max_length=20)
    active: bool = True

    @model_validator(mode="after")
    def _owner(self) -> _MeterCreate:
        if self.owner_type is OwnerType.ORG and self.owner_id is not None:
            raise ValueError("an ORG budget or quota takes no owner_id")
        if self.owner_type is not OwnerType.ORG and self.owner_id is None:
            raise ValueError(f"a {self.owner_type.value} budget or quota needs an owner_id")
        return self

    def schedule(self) -> dict[str, Any]:
        """The schedule keywords of BudgetControl.create_*."""
        return {
            "owner_type": self.owner_type,
            "owner_id": self.owner_id,
            "period": self.period,
            "start_at": self.start_at,
            "end_at": self.end_at,
            "timezone": self.timezone,
            "rollover": self.rollover,
            "thresholds": self.thresholds,
            "active": self.active,
        }


def _one_amount(usd: str | None, nanos: int | None) -> None:
    if (usd is None) == (nanos is None):
        raise ValueError("give exactly one of amount_usd or amount_nanos")


class BudgetCreate(_MeterCreate):
    """A new budget (spec §3.9): owner, schedule, amount (USD string or nanos), currency, thresholds."""

    amount_usd: UsdAmount | None = Field(default=None, description="e.g. '12.50' (at most 9 decimals)")
    amount_nanos: Amount | None = Field(default=None, description="1 USD = 1,000,000,000")
    currency: Currency = "USD"

    @model_validator(mode="after")
    def _amount(self) -> BudgetCreate:
        _one_amount(self.amount_usd, self.amount_nanos)
        return self

    def nanos(self) -> int:
        """The amount in nanos USD."""
        return self.amount_nanos if self.amount_nanos is not None else usd_to_nanos(str(self.amount_usd))


class QuotaCreate(_MeterCreate):
    """A new quota: owner, schedule, metric and limit per window."""

    metric: QuotaMetric
    limit: Amount


class _MeterUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    active: bool | None = None
    thresholds: list[Threshold] | None = Field(default=None, max_length=20)
    end_at: Instant | None = Field(default=None, description="null removes the end")

    def changes(self) -> MeterChanges:
        """The changes to apply (``null`` is meaningful for end_at only; elsewhere it changes nothing)."""
        changes = MeterChanges()
        if self.name is not None:
            changes["name"] = self.name
        if self.active is not None:
            changes["active"] = self.active
        if self.thresholds is not None:
            changes["thresholds"] = self.thresholds
        if "end_at" in self.model_fields_set:
            changes["end_at"] = self.end_at
        return changes


class BudgetUpdate(_MeterUpdate):
    """Changes to a budget; a new amount keeps what the current window already used."""

    amount_usd: UsdAmount | None = None
    amount_nanos: Amount | None = None
    currency: Currency | None = None

    @model_validator(mode="after")
    def _amount(self) -> BudgetUpdate:
        if self.amount_usd is not None and self.amount_nanos is not None:
            raise ValueError("give at most one of amount_usd or amount_nanos")
        return self

    def changes(self) -> MeterChanges:
        """The changes to apply."""
        changes = super().changes()
        if self.amount_nanos is not None:
            changes["limit"] = self.amount_nanos
        elif self.amount_usd is not None:
            changes["limit"] = usd_to_nanos(self.amount_usd)
        if self.currency is not None:
            changes["currency"] = self.currency
        return changes


class QuotaUpdate(_MeterUpdate):
    """Changes to a quota; a new limit keeps what the current window already used."""

    limit: Amount | None = None

    def changes(self) -> MeterChanges:
        """The changes to apply."""
        changes = super().changes()
        if self.limit is not None:
            changes["limit"] = self.limit
        return changes


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
BudgetRead = Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.READ, locate=locate_budget))]
BudgetWrite = Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.UPDATE, locate=locate_budget))]
QuotaRead = Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.READ, locate=locate_quota))]
QuotaWrite = Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.UPDATE, locate=locate_quota))]


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


add_list_routes(
    router,
    TwinLists(
        resource=Resource.BUDGET,
        service=budgets_of,
        wanted=budget_list,
        fetch=BudgetControl.budget_page,
        render=BudgetView.of,
        key=_created,
        item=BudgetView,
        everywhere=ListRoute(
            "/admin/budgets", "list_all_budgets", "Every organisation's budgets, newest first (super admin)."
        ),
        organisation=ListRoute(
            ORG + "/budgets",
            "list_budgets",
            "The organisation's budgets within the caller's reach, newest first.",
        ),
    ),
)
add_list_routes(
    router,
    TwinLists(
        resource=Resource.BUDGET,
        service=budgets_of,
        wanted=quota_list,
        fetch=BudgetControl.quota_page,
        render=QuotaView.of,
        key=_created,
        item=QuotaView,
        everywhere=ListRoute(
            "/admin/quotas", "list_all_quotas", "Every organisation's quotas, newest first (super admin)."
        ),
        organisation=ListRoute(
            ORG + "/quotas",
            "list_quotas",
            "The organisation's quotas within the caller's reach, newest first.",
        ),
    ),
)


# --- budgets -------------------------------------------------------------------------------
@router.post(ORG + "/budgets", status_code=201, response_model=BudgetView)
async def create_budget(
    organisation_id: str,
    body: BudgetCreate,
    budgets: Budgets,
    grant: Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.CREATE))],
) -> BudgetView:
    """Create a budget; the gateway enforces it from the next request on."""
    row = await budgets.create_budget(
        organisation_id, body.name, amount_nanos_usd=body.nanos(), currency=body.currency, **body.schedule()
    )
    return BudgetView.of(row)


@router.get(ORG + "/budgets/{budget_id}", response_model=BudgetDetail)
async def get_budget(budget_id: str, budgets: Budgets, grant: BudgetRead) -> BudgetDetail:
    """A budget with its current window and recent windows (used, reserved, remaining)."""
    row = await budgets.budget(budget_id)
    current, recent = await _windows(budgets, row)
    return BudgetDetail(
        **BudgetView.of(row).model_dump(),
        current_window=BudgetWindowView.of(current) if current else None,
        recent_windows=[BudgetWindowView.of(w) for w in recent],
    )


@router.get(ORG + "/budgets/{budget_id}/windows", response_model=Page[BudgetWindowView])
async def list_budget_windows(
    budget_id: str, budgets: Budgets, grant: BudgetRead, params: Paging
) -> Page[BudgetWindowView]:
    """A budget's windows, newest first: the current one, then every earlier one that saw use."""
    windows, cursor = await _history(budgets, await budgets.budget(budget_id), params)
    return Page[BudgetWindowView](items=[BudgetWindowView.of(w) for w in windows], next_cursor=cursor)


@router.patch(ORG + "/budgets/{budget_id}", response_model=BudgetView)
async def update_budget(
    budget_id: str, body: BudgetUpdate, budgets: Budgets, grant: BudgetWrite
) -> BudgetView:
    """Change a budget (name, amount, currency, thresholds, end, switch)."""
    row = await budgets.update(budget_id, body.changes())
    assert isinstance(row, Budget)
    return BudgetView.of(row)


@router.delete(ORG + "/budgets/{budget_id}", status_code=204, response_class=Response)
async def delete_budget(
    budget_id: str,
    budgets: Budgets,
    grant: Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.DELETE, locate=locate_budget))],
) -> Response:
    """Delete a budget."""
    await budgets.delete(budget_id)
    return Response(status_code=204)


# --- quotas --------------------------------------------------------------------------------
@router.post(ORG + "/quotas", status_code=201, response_model=QuotaView)
async def create_quota(
    organisation_id: str,
    body: QuotaCreate,
    budgets: Budgets,
    grant: Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.CREATE))],
) -> QuotaView:
    """Create a quota; the gateway enforces it from the next request on."""
    row = await budgets.create_quota(
        organisation_id, body.name, metric=body.metric, limit=body.limit, **body.schedule()
    )
    return QuotaView.of(row)


@router.get(ORG + "/quotas/{quota_id}", response_model=QuotaDetail)
async def get_quota(quota_id: str, budgets: Budgets, grant: QuotaRead) -> QuotaDetail:
    """A quota with its current window and recent windows (used, reserved, remaining)."""
    row = await budgets.quota(quota_id)
    current, recent = await _windows(budgets, row)
    return QuotaDetail(
        **QuotaView.of(row).model_dump(),
        current_window=WindowView.of(current) if current else None,
        recent_windows=[WindowView.of(w) for w in recent],
    )


@router.get(ORG + "/quotas/{quota_id}/windows", response_model=Page[WindowView])
async def list_quota_windows(
    quota_id: str, budgets: Budgets, grant: QuotaRead, params: Paging
) -> Page[WindowView]:
    """A quota's windows, newest first: the current one, then every earlier one that saw use."""
    windows, cursor = await _history(budgets, await budgets.quota(quota_id), params)
    return Page[WindowView](items=[WindowView.of(w) for w in windows], next_cursor=cursor)


@router.patch(ORG + "/quotas/{quota_id}", response_model=QuotaView)
async def update_quota(quota_id: str, body: QuotaUpdate, budgets: Budgets, grant: QuotaWrite) -> QuotaView:
    """Change a quota (name, limit, thresholds, end, switch)."""
    row = await budgets.update(quota_id, body.changes())
    assert isinstance(row, Quota)
    return QuotaView.of(row)


@router.delete(ORG + "/quotas/{quota_id}", status_code=204, response_class=Response)
async def delete_quota(
    quota_id: str,
    budgets: Budgets,
    grant: Annotated[Grant, Depends(Permit(Resource.BUDGET, Action.DELETE, locate=locate_quota))],
) -> Response:
    """Delete a quota."""
    await budgets.delete(quota_id)
    return Response(status_code=204)
