"""Passwords: argon2id hashes, a length rule, and rehashing when the parameters change.

Hashing is deliberately slow (tens of milliseconds and megabytes of memory), so it runs in a
worker thread and never blocks the event loop. A sign-in for an unknown account verifies against
a dummy hash, so both answers take about as long and timing does not reveal which e-mail
addresses have accounts.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from odock.errors import UnprocessableEntity

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; this bounds the work an attacker can ask for


def check_password_rules(password: str, field_name: str = "password") -> None:
    """Raise 422 naming ``field_name`` unless ``password`` is long enough (and not absurdly long)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UnprocessableEntity(
            f"{field_name} must be at least {MIN_PASSWORD_LENGTH} characters", param=field_name
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UnprocessableEntity(
            f"{field_name} must be at most {MAX_PASSWORD_LENGTH} characters", param=field_name
        )


@dataclass(frozen=True)
class Verification:
    """The outcome of checking a password: whether it matched, and a new hash to store if due."""

    ok: bool
    new_hash: str | None = None


@dataclass
class Passwords:
    """argon2id hashing with the configured cost; verification tells when a stored hash is outdated."""

    time_cost: int = 3
    memory_kib: int = 65536
    _hasher: PasswordHasher = field(init=False, repr=False)
    _dummy: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._hasher = PasswordHasher(
            time_cost=self.time_cost, memory_cost=self.memory_kib, parallelism=1, type=Type.ID
        )

    def hash_now(self, password: str) -> str:
        """The argon2id hash of ``password`` (blocking: prefer :meth:`hash`)."""
        return self._hasher.hash(password)

    def verify_now(self, stored: str | None, password: str) -> Verification:
        """Check ``password`` against ``stored`` (blocking); ``None`` checks against a dummy hash."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(32))
        try:
            self._hasher.verify(stored or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return Verification(False)
        if stored is None:
            return Verification(False)
        if self._hasher.check_needs_rehash(stored):
            return Verification(True, self._hasher.hash(password))
        return Verification(True)

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password``, computed in a worker thread."""
        return await asyncio.to_thread(self.hash_now, password)

    async def verify(self, stored: str | None, password: str) -> Verification:
        """:meth:`verify_now` in a worker thread."""
        return await asyncio.to_thread(self.verify_now, stored, password)
