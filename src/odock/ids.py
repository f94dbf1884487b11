"""Typed identifiers and their generators.

Configuration rows use time-ordered 26-character ids (sortable, URL-safe); request and usage
record ids are 32 lowercase hex characters, as the spec shows them.
"""

from __future__ import annotations

import os
import re
import time
from random import getrandbits
from typing import NewType

OrganisationId = NewType("OrganisationId", str)
TeamId = NewType("TeamId", str)
UserId = NewType("UserId", str)
ApiKeyId = NewType("ApiKeyId", str)
ProviderId = NewType("ProviderId", str)
ProviderApiKeyId = NewType("ProviderApiKeyId", str)
ModelId = NewType("ModelId", str)
RequestId = NewType("RequestId", str)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


def new_id() -> str:
    """A 26-character, time-ordered, random identifier (ULID layout, lower case)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def fresh_hex_id(bits: int = 128) -> str:
    """A random id of ``bits`` bits as lowercase hex (32 characters for 128 bits).

    Unique, not secret: it names a lease or a limiter receipt, so the process's Mersenne Twister
    (seeded from the OS at start-up) is as good as ``secrets`` here, without a ``getrandom``
    system call per id on the hot path.
    """
    return format(getrandbits(bits), f"0{bits // 4}x")


def ordered_hex_id() -> str:
    """A 128-bit id as 32 lowercase hex characters that sorts by creation time, to the millisecond.

    The first 48 bits are the Unix time in milliseconds, the other 80 random (a UUIDv7's layout
    without its version bits); unique, not secret, drawn like :func:`fresh_hex_id`. Usage
    record ids are primary and index keys: time-ordered, a batch of new records lands on the last
    pages of those indexes instead of one random page per record, which was most of what writing
    a batch cost (SQLite's write-ahead log grew ~24 KB per record with random ids).
    """
    return format((time.time_ns() // 1_000_000) << 80 | getrandbits(80), "032x")


def new_request_id() -> RequestId:
    """A fresh request id: 32 lowercase hex characters, time-ordered."""
    return RequestId(ordered_hex_id())


def accept_request_id(inbound: str | None) -> RequestId:
    """Honour a well-formed inbound request id (1-128 safe characters) or make a new one."""
    if inbound and _REQUEST_ID.match(inbound):
        return RequestId(inbound)
    return new_request_id()
