"""Generation, hashing and masking of API key secrets.

A secret is ``sk_`` followed by 48 hex characters (192 bits). Only its SHA-256 hex digest is
stored; lookups hash the presented secret and compare digests (the digest is the cache key, so
the secret never sits in a cache either).
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "sk_"


def generate_secret() -> str:
    """A new random API key secret."""
    return PREFIX + secrets.token_hex(24)


def hash_secret(secret: str) -> str:
    """The stored form of a secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def preview(secret: str) -> str:
    """A masked form safe to display and log: ``sk_ab12…9f3e``."""
    if len(secret) <= 12:
        return secret[:3] + "…"
    return f"{secret[:7]}…{secret[-4:]}"
