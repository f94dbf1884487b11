"""KeyPrincipal's cache form: what the shared tier stores decodes back to the same principal."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from odock.keys.principal import KeyPrincipal
from tests.support.stages import principal


def test_strict_provider_family_round_trips_through_the_cache_form() -> None:
    """A strict organisation's principal, with every other field set, decodes equal to itself."""
    strict = principal(
        strict_provider_family=True,
        expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        organisation_policies={"routing": {"enabled": True}},
        organisation_active=False,
    )
    decoded = KeyPrincipal.from_json(strict.to_json())
    assert decoded == strict
    assert decoded.strict_provider_family is True


def test_a_principal_cached_before_the_setting_existed_decodes_as_lenient() -> None:
    """Cached JSON without ``strict_provider_family`` (an older gateway wrote it) decodes with it off."""
    data = orjson.loads(principal(strict_provider_family=True).to_json())
    del data["strict_provider_family"]
    decoded = KeyPrincipal.from_json(orjson.dumps(data))
    assert decoded.strict_provider_family is False
    assert decoded == principal()
