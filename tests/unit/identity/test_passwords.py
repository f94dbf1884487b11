"""argon2id passwords: verification, the length rule, rehashing when the cost changes."""

from __future__ import annotations

import pytest

from odock.errors import UnprocessableEntity
from odock.identity.passwords import Passwords, check_password_rules

CHEAP = Passwords(time_cost=1, memory_kib=1024)


def test_hash_is_argon2id_and_verifies() -> None:
    """A hash is argon2id; the right password verifies, a wrong one does not."""
    stored = CHEAP.hash_now("a long enough password")
    assert stored.startswith("$argon2id$")
    assert CHEAP.verify_now(stored, "a long enough password").ok
    assert not CHEAP.verify_now(stored, "another password!").ok


def test_unknown_account_never_verifies() -> None:
    """Verifying against no stored hash (unknown account) always fails."""
    assert not CHEAP.verify_now(None, "anything at all").ok


def test_garbage_hash_fails_cleanly() -> None:
    """A stored value that is not an argon2 hash is a failed verification, not an error."""
    assert not CHEAP.verify_now("not-a-hash", "a long enough password").ok


def test_rehash_when_parameters_change() -> None:
    """A hash made with other parameters verifies and comes back with a new hash in the current ones."""
    old = Passwords(time_cost=1, memory_kib=1024).hash_now("a long enough password")
    stronger = Passwords(time_cost=2, memory_kib=2048)
    result = stronger.verify_now(old, "a long enough password")
    assert result.ok
    assert result.new_hash is not None
    assert "m=2048,t=2" in result.new_hash
    assert stronger.verify_now(result.new_hash, "a long enough password").new_hash is None


@pytest.mark.parametrize("password", ["", "short", "x" * 11, "y" * 1025])
def test_password_rules(password: str) -> None:
    """Passwords under 12 or over 1024 characters are 422 naming the field."""
    with pytest.raises(UnprocessableEntity) as caught:
        check_password_rules(password, "new_password")
    assert caught.value.param == "new_password"


def test_twelve_characters_are_enough() -> None:
    """A 12-character password passes the rule."""
    check_password_rules("x" * 12)
