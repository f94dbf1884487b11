"""Validation rules of configuration, shared by the control-plane services and declarative parsing.

The stored pricing shape (spec §3.7), policy envelopes, exact USD amounts (integer nanos),
names, expiries with offsets and IANA timezones. Each rule raises :class:`UnprocessableEntity`
(policies: its subclass :class:`InvalidPolicy`). They live outside ``admin`` so that every
feature's service (and the declarative parser) can use them without importing the admin layer;
rules of one feature live with it (API-key ownership: :mod:`odock.keys.rules`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from odock.billing import Pricing
from odock.errors import UnprocessableEntity
from odock.limits.policy import parse_policy

NANOS_PER_USD = 1_000_000_000
# Money columns are signed 64-bit integers of nanos.
MAX_NANOS = 2**63 - 1
# The sections parse_policy governs; every other top-level key belongs to another capability.
POLICY_SECTIONS = frozenset({"ip", "ratelimit", "shadow"})
MAX_USD = Decimal(MAX_NANOS).scaleb(-9)


def validate_pricing(pricing: dict[str, Any] | None) -> dict[str, Any]:
    """Check pricing against the stored shape; return it normalised (empty = no pricing)."""
    if not pricing:
        return {}
    try:
        return Pricing.model_validate(pricing).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UnprocessableEntity(f"invalid pricing at '{where}': {first['msg']}", param="pricing") from exc


def only_fields(changes: dict[str, Any], allowed: set[str], what: str) -> None:
    """Refuse changes to fields outside ``allowed``."""
    unknown = set(changes) - allowed
    if unknown:
        raise UnprocessableEntity(f"unknown {what} fields: {', '.join(sorted(unknown))}")


def check_timezone(name: str) -> None:
    """Refuse an unknown IANA timezone."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnprocessableEntity(f"unknown timezone '{name}'", param="timezone") from exc


def aware(value: datetime | None) -> datetime | None:
    """Refuse an expiry without a UTC offset (its instant would be ambiguous)."""
    if value is not None and value.tzinfo is None:
        raise UnprocessableEntity("expiry must carry a timezone offset", param="expires_at")
    return value


def same_org(actual: str | None, expected: str, what: str) -> None:
    """Refuse a reference to another organisation's row."""
    if actual != expected:
        raise UnprocessableEntity(f"the {what} belongs to another organisation")


def valid_name(value: str) -> str:
    """A stripped name of 1-200 characters."""
    name = value.strip()
    if not name or len(name) > 200:
        raise UnprocessableEntity("names must be 1-200 characters", param="name")
    return name


def validate_policies(raw: Mapping[str, object] | None) -> dict[str, Any]:
    """Check a policy envelope (InvalidPolicy names the bad field); return the bare form to store.

    A nested ``{"policies": {...}}`` envelope is stored bare. ``ip``, ``ratelimit`` and ``shadow``
    are stored as parsed (CIDRs normalised, omitted and 0 limits left out), so what is stored
    means exactly what was validated; other keys (``routing``, ...) are kept as given.
    """
    if not raw:
        return {}
    policy = parse_policy(raw)
    body: dict[str, object] = dict(raw)
    nested = body.pop("policies", None)
    if isinstance(nested, Mapping):
        body.update(nested)
    kept = {key: value for key, value in body.items() if key not in POLICY_SECTIONS}
    return kept | policy.model_dump(mode="json", exclude_defaults=True)


def usd_to_nanos(amount: Decimal | str | int, param: str = "amount_usd") -> int:
    """An exact USD amount as integer nanos (1 USD = 1e9); more than 9 decimals is refused."""
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise UnprocessableEntity(f"'{amount}' is not a USD amount", param=param) from exc
    if not value.is_finite() or value < 0:
        raise UnprocessableEntity("a USD amount must be a number ≥ 0", param=param)
    if value == 0:
        return 0
    if value > MAX_USD:
        raise UnprocessableEntity(f"a USD amount must be at most {nanos_to_usd(MAX_NANOS)}", param=param)
    # Integer arithmetic on the digits: no decimal context can round a digit away unseen.
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    significand = int("".join(map(str, digits)))
    while exponent < -9 and significand % 10 == 0:
        significand, exponent = significand // 10, exponent + 1
    if exponent < -9:
        raise UnprocessableEntity(
            f"'{amount}' has more than 9 decimals (the smallest amount is 0.000000001 USD)", param=param
        )
    return int(significand * 10 ** (exponent + 9))  # exponent + 9 ≥ 0 here: an exact integer


def nanos_to_usd(nanos: int) -> str:
    """Integer nanos as an exact USD decimal string (``12500000000`` → ``12.5``)."""
    whole, fraction = divmod(abs(nanos), NANOS_PER_USD)
    text = f"{whole}.{fraction:09d}".rstrip("0").rstrip(".")
    return f"-{text}" if nanos < 0 else text
