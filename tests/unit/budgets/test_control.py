"""Budget control as the CLI and declarative config use it: windows read from the ledger, limit changes.

(These tests live next to the control-plane tests because they share its database fixtures.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from odock.admin.control import ControlPlane
from odock.budgets.control import meter_spec
from odock.budgets.ledger import Settlement, window_state
from odock.budgets.tables import Budget, OwnerType, Quota, QuotaMetric
from odock.budgets.windows import Period
from odock.cache.bus import Invalidation
from odock.errors import NotFound, UnprocessableEntity
from odock.ids import new_id
from odock.usage.record import UsageEvent
from odock.usage.store import UsageStore


async def spend(
    sessions: async_sessionmaker[AsyncSession], meter: Budget | Quota, amount: int, at: datetime | None = None
) -> None:
    """Open the meter's window at ``at`` (default now) and settle ``amount``, as a gateway does."""
    spec = meter_spec(meter)
    window = spec.schedule().window_at(at or datetime.now(UTC))
    assert window is not None
    _used, limit = await window_state(sessions, spec, window)  # priming opens the window first
    settlement = Settlement(
        new_id(), spec.counter_key(window), amount, spec.kind, spec.id, spec.version,
        window.index, window.start, window.end, limit,
    )  # fmt: skip
    event = UsageEvent(
        id=new_id(), request_id="req", timestamp=datetime.now(UTC), endpoint="/v1/chat/completions",
        status="success", http_status=200, settlements=[settlement.to_dict()],
    )  # fmt: skip
    store = UsageStore(sessions)
    await store.insert_many([event])
    await store.close()


