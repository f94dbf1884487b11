"""The vault opens a provider's header values once per row version, never per request."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from odock.errors import ProviderHeaderUnreadable
from odock.providers.catalog import ProviderTarget
from odock.providers.config import stored_config
from odock.providers.crypto import EnvelopeDecrypter, KeyPair
from odock.providers.vault import ProviderKeyVault


class CountingDecrypter(EnvelopeDecrypter):
    """A decrypter that counts the envelopes it opens."""

    opened = 0

    def open(self, envelope: object) -> str:
        """Open and count (every decryption, from JSON text or a stored mapping, comes here)."""
        self.opened += 1
        return super().open(envelope)


@pytest.fixture
def counting(keypair: KeyPair) -> CountingDecrypter:
    """A counting decrypter for the run's pair."""
    return CountingDecrypter(keypair.key_id, keypair.private_pem)


def _provider(config: dict[str, Any], version: str = "v1") -> ProviderTarget:
    return ProviderTarget("p1", "CUSTOM", "in-house", "http://x/v1", None, True, version, config)


def test_header_values_are_opened_once_per_version(counting: CountingDecrypter) -> None:
    """Repeated calls reuse the plaintext; a new row version is opened afresh."""
    vault = ProviderKeyVault(counting, ttl=60)
    config = stored_config({"headers": {"x-a": "one", "x-b": "two"}}, None, counting)
    for _ in range(5):
        assert vault.reveal_headers(_provider(config)) == {"x-a": "one", "x-b": "two"}
    assert counting.opened == 2  # one per header value, the first time only
    changed = stored_config({"headers": {"x-a": "uno"}}, None, counting)
    assert vault.reveal_headers(_provider(changed, version="v2")) == {"x-a": "uno"}
    assert counting.opened == 3


def test_a_provider_without_headers_needs_no_decryption() -> None:
    """No headers, no work, and no key pair needed."""
    vault = ProviderKeyVault(None, ttl=60)
    assert vault.reveal_headers(_provider({})) == {}
    assert vault.reveal_headers(_provider({"headers": {}})) == {}


def test_legacy_plaintext_values_are_used_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A value stored before encryption is sent as is, with one warning per provider."""
    vault = ProviderKeyVault(None, ttl=60)
    with caplog.at_level("WARNING", logger="odock.providers.vault"):
        assert vault.reveal_headers(_provider({"headers": {"x-a": "one", "x-n": 2}})) == {
            "x-a": "one",
            "x-n": "2",
        }
        assert vault.reveal_headers(_provider({"headers": {"x-a": "one"}}, version="v2")) == {"x-a": "one"}
    warnings = [r for r in caplog.records if "plaintext" in r.getMessage()]
    assert len(warnings) == 1
    assert "one" not in warnings[0].getMessage()


def test_an_envelope_without_a_private_key_is_a_clear_error(decrypter: EnvelopeDecrypter) -> None:
    """A gateway with no pair refuses to call with an encrypted header rather than send it as is."""
    vault = ProviderKeyVault(None, ttl=60)
    config = stored_config({"headers": {"x-a": "one"}}, None, decrypter)
    with pytest.raises(ProviderHeaderUnreadable, match="no private key"):
        vault.reveal_headers(_provider(config))
    assert vault.decrypt_failures == 1


@pytest.mark.parametrize("spoil", ["ciphertext", "keyId", "shape"])
def test_an_undecryptable_value_is_a_clear_error(decrypter: EnvelopeDecrypter, spoil: str) -> None:
    """A tampered envelope, one for another key or a malformed one fails with provider_header_unreadable."""
    envelope = stored_config({"headers": {"x-a": "one"}}, None, decrypter)["headers"]["x-a"]
    if spoil == "ciphertext":
        envelope["ciphertext"] = envelope["ciphertext"][::-1]
    elif spoil == "keyId":
        envelope["keyId"] = "another-pair"
    else:
        envelope = {"nonsense": orjson.dumps(envelope).decode()}
    vault = ProviderKeyVault(decrypter, ttl=60)
    with pytest.raises(ProviderHeaderUnreadable) as caught:
        vault.reveal_headers(_provider({"headers": {"x-a": envelope}}))
    assert caught.value.code == "provider_header_unreadable"
    assert caught.value.status == 502
    assert "in-house" in caught.value.message
    assert vault.decrypt_failures == 1
