"""Provider header values through every writer: encrypted on create and update, and at start for old rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.cache.bus import Invalidation, LocalInvalidationBus
from odock.errors import Conflict, UnprocessableEntity
from odock.providers.config import HIDDEN, open_header
from odock.providers.crypto import EnvelopeDecrypter, KeyPair
from odock.providers.service import ProviderChanges, ProviderService
from odock.providers.tables import Provider, ProviderType

SECRET = "proxy-token-7d41"


def _opened(provider: Provider, keypair: KeyPair) -> dict[str, str]:
    decrypter = EnvelopeDecrypter(keypair.key_id, keypair.private_pem)
    return {name: open_header(value, decrypter) for name, value in provider.config["headers"].items()}


async def _raw_config(sessions: async_sessionmaker[AsyncSession], provider_id: str) -> str:
    """The config column as the database holds it."""
    async with sessions() as session:
        query = text("SELECT CAST(config AS TEXT) FROM providers WHERE id = :id")
        return str((await session.execute(query, {"id": provider_id})).scalar_one())


async def _store_legacy(sessions: async_sessionmaker[AsyncSession], provider_id: str, config: Any) -> None:
    """Write a config as versions before encryption did: header values in plaintext."""
    async with sessions() as session:
        provider = await session.get(Provider, provider_id)
        assert provider is not None
        provider.config = config
        await session.commit()


async def test_every_writer_stores_header_values_encrypted(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession], keypair: KeyPair
) -> None:
    """create_provider, update_provider, activation and the API update all store envelopes."""
    org = await control.tenancy.create_organisation("acme")
    created = await control.providers.create(
        org.id, "p", ProviderType.CUSTOM, config={"headers": {"x-a": SECRET}}
    )
    updated = await control.providers.update(
        created.id, ProviderChanges(config={"headers": {"x-a": HIDDEN, "x-b": "b2"}})
    )
    activated = await control.providers.activate(
        org.id, ProviderType.VLLM, config={"headers": {"x-c": SECRET + "c"}}
    )
    changed = await control.providers.update(
        activated.id, ProviderChanges(config={"headers": {"x-c": HIDDEN, "x-d": SECRET + "d"}})
    )
    assert _opened(created, keypair) == {"x-a": SECRET}
    assert _opened(updated, keypair) == {"x-a": SECRET, "x-b": "b2"}
    assert updated.config["headers"]["x-a"] == created.config["headers"]["x-a"]
    assert _opened(changed, keypair) == {"x-c": SECRET + "c", "x-d": SECRET + "d"}
    for provider in (created, activated):
        assert SECRET not in await _raw_config(sessions, provider.id)


async def test_without_a_pair_header_values_are_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """With no encryption pair, header values are refused (as provider keys are), providers are not."""
    control = ControlPlane(sessions, LocalInvalidationBus(), None)
    org = await control.tenancy.create_organisation("acme")
    with pytest.raises(UnprocessableEntity, match="never stored in plaintext"):
        await control.providers.create(org.id, "p", ProviderType.CUSTOM, config={"headers": {"x-a": "1"}})
    with pytest.raises(UnprocessableEntity, match="never stored in plaintext"):
        await control.providers.activate(org.id, ProviderType.VLLM, config={"headers": {"x-a": "1"}})
    provider = await control.providers.create(org.id, "p", ProviderType.CUSTOM, config={"timeout": 1})
    with pytest.raises(UnprocessableEntity, match="never stored in plaintext"):
        await control.providers.update(provider.id, ProviderChanges(config={"headers": {"x-a": "1"}}))
    assert await control.providers.encrypt_plaintext_headers() == 0


async def test_startup_encrypts_legacy_plaintext_header_values(
    control: ControlPlane,
    sessions: async_sessionmaker[AsyncSession],
    keypair: KeyPair,
    published: list[Invalidation],
) -> None:
    """Plaintext values left by older versions are encrypted once, and the organisation's caches told."""
    org = await control.tenancy.create_organisation("acme")
    legacy = await control.providers.create(org.id, "legacy", ProviderType.CUSTOM)
    sealed = await control.providers.create(
        org.id, "sealed", ProviderType.CUSTOM, config={"headers": {"x-a": "a"}}
    )
    plain = await control.providers.create(
        org.id, "plain", ProviderType.MOCK, config={"completion_tokens": 3}
    )
    await _store_legacy(sessions, legacy.id, {"headers": {"x-proxy-key": SECRET, "x-n": 2}, "timeout": 1})
    assert SECRET in await _raw_config(sessions, legacy.id)
    published.clear()

    assert await control.providers.encrypt_plaintext_headers() == 1
    assert SECRET not in await _raw_config(sessions, legacy.id)
    reloaded = await control.providers.named(org.id, "legacy")
    assert _opened(reloaded, keypair) == {"x-proxy-key": SECRET, "x-n": "2"}
    assert reloaded.config["timeout"] == 1
    assert (await control.providers.named(org.id, "sealed")).config == sealed.config
    assert (await control.providers.named(org.id, "plain")).config == plain.config
    assert published == [Invalidation("organisation", organisation_id=org.id)]
    assert await control.providers.encrypt_plaintext_headers() == 0  # once only


