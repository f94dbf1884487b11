"""Decrypts provider keys just before use and keeps the plaintext in memory for a short while.

The cache is keyed by (provider-key id, row version, envelope key id), so a re-saved key is
decrypted afresh. Legacy plaintext rows are accepted (and logged once) so operators can migrate.
"""

from __future__ import annotations

import logging

from odock.cache.local import TtlCache
from odock.errors import ProviderApiKeyUnreadable
from odock.providers.catalog import ProviderKeyRef
from odock.providers.crypto import EnvelopeDecrypter, EnvelopeError, is_envelope

log = logging.getLogger(__name__)


class ProviderKeyVault:
    """Opens provider-key envelopes, caching plaintext in memory only."""

    def __init__(self, decrypter: EnvelopeDecrypter | None, ttl: float, max_entries: int = 10_000) -> None:
        self._decrypter = decrypter
        self._ttl = ttl
        self._cache: TtlCache[tuple[str, str], str] = TtlCache(max_entries)
        self._warned_plaintext: set[str] = set()
        self.decrypt_failures = 0

    @property
    def decrypter(self) -> EnvelopeDecrypter | None:
        """The configured decrypter (None when no key pair is configured)."""
        return self._decrypter

    def reveal(self, ref: ProviderKeyRef) -> str:
        """The plaintext provider key."""
        cache_key = (ref.id, ref.version)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        if not is_envelope(ref.stored):
            if ref.id not in self._warned_plaintext:
                self._warned_plaintext.add(ref.id)
                log.warning("provider key %s is stored in plaintext; re-save it to encrypt it", ref.id)
            plain = ref.stored
        else:
            if self._decrypter is None:
                self.decrypt_failures += 1
                raise ProviderApiKeyUnreadable(
                    "an encrypted provider key exists but no private key is configured"
                )
            try:
                plain = self._decrypter.decrypt(ref.stored)
            except EnvelopeError as exc:
                self.decrypt_failures += 1
                log.error("provider key %s cannot be decrypted: %s", ref.id, exc)
                raise ProviderApiKeyUnreadable() from exc
        self._cache.set(cache_key, plain, self._ttl)
        return plain
