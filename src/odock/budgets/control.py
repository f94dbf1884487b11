"""Budgets and quotas: the one service the admin API, the CLI and declarative config all call.

Each mutation commits, then invalidates the organisation's cached principals so every replica
picks the new limits up on its next request (this service publishes its own invalidations).

Changing a limit bumps the meter's version, so the hot path opens new counters (the old ones may
hold a limit that no longer applies). The ledger rows of the current window (and, for a meter
that rolls over, of the previous one) are copied to the new version in the same transaction, so
the new counters start from what was already spent instead of from zero. With the hot path's
counters (``meters``: the gateway's own, or Redis for a command run beside production gateways),
use settled there but not yet flushed to the ledger is carried as well; an embedded gateway's
counters live in its process, so a command run beside it carries what the ledger holds. Amounts
settled into the old version after that commit (requests in flight) are not carried over.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.budgets.meters import MeterStore
from odock.budgets.queries import MeterQueries, MeterRow
from odock.budgets.specs import MeterSpec, budget_spec, quota_spec
from odock.budgets.tables import Budget, MeterWindow, OwnerType, Quota, QuotaMetric
from odock.budgets.windows import Period, Schedule, Window
from odock.cache.bus import Invalidation, InvalidationBus
from odock.db.rows import get_row
from odock.errors import NotFound, UnprocessableEntity
from odock.ids import new_id
from odock.keys.tables import ApiKey
from odock.rules import check_timezone, valid_name
from odock.tenancy.tables import Organisation, Team, User

MAX_THRESHOLD_PERCENT = 1000
CURRENCIES = ("USD", "EUR", "LBS")  # display only: enforcement is always in nanos USD (spec §5.5)


class MeterSchedule(TypedDict, total=False):
    """Who a budget or quota limits and on which windows (every key optional, with defaults)."""

    owner_type: OwnerType
    owner_id: str | None
    period: Period
    start_at: datetime | None
    end_at: datetime | None
    timezone: str
    rollover: bool
    thresholds: Sequence[int]
    active: bool


class MeterChanges(TypedDict, total=False):
    """Changes to a budget or quota (every key optional); ``limit`` is a quota's limit or a budget's nanos."""

    name: str
    active: bool
    thresholds: Sequence[int]
    limit: int
    end_at: datetime | None
    currency: str


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """A meter's window: what is settled in it, what is reserved (live counters only) and its limit."""

    start: datetime
    end: datetime
    used: int
    limit: int
    index: int = 0
    reserved: int = 0

    @property
    def remaining(self) -> int:
        """What is left to reserve in the window."""
        return max(0, self.limit - self.used - self.reserved)


