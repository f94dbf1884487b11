"""Integration fixtures: a fake OpenAI upstream, gateways that can store provider keys, helpers.

Provider keys are stored encrypted, so the gateway needs an encryption pair. The embedded
backend makes one in its data directory; the production backend has none unless configured,
so :func:`keyed_settings` supplies one pair (made once per run) on both backends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from odock.providers.crypto import KeyPair, generate_key_pair
from odock.providers.tables import ProviderType
from odock.usage.store import UsageStore
from odock.usage.tables import UsageRecord
from tests.conftest import Gateway, GatewayFactory, SettingsFactory, Tenant, provision
from tests.fakes.openai_server import FakeOpenAI, running_fake_openai

UPSTREAM_KEY = "sk-fake-upstream"


@pytest.fixture(scope="session")
def provider_keypair() -> KeyPair:
    """One provider-key encryption pair for the whole run (RSA generation is slow)."""
    return generate_key_pair("odock-test-pair", bits=2048)


@pytest.fixture
def keyed_settings(make_settings: SettingsFactory, provider_keypair: KeyPair) -> SettingsFactory:
    """``make_settings`` with a provider-key encryption pair, so provider keys can be stored."""

    def make(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "provider_key_encryption_key_id": provider_keypair.key_id,
            "provider_key_encryption_private_key": provider_keypair.private_pem,
        }
        values.update(overrides)
        return make_settings(**values)

    return make


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fake OpenAI server on a free local port that expects the key ``sk-fake-upstream``."""
    with running_fake_openai(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture
def openai_gateway(gateway_factory: GatewayFactory, keyed_settings: SettingsFactory) -> Gateway:
    """A gateway on the active backend that can store provider keys."""
    return gateway_factory(keyed_settings())


def openai_tenant(gateway: Gateway, fake: FakeOpenAI, **options: Any) -> Tenant:
    """A tenant whose OPENAI provider is the fake server, with the upstream key stored encrypted."""
    values: dict[str, Any] = {
        "provider_type": ProviderType.OPENAI,
        "base_url": fake.base_url + "/v1",
        "provider_secret": UPSTREAM_KEY,
    }
    values.update(options)
    return provision(gateway, **values)


def sdk(gateway: Gateway, api_key: str, **options: Any) -> openai.OpenAI:
    """The official OpenAI client pointed at the gateway, with retries off."""
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=api_key, max_retries=0, **options)


def usage_records(
    gateway: Gateway, request_id: str, *, count: int = 1, timeout: float = 10.0
) -> list[UsageRecord]:
    """The usage records of ``request_id`` once ``count`` exist (flushing as it polls)."""
    store = UsageStore(gateway.runtime.sessions)
    deadline = time.monotonic() + timeout
    while True:
        gateway.flush_usage()
        records: list[UsageRecord] = gateway.run(store.by_request_id(request_id))
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.02)


def only_usage_record(gateway: Gateway, request_id: str) -> UsageRecord:
    """The single usage record of ``request_id`` (fails on none or several)."""
    records = usage_records(gateway, request_id)
    assert len(records) == 1, f"expected one usage record for {request_id}, found {len(records)}"
    return records[0]


MESSAGES: list[Any] = [{"role": "user", "content": "Say hello."}]
ERROR_FIELDS = {"code", "message", "type", "param"}


def assert_error_response(error: openai.APIStatusError, *, status: int, code: str) -> dict[str, Any]:
    """Check that an SDK error came from Odock's JSON error body; return that body's error object."""
    assert error.status_code == status
    assert error.code == code
    assert error.response.headers["content-type"] == "application/json"
    body = error.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_FIELDS
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return dict(body["error"])
