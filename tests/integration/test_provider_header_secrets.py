"""A provider's extra header values are encrypted at rest and sent upstream in plaintext.

Driven through a running gateway with the official OpenAI SDK against the fake OpenAI upstream:
the row holds envelopes, the upstream receives the plaintext, warm requests decrypt nothing,
rows from before encryption keep working (and are encrypted when a gateway starts), and a value
that cannot be decrypted fails the request instead of reaching the upstream.
"""

from __future__ import annotations

import secrets
from typing import Any

import openai
import orjson
import pytest
from sqlalchemy import text

from odock.cache.bus import Invalidation
from odock.providers.config import HIDDEN, sealed_config
from odock.providers.crypto import EnvelopeDecrypter, generate_key_pair
from odock.providers.service import ProviderChanges
from odock.providers.tables import Provider
from tests.conftest import Gateway, GatewayFactory, SettingsFactory, Tenant
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.conftest import MESSAGES, assert_error_response, openai_tenant, sdk


def _headered_tenant(gateway: Gateway, fake: FakeOpenAI, secret: str) -> Tenant:
    return openai_tenant(gateway, fake, provider_config={"headers": {"X-Proxy-Key": secret}})


def _chat(gateway: Gateway, tenant: Tenant) -> None:
    sdk(gateway, tenant.secret).chat.completions.create(model=tenant.model, messages=MESSAGES)


def _raw_config(gateway: Gateway, provider_id: str) -> str:
    """The config column as the database holds it (JSON text)."""

    async def load() -> str:
        async with gateway.runtime.sessions() as session:
            query = text("SELECT CAST(config AS TEXT) FROM providers WHERE id = :id")
            return str((await session.execute(query, {"id": provider_id})).scalar_one())

    return gateway.run(load())  # type: ignore[no-any-return]


def _store_directly(gateway: Gateway, tenant: Tenant, config: dict[str, Any]) -> None:
    """Write a provider's config behind the control plane's back (as an older version, or damage, would)."""

    async def write() -> None:
        async with gateway.runtime.sessions() as session:
            provider = await session.get(Provider, tenant.provider_id)
            assert provider is not None
            provider.config = config
            await session.commit()
        await gateway.runtime.bus.publish(
            Invalidation("organisation", organisation_id=tenant.organisation_id)
        )

    gateway.run(write())


def test_upstream_receives_the_plaintext_of_an_encrypted_header(
    openai_gateway: Gateway, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row holds an envelope; the upstream gets the plaintext; warm requests decrypt nothing."""
    secret = f"proxy-{secrets.token_hex(8)}"
    tenant = _headered_tenant(openai_gateway, fake_openai, secret)
    stored = _raw_config(openai_gateway, tenant.provider_id)
    assert secret not in stored
    assert set(orjson.loads(stored)["headers"]["X-Proxy-Key"]) >= {"wrappedKey", "iv", "ciphertext"}

    opened: list[object] = []
    open_envelope = EnvelopeDecrypter.open  # every decryption, from JSON text or a stored mapping

    def counting(self: EnvelopeDecrypter, envelope: object) -> str:
        opened.append(envelope)
        return open_envelope(self, envelope)

    monkeypatch.setattr(EnvelopeDecrypter, "open", counting)
    _chat(openai_gateway, tenant)
    assert fake_openai.last_request().headers["x-proxy-key"] == secret
    assert len(opened) == 2  # the provider key and the header value, once each
    for _ in range(3):
        _chat(openai_gateway, tenant)
        assert fake_openai.last_request().headers["x-proxy-key"] == secret
    assert len(opened) == 2  # steady state: no decryption per request


def test_hidden_value_on_update_keeps_the_header(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """An update that sends the value back hidden keeps sending the stored header; a new one is added."""
    secret = f"proxy-{secrets.token_hex(8)}"
    tenant = _headered_tenant(openai_gateway, fake_openai, secret)
    _chat(openai_gateway, tenant)
    changes = ProviderChanges(config={"headers": {"X-Proxy-Key": HIDDEN, "X-Org": "org-7"}})
    openai_gateway.run(openai_gateway.runtime.control.providers.update(tenant.provider_id, changes))
    _chat(openai_gateway, tenant)
    sent = fake_openai.last_request().headers
    assert (sent["x-proxy-key"], sent["x-org"]) == (secret, "org-7")
    assert secret not in _raw_config(openai_gateway, tenant.provider_id)


def test_legacy_plaintext_header_still_works(openai_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """A header value stored in plaintext by an older version is still sent upstream."""
    tenant = openai_tenant(openai_gateway, fake_openai)
    _store_directly(openai_gateway, tenant, {"headers": {"X-Proxy-Key": "legacy-value"}})
    _chat(openai_gateway, tenant)
    assert fake_openai.last_request().headers["x-proxy-key"] == "legacy-value"


@pytest.mark.parametrize("damage", ["tampered", "another pair"])
def test_undecryptable_header_is_a_clear_error_and_nothing_is_sent(
    openai_gateway: Gateway, fake_openai: FakeOpenAI, damage: str
) -> None:
    """A header value this gateway cannot decrypt fails the call with 502 provider_header_unreadable."""
    tenant = openai_tenant(openai_gateway, fake_openai)
    if damage == "tampered":
        decrypter = openai_gateway.runtime.vault.decrypter
        assert decrypter is not None
        config = sealed_config({"headers": {"X-Proxy-Key": "value"}}, decrypter)
        envelope = config["headers"]["X-Proxy-Key"]
        envelope["ciphertext"] = envelope["ciphertext"][::-1]
    else:
        pair = generate_key_pair("another-gateway", bits=2048)
        config = sealed_config(
            {"headers": {"X-Proxy-Key": "value"}}, EnvelopeDecrypter(pair.key_id, pair.private_pem)
        )
    _store_directly(openai_gateway, tenant, config)
    with pytest.raises(openai.InternalServerError) as caught:
        _chat(openai_gateway, tenant)
    error = assert_error_response(caught.value, status=502, code="provider_header_unreadable")
    assert "cannot be decrypted" in error["message"]
    assert fake_openai.requests == []


def test_gateway_start_encrypts_legacy_plaintext_headers(
    gateway_factory: GatewayFactory, keyed_settings: SettingsFactory, fake_openai: FakeOpenAI
) -> None:
    """A gateway starting on a database with plaintext header values encrypts them; calls still carry them."""
    settings = keyed_settings()
    first = gateway_factory(settings)
    tenant = openai_tenant(first, fake_openai)
    _store_directly(first, tenant, {"headers": {"X-Proxy-Key": "legacy-value"}, "api_version": "v1"})
    assert "legacy-value" in _raw_config(first, tenant.provider_id)

    second = gateway_factory(settings)  # a restart, or another replica starting
    stored = _raw_config(second, tenant.provider_id)
    assert "legacy-value" not in stored
    assert orjson.loads(stored)["api_version"] == "v1"
    _chat(second, tenant)
    assert fake_openai.last_request().headers["x-proxy-key"] == "legacy-value"
