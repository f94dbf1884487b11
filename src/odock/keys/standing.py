"""Where a key stands: its limits, budgets and quotas with the current window's usage.

Served at ``GET /v1/keys/self`` so client applications can show their users what is left.
Counters come from the hot store; a window not yet touched reads from the ledger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.ledger import window_state
from odock.budgets.meters import MeterStore
from odock.budgets.specs import BUDGET
from odock.budgets.tables import MeterWindow
from odock.keys.principal import KeyPrincipal


class Counters(Protocol):
    """Where the counters are read: the hot store, and the ledger behind it (the runtime's governance)."""

    @property
    def meters(self) -> MeterStore:
        """The hot store of the current windows."""

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """Sessions on the database that holds the ledger."""


def key_view(principal: KeyPrincipal) -> dict[str, Any]:
    """The key as its holder may see it (``/v1/keys/self``, ``/v1/keys/verify``)."""
    return {
        "id": principal.key_id,
        "name": principal.name,
        "type": principal.type,
        "organisation_id": principal.organisation_id,
        "team_id": principal.team_id,
        "user_id": principal.user_id,
        "expires_at": principal.expires_at.isoformat() if principal.expires_at else None,
        "models": [m.name for m in principal.granted],
    }


async def key_standing(principal: KeyPrincipal, governance: Counters, now: datetime) -> dict[str, Any]:
    """The body of ``GET /v1/keys/self``."""
    windows = [(spec, spec.schedule().window_at(now)) for spec in principal.meters]
    keys = [spec.counter_key(w) for spec, w in windows if w is not None]
    readings = await governance.meters.snapshot(keys)
    budgets, quotas = [], []
    for spec, window in windows:
        entry: dict[str, Any] = {
            "id": spec.id,
            "name": spec.name,
            "scope": spec.owner_type.lower(),
            "owner_id": spec.owner_id,
            "period": spec.period,
            "timezone": spec.timezone,
            "window": None,
        }
        if window is not None:
            key = spec.counter_key(window)
            reading = readings.get(key)
            if reading is not None:
                used, reserved, limit = reading.used, reading.reserved, reading.limit
            elif spec.rollover:
                # The limit includes what the previous window carried over: only the ledger knows.
                used, limit = await window_state(governance.sessions, spec, window)
                reserved = 0
            else:
                used, reserved, limit = await _ledger_reading(governance, key, spec.limit)
            entry["window"] = {"start": window.start.isoformat(), "end": window.end.isoformat()}
            entry.update(limit=limit, used=used, reserved=reserved, remaining=max(0, limit - used - reserved))
        if spec.kind == BUDGET:
            budgets.append({**entry, "currency": "USD", "unit": "nanos_usd"})
        else:
            quotas.append({**entry, "metric": spec.metric})
    return {
        "key": key_view(principal),
        "policies": {
            "organisation": principal.organisation_policies,
            "team": principal.team_policies if principal.team_id else None,
            "api_key": principal.policies,
        },
        "budgets": budgets,
        "quotas": quotas,
    }


async def _ledger_reading(governance: Counters, key: str, default_limit: int) -> tuple[int, int, int]:
    async with governance.sessions() as session:
        row = await session.get(MeterWindow, key)
    if row is None:
        return 0, 0, default_limit
    return row.used, 0, row.limit
