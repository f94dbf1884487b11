"""Reading budgets and quotas for the control plane: one meter, where it sits, and keyset pages.

A meter sits where its owner sits: a team's or a user's with them, an API key's with the key's
team or user. Lists keep what the caller's reach (:class:`odock.rbac.grant.ListScope`) covers: the
meters of its teams, of its user, and of the keys those own; a scope naming no organisation covers
every organisation (the super admin's lists).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.tables import Budget, OwnerType, Quota, QuotaMetric
from odock.budgets.windows import Period
from odock.db.keyset import KeysetPage, keyset
from odock.db.search import matches
from odock.errors import NotFound
from odock.keys.tables import ApiKey
from odock.rbac.grant import ListScope, Target

Meter = type[Budget] | type[Quota]
MeterRow = TypeVar("MeterRow", Budget, Quota)


@dataclass(frozen=True)
class MeterFilters:
    """Filters of the budget and quota lists (``currency`` budgets only, ``metric`` quotas only)."""

    owner_type: OwnerType | None = None
    owner_id: str | None = None
    period: Period | None = None
    active: bool | None = None
    q: str | None = None
    currency: str | None = None
    metric: QuotaMetric | None = None

    def apply(self, query: Select[Any], table: Meter) -> Select[Any]:
        """``query`` narrowed by every filter given."""
        if self.owner_type is not None:
            query = query.where(table.owner_type == self.owner_type)
        if self.owner_id is not None:
            owner = self.owner_id
            query = query.where(
                or_(table.team_id == owner, table.user_id == owner, table.api_key_id == owner)
            )
        if self.period is not None:
            query = query.where(table.period == self.period)
        if self.active is not None:
            query = query.where(table.active.is_(self.active))
        if self.q:
            query = query.where(matches(self.q, table.name))
        if self.currency is not None and table is Budget:
            query = query.where(Budget.currency == self.currency)
        if self.metric is not None and table is Quota:
            query = query.where(Quota.metric == self.metric)
        return query


def in_reach(query: Select[Any], table: Meter, scope: ListScope) -> Select[Any]:
    """``query`` kept to the scope's organisation and to the meters its teams, user and their keys own."""
    if scope.organisation_id is not None:
        query = query.where(table.organisation_id == scope.organisation_id)
    if scope.team_ids is None and scope.user_id is None:
        return query
    teams = sorted(scope.team_ids or ())
    key_owner: list[ColumnElement[bool]] = []
    conditions: list[ColumnElement[bool]] = []
    if teams:
        conditions.append(table.team_id.in_(teams))
        key_owner.append(ApiKey.team_id.in_(teams))
    if scope.user_id is not None:
        conditions.append(table.user_id == scope.user_id)
        key_owner.append(ApiKey.user_id == scope.user_id)
    keys = select(ApiKey.id).where(ApiKey.organisation_id == scope.organisation_id, or_(*key_owner))
    conditions.append(table.api_key_id.in_(keys))
    return query.where(or_(*conditions))


class MeterQueries:
    """Reads of budgets and quotas."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def budget(self, budget_id: str) -> Budget:
        """One budget by id (404 when absent)."""
        return await self._one(Budget, budget_id)

    async def quota(self, quota_id: str) -> Quota:
        """One quota by id (404 when absent)."""
        return await self._one(Quota, quota_id)

    async def list_budgets(self, organisation_id: str, name: str | None = None) -> builtins.list[Budget]:
        """An organisation's budgets (optionally only those with this name), oldest first."""
        return await self._named(Budget, organisation_id, name)

    async def list_quotas(self, organisation_id: str, name: str | None = None) -> builtins.list[Quota]:
        """An organisation's quotas (optionally only those with this name), oldest first."""
        return await self._named(Quota, organisation_id, name)

    async def budget_page(
        self, scope: ListScope, filters: MeterFilters, page: KeysetPage
    ) -> builtins.list[Budget]:
        """One keyset page of the budgets in reach, by creation time."""
        return await self._page(Budget, scope, filters, page)

    async def quota_page(
        self, scope: ListScope, filters: MeterFilters, page: KeysetPage
    ) -> builtins.list[Quota]:
        """One keyset page of the quotas in reach, by creation time."""
        return await self._page(Quota, scope, filters, page)

    async def placement(self, table: Meter, meter_id: str) -> Target | None:
        """Where a budget or quota sits for authorisation (``None``: no such row)."""
        async with self._sessions() as session:
            row: Budget | Quota | None = await session.get(table, meter_id)
            if row is None:
                return None
            if row.owner_type is OwnerType.APIKEY and row.api_key_id is not None:
                key = await session.get(ApiKey, row.api_key_id)
                if key is not None:
                    return Target(row.organisation_id, team_id=key.team_id, user_id=key.user_id)
            return Target(row.organisation_id, team_id=row.team_id, user_id=row.user_id)

    async def _page(
        self, table: type[MeterRow], scope: ListScope, filters: MeterFilters, page: KeysetPage
    ) -> builtins.list[MeterRow]:
        query = in_reach(filters.apply(select(table), table), table, scope)
        statement = keyset(query, table.created_at, table.id, page)
        async with self._sessions() as session:
            return builtins.list((await session.execute(statement)).scalars())

    async def _one(self, table: type[MeterRow], meter_id: str) -> MeterRow:
        async with self._sessions() as session:
            row = await session.get(table, meter_id)
        if row is None:
            raise NotFound(f"{table.__name__.lower()} '{meter_id}' does not exist")
        return row

    async def _named(
        self, table: type[MeterRow], organisation_id: str, name: str | None
    ) -> builtins.list[MeterRow]:
        query = select(table).where(table.organisation_id == organisation_id)
        if name is not None:
            query = query.where(table.name == name)
        async with self._sessions() as session:
            return builtins.list((await session.execute(query.order_by(table.created_at))).scalars())
