"""Budgets (money, 402) and quotas (metric units, 429) over period windows.

``windows`` turns a schedule into consecutive windows; ``meters`` holds each window's
``used``/``reserved`` counters behind the ``MeterStore`` contract, with an in-process twin and
the Redis store in ``redis_meters``. See docs/budgets.md.
"""

from __future__ import annotations

from odock.budgets.meters import (
    MemoryMeterStore,
    MeterLine,
    MeterReading,
    MeterStore,
    ReleaseOutcome,
    ReserveOutcome,
    ReserveResult,
    SettleOutcome,
    Shortfall,
)
from odock.budgets.redis_meters import RedisMeterStore
from odock.budgets.windows import Period, Schedule, Window
from odock.errors import MeterStoreUnavailable

__all__ = [
    "MemoryMeterStore",
    "MeterLine",
    "MeterReading",
    "MeterStore",
    "MeterStoreUnavailable",
    "Period",
    "RedisMeterStore",
    "ReleaseOutcome",
    "ReserveOutcome",
    "ReserveResult",
    "Schedule",
    "SettleOutcome",
    "Shortfall",
    "Window",
]
