"""Fixtures for provider tests: one encryption pair per run (RSA generation is slow)."""

from __future__ import annotations

import pytest

from odock.providers.crypto import EnvelopeDecrypter, KeyPair, generate_key_pair


@pytest.fixture(scope="session")
def keypair() -> KeyPair:
    """The run's provider-secret encryption pair."""
    return generate_key_pair("providers-unit-pair", bits=2048)


@pytest.fixture
def decrypter(keypair: KeyPair) -> EnvelopeDecrypter:
    """The gateway side of the pair: encrypts and decrypts."""
    return EnvelopeDecrypter(keypair.key_id, keypair.private_pem)