async def test_startup_encryption_leaves_a_row_changed_meanwhile_alone(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession], keypair: KeyPair
) -> None:
    """A provider saved between the startup pass's read and its write keeps the newly saved config."""
    org = await control.tenancy.create_organisation("acme")
    provider = await control.providers.create(org.id, "p", ProviderType.CUSTOM)
    await _store_legacy(sessions, provider.id, {"headers": {"x-a": SECRET}})
    opened = 0

    @asynccontextmanager
    async def racing_sessions() -> AsyncIterator[AsyncSession]:
        nonlocal opened
        opened += 1
        if opened == 2:  # after the read, before the write: an administrator saves the provider
            await control.providers.update(provider.id, ProviderChanges(config={"headers": {"x-a": "new"}}))
        async with sessions() as session:
            yield session

    decrypter = EnvelopeDecrypter(keypair.key_id, keypair.private_pem)
    racing = ProviderService(racing_sessions, LocalInvalidationBus(), decrypter)  # type: ignore[arg-type]
    assert await racing.encrypt_plaintext_headers() == 0
    assert _opened(await control.providers.named(org.id, "p"), keypair) == {"x-a": "new"}


async def test_a_legacy_value_sent_back_hidden_is_encrypted_on_save(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession], keypair: KeyPair
) -> None:
    """The next save of a legacy config keeps the hidden value, now encrypted."""
    org = await control.tenancy.create_organisation("acme")
    provider = await control.providers.create(org.id, "p", ProviderType.CUSTOM)
    await _store_legacy(sessions, provider.id, {"headers": {"x-a": SECRET}})
    saved = await control.providers.update(provider.id, ProviderChanges(config={"headers": {"x-a": HIDDEN}}))
    assert _opened(saved, keypair) == {"x-a": SECRET}
    assert SECRET not in await _raw_config(sessions, provider.id)


async def test_several_providers_of_one_type_are_activated_by_name(control: ControlPlane) -> None:
    """A second Azure provider needs its own name; the catalogue shows the first one activated."""
    org = await control.tenancy.create_organisation("acme")
    east = await control.providers.activate(
        org.id, ProviderType.AZURE_OPENAI, name="east", base_url="https://east.openai.azure.com"
    )
    await control.providers.activate(
        org.id, ProviderType.AZURE_OPENAI, name="west", base_url="https://west.openai.azure.com"
    )
    with pytest.raises(Conflict, match="a provider named 'east' already exists"):
        await control.providers.activate(
            org.id, ProviderType.AZURE_OPENAI, name="east", base_url="https://x.openai.azure.com"
        )
    with pytest.raises(UnprocessableEntity) as template:
        await control.providers.activate(org.id, ProviderType.AZURE_OPENAI, name="north")
    assert template.value.param == "base_url"
    catalogue = {item.info.type: item.provider for item in await control.providers.catalogue(org.id)}
    assert catalogue[ProviderType.AZURE_OPENAI] is not None
    assert catalogue[ProviderType.AZURE_OPENAI].id == east.id
    assert catalogue[ProviderType.OPENAI] is None


def test_changes_from_fields_set_only_what_is_given() -> None:
    """ProviderChanges.of clears a given base URL or timeout, keeps absent ones, refuses unknown fields."""
    cleared = ProviderChanges.of({"base_url": None})
    assert (cleared.set_base_url, cleared.base_url, cleared.set_timeout_ms) == (True, None, False)
    with pytest.raises(UnprocessableEntity, match="unknown provider fields: colour"):
        ProviderChanges.of({"colour": "red"})
