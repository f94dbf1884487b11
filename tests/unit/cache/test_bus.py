"""The invalidation wire format: what parses, and what is refused as malformed."""

from __future__ import annotations

import pytest

from odock.cache.bus import Invalidation


@pytest.mark.parametrize(
    "invalidation",
    [
        Invalidation("all"),
        Invalidation("organisation", organisation_id="org-1"),
        Invalidation("api_key", organisation_id="org-1", key_hash="abc"),
    ],
)
def test_round_trip(invalidation: Invalidation) -> None:
    """Every well-formed invalidation survives serialisation unchanged."""
    assert Invalidation.from_json(invalidation.to_json()) == invalidation


@pytest.mark.parametrize(
    "raw",
    [
        b"nope",
        b"[]",
        b'{"scope": "everything"}',
        b'{"scope": "api_key"}',
        b'{"scope": "api_key", "key_hash": ""}',
        b'{"scope": "organisation"}',
        b'{"scope": "organisation", "organisation_id": 7}',
        b'{"scope": "api_key", "key_hash": ["a"]}',
    ],
)
def test_malformed_is_refused(raw: bytes) -> None:
    """Unknown scopes, non-string ids and scopes missing the id they need raise ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - every refusal is a plain ValueError by contract
        Invalidation.from_json(raw)
