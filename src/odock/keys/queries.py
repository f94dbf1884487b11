"""Reading API keys for the control plane: one key, keys by name, pages, grants and rotations.

Lists are narrowed to the caller's reach (:class:`odock.rbac.grant.ListScope`): the keys of the
scope's teams and the scope's user; a scope naming no organisation covers every organisation
(the super admin's lists).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.db.keyset import KeysetPage, fetch_rows, keyset
from odock.db.rows import get_row
from odock.db.search import matches
from odock.keys.tables import ApiKey, ApiKeyModelAccess, ApiKeyRotation, ApiKeyType
from odock.providers.tables import Model
from odock.rbac.grant import ListScope


@dataclass(frozen=True)
class KeyFilters:
    """The filters of the key lists (``q``: name, masked preview or exact id)."""

    type: ApiKeyType | None = None
    revoked: bool | None = None
    team_id: str | None = None
    user_id: str | None = None
    expired: bool | None = None
    q: str | None = None

    def apply(self, query: Select[Any], now: datetime) -> Select[Any]:
        """``query`` narrowed by every filter given (``expired`` as of ``now``)."""
        if self.type is not None:
            query = query.where(ApiKey.type == self.type)
        if self.revoked is not None:
            query = query.where(ApiKey.revoked.is_(self.revoked))
        if self.team_id is not None:
            query = query.where(ApiKey.team_id == self.team_id)
        if self.user_id is not None:
            query = query.where(ApiKey.user_id == self.user_id)
        if self.expired is True:
            query = query.where(ApiKey.expires_at.is_not(None), ApiKey.expires_at <= now)
        elif self.expired is False:
            query = query.where(or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
        if self.q:
            query = query.where(or_(matches(self.q, ApiKey.name, ApiKey.key_preview), ApiKey.id == self.q))
        return query


def in_reach(query: Select[Any], scope: ListScope) -> Select[Any]:
    """``query`` on keys kept to the scope's organisation, teams and user."""
    if scope.organisation_id is not None:
        query = query.where(ApiKey.organisation_id == scope.organisation_id)
    if scope.team_ids is None and scope.user_id is None:
        return query
    conditions: list[ColumnElement[bool]] = []
    if scope.team_ids:
        conditions.append(ApiKey.team_id.in_(sorted(scope.team_ids)))
    if scope.user_id is not None:
        conditions.append(ApiKey.user_id == scope.user_id)
    return query.where(or_(*conditions) if conditions else false())


class KeyQueries:
    """Reads of API keys, their grants and their rotations."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, key_id: str) -> ApiKey:
        """One key by id (404 when absent)."""
        async with self._sessions() as session:
            return await get_row(session, ApiKey, key_id)

    async def named(self, organisation_id: str, name: str) -> list[ApiKey]:
        """The keys of an organisation with this name (names are not unique), oldest first."""
        query = select(ApiKey).where(ApiKey.organisation_id == organisation_id, ApiKey.name == name)
        return list(await fetch_rows(self._sessions, query.order_by(ApiKey.created_at)))

    async def listed(self, organisation_id: str | None = None) -> list[ApiKey]:
        """Keys, newest first (optionally of one organisation)."""
        query = select(ApiKey).order_by(ApiKey.created_at.desc())
        if organisation_id:
            query = query.where(ApiKey.organisation_id == organisation_id)
        return list(await fetch_rows(self._sessions, query))

    async def page(
        self, scope: ListScope, filters: KeyFilters, page: KeysetPage, now: datetime | None = None
    ) -> list[ApiKey]:
        """One keyset page of the keys in reach, by creation time."""
        query = filters.apply(in_reach(select(ApiKey), scope), now or datetime.now(UTC))
        return list(await fetch_rows(self._sessions, keyset(query, ApiKey.created_at, ApiKey.id, page)))

    async def grants(self, key_id: str) -> list[str]:
        """Names of the models a key may call, by name."""
        return [m.name for m in await self.granted_models(key_id)]

    async def granted_models(self, key_id: str) -> list[Model]:
        """The models a key may call, by name."""
        query = _granted(key_id).order_by(Model.name)
        return list(await fetch_rows(self._sessions, query))

    async def grants_page(self, key_id: str, q: str | None, page: KeysetPage) -> list[Model]:
        """One keyset page of the models a key may call, by name (``q``: name, slug, type or id)."""
        query = _granted(key_id)
        if q:
            query = query.where(or_(matches(q, Model.name, Model.slug, Model.type), Model.id == q))
        return list(await fetch_rows(self._sessions, keyset(query, Model.name, Model.id, page)))

    async def rotations(self, key_id: str) -> list[ApiKeyRotation]:
        """A key's rotation history, oldest first."""
        query = select(ApiKeyRotation).where(ApiKeyRotation.api_key_id == key_id)
        return list(await fetch_rows(self._sessions, query.order_by(ApiKeyRotation.rotated_at)))

    async def rotations_page(self, key_id: str, page: KeysetPage) -> list[ApiKeyRotation]:
        """One keyset page of a key's rotation history, by rotation time."""
        query = select(ApiKeyRotation).where(ApiKeyRotation.api_key_id == key_id)
        statement = keyset(query, ApiKeyRotation.rotated_at, ApiKeyRotation.id, page)
        return list(await fetch_rows(self._sessions, statement))


def _granted(key_id: str) -> Select[Model]:
    return (
        select(Model)
        .join(ApiKeyModelAccess, ApiKeyModelAccess.model_id == Model.id)
        .where(ApiKeyModelAccess.api_key_id == key_id)
    )
