"""The durable ledger of budget and quota windows (the database side of the counters).

``window_state`` is the cold path: it returns a window's settled usage and effective limit
(creating the window row, and carrying unused capacity forward when the meter rolls over) so
a missing hot counter can be primed. The usage writers (:mod:`odock.usage.sqlite_writer`,
:mod:`odock.usage.postgres_writer`) settle inside the usage batch's transaction: each (request,
window) settlement is inserted once (its primary key makes replays harmless) and only newly
inserted amounts are added to the window's ``used``; :func:`threshold_crossings` says which
thresholds that crossed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.specs import MeterSpec
from odock.budgets.tables import MeterSettlement, MeterWindow
from odock.budgets.windows import Window
from odock.db.base import insert_ignoring_duplicates


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one request settled into one window, with what is needed to create the window row."""

    request_key: str
    window_key: str
    amount: int
    meter_kind: str
    meter_id: str
    version: int
    window_index: int
    start: datetime
    end: datetime
    limit: int
    thresholds: tuple[int, ...] = ()

    @property
    def window(self) -> Window:
        """The window this settlement belongs to."""
        return Window(self.start, self.end, self.window_index)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly data (carried on the usage event through the usage queue)."""
        return {
            "request_key": self.request_key, "window_key": self.window_key, "amount": self.amount,
            "meter_kind": self.meter_kind, "meter_id": self.meter_id, "version": self.version,
            "window_index": self.window_index, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "limit": self.limit, "thresholds": list(self.thresholds),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settlement:
        """Inverse of :meth:`to_dict`."""
        start, end = data["start"], data["end"]
        return cls(
            **{
                **data,
                "start": start if isinstance(start, datetime) else datetime.fromisoformat(start),
                "end": end if isinstance(end, datetime) else datetime.fromisoformat(end),
                "thresholds": tuple(data.get("thresholds", ())),
            }
        )


async def window_state(
    sessions: async_sessionmaker[AsyncSession], spec: MeterSpec, window: Window
) -> tuple[int, int]:
    """(settled used, effective limit) of a window, creating its row on first use."""
    key = spec.counter_key(window)
    async with sessions() as session:
        row = await session.get(MeterWindow, key)
        if row is None:
            limit = spec.limit + await _carried(session, spec, window)
            row_values = window_row(key, spec.kind, spec.id, spec.version, window, limit)
            await session.execute(
                insert_ignoring_duplicates(session, MeterWindow, "key").values(**row_values)
            )
            await session.commit()
            row = await session.get(MeterWindow, key)
            assert row is not None
        return row.used, row.limit


async def _carried(session: AsyncSession, spec: MeterSpec, window: Window) -> int:
    """Unused capacity of the previous window, for meters that roll over (0 otherwise)."""
    if not spec.rollover or window.index == 0:
        return 0
    previous = await session.get(MeterWindow, spec.counter_key_at(window.index - 1))
    if previous is None:
        return spec.limit  # an unused previous window carries its whole limit
    return max(0, previous.limit - previous.used)


def window_row(
    key: str, kind: str, meter_id: str, version: int, window: Window, limit: int
) -> dict[str, object]:
    """A new, empty ``meter_windows`` row."""
    return {
        "key": key, "meter_kind": kind, "meter_id": meter_id, "version": version,
        "window_index": window.index, "start": window.start, "end": window.end, "limit": limit,
        "used": 0, "thresholds_crossed": [],
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class ThresholdCrossing:
    """A window's usage reached one of its meter's threshold percentages (reported once)."""

    meter_kind: str
    meter_id: str
    window_key: str
    threshold: int
    used: int
    limit: int

    def to_dict(self) -> dict[str, Any]:
        """The event body (log line, webhook)."""
        return {
            "event": f"{self.meter_kind}.threshold_crossed", "meter_kind": self.meter_kind,
            "meter_id": self.meter_id, "window_key": self.window_key, "threshold_percent": self.threshold,
            "used": self.used, "limit": self.limit,
        }  # fmt: skip


def newly_reached(thresholds: Iterable[int], crossed: set[int], used: int, limit: int) -> list[int]:
    """Threshold percentages ``used`` has reached of ``limit`` that were not reported before."""
    return [t for t in thresholds if t not in crossed and used * 100 >= t * limit]


@dataclass(slots=True)
class BatchSettlements:
    """A usage batch's settlements as the writers apply them.

    ``rows`` holds (request key, window key, amount) per settlement; ``windows`` one
    :class:`Settlement` per window (the batch's last for that window, sorted by key), which is
    what creating a missing window row needs; ``thresholds`` the thresholds to check per window.
    Only the windows are decoded into :class:`Settlement` objects: a batch of hundreds of
    settlements usually names a handful of windows.
    """

    rows: list[tuple[str, str, int]]
    windows: list[Settlement]
    thresholds: dict[str, tuple[int, ...]]

    @classmethod
    def of(cls, settlements: Iterable[dict[str, Any]]) -> BatchSettlements:
        """Gather the settlements a batch's usage events carry (in :meth:`Settlement.to_dict` form)."""
        rows: list[tuple[str, str, int]] = []
        last: dict[str, dict[str, Any]] = {}
        thresholds: dict[str, tuple[int, ...]] = {}
        for data in settlements:
            key = data["window_key"]
            rows.append((data["request_key"], key, data["amount"]))
            last[key] = data
            if data.get("thresholds"):
                thresholds[key] = tuple(data["thresholds"])
        windows = [Settlement.from_dict(last[key]) for key in sorted(last)]
        return cls(rows, windows, thresholds)


# The window columns a writer reads back after adding settlements, in the order
# :func:`threshold_crossings` takes them.
THRESHOLD_COLUMNS = '"meter_kind", "meter_id", "used", "limit", "thresholds_crossed"'


def threshold_crossings(
    window_key: str, thresholds: Iterable[int], row: Sequence[Any]
) -> tuple[list[int] | None, list[ThresholdCrossing]]:
    """What a window's new use crossed: its new ``thresholds_crossed`` (None: unchanged) and the crossings.

    ``row`` is the window's :data:`THRESHOLD_COLUMNS` as read back after the settlements were
    added (``thresholds_crossed`` as JSON text or already decoded).
    """
    kind, meter_id, used, limit, crossed_value = row
    if isinstance(crossed_value, str | bytes):
        crossed_value = orjson.loads(crossed_value)
    crossed = set(crossed_value or [])
    reached = newly_reached(thresholds, crossed, used, limit)
    if not reached:
        return None, []
    crossings = [ThresholdCrossing(kind, meter_id, window_key, t, used, limit) for t in reached]
    return sorted(crossed | set(reached)), crossings


async def settled_amounts(
    sessions: async_sessionmaker[AsyncSession], request_key: str
) -> dict[str, int] | None:
    """The amounts a request settled, by window key (None when it never settled)."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(MeterSettlement.window_key, MeterSettlement.amount).where(
                    MeterSettlement.request_key == request_key
                )
            )
        ).all()
    return {key: amount for key, amount in rows} if rows else None
