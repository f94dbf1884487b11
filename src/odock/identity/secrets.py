"""Opaque bearer secrets (session tokens, admin tokens, invitation tokens): made, hashed, previewed."""

from __future__ import annotations

import hashlib
import secrets

ADMIN_TOKEN_PREFIX = "odk_admin_"


def new_secret(prefix: str = "") -> str:
    """A fresh random secret with 256 bits of entropy."""
    return prefix + secrets.token_urlsafe(32)


def secret_hash(raw: str) -> str:
    """The SHA-256 hex digest stored in place of a secret (secrets are random: no salt needed)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def preview(raw: str) -> str:
    """A masked form for display: the prefix and the last four characters."""
    head = raw[: len(ADMIN_TOKEN_PREFIX) + 2] if raw.startswith(ADMIN_TOKEN_PREFIX) else raw[:4]
    return f"{head}…{raw[-4:]}"
