"""Budgets and quotas as the hot path sees them, loaded with the API key's principal.

A key is limited by every active budget and quota along its principal chain (spec §5.1):
the organisation's always, the team's for team keys, the user's for user keys, and the key's
own. Each becomes a :class:`MeterSpec`; the current window of each is one counter line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from odock.budgets.tables import Budget, OwnerType, Quota, QuotaMetric
from odock.budgets.windows import Period, Schedule, Window

BUDGET = "budget"
QUOTA = "quota"


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One budget or quota: what it counts, its limit per window and its schedule."""

    kind: str  # budget | quota
    id: str
    name: str
    owner_type: str
    owner_id: str
    metric: str  # COST for budgets; the quota metric otherwise
    limit: int
    period: str
    start_at: datetime
    timezone: str
    end_at: datetime | None
    rollover: bool
    thresholds: tuple[int, ...]
    version: int

    def schedule(self) -> Schedule:
        """The window schedule of this meter."""
        return Schedule(Period(self.period), self.start_at, self.timezone, self.end_at)

    def counter_key(self, window: Window) -> str:
        """The counter of one window; the version keeps an edited schedule from reusing counters."""
        return self.counter_key_at(window.index)

    def counter_key_at(self, index: int) -> str:
        """The counter of the window numbered ``index``."""
        return f"{self.kind}:{self.id}:v{self.version}:w{index}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the shared cache."""
        return {
            "kind": self.kind, "id": self.id, "name": self.name, "owner_type": self.owner_type,
            "owner_id": self.owner_id, "metric": self.metric, "limit": self.limit, "period": self.period,
            "start_at": self.start_at.isoformat(), "timezone": self.timezone,
            "end_at": self.end_at.isoformat() if self.end_at else None, "rollover": self.rollover,
            "thresholds": list(self.thresholds), "version": self.version,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeterSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            **{
                **data,
                "start_at": datetime.fromisoformat(data["start_at"]),
                "end_at": datetime.fromisoformat(data["end_at"]) if data["end_at"] else None,
                "thresholds": tuple(data["thresholds"]),
            }
        )


def _owner_id(row: Budget | Quota) -> str:
    owner = {
        OwnerType.ORG: row.organisation_id,
        OwnerType.TEAM: row.team_id,
        OwnerType.USER: row.user_id,
        OwnerType.APIKEY: row.api_key_id,
    }[row.owner_type]
    return owner or row.organisation_id


def budget_spec(row: Budget) -> MeterSpec:
    """The hot-path view of a budget."""
    return MeterSpec(
        BUDGET, row.id, row.name, row.owner_type.value, _owner_id(row), QuotaMetric.COST.value,
        row.amount_nanos_usd, row.period.value, row.start_at, row.timezone, row.end_at, row.rollover,
        tuple(row.thresholds or ()), row.version,
    )  # fmt: skip


def quota_spec(row: Quota) -> MeterSpec:
    """The hot-path view of a quota."""
    return MeterSpec(
        QUOTA, row.id, row.name, row.owner_type.value, _owner_id(row), row.metric.value,
        row.limit, row.period.value, row.start_at, row.timezone, row.end_at, row.rollover,
        tuple(row.thresholds or ()), row.version,
    )  # fmt: skip


async def load_meters(
    session: AsyncSession, organisation_id: str, team_id: str | None, user_id: str | None, key_id: str
) -> tuple[MeterSpec, ...]:
    """Every active budget and quota along the key's principal chain (the cold path)."""
    budgets = await session.execute(
        select(Budget)
        .where(Budget.organisation_id == organisation_id, Budget.active.is_(True))
        .where(_owned_by(Budget, team_id, user_id, key_id))
        .order_by(Budget.created_at)
    )
    quotas = await session.execute(
        select(Quota)
        .where(Quota.organisation_id == organisation_id, Quota.active.is_(True))
        .where(_owned_by(Quota, team_id, user_id, key_id))
        .order_by(Quota.created_at)
    )
    return tuple(budget_spec(b) for b in budgets.scalars()) + tuple(quota_spec(q) for q in quotas.scalars())


def _owned_by(
    table: type[Budget] | type[Quota], team_id: str | None, user_id: str | None, key_id: str
) -> ColumnElement[bool]:
    owners = [table.owner_type == OwnerType.ORG]
    if team_id:
        owners.append((table.owner_type == OwnerType.TEAM) & (table.team_id == team_id))
    if user_id:
        owners.append((table.owner_type == OwnerType.USER) & (table.user_id == user_id))
    owners.append((table.owner_type == OwnerType.APIKEY) & (table.api_key_id == key_id))
    return or_(*owners)