class BudgetControl(MeterQueries):
    """Create, change and delete budgets and quotas; read their windows (lists: :class:`MeterQueries`).

    ``meters`` are the hot path's counters: live use is read from them, and a changed limit
    carries what they hold beyond the ledger.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: InvalidationBus,
        meters: MeterStore | None = None,
    ) -> None:
        super().__init__(sessions)
        self._bus = bus
        self._meters = meters

    # --- creation ------------------------------------------------------------------------
    async def create_budget(
        self,
        organisation_id: str,
        name: str,
        *,
        amount_nanos_usd: int,
        currency: str = "USD",
        **schedule: Unpack[MeterSchedule],
    ) -> Budget:
        """Create a money budget (integer nanos USD per window; ``currency`` is for display only)."""
        _check_limit(amount_nanos_usd, "amount_nanos_usd")
        row = Budget(amount_nanos_usd=amount_nanos_usd, currency=_currency(currency))
        return await self._create(row, organisation_id, name, schedule)

    async def create_quota(
        self,
        organisation_id: str,
        name: str,
        *,
        metric: QuotaMetric,
        limit: int,
        **schedule: Unpack[MeterSchedule],
    ) -> Quota:
        """Create a quota on a metric."""
        _check_limit(limit, "limit")
        return await self._create(
            Quota(metric=QuotaMetric(metric), limit=limit), organisation_id, name, schedule
        )

    # --- lookups -------------------------------------------------------------------------
    async def list(self, organisation_id: str) -> Sequence[Budget | Quota]:
        """Budgets then quotas of an organisation."""
        return [*await self.list_budgets(organisation_id), *await self.list_quotas(organisation_id)]

    async def current_windows(
        self, rows: Sequence[Budget | Quota], at: datetime | None = None, *, live: bool = False
    ) -> dict[str, WindowUsage | None]:
        """Each meter's window at ``at`` (default now) with its settled use; None outside its schedule.

        Read-only: a window nobody has used yet shows 0 used and the limit it will open with. With
        ``live``, a hot-path counter's used and reserved amounts win over the ledger's (which lags
        by up to a usage flush).
        """
        instant = at or datetime.now(UTC)
        windows: dict[str, WindowUsage | None] = {}
        async with self._sessions() as session:
            for row in rows:
                spec = meter_spec(row)
                window = spec.schedule().window_at(instant)
                windows[row.id] = None if window is None else await _usage(session, spec, window)
        if live and self._meters is not None:
            windows = await _live(self._meters, rows, windows)
        return windows

    async def window_history(
        self,
        row: Budget | Quota,
        *,
        before: int | None = None,
        count: int = 20,
        live: bool = False,
        at: datetime | None = None,
    ) -> tuple[builtins.list[WindowUsage], bool]:
        """Windows of a meter, newest first, and whether older ones remain.

        Without ``before`` the list opens with the current window (even if unused); then come the
        windows the ledger holds (windows nobody used have no row and are left out), each with
        the use of its latest schedule version. ``before`` continues below that window index.
        """
        windows: builtins.list[WindowUsage] = []
        if before is None:
            current = (await self.current_windows([row], at, live=live))[row.id]
            if current is not None:
                windows.append(current)
                before = current.index
        spec = meter_spec(row)
        async with self._sessions() as session:
            query = select(MeterWindow.window_index).where(
                MeterWindow.meter_kind == spec.kind, MeterWindow.meter_id == spec.id
            )
            if before is not None:
                query = query.where(MeterWindow.window_index < before)
            wanted = count + 1 - len(windows)
            indexes = builtins.list(
                (
                    await session.execute(
                        query.distinct().order_by(MeterWindow.window_index.desc()).limit(wanted)
                    )
                ).scalars()
            )
            if indexes:
                rows = await session.execute(
                    select(MeterWindow)
                    .where(MeterWindow.meter_kind == spec.kind, MeterWindow.meter_id == spec.id)
                    .where(MeterWindow.window_index.in_(indexes))
                    .order_by(MeterWindow.window_index.desc(), MeterWindow.version.desc())
                )
                latest: dict[int, MeterWindow] = {}
                for stored in rows.scalars():
                    latest.setdefault(stored.window_index, stored)
                windows.extend(
                    WindowUsage(w.start, w.end, w.used, w.limit, w.window_index) for w in latest.values()
                )
        return windows[:count], len(windows) > count

    # --- changes -------------------------------------------------------------------------
    async def set_active(self, meter_id: str, active: bool) -> None:
        """Switch a budget or quota on or off."""
        await self.update(meter_id, {"active": active})

    async def set_thresholds(self, meter_id: str, thresholds: Sequence[int]) -> None:
        """Replace the alert thresholds (percentages of the limit) of a budget or quota."""
        await self.update(meter_id, {"thresholds": thresholds})

    async def update(self, meter_id: str, changes: MeterChanges) -> Budget | Quota:
        """Change a budget or quota in one transaction (a new limit keeps what the window used).

        Use the hot-path counters hold but the ledger does not yet is kept as well.
        """
        if "limit" in changes:
            _check_limit(changes["limit"], "limit")
        wanted = _thresholds(changes["thresholds"]) if "thresholds" in changes else None
        async with self._sessions() as session:
            row = await _meter(session, meter_id, lock="limit" in changes)
            if "name" in changes:
                row.name = valid_name(changes["name"])
            if "active" in changes:
                row.active = changes["active"]
            if wanted is not None:
                row.thresholds = wanted
            if "currency" in changes:
                if not isinstance(row, Budget):
                    raise UnprocessableEntity("a quota has no currency", param="currency")
                row.currency = _currency(changes["currency"])
            if "end_at" in changes:
                _set_end(row, changes["end_at"])
            if "limit" in changes and changes["limit"] != meter_spec(row).limit:
                before = meter_spec(row)
                if isinstance(row, Budget):
                    row.amount_nanos_usd = changes["limit"]
                else:
                    row.limit = changes["limit"]
                row.version += 1
                await _carry_windows(session, before, meter_spec(row), datetime.now(UTC), self._meters)
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=row.organisation_id))
        return row

    async def delete(self, meter_id: str) -> None:
        """Delete a budget or quota; the gateway stops enforcing it at once (its ledger is kept)."""
        async with self._sessions() as session:
            row = await _meter(session, meter_id)
            organisation_id = row.organisation_id
            await session.delete(row)
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=organisation_id))

    async def _create(
        self, row: MeterRow, organisation_id: str, name: str, schedule: MeterSchedule
    ) -> MeterRow:
        row.id, row.organisation_id, row.name = new_id(), organisation_id, valid_name(name)
        _apply_schedule(row, **schedule)
        async with self._sessions() as session:
            await get_row(session, Organisation, row.organisation_id)
            await _check_owner(session, row)
            session.add(row)
            await session.commit()
        await self._bus.publish(Invalidation("organisation", organisation_id=row.organisation_id))
        return row


def meter_spec(row: Budget | Quota) -> MeterSpec:
    """The hot-path view of a budget or quota row."""
    return budget_spec(row) if isinstance(row, Budget) else quota_spec(row)


def _currency(value: str) -> str:
    if value not in CURRENCIES:
        raise UnprocessableEntity(f"currency must be one of {', '.join(CURRENCIES)}", param="currency")
    return value


def _set_end(row: Budget | Quota, end_at: datetime | None) -> None:
    # The windows keep their numbering (same start and period), so counters stay valid: an end
    # only truncates the schedule.
    try:
        Schedule(row.period, row.start_at, row.timezone, end_at)
    except ValueError as exc:
        raise UnprocessableEntity(f"invalid schedule: {exc}", param="end_at") from exc
    row.end_at = end_at


async def _live(
    meters: MeterStore, rows: Sequence[Budget | Quota], windows: dict[str, WindowUsage | None]
) -> dict[str, WindowUsage | None]:
    keys = {}
    for row in rows:
        window = windows.get(row.id)
        if window is not None:
            keys[row.id] = meter_spec(row).counter_key_at(window.index)
    readings = await meters.snapshot(keys.values())
    live = dict(windows)
    for row_id, key in keys.items():
        reading, window = readings.get(key), windows[row_id]
        if reading is not None and window is not None:
            live[row_id] = WindowUsage(
                window.start, window.end, reading.used, reading.limit, window.index, reading.reserved
            )
    return live


def _check_limit(value: int, param: str) -> None:
    if value < 0:
        raise UnprocessableEntity(f"{param} must be ≥ 0", param=param)


def _thresholds(values: Sequence[int]) -> list[int]:
    if any(not 0 < t <= MAX_THRESHOLD_PERCENT for t in values):
        raise UnprocessableEntity(
            f"thresholds are percentages between 1 and {MAX_THRESHOLD_PERCENT}", param="thresholds"
        )
    return sorted(set(values))


def _apply_schedule(
    row: Budget | Quota,
    *,
    owner_type: OwnerType = OwnerType.ORG,
    owner_id: str | None = None,
    period: Period = Period.MONTHLY,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    timezone: str = "UTC",
    rollover: bool = False,
    thresholds: Sequence[int] = (),
    active: bool = True,
) -> None:
    check_timezone(timezone)
    start = start_at or datetime.now(UTC)
    try:
        Schedule(Period(period), start, timezone, end_at)
    except ValueError as exc:
        param = "end_at" if end_at is not None and "end_at" in str(exc) else "start_at"
        raise UnprocessableEntity(f"invalid schedule: {exc}", param=param) from exc
    row.owner_type = OwnerType(owner_type)
    if row.owner_type != OwnerType.ORG and not owner_id:
        raise UnprocessableEntity(f"a {row.owner_type.value} budget needs an owner id", param="owner_id")
    row.team_id = owner_id if row.owner_type == OwnerType.TEAM else None
    row.user_id = owner_id if row.owner_type == OwnerType.USER else None
    row.api_key_id = owner_id if row.owner_type == OwnerType.APIKEY else None
    row.period, row.start_at, row.end_at, row.timezone = Period(period), start, end_at, timezone
    row.rollover = rollover
    row.thresholds, row.active, row.version = _thresholds(thresholds), active, 1


async def _check_owner(session: AsyncSession, row: Budget | Quota) -> None:
    owner: Any = None
    if row.owner_type == OwnerType.TEAM:
        owner = await session.get(Team, row.team_id)
    elif row.owner_type == OwnerType.USER:
        owner = await session.get(User, row.user_id)
    elif row.owner_type == OwnerType.APIKEY:
        owner = await session.get(ApiKey, row.api_key_id)
    else:
        return
    if owner is None or owner.organisation_id != row.organisation_id:
        raise UnprocessableEntity("the owner does not exist in this organisation", param="owner_id")


async def _meter(session: AsyncSession, meter_id: str, *, lock: bool = False) -> Budget | Quota:
    row: Budget | Quota | None = await session.get(Budget, meter_id, with_for_update=lock)
    if row is None:
        row = await session.get(Quota, meter_id, with_for_update=lock)
    if row is None:
        raise NotFound(f"budget or quota '{meter_id}' does not exist")
    return row


async def _usage(session: AsyncSession, spec: MeterSpec, window: Window) -> WindowUsage:
    stored = await session.get(MeterWindow, spec.counter_key(window))
    if stored is not None:
        return WindowUsage(window.start, window.end, stored.used, stored.limit, window.index)
    # The limit the window will open with: odock.budgets.ledger.window_state adds, for a meter
    # that rolls over, what the previous window left (all of it when that window was never used).
    carried = 0
    if spec.rollover and window.index > 0:
        previous = spec.schedule().window(window.index - 1)
        row = await session.get(MeterWindow, spec.counter_key(previous)) if previous else None
        carried = spec.limit if row is None else max(0, row.limit - row.used)
    return WindowUsage(window.start, window.end, 0, spec.limit + carried, window.index)


async def _carry_windows(
    session: AsyncSession,
    before: MeterSpec,
    after: MeterSpec,
    now: datetime,
    meters: MeterStore | None = None,
) -> None:
    """Copy the ledger of the current (and, rolling over, previous) window to the new version.

    With ``meters``, the current window's live counter is read too: it holds settlements the
    ledger has not received yet (up to a usage flush), and the larger use of the two is kept.
    """
    window = before.schedule().window_at(now)
    if window is None:
        return
    previous = before.schedule().window(window.index - 1) if before.rollover else None
    if previous is not None:
        old = await session.get(MeterWindow, before.counter_key(previous))
        if old is not None:
            session.add(_copy(old, after, previous, old.limit))
    current = await session.get(MeterWindow, before.counter_key(window))
    live = (
        (await meters.snapshot([before.counter_key(window)])).get(before.counter_key(window))
        if meters
        else None
    )
    if current is None and live is not None:
        current = MeterWindow(limit=live.limit, used=live.used, thresholds_crossed=[])
    if current is not None:
        # Keep what rolled over into the window; only the base limit changes.
        carried = current.limit - before.limit
        copy = _copy(current, after, window, after.limit + carried)
        if live is not None:
            copy.used = max(copy.used, live.used)
        session.add(copy)


def _copy(row: MeterWindow, spec: MeterSpec, window: Window, limit: int) -> MeterWindow:
    return MeterWindow(
        key=spec.counter_key(window),
        meter_kind=spec.kind,
        meter_id=spec.id,
        version=spec.version,
        window_index=window.index,
        start=window.start,
        end=window.end,
        limit=limit,
        used=row.used,
        thresholds_crossed=builtins.list(row.thresholds_crossed or ()),
    )
