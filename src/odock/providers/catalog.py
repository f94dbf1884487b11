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
from odock.providers.deployments import deployment_entries
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
class Deployment:
    """One place a model is served: a provider, its key and the upstream model id (spec key pools).

    ``id`` names it for the circuit breaker and the routing evidence: provider, key and model.
    """

    id: str
    provider: ProviderTarget | None
    provider_key: ProviderKeyRef | None
    slug: str
    weight: int = 1

    @classmethod
    def of(
        cls, provider: ProviderTarget | None, key: ProviderKeyRef | None, slug: str, weight: int
    ) -> Deployment:
        """The deployment of ``slug`` on ``provider`` with ``key``."""
        provider_id = provider.id if provider is not None else "-"
        return cls(f"{provider_id}/{key.id if key else '-'}/{slug}", provider, key, slug, weight)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        """Inverse of the dataclass' JSON form."""
        provider, key = data.pop("provider"), data.pop("provider_key")
        return cls(
            **data,
            provider=ProviderTarget(**provider) if provider else None,
            provider_key=ProviderKeyRef(**key) if key else None,
        )


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
    # Further deployments of the model besides its own provider and key (``config.deployments``).
    pool: tuple[Deployment, ...] = ()

    def deployments(self) -> tuple[Deployment, ...]:
        """Every deployment of the model, its own provider and key first."""
        weight = self.config.get("weight", 1)
        primary = Deployment.of(
            self.provider, self.provider_key, self.slug, weight if isinstance(weight, int) else 1
        )
        return (primary, *self.pool)

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
        data["pool"] = tuple(Deployment.from_json(d) for d in data.get("pool", ()))
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
    config = dict(model.config or {})
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
        config=config,
        provider=_target(provider) if provider else None,
        provider_key=_key_ref(key) if key else None,
        pool=tuple(await _pool(session, model, config)),
    )


def _target(provider: Provider) -> ProviderTarget:
    return ProviderTarget(
        id=provider.id,
        type=provider.type.value,
        name=provider.name,
        base_url=provider.base_url,
        timeout_ms=provider.timeout_ms,
        enabled=provider.enabled,
        version=provider.updated_at.isoformat(),
        config=dict(provider.config or {}),
    )


def _key_ref(key: ProviderApiKey) -> ProviderKeyRef:
    return ProviderKeyRef(id=key.id, stored=key.key, revoked=key.revoked, version=key.updated_at.isoformat())


async def _pool(session: AsyncSession, model: Model, config: dict[str, Any]) -> list[Deployment]:
    """The model's further deployments (validated when saved; one whose provider or key has since
    gone, or moved to another organisation, is left out)."""
    pool = []
    for entry in deployment_entries(config):
        provider = await session.get(Provider, entry.provider_id)
        if provider is None or provider.organisation_id != model.organisation_id:
            continue
        key = None
        if entry.provider_api_key_id is not None:
            key = await session.get(ProviderApiKey, entry.provider_api_key_id)
            if key is None or key.provider_id != provider.id:
                continue
        slug = entry.slug or model.slug
        pool.append(Deployment.of(_target(provider), _key_ref(key) if key else None, slug, entry.weight))
    return pool
