"""The providers of an organisation: activation, changes, deletion, lookups and lists.

Providers are unique by name within an organisation; several of one type may coexist (two Azure
regions, two OpenAI accounts), so every lookup is by id or name, never by type. Activation from
the catalogue fills the base URL and name from :mod:`odock.providers.provider_types`. Deleting a
provider is refused (409) while models still use it, so no model silently loses its upstream; its
keys are deleted with it. The values of ``config.headers`` are stored encrypted
(:mod:`odock.providers.config`); :meth:`ProviderService.encrypt_plaintext_headers` encrypts, at
startup, values that older versions stored in plaintext. Every change commits, then publishes the
organisation's invalidation so the gateway sees it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.base import utcnow
from odock.db.keyset import KeysetPage, fetch_rows, keyset
from odock.db.rows import commit_or_conflict, get_row, one_or_missing
from odock.db.search import matches
from odock.errors import Conflict, UnprocessableEntity
from odock.ids import new_id
from odock.providers.config import config_holds, holds_plaintext, sealed_config, stored_config
from odock.providers.crypto import EnvelopeDecrypter
from odock.providers.provider_types import CATALOGUE, ProviderTypeInfo, describe
from odock.providers.tables import Model, Provider, ProviderApiKey, ProviderType
from odock.rbac.grant import ListScope
from odock.rules import valid_name
from odock.tenancy.tables import Organisation

log = logging.getLogger(__name__)
_FIELDS = frozenset({"name", "type", "base_url", "timeout_ms", "config", "enabled"})


@dataclass(frozen=True)
class ProviderChanges:
    """What a provider update changes: ``None`` keeps a field, except where ``set_*`` says to clear it."""

    name: str | None = None
    type: ProviderType | None = None
    config: dict[str, Any] | None = None
    enabled: bool | None = None
    base_url: str | None = None
    set_base_url: bool = False
    timeout_ms: int | None = None
    set_timeout_ms: bool = False

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> ProviderChanges:
        """The changes of a mapping (a given ``base_url``/``timeout_ms`` is set, even to None)."""
        unknown = set(fields) - _FIELDS
        if unknown:
            raise UnprocessableEntity(f"unknown provider fields: {', '.join(sorted(unknown))}")
        return cls(
            **{k: v for k, v in fields.items() if k not in ("base_url", "timeout_ms")},
            base_url=fields.get("base_url"),
            set_base_url="base_url" in fields,
            timeout_ms=fields.get("timeout_ms"),
            set_timeout_ms="timeout_ms" in fields,
        )


@dataclass(frozen=True)
class ProviderFilters:
    """The filters of provider lists; ``sort`` is ``created_at`` or ``name`` (then id)."""

    q: str | None = None
    type: ProviderType | None = None
    enabled: bool | None = None
    sort: str = "created_at"


@dataclass(frozen=True)
class CatalogueItem:
    """A catalogue entry and the organisation's first provider of that type (``None``: none yet)."""

    info: ProviderTypeInfo
    provider: Provider | None


