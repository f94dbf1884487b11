"""The bodies and views of the budget and quota routes (:mod:`odock.web.api.routes.budgets`).

A budget's amounts are integer nanos USD with an exact USD string beside each; a quota's are in
its metric's units. A window shows ``used`` (settled), ``reserved`` (held by requests in flight)
and ``remaining``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from odock.budgets.control import MAX_THRESHOLD_PERCENT, MeterChanges, WindowUsage
from odock.budgets.tables import Budget, OwnerType, Quota, QuotaMetric
from odock.budgets.windows import Period
from odock.rules import MAX_NANOS, nanos_to_usd, usd_to_nanos
from odock.web.api.fields import Id, Instant, Name, Timezone

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