async def test_untouched_window_shows_zero_used_and_its_limit(control: ControlPlane) -> None:
    """A budget nobody has spent from shows its current window with 0 used and the full amount."""
    org = await control.tenancy.create_organisation("acme")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    budget = await control.budgets.create_budget(
        org.id, "monthly", amount_nanos_usd=5_000, period=Period.MONTHLY, start_at=start
    )
    usage = (await control.budgets.current_windows([budget], at=datetime(2026, 3, 15, tzinfo=UTC)))[budget.id]
    assert usage is not None
    assert (usage.start, usage.end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert (usage.used, usage.limit) == (0, 5_000)


async def test_windows_show_what_the_ledger_settled(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Settled spend appears as the current window's used amount; a window outside the schedule is None."""
    org = await control.tenancy.create_organisation("acme")
    budget = await control.budgets.create_budget(org.id, "b", amount_nanos_usd=1_000, period=Period.DAILY)
    later = await control.budgets.create_quota(
        org.id, "q", metric=QuotaMetric.REQUESTS, limit=3, start_at=datetime.now(UTC) + timedelta(days=2)
    )
    await spend(sessions, budget, 250)
    await spend(sessions, budget, 100)
    windows = await control.budgets.current_windows([budget, later])
    assert windows[later.id] is None
    usage = windows[budget.id]
    assert usage is not None
    assert (usage.used, usage.limit) == (350, 1_000)


async def test_untouched_rollover_window_shows_the_limit_it_will_open_with(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """For a rolling-over budget the shown limit equals what the ledger opens the window with."""
    org = await control.tenancy.create_organisation("acme")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    budget = await control.budgets.create_budget(
        org.id, "b", amount_nanos_usd=1_000, period=Period.DAILY, start_at=start, rollover=True
    )
    await spend(sessions, budget, 300, at=datetime(2026, 1, 2, 12, tzinfo=UTC))
    at = datetime(2026, 1, 3, 12, tzinfo=UTC)
    shown = (await control.budgets.current_windows([budget], at=at))[budget.id]
    spec = meter_spec(budget)
    window = spec.schedule().window_at(at)
    assert shown is not None
    assert window is not None
    # Window 1 opened with 2_000 (window 0 was never used, so it carried all of it) and spent 300.
    assert (shown.used, shown.limit) == await window_state(sessions, spec, window) == (0, 2_700)


async def test_set_limit_bumps_the_version_and_keeps_the_windows_spend(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession], published: list[Invalidation]
) -> None:
    """After a limit change the new counters open from what the window already spent, not from 0."""
    org = await control.tenancy.create_organisation("acme")
    budget = await control.budgets.create_budget(org.id, "b", amount_nanos_usd=1_000, period=Period.DAILY)
    await spend(sessions, budget, 700)
    published.clear()

    await control.budgets.update(budget.id, {"limit": 2_000})
    changed = await control.budgets.budget(budget.id)
    assert (changed.version, changed.amount_nanos_usd) == (2, 2_000)
    spec = meter_spec(changed)
    window = spec.schedule().window_at(datetime.now(UTC))
    assert window is not None
    assert await window_state(sessions, spec, window) == (700, 2_000)
    assert published == [Invalidation("organisation", organisation_id=org.id)]


async def test_set_limit_keeps_what_rolled_over(
    control: ControlPlane, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A new base limit keeps the capacity a rolling-over window carried in, and its spend."""
    org = await control.tenancy.create_organisation("acme")
    start = datetime.now(UTC) - timedelta(days=1)
    budget = await control.budgets.create_budget(
        org.id, "b", amount_nanos_usd=1_000, period=Period.DAILY, start_at=start, rollover=True
    )
    await spend(sessions, budget, 400, at=start + timedelta(hours=1))  # window 0 leaves 600
    await spend(sessions, budget, 50)  # window 1 opens with 1_600
    await control.budgets.update(budget.id, {"limit": 3_000})
    usage = (await control.budgets.current_windows([await control.budgets.budget(budget.id)]))[budget.id]
    assert usage is not None
    assert (usage.used, usage.limit) == (50, 3_600)


async def test_limits_and_thresholds_are_checked(control: ControlPlane) -> None:
    """Negative limits, thresholds outside 1-1000 and unknown ids are refused; thresholds are sorted."""
    org = await control.tenancy.create_organisation("acme")
    budgets = control.budgets
    with pytest.raises(UnprocessableEntity, match="amount_nanos_usd must be ≥ 0"):
        await budgets.create_budget(org.id, "b", amount_nanos_usd=-1)
    with pytest.raises(UnprocessableEntity, match="thresholds are percentages"):
        await budgets.create_quota(org.id, "q", metric=QuotaMetric.TOKENS, limit=1, thresholds=[0])
    quota = await budgets.create_quota(org.id, "q", metric=QuotaMetric.TOKENS, limit=1)
    with pytest.raises(UnprocessableEntity, match="limit must be ≥ 0"):
        await budgets.update(quota.id, {"limit": -5})
    await budgets.set_thresholds(quota.id, [90, 50, 90])
    assert (await budgets.quota(quota.id)).thresholds == [50, 90]
    with pytest.raises(NotFound, match="budget 'nope' does not exist"):
        await budgets.budget("nope")
    with pytest.raises(NotFound, match=f"budget '{quota.id}' does not exist"):
        await budgets.budget(quota.id)


async def test_owner_must_belong_to_the_organisation(control: ControlPlane) -> None:
    """A budget cannot be owned by another organisation's team, nor name an unknown time zone."""
    org = await control.tenancy.create_organisation("acme")
    other = await control.tenancy.create_organisation("other")
    foreign = await control.tenancy.create_team(other.id, "theirs")
    with pytest.raises(UnprocessableEntity, match="owner does not exist in this organisation"):
        await control.budgets.create_budget(
            org.id, "b", amount_nanos_usd=1, owner_type=OwnerType.TEAM, owner_id=foreign.id
        )
    with pytest.raises(UnprocessableEntity, match="unknown timezone 'Mars/Olympus'"):
        await control.budgets.create_budget(org.id, "b", amount_nanos_usd=1, timezone="Mars/Olympus")
    assert await control.budgets.list(org.id) == []
