"""Usage reads: reach from a grant, filter conditions, and the keyset order of pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Connection, Table, create_engine, insert, select

from odock.rbac.grant import Actor, Grant
from odock.rbac.permissions import Action, Resource
from odock.tenancy.tables import Role
from odock.usage.queries import PageRequest, UsageFilter, UsageReach, UsageSort, page_query, usage_conditions
from odock.usage.tables import UsageRecord
from tests.support.usage_records import BASE_TIME, usage_row

TABLE = cast(Table, UsageRecord.__table__)


@pytest.fixture
def db() -> Iterator[Connection]:
    """An in-memory SQLite database holding only the usage records table."""
    engine = create_engine("sqlite://")
    TABLE.create(engine)
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def selected(conn: Connection, reach: UsageReach, wanted: UsageFilter | None = None) -> set[str]:
    """The ids a reach and filter select."""
    query = select(UsageRecord.id).where(*usage_conditions(reach, wanted or UsageFilter(), "sqlite"))
    return set(conn.execute(query).scalars())


def grant(role: Role, managed: frozenset[str] = frozenset(), member: frozenset[str] = frozenset()) -> Grant:
    """A usage read grant for an actor of ``role`` in organisation ``org``."""
    actor = Actor("me", "me@example.test", role, "org", managed_team_ids=managed, member_team_ids=member)
    return Grant.for_actor(actor, Resource.USAGE, Action.READ, "org")


def test_reach_of_each_role(db: Connection) -> None:
    """Admins read the organisation, managers their teams and themselves, users their own and team rows."""
    rows = {
        "team_a": usage_row("org", team_id="a"),
        "team_b": usage_row("org", team_id="b"),
        "mine": usage_row("org", user_id="me"),
        "someone_in_a": usage_row("org", user_id="you", team_id="a"),
        "elsewhere": usage_row("other", user_id="me"),
    }
    db.execute(insert(TABLE), list(rows.values()))

    def names(reach: UsageReach) -> set[str]:
        found = selected(db, reach)
        return {name for name, row in rows.items() if row["id"] in found}

    assert names(UsageReach.of(grant(Role.ORG_ADMIN))) == {"team_a", "team_b", "mine", "someone_in_a"}
    assert names(UsageReach.of(grant(Role.MANAGER, managed=frozenset({"a"})))) == {
        "team_a",
        "mine",
        "someone_in_a",
    }
    assert names(UsageReach.of(grant(Role.USER, member=frozenset({"a"})))) == {"team_a", "mine"}
    assert names(UsageReach.of(grant(Role.USER))) == {"mine"}
    assert names(UsageReach(None)) == set(rows)


def test_request_id_prefix_is_case_sensitive(db: Connection) -> None:
    """The request id search matches a prefix, case-sensitively."""
    rows = [usage_row("org", request_id=r) for r in ("abc-1", "ABC-2", "xabc", "abd")]
    db.execute(insert(TABLE), rows)
    found = selected(db, UsageReach("org"), UsageFilter(request_id_prefix="abc"))
    assert found == {rows[0]["id"]}


def test_time_range_is_half_open(db: Connection) -> None:
    """``start`` is included and ``end`` excluded."""
    rows = [usage_row("org", timestamp=BASE_TIME + timedelta(hours=h)) for h in range(4)]
    db.execute(insert(TABLE), rows)
    wanted = UsageFilter(start=BASE_TIME + timedelta(hours=1), end=BASE_TIME + timedelta(hours=3))
    assert selected(db, UsageReach("org"), wanted) == {rows[1]["id"], rows[2]["id"]}


@pytest.mark.parametrize("sort", list(UsageSort))
@pytest.mark.parametrize("descending", [True, False])
def test_keyset_pages_walk_every_row_once(db: Connection, sort: UsageSort, descending: bool) -> None:
    """Following the last row of each page visits every row once, in the sort order."""
    rows = [
        usage_row(
            "org",
            timestamp=BASE_TIME + timedelta(seconds=i % 4),
            latency_ms=float(i % 3),
            total_cost_nanos_usd=None if i % 5 == 0 else i % 2,
        )
        for i in range(23)
    ]
    db.execute(insert(TABLE), rows)
    conditions = usage_conditions(UsageReach("org"), UsageFilter(), "sqlite")
    walked: list[str] = []
    after: tuple[object, str] | None = None
    while True:
        page = PageRequest(sort, descending=descending, limit=4, after=after)
        batch: list[Any] = list(db.execute(page_query(conditions, page)).mappings())[:4]
        walked += [row["id"] for row in batch]
        if len(batch) < 4:
            break
        last = batch[-1]
        value = {
            UsageSort.TIMESTAMP: last["timestamp"],
            UsageSort.LATENCY_MS: last["latency_ms"],
            UsageSort.TOTAL_COST: -1
            if last["total_cost_nanos_usd"] is None
            else last["total_cost_nanos_usd"],
        }[sort]
        after = (value, last["id"])

    def key(row: dict[str, Any]) -> tuple[Any, str]:
        cost = row["total_cost_nanos_usd"]
        value = {
            UsageSort.TIMESTAMP: row["timestamp"],
            UsageSort.LATENCY_MS: row["latency_ms"],
            UsageSort.TOTAL_COST: -1 if cost is None else cost,
        }[sort]
        return value, row["id"]

    assert walked == [r["id"] for r in sorted(rows, key=key, reverse=descending)]


def test_cursor_values_must_fit_the_sort() -> None:
    """A cursor's sort value must be an aware time, a number, or an integer cost for its sort."""
    aware = datetime(2026, 1, 1, tzinfo=UTC)
    assert UsageSort.TIMESTAMP.accepts(aware)
    assert not UsageSort.TIMESTAMP.accepts(aware.replace(tzinfo=None))
    assert UsageSort.LATENCY_MS.accepts(1.5)
    assert not UsageSort.LATENCY_MS.accepts(True)
    assert UsageSort.TOTAL_COST.accepts(7)
    assert not UsageSort.TOTAL_COST.accepts(7.5)
