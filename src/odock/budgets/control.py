"""Control-plane operations on budgets and quotas (used by the CLI, declarative config and tests).

Each mutation commits, then invalidates the organisation's cached principals so every replica
picks the new limits up on its next request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.tables import Budget, OwnerType, Quota, QuotaMetric
from odock.budgets.windows import Period, Schedule
from odock.cache.bus import Invalidation, InvalidationBus
from odock.errors import NotFound, UnprocessableEntity
from odock.ids import new_id
from odock.keys.tables import ApiKey
from odock.tenancy.tables import Team, User


class BudgetControl:
    """Create and change budgets and quotas."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: InvalidationBus) -> None:
        self._sessions = sessions
        self._bus = bus

    async def create_budget(
        self, organisation_id: str, name: str, *, amount_nanos_usd: int, **schedule: Any
    ) -> Budget:
        """Create a money budget (integer nanos USD per window)."""
        if amount_nanos_usd < 0:
            raise UnprocessableEntity("amount must be ≥ 0", param="amount_nanos_usd")
        row = Budget(
            id=new_id(), organisation_id=organisation_id, name=name, amount_nanos_usd=amount_nanos_usd
        )
        return await self._create(row, schedule)  # type: ignore[return-value]

    async def create_quota(
        self, organisation_id: str, name: str, *, metric: QuotaMetric, limit: int, **schedule: Any
    ) -> Quota:
        """Create a quota on a metric."""
        if limit < 0:
            raise UnprocessableEntity("limit must be ≥ 0", param="limit")
        row = Quota(
            id=new_id(), organisation_id=organisation_id, name=name, metric=QuotaMetric(metric), limit=limit
        )
        return await self._create(row, schedule)  # type: ignore[return-value]

    async def set_active(self, meter_id: str, active: bool) -> None:
        """Switch a budget or quota on or off."""
        async with self._sessions() as session:
            row: Budget | Quota | None = await session.get(Budget, meter_id)
            if row is None:
                row = await session.get(Quota, meter_id)
            if row is None:
                raise NotFound(f"budget or quota '{meter_id}' does not exist")
            row.active = active
            await session.commit()
            organisation_id = row.organisation_id
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))

    async def set_limit(self, meter_id: str, limit: int) -> None:
        """Change a budget's amount or a quota's limit (new counters start from the ledger)."""
        async with self._sessions() as session:
            budget = await session.get(Budget, meter_id)
            quota = None if budget else await session.get(Quota, meter_id)
            if budget is not None:
                budget.amount_nanos_usd = limit
                budget.version += 1
                organisation_id = budget.organisation_id
            elif quota is not None:
                quota.limit = limit
                quota.version += 1
                organisation_id = quota.organisation_id
            else:
                raise NotFound(f"budget or quota '{meter_id}' does not exist")
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))

    async def list(self, organisation_id: str) -> Sequence[Budget | Quota]:
        """Budgets then quotas of an organisation."""
        async with self._sessions() as session:
            budgets = (
                await session.execute(select(Budget).where(Budget.organisation_id == organisation_id))
            ).scalars()
            quotas = (
                await session.execute(select(Quota).where(Quota.organisation_id == organisation_id))
            ).scalars()
            return [*budgets, *quotas]

    async def _create(self, row: Budget | Quota, schedule: dict[str, Any]) -> Budget | Quota:
        _apply_schedule(row, **schedule)
        async with self._sessions() as session:
            await _check_owner(session, row)
            session.add(row)
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=row.organisation_id))
        return row


def _apply_schedule(
    row: Budget | Quota,
    *,
    owner_type: OwnerType = OwnerType.ORG,
    owner_id: str | None = None,
    period: Period = Period.MONTHLY,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    timezone: str = "UTC",
    rollover: bool = False,
    thresholds: Sequence[int] = (),
    active: bool = True,
) -> None:
    start = start_at or datetime.now(UTC)
    try:
        Schedule(Period(period), start, timezone, end_at)
    except ValueError as exc:
        raise UnprocessableEntity(f"invalid schedule: {exc}", param="period") from exc
    if any(not 0 < t <= 1000 for t in thresholds):
        raise UnprocessableEntity("thresholds are percentages between 1 and 1000", param="thresholds")
    row.owner_type = OwnerType(owner_type)
    row.team_id = owner_id if row.owner_type == OwnerType.TEAM else None
    row.user_id = owner_id if row.owner_type == OwnerType.USER else None
    row.api_key_id = owner_id if row.owner_type == OwnerType.APIKEY else None
    if row.owner_type != OwnerType.ORG and not owner_id:
        raise UnprocessableEntity(f"a {row.owner_type.value} budget needs an owner id", param="owner_id")
    row.period, row.start_at, row.end_at, row.timezone = Period(period), start, end_at, timezone
    row.rollover, row.thresholds, row.active, row.version = rollover, sorted(thresholds), active, 1


async def _check_owner(session: AsyncSession, row: Budget | Quota) -> None:
    owner: Any = None
    if row.owner_type == OwnerType.TEAM:
        owner = await session.get(Team, row.team_id)
    elif row.owner_type == OwnerType.USER:
        owner = await session.get(User, row.user_id)
    elif row.owner_type == OwnerType.APIKEY:
        owner = await session.get(ApiKey, row.api_key_id)
    else:
        return
    if owner is None or owner.organisation_id != row.organisation_id:
        raise UnprocessableEntity("the owner does not exist in this organisation", param="owner_id")
