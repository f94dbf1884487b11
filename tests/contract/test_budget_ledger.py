"""The budget ledger on SQLite and PostgreSQL: settlements ride on usage records, exactly once."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from odock.budgets.ledger import Settlement
from odock.budgets.tables import MeterSettlement, MeterWindow
from odock.usage.store import UsageStore
from tests.contract.test_usage_store import event, store  # noqa: F401  (the parametrized fixture)

START = datetime(2026, 11, 1, tzinfo=UTC)


def settlement(request_key: str, window_key: str, amount: int) -> dict[str, object]:
    """A settlement of ``amount`` into a monthly window, as a usage event carries it."""
    return Settlement(
        request_key, window_key, amount, "budget", "b1", 1, 0, START, START + timedelta(days=30), 10**12
    ).to_dict()


async def used(store: UsageStore, key: str) -> int:  # noqa: F811
    """The settled usage of a window."""
    async with store._sessions() as session:
        row = await session.get(MeterWindow, key)
        return row.used if row else 0


async def test_settlements_are_added_to_their_window(store: UsageStore) -> None:  # noqa: F811
    """Each record's settlements add to the window's used amount."""
    window = "budget:b1:v1:w0:" + secrets.token_hex(3)
    events = [
        event(id=secrets.token_hex(16), settlements=[settlement(f"r{i}", window, 1_000 * i)])
        for i in range(5)
    ]
    events = [event(id=e.id, settlements=[settlement(e.id, window, 1_000)]) for e in events]
    await store.insert_many(events)
    assert await used(store, window) == 5_000


async def test_replayed_records_do_not_settle_twice(store: UsageStore) -> None:  # noqa: F811
    """Inserting the same records again (a journal replay) leaves the window unchanged."""
    window = "budget:b1:v1:w0:" + secrets.token_hex(3)
    first = [
        event(id=i, settlements=[settlement(i, window, 7)]) for i in (secrets.token_hex(16) for _ in range(3))
    ]
    await store.insert_many(first)
    fresh_id = secrets.token_hex(16)
    fresh = event(id=fresh_id, settlements=[settlement(fresh_id, window, 100)])
    await store.insert_many([*first, fresh])
    await store.insert_many([*first, fresh])
    assert await used(store, window) == 3 * 7 + 100
    async with store._sessions() as session:
        rows = (
            await session.execute(select(MeterSettlement).where(MeterSettlement.window_key == window))
        ).all()
    assert len(rows) == 4


async def test_one_record_settles_several_windows(store: UsageStore) -> None:  # noqa: F811
    """A record settling an organisation budget and a key quota updates both windows."""
    budget, quota = "budget:b1:v1:w0:" + secrets.token_hex(3), "quota:q1:v1:w0:" + secrets.token_hex(3)
    record = event()
    record = event(
        id=record.id, settlements=[settlement(record.id, budget, 5_182_000), settlement(record.id, quota, 1)]
    )
    await store.insert_many([record])
    assert (await used(store, budget), await used(store, quota)) == (5_182_000, 1)


async def test_each_threshold_crossing_is_reported_once(store: UsageStore) -> None:  # noqa: F811
    """Crossing 50% then 80% of a window reports each threshold exactly once, even on replay."""
    window = "budget:b1:v1:w0:" + secrets.token_hex(3)
    reported: list[int] = []
    notifying = UsageStore(store._sessions, on_thresholds=lambda cs: reported.extend(c.threshold for c in cs))

    def spend(amount: int) -> object:
        rid = secrets.token_hex(16)
        line = Settlement(
            rid, window, amount, "budget", "b1", 1, 0, START, START + timedelta(days=30), 100, (50, 80)
        )
        return event(id=rid, settlements=[line.to_dict()])

    first, second, third = spend(40), spend(20), spend(30)
    await notifying.insert_many([first])  # 40%: nothing yet
    await notifying.insert_many([second])  # 60%: 50 crossed
    await notifying.insert_many([second, third])  # replay + 90%: only 80 is new
    await notifying.close()
    assert reported == [50, 80]
