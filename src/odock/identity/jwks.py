"""An OpenID Connect provider's signing keys (its JWKS), cached, with key rotation handled.

Keys are fetched on first use and kept for :data:`JWKS_TTL_SECONDS`. A provider rotating its key
signs new ID tokens with a ``kid`` the cached set lacks: such a token triggers one refetch, at
most once per :data:`UNKNOWN_KID_REFETCH_SECONDS`, so tokens forged with made-up ``kid`` values
cannot make every sign-in call the provider.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from odock.errors import SignInFailed

JWKS_TTL_SECONDS = 3600.0
UNKNOWN_KID_REFETCH_SECONDS = 60.0

FetchJson = Callable[[str], Awaitable[Any]]
"""Fetches a URL's JSON document (the caller's HTTP session, its errors translated)."""


class JwksCache:
    """The signing keys of one provider, refreshed after a TTL or when a token names a new key."""

    def __init__(
        self,
        *,
        ttl_seconds: float = JWKS_TTL_SECONDS,
        refetch_seconds: float = UNKNOWN_KID_REFETCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._refetch = refetch_seconds
        self._clock = clock
        self._keys: KeySet | None = None
        self._uri: str | None = None
        self._fetched_at = 0.0
        self._refetched_at: float | None = None

    async def keys_for(self, id_token: str, jwks_uri: str, fetch: FetchJson) -> KeySet:
        """The key set to verify ``id_token`` with, fetched from ``jwks_uri`` when due."""
        now = self._clock()
        if self._keys is None or self._uri != jwks_uri or now - self._fetched_at >= self._ttl:
            return await self._load(jwks_uri, fetch, now)
        kid = token_kid(id_token)
        if kid is not None and not _holds(self._keys, kid) and self._may_refetch(now):
            self._refetched_at = now
            return await self._load(jwks_uri, fetch, now)
        return self._keys

    def _may_refetch(self, now: float) -> bool:
        return self._refetched_at is None or now - self._refetched_at >= self._refetch

    async def _load(self, jwks_uri: str, fetch: FetchJson, now: float) -> KeySet:
        document = await fetch(jwks_uri)
        try:
            keys = KeySet.import_key_set(document)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise SignInFailed("the provider's JWKS is not a valid key set") from exc
        self._keys, self._uri, self._fetched_at = keys, jwks_uri, now
        return keys


def token_kid(id_token: str) -> str | None:
    """The ``kid`` in the header of a compact JWS (``None``: none, or not a JWS at all)."""
    try:
        kid = extract_compact(id_token.encode()).protected.get("kid")
    except (JoseError, ValueError, TypeError):
        return None  # verification refuses the token with the right error
    return kid if isinstance(kid, str) else None


def _holds(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)
