"""Tables of upstream configuration: providers, their encrypted keys, and models."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from odock.db.base import Base, IdType, JsonType, utcnow


class ProviderType(enum.StrEnum):
    """The upstream API family a provider speaks."""

    OPENAI = "OPENAI"
    AZURE_OPENAI = "AZURE_OPENAI"
    VLLM = "VLLM"
    CUSTOM = "CUSTOM"
    ANTHROPIC = "ANTHROPIC"
    GOOGLE = "GOOGLE"
    MISTRAL = "MISTRAL"
    HUGGINGFACE = "HUGGINGFACE"
    MOCK = "MOCK"


class Provider(Base):
    """An upstream provider configured for an organisation (base URL, timeout, switch)."""

    __tablename__ = "providers"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    type: Mapped[ProviderType] = mapped_column(Enum(ProviderType, native_enum=False, length=20))
    name: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str | None] = mapped_column(String(2000))
    timeout_ms: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProviderApiKey(Base):
    """A provider credential, stored as an encryption envelope (spec §3.6)."""

    __tablename__ = "provider_api_keys"
    __table_args__ = (UniqueConstraint("provider_id", "name"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"), index=True)
    organisation_id: Mapped[str] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(Text)
    key_preview: Mapped[str] = mapped_column(String(40))
    revoked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Model(Base):
    """A model clients call by ``name``; forwarded upstream as ``slug``."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(40), default="chat")
    capabilities: Mapped[list[str]] = mapped_column(JsonType, default=list)
    provider_id: Mapped[str | None] = mapped_column(
        ForeignKey("providers.id", ondelete="SET NULL"), index=True
    )
    provider_api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("provider_api_keys.id", ondelete="SET NULL"), index=True
    )
    config: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    pricing: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    policies: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
