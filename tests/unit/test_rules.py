"""Shared validation rules: exact USD amounts and the stored form of policy envelopes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from odock.errors import InvalidPolicy, UnprocessableEntity
from odock.rules import MAX_NANOS, nanos_to_usd, usd_to_nanos, validate_policies


@pytest.mark.parametrize(
    ("usd", "nanos"),
    [
        ("0.000000001", 1),
        ("12.5", 12_500_000_000),
        ("12.50", 12_500_000_000),
        ("0.1", 100_000_000),
        ("1e-9", 1),
        ("1.0000000000000", 1_000_000_000),
        ("0", 0),
        (Decimal("9223372036.854775807"), MAX_NANOS),
        (3, 3_000_000_000),
    ],
)
def test_usd_converts_exactly_to_nanos(usd: str | Decimal | int, nanos: int) -> None:
    """A USD amount with at most 9 significant decimals becomes the exact integer of nanos."""
    assert usd_to_nanos(usd) == nanos


@pytest.mark.parametrize(
    ("usd", "reason"),
    [
        ("1e-10", "more than 9 decimals"),
        ("0.0000000015", "more than 9 decimals"),
        # 28 significant digits would round in the default decimal context; nothing may be lost.
        ("1.00000000000000000000000000000000001", "more than 9 decimals"),
        ("-0.5", "≥ 0"),
        ("NaN", "≥ 0"),
        ("Infinity", "≥ 0"),
        ("twelve", "not a USD amount"),
        ("9223372036.854775808", "at most 9223372036.854775807"),
    ],
)
def test_inexact_or_invalid_usd_is_refused(usd: str, reason: str) -> None:
    """An amount that cannot be stored exactly as nanos is refused, never rounded."""
    with pytest.raises(UnprocessableEntity, match=reason) as caught:
        usd_to_nanos(usd)
    assert caught.value.param == "amount_usd"


@pytest.mark.parametrize(
    ("nanos", "usd"), [(0, "0"), (1, "0.000000001"), (12_500_000_000, "12.5"), (10**10, "10")]
)
def test_nanos_render_as_exact_usd(nanos: int, usd: str) -> None:
    """Nanos render as the shortest exact USD decimal, which converts back to the same nanos."""
    assert nanos_to_usd(nanos) == usd
    assert usd_to_nanos(usd) == nanos


def test_invalid_policy_names_the_field() -> None:
    """A misspelt rate-limit field is refused as invalid_policy with the field's dotted path."""
    with pytest.raises(InvalidPolicy) as caught:
        validate_policies({"ratelimit": {"requests": {"per_minutes": 5}}})
    assert caught.value.param == "ratelimit.requests.per_minutes"
    assert caught.value.status == 422
    assert caught.value.code == "invalid_policy"
    assert "ratelimit.requests.per_minutes" in caught.value.message


def test_policy_is_stored_bare_and_parsed() -> None:
    """A nested envelope is stored bare; CIDRs are normalised, zero limits dropped, other keys kept."""
    stored = validate_policies(
        {
            "policies": {
                "ip": {"allowlist": "10.0.0.1/8\n2001:db8::1"},
                "ratelimit": {"requests": {"per_minute": 60, "burst": 0}},
                "shadow": True,
                "routing": {"strategy": "primary"},
            }
        }
    )
    assert stored == {
        "ip": {"allowlist": ["10.0.0.0/8", "2001:db8::1/128"]},
        "ratelimit": {"requests": {"per_minute": 60}},
        "shadow": True,
        "routing": {"strategy": "primary"},
    }
    assert validate_policies(stored) == stored


def test_empty_policy_is_stored_empty() -> None:
    """No envelope, an empty one and one that limits nothing are all stored as {}."""
    assert validate_policies(None) == {}
    assert validate_policies({}) == {}
    assert validate_policies({"ratelimit": {"requests": {"per_second": 0}}, "shadow": False}) == {}
