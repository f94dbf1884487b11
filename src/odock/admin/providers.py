"""Activating providers from the catalogue, and deleting providers and provider keys.

Activation creates an organisation's one provider of a type (spec §3.5: unique per organisation
and type), filling the base URL and name from :mod:`odock.providers.provider_types`. Deleting a
provider or a provider key is refused (409) while models still use it, so no model silently
loses its upstream; a provider's keys are deleted with it. The values of a provider's
``config.headers`` are stored encrypted (:mod:`odock.providers.config`); at startup,
:meth:`ProviderAdmin.encrypt_plaintext_headers` encrypts values that older versions stored in
plaintext.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from odock.admin.rows import commit_or_conflict, get_row
from odock.admin.rules import valid_name
from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.base import utcnow
from odock.errors import Conflict, UnprocessableEntity
from odock.ids import new_id
from odock.providers.config import holds_plaintext, sealed_config, stored_config
from odock.providers.crypto import EnvelopeDecrypter
from odock.providers.provider_types import describe
from odock.providers.tables import Model, Provider, ProviderApiKey, ProviderType
from odock.tenancy.tables import Organisation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderChanges:
    """What a provider update changes: ``None`` keeps a field, except where ``set_*`` says to clear it."""

    name: str | None = None
    config: dict[str, Any] | None = None
    enabled: bool | None = None
    base_url: str | None = None
    set_base_url: bool = False
    timeout_ms: int | None = None
    set_timeout_ms: bool = False


class ProviderAdmin:
    """Provider activation and deletion."""

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
        """Create the organisation's provider of ``type`` (409 when it already has one)."""
        info = describe(type)
        if base_url is None and info.base_url_required:
            raise UnprocessableEntity(
                f"{info.label} needs its own base URL (the default {info.default_base_url} is a template)",
                param="base_url",
            )
        async with self._sessions() as session:
            await get_row(session, Organisation, organisation_id)
            existing = await session.execute(
                select(Provider.id).where(Provider.organisation_id == organisation_id, Provider.type == type)
            )
            if existing.first() is not None:
                raise Conflict(f"this organisation already has a {info.label} provider; configure that one")
            provider = Provider(
                id=new_id(),
                organisation_id=organisation_id,
                type=type,
                name=valid_name(name if name is not None else info.label),
                base_url=base_url if base_url is not None else info.default_base_url,
                timeout_ms=timeout_ms,
                config=stored_config(config or {}, None, self._encrypter),
                enabled=enabled,
            )
            session.add(provider)
            await commit_or_conflict(session, f"a provider named '{provider.name}' already exists")
        await self._changed(organisation_id)
        return provider

    async def update(self, provider_id: str, changes: ProviderChanges) -> Provider:
        """Rename, or change the base URL, timeout, config or switch, in one transaction."""
        async with self._sessions() as session:
            provider = await get_row(session, Provider, provider_id)
            if changes.name is not None:
                provider.name = valid_name(changes.name)
            if changes.config is not None:
                provider.config = stored_config(changes.config, provider.config, self._encrypter)
            if changes.enabled is not None:
                provider.enabled = changes.enabled
            if changes.set_base_url:
                provider.base_url = changes.base_url
            if changes.set_timeout_ms:
                if changes.timeout_ms is not None and changes.timeout_ms <= 0:
                    raise UnprocessableEntity("timeout_ms must be positive", param="timeout_ms")
                provider.timeout_ms = changes.timeout_ms
            await commit_or_conflict(session, f"a provider named '{changes.name}' already exists")
        await self._changed(provider.organisation_id)
        return provider

    async def delete(self, provider_id: str) -> None:
        """Delete a provider no model uses, with its keys."""
        async with self._sessions() as session:
            provider = await get_row(session, Provider, provider_id)
            await _refuse_if_used(session, Model.provider_id, provider_id, "provider")
            keys = select(ProviderApiKey).where(ProviderApiKey.provider_id == provider_id)
            for key in (await session.execute(keys)).scalars():
                await session.delete(key)
            await session.flush()
            await session.delete(provider)
            await session.commit()
        await self._changed(provider.organisation_id)

    async def delete_key(self, provider_key_id: str) -> None:
        """Delete a provider key no model uses."""
        async with self._sessions() as session:
            key = await get_row(session, ProviderApiKey, provider_key_id)
            await _refuse_if_used(session, Model.provider_api_key_id, provider_key_id, "provider key")
            await session.delete(key)
            await session.commit()
        await self._changed(key.organisation_id)

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
            async with self._sessions() as session:
                done = await session.execute(
                    update(Provider)
                    .where(Provider.id == provider_id, Provider.updated_at == updated_at)
                    .values(config=sealed_config(config, self._encrypter), updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
            if done.rowcount:  # type: ignore[attr-defined]
                encrypted += 1
                organisations.add(organisation_id)
                log.info("provider %s: its header values stored in plaintext are now encrypted", provider_id)
        for organisation_id in organisations:
            await self._changed(organisation_id)
        return encrypted

    async def _changed(self, organisation_id: str) -> None:
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))


async def _refuse_if_used(
    session: AsyncSession, column: InstrumentedAttribute[str | None], row_id: str, what: str
) -> None:
    used = int((await session.execute(select(func.count(Model.id)).where(column == row_id))).scalar_one())
    if used:
        raise Conflict(f"{used} model(s) still use this {what}: point them elsewhere or delete them first")
