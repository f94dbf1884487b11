"""The keys of a provider: stored encrypted (spec §3.6), replaced, revoked, deleted, found and listed.

A key arrives either as plaintext, encrypted at once with the gateway's pair, or as an envelope a
browser made with the public half, stored as sent once the gateway has opened it. Nothing here
returns a secret; the preview is computed from the plaintext. Deleting a key a model uses is
refused (409). Every change commits, then publishes the organisation's invalidation.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.keyset import KeysetPage, fetch_rows, keyset
from odock.db.rows import commit_or_conflict, get_row, one_or_missing
from odock.db.search import matches
from odock.errors import UnprocessableEntity
from odock.ids import new_id
from odock.keys.secrets import preview
from odock.providers.crypto import EnvelopeDecrypter, EnvelopeError, is_envelope
from odock.providers.service import refuse_if_used
from odock.providers.tables import Model, Provider, ProviderApiKey
from odock.rules import valid_name


@dataclass(frozen=True)
class ProviderKeyFilters:
    """The filters of a provider's key list."""

    q: str | None = None
    revoked: bool | None = None


class ProviderKeyService:
    """Store, replace, revoke, delete, find and list provider keys."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: InvalidationBus,
        decrypter: EnvelopeDecrypter | None,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._decrypter = decrypter

    async def add(
        self, provider_id: str, name: str, *, secret: str | None = None, envelope: str | None = None
    ) -> ProviderApiKey:
        """Store a provider key: a browser-made envelope as is, or plaintext encrypted at once."""
        if (secret is None) == (envelope is None):
            raise UnprocessableEntity("give exactly one of a plaintext secret or an encrypted envelope")
        if envelope is not None:
            plain, stored = self._opened(envelope), envelope
        else:
            assert secret is not None
            plain = _plain(secret)
            stored = self._encrypter().encrypt(plain)
        async with self._sessions() as session:
            provider = await get_row(session, Provider, provider_id)
            key = ProviderApiKey(
                id=new_id(),
                provider_id=provider.id,
                organisation_id=provider.organisation_id,
                name=valid_name(name),
                key=stored,
                key_preview=preview(plain),
            )
            session.add(key)
            await commit_or_conflict(session, f"provider key '{name}' already exists")
        await self._changed(provider.organisation_id)
        return key

    async def replace_secret(self, provider_key_id: str, secret: str) -> ProviderApiKey:
        """Store a new secret under an existing provider key (re-encrypted; models keep using it)."""
        plain = _plain(secret)
        stored = self._encrypter().encrypt(plain)
        async with self._sessions() as session:
            key = await get_row(session, ProviderApiKey, provider_key_id)
            key.key = stored
            key.key_preview = preview(plain)
            # The vault caches plaintext by row version: a new timestamp retires the old plaintext.
            key.updated_at = datetime.now(UTC)
            await session.commit()
        await self._changed(key.organisation_id)
        return key

    async def revoke(self, provider_key_id: str) -> ProviderApiKey:
        """Revoke a provider key (models using it are refused with provider_api_key_revoked)."""
        async with self._sessions() as session:
            key = await get_row(session, ProviderApiKey, provider_key_id)
            key.revoked = True
            key.updated_at = datetime.now(UTC)
            await session.commit()
        await self._changed(key.organisation_id)
        return key

    async def delete(self, provider_key_id: str) -> None:
        """Delete a provider key no model uses."""
        async with self._sessions() as session:
            key = await get_row(session, ProviderApiKey, provider_key_id)
            await refuse_if_used(session, Model.provider_api_key_id, provider_key_id, "provider key")
            await session.delete(key)
            await session.commit()
        await self._changed(key.organisation_id)

    async def get(self, provider_key_id: str) -> ProviderApiKey:
        """One provider key by id (404 when absent)."""
        async with self._sessions() as session:
            return await get_row(session, ProviderApiKey, provider_key_id)

    async def of_provider(self, provider_id: str, provider_key_id: str) -> ProviderApiKey | None:
        """The key with this id if it belongs to this provider (``None`` otherwise)."""
        async with self._sessions() as session:
            key = await session.get(ProviderApiKey, provider_key_id)
        return key if key is not None and key.provider_id == provider_id else None

    async def named(self, provider_id: str, name: str) -> ProviderApiKey:
        """A provider's key by name (404 when absent)."""
        query = select(ProviderApiKey).where(
            ProviderApiKey.provider_id == provider_id, ProviderApiKey.name == name
        )
        return await one_or_missing(self._sessions, query, f"provider key '{name}' does not exist")

    async def listed(self, provider_id: str) -> Sequence[ProviderApiKey]:
        """The keys stored for a provider, by name."""
        query = select(ProviderApiKey).where(ProviderApiKey.provider_id == provider_id)
        return await fetch_rows(self._sessions, query.order_by(ProviderApiKey.name))

    async def page(
        self, provider_id: str, filters: ProviderKeyFilters, page: KeysetPage
    ) -> Sequence[ProviderApiKey]:
        """One keyset page of a provider's keys, by creation time."""
        query = select(ProviderApiKey).where(ProviderApiKey.provider_id == provider_id)
        if filters.q:
            query = query.where(matches(filters.q, ProviderApiKey.name))
        if filters.revoked is not None:
            query = query.where(ProviderApiKey.revoked == filters.revoked)
        statement = keyset(query, ProviderApiKey.created_at, ProviderApiKey.id, page)
        return await fetch_rows(self._sessions, statement)

    def holds(self, key: ProviderApiKey, secret: str) -> bool:
        """True when the stored key opens to ``secret`` (False when this gateway cannot open it)."""
        if not is_envelope(key.key):
            return key.key == secret.strip()
        if self._decrypter is None:
            return False
        try:
            return hmac.compare_digest(self._decrypter.decrypt(key.key), secret.strip())
        except EnvelopeError:
            return False

    def _opened(self, envelope: str) -> str:
        if not is_envelope(envelope):
            raise UnprocessableEntity("envelope must be the JSON envelope of spec §3.6", param="envelope")
        try:
            return self._encrypter().decrypt(envelope)
        except (EnvelopeError, UnicodeDecodeError) as exc:  # a secret is text: bytes that are not fail
            raise UnprocessableEntity(
                f"envelope cannot be opened by this gateway: {exc}", param="envelope"
            ) from exc

    def _encrypter(self) -> EnvelopeDecrypter:
        if self._decrypter is None:
            raise UnprocessableEntity(
                "no provider-key encryption pair is configured; provider keys are never stored in plaintext"
            )
        return self._decrypter

    async def _changed(self, organisation_id: str) -> None:
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))


def _plain(secret: str) -> str:
    plain = secret.strip()
    if not plain:
        raise UnprocessableEntity("provider key must not be empty", param="secret")
    return plain
