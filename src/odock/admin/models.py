"""Model references (provider and provider key of the model's organisation) and model deletion.

A model may name a provider and a provider key; both must be the organisation's own, and the
key must belong to the provider. An unknown id and another organisation's id get the same 422,
so nothing about other organisations leaks. Deleting a model deletes its API-key grants too.
"""

from __future__ import annotations

import enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.rows import get_row
from odock.cache.bus import Invalidation, InvalidationBus
from odock.errors import UnprocessableEntity
from odock.keys.tables import ApiKeyModelAccess
from odock.providers.tables import Model, Provider, ProviderApiKey


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


class ModelAdmin:
    """Checks and deletions of models."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: InvalidationBus) -> None:
        self._sessions = sessions
        self._bus = bus

    async def check_references(
        self, organisation_id: str, provider_id: str | None, provider_key_id: str | None
    ) -> None:
        """Refuse a provider or provider key outside the organisation, or a key of another provider."""
        async with self._sessions() as session:
            if provider_id is not None:
                provider = await session.get(Provider, provider_id)
                if provider is None or provider.organisation_id != organisation_id:
                    raise UnprocessableEntity("no such provider in this organisation", param="provider_id")
            if provider_key_id is not None:
                key = await session.get(ProviderApiKey, provider_key_id)
                if key is None or key.organisation_id != organisation_id:
                    raise UnprocessableEntity(
                        "no such provider key in this organisation", param="provider_key_id"
                    )
                if key.provider_id != provider_id:
                    raise UnprocessableEntity(
                        "the provider key belongs to another provider", param="provider_key_id"
                    )

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
        # Keys that held a grant cache it: the organisation's key and model entries are dropped.
        await self._bus.publish(Invalidation("organisation", organisation_id=model.organisation_id))
