"""The model catalog: (organisation, model name) → :class:`ResolvedModel`, from the cache tiers.

A resolved model carries its provider (header values still encrypted) and provider-key reference
(still encrypted), so the pipeline can check and route a request without touching the database;
the vault decrypts them (and the shared cache, Redis, never holds their plaintext).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation, InvalidationBus
from odock.cache.local import TtlCache
from odock.cache.lookup import TieredLookup
from odock.cache.shared import SharedCache
from odock.errors import ModelLookupUnavailable
from odock.providers.tables import Model, Provider, ProviderApiKey


@dataclass(frozen=True, slots=True)
class ProviderTarget:
    """Where and how to reach a provider (its header values still encrypted, as stored)."""

    id: str
    type: str
    name: str
    base_url: str | None
    timeout_ms: int | None
    enabled: bool
    version: str  # changes whenever the row changes; part of the header decrypt-cache key
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderKeyRef:
    """A provider credential as stored (envelope or legacy plaintext), not yet decrypted."""

    id: str
    stored: str
    revoked: bool
    version: str  # changes whenever the row changes; part of the decrypt-cache key


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model with everything needed to call it."""

    id: str
    organisation_id: str
    name: str
    slug: str
    type: str
    capabilities: tuple[str, ...]
    enabled: bool
    pricing: dict[str, Any]
    policies: dict[str, Any]
    config: dict[str, Any]
    provider: ProviderTarget | None
    provider_key: ProviderKeyRef | None

    def to_json(self) -> bytes:
        """Serialise for the shared cache."""
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, raw: bytes) -> ResolvedModel:
        """Inverse of :meth:`to_json`."""
        data = orjson.loads(raw)
        provider = data.pop("provider")
        key = data.pop("provider_key")
        data["capabilities"] = tuple(data["capabilities"])
        return cls(
            **data,
            provider=ProviderTarget(**provider) if provider else None,
            provider_key=ProviderKeyRef(**key) if key else None,
        )


class ModelCatalog:
    """Resolves model names within an organisation."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        shared: SharedCache,
        bus: InvalidationBus,
        *,
        ttl: float,
        negative_ttl: float,
        max_entries: int,
    ) -> None:
        self._sessions = sessions
        self._lookup: TieredLookup[ResolvedModel] = TieredLookup(
            "model",
            local=TtlCache(max_entries),
            shared=shared,
            bus=bus,
            loader=self._load,
            encode=ResolvedModel.to_json,
            decode=ResolvedModel.from_json,
            ttl=ttl,
            negative_ttl=negative_ttl,
        )
        bus.subscribe(self._on_invalidation)

    async def model(self, organisation_id: str, name: str) -> ResolvedModel | None:
        """The model called ``name`` in the organisation, or None."""
        return await self._lookup.get(f"{organisation_id}/{name}")

    def _on_invalidation(self, inv: Invalidation) -> None:
        if inv.scope == "all":
            self._lookup.local.clear()
        elif inv.scope == "organisation" and inv.organisation_id:
            prefix = inv.organisation_id + "/"
            self._lookup.local.delete_where(lambda k, _v: k.startswith(prefix))

    async def _load(self, cache_key: str) -> ResolvedModel | None:
        organisation_id, _, name = cache_key.partition("/")
        if "\x00" in name:  # no model is named so, and PostgreSQL refuses NUL in a query's text
            return None
        try:
            async with self._sessions() as session:
                return await load_model(session, organisation_id, name)
        except SQLAlchemyError as exc:
            raise ModelLookupUnavailable() from exc


async def load_model(session: AsyncSession, organisation_id: str, name: str) -> ResolvedModel | None:
    """Build a resolved model from the database (the cold path)."""
    model = (
        await session.execute(
            select(Model).where(Model.organisation_id == organisation_id, Model.name == name)
        )
    ).scalar_one_or_none()
    if model is None:
        return None
    provider = await session.get(Provider, model.provider_id) if model.provider_id else None
    key = await session.get(ProviderApiKey, model.provider_api_key_id) if model.provider_api_key_id else None
    return ResolvedModel(
        id=model.id,
        organisation_id=model.organisation_id,
        name=model.name,
        slug=model.slug,
        type=model.type,
        capabilities=tuple(model.capabilities or ()),
        enabled=model.enabled,
        pricing=dict(model.pricing or {}),
        policies=dict(model.policies or {}),
        config=dict(model.config or {}),
        provider=ProviderTarget(
            id=provider.id,
            type=provider.type.value,
            name=provider.name,
            base_url=provider.base_url,
            timeout_ms=provider.timeout_ms,
            enabled=provider.enabled,
            version=provider.updated_at.isoformat(),
            config=dict(provider.config or {}),
        )
        if provider
        else None,
        provider_key=ProviderKeyRef(
            id=key.id, stored=key.key, revoked=key.revoked, version=key.updated_at.isoformat()
        )
        if key
        else None,
    )
