"""Decrypts provider secrets just before use and keeps the plaintext in memory for a short while.

Two kinds of secret, each decrypted once per row version, never per request:

* a provider key, cached by (provider-key id, row version);
* a provider's ``config.headers`` values, cached together by (provider id, row version).

A re-saved row has a new version, so it is decrypted afresh. Legacy plaintext rows are accepted
(and logged once) so operators can migrate; a value that cannot be decrypted fails the request
with a clear error instead of sending garbage upstream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType

from odock.cache.local import TtlCache
from odock.errors import ProviderApiKeyUnreadable, ProviderHeaderUnreadable
from odock.providers.catalog import ProviderKeyRef, ProviderTarget
from odock.providers.config import HEADERS, is_sealed, open_header
from odock.providers.crypto import EnvelopeDecrypter, EnvelopeError, is_envelope

log = logging.getLogger(__name__)

NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class ProviderKeyVault:
    """Opens provider-key and provider-header envelopes, caching plaintext in memory only."""

    def __init__(
        self,
        decrypter: EnvelopeDecrypter | None,
        ttl: float,
        max_entries: int = 10_000,
        *,
        on_decrypt: Callable[[], None] | None = None,
    ) -> None:
        self._decrypter = decrypter
        self._on_decrypt = on_decrypt  # told of every provider key decrypted (the metrics count them)
        self._ttl = ttl
        self._cache: TtlCache[tuple[str, str], str] = TtlCache(max_entries)
        self._headers: TtlCache[tuple[str, str], Mapping[str, str]] = TtlCache(max_entries)
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
            if self._on_decrypt is not None:
                self._on_decrypt()
        self._cache.set(cache_key, plain, self._ttl)
        return plain

    def reveal_headers(self, provider: ProviderTarget) -> Mapping[str, str]:
        """The provider's extra headers with plaintext values (empty when it has none)."""
        stored = provider.config.get(HEADERS)
        if not stored:
            return NO_HEADERS
        cache_key = (provider.id, provider.version)
        cached = self._headers.get(cache_key)
        if cached is not None:
            return cached
        if not isinstance(stored, Mapping):
            raise ProviderHeaderUnreadable(f"provider '{provider.name}' has config.headers that is no object")
        opened = MappingProxyType({str(n): self._open_header(provider, str(n), v) for n, v in stored.items()})
        self._headers.set(cache_key, opened, self._ttl)
        return opened

    def _open_header(self, provider: ProviderTarget, name: str, stored: object) -> str:
        if not is_sealed(stored):
            if provider.id not in self._warned_plaintext:
                self._warned_plaintext.add(provider.id)
                log.warning(
                    "provider %s has header values stored in plaintext; "
                    "they are encrypted at the next save of its config or the next start with a key pair",
                    provider.id,
                )
            return str(stored)
        # The caller learns which provider is misconfigured; the header's name goes to the log only.
        unreadable = f"a header value of provider '{provider.name}' cannot be decrypted"
        if self._decrypter is None:
            self.decrypt_failures += 1
            raise ProviderHeaderUnreadable(f"{unreadable}: no private key is configured")
        try:
            return open_header(stored, self._decrypter)
        except EnvelopeError as exc:
            self.decrypt_failures += 1
            log.error("header %r of provider %s cannot be decrypted: %s", name, provider.id, exc)
            raise ProviderHeaderUnreadable(f"{unreadable} by this gateway") from exc
