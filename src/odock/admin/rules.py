"""The validation rules under their former name (they moved to :mod:`odock.rules`, which services import)."""

from __future__ import annotations

from odock.rules import (
    MAX_NANOS,
    NANOS_PER_USD,
    POLICY_SECTIONS,
    aware,
    check_timezone,
    nanos_to_usd,
    only_fields,
    same_org,
    usd_to_nanos,
    valid_name,
    validate_policies,
    validate_pricing,
)

__all__ = [
    "MAX_NANOS",
    "NANOS_PER_USD",
    "POLICY_SECTIONS",
    "aware",
    "check_timezone",
    "nanos_to_usd",
    "only_fields",
    "same_org",
    "usd_to_nanos",
    "valid_name",
    "validate_policies",
    "validate_pricing",
]