class ProviderService:
    """Create, change, delete, find and list providers."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: InvalidationBus,
        encrypter: EnvelopeDecrypter | None,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._encrypter = encrypter

    async def activate(
        self,
        organisation_id: str,
        type: ProviderType,
        *,
        name: str | None = None,
        base_url: str | None = None,
        timeout_ms: int | None = None,
        config: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> Provider:
        """Create a provider of ``type`` with the catalogue's defaults for what is not given."""
        info = describe(type)
        if base_url is None and info.base_url_required:
            raise UnprocessableEntity(
                f"{info.label} needs its own base URL (the default {info.default_base_url} is a template)",
                param="base_url",
            )
        return await self.create(
            organisation_id,
            name if name is not None else info.label,
            type,
            base_url=base_url if base_url is not None else info.default_base_url,
            timeout_ms=timeout_ms,
            config=config,
            enabled=enabled,
        )

    async def create(
        self,
        organisation_id: str,
        name: str,
        type: ProviderType,
        *,
        base_url: str | None = None,
        timeout_ms: int | None = None,
        config: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> Provider:
        """Create a provider (409 when the organisation has one of this name)."""
        _check_timeout(timeout_ms)
        provider = Provider(
            id=new_id(),
            organisation_id=organisation_id,
            name=valid_name(name),
            type=type,
            base_url=base_url,
            timeout_ms=timeout_ms,
            config=stored_config(config or {}, None, self._encrypter),
            enabled=enabled,
        )
        async with self._sessions() as session:
            await get_row(session, Organisation, organisation_id)
            session.add(provider)
            await commit_or_conflict(session, f"a provider named '{provider.name}' already exists")
        await self._changed(organisation_id)
        return provider

    async def update(self, provider_id: str, changes: ProviderChanges) -> Provider:
        """Rename, or change the type, base URL, timeout, config or switch, in one transaction."""
        if changes.set_timeout_ms:
            _check_timeout(changes.timeout_ms)
        async with self._sessions() as session:
            provider = await get_row(session, Provider, provider_id)
            if changes.name is not None:
                provider.name = valid_name(changes.name)
            if changes.type is not None:
                provider.type = changes.type
            if changes.config is not None:
                provider.config = stored_config(changes.config, provider.config, self._encrypter)
            if changes.enabled is not None:
                provider.enabled = changes.enabled
            if changes.set_base_url:
                provider.base_url = changes.base_url
            if changes.set_timeout_ms:
                provider.timeout_ms = changes.timeout_ms
            await commit_or_conflict(session, f"a provider named '{changes.name}' already exists")
        await self._changed(provider.organisation_id)
        return provider

    async def delete(self, provider_id: str) -> None:
        """Delete a provider no model uses, with its keys."""
        async with self._sessions() as session:
            provider = await get_row(session, Provider, provider_id)
            await refuse_if_used(session, Model.provider_id, provider_id, "provider")
            keys = select(ProviderApiKey).where(ProviderApiKey.provider_id == provider_id)
            for key in (await session.execute(keys)).scalars():
                await session.delete(key)
            await session.flush()
            await session.delete(provider)
            await session.commit()
        await self._changed(provider.organisation_id)

    async def get(self, provider_id: str) -> Provider:
        """One provider by id (404 when absent)."""
        async with self._sessions() as session:
            return await get_row(session, Provider, provider_id)

    async def named(self, organisation_id: str, name: str) -> Provider:
        """The organisation's provider of this name (404 when absent)."""
        query = select(Provider).where(Provider.organisation_id == organisation_id, Provider.name == name)
        return await one_or_missing(self._sessions, query, f"provider '{name}' does not exist")

    async def listed(self, organisation_id: str | None = None) -> Sequence[Provider]:
        """Providers by organisation and name (optionally of one organisation)."""
        query = select(Provider).order_by(Provider.organisation_id, Provider.name)
        if organisation_id:
            query = query.where(Provider.organisation_id == organisation_id)
        return await fetch_rows(self._sessions, query)

    async def page(self, scope: ListScope, filters: ProviderFilters, page: KeysetPage) -> Sequence[Provider]:
        """One keyset page of the providers in ``scope`` (all organisations when it names none)."""
        query = select(Provider)
        if scope.organisation_id is not None:
            query = query.where(Provider.organisation_id == scope.organisation_id)
        if filters.q:
            query = query.where(matches(filters.q, Provider.name, Provider.base_url))
        if filters.type is not None:
            query = query.where(Provider.type == filters.type)
        if filters.enabled is not None:
            query = query.where(Provider.enabled == filters.enabled)
        column = Provider.name if filters.sort == "name" else Provider.created_at
        return await fetch_rows(self._sessions, keyset(query, column, Provider.id, page))

    async def catalogue(self, organisation_id: str) -> list[CatalogueItem]:
        """Every provider type, each with the organisation's first-activated provider of it."""
        query = select(Provider).where(Provider.organisation_id == organisation_id)
        first: dict[ProviderType, Provider] = {}
        for provider in await fetch_rows(self._sessions, query.order_by(Provider.created_at, Provider.id)):
            first.setdefault(provider.type, provider)
        return [CatalogueItem(info, first.get(info.type)) for info in CATALOGUE]

    def config_holds(self, provider: Provider, config: dict[str, Any]) -> bool:
        """True when the provider stores ``config`` (its header values opening to the given ones)."""
        return config_holds(provider.config, config, self._encrypter)

    async def encrypt_plaintext_headers(self) -> int:
        """Encrypt header values older versions stored in plaintext; return how many providers changed.

        Safe with several replicas starting at once and with concurrent edits: a row is written
        only if it has not changed since it was read (same ``updated_at``); otherwise whoever
        changed it has stored it encrypted already. Without an encryption pair nothing can be done
        (the values keep working, logged as plaintext on first use).
        """
        if self._encrypter is None:
            return 0
        query = select(Provider.id, Provider.organisation_id, Provider.config, Provider.updated_at)
        async with self._sessions() as session:
            rows = [row for row in (await session.execute(query)).all() if holds_plaintext(row.config)]
        encrypted = 0
        organisations: set[str] = set()
        for provider_id, organisation_id, config, updated_at in rows:
            if await self._seal(provider_id, config, updated_at):
                encrypted += 1
                organisations.add(organisation_id)
                log.info("provider %s: its header values stored in plaintext are now encrypted", provider_id)
        for organisation_id in organisations:
            await self._changed(organisation_id)
        return encrypted

    async def _seal(self, provider_id: str, config: dict[str, Any], updated_at: object) -> bool:
        assert self._encrypter is not None
        async with self._sessions() as session:
            done = await session.execute(
                update(Provider)
                .where(Provider.id == provider_id, Provider.updated_at == updated_at)
                .values(config=sealed_config(config, self._encrypter), updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        return bool(done.rowcount)  # type: ignore[attr-defined]

    async def _changed(self, organisation_id: str) -> None:
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))


def _check_timeout(timeout_ms: int | None) -> None:
    if timeout_ms is not None and timeout_ms <= 0:
        raise UnprocessableEntity("timeout_ms must be positive", param="timeout_ms")


async def refuse_if_used(
    session: AsyncSession, column: InstrumentedAttribute[str | None], row_id: str, what: str
) -> None:
    """Refuse (409) to delete a provider or provider key while models use it."""
    used = int((await session.execute(select(func.count(Model.id)).where(column == row_id))).scalar_one())
    if used:
        raise Conflict(f"{used} model(s) still use this {what}: point them elsewhere or delete them first")
