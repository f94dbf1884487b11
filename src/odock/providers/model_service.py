"""The models of an organisation: creation, changes, deletion, lookups, lists and who may call them.

A model may name a provider and a provider key; both must be the organisation's own, and the key
must belong to the provider. An unknown id and another organisation's id get the same 422, so
nothing about other organisations leaks. Pricing is validated against the stored shape (spec
§3.7) and policies with :func:`odock.limits.policy.parse_policy` before anything is written.
Deleting a model deletes its API-key grants too. Every change commits, then publishes the
organisation's invalidation (keys that held a grant cache it, so key entries go as well).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, String, cast, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.keyset import KeysetPage, keyset
from odock.db.rows import commit_or_conflict, get_row, one_or_missing
from odock.db.search import matches
from odock.errors import UnprocessableEntity
from odock.ids import new_id
from odock.keys.tables import ApiKey, ApiKeyModelAccess, ApiKeyType
from odock.providers.deployments import parse_deployments
from odock.providers.tables import Model, Provider, ProviderApiKey
from odock.rbac.grant import ListScope
from odock.rules import only_fields, valid_name, validate_policies, validate_pricing
from odock.tenancy.tables import Organisation

_FIELDS = {
    "slug", "type", "capabilities", "pricing", "config", "policies", "enabled", "provider_id",
    "provider_api_key_id", "name",
}  # fmt: skip


class ModelType(enum.StrEnum):
    """What a model does (spec §3.1); routing policies are keyed by it."""

    CHAT = "chat"
    REASONING = "reasoning"
    IMAGE = "image"
    EMBEDDINGS = "embeddings"
    AUDIO = "audio"
    MODERATION = "moderation"
    TRANSCRIPTION = "transcription"
    TTS = "tts"
    OCR = "ocr"


class Capability(enum.StrEnum):
    """What a model can take or do besides text (spec §3.1)."""

    VISION = "vision"
    REASONING = "reasoning"
    TOOL_USE = "tool_use"


@dataclass(frozen=True)
class ModelFilters:
    """The filters of model lists; ``sort`` is ``created_at`` or ``name`` (then id)."""

    q: str | None = None
    provider_id: str | None = None
    type: ModelType | None = None
    capability: Capability | None = None
    enabled: bool | None = None
    sort: str = "created_at"

    def apply(self, query: Select[Any]) -> Select[Any]:
        """``query`` narrowed by every filter given."""
        if self.q:
            query = query.where(matches(self.q, Model.name, Model.slug))
        if self.provider_id:
            query = query.where(Model.provider_id == self.provider_id)
        if self.type:
            query = query.where(Model.type == self.type.value)
        if self.capability:
            # Capabilities are a JSON array of enum words: its text holds the quoted word.
            query = query.where(cast(Model.capabilities, String).like(f'%"{self.capability.value}"%'))
        if self.enabled is not None:
            query = query.where(Model.enabled == self.enabled)
        return query


@dataclass(frozen=True)
class AccessFilters:
    """The filters of the list of keys granted a model."""

    q: str | None = None
    type: ApiKeyType | None = None


class ModelService:
    """Create, change, delete, find and list models."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: InvalidationBus) -> None:
        self._sessions = sessions
        self._bus = bus

    async def create(
        self,
        organisation_id: str,
        name: str,
        *,
        slug: str | None = None,
        provider_id: str | None = None,
        provider_key_id: str | None = None,
        type: str = "chat",
        capabilities: Sequence[str] = (),
        pricing: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        policies: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> Model:
        """Create a model (409 when its name is taken in the organisation)."""
        model = Model(
            id=new_id(),
            organisation_id=organisation_id,
            name=valid_name(name),
            slug=slug or name,
            type=type,
            capabilities=list(capabilities),
            provider_id=provider_id,
            provider_api_key_id=provider_key_id,
            pricing=validate_pricing(pricing),
            config=config or {},
            policies=validate_policies(policies),
            enabled=enabled,
        )
        async with self._sessions() as session:
            await get_row(session, Organisation, organisation_id)
            await _check_references(session, organisation_id, provider_id, provider_key_id)
            await _check_deployments(session, organisation_id, model.config)
            session.add(model)
            await commit_or_conflict(session, f"model '{name}' already exists")
        await self._changed(organisation_id)
        return model

    async def update(self, model_id: str, **changes: Any) -> Model:
        """Change a model's fields (pricing and policies are validated, references checked)."""
        only_fields(changes, _FIELDS, "model")
        if "pricing" in changes:
            changes["pricing"] = validate_pricing(changes["pricing"])
        if "policies" in changes:
            changes["policies"] = validate_policies(changes["policies"])
        async with self._sessions() as session:
            model = await get_row(session, Model, model_id)
            if {"provider_id", "provider_api_key_id"} & set(changes):
                # Checked before the row changes: a lookup would flush an unknown reference first.
                provider_id = changes.get("provider_id", model.provider_id)
                key_id = changes.get("provider_api_key_id", model.provider_api_key_id)
                await _check_references(session, model.organisation_id, provider_id, key_id)
            if changes.get("config") is not None:
                await _check_deployments(session, model.organisation_id, changes["config"])
            for field, value in changes.items():
                setattr(model, field, value)
            await commit_or_conflict(session, "model name already exists")
        await self._changed(model.organisation_id)
        return model

    async def delete(self, model_id: str) -> None:
        """Delete a model and the API-key grants that name it."""
        async with self._sessions() as session:
            model = await get_row(session, Model, model_id)
            grants = select(ApiKeyModelAccess).where(ApiKeyModelAccess.model_id == model_id)
            for grant in (await session.execute(grants)).scalars():
                await session.delete(grant)
            await session.flush()
            await session.delete(model)
            await session.commit()
        await self._changed(model.organisation_id)

    async def get(self, model_id: str) -> Model:
        """One model by id (404 when absent)."""
        async with self._sessions() as session:
            return await get_row(session, Model, model_id)

    async def named(self, organisation_id: str, name: str) -> Model:
        """The organisation's model of this name (404 when absent)."""
        query = select(Model).where(Model.organisation_id == organisation_id, Model.name == name)
        return await one_or_missing(self._sessions, query, f"model '{name}' does not exist")

    async def listed(self, organisation_id: str | None = None) -> list[Model]:
        """Models by organisation and name (optionally of one organisation)."""
        query = select(Model).order_by(Model.organisation_id, Model.name)
        if organisation_id:
            query = query.where(Model.organisation_id == organisation_id)
        return await self._rows(query)

    async def page(self, scope: ListScope, filters: ModelFilters, page: KeysetPage) -> list[Model]:
        """One keyset page of the models in ``scope`` (all organisations when it names none)."""
        query = filters.apply(select(Model))
        if scope.organisation_id is not None:
            query = query.where(Model.organisation_id == scope.organisation_id)
        column = Model.name if filters.sort == "name" else Model.created_at
        return await self._rows(keyset(query, column, Model.id, page))

    async def access_page(
        self, model_id: str, keys: ListScope, filters: AccessFilters, page: KeysetPage
    ) -> list[tuple[ApiKey, ApiKeyModelAccess]]:
        """One page of the keys granted a model that ``keys`` (the caller's key reach) covers."""
        query: Select[*tuple[Any, ...]] = (
            select(ApiKey, ApiKeyModelAccess)
            .join(ApiKeyModelAccess, ApiKeyModelAccess.api_key_id == ApiKey.id)
            .where(ApiKeyModelAccess.model_id == model_id, ApiKey.organisation_id == keys.organisation_id)
        )
        if keys.team_ids is not None or keys.user_id is not None:
            mine = [ApiKey.user_id == keys.user_id] if keys.user_id else []
            teams = ApiKey.team_id.in_(keys.team_ids) if keys.team_ids else false()
            query = query.where(or_(teams, *mine))
        if filters.q:
            query = query.where(matches(filters.q, ApiKey.name))
        if filters.type:
            query = query.where(ApiKey.type == filters.type)
        async with self._sessions() as session:
            statement = keyset(query, ApiKeyModelAccess.created_at, ApiKey.id, page)
            return [(k, a) for k, a in await session.execute(statement)]

    async def _rows(self, query: Select[Any]) -> list[Model]:
        async with self._sessions() as session:
            return list((await session.execute(query)).scalars())

    async def _changed(self, organisation_id: str) -> None:
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))


async def _check_references(
    session: AsyncSession,
    organisation_id: str,
    provider_id: str | None,
    provider_key_id: str | None,
    where: str = "",
) -> None:
    """Refuse a provider or provider key outside the organisation, or a key of another provider."""
    if provider_id is not None:
        provider = await session.get(Provider, provider_id)
        if provider is None or provider.organisation_id != organisation_id:
            raise UnprocessableEntity("no such provider in this organisation", param=f"{where}provider_id")
    if provider_key_id is not None:
        key_param = f"{where}provider_api_key_id" if where else "provider_key_id"
        key = await session.get(ProviderApiKey, provider_key_id)
        if key is None or key.organisation_id != organisation_id:
            raise UnprocessableEntity("no such provider key in this organisation", param=key_param)
        if key.provider_id != provider_id:
            raise UnprocessableEntity("the provider key belongs to another provider", param=key_param)


async def _check_deployments(session: AsyncSession, organisation_id: str, config: dict[str, Any]) -> None:
    """Refuse a ``config`` whose deployments are malformed or name another organisation's rows."""
    for i, entry in enumerate(parse_deployments(config)):
        where = f"config.deployments.{i}."
        await _check_references(session, organisation_id, entry.provider_id, entry.provider_api_key_id, where)
