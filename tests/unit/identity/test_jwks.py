"""The JWKS cache: fetched once per TTL, refetched for a rotated key, never hammered by made-up kids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from odock.errors import SignInFailed
from odock.identity.jwks import JwksCache, token_kid

URI = "https://idp.example/jwks"


@dataclass
class Provider:
    """The provider's side: its current signing key, and how often its JWKS was fetched."""

    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    fetches: int = 0
    document: Any = None

    async def fetch(self, uri: str) -> Any:
        """Answer a JWKS request (or ``document`` when set) and count it."""
        assert uri == URI
        self.fetches += 1
        return self.document if self.document is not None else {"keys": [self.key.as_dict(private=False)]}

    def token(self, kid: str | None = None) -> str:
        """An ID token signed with the current key, under ``kid`` (default: the key's own)."""
        return jwt.encode({"alg": "RS256", "kid": kid or self.key.kid}, {"sub": "s"}, self.key)


@dataclass
class Clock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        """The current (test) time."""
        return self.now


def cache(clock: Clock) -> JwksCache:
    """A cache with a one-hour TTL and a one-minute refetch limit on the test clock."""
    return JwksCache(ttl_seconds=3600, refetch_seconds=60, clock=clock)


async def test_keys_are_fetched_once_within_the_ttl() -> None:
    """Within the TTL every token is verified against the cached set, without a fetch."""
    provider, clock = Provider(), Clock()
    jwks = cache(clock)
    for _ in range(5):
        await jwks.keys_for(provider.token(), URI, provider.fetch)
        clock.now += 600
    assert provider.fetches == 1
    clock.now = 1000.0 + 3600  # one TTL after the fetch
    await jwks.keys_for(provider.token(), URI, provider.fetch)
    assert provider.fetches == 2


async def test_a_rotated_key_is_fetched_at_once() -> None:
    """A token under a kid the cached set lacks refetches the set, which then holds the new key."""
    provider, clock = Provider(), Clock()
    jwks = cache(clock)
    await jwks.keys_for(provider.token(), URI, provider.fetch)
    provider.key = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    keys = await jwks.keys_for(provider.token(), URI, provider.fetch)
    assert provider.fetches == 2
    assert keys.get_by_kid("k2").kid == "k2"


async def test_unknown_kids_refetch_at_most_once_a_minute() -> None:
    """Made-up kids refetch once, then not again until the refetch interval has passed."""
    provider, clock = Provider(), Clock()
    jwks = cache(clock)
    await jwks.keys_for(provider.token(), URI, provider.fetch)
    for n in range(10):
        await jwks.keys_for(provider.token(kid=f"forged-{n}"), URI, provider.fetch)
        clock.now += 5
    assert provider.fetches == 2
    clock.now += 60
    await jwks.keys_for(provider.token(kid="forged-again"), URI, provider.fetch)
    assert provider.fetches == 3


async def test_a_known_or_absent_kid_does_not_refetch() -> None:
    """Tokens under a cached kid, or with no kid at all, use the cached set."""
    provider, clock = Provider(), Clock()
    jwks = cache(clock)
    await jwks.keys_for(provider.token(), URI, provider.fetch)
    unsigned_kid = jwt.encode({"alg": "RS256"}, {"sub": "s"}, provider.key)
    await jwks.keys_for(unsigned_kid, URI, provider.fetch)
    await jwks.keys_for("not a token", URI, provider.fetch)
    assert provider.fetches == 1


@pytest.mark.parametrize("document", [{"keys": [{"kty": "nope"}]}, ["not", "a", "set"], "text"])
async def test_an_invalid_jwks_is_a_sign_in_failure(document: Any) -> None:
    """A JWKS that is not a key set fails the sign-in (401 sign_in_failed), not the server."""
    provider = Provider(document=document)
    with pytest.raises(SignInFailed):
        await cache(Clock()).keys_for(provider.token(), URI, provider.fetch)


def test_token_kid_reads_the_header() -> None:
    """The kid is read from the token's protected header; garbage has none."""
    provider = Provider()
    assert token_kid(provider.token()) == "k1"
    assert token_kid("a.b.c") is None
